//! The `[launcher]` config section and the launcher's whole configuration.

use std::time::Duration;

use capsight_amqp::AmqpSettings;
use capsight_clickhouse::ClickHouseSettings;
use capsight_kafka::KafkaSettings;
use capsight_publisher::PublisherSettings;
use capsight_runtime::telemetry::TelemetrySettings;
use capsight_tenancy::TenancySettings;
use serde::Deserialize;

/// `[launcher]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LauncherSettings {
    /// Unacknowledged jobs per worker (RabbitMQ prefetch), i.e. jobs handled concurrently.
    pub prefetch: u16,
    /// Most jobs of one tenant this launcher handles at once (of `prefetch`); a tenant's
    /// further jobs wait a `retry_delay` in the retry queue, so one tenant cannot take every
    /// worker. 0 = no limit.
    pub tenant_share: u16,
    /// Delayed retries of a job after transient failures before it fails for good.
    pub max_retries: u32,
    /// How often a provisioning instance is described until it runs.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Longest wait for a launched instance to run; then the attempt is retried later.
    #[serde(with = "humantime_serde")]
    pub provisioning_timeout: Duration,
    /// Deadline of one cloud call (launch, describe, terminate).
    #[serde(with = "humantime_serde")]
    pub cloud_timeout: Duration,
    /// Back-off between reconnects to RabbitMQ.
    #[serde(with = "humantime_serde")]
    pub reconnect_delay: Duration,
    /// How often running launches are checked for cancel requests.
    #[serde(with = "humantime_serde")]
    pub cancel_sweep_interval: Duration,
    /// Scores older than this are not used to rank fallbacks.
    #[serde(with = "humantime_serde")]
    pub scores_max_age: Duration,
    /// TESTING ONLY, empty in production: after recording this step (`preflight`,
    /// `provisioning`, `launched` = the cloud answered, `running`) the process kills itself with
    /// SIGKILL, so crash recovery can be tested at every state.
    pub crash_after: String,
    /// Where `GET /healthz` is served (port 0 = any free port, logged at start): 503 while the
    /// warm standby's events consumer is stalled.
    pub health_listen: std::net::SocketAddr,
    /// `[launcher.lifecycle]`: maximum lifetime and idle TTL reaper.
    #[serde(default)]
    pub lifecycle: crate::lifecycle::LifecycleSettings,
    /// `[launcher.standby]`: warm standby for spot work.
    #[serde(default)]
    pub standby: crate::standby::StandbySettings,
    /// `[launcher.outbox]`: publishing accepted jobs the gateway never dispatched.
    #[serde(default)]
    pub outbox: capsight_launch::outbox::OutboxSettings,
    /// `[launcher.reconcile]`: the cloud's tagged instances against the jobs.
    #[serde(default)]
    pub reconcile: crate::reconcile::ReconcileSettings,
    /// `[launcher.leases]`: serialising several replicas.
    #[serde(default)]
    pub leases: capsight_launch::lease::LeaseSettings,
    /// `[launcher.live]`: the live-launch index the sweeps read.
    #[serde(default)]
    pub live: capsight_launch::store::LiveSettings,
}

impl Default for LauncherSettings {
    fn default() -> Self {
        Self {
            prefetch: 4,
            tenant_share: 2,
            max_retries: 5,
            poll_interval: Duration::from_secs(2),
            provisioning_timeout: Duration::from_secs(600),
            cloud_timeout: Duration::from_secs(60),
            reconnect_delay: Duration::from_secs(2),
            cancel_sweep_interval: Duration::from_secs(10),
            scores_max_age: Duration::from_secs(86_400),
            crash_after: String::new(),
            health_listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9472)),
            lifecycle: crate::lifecycle::LifecycleSettings::default(),
            standby: crate::standby::StandbySettings::default(),
            outbox: capsight_launch::outbox::OutboxSettings::default(),
            reconcile: crate::reconcile::ReconcileSettings::default(),
            leases: capsight_launch::lease::LeaseSettings::default(),
            live: capsight_launch::store::LiveSettings::default(),
        }
    }
}

/// Every section the launcher reads.
#[derive(Debug, Clone, Deserialize)]
pub struct LauncherConfig {
    /// `[telemetry]`.
    pub telemetry: TelemetrySettings,
    /// `[kafka]` (launch-attempt signals).
    pub kafka: KafkaSettings,
    /// `[publisher]`.
    pub publisher: PublisherSettings,
    /// `[clickhouse]` (launch_events, requests, cancellations, scores).
    pub clickhouse: ClickHouseSettings,
    /// `[amqp]` (the job queue).
    pub amqp: AmqpSettings,
    /// `[tenancy]` (tenant roles and GPU quotas).
    pub tenancy: TenancySettings,
    /// `[cloud]`, `[lambda]`, `[gcp]`, `[azure]`, `[runpod]`: tenants' clouds (Azure also
    /// its launch settings, RunPod its pod image).
    #[serde(flatten)]
    pub providers: capsight_cloud::tenants::ProviderSettings,
    /// `[launcher]`.
    pub launcher: LauncherSettings,
    /// `[verdict]`: how stored scores are aged before a fallback is chosen.
    #[serde(default)]
    pub verdict: capsight_proto::domain::VerdictPolicy,
}

#[cfg(test)]
capsight_runtime::documented_defaults_test!("launcher", LauncherSettings);
