//! Rate limits in front of the cloud: a token bucket per (provider, account, API operation) and
//! one per (provider, account), both waited on before every call (`governor`, GCRA). A probe
//! waits for its turn; it is never dropped by a limit.

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::settings::LimitSettings;

/// The prober's rate limits.
#[derive(Debug)]
pub struct Limits {
    per_api: Option<DefaultKeyedRateLimiter<String>>,
    per_account: Option<DefaultKeyedRateLimiter<String>>,
}

fn limiter(per_minute: u32) -> Option<DefaultKeyedRateLimiter<String>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

impl Limits {
    /// Limits from settings.
    pub fn new(settings: &LimitSettings) -> Self {
        Self {
            per_api: limiter(settings.per_api_per_minute),
            per_account: limiter(settings.per_account_per_minute),
        }
    }

    /// Waits until `account` may call `operation` of `provider`.
    pub async fn acquire(&self, provider: &str, account: &str, operation: &str) {
        if let Some(l) = &self.per_account {
            l.until_key_ready(&format!("{provider}/{account}")).await;
        }
        if let Some(l) = &self.per_api {
            l.until_key_ready(&format!("{provider}/{account}/{operation}"))
                .await;
        }
    }

    /// Whether a call may go now, without waiting (consumes a token when it may).
    pub fn try_acquire(&self, provider: &str, account: &str, operation: &str) -> bool {
        let api_ok = self.per_api.as_ref().is_none_or(|l| {
            l.check_key(&format!("{provider}/{account}/{operation}"))
                .is_ok()
        });
        api_ok
            && self
                .per_account
                .as_ref()
                .is_none_or(|l| l.check_key(&format!("{provider}/{account}")).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_api_and_the_account_have_their_own_bucket() {
        let l = Limits::new(&LimitSettings {
            per_api_per_minute: 2,
            per_account_per_minute: 3,
        });
        assert!(l.try_acquire("aws", "1", "RunInstances"));
        assert!(l.try_acquire("aws", "1", "RunInstances"));
        assert!(
            !l.try_acquire("aws", "1", "RunInstances"),
            "third RunInstances within the minute"
        );
        assert!(l.try_acquire("aws", "1", "TerminateInstances"));
        assert!(
            !l.try_acquire("aws", "1", "CreateCapacityReservation"),
            "account bucket (3/min) is empty"
        );
        assert!(l.try_acquire("aws", "2", "RunInstances"), "another account");
        let none = Limits::new(&LimitSettings {
            per_api_per_minute: 0,
            per_account_per_minute: 0,
        });
        assert!((0..100).all(|_| none.try_acquire("aws", "1", "RunInstances")));
    }
}
