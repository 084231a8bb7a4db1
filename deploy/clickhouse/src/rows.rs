//! Row types of the `capsight` database and their conversions from domain values.
//!
//! Times are stored as `DateTime` (seconds) plus a `UInt16` millisecond column, because
//! ClickHouse 18.16 has no `DateTime64`.

use capsight_proto::domain::{Evidence, Label, LaunchState, Payload, Score, Signal};
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
            Payload::Availability(a) => {
                row.value = if a.available { 1.0 } else { 0.0 };
                // a marketplace's stock level, so a rebuilt window reads it back
                if let Some(stock) = a.stock {
                    row.outcome = stock.as_str().to_owned();
                }
            }
            Payload::InstanceEvent(e) => row.outcome = e.kind.as_str().to_owned(),
            Payload::Status(s) => {
                row.outcome = s.severity.as_str().to_owned();
                row.value = if s.resolved { 0.0 } else { 1.0 };
            }
        }
        row
    }
}

/// The evidence list as the JSON array stored in `scores.evidence` and `alerts.evidence`:
/// `[{"feature":"launch_success_rate","value":0.8,"contribution":12.5,"samples":10}, ...]`.
pub fn evidence_json(evidence: &[Evidence]) -> String {
    let items: Vec<serde_json::Value> = evidence
        .iter()
        .map(|e| {
            serde_json::json!({
                "feature": e.feature.as_str(),
                "value": e.value,
                "contribution": e.contribution,
                "samples": e.samples,
            })
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

/// One row of `scores` (score history).
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct ScoreRow {
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
    /// When the score was computed (event time), seconds.
    pub updated_at: u32,
    /// Millisecond part.
    pub updated_ms: u16,
    /// 0..=100.
    pub score: u8,
    /// `available`, `limited`, `unavailable`.
    pub label: String,
    /// 0..=1.
    pub confidence: f32,
    /// [`evidence_json`].
    pub evidence: String,
    /// The window, seconds.
    pub window_secs: u32,
    /// Signals in the window.
    pub signal_count: u64,
}

impl ScoreRow {
    /// The row for `score`.
    pub fn new(score: &Score) -> Self {
        let (updated_at, updated_ms) = split_time(score.updated_at);
        Self {
            provider: score.key.provider.as_str().to_owned(),
            region: score.key.region.as_str().to_owned(),
            zone_id: score.key.zone_str().to_owned(),
            instance_type: score.key.instance_type.as_str().to_owned(),
            market: score.key.market.as_str().to_owned(),
            updated_at,
            updated_ms,
            score: score.score,
            label: score.label.as_str().to_owned(),
            // stored as Float32: confidence is a 0..1 estimate
            confidence: score.confidence as f32,
            evidence: evidence_json(&score.evidence),
            window_secs: u32::try_from(score.window.as_secs()).unwrap_or(u32::MAX),
            signal_count: score.signal_count,
        }
    }
}

/// One row of `alerts` (a label transition).
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct AlertRow {
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
    /// Transition time (event time), seconds.
    pub at: u32,
    /// Millisecond part.
    pub at_ms: u16,
    /// The label before.
    pub from_label: String,
    /// The label after.
    pub to_label: String,
    /// The score after.
    pub score: u8,
    /// The confidence after.
    pub confidence: f32,
    /// 1 when the confidence was below the configured threshold.
    pub low_confidence: u8,
    /// [`evidence_json`].
    pub evidence: String,
}

impl AlertRow {
    /// The row for a transition to `score` from `from`.
    pub fn new(score: &Score, from: Label, low_confidence: bool) -> Self {
        let s = ScoreRow::new(score);
        Self {
            provider: s.provider,
            region: s.region,
            zone_id: s.zone_id,
            instance_type: s.instance_type,
            market: s.market,
            at: s.updated_at,
            at_ms: s.updated_ms,
            from_label: from.as_str().to_owned(),
            to_label: s.label,
            score: s.score,
            confidence: s.confidence,
            low_confidence: u8::from(low_confidence),
            evidence: s.evidence,
        }
    }
}

/// One row of `launch_events`: a launch job's state transition. The gateway writes seq 0
/// (`queued`); the launcher writes seq 1, 2, ... `tenant` is the tenant id.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct LaunchEventRow {
    /// The job id (also the cloud ClientToken).
    pub job_id: String,
    /// Transition number within the job.
    pub seq: u32,
    /// Tenant id.
    pub tenant: String,
    /// When, seconds.
    pub at: u32,
    /// When, millisecond part.
    pub at_ms: u16,
    /// The state, stored as its lowercase name.
    #[serde(with = "capsight_proto::domain::launch_state_text")]
    pub state: LaunchState,
    /// Key of this attempt: provider.
    pub provider: String,
    /// Key: region.
    pub region: String,
    /// Key: zone id or empty.
    pub zone_id: String,
    /// Key: instance type.
    pub instance_type: String,
    /// Key: market.
    pub market: String,
    /// Cloud instance id, once known.
    pub instance_id: String,
    /// Attempt number (1 = the requested key; more after fallbacks).
    pub attempt: u32,
    /// Error class of a failure, or empty.
    pub error_class: String,
    /// Raw error code, or empty.
    pub error_code: String,
    /// Human-readable detail.
    pub detail: String,
}

/// One row of `launch_requests`: a job as the gateway accepted it.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct LaunchRequestRow {
    /// The job id.
    pub job_id: String,
    /// Tenant id.
    pub tenant: String,
    /// Accepted at, seconds.
    pub created_at: u32,
    /// Millisecond part.
    pub created_ms: u16,
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
    /// Instances.
    pub count: u32,
    /// Machine image.
    pub image_id: String,
    /// Subnet or empty.
    pub subnet_id: String,
    /// Spot max price per instance-hour, 0 = on-demand price.
    pub spot_max_price: f64,
    /// 1 when a warm standby was asked for.
    pub warm_standby: u8,
    /// Max lifetime, seconds (0 = launcher default).
    pub max_lifetime_secs: u64,
    /// Idle TTL, seconds (0 = none).
    pub idle_ttl_secs: u64,
    /// Alternatives the launcher may walk.
    pub max_fallbacks: u32,
}

/// One row of `launch_outbox`: a job as published to the launchers, and whether RabbitMQ
/// confirmed it.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct LaunchOutboxRow {
    /// The job id.
    pub job_id: String,
    /// Tenant id.
    pub tenant: String,
    /// Accepted at, seconds (the job's `created_at`; the dispatched row repeats it).
    pub created_at: u32,
    /// The encoded `capsight.v1.LaunchJob`, hex.
    pub job: String,
    /// 1 once the broker confirmed the job.
    pub dispatched: u8,
}

/// One row of `launch_cancellations`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct LaunchCancellationRow {
    /// The job id.
    pub job_id: String,
    /// Tenant id.
    pub tenant: String,
    /// Requested at, seconds.
    pub at: u32,
}

/// One row of `launch_activity`: a heartbeat of a running launch (idle TTL).
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct LaunchActivityRow {
    /// The job id.
    pub job_id: String,
    /// Tenant id.
    pub tenant: String,
    /// Heartbeat time, seconds.
    pub at: u32,
    /// Heartbeat time, millisecond part.
    pub at_ms: u16,
    /// The caller's note (bounded), may be empty.
    pub note: String,
}

/// One row of `instance_gpus`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct InstanceGpusRow {
    /// `aws`, ...
    pub provider: String,
    /// Instance type.
    pub instance_type: String,
    /// GPUs per instance.
    pub gpus: u32,
    /// GPU model, e.g. `H100`.
    pub gpu_model: String,
    /// When written, seconds (the newest row wins).
    pub updated_at: u32,
}

/// One row of `preflight_log`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct PreflightLogRow {
    /// Id returned to the caller.
    pub preflight_id: String,
    /// Tenant id.
    pub tenant: String,
    /// When, seconds.
    pub at: u32,
    /// Millisecond part.
    pub at_ms: u16,
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
    /// Instances asked for.
    pub count: u32,
    /// `can_launch`, `retry_with_alternatives`, `fix_account_issue`.
    pub decision: String,
    /// Step outcome: `passed`, `failed`, `warning`, `skipped`.
    pub permission: String,
    /// Step outcome.
    pub quota: String,
    /// Step outcome.
    pub capacity: String,
    /// Quota headroom in instances (0 when not checked).
    pub quota_headroom: u32,
    /// Score used, -1 when none.
    pub score: i16,
    /// Alternatives returned.
    pub alternatives: u32,
    /// The steps as JSON.
    pub checks: String,
}

/// One row of `probe_audit` (migration 0030): a probe's `reserved` row, written before it
/// touches the cloud, or its `done` row.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct ProbeAuditRow {
    /// The probe id (also the ClientToken and the `capsight:probe` tag value).
    pub probe_id: String,
    /// `reserved` (budget set aside, before the cloud call) or `done`.
    pub phase: String,
    /// UTC day the budget was charged to, days since the epoch (ClickHouse `Date`).
    pub day: u16,
    /// When, seconds.
    pub at: u32,
    /// Millisecond part.
    pub at_ms: u16,
    /// Who: the prober instance.
    pub prober: String,
    /// Who: the cloud account probed with.
    pub account: String,
    /// What: key provider.
    pub provider: String,
    /// Key: region.
    pub region: String,
    /// Key: zone id or empty.
    pub zone_id: String,
    /// Key: instance type.
    pub instance_type: String,
    /// Key: market.
    pub market: String,
    /// What: `capacity_reservation`, `launch` or empty (skipped before choosing).
    pub method: String,
    /// Why: rank in its planning pass (0 = first).
    pub priority: u32,
    /// Why: tenant demand, requests per day.
    pub demand: f64,
    /// Why / why not: `due`, `fallback: ...`, `quota headroom 0`, `budget exhausted: ...`.
    pub reason: String,
    /// Cost set aside before the probe, USD.
    pub estimated_usd: f64,
    /// Cost incurred, USD (0 on the reserved row).
    pub actual_usd: f64,
    /// `succeeded`, `failed`, `skipped` (empty on the reserved row).
    pub outcome: String,
    /// Error class or `none`.
    pub error_class: String,
    /// Raw error code or empty.
    pub error_code: String,
    /// Request to capacity granted, ms (0 when unknown).
    pub provisioning_ms: u32,
    /// Ids of created resources, comma-separated (`cr-...`, `i-...`).
    pub resources: String,
    /// `done` and `published` rows: the probe's signal (protobuf, hex) — the outbox the prober
    /// re-publishes from after a crash (migration 0033).
    pub signal: String,
}

/// One row of `tenant_checks`: a tenant's report checked against its key's first-party launch
/// verdict (migration 0050). `tenant` is the tenant hash.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct TenantCheckRow {
    /// Tenant hash of the sender.
    pub tenant: String,
    /// The report's signal id.
    pub report_id: String,
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
    /// The report's observation time, seconds.
    pub at: u32,
    /// Millisecond part.
    pub at_ms: u16,
    /// What the report said: 1 in stock, -1 not.
    pub opinion: i8,
    /// The first-party verdict, -1..=1.
    pub verdict: f64,
    /// 1 when the report agreed with the verdict.
    pub agrees: u8,
    /// When the scorer checked it (wall clock), seconds: the newest row of a report wins.
    pub checked_at: u32,
}

/// One tenant's agreements and contradictions since a time (query `TENANT_TRUST`).
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct TenantTrustRow {
    /// Tenant hash.
    pub tenant: String,
    /// Reports that agreed.
    pub agreements: u64,
    /// Reports that contradicted.
    pub contradictions: u64,
    /// The newest checked report's time, seconds.
    pub last_at: u32,
}

/// One row of `notify_subscriptions`: a tenant's webhook subscription as created, or its
/// deletion (`deleted = 1`, a higher `version`).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct NotifySubscriptionRow {
    /// Tenant id.
    pub tenant: String,
    /// Subscription id.
    pub id: String,
    /// Milliseconds since the epoch of this change (the newest wins).
    pub version: u64,
    /// When the subscription was created, seconds.
    pub created_at: u32,
    /// 1 = deleted.
    pub deleted: u8,
    /// The webhook URL.
    pub url: String,
    /// `json`, `slack` or `discord`.
    pub format: String,
    /// Event kinds, comma-separated.
    pub kinds: String,
    /// Key selectors, JSON.
    pub keys: String,
    /// Cooldown, seconds.
    pub cooldown_secs: u32,
    /// 1 = also label changes at low confidence.
    pub low_confidence: u8,
}

/// One row of `notify_outbox`: a notification to deliver.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct NotifyOutboxRow {
    /// Notification id (the idempotency id).
    pub id: String,
    /// Tenant id.
    pub tenant: String,
    /// Subscription id.
    pub subscription_id: String,
    /// Event kind.
    pub kind: String,
    /// What the cooldown is kept per: a capacity key or a job id.
    pub subject: String,
    /// Event time, seconds.
    pub at: u32,
    /// Millisecond part.
    pub at_ms: u16,
    /// When the row was written, seconds.
    pub created_at: u32,
    /// The event, JSON.
    pub event: String,
}

/// One row of `notify_deliveries`: a notification's final outcome.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct NotifyDeliveryRow {
    /// Notification id.
    pub id: String,
    /// Tenant id.
    pub tenant: String,
    /// Subscription id.
    pub subscription_id: String,
    /// Event kind.
    pub kind: String,
    /// When the outcome was recorded, seconds.
    pub at: u32,
    /// `delivered` or `dead`.
    pub outcome: String,
    /// Attempts made.
    pub attempts: u32,
    /// The receiver's last HTTP status (0 = no answer).
    pub status: u16,
    /// The last error, empty when delivered.
    pub error: String,
    /// The event, JSON.
    pub event: String,
}

/// One row of `notify_cursors`.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct NotifyCursorRow {
    /// `launch_events` or `alerts`.
    pub source: String,
    /// Event time read up to, milliseconds.
    pub position: u64,
    /// When written, seconds.
    pub at: u32,
}
