//! Publishes launch jobs to RabbitMQ for the launcher.
//!
//! Contract: [`JobPublisher::publish`] returns only after the broker *confirmed* the message
//! (publisher confirms) and routed it (`mandatory`; an unroutable job is an error), so a job id
//! returned to a client is never lost. Body: `capsight.v1.LaunchJob` protobuf; properties:
//! persistent, `content_type = application/x-protobuf`, `type = capsight.v1.LaunchJob`,
//! `message_id = job_id`, headers `capsight-tenant` and the W3C `traceparent`. The topology is
//! declared once per connection ([`capsight_amqp::LaunchTopology::declare`], idempotent). A
//! failed publish drops the channel; the next call reconnects.

use std::time::Duration;

use capsight_amqp::AmqpSettings;
use capsight_proto::v1;
use lapin::{
    BasicProperties, Channel, Connection,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable, ShortString},
};
use prost::Message;
use tokio::sync::Mutex;
use tracing::Instrument;

/// RabbitMQ refused or did not confirm (the job may be retried).
#[derive(Debug, Clone, thiserror::Error)]
#[error("rabbitmq: {0}")]
pub struct QueueError(String);

/// The header naming the job's tenant.
pub const TENANT_HEADER: &str = "capsight-tenant";

/// A confirm-mode publisher of launch jobs.
pub struct JobPublisher {
    settings: AmqpSettings,
    timeout: Duration,
    channel: Mutex<Option<(Connection, Channel)>>,
}

impl std::fmt::Debug for JobPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobPublisher")
            .field("exchange", &self.settings.launch.exchange)
            .finish_non_exhaustive()
    }
}

fn amqp(e: impl std::fmt::Display) -> QueueError {
    QueueError(e.to_string())
}

impl JobPublisher {
    /// A publisher; connects lazily.
    pub fn new(settings: AmqpSettings, timeout: Duration) -> Self {
        Self {
            settings,
            timeout,
            channel: Mutex::new(None),
        }
    }

    async fn open(&self) -> Result<(Connection, Channel), QueueError> {
        let conn = self.settings.connect().await.map_err(amqp)?;
        let channel = conn.create_channel().await.map_err(amqp)?;
        self.settings.launch.declare(&channel).await.map_err(amqp)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(amqp)?;
        Ok((conn, channel))
    }

    /// Connects and declares the topology now (start-up check).
    pub async fn connect(&self) -> Result<(), QueueError> {
        let mut guard = self.channel.lock().await;
        if guard.is_none() {
            *guard = Some(self.open().await?);
        }
        Ok(())
    }

    /// Publishes `job` and waits for the broker's confirm, in an `amqp.publish` span whose
    /// context the message's `traceparent` header carries to the launcher.
    pub async fn publish(&self, job: &v1::LaunchJob) -> Result<(), QueueError> {
        let span = tracing::info_span!(
            "amqp.publish",
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "rabbitmq",
            messaging.destination.name = %self.settings.launch.exchange,
            messaging.message.id = %job.job_id,
        );
        let result = self.publish_in_span(job).instrument(span.clone()).await;
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        result
    }

    async fn publish_in_span(&self, job: &v1::LaunchJob) -> Result<(), QueueError> {
        let mut guard = self.channel.lock().await;
        let start = std::time::Instant::now();
        let result = tokio::time::timeout(self.timeout, async {
            if guard.as_ref().is_none_or(|(_, c)| !c.status().connected()) {
                *guard = Some(self.open().await?);
            }
            let Some((_, channel)) = guard.as_ref() else {
                return Err(amqp("no amqp channel"));
            };
            let mut headers = FieldTable::default();
            headers.insert(
                ShortString::from(TENANT_HEADER),
                AMQPValue::LongString(job.tenant.as_str().into()),
            );
            for (k, v) in capsight_runtime::telemetry::inject() {
                headers.insert(ShortString::from(k), AMQPValue::LongString(v.into()));
            }
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/x-protobuf".into())
                .with_type("capsight.v1.LaunchJob".into())
                .with_message_id(job.job_id.as_str().into())
                .with_headers(headers);
            let confirm = channel
                .basic_publish(
                    self.settings.launch.exchange.as_str().into(),
                    self.settings.launch.jobs_routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &job.encode_to_vec(),
                    props,
                )
                .await
                .map_err(amqp)?
                .await
                .map_err(amqp)?;
            if !confirm.is_ack() {
                return Err(amqp("the broker nacked the job"));
            }
            if confirm.take_message().is_some() {
                return Err(amqp("the job was not routed to a queue"));
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|_| Err(amqp(format!("no confirm within {:?}", self.timeout))));
        let failed = result.is_err().then_some("publish");
        capsight_runtime::metrics::dependency_call("rabbitmq", "publish", start, failed);
        if result.is_err() {
            *guard = None;
        }
        result
    }
}
