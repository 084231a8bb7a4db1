//! `cloudsim`: the simulated cloud. Parses flags, loads `[telemetry]` and `[cloudsim]` config
//! and runs [`capsight_cloudsim::run`] until SIGINT/SIGTERM.
//!
//! Point the AWS SDK at it with `AWS_ENDPOINT_URL=http://127.0.0.1:5599` and an access key id
//! the scenario declares (see `docs/cloudsim.md`).

use std::path::PathBuf;

use capsight_cloudsim::CloudsimSettings;
use capsight_runtime::{config::ConfigArgs, process::Process};
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
    cloudsim: CloudsimSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let p = Process::start_with("cloudsim", &cli.config, |c: &mut Config| {
        if let Some(t) = cli.time_scale {
            c.cloudsim.time_scale = t;
        }
        if let Some(l) = cli.listen {
            c.cloudsim.listen = l;
        }
    })?;
    let scenario = cli.scenario.as_deref();
    let ran = capsight_cloudsim::run(&p.config.cloudsim, scenario, cli.seed, p.shutdown).await;
    capsight_runtime::telemetry::finish().await;
    ran?;
    Ok(())
}
