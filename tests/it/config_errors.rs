//! Configuration errors through the real binary: each names its source (absolute file
//! path or environment variable), suggests the key meant, and `config check` shows the
//! effective values with secrets masked.

use crate::support::cli::{run_cli, text};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn stderr_of(args: &[&str], pairs: &[(&str, &str)]) -> String {
    let out = run_cli(args, &env(pairs), None).await;
    assert!(!out.status.success(), "{args:?} {pairs:?} was accepted");
    text(&out).1
}

#[tokio::test]
async fn config_errors_name_their_source_and_what_to_write() {
    let e = stderr_of(
        &["instance", "list"],
        &[("SSPM__SCHEDULR__POLL_INTERVAL", "5s")],
    )
    .await;
    assert!(
        e.contains("environment variable SSPM__SCHEDULR__POLL_INTERVAL")
            && e.contains("did you mean `scheduler`"),
        "{e}"
    );
    let e = stderr_of(&["instance", "list"], &[("SSPM__LOG__FORMAT", "xml")]).await;
    assert!(
        e.contains("pretty or json") && !e.contains("variant constructor"),
        "{e}"
    );
    let e = stderr_of(&["instance", "list"], &[("SSPM__LOG__LEVEL", "verbose")]).await;
    assert!(e.contains("log.level") && e.contains("verbose"), "{e}");
    // A missing --config file is named with its absolute path, once.
    let e = stderr_of(&["--config", "missing-sspm.toml", "instance", "list"], &[]).await;
    let expected = std::env::temp_dir().join("missing-sspm.toml");
    assert!(
        e.contains(&expected.display().to_string())
            && !e.contains("file not found: file not found"),
        "{e}"
    );
    assert_eq!(
        e.matches("error:").count(),
        1,
        "one error, printed once: {e}"
    );
}

#[tokio::test]
async fn config_check_prints_effective_values_sources_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sspm.toml");
    std::fs::write(&file, "[scheduler]\npoll_interval = \"9s\"\n").unwrap();
    let out = run_cli(
        &["--config", file.to_str().unwrap(), "config", "check"],
        &env(&[
            ("DATABASE_URL", "postgres://sspm:hunter2pw@db.example/sspm"),
            (
                "SSPM__SECURITY__TOKEN_KEY",
                "c2VjcmV0LWtleS1tYXRlcmlhbC1zZWNyZXQta2V5LTMy",
            ),
            ("SSPM__LOG__LEVEL", "debug"),
        ]),
        None,
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let line = |key: &str| {
        stdout
            .lines()
            .find(|l| l.contains(&format!(" {key} ")))
            .unwrap_or_else(|| panic!("{key} missing: {stdout}"))
            .to_string()
    };
    assert!(line("scheduler.poll_interval").contains("9s"));
    assert!(line("scheduler.poll_interval").contains("sspm.toml"));
    assert!(line("log.level").contains("SSPM__LOG__LEVEL"));
    assert!(line("scheduler.lease").contains("built-in default"));
    assert!(line("database.url").contains("masked"));
    assert!(
        !stdout.contains("hunter2pw")
            && !stdout.contains("c2VjcmV0LWtleS1tYXRlcmlhbC1zZWNyZXQta2V5LTMy"),
        "{stdout}"
    );
    assert!(stdout.contains("configuration is valid"));
    // And an invalid configuration fails the check.
    let e = stderr_of(
        &["config", "check"],
        &[("SSPM__SERVER__LISTEN", "localhost")],
    )
    .await;
    assert!(
        e.contains("server.listen") && e.contains("SSPM__SERVER__LISTEN"),
        "{e}"
    );
}
