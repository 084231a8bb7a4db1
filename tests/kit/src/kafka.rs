//! Kafka for tests: topics, producing fixtures, and reading back what a service wrote.
//!
//! * [`read_to_end`]: a topic from the beginning to its current end (by watermarks), without
//!   a consumer group — e.g. a dead-letter topic, or the latest scores ([`latest_scores`]);
//! * [`Reader`]: a fresh consumer group on a topic, to [`Reader::take`] exactly n records,
//!   [`Reader::drain`] until it is quiet, or check that nothing more arrives;
//! * [`consume_all`] / [`consume`]: the signals on a topic, each checked to be keyed by its
//!   partition key as every producer of capsight keys them.

use std::{collections::HashMap, time::Duration};

use capsight_kafka::{KafkaSettings, TopicSpec, admin};
use capsight_proto::{
    codec,
    domain::{Score, Signal},
};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer, StreamConsumer},
    message::{BorrowedMessage, Headers},
    producer::{FutureProducer, FutureRecord},
};

use crate::process::unique;

/// A compacted topic (the scores topic's policy).
pub fn compacted(name: &str, partitions: i32) -> TopicSpec {
    TopicSpec {
        name: name.to_owned(),
        partitions,
        replication: 1,
        configs: vec![("cleanup.policy".into(), "compact".into())],
    }
}

/// Creates `specs` (existing ones are fine); fails within seconds when the broker is down.
pub async fn ensure_topics(kafka: &KafkaSettings, specs: &[TopicSpec]) {
    if specs.is_empty() {
        return;
    }
    let mut quick = kafka.clone();
    quick.request_timeout = Duration::from_secs(10);
    admin::ensure_topics(&quick, specs)
        .await
        .expect("broker reachable at CAPSIGHT_KAFKA__BROKERS (run deploy/local/stack up)");
}

/// Waits up to `limit` until the broker at `kafka` answers (a private broker just started).
pub async fn wait_for_broker(kafka: &KafkaSettings, limit: Duration) {
    let up = crate::wait::poll(limit, || async { admin::cluster_brokers(kafka).await }).await;
    assert!(up.is_some(), "broker {} did not come up", kafka.brokers);
}

/// The idempotent producer capsight uses, holding a message at most `message_timeout`.
pub fn producer(kafka: &KafkaSettings, message_timeout: Duration) -> FutureProducer {
    kafka
        .producer_config("test")
        .set(
            "message.timeout.ms",
            message_timeout.as_millis().to_string(),
        )
        .create()
        .unwrap()
}

/// Sends one record (waiting at most `timeout` for room in the producer's queue); returns when
/// it is acknowledged.
pub async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    timeout: Duration,
) {
    producer
        .send(FutureRecord::to(topic).key(key).payload(payload), timeout)
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// Sends `signals` keyed like the collectors do (partition key); returns when all are
/// acknowledged.
pub async fn send_signals(
    producer: &FutureProducer,
    topic: &str,
    signals: &[Signal],
    timeout: Duration,
) {
    let encoded: Vec<(String, Vec<u8>)> = signals
        .iter()
        .map(|s| (s.key.partition_key(), codec::encode_signal(s)))
        .collect();
    for chunk in encoded.chunks(5000) {
        let sends = chunk
            .iter()
            .map(|(k, v)| producer.send(FutureRecord::to(topic).key(k).payload(v), timeout));
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| e).unwrap();
        }
    }
}

/// Sends `score` under its key, as the scorer publishes it.
pub async fn send_score(producer: &FutureProducer, topic: &str, score: &Score, timeout: Duration) {
    send(
        producer,
        topic,
        &score.key.to_string(),
        &codec::encode_score(score),
        timeout,
    )
    .await;
}

/// A record read back.
#[derive(Debug, Clone)]
pub struct Record {
    /// The key (lossy UTF-8; empty without one).
    pub key: String,
    /// The value.
    pub payload: Vec<u8>,
    /// The headers (lossy UTF-8 values).
    pub headers: HashMap<String, String>,
}

impl Record {
    fn of(msg: &BorrowedMessage<'_>) -> Self {
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
        Self {
            key: String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned(),
            payload: msg.payload().unwrap_or_default().to_vec(),
            headers,
        }
    }

    /// The record as a signal; asserts it is keyed by the signal's partition key.
    pub fn signal(&self) -> Signal {
        let s = codec::decode_signal(&self.payload).unwrap();
        assert_eq!(self.key, s.key.partition_key(), "record key of {s:?}");
        s
    }

    /// The record as a score.
    pub fn score(&self) -> Score {
        codec::decode_score(&self.payload).unwrap()
    }
}

/// Every record of `topic` from the beginning to the current end of each partition.
pub async fn read_to_end(kafka: &KafkaSettings, topic: &str) -> Vec<Record> {
    let kafka = kafka.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_to_end_blocking(&kafka, &topic))
        .await
        .unwrap()
}

fn read_to_end_blocking(kafka: &KafkaSettings, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = kafka
        .consumer_config("test-reader", &unique("reader"))
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
        out.push(Record::of(&msg));
        if remaining
            .get(&msg.partition())
            .is_some_and(|high| msg.offset() + 1 >= *high)
        {
            remaining.remove(&msg.partition());
        }
    }
    out
}

/// The last score per key on the scores topic `topic`.
pub async fn latest_scores(kafka: &KafkaSettings, topic: &str) -> HashMap<String, Score> {
    read_to_end(kafka, topic)
        .await
        .into_iter()
        .map(|r| (r.key.clone(), r.score()))
        .collect()
}

/// Waits (every 300 ms) until `done(latest scores)` holds; panics with the scores after
/// `timeout`.
pub async fn wait_for_scores(
    kafka: &KafkaSettings,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&HashMap<String, Score>) -> bool,
) -> HashMap<String, Score> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let latest = latest_scores(kafka, topic).await;
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

/// A consumer in a group of its own, subscribed to one topic from its beginning.
pub struct Reader {
    consumer: StreamConsumer,
    topic: String,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// Subscribes to `topic`.
    pub fn subscribe(kafka: &KafkaSettings, topic: &str) -> Self {
        let consumer: StreamConsumer = kafka
            .consumer_config("test", &unique("test-group"))
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        Self {
            consumer,
            topic: topic.to_owned(),
        }
    }

    /// Exactly the next `n` records, each within `within` of the one before.
    pub async fn take(&self, n: usize, within: Duration) -> Vec<Record> {
        let mut out = Vec::new();
        while out.len() < n {
            let msg = tokio::time::timeout(within, self.consumer.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{} of {n} records of {} within {within:?} each",
                        out.len(),
                        self.topic
                    )
                })
                .unwrap();
            out.push(Record::of(&msg));
        }
        out
    }

    /// Records until none arrives for `idle`.
    pub async fn drain(&self, idle: Duration) -> Vec<Record> {
        let mut out = Vec::new();
        while let Ok(Ok(msg)) = tokio::time::timeout(idle, self.consumer.recv()).await {
            out.push(Record::of(&msg));
        }
        out
    }

    /// Asserts that no record arrives within `quiet`.
    pub async fn expect_quiet(&self, quiet: Duration) {
        let extra = tokio::time::timeout(quiet, self.consumer.recv()).await;
        assert!(
            extra.is_err(),
            "more records than expected on {}",
            self.topic
        );
    }
}

/// Every signal on `topic`: read until 5 s pass without one.
pub async fn consume_all(kafka: &KafkaSettings, topic: &str) -> Vec<Signal> {
    Reader::subscribe(kafka, topic)
        .drain(Duration::from_secs(5))
        .await
        .iter()
        .map(Record::signal)
        .collect()
}

/// The first `n` signals on `topic`, each within 30 s.
pub async fn consume(kafka: &KafkaSettings, topic: &str, n: usize) -> Vec<Signal> {
    Reader::subscribe(kafka, topic)
        .take(n, Duration::from_secs(30))
        .await
        .iter()
        .map(Record::signal)
        .collect()
}
