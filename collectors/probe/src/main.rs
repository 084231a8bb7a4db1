//! `capsight-probe`: active capacity probes -> launch-attempt signals, within a hard daily
//! budget, audited in ClickHouse, with a sweeper for anything left behind.
//! Configuration: sections `telemetry`, `kafka`, `publisher`, `clickhouse`, `cloud`, `probe` of
//! `deploy/config/capsight.toml`; AWS endpoint and credentials from the standard AWS chain.

use std::sync::Arc;

use anyhow::Context;
use capsight_catalog::Catalog;
use capsight_clickhouse::ClickHouseSettings;
use capsight_cloud::{
    CloudSettings,
    aws::AwsAdapter,
    regional::{aws_adapters, watched_aws_regions},
};
use capsight_kafka::KafkaSettings;
use capsight_probe::{ProbeSettings, Prober, Scheduler, audit::Audit, budget::Budget};
use capsight_publisher::{Publisher, PublisherSettings};
use capsight_runtime::{config::ConfigArgs, shutdown::Shutdown, telemetry::TelemetrySettings};
use clap::Parser;
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "capsight prober: budgeted capacity probes -> launch-attempt signals"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Sweep, run one planning pass, wait for its probes, flush and exit.
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
    clickhouse: ClickHouseSettings,
    cloud: CloudSettings,
    probe: ProbeSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = capsight_runtime::config::load(cli.config.config.as_deref())?;
    capsight_runtime::telemetry::init("capsight-probe", &config.telemetry)?;
    let catalog = Arc::new(Catalog::load_or_embedded(cli.catalog.as_deref())?);
    let regions = watched_aws_regions(&config.probe.regions, &catalog)?;
    let adapters = aws_adapters(&config.cloud, Arc::clone(&catalog), &regions).await?;
    let account = match AwsAdapter::from_env(config.cloud.clone(), Arc::clone(&catalog)).await {
        Ok(a) => match a.caller_identity().await {
            Ok((account, _)) => account,
            Err(e) => {
                tracing::warn!(error = %e, "caller identity unknown");
                "unknown".to_owned()
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "caller identity unknown");
            "unknown".to_owned()
        }
    };
    let audit = Audit::new(&config.clickhouse)?;
    // no probe before today's spend is known: a restart must not reset the budget
    let now = chrono::Utc::now();
    let spent = audit
        .spent_on(&config.probe.instance, now.date_naive())
        .await
        .context(
            "recovering today's probe spend from probe_audit (is ClickHouse up and migrated?)",
        )?;
    let budget = Budget::with_spent(config.probe.daily_budget_usd, spent, now);
    tracing::info!(prober = %config.probe.instance, %account, regions = regions.len(),
        spent_today_usd = spent, limit_usd = budget.limit(), "prober starting");
    let publisher = Publisher::new(&config.kafka, &config.publisher, "probe")?;
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    tokio::spawn({
        let (p, s) = (publisher.clone(), shutdown.clone());
        let every = config.publisher.report_interval;
        async move { p.report(every, s).await }
    });
    let prober = Arc::new(Prober::new(
        adapters,
        catalog,
        config.probe.clone(),
        publisher.clone(),
        audit,
        budget,
        account,
    ));
    let scheduler = Arc::new(Scheduler::new(prober)?);
    let reports = scheduler.run(cli.once, shutdown).await;
    if cli.once {
        tracing::info!(probes = reports.len(), "probe pass done");
    }
    publisher.flush(std::time::Duration::from_secs(30)).await?;
    Ok(())
}
