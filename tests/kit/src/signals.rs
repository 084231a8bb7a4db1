//! Signal fixtures.

use capsight_proto::domain::{
    ErrorClass, LaunchAttempt, LaunchOutcome, Payload, ProbeMethod, Signal, SignalId, SignalSource,
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
            outcome: if ok {
                LaunchOutcome::Succeeded
            } else {
                LaunchOutcome::Failed
            },
            error_class: class,
            error_code: if ok {
                String::new()
            } else {
                format!("{class}Error")
            },
            error_message: String::new(),
            provisioning_ms: ok.then_some(60_000),
            hinted_zones: vec![],
            hinted_regions: vec![],
            method: ProbeMethod::Launch,
            count: 1,
        }),
    }
}
