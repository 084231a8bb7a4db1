//! `capsight-spot`: spot prices, placement scores, Spot Advisor buckets, capacity blocks and
//! instance-type offerings -> signals, each on its own cadence. Configuration: sections
//! `telemetry`, `kafka`, `publisher`, `cloud`, `spot` of `deploy/config/capsight.toml`; AWS
//! endpoint and credentials from the standard AWS chain.

use std::{sync::Arc, time::Duration};

use capsight_catalog::Catalog;
use capsight_cloud::{
    CloudSettings,
    regional::{aws_adapters, watched_aws_regions},
};
use capsight_kafka::KafkaSettings;
use capsight_publisher::{Publisher, PublisherSettings};
use capsight_runtime::{
    config::ConfigArgs, periodic::every, shutdown::Shutdown, telemetry::TelemetrySettings,
};
use capsight_spot::{SpotCollector, SpotSettings};
use clap::Parser;
use serde::Deserialize;
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "capsight spot collector: spot market and offerings -> signals"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Run every source once, publish, flush and exit.
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
    spot: SpotSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = capsight_runtime::config::load(cli.config.config.as_deref())?;
    capsight_runtime::telemetry::init("capsight-spot", &config.telemetry)?;
    let catalog = Arc::new(Catalog::load_or_embedded(cli.catalog.as_deref())?);
    let regions = watched_aws_regions(&config.spot.regions, &catalog)?;
    let adapters = aws_adapters(&config.cloud, Arc::clone(&catalog), &regions).await?;
    let publisher = Publisher::new(&config.kafka, &config.publisher, "spot")?;
    let collector = Arc::new(Mutex::new(SpotCollector::new(
        adapters,
        catalog,
        config.spot.clone(),
        publisher.clone(),
    )?));
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    tracing::info!(regions = regions.len(), "spot collector starting");
    if cli.once {
        let r = collector.lock().await.all_once(chrono::Utc::now()).await;
        tracing::info!(published = r.published, errors = r.errors, "spot pass done");
    } else {
        let s = &config.spot;
        let c = &collector;
        let sd = &shutdown;
        tokio::join!(
            every(s.price_interval, false, sd, || async move {
                let r = c.lock().await.prices(chrono::Utc::now()).await;
                tracing::info!(published = r.published, errors = r.errors, "spot prices");
            }),
            every(s.placement_interval, false, sd, || async move {
                let r = c.lock().await.placement(chrono::Utc::now()).await;
                tracing::info!(
                    published = r.published,
                    errors = r.errors,
                    "placement scores"
                );
            }),
            every(s.offerings_interval, false, sd, || async move {
                let r = c.lock().await.offerings(chrono::Utc::now()).await;
                tracing::info!(
                    published = r.published,
                    errors = r.errors,
                    "offerings and capacity blocks"
                );
            }),
            every(s.advisor_interval, false, sd, || async move {
                let r = c.lock().await.advisor(chrono::Utc::now()).await;
                tracing::info!(published = r.published, errors = r.errors, "spot advisor");
            }),
        );
    }
    publisher.flush(Duration::from_secs(30)).await?;
    Ok(())
}
