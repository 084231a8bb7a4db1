//! Rendering: tables with coloured labels for people, JSON for scripts. The JSON field names
//! follow the protobuf field names; enums are lowercase names (`available`, `can_launch`),
//! times RFC 3339.

use capsight_proto::{
    domain::{CapacityKey, Label},
    v1,
};
use serde_json::{Value, json};

/// Whether to colour.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn label(self, l: i32, width: usize) -> String {
        let name = label_name(l);
        let padded = format!("{name:<width$}");
        match Label::from_wire("label", l) {
            Ok(Label::Available) => self.paint("32", &padded),
            Ok(Label::Limited) => self.paint("33", &padded),
            Ok(Label::Unavailable) => self.paint("31", &padded),
            Ok(Label::Unknown) => self.paint("2", &padded),
            Err(_) => padded,
        }
    }
}

/// The output target.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
    pub style: Style,
}

fn label_name(l: i32) -> &'static str {
    Label::from_wire("label", l).map_or("-", Label::as_str)
}

fn key_str(k: Option<&v1::CapacityKey>) -> String {
    k.and_then(|k| CapacityKey::try_from(k.clone()).ok())
        .map_or_else(|| "-".into(), |k| k.to_string())
}

fn time(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .map_or_else(String::new, |t| t.to_rfc3339())
}

fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
}

fn score_json(s: &v1::Score) -> Value {
    json!({
        "key": key_str(s.key.as_ref()),
        "score": s.score,
        "label": label_name(s.label),
        "confidence": s.confidence,
        "signal_count": s.signal_count,
        "updated_at": time(s.updated_at.as_ref()),
        "evidence": s.evidence.iter().map(|e| json!({
            "feature": v1::Feature::try_from(e.feature).map_or_else(|_| "-".into(), |f| enum_name(f.as_str_name(), "FEATURE_")),
            "value": e.value,
            "contribution": e.contribution,
            "samples": e.samples,
        })).collect::<Vec<_>>(),
    })
}

fn alternative_json(a: &v1::Alternative) -> Value {
    json!({
        "rank": a.rank,
        "key": key_str(a.key.as_ref()),
        "score": a.score,
        "label": label_name(a.label),
        "confidence": a.confidence,
        "usd_per_gpu_hour": a.usd_per_gpu_hour,
        "gpu_model": a.gpu_model,
        "gpu_count": a.gpu_count,
        "reason": a.reason,
        "advice": a.advice,
    })
}

fn state_name(s: i32) -> String {
    v1::LaunchState::try_from(s).map_or_else(
        |_| "-".into(),
        |s| enum_name(s.as_str_name(), "LAUNCH_STATE_"),
    )
}

fn event_json(e: &v1::LaunchEvent) -> Value {
    json!({
        "job_id": e.job_id,
        "seq": e.seq,
        "state": state_name(e.state),
        "at": time(e.at.as_ref()),
        "key": key_str(e.key.as_ref()),
        "instance_id": e.instance_id,
        "attempt": e.attempt,
        "error_code": e.error_code,
        "detail": e.detail,
    })
}

fn status_json(s: &v1::LaunchStatus) -> Value {
    json!({
        "job_id": s.job_id,
        "state": state_name(s.state),
        "key": key_str(s.spec.as_ref().and_then(|p| p.key.as_ref())),
        "count": s.spec.as_ref().map_or(0, |p| p.count),
        "created_at": time(s.created_at.as_ref()),
        "cancel_requested": s.cancel_requested,
        "events": s.events.iter().map(event_json).collect::<Vec<_>>(),
    })
}

fn print(v: &Value) {
    println!("{v}");
}

impl Out {
    /// Prints `items` as `{"<name>": [...]}` in JSON mode, or the line `none` when there are
    /// none; true when the caller is to print them as a table.
    fn listed<T>(
        &self,
        name: &str,
        items: &[T],
        to_json: impl Fn(&T) -> Value,
        none: &str,
    ) -> bool {
        if self.json {
            let mut object = serde_json::Map::new();
            object.insert(name.to_owned(), items.iter().map(to_json).collect());
            print(&Value::Object(object));
            return false;
        }
        if items.is_empty() {
            println!("{none}");
            return false;
        }
        true
    }

    pub fn scores(&self, scores: &[v1::Score]) {
        if !self.listed("scores", scores, score_json, "no scores match") {
            return;
        }
        println!(
            "{:<52} {:>5}  {:<11}  {:>4}  {:>7}  {:<20}  evidence",
            "KEY", "SCORE", "LABEL", "CONF", "SIGNALS", "UPDATED"
        );
        for s in scores {
            let conf = if s.confidence < 0.3 {
                format!("{:>4.2}*", s.confidence)
            } else {
                format!("{:>4.2} ", s.confidence)
            };
            let evidence: Vec<String> = s
                .evidence
                .iter()
                .take(3)
                .map(|e| {
                    let f = v1::Feature::try_from(e.feature)
                        .map_or_else(|_| "-".into(), |f| enum_name(f.as_str_name(), "FEATURE_"));
                    format!("{f} {:+.0}", e.contribution)
                })
                .collect();
            println!(
                "{:<52} {:>5}  {}  {} {:>7}  {:<20}  {}",
                key_str(s.key.as_ref()),
                s.score,
                self.style.label(s.label, 11),
                conf,
                s.signal_count,
                time(s.updated_at.as_ref())
                    .chars()
                    .take(19)
                    .collect::<String>(),
                evidence.join(", ")
            );
        }
        println!("{} keys (* = low confidence)", scores.len());
    }

    pub fn transition(&self, t: &v1::ScoreTransition) {
        let s = t.score.clone().unwrap_or_default();
        if self.json {
            return print(&json!({ "score": score_json(&s), "previous": label_name(t.previous) }));
        }
        println!(
            "{}  {:<52} {} -> {} ({}, confidence {:.2})",
            time(s.updated_at.as_ref()),
            key_str(s.key.as_ref()),
            label_name(t.previous),
            self.style.label(s.label, 0),
            s.score,
            s.confidence
        );
    }

    pub fn history(&self, key: &str, points: &[v1::HistoryPoint]) {
        if self.json {
            return print(&json!({
                "key": key,
                "points": points.iter().map(|p| json!({
                    "at": time(p.at.as_ref()), "score": p.score, "label": label_name(p.label),
                    "confidence": p.confidence, "signal_count": p.signal_count,
                })).collect::<Vec<_>>(),
            }));
        }
        if points.is_empty() {
            println!("no history for {key} in that range");
            return;
        }
        println!(
            "{:<26} {:>5}  {:<11}  {:>4}",
            "AT", "SCORE", "LABEL", "CONF"
        );
        for p in points {
            println!(
                "{:<26} {:>5}  {}  {:>4.2}  {}",
                time(p.at.as_ref()),
                p.score,
                self.style.label(p.label, 11),
                p.confidence,
                "#".repeat((p.score / 5) as usize)
            );
        }
    }

    pub fn preflight(&self, r: &v1::PreflightResponse) {
        let decision = v1::Decision::try_from(r.decision)
            .map_or_else(|_| "-".into(), |d| enum_name(d.as_str_name(), "DECISION_"));
        if self.json {
            return print(&json!({
                "preflight_id": r.preflight_id,
                "decision": decision,
                "summary": r.summary,
                "checks": r.checks.iter().map(|c| json!({
                    "name": c.name,
                    "status": v1::CheckStatus::try_from(c.status).map_or_else(|_| "-".into(), |s| enum_name(s.as_str_name(), "CHECK_STATUS_")),
                    "reason": c.reason,
                    "error_code": c.error_code,
                })).collect::<Vec<_>>(),
                "quota_headroom": r.quota_headroom,
                "score": r.score.as_ref().map(score_json),
                "alternatives": r.alternatives.iter().map(alternative_json).collect::<Vec<_>>(),
            }));
        }
        let painted = match v1::Decision::try_from(r.decision) {
            Ok(v1::Decision::CanLaunch) => self.style.paint("32;1", &decision.to_uppercase()),
            Ok(v1::Decision::RetryWithAlternatives) => {
                self.style.paint("33;1", &decision.to_uppercase())
            }
            _ => self.style.paint("31;1", &decision.to_uppercase()),
        };
        println!("{painted}  {}", r.summary);
        for c in &r.checks {
            let mark = match v1::CheckStatus::try_from(c.status) {
                Ok(v1::CheckStatus::Passed) => self.style.paint("32", "ok  "),
                Ok(v1::CheckStatus::Failed) => self.style.paint("31", "FAIL"),
                Ok(v1::CheckStatus::Warning) => self.style.paint("33", "warn"),
                _ => "skip".to_owned(),
            };
            println!("  [{mark}] {:<10} {}", c.name, c.reason);
        }
        if !r.alternatives.is_empty() {
            println!();
            self.alternatives(&r.alternatives);
        }
        println!("preflight id {}", r.preflight_id);
    }

    pub fn alternatives(&self, alts: &[v1::Alternative]) {
        if !self.listed(
            "alternatives",
            alts,
            alternative_json,
            "no alternatives match the constraints",
        ) {
            return;
        }
        println!(
            "{:>2}  {:<52} {:>5}  {:<11}  {:>4}  {:>8}  reason",
            "#", "KEY", "SCORE", "LABEL", "CONF", "$/GPU-H"
        );
        for a in alts {
            println!(
                "{:>2}  {:<52} {:>5}  {}  {:>4.2}  {:>8.2}  {}",
                a.rank,
                key_str(a.key.as_ref()),
                a.score,
                self.style.label(a.label, 11),
                a.confidence,
                a.usd_per_gpu_hour,
                a.reason
            );
            println!("    {}", a.advice);
        }
    }

    pub fn launched(&self, r: &v1::LaunchResponse) {
        if self.json {
            return print(&json!({ "job_id": r.job_id, "state": state_name(r.state) }));
        }
        println!("launch {} {}", r.job_id, state_name(r.state));
    }

    pub fn launch_event(&self, e: &v1::LaunchEvent) {
        if self.json {
            return print(&event_json(e));
        }
        println!(
            "{}  #{:<2} {:<12} {} {} {}",
            time(e.at.as_ref()),
            e.seq,
            state_name(e.state),
            key_str(e.key.as_ref()),
            e.instance_id,
            e.detail
        );
    }

    pub fn launch_status(&self, s: &v1::LaunchStatus) {
        if self.json {
            return print(&status_json(s));
        }
        println!(
            "launch {}  {}{}  {}  created {}",
            s.job_id,
            state_name(s.state),
            if s.cancel_requested {
                " (cancel requested)"
            } else {
                ""
            },
            key_str(s.spec.as_ref().and_then(|p| p.key.as_ref())),
            time(s.created_at.as_ref())
        );
        for e in &s.events {
            self.launch_event(e);
        }
    }

    pub fn launches(&self, l: &[v1::LaunchStatus]) {
        if !self.listed("launches", l, status_json, "no launches") {
            return;
        }
        println!(
            "{:<38} {:<12} {:<52} {:>5}  CREATED",
            "JOB", "STATE", "KEY", "COUNT"
        );
        for s in l {
            println!(
                "{:<38} {:<12} {:<52} {:>5}  {}",
                s.job_id,
                state_name(s.state),
                key_str(s.spec.as_ref().and_then(|p| p.key.as_ref())),
                s.spec.as_ref().map_or(0, |p| p.count),
                time(s.created_at.as_ref())
            );
        }
    }

    pub fn heartbeat(&self, job_id: &str, r: &v1::HeartbeatResponse) {
        if self.json {
            return print(
                &json!({ "job_id": job_id, "at": time(r.at.as_ref()), "state": state_name(r.state) }),
            );
        }
        println!(
            "heartbeat {job_id} at {} ({})",
            time(r.at.as_ref()),
            state_name(r.state)
        );
    }

    pub fn reported(&self, r: &v1::SubmitReportResponse) {
        if self.json {
            return print(&json!({ "signal_id": r.signal_id }));
        }
        println!("report accepted as signal {}", r.signal_id);
    }

    pub fn subscribed(&self, r: &v1::CreateSubscriptionResponse) {
        let sub = r.subscription.as_ref();
        if self.json {
            return print(&json!({
                "subscription": sub.map(subscription_json),
                "secret": r.secret,
            }));
        }
        println!(
            "subscription {} created; its signing secret (shown only now): {}",
            sub.map_or("?", |s| s.id.as_str()),
            r.secret
        );
    }

    pub fn subscriptions(&self, subs: &[v1::Subscription]) {
        if !self.listed("subscriptions", subs, subscription_json, "no subscriptions") {
            return;
        }
        println!(
            "{:<38} {:<8} {:>8}  {:<50} URL",
            "ID", "FORMAT", "COOLDOWN", "EVENTS"
        );
        for s in subs {
            let v = subscription_json(s);
            println!(
                "{:<38} {:<8} {:>7}s  {:<50} {}",
                s.id,
                v["format"].as_str().unwrap_or("-"),
                s.cooldown_seconds,
                v["events"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default(),
                s.url
            );
        }
    }

    pub fn deleted(&self, id: &str) {
        if self.json {
            return print(&json!({ "deleted": id }));
        }
        println!("subscription {id} deleted");
    }

    pub fn dead_letters(&self, d: &[v1::DeadLetter]) {
        let json = |x: &v1::DeadLetter| {
            json!({
                "id": x.id,
                "subscription_id": x.subscription_id,
                "event": notification_event_name(x.event),
                "attempts": x.attempts,
                "last_status": x.last_status,
                "last_error": x.last_error,
                "failed_at": time(x.failed_at.as_ref()),
                "payload": serde_json::from_str::<Value>(&x.payload).unwrap_or(Value::Null),
            })
        };
        if !self.listed("dead_letters", d, json, "no dead letters") {
            return;
        }
        println!(
            "{:<38} {:<22} {:>8}  {:<20} LAST ERROR",
            "ID", "EVENT", "ATTEMPTS", "FAILED"
        );
        for x in d {
            println!(
                "{:<38} {:<22} {:>8}  {:<20} {}",
                x.id,
                notification_event_name(x.event),
                x.attempts,
                time(x.failed_at.as_ref()),
                x.last_error
            );
        }
    }
}

fn notification_event_name(e: i32) -> String {
    v1::NotificationEvent::try_from(e).map_or_else(
        |_| "-".into(),
        |e| enum_name(e.as_str_name(), "NOTIFICATION_EVENT_"),
    )
}

fn subscription_json(s: &v1::Subscription) -> Value {
    json!({
        "id": s.id,
        "url": s.url,
        "format": v1::WebhookFormat::try_from(s.format)
            .map_or_else(|_| "-".into(), |f| enum_name(f.as_str_name(), "WEBHOOK_FORMAT_")),
        "events": s.events.iter().map(|e| notification_event_name(*e)).collect::<Vec<_>>(),
        "keys": s.keys.iter().map(|k| json!({
            "provider": k.provider,
            "region": k.region,
            "instance_type": k.instance_type,
            "gpu_model": k.gpu_model,
            "market": k.market,
        })).collect::<Vec<_>>(),
        "cooldown_seconds": s.cooldown_seconds,
        "include_low_confidence": s.include_low_confidence,
        "created_at": time(s.created_at.as_ref()),
    })
}
