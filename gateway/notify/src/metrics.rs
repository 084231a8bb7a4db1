//! The notifier's metrics (Prometheus, see `capsight_runtime::metrics`): notifications queued
//! or suppressed by kind, webhook attempts by format and result with their latency, final
//! outcomes, and the notifications waiting. No tenant, subscription or URL is a label.

use std::time::Instant;

use capsight_runtime::metrics::seconds_since;

use crate::model::{EventKind, Format};

capsight_runtime::declare_metrics! {
    /// Notifications the fan-out decided on.
    NOTIFICATIONS_TOTAL = Counter("capsight_notify_notifications_total", ["kind", "decision"], "Notifications by event kind and fan-out decision (queued, cooldown)");
    /// Webhook calls.
    ATTEMPTS_TOTAL = Counter("capsight_notify_attempts_total", ["format", "result"], "Webhook calls by payload format and result (ok, http_error, timeout, refused, network)");
    /// Webhook call latency.
    ATTEMPT_SECONDS = Histogram("capsight_notify_attempt_seconds", ["format"], "Latency of one webhook call (connect to answer), by payload format");
    /// Final outcomes.
    DELIVERIES_TOTAL = Counter("capsight_notify_deliveries_total", ["format", "outcome"], "Notifications by final outcome: delivered, dead (dead-letter store), dropped (subscription deleted)");
    /// Waiting notifications.
    PENDING = Gauge("capsight_notify_pending", [], "Notifications without an outcome at the notifier's latest read");
}

/// A fan-out decision.
pub fn decided(kind: EventKind, decision: &'static str) {
    metrics::counter!(NOTIFICATIONS_TOTAL.name, "kind" => kind.as_str(), "decision" => decision)
        .increment(1);
}

/// One webhook call.
pub fn attempt(format: Format, result: &'static str, started: Instant) {
    metrics::counter!(ATTEMPTS_TOTAL.name, "format" => format.as_str(), "result" => result)
        .increment(1);
    metrics::histogram!(ATTEMPT_SECONDS.name, "format" => format.as_str())
        .record(seconds_since(started));
}

/// A final outcome.
pub fn outcome(format: Format, outcome: &'static str) {
    metrics::counter!(DELIVERIES_TOTAL.name, "format" => format.as_str(), "outcome" => outcome)
        .increment(1);
}

/// Notifications waiting.
pub fn pending(n: usize) {
    #[allow(clippy::cast_precision_loss, reason = "a count far below 2^52")]
    metrics::gauge!(PENDING.name).set(n as f64);
}
