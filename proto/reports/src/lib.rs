//! Report bodies to signals: capsight's own report schema and raw EventBridge events.
//!
//! Contract: pure functions. Input that cannot be turned into signals is a [`Rejection`] naming
//! the field (answered with 4xx by the server). Every key must be one the GPU catalog allows
//! (a catalog type offered in its region, a known zone): an unknown one is refused with 422
//! naming the field, and zone hints outside the known zones are dropped, so a tenant cannot
//! invent keys. AWS AZ *names* are mapped to AZ IDs with the tenant's zone map (derived from
//! the tenant's own account by `capsight-admin tenant zones`); a name the map lacks is refused
//! naming the field, so a zone-level fact is never counted region-wide. Signal
//! ids derive from (tenant hash, event id, index), so a re-delivered event produces the same
//! ids and downstream de-duplication absorbs it.

use std::collections::BTreeMap;
use std::sync::Arc;

use capsight_catalog::{Catalog, UnknownKey};

use capsight_classify::classify;
use capsight_proto::domain::{
    CapacityKey, CrowdReport, CrowdReportKind, ErrorClass, InstanceEvent, InstanceEventKind,
    InstanceType, LaunchAttempt, LaunchOutcome, Market, Payload, ProbeMethod, Provider, Region,
    Signal, SignalId, SignalSource, TenantHash, ZoneId,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

/// Why a body was refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Rejection {
    /// JSON path of the offending field.
    pub field: String,
    /// What is wrong.
    pub reason: String,
    /// 422 for a well-formed event of an unsupported kind; 400 otherwise.
    pub unsupported: bool,
}

impl Rejection {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
            unsupported: false,
        }
    }
}

impl From<UnknownKey> for Rejection {
    /// A well-formed key the catalog does not know: 422.
    fn from(e: UnknownKey) -> Self {
        Self {
            field: e.field.to_owned(),
            reason: e.reason,
            unsupported: true,
        }
    }
}

impl From<capsight_proto::domain::FieldError> for Rejection {
    fn from(e: capsight_proto::domain::FieldError) -> Self {
        Self::new(e.field(), e.reason())
    }
}

/// Who is reporting.
#[derive(Debug, Clone)]
pub struct Reporter {
    /// The tenant's bus hash.
    pub hash: TenantHash,
    /// The tenant's AWS AZ names -> AZ IDs.
    pub zone_map: BTreeMap<String, String>,
    /// The GPU catalog: which keys exist.
    pub catalog: Arc<Catalog>,
}

impl Reporter {
    /// Refuses a key the catalog does not allow (422, naming the field).
    fn check(&self, key: &CapacityKey) -> Result<(), Rejection> {
        Ok(self.catalog.check_key(key)?)
    }
}

/// What an instance is, learned from earlier events (RunInstances), to key later ones.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceInfo {
    /// The key its launch had.
    pub key: CapacityKey,
}

/// Signals plus instances learned from the event.
#[derive(Debug, Default)]
pub struct Normalized {
    /// Signals to publish.
    pub signals: Vec<Signal>,
    /// Instances the event revealed (instance id -> info).
    pub learned: Vec<(String, InstanceInfo)>,
    /// Events that name an instance we cannot key (its launch was never reported).
    pub unkeyed: Vec<String>,
}

/// Oldest accepted observation.
const MAX_AGE_DAYS: i64 = 7;
/// Newest accepted observation (clock skew).
const MAX_FUTURE_SECS: i64 = 300;

fn check_time(
    field: &str,
    t: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, Rejection> {
    if t > now + chrono::TimeDelta::seconds(MAX_FUTURE_SECS) {
        return Err(Rejection::new(field, "is in the future"));
    }
    if t < now - chrono::TimeDelta::days(MAX_AGE_DAYS) {
        return Err(Rejection::new(
            field,
            format!("is older than {MAX_AGE_DAYS} days"),
        ));
    }
    Ok(t)
}

/// The zone of a report or event: its zone id, else its AZ name (the field `name_field`)
/// mapped with the tenant's zone map. A name the map lacks is refused (naming the field):
/// a zone-level fact is never counted region-wide.
fn resolve_zone(
    reporter: &Reporter,
    provider: Provider,
    region: &Region,
    zone_id: Option<&str>,
    zone_name: Option<(&str, &str)>,
) -> Result<Option<ZoneId>, Rejection> {
    if let Some(id) = zone_id {
        return Ok(ZoneId::parse_optional("zone_id", provider, region, id)?);
    }
    let Some((field, name)) = zone_name.filter(|(_, name)| !name.is_empty()) else {
        return Ok(None);
    };
    let mapped = reporter.zone_map.get(name).and_then(|id| {
        ZoneId::parse_optional(field, provider, region, id)
            .ok()
            .flatten()
    });
    match mapped {
        Some(zone) => Ok(Some(zone)),
        None => Err(Rejection::new(
            field,
            format!(
                "AZ name {:?} is not in your account's zone map: send the zone id instead, or \
                 ask the operator to derive the map from your registered role \
                 (capsight-admin tenant zones)",
                name.chars().take(64).collect::<String>()
            ),
        )),
    }
}

/// capsight's own report schema (`POST /v1/reports`), one object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Client-chosen id, for de-duplication of retries.
    pub id: Option<String>,
    /// When it happened (default: now).
    pub observed_at: Option<DateTime<Utc>>,
    /// `aws`, `gcp`, `azure`, `lambda`.
    pub provider: String,
    /// Region.
    pub region: String,
    /// Zone ID (preferred).
    pub zone_id: Option<String>,
    /// AWS AZ name, mapped with the tenant's zone map.
    pub zone_name: Option<String>,
    /// Instance type.
    pub instance_type: String,
    /// `on_demand` (default), `spot`, `capacity_block`.
    pub market: Option<String>,
    /// What happened.
    pub outcome: ReportOutcome,
    /// Raw provider error code (launch_failed).
    pub error_code: Option<String>,
    /// Raw provider error message (launch_failed).
    pub error_message: Option<String>,
    /// Request -> running (launch_succeeded).
    pub provisioning_ms: Option<u32>,
    /// Instances requested (default 1).
    pub count: Option<u32>,
    /// Free text.
    pub note: Option<String>,
}

/// What a report says.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReportOutcome {
    /// A launch failed (give error_code).
    LaunchFailed,
    /// A launch succeeded.
    LaunchSucceeded,
    /// Capacity seen available.
    Available,
    /// Capacity seen unavailable.
    Unavailable,
    /// An instance was interrupted.
    Interrupted,
}

impl Report {
    /// The report's signal; `index` keeps ids distinct within a batch without a client id.
    pub fn normalize(
        self,
        reporter: &Reporter,
        index: usize,
        now: DateTime<Utc>,
    ) -> Result<Signal, Rejection> {
        let provider = Provider::parse("provider", &self.provider)?;
        let region = Region::parse("region", provider, &self.region)?;
        let zone = resolve_zone(
            reporter,
            provider,
            &region,
            self.zone_id.as_deref(),
            self.zone_name.as_deref().map(|n| ("zone_name", n)),
        )?;
        let market = match self.market.as_deref() {
            None => Market::OnDemand,
            Some(m) => Market::parse("market", m)?,
        };
        let key = CapacityKey {
            provider,
            instance_type: InstanceType::parse("instance_type", provider, &self.instance_type)?,
            region,
            zone,
            market,
        };
        reporter.check(&key)?;
        let observed_at = check_time("observed_at", self.observed_at.unwrap_or(now), now)?;
        let code = self.error_code.unwrap_or_default();
        let message = self.error_message.unwrap_or_default();
        let count = self.count.unwrap_or(1);
        if !(1..=1000).contains(&count) {
            return Err(Rejection::new("count", "must be 1..=1000"));
        }
        let payload = match self.outcome {
            ReportOutcome::LaunchFailed => {
                if code.is_empty() {
                    return Err(Rejection::new(
                        "error_code",
                        "is required when outcome is launch_failed",
                    ));
                }
                let c = classify(provider, &code, &message);
                if c.class == ErrorClass::None {
                    return Err(Rejection::new(
                        "error_code",
                        format!("{code:?} is not an error"),
                    ));
                }
                Payload::LaunchAttempt(LaunchAttempt {
                    outcome: LaunchOutcome::Failed,
                    error_class: c.class,
                    hinted_zones: map_hints(reporter, &key, &c.zone_hints),
                    hinted_regions: c
                        .region_hints
                        .iter()
                        .filter_map(|r| Region::parse("hint", provider, r).ok())
                        .collect(),
                    error_code: code,
                    error_message: message,
                    provisioning_ms: None,
                    method: ProbeMethod::TenantLaunch,
                    count,
                })
            }
            ReportOutcome::LaunchSucceeded => Payload::LaunchAttempt(LaunchAttempt {
                outcome: LaunchOutcome::Succeeded,
                error_class: ErrorClass::None,
                error_code: String::new(),
                error_message: String::new(),
                provisioning_ms: self.provisioning_ms.filter(|ms| *ms > 0),
                hinted_zones: vec![],
                hinted_regions: vec![],
                method: ProbeMethod::TenantLaunch,
                count,
            }),
            outcome => Payload::CrowdReport(CrowdReport {
                kind: match outcome {
                    ReportOutcome::Available => CrowdReportKind::Available,
                    ReportOutcome::Interrupted => CrowdReportKind::Interrupted,
                    _ => CrowdReportKind::Unavailable,
                },
                error_class: if code.is_empty() {
                    ErrorClass::None
                } else {
                    classify(provider, &code, &message).class
                },
                error_code: code,
                note: self.note.unwrap_or_default(),
            }),
        };
        let client_id = self.id.unwrap_or_default();
        let signal = Signal {
            id: SignalId::derived(
                SignalSource::Report,
                &[
                    reporter.hash.as_str(),
                    "report",
                    &client_id,
                    &index.to_string(),
                    &observed_at.to_rfc3339(),
                    &key.to_string(),
                ],
            ),
            observed_at,
            source: SignalSource::Report,
            tenant: Some(reporter.hash.clone()),
            key,
            payload,
        };
        // the domain's own validation (bounded texts...) applies too
        Signal::try_from(capsight_proto::v1::Signal::from(&signal))?;
        Ok(signal)
    }
}

fn map_hints(reporter: &Reporter, key: &CapacityKey, hints: &[String]) -> Vec<ZoneId> {
    hints
        .iter()
        .filter_map(|h| {
            let id = reporter.zone_map.get(h).map_or(h.as_str(), String::as_str);
            ZoneId::parse_optional("hint", key.provider, &key.region, id)
                .ok()
                .flatten()
        })
        .filter(|z| reporter.catalog.knows_zone(key.provider, &key.region, z))
        .collect()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, p| v.get(p))?.as_str()
}

/// The EventBridge envelope fields we use.
#[derive(Debug, Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    time: DateTime<Utc>,
    region: String,
    #[serde(default)]
    detail: Value,
}

/// Normalizes one raw EventBridge event as an API destination delivers it.
/// `lookup` finds instances learned from earlier events of the same tenant.
pub fn eventbridge(
    body: &Value,
    reporter: &Reporter,
    now: DateTime<Utc>,
    lookup: &dyn Fn(&str) -> Option<InstanceInfo>,
) -> Result<Normalized, Rejection> {
    let env: Envelope = serde_json::from_value(body.clone())
        .map_err(|e| Rejection::new("$", format!("not an EventBridge event: {e}")))?;
    let observed_at = check_time("time", env.time, now)?;
    let provider = Provider::Aws;
    let region = Region::parse("region", provider, &env.region)?;
    let id = |i: usize, key: &CapacityKey| {
        SignalId::derived(
            SignalSource::Report,
            &[
                reporter.hash.as_str(),
                "eventbridge",
                &env.id,
                &i.to_string(),
                &key.to_string(),
            ],
        )
    };
    let mut out = Normalized::default();
    let signal = |i: usize, key: CapacityKey, payload: Payload| Signal {
        id: id(i, &key),
        observed_at,
        source: SignalSource::Report,
        tenant: Some(reporter.hash.clone()),
        key,
        payload,
    };
    match (env.source.as_str(), env.detail_type.as_str()) {
        ("aws.ec2", "AWS API Call via CloudTrail")
            if str_at(&env.detail, &["eventName"]) == Some("RunInstances") =>
        {
            let d = &env.detail;
            let region = match str_at(d, &["awsRegion"]) {
                Some(r) => Region::parse("detail.awsRegion", provider, r)?,
                None => region,
            };
            let instance_type =
                str_at(d, &["requestParameters", "instanceType"]).ok_or_else(|| {
                    Rejection::new("detail.requestParameters.instanceType", "is required")
                })?;
            let instance_type = InstanceType::parse(
                "detail.requestParameters.instanceType",
                provider,
                instance_type,
            )?;
            let market = if str_at(
                d,
                &["requestParameters", "instanceMarketOptions", "marketType"],
            ) == Some("spot")
            {
                Market::Spot
            } else {
                Market::OnDemand
            };
            let zone = resolve_zone(
                reporter,
                provider,
                &region,
                None,
                str_at(d, &["requestParameters", "placement", "availabilityZone"])
                    .map(|n| ("detail.requestParameters.placement.availabilityZone", n)),
            )?;
            let key = CapacityKey {
                provider,
                region,
                zone,
                instance_type,
                market,
            };
            reporter.check(&key).map_err(|mut e| {
                e.field = match e.field.as_str() {
                    "instance_type" => "detail.requestParameters.instanceType",
                    "zone_id" => "detail.requestParameters.placement.availabilityZone",
                    _ => "detail.awsRegion",
                }
                .to_owned();
                e
            })?;
            let count = d
                .pointer("/requestParameters/instancesSet/items/0/minCount")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .unwrap_or(1);
            let attempt = match str_at(d, &["errorCode"]) {
                Some(code) => {
                    let message = str_at(d, &["errorMessage"]).unwrap_or_default();
                    let c = classify(provider, code, message);
                    LaunchAttempt {
                        outcome: LaunchOutcome::Failed,
                        error_class: if c.class == ErrorClass::None {
                            ErrorClass::Unknown
                        } else {
                            c.class
                        },
                        hinted_zones: map_hints(reporter, &key, &c.zone_hints),
                        hinted_regions: vec![],
                        error_code: code.chars().take(256).collect(),
                        error_message: message.chars().take(4000).collect(),
                        provisioning_ms: None,
                        method: ProbeMethod::TenantLaunch,
                        count,
                    }
                }
                None => {
                    for item in d
                        .pointer("/responseElements/instancesSet/items")
                        .and_then(Value::as_array)
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                    {
                        // instance ids are remembered: only bounded ones
                        if let Some(iid) = str_at(item, &["instanceId"]).filter(|i| i.len() <= 64) {
                            let zone = resolve_zone(
                                reporter,
                                provider,
                                &key.region,
                                None,
                                str_at(item, &["placement", "availabilityZone"])
                                    .map(|n| ("placement.availabilityZone", n)),
                            )
                            .ok()
                            .flatten()
                            .filter(|z| reporter.catalog.knows_zone(provider, &key.region, z))
                            .or_else(|| key.zone.clone());
                            out.learned.push((
                                iid.to_owned(),
                                InstanceInfo {
                                    key: CapacityKey {
                                        zone,
                                        ..key.clone()
                                    },
                                },
                            ));
                        }
                    }
                    LaunchAttempt {
                        outcome: LaunchOutcome::Succeeded,
                        error_class: ErrorClass::None,
                        error_code: String::new(),
                        error_message: String::new(),
                        provisioning_ms: None,
                        hinted_zones: vec![],
                        hinted_regions: vec![],
                        method: ProbeMethod::TenantLaunch,
                        count,
                    }
                }
            };
            out.signals
                .push(signal(0, key, Payload::LaunchAttempt(attempt)));
        }
        (
            "aws.ec2",
            kind @ ("EC2 Spot Instance Interruption Warning"
            | "EC2 Instance Rebalance Recommendation"
            | "EC2 Spot Instance Request Fulfillment"
            | "EC2 Instance State-change Notification"),
        ) => {
            let instance_id = str_at(&env.detail, &["instance-id"])
                .ok_or_else(|| Rejection::new("detail.instance-id", "is required"))?;
            let kind = match kind {
                "EC2 Spot Instance Interruption Warning" => InstanceEventKind::InterruptionWarning,
                "EC2 Instance Rebalance Recommendation" => {
                    InstanceEventKind::RebalanceRecommendation
                }
                "EC2 Spot Instance Request Fulfillment" => InstanceEventKind::SpotFulfillment,
                _ => InstanceEventKind::StateChange,
            };
            match lookup(instance_id) {
                Some(info) => out.signals.push(signal(
                    0,
                    info.key,
                    Payload::InstanceEvent(InstanceEvent {
                        kind,
                        instance_id: instance_id.chars().take(64).collect(),
                        action: str_at(&env.detail, &["instance-action"])
                            .unwrap_or_default()
                            .chars()
                            .take(32)
                            .collect(),
                        state: str_at(&env.detail, &["state"])
                            .unwrap_or_default()
                            .chars()
                            .take(32)
                            .collect(),
                        event_id: env.id.chars().take(128).collect(),
                    }),
                )),
                None => out.unkeyed.push(instance_id.to_owned()),
            }
        }
        (source, detail_type) => {
            return Err(Rejection {
                field: "detail-type".into(),
                reason: format!(
                    "unsupported event {source:?} / {detail_type:?}; supported: CloudTrail RunInstances, \
                     spot interruption warning, rebalance recommendation, spot fulfillment, state change"
                ),
                unsupported: true,
            });
        }
    }
    for s in &out.signals {
        Signal::try_from(capsight_proto::v1::Signal::from(s))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn reporter() -> Reporter {
        Reporter {
            hash: TenantHash::parse("t", "t-0123").unwrap(),
            zone_map: BTreeMap::new(),
            catalog: Arc::new(Catalog::embedded().unwrap()),
        }
    }

    #[test]
    fn reports_need_an_error_code_to_fail_and_times_are_bounded() {
        let now = Utc::now();
        let base = json_report("launch_failed", None);
        let err = serde_json::from_value::<Report>(base)
            .unwrap()
            .normalize(&reporter(), 0, now)
            .unwrap_err();
        assert_eq!(err.field, "error_code");
        let mut future = json_report("available", None);
        future["observed_at"] = serde_json::json!((now + chrono::TimeDelta::hours(1)).to_rfc3339());
        let err = serde_json::from_value::<Report>(future)
            .unwrap()
            .normalize(&reporter(), 0, now)
            .unwrap_err();
        assert_eq!(err.field, "observed_at");
        let ok = serde_json::from_value::<Report>(json_report("launch_succeeded", None)).unwrap();
        assert!(ok.normalize(&reporter(), 0, now).is_ok());
    }

    #[test]
    fn invented_keys_are_refused_with_422_and_invented_hints_dropped() {
        let now = Utc::now();
        let refuse = |field: &str, value: &str, expect: &str| {
            let mut v = json_report("launch_succeeded", None);
            v[field] = serde_json::json!(value);
            let err = serde_json::from_value::<Report>(v)
                .unwrap()
                .normalize(&reporter(), 0, now)
                .unwrap_err();
            assert_eq!(err.field, expect, "{err}");
            assert!(err.unsupported, "a well-formed unknown key is 422: {err}");
        };
        refuse("zone_id", "use1-az99", "zone_id");
        refuse("instance_type", "m5.large", "instance_type");
        refuse("region", "af-south-1", "region");

        let mut v = json_report("launch_failed", Some("InsufficientInstanceCapacity"));
        v["error_message"] = serde_json::json!(
            "We currently do not have sufficient g5.xlarge capacity. You can currently get \
             g5.xlarge capacity by choosing use1-az99, use1-az2."
        );
        let s = serde_json::from_value::<Report>(v)
            .unwrap()
            .normalize(&reporter(), 0, now)
            .unwrap();
        let Payload::LaunchAttempt(a) = s.payload else {
            panic!("a launch attempt")
        };
        let hinted: Vec<&str> = a.hinted_zones.iter().map(ZoneId::as_str).collect();
        assert!(!hinted.contains(&"use1-az99"), "{hinted:?}");

        let forged = serde_json::json!({
            "version": "0", "id": "e-1", "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.ec2", "account": "1", "time": now.to_rfc3339(), "region": "us-east-1",
            "detail": {"eventName": "RunInstances", "awsRegion": "us-east-1",
                "requestParameters": {"instanceType": "p9.mega"}}});
        let err = eventbridge(&forged, &reporter(), now, &|_| None).unwrap_err();
        assert!(
            err.unsupported && err.field.contains("instanceType"),
            "{err}"
        );
    }

    #[test]
    fn az_names_map_through_the_tenants_map_and_an_unmapped_one_is_refused() {
        let now = Utc::now();
        let mut who = reporter();
        who.zone_map
            .insert("us-east-1b".to_owned(), "use1-az4".to_owned());
        let named = |name: &str| {
            let mut v = json_report("launch_failed", Some("InsufficientInstanceCapacity"));
            v["zone_name"] = serde_json::json!(name);
            serde_json::from_value::<Report>(v).unwrap()
        };
        let signal = named("us-east-1b").normalize(&who, 0, now).unwrap();
        assert_eq!(signal.key.zone_str(), "use1-az4");
        // never counted region-wide: refused, naming the field
        let err = named("us-east-1a").normalize(&who, 0, now).unwrap_err();
        assert_eq!(err.field, "zone_name");
        assert!(err.reason.contains("zone map"), "{}", err.reason);
        // the same in a CloudTrail event's placement
        let event = serde_json::json!({
            "version": "0", "id": "e-1", "source": "aws.ec2",
            "detail-type": "AWS API Call via CloudTrail",
            "account": "111111111111", "region": "us-east-1", "time": now.to_rfc3339(),
            "detail": {"eventName": "RunInstances", "awsRegion": "us-east-1",
                "errorCode": "Server.InsufficientInstanceCapacity", "errorMessage": "no capacity",
                "requestParameters": {"instanceType": "g5.xlarge",
                    "placement": {"availabilityZone": "us-east-1c"}}}
        });
        let err = eventbridge(&event, &who, now, &|_| None).unwrap_err();
        assert_eq!(
            err.field,
            "detail.requestParameters.placement.availabilityZone"
        );
    }

    fn json_report(outcome: &str, code: Option<&str>) -> Value {
        let mut v = serde_json::json!({"provider": "aws", "region": "us-east-1",
            "instance_type": "g5.xlarge", "outcome": outcome});
        if let Some(c) = code {
            v["error_code"] = serde_json::json!(c);
        }
        v
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-zA-Z0-9 :.-]{0,20}".prop_map(Value::from),
            Just(Value::from("aws.ec2")),
            Just(Value::from("RunInstances")),
            Just(Value::from("AWS API Call via CloudTrail")),
            Just(Value::from(Utc::now().to_rfc3339())),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("id".to_owned()),
                        Just("detail-type".to_owned()),
                        Just("source".to_owned()),
                        Just("time".to_owned()),
                        Just("region".to_owned()),
                        Just("detail".to_owned()),
                        Just("eventName".to_owned()),
                        Just("requestParameters".to_owned()),
                        Just("instanceType".to_owned()),
                        Just("errorCode".to_owned()),
                        "[a-z]{1,8}",
                    ],
                    inner,
                    0..6,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Arbitrary JSON never panics the normalizers.
        #[test]
        fn arbitrary_json_never_panics(v in arb_json()) {
            let _ = eventbridge(&v, &reporter(), Utc::now(), &|_| None);
            if let Ok(r) = serde_json::from_value::<Report>(v) {
                let _ = r.normalize(&reporter(), 0, Utc::now());
            }
        }
    }
}
