//! The `[gateway]` config section and the gateway's whole configuration.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use capsight_amqp::AmqpSettings;
use capsight_clickhouse::ClickHouseSettings;
use capsight_kafka::KafkaSettings;
use capsight_publisher::PublisherSettings;
use capsight_runtime::telemetry::TelemetrySettings;
use capsight_tenancy::TenancySettings;
use serde::Deserialize;

/// `[gateway]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// The web dashboard's HTTP listener (static app + JSON/SSE API over the same services);
    /// empty = no dashboard.
    #[serde(default, deserialize_with = "crate::web::optional_addr")]
    pub web_listen: Option<SocketAddr>,
    /// SHA-256 (hex) of the operator's dashboard key (operator and analyst views); empty = no
    /// operator view.
    #[serde(default)]
    pub web_operator_key_sha256: String,
    /// PEM certificate chain; empty = plaintext (loopback only!).
    #[serde(default)]
    pub tls_cert: PathBuf,
    /// PEM private key; set together with `tls_cert`.
    #[serde(default)]
    pub tls_key: PathBuf,
    /// How often the tenant registry file is checked for new or revoked keys.
    #[serde(with = "humantime_serde")]
    pub registry_recheck: Duration,
    /// Largest instance count of one launch or preflight.
    pub max_launch_count: u32,
    /// How often the gateway's one launch feed reads ClickHouse for new transitions of every
    /// watched launch (one query per tick, whatever the number of WatchLaunch streams).
    #[serde(with = "humantime_serde")]
    pub watch_poll_interval: Duration,
    /// Longest a WatchLaunch stream stays open.
    #[serde(with = "humantime_serde")]
    pub watch_max_duration: Duration,
    /// Longest a WatchScores stream stays open; then it ends cleanly (the client re-subscribes).
    #[serde(with = "humantime_serde")]
    pub watch_scores_max_duration: Duration,
    /// Most server streams (WatchScores and WatchLaunch together) one tenant may hold open at
    /// once, unless the registry sets the tenant's own `max_open_streams`.
    pub max_open_streams_per_tenant: u32,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`: most calls one connection may have in flight
    /// (a client's further calls wait on its side until one ends).
    pub max_concurrent_streams: u32,
    /// How often an HTTP/2 ping checks an idle connection.
    #[serde(with = "humantime_serde")]
    pub http2_keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    #[serde(with = "humantime_serde")]
    pub http2_keepalive_timeout: Duration,
    /// TCP keepalive of accepted connections (dead peers are found by the OS too).
    #[serde(with = "humantime_serde")]
    pub tcp_keepalive: Duration,
    /// Deadline of the cloud calls of one preflight.
    #[serde(with = "humantime_serde")]
    pub cloud_timeout: Duration,
    /// Deadline of one RabbitMQ publish (until the broker's confirm) or Kafka publish.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// How often every served score is re-aged (labels turning unknown are announced then).
    #[serde(with = "humantime_serde")]
    pub ageing_interval: Duration,
    /// TESTING ONLY, empty in production (release builds refuse to start with it): `recorded`
    /// kills the process with SIGKILL after a job is recorded and before it is published and
    /// answered.
    pub crash_after: String,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            web_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8090))),
            web_operator_key_sha256: String::new(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            registry_recheck: Duration::from_secs(5),
            max_launch_count: 32,
            watch_poll_interval: Duration::from_secs(1),
            watch_max_duration: Duration::from_secs(3600),
            watch_scores_max_duration: Duration::from_secs(3600),
            max_open_streams_per_tenant: 16,
            max_concurrent_streams: 100,
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(20),
            tcp_keepalive: Duration::from_secs(60),
            cloud_timeout: Duration::from_secs(20),
            publish_timeout: Duration::from_secs(10),
            ageing_interval: Duration::from_secs(30),
            crash_after: String::new(),
        }
    }
}

/// Everything `capsight-gateway` reads from configuration.
#[derive(Debug, Clone, Deserialize)]
pub struct GatewayConfig {
    /// Logs.
    pub telemetry: TelemetrySettings,
    /// The broker (scores topic in, report signals out).
    pub kafka: KafkaSettings,
    /// How report signals are published.
    pub publisher: PublisherSettings,
    /// History, preflight log, launch records.
    pub clickhouse: ClickHouseSettings,
    /// Launch jobs.
    pub amqp: AmqpSettings,
    /// API keys and limits.
    pub tenancy: TenancySettings,
    /// `[cloud]`, `[lambda]`, `[gcp]`, `[azure]`, `[runpod]`: tenants' clouds.
    #[serde(flatten)]
    pub providers: capsight_cloud::tenants::ProviderSettings,
    /// The server itself.
    pub gateway: GatewaySettings,
    /// How scores are served as they age.
    #[serde(default)]
    pub verdict: capsight_proto::domain::VerdictPolicy,
    /// Tenant trust: the operator view shows it as the scorer applies it.
    #[serde(default)]
    pub trust: capsight_tenancy::trust::TrustSettings,
    /// The prober's section, of which the operator view reads the daily budget.
    #[serde(default)]
    pub probe: ProbeBudget,
    /// The scorer's section, of which the operator view reads the consumer group.
    #[serde(default)]
    pub scorer: ScorerGroup,
    /// Tenant notifications: the limits subscriptions are validated with.
    #[serde(default)]
    pub notify: capsight_notify::NotifySettings,
}

/// What the operator view reads of `[probe]`: the budget each prober spends per UTC day.
#[derive(Debug, Clone, Deserialize)]
pub struct ProbeBudget {
    /// `probe.daily_budget_usd`.
    pub daily_budget_usd: f64,
}

impl Default for ProbeBudget {
    /// The prober's own default.
    fn default() -> Self {
        Self {
            daily_budget_usd: 50.0,
        }
    }
}

/// What the operator view reads of `[scorer]`: the consumer group whose lag it shows.
#[derive(Debug, Clone, Deserialize)]
pub struct ScorerGroup {
    /// `scorer.group_id`.
    pub group_id: String,
}

impl Default for ScorerGroup {
    /// The scorer's own default.
    fn default() -> Self {
        Self {
            group_id: "capsight-scorer".into(),
        }
    }
}
