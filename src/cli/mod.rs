//! Command-line interface: argument parsing, then one module per command family.
//! Results go to stdout (tables or JSON); logs and errors go to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Settings, Sources};

mod attest;
mod audit;
mod checks;
mod console;
mod context;
mod exception;
mod findings;
mod instance;
mod keygen;
mod migrate;
mod output;
mod rotate_key;
mod run;
mod scan;
mod user;

pub use context::Context;

#[derive(Debug, Parser)]
#[command(
    name = "intercom-sspm",
    version,
    about = "Security posture scanner for Intercom workspaces",
    long_about = "Security posture scanner for Intercom workspaces.\n\n\
        Onboard workspaces with a read-only access token and their region, then run the \
        daemon (`intercom-sspm run`) to scan them on a schedule. Findings are written to \
        the Postgres schema `sspm`.\n\n\
        Configuration: built-in defaults < config/default.toml < --config FILE (or SSPM_CONFIG) \
        < environment SSPM__SECTION__KEY. DATABASE_URL sets database.url.",
    propagate_version = true
)]
pub struct Cli {
    /// Configuration file (TOML); overrides config/default.toml. Also SSPM_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: scan due instances on their schedules; serve /livez, /readyz and
    /// /metrics on server.listen. SIGTERM or SIGINT drains and exits 0.
    Run,
    /// Apply database migrations (schema `sspm`) and exit.
    Migrate,
    /// Print a new random token key (base64, 32 bytes) for security.token_key.
    Keygen,
    /// Onboard and manage Intercom workspaces ("instances").
    #[command(subcommand)]
    Instance(instance::InstanceCommand),
    /// Scan one instance now, in the foreground, and print a summary (exit 1 unless it completed).
    Scan(scan::ScanArgs),
    /// List findings (open by default) as a table, JSON, CSV or OCSF.
    Findings(findings::FindingsArgs),
    /// Print the check catalog.
    Checks(checks::ChecksArgs),
    /// Accept risks: exceptions mute matching findings until removed or expired.
    #[command(subcommand)]
    Exception(exception::ExceptionCommand),
    /// Attest manual controls (settings the API cannot show), with evidence and an expiry.
    #[command(subcommand)]
    Attest(attest::AttestCommand),
    /// Re-seal every stored token under the current token key (after adding a new key).
    RotateKey(rotate_key::RotateKeyArgs),
    /// Manage local users of the web console.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Read the audit trail of changes made through the CLI and the console.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Serve the web console alone (no scans) on console.listen; needs console.auth.
    Console(console::ConsoleArgs),
}

#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // keygen needs no configuration at all: it must work before any exists.
    match cli.command {
        Command::Keygen => return keygen::run(),
        Command::Checks(args) => return checks::run(args),
        _ => {}
    }
    let settings = Settings::load(&Sources::from_process(cli.config.clone()))?;
    crate::telemetry::init(&settings.log);
    let ctx = Context::new(settings);
    match cli.command {
        Command::Keygen | Command::Checks(_) => {
            unreachable!("handled above")
        }
        Command::Run => run::run(&ctx).await,
        Command::Migrate => migrate::run(&ctx).await,
        Command::Instance(cmd) => instance::run(&ctx, cmd).await,
        Command::Scan(args) => scan::run(&ctx, args).await,
        Command::Findings(args) => findings::run(&ctx, args).await,
        Command::Exception(cmd) => exception::run(&ctx, cmd).await,
        Command::Attest(cmd) => attest::run(&ctx, cmd).await,
        Command::RotateKey(args) => rotate_key::run(&ctx, args).await,
        Command::User(cmd) => user::run(&ctx, cmd).await,
        Command::Audit(cmd) => audit::run(&ctx, cmd).await,
        Command::Console(args) => console::run(&ctx, args).await,
    }
}
