//! Unix conventions of the real binary: output into a closed pipe, exit codes, version,
//! completions, man page, help examples.

use std::process::{Command, Stdio};

use serde_json::json;
use sqlx::PgPool;

use crate::harness::{self, run_cli, text};

const TOKEN: &str = "tok_cli_conventions_acme_51aa";

/// Runs the binary with its stdout read end closed before it writes (`cmd | true`).
async fn run_into_closed_pipe(args: &[&str], env: &[(String, String)]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env = env.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_intercom-sspm"))
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_BACKTRACE", "1")
            .envs(env)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("binary runs");
        drop(child.stdout.take());
        child.wait_with_output().expect("binary finishes")
    })
    .await
    .unwrap()
}

fn assert_quiet_exit(what: &str, out: &std::process::Output) {
    let (_, stderr) = text(out);
    assert!(
        out.status.success(),
        "{what}: a closed pipe ends the command quietly, got {:?}: {stderr}",
        out.status
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{what}: {stderr}"
    );
}

async fn onboarded(pool: &PgPool) -> (intercom_sim::Simulator, Vec<(String, String)>) {
    let ws = harness::workspace("acme", "us", TOKEN, &["read_admins"]);
    let sim = harness::start_sim(json!({ "workspaces": [ws] })).await;
    let (_, key) = harness::keyring();
    let mut env = harness::sim_env(Some(&sim));
    env.push(("DATABASE_URL".into(), harness::database_url(pool)));
    env.push(("SSPM__SECURITY__TOKEN_KEY".into(), key));
    let out = run_cli(
        &[
            "instance",
            "add",
            "--name",
            "acme",
            "--region",
            "us",
            "--token-stdin",
        ],
        &env,
        Some(TOKEN),
    )
    .await;
    assert!(out.status.success(), "{:?}", text(&out));
    (sim, env)
}

#[tokio::test]
async fn checks_into_a_closed_pipe_exits_quietly() {
    for args in [&["checks"][..], &["checks", "--format", "json"]] {
        let out = run_into_closed_pipe(args, &[]).await;
        assert_quiet_exit(&args.join(" "), &out);
    }
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn every_listing_into_a_closed_pipe_exits_quietly(pool: PgPool) {
    let (_sim, env) = onboarded(&pool).await;
    for args in [
        &["instance", "show", "acme"][..],
        &["instance", "list"],
        &["scan", "acme"],
        &["findings", "--format", "ocsf"],
        &["findings", "--format", "csv"],
        &["findings"],
    ] {
        let out = run_into_closed_pipe(args, &env).await;
        assert_quiet_exit(&args.join(" "), &out);
    }
    // The scan into the closed pipe still ran and was recorded.
    assert_eq!(
        harness::count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE status = 'succeeded'"
        )
        .await,
        1
    );
}
