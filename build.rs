use std::process::Command;

fn main() {
    // sqlx::migrate! embeds migrations at compile time: rebuild when one is added.
    println!("cargo:rerun-if-changed=migrations");
    // `--version` and sspm_build_info name the commit. SSPM_GIT_COMMIT wins (container
    // builds have no .git); else git, when present; else "unknown". Never fails the build.
    println!("cargo:rerun-if-env-changed=SSPM_GIT_COMMIT");
    let commit = std::env::var("SSPM_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SSPM_GIT_COMMIT={}", commit.trim());
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it points to (a
    // commit). In a worktree both live outside the checkout, hence --git-path.
    let mut watched = vec!["HEAD".to_string()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        // A missing path (a packed ref) would make cargo rerun this on every build.
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
