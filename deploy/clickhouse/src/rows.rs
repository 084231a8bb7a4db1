//! Row types of the `capsight` database and their conversions from domain values.
//!
//! Times are stored as `DateTime` (seconds) plus a `UInt16` millisecond column, because
//! ClickHouse 18.16 has no `DateTime64`.

use capsight_proto::domain::{Payload, Signal};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Seconds since the epoch as ClickHouse `DateTime` (saturating to its u32 range) and the
/// millisecond part.
pub fn split_time(t: DateTime<Utc>) -> (u32, u16) {
    let secs = u32::try_from(t.timestamp().max(0)).unwrap_or(u32::MAX);
    let ms = u16::try_from(t.timestamp_subsec_millis()).unwrap_or(0);
    (secs, ms)
}

/// One row of `signals`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct SignalRow {
    /// Signal id (the de-duplication key).
    pub id: String,
    /// Observation time, seconds.
    pub observed_at: u32,
    /// Observation time, millisecond part.
    pub observed_ms: u16,
    /// When the row was written, seconds.
    pub ingested_at: u32,
    /// `probe`, `quota`, ...
    pub source: String,
    /// Tenant hash or empty.
    pub tenant: String,
    /// Key: provider.
    pub provider: String,
    /// Key: region.
    pub region: String,
    /// Key: zone id or empty.
    pub zone_id: String,
    /// Key: instance type.
    pub instance_type: String,
    /// Key: market.
    pub market: String,
    /// Payload kind (`launch_attempt`, `quota`, ...).
    pub kind: String,
    /// Launch outcome or empty.
    pub outcome: String,
    /// Error class or empty.
    pub error_class: String,
    /// Raw error code or empty.
    pub error_code: String,
    /// Raw error message or empty.
    pub error_message: String,
    /// Provisioning time in ms, 0 when unknown.
    pub provisioning_ms: u32,
    /// The payload's main number (price, headroom, placement score...), 0 when none.
    pub value: f64,
    /// The payload as JSON.
    pub payload: String,
}

impl SignalRow {
    /// The row for `signal`, ingested at `ingested_at`.
    pub fn new(signal: &Signal, ingested_at: DateTime<Utc>) -> Self {
        let (observed_at, observed_ms) = split_time(signal.observed_at);
        let mut row = Self {
            id: signal.id.as_str().to_owned(),
            observed_at,
            observed_ms,
            ingested_at: split_time(ingested_at).0,
            source: signal.source.as_str().to_owned(),
            tenant: signal
                .tenant
                .as_ref()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            provider: signal.key.provider.as_str().to_owned(),
            region: signal.key.region.as_str().to_owned(),
            zone_id: signal.key.zone_str().to_owned(),
            instance_type: signal.key.instance_type.as_str().to_owned(),
            market: signal.key.market.as_str().to_owned(),
            kind: signal.payload.kind().to_owned(),
            outcome: String::new(),
            error_class: String::new(),
            error_code: String::new(),
            error_message: String::new(),
            provisioning_ms: 0,
            value: 0.0,
            // serializing plain data structs cannot fail
            payload: serde_json::to_string(&signal.payload).unwrap_or_default(),
        };
        match &signal.payload {
            Payload::LaunchAttempt(a) => {
                row.outcome = a.outcome.as_str().to_owned();
                row.error_class = a.error_class.as_str().to_owned();
                row.error_code.clone_from(&a.error_code);
                row.error_message.clone_from(&a.error_message);
                row.provisioning_ms = a.provisioning_ms.unwrap_or(0);
            }
            Payload::CrowdReport(r) => {
                row.outcome = r.kind.as_str().to_owned();
                row.error_class = r.error_class.as_str().to_owned();
                row.error_code.clone_from(&r.error_code);
            }
            Payload::Quota(q) => row.value = f64::from(q.headroom_instances),
            Payload::SpotPrice(p) => row.value = p.price_per_hour,
            Payload::PlacementScore(p) => row.value = f64::from(p.score),
            Payload::SpotAdvisory(a) => row.value = f64::from(a.interruption_bucket),
            Payload::CapacityBlockOffer(o) => row.value = f64::from(o.instance_count),
            Payload::Offering(o) => row.value = if o.offered { 1.0 } else { 0.0 },
            Payload::InstanceEvent(e) => row.outcome = e.kind.as_str().to_owned(),
            Payload::Status(s) => {
                row.outcome = s.severity.as_str().to_owned();
                row.value = if s.resolved { 0.0 } else { 1.0 };
            }
        }
        row
    }
}
