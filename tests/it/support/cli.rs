//! The real `intercom-sspm` binary, run with a clean environment.

use std::process::{Command, Output};

use intercom_sim::Simulator;
use sqlx::PgPool;

/// Environment for a CLI command: every region at `sim` (a closed port when `None`), the
/// test's database, and token key `key_b64`.
pub fn env(pool: &PgPool, sim: Option<&Simulator>, key_b64: &str) -> Vec<(String, String)> {
    let mut env = super::sim::sim_env(sim);
    env.push(("DATABASE_URL".into(), super::db::database_url(pool)));
    env.push(("SSPM__SECURITY__TOKEN_KEY".into(), key_b64.into()));
    env
}

/// Runs the real binary with a clean environment plus `env`, feeding `stdin`. Blocking
/// work runs off the test's runtime so an in-process simulator keeps serving.
pub async fn run_cli(args: &[&str], env: &[(String, String)], stdin: Option<&str>) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env = env.to_vec();
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || run_cli_blocking(&args, &env, stdin.as_deref()))
        .await
        .expect("cli runner")
}

fn run_cli_blocking(args: &[String], env: &[(String, String)], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_intercom-sspm"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().cloned())
        // No config/default.toml from the working directory: tests state what they use.
        .current_dir(std::env::temp_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("binary runs");
    if let Some(input) = stdin {
        let written = child.stdin.take().unwrap().write_all(input.as_bytes());
        // A command that rejects its arguments exits before reading stdin: the pipe is
        // then closed (EPIPE), which is that command's answer, not a harness failure.
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.expect("stdin written to the binary"),
        }
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("binary finishes")
}

/// (stdout, stderr) of a finished command, lossily decoded.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}
