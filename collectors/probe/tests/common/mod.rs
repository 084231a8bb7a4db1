//! Shared set-up of the prober's acceptance tests: an in-process cloudsim (frozen clock), a
//! fresh migrated ClickHouse database, a per-test topic, the real `capsight-probe` binary.

#![allow(
    clippy::unwrap_used,
    dead_code,
    reason = "test helpers: a panic is a failed assertion; not every test uses every helper"
)]

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::Credentials;
use capsight_catalog::Catalog;
use capsight_clickhouse::{ClickHouseSettings, migrate, rows::ProbeAuditRow};
use capsight_cloud::{CloudSettings, aws::AwsAdapter};
use capsight_cloudsim::{CloudsimSettings, Running, scenario::Scenario};
use capsight_kafka::{KafkaSettings, TopicSpec, admin};
use capsight_proto::{codec, domain::Signal};
use capsight_runtime::shutdown::Shutdown;
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

pub const KEY_ID: &str = "AKIATESTPROBE";
pub const ACCOUNT: &str = "111111111111";

/// us-east-1 with two zones: p5 has stock in az1 and none in az4; the G family has no quota.
/// The prober's scenario with `g_quota` vCPUs of G-family quota (`L-DB2E81BA`).
pub fn scenario(g_quota: u32) -> Scenario {
    let mut scenario = Scenario::parse(&capsight_testkit::fixtures::scenario("probe")).unwrap();
    for account in &mut scenario.accounts {
        account
            .quotas
            .insert("L-DB2E81BA".into(), f64::from(g_quota));
    }
    scenario
}

#[derive(serde::Deserialize)]
struct Conf {
    kafka: KafkaSettings,
    clickhouse: ClickHouseSettings,
}

/// A cloudsim of its own.
pub struct Sim {
    pub running: Running,
    shutdown: Shutdown,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

impl Sim {
    /// Starts [`scenario`] with `g_quota` vCPUs of G-family quota.
    pub async fn start(g_quota: u32) -> Self {
        let settings = CloudsimSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            time_scale: 0.0,
            tick: Duration::from_millis(20),
            ..CloudsimSettings::default()
        };
        let shutdown = Shutdown::new();
        let scenario = scenario(g_quota);
        let running = capsight_cloudsim::start(&settings, scenario, None, shutdown.clone())
            .await
            .unwrap();
        Self { running, shutdown }
    }

    pub fn url(&self) -> String {
        self.running.url()
    }

    /// The operator's adapter, as the prober builds it.
    pub async fn adapter(&self) -> AwsAdapter {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.url())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(Credentials::new(KEY_ID, "secret", None, None, "test"))
            .load()
            .await;
        let settings = CloudSettings {
            retry_min_delay: Duration::from_millis(5),
            retry_max_delay: Duration::from_millis(20),
            max_attempts: 3,
            ..CloudSettings::default()
        };
        AwsAdapter::from_sdk_config(sdk, settings, catalog()).unwrap()
    }

    /// Raw HTTP/1.0 to the admin API.
    pub async fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.running.addr).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// A pool's stock from `/admin/state`.
    pub async fn stock(&self, key: &str) -> u64 {
        let (_, body) = self.http("GET", "/admin/state", "").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["key"] == key)
            .unwrap()["stock"]
            .as_u64()
            .unwrap()
    }
}

pub fn catalog() -> Arc<Catalog> {
    Arc::new(Catalog::embedded().unwrap())
}

/// The shared stack's Kafka and ClickHouse settings (environment overrides applied).
pub fn stack() -> (KafkaSettings, ClickHouseSettings) {
    let c = capsight_runtime::config::load::<Conf>(None).unwrap();
    (c.kafka, c.clickhouse)
}

/// A fresh, migrated database named after the test.
pub async fn fresh_db(test: &str) -> ClickHouseSettings {
    let ch = stack().1.with_database(&format!(
        "test_probe_{test}_{}",
        uuid::Uuid::new_v4().simple()
    ));
    migrate::apply(&ch)
        .await
        .expect("ClickHouse reachable (deploy/local/stack up)");
    ch
}

pub async fn drop_db(ch: &ClickHouseSettings) {
    ch.server_client()
        .query(&format!("DROP DATABASE IF EXISTS {}", ch.database))
        .execute()
        .await
        .unwrap();
}

/// Every audit row, oldest first.
pub async fn audit_rows(ch: &ClickHouseSettings) -> Vec<ProbeAuditRow> {
    ch.client()
        .unwrap()
        .query("SELECT ?fields FROM probe_audit ORDER BY at, at_ms, probe_id, phase DESC")
        .fetch_all::<ProbeAuditRow>()
        .await
        .unwrap()
}

/// A topic of its own on `kafka`.
pub async fn topic(kafka: &KafkaSettings, prefix: &str) -> String {
    let name = format!("test.{prefix}-{}", uuid::Uuid::new_v4().simple());
    admin::ensure_topics(kafka, &[TopicSpec::plain(name.clone(), 2)])
        .await
        .expect("broker reachable");
    name
}

/// Every signal on `topic` (reads until 5 s pass without a message).
pub async fn consume_all(kafka: &KafkaSettings, topic: &str) -> Vec<Signal> {
    let consumer: StreamConsumer = kafka
        .consumer_config("test", &format!("g-{}", uuid::Uuid::new_v4()))
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    while let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
        let s = codec::decode_signal(msg.payload().unwrap()).unwrap();
        assert_eq!(msg.key(), Some(s.key.partition_key().as_bytes()));
        out.push(s);
    }
    out
}

/// The `capsight-probe` binary, configured for `sim`, `topic` and `ch`, plus `extra` overrides.
pub fn probe_command(
    sim_url: &str,
    topic: &str,
    ch: &ClickHouseSettings,
    extra: &[(&str, &str)],
) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_capsight-probe"));
    c.env("AWS_ENDPOINT_URL", sim_url)
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_REGION", "us-east-1")
        .env("CAPSIGHT_KAFKA__TOPICS__SIGNALS", topic)
        .env("CAPSIGHT_CLICKHOUSE__DATABASE", &ch.database)
        .env("CAPSIGHT_CLOUD__MAX_ATTEMPTS", "1")
        .env("CAPSIGHT_PROBE__INSTANCE", "probe-test")
        .env("CAPSIGHT_PROBE__REGIONS", "[\"us-east-1\"]")
        .env("CAPSIGHT_PROBE__MAX_PER_PASS", "10")
        .env("CAPSIGHT_PROBE__MAX_CONCURRENT", "4")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        c.env(k, v);
    }
    c
}

/// Kills a child on drop.
pub struct Killer(pub Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` every 100 ms until it returns `Some` or `deadline` passes.
pub async fn poll<T, F, Fut>(deadline: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A private broker to kill and restart (the test kit's).
pub use capsight_testkit::broker::PrivateBroker;

/// Waits until the broker at `kafka` answers.
pub async fn wait_for_broker(kafka: &KafkaSettings) {
    let up = poll(Duration::from_secs(30), || async {
        admin::cluster_brokers(kafka).await.ok().map(|_| ())
    })
    .await;
    assert!(up.is_some(), "private broker did not come up");
}

/// Tags of a map, for assertions.
pub fn tag<'a>(tags: &'a BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    tags.get(k).map(String::as_str)
}
