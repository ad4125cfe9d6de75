//! Supply-chain invariants that hold without cargo-deny installed: the lock file is
//! committed and pulls only from crates.io, no unsafe code in this crate, and deny.toml
//! keeps the policy `.ci/run` enforces when cargo-deny is present.

use std::path::Path;
use std::process::Command;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn unsafe_code_is_forbidden_in_the_library_and_the_binary() {
    // The product and the simulator. Only the bench harness (crates/sspm-bench) calls libc
    // (wait4, sysconf) to measure the processes it runs.
    for file in [
        "src/lib.rs",
        "src/main.rs",
        "crates/intercom-sim/src/lib.rs",
        "crates/intercom-sim/src/main.rs",
    ] {
        assert!(
            read(file).contains("#![forbid(unsafe_code)]"),
            "{file} must forbid unsafe code"
        );
    }
}

#[test]
fn cargo_lock_is_committed_and_only_names_crates_io() {
    let lock = read("Cargo.lock");
    let sources: Vec<&str> = lock
        .lines()
        .filter_map(|l| l.strip_prefix("source = "))
        .collect();
    assert!(sources.len() > 100, "a real lock file");
    for s in &sources {
        assert_eq!(
            *s, "\"registry+https://github.com/rust-lang/crates.io-index\"",
            "only crates.io"
        );
    }
    // Tracked by git (builds are reproducible from a clone), when this is a checkout.
    let dir = env!("CARGO_MANIFEST_DIR");
    let in_git = Command::new("git")
        .args(["-C", dir, "rev-parse", "--is-inside-work-tree"])
        .output()
        .is_ok_and(|o| o.status.success());
    if in_git {
        let tracked = Command::new("git")
            .args(["-C", dir, "ls-files", "--error-unmatch", "Cargo.lock"])
            .output()
            .unwrap();
        assert!(tracked.status.success(), "Cargo.lock must be committed");
    }
}

/// `key = value` lines of one `[section]` of a flat TOML file (no TOML parser among
/// the dev-dependencies, and deny.toml is flat).
fn section(text: &str, name: &str) -> Vec<String> {
    let header = format!("[{name}]");
    text.lines()
        .map(str::trim)
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn deny_toml_keeps_the_policy() {
    let deny = read("deny.toml");
    let bans = section(&deny, "bans");
    assert!(
        bans.contains(&r#"wildcards = "deny""#.to_string()),
        "{bans:?}"
    );
    assert!(
        bans.contains(&r#"multiple-versions = "warn""#.to_string()),
        "{bans:?}"
    );
    let sources = section(&deny, "sources");
    for rule in [
        r#"unknown-registry = "deny""#,
        r#"unknown-git = "deny""#,
        "allow-git = []",
    ] {
        assert!(sources.contains(&rule.to_string()), "{rule}: {sources:?}");
    }
    // Copyleft licenses need a review, not a blanket allow.
    let licenses = section(&deny, "licenses").join("\n");
    for copyleft in ["\"GPL", "\"AGPL", "\"LGPL", "\"MPL", "\"EUPL"] {
        assert!(!licenses.contains(copyleft), "{copyleft}: {licenses}");
    }
    // A copyleft crate may only come in through a per-crate exception that was reviewed:
    // today the WebDriver types of the browser test's dev-dependency.
    let excepted: Vec<String> = deny
        .split("[[licenses.exceptions]]")
        .skip(1)
        .filter_map(|block| {
            block
                .lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix("crate = "))
                .map(|c| c.trim_matches('"').to_string())
        })
        .collect();
    assert_eq!(excepted, ["webdriver"], "reviewed license exceptions");
    let ci = read(".ci/run");
    assert!(
        ci.contains("cargo deny --frozen check licenses bans sources"),
        ".ci/run runs the offline checks"
    );
    assert!(
        ci.contains("if cargo deny --version"),
        "only when cargo-deny is installed"
    );
}
