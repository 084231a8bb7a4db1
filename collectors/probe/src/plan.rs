//! When to probe which key.
//!
//! Contract: every key gets a next-due time. After a probe the next one is due after the key's
//! base interval — `max_interval` for keys nobody asks about, shrinking towards `min_interval`
//! as tenant demand grows — times a backoff factor (x1, then x2 after `backoff_after`
//! consecutive failures, x4 after twice as many), with +-`jitter` spread so probes do not
//! bunch up. Demand cancels the backoff in the same proportion as it shortens the interval: a
//! key tenants keep asking about is waited on, and what they wait for is its recovery, which
//! only a probe (or a launch) sees; backing off there would delay exactly that. A key nobody
//! asks about backs off in full. A key a tenant was refused on within `waiting_window` (a
//! preflight answered "retry with alternatives": capsight said no, and somebody is waiting for
//! it now) with no successful probe since is due `recovery_interval` after its last probe,
//! whatever its interval: each minute its recovery goes unseen is a minute that tenant waits or
//! launches elsewhere. The refusal is what marks the key out, whoever saw the failure (a probe,
//! a launch, a report).
//! [`Planner::due`] returns the due keys, most demanded and most overdue first.

use std::{collections::HashMap, time::Duration};

use capsight_proto::domain::CapacityKey;
use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use serde::Deserialize;

/// Cadence settings (part of `[probe]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Cadence {
    /// Interval of the most demanded keys.
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
    /// Interval of keys nobody asks about.
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Relative spread, 0..1 (0.2 = +-20 %).
    pub jitter: f64,
    /// Consecutive failures before the interval doubles (quadruples after twice as many).
    pub backoff_after: u32,
    /// Interval of a refused key a tenant is waiting on; 0 = off.
    #[serde(with = "humantime_serde")]
    pub recovery_interval: Duration,
    /// How recent a refused preflight must be for its key to count as waited on.
    #[serde(with = "humantime_serde")]
    pub waiting_window: Duration,
}

impl Default for Cadence {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(10 * 60),
            max_interval: Duration::from_secs(30 * 60),
            jitter: 0.2,
            backoff_after: 2,
            recovery_interval: Duration::from_secs(3 * 60),
            waiting_window: Duration::from_secs(15 * 60),
        }
    }
}

/// Result of a probe, as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Got capacity.
    Success,
    /// Capacity error (or another failure worth backing off from).
    Failure,
    /// Not run (quota 0, budget, permission): keep the cadence, no backoff.
    Skipped,
}

impl Outcome {
    /// `success`, `failure` or `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    next_due: DateTime<Utc>,
    failures: u32,
    demand: f64,
    /// When the last probe was recorded.
    probed_at: Option<DateTime<Utc>>,
    /// When the last successful probe was recorded.
    succeeded_at: Option<DateTime<Utc>>,
    /// The newest preflight on the key that was refused for capacity.
    refused_at: Option<DateTime<Utc>>,
}

/// The probe plan.
#[derive(Debug)]
pub struct Planner {
    cadence: Cadence,
    entries: HashMap<CapacityKey, Entry>,
}

impl Planner {
    /// An empty plan.
    pub fn new(cadence: Cadence) -> Self {
        Self {
            cadence,
            entries: HashMap::new(),
        }
    }

    /// Adds `key` (due at once) if new.
    pub fn track(&mut self, key: CapacityKey, now: DateTime<Utc>) {
        self.entries.entry(key).or_insert(Entry {
            next_due: now,
            failures: 0,
            demand: 0.0,
            probed_at: None,
            succeeded_at: None,
            refused_at: None,
        });
    }

    /// Sets demand weights: requests per day for each key (others drop to 0).
    pub fn set_demand(&mut self, demand: &HashMap<CapacityKey, f64>) {
        for (key, e) in &mut self.entries {
            e.demand = demand
                .get(key)
                .copied()
                .filter(|d| d.is_finite() && *d > 0.0)
                .unwrap_or(0.0);
        }
    }

    /// Sets when each key was last refused for capacity in a preflight (others: never).
    pub fn set_refused(&mut self, refused: &HashMap<CapacityKey, DateTime<Utc>>) {
        for (key, e) in &mut self.entries {
            e.refused_at = refused.get(key).copied();
        }
    }

    /// When `e` is due as a refused key a tenant waits on at `now`, if it is one.
    fn watched_due(&self, e: &Entry, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (recovery, window) = (
            TimeDelta::from_std(self.cadence.recovery_interval).ok()?,
            TimeDelta::from_std(self.cadence.waiting_window).ok()?,
        );
        let refused = e.refused_at?;
        let waited_on = now - refused <= window && e.succeeded_at.is_none_or(|s| s < refused);
        (waited_on && !recovery.is_zero()).then(|| e.probed_at.map_or(refused, |p| p + recovery))
    }

    /// When `e` is due at `now`: its planned time, or sooner when a tenant waits on it.
    fn due_at(&self, e: &Entry, now: DateTime<Utc>) -> DateTime<Utc> {
        self.watched_due(e, now)
            .map_or(e.next_due, |w| w.min(e.next_due))
    }

    /// The keys due at `now`, highest priority (demand, then lateness) first.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<CapacityKey> {
        let mut due: Vec<(&CapacityKey, &Entry)> = self
            .entries
            .iter()
            .filter(|(_, e)| self.due_at(e, now) <= now)
            .collect();
        due.sort_by(|(ka, a), (kb, b)| {
            b.demand
                .total_cmp(&a.demand)
                .then(a.next_due.cmp(&b.next_due))
                .then(ka.cmp(kb))
        });
        due.into_iter().map(|(k, _)| k.clone()).collect()
    }

    /// How far demand of `d` requests/day pulls a key towards the most demanded: 0 at none,
    /// half-way at 10 requests/day, approaching 1.
    fn pull(demand: f64) -> f64 {
        demand / (demand + 10.0)
    }

    /// The base interval for a demand of `d` requests/day: max at 0, approaching min as demand
    /// grows.
    fn base(&self, demand: f64) -> Duration {
        let (min, max) = (
            self.cadence.min_interval.as_secs_f64(),
            self.cadence
                .max_interval
                .as_secs_f64()
                .max(self.cadence.min_interval.as_secs_f64()),
        );
        Duration::from_secs_f64(max - (max - min) * Self::pull(demand))
    }

    /// Records a probe of `key` and schedules its next one.
    pub fn record(
        &mut self,
        key: &CapacityKey,
        outcome: Outcome,
        now: DateTime<Utc>,
        rng: &mut impl Rng,
    ) {
        let Some((base, pull)) = self
            .entries
            .get(key)
            .map(|e| (self.base(e.demand), Self::pull(e.demand)))
        else {
            return;
        };
        let after = self.cadence.backoff_after.max(1);
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        match outcome {
            Outcome::Success => e.failures = 0,
            Outcome::Failure => e.failures = e.failures.saturating_add(1),
            Outcome::Skipped => {}
        }
        let backoff: f64 = if e.failures >= 2 * after {
            4.0
        } else if e.failures >= after {
            2.0
        } else {
            1.0
        };
        let factor = 1.0 + (backoff - 1.0) * (1.0 - pull);
        let jitter = self.cadence.jitter.clamp(0.0, 0.9);
        let spread = if jitter > 0.0 {
            rng.random_range(-jitter..=jitter)
        } else {
            0.0
        };
        let secs = base.as_secs_f64() * factor * (1.0 + spread);
        e.next_due = now + TimeDelta::milliseconds((secs * 1000.0) as i64);
        e.probed_at = Some(now);
        if outcome == Outcome::Success {
            e.succeeded_at = Some(now);
        }
    }

    /// The demand weight of `key` (requests per day; 0 when untracked).
    pub fn demand(&self, key: &CapacityKey) -> f64 {
        self.entries.get(key).map_or(0.0, |e| e.demand)
    }

    /// When `key` is next due by its interval (see [`Planner::due`] for a waited-on key).
    pub fn next_due(&self, key: &CapacityKey) -> Option<DateTime<Utc>> {
        self.entries.get(key).map(|e| e.next_due)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use rand::SeedableRng;

    use super::*;

    fn key(s: &str) -> CapacityKey {
        s.parse().unwrap()
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap()
    }

    fn no_jitter() -> Cadence {
        Cadence {
            jitter: 0.0,
            ..Cadence::default()
        }
    }

    /// A planner without jitter tracking `keys` since `t0`, the keys, and a seeded rng.
    fn tracking<const N: usize>(
        keys: [&str; N],
    ) -> (Planner, [CapacityKey; N], rand::rngs::StdRng) {
        let mut p = Planner::new(no_jitter());
        let keys = keys.map(key);
        for k in &keys {
            p.track(k.clone(), t0());
        }
        (p, keys, rand::rngs::StdRng::seed_from_u64(1))
    }

    #[test]
    fn demand_shortens_the_interval_within_bounds() {
        let (mut p, [hot, cold], mut rng) = tracking([
            "aws/us-east-1//p5.48xlarge/on_demand",
            "aws/us-east-1//g5.xlarge/on_demand",
        ]);
        p.set_demand(&[(hot.clone(), 1000.0)].into());
        assert_eq!(p.due(t0()), vec![hot.clone(), cold.clone()], "demand first");
        p.record(&hot, Outcome::Success, t0(), &mut rng);
        p.record(&cold, Outcome::Success, t0(), &mut rng);
        let hot_gap = p.next_due(&hot).unwrap() - t0();
        let cold_gap = p.next_due(&cold).unwrap() - t0();
        assert_eq!(cold_gap, TimeDelta::minutes(30));
        assert!(
            hot_gap >= TimeDelta::minutes(10) && hot_gap < TimeDelta::minutes(11),
            "{hot_gap}"
        );
    }

    #[test]
    fn consecutive_failures_back_off_two_then_four_times() {
        let (mut p, [k], mut rng) = tracking(["aws/us-east-1//p5.48xlarge/on_demand"]);
        let gaps: Vec<i64> = [
            Outcome::Failure,
            Outcome::Failure,
            Outcome::Failure,
            Outcome::Failure,
            Outcome::Skipped,
            Outcome::Success,
        ]
        .iter()
        .map(|o| {
            p.record(&k, *o, t0(), &mut rng);
            (p.next_due(&k).unwrap() - t0()).num_minutes()
        })
        .collect();
        assert_eq!(gaps, vec![30, 60, 60, 120, 120, 30]);
    }

    #[test]
    fn demand_cancels_the_backoff_so_a_waited_on_recovery_is_seen_soon() {
        let (mut p, [hot, warm], mut rng) = tracking([
            "aws/us-east-1//p5.48xlarge/on_demand",
            "aws/us-east-1//p4d.24xlarge/on_demand",
        ]);
        p.set_demand(&[(hot.clone(), 1000.0), (warm.clone(), 10.0)].into());
        let mut gaps = |k: &CapacityKey| -> Vec<i64> {
            (0..4)
                .map(|_| {
                    p.record(k, Outcome::Failure, t0(), &mut rng);
                    (p.next_due(k).unwrap() - t0()).num_seconds()
                })
                .collect()
        };
        // 1000 requests/day: the base interval (10.2 min) almost unchanged by four failures
        let hot_gaps = gaps(&hot);
        assert!(
            hot_gaps.iter().all(|g| (600..=630).contains(g)),
            "{hot_gaps:?}"
        );
        // 10 requests/day: base 20 min, the backoff halved (x1.5, then x2.5)
        assert_eq!(gaps(&warm), vec![1200, 1800, 1800, 3000]);
    }

    #[test]
    fn a_key_a_tenant_was_just_refused_on_is_probed_at_the_recovery_interval_until_it_succeeds() {
        let (mut p, [waited, quiet, recovered], mut rng) = tracking([
            "aws/us-east-1/use1-az1/p5.48xlarge/on_demand",
            "aws/us-east-1/use1-az2/p5.48xlarge/on_demand",
            "aws/us-east-1/use1-az4/p5.48xlarge/on_demand",
        ]);
        let at = |m: i64| t0() + TimeDelta::minutes(m);
        // the last probes: waited and recovered succeeded before the refusals, quiet failed
        p.record(&waited, Outcome::Success, t0(), &mut rng);
        p.record(&quiet, Outcome::Failure, t0(), &mut rng);
        p.record(&recovered, Outcome::Success, at(2), &mut rng);
        // tenants were refused on waited (its stock went since, seen by a launch) and, before
        // its successful probe, on recovered
        p.set_refused(&[(waited.clone(), at(1)), (recovered.clone(), at(1))].into());
        assert!(p.due(at(2)).is_empty());
        // three minutes after its last probe the waited-on key is due; the one nobody was
        // refused on waits for its interval, and so does one probed successfully since
        assert_eq!(p.due(at(3)), vec![waited.clone()]);
        // its probes fail: still watched while tenants are refused
        p.record(&waited, Outcome::Failure, at(3), &mut rng);
        assert!(p.due(at(5)).is_empty());
        assert_eq!(p.due(at(6)), vec![waited.clone()]);
        // once nobody has been refused on it for the waiting window, the interval is back
        assert!(p.due(at(17)).is_empty());
        assert_eq!(p.due(at(30)), vec![quiet.clone()], "by its interval");
        // refused again, then a successful probe: the watch ends
        p.set_refused(&[(waited.clone(), at(20))].into());
        assert_eq!(p.due(at(20)), vec![waited.clone()]);
        p.record(&waited, Outcome::Success, at(21), &mut rng);
        assert!(!p.due(at(25)).contains(&waited));
        // a refused key never probed is due at once
        let fresh = key("aws/us-east-1/use1-az6/p5.48xlarge/on_demand");
        p.track(fresh.clone(), at(21));
        assert!(p.due(at(21)).contains(&fresh));
        // off: the interval alone decides
        let mut off = Planner::new(Cadence {
            recovery_interval: Duration::ZERO,
            ..no_jitter()
        });
        off.track(waited.clone(), t0());
        off.record(&waited, Outcome::Failure, t0(), &mut rng);
        off.set_refused(&[(waited.clone(), at(1))].into());
        assert!(off.due(at(3)).is_empty());
    }

    /// What one tenant's refused preflights can move: only keys the prober already tracks, and
    /// those no faster than the recovery interval, however many refusals arrive.
    #[test]
    fn refusals_neither_add_keys_nor_pull_a_key_faster_than_the_recovery_interval() {
        let (mut p, [tracked], mut rng) =
            tracking(["aws/us-east-1/use1-az1/p5.48xlarge/on_demand"]);
        let invented = key("aws/us-east-1/use1-az9/p5.48xlarge/on_demand");
        p.record(&tracked, Outcome::Failure, t0(), &mut rng);
        for m in 0..3 {
            let at = t0() + TimeDelta::seconds(m * 30);
            p.set_refused(&[(tracked.clone(), at), (invented.clone(), at)].into());
            assert!(p.due(at).is_empty(), "refused at +{}s", m * 30);
        }
        assert_eq!(p.due(t0() + TimeDelta::minutes(3)), vec![tracked]);
        assert_eq!(p.next_due(&invented), None, "a refusal never adds a key");
    }

    proptest::proptest! {
        /// With jitter, the next probe always lands within +-jitter of the backed-off interval.
        #[test]
        fn jitter_stays_in_bounds(seed in 0u64..10_000, demand in 0.0f64..10_000.0) {
            let mut p = Planner::new(Cadence::default());
            let k = key("aws/us-west-2//p4d.24xlarge/spot");
            p.track(k.clone(), t0());
            p.set_demand(&[(k.clone(), demand)].into());
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            p.record(&k, Outcome::Success, t0(), &mut rng);
            let gap = (p.next_due(&k).unwrap() - t0()).num_seconds();
            proptest::prop_assert!((480..=2160).contains(&gap), "{gap}");
        }
    }
}
