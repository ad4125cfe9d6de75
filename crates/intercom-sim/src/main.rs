//! `intercom-sim`: the project's Intercom API simulator, for demos, tests and benchmarks.
//! A binary of its own so that the scanner's binary ships no test double.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use intercom_sim::generate::{generate, GenerateParams};
use intercom_sim::{Region, Scenario, Simulator};

/// The Intercom API simulator (tests and demos only), or a scenario generator.
#[derive(Debug, Parser)]
#[command(
    name = "intercom-sim",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  \
        intercom-sim --listen 127.0.0.1:8089 --scenario scenarios/demo.json\n  \
        intercom-sim generate --workspaces 100 --admins 50 --events 500 > big.json\n\n\
        Point the scanner at it with SSPM__INTERCOM__BASE_URL__US=http://127.0.0.1:8089/us \
        (and /eu, /au). Scenario format and faults: docs/SIMULATOR.md."
)]
struct SimulateArgs {
    #[command(subcommand)]
    command: Option<SimulateCommand>,
    /// Address to listen on (127.0.0.1:0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    /// Scenario file (JSON; see docs/SIMULATOR.md).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum SimulateCommand {
    /// Write a generated scenario (N workspaces x M admins x K events) as JSON to stdout.
    Generate {
        #[arg(long, default_value_t = 10)]
        workspaces: usize,
        #[arg(long, default_value_t = 20)]
        admins: usize,
        #[arg(long, default_value_t = 100)]
        events: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(SimulateArgs::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    if let Some(SimulateCommand::Generate {
        workspaces,
        admins,
        events,
        seed,
    }) = args.command
    {
        let scenario = generate(&GenerateParams {
            workspaces,
            admins_per_workspace: admins,
            events_per_workspace: events,
            seed,
            ..GenerateParams::default()
        });
        println!("{}", serde_json::to_string(&scenario)?);
        return Ok(ExitCode::SUCCESS);
    }
    let path = args.scenario.context(
        "--scenario FILE is required (see docs/SIMULATOR.md; scenarios/demo.json is an example)",
    )?;
    let scenario = Scenario::load(&path)?;
    let sim = Simulator::start(scenario, args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // The first stdout line is machine-readable so scripts can find the port.
    println!("listening on http://{}", sim.addr());
    for region in Region::ALL {
        eprintln!("  {region}: {}", sim.base_url(region));
    }
    tokio::signal::ctrl_c().await.ok();
    sim.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
