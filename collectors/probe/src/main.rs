//! `capsight-probe`: active capacity probes -> launch-attempt signals, within a hard daily
//! budget, audited in ClickHouse, with a sweeper for anything left behind.
//! Configuration: sections `telemetry`, `kafka`, `publisher`, `clickhouse`, `cloud`, `probe` of
//! `deploy/config/capsight.toml`; AWS endpoint and credentials from the standard AWS chain.

use std::sync::Arc;

use anyhow::Context;
use capsight_clickhouse::ClickHouseSettings;
use capsight_cloud::{
    CloudSettings,
    aws::AwsAdapter,
    regional::{aws_adapters, watched_aws_regions},
};
use capsight_collector_kit::{Collector, CollectorArgs};
use capsight_probe::{ProbeSettings, Prober, Scheduler, audit::Audit, budget::Budget};
use clap::Parser;
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "capsight prober: budgeted capacity probes -> launch-attempt signals"
)]
struct Cli {
    /// `--once`: sweep, run one planning pass, wait for its probes, flush and exit.
    #[command(flatten)]
    args: CollectorArgs,
}

/// The sections of this collector.
#[derive(Debug, Deserialize)]
struct Config {
    clickhouse: ClickHouseSettings,
    cloud: CloudSettings,
    probe: ProbeSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { args } = Cli::parse();
    let c: Collector<Config> = Collector::start(
        "capsight-probe",
        "probe",
        &args.config,
        args.catalog.as_deref(),
    )?;
    let (config, catalog) = (&c.config, &c.catalog);
    let regions = watched_aws_regions(&config.probe.regions, catalog)?;
    let adapters = aws_adapters(&config.cloud, Arc::clone(catalog), &regions).await?;
    let account = match AwsAdapter::from_env(config.cloud.clone(), Arc::clone(catalog)).await {
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
    let prober = Arc::new(Prober::new(
        adapters,
        Arc::clone(catalog),
        config.probe.clone(),
        c.publisher.clone(),
        audit,
        budget,
        account,
    ));
    let scheduler = Arc::new(Scheduler::new(prober)?);
    let reports = scheduler.run(args.once, c.shutdown.clone()).await;
    if args.once {
        tracing::info!(probes = reports.len(), "probe pass done");
    }
    c.finish().await
}
