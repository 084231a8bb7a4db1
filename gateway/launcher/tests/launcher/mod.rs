//! The launcher's tests on a kit sandbox (topics, database, launch topology, tenants and a
//! cloudsim of their own on the real local stack): the launcher in-process or as its binary,
//! jobs submitted exactly as the gateway does it (the launch core's `Store` and
//! `JobPublisher`), and read back the way its GetLaunch does.

#![allow(dead_code, reason = "each test binary uses a subset")]

pub mod keyed;

use std::time::Duration;

use capsight_clickhouse::{
    ClickHouseSettings,
    rows::{LaunchEventRow, ScoreRow},
};
use capsight_cloud::{CloudAdapter, Instance, InstanceState};
use capsight_cloudsim::scenario::Scenario;
use capsight_launch::{
    queue::JobPublisher,
    submit::{Submit, SubmitError, Submitted},
};
use capsight_launcher::{LauncherConfig, store::Store};
use capsight_proto::{
    domain::{Score, TenantHash},
    v1,
};
use capsight_runtime::shutdown::Shutdown;
use capsight_testkit::{
    Sandbox, amqp, clickhouse,
    cloud::{self, OPERATOR, ROLE_ACME, Sim, catalog},
    fixtures, launches,
    private_clickhouse::PrivateClickHouse,
    process::{ChildGuard, bin},
    rabbit::PrivateRabbit,
    tenants::tenant,
    wait::eventually,
};

/// `Launch` for [`ACME`] exactly as the gateway runs it: recorded in `store`, published
/// through `queue`.
pub async fn submit(
    store: &Store,
    queue: &JobPublisher,
    req: v1::LaunchRequest,
) -> Result<Submitted, SubmitError> {
    let catalog = catalog();
    Submit {
        store,
        queue,
        catalog: &catalog,
        max_launch_count: 8,
        crash_after: "",
    }
    .submit(
        ACME,
        &TenantHash::parse("tenant_hash", "hash-acme").unwrap(),
        req,
    )
    .await
}

/// Tenant with no GPU quota.
pub const ACME: &str = "acme";
/// Tenant with a GPU quota of 8 (one p5.48xlarge).
pub const CAPPED: &str = "capped";
/// No stock.
pub const P5_AZ1: &str = "aws/us-east-1/use1-az1/p5.48xlarge/on_demand";
/// Stock.
pub const P5_AZ4: &str = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";
/// Stock, pending for the scenario's `slow` delay.
pub const P5_AZ6: &str = "aws/us-east-1/use1-az6/p5.48xlarge/on_demand";

/// A job of `tenant` on `key` (one instance, up to `max_fallbacks` alternatives) with no
/// region restriction, allowing other providers or not.
pub fn cross_provider_job(
    tenant: &str,
    key: &str,
    max_fallbacks: u32,
    other_providers: bool,
) -> v1::LaunchJob {
    let mut job = launches::job(tenant, key, 1, max_fallbacks);
    job.constraints = Some(v1::Constraints {
        allow_other_providers: other_providers,
        ..Default::default()
    });
    job
}

/// The live instances of `adapter`'s account named by a token of `job_id` (clouds without tags
/// carry the client token in the instance name).
pub async fn named_instances(adapter: &dyn CloudAdapter, job_id: &str) -> Vec<Instance> {
    named_instances_except(
        adapter,
        job_id,
        &[InstanceState::Terminated, InstanceState::ShuttingDown],
    )
    .await
}

/// The instances of `adapter`'s account named by a token of `job_id`, but those in a state of
/// `except`.
pub async fn named_instances_except(
    adapter: &dyn CloudAdapter,
    job_id: &str,
    except: &[InstanceState],
) -> Vec<Instance> {
    adapter
        .describe(&[])
        .await
        .unwrap()
        .into_iter()
        .filter(|i| {
            i.client_token
                .as_deref()
                .is_some_and(|t| t.starts_with(job_id))
                && !except.contains(&i.state)
        })
        .collect()
}

/// Asserts that the job `job_id` (its `events`) failed for capacity on AWS and fell back to
/// `provider`'s `instance_type`, where it runs on `there`: the one instance named by attempt 2's
/// token; none left on AWS.
pub async fn assert_fell_back(
    h: &Harness,
    job_id: &str,
    events: &[LaunchEventRow],
    (provider, instance_type): (&str, &str),
    there: &[Instance],
) {
    assert_eq!(
        states(events),
        "queued preflight provisioning provisioning running"
    );
    assert_eq!(events[2].provider, "aws");
    assert_eq!(events[3].provider, provider);
    assert_eq!(events[3].instance_type, instance_type);
    assert!(
        events[3].detail.contains("InsufficientInstanceCapacity"),
        "{}",
        events[3].detail
    );
    assert_eq!(there.len(), 1, "{there:?}");
    assert_eq!(
        there[0].client_token.as_deref(),
        Some(format!("{job_id}-2").as_str())
    );
    assert_eq!(events[4].instance_id, there[0].id.as_str());
    assert!(h.instances_of(job_id).await.is_empty());
}

/// The states of `events`, in order.
pub fn states(events: &[LaunchEventRow]) -> String {
    let names: Vec<&str> = events.iter().map(|e| e.state.as_str()).collect();
    names.join(" ")
}

/// p5.48xlarge on-demand: no stock in use1-az1, stock in use1-az4 and use1-az6; g5.xlarge
/// on-demand: none in use1-az1, 4 in use1-az4; `slow` is the pending -> running delay
/// (simulated) of p5.48xlarge in use1-az6.
pub fn scenario(slow: &str) -> Scenario {
    let mut scenario = fixtures::scenario("launcher");
    let delay = humantime_serde::re::humantime::parse_duration(slow).unwrap();
    for pool in &mut scenario.pools {
        if pool.zone == "use1-az6" && pool.instance_type == "p5.48xlarge" {
            pool.provisioning = Some(delay);
        }
    }
    scenario
}

/// A test's sandbox, the launcher's config in it and the in-process launcher once started.
pub struct Harness {
    pub sandbox: Sandbox,
    pub config: LauncherConfig,
    launcher: Option<(Shutdown, tokio::task::JoinHandle<()>)>,
}

impl Harness {
    /// The sandbox with [`scenario`]`(slow_provisioning)` at 60 simulated seconds a second.
    pub async fn start(slow_provisioning: &str) -> Self {
        Self::start_with(scenario(slow_provisioning)).await
    }

    /// The sandbox with `scenario` at 60 simulated seconds a second.
    pub async fn start_with(scenario: Scenario) -> Self {
        Self::start_with_tenants(
            scenario,
            [
                tenant(ACME).role(ROLE_ACME, "ext-acme"),
                tenant(CAPPED).role(ROLE_ACME, "ext-acme").gpu_quota(8),
            ],
        )
        .await
    }

    /// The sandbox with `scenario` (60 simulated seconds a second) and `tenants` registered.
    pub async fn start_with_tenants(
        scenario: Scenario,
        tenants: impl IntoIterator<Item = capsight_testkit::tenants::TenantSpec>,
    ) -> Self {
        let sandbox = fixtures::launcher_world("launcher")
            .tenants(tenants)
            .cloudsim(Sim::builder(scenario).time_scale(60.0))
            .start()
            .await;
        Self {
            config: sandbox.config(),
            sandbox,
            launcher: None,
        }
    }

    /// [`Harness::start`] with the launcher running in this process.
    pub async fn with_launcher(slow_provisioning: &str) -> Self {
        let mut h = Self::start(slow_provisioning).await;
        h.start_launcher();
        h
    }

    /// Starts the launcher in this process ([`Harness::spawn_launcher`]), stopped by
    /// [`Harness::stop_launcher`] or [`Harness::finish`].
    pub fn start_launcher(&mut self) {
        self.launcher = Some(self.spawn_launcher());
    }

    /// Stops the launcher [`Harness::start_launcher`] started (it must stop cleanly).
    pub async fn stop_launcher(&mut self) {
        if let Some((stop, task)) = self.launcher.take() {
            stop.trigger();
            task.await.unwrap();
        }
    }

    /// Stops the launcher and cleans the sandbox up.
    pub async fn finish(mut self) {
        self.stop_launcher().await;
        self.sandbox.cleanup().await;
    }

    /// Starts the launcher in this process.
    pub fn spawn_launcher(&self) -> (Shutdown, tokio::task::JoinHandle<()>) {
        let shutdown = Shutdown::new();
        let run = capsight_launcher::run(
            self.config.clone(),
            catalog(),
            self.sandbox.clouds(),
            shutdown.clone(),
        );
        (shutdown, tokio::spawn(async move { run.await.unwrap() }))
    }

    /// Starts the `capsight-launcher` binary on the sandbox's config, with `env` added; its log
    /// is `<log>.log` in the sandbox.
    pub fn spawn_binary(&self, env: &[(&str, &str)], log: &str) -> ChildGuard {
        self.sandbox.spawn(
            log,
            self.sandbox
                .command(bin("capsight-launcher"))
                .envs(self.sandbox.sim().aws_env(OPERATOR))
                .envs(env.iter().copied()),
        )
    }

    /// A private RabbitMQ in the sandbox, started, and the harness's config pointed at it (for
    /// tests that stop and restart the broker).
    pub async fn private_rabbit(&mut self) -> PrivateRabbit {
        let mut rabbit = PrivateRabbit::new(&self.sandbox.dir);
        rabbit.start().await;
        self.config.amqp.url = rabbit.url().into();
        rabbit
    }

    /// A private ClickHouse in the sandbox, started and migrated, and the settings of the
    /// harness's config pointed at it with quick timeouts (1 s to connect, 2 s a request), so
    /// that an outage shows at once.
    pub async fn private_clickhouse(&self) -> (PrivateClickHouse, ClickHouseSettings) {
        let mut ch = PrivateClickHouse::new(&self.sandbox.dir);
        ch.start().await;
        let mut settings = ch.settings(&self.config.clickhouse);
        settings.connect_timeout = Duration::from_secs(1);
        settings.io_timeout = Duration::from_secs(2);
        capsight_clickhouse::migrate::apply(&settings)
            .await
            .unwrap();
        (ch, settings)
    }

    pub fn store(&self) -> Store {
        Store::new(self.sandbox.client())
    }

    /// Writes `scores` to the sandbox's ClickHouse `scores` table.
    pub async fn put_scores(&self, scores: &[Score]) {
        let rows: Vec<ScoreRow> = scores.iter().map(ScoreRow::new).collect();
        clickhouse::insert(&self.sandbox.client(), "scores", &rows).await;
    }

    /// Records the job (request + `queued`, seq 0) and publishes it, as the gateway's Launch.
    pub async fn submit(&self, job: &v1::LaunchJob) {
        let request = launches::job_request(job, chrono::Utc::now());
        self.store()
            .record_launch(&request, &launches::queued(&request))
            .await
            .unwrap();
        self.publish_raw(job).await;
    }

    /// Submits a new job of `tenant` ([`launches::job`]).
    pub async fn launch(
        &self,
        tenant: &str,
        key: &str,
        count: u32,
        max_fallbacks: u32,
    ) -> v1::LaunchJob {
        let job = launches::job(tenant, key, count, max_fallbacks);
        self.submit(&job).await;
        job
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

    /// Waits (each step within `limit`) until acme's job is provisioning and its one instance
    /// exists (still pending on a slow pool).
    pub async fn wait_pending(&self, job_id: &str, limit: Duration) {
        self.wait_state(ACME, job_id, "provisioning", limit).await;
        eventually(limit, "the instance launched", || async {
            (self.instances_of(job_id).await.len() == 1).then_some(())
        })
        .await;
    }

    /// The job's live instances in the tenant's account.
    pub async fn instances_of(&self, job_id: &str) -> Vec<Instance> {
        cloud::instances_of(&*self.sandbox.tenant_adapter(ACME).await, job_id).await
    }

    /// Messages ready in `queue`.
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        amqp::queue_depth(&self.config.amqp, queue).await
    }
}
