//! How a verdict is made honest about its evidence: the `[verdict]` config section shared by the
//! scorer (shrinking thin evidence toward a prior, the unknown label) and by everything that
//! serves or acts on scores (the gateway's view, preflight, alternatives and the launcher's
//! fallback choice), which age a published score with wall-clock time.
//!
//! Contract:
//! * [`VerdictPolicy::label`]: [`Label::Unknown`] below `unknown_below` confidence, else
//!   [`Label::for_score`];
//! * [`VerdictPolicy::shrink`]: a score backed by `n` (decayed) first-party observations is
//!   pulled toward `prior_score` as if `prior_weight` neutral observations were added, so one
//!   signal never reads 0 or 100; [`VerdictPolicy::for_market`] is the policy of one market,
//!   whose prior is its `market_prior` entry when the config sets one;
//! * [`VerdictPolicy::served`]: a score published at `updated_at` (the time of its newest
//!   evidence) and served at `now` keeps its score but loses confidence as its evidence ages,
//!   `confidence * 0.5 ^ (age / (2 * half_life))` (the scorer's own recency factor, continued
//!   past the last signal), and is labelled by [`VerdictPolicy::label`]; evidence older than
//!   `stale_after` is served as [`Label::Unknown`] with confidence 0 whatever it said. A score
//!   dated in the future (clock skew) is served as of its own time. With `revert_half_life` set,
//!   the served score also returns to its market's prior as its evidence ages,
//!   `prior + (score - prior) * 0.5 ^ (age / revert_half_life)`: stock comes and goes, so what
//!   the newest evidence said an hour ago says less about now than what it said a minute ago,
//!   and an old "unavailable" must not keep reading unavailable after the stock is back.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{FieldError, Label, Market, Score};

/// The `[verdict]` section (documented with its defaults in `deploy/config/capsight.toml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerdictPolicy {
    /// Recency decay: an observation's weight halves every `half_life` of age (the scorer), and
    /// a served score's confidence halves every two (the serving side).
    #[serde(with = "humantime_serde")]
    pub half_life: Duration,
    /// Below this confidence a score is labelled unknown.
    pub unknown_below: f64,
    /// Evidence older than this is served as unknown; at least `half_life`.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// The score a key has with no evidence, 0..=100.
    pub prior_score: f64,
    /// How many first-party observations the prior is worth (>= 0; 0 = no shrinkage).
    pub prior_weight: f64,
    /// The prior of one market's keys, 0..=100, where it differs from `prior_score` (the
    /// evaluation fits a base rate per market).
    pub market_prior: BTreeMap<Market, f64>,
    /// How fast a served score returns to its market's prior as its evidence ages: the distance
    /// halves every `revert_half_life`; 0 = off (the score is served as published).
    #[serde(with = "humantime_serde")]
    pub revert_half_life: Duration,
}

/// A published score as served at some moment (see [`VerdictPolicy::served_verdict`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Served {
    /// The score, returned toward the prior by the age of its evidence when reversion is on.
    pub score: u8,
    /// The confidence, aged.
    pub confidence: f64,
    /// The label of both.
    pub label: Label,
}

impl Served {
    /// `published` with this value, confidence and label.
    pub fn on(self, published: &Score) -> Score {
        Score {
            score: self.score,
            confidence: self.confidence,
            label: self.label,
            ..published.clone()
        }
    }

    /// True when serving changes nothing of `published` (value, label, confidence).
    pub fn is_as(&self, published: &Score) -> bool {
        self.label == published.label
            && self.score == published.score
            && (self.confidence - published.confidence).abs() < f64::EPSILON
    }
}

impl Default for VerdictPolicy {
    fn default() -> Self {
        Self {
            half_life: Duration::from_secs(6 * 3600),
            unknown_below: 0.2,
            stale_after: Duration::from_secs(12 * 3600),
            prior_score: 50.0,
            prior_weight: 2.0,
            market_prior: BTreeMap::new(),
            revert_half_life: Duration::ZERO,
        }
    }
}

impl VerdictPolicy {
    /// Checks the section; the error names the offending field.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.half_life.is_zero() {
            return Err(FieldError::new("verdict.half_life", "must be > 0"));
        }
        if !(0.0..=1.0).contains(&self.unknown_below) {
            return Err(FieldError::new("verdict.unknown_below", "must be 0..=1"));
        }
        if self.stale_after < self.half_life {
            return Err(FieldError::new(
                "verdict.stale_after",
                "must be at least verdict.half_life",
            ));
        }
        if self.revert_half_life > self.stale_after {
            return Err(FieldError::new(
                "verdict.revert_half_life",
                "must be at most verdict.stale_after (0 = off)",
            ));
        }
        if !(0.0..=100.0).contains(&self.prior_score) {
            return Err(FieldError::new("verdict.prior_score", "must be 0..=100"));
        }
        for (market, prior) in &self.market_prior {
            if !(0.0..=100.0).contains(prior) {
                return Err(FieldError::new(
                    format!("verdict.market_prior.{market}"),
                    "must be 0..=100",
                ));
            }
        }
        if !(self.prior_weight.is_finite() && self.prior_weight >= 0.0) {
            return Err(FieldError::new(
                "verdict.prior_weight",
                "must be finite and >= 0",
            ));
        }
        Ok(())
    }

    /// The policy of `market`'s keys: `prior_score` is the market's prior.
    pub fn for_market(&self, market: Market) -> Self {
        Self {
            prior_score: self.prior_of(market),
            ..self.clone()
        }
    }

    /// The prior of `market`'s keys: its `market_prior` entry, else `prior_score`.
    fn prior_of(&self, market: Market) -> f64 {
        self.market_prior
            .get(&market)
            .copied()
            .unwrap_or(self.prior_score)
    }

    /// The label of a score with this confidence.
    pub fn label(&self, score: u8, confidence: f64) -> Label {
        if confidence < self.unknown_below {
            Label::Unknown
        } else {
            Label::for_score(score)
        }
    }

    /// `raw` (0..=100) backed by `n` decayed first-party observations, pulled toward the prior.
    pub fn shrink(&self, raw: f64, n: f64) -> f64 {
        let n = n.max(0.0);
        if n + self.prior_weight <= 0.0 {
            return raw;
        }
        (n * raw + self.prior_weight * self.prior_score) / (n + self.prior_weight)
    }

    /// `score` as served at `now`: its confidence aged, its value returned toward its market's
    /// prior when reversion is on, and its label from both (see the module contract).
    pub fn served_verdict(&self, score: &Score, now: DateTime<Utc>) -> Served {
        let age = (now - score.updated_at).to_std().unwrap_or_default();
        let value = self.reverted(score, age);
        if age > self.stale_after {
            return Served {
                score: value,
                confidence: 0.0,
                label: Label::Unknown,
            };
        }
        let half = 2.0 * self.half_life.as_secs_f64();
        let factor = 0.5_f64.powf(age.as_secs_f64() / half);
        // four decimals, as the scorer publishes it
        let confidence =
            ((score.confidence * factor * 10_000.0).round() / 10_000.0).clamp(0.0, 1.0);
        Served {
            score: value,
            confidence,
            label: self.label(value, confidence),
        }
    }

    /// The value of `score` with evidence `age` old: its market's prior plus the published
    /// distance from it, halved every `revert_half_life` (unchanged when that is 0).
    fn reverted(&self, score: &Score, age: Duration) -> u8 {
        if self.revert_half_life.is_zero() || age.is_zero() {
            return score.score;
        }
        let prior = self.prior_of(score.key.market);
        let kept = 0.5_f64.powf(age.as_secs_f64() / self.revert_half_life.as_secs_f64());
        let value = prior + (f64::from(score.score) - prior) * kept;
        // 0..=100 by construction (a mix of two values in that range)
        value.round().clamp(0.0, 100.0) as u8
    }

    /// `score` as served at `now` (see [`VerdictPolicy::served_verdict`]).
    pub fn served(&self, score: &Score, now: DateTime<Utc>) -> Score {
        self.served_verdict(score, now).on(score)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(value: u8, confidence: f64, updated_at: DateTime<Utc>) -> Score {
        Score {
            key: "aws/us-east-1/use1-az1/p5.48xlarge/on_demand"
                .parse()
                .unwrap(),
            score: value,
            label: Label::for_score(value),
            confidence,
            evidence: vec![],
            window: Duration::from_secs(3600),
            updated_at,
            signal_count: 3,

            market_usd_per_hour: None,
        }
    }

    #[test]
    fn low_confidence_is_unknown_whatever_the_score() {
        let p = VerdictPolicy::default();
        assert_eq!(p.label(100, 0.1), Label::Unknown);
        assert_eq!(p.label(0, 0.1), Label::Unknown);
        assert_eq!(p.label(100, 0.2), Label::Available);
        assert_eq!(p.label(10, 0.9), Label::Unavailable);
    }

    #[test]
    fn one_observation_is_pulled_toward_the_prior_and_many_are_not() {
        let p = VerdictPolicy::default();
        assert!((p.shrink(100.0, 0.0) - 50.0).abs() < 1e-9);
        let one = p.shrink(100.0, 1.0);
        assert!(one > 50.0 && one < 80.0, "{one}");
        let many = p.shrink(100.0, 50.0);
        assert!(many > 95.0, "{many}");
        let off = VerdictPolicy {
            prior_weight: 0.0,
            ..p
        };
        assert!((off.shrink(100.0, 1.0) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn a_market_prior_replaces_the_prior_of_that_market_only() {
        let p = VerdictPolicy {
            market_prior: [(Market::Spot, 80.0)].into_iter().collect(),
            ..VerdictPolicy::default()
        };
        assert!((p.for_market(Market::Spot).shrink(0.0, 2.0) - 40.0).abs() < 1e-9);
        assert!((p.for_market(Market::OnDemand).shrink(0.0, 2.0) - 25.0).abs() < 1e-9);
        let bad = VerdictPolicy {
            market_prior: [(Market::Spot, 101.0)].into_iter().collect(),
            ..VerdictPolicy::default()
        };
        let err = bad.validate().expect_err("out of range");
        assert!(
            err.to_string().contains("verdict.market_prior.spot"),
            "{err}"
        );
    }

    #[test]
    fn served_scores_lose_confidence_with_age_and_go_unknown_past_the_horizon() {
        let p = VerdictPolicy::default();
        let now = Utc::now();
        let fresh = score(95, 0.8, now);
        let verdict = |s: &Score| {
            let v = p.served_verdict(s, now);
            (v.confidence, v.label)
        };
        assert_eq!(verdict(&fresh), (0.8, Label::Available));
        let day_old = score(95, 0.8, now - chrono::Duration::hours(11));
        let (c, l) = verdict(&day_old);
        assert!(c < 0.8 * 0.6 && c > 0.2, "{c}");
        assert_eq!(l, Label::Available);
        let stale = score(95, 0.9, now - chrono::Duration::hours(13));
        assert_eq!(verdict(&stale), (0.0, Label::Unknown));
        // from the future: served as of its own time
        let ahead = score(95, 0.8, now + chrono::Duration::minutes(5));
        assert_eq!(verdict(&ahead), (0.8, Label::Available));
        // ageing below the threshold turns the label unknown before the horizon
        let weak = score(95, 0.3, now - chrono::Duration::hours(8));
        assert_eq!(verdict(&weak).1, Label::Unknown);
        // without reversion the value is served as published, whatever its age
        assert_eq!(p.served_verdict(&day_old, now).score, 95);
    }

    #[test]
    fn with_reversion_an_old_unavailable_returns_to_the_markets_prior() {
        let p = VerdictPolicy {
            revert_half_life: Duration::from_secs(600),
            market_prior: [(Market::OnDemand, 75.0)].into_iter().collect(),
            ..VerdictPolicy::default()
        };
        let now = Utc::now();
        let served = |value: u8, minutes: i64| {
            p.served_verdict(
                &score(value, 0.9, now - chrono::Duration::minutes(minutes)),
                now,
            )
        };
        // fresh evidence is served as published
        assert_eq!(served(10, 0).score, 10);
        assert_eq!(served(10, 0).label, Label::Unavailable);
        // one half life: half way back to the on-demand prior of 75
        let ten = served(10, 10);
        assert_eq!(ten.score, 43, "{ten:?}");
        assert_eq!(ten.label, Label::Unavailable);
        // two: three quarters of the way, no longer read as unavailable
        let twenty = served(10, 20);
        assert_eq!(twenty.score, 59, "{twenty:?}");
        assert_eq!(twenty.label, Label::Limited);
        // an hour on, it reads (nearly) the prior, from below and from above alike
        assert_eq!(served(10, 60).score, 74);
        assert_eq!(served(100, 60).score, 75);
        // and the confidence ages exactly as without reversion
        let off = VerdictPolicy::default();
        let s = score(10, 0.9, now - chrono::Duration::minutes(30));
        assert_eq!(
            p.served_verdict(&s, now).confidence,
            off.served_verdict(&s, now).confidence
        );
    }

    #[test]
    fn bad_sections_name_their_field() {
        let bad = |f: fn(&mut VerdictPolicy)| {
            let mut p = VerdictPolicy::default();
            f(&mut p);
            p.validate().unwrap_err().to_string()
        };
        assert!(bad(|p| p.unknown_below = 1.5).contains("verdict.unknown_below"));
        assert!(bad(|p| p.stale_after = Duration::from_secs(60)).contains("verdict.stale_after"));
        assert!(bad(|p| p.prior_weight = f64::NAN).contains("verdict.prior_weight"));
        assert!(bad(|p| p.half_life = Duration::ZERO).contains("verdict.half_life"));
        assert!(
            bad(|p| p.revert_half_life = Duration::from_secs(13 * 3600))
                .contains("verdict.revert_half_life")
        );
        VerdictPolicy::default().validate().unwrap();
    }
}
