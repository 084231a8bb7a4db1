//! The gateway's one error type and its mapping to `tonic::Status` — the only place a status
//! code is chosen.
//!
//! Contract: `Invalid` -> `INVALID_ARGUMENT` with a message that starts with the field path
//! (`spec.count: must be 1..=32`); `Unauthenticated` -> `UNAUTHENTICATED`; `RateLimited` ->
//! `RESOURCE_EXHAUSTED` (with a `retry-after` metadata entry in seconds); `TooManyStreams` ->
//! `RESOURCE_EXHAUSTED` naming the tenant's limit of open streams (`TooManySubscriptions`: of
//! notification subscriptions); `Lagged` -> `ABORTED` (the
//! client re-reads and watches again); `NotFound` ->
//! `NOT_FOUND`; `FailedPrecondition` -> `FAILED_PRECONDITION`; `NotReady` and every backing
//! service failure -> `UNAVAILABLE` (retry with backoff); `Internal` -> `INTERNAL`. Backing
//! service details are logged, not sent to the client.

use capsight_proto::domain::FieldError;
use tonic::{Code, Status};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A request field is invalid.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// Missing, malformed, unknown or revoked API key.
    #[error("missing or invalid API key (send `authorization: Bearer <key>`)")]
    Unauthenticated,
    /// The tenant's rate limit is exhausted.
    #[error("rate limit of {per_minute}/min exceeded; retry in {retry_after_secs}s")]
    RateLimited {
        /// The tenant's limit.
        per_minute: u32,
        /// When to retry.
        retry_after_secs: u64,
    },
    /// The tenant holds its limit of open server streams already.
    #[error(
        "this tenant already holds {limit} open streams (WatchScores + WatchLaunch), its limit; \
         close one first"
    )]
    TooManyStreams {
        /// The tenant's limit.
        limit: u32,
    },
    /// A stream's reader fell further behind than the gateway buffers.
    #[error(
        "this stream fell {missed} transitions behind (the gateway buffers {buffer}); \
         re-read the current state and watch again"
    )]
    Lagged {
        /// Transitions the stream lost.
        missed: u64,
        /// How many the gateway buffers.
        buffer: usize,
    },
    /// The tenant holds its limit of notification subscriptions.
    #[error("this tenant already holds {limit} subscriptions, its limit; delete one first")]
    TooManySubscriptions {
        /// The limit (`notify.max_subscriptions_per_tenant`).
        limit: u32,
    },
    /// No such object for this tenant.
    #[error("{0} not found")]
    NotFound(String),
    /// The call is valid but the object's state forbids it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The scores view has not read the scores topic to its end yet.
    #[error("the scores view is still loading; retry shortly")]
    NotReady,
    /// A backing service failed (ClickHouse, RabbitMQ, Kafka, the cloud).
    #[error("{service} unavailable: {detail}")]
    Unavailable {
        /// `clickhouse`, `rabbitmq`, `kafka`, `cloud`.
        service: &'static str,
        /// What happened (logged, not sent).
        detail: String,
    },
    /// A bug or an impossible state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// A backing-service failure.
    pub fn unavailable(service: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            service,
            detail: detail.to_string(),
        }
    }

    /// An invalid field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid(FieldError::new(field, reason))
    }
}

/// A backing service's own error becomes [`GatewayError::Unavailable`] naming the service.
macro_rules! unavailable_from {
    ($($error:ty => $service:literal),* $(,)?) => {$(
        impl From<$error> for GatewayError {
            fn from(e: $error) -> Self {
                Self::unavailable($service, e)
            }
        }
    )*};
}

unavailable_from! {
    clickhouse::error::Error => "clickhouse",
    capsight_launch::store::StoreError => "clickhouse",
    capsight_launch::queue::QueueError => "rabbitmq",
}

impl From<capsight_notify::manage::ManageError> for GatewayError {
    fn from(e: capsight_notify::manage::ManageError) -> Self {
        use capsight_notify::manage::ManageError;
        match e {
            ManageError::Invalid(f) => Self::Invalid(f),
            ManageError::TooMany { limit } => Self::TooManySubscriptions { limit },
            ManageError::NotFound(id) => Self::NotFound(format!("subscription {id}")),
            ManageError::Store(s) => Self::unavailable("clickhouse", s),
        }
    }
}

impl From<capsight_launch::submit::SubmitError> for GatewayError {
    fn from(e: capsight_launch::submit::SubmitError) -> Self {
        use capsight_launch::submit::SubmitError;
        match e {
            SubmitError::Invalid(f) => Self::Invalid(f),
            SubmitError::Store(s) => s.into(),
        }
    }
}

impl From<capsight_launch::manage::ManageError> for GatewayError {
    fn from(e: capsight_launch::manage::ManageError) -> Self {
        use capsight_launch::manage::ManageError;
        match e {
            ManageError::NotFound(id) => Self::NotFound(format!("launch {id}")),
            ManageError::Refused(why) => Self::FailedPrecondition(why),
            ManageError::Store(s) => s.into(),
        }
    }
}

impl From<GatewayError> for Status {
    fn from(e: GatewayError) -> Self {
        match &e {
            GatewayError::Invalid(f) => Status::new(
                Code::InvalidArgument,
                format!("{}: {}", f.field(), f.reason()),
            ),
            GatewayError::Unauthenticated => Status::new(Code::Unauthenticated, e.to_string()),
            GatewayError::RateLimited {
                retry_after_secs, ..
            } => {
                let mut s = Status::new(Code::ResourceExhausted, e.to_string());
                if let Ok(v) = retry_after_secs.to_string().parse() {
                    s.metadata_mut().insert("retry-after", v);
                }
                s
            }
            GatewayError::TooManyStreams { .. } | GatewayError::TooManySubscriptions { .. } => {
                Status::new(Code::ResourceExhausted, e.to_string())
            }
            GatewayError::Lagged { .. } => Status::new(Code::Aborted, e.to_string()),
            GatewayError::NotFound(_) => Status::new(Code::NotFound, e.to_string()),
            GatewayError::FailedPrecondition(_) => {
                Status::new(Code::FailedPrecondition, e.to_string())
            }
            GatewayError::NotReady => Status::new(Code::Unavailable, e.to_string()),
            GatewayError::Unavailable { service, detail } => {
                tracing::warn!(service, detail, "backing service failure");
                Status::new(
                    Code::Unavailable,
                    format!("{service} is unavailable; retry with backoff"),
                )
            }
            GatewayError::Internal(detail) => {
                tracing::error!(detail, "internal error");
                Status::new(Code::Internal, "internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_field_first_messages() {
        let s = Status::from(GatewayError::invalid("spec.count", "must be 1..=32"));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().starts_with("spec.count:"), "{}", s.message());
        let s = Status::from(GatewayError::RateLimited {
            per_minute: 5,
            retry_after_secs: 3,
        });
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.metadata().get("retry-after").unwrap(), "3");
        for (e, code, says) in [
            (
                GatewayError::TooManyStreams { limit: 16 },
                Code::ResourceExhausted,
                "16 open streams",
            ),
            (
                GatewayError::Lagged {
                    missed: 7,
                    buffer: 4096,
                },
                Code::Aborted,
                "7 transitions behind",
            ),
        ] {
            let s = Status::from(e);
            assert_eq!(s.code(), code);
            assert!(s.message().contains(says), "{}", s.message());
        }
        let s = Status::from(GatewayError::unavailable("clickhouse", "password=secret"));
        assert_eq!(s.code(), Code::Unavailable);
        assert!(!s.message().contains("secret"));
    }
}
