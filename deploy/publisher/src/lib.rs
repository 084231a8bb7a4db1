//! Publishes capsight signals to `capsight.signals.v1`.
//!
//! Contract:
//! * **Wire form**: key = `CapacityKey::partition_key()` (`provider/region/instance_type`), so one
//!   key's signals stay ordered on one partition; value = `capsight.v1.Signal` protobuf; headers
//!   `traceparent` (the context of a `kafka.produce` span, a child of the caller's span) and
//!   `capsight-signal-id`.
//! * **Delivery**: an idempotent producer (`acks=all`, `enable.idempotence=true`): librdkafka
//!   retries without duplicating or reordering. [`Publisher::publish`] resolves only when the
//!   broker has acknowledged the signal, so a caller that answers its own client after it (the
//!   reports intake) never acknowledges a signal that could still be lost.
//! * **Back-pressure, never drops**: librdkafka's queue is the bounded buffer
//!   (`publisher.buffer_max_messages`); when it is full, `publish` waits for room instead of
//!   failing. While the broker is unreachable, messages wait in that buffer for
//!   `publisher.delivery_timeout` (default: forever) and a reporter task logs how many are held.
//! * **Failures** (a message the broker refuses, or one that outlived a finite delivery timeout)
//!   are logged, counted in [`PublisherStats::failed`] and returned to the caller.
//! * **Ids**: the caller sets [`Signal::id`] — unique, and the same for every retry of the same
//!   observation (`SignalId::derived`) — so downstream sinks de-duplicate.
//! * **Metrics**: signals published and failed by role and source, produce latency and errors
//!   (as the `kafka` dependency), the buffer depth ([`Publisher::spawn_report`], which every
//!   publishing process runs; see [`METRICS`]).
//! * **Shutdown**: [`Publisher::flush`] waits, up to a deadline, until the buffer is empty and
//!   reports what it could not deliver.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use capsight_kafka::{KafkaSettings, TRACEPARENT_HEADER};
use capsight_proto::{codec, domain::Signal};
use capsight_runtime::metrics::dependency_call;
use rdkafka::{
    error::KafkaError,
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
    util::Timeout,
};
use serde::Deserialize;
use tracing::Instrument;

/// The header carrying the signal id (for tracing and DLQ inspection without decoding).
pub const SIGNAL_ID_HEADER: &str = "capsight-signal-id";

capsight_runtime::declare_metrics! {
    /// Signals the broker acknowledged, by publisher role (the process) and signal source.
    SIGNALS_PUBLISHED_TOTAL = Counter("capsight_signals_published_total", ["role", "source"], "Signals the broker acknowledged, by publishing process (role) and signal source");
    /// Signals refused or timed out.
    SIGNALS_FAILED_TOTAL = Counter("capsight_signals_failed_total", ["role", "source"], "Signals the broker refused or that outlived the delivery timeout");
    /// The producer's buffer.
    PUBLISHER_BUFFERED = Gauge("capsight_publisher_buffered_signals", ["role"], "Signals held in the producer's buffer (queued or in flight)");
}

/// The `[publisher]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherSettings {
    /// Most signals held in memory while the broker is slow or unreachable
    /// (`queue.buffering.max.messages`); beyond it `publish` waits.
    pub buffer_max_messages: u32,
    /// How long a signal may wait for the broker before it counts as failed; `0s` = forever.
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// How often to log the buffer while messages are waiting.
    #[serde(with = "humantime_serde")]
    pub report_interval: Duration,
}

impl Default for PublisherSettings {
    fn default() -> Self {
        Self {
            buffer_max_messages: 100_000,
            delivery_timeout: Duration::ZERO,
            report_interval: Duration::from_secs(10),
        }
    }
}

/// Why a signal was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The producer could not be created (bad librdkafka property...).
    #[error("creating the kafka producer: {0}")]
    Create(#[source] KafkaError),
    /// The broker refused the signal or it outlived the delivery timeout.
    #[error("signal {id} not delivered: {source}")]
    Delivery {
        /// The signal id.
        id: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// `flush` hit its deadline with signals still buffered.
    #[error(
        "{remaining} signal(s) still buffered after {waited:?}; they are lost if the process exits"
    )]
    FlushIncomplete {
        /// Signals not yet acknowledged.
        remaining: i32,
        /// How long flush waited.
        waited: Duration,
    },
}

/// Counters, cheap to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Acknowledged by the broker.
    pub delivered: u64,
    /// Refused or timed out.
    pub failed: u64,
    /// Held in the buffer now (queued or in flight).
    pub buffered: i32,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
}

/// A signal publisher. Cheap to clone; clones share one producer.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
    counters: Arc<Counters>,
    /// The role, as a metric label (a fixed name per binary).
    role: metrics::SharedString,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher to `kafka.topics.signals`. `role` names the process in `client.id`.
    pub fn new(
        kafka: &KafkaSettings,
        settings: &PublisherSettings,
        role: &str,
    ) -> Result<Self, PublishError> {
        let mut config = kafka.producer_config(role);
        config
            .set(
                "queue.buffering.max.messages",
                settings.buffer_max_messages.to_string(),
            )
            .set(
                "message.timeout.ms",
                settings.delivery_timeout.as_millis().to_string(),
            );
        // configured librdkafka properties still win
        for (k, v) in &kafka.properties {
            config.set(k.replace('_', "."), v);
        }
        let producer: FutureProducer = config.create().map_err(PublishError::Create)?;
        Ok(Self {
            producer,
            topic: kafka.topics.signals.clone(),
            counters: Arc::default(),
            role: role.to_owned().into(),
        })
    }

    /// Publishes `signal`, its free text redacted ([`Signal::redact`]), and waits for the
    /// broker's acknowledgement. Waits (never fails) while
    /// the buffer is full; with the default infinite delivery timeout it also waits out a broker
    /// outage.
    pub async fn publish(&self, signal: &Signal) -> Result<(), PublishError> {
        // free text leaves the process only redacted: the topic and its table are shared
        let mut redacted = signal.clone();
        redacted.redact();
        let payload = codec::encode_signal(&redacted);
        let key = signal.key.partition_key();
        let mut headers = OwnedHeaders::new().insert(Header {
            key: SIGNAL_ID_HEADER,
            value: Some(signal.id.as_str()),
        });
        // inside a caller's span, a produce span is the parent the consumer's span continues
        // from; a signal published outside any span starts no trace
        let span = if tracing::Span::current().is_none() {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "kafka.produce",
                otel.kind = "producer",
                otel.status_code = tracing::field::Empty,
                messaging.system = "kafka",
                messaging.destination.name = %self.topic,
                signal_id = %signal.id,
                source = signal.source.as_str(),
            )
        };
        let trace = span.in_scope(capsight_runtime::telemetry::inject);
        if let Some(tp) = trace.get(TRACEPARENT_HEADER) {
            headers = headers.insert(Header {
                key: TRACEPARENT_HEADER,
                value: Some(tp.as_str()),
            });
        }
        let record = FutureRecord::to(&self.topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        let start = std::time::Instant::now();
        let labels = [
            ("role", self.role.clone()),
            ("source", signal.source.as_str().into()),
        ];
        let sent = self
            .producer
            .send(record, Timeout::Never)
            .instrument(span.clone())
            .await;
        match sent {
            Ok(_) => {
                dependency_call("kafka", "produce", start, None);
                metrics::counter!(SIGNALS_PUBLISHED_TOTAL.name, &labels).increment(1);
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err((source, _)) => {
                span.record("otel.status_code", "ERROR");
                dependency_call("kafka", "produce", start, Some(kafka_error_class(&source)));
                metrics::counter!(SIGNALS_FAILED_TOTAL.name, &labels).increment(1);
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(signal = %signal.id, key = %signal.key, error = %source, "signal not delivered");
                Err(PublishError::Delivery {
                    id: signal.id.to_string(),
                    source,
                })
            }
        }
    }

    /// Current counters.
    pub fn stats(&self) -> PublisherStats {
        PublisherStats {
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            buffered: self.producer.in_flight_count(),
        }
    }

    /// Logs the buffer every `interval` while it holds messages (and sets its gauge every
    /// `interval`), until `shutdown` fires.
    pub async fn report(&self, interval: Duration, shutdown: capsight_runtime::shutdown::Shutdown) {
        let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
        let buffered = metrics::gauge!(PUBLISHER_BUFFERED.name, "role" => self.role.clone());
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => {
                    let s = self.stats();
                    buffered.set(f64::from(s.buffered));
                    if s.buffered > 0 {
                        tracing::warn!(buffered = s.buffered, delivered = s.delivered, failed = s.failed,
                            "signals waiting for the broker");
                    }
                }
            }
        }
    }

    /// Runs [`Publisher::report`] in a task of its own: every publishing process (collectors,
    /// reports intake, gateway, launcher) reports its buffer depth this way.
    pub fn spawn_report(
        &self,
        interval: Duration,
        shutdown: capsight_runtime::shutdown::Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move { me.report(interval, shutdown).await })
    }

    /// Waits up to `deadline` for every buffered signal to be acknowledged.
    pub async fn flush(&self, deadline: Duration) -> Result<(), PublishError> {
        let producer = self.producer.clone();
        let started = std::time::Instant::now();
        // flush blocks the calling thread
        let _ = tokio::task::spawn_blocking(move || producer.flush(Timeout::After(deadline))).await;
        let remaining = self.producer.in_flight_count();
        if remaining > 0 {
            tracing::error!(remaining, "signals still buffered at shutdown");
            return Err(PublishError::FlushIncomplete {
                remaining,
                waited: started.elapsed(),
            });
        }
        Ok(())
    }
}

/// A bounded name for a produce error (the librdkafka error code, not its message).
fn kafka_error_class(e: &KafkaError) -> &'static str {
    match e.rdkafka_error_code() {
        Some(rdkafka::types::RDKafkaErrorCode::MessageTimedOut) => "timed_out",
        Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => "queue_full",
        Some(rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge) => "too_large",
        Some(_) => "broker",
        None => "client",
    }
}

#[cfg(test)]
capsight_runtime::documented_defaults_test!("publisher", PublisherSettings);
