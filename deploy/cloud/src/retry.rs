//! The retry loop every cloud adapter runs its calls in: throttled and transient failures are
//! retried with jittered exponential backoff (`[cloud]` retry settings); every attempt is a
//! `cloud.call` span and a `cloud` dependency call under its operation, failures by class.

use std::{future::Future, time::Duration};

use backon::{ExponentialBuilder, Retryable};
use tracing::Instrument;

use crate::{CloudError, settings::CloudSettings};

/// Runs `call` for `operation` of the API `system` (`aws-api`, `lambda-api`), retried as the
/// module contract says.
pub(crate) async fn retrying<T, F, Fut>(
    settings: &CloudSettings,
    system: &'static str,
    operation: &'static str,
    mut call: F,
) -> Result<T, CloudError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CloudError>>,
{
    let call = || {
        let span = tracing::info_span!(
            "cloud.call",
            otel.name = operation,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            rpc.system = system,
            rpc.method = operation,
            error.type = tracing::field::Empty,
        );
        let attempt = span.in_scope(&mut call);
        async move {
            let start = std::time::Instant::now();
            let result = attempt.instrument(span.clone()).await;
            let class = result.as_ref().err().map(|e| e.class().as_str());
            if let Some(class) = class {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", class);
            }
            capsight_runtime::metrics::dependency_call("cloud", operation, start, class);
            result
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(settings.retry_min_delay)
        .with_max_delay(settings.retry_max_delay.max(Duration::from_millis(1)))
        .with_max_times(settings.max_attempts.saturating_sub(1) as usize)
        .with_jitter();
    call.retry(backoff)
        .when(CloudError::is_retryable)
        .notify(|err, delay| {
            tracing::warn!(system, operation, class = %err.class(), error = %err, ?delay, "retrying cloud call");
        })
        .await
}
