//! Unix conventions of the real binary: output into a closed pipe, exit codes, version,
//! completions, man page, help examples.

use std::process::{Command, Stdio};

use serde_json::json;
use sqlx::PgPool;

use crate::support::cli::{run_cli, text};
use crate::support::{db, sim, TestKey};

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
    let ws = sim::workspace_json("acme", "us", TOKEN, &["read_admins"]);
    let sim = sim::start_json(json!({ "workspaces": [ws] })).await;
    let key = TestKey::generate().b64;
    let env = crate::support::cli::env(pool, Some(&sim), &key);
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
        db::count(
            &pool,
            "SELECT count(*) FROM sspm.scans WHERE status = 'succeeded'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn version_names_the_commit_and_completions_and_man_are_generated() {
    let out = run_cli(&["--version"], &[], None).await;
    let version = text(&out).0;
    assert!(
        version.starts_with(&format!(
            "intercom-sspm {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{version}"
    );
    assert!(
        !version.contains("commit unknown"),
        "built in a git checkout: {version}"
    );
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef intercom-sspm"),
        ("fish", "complete -c intercom-sspm"),
    ] {
        let out = run_cli(&["completions", shell], &[], None).await;
        let script = text(&out).0;
        assert!(
            out.status.success() && script.contains(marker),
            "{shell}: {script}"
        );
        assert!(
            script.contains("set-schedule"),
            "{shell} completes subcommands"
        );
    }
    let out = run_cli(&["man"], &[], None).await;
    let page = text(&out).0;
    assert!(
        page.contains(".TH intercom-sspm 1") && page.contains("Exit codes"),
        "{page}"
    );
}

/// Every command and subcommand's --help shows at least one example.
#[tokio::test]
async fn every_command_help_has_an_example() {
    use clap::CommandFactory;
    let root = intercom_sspm::cli::Cli::command();
    let mut paths: Vec<Vec<String>> = vec![vec![]];
    for sub in root.get_subcommands() {
        let name = sub.get_name().to_string();
        if name == "help" {
            continue;
        }
        let children: Vec<String> = sub
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .filter(|c| c != "help")
            .collect();
        if children.is_empty() {
            paths.push(vec![name]);
        } else {
            for child in children {
                paths.push(vec![name.clone(), child]);
            }
        }
    }
    assert!(paths.len() > 20, "{paths:?}");
    for path in paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = run_cli(&args, &[], None).await;
        let help = text(&out).0;
        assert!(out.status.success(), "{args:?}");
        assert!(help.contains("Example"), "{args:?} has no example:\n{help}");
    }
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn exit_codes_tell_not_found_and_database_unavailable_apart(pool: PgPool) {
    let mut env = sim::sim_env(None);
    env.push(("DATABASE_URL".into(), db::database_url(&pool)));
    let out = run_cli(&["instance", "show", "nope"], &env, None).await;
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    let out = run_cli(&["scan", "nope"], &env, None).await;
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    let mut down = sim::sim_env(None);
    down.push((
        "DATABASE_URL".into(),
        "postgres://sspm@127.0.0.1:9/sspm".into(),
    ));
    let out = run_cli(&["findings"], &down, None).await;
    assert_eq!(out.status.code(), Some(4), "{:?}", text(&out));
    let out = run_cli(&["scan"], &env, None).await;
    assert_eq!(out.status.code(), Some(2), "usage: {:?}", text(&out));
    let out = run_cli(&["--help"], &[], None).await;
    let help = text(&out).0;
    for line in [
        "0  success",
        "1  a scan failed",
        "2  usage error",
        "3  not found",
        "4  database unavailable",
    ] {
        assert!(help.contains(line), "{help}");
    }
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn scan_json_has_times_and_null_score_on_failure_and_all_scans_every_instance(pool: PgPool) {
    let (sim, env) = onboarded(&pool).await;
    sqlx::query(
        "INSERT INTO sspm.instances (name, region, token_ref) VALUES ('beta', 'us', 'env:BETA_TOKEN_UNSET')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let out = run_cli(&["scan", "acme", "--format", "json"], &env, None).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(v["duration_seconds"].is_number(), "{v}");
    let started: chrono::DateTime<chrono::Utc> = v["started_at"].as_str().unwrap().parse().unwrap();
    let finished: chrono::DateTime<chrono::Utc> =
        v["finished_at"].as_str().unwrap().parse().unwrap();
    assert!(started <= finished);
    assert!(v["score"].is_number());
    // Quiet stderr: no INFO lines repeating the summary.
    assert!(!stderr.contains("INFO"), "{stderr}");

    sim.scenario_handle().revoke_token(TOKEN).unwrap();
    let out = run_cli(&["scan", "acme", "--format", "json"], &env, None).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["status"], "failed");
    assert!(v["score"].is_null(), "a failed scan has no score: {v}");
    assert!(
        !stderr.contains("WARN") && !stderr.contains("\u{1b}["),
        "{stderr}"
    );

    // A failed scan in a table: the outcome line, no per-check rows, one error on stderr.
    let out = run_cli(&["scan", "acme"], &env, None).await;
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("failed")
            && !stdout.contains("token rejected")
            && !stdout.contains("│ error"),
        "{stdout}"
    );
    assert_eq!(stderr.matches("error").count(), 1, "{stderr}");

    // --all: both enabled instances, JSON array, exit 1 because they failed.
    let out = run_cli(&["scan", "--all", "--format", "json"], &env, None).await;
    assert_eq!(out.status.code(), Some(1));
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["instance"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme", "beta"]);
    // --queue --format json prints JSON.
    let out = run_cli(&["scan", "acme", "--queue", "--format", "json"], &env, None).await;
    let q: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(q["queued"], true);
    assert_eq!(q["instance"], "acme");
}

#[tokio::test]
async fn quiet_and_verbose_are_accepted_by_every_command() {
    for args in [
        &["-q", "checks"][..],
        &["checks", "--verbose"],
        &["keygen", "-vv"],
    ] {
        let out = run_cli(args, &[], None).await;
        assert!(out.status.success(), "{args:?}: {:?}", text(&out));
    }
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn set_token_from_another_region_gives_advice_it_can_follow(pool: PgPool) {
    const EU_TOKEN: &str = "tok_cli_conventions_euro_0c3b";
    let us = sim::workspace_json("acme", "us", TOKEN, &["read_admins"]);
    let eu = sim::workspace_json("euro", "eu", EU_TOKEN, &["read_admins"]);
    let sim = sim::start_json(json!({ "workspaces": [us, eu] })).await;
    let key = TestKey::generate().b64;
    let env = crate::support::cli::env(&pool, Some(&sim), &key);
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
    let out = run_cli(
        &["instance", "set-token", "acme", "--token-stdin"],
        &env,
        Some(EU_TOKEN),
    )
    .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        !stderr.contains("run again with --region"),
        "set-token has no --region: {stderr}"
    );
    assert!(
        stderr.contains("region eu") && stderr.contains("instance add --name NAME --region eu"),
        "{stderr}"
    );
}

/// `--token-stdin` on a terminal: run under `script` (a pseudo-terminal, as a person at
/// a shell); with echo on, the pty would copy the typed token into the transcript.
#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn token_stdin_on_a_terminal_prompts_without_echo(pool: PgPool) {
    let ws = sim::workspace_json("acme", "us", TOKEN, &["read_admins"]);
    let sim = sim::start_json(json!({ "workspaces": [ws] })).await;
    let key = TestKey::generate().b64;
    let env = crate::support::cli::env(&pool, Some(&sim), &key);
    let command = format!(
        "{} instance add --name acme --region us --token-stdin",
        env!("CARGO_BIN_EXE_intercom-sspm")
    );
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("TERM", "dumb")
            .envs(env)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script (util-linux) runs");
        // Give the prompt a moment to turn echo off before "typing".
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{TOKEN}\n").as_bytes()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(stdin);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = text(&out);
    let transcript = format!("{stdout}{stderr}");
    assert!(transcript.contains("input hidden"), "{transcript}");
    assert!(
        transcript.contains("onboarded instance acme"),
        "{transcript}"
    );
    assert!(
        !transcript.contains(TOKEN),
        "the token was echoed: {transcript}"
    );
}

#[sqlx::test(migrator = "intercom_sspm::db::MIGRATOR")]
async fn instance_add_dry_run_validates_and_stores_nothing(pool: PgPool) {
    let ws = sim::workspace_json("acme", "us", TOKEN, &["read_admins"]);
    let sim = sim::start_json(json!({ "workspaces": [ws] })).await;
    let mut env = sim::sim_env(Some(&sim));
    env.push(("DATABASE_URL".into(), db::database_url(&pool)));
    env.push(("ACME_TOKEN".into(), TOKEN.into()));
    let add = |extra: &'static [&'static str]| {
        let env = env.clone();
        async move {
            let mut args = vec![
                "instance",
                "add",
                "--name",
                "acme",
                "--token-ref",
                "env:ACME_TOKEN",
                "--dry-run",
            ];
            args.extend_from_slice(extra);
            run_cli(&args, &env, None).await
        }
    };
    let out = add(&["--region", "us"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("dry run") && stdout.contains("Nothing was stored"),
        "{stdout}"
    );
    // A wrong region is still detected; nothing is stored either way.
    let out = add(&["--region", "eu"]).await;
    assert!(!out.status.success());
    assert!(text(&out).1.contains("--region us"), "{:?}", text(&out));
    assert_eq!(
        db::count(&pool, "SELECT count(*) FROM sspm.instances").await,
        0
    );
    assert_eq!(db::count(&pool, "SELECT count(*) FROM sspm.scans").await, 0);
}

/// Piped tables fit 80 columns: long cells end in an ellipsis on one line instead of
/// wrapping mid-word; `--wide` shows them in full.
#[tokio::test]
async fn tables_fit_80_columns_and_wide_shows_everything() {
    let out = run_cli(&["checks"], &[], None).await;
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    for line in stdout.lines() {
        assert!(
            line.chars().count() <= 80,
            "{} chars: {line}",
            line.chars().count()
        );
    }
    assert!(stdout.contains('…'), "{stdout}");
    let out = run_cli(&["checks", "--wide"], &[], None).await;
    let (wide, _) = text(&out);
    assert!(wide.lines().any(|l| l.chars().count() > 80), "{wide}");
    assert!(!wide.contains('…'));
    // Every catalog title appears whole with --wide.
    let json = run_cli(&["checks", "--format", "json"], &[], None).await;
    let catalog: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    for check in catalog.as_array().unwrap() {
        let title = check["title"].as_str().unwrap();
        assert!(wide.contains(title), "{title}");
    }
}
