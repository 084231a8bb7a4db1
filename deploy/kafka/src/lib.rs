//! Kafka for capsight: connection settings, the topic contract and client construction.
//!
//! * [`KafkaSettings`] is the `[kafka]` config section. Broker address, client id and any
//!   librdkafka property (security protocol, SASL, TLS files...) come from configuration;
//!   `properties` are applied last, so production brokers (Apache Kafka, MSK, Redpanda) need no
//!   code change.
//! * [`TopicNames`] / [`TopicSpec`]: the three topics (`capsight.signals.v1`,
//!   `capsight.scores.v1` compacted, `capsight.signals.dlq.v1`) and how they are created.
//! * [`admin::ensure_topics`] creates missing topics idempotently.
//! * [`liveness`]: every long-running consumer's lag, progress, health and recovery from a
//!   lost group membership ([`ConsumerSettings`], `[kafka.consumer]`).
//!
//! Producers built from [`KafkaSettings::producer_config`] are idempotent with `acks=all`.
//! Consumers built from [`KafkaSettings::consumer_config`] never store offsets by themselves
//! (`enable.auto.offset.store=false`): the owner stores an offset only after the writes it
//! covers are durable, and librdkafka commits stored offsets periodically.

pub mod admin;
pub mod liveness;
mod settings;

pub use settings::{ConsumerSettings, KafkaSettings, TopicNames, TopicSpec};

/// The header carrying the dead-letter reason on `capsight.signals.dlq.v1`.
pub const DLQ_REASON_HEADER: &str = "capsight-dlq-reason";
/// The header carrying the W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Errors from Kafka administration.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka refused or failed an operation.
    #[error("kafka {op}: {source}")]
    Client {
        /// What was being done.
        op: &'static str,
        /// librdkafka's error.
        source: rdkafka::error::KafkaError,
    },
    /// Creating a topic failed for a reason other than "already exists".
    #[error("creating topic {topic}: {code}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: rdkafka::types::RDKafkaErrorCode,
    },
    /// A topic exists with a shape that differs from its spec.
    #[error("topic {topic} has {actual} partitions, spec says {expected}")]
    PartitionMismatch {
        /// The topic.
        topic: String,
        /// Partitions found.
        actual: usize,
        /// Partitions wanted.
        expected: i32,
    },
    /// A blocking librdkafka call could not be run.
    #[error("kafka worker thread failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The metrics of this crate (consumer liveness).
pub use liveness::METRICS;
