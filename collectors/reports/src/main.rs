//! `capsight-reports`: the crowdsourced intake (HTTP, default 127.0.0.1:8088).
//! Configuration: sections `telemetry`, `kafka`, `publisher`, `tenancy`, `clickhouse`, `reports` of
//! `deploy/config/capsight.toml`, overridable by `--config` and `CAPSIGHT_*` variables.

use std::sync::Arc;

use anyhow::Context;
use capsight_catalog::Catalog;
use capsight_clickhouse::ClickHouseSettings;
use capsight_kafka::KafkaSettings;
use capsight_publisher::{Publisher, PublisherSettings};
use capsight_reports::{ReportsSettings, launched::LaunchedInstances, server::AppState};
use capsight_runtime::{config::ConfigArgs, shutdown::Shutdown, telemetry::TelemetrySettings};
use capsight_tenancy::{SharedRegistry, TenancySettings, TenantHasher};
use clap::Parser;
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "capsight reports intake: tenants' reports and EventBridge events -> signals"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Deserialize)]
struct Config {
    telemetry: TelemetrySettings,
    kafka: KafkaSettings,
    publisher: PublisherSettings,
    tenancy: TenancySettings,
    clickhouse: ClickHouseSettings,
    reports: ReportsSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = capsight_runtime::config::load(cli.config.config.as_deref())?;
    capsight_runtime::telemetry::init("capsight-reports", &config.telemetry)?;
    let publisher = Publisher::new(&config.kafka, &config.publisher, "reports")?;
    let registry = SharedRegistry::open(
        config.tenancy.registry.clone(),
        config.reports.registry_recheck,
    )?;
    let hasher = TenantHasher::new(&config.tenancy.hash_secret);
    let listener = tokio::net::TcpListener::bind(config.reports.listen)
        .await
        .with_context(|| format!("binding {}", config.reports.listen))?;
    tracing::info!(listen = %config.reports.listen, "reports intake listening");
    let launched = LaunchedInstances::new(config.clickhouse.client()?);
    let state = Arc::new(
        AppState::new(
            publisher.clone(),
            registry,
            hasher,
            config.reports.clone(),
            config.tenancy.default_rate_per_minute,
            Arc::new(Catalog::embedded().context("GPU catalog")?),
        )
        .with_launched(launched),
    );
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    capsight_reports::run(state, listener, publisher, shutdown).await?;
    Ok(())
}
