//! The scores view: the latest score per key, read from the compacted scores topic.
//!
//! Contract:
//! * [`follow`] assigns every partition of `kafka.topics.scores` from the beginning (no consumer
//!   group offsets: each gateway builds its own full view), reads up to the high watermarks it
//!   found at start, then marks the view ready ([`ScoresView::is_ready`]) and keeps applying new
//!   records as they arrive. Partitions added after start are not followed until a restart.
//! * The view key is the decoded score's key string form; a record with an empty value (a
//!   compaction tombstone) removes the Kafka key. Undecodable or invalid records are logged and
//!   skipped.
//! * Every record whose label differs from the key's previous label (or whose key is new)
//!   becomes a [`Transition`] on a broadcast channel; slow watchers lose the oldest transitions
//!   (they are told how many) rather than slowing the view.

use std::{
    collections::{BTreeMap, HashMap},
    ops::Bound,
    sync::{Arc, RwLock},
    time::Duration,
};

use capsight_kafka::KafkaSettings;
use capsight_proto::{
    codec,
    domain::{Label, Score},
};
use capsight_runtime::shutdown::Shutdown;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
};
use tokio::sync::{broadcast, watch};

use crate::GatewayError;

/// A label change of one key.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The new score.
    pub score: Arc<Score>,
    /// The label before; `None` for a key seen for the first time.
    pub previous: Option<Label>,
}

/// The latest score per key.
#[derive(Debug)]
pub struct ScoresView {
    scores: RwLock<BTreeMap<String, Arc<Score>>>,
    ready: watch::Sender<bool>,
    transitions: broadcast::Sender<Transition>,
}

impl ScoresView {
    /// An empty, not-ready view.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            scores: RwLock::default(),
            ready: watch::channel(false).0,
            transitions: broadcast::channel(4096).0,
        })
    }

    /// Applies one record: `Some(score)` upserts, `None` removes `kafka_key`.
    pub fn apply(&self, kafka_key: &str, score: Option<Score>) {
        let Ok(mut scores) = self.scores.write() else {
            return;
        };
        match score {
            None => {
                scores.remove(kafka_key);
            }
            Some(score) => {
                let key = score.key.to_string();
                let score = Arc::new(score);
                let previous = scores.insert(key, Arc::clone(&score)).map(|s| s.label);
                drop(scores);
                if previous != Some(score.label) {
                    // no receivers is fine
                    let _ = self.transitions.send(Transition { score, previous });
                }
            }
        }
    }

    /// The score of `key` (string form).
    pub fn get(&self, key: &str) -> Option<Arc<Score>> {
        self.scores.read().ok()?.get(key).cloned()
    }

    /// Every score with `keep(score)`, in key order, starting after `after` (exclusive).
    pub fn select(&self, after: Option<&str>, keep: impl Fn(&Score) -> bool) -> Vec<Arc<Score>> {
        let Ok(scores) = self.scores.read() else {
            return Vec::new();
        };
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_owned()));
        scores
            .range((start, Bound::Unbounded))
            .filter(|(_, s)| keep(s))
            .map(|(_, s)| Arc::clone(s))
            .collect()
    }

    /// Keys in the view.
    pub fn len(&self) -> usize {
        self.scores.read().map(|s| s.len()).unwrap_or(0)
    }

    /// True when the view holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once the topic was read to the end found at start.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Marks the view ready.
    pub fn mark_ready(&self) {
        self.ready.send_replace(true);
    }

    /// Resolves once the view is ready.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        // the sender lives as long as self
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Label transitions from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.transitions.subscribe()
    }
}

/// Reads the scores topic into `view` until `shutdown` fires (see the module contract).
pub async fn follow(
    view: Arc<ScoresView>,
    kafka: KafkaSettings,
    shutdown: Shutdown,
) -> Result<(), GatewayError> {
    let group = format!("capsight-gateway-view-{}", uuid::Uuid::new_v4().simple());
    let consumer: StreamConsumer = kafka
        .consumer_config("gateway-view", &group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| GatewayError::unavailable("kafka", e))?;
    let consumer = Arc::new(consumer);
    let topic = kafka.topics.scores.clone();
    let timeout = kafka.request_timeout;

    // wait for the topic to exist, then assign all its partitions from the beginning
    let mut pending = loop {
        let c = Arc::clone(&consumer);
        let t = topic.clone();
        let found = tokio::task::spawn_blocking(move || assign_all(&c, &t, timeout))
            .await
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        match found {
            Ok(Some(highs)) => break highs,
            Ok(None) => tracing::warn!(%topic, "scores topic has no partitions yet; waiting"),
            Err(e) => tracing::warn!(%topic, error = %e, "cannot read scores topic metadata"),
        }
        tokio::select! {
            () = shutdown.wait() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    };
    if pending.is_empty() {
        view.mark_ready();
        tracing::info!(%topic, "scores view ready (topic empty)");
    }
    loop {
        let msg = tokio::select! {
            () = shutdown.wait() => return Ok(()),
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "scores topic read failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let kafka_key = msg
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        match msg.payload() {
            None | Some([]) => view.apply(&kafka_key, None),
            Some(bytes) => match codec::decode_score(bytes) {
                Ok(score) => view.apply(&kafka_key, Some(score)),
                Err(e) => tracing::warn!(
                    key = %kafka_key, offset = msg.offset(), reason = %e.reason(),
                    "skipping invalid score record"
                ),
            },
        }
        if !pending.is_empty() {
            let partition = msg.partition();
            if pending
                .get(&partition)
                .is_some_and(|high| msg.offset() + 1 >= *high)
            {
                pending.remove(&partition);
                if pending.is_empty() {
                    view.mark_ready();
                    tracing::info!(%topic, keys = view.len(), "scores view ready");
                }
            }
        }
    }
}

/// Assigns every partition of `topic` from the beginning; returns the non-empty partitions'
/// high watermarks, or `None` when the topic has no partitions (yet).
fn assign_all(
    consumer: &StreamConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Option<HashMap<i32, i64>>, rdkafka::error::KafkaError> {
    let meta = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Ok(None);
    }
    let mut highs = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        if high > low {
            highs.insert(p, high);
        }
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    Ok(Some(highs))
}
