//! The scorer's metrics (Prometheus, see `capsight_runtime::metrics`): batches, dead letters,
//! scores and alerts, retries of failing sinks, the keys held. Consumer lag is the watchdog's
//! (`capsight_kafka::liveness`), ClickHouse and Kafka call latency the dependencies'.

use capsight_runtime::metrics::Metric;

/// Messages per written batch.
pub const BATCH_ROWS: Metric = Metric::histogram(
    "capsight_scorer_batch_rows",
    &[],
    "Messages per batch the scorer wrote",
);
/// Time to write a batch (ClickHouse and Kafka, concurrently), retries included.
pub const BATCH_WRITE_SECONDS: Metric = Metric::histogram(
    "capsight_scorer_batch_write_seconds",
    &[],
    "Time from a batch's first write attempt to its durable write",
);
/// Messages consumed, by outcome.
pub const MESSAGES_TOTAL: Metric = Metric::counter(
    "capsight_scorer_messages_total",
    &["outcome"],
    "Messages written, by outcome: valid (scored) or dead_letter (sent to the DLQ topic)",
);
/// Failed sink attempts (retried).
pub const RETRIES_TOTAL: Metric = Metric::counter(
    "capsight_scorer_retries_total",
    &["stage"],
    "Failed attempts of a batch stage (window_rebuild, batch_write), each retried",
);
/// Scores published.
pub const SCORES_PUBLISHED_TOTAL: Metric = Metric::counter(
    "capsight_scorer_scores_published_total",
    &[],
    "Latest scores published to the compacted scores topic",
);
/// Label transitions written.
pub const ALERTS_TOTAL: Metric = Metric::counter(
    "capsight_scorer_alerts_total",
    &[],
    "Label transitions written to the alerts table",
);
/// Keys in memory.
pub const KEYS: Metric = Metric::gauge(
    "capsight_scorer_keys",
    &[],
    "Capacity keys whose window the scorer holds",
);
/// Time of the last written batch.
pub const LAST_BATCH_TIMESTAMP: Metric = Metric::gauge(
    "capsight_scorer_last_batch_timestamp_seconds",
    &[],
    "Unix time of the last batch written",
);

/// The metrics of this crate.
pub const METRICS: &[Metric] = &[
    BATCH_ROWS,
    BATCH_WRITE_SECONDS,
    MESSAGES_TOTAL,
    RETRIES_TOTAL,
    SCORES_PUBLISHED_TOTAL,
    ALERTS_TOTAL,
    KEYS,
    LAST_BATCH_TIMESTAMP,
];
