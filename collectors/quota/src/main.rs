//! `capsight-quota`: GPU family quotas per region -> quota signals (headroom in instances).
//! Configuration: sections `telemetry`, `kafka`, `publisher`, `cloud`, `quota` of
//! `deploy/config/capsight.toml`; AWS endpoint and credentials from the standard AWS chain.

use std::sync::Arc;

use capsight_cloud::{
    CloudSettings,
    regional::{aws_adapters, watched_aws_regions},
};
use capsight_collector_kit::{Collector, CollectorArgs};
use capsight_quota::{QuotaCollector, QuotaSettings};
use clap::Parser;
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "capsight quota collector: family quotas -> headroom signals"
)]
struct Cli {
    #[command(flatten)]
    args: CollectorArgs,
}

/// The sections of this collector.
#[derive(Debug, Deserialize)]
struct Config {
    cloud: CloudSettings,
    quota: QuotaSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { args } = Cli::parse();
    let c: Collector<Config> = Collector::start(
        "capsight-quota",
        "quota",
        &args.config,
        args.catalog.as_deref(),
    )?;
    let config = &c.config;
    let regions = watched_aws_regions(&config.quota.regions, &c.catalog)?;
    let adapters = aws_adapters(&config.cloud, Arc::clone(&c.catalog), &regions).await?;
    tracing::info!(regions = regions.len(), interval = ?config.quota.interval, "quota collector starting");
    let collector = Arc::new(tokio::sync::Mutex::new(QuotaCollector::new(
        adapters,
        Arc::clone(&c.catalog),
        config.quota.clone(),
        c.publisher.clone(),
    )));
    capsight_runtime::periodic::every(config.quota.interval, args.once, &c.shutdown, || {
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
    c.finish().await
}
