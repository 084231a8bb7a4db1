//! `capsight-quota`: GPU family quotas per region -> quota signals (headroom in instances).
//! Configuration: sections `telemetry`, `kafka`, `publisher`, `cloud`, `quota` of
//! `deploy/config/capsight.toml`; AWS endpoint and credentials from the standard AWS chain.

use std::sync::Arc;

use capsight_catalog::Catalog;
use capsight_cloud::{
    CloudSettings,
    regional::{aws_adapters, watched_aws_regions},
};
use capsight_kafka::KafkaSettings;
use capsight_publisher::{Publisher, PublisherSettings};
use capsight_quota::{QuotaCollector, QuotaSettings};
use capsight_runtime::{config::ConfigArgs, shutdown::Shutdown, telemetry::TelemetrySettings};
use clap::Parser;
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "capsight quota collector: family quotas -> headroom signals"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Read every quota once, publish, flush and exit.
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
    cloud: CloudSettings,
    quota: QuotaSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = capsight_runtime::config::load(cli.config.config.as_deref())?;
    capsight_runtime::telemetry::init("capsight-quota", &config.telemetry)?;
    let catalog = Arc::new(Catalog::load_or_embedded(cli.catalog.as_deref())?);
    let regions = watched_aws_regions(&config.quota.regions, &catalog)?;
    let adapters = aws_adapters(&config.cloud, Arc::clone(&catalog), &regions).await?;
    let publisher = Publisher::new(&config.kafka, &config.publisher, "quota")?;
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    tracing::info!(regions = regions.len(), interval = ?config.quota.interval, "quota collector starting");
    let collector = Arc::new(tokio::sync::Mutex::new(QuotaCollector::new(
        adapters,
        catalog,
        config.quota.clone(),
        publisher.clone(),
    )));
    capsight_runtime::periodic::every(config.quota.interval, cli.once, &shutdown, || {
        let collector = Arc::clone(&collector);
        async move {
            let r = collector.lock().await.poll_once(chrono::Utc::now()).await;
            tracing::info!(
                published = r.published,
                unchanged = r.unchanged,
                errors = r.errors,
                "quota pass done"
            );
        }
    })
    .await;
    publisher.flush(std::time::Duration::from_secs(30)).await?;
    Ok(())
}
