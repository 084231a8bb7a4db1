//! The wire messages as the dashboard's JSON: enums as their lower-case names without prefix
//! (`LABEL_UNAVAILABLE` -> `"unavailable"`, an enum value this build does not know ->
//! `"unknown"`), timestamps as milliseconds since the epoch, keys as their string form
//! (`aws/us-east-1/use1-az4/p5.48xlarge/on_demand`); scores carry the catalog's GPU model,
//! count and on-demand $/GPU-hour of their instance type. And the dashboard's request bodies
//! as wire messages (not validated here: the services validate them).

use capsight_catalog::Catalog;
use capsight_proto::{
    domain::{CapacityKey, LaunchState, LaunchStep},
    v1,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The lower-case name of an enum value without its prefix; `"unknown"` for a value this build
/// does not know.
fn name(full: Option<&str>, prefix: &str) -> String {
    full.and_then(|f| f.strip_prefix(prefix))
        .map_or_else(|| "unknown".to_owned(), str::to_ascii_lowercase)
}

/// A label's name (`available`, `limited`, `unavailable`, `unspecified`, or any later one).
pub fn label(v: i32) -> String {
    name(
        v1::Label::try_from(v).ok().map(|l| l.as_str_name()),
        "LABEL_",
    )
}

fn market(v: i32) -> String {
    name(
        v1::Market::try_from(v).ok().map(|l| l.as_str_name()),
        "MARKET_",
    )
}

/// A launch state's name (`queued`, `running`, ...).
pub fn state(v: i32) -> String {
    name(
        v1::LaunchState::try_from(v).ok().map(|l| l.as_str_name()),
        "LAUNCH_STATE_",
    )
}

fn millis(t: Option<&prost_types::Timestamp>) -> Value {
    t.map_or(Value::Null, |t| {
        json!(t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
    })
}

/// A key's string form (`provider/region/zone/type/market`, zone empty when region-wide).
pub fn key_text(k: Option<&v1::CapacityKey>) -> String {
    k.map_or_else(String::new, |k| {
        format!(
            "{}/{}/{}/{}/{}",
            k.provider,
            k.region,
            k.zone_id,
            k.instance_type,
            market(k.market)
        )
    })
}

fn key_parts(k: Option<&v1::CapacityKey>) -> Value {
    k.map_or(Value::Null, |k| {
        json!({
            "text": key_text(Some(k)),
            "provider": k.provider,
            "region": k.region,
            "zone_id": k.zone_id,
            "instance_type": k.instance_type,
            "market": market(k.market),
        })
    })
}

/// The key of a string form, unvalidated (the service validates it): five `/`-separated parts.
pub fn parse_key(text: &str) -> Option<v1::CapacityKey> {
    let parts: Vec<&str> = text.split('/').collect();
    let [provider, region, zone, instance_type, market] = parts.as_slice() else {
        return None;
    };
    Some(v1::CapacityKey {
        provider: (*provider).to_owned(),
        region: (*region).to_owned(),
        zone_id: (*zone).to_owned(),
        instance_type: (*instance_type).to_owned(),
        market: market_value(market),
    })
}

/// A market name as its wire value (unspecified when unknown: the service names the field).
pub fn market_value(text: &str) -> i32 {
    v1::Market::from_str_name(&format!("MARKET_{}", text.to_ascii_uppercase())).map_or(0, i32::from)
}

/// A label name as its wire value (unspecified when empty or unknown).
pub fn label_value(text: &str) -> i32 {
    v1::Label::from_str_name(&format!("LABEL_{}", text.to_ascii_uppercase())).map_or(0, i32::from)
}

/// A key's parts, as the dashboard reads them.
#[derive(Debug, Serialize)]
struct KeyJson<'a> {
    text: String,
    provider: &'a str,
    region: &'a str,
    zone_id: &'a str,
    instance_type: &'a str,
    market: String,
}

impl<'a> KeyJson<'a> {
    fn of(k: &'a v1::CapacityKey) -> Self {
        Self {
            text: key_text(Some(k)),
            provider: &k.provider,
            region: &k.region,
            zone_id: &k.zone_id,
            instance_type: &k.instance_type,
            market: market(k.market),
        }
    }
}

/// The catalog's facts of a key's instance type.
#[derive(Debug, Serialize)]
struct GpuJson<'a> {
    gpu_model: &'a str,
    gpu_count: u32,
    gpu_memory_gib: u32,
    usd_per_gpu_hour: f64,
}

fn catalog_facts<'c>(k: Option<&v1::CapacityKey>, catalog: &'c Catalog) -> Option<GpuJson<'c>> {
    let k = CapacityKey::try_from(k?.clone()).ok()?;
    let t = catalog.get(k.provider, &k.instance_type)?;
    Some(GpuJson {
        gpu_model: &t.gpu_model,
        gpu_count: t.gpu_count,
        gpu_memory_gib: t.gpu_memory_gib,
        usd_per_gpu_hour: t.usd_per_gpu_hour(),
    })
}

/// One evidence item.
#[derive(Debug, Serialize)]
struct EvidenceJson {
    feature: String,
    value: f64,
    contribution: f64,
    samples: u64,
}

/// A score as the dashboard reads it, serialized straight to JSON (the capacity map's list is
/// its largest answer: no intermediate `Value` tree).
#[derive(Debug, Serialize)]
pub struct ScoreJson<'a> {
    key: Option<KeyJson<'a>>,
    score: u32,
    label: String,
    confidence: f64,
    updated_at: Option<i64>,
    window_secs: i64,
    signal_count: u64,
    /// Absent in the capacity map's list (the explanation reads the key's own score).
    #[serde(skip_serializing_if = "Option::is_none")]
    evidence: Option<Vec<EvidenceJson>>,
    gpu: Option<GpuJson<'a>>,
}

impl<'a> ScoreJson<'a> {
    /// A score with its evidence (`with_evidence`) and the catalog's facts of its type.
    pub fn of(s: &'a v1::Score, catalog: &'a Catalog, with_evidence: bool) -> Self {
        Self {
            key: s.key.as_ref().map(KeyJson::of),
            score: s.score,
            label: label(s.label),
            confidence: s.confidence,
            updated_at: s
                .updated_at
                .as_ref()
                .map(|t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000)),
            window_secs: s.window.as_ref().map_or(0, |w| w.seconds),
            signal_count: s.signal_count,
            evidence: with_evidence.then(|| {
                s.evidence
                    .iter()
                    .map(|e| EvidenceJson {
                        feature: name(
                            v1::Feature::try_from(e.feature)
                                .ok()
                                .map(|f| f.as_str_name()),
                            "FEATURE_",
                        ),
                        value: e.value,
                        contribution: e.contribution,
                        samples: u64::from(e.samples),
                    })
                    .collect()
            }),
            gpu: catalog_facts(s.key.as_ref(), catalog),
        }
    }
}

/// A score with its evidence and the catalog's facts of its type.
pub fn score(s: &v1::Score, catalog: &Catalog) -> Value {
    serde_json::to_value(ScoreJson::of(s, catalog, true)).unwrap_or(Value::Null)
}

/// A history bucket.
pub fn history_point(p: &v1::HistoryPoint) -> Value {
    json!({
        "at": millis(p.at.as_ref()),
        "score": p.score,
        "label": label(p.label),
        "confidence": p.confidence,
        "signal_count": p.signal_count,
    })
}

/// A history mark: the signals of one kind in one bucket (`probe`, `capacity_error`, `price`,
/// `status_incident`, `crowd_report`).
pub fn history_mark(m: &v1::HistoryMark) -> Value {
    json!({
        "at": millis(m.at.as_ref()),
        "kind": name(v1::HistoryMarkKind::try_from(m.kind).ok().map(|k| k.as_str_name()), "HISTORY_MARK_KIND_"),
        "count": m.count,
        "negative": m.negative,
        "max_value": m.max_value,
    })
}

fn check_status(v: i32) -> String {
    name(
        v1::CheckStatus::try_from(v).ok().map(|c| c.as_str_name()),
        "CHECK_STATUS_",
    )
}

fn alternative(a: &v1::Alternative) -> Value {
    json!({
        "key": key_parts(a.key.as_ref()),
        "score": a.score,
        "label": label(a.label),
        "confidence": a.confidence,
        "usd_per_gpu_hour": a.usd_per_gpu_hour,
        "gpu_model": a.gpu_model,
        "gpu_count": a.gpu_count,
        "reason": a.reason,
        "advice": a.advice,
        "rank": a.rank,
    })
}

/// A preflight's answer.
pub fn preflight(r: &v1::PreflightResponse, catalog: &Catalog) -> Value {
    json!({
        "preflight_id": r.preflight_id,
        "decision": name(v1::Decision::try_from(r.decision).ok().map(|d| d.as_str_name()), "DECISION_"),
        "summary": r.summary,
        "checks": r.checks.iter().map(|c| json!({
            "name": c.name,
            "status": check_status(c.status),
            "reason": c.reason,
            "error_code": c.error_code,
        })).collect::<Vec<_>>(),
        "alternatives": r.alternatives.iter().map(alternative).collect::<Vec<_>>(),
        "score": r.score.as_ref().map(|s| score(s, catalog)),
        "quota_headroom": r.quota_headroom,
    })
}

/// One launch transition, with its step (`fallback`, `standby_active`, ...; see
/// [`LaunchStep::as_str`]) or `null`.
pub fn launch_event(e: &v1::LaunchEvent) -> Value {
    let step = LaunchState::from_wire("state", e.state)
        .ok()
        .and_then(|s| LaunchStep::of(s, e.attempt, &e.detail));
    json!({
        "step": step.map(LaunchStep::as_str),
        "switch": matches!(step, Some(LaunchStep::Standby(s)) if s.is_switch()),
        "job_id": e.job_id,
        "seq": e.seq,
        "state": state(e.state),
        "at": millis(e.at.as_ref()),
        "key": key_parts(e.key.as_ref()),
        "instance_id": e.instance_id,
        "attempt": e.attempt,
        "error_class": name(v1::ErrorClass::try_from(e.error_class).ok().map(|c| c.as_str_name()), "ERROR_CLASS_"),
        "error_code": e.error_code,
        "detail": e.detail,
    })
}

/// A launch with its transitions.
pub fn launch_status(l: &v1::LaunchStatus) -> Value {
    let spec = l.spec.as_ref();
    json!({
        "job_id": l.job_id,
        "state": state(l.state),
        "key": key_parts(spec.and_then(|s| s.key.as_ref())),
        "count": spec.map_or(0, |s| s.count),
        "created_at": millis(l.created_at.as_ref()),
        "cancel_requested": l.cancel_requested,
        "events": l.events.iter().map(launch_event).collect::<Vec<_>>(),
    })
}

/// What the dashboard asks to preflight or launch.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpecBody {
    /// `provider/region/zone/type/market` (zone may be empty).
    pub key: String,
    /// Instances.
    pub count: u32,
    /// Machine image.
    pub image_id: String,
    /// Spot or batch work that survives interruption.
    pub interruptible: bool,
    /// Other instance types with the same-or-better GPU.
    pub allow_substitutes: bool,
    /// Regions allowed for alternatives (empty = any).
    pub allowed_regions: Vec<String>,
    /// Most to pay per GPU-hour (0 = no limit).
    pub max_usd_per_gpu_hour: f64,
    /// Most alternatives (0 = the service's default).
    pub limit: u32,
    /// Minimum label of an alternative (empty = the service's default).
    pub min_label: String,
    /// Launch only: alternatives the launcher may walk on a capacity error.
    pub max_fallbacks: u32,
    /// Launch only, spot only: keep a stopped on-demand clone as a warm standby.
    pub warm_standby: bool,
    /// Launch only: client idempotency key.
    pub idempotency_key: String,
}

impl SpecBody {
    fn spec(&self) -> Option<v1::LaunchSpec> {
        Some(v1::LaunchSpec {
            key: Some(parse_key(&self.key)?),
            count: self.count,
            image_id: self.image_id.clone(),
            ..Default::default()
        })
    }

    fn constraints(&self) -> v1::Constraints {
        v1::Constraints {
            allowed_regions: self.allowed_regions.clone(),
            max_usd_per_gpu_hour: self.max_usd_per_gpu_hour,
            interruptible: self.interruptible,
            allow_substitutes: self.allow_substitutes,
            min_label: label_value(&self.min_label),
            limit: self.limit,
            ..Default::default()
        }
    }

    /// As a `Preflight` request; `None` when the key is not five parts.
    pub fn preflight(&self) -> Option<v1::PreflightRequest> {
        Some(v1::PreflightRequest {
            spec: Some(self.spec()?),
            constraints: Some(self.constraints()),
            live_probe: false,
        })
    }

    /// As a `Launch` request; `None` when the key is not five parts.
    pub fn launch(&self) -> Option<v1::LaunchRequest> {
        Some(v1::LaunchRequest {
            spec: Some(self.spec()?),
            constraints: Some(self.constraints()),
            max_fallbacks: self.max_fallbacks,
            warm_standby: self.warm_standby,
            idempotency_key: self.idempotency_key.clone(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_this_build_does_not_know_is_unknown() {
        assert_eq!(label(v1::Label::Unavailable.into()), "unavailable");
        assert_eq!(label(v1::Label::Available.into()), "available");
        assert_eq!(label(99), "unknown");
    }

    #[test]
    fn fallbacks_and_standby_switches_are_named_on_their_transitions() {
        let event = |state: v1::LaunchState, attempt: u32, detail: &str| {
            launch_event(&v1::LaunchEvent {
                state: state.into(),
                attempt,
                detail: detail.into(),
                ..Default::default()
            })
        };
        let fallback = event(v1::LaunchState::Provisioning, 2, "falling back to ...");
        assert_eq!(fallback["step"], "fallback");
        assert_eq!(fallback["switch"], false);
        let first = event(v1::LaunchState::Provisioning, 1, "launching (attempt 1)");
        assert!(first["step"].is_null());
        let active = event(v1::LaunchState::Running, 1, "standby active: standby=i-1");
        assert_eq!(active["step"], "standby_active");
        assert_eq!(active["switch"], true);
        let ready = event(
            v1::LaunchState::Running,
            1,
            "standby ready: standby=i-1 stopped",
        );
        assert_eq!(ready["step"], "standby_ready");
        assert_eq!(ready["switch"], false);
    }

    #[test]
    fn keys_round_trip_through_their_text() {
        let text = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";
        let k = parse_key(text).unwrap_or_else(|| panic!("five parts"));
        assert_eq!(k.market, i32::from(v1::Market::OnDemand));
        assert_eq!(key_text(Some(&k)), text);
        assert!(parse_key("aws/us-east-1/p5.48xlarge").is_none());
        assert_eq!(market_value("SPOT"), i32::from(v1::Market::Spot));
        assert_eq!(market_value("bogus"), 0);
    }
}
