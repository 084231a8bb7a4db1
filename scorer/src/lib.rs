//! `capsight-scorer`: the only writer of scores.
//!
//! A consumer group on `capsight.signals.v1` keeps a sliding window per capacity key, scores it
//! with the pure [`model`], and writes:
//! * every valid signal to ClickHouse `signals`, score history to `scores` (material change or
//!   heartbeat), label transitions to `alerts` and tenant reports checked against first-party
//!   verdicts to `tenant_checks` ([`store`]); every `trust.refresh_interval` it reloads all
//!   tenants' trust from `tenant_checks` and scales their reports' weight by it ([`model`]);
//! * the latest score of every touched key to the compacted `capsight.scores.v1` (Kafka key =
//!   the key's string form, value = `codec::encode_score`);
//! * undecodable or invalid messages, unchanged, to `capsight.signals.dlq.v1` with the reason in
//!   the `capsight-dlq-reason` header; the consumer carries on.
//!
//! Delivery contract ([`pipeline`]): messages are processed in batches (size- and time-bounded).
//! A batch's offsets are stored only after all of its writes (ClickHouse inserts, scores and
//! dead letters acknowledged by the broker) succeeded; librdkafka commits stored offsets. All
//! writes are idempotent by signal id / key and event time, so a replay after a crash neither
//! loses nor double-counts. Before a key's first batch after start or (re)assignment its window
//! is rebuilt from ClickHouse `signals` (merged with the replayed messages, de-duplicated by
//! id), so no score is published from a partial window; revoked partitions' keys are dropped.
//! Scores are computed in event time (the key's newest signal is "now"), so the final scores
//! after any sequence of crashes and replays equal those of an uninterrupted run; the price is
//! that an idle key's score does not age between its signals (`docs/adr/0003-*.md`).
//!
//! Module map: [`config`] (the `[scorer]` section), [`observation`] (signal -> model input),
//! [`model`] (the scoring function), [`window`] (one key's window), [`engine`] (all keys'
//! state, history and alert decisions), [`store`] (ClickHouse), [`pipeline`] (Kafka).

pub mod config;
pub mod engine;
pub mod metrics;
pub mod model;
pub mod observation;
pub mod pipeline;
pub mod store;
pub mod window;

use capsight_runtime::shutdown::Shutdown;

pub use config::{ScorerConfig, ScorerSettings};

/// Why the scorer stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ScorerError {
    /// A `[scorer]` value is out of range.
    #[error("invalid scorer.{field}: {reason}")]
    Config {
        /// The key.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A `[verdict]` value is out of range.
    #[error("invalid {0}")]
    Verdict(#[source] capsight_proto::domain::FieldError),
    /// A Kafka client could not be created or refused an operation (fatal at start).
    #[error("kafka {op}: {source}")]
    Kafka {
        /// What was being done.
        op: &'static str,
        /// librdkafka's error.
        source: rdkafka::error::KafkaError,
    },
    /// Producing to the scores or dead-letter topic failed (the batch is retried).
    #[error("producing to {topic}: {source}")]
    Produce {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        source: rdkafka::error::KafkaError,
    },
    /// A ClickHouse query or insert failed (the batch is retried).
    #[error("clickhouse {op}: {source}")]
    ClickHouse {
        /// What was being done.
        op: &'static str,
        /// The client's error.
        source: clickhouse::error::Error,
    },
    /// The ClickHouse settings are unusable.
    #[error(transparent)]
    ClickHouseSettings(#[from] capsight_clickhouse::ClickHouseError),
    /// A blocking librdkafka call could not be run.
    #[error("kafka worker thread failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// A `[trust]` value is out of range.
    #[error(transparent)]
    Trust(#[from] capsight_tenancy::trust::TrustSettingsError),
    /// The `[kafka.consumer]` section is inconsistent.
    #[error("invalid {0}")]
    ConsumerConfig(String),
    /// The consumer stalled and rejoining its group did not help: the process should exit
    /// non-zero so its supervisor restarts it.
    #[error("consumer stalled: {0}")]
    Stalled(String),
    /// The health endpoint could not be bound.
    #[error("health endpoint {addr}: {source}")]
    Health {
        /// `scorer.health_listen`.
        addr: std::net::SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
}

impl ScorerError {
    /// True for errors worth retrying the batch for (the service may come back).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Produce { .. } | Self::ClickHouse { .. } | Self::Join(_)
        )
    }
}

/// Runs the scorer until `shutdown` fires, then drains: the open batch is flushed (or left for
/// replay if its writes cannot complete), stored offsets are committed, the producer is flushed.
/// Serves `GET /healthz` on `scorer.health_listen` meanwhile (unhealthy while the consumer is
/// stalled). Returns [`ScorerError::Stalled`] when the consumer stalled for good.
pub async fn run(config: ScorerConfig, shutdown: Shutdown) -> Result<(), ScorerError> {
    config.validate()?;
    config
        .kafka
        .consumer
        .validate()
        .map_err(ScorerError::ConsumerConfig)?;
    let pipeline = pipeline::Pipeline::new(&config)?;
    let liveness = pipeline.watch(&shutdown);
    let health = liveness.clone();
    let check: capsight_runtime::health::Check = std::sync::Arc::new(move || health.check());
    let addr = config.scorer.health_listen;
    capsight_runtime::health::serve(addr, vec![("consumer", check)], shutdown.clone())
        .await
        .map_err(|source| ScorerError::Health { addr, source })?;
    pipeline.run(shutdown, liveness).await
}
