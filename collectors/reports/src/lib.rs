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
