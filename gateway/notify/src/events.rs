//! From stored events to notifications (pure): which launch transitions and label changes
//! become which notifications for which subscriptions, their ids (stable across replays, the
//! idempotency id receivers see), and the fan-out memory that keeps one event from being
//! queued twice and applies each subscription's cooldown.
//!
//! Tenant boundary: a launch event goes only to subscriptions of the launch's tenant; label
//! changes are global facts and go to every subscription whose key selectors match.

use std::collections::{HashMap, HashSet};

use capsight_catalog::Catalog;
use capsight_clickhouse::rows::{AlertRow, LaunchEventRow, NotifyOutboxRow};
use capsight_proto::domain::{LaunchStep, ReapCause, StandbyStep};
use chrono::DateTime;
use serde::{Deserialize, Serialize};

use crate::model::{EventKind, Subscription};

/// The launch a notification is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchFacts {
    /// Job id.
    pub job_id: String,
    /// The transition's seq.
    pub seq: u32,
    /// Its state.
    pub state: String,
    /// The key of the attempt: `provider/region/zone/type/market`.
    pub key: String,
    /// Instances serving after it.
    pub instance_ids: Vec<String>,
    /// Attempt number.
    pub attempt: u32,
    /// The transition's detail.
    pub detail: String,
}

/// The label change a notification is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelFacts {
    /// `provider/region/zone/type/market`.
    pub key: String,
    /// Label before.
    pub from: String,
    /// Label after.
    pub to: String,
    /// Score after.
    pub score: u8,
    /// Confidence after.
    pub confidence: f32,
    /// Scored at low confidence.
    pub low_confidence: bool,
}

/// A notification's body in the generic JSON format (also stored in the outbox and the
/// dead-letter store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Notification id (= the `idempotency-key` header).
    pub id: String,
    /// Event kind.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The subscription it was sent for.
    pub subscription_id: String,
    /// Event time, RFC 3339 with milliseconds.
    pub occurred_at: String,
    /// One line for humans (the Slack / Discord text).
    pub summary: String,
    /// For launch events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<LaunchFacts>,
    /// For label changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_change: Option<LabelFacts>,
}

/// Where an event came from, for ids and ordering.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// Stable id of the source row (`launch/<tenant>/<job>/<seq>`, `alert/<key>/<ms>`).
    pub id: String,
    /// Event time, ms.
    pub at_ms: u64,
    /// What the cooldown is kept per (a key, a job).
    pub subject: String,
    /// Only this tenant may receive it (launch events).
    pub tenant: Option<String>,
}

/// One kind of notification an event yields, before it is addressed to subscriptions.
#[derive(Debug, Clone, PartialEq)]
pub struct Happening {
    /// Where from.
    pub source: Source,
    /// Kind.
    pub kind: EventKind,
    /// Human line.
    pub summary: String,
    /// Launch facts.
    pub launch: Option<LaunchFacts>,
    /// Label facts.
    pub label: Option<LabelFacts>,
}

/// `(unix ms, capacity key)` of a row carrying the split time (`at`, `at_ms`) and the key
/// columns (`provider`, `region`, `zone_id`, `instance_type`, `market`).
macro_rules! when_and_key {
    ($row:expr) => {
        (
            u64::from($row.at) * 1000 + u64::from($row.at_ms),
            format!(
                "{}/{}/{}/{}/{}",
                $row.provider, $row.region, $row.zone_id, $row.instance_type, $row.market
            ),
        )
    };
}

fn token<'a>(detail: &'a str, name: &str) -> Option<&'a str> {
    detail.split_whitespace().find_map(|w| w.strip_prefix(name))
}

/// The notification kinds one launch transition yields, in sending order: a fallback; the
/// warning and the standby start of a `standby active` switch; a standby stop; a reaper's
/// termination.
pub fn launch_happenings(e: &LaunchEventRow) -> Vec<Happening> {
    let (at_ms, key) = when_and_key!(e);
    let facts = LaunchFacts {
        job_id: e.job_id.clone(),
        seq: e.seq,
        state: e.state.as_str().to_owned(),
        key: key.clone(),
        instance_ids: capsight_clickhouse_ids(&e.instance_id),
        attempt: e.attempt,
        detail: e.detail.clone(),
    };
    let job = &e.job_id;
    let mut out: Vec<(EventKind, String)> = Vec::new();
    match LaunchStep::of(e.state, e.attempt, &e.detail) {
        Some(LaunchStep::Fallback) => out.push((
            EventKind::Fallback,
            format!(
                "launch {job}: falling back to {key} (attempt {})",
                e.attempt
            ),
        )),
        Some(LaunchStep::Standby(StandbyStep::Active)) => {
            let interrupted = token(&e.detail, "interrupted=").unwrap_or("?");
            let cause = token(&e.detail, "event=").unwrap_or("interruption");
            // also a replacement interrupted during the cooldown (the standby still ran)
            out.push((
                EventKind::InterruptionWarning,
                format!(
                    "launch {job}: the cloud is taking back spot instance {interrupted} ({cause})"
                ),
            ));
            out.push((
                EventKind::StandbyStarted,
                format!(
                    "launch {job}: warm standby {} serves now",
                    token(&e.detail, "standby=").unwrap_or("?")
                ),
            ));
        }
        Some(LaunchStep::Standby(StandbyStep::Stopped)) => out.push((
            EventKind::StandbyStopped,
            format!(
                "launch {job}: warm standby {} stopped; spot serves again",
                token(&e.detail, "standby=").unwrap_or("?")
            ),
        )),
        _ => {}
    }
    if let Some(cause) = ReapCause::of(e.state, &e.detail) {
        out.push((
            EventKind::Reaped,
            format!(
                "launch {job}: terminated by its lifecycle ({}): {}",
                cause.as_str(),
                e.detail
            ),
        ));
    }
    out.into_iter()
        .map(|(kind, summary)| Happening {
            source: Source {
                id: format!("launch/{}/{}/{}", e.tenant, e.job_id, e.seq),
                at_ms,
                subject: e.job_id.clone(),
                tenant: Some(e.tenant.clone()),
            },
            kind,
            summary,
            launch: Some(facts.clone()),
            label: None,
        })
        .collect()
}

fn capsight_clickhouse_ids(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The label change of an alert row.
pub fn alert_happening(a: &AlertRow) -> Happening {
    let (at_ms, key) = when_and_key!(a);
    Happening {
        source: Source {
            id: format!("alert/{key}/{at_ms}"),
            at_ms,
            subject: key.clone(),
            tenant: None,
        },
        kind: EventKind::LabelChanged,
        summary: format!(
            "{key}: {} -> {} (score {}, confidence {:.2}{})",
            a.from_label,
            a.to_label,
            a.score,
            a.confidence,
            if a.low_confidence != 0 { ", low" } else { "" }
        ),
        launch: None,
        label: Some(LabelFacts {
            key,
            from: a.from_label.clone(),
            to: a.to_label.clone(),
            score: a.score,
            confidence: a.confidence,
            low_confidence: a.low_confidence != 0,
        }),
    }
}

/// Whether `sub` wants `h` (tenant boundary, kinds, key selectors, confidence, and nothing
/// from before the subscription existed).
pub fn wants(
    sub: &Subscription,
    h: &Happening,
    alert: Option<&AlertRow>,
    catalog: &Catalog,
) -> bool {
    if !sub.kinds.contains(&h.kind) {
        return false;
    }
    if h.source.at_ms < u64::from(sub.created_at) * 1000 {
        return false;
    }
    match (&h.source.tenant, h.kind.is_launch_event()) {
        (Some(t), true) => t == &sub.tenant,
        (None, false) => {
            let Some(a) = alert else { return false };
            (sub.low_confidence || a.low_confidence == 0)
                && sub.keys.iter().any(|k| k.matches(a, catalog))
        }
        _ => false,
    }
}

/// The notification id of `h` for subscription `sub`: a UUID v5 of both, so a replay yields
/// the same id.
pub fn notification_id(sub_id: &str, source_id: &str, kind: EventKind) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("capsight:notify:{sub_id}:{source_id}:{}", kind.as_str()).as_bytes(),
    )
    .hyphenated()
    .to_string()
}

fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The outbox row of `h` for `sub`, written at `now` (seconds).
pub fn outbox_row(sub: &Subscription, h: &Happening, now: u32) -> NotifyOutboxRow {
    let id = notification_id(&sub.id, &h.source.id, h.kind);
    let event = Event {
        id: id.clone(),
        kind: h.kind,
        subscription_id: sub.id.clone(),
        occurred_at: rfc3339(h.source.at_ms),
        summary: h.summary.clone(),
        launch: h.launch.clone(),
        label_change: h.label.clone(),
    };
    NotifyOutboxRow {
        id,
        tenant: sub.tenant.clone(),
        subscription_id: sub.id.clone(),
        kind: h.kind.as_str().to_owned(),
        subject: h.source.subject.clone(),
        at: u32::try_from(h.source.at_ms / 1000).unwrap_or(u32::MAX),
        at_ms: u16::try_from(h.source.at_ms % 1000).unwrap_or(0),
        created_at: now,
        event: serde_json::to_string(&event).unwrap_or_default(),
    }
}

/// What the fan-out decided for one (subscription, happening).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Queue it.
    Queue,
    /// Queued before (a re-read of the look-back window).
    Seen,
    /// The same kind about the same subject was queued within the cooldown.
    Cooldown,
}

/// The fan-out's memory: ids queued, and per (subscription, kind, subject) the event time of
/// the last queued notification. Rebuilt at start from the outbox.
#[derive(Debug, Default)]
pub struct Memory {
    seen: HashSet<String>,
    last: HashMap<(String, String, String), u64>,
    /// Event time (ms) per seen id, to forget old ones.
    times: HashMap<String, u64>,
}

impl Memory {
    /// Remembers an outbox row (at start, or once written).
    pub fn remember(&mut self, r: &NotifyOutboxRow) {
        let at = u64::from(r.at) * 1000 + u64::from(r.at_ms);
        self.seen.insert(r.id.clone());
        self.times.insert(r.id.clone(), at);
        let k = (r.subscription_id.clone(), r.kind.clone(), r.subject.clone());
        let e = self.last.entry(k).or_insert(at);
        *e = (*e).max(at);
    }

    /// The decision for `h` towards `sub`.
    pub fn decide(&self, sub: &Subscription, h: &Happening) -> Decision {
        let id = notification_id(&sub.id, &h.source.id, h.kind);
        if self.seen.contains(&id) {
            return Decision::Seen;
        }
        let k = (
            sub.id.clone(),
            h.kind.as_str().to_owned(),
            h.source.subject.clone(),
        );
        let cooldown = u64::try_from(sub.cooldown.as_millis()).unwrap_or(u64::MAX);
        match self.last.get(&k) {
            Some(last)
                if h.source.at_ms < last.saturating_add(cooldown) && h.source.at_ms >= *last =>
            {
                Decision::Cooldown
            }
            _ => Decision::Queue,
        }
    }

    /// Forgets what happened before `ms` (older than the look-back and every cooldown).
    pub fn forget_before(&mut self, ms: u64) {
        self.times.retain(|id, at| {
            let keep = *at >= ms;
            if !keep {
                self.seen.remove(id);
            }
            keep
        });
        self.last.retain(|_, at| *at >= ms);
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Nothing remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a panic in a test is a failed assertion"
    )]

    use std::{collections::BTreeSet, time::Duration};

    use capsight_proto::domain::LaunchState;

    use super::*;
    use crate::model::Format;

    fn row(
        tenant: &str,
        seq: u32,
        state: LaunchState,
        attempt: u32,
        detail: &str,
    ) -> LaunchEventRow {
        LaunchEventRow {
            job_id: "job-1".into(),
            seq,
            tenant: tenant.into(),
            at: 1_000 + seq,
            at_ms: 0,
            state,
            provider: "aws".into(),
            region: "us-east-1".into(),
            zone_id: "use1-az1".into(),
            instance_type: "g5.xlarge".into(),
            market: "spot".into(),
            instance_id: "i-1".into(),
            attempt,
            error_class: String::new(),
            error_code: String::new(),
            detail: detail.into(),
        }
    }

    fn sub(tenant: &str, kinds: &[EventKind], cooldown: u64) -> Subscription {
        Subscription {
            tenant: tenant.into(),
            id: format!("sub-{tenant}"),
            created_at: 0,
            url: "http://127.0.0.1/".into(),
            format: Format::Json,
            kinds: kinds.iter().copied().collect::<BTreeSet<_>>(),
            keys: vec![],
            cooldown: Duration::from_secs(cooldown),
            low_confidence: false,
        }
    }

    #[test]
    fn transitions_yield_their_notifications_in_order() {
        let active = row(
            "acme",
            4,
            LaunchState::Running,
            1,
            "standby active: standby=i-sb interrupted=i-1 event=interruption_warning started_in_ms=5",
        );
        let kinds: Vec<EventKind> = launch_happenings(&active).iter().map(|h| h.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::InterruptionWarning, EventKind::StandbyStarted]
        );
        let stopped = row(
            "acme",
            6,
            LaunchState::Running,
            1,
            "standby stopped: standby=i-sb after the 4s cooldown",
        );
        assert_eq!(
            launch_happenings(&stopped)[0].kind,
            EventKind::StandbyStopped
        );
        let fallback = row("acme", 3, LaunchState::Provisioning, 2, "falling back");
        assert_eq!(launch_happenings(&fallback)[0].kind, EventKind::Fallback);
        let reaped = row(
            "acme",
            7,
            LaunchState::Terminated,
            1,
            "idle TTL reached: no activity heartbeat for 61s (idle TTL 60s)",
        );
        assert_eq!(launch_happenings(&reaped)[0].kind, EventKind::Reaped);
        for quiet in [
            row("acme", 1, LaunchState::Provisioning, 1, "launching"),
            row("acme", 2, LaunchState::Running, 1, "running"),
            row(
                "acme",
                5,
                LaunchState::Running,
                1,
                "replacement running: standby=i-sb replacement=i-2",
            ),
            row("acme", 7, LaunchState::Terminated, 1, "gone: i-1"),
        ] {
            assert!(launch_happenings(&quiet).is_empty(), "{}", quiet.detail);
        }
    }

    #[test]
    fn launch_events_reach_only_their_tenant_and_the_kinds_asked_for() {
        let c = Catalog::embedded().unwrap();
        let active = row(
            "acme",
            4,
            LaunchState::Running,
            1,
            "standby active: standby=i-sb interrupted=i-1 event=x",
        );
        let hs = launch_happenings(&active);
        let acme = sub("acme", &[EventKind::StandbyStarted], 0);
        let globex = sub("globex", &EventKind::ALL, 0);
        assert!(!wants(&acme, &hs[0], None, &c));
        assert!(wants(&acme, &hs[1], None, &c));
        assert!(hs.iter().all(|h| !wants(&globex, h, None, &c)));
        let later = Subscription {
            created_at: 2_000,
            ..acme
        };
        assert!(
            !wants(&later, &hs[1], None, &c),
            "nothing from before the subscription"
        );
    }

    #[test]
    fn ids_are_stable_and_the_memory_dedupes_and_cools_down() {
        let s = sub("acme", &[EventKind::StandbyStarted], 60);
        let h = |seq: u32, secs: u32| {
            let mut r = row(
                "acme",
                seq,
                LaunchState::Running,
                1,
                "standby active: standby=i-sb interrupted=i-1",
            );
            r.at = secs;
            launch_happenings(&r).remove(1)
        };
        let first = h(4, 1_000);
        let o = outbox_row(&s, &first, 5);
        assert_eq!(o.id, outbox_row(&s, &first, 9).id);
        let mut m = Memory::default();
        assert_eq!(m.decide(&s, &first), Decision::Queue);
        m.remember(&o);
        assert_eq!(m.decide(&s, &first), Decision::Seen);
        assert_eq!(m.decide(&s, &h(8, 1_030)), Decision::Cooldown);
        assert_eq!(m.decide(&s, &h(9, 1_061)), Decision::Queue);
        m.forget_before(2_000_000);
        assert!(m.is_empty());
        assert_eq!(m.decide(&s, &first), Decision::Queue);
        let event: Event = serde_json::from_str(&o.event).unwrap();
        assert_eq!(event.id, o.id);
        assert_eq!(event.kind, EventKind::StandbyStarted);
    }
}
