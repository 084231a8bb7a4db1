//! The adapter's error: every failure says which class it is (capacity, quota, permission, ...),
//! keeps the provider's raw code and message, and knows whether a retry can help.

use capsight_classify::Classified;
use capsight_proto::domain::{ErrorClass, ZoneId};

/// Why a cloud call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CloudError {
    /// The cloud answered with an error; `classified` holds its class, raw code and message.
    #[error("{operation}: {} {}: {}", classified.class, classified.code, classified.message)]
    Api {
        /// The API operation, e.g. `RunInstances`.
        operation: &'static str,
        /// Class, code, message and the zone names the message hinted at (boxed: errors stay
        /// small on the happy path).
        classified: Box<Classified>,
        /// The hinted zones as AZ IDs (capacity errors; empty when they could not be mapped).
        zone_id_hints: Vec<ZoneId>,
        /// The request id, when the cloud sent one.
        request_id: Option<String>,
    },
    /// The cloud could not be reached or did not answer in time (class `transient`).
    #[error("{operation}: transport failure: {message}")]
    Transport {
        /// The operation.
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The cloud's answer could not be understood (class `unknown`).
    #[error("{operation}: unexpected response: {message}")]
    Response {
        /// The operation.
        operation: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The provider's API has no such operation (Lambda Cloud has no DryRun, quotas, spot
    /// market, reservations or stop/start).
    #[error("{provider} does not support {operation}")]
    Unsupported {
        /// The provider.
        provider: capsight_proto::domain::Provider,
        /// The operation, with why when useful.
        operation: &'static str,
    },
    /// The request cannot be made as asked (a zone the account does not have, a market the
    /// operation does not support, missing configuration).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl CloudError {
    /// The error class: the classified class for API errors, `transient` for transport failures,
    /// `unknown` otherwise.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Api { classified, .. } => classified.class,
            Self::Transport { .. } => ErrorClass::Transient,
            Self::Response { .. } | Self::Invalid(_) | Self::Unsupported { .. } => {
                ErrorClass::Unknown
            }
        }
    }

    /// Whether retrying the same call can help: throttled and transient errors only.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Api { classified, .. } => classified.is_retryable(),
            Self::Transport { .. } => true,
            Self::Response { .. } | Self::Invalid(_) | Self::Unsupported { .. } => false,
        }
    }

    /// The classified API error, if the cloud answered with one.
    pub fn classified(&self) -> Option<&Classified> {
        match self {
            Self::Api { classified, .. } => Some(classified.as_ref()),
            _ => None,
        }
    }

    /// The raw provider error code (`InsufficientInstanceCapacity`), if any.
    pub fn code(&self) -> Option<&str> {
        self.classified().map(|c| c.code.as_str())
    }

    /// AZ IDs the error named as having capacity.
    pub fn zone_id_hints(&self) -> &[ZoneId] {
        match self {
            Self::Api { zone_id_hints, .. } => zone_id_hints,
            _ => &[],
        }
    }
}
