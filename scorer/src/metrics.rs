//! The scorer's metrics (Prometheus, see `capsight_runtime::metrics`): batches, dead letters,
//! scores and alerts, retries of failing sinks, the keys held. Consumer lag is the watchdog's
//! (`capsight_kafka::liveness`), ClickHouse and Kafka call latency the dependencies'.

capsight_runtime::declare_metrics! {
    /// Messages per written batch.
    BATCH_ROWS = Histogram("capsight_scorer_batch_rows", [], "Messages per batch the scorer wrote");
    /// Time to write a batch (ClickHouse and Kafka, concurrently), retries included.
    BATCH_WRITE_SECONDS = Histogram("capsight_scorer_batch_write_seconds", [], "Time from a batch's first write attempt to its durable write");
    /// Messages consumed, by outcome.
    MESSAGES_TOTAL = Counter("capsight_scorer_messages_total", ["outcome"], "Messages written, by outcome: valid (scored) or dead_letter (sent to the DLQ topic)");
    /// Failed sink attempts (retried).
    RETRIES_TOTAL = Counter("capsight_scorer_retries_total", ["stage"], "Failed attempts of a batch stage (window_rebuild, batch_write), each retried");
    /// Scores published.
    SCORES_PUBLISHED_TOTAL = Counter("capsight_scorer_scores_published_total", [], "Latest scores published to the compacted scores topic");
    /// Label transitions written.
    ALERTS_TOTAL = Counter("capsight_scorer_alerts_total", [], "Label transitions written to the alerts table");
    /// Keys in memory.
    KEYS = Gauge("capsight_scorer_keys", [], "Capacity keys whose window the scorer holds");
    /// Time of the last written batch.
    LAST_BATCH_TIMESTAMP = Gauge("capsight_scorer_last_batch_timestamp_seconds", [], "Unix time of the last batch written");
}
