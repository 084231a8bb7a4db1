//! The tonic services. Each RPC: admit the caller (API key + rate limit), validate the request
//! into domain values, call the use case, convert back. Errors are [`GatewayError`]s, turned
//! into a `Status` by `From` in `error.rs` (the only mapping).
//!
//! One file per service: `scores.rs` (`ScoreService`), `preflight.rs` (`PreflightService`),
//! `launches.rs` (`LaunchService`, over the launch core's `submit` and `manage`), `reports.rs`
//! (`ReportService`), `notifications.rs` (`NotificationService`, over `capsight_notify::manage`).

mod launches;
mod notifications;
mod preflight;
mod reports;
mod scores;

use std::{pin::Pin, sync::Arc};

use capsight_proto::domain::FieldError;
use chrono::{DateTime, Utc};
use futures::Stream;
use tonic::{Request, Status};

use crate::{Core, GatewayError, auth::Caller};

type Result<T> = std::result::Result<T, Status>;
type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send + 'static>>;

/// Every capsight gRPC service over one shared core.
#[derive(Debug, Clone)]
pub struct Api {
    core: Arc<Core>,
}

impl Api {
    /// Over `core`.
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Admits the caller of `request` (API key, rate limit): the caller and the message.
    fn admit<T>(&self, request: Request<T>) -> std::result::Result<(Caller, T), GatewayError> {
        let caller = self.core.tenancy.admit(&request)?;
        Ok((caller, request.into_inner()))
    }

    /// [`Api::admit`] for an RPC that reads the scores view: `UNAVAILABLE` until it is ready.
    fn admit_ready<T>(
        &self,
        request: Request<T>,
    ) -> std::result::Result<(Caller, T), GatewayError> {
        let admitted = self.admit(request)?;
        if self.core.view.is_ready() {
            Ok(admitted)
        } else {
            Err(GatewayError::NotReady)
        }
    }
}

/// Seconds/nanos to a protobuf timestamp.
pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn from_ts(
    field: &str,
    t: &prost_types::Timestamp,
) -> std::result::Result<DateTime<Utc>, FieldError> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(t.seconds, n))
        .ok_or_else(|| FieldError::new(field, "is not a valid timestamp"))
}

fn secs_ms(secs: u32, ms: u16) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(secs), u32::from(ms) * 1_000_000).unwrap_or_default()
}
