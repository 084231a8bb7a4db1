//! The domain form of `capsight.v1.Score`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::time::{duration, timestamp, to_duration, to_timestamp};
use super::{CapacityKey, Feature, FieldError, Label};
use crate::v1;

/// One structured fact behind a score.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// Which feature.
    pub feature: Feature,
    /// The feature's value in its natural unit.
    pub value: f64,
    /// Points it added (positive) or removed (negative).
    pub contribution: f64,
    /// Samples behind the value.
    pub samples: u32,
}

/// The latest estimate for a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// The key.
    pub key: CapacityKey,
    /// 0..=100.
    pub score: u8,
    /// `Label::for_score(score)`, or `Label::Unknown` when the confidence is too low or the
    /// evidence too old to say (see [`super::VerdictPolicy`]).
    pub label: Label,
    /// 0..=1.
    pub confidence: f64,
    /// Largest contribution first.
    pub evidence: Vec<Evidence>,
    /// The window the score covers.
    pub window: Duration,
    /// When it was computed.
    pub updated_at: DateTime<Utc>,
    /// Signals in the window.
    pub signal_count: u64,
    /// The market's latest observed price per instance-hour (spot keys), when one was seen.
    pub market_usd_per_hour: Option<f64>,
}

impl Score {
    /// The evidence of `feature`, when the score has some.
    pub fn evidence_of(&self, feature: Feature) -> Option<&Evidence> {
        self.evidence.iter().find(|e| e.feature == feature)
    }
}

impl TryFrom<v1::Score> for Score {
    type Error = FieldError;

    fn try_from(w: v1::Score) -> Result<Self, Self::Error> {
        let key = CapacityKey::try_from(w.key.ok_or_else(|| FieldError::missing("key"))?)
            .map_err(|e| e.within("key"))?;
        let score = u8::try_from(w.score)
            .ok()
            .filter(|s| *s <= 100)
            .ok_or_else(|| FieldError::new("score", "must be 0..=100"))?;
        let label = Label::from_wire("label", w.label)?;
        if label != Label::for_score(score) && label != Label::Unknown {
            return Err(FieldError::new(
                "label",
                format!("{label} does not match score {score}"),
            ));
        }
        if !(0.0..=1.0).contains(&w.confidence) {
            return Err(FieldError::new("confidence", "must be 0..=1"));
        }
        let evidence = w
            .evidence
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let field = format!("evidence[{i}]");
                if !e.value.is_finite() || !e.contribution.is_finite() {
                    return Err(FieldError::new(
                        field,
                        "value and contribution must be finite",
                    ));
                }
                Ok(Evidence {
                    feature: Feature::from_wire(&format!("{field}.feature"), e.feature)?,
                    value: e.value,
                    contribution: e.contribution,
                    samples: e.samples,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            key,
            score,
            label,
            confidence: w.confidence,
            evidence,
            window: duration("window", w.window)?,
            updated_at: timestamp("updated_at", w.updated_at)?,
            signal_count: w.signal_count,
            market_usd_per_hour: {
                let p = w.market_usd_per_hour;
                if !(p.is_finite() && p >= 0.0) {
                    return Err(FieldError::new(
                        "market_usd_per_hour",
                        "must be finite and >= 0",
                    ));
                }
                (p > 0.0).then_some(p)
            },
        })
    }
}

impl From<&Score> for v1::Score {
    fn from(s: &Score) -> Self {
        Self {
            key: Some(v1::CapacityKey::from(&s.key)),
            score: s.score.into(),
            label: s.label.into(),
            confidence: s.confidence,
            evidence: s
                .evidence
                .iter()
                .map(|e| v1::Evidence {
                    feature: e.feature.into(),
                    value: e.value,
                    contribution: e.contribution,
                    samples: e.samples,
                })
                .collect(),
            window: Some(to_duration(s.window)),
            updated_at: Some(to_timestamp(s.updated_at)),
            signal_count: s.signal_count,
            market_usd_per_hour: s.market_usd_per_hour.unwrap_or(0.0),
        }
    }
}
