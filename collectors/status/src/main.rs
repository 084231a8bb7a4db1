//! `capsight-status`: polls provider status feeds and publishes status signals on change.
//! Configuration: sections `telemetry`, `kafka`, `publisher`, `status` of
//! `deploy/config/capsight.toml`, overridable by `--config` and `CAPSIGHT_*` variables.

use std::sync::Arc;

use anyhow::Context;
use capsight_kafka::KafkaSettings;
use capsight_publisher::{Publisher, PublisherSettings};
use capsight_runtime::{config::ConfigArgs, shutdown::Shutdown, telemetry::TelemetrySettings};
use capsight_status::{CatalogKeys, Collector, StatusSettings};
use clap::Parser;
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "capsight status collector: provider status feeds -> status signals"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Poll every feed once, publish, flush and exit.
    #[arg(long)]
    once: bool,
    /// GPU catalog file (default: the catalog built into the binary).
    #[arg(long, env = "CAPSIGHT_CATALOG", value_name = "PATH")]
    catalog: Option<std::path::PathBuf>,
}

#[derive(Debug, Deserialize)]
struct Config {
    telemetry: TelemetrySettings,
    kafka: KafkaSettings,
    publisher: PublisherSettings,
    status: StatusSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = capsight_runtime::config::load(cli.config.config.as_deref())?;
    capsight_runtime::telemetry::init("capsight-status", &config.telemetry)?;
    let catalog = capsight_catalog::Catalog::load_or_embedded(cli.catalog.as_deref())?;
    let publisher = Publisher::new(&config.kafka, &config.publisher, "status")
        .context("creating the signal publisher")?;
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    tokio::spawn({
        let publisher = publisher.clone();
        let shutdown = shutdown.clone();
        let every = config.publisher.report_interval;
        async move { publisher.report(every, shutdown).await }
    });
    let collector = Collector::new(&config.status, publisher, Arc::new(CatalogKeys(catalog)))?;
    tracing::info!(feeds = config.status.feeds.len(), interval = ?config.status.poll_interval, "status collector starting");
    let total =
        capsight_status::run(collector, config.status.poll_interval, cli.once, shutdown).await;
    tracing::info!(?total, "status collector stopped");
    Ok(())
}
