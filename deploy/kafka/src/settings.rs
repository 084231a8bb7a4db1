//! The `[kafka]` config section and the librdkafka configs built from it.

use std::{collections::BTreeMap, fmt, time::Duration};

use rdkafka::ClientConfig;
use serde::Deserialize;

/// The `[kafka]` section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// `bootstrap.servers`: comma-separated `host:port` list. Use `127.0.0.1`, not `localhost`,
    /// for the local tansu broker (IPv4 only).
    pub brokers: String,
    /// `client.id` prefix; binaries append their name.
    pub client_id: String,
    /// Timeout for admin and metadata calls.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Topic names and shapes.
    pub topics: TopicNames,
    /// Group membership timeouts and stall detection of every long-running consumer.
    pub consumer: ConsumerSettings,
    /// Raw librdkafka properties applied after everything else (e.g. `security.protocol`,
    /// `sasl.mechanism`, `ssl.ca.location`, `linger.ms`). Underscores in names are read as dots
    /// (`sasl_password` = `sasl.password`), since environment variable names cannot hold dots.
    /// Values may be written as numbers or booleans too (an environment variable such as
    /// `CAPSIGHT_KAFKA__PROPERTIES__LINGER_MS=5` arrives as a number).
    #[serde(default, deserialize_with = "scalar_strings")]
    pub properties: BTreeMap<String, String>,
}

/// A map whose values are strings, numbers or booleans, all kept as their text.
fn scalar_strings<'de, D>(de: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(i64),
        Float(f64),
        Bool(bool),
    }
    let raw = BTreeMap::<String, Scalar>::deserialize(de)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Scalar::Text(t) => t,
                Scalar::Int(i) => i.to_string(),
                Scalar::Float(f) => f.to_string(),
                Scalar::Bool(b) => b.to_string(),
            };
            (k, text)
        })
        .collect())
}

impl fmt::Debug for KafkaSettings {
    /// Redacts property values whose names suggest a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let props: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let secret = ["password", "secret", "key"].iter().any(|s| k.contains(s));
                (k.as_str(), if secret { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("request_timeout", &self.request_timeout)
            .field("topics", &self.topics)
            .field("consumer", &self.consumer)
            .field("properties", &props)
            .finish()
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            client_id: "capsight".into(),
            request_timeout: Duration::from_secs(30),
            topics: TopicNames::default(),
            consumer: ConsumerSettings::default(),
            properties: BTreeMap::new(),
        }
    }
}

/// The `[kafka.consumer]` section: how long-running consumers keep their group membership and
/// when they count as stalled.
///
/// The timeouts are chosen for a loaded broker, not for test speed: a heartbeat waits behind an
/// offset commit on the coordinator connection (brokers answer one connection's requests in
/// order), so the session timeout must be far above the slowest commit a busy broker serves,
/// and commits are spaced so that they stay a small share of that connection's traffic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSettings {
    /// `session.timeout.ms`: a member silent this long is removed from its group.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms`: at most a third of the session timeout.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// `auto.commit.interval.ms`: how often stored offsets are committed.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// A consumer with lag and no progress for this long is stalled: its health turns
    /// unhealthy and it rejoins with a new client. Longer than the session timeout, so the
    /// rebalance after a member died is not mistaken for a stall.
    #[serde(with = "humantime_serde")]
    pub stall_after: Duration,
    /// How often lag and progress are checked.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// Rejoins with a new client, without progress in between, before the consumer gives up
    /// and its process exits non-zero for its supervisor to restart it.
    pub max_recoveries: u32,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            commit_interval: Duration::from_secs(5),
            stall_after: Duration::from_secs(120),
            check_interval: Duration::from_secs(10),
            max_recoveries: 2,
        }
    }
}

impl ConsumerSettings {
    /// Checks the relations the defaults keep; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let ms = |d: Duration| d.as_millis();
        if self.session_timeout.is_zero() || self.heartbeat_interval.is_zero() {
            return Err("kafka.consumer.session_timeout and heartbeat_interval must be > 0".into());
        }
        if ms(self.heartbeat_interval) * 3 > ms(self.session_timeout) {
            return Err(format!(
                "kafka.consumer.heartbeat_interval ({:?}) must be at most a third of session_timeout ({:?})",
                self.heartbeat_interval, self.session_timeout
            ));
        }
        if self.commit_interval.is_zero() || self.check_interval.is_zero() {
            return Err("kafka.consumer.commit_interval and check_interval must be > 0".into());
        }
        if self.stall_after <= self.session_timeout {
            return Err(format!(
                "kafka.consumer.stall_after ({:?}) must be longer than session_timeout ({:?})",
                self.stall_after, self.session_timeout
            ));
        }
        Ok(())
    }
}

/// Topic names (overridable, e.g. to prefix per environment) and partition counts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicNames {
    /// Normalized signals, keyed `provider/region/instance_type`.
    pub signals: String,
    /// Partitions of the signals topic: the unit of scorer scale-out.
    pub signals_partitions: i32,
    /// Latest score per key (compacted), keyed by the key's string form.
    pub scores: String,
    /// Partitions of the scores topic.
    pub scores_partitions: i32,
    /// Undecodable or invalid input, with the reason in a header.
    pub signals_dlq: String,
    /// Replication factor for created topics (1 locally, 3 in production).
    pub replication: i32,
}

impl Default for TopicNames {
    fn default() -> Self {
        Self {
            signals: "capsight.signals.v1".into(),
            signals_partitions: 12,
            scores: "capsight.scores.v1".into(),
            scores_partitions: 12,
            signals_dlq: "capsight.signals.dlq.v1".into(),
            replication: 1,
        }
    }
}

/// How to create one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replication: i32,
    /// Topic-level configs such as `cleanup.policy=compact`.
    pub configs: Vec<(String, String)>,
}

impl TopicSpec {
    /// A topic with `partitions`, replication 1 and no topic-level configs (single-broker
    /// stacks, tests).
    pub fn plain(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication: 1,
            configs: Vec::new(),
        }
    }
}

impl TopicNames {
    /// The specs of the three capsight topics.
    pub fn specs(&self) -> Vec<TopicSpec> {
        let spec = |name: &str, partitions, configs: &[(&str, &str)]| TopicSpec {
            name: name.to_owned(),
            partitions,
            replication: self.replication,
            configs: configs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        vec![
            spec(&self.signals, self.signals_partitions, &[]),
            spec(
                &self.scores,
                self.scores_partitions,
                &[("cleanup.policy", "compact")],
            ),
            spec(&self.signals_dlq, 1, &[]),
        ]
    }
}

impl KafkaSettings {
    fn base(&self, role: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", format!("{}-{role}", self.client_id))
            // IPv4 first: the local broker listens on 127.0.0.1 only.
            .set("broker.address.family", "v4");
        c
    }

    fn finish(&self, mut c: ClientConfig) -> ClientConfig {
        for (k, v) in &self.properties {
            // environment variables cannot hold dots: `sasl_password` means `sasl.password`
            c.set(k.replace('_', "."), v);
        }
        c
    }

    /// An idempotent producer: `acks=all`, `enable.idempotence=true`, retries handled by
    /// librdkafka without reordering or duplicates.
    pub fn producer_config(&self, role: &str) -> ClientConfig {
        let mut c = self.base(role);
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            // the Java client's partitioner: every producer, in any language, puts a key on
            // the same partition
            .set("partitioner", "murmur2_random")
            .set("compression.type", "lz4")
            .set("linger.ms", "5");
        self.finish(c)
    }

    /// A consumer in `group`: reads from the earliest offset when it has none, commits stored
    /// offsets automatically, and stores an offset only when told to.
    pub fn consumer_config(&self, role: &str, group: &str) -> ClientConfig {
        let mut c = self.base(role);
        let ms = |d: Duration| d.as_millis().max(1).to_string();
        c.set("group.id", group)
            .set("session.timeout.ms", ms(self.consumer.session_timeout))
            .set(
                "heartbeat.interval.ms",
                ms(self.consumer.heartbeat_interval),
            )
            .set("auto.commit.interval.ms", ms(self.consumer.commit_interval))
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        self.finish(c)
    }

    /// An admin client config.
    pub fn admin_config(&self) -> ClientConfig {
        self.finish(self.base("admin"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_override_defaults_and_secrets_are_redacted() {
        let mut s = KafkaSettings::default();
        s.properties.insert("acks".into(), "1".into());
        s.properties
            .insert("sasl_password".into(), "hunter2".into());
        let c = s.producer_config("probe");
        assert_eq!(c.get("acks"), Some("1"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("client.id"), Some("capsight-probe"));
        assert_eq!(c.get("sasl.password"), Some("hunter2"));
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn consumers_never_store_offsets_automatically() {
        let c = KafkaSettings::default().consumer_config("scorer", "g");
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("group.id"), Some("g"));
        assert_eq!(c.get("session.timeout.ms"), Some("45000"));
        assert_eq!(c.get("auto.commit.interval.ms"), Some("5000"));
    }

    #[test]
    fn consumer_timeouts_are_checked_against_each_other() {
        let mut c = ConsumerSettings::default();
        c.validate().unwrap();
        c.heartbeat_interval = Duration::from_secs(20);
        assert!(c.validate().unwrap_err().contains("heartbeat_interval"));
        c.heartbeat_interval = Duration::from_secs(3);
        c.stall_after = Duration::from_secs(30);
        assert!(c.validate().unwrap_err().contains("stall_after"));
    }

    #[test]
    fn scores_topic_is_compacted() {
        let specs = TopicNames::default().specs();
        let scores = specs
            .iter()
            .find(|s| s.name == "capsight.scores.v1")
            .unwrap();
        assert!(
            scores
                .configs
                .contains(&("cleanup.policy".into(), "compact".into()))
        );
        assert_eq!(specs[0].partitions, 12);
    }
}
