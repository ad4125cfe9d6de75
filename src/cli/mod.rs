//! Command-line interface: argument parsing, then one module per command family.
//! Results go to stdout (tables or JSON); logs and errors go to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::{Settings, Sources};

/// `println!` for command output that returns the write error instead of panicking, so a
/// reader that goes away (`| head`) ends the command quietly (see `is_broken_pipe`).
/// Use it in every command: `println!` panics with "failed printing to stdout".
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod alerts;
mod attest;
mod audit;
mod channel;
mod checks;
mod config_check;
mod console;
mod context;
mod exception;
mod exit;
pub mod expiry;
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

/// `--version`: the crate version and the commit it was built from (build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SSPM_GIT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "intercom-sspm",
    version = VERSION,
    about = "Security posture scanner for Intercom workspaces",
    long_about = "Security posture scanner for Intercom workspaces.\n\n\
        Onboard workspaces with a read-only access token and their region, then run the \
        daemon (`intercom-sspm run`) to scan them on a schedule. Findings are written to \
        the Postgres schema `sspm`.\n\n\
        Configuration: built-in defaults < config/default.toml < --config FILE (or SSPM_CONFIG) \
        < environment SSPM__SECTION__KEY. DATABASE_URL sets database.url.",
    after_help = concat!(
        "Examples:\n  \
        intercom-sspm migrate\n  \
        pass show intercom/acme | intercom-sspm instance add --name acme --region eu --token-stdin\n  \
        intercom-sspm scan acme\n  \
        intercom-sspm findings --severity high --format csv\n\n",
        "Exit codes:\n  \
        0  success\n  \
        1  a scan failed, or another error\n  \
        2  usage error (bad arguments)\n  \
        3  not found (no such instance, exception or attestation)\n  \
        4  database unavailable (cannot connect to Postgres)"
    ),
    propagate_version = true
)]
pub struct Cli {
    /// Configuration file (TOML); overrides config/default.toml. Also SSPM_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log only errors, without progress lines (commands log warnings by default; RUST_LOG wins).
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Tables: show every cell in full instead of fitting the terminal (or 80 columns).
    #[arg(long, global = true)]
    pub wide: bool,

    /// Log more: -v info, -vv debug, -vvv trace (the daemon logs at log.level).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: scan due instances on their schedules; serve /livez, /readyz and
    /// /metrics on server.listen. SIGTERM or SIGINT drains and exits 0.
    #[command(
        after_help = "Example:\n  intercom-sspm --config /etc/intercom-sspm/config.toml run"
    )]
    Run,
    /// Apply database migrations (schema `sspm`) and exit. Only `migrate` and `run` change
    /// the schema; other commands ask for it when it is not current.
    #[command(
        after_help = "Example:\n  DATABASE_URL=postgres://sspm@db/sspm intercom-sspm migrate"
    )]
    Migrate,
    /// Print a new random token key (base64, 32 bytes) for security.token_key.
    #[command(after_help = "Example:\n  intercom-sspm keygen > token.key && chmod 600 token.key")]
    Keygen,
    /// Onboard and manage Intercom workspaces ("instances").
    #[command(subcommand)]
    Instance(instance::InstanceCommand),
    /// Scan one instance (or --all) now, in the foreground, and print a summary (exit 1
    /// unless every scan completed).
    #[command(
        after_help = "Examples:\n  intercom-sspm scan acme\n  intercom-sspm scan --all --format json\n  intercom-sspm scan acme --queue"
    )]
    Scan(scan::ScanArgs),
    /// List findings (open by default) as a table, JSON, CSV or OCSF.
    #[command(
        after_help = "Examples:\n  intercom-sspm findings --instance acme --severity high\n  intercom-sspm findings --status all --format csv > findings.csv\n  intercom-sspm findings --format ocsf | vector --config siem.toml"
    )]
    Findings(findings::FindingsArgs),
    /// Print the check catalog.
    #[command(
        after_help = "Examples:\n  intercom-sspm checks\n  intercom-sspm checks --format json | jq '.[].id'"
    )]
    Checks(checks::ChecksArgs),
    /// Accept risks: exceptions mute matching findings until removed or expired.
    #[command(subcommand)]
    Exception(exception::ExceptionCommand),
    /// Attest manual controls (settings the API cannot show), with evidence and an expiry.
    #[command(subcommand)]
    Attest(attest::AttestCommand),
    /// Re-seal every stored token under the current token key (after adding a new key).
    #[command(
        after_help = "Examples:\n  intercom-sspm rotate-key --dry-run\n  intercom-sspm rotate-key"
    )]
    RotateKey(rotate_key::RotateKeyArgs),
    /// Validate the configuration and print the effective settings, secrets masked, with
    /// where each value came from.
    #[command(subcommand)]
    Config(config_check::ConfigCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  intercom-sspm completions bash > /etc/bash_completion.d/intercom-sspm\n  intercom-sspm completions zsh > \"${fpath[1]}/_intercom-sspm\"\n  intercom-sspm completions fish > ~/.config/fish/completions/intercom-sspm.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    #[command(
        after_help = "Example:\n  intercom-sspm man > /usr/local/share/man/man1/intercom-sspm.1"
    )]
    Man,
    /// Alert channels (webhook, Slack, email, PagerDuty) and their rules.
    #[command(subcommand)]
    Channel(channel::ChannelCommand),
    /// Alert messages and their delivery status (the outbox).
    #[command(subcommand)]
    Alerts(alerts::AlertsCommand),
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
    match cli.command {
        Command::Completions { shell } => return print_completions(shell),
        Command::Man => return print_man(),
        _ => {}
    }
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
        // The reader stopped reading (`| head`): like other Unix tools, stop quietly.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::code_for(&e)
        }
    }
}

fn print_completions(shell: clap_complete::Shell) -> ExitCode {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "intercom-sspm", &mut out);
    write_stdout(&out)
}

fn print_man() -> ExitCode {
    let mut out = Vec::new();
    match clap_mangen::Man::new(Cli::command()).render(&mut out) {
        Ok(()) => write_stdout(&out),
        Err(e) => {
            eprintln!("error: rendering the manual page: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes generated text; a closed pipe is a quiet success as everywhere else.
fn write_stdout(bytes: &[u8]) -> ExitCode {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether an error is a write to a closed pipe, directly or inside a CSV writer's error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let io = cause.downcast_ref::<std::io::Error>().or_else(|| {
            cause
                .downcast_ref::<csv::Error>()
                .and_then(|c| match c.kind() {
                    csv::ErrorKind::Io(io) => Some(io),
                    _ => None,
                })
        });
        io.is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    output::set_wide(cli.wide);
    output::set_quiet(cli.quiet);
    // keygen needs no configuration at all: it must work before any exists.
    match cli.command {
        Command::Keygen => return keygen::run(),
        Command::Checks(args) => return checks::run(args),
        _ => {}
    }
    let sources = Sources::from_process(cli.config.clone());
    if let Command::Config(cmd) = cli.command {
        return config_check::run(&sources, cmd);
    }
    let settings = Settings::load(&sources)?;
    let verbosity = match (&cli.command, cli.quiet, cli.verbose) {
        (_, true, _) => crate::telemetry::Verbosity::Quiet,
        (_, false, n) if n > 0 => crate::telemetry::Verbosity::Verbose(n),
        // The daemon logs at log.level, and so does a command when the operator set it;
        // otherwise a command's own output is its report and it logs warnings only.
        (Command::Run, false, _) => crate::telemetry::Verbosity::Configured,
        _ if crate::config::explicit_source(&sources, "log.level").is_some() => {
            crate::telemetry::Verbosity::Configured
        }
        _ => crate::telemetry::Verbosity::Command,
    };
    crate::telemetry::init(&settings.log, verbosity)?;
    let ctx = Context::new(settings);
    match cli.command {
        Command::Keygen
        | Command::Checks(_)
        | Command::Config(_)
        | Command::Completions { .. }
        | Command::Man => {
            unreachable!("handled above")
        }
        Command::Run => run::run(&ctx, &sources).await,
        Command::Migrate => migrate::run(&ctx).await,
        Command::Instance(cmd) => instance::run(&ctx, cmd).await,
        Command::Scan(args) => scan::run(&ctx, args).await,
        Command::Findings(args) => findings::run(&ctx, args).await,
        Command::Exception(cmd) => exception::run(&ctx, cmd).await,
        Command::Attest(cmd) => attest::run(&ctx, cmd).await,
        Command::RotateKey(args) => rotate_key::run(&ctx, args).await,
        Command::Channel(cmd) => channel::run(&ctx, cmd).await,
        Command::Alerts(cmd) => alerts::run(&ctx, cmd).await,
        Command::User(cmd) => user::run(&ctx, cmd).await,
        Command::Audit(cmd) => audit::run(&ctx, cmd).await,
        Command::Console(args) => console::run(&ctx, args).await,
    }
}
