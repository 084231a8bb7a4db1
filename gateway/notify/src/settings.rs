//! The `[notify]` config section and the notifier's whole configuration.

use std::time::Duration;

use capsight_clickhouse::ClickHouseSettings;
use capsight_runtime::telemetry::TelemetrySettings;
use capsight_tenancy::TenancySettings;
use serde::Deserialize;

/// `[notify]`: tenant webhook subscriptions (the gateway's limits) and their delivery (the
/// notifier's pace, retries and network policy).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// Subscriptions a tenant may hold; the gateway refuses more, and the notifier serves only
    /// a tenant's oldest this many (several gateways racing cannot raise the bound).
    pub max_subscriptions_per_tenant: u32,
    /// Key selectors per subscription.
    pub max_keys_per_subscription: u32,
    /// Longest webhook URL, bytes.
    pub max_url_length: u32,
    /// Networks (CIDR) a webhook may reach although they are private, loopback or link-local;
    /// empty = public addresses only (a tenant cannot make capsight call its internal network).
    pub allowed_private_networks: Vec<String>,
    /// Cooldown of a subscription that sets none: the same event about the same key or launch
    /// is not sent again within it.
    #[serde(with = "humantime_serde")]
    pub default_cooldown: Duration,
    /// Longest cooldown a subscription may set.
    #[serde(with = "humantime_serde")]
    pub max_cooldown: Duration,
    /// How often the notifier reads new events and pending notifications.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Events younger than this are left for the next read (writes in flight).
    #[serde(with = "humantime_serde")]
    pub settle: Duration,
    /// Each read goes back this far behind the cursor, so an event written late (up to this
    /// much after its event time) is still seen; seen events are not notified twice.
    #[serde(with = "humantime_serde")]
    pub lookback: Duration,
    /// Most event time one read covers (catching up after downtime in steps).
    #[serde(with = "humantime_serde")]
    pub max_step: Duration,
    /// Notifications older than this without an outcome are no longer retried.
    #[serde(with = "humantime_serde")]
    pub pending_window: Duration,
    /// Most pending notifications read per tick.
    pub batch: u32,
    /// Deadline of one webhook call (connect and answer).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Attempts of one notification before it goes to the dead-letter store.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Longest wait between attempts.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Subscriptions delivered to at once (each subscription's notifications go in order).
    pub max_concurrent_deliveries: u32,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            max_subscriptions_per_tenant: 20,
            max_keys_per_subscription: 20,
            max_url_length: 2048,
            allowed_private_networks: Vec::new(),
            default_cooldown: Duration::from_secs(900),
            max_cooldown: Duration::from_secs(86_400),
            interval: Duration::from_secs(2),
            settle: Duration::from_secs(1),
            lookback: Duration::from_secs(600),
            max_step: Duration::from_secs(3600),
            pending_window: Duration::from_secs(7 * 86_400),
            batch: 1000,
            request_timeout: Duration::from_secs(10),
            max_attempts: 8,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            max_concurrent_deliveries: 32,
        }
    }
}

/// Every section the notifier reads.
#[derive(Debug, Clone, Deserialize)]
pub struct NotifierConfig {
    /// `[telemetry]`.
    pub telemetry: TelemetrySettings,
    /// `[clickhouse]` (launch_events, alerts, the notify_* tables).
    pub clickhouse: ClickHouseSettings,
    /// `[tenancy]` (the hash secret the webhook secrets derive from).
    pub tenancy: TenancySettings,
    /// `[notify]`.
    pub notify: NotifySettings,
}

#[cfg(test)]
capsight_runtime::documented_defaults_test!("notify", NotifySettings);
