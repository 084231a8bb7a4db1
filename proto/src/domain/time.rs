//! Protobuf timestamps and durations to chrono and back.

use chrono::{DateTime, Utc};

use super::FieldError;

/// A required timestamp.
pub(crate) fn timestamp(
    field: &str,
    ts: Option<prost_types::Timestamp>,
) -> Result<DateTime<Utc>, FieldError> {
    let ts = ts.ok_or_else(|| FieldError::missing(field))?;
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| FieldError::new(field, "nanos must be in 0..1e9"))?;
    DateTime::from_timestamp(ts.seconds, nanos)
        .ok_or_else(|| FieldError::new(field, "is outside the representable time range"))
}

/// The wire form of a timestamp.
pub(crate) fn to_timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        // subsec nanos are < 1e9 and so fit an i32
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A required, non-negative duration.
pub(crate) fn duration(
    field: &str,
    d: Option<prost_types::Duration>,
) -> Result<std::time::Duration, FieldError> {
    let d = d.ok_or_else(|| FieldError::missing(field))?;
    let secs =
        u64::try_from(d.seconds).map_err(|_| FieldError::new(field, "must not be negative"))?;
    let nanos = u32::try_from(d.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| FieldError::new(field, "nanos must be in 0..1e9"))?;
    Ok(std::time::Duration::new(secs, nanos))
}

/// The wire form of a duration (saturating at `i64::MAX` seconds).
pub(crate) fn to_duration(d: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}
