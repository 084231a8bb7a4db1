//! The active prober (`capsight-probe`): asks the cloud directly whether a GPU type can be had
//! in a zone, as cheaply and safely as possible, and publishes the answer as a `launch_attempt`
//! signal (source `probe`).
//!
//! * [`plan`]: per-key cadence between `min_interval` and `max_interval` weighted by tenant
//!   demand, jittered, backed off x2-x4 after consecutive failures (pure);
//! * [`budget`]: a hard daily spend cap, reserved atomically before each probe and settled
//!   after it; recovered from the audit trail at start-up (pure);
//! * [`cost`]: the cost of a probe estimated from the GPU catalog's on-demand price (pure);
//! * [`limits`]: rate limits per provider API and per account in front of every cloud call;
//! * [`demand`]: tenant demand per key from the gateway's `preflight_log`;
//! * [`audit`]: the `probe_audit` table (who, what, why, cost, outcome, resources);
//! * [`prober`]: one probe: quota pre-check, budget, reservation (launch as fallback),
//!   cleanup, classification, signal, audit;
//! * [`sweep`]: removes probe-tagged instances and reservations left behind;
//! * [`schedule`]: the loop tying them together (`--once`, graceful shutdown).

pub mod audit;
pub mod budget;
pub mod cost;
pub mod demand;
pub mod limits;
pub mod metrics;
pub mod plan;
pub mod prober;
pub mod schedule;
pub mod settings;
pub mod sweep;

pub use prober::{PROBE_AT_TAG, PROBE_TAG, Planned, ProbeReport, Prober};
pub use schedule::Scheduler;
pub use settings::{LimitSettings, ProbeSettings};

use std::sync::Arc;

use capsight_collector_kit::{Collector, CollectorError};

/// The sections the prober reads besides the kit's.
#[derive(Debug, serde::Deserialize)]
pub struct ProbeConfig {
    /// `[clickhouse]` (the audit trail, tenant demand).
    pub clickhouse: capsight_clickhouse::ClickHouseSettings,
    /// `[cloud]`, `[azure]` (the operator's subscription; off when it names none) and `[gcp]`
    /// (with a project, its regions are watched too).
    #[serde(flatten)]
    pub clouds: capsight_cloud::regional::WatchedClouds,
    /// `[probe]`.
    pub probe: ProbeSettings,
}

/// The process: recovers today's spend from the audit trail (no probe before it is known: a
/// restart must not reset the budget), then sweeps and probes on schedule (`once`: sweep, one
/// planning pass, wait for its probes) until the shutdown fires.
pub async fn run(c: &Collector<ProbeConfig>, once: bool) -> Result<(), CollectorError> {
    let (config, catalog) = (&c.config, &c.catalog);
    capsight_runtime::failpoint::check("probe.crash_after", &config.probe.crash_after)
        .map_err(|e| CollectorError::setup("probe.crash_after", e))?;
    let adapters = c
        .adapters(&config.clouds, &config.probe.regions, "probe")
        .await?;
    let account = account(config, catalog).await;
    let audit =
        audit::Audit::new(&config.clickhouse).map_err(|e| CollectorError::setup("audit", e))?;
    let now = chrono::Utc::now();
    let spent = audit
        .spent_on(&config.probe.instance, now.date_naive())
        .await
        .map_err(|e| {
            CollectorError::setup(
                "recovering today's probe spend from probe_audit (is ClickHouse up and migrated?)",
                e,
            )
        })?;
    let budget = budget::Budget::with_spent(config.probe.daily_budget_usd, spent, now);
    tracing::info!(prober = %config.probe.instance, %account, regions = adapters.len(),
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
    let scheduler =
        Arc::new(Scheduler::new(prober).map_err(|e| CollectorError::setup("probe schedule", e))?);
    let reports = scheduler.run(once, c.shutdown.clone()).await;
    if once {
        tracing::info!(probes = reports.len(), "probe pass done");
    }
    Ok(())
}

/// The operator's account id (for the audit trail), `unknown` when the cloud does not say.
async fn account(config: &ProbeConfig, catalog: &Arc<capsight_catalog::Catalog>) -> String {
    let adapter =
        capsight_cloud::aws::AwsAdapter::from_env(config.clouds.cloud.clone(), Arc::clone(catalog))
            .await;
    match adapter {
        Ok(a) => match a.caller_identity().await {
            Ok((account, _)) => return account,
            Err(e) => tracing::warn!(error = %e, "caller identity unknown"),
        },
        Err(e) => tracing::warn!(error = %e, "caller identity unknown"),
    }
    "unknown".to_owned()
}
