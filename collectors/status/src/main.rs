//! `capsight-status`: polls provider status feeds and publishes status signals on change.
//! Configuration: sections `telemetry`, `kafka`, `publisher`, `status` of
//! `deploy/config/capsight.toml`, overridable by `--config` and `CAPSIGHT_*` variables.

use std::sync::Arc;

use capsight_collector_kit::{Collector as Process, CollectorArgs};
use capsight_status::{CatalogKeys, Collector, StatusSettings};
use clap::Parser;
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "capsight status collector: provider status feeds -> status signals"
)]
struct Cli {
    /// `--once`: poll every feed once, publish, flush and exit.
    #[command(flatten)]
    args: CollectorArgs,
}

/// The sections of this collector.
#[derive(Debug, Deserialize)]
struct Config {
    status: StatusSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { args } = Cli::parse();
    let p: Process<Config> = Process::start(
        "capsight-status",
        "status",
        &args.config,
        args.catalog.as_deref(),
    )?;
    let status = &p.config.status;
    let keys = Arc::new(CatalogKeys((*p.catalog).clone()));
    let collector = Collector::new(status, p.publisher.clone(), keys)?;
    tracing::info!(feeds = status.feeds.len(), interval = ?status.poll_interval, "status collector starting");
    // polls until shutdown (or once), then flushes
    let total = capsight_status::run(
        collector,
        status.poll_interval,
        args.once,
        p.shutdown.clone(),
    )
    .await;
    tracing::info!(?total, "status collector stopped");
    Ok(())
}
