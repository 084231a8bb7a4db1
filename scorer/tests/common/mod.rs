//! Helpers for the scorer's tests against the real local stack (Kafka-protocol broker and
//! ClickHouse started by `deploy/local/stack up`; addresses from `CAPSIGHT_*` variables).
//! Every test gets its own topics, consumer group and database; a missing service fails the
//! test.

#![allow(dead_code, reason = "each test binary uses a subset")]

use std::collections::HashMap;
use std::time::Duration;

use capsight_clickhouse::{ClickHouseSettings, migrate};
use capsight_kafka::{KafkaSettings, admin};
use capsight_proto::codec;
use capsight_proto::domain::{Score, Signal};
use capsight_scorer::{ScorerConfig, ScorerSettings};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
};

#[derive(serde::Deserialize)]
struct Conf {
    kafka: KafkaSettings,
    clickhouse: ClickHouseSettings,
    scorer: ScorerSettings,
}

/// A test's private topics, group and database.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub config: ScorerConfig,
    pub name: String,
}

impl Sandbox {
    /// Creates topics (signals with `partitions` partitions) and a migrated database.
    pub async fn new(test: &str, partitions: i32) -> Self {
        let conf = capsight_runtime::config::load::<Conf>(None).unwrap();
        let name = format!("{test}_{}", uuid::Uuid::new_v4().simple());
        let mut kafka = conf.kafka;
        kafka.request_timeout = Duration::from_secs(10);
        kafka.topics.signals = format!("test.{name}.signals");
        kafka.topics.signals_partitions = partitions;
        kafka.topics.scores = format!("test.{name}.scores");
        kafka.topics.scores_partitions = partitions;
        kafka.topics.signals_dlq = format!("test.{name}.dlq");
        admin::ensure_topics(&kafka, &kafka.topics.specs())
            .await
            .expect("broker reachable at CAPSIGHT_KAFKA__BROKERS (run deploy/local/stack up)");
        let clickhouse = conf.clickhouse.with_database(&format!("test_{name}"));
        migrate::apply(&clickhouse)
            .await
            .expect("ClickHouse reachable at CAPSIGHT_CLICKHOUSE__URL (run deploy/local/stack up)");
        let scorer = ScorerSettings {
            group_id: format!("test-{name}"),
            batch_max_interval: Duration::from_millis(200),
            retry_backoff: Duration::from_millis(200),
            // several scorers run at once: any free port for their health endpoints
            health_listen: "127.0.0.1:0".parse().unwrap(),
            ..conf.scorer
        };
        Self {
            config: ScorerConfig {
                kafka,
                clickhouse,
                scorer,
            },
            name,
        }
    }

    /// The same sandbox with another consumer group, scores topic and database, reading the
    /// same signals topic (an independent second scorer deployment).
    pub async fn twin(&self, suffix: &str) -> Self {
        let mut twin = self.clone();
        twin.name = format!("{}_{suffix}", self.name);
        twin.config.kafka.topics.scores = format!("test.{}.scores", twin.name);
        twin.config.kafka.topics.signals_dlq = format!("test.{}.dlq", twin.name);
        twin.config.scorer.group_id = format!("test-{}", twin.name);
        twin.config.clickhouse = self
            .config
            .clickhouse
            .with_database(&format!("test_{}", twin.name));
        admin::ensure_topics(&twin.config.kafka, &twin.config.kafka.topics.specs())
            .await
            .unwrap();
        migrate::apply(&twin.config.clickhouse).await.unwrap();
        twin
    }

    pub fn client(&self) -> clickhouse::Client {
        self.config.clickhouse.client().unwrap()
    }

    /// Environment variables pointing a `capsight-scorer` process at this sandbox.
    pub fn env(&self) -> Vec<(String, String)> {
        let c = &self.config;
        vec![
            ("CAPSIGHT_KAFKA__BROKERS".into(), c.kafka.brokers.clone()),
            (
                "CAPSIGHT_KAFKA__TOPICS__SIGNALS".into(),
                c.kafka.topics.signals.clone(),
            ),
            (
                "CAPSIGHT_KAFKA__TOPICS__SCORES".into(),
                c.kafka.topics.scores.clone(),
            ),
            (
                "CAPSIGHT_KAFKA__TOPICS__SIGNALS_DLQ".into(),
                c.kafka.topics.signals_dlq.clone(),
            ),
            ("CAPSIGHT_CLICKHOUSE__URL".into(), c.clickhouse.url.clone()),
            (
                "CAPSIGHT_CLICKHOUSE__DATABASE".into(),
                c.clickhouse.database.clone(),
            ),
            (
                "CAPSIGHT_SCORER__GROUP_ID".into(),
                c.scorer.group_id.clone(),
            ),
            ("CAPSIGHT_SCORER__BATCH_MAX_INTERVAL".into(), "200ms".into()),
            ("CAPSIGHT_SCORER__RETRY_BACKOFF".into(), "200ms".into()),
            (
                "CAPSIGHT_SCORER__HEALTH_LISTEN".into(),
                "127.0.0.1:0".into(),
            ),
            // Shortened for test time, not for production (45 s / 2 min there): a killed member
            // must leave the group within seconds, and a member that lost the group must
            // notice and rejoin within a test's patience.
            (
                "CAPSIGHT_KAFKA__CONSUMER__SESSION_TIMEOUT".into(),
                "6s".into(),
            ),
            (
                "CAPSIGHT_KAFKA__CONSUMER__HEARTBEAT_INTERVAL".into(),
                "1s".into(),
            ),
            ("CAPSIGHT_KAFKA__CONSUMER__STALL_AFTER".into(), "20s".into()),
            (
                "CAPSIGHT_KAFKA__CONSUMER__CHECK_INTERVAL".into(),
                "2s".into(),
            ),
            // commit stored offsets every second, so a kill finds some committed
            (
                "CAPSIGHT_KAFKA__CONSUMER__COMMIT_INTERVAL".into(),
                "1s".into(),
            ),
        ]
    }

    /// Drops the database and (best effort) nothing else: topics are cheap and unique.
    pub async fn drop_database(&self) {
        self.config
            .clickhouse
            .server_client()
            .query(&format!(
                "DROP DATABASE IF EXISTS {}",
                self.config.clickhouse.database
            ))
            .execute()
            .await
            .unwrap();
    }

    pub fn producer(&self) -> FutureProducer {
        self.config
            .kafka
            .producer_config("test")
            .set("message.timeout.ms", "30000")
            .create()
            .unwrap()
    }

    /// Publishes signals keyed like the collectors do; returns when all are acknowledged.
    pub async fn publish(&self, producer: &FutureProducer, signals: &[Signal]) {
        let encoded: Vec<(String, Vec<u8>)> = signals
            .iter()
            .map(|s| (s.key.partition_key(), codec::encode_signal(s)))
            .collect();
        for chunk in encoded.chunks(5000) {
            let sends = chunk.iter().map(|(k, v)| {
                producer.send(
                    FutureRecord::to(&self.config.kafka.topics.signals)
                        .key(k)
                        .payload(v),
                    Duration::from_secs(30),
                )
            });
            for r in futures::future::join_all(sends).await {
                r.map_err(|(e, _)| e).unwrap();
            }
        }
    }

    /// Publishes raw bytes to the signals topic.
    pub async fn publish_raw(&self, producer: &FutureProducer, key: &str, payload: &[u8]) {
        producer
            .send(
                FutureRecord::to(&self.config.kafka.topics.signals)
                    .key(key)
                    .payload(payload),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    /// Every message of `topic` from the beginning to the current end: (key, value, headers).
    pub async fn read_topic(&self, topic: &str) -> Vec<(String, Vec<u8>, HashMap<String, String>)> {
        let kafka = self.config.kafka.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || read_topic_blocking(&kafka, &topic))
            .await
            .unwrap()
    }

    /// The last score per key on the scores topic.
    pub async fn latest_scores(&self) -> HashMap<String, Score> {
        let mut latest = HashMap::new();
        for (key, value, _) in self.read_topic(&self.config.kafka.topics.scores).await {
            latest.insert(key, codec::decode_score(&value).unwrap());
        }
        latest
    }

    /// Waits until `done(latest scores)` holds, or panics after `timeout`.
    pub async fn wait_for_scores(
        &self,
        timeout: Duration,
        done: impl Fn(&HashMap<String, Score>) -> bool,
    ) -> HashMap<String, Score> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let latest = self.latest_scores().await;
            if done(&latest) {
                return latest;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "scores not as expected within {timeout:?}: {latest:#?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

fn read_topic_blocking(
    kafka: &KafkaSettings,
    topic: &str,
) -> Vec<(String, Vec<u8>, HashMap<String, String>)> {
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = kafka
        .consumer_config("test-reader", &format!("reader-{}", uuid::Uuid::new_v4()))
        .create()
        .unwrap();
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *p, Duration::from_secs(10))
            .unwrap();
        if high > low {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .unwrap();
            remaining.insert(*p, high);
        }
    }
    let mut out = Vec::new();
    if remaining.is_empty() {
        return out;
    }
    consumer.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !remaining.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic} took over 60 s"
        );
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg.unwrap();
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push((
            String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned(),
            msg.payload().unwrap_or_default().to_vec(),
            headers,
        ));
        if remaining
            .get(&msg.partition())
            .is_some_and(|high| msg.offset() + 1 >= *high)
        {
            remaining.remove(&msg.partition());
        }
    }
    out
}

/// A launch attempt signal.
pub use capsight_testkit::signals::launch;
