//! The `[cloud]` config section. It holds no endpoint and no credentials: those come from the
//! standard AWS configuration chain only.

use std::time::Duration;

use serde::Deserialize;

/// `[cloud]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudSettings {
    /// Region override; empty = from the AWS chain.
    pub region: String,
    /// Attempts per call for throttled/transient errors (1 = no retry).
    pub max_attempts: u32,
    /// First backoff delay.
    #[serde(with = "humantime_serde")]
    pub retry_min_delay: Duration,
    /// Longest backoff delay.
    #[serde(with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// Timeout of one attempt.
    #[serde(with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// RoleSessionName for tenant roles.
    pub role_session_name: String,
}

impl Default for CloudSettings {
    fn default() -> Self {
        Self {
            region: String::new(),
            max_attempts: 4,
            retry_min_delay: Duration::from_millis(200),
            retry_max_delay: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(30),
            role_session_name: "capsight".into(),
        }
    }
}

#[cfg(test)]
capsight_runtime::documented_defaults_test!("cloud", CloudSettings);
