//! Signal and score fixtures.

use std::time::Duration;

use capsight_proto::domain::{
    ErrorClass, Evidence, Feature, Label, LaunchAttempt, Payload, Score, Signal, SignalId,
    SignalSource, SpotPrice,
};
use chrono::{DateTime, Utc};

/// A probe's launch attempt on `key` (string form) at `at`: succeeded when `class` is
/// [`ErrorClass::None`], else failed with that class.
pub fn launch(id: &str, key: &str, at: DateTime<Utc>, class: ErrorClass) -> Signal {
    let ok = class == ErrorClass::None;
    Signal {
        id: SignalId::parse("id", id).unwrap(),
        observed_at: at,
        source: SignalSource::Probe,
        tenant: None,
        key: key.parse().unwrap(),
        payload: Payload::LaunchAttempt(LaunchAttempt {
            error_code: if ok {
                String::new()
            } else {
                format!("{class}Error")
            },
            ..LaunchAttempt::with_class(class, Some(60_000))
        }),
    }
}

/// A successful probe of `key` every hour of the last `hours` before `now` (ids `probe-<h>`):
/// what capsight itself saw of a key in stock.
pub fn hourly_probe_successes(key: &str, hours: i64, now: DateTime<Utc>) -> Vec<Signal> {
    (0..hours)
        .map(|h| {
            launch(
                &format!("probe-{h}"),
                key,
                now - chrono::Duration::hours(h),
                ErrorClass::None,
            )
        })
        .collect()
}

/// A spot price of `price` USD per hour on `key` (string form), observed now.
pub fn spot_price(id: SignalId, key: &str, price: f64) -> Signal {
    Signal {
        id,
        observed_at: Utc::now(),
        source: SignalSource::Spot,
        tenant: None,
        key: key.parse().unwrap(),
        payload: Payload::SpotPrice(SpotPrice {
            price_per_hour: price,
            currency: "USD".into(),
        }),
    }
}

/// A score of `value` (label from the value) with `confidence` for `key` (string form), updated
/// now, from 12 signals over a day, with launch success as its one piece of evidence.
pub fn score(key: &str, value: u8, confidence: f64) -> Score {
    Score {
        key: key.parse().unwrap(),
        score: value,
        label: Label::for_score(value),
        confidence,
        evidence: vec![Evidence {
            feature: Feature::LaunchSuccessRate,
            value: f64::from(value) / 100.0,
            contribution: f64::from(value) * 0.4,
            samples: 12,
        }],
        window: Duration::from_secs(86_400),
        updated_at: Utc::now(),
        signal_count: 12,

        market_usd_per_hour: None,
    }
}
