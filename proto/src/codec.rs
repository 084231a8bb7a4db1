//! Bytes to domain values and back, for the message buses.
//!
//! Contract: [`decode_signal`] and [`decode_score`] accept arbitrary bytes and return either a
//! fully validated domain value or a [`DecodeError`] saying why not; they never panic. The reason
//! string ([`DecodeError::reason`]) is what goes into a dead-letter header.

use prost::Message;

use crate::domain::{FieldError, Score, Signal};
use crate::v1;

/// Why bytes could not become a domain value.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a protobuf message of the expected type.
    #[error("undecodable protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The message decoded but a field is invalid.
    #[error(transparent)]
    Invalid(#[from] FieldError),
}

impl DecodeError {
    /// A short machine-friendly reason: `protobuf: ...` or `invalid: <field>: ...`.
    pub fn reason(&self) -> String {
        match self {
            Self::Protobuf(e) => format!("protobuf: {e}"),
            Self::Invalid(e) => format!("invalid: {}: {}", e.field(), e.reason()),
        }
    }
}

/// Decodes and validates a `capsight.v1.Signal`.
pub fn decode_signal(bytes: &[u8]) -> Result<Signal, DecodeError> {
    let wire = v1::Signal::decode(bytes)?;
    Ok(Signal::try_from(wire)?)
}

/// Encodes a domain signal as `capsight.v1.Signal` bytes.
pub fn encode_signal(signal: &Signal) -> Vec<u8> {
    v1::Signal::from(signal).encode_to_vec()
}

/// Decodes and validates a `capsight.v1.Score`.
pub fn decode_score(bytes: &[u8]) -> Result<Score, DecodeError> {
    let wire = v1::Score::decode(bytes)?;
    Ok(Score::try_from(wire)?)
}

/// Encodes a domain score as `capsight.v1.Score` bytes.
pub fn encode_score(score: &Score) -> Vec<u8> {
    v1::Score::from(score).encode_to_vec()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    use super::*;
    use crate::domain::{
        ErrorClass, Evidence, Feature, Label, LaunchAttempt, LaunchOutcome, Payload, ProbeMethod,
        SignalId, SignalSource,
    };

    fn sample_signal() -> Signal {
        Signal {
            id: SignalId::parse("id", "probe-1").unwrap(),
            observed_at: Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap(),
            source: SignalSource::Probe,
            tenant: None,
            key: "aws/us-east-1/use1-az4/p5.48xlarge/on_demand"
                .parse()
                .unwrap(),
            payload: Payload::LaunchAttempt(LaunchAttempt {
                outcome: LaunchOutcome::Failed,
                error_class: ErrorClass::Capacity,
                error_code: "InsufficientInstanceCapacity".into(),
                error_message: "We currently do not have sufficient p5.48xlarge capacity".into(),
                provisioning_ms: None,
                hinted_zones: vec![
                    crate::domain::ZoneId::parse_optional(
                        "z",
                        crate::domain::Provider::Aws,
                        &crate::domain::Region::parse(
                            "r",
                            crate::domain::Provider::Aws,
                            "us-east-1",
                        )
                        .unwrap(),
                        "use1-az2",
                    )
                    .unwrap()
                    .unwrap(),
                ],
                hinted_regions: vec![],
                method: ProbeMethod::CapacityReservation,
                count: 1,
            }),
        }
    }

    #[test]
    fn signal_round_trips_through_bytes() {
        let s = sample_signal();
        assert_eq!(decode_signal(&encode_signal(&s)).unwrap(), s);
    }

    #[test]
    fn invalid_field_is_named_in_the_reason() {
        let mut wire = v1::Signal::from(&sample_signal());
        wire.key.as_mut().unwrap().region = "Mars-1".into();
        let err = decode_signal(&wire.encode_to_vec()).unwrap_err();
        assert!(
            err.reason().starts_with("invalid: key.region:"),
            "{}",
            err.reason()
        );

        let mut wire = v1::Signal::from(&sample_signal());
        if let Some(v1::signal::Payload::LaunchAttempt(a)) = wire.payload.as_mut() {
            a.error_class = ErrorClass::None.into();
        }
        let err = decode_signal(&wire.encode_to_vec()).unwrap_err();
        assert!(
            err.reason().contains("launch_attempt.error_class"),
            "{}",
            err.reason()
        );
    }

    #[test]
    fn a_marketplace_stock_level_round_trips_and_a_bad_one_is_named() {
        let mut s = sample_signal();
        s.key = "runpod/secure//8x_h100_sxm/on_demand".parse().unwrap();
        for stock in [None, Some(crate::domain::StockLevel::Low)] {
            s.payload = Payload::Availability(crate::domain::Availability {
                available: stock.is_some(),
                listed_usd_per_hour: Some(21.52),
                stock,
            });
            assert_eq!(decode_signal(&encode_signal(&s)).unwrap(), s);
        }
        let mut wire = v1::Signal::from(&s);
        if let Some(v1::signal::Payload::Availability(a)) = wire.payload.as_mut() {
            a.stock_level = 99;
        }
        let err = decode_signal(&wire.encode_to_vec()).unwrap_err();
        assert!(
            err.reason().contains("availability.stock_level"),
            "{}",
            err.reason()
        );
    }

    #[test]
    fn missing_payload_and_garbage_are_errors() {
        let mut wire = v1::Signal::from(&sample_signal());
        wire.payload = None;
        assert!(
            decode_signal(&wire.encode_to_vec())
                .unwrap_err()
                .reason()
                .contains("payload")
        );
        assert!(matches!(
            decode_signal(b"\xff\xff\xff\xff"),
            Err(DecodeError::Protobuf(_))
        ));
    }

    #[test]
    fn score_round_trips_and_label_must_match() {
        let score = Score {
            key: "aws/us-east-1//p5.48xlarge/spot".parse().unwrap(),
            score: 72,
            label: Label::Limited,
            confidence: 0.6,
            evidence: vec![Evidence {
                feature: Feature::CapacityErrorRatio,
                value: 0.25,
                contribution: -5.0,
                samples: 12,
            }],
            window: std::time::Duration::from_secs(86_400),
            updated_at: Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap(),
            signal_count: 40,

            market_usd_per_hour: None,
        };
        assert_eq!(decode_score(&encode_score(&score)).unwrap(), score);
        let mut wire = v1::Score::from(&score);
        wire.label = Label::Available.into();
        assert_eq!(Score::try_from(wire).unwrap_err().field(), "label");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes never panic the decoder; they decode or give an error.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_signal(&bytes);
            let _ = decode_score(&bytes);
        }

        /// Valid encodings with random byte flips never panic either (deeper than pure noise).
        #[test]
        fn mutated_valid_signals_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
        ) {
            let mut bytes = encode_signal(&sample_signal());
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if let Ok(s) = decode_signal(&bytes) {
                // whatever decoded is valid, so it must round-trip
                prop_assert_eq!(decode_signal(&encode_signal(&s)).unwrap(), s);
            }
        }
    }
}
