//! The `[gateway]` config section and the gateway's whole configuration.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use capsight_amqp::AmqpSettings;
use capsight_clickhouse::ClickHouseSettings;
use capsight_cloud::CloudSettings;
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
    /// How often WatchLaunch polls ClickHouse for new transitions.
    #[serde(with = "humantime_serde")]
    pub watch_poll_interval: Duration,
    /// Longest a WatchLaunch stream stays open.
    #[serde(with = "humantime_serde")]
    pub watch_max_duration: Duration,
    /// Deadline of the cloud calls of one preflight.
    #[serde(with = "humantime_serde")]
    pub cloud_timeout: Duration,
    /// Deadline of one RabbitMQ publish (until the broker's confirm) or Kafka publish.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            registry_recheck: Duration::from_secs(5),
            max_launch_count: 32,
            watch_poll_interval: Duration::from_secs(1),
            watch_max_duration: Duration::from_secs(3600),
            cloud_timeout: Duration::from_secs(20),
            publish_timeout: Duration::from_secs(10),
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
    /// Cloud calls (tenants' roles are assumed from the operator's AWS chain).
    pub cloud: CloudSettings,
    /// The server itself.
    pub gateway: GatewaySettings,
}
