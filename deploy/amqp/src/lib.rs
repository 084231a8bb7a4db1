//! RabbitMQ for capsight: connection settings and the launch-job topology.
//!
//! Topology (declared idempotently by [`LaunchTopology::declare`], every queue a durable quorum
//! queue):
//! ```text
//!  publisher ──(key "job", confirms)──► exchange capsight.launch (direct)
//!                                         │ "job"                     │ "retry"
//!                                         ▼                           ▼
//!                               capsight.launch.jobs        capsight.launch.retry
//!                               delivery limit N            message TTL = retry delay,
//!                                         │ rejected N times / dead-letters back to
//!                                         ▼   poison                    capsight.launch "job"
//!                               exchange capsight.launch.dlx (fanout) ──► capsight.launch.dead
//! ```
//! Dead-lettering is at-least-once (`x-dead-letter-strategy=at-least-once` with
//! `x-overflow=reject-publish`), so a message is never dropped between queues. RabbitMQ 3.10
//! has no default delivery limit; it is always set here. Changing a queue argument of an existing
//! queue is refused by the broker (PRECONDITION_FAILED): delete the queue (after draining it) or
//! use new names.

use std::time::Duration;

use lapin::{
    Channel, Connection, ConnectionProperties, ExchangeKind,
    options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Errors talking to RabbitMQ.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// A broker operation failed.
    #[error("amqp {op}: {source}")]
    Broker {
        /// What was being done.
        op: String,
        /// lapin's error.
        source: lapin::Error,
    },
    /// `amqp.tls_ca` cannot be read.
    #[error("amqp.tls_ca {path}: {reason}")]
    TlsCa {
        /// The configured file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The broker did not answer in time.
    #[error("amqp {op}: timed out after {timeout:?}")]
    Timeout {
        /// What was being done.
        op: String,
        /// How long we waited.
        timeout: Duration,
    },
}

fn broker(op: impl Into<String>) -> impl FnOnce(lapin::Error) -> AmqpError {
    let op = op.into();
    move |source| AmqpError::Broker { op, source }
}

/// The `[amqp]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    /// `amqp://user:password@host:port/vhost` (`%2f` = the default vhost); `amqps://` for TLS.
    /// Never logged.
    pub url: SecretString,
    /// How long to wait for the connection handshake.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// PEM file of the CA(s) that sign the broker's certificate, for an `amqps://` url signed by
    /// a private CA; empty: the platform's trust store.
    #[serde(default)]
    pub tls_ca: std::path::PathBuf,
    /// Names and limits of the launch-job topology.
    pub launch: LaunchTopology,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
            connect_timeout: Duration::from_secs(10),
            tls_ca: std::path::PathBuf::new(),
            launch: LaunchTopology::default(),
        }
    }
}

impl AmqpSettings {
    /// Opens a connection (heartbeats and I/O on the tokio runtime); over TLS for an
    /// `amqps://` url, trusting `tls_ca` when it is set (with the process's rustls provider,
    /// `capsight_runtime::tls`).
    pub async fn connect(&self) -> Result<Connection, AmqpError> {
        let mut tls = lapin::tcp::OwnedTLSConfig::default();
        if !self.tls_ca.as_os_str().is_empty() {
            let pem = std::fs::read_to_string(&self.tls_ca).map_err(|e| AmqpError::TlsCa {
                path: self.tls_ca.clone(),
                reason: e.to_string(),
            })?;
            tls.cert_chain = Some(pem);
        }
        let runtime = lapin::runtime::default_runtime().map_err(broker("runtime"))?;
        let connecting = Connection::connect_with_config(
            self.url.expose_secret(),
            ConnectionProperties::default(),
            tls,
            runtime,
        );
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| AmqpError::Timeout {
                op: "connect".into(),
                timeout: self.connect_timeout,
            })?
            .map_err(broker("connect"))
    }
}

/// Names and limits of the launch-job topology.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LaunchTopology {
    /// Direct exchange jobs are published to.
    pub exchange: String,
    /// The work queue.
    pub jobs_queue: String,
    /// Routing key of the work queue.
    pub jobs_routing_key: String,
    /// Deliveries before a job is dead-lettered (RabbitMQ `x-delivery-limit`).
    pub delivery_limit: u32,
    /// Fanout exchange receiving dead letters.
    pub dead_letter_exchange: String,
    /// Where dead letters rest, for inspection and replay.
    pub dead_letter_queue: String,
    /// Delayed-retry queue: messages wait `retry_delay` there, then return to the work queue.
    pub retry_queue: String,
    /// Routing key of the retry queue on `exchange`.
    pub retry_routing_key: String,
    /// How long a job waits in the retry queue.
    #[serde(with = "humantime_serde")]
    pub retry_delay: Duration,
}

impl Default for LaunchTopology {
    fn default() -> Self {
        Self {
            exchange: "capsight.launch".into(),
            jobs_queue: "capsight.launch.jobs".into(),
            jobs_routing_key: "job".into(),
            delivery_limit: 5,
            dead_letter_exchange: "capsight.launch.dlx".into(),
            dead_letter_queue: "capsight.launch.dead".into(),
            retry_queue: "capsight.launch.retry".into(),
            retry_routing_key: "retry".into(),
            retry_delay: Duration::from_secs(30),
        }
    }
}

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in pairs {
        table.insert(ShortString::from(*k), v.clone());
    }
    table
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

impl LaunchTopology {
    /// The same topology with every name prefixed (tests use one topology each).
    #[must_use]
    pub fn prefixed(&self, prefix: &str) -> Self {
        let p = |name: &str| format!("{prefix}.{name}");
        Self {
            exchange: p(&self.exchange),
            jobs_queue: p(&self.jobs_queue),
            dead_letter_exchange: p(&self.dead_letter_exchange),
            dead_letter_queue: p(&self.dead_letter_queue),
            retry_queue: p(&self.retry_queue),
            ..self.clone()
        }
    }

    /// Deletes the queues and exchanges (what does not exist is no error) — for tests' private
    /// topologies and for retiring a prefix.
    pub async fn delete(&self, channel: &Channel) -> Result<(), AmqpError> {
        for q in [&self.jobs_queue, &self.retry_queue, &self.dead_letter_queue] {
            channel
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(broker(format!("delete queue {q}")))?;
        }
        for e in [&self.exchange, &self.dead_letter_exchange] {
            channel
                .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .map_err(broker(format!("delete exchange {e}")))?;
        }
        Ok(())
    }

    /// Declares the exchanges, queues and bindings. Idempotent while the arguments are unchanged.
    pub async fn declare(&self, channel: &Channel) -> Result<(), AmqpError> {
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let quorum = || AMQPValue::LongString("quorum".into());
        let at_least_once = [
            ("x-dead-letter-strategy", text("at-least-once")),
            ("x-overflow", text("reject-publish")),
        ];

        for (exchange, kind) in [
            (&self.exchange, ExchangeKind::Direct),
            (&self.dead_letter_exchange, ExchangeKind::Fanout),
        ] {
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    kind,
                    durable_exchange,
                    FieldTable::default(),
                )
                .await
                .map_err(broker(format!("declare exchange {exchange}")))?;
        }

        let queues = [
            (
                &self.dead_letter_queue,
                args(&[("x-queue-type", quorum())]),
                &self.dead_letter_exchange,
                "",
            ),
            (
                &self.jobs_queue,
                args(
                    &[
                        &[
                            ("x-queue-type", quorum()),
                            (
                                "x-delivery-limit",
                                AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
                            ),
                            ("x-dead-letter-exchange", text(&self.dead_letter_exchange)),
                        ][..],
                        &at_least_once[..],
                    ]
                    .concat(),
                ),
                &self.exchange,
                self.jobs_routing_key.as_str(),
            ),
            (
                &self.retry_queue,
                args(
                    &[
                        &[
                            ("x-queue-type", quorum()),
                            (
                                "x-message-ttl",
                                AMQPValue::LongLongInt(
                                    i64::try_from(self.retry_delay.as_millis()).unwrap_or(i64::MAX),
                                ),
                            ),
                            ("x-dead-letter-exchange", text(&self.exchange)),
                            ("x-dead-letter-routing-key", text(&self.jobs_routing_key)),
                        ][..],
                        &at_least_once[..],
                    ]
                    .concat(),
                ),
                &self.exchange,
                self.retry_routing_key.as_str(),
            ),
        ];
        for (queue, arguments, exchange, key) in queues {
            channel
                .queue_declare(queue.as_str().into(), durable_queue, arguments)
                .await
                .map_err(broker(format!("declare queue {queue}")))?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(broker(format!("bind queue {queue}")))?;
        }
        Ok(())
    }
}
