//! `intercom-sspm simulate`: the project's Intercom API simulator, for demos, tests and
//! benchmarks. Never used by production code paths.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::region::Region;
use crate::simulator::generate::{generate, GenerateParams};
use crate::simulator::{Scenario, Simulator};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SimulateArgs {
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

pub async fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
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
