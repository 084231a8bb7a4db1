//! The domain form of `capsight.v1.Signal`: one validated observation about one key.
//!
//! Field paths in errors follow the protobuf names (`id`, `key.region`,
//! `launch_attempt.hinted_zone_ids[1]`).

use chrono::{DateTime, Utc};

use super::error::bounded;
use super::time::{timestamp, to_timestamp};
use super::{
    CapacityKey, CrowdReportKind, ErrorClass, FieldError, InstanceEventKind, LaunchOutcome,
    ProbeMethod, Region, SignalSource, StatusSeverity, StockLevel, ZoneId,
};
use crate::v1;

/// Longest accepted raw error message, in bytes (producers truncate to this).
pub const MAX_ERROR_MESSAGE: usize = 4096;
/// Longest accepted short text (ids, codes, names), in bytes.
pub const MAX_SHORT_TEXT: usize = 256;

/// Checks a short identifier-like text: non-empty, bounded, printable ASCII without spaces.
fn token(field: &str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::missing(field));
    }
    bounded(field, value, MAX_SHORT_TEXT)?;
    if !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(FieldError::new(
            field,
            "must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

text_newtype!(
    /// A signal id: unique, stable across retries, the de-duplication key downstream.
    SignalId
);

text_newtype!(
    /// The opaque keyed hash that stands for a tenant on the bus (never the tenant id itself).
    TenantHash
);

/// Ids and hashes alike: 1-256 bytes of printable ASCII without spaces.
macro_rules! token_parse {
    ($($name:ident),+) => {
        $(impl $name {
            /// Validates the text: 1-256 bytes of printable ASCII without spaces.
            pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
                token(field, text)?;
                Ok(Self(text.to_owned()))
            }
        })+
    };
}

token_parse!(SignalId, TenantHash);

impl SignalId {
    /// A new random (UUIDv7, time-ordered) id, for producers that have no natural one.
    pub fn random() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// A deterministic id derived from `parts`: the same observation retried gets the same id.
    pub fn derived(source: SignalSource, parts: &[&str]) -> Self {
        let mut name = String::from(source.as_str());
        for p in parts {
            name.push('\u{1f}');
            name.push_str(p);
        }
        Self(format!(
            "{}-{}",
            source.as_str(),
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes())
        ))
    }
}

/// One observation about one capacity key.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// De-duplication key.
    pub id: SignalId,
    /// When it was observed.
    pub observed_at: DateTime<Utc>,
    /// Who produced it.
    pub source: SignalSource,
    /// The contributing tenant's hash; `None` for global sources.
    pub tenant: Option<TenantHash>,
    /// What it is about.
    pub key: CapacityKey,
    /// What was observed.
    pub payload: Payload,
}

/// What a signal observed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// A launch or reservation attempt.
    LaunchAttempt(LaunchAttempt),
    /// A quota reading as headroom.
    Quota(QuotaReading),
    /// A spot price point.
    SpotPrice(SpotPrice),
    /// A spot placement score.
    PlacementScore(PlacementScore),
    /// An instance event (interruption, rebalance, fulfilment, state change).
    InstanceEvent(InstanceEvent),
    /// A bookable capacity block.
    CapacityBlockOffer(CapacityBlockOffer),
    /// Whether the type is offered at all.
    Offering(OfferingExposure),
    /// A status-feed change.
    Status(StatusEvent),
    /// A tenant's report.
    CrowdReport(CrowdReport),
    /// Spot Instance Advisor data.
    SpotAdvisory(SpotAdvisory),
    /// A provider's "capacity available right now" listing.
    Availability(Availability),
}

impl Payload {
    /// The payload's name as in the protobuf oneof (`launch_attempt`, `quota`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::LaunchAttempt(_) => "launch_attempt",
            Self::Quota(_) => "quota",
            Self::SpotPrice(_) => "spot_price",
            Self::PlacementScore(_) => "placement_score",
            Self::InstanceEvent(_) => "instance_event",
            Self::CapacityBlockOffer(_) => "capacity_block_offer",
            Self::Offering(_) => "offering",
            Self::Status(_) => "status",
            Self::CrowdReport(_) => "crowd_report",
            Self::SpotAdvisory(_) => "spot_advisory",
            Self::Availability(_) => "availability",
        }
    }
}

/// A launch or reservation attempt.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LaunchAttempt {
    /// Did it get capacity.
    pub outcome: LaunchOutcome,
    /// `None` exactly when it succeeded.
    pub error_class: ErrorClass,
    /// The provider's code, verbatim; empty on success.
    pub error_code: String,
    /// The provider's message, verbatim; empty on success.
    pub error_message: String,
    /// Request to running in ms, when known.
    pub provisioning_ms: Option<u32>,
    /// Zones the error named as having capacity.
    pub hinted_zones: Vec<ZoneId>,
    /// Regions the error named as having capacity.
    pub hinted_regions: Vec<Region>,
    /// How the attempt was made.
    pub method: ProbeMethod,
    /// Instances requested (>= 1).
    pub count: u32,
}

/// A quota reading for the key's instance type.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QuotaReading {
    /// The provider's quota code (`L-417A185B`).
    pub quota_code: String,
    /// The limit in the quota's unit.
    pub limit: f64,
    /// Usage in the quota's unit.
    pub used: f64,
    /// Instances of the key's type that still fit.
    pub headroom_instances: u32,
}

/// A spot price point.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpotPrice {
    /// Price per instance-hour.
    pub price_per_hour: f64,
    /// ISO 4217 code.
    pub currency: String,
}

/// A spot placement score.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlacementScore {
    /// 1..=10.
    pub score: u8,
    /// The target capacity asked about.
    pub target_capacity: u32,
}

/// Spot Instance Advisor data.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpotAdvisory {
    /// 0..=4 (<5%, 5-10%, 10-15%, 15-20%, >20%).
    pub interruption_bucket: u8,
    /// Savings over on-demand, percent (0..=100).
    pub savings_percent: u8,
}

/// An instance event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InstanceEvent {
    /// Which event.
    pub kind: InstanceEventKind,
    /// The instance.
    pub instance_id: String,
    /// Interruption action (`terminate`, `stop`, `hibernate`), if any.
    pub action: String,
    /// New state for state changes, if any.
    pub state: String,
    /// The source event id, if any.
    pub event_id: String,
}

/// A bookable capacity block.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CapacityBlockOffer {
    /// The provider's offering id.
    pub offering_id: String,
    /// Instances in the block.
    pub instance_count: u32,
    /// Block start.
    pub start: DateTime<Utc>,
    /// Block end (after start).
    pub end: DateTime<Utc>,
    /// Length in hours.
    pub duration_hours: u32,
    /// Upfront fee.
    pub upfront_fee: f64,
    /// ISO 4217 code.
    pub currency: String,
}

/// A provider's direct availability listing for the key (Lambda Cloud's
/// `regions_with_capacity_available`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Availability {
    /// The provider lists capacity for the key right now.
    pub available: bool,
    /// The listed price per instance-hour (USD), when the listing gave one.
    pub listed_usd_per_hour: Option<f64>,
    /// A marketplace's stock status (RunPod); `None` for a provider's plain listing.
    pub stock: Option<StockLevel>,
}

/// Whether the instance type is offered where the key says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OfferingExposure {
    /// Offered or not.
    pub offered: bool,
}

/// A status-feed change.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatusEvent {
    /// The feed's configured name.
    pub feed: String,
    /// The incident id in that feed.
    pub incident_id: String,
    /// How bad.
    pub severity: StatusSeverity,
    /// The incident title.
    pub title: String,
    /// Whether it is over.
    pub resolved: bool,
    /// Link to the incident.
    pub url: String,
}

/// A tenant's own report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CrowdReport {
    /// What it says.
    pub kind: CrowdReportKind,
    /// The error class the tenant saw, if any.
    pub error_class: ErrorClass,
    /// The raw code the tenant saw, if any.
    pub error_code: String,
    /// Free text.
    pub note: String,
}

fn finite(field: &str, v: f64) -> Result<f64, FieldError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(FieldError::new(field, "must be a finite number >= 0"))
    }
}

/// `value` as a `u8` within `range`, or an error naming `field` ("must be 1..=10").
fn small<T: TryInto<u8>>(
    field: &str,
    value: T,
    range: std::ops::RangeInclusive<u8>,
) -> Result<u8, FieldError> {
    value
        .try_into()
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| {
            FieldError::new(
                field,
                format!("must be {}..={}", range.start(), range.end()),
            )
        })
}

fn currency(field: &str, c: &str) -> Result<String, FieldError> {
    if c.len() == 3 && c.chars().all(|ch| ch.is_ascii_uppercase()) {
        Ok(c.to_owned())
    } else {
        Err(FieldError::new(
            field,
            format!("{c:?} is not an ISO 4217 code such as USD"),
        ))
    }
}

fn text(field: &str, value: String, max: usize) -> Result<String, FieldError> {
    bounded(field, &value, max)?;
    Ok(value)
}

impl LaunchAttempt {
    /// One instance launched (`ProbeMethod::Launch`): succeeded when `class` is
    /// [`ErrorClass::None`] (with `provisioning_ms`), else failed with that class; no code,
    /// message or hints.
    pub fn with_class(class: ErrorClass, provisioning_ms: Option<u32>) -> Self {
        let ok = class == ErrorClass::None;
        Self {
            outcome: if ok {
                LaunchOutcome::Succeeded
            } else {
                LaunchOutcome::Failed
            },
            error_class: class,
            error_code: String::new(),
            error_message: String::new(),
            provisioning_ms: provisioning_ms.filter(|_| ok),
            hinted_zones: Vec::new(),
            hinted_regions: Vec::new(),
            method: ProbeMethod::Launch,
            count: 1,
        }
    }

    fn from_wire(w: v1::LaunchAttempt, key: &CapacityKey) -> Result<Self, FieldError> {
        let outcome = LaunchOutcome::from_wire("outcome", w.outcome)?;
        let error_class = ErrorClass::from_wire("error_class", w.error_class)?;
        match (outcome, error_class) {
            (LaunchOutcome::Succeeded, ErrorClass::None) => {}
            (LaunchOutcome::Succeeded, _) => {
                return Err(FieldError::new(
                    "error_class",
                    "must be NONE when the launch succeeded",
                ));
            }
            (LaunchOutcome::Failed, ErrorClass::None) => {
                return Err(FieldError::new(
                    "error_class",
                    "must be set when the launch failed",
                ));
            }
            (LaunchOutcome::Failed, _) => {}
        }
        if w.count == 0 {
            return Err(FieldError::new("count", "must be at least 1"));
        }
        let hinted_zones = w
            .hinted_zone_ids
            .iter()
            .enumerate()
            .map(|(i, z)| {
                ZoneId::parse_optional(
                    &format!("hinted_zone_ids[{i}]"),
                    key.provider,
                    &key.region,
                    z,
                )?
                .ok_or_else(|| {
                    FieldError::new(format!("hinted_zone_ids[{i}]"), "must not be empty")
                })
            })
            .collect::<Result<_, _>>()?;
        let hinted_regions = w
            .hinted_regions
            .iter()
            .enumerate()
            .map(|(i, r)| Region::parse(&format!("hinted_regions[{i}]"), key.provider, r))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            outcome,
            error_class,
            error_code: text("error_code", w.error_code, MAX_SHORT_TEXT)?,
            error_message: text("error_message", w.error_message, MAX_ERROR_MESSAGE)?,
            provisioning_ms: (w.provisioning_ms > 0).then_some(w.provisioning_ms),
            hinted_zones,
            hinted_regions,
            method: ProbeMethod::from_wire("method", w.method)?,
            count: w.count,
        })
    }
}

impl Payload {
    fn from_wire(p: v1::signal::Payload, key: &CapacityKey) -> Result<Self, FieldError> {
        use v1::signal::Payload as W;
        Ok(match p {
            W::LaunchAttempt(w) => Self::LaunchAttempt(
                LaunchAttempt::from_wire(w, key).map_err(|e| e.within("launch_attempt"))?,
            ),
            W::Quota(w) => Self::Quota(
                (|| {
                    token("quota_code", &w.quota_code)?;
                    Ok(QuotaReading {
                        quota_code: w.quota_code,
                        limit: finite("limit", w.limit)?,
                        used: finite("used", w.used)?,
                        headroom_instances: w.headroom_instances,
                    })
                })()
                .map_err(|e: FieldError| e.within("quota"))?,
            ),
            W::SpotPrice(w) => Self::SpotPrice(
                (|| {
                    Ok(SpotPrice {
                        price_per_hour: finite("price_per_hour", w.price_per_hour)?,
                        currency: currency("currency", &w.currency)?,
                    })
                })()
                .map_err(|e: FieldError| e.within("spot_price"))?,
            ),
            W::PlacementScore(w) => Self::PlacementScore(PlacementScore {
                score: small("placement_score.score", w.score, 1..=10)?,
                target_capacity: w.target_capacity,
            }),
            W::SpotAdvisory(w) => Self::SpotAdvisory(SpotAdvisory {
                interruption_bucket: small(
                    "spot_advisory.interruption_bucket",
                    w.interruption_bucket,
                    0..=4,
                )?,
                savings_percent: small(
                    "spot_advisory.savings_percent",
                    w.savings_percent,
                    0..=100,
                )?,
            }),
            W::InstanceEvent(w) => Self::InstanceEvent(
                (|| {
                    token("instance_id", &w.instance_id)?;
                    Ok(InstanceEvent {
                        kind: InstanceEventKind::from_wire("kind", w.kind)?,
                        instance_id: w.instance_id,
                        action: text("action", w.action, MAX_SHORT_TEXT)?,
                        state: text("state", w.state, MAX_SHORT_TEXT)?,
                        event_id: text("event_id", w.event_id, MAX_SHORT_TEXT)?,
                    })
                })()
                .map_err(|e: FieldError| e.within("instance_event"))?,
            ),
            W::CapacityBlockOffer(w) => Self::CapacityBlockOffer(
                (|| {
                    token("offering_id", &w.offering_id)?;
                    let start = timestamp("start", w.start)?;
                    let end = timestamp("end", w.end)?;
                    if end <= start {
                        return Err(FieldError::new("end", "must be after start"));
                    }
                    if w.instance_count == 0 {
                        return Err(FieldError::new("instance_count", "must be at least 1"));
                    }
                    Ok(CapacityBlockOffer {
                        offering_id: w.offering_id,
                        instance_count: w.instance_count,
                        start,
                        end,
                        duration_hours: w.duration_hours,
                        upfront_fee: finite("upfront_fee", w.upfront_fee)?,
                        currency: currency("currency", &w.currency)?,
                    })
                })()
                .map_err(|e: FieldError| e.within("capacity_block_offer"))?,
            ),
            W::Offering(w) => Self::Offering(OfferingExposure { offered: w.offered }),
            W::Availability(w) => Self::Availability(Availability {
                available: w.available,
                listed_usd_per_hour: {
                    let p = finite("availability.listed_usd_per_hour", w.listed_usd_per_hour)?;
                    (p > 0.0).then_some(p)
                },
                stock: match w.stock_level {
                    0 => None,
                    v => Some(StockLevel::from_wire("availability.stock_level", v)?),
                },
            }),
            W::Status(w) => Self::Status(
                (|| {
                    token("feed", &w.feed)?;
                    token("incident_id", &w.incident_id)?;
                    Ok(StatusEvent {
                        feed: w.feed,
                        incident_id: w.incident_id,
                        severity: StatusSeverity::from_wire("severity", w.severity)?,
                        title: text("title", w.title, MAX_ERROR_MESSAGE)?,
                        resolved: w.resolved,
                        url: text("url", w.url, MAX_ERROR_MESSAGE)?,
                    })
                })()
                .map_err(|e: FieldError| e.within("status"))?,
            ),
            W::CrowdReport(w) => Self::CrowdReport(
                (|| {
                    Ok(CrowdReport {
                        kind: CrowdReportKind::from_wire("kind", w.kind)?,
                        error_class: ErrorClass::from_wire("error_class", w.error_class)?,
                        error_code: text("error_code", w.error_code, MAX_SHORT_TEXT)?,
                        note: text("note", w.note, MAX_ERROR_MESSAGE)?,
                    })
                })()
                .map_err(|e: FieldError| e.within("crowd_report"))?,
            ),
        })
    }

    fn to_wire(&self) -> v1::signal::Payload {
        use v1::signal::Payload as W;
        match self {
            Self::LaunchAttempt(a) => W::LaunchAttempt(v1::LaunchAttempt {
                outcome: a.outcome.into(),
                error_class: a.error_class.into(),
                error_code: a.error_code.clone(),
                error_message: a.error_message.clone(),
                provisioning_ms: a.provisioning_ms.unwrap_or(0),
                hinted_zone_ids: a
                    .hinted_zones
                    .iter()
                    .map(|z| z.as_str().to_owned())
                    .collect(),
                hinted_regions: a
                    .hinted_regions
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .collect(),
                method: a.method.into(),
                count: a.count,
            }),
            Self::Quota(q) => W::Quota(v1::QuotaReading {
                quota_code: q.quota_code.clone(),
                limit: q.limit,
                used: q.used,
                headroom_instances: q.headroom_instances,
            }),
            Self::SpotPrice(p) => W::SpotPrice(v1::SpotPrice {
                price_per_hour: p.price_per_hour,
                currency: p.currency.clone(),
            }),
            Self::PlacementScore(p) => W::PlacementScore(v1::PlacementScore {
                score: p.score.into(),
                target_capacity: p.target_capacity,
            }),
            Self::SpotAdvisory(a) => W::SpotAdvisory(v1::SpotAdvisory {
                interruption_bucket: a.interruption_bucket.into(),
                savings_percent: a.savings_percent.into(),
            }),
            Self::InstanceEvent(e) => W::InstanceEvent(v1::InstanceEvent {
                kind: e.kind.into(),
                instance_id: e.instance_id.clone(),
                action: e.action.clone(),
                state: e.state.clone(),
                event_id: e.event_id.clone(),
            }),
            Self::CapacityBlockOffer(o) => W::CapacityBlockOffer(v1::CapacityBlockOffer {
                offering_id: o.offering_id.clone(),
                instance_count: o.instance_count,
                start: Some(to_timestamp(o.start)),
                end: Some(to_timestamp(o.end)),
                duration_hours: o.duration_hours,
                upfront_fee: o.upfront_fee,
                currency: o.currency.clone(),
            }),
            Self::Offering(o) => W::Offering(v1::OfferingExposure { offered: o.offered }),
            Self::Availability(a) => W::Availability(v1::Availability {
                available: a.available,
                listed_usd_per_hour: a.listed_usd_per_hour.unwrap_or(0.0),
                stock_level: a.stock.map_or(0, i32::from),
            }),
            Self::Status(s) => W::Status(v1::StatusEvent {
                feed: s.feed.clone(),
                incident_id: s.incident_id.clone(),
                severity: s.severity.into(),
                title: s.title.clone(),
                resolved: s.resolved,
                url: s.url.clone(),
            }),
            Self::CrowdReport(r) => W::CrowdReport(v1::CrowdReport {
                kind: r.kind.into(),
                error_class: r.error_class.into(),
                error_code: r.error_code.clone(),
                note: r.note.clone(),
            }),
        }
    }
}

impl TryFrom<v1::Signal> for Signal {
    type Error = FieldError;

    fn try_from(w: v1::Signal) -> Result<Self, Self::Error> {
        let id = SignalId::parse("id", &w.id)?;
        let observed_at = timestamp("observed_at", w.observed_at)?;
        let source = SignalSource::from_wire("source", w.source)?;
        let tenant = if w.tenant.is_empty() {
            None
        } else {
            Some(TenantHash::parse("tenant", &w.tenant)?)
        };
        let key = CapacityKey::try_from(w.key.ok_or_else(|| FieldError::missing("key"))?)
            .map_err(|e| e.within("key"))?;
        let payload = Payload::from_wire(
            w.payload.ok_or_else(|| FieldError::missing("payload"))?,
            &key,
        )?;
        Ok(Self {
            id,
            observed_at,
            source,
            tenant,
            key,
            payload,
        })
    }
}

impl From<&Signal> for v1::Signal {
    fn from(s: &Signal) -> Self {
        Self {
            id: s.id.as_str().to_owned(),
            observed_at: Some(to_timestamp(s.observed_at)),
            source: s.source.into(),
            tenant: s
                .tenant
                .as_ref()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            key: Some(v1::CapacityKey::from(&s.key)),
            payload: Some(s.payload.to_wire()),
        }
    }
}
