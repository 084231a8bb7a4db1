//! One notification to one webhook: resolve the host and refuse addresses the
//! [`NetworkPolicy`] does not allow (checked at every delivery, so a name re-pointed at an
//! internal address after creation is refused too; the connection is pinned to the checked
//! addresses), sign, POST with the idempotency id, retry with exponential backoff, and report
//! the final outcome.

use std::{net::SocketAddr, time::Duration};

use capsight_runtime::shutdown::Shutdown;
use chrono::Utc;

use crate::{
    events::Event,
    metrics,
    model::{Format, NetworkPolicy, WebhookUrl},
    payload,
};

/// How delivering ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Delivered {
        /// Attempts made.
        attempts: u32,
        /// The status.
        status: u16,
    },
    /// Every attempt failed.
    Dead {
        /// Attempts made.
        attempts: u32,
        /// The last status (0 = none).
        status: u16,
        /// The last error.
        error: String,
    },
    /// Shutdown came between attempts; the notification stays pending.
    Interrupted,
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    status: u16,
    error: String,
    result: &'static str,
}

/// The retry policy and HTTP settings of deliveries.
#[derive(Debug, Clone)]
pub struct Deliverer {
    /// Where webhooks may connect.
    pub policy: NetworkPolicy,
    /// Deadline of one call.
    pub timeout: Duration,
    /// Attempts before dead-lettering.
    pub max_attempts: u32,
    /// First backoff.
    pub backoff_initial: Duration,
    /// Longest backoff.
    pub backoff_max: Duration,
    /// Longest URL (re-checked).
    pub max_url_length: u32,
}

/// The wait after failed attempt `n` (1-based): initial * 2^(n-1), capped.
pub fn backoff(initial: Duration, max: Duration, n: u32) -> Duration {
    let factor = 2u32.saturating_pow(n.saturating_sub(1));
    initial.saturating_mul(factor).min(max)
}

impl Deliverer {
    /// Delivers `event` as `format` to `url`, signing with `secret`, until a 2xx, the last
    /// attempt, or `shutdown` (between attempts).
    pub async fn deliver(
        &self,
        url: &str,
        format: Format,
        secret: &str,
        event: &Event,
        shutdown: &Shutdown,
    ) -> Outcome {
        let body = payload::body(event, format);
        let mut last = Failure {
            status: 0,
            error: String::new(),
            result: "network",
        };
        for n in 1..=self.max_attempts.max(1) {
            if n > 1 {
                let wait = backoff(self.backoff_initial, self.backoff_max, n - 1);
                tokio::select! {
                    () = shutdown.wait() => return Outcome::Interrupted,
                    () = tokio::time::sleep(wait) => {}
                }
            }
            let started = std::time::Instant::now();
            match self.attempt(url, secret, event, &body, n).await {
                Ok(status) => {
                    metrics::attempt(format, "ok", started);
                    return Outcome::Delivered {
                        attempts: n,
                        status,
                    };
                }
                Err(f) => {
                    metrics::attempt(format, f.result, started);
                    tracing::info!(id = event.id, attempt = n, status = f.status, error = %f.error, "webhook attempt failed");
                    last = f;
                }
            }
        }
        Outcome::Dead {
            attempts: self.max_attempts.max(1),
            status: last.status,
            error: last.error,
        }
    }

    async fn attempt(
        &self,
        url: &str,
        secret: &str,
        event: &Event,
        body: &[u8],
        n: u32,
    ) -> Result<u16, Failure> {
        let refused = |error: String| Failure {
            status: 0,
            error,
            result: "refused",
        };
        let url = WebhookUrl::parse("url", url, self.max_url_length, &self.policy)
            .map_err(|e| refused(e.to_string()))?;
        let host = url
            .url()
            .host_str()
            .ok_or_else(|| refused("url: has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.url().port_or_known_default().unwrap_or(443);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| Failure {
                status: 0,
                error: format!("resolving {host}: {e}"),
                result: "network",
            })?
            .collect();
        if addrs.is_empty() {
            return Err(refused(format!("{host} resolves to no address")));
        }
        if let Some(bad) = addrs.iter().find(|a| !self.policy.allows(a.ip())) {
            return Err(refused(format!(
                "{host} resolves to {}, a private, loopback or reserved address",
                bad.ip()
            )));
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .resolve_to_addrs(&host, &addrs)
            .user_agent(concat!("capsight-notifier/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure {
                status: 0,
                error: format!("http client: {e}"),
                result: "network",
            })?;
        let t = Utc::now().timestamp();
        let sent = client
            .post(url.url().clone())
            .header("content-type", "application/json")
            .header("idempotency-key", &event.id)
            .header("capsight-event", event.kind.as_str())
            .header("capsight-delivery-attempt", n.to_string())
            .header("capsight-signature", payload::signature(secret, t, body))
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => Ok(r.status().as_u16()),
            Ok(r) => Err(Failure {
                status: r.status().as_u16(),
                error: format!("HTTP {}", r.status()),
                result: "http_error",
            }),
            Err(e) if e.is_timeout() => Err(Failure {
                status: 0,
                error: format!("no answer within {:?}", self.timeout),
                result: "timeout",
            }),
            Err(e) => Err(Failure {
                status: 0,
                error: format!("{e}"),
                result: "network",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Duration::from_secs(1);
        let cap = Duration::from_secs(10);
        let waits: Vec<u64> = (1..=6).map(|n| backoff(s, cap, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(s, cap, 200), cap);
    }
}
