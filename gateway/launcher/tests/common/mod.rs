//! The launcher test harness, on the real local stack (Kafka, ClickHouse, RabbitMQ from
//! `deploy/local/stack up`, addresses from the usual `CAPSIGHT_*` configuration): per test a
//! ClickHouse database, a RabbitMQ topology prefix, a signals topic, a tenant registry and an
//! in-process `cloudsim`. Jobs are submitted exactly as the gateway does it (its `Store` and
//! `JobPublisher`), and read back the way its GetLaunch does.

#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    dead_code,
    reason = "test helpers: a panic is a failed assertion"
)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::Credentials;
use capsight_catalog::Catalog;
use capsight_clickhouse::rows::{LaunchEventRow, LaunchRequestRow, ScoreRow, split_time};
use capsight_cloud::{CloudAdapter, CloudSettings, Instance, InstanceState, aws::AwsAdapter};
use capsight_cloudsim::{CloudsimSettings, scenario::Scenario};
use capsight_gateway::{clouds::AwsClouds, jobs::JobPublisher};
use capsight_kafka::{TopicSpec, admin};
use capsight_launcher::{LauncherConfig, store::Store};
use capsight_proto::{
    domain::{CapacityKey, Evidence, Feature, Label, LaunchState, Score},
    v1,
};
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::{CloudRole, Registry, TenantId};

pub const OPERATOR: &str = "AKIATESTOPERATOR";
pub const ROLE: &str = "arn:aws:iam::222222222222:role/capsight";
pub const EXTERNAL_ID: &str = "ext-acme";
/// Tenant with no GPU quota.
pub const ACME: &str = "acme";
/// Tenant with a GPU quota of 8 (one p5.48xlarge).
pub const CAPPED: &str = "capped";

/// A scenario: p5.48xlarge on-demand, no stock in use1-az1, stock in use1-az4 and use1-az6;
/// g5.xlarge on-demand, none in use1-az1, 4 in use1-az4;
/// `slow` is the pending -> running delay (simulated) of use1-az6.
pub fn scenario(slow: &str) -> Scenario {
    let mut scenario =
        Scenario::parse(&capsight_testkit::fixtures::scenario_text("launcher")).unwrap();
    let delay = humantime_serde::re::humantime::parse_duration(slow).unwrap();
    for pool in &mut scenario.pools {
        if pool.zone == "use1-az6" && pool.instance_type == "p5.48xlarge" {
            pool.provisioning = Some(delay);
        }
    }
    scenario
}

pub struct Harness {
    pub config: LauncherConfig,
    pub sim_url: String,
    pub sim_shutdown: Shutdown,
    pub dir: PathBuf,
    pub catalog: Arc<Catalog>,
    pub short: String,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.sim_shutdown.trigger();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn score(key: &str, value: u8) -> Score {
    Score {
        key: key.parse().unwrap(),
        score: value,
        label: Label::for_score(value),
        confidence: 0.8,
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

/// Polls `f` every 200 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Harness {
    /// Config, database, topology names, signals topic, registry and cloudsim.
    pub async fn start(slow_provisioning: &str) -> Self {
        let mut config: LauncherConfig = capsight_runtime::config::load(None).unwrap();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let short = id[..12].to_owned();
        config.kafka.topics.signals = format!("test.launcher.{short}.signals");
        admin::ensure_topics(
            &config.kafka,
            &[TopicSpec::plain(config.kafka.topics.signals.clone(), 1)],
        )
        .await
        .expect("Kafka reachable (run deploy/local/stack up)");
        config.clickhouse = config
            .clickhouse
            .with_database(&format!("capsight_test_launcher_{short}"));
        capsight_clickhouse::migrate::apply(&config.clickhouse)
            .await
            .expect("ClickHouse reachable (run deploy/local/stack up)");
        config.amqp.launch = config
            .amqp
            .launch
            .prefixed(&format!("test.launcher.{short}"));
        config.amqp.launch.retry_delay = Duration::from_millis(500);

        let dir = std::env::temp_dir().join(format!("capsight-launcher-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let registry_path = dir.join("tenants.toml");
        let mut reg = Registry::default();
        for (name, quota) in [(ACME, None), (CAPPED, Some(8))] {
            let tid = TenantId::parse(name).unwrap();
            reg.add_tenant(tid.clone(), name).unwrap();
            reg.set_aws_role(
                &tid,
                Some(CloudRole {
                    role_arn: ROLE.into(),
                    external_id: EXTERNAL_ID.into(),
                }),
            )
            .unwrap();
            reg.set_gpu_quota(&tid, quota).unwrap();
        }
        reg.save(&registry_path).unwrap();
        config.tenancy.registry = registry_path;
        config.launcher.poll_interval = Duration::from_millis(200);
        config.launcher.cancel_sweep_interval = Duration::from_millis(500);
        config.launcher.reconnect_delay = Duration::from_millis(500);
        config.launcher.cloud_timeout = Duration::from_secs(20);
        // several launchers run at once: any free port for their health endpoints
        config.launcher.health_listen = "127.0.0.1:0".parse().unwrap();
        config.cloud.max_attempts = 2;
        config.cloud.retry_min_delay = Duration::from_millis(5);
        config.cloud.retry_max_delay = Duration::from_millis(20);

        let sim_shutdown = Shutdown::new();
        let sim_settings = CloudsimSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            time_scale: 60.0,
            tick: Duration::from_millis(50),
            ..CloudsimSettings::default()
        };
        let sim = capsight_cloudsim::start(
            &sim_settings,
            scenario(slow_provisioning),
            None,
            sim_shutdown.clone(),
        )
        .await
        .unwrap();
        let sim_url = sim.url();
        drop(sim);
        Self {
            config,
            sim_url,
            sim_shutdown,
            dir,
            catalog: Arc::new(Catalog::embedded().unwrap()),
            short,
        }
    }

    /// Tenant clouds pointed at this test's cloudsim.
    pub fn clouds(&self) -> Arc<AwsClouds> {
        let url = self.sim_url.clone();
        let catalog = Arc::clone(&self.catalog);
        let cloud = self.config.cloud.clone();
        Arc::new(AwsClouds::with_base(Arc::new(
            move |region: capsight_cloud::Region| {
                let url = url.clone();
                let catalog = Arc::clone(&catalog);
                let settings = CloudSettings {
                    region: region.as_str().to_owned(),
                    ..cloud.clone()
                };
                Box::pin(async move {
                    let sdk = aws_config::defaults(BehaviorVersion::latest())
                        .endpoint_url(url)
                        .region(aws_config::Region::new(region.as_str().to_owned()))
                        .credentials_provider(Credentials::new(
                            OPERATOR, "secret", None, None, "test",
                        ))
                        .load()
                        .await;
                    AwsAdapter::from_sdk_config(sdk, settings, catalog)
                })
            },
        )))
    }

    /// The tenant account's adapter (what the launcher acts as).
    pub async fn tenant_adapter(&self) -> Arc<dyn CloudAdapter> {
        use capsight_gateway::clouds::TenantClouds;
        let reg = Registry::load(&self.config.tenancy.registry).unwrap();
        let tenant = reg.tenant(&TenantId::parse(ACME).unwrap()).unwrap().clone();
        self.clouds()
            .adapter(
                &tenant,
                &capsight_cloud::Region::parse("r", capsight_cloud::Provider::Aws, "us-east-1")
                    .unwrap(),
            )
            .await
            .unwrap()
    }

    /// The job's instances in the tenant's account (by the launcher's job tag), not terminated.
    pub async fn instances_of(&self, job_id: &str) -> Vec<Instance> {
        self.tenant_adapter()
            .await
            .describe(&[])
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.tags.get("capsight:job").map(String::as_str) == Some(job_id))
            .filter(|i| {
                !matches!(
                    i.state,
                    InstanceState::Terminated | InstanceState::ShuttingDown
                )
            })
            .collect()
    }

    /// Starts the launcher in this process.
    pub fn spawn_launcher(&self) -> (Shutdown, tokio::task::JoinHandle<()>) {
        let shutdown = Shutdown::new();
        let config = self.config.clone();
        let catalog = Arc::clone(&self.catalog);
        let clouds = self.clouds();
        let s = shutdown.clone();
        let handle = tokio::spawn(async move {
            capsight_launcher::run(config, catalog, clouds, s)
                .await
                .unwrap();
        });
        (shutdown, handle)
    }

    pub fn store(&self) -> Store {
        Store::new(self.config.clickhouse.client().unwrap())
    }

    /// Writes `scores` to this test's ClickHouse `scores` table.
    pub async fn put_scores(&self, scores: &[Score]) {
        let client = self.config.clickhouse.client().unwrap();
        let mut insert = client.insert::<ScoreRow>("scores").await.unwrap();
        for s in scores {
            insert.write(&ScoreRow::new(s)).await.unwrap();
        }
        insert.end().await.unwrap();
    }

    /// A job as the gateway builds it.
    pub fn job(&self, tenant: &str, key: &str, count: u32, max_fallbacks: u32) -> v1::LaunchJob {
        let key: CapacityKey = key.parse().unwrap();
        v1::LaunchJob {
            job_id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.into(),
            tenant_hash: format!("hash-{tenant}"),
            created_at: None,
            spec: Some(v1::LaunchSpec {
                key: Some(v1::CapacityKey::from(&key)),
                count,
                image_id: "ami-0123456789abcdef0".into(),
                subnet_id: String::new(),
                spot_max_price: 0.0,
            }),
            constraints: Some(v1::Constraints {
                allowed_regions: vec!["us-east-1".into()],
                ..Default::default()
            }),
            max_fallbacks,
            warm_standby: false,
            max_lifetime_seconds: 0,
            idle_ttl_seconds: 0,
            preflight_decision: 0,
        }
    }

    /// Records the job (request + `queued`, seq 0) and publishes it, as the gateway's Launch.
    pub async fn submit(&self, job: &v1::LaunchJob) {
        let spec = job.spec.clone().unwrap();
        let key = CapacityKey::try_from(spec.key.clone().unwrap()).unwrap();
        let (created_at, created_ms) = split_time(chrono::Utc::now());
        let request = LaunchRequestRow {
            job_id: job.job_id.clone(),
            tenant: job.tenant.clone(),
            created_at,
            created_ms,
            provider: key.provider.as_str().into(),
            region: key.region.as_str().into(),
            zone_id: key.zone_str().into(),
            instance_type: key.instance_type.as_str().into(),
            market: key.market.as_str().into(),
            count: spec.count,
            image_id: spec.image_id.clone(),
            subnet_id: String::new(),
            spot_max_price: 0.0,
            warm_standby: 0,
            max_lifetime_secs: 0,
            idle_ttl_secs: 0,
            max_fallbacks: job.max_fallbacks,
        };
        let queued = LaunchEventRow {
            job_id: job.job_id.clone(),
            seq: 0,
            tenant: job.tenant.clone(),
            at: created_at,
            at_ms: created_ms,
            state: LaunchState::Queued,
            provider: request.provider.clone(),
            region: request.region.clone(),
            zone_id: request.zone_id.clone(),
            instance_type: request.instance_type.clone(),
            market: request.market.clone(),
            instance_id: String::new(),
            attempt: 0,
            error_class: String::new(),
            error_code: String::new(),
            detail: "accepted by the gateway".into(),
        };
        self.store().record_launch(&request, &queued).await.unwrap();
        self.publish_raw(job).await;
    }

    /// Publishes a job without recording it.
    pub async fn publish_raw(&self, job: &v1::LaunchJob) {
        JobPublisher::new(self.config.amqp.clone(), Duration::from_secs(10))
            .publish(job)
            .await
            .unwrap();
    }

    /// The job's transitions as the gateway's GetLaunch reads them.
    pub async fn events(&self, tenant: &str, job_id: &str) -> Vec<LaunchEventRow> {
        self.store()
            .launch(tenant, job_id)
            .await
            .unwrap()
            .map(|l| l.events)
            .unwrap_or_default()
    }

    /// Waits until the job's latest state is `state`; returns all transitions.
    pub async fn wait_state(
        &self,
        tenant: &str,
        job_id: &str,
        state: &str,
        limit: Duration,
    ) -> Vec<LaunchEventRow> {
        eventually(limit, &format!("job {job_id} in state {state}"), || async {
            let events = self.events(tenant, job_id).await;
            (events.last().map(|e| e.state.as_str()) == Some(state)).then_some(events)
        })
        .await
    }

    /// Messages ready in `queue` (passive declare).
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let conn = self.config.amqp.connect().await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        let q = ch
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap();
        let _ = conn.close(200, "bye".into()).await;
        q.message_count()
    }

    /// Drops the test database and topology.
    pub async fn cleanup(&self) {
        let db = &self.config.clickhouse.database;
        self.config
            .clickhouse
            .server_client()
            .query(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute()
            .await
            .unwrap();
        if let Ok(conn) = self.config.amqp.connect().await {
            let ch = conn.create_channel().await.unwrap();
            let _ = self.config.amqp.launch.delete(&ch).await;
        }
    }

    /// A config file for the launcher binary with this test's names; `extra` is appended.
    pub fn write_config(&self, extra: &str) -> PathBuf {
        let c = &self.config;
        let t = &c.amqp.launch;
        let text = format!(
            r#"
[kafka.topics]
signals = "{signals}"

[clickhouse]
database = "{db}"

[amqp]
url = "{amqp}"

[amqp.launch]
exchange = "{exchange}"
jobs_queue = "{jobs}"
dead_letter_exchange = "{dlx}"
dead_letter_queue = "{dead}"
retry_queue = "{retry}"
retry_delay = "500ms"

[tenancy]
registry = "{registry}"

[cloud]
max_attempts = 2
retry_min_delay = "5ms"
retry_max_delay = "20ms"

[launcher]
poll_interval = "200ms"
cancel_sweep_interval = "500ms"
reconnect_delay = "500ms"
cloud_timeout = "20s"
health_listen = "127.0.0.1:0"
{extra}
"#,
            signals = c.kafka.topics.signals,
            db = c.clickhouse.database,
            amqp = secrecy::ExposeSecret::expose_secret(&c.amqp.url),
            exchange = t.exchange,
            jobs = t.jobs_queue,
            dlx = t.dead_letter_exchange,
            dead = t.dead_letter_queue,
            retry = t.retry_queue,
            registry = c.tenancy.registry.display(),
        );
        let path = self
            .dir
            .join(format!("launcher-{}.toml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts the `capsight-launcher` binary with `config`; `env` adds variables.
    pub fn spawn_binary(&self, config: &Path, env: &[(&str, &str)], log: &str) -> Child {
        let log = std::fs::File::create(self.dir.join(log)).unwrap();
        let mut cmd = Command::new(bin("capsight-launcher"));
        cmd.arg("--config")
            .arg(config)
            .env("AWS_ENDPOINT_URL", &self.sim_url)
            .env("AWS_ACCESS_KEY_ID", OPERATOR)
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_REGION", "us-east-1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    }
}

/// A binary of this workspace, next to the test binary (`cargo build -p capsight-launcher
/// --bins` first).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} missing: run cargo build -p capsight-launcher --bins",
        path.display()
    );
    path
}
