//! The scorer's in-memory state: a window, a score-history tracker and an alert tracker per key,
//! and the partition each key arrived on. No I/O.
//!
//! Contract:
//! * a key must be [`Engine::seed`]ed (its window rebuilt from storage) before signals for it are
//!   [`Engine::apply`]ed; [`Engine::unseeded`] names the keys of a batch that still need it;
//! * [`Engine::apply`] returns, for every key the batch touched, the score to publish, and the
//!   score-history and alert rows to write. Everything is computed in event time (the key's
//!   newest observation is its "now"), so replaying the same signals gives the same scores;
//! * [`Engine::evict_idle`] forgets keys whose newest observation is older than a horizon and
//!   names them, so the pipeline can tombstone them on the scores topic;
//! * [`Engine::drop_partitions`] forgets every key of the given partitions (revoked or newly
//!   assigned): they are seeded again on next sight;
//! * tenant trust: keys are scored with the [`Trust`] last given to [`Engine::set_trust`]
//!   (tenants it does not name: the trust of a fresh tenant). Every tenant report a batch adds
//!   to a window (new to it: a replayed or rebuilt one is not new) with a plain capacity
//!   opinion is checked once against its key's first-party verdict after the batch, when that
//!   verdict is at least `trust.min_verdict` strong: [`Outputs::checks`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use capsight_proto::domain::{
    CapacityKey, Label, Market, Score, Signal, SignalId, TenantHash, VerdictPolicy,
};
use capsight_tenancy::trust::TrustSettings;
use chrono::{DateTime, Utc};

use crate::config::ScorerSettings;
use crate::model::{self, ModelParams, Trust};
use crate::observation::Observation;
use crate::window::KeyWindow;

/// A label transition worth an alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The key's score at the transition.
    pub score: Score,
    /// The label before.
    pub from: Label,
    /// Confidence below the configured threshold.
    pub low_confidence: bool,
}

/// What one batch produced.
#[derive(Debug, Default)]
pub struct Outputs {
    /// The latest score of every touched key (for the compacted topic).
    pub scores: Vec<Score>,
    /// Scores that changed materially or hit the heartbeat (for ClickHouse `scores`).
    pub history: Vec<Score>,
    /// Label transitions past the cooldown (for ClickHouse `alerts`).
    pub alerts: Vec<Alert>,
    /// Tenant reports checked against first-party verdicts (for ClickHouse `tenant_checks`).
    pub checks: Vec<TrustCheck>,
}

/// A tenant's report checked against its key's first-party launch verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustCheck {
    /// Who sent it.
    pub tenant: TenantHash,
    /// The report's signal id (a report is checked once).
    pub report: SignalId,
    /// Its key.
    pub key: CapacityKey,
    /// Its observation time, ms.
    pub at_ms: i64,
    /// What it said: +1 in stock, -1 not.
    pub opinion: f64,
    /// The first-party verdict it was checked against, -1..=1.
    pub verdict: f64,
}

impl TrustCheck {
    /// True when the report said what capsight's own evidence says.
    pub fn agrees(&self) -> bool {
        self.opinion * self.verdict > 0.0
    }
}

/// A report new to its window with a plain capacity opinion, awaiting its check.
#[derive(Debug)]
struct Unchecked {
    tenant: TenantHash,
    report: SignalId,
    at_ms: i64,
    opinion: f64,
}

/// What a key's last run wrote, read back from ClickHouse when its state is rebuilt, so history
/// and alerts continue where they left off instead of starting over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resume {
    /// The last history row: (score, label, confidence, time in ms).
    pub last_written: Option<(u8, Label, f64, i64)>,
    /// The last alert: (label it moved to, time in ms).
    pub last_alert: Option<(Label, i64)>,
}

#[derive(Debug)]
struct KeyState {
    partition: i32,
    window: KeyWindow,
    /// (score, label, confidence, at_ms) of the last history row.
    last_written: Option<(u8, Label, f64, i64)>,
    /// The label alerts compare against and when the last alert fired.
    alerted_label: Option<Label>,
    last_alert_ms: Option<i64>,
}

/// Per-key state of one scorer instance.
#[derive(Debug)]
pub struct Engine {
    settings: ScorerSettings,
    /// The model's parameters.
    params: ModelParams,
    /// The same per market, each with its market's prior.
    market_params: BTreeMap<Market, ModelParams>,
    keys: HashMap<CapacityKey, KeyState>,
    trust: Trust,
    min_verdict: f64,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Engine {
    /// An engine with no keys, scoring under `verdict`.
    pub fn new(settings: ScorerSettings, verdict: &VerdictPolicy) -> Self {
        Self::with_trust_settings(settings, verdict, &TrustSettings::default())
    }

    /// An engine with no keys that checks reports and treats unknown tenants as `trust` says.
    pub fn with_trust_settings(
        settings: ScorerSettings,
        verdict: &VerdictPolicy,
        trust: &TrustSettings,
    ) -> Self {
        Self {
            params: settings.model_params(verdict),
            market_params: Market::ALL
                .iter()
                .map(|m| (*m, settings.model_params(&verdict.for_market(*m))))
                .collect(),
            settings,
            keys: HashMap::new(),
            trust: Trust::new(trust.fresh(), HashMap::new()),
            min_verdict: trust.min_verdict,
        }
    }

    /// Scores from now on with `trust` (keys are rescored when their next signal arrives).
    pub fn set_trust(&mut self, trust: Trust) {
        self.trust = trust;
    }

    /// Keys tracked.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Forgets every key whose newest observation is older than `now - horizon` and returns
    /// them (they are seeded again from storage if they are ever seen again).
    pub fn evict_idle(&mut self, now: DateTime<Utc>, horizon: Duration) -> Vec<CapacityKey> {
        let cutoff = now.timestamp_millis().saturating_sub(millis(horizon));
        let idle: Vec<CapacityKey> = self
            .keys
            .iter()
            .filter(|(_, s)| s.window.newest_ms().is_none_or(|t| t < cutoff))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &idle {
            self.keys.remove(k);
        }
        idle
    }

    /// Observations held over all keys.
    pub fn observation_count(&self) -> usize {
        self.keys.values().map(|k| k.window.len()).sum()
    }

    /// The keys among `signals` that have no state yet, with the oldest time of theirs in the
    /// batch (the rebuild must cover one window before it).
    pub fn unseeded<'a>(
        &self,
        signals: impl IntoIterator<Item = &'a Signal>,
    ) -> BTreeMap<CapacityKey, DateTime<Utc>> {
        let mut out: BTreeMap<CapacityKey, DateTime<Utc>> = BTreeMap::new();
        for s in signals {
            if !self.keys.contains_key(&s.key) {
                let e = out.entry(s.key.clone()).or_insert(s.observed_at);
                *e = (*e).min(s.observed_at);
            }
        }
        out
    }

    /// Creates a key's state from stored observations (`(id, observation)`; may be empty or
    /// hold duplicates) and what its last run wrote. Replaces any state the key had.
    ///
    /// The label alerts compare against is the last alert's label or, when the key never
    /// alerted, the last history row's label (without an alert the label never changed).
    pub fn seed(
        &mut self,
        key: CapacityKey,
        partition: i32,
        stored: impl IntoIterator<Item = (capsight_proto::domain::SignalId, Observation)>,
        resume: Resume,
    ) {
        let mut window = KeyWindow::new(self.settings.window);
        for (id, obs) in stored {
            window.insert(id, obs);
        }
        let alerted_label = resume
            .last_alert
            .map(|(label, _)| label)
            .or(resume.last_written.map(|(_, label, _, _)| label));
        self.keys.insert(
            key,
            KeyState {
                partition,
                window,
                last_written: resume.last_written,
                alerted_label,
                last_alert_ms: resume.last_alert.map(|(_, at)| at),
            },
        );
    }

    /// Forgets every key (a rejoin: all of them are rebuilt before their next score); returns
    /// how many.
    pub fn clear(&mut self) -> usize {
        let n = self.keys.len();
        self.keys.clear();
        n
    }

    /// Forgets every key on one of `partitions`.
    pub fn drop_partitions(&mut self, partitions: &BTreeSet<i32>) -> usize {
        let before = self.keys.len();
        self.keys.retain(|_, k| !partitions.contains(&k.partition));
        before - self.keys.len()
    }

    /// Adds a batch of `(partition, signal)` and scores every key it touched. Keys that were
    /// not seeded are seeded empty (callers seed them from storage first).
    pub fn apply<'a>(&mut self, batch: impl IntoIterator<Item = (i32, &'a Signal)>) -> Outputs {
        let mut touched: BTreeMap<CapacityKey, Vec<Unchecked>> = BTreeMap::new();
        for (partition, s) in batch {
            if !self.keys.contains_key(&s.key) {
                self.seed(s.key.clone(), partition, [], Resume::default());
            }
            if let Some(state) = self.keys.get_mut(&s.key) {
                state.partition = partition;
                let obs = Observation::from_signal(s);
                let opinion = model::checkable_opinion(&obs);
                let at_ms = obs.at_ms;
                let new = state.window.insert(s.id.clone(), obs);
                let unchecked = touched.entry(s.key.clone()).or_default();
                if let (true, Some(opinion), Some(tenant)) = (new, opinion, &s.tenant) {
                    unchecked.push(Unchecked {
                        tenant: tenant.clone(),
                        report: s.id.clone(),
                        at_ms,
                        opinion,
                    });
                }
            }
        }
        let mut out = Outputs::default();
        for (key, unchecked) in touched {
            if let Some(score) = self.rescore(&key, unchecked, &mut out) {
                out.scores.push(score);
            }
        }
        out
    }

    /// The current score of `key`, if it is tracked.
    pub fn score(&self, key: &CapacityKey) -> Option<Score> {
        let state = self.keys.get(key)?;
        Some(self.compute(key, state).0)
    }

    /// The key's score and its first-party launch verdict.
    fn compute(&self, key: &CapacityKey, state: &KeyState) -> (Score, f64) {
        let now_ms = state.window.newest_ms().unwrap_or(0);
        let params = self.market_params.get(&key.market).unwrap_or(&self.params);
        let a = model::assess(state.window.observations(), now_ms, params, &self.trust);
        let score = Score {
            key: key.clone(),
            score: a.score,
            label: a.label,
            confidence: a.confidence,
            evidence: a.evidence,
            window: self.settings.window,
            updated_at: DateTime::from_timestamp_millis(now_ms).unwrap_or_default(),
            signal_count: state.window.len() as u64,
            market_usd_per_hour: a.market_usd_per_hour,
        };
        (score, a.first_party)
    }

    fn rescore(
        &mut self,
        key: &CapacityKey,
        unchecked: Vec<Unchecked>,
        out: &mut Outputs,
    ) -> Option<Score> {
        let state = self.keys.get(key)?;
        let (score, verdict) = self.compute(key, state);
        if verdict.abs() >= self.min_verdict && verdict != 0.0 {
            out.checks.extend(unchecked.into_iter().map(|u| TrustCheck {
                tenant: u.tenant,
                report: u.report,
                key: key.clone(),
                at_ms: u.at_ms,
                opinion: u.opinion,
                verdict,
            }));
        }
        let now_ms = score.updated_at.timestamp_millis();
        let heartbeat = millis(self.settings.score_heartbeat);
        let cooldown = millis(self.settings.alert_cooldown);
        let material_points = self.settings.material_change_points;
        let material_conf = self.settings.material_change_confidence;
        let low = self.settings.low_confidence;
        let state = self.keys.get_mut(key)?;

        let write = match state.last_written {
            None => true,
            Some((s, l, c, at)) => {
                s.abs_diff(score.score) >= material_points
                    || l != score.label
                    || (c - score.confidence).abs() >= material_conf
                    || now_ms.saturating_sub(at) >= heartbeat
            }
        };
        if write {
            state.last_written = Some((score.score, score.label, score.confidence, now_ms));
            out.history.push(score.clone());
        }

        match state.alerted_label {
            None => state.alerted_label = Some(score.label),
            Some(from) if from != score.label => {
                let cooled = state
                    .last_alert_ms
                    .is_none_or(|last| now_ms.saturating_sub(last) >= cooldown);
                if cooled {
                    state.alerted_label = Some(score.label);
                    state.last_alert_ms = Some(now_ms);
                    out.alerts.push(Alert {
                        score: score.clone(),
                        from,
                        low_confidence: score.confidence < low,
                    });
                }
            }
            Some(_) => {}
        }
        Some(score)
    }
}

#[cfg(test)]
mod tests {
    use capsight_proto::domain::{
        CrowdReport, CrowdReportKind, ErrorClass, LaunchAttempt, Payload, SignalId, SignalSource,
    };

    use super::*;

    const KEY: &str = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";

    fn launch(i: usize, minute: i64, ok: bool) -> Signal {
        Signal {
            id: SignalId::parse("id", &format!("l-{i}")).unwrap(),
            observed_at: DateTime::from_timestamp(1_795_000_000 + minute * 60, 0).unwrap(),
            source: SignalSource::Probe,
            tenant: None,
            key: KEY.parse().unwrap(),
            payload: Payload::LaunchAttempt(LaunchAttempt::with_class(
                if ok {
                    ErrorClass::None
                } else {
                    ErrorClass::Capacity
                },
                Some(60_000),
            )),
        }
    }

    #[test]
    fn a_label_flip_alerts_once_per_cooldown() {
        let mut e = Engine::new(ScorerSettings::default(), &VerdictPolicy::default());
        let ok: Vec<Signal> = (0..5).map(|i| launch(i, i as i64, true)).collect();
        let out = e.apply(ok.iter().map(|s| (0, s)));
        assert_eq!(out.scores.len(), 1);
        assert_eq!(out.scores[0].label, Label::Available);
        assert_eq!(out.history.len(), 1);
        assert!(out.alerts.is_empty(), "the first label is not a transition");

        // capacity errors at minute 10..: Available -> Unavailable: one alert
        let bad: Vec<Signal> = (5..30).map(|i| launch(i, 10 + i as i64, false)).collect();
        let out = e.apply(bad.iter().map(|s| (0, s)));
        assert_eq!(out.alerts.len(), 1);
        assert_eq!(out.alerts[0].from, Label::Available);
        assert_ne!(out.alerts[0].score.label, Label::Available);

        // back to Available 5 minutes later: inside the 30 min cooldown, no alert
        let good: Vec<Signal> = (30..330).map(|i| launch(i, 45, true)).collect();
        let out = e.apply(good.iter().map(|s| (0, s)));
        assert_eq!(out.scores[0].label, Label::Available, "{:?}", out.scores[0]);
        assert!(out.alerts.is_empty());

        // an hour later the label still differs from the last alerted one: it alerts now
        let later = [launch(1000, 120, true)];
        let out = e.apply(later.iter().map(|s| (0, s)));
        assert_eq!(out.alerts.len(), 1);
        assert_eq!(out.alerts[0].score.label, Label::Available);
    }

    #[test]
    fn a_rebuilt_key_continues_history_and_alerts_where_they_left_off() {
        let mut e = Engine::new(ScorerSettings::default(), &VerdictPolicy::default());
        let key: CapacityKey = KEY.parse().unwrap();
        let at = |minute: i64| launch(0, minute, true).observed_at.timestamp_millis();
        // the last run wrote an Available row at minute 0 and alerted (to Available) at minute 0
        e.seed(
            key.clone(),
            0,
            [],
            Resume {
                last_written: Some((100, Label::Available, 0.5, at(0))),
                last_alert: Some((Label::Available, at(0))),
            },
        );
        // the same verdict a minute later: no new history row, no alert
        let ok = [launch(1, 1, true)];
        let out = e.apply(ok.iter().map(|s| (0, s)));
        assert!(out.alerts.is_empty());
        // capacity errors 10 minutes later: inside the cooldown of the earlier alert
        let bad: Vec<Signal> = (2..40).map(|i| launch(i, 10, false)).collect();
        let out = e.apply(bad.iter().map(|s| (0, s)));
        assert_ne!(out.scores[0].label, Label::Available);
        assert!(out.alerts.is_empty(), "the cooldown survived the rebuild");
        // past the cooldown: the transition from the resumed label alerts
        let later = [launch(100, 40, false)];
        let out = e.apply(later.iter().map(|s| (0, s)));
        assert_eq!(out.alerts.len(), 1);
        assert_eq!(out.alerts[0].from, Label::Available);
    }

    #[test]
    fn history_is_written_on_material_change_or_heartbeat_only() {
        let mut e = Engine::new(ScorerSettings::default(), &VerdictPolicy::default());
        // ten successes: past the thin-evidence range where each signal still moves the score
        let first: Vec<_> = (0..10).map(|i| launch(i, 0, true)).collect();
        assert_eq!(e.apply(first.iter().map(|s| (0, s))).history.len(), 1);
        // same verdict a minute later: nothing material, no heartbeat yet
        let same = [launch(10, 1, true)];
        let out = e.apply(same.iter().map(|s| (0, s)));
        assert_eq!(out.scores.len(), 1);
        assert_eq!(out.history.len(), 0);
        // 20 minutes later: the 15 min heartbeat
        let beat = [launch(11, 21, true)];
        assert_eq!(e.apply(beat.iter().map(|s| (0, s))).history.len(), 1);
    }

    #[test]
    fn replaying_a_batch_changes_nothing_and_dropped_partitions_are_forgotten() {
        let mut e = Engine::new(ScorerSettings::default(), &VerdictPolicy::default());
        let batch: Vec<Signal> = (0..20).map(|i| launch(i, i as i64, i % 3 != 0)).collect();
        let first = e.apply(batch.iter().map(|s| (3, s)));
        let again = e.apply(batch.iter().map(|s| (3, s)));
        assert_eq!(first.scores, again.scores);
        let key: CapacityKey = KEY.parse().unwrap();
        assert_eq!(e.unseeded(&batch).len(), 0);
        assert_eq!(e.drop_partitions(&BTreeSet::from([3])), 1);
        assert_eq!(e.unseeded(&batch).get(&key), Some(&batch[0].observed_at));
    }

    fn report(i: usize, key: &str, minute: i64, tenant: &str, kind: CrowdReportKind) -> Signal {
        Signal {
            id: SignalId::parse("id", &format!("r-{tenant}-{i}")).unwrap(),
            observed_at: DateTime::from_timestamp(1_795_000_000 + minute * 60, 0).unwrap(),
            source: SignalSource::Report,
            tenant: Some(TenantHash::parse("tenant", tenant).unwrap()),
            key: key.parse().unwrap(),
            payload: Payload::CrowdReport(CrowdReport {
                kind,
                error_class: ErrorClass::Capacity,
                error_code: String::new(),
                note: String::new(),
            }),
        }
    }

    #[test]
    fn reports_are_checked_once_against_a_clear_first_party_verdict() {
        let mut e = Engine::new(ScorerSettings::default(), &VerdictPolicy::default());
        // a report before any probe: nothing to check it against
        let early = [report(0, KEY, 0, "liar", CrowdReportKind::Unavailable)];
        assert!(e.apply(early.iter().map(|s| (0, s))).checks.is_empty());
        // probes find stock; the liar says otherwise, an honest tenant agrees
        let mut batch: Vec<Signal> = (0..4).map(|i| launch(i, 1 + i as i64, true)).collect();
        batch.push(report(1, KEY, 5, "liar", CrowdReportKind::Unavailable));
        batch.push(report(2, KEY, 5, "honest", CrowdReportKind::Available));
        let out = e.apply(batch.iter().map(|s| (0, s)));
        let verdicts: Vec<(&str, bool)> = out
            .checks
            .iter()
            .map(|c| (c.tenant.as_str(), c.agrees()))
            .collect();
        assert_eq!(verdicts, vec![("liar", false), ("honest", true)]);
        assert!(out.checks.iter().all(|c| c.verdict > 0.5));
        // the same batch again: nothing new to check
        assert!(e.apply(batch.iter().map(|s| (0, s))).checks.is_empty());
        // a key without first-party launches: not checked
        let other = "aws/us-east-1/use1-az1/p5.48xlarge/on_demand";
        let lone = [report(3, other, 6, "liar", CrowdReportKind::Unavailable)];
        assert!(e.apply(lone.iter().map(|s| (0, s))).checks.is_empty());
    }

    #[test]
    fn a_distrusted_tenant_moves_scores_less_everywhere() {
        let other = "aws/us-east-1/use1-az1/p5.48xlarge/on_demand";
        let lies: Vec<Signal> = (0..10)
            .map(|i| report(i, other, i as i64, "liar", CrowdReportKind::Unavailable))
            .collect();
        let trusted = Engine::new(ScorerSettings::default(), &VerdictPolicy::default())
            .apply(lies.iter().map(|s| (0, s)))
            .scores;
        let mut e = Engine::new(ScorerSettings::default(), &VerdictPolicy::default());
        let hash = TenantHash::parse("tenant", "liar").unwrap();
        e.set_trust(Trust::new(
            0.8,
            [(hash.as_str().to_owned(), 0.1)].into_iter().collect(),
        ));
        let distrusted = e.apply(lies.iter().map(|s| (0, s))).scores;
        assert!(
            distrusted[0].score > trusted[0].score,
            "{distrusted:?} vs {trusted:?}"
        );
    }

    #[test]
    fn idle_keys_are_evicted_after_the_horizon_only() {
        let mut e = Engine::new(ScorerSettings::default(), &VerdictPolicy::default());
        let batch: Vec<Signal> = (0..5).map(|i| launch(i, i as i64, true)).collect();
        e.apply(batch.iter().map(|s| (0, s)));
        let newest = batch[4].observed_at;
        let hour = Duration::from_secs(3600);
        assert!(
            e.evict_idle(newest + chrono::TimeDelta::minutes(59), hour)
                .is_empty()
        );
        assert_eq!(e.key_count(), 1);
        let evicted = e.evict_idle(newest + chrono::TimeDelta::minutes(61), hour);
        assert_eq!(evicted, vec![KEY.parse::<CapacityKey>().unwrap()]);
        assert_eq!(e.key_count(), 0);
        assert_eq!(e.unseeded(&batch).len(), 1, "seeded again when seen again");
    }
}
