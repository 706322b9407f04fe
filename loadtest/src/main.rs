//! The command line: parse, run one scenario, write the report.
//!
//! Exit status: 0 when the run passed, 1 when it finished but failed its
//! checks (loss, duplication, reordering, nothing measured), 2 when it
//! could not run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use meshi_loadtest::scenario::{ChurnOpts, ConnectOpts, MixedOpts, PairsOpts, RoomsOpts};
use meshi_loadtest::{Env, EnvOptions, Scenario};

#[derive(Parser)]
#[command(
    name = "meshi-loadtest",
    version,
    about = "Loads a meshi server over its socket protocol and checks every delivery",
    long_about = "Loads a meshi server over its socket protocol and checks every delivery.\n\n\
        Targets must be loopback addresses unless --i-own-this-target is given. Every scenario \
        is bounded by its counts and duration and stops by itself. A run with lost, duplicated \
        or reordered messages exits with status 1."
)]
struct Cli {
    #[command(flatten)]
    env: EnvOptions,

    /// Write the report as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,

    /// Write the report as a self-contained HTML page to this file.
    #[arg(long, global = true)]
    html: Option<PathBuf>,

    #[command(subcommand)]
    scenario: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Open N authenticated sockets at a set rate and hold them.
    Connect(ConnectOpts),
    /// R rooms of M members; P publishers per room at a total rate.
    Rooms(RoomsOpts),
    /// K matched pairs ping-ponging persisted direct messages.
    Pairs(PairsOpts),
    /// Sockets connecting, joining, leaving and disconnecting in a storm.
    Churn(ChurnOpts),
    /// Idle sockets, rooms, pairs and churn side by side.
    Mixed(MixedOpts),
    /// One worker process of a run with --workers; started by the tool.
    #[command(hide = true)]
    Worker,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("meshi-loadtest: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<bool> {
    let scenario = match cli.scenario {
        Command::Connect(o) => Scenario::Connect(o),
        Command::Rooms(o) => Scenario::Rooms(o),
        Command::Pairs(o) => Scenario::Pairs(o),
        Command::Churn(o) => Scenario::Churn(o),
        Command::Mixed(o) => Scenario::Mixed(o),
        // A worker's options and report travel over its stdin and stdout.
        Command::Worker => return meshi_loadtest::worker::serve().await,
    };
    let env = Env::new(cli.env)?;
    let report = meshi_loadtest::run(env, scenario).await?;
    print!("{}", report.summary());
    if let Some(path) = &cli.json {
        std::fs::write(path, report.to_json())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &cli.html {
        std::fs::write(path, meshi_loadtest::html::render(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.passed)
}
