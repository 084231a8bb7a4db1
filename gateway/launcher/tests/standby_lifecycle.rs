//! Warm standby, lifecycle reaper and GPU-hours on the real local stack:
//! ClickHouse 18.16, Kafka, an in-process `cloudsim` whose webhook feeds an in-process reports
//! intake, and (for heartbeats) an in-process gateway. Each test has its own ClickHouse
//! database, Kafka topics, consumer group, RabbitMQ names, tenant registry and cloudsim.
//! Running launches are set up by launching instances in cloudsim and writing the
//! `launch_requests` / `launch_events` rows the gateway and worker would have written.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "a panic in a test is a failed assertion"
)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::Credentials;
use capsight_catalog::Catalog;
use capsight_clickhouse::rows::{LaunchEventRow, LaunchRequestRow, split_time};
use capsight_cloud::{
    CloudAdapter, CloudSettings, InstanceId, InstanceState, InstanceType, LaunchRequest, Market,
    Provider, Region, ZoneId, aws::AwsAdapter,
};
use capsight_cloudsim::{CloudsimSettings, scenario::Scenario};
use capsight_gateway::clouds::{AwsClouds, TenantClouds};
use capsight_kafka::{TopicSpec, admin};
use capsight_launcher::{
    LauncherConfig,
    lifecycle::{LifecycleSettings, Reaper},
    standby::{Standby, StandbySettings},
    store::{Store, follow_up},
    usage,
};
use capsight_proto::domain::LaunchState;
use capsight_proto::v1::{self, launch_service_client::LaunchServiceClient};
use capsight_publisher::{Publisher, PublisherSettings};
use capsight_reports::{launched::LaunchedInstances, server::AppState};
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::{CloudRole, Registry, SharedRegistry, TenantHasher, TenantId};
use chrono::Datelike;
use tonic::{Code, Request};

const OPERATOR: &str = "AKIATESTOPERATOR";
const ROLE: &str = "arn:aws:iam::222222222222:role/capsight";

fn scenario() -> String {
    capsight_testkit::fixtures::scenario_text("standby")
}

/// Simulated seconds per real second: provisioning 10 s -> 1 s, stop 20 s -> 2 s, rebalance
/// lead 30 s -> 3 s.
const TIME_SCALE: f64 = 10.0;

struct Env {
    config: LauncherConfig,
    store: Store,
    registry: SharedRegistry,
    clouds: Arc<dyn TenantClouds>,
    adapter: Arc<dyn CloudAdapter>,
    sim_url: String,
    acme_key: String,
    registry_path: std::path::PathBuf,
    short: String,
    shutdown: Shutdown,
    http: reqwest::Client,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

impl Env {
    async fn new() -> Self {
        let mut config: LauncherConfig = capsight_runtime::config::load(None).unwrap();
        let short = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        config.kafka.topics.signals = format!("test.l2.{short}.signals");
        config.kafka.topics.scores = format!("test.l2.{short}.scores");
        config.kafka.topics.signals_dlq = format!("test.l2.{short}.dlq");
        admin::ensure_topics(
            &config.kafka,
            &[
                TopicSpec::plain(config.kafka.topics.signals.clone(), 1),
                TopicSpec {
                    name: config.kafka.topics.scores.clone(),
                    partitions: 1,
                    replication: 1,
                    configs: vec![("cleanup.policy".into(), "compact".into())],
                },
            ],
        )
        .await
        .expect("Kafka reachable (deploy/local/stack up)");
        config.clickhouse = config
            .clickhouse
            .with_database(&format!("capsight_test_l2_{short}"));
        capsight_clickhouse::migrate::apply(&config.clickhouse)
            .await
            .expect("ClickHouse reachable (deploy/local/stack up)");
        config.amqp.launch = config.amqp.launch.prefixed(&format!("test.l2.{short}"));

        let dir = std::env::temp_dir().join(format!("capsight-l2-{short}"));
        std::fs::create_dir_all(&dir).unwrap();
        let registry_path = dir.join("tenants.toml");
        let mut reg = Registry::default();
        let acme = TenantId::parse("acme").unwrap();
        reg.add_tenant(acme.clone(), "Acme").unwrap();
        reg.set_aws_role(
            &acme,
            Some(CloudRole {
                role_arn: ROLE.into(),
                external_id: "ext-acme".into(),
            }),
        )
        .unwrap();
        let acme_key = reg.issue_key(&acme).unwrap().key;
        let globex = TenantId::parse("globex").unwrap();
        reg.add_tenant(globex, "Globex").unwrap();
        reg.save(&registry_path).unwrap();
        config.tenancy.registry = registry_path.clone();
        config.tenancy.default_rate_per_minute = 100_000;
        let registry = SharedRegistry::open(registry_path.clone(), Duration::from_secs(1)).unwrap();
        let shutdown = Shutdown::new();

        // the reports intake (with the launched-instances lookup), fed by cloudsim's webhook
        let publisher =
            Publisher::new(&config.kafka, &PublisherSettings::default(), "test").unwrap();
        let mut reports: capsight_reports::ReportsSettings = {
            #[derive(serde::Deserialize)]
            struct R {
                reports: capsight_reports::ReportsSettings,
            }
            capsight_runtime::config::load::<R>(None).unwrap().reports
        };
        reports.listen = "127.0.0.1:0".parse().unwrap();
        let state = Arc::new(
            AppState::new(
                publisher.clone(),
                SharedRegistry::open(registry_path.clone(), Duration::from_secs(1)).unwrap(),
                TenantHasher::new(&config.tenancy.hash_secret),
                reports,
                100_000,
            )
            .with_launched(LaunchedInstances::new(config.clickhouse.client().unwrap())),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let intake = format!("http://{}/v1/events", listener.local_addr().unwrap());
        tokio::spawn(capsight_reports::run(
            state,
            listener,
            publisher,
            shutdown.clone(),
        ));

        let sim = capsight_cloudsim::start(
            &CloudsimSettings {
                listen: "127.0.0.1:0".parse().unwrap(),
                time_scale: TIME_SCALE,
                tick: Duration::from_millis(50),
                webhook_url: intake,
                webhook_api_key: acme_key.clone(),
                ..CloudsimSettings::default()
            },
            Scenario::parse(&scenario()).unwrap(),
            None,
            shutdown.clone(),
        )
        .await
        .unwrap();
        let sim_url = sim.url();
        let url = sim_url.clone();
        let catalog = Arc::new(Catalog::embedded().unwrap());
        let clouds: Arc<dyn TenantClouds> =
            Arc::new(AwsClouds::with_base(Arc::new(move |region: Region| {
                let url = url.clone();
                let catalog = Arc::clone(&catalog);
                Box::pin(async move {
                    let sdk = aws_config::defaults(BehaviorVersion::latest())
                        .endpoint_url(url)
                        .region(aws_config::Region::new(region.as_str().to_owned()))
                        .credentials_provider(Credentials::new(
                            OPERATOR, "secret", None, None, "test",
                        ))
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
            })));
        let tenant = registry.tenant(&acme).unwrap();
        let adapter = clouds
            .adapter(
                &tenant,
                &Region::parse("r", Provider::Aws, "us-east-1").unwrap(),
            )
            .await
            .unwrap();
        let store = Store::new(config.clickhouse.client().unwrap());
        Self {
            config,
            store,
            registry,
            clouds,
            adapter,
            sim_url,
            acme_key,
            registry_path,
            short,
            shutdown,
            http: reqwest::Client::new(),
        }
    }

    fn client(&self) -> clickhouse::Client {
        self.config.clickhouse.client().unwrap()
    }

    async fn drop_database(&self) {
        let db = &self.config.clickhouse.database;
        self.config
            .clickhouse
            .server_client()
            .query(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute()
            .await
            .unwrap();
        let _ = std::fs::remove_dir_all(self.registry_path.parent().unwrap());
    }

    /// Launches one g5.xlarge in use1-az1 with `token` and waits until it runs.
    async fn run_instance(&self, token: &str, market: Market) -> String {
        let req = LaunchRequest::new(
            InstanceType::parse("t", Provider::Aws, "g5.xlarge").unwrap(),
            ZoneId::parse_optional(
                "z",
                Provider::Aws,
                &Region::parse("r", Provider::Aws, "us-east-1").unwrap(),
                "use1-az1",
            )
            .unwrap(),
            "ami-test",
            token,
        )
        .market(market);
        let id = self.adapter.launch(&req).await.unwrap()[0]
            .id
            .as_str()
            .to_owned();
        self.wait_state(&id, &[InstanceState::Running], Duration::from_secs(30))
            .await;
        id
    }

    async fn state_of(&self, id: &str) -> InstanceState {
        self.adapter
            .describe(&[InstanceId::new(id).unwrap()])
            .await
            .unwrap()
            .into_iter()
            .next()
            .map_or(InstanceState::Other("gone".into()), |i| i.state)
    }

    async fn wait_state(&self, id: &str, want: &[InstanceState], within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let s = self.state_of(id).await;
            if want.contains(&s) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "{id} still {s:?} after {within:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Writes the request and queued -> provisioning -> running rows of a running launch
    /// (running `running_for` ago).
    async fn record_running(
        &self,
        job_id: &str,
        instance: &str,
        market: Market,
        running_for: Duration,
        limits: (u64, u64),
        warm_standby: bool,
    ) {
        let now = chrono::Utc::now();
        let at = |back: Duration| split_time(now - chrono::Duration::from_std(back).unwrap());
        let (created, created_ms) = at(running_for + Duration::from_secs(5));
        let mut insert = self
            .client()
            .insert::<LaunchRequestRow>("launch_requests")
            .await
            .unwrap();
        insert
            .write(&LaunchRequestRow {
                job_id: job_id.into(),
                tenant: "acme".into(),
                created_at: created,
                created_ms,
                provider: "aws".into(),
                region: "us-east-1".into(),
                zone_id: "use1-az1".into(),
                instance_type: "g5.xlarge".into(),
                market: market.as_str().into(),
                count: 1,
                image_id: "ami-test".into(),
                subnet_id: String::new(),
                spot_max_price: 0.0,
                warm_standby: u8::from(warm_standby),
                max_lifetime_secs: limits.0,
                idle_ttl_secs: limits.1,
                max_fallbacks: 0,
            })
            .await
            .unwrap();
        insert.end().await.unwrap();
        let states = [
            ("queued", running_for + Duration::from_secs(5), ""),
            (
                "provisioning",
                running_for + Duration::from_secs(2),
                instance,
            ),
            ("running", running_for, instance),
        ];
        for (seq, (state, back, ids)) in states.into_iter().enumerate() {
            let (t, ms) = at(back);
            self.store
                .append(&LaunchEventRow {
                    job_id: job_id.into(),
                    seq: u32::try_from(seq).unwrap(),
                    tenant: "acme".into(),
                    at: t,
                    at_ms: ms,
                    state: LaunchState::parse("state", state).unwrap(),
                    provider: "aws".into(),
                    region: "us-east-1".into(),
                    zone_id: "use1-az1".into(),
                    instance_type: "g5.xlarge".into(),
                    market: market.as_str().into(),
                    instance_id: ids.into(),
                    attempt: 1,
                    error_class: String::new(),
                    error_code: String::new(),
                    detail: state.into(),
                })
                .await
                .unwrap();
        }
    }

    async fn events(&self, job_id: &str) -> Vec<LaunchEventRow> {
        self.store.events("acme", job_id, None).await.unwrap()
    }

    /// Polls the job's transitions until one satisfies `pred`.
    async fn wait_event(
        &self,
        job_id: &str,
        within: Duration,
        pred: impl Fn(&LaunchEventRow) -> bool,
    ) -> LaunchEventRow {
        let start = Instant::now();
        loop {
            let events = self.events(job_id).await;
            if let Some(e) = events.iter().find(|e| pred(e)) {
                return e.clone();
            }
            assert!(
                start.elapsed() < within,
                "no matching transition of {job_id} within {within:?}: {events:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn job() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn interruption_starts_the_standby_and_a_replacement_ends_it_after_the_cooldown() {
    let env = Env::new().await;
    let job_id = job();
    let spot = env.run_instance(&job_id, Market::Spot).await;
    env.record_running(&job_id, &spot, Market::Spot, Duration::ZERO, (0, 0), true)
        .await;
    // an on-demand job without a standby is left alone
    let plain = job();
    let plain_id = env.run_instance(&plain, Market::OnDemand).await;
    env.record_running(
        &plain,
        &plain_id,
        Market::OnDemand,
        Duration::ZERO,
        (0, 0),
        false,
    )
    .await;

    let cooldown = Duration::from_secs(4);
    let settings = StandbySettings {
        cooldown,
        interval: Duration::from_millis(200),
        consumer_group: format!("test.l2.{}.standby", env.short),
    };
    let first = Shutdown::new();
    let manager = Standby::new(
        env.store.clone(),
        Arc::clone(&env.clouds),
        env.registry.clone(),
        settings.clone(),
    );
    let task = tokio::spawn(manager.run(env.config.kafka.clone(), first.clone()));

    // 1. the stopped on-demand clone
    let ready = env
        .wait_event(&job_id, Duration::from_secs(60), |e| {
            e.detail.starts_with("standby ready")
        })
        .await;
    assert_eq!(ready.state, LaunchState::Running);
    assert_eq!(ready.instance_id, spot, "the spot instance still serves");
    let standby_id = ready
        .detail
        .split_whitespace()
        .find_map(|w| w.strip_prefix("standby="))
        .unwrap()
        .to_owned();
    assert_ne!(standby_id, spot);
    env.wait_state(
        &standby_id,
        &[InstanceState::Stopped],
        Duration::from_secs(30),
    )
    .await;
    let standby = env
        .adapter
        .describe(&[InstanceId::new(&standby_id).unwrap()])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(standby.market, Market::OnDemand);
    assert_eq!(standby.instance_type, "g5.xlarge");
    assert_eq!(
        standby.client_token.as_deref(),
        Some(format!("{job_id}-standby").as_str())
    );
    assert!(
        env.events(&plain)
            .await
            .iter()
            .all(|e| !e.detail.starts_with("standby")),
        "a job without warm_standby gets no standby"
    );

    // 2. interrupt the spot instance: cloudsim -> webhook -> reports intake -> Kafka -> launcher
    let t0 = Instant::now();
    let resp = env
        .http
        .post(format!("{}/admin/interrupt", env.sim_url))
        .json(&serde_json::json!({ "instance_id": spot }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let active = env
        .wait_event(&job_id, Duration::from_secs(30), |e| {
            e.detail.starts_with("standby active")
        })
        .await;
    let recorded = t0.elapsed();
    let to_running = env
        .wait_state(
            &standby_id,
            &[InstanceState::Running],
            Duration::from_secs(30),
        )
        .await
        + recorded;
    println!(
        "MEASURED: interruption (rebalance recommendation) -> standby started and recorded in {} ms; \
         -> standby running in {} ms (cloudsim provisioning 10 s simulated at time scale {TIME_SCALE}); \
         detail: {}",
        recorded.as_millis(),
        to_running.as_millis(),
        active.detail
    );
    assert_eq!(active.state, LaunchState::Running);
    assert_eq!(active.instance_id, standby_id, "the standby serves");
    assert_eq!(active.market, "on_demand");
    assert!(
        active.detail.contains("event=rebalance_recommendation"),
        "switched on the event from the intake, not the safety net: {}",
        active.detail
    );
    assert!(
        active.detail.contains(&format!("interrupted={spot}")),
        "{}",
        active.detail
    );
    assert!(
        recorded < Duration::from_secs(10),
        "the switch took {recorded:?}"
    );

    // 3. a replacement spot instance runs; the interrupted one is terminated
    let replaced = env
        .wait_event(&job_id, Duration::from_secs(60), |e| {
            e.detail.starts_with("replacement running")
        })
        .await;
    let replacement = replaced.instance_id.clone();
    assert!(!replacement.is_empty() && replacement != spot && replacement != standby_id);
    assert_eq!(replaced.market, "spot");
    let r = env
        .adapter
        .describe(&[InstanceId::new(&replacement).unwrap()])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(r.state, InstanceState::Running);
    assert_eq!(r.market, Market::Spot);
    assert_eq!(
        r.client_token.as_deref(),
        Some(format!("{job_id}-r1").as_str())
    );
    env.wait_state(
        &spot,
        &[InstanceState::ShuttingDown, InstanceState::Terminated],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        env.state_of(&standby_id).await,
        InstanceState::Running,
        "the standby serves during the cooldown"
    );

    // 4. restart the manager: the state comes back from launch_events
    first.trigger();
    task.await.unwrap().unwrap();
    let second = Shutdown::new();
    let task = tokio::spawn(
        Standby::new(
            env.store.clone(),
            Arc::clone(&env.clouds),
            env.registry.clone(),
            settings,
        )
        .run(env.config.kafka.clone(), second.clone()),
    );
    let stopped = env
        .wait_event(&job_id, Duration::from_secs(60), |e| {
            e.detail.starts_with("standby stopped")
        })
        .await;
    assert!(
        stopped.at >= replaced.at + u32::try_from(cooldown.as_secs()).unwrap(),
        "stopped at {} before the cooldown after {}",
        stopped.at,
        replaced.at
    );
    assert_eq!(stopped.instance_id, replacement, "the replacement serves");
    env.wait_state(
        &standby_id,
        &[InstanceState::Stopping, InstanceState::Stopped],
        Duration::from_secs(10),
    )
    .await;
    // exactly one switch, one replacement
    let events = env.events(&job_id).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.detail.starts_with("standby active"))
            .count(),
        1,
        "{events:#?}"
    );
    // the job ends (as a cancel that knows only the serving instance would leave it): the
    // standby and the replacement are terminated too
    let last = env.events(&job_id).await.pop().unwrap();
    env.store
        .append(&follow_up(
            &last,
            LaunchState::Cancelled,
            "cancel requested",
        ))
        .await
        .unwrap();
    for id in [&standby_id, &replacement] {
        env.wait_state(
            id,
            &[InstanceState::ShuttingDown, InstanceState::Terminated],
            Duration::from_secs(20),
        )
        .await;
    }
    second.trigger();
    task.await.unwrap().unwrap();
    env.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reaper_ends_launches_past_max_lifetime_or_idle_ttl_and_heartbeats_keep_one_alive() {
    let env = Env::new().await;
    // the gateway, for Heartbeat
    let mut gw: capsight_gateway::GatewayConfig = capsight_runtime::config::load(None).unwrap();
    gw.kafka = env.config.kafka.clone();
    gw.clickhouse = env.config.clickhouse.clone();
    gw.amqp = env.config.amqp.clone();
    gw.tenancy = env.config.tenancy.clone();
    gw.gateway.listen = "127.0.0.1:0".parse().unwrap();
    gw.gateway.registry_recheck = Duration::from_millis(200);
    let running = capsight_gateway::start(gw, Arc::clone(&env.clouds), env.shutdown.clone())
        .await
        .unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect_lazy();
    let mut launch = LaunchServiceClient::new(channel);
    let beat = |job: &str| {
        let mut r = Request::new(v1::HeartbeatRequest {
            job_id: job.to_owned(),
            note: "gpu util 97%".into(),
        });
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", env.acme_key).parse().unwrap(),
        );
        r
    };

    // old: running 100 s with a 60 s lifetime; idle: 3 s idle TTL, no heartbeat;
    // busy: 3 s idle TTL kept alive by heartbeats; fresh: nothing applies
    let (old, idle, busy, fresh) = (job(), job(), job(), job());
    let old_i = env.run_instance(&old, Market::OnDemand).await;
    let idle_i = env.run_instance(&idle, Market::OnDemand).await;
    let busy_i = env.run_instance(&busy, Market::OnDemand).await;
    let fresh_i = env.run_instance(&fresh, Market::OnDemand).await;
    env.record_running(
        &old,
        &old_i,
        Market::OnDemand,
        Duration::from_secs(100),
        (60, 0),
        false,
    )
    .await;
    env.record_running(
        &idle,
        &idle_i,
        Market::OnDemand,
        Duration::ZERO,
        (0, 3),
        false,
    )
    .await;
    env.record_running(
        &busy,
        &busy_i,
        Market::OnDemand,
        Duration::ZERO,
        (0, 3),
        false,
    )
    .await;
    env.record_running(
        &fresh,
        &fresh_i,
        Market::OnDemand,
        Duration::ZERO,
        (3600, 0),
        false,
    )
    .await;

    // heartbeat validation: unknown / other tenant's job and a bad id are refused
    let err = launch.heartbeat(beat("not-a-uuid")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = launch.heartbeat(beat(&job())).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let reaper = Reaper::new(
        env.store.clone(),
        Arc::clone(&env.clouds),
        env.registry.clone(),
        LifecycleSettings {
            interval: Duration::from_millis(300),
            default_max_lifetime: Duration::ZERO,
        },
    );
    // busy beats every 500 ms from before the reaper starts until `quiet` fires
    let quiet = Shutdown::new();
    let beats = {
        let mut client = launch.clone();
        let key = env.acme_key.clone();
        let busy = busy.clone();
        let quiet = quiet.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            while !quiet.is_triggered() {
                let mut r = Request::new(v1::HeartbeatRequest {
                    job_id: busy.clone(),
                    note: "gpu util 97%".into(),
                });
                r.metadata_mut()
                    .insert("authorization", format!("Bearer {key}").parse().unwrap());
                let resp = client.heartbeat(r).await.unwrap().into_inner();
                assert_eq!(resp.state, v1::LaunchState::Running as i32);
                n += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let task = tokio::spawn(reaper.run(false, env.shutdown.clone()));

    let ended = env
        .wait_event(&old, Duration::from_secs(30), |e| {
            e.state == LaunchState::Terminated
        })
        .await;
    assert!(ended.detail.contains("max lifetime"), "{}", ended.detail);
    env.wait_state(
        &old_i,
        &[InstanceState::ShuttingDown, InstanceState::Terminated],
        Duration::from_secs(10),
    )
    .await;

    // idle is reaped while busy, well past its own 3 s TTL, keeps beating
    let idle_end = env
        .wait_event(&idle, Duration::from_secs(15), |e| {
            e.state == LaunchState::Terminated
        })
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    quiet.trigger();
    let sent = beats.await.unwrap();
    assert!(sent >= 10, "{sent} heartbeats sent");
    let _ = env
        .wait_event(&idle, Duration::from_secs(1), |e| {
            e.state == LaunchState::Terminated
        })
        .await;
    assert!(
        idle_end.detail.contains("idle TTL 3s"),
        "{}",
        idle_end.detail
    );
    assert!(
        env.events(&busy)
            .await
            .iter()
            .all(|e| e.state == LaunchState::Running || e.seq < 2),
        "heartbeats keep busy running"
    );
    let n: u64 = env
        .client()
        .query("SELECT count() FROM launch_activity WHERE tenant = 'acme' AND job_id = ?")
        .bind(&busy)
        .fetch_one()
        .await
        .unwrap();
    assert!(n >= 10, "{n} heartbeats recorded");
    assert_eq!(env.state_of(&busy_i).await, InstanceState::Running);

    // heartbeats stop: busy goes idle and ends
    let busy_end = env
        .wait_event(&busy, Duration::from_secs(15), |e| {
            e.state == LaunchState::Terminated
        })
        .await;
    assert!(busy_end.detail.contains("idle TTL"), "{}", busy_end.detail);
    env.wait_state(
        &busy_i,
        &[InstanceState::ShuttingDown, InstanceState::Terminated],
        Duration::from_secs(10),
    )
    .await;
    // a finished launch takes no heartbeat
    let err = launch.heartbeat(beat(&busy)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // fresh is untouched
    assert!(
        env.events(&fresh)
            .await
            .iter()
            .all(|e| e.state != LaunchState::Terminated),
        "fresh ended too early"
    );
    assert_eq!(env.state_of(&fresh_i).await, InstanceState::Running);
    env.shutdown.trigger();
    task.await.unwrap();
    let _ = running;
    cleanup_amqp(&env).await;
    env.drop_database().await;
}

async fn cleanup_amqp(env: &Env) {
    let Ok(conn) = env.config.amqp.connect().await else {
        return;
    };
    let ch = conn.create_channel().await.unwrap();
    let _ = env.config.amqp.launch.delete(&ch).await;
}

fn sql_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim()) {
            (None, "```sql") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[tokio::test(flavor = "multi_thread")]
async fn gpu_hours_per_tenant_and_market_match_a_known_set_of_events() {
    let env = Env::new().await;
    let client = env.client();
    let catalog = Catalog::embedded().unwrap();
    assert!(usage::sync_catalog(&client, &catalog).await.unwrap() > 10);
    // month boundary in the server's time zone
    let boundary: u32 = client
        .query("SELECT toUInt32(toDateTime(toStartOfMonth(now())))")
        .fetch_one()
        .await
        .unwrap();
    let now = u32::try_from(chrono::Utc::now().timestamp()).unwrap();
    let prev = boundary - 20 * 86_400;
    let h = 3600;
    let mut rows = Vec::new();
    let mut requests = Vec::new();
    let mut add =
        |tenant: &str, job: &str, count: u32, itype: &str, seq_states: &[(u32, &str, &str)]| {
            requests.push((tenant.to_owned(), job.to_owned(), count, itype.to_owned()));
            for (i, (at, state, market)) in seq_states.iter().enumerate() {
                rows.push(LaunchEventRow {
                    job_id: job.into(),
                    seq: u32::try_from(i).unwrap(),
                    tenant: tenant.into(),
                    at: *at,
                    at_ms: 0,
                    state: LaunchState::parse("state", state).unwrap(),
                    provider: "aws".into(),
                    region: "us-east-1".into(),
                    zone_id: String::new(),
                    instance_type: itype.into(),
                    market: (*market).into(),
                    instance_id: "i-x".into(),
                    attempt: 1,
                    error_class: String::new(),
                    error_code: String::new(),
                    detail: String::new(),
                });
            }
        };
    // t1: 2 x p5.48xlarge (8 GPUs) on spot for 1 h = 16; g5.xlarge on-demand 30 min = 0.5
    add(
        "t1",
        "x",
        2,
        "p5.48xlarge",
        &[
            (prev - 60, "queued", "spot"),
            (prev, "running", "spot"),
            (prev + h, "terminated", "spot"),
        ],
    );
    add(
        "t1",
        "y",
        1,
        "g5.xlarge",
        &[
            (prev, "queued", "on_demand"),
            (prev + 60, "running", "on_demand"),
            (prev + 60 + h / 2, "cancelled", "on_demand"),
        ],
    );
    // t2: p5.48xlarge spot 1 h, warm standby on-demand 30 min, replacement spot 1 h
    add(
        "t2",
        "z",
        1,
        "p5.48xlarge",
        &[
            (prev, "running", "spot"),
            (prev + h, "running", "on_demand"),
            (prev + h + h / 2, "running", "spot"),
            (prev + 2 * h + h / 2, "terminated", "spot"),
        ],
    );
    // t1: g5.xlarge on-demand across the month boundary: 1 h in each month
    add(
        "t1",
        "w",
        1,
        "g5.xlarge",
        &[
            (boundary - h, "running", "on_demand"),
            (boundary + h, "failed", "on_demand"),
        ],
    );
    // t1: still running g5.xlarge spot since (at most) 1 h ago
    let v_start = (now - h).max(boundary);
    add("t1", "v", 1, "g5.xlarge", &[(v_start, "running", "spot")]);
    // a replayed transition (same seq twice) is not counted twice
    rows.push(LaunchEventRow {
        at: prev + 5,
        ..rows[1].clone()
    });
    let mut insert = client
        .insert::<LaunchEventRow>("launch_events")
        .await
        .unwrap();
    for r in &rows {
        insert.write(r).await.unwrap();
    }
    insert.end().await.unwrap();
    let mut insert = client
        .insert::<LaunchRequestRow>("launch_requests")
        .await
        .unwrap();
    for (tenant, job, count, itype) in &requests {
        insert
            .write(&LaunchRequestRow {
                job_id: job.clone(),
                tenant: tenant.clone(),
                created_at: prev,
                created_ms: 0,
                provider: "aws".into(),
                region: "us-east-1".into(),
                zone_id: String::new(),
                instance_type: itype.clone(),
                market: "spot".into(),
                count: *count,
                image_id: "ami-x".into(),
                subnet_id: String::new(),
                spot_max_price: 0.0,
                warm_standby: 0,
                max_lifetime_secs: 0,
                idle_ttl_secs: 0,
                max_fallbacks: 0,
            })
            .await
            .unwrap();
    }
    insert.end().await.unwrap();

    // the documented monthly summary, verbatim from docs/analytics.md
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/analytics.md"),
    )
    .unwrap();
    let blocks = sql_blocks(&doc);
    let monthly_sql = blocks
        .iter()
        .find(|b| b.contains("FROM tenant_gpu_hours_monthly"))
        .expect("docs/analytics.md documents the monthly GPU-hours query");
    let per_launch_sql = blocks
        .iter()
        .find(|b| b.contains("FROM launch_gpu_segments"))
        .expect("docs/analytics.md documents the per-launch segments");
    let text = |sql: &str| {
        let client = client.clone();
        let sql = sql.to_owned();
        async move {
            let bytes = client
                .query(&sql)
                .fetch_bytes("TSV")
                .unwrap()
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{e}\nin\n{sql}"));
            String::from_utf8(bytes.to_vec()).unwrap()
        }
    };
    let out = text(monthly_sql).await;
    println!("{out}");
    let this_month = chrono::DateTime::from_timestamp(i64::from(boundary) + 43_200, 0).unwrap();
    let last_month = chrono::DateTime::from_timestamp(i64::from(prev), 0).unwrap();
    let row = |month: chrono::DateTime<chrono::Utc>, tenant: &str, market: &str| -> Vec<String> {
        let m = month.format("%Y-%m-01").to_string();
        out.lines()
            .map(|l| l.split('\t').map(str::to_owned).collect::<Vec<_>>())
            .find(|c| c[0] == m && c[1] == tenant && c[2] == market)
            .unwrap_or_else(|| panic!("no row {m} {tenant} {market} in\n{out}"))
    };
    let hours = |r: &[String]| r[3].parse::<f64>().unwrap();
    assert_eq!(hours(&row(last_month, "t1", "spot")), 16.0);
    assert_eq!(hours(&row(last_month, "t1", "on_demand")), 1.5);
    assert_eq!(hours(&row(last_month, "t2", "spot")), 16.0);
    assert_eq!(hours(&row(last_month, "t2", "on_demand")), 4.0);
    assert_eq!(hours(&row(this_month, "t1", "on_demand")), 1.0);
    let v = row(this_month, "t1", "spot");
    let expected_v = f64::from(now - v_start) / 3600.0;
    assert!(
        (hours(&v) - expected_v).abs() < 0.05,
        "{v:?} vs {expected_v}"
    );
    assert_eq!(v[5], "1", "still running");
    assert_eq!(row(last_month, "t2", "spot")[4], "1", "one launch");

    // the library function reads the same view
    let from = last_month.date_naive().with_day(1).unwrap();
    let t2 = usage::monthly(&client, from, Some("t2")).await.unwrap();
    assert_eq!(t2.len(), 2, "{t2:?}");
    assert!(t2.iter().all(|u| u.tenant == "t2"));
    let od = t2.iter().find(|u| u.market == "on_demand").unwrap();
    assert!((od.gpu_hours - 4.0).abs() < 1e-9);

    let segments = text(per_launch_sql).await;
    // the last 31 days: w (across the month boundary) and the still-running v
    assert!(
        segments.contains("\tw\ton_demand\t") && segments.contains("\tv\tspot\t"),
        "{segments}"
    );
    env.drop_database().await;
}

/// A child process killed when the test ends, pass or fail.
struct KillOnDrop(std::process::Child);

impl KillOnDrop {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The launcher binary (`cargo build -p capsight-launcher --bins` first).
fn launcher_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("capsight-launcher");
    assert!(
        path.exists(),
        "{} missing: run cargo build -p capsight-launcher --bins",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spot_job_with_warm_standby_through_the_real_binary() {
    let env = Env::new().await;
    let c = &env.config;
    let t = &c.amqp.launch;
    let dir = env.registry_path.parent().unwrap().to_owned();
    let config = dir.join("launcher.toml");
    std::fs::write(
        &config,
        format!(
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
health_listen = "127.0.0.1:0"

[launcher.lifecycle]
interval = "500ms"

[launcher.standby]
cooldown = "3s"
interval = "200ms"
consumer_group = "test.l2.{short}.binary"
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
            short = env.short,
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("launcher.log")).unwrap();
    let child = std::process::Command::new(launcher_bin())
        .arg("--config")
        .arg(&config)
        .env("AWS_ENDPOINT_URL", &env.sim_url)
        .env("AWS_ACCESS_KEY_ID", OPERATOR)
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_REGION", "us-east-1")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);

    // the job as the gateway's Launch records and publishes it: spot, warm standby, 1 h lifetime
    let job_id = job();
    let key: capsight_proto::domain::CapacityKey =
        "aws/us-east-1/use1-az1/g5.xlarge/spot".parse().unwrap();
    let (created_at, created_ms) = split_time(chrono::Utc::now());
    let request = LaunchRequestRow {
        job_id: job_id.clone(),
        tenant: "acme".into(),
        created_at,
        created_ms,
        provider: "aws".into(),
        region: "us-east-1".into(),
        zone_id: "use1-az1".into(),
        instance_type: "g5.xlarge".into(),
        market: "spot".into(),
        count: 1,
        image_id: "ami-0123456789abcdef0".into(),
        subnet_id: String::new(),
        spot_max_price: 0.0,
        warm_standby: 1,
        max_lifetime_secs: 3600,
        idle_ttl_secs: 0,
        max_fallbacks: 0,
    };
    let queued = LaunchEventRow {
        job_id: job_id.clone(),
        seq: 0,
        tenant: "acme".into(),
        at: created_at,
        at_ms: created_ms,
        state: LaunchState::Queued,
        provider: "aws".into(),
        region: "us-east-1".into(),
        zone_id: "use1-az1".into(),
        instance_type: "g5.xlarge".into(),
        market: "spot".into(),
        instance_id: String::new(),
        attempt: 0,
        error_class: String::new(),
        error_code: String::new(),
        detail: "accepted by the gateway".into(),
    };
    capsight_launcher::store::Store::new(env.client())
        .record_launch(&request, &queued)
        .await
        .unwrap();
    capsight_gateway::jobs::JobPublisher::new(c.amqp.clone(), Duration::from_secs(10))
        .publish(&v1::LaunchJob {
            job_id: job_id.clone(),
            tenant: "acme".into(),
            tenant_hash: "hash-acme".into(),
            created_at: None,
            spec: Some(v1::LaunchSpec {
                key: Some(v1::CapacityKey::from(&key)),
                count: 1,
                image_id: request.image_id.clone(),
                subnet_id: String::new(),
                spot_max_price: 0.0,
            }),
            constraints: Some(v1::Constraints::default()),
            max_fallbacks: 0,
            warm_standby: true,
            max_lifetime_seconds: 3600,
            idle_ttl_seconds: 0,
            preflight_decision: 0,
        })
        .await
        .unwrap();

    let running = env
        .wait_event(&job_id, Duration::from_secs(90), |e| {
            e.state == LaunchState::Running
        })
        .await;
    let spot = running.instance_id.clone();
    assert_eq!(running.market, "spot");
    let ready = env
        .wait_event(&job_id, Duration::from_secs(60), |e| {
            e.detail.starts_with("standby ready")
        })
        .await;
    let standby_id = ready
        .detail
        .split_whitespace()
        .find_map(|w| w.strip_prefix("standby="))
        .unwrap()
        .to_owned();
    env.wait_state(
        &standby_id,
        &[InstanceState::Stopped],
        Duration::from_secs(30),
    )
    .await;

    let t0 = Instant::now();
    let resp = env
        .http
        .post(format!("{}/admin/interrupt", env.sim_url))
        .json(&serde_json::json!({ "instance_id": spot }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let active = env
        .wait_event(&job_id, Duration::from_secs(30), |e| {
            e.detail.starts_with("standby active")
        })
        .await;
    let recorded = t0.elapsed();
    let to_running = env
        .wait_state(
            &standby_id,
            &[InstanceState::Running],
            Duration::from_secs(30),
        )
        .await
        + recorded;
    println!(
        "MEASURED (binary): interruption -> standby started and recorded in {} ms, running in {} ms; {}",
        recorded.as_millis(),
        to_running.as_millis(),
        active.detail
    );
    assert_eq!(active.instance_id, standby_id);
    assert!(
        active.detail.contains("event=rebalance_recommendation"),
        "{}",
        active.detail
    );
    let replaced = env
        .wait_event(&job_id, Duration::from_secs(60), |e| {
            e.detail.starts_with("replacement running")
        })
        .await;
    let stopped = env
        .wait_event(&job_id, Duration::from_secs(60), |e| {
            e.detail.starts_with("standby stopped")
        })
        .await;
    assert!(stopped.at >= replaced.at + 3);
    assert_eq!(stopped.instance_id, replaced.instance_id);
    env.wait_state(
        &standby_id,
        &[InstanceState::Stopping, InstanceState::Stopped],
        Duration::from_secs(10),
    )
    .await;

    child.stop();
    cleanup_amqp(&env).await;
    env.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missed_interruption_is_caught_when_the_spot_instance_is_gone() {
    let env = Env::new().await;
    let job_id = job();
    let spot = env.run_instance(&job_id, Market::Spot).await;
    env.record_running(&job_id, &spot, Market::Spot, Duration::ZERO, (0, 0), true)
        .await;
    let shutdown = Shutdown::new();
    let task = tokio::spawn(
        Standby::new(
            env.store.clone(),
            Arc::clone(&env.clouds),
            env.registry.clone(),
            StandbySettings {
                cooldown: Duration::from_secs(600),
                interval: Duration::from_millis(200),
                consumer_group: format!("test.l2.{}.missed", env.short),
            },
        )
        .run(env.config.kafka.clone(), shutdown.clone()),
    );
    let ready = env
        .wait_event(&job_id, Duration::from_secs(60), |e| {
            e.detail.starts_with("standby ready")
        })
        .await;
    let standby_id = ready
        .detail
        .split_whitespace()
        .find_map(|w| w.strip_prefix("standby="))
        .unwrap()
        .to_owned();
    env.wait_state(
        &standby_id,
        &[InstanceState::Stopped],
        Duration::from_secs(30),
    )
    .await;
    // the spot instance disappears without any interruption event (a terminate emits none)
    env.adapter
        .terminate(&[InstanceId::new(&spot).unwrap()])
        .await
        .unwrap();
    let active = env
        .wait_event(&job_id, Duration::from_secs(20), |e| {
            e.detail.starts_with("standby active")
        })
        .await;
    assert!(
        active.detail.contains("event=instance_gone"),
        "{}",
        active.detail
    );
    assert_eq!(active.instance_id, standby_id);
    env.wait_state(
        &standby_id,
        &[InstanceState::Running],
        Duration::from_secs(30),
    )
    .await;
    shutdown.trigger();
    task.await.unwrap().unwrap();
    env.drop_database().await;
}
