//! The `[scorer]` config section and the process config the scorer runs with.
//!
//! Contract: [`ScorerSettings::validate`] is called once by [`crate::run`] before anything
//! connects; every other module may assume the invariants it checks (window in (0, 72h], batch
//! bounds > 0, caps >= 0 and finite); [`ScorerConfig::validate`] adds the `[verdict]` section
//! (half life in (0, window]). Durations are event time
//! except `batch_max_interval`, `max_clock_skew`, `produce_timeout` and `retry_backoff`, which
//! are wall clock.

use std::{net::SocketAddr, time::Duration};

use capsight_clickhouse::ClickHouseSettings;
use capsight_kafka::KafkaSettings;
use capsight_proto::domain::VerdictPolicy;
use capsight_tenancy::trust::TrustSettings;
use serde::Deserialize;

use crate::ScorerError;
use crate::model::{FeatureWeights, ModelParams};

/// The longest window a key may aggregate over.
pub const MAX_WINDOW: Duration = Duration::from_secs(72 * 3600);

/// The `[scorer]` section (documented with its defaults in `deploy/config/capsight.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScorerSettings {
    /// Consumer group on the signals topic.
    pub group_id: String,
    /// Sliding window per key, at most [`MAX_WINDOW`].
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Messages per ClickHouse batch, at most.
    pub batch_max_rows: usize,
    /// Time from a batch's first message to its flush, at most.
    #[serde(with = "humantime_serde")]
    pub batch_max_interval: Duration,
    /// Score points that make a change material.
    pub material_change_points: u8,
    /// Confidence change that makes a change material.
    pub material_change_confidence: f64,
    /// A history row at least this often (event time) per active key.
    #[serde(with = "humantime_serde")]
    pub score_heartbeat: Duration,
    /// At most one alert per key per cooldown (event time).
    #[serde(with = "humantime_serde")]
    pub alert_cooldown: Duration,
    /// Alerts below this confidence carry the low-confidence flag.
    pub low_confidence: f64,
    /// Most points one tenant's crowd reports can move a score.
    pub tenant_cap_points: f64,
    /// Most points all crowd reports together can move a score.
    pub crowd_max_points: f64,
    /// Evidence items per score.
    pub evidence_items: usize,
    /// Signals observed further than this ahead of the scorer's clock are dead-lettered.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Delivery timeout for the scores and dead-letter topics.
    #[serde(with = "humantime_serde")]
    pub produce_timeout: Duration,
    /// Pause between retries of a batch whose writes failed.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Where `GET /healthz` is served (port 0 = any free port, logged at start).
    pub health_listen: SocketAddr,
    /// A key whose newest observation is older than this (wall clock) is evicted from memory
    /// and tombstoned on the compacted scores topic, so gateways forget it too; `0s` = never.
    #[serde(with = "humantime_serde")]
    pub evict_after: Duration,
    /// How often idle keys are looked for.
    #[serde(with = "humantime_serde")]
    pub evict_interval: Duration,
    /// `[scorer.weights]`: the model's feature weights (defaults: the first version).
    #[serde(default)]
    pub weights: FeatureWeights,
    /// Half life of the recent-outcome feature's weight (event time).
    #[serde(with = "humantime_serde", default = "default_recent_half_life")]
    pub recent_half_life: Duration,
}

fn default_recent_half_life() -> Duration {
    crate::model::DEFAULT_RECENT_HALF_LIFE
}

impl Default for ScorerSettings {
    fn default() -> Self {
        Self {
            group_id: "capsight-scorer".into(),
            window: Duration::from_secs(24 * 3600),
            batch_max_rows: 50_000,
            batch_max_interval: Duration::from_secs(1),
            material_change_points: 5,
            material_change_confidence: 0.1,
            score_heartbeat: Duration::from_secs(15 * 60),
            alert_cooldown: Duration::from_secs(30 * 60),
            low_confidence: 0.4,
            tenant_cap_points: 3.0,
            crowd_max_points: 10.0,
            evidence_items: 4,
            max_clock_skew: Duration::from_secs(10 * 60),
            produce_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_secs(1),
            health_listen: SocketAddr::from(([127, 0, 0, 1], 9471)),
            evict_after: Duration::from_secs(7 * 24 * 3600),
            evict_interval: Duration::from_secs(60),
            weights: FeatureWeights::default(),
            recent_half_life: crate::model::DEFAULT_RECENT_HALF_LIFE,
        }
    }
}

impl ScorerSettings {
    /// Checks the invariants the rest of the crate relies on.
    pub fn validate(&self) -> Result<(), ScorerError> {
        let bad = |field: &'static str, reason: String| Err(ScorerError::Config { field, reason });
        if self.window.is_zero() || self.window > MAX_WINDOW {
            return bad(
                "window",
                format!("{:?} must be > 0 and at most 72h", self.window),
            );
        }
        if self.batch_max_rows == 0 {
            return bad("batch_max_rows", "must be > 0".into());
        }
        if self.batch_max_interval.is_zero() {
            return bad("batch_max_interval", "must be > 0".into());
        }
        if self.group_id.is_empty() {
            return bad("group_id", "must not be empty".into());
        }
        for (field, v) in [
            (
                "material_change_confidence",
                self.material_change_confidence,
            ),
            ("low_confidence", self.low_confidence),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(field, format!("{v} must be within 0..=1"));
            }
        }
        for (field, v) in [
            ("tenant_cap_points", self.tenant_cap_points),
            ("crowd_max_points", self.crowd_max_points),
        ] {
            if !v.is_finite() || !(0.0..=100.0).contains(&v) {
                return bad(field, format!("{v} must be within 0..=100"));
            }
        }
        if let Err(e) = self.weights.validate() {
            return bad("weights", e.to_string());
        }
        if self.recent_half_life.is_zero() {
            return bad("recent_half_life", "must be > 0".into());
        }
        Ok(())
    }

    /// The scoring model's parameters under `verdict`.
    pub fn model_params(&self, verdict: &VerdictPolicy) -> ModelParams {
        ModelParams {
            verdict: verdict.clone(),
            tenant_cap_points: self.tenant_cap_points,
            crowd_max_points: self.crowd_max_points,
            evidence_items: self.evidence_items,
            weights: self.weights,
            recent_half_life: self.recent_half_life,
        }
    }
}

/// Everything [`crate::run`] needs: the sections of the config file the scorer reads (besides
/// `[telemetry]`, which `main` consumes).
#[derive(Debug, Clone, Deserialize)]
pub struct ScorerConfig {
    /// `[kafka]`.
    pub kafka: KafkaSettings,
    /// `[clickhouse]`.
    pub clickhouse: ClickHouseSettings,
    /// `[scorer]`.
    pub scorer: ScorerSettings,
    /// `[trust]`: how tenants' reports are checked and weighted.
    pub trust: TrustSettings,
    /// `[verdict]`: recency half life, prior and the unknown threshold.
    #[serde(default)]
    pub verdict: VerdictPolicy,
}

impl ScorerConfig {
    /// Checks every section the scorer reads; the error names the field.
    pub fn validate(&self) -> Result<(), ScorerError> {
        self.scorer.validate()?;
        self.trust.validate()?;
        self.verdict.validate().map_err(ScorerError::Verdict)?;
        if self.verdict.half_life > self.scorer.window {
            return Err(ScorerError::Verdict(
                capsight_proto::domain::FieldError::new(
                    "verdict.half_life",
                    format!(
                        "{:?} must be at most scorer.window ({:?})",
                        self.verdict.half_life, self.scorer.window
                    ),
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Conf {
        scorer: ScorerSettings,
        trust: TrustSettings,
        verdict: VerdictPolicy,
    }

    #[test]
    fn embedded_defaults_parse_validate_and_match_default() {
        let c: Conf = capsight_runtime::config::load_defaults().unwrap();
        c.scorer.validate().unwrap();
        c.trust.validate().unwrap();
        c.verdict.validate().unwrap();
        assert_eq!(c.verdict, VerdictPolicy::default());
        capsight_runtime::config::defaults_match("scorer", &ScorerSettings::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.trust, TrustSettings::default());
    }

    #[test]
    fn window_over_72h_and_bad_caps_are_rejected() {
        let mut s = ScorerSettings {
            window: Duration::from_secs(73 * 3600),
            ..ScorerSettings::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("window"));
        s.window = MAX_WINDOW;
        s.validate().unwrap();
        s.tenant_cap_points = f64::NAN;
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("tenant_cap_points")
        );
    }
}
