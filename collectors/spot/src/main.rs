//! `capsight-spot`: spot prices, placement scores, Spot Advisor buckets, capacity blocks and
//! instance-type offerings -> signals, each on its own cadence. Configuration: sections
//! `telemetry`, `kafka`, `publisher`, `cloud`, `spot` of `deploy/config/capsight.toml`; AWS
//! endpoint and credentials from the standard AWS chain.

use std::sync::Arc;

use capsight_cloud::{
    CloudSettings,
    regional::{aws_adapters, watched_aws_regions},
};
use capsight_collector_kit::{Collector, CollectorArgs};
use capsight_runtime::periodic::every;
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
    args: CollectorArgs,
}

/// The sections of this collector.
#[derive(Debug, Deserialize)]
struct Config {
    cloud: CloudSettings,
    spot: SpotSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { args } = Cli::parse();
    let c: Collector<Config> = Collector::start(
        "capsight-spot",
        "spot",
        &args.config,
        args.catalog.as_deref(),
    )?;
    let config = &c.config;
    let regions = watched_aws_regions(&config.spot.regions, &c.catalog)?;
    let adapters = aws_adapters(&config.cloud, Arc::clone(&c.catalog), &regions).await?;
    let collector = Arc::new(Mutex::new(SpotCollector::new(
        adapters,
        Arc::clone(&c.catalog),
        config.spot.clone(),
        c.publisher.clone(),
    )?));
    let shutdown = c.shutdown.clone();
    tracing::info!(regions = regions.len(), "spot collector starting");
    if args.once {
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
    c.finish().await
}
