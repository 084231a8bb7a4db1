//! The test harness: one gateway per test on the real local stack (Kafka, ClickHouse, RabbitMQ
//! from `deploy/local/stack up`, addresses from the usual `CAPSIGHT_*` configuration), with a
//! per-test scores topic, signals topic, ClickHouse database, RabbitMQ topology and tenant
//! registry, and its own in-process `cloudsim` for the tenants' accounts. A service that is down
//! fails the test; nothing is skipped.

#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    dead_code,
    reason = "test helpers: a panic is a failed assertion"
)]

use std::{sync::Arc, time::Duration};

use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::Credentials;
use capsight_catalog::Catalog;
use capsight_cloud::{CloudSettings, aws::AwsAdapter};
use capsight_cloudsim::{CloudsimSettings, scenario::Scenario};
use capsight_gateway::{GatewayConfig, Running, clouds::AwsClouds};
use capsight_kafka::{TopicSpec, admin};
use capsight_proto::{
    codec,
    domain::{Evidence, Feature, Label, Score},
    v1::{
        launch_service_client::LaunchServiceClient,
        preflight_service_client::PreflightServiceClient,
        report_service_client::ReportServiceClient, score_service_client::ScoreServiceClient,
    },
};
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::{CloudRole, Registry, TenantId};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tonic::{Request, transport::Channel};

pub const OPERATOR: &str = "AKIATESTOPERATOR";
/// Tenant `acme`'s role: may launch; quota for one p5.48xlarge (192 vCPUs).
pub const ROLE_OK: &str = "arn:aws:iam::222222222222:role/capsight";
/// Tenant `readonly`'s role: may describe but not launch.
pub const ROLE_RO: &str = "arn:aws:iam::333333333333:role/capsight";

pub fn scenario() -> String {
    capsight_testkit::fixtures::scenario_text("gateway")
}

#[derive(Debug, serde::Deserialize)]
struct StackConf {
    telemetry: capsight_runtime::telemetry::TelemetrySettings,
    kafka: capsight_kafka::KafkaSettings,
    publisher: capsight_publisher::PublisherSettings,
    clickhouse: capsight_clickhouse::ClickHouseSettings,
    amqp: capsight_amqp::AmqpSettings,
    tenancy: capsight_tenancy::TenancySettings,
    cloud: CloudSettings,
    gateway: capsight_gateway::GatewaySettings,
}

/// API keys of the test tenants.
#[derive(Debug, Clone)]
pub struct Keys {
    /// acme: role ROLE_OK.
    pub acme: String,
    /// globex: no role registered.
    pub globex: String,
    /// readonly: role ROLE_RO (may not launch).
    pub readonly: String,
    /// flood: 5 requests per minute.
    pub flood: String,
}

pub struct Harness {
    pub config: GatewayConfig,
    pub running: Option<Running>,
    pub shutdown: Shutdown,
    pub sim_shutdown: Shutdown,
    pub keys: Keys,
    pub channel: Channel,
    pub producer: FutureProducer,
    pub dir: std::path::PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.trigger();
        self.sim_shutdown.trigger();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn score(key: &str, value: u8, confidence: f64) -> Score {
    Score {
        key: key.parse().unwrap(),
        score: value,
        label: Label::for_score(value),
        confidence,
        evidence: vec![Evidence {
            feature: Feature::LaunchSuccessRate,
            value: f64::from(value) / 100.0,
            contribution: f64::from(value) * 0.4,
            samples: 12,
        }],
        window: Duration::from_secs(86_400),
        updated_at: chrono::Utc::now(),
        signal_count: 12,
    }
}

pub fn authed<T>(msg: T, key: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

impl Harness {
    /// A harness whose scores topic exists (with `initial` scores) before the gateway starts.
    pub async fn start(initial: &[Score]) -> Self {
        let h = Self::prepare(true).await;
        for s in initial {
            h.publish_score(s).await;
        }
        h.launch_gateway().await
    }

    /// Config, topics, database, registry and cloudsim, but no gateway yet.
    pub async fn prepare(create_scores_topic: bool) -> Self {
        let mut conf: StackConf = capsight_runtime::config::load(None).unwrap();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let short = &id[..12];
        conf.kafka.topics.scores = format!("test.gw.{short}.scores");
        conf.kafka.topics.signals = format!("test.gw.{short}.signals");
        conf.kafka.topics.signals_dlq = format!("test.gw.{short}.dlq");
        let mut specs = vec![TopicSpec::plain(conf.kafka.topics.signals.clone(), 1)];
        if create_scores_topic {
            specs.push(scores_topic(&conf.kafka.topics.scores));
        }
        admin::ensure_topics(&conf.kafka, &specs)
            .await
            .expect("Kafka reachable (run deploy/local/stack up)");
        conf.clickhouse = conf
            .clickhouse
            .with_database(&format!("capsight_test_gw_{short}"));
        capsight_clickhouse::migrate::apply(&conf.clickhouse)
            .await
            .expect("ClickHouse reachable (run deploy/local/stack up)");
        conf.amqp.launch = conf.amqp.launch.prefixed(&format!("test.gw.{short}"));

        let dir = std::env::temp_dir().join(format!("capsight-gw-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let registry_path = dir.join("tenants.toml");
        let mut reg = Registry::default();
        let mut issue = |name: &str, role: Option<(&str, &str)>, rate: Option<u32>| {
            let tid = TenantId::parse(name).unwrap();
            reg.add_tenant(tid.clone(), name).unwrap();
            reg.set_aws_role(
                &tid,
                role.map(|(arn, ext)| CloudRole {
                    role_arn: arn.into(),
                    external_id: ext.into(),
                }),
            )
            .unwrap();
            if let Some(t) = reg.tenants.iter_mut().find(|t| t.id == tid) {
                t.rate_per_minute = rate;
                t.zone_map.insert("us-east-1b".into(), "use1-az4".into());
            }
            reg.issue_key(&tid).unwrap().key
        };
        let keys = Keys {
            acme: issue("acme", Some((ROLE_OK, "ext-acme")), None),
            globex: issue("globex", None, None),
            readonly: issue("readonly", Some((ROLE_RO, "ext-ro")), None),
            flood: issue("flood", None, Some(5)),
        };
        reg.save(&registry_path).unwrap();
        conf.tenancy.registry = registry_path;
        conf.tenancy.default_rate_per_minute = 100_000;
        conf.gateway.listen = "127.0.0.1:0".parse().unwrap();
        conf.gateway.watch_poll_interval = Duration::from_millis(200);
        conf.gateway.registry_recheck = Duration::from_millis(200);

        let producer: FutureProducer = conf.kafka.producer_config("test").create().unwrap();
        let config = GatewayConfig {
            telemetry: conf.telemetry,
            kafka: conf.kafka,
            publisher: conf.publisher,
            clickhouse: conf.clickhouse,
            amqp: conf.amqp,
            tenancy: conf.tenancy,
            cloud: conf.cloud,
            gateway: conf.gateway,
        };
        Self {
            config,
            running: None,
            shutdown: Shutdown::new(),
            sim_shutdown: Shutdown::new(),
            keys,
            // replaced by launch_gateway
            channel: Channel::from_static("http://127.0.0.1:1").connect_lazy(),
            producer,
            dir,
        }
    }

    pub async fn create_scores_topic(&self) {
        admin::ensure_topics(
            &self.config.kafka,
            &[scores_topic(&self.config.kafka.topics.scores)],
        )
        .await
        .unwrap();
    }

    /// Starts cloudsim and the gateway.
    pub async fn launch_gateway(mut self) -> Self {
        let sim_settings = CloudsimSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            time_scale: 0.0,
            tick: Duration::from_millis(50),
            ..CloudsimSettings::default()
        };
        let sim = capsight_cloudsim::start(
            &sim_settings,
            Scenario::parse(&scenario()).unwrap(),
            None,
            self.sim_shutdown.clone(),
        )
        .await
        .unwrap();
        let url = sim.url();
        let catalog = Arc::new(Catalog::embedded().unwrap());
        let clouds = AwsClouds::with_base(Arc::new(move |region: capsight_cloud::Region| {
            let url = url.clone();
            let catalog = Arc::clone(&catalog);
            Box::pin(async move {
                let sdk = aws_config::defaults(BehaviorVersion::latest())
                    .endpoint_url(url)
                    .region(aws_config::Region::new(region.as_str().to_owned()))
                    .credentials_provider(Credentials::new(OPERATOR, "secret", None, None, "test"))
                    .load()
                    .await;
                let settings = CloudSettings {
                    max_attempts: 2,
                    retry_min_delay: Duration::from_millis(5),
                    retry_max_delay: Duration::from_millis(20),
                    ..CloudSettings::default()
                };
                AwsAdapter::from_sdk_config(sdk, settings, catalog)
            })
        }));
        let running =
            capsight_gateway::start(self.config.clone(), Arc::new(clouds), self.shutdown.clone())
                .await
                .unwrap();
        self.channel = Channel::from_shared(format!("http://{}", running.addr))
            .unwrap()
            .connect_lazy();
        self.running = Some(running);
        drop(sim); // detaches; the sim stops with sim_shutdown
        self
    }

    pub async fn wait_ready(&self) {
        let view = &self.running.as_ref().unwrap().view;
        tokio::time::timeout(Duration::from_secs(30), view.wait_ready())
            .await
            .expect("scores view ready within 30 s");
    }

    pub async fn publish_score(&self, s: &Score) {
        let key = s.key.to_string();
        self.producer
            .send(
                FutureRecord::to(&self.config.kafka.topics.scores)
                    .key(&key)
                    .payload(&codec::encode_score(s)),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    pub fn scores(&self) -> ScoreServiceClient<Channel> {
        ScoreServiceClient::new(self.channel.clone())
    }

    pub fn preflight(&self) -> PreflightServiceClient<Channel> {
        PreflightServiceClient::new(self.channel.clone())
    }

    pub fn launch(&self) -> LaunchServiceClient<Channel> {
        LaunchServiceClient::new(self.channel.clone())
    }

    pub fn report(&self) -> ReportServiceClient<Channel> {
        ReportServiceClient::new(self.channel.clone())
    }

    pub fn clickhouse(&self) -> clickhouse::Client {
        self.config.clickhouse.client().unwrap()
    }

    /// Drops the test database and topology (the topics are left to the broker's retention).
    pub async fn cleanup(&self) {
        let db = &self.config.clickhouse.database;
        self.config
            .clickhouse
            .server_client()
            .query(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute()
            .await
            .unwrap();
        let conn = self.config.amqp.connect().await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        let _ = self.config.amqp.launch.delete(&ch).await;
    }
}

fn scores_topic(name: &str) -> TopicSpec {
    TopicSpec {
        name: name.to_owned(),
        partitions: 2,
        replication: 1,
        configs: vec![("cleanup.policy".into(), "compact".into())],
    }
}
