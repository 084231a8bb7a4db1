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
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Sections {
        cloud: CloudSettings,
    }

    #[test]
    fn documented_defaults_match_the_code() {
        let from_file = capsight_runtime::config::load_defaults::<Sections>()
            .unwrap()
            .cloud;
        let code = CloudSettings::default();
        assert_eq!(from_file.region, code.region);
        assert_eq!(from_file.max_attempts, code.max_attempts);
        assert_eq!(from_file.retry_min_delay, code.retry_min_delay);
        assert_eq!(from_file.retry_max_delay, code.retry_max_delay);
        assert_eq!(from_file.operation_timeout, code.operation_timeout);
        assert_eq!(from_file.role_session_name, code.role_session_name);
    }
}
