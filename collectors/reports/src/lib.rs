//! The reports collector (`capsight-reports`): the crowdsourced intake.
//!
//! Tenants send (a) capsight's own report schema to `POST /v1/reports` and (b) raw EventBridge
//! events, exactly as an EventBridge API destination delivers them, to `POST /v1/events`
//! (CloudTrail `RunInstances` calls and failures, spot interruption warnings, rebalance
//! recommendations, spot fulfilments, state changes). Both authenticate with a tenant API key.
//! Bodies are validated and normalized ([`normalize`]), AZ names mapped to AZ IDs with the
//! tenant's zone map, duplicates dropped by event id, tenants rate-limited, and the tenant id
//! replaced by its keyed hash before anything is published ([`server`]). Instance events are
//! keyed by the instance's launch: learned from a `RunInstances` event, or, for instances
//! capsight's launcher started for the tenant, found in ClickHouse `launch_events`
//! ([`launched`]); events of other instances are answered as `unkeyed` and dropped. See
//! `docs/reports.md` for the customer set-up.

pub mod launched;
pub use capsight_report_schema as normalize;
pub mod server;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use serde::Deserialize;

/// The `[reports]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Most reports in one `POST /v1/reports`.
    pub max_reports_per_request: usize,
    /// Event / report ids remembered for de-duplication.
    pub dedup_capacity: usize,
    /// Instances remembered (from RunInstances events) to key later instance events.
    pub instance_memory: usize,
    /// How often the tenant registry file is checked for changes.
    #[serde(with = "humantime_serde")]
    pub registry_recheck: Duration,
    /// Deadline of a whole request (body read, look-ups, publication); past it: 503.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long publication may wait for the broker's acknowledgement; past it: 503 with
    /// `Retry-After` (the broker is away; the sender retries with the same signal ids, so a late
    /// delivery of the first try is absorbed by downstream de-duplication).
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
}

/// Every section the intake reads besides `[telemetry]`.
#[derive(Debug, Clone, Deserialize)]
pub struct ReportsConfig {
    /// `[kafka]`.
    pub kafka: capsight_kafka::KafkaSettings,
    /// `[publisher]`.
    pub publisher: capsight_publisher::PublisherSettings,
    /// `[tenancy]` (API keys, rate limits, the keyed tenant hash).
    pub tenancy: capsight_tenancy::TenancySettings,
    /// `[clickhouse]` (instances capsight launched).
    pub clickhouse: capsight_clickhouse::ClickHouseSettings,
    /// `[reports]`.
    pub reports: ReportsSettings,
}

/// Why the intake stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ReportsError {
    /// The signal publisher.
    #[error(transparent)]
    Publisher(#[from] capsight_publisher::PublishError),
    /// The tenant registry.
    #[error(transparent)]
    Registry(#[from] capsight_tenancy::RegistryError),
    /// The tenant-hash secret.
    #[error(transparent)]
    HashSecret(#[from] capsight_tenancy::HashSecretError),
    /// ClickHouse settings.
    #[error(transparent)]
    ClickHouse(#[from] capsight_clickhouse::ClickHouseError),
    /// The GPU catalog built into the binary.
    #[error(transparent)]
    Catalog(#[from] capsight_catalog::CatalogError),
    /// The listen address could not be bound, or serving failed.
    #[error("{addr}: {source}")]
    Serve {
        /// `reports.listen`.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The process: binds `reports.listen` and serves the intake with its publisher, tenant
/// registry (hot reloaded) and launched-instance lookup until `shutdown` fires.
pub async fn start(
    config: ReportsConfig,
    shutdown: capsight_runtime::shutdown::Shutdown,
) -> Result<(), ReportsError> {
    let publisher =
        capsight_publisher::Publisher::new(&config.kafka, &config.publisher, "reports")?;
    publisher.spawn_report(config.publisher.report_interval, shutdown.clone());
    let registry = capsight_tenancy::SharedRegistry::open(
        config.tenancy.registry.clone(),
        config.reports.registry_recheck,
    )?;
    let hasher = config.tenancy.hasher()?;
    let addr = config.reports.listen;
    let serve = |source| ReportsError::Serve { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(serve)?;
    tracing::info!(listen = %addr, "reports intake listening");
    let launched = launched::LaunchedInstances::new(config.clickhouse.client()?);
    let state = Arc::new(
        server::AppState::new(
            publisher.clone(),
            registry,
            hasher,
            config.reports,
            config.tenancy.default_rate_per_minute,
            Arc::new(capsight_catalog::Catalog::embedded()?),
        )
        .with_launched(launched),
    );
    run(state, listener, publisher, shutdown)
        .await
        .map_err(serve)
}

/// Serves the intake until `shutdown` fires, then flushes the publisher.
pub async fn run(
    state: Arc<server::AppState>,
    listener: tokio::net::TcpListener,
    publisher: capsight_publisher::Publisher,
    shutdown: capsight_runtime::shutdown::Shutdown,
) -> std::io::Result<()> {
    let app = server::router(state);
    let wait = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { wait.wait().await })
        .await?;
    if let Err(e) = publisher.flush(Duration::from_secs(30)).await {
        tracing::error!(error = %e, "flush at shutdown");
    }
    Ok(())
}
