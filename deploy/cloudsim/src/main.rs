//! `cloudsim`: the simulated cloud. Parses flags, loads `[telemetry]` and `[cloudsim]` config,
//! loads the scenario and runs [`capsight_cloudsim::start`] until SIGINT/SIGTERM.
//!
//! Point the AWS SDK at it with `AWS_ENDPOINT_URL=http://127.0.0.1:5599` and an access key id
//! the scenario declares (see `docs/cloudsim.md`).

use std::path::PathBuf;

use anyhow::Context;
use capsight_cloudsim::{CloudsimSettings, DEFAULT_SCENARIO, scenario::Scenario};
use capsight_runtime::{config::ConfigArgs, shutdown::Shutdown, telemetry::TelemetrySettings};
use clap::Parser;
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Simulated cloud: EC2 Query, Service Quotas and STS on loopback"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Scenario file (overrides cloudsim.scenario; default: the built-in demo scenario).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// RNG seed (overrides the scenario's `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Simulated seconds per real second (overrides cloudsim.time_scale).
    #[arg(long)]
    time_scale: Option<f64>,
    /// Listen address (overrides cloudsim.listen).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Deserialize)]
struct Config {
    telemetry: TelemetrySettings,
    cloudsim: CloudsimSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config: Config = capsight_runtime::config::load(cli.config.config.as_deref())?;
    capsight_runtime::telemetry::init("cloudsim", &config.telemetry)?;
    if let Some(t) = cli.time_scale {
        config.cloudsim.time_scale = t;
    }
    if let Some(l) = cli.listen {
        config.cloudsim.listen = l;
    }
    let path = cli.scenario.or_else(|| {
        (!config.cloudsim.scenario.is_empty()).then(|| PathBuf::from(&config.cloudsim.scenario))
    });
    let scenario = match &path {
        Some(p) => Scenario::load(p)?,
        None => Scenario::parse(DEFAULT_SCENARIO).context("built-in demo scenario")?,
    };
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let running = capsight_cloudsim::start(&config.cloudsim, scenario, cli.seed, shutdown).await?;
    running.join().await?;
    Ok(())
}
