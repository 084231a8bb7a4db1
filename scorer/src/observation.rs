//! What the scoring model needs from one signal: an [`Observation`].
//!
//! Contract: an observation is built either from a domain [`Signal`] (live traffic) or from the
//! ClickHouse [`SignalRow`] the same signal was stored as (window rebuild), and both paths give
//! the *same* value, bit for bit: times are truncated to milliseconds (what `signals` keeps),
//! numbers are the stored `Float64`s. That is what makes a rebuilt window score exactly like
//! the window it replaces.

use capsight_clickhouse::rows::SignalRow;
use capsight_proto::domain::{
    CrowdReportKind, ErrorClass, InstanceEventKind, LaunchOutcome, Payload, Signal, SignalSource,
    StatusSeverity, StockLevel, TenantHash,
};

/// One signal as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Observation time, milliseconds since the epoch.
    pub at_ms: i64,
    /// Who produced it.
    pub source: SignalSource,
    /// The contributing tenant (crowd weighting), if any.
    pub tenant: Option<TenantHash>,
    /// What it says.
    pub fact: Fact,
}

/// The model-relevant content of a payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// A launch or reservation attempt.
    Launch {
        /// Got capacity.
        succeeded: bool,
        /// Error class (`None` on success).
        class: ErrorClass,
        /// Request to running, when known.
        provisioning_ms: Option<u32>,
    },
    /// Quota headroom (never capacity evidence).
    Quota {
        /// Instances that still fit.
        headroom: u32,
    },
    /// A spot price point.
    SpotPrice(f64),
    /// A spot placement score 1..=10.
    Placement(u8),
    /// Spot advisor interruption bucket 0..=4.
    Advisory(u8),
    /// An instance event.
    Instance(InstanceEventKind),
    /// A bookable capacity block.
    CapacityBlock {
        /// Instances in the block.
        instances: u32,
    },
    /// Offered in the catalog or not.
    Offered(bool),
    /// The provider's own listing says capacity is available now, or not.
    Available(bool),
    /// A GPU marketplace lists this much stock now (RunPod's stock status).
    Marketplace(StockLevel),
    /// A status-feed event.
    Status {
        /// `feed/incident_id`.
        incident: String,
        /// How bad.
        severity: StatusSeverity,
        /// Over or not.
        resolved: bool,
    },
    /// A crowd report.
    Crowd {
        /// What it says.
        kind: CrowdReportKind,
        /// The class the tenant saw.
        class: ErrorClass,
    },
}

/// Why a stored row could not become an observation.
#[derive(Debug, thiserror::Error)]
#[error("signals row {id}: {reason}")]
pub struct RowError {
    /// The signal id.
    pub id: String,
    /// What is wrong.
    pub reason: String,
}

impl Observation {
    /// The observation of a live signal.
    pub fn from_signal(s: &Signal) -> Self {
        let fact = match &s.payload {
            Payload::LaunchAttempt(a) => Fact::Launch {
                succeeded: a.outcome == LaunchOutcome::Succeeded,
                class: a.error_class,
                provisioning_ms: a.provisioning_ms.filter(|ms| *ms > 0),
            },
            Payload::Quota(q) => Fact::Quota {
                headroom: q.headroom_instances,
            },
            Payload::SpotPrice(p) => Fact::SpotPrice(p.price_per_hour),
            Payload::PlacementScore(p) => Fact::Placement(p.score),
            Payload::SpotAdvisory(a) => Fact::Advisory(a.interruption_bucket),
            Payload::InstanceEvent(e) => Fact::Instance(e.kind),
            Payload::CapacityBlockOffer(o) => Fact::CapacityBlock {
                instances: o.instance_count,
            },
            Payload::Offering(o) => Fact::Offered(o.offered),
            Payload::Availability(a) => match a.stock {
                Some(level) => Fact::Marketplace(level),
                None => Fact::Available(a.available),
            },
            Payload::Status(st) => Fact::Status {
                incident: format!("{}/{}", st.feed, st.incident_id),
                severity: st.severity,
                resolved: st.resolved,
            },
            Payload::CrowdReport(r) => Fact::Crowd {
                kind: r.kind,
                class: r.error_class,
            },
        };
        Self {
            at_ms: s.observed_at.timestamp_millis(),
            source: s.source,
            tenant: s.tenant.clone(),
            fact,
        }
    }

    /// The observation of a stored `signals` row.
    pub fn from_row(row: &SignalRow) -> Result<Self, RowError> {
        let err = |reason: String| RowError {
            id: row.id.clone(),
            reason,
        };
        let class =
            || ErrorClass::parse("error_class", &row.error_class).map_err(|e| err(e.to_string()));
        let fact = match row.kind.as_str() {
            "launch_attempt" => Fact::Launch {
                succeeded: row.outcome == LaunchOutcome::Succeeded.as_str(),
                class: class()?,
                provisioning_ms: Some(row.provisioning_ms).filter(|ms| *ms > 0),
            },
            "quota" => Fact::Quota {
                headroom: to_u32(row.value),
            },
            "spot_price" => Fact::SpotPrice(row.value),
            "placement_score" => Fact::Placement(to_u8(row.value)),
            "spot_advisory" => Fact::Advisory(to_u8(row.value)),
            "instance_event" => Fact::Instance(
                InstanceEventKind::parse("outcome", &row.outcome)
                    .map_err(|e| err(e.to_string()))?,
            ),
            "capacity_block_offer" => Fact::CapacityBlock {
                instances: to_u32(row.value),
            },
            "offering" => Fact::Offered(row.value > 0.5),
            // a marketplace listing carries its stock level in `outcome`
            "availability" if !row.outcome.is_empty() => Fact::Marketplace(
                StockLevel::parse("outcome", &row.outcome).map_err(|e| err(e.to_string()))?,
            ),
            "availability" => Fact::Available(row.value > 0.5),
            "status" => {
                let payload: serde_json::Value =
                    serde_json::from_str(&row.payload).map_err(|e| err(e.to_string()))?;
                let field = |name: &str| {
                    payload
                        .get("status")
                        .and_then(|s| s.get(name))
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                Fact::Status {
                    incident: format!("{}/{}", field("feed"), field("incident_id")),
                    severity: StatusSeverity::parse("outcome", &row.outcome)
                        .map_err(|e| err(e.to_string()))?,
                    resolved: row.value < 0.5,
                }
            }
            "crowd_report" => Fact::Crowd {
                kind: CrowdReportKind::parse("outcome", &row.outcome)
                    .map_err(|e| err(e.to_string()))?,
                class: class()?,
            },
            other => return Err(err(format!("unknown kind {other:?}"))),
        };
        let tenant = if row.tenant.is_empty() {
            None
        } else {
            Some(TenantHash::parse("tenant", &row.tenant).map_err(|e| err(e.to_string()))?)
        };
        Ok(Self {
            at_ms: i64::from(row.observed_at) * 1000 + i64::from(row.observed_ms),
            source: SignalSource::parse("source", &row.source).map_err(|e| err(e.to_string()))?,
            tenant,
            fact,
        })
    }
}

fn to_u32(v: f64) -> u32 {
    if v.is_finite() && v >= 0.0 {
        // saturating float-to-int conversion
        v.min(f64::from(u32::MAX)) as u32
    } else {
        0
    }
}

fn to_u8(v: f64) -> u8 {
    u8::try_from(to_u32(v)).unwrap_or(u8::MAX)
}

#[cfg(test)]
pub(crate) mod tests {
    use capsight_proto::domain::{
        Availability, CapacityBlockOffer, CrowdReport, InstanceEvent, LaunchAttempt,
        OfferingExposure, PlacementScore, ProbeMethod, QuotaReading, SignalId, SpotAdvisory,
        SpotPrice, StatusEvent,
    };
    use chrono::{DateTime, Utc};

    use super::*;

    /// One signal of every payload kind (the observed time has sub-millisecond nanos, which
    /// ClickHouse does not keep).
    pub(crate) fn one_of_each() -> Vec<Signal> {
        let at = DateTime::<Utc>::from_timestamp(1_795_000_000, 123_456_789).unwrap();
        let key: capsight_proto::domain::CapacityKey =
            "aws/us-east-1/use1-az4/p5.48xlarge/spot".parse().unwrap();
        let payloads = vec![
            Payload::LaunchAttempt(LaunchAttempt {
                outcome: LaunchOutcome::Succeeded,
                error_class: ErrorClass::None,
                error_code: String::new(),
                error_message: String::new(),
                provisioning_ms: Some(41_000),
                hinted_zones: vec![],
                hinted_regions: vec![],
                method: ProbeMethod::Launch,
                count: 1,
            }),
            Payload::LaunchAttempt(LaunchAttempt {
                outcome: LaunchOutcome::Failed,
                error_class: ErrorClass::Capacity,
                error_code: "InsufficientInstanceCapacity".into(),
                error_message: "no".into(),
                provisioning_ms: None,
                hinted_zones: vec![],
                hinted_regions: vec![],
                method: ProbeMethod::CapacityReservation,
                count: 1,
            }),
            Payload::Quota(QuotaReading {
                quota_code: "L-417A185B".into(),
                limit: 192.0,
                used: 0.0,
                headroom_instances: 1,
            }),
            Payload::SpotPrice(SpotPrice {
                price_per_hour: 31.4612,
                currency: "USD".into(),
            }),
            Payload::PlacementScore(PlacementScore {
                score: 7,
                target_capacity: 1,
            }),
            Payload::SpotAdvisory(SpotAdvisory {
                interruption_bucket: 2,
                savings_percent: 60,
            }),
            Payload::InstanceEvent(InstanceEvent {
                kind: InstanceEventKind::InterruptionWarning,
                instance_id: "i-0123".into(),
                action: "terminate".into(),
                state: String::new(),
                event_id: "e-1".into(),
            }),
            Payload::CapacityBlockOffer(CapacityBlockOffer {
                offering_id: "cb-1".into(),
                instance_count: 4,
                start: at,
                end: at + chrono::Duration::hours(24),
                duration_hours: 24,
                upfront_fee: 1000.0,
                currency: "USD".into(),
            }),
            Payload::Offering(OfferingExposure { offered: true }),
            Payload::Availability(Availability {
                available: true,
                listed_usd_per_hour: Some(23.92),
                stock: None,
            }),
            Payload::Availability(Availability {
                available: false,
                listed_usd_per_hour: None,
                stock: None,
            }),
            Payload::Availability(Availability {
                available: true,
                listed_usd_per_hour: Some(2.69),
                stock: Some(StockLevel::Medium),
            }),
            Payload::Availability(Availability {
                available: false,
                listed_usd_per_hour: None,
                stock: Some(StockLevel::None),
            }),
            Payload::Status(StatusEvent {
                feed: "aws-rss".into(),
                incident_id: "inc-9".into(),
                severity: StatusSeverity::Major,
                title: "Increased launch failures".into(),
                resolved: false,
                url: String::new(),
            }),
            Payload::CrowdReport(CrowdReport {
                kind: CrowdReportKind::Unavailable,
                error_class: ErrorClass::Capacity,
                error_code: "InsufficientInstanceCapacity".into(),
                note: String::new(),
            }),
        ];
        payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| Signal {
                id: SignalId::parse("id", &format!("s-{i}")).unwrap(),
                observed_at: at,
                source: SignalSource::Probe,
                tenant: (i % 2 == 0).then(|| TenantHash::parse("tenant", "t-1").unwrap()),
                key: key.clone(),
                payload,
            })
            .collect()
    }

    #[test]
    fn a_stored_row_gives_the_same_observation_as_the_live_signal() {
        for s in one_of_each() {
            let row = SignalRow::new(&s, Utc::now());
            assert_eq!(
                Observation::from_row(&row).unwrap(),
                Observation::from_signal(&s),
                "{}",
                s.payload.kind()
            );
        }
    }
}
