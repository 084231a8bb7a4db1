//! One gateway per test, in-process in the kit's gateway world
//! ([`capsight_testkit::fixtures::gateway_world`]: its own topics, database, launch topology,
//! tenants and cloudsim on the real local stack), with gRPC clients of its services.

#![allow(dead_code, reason = "each test binary uses a subset")]

use std::{sync::Arc, time::Duration};

use capsight_cloud::tenants::{ProviderClouds, TenantClouds};
use capsight_gateway::{GatewayConfig, Running};
use capsight_proto::{
    domain::Score,
    v1::{
        self, launch_service_client::LaunchServiceClient,
        preflight_service_client::PreflightServiceClient,
        report_service_client::ReportServiceClient, score_service_client::ScoreServiceClient,
    },
};
use capsight_runtime::shutdown::Shutdown;
use capsight_testkit::{
    Sandbox,
    fixtures::{gateway_sandbox, gateway_world},
    grpc,
    tenants::TenantSpec,
};
use tonic::transport::Channel;

/// The compacted scores topic's partitions.
const SCORES_PARTITIONS: i32 = 2;

/// A gateway (once launched) in its sandbox; stopped on drop.
pub struct Gateway {
    pub sandbox: Sandbox,
    pub config: GatewayConfig,
    pub running: Option<Running>,
    pub channel: Channel,
    shutdown: Shutdown,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

impl Gateway {
    /// A gateway whose scores topic holds `initial` before it starts.
    pub async fn start(initial: &[Score]) -> Self {
        let g = Self::prepare(true).await;
        for s in initial {
            g.sandbox.publish_score(s).await;
        }
        g.launch_gateway().await
    }

    /// The sandbox (with the scores topic when `scores_topic`) and the config, no gateway yet.
    pub async fn prepare(scores_topic: bool) -> Self {
        let mut world = gateway_world("gw");
        if scores_topic {
            world = world.scores(SCORES_PARTITIONS);
        }
        let sandbox = world.start().await;
        Self {
            config: sandbox.config(),
            sandbox,
            running: None,
            // replaced by launch_gateway
            channel: Channel::from_static("http://127.0.0.1:1").connect_lazy(),
            shutdown: Shutdown::new(),
        }
    }

    /// Creates the scores topic of a gateway prepared without it.
    pub async fn create_scores_topic(&self) {
        self.sandbox.create_scores_topic(SCORES_PARTITIONS).await;
    }

    /// Starts the gateway with `config`, its tenants' clouds in the sandbox's cloudsim.
    pub async fn launch_gateway(mut self) -> Self {
        let running = capsight_gateway::start(
            self.config.clone(),
            self.sandbox.clouds(),
            self.shutdown.clone(),
        )
        .await
        .unwrap();
        self.channel = grpc::channel(running.addr);
        self.running = Some(running);
        self
    }

    /// A ready gateway in `sandbox` whose tenants' clouds are `clouds` (another provider's
    /// accounts next to the sandbox's AWS).
    pub async fn serve(sandbox: Sandbox, clouds: Arc<dyn TenantClouds>) -> Self {
        let shutdown = Shutdown::new();
        let config: GatewayConfig = sandbox.config();
        let running = capsight_gateway::start(config.clone(), clouds, shutdown.clone())
            .await
            .unwrap();
        let g = Self {
            channel: grpc::channel(running.addr),
            running: Some(running),
            config,
            sandbox,
            shutdown,
        };
        g.wait_ready().await;
        g
    }

    /// A ready gateway for a preflight test of another provider: a sandbox `name` (signals,
    /// scores, database, launch topology) with `tenants` and cloudsim on scenario `scenario_name`,
    /// `scores` published, and the tenants' clouds of the sandbox's AWS plus what `with` adds
    /// (that provider's clouds at the sandbox's cloudsim).
    pub async fn on_provider(
        name: &str,
        scenario_name: &str,
        tenants: impl IntoIterator<Item = TenantSpec>,
        scores: &[Score],
        with: impl FnOnce(&Sandbox, ProviderClouds) -> ProviderClouds,
    ) -> Self {
        let sandbox = gateway_sandbox(name)
            .scores(1)
            .tenants(tenants)
            .scenario(scenario_name)
            .start()
            .await;
        for s in scores {
            sandbox.publish_score(s).await;
        }
        let clouds: Arc<dyn TenantClouds> =
            Arc::new(with(&sandbox, ProviderClouds::new(sandbox.clouds())));
        Self::serve(sandbox, clouds).await
    }

    /// `tenant`'s preflight of `count` x `key` (a capacity key's text) from `image_id`, without
    /// a live probe.
    pub async fn preflight_of(
        &self,
        tenant: &str,
        key: &str,
        count: u32,
        image_id: &str,
    ) -> v1::PreflightResponse {
        grpc::preflight(&self.channel, key, count, image_id, &self.key(tenant)).await
    }

    /// Waits until the scores view is built (at most 30 s).
    pub async fn wait_ready(&self) {
        let view = &self.running.as_ref().unwrap().view;
        tokio::time::timeout(Duration::from_secs(30), view.wait_ready())
            .await
            .expect("scores view ready within 30 s");
    }

    /// The API key of `tenant` (`acme`, `globex`, `readonly`, `flood`).
    pub fn key(&self, tenant: &str) -> String {
        self.sandbox.key(tenant)
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
}

#[allow(unused_imports, reason = "each test binary uses a subset")]
pub use capsight_testkit::grpc::statuses;

const PASSED: i32 = v1::CheckStatus::Passed as i32;
const FAILED: i32 = v1::CheckStatus::Failed as i32;
const SKIPPED: i32 = v1::CheckStatus::Skipped as i32;

/// Permission, quota and capacity passed: `CAN_LAUNCH`.
pub fn assert_can_launch(r: &v1::PreflightResponse) {
    assert_eq!(r.decision, v1::Decision::CanLaunch as i32, "{r:#?}");
    assert_eq!(
        statuses(r),
        [
            ("permission", PASSED),
            ("quota", PASSED),
            ("capacity", PASSED)
        ],
        "{r:#?}"
    );
}

/// The account passed, capacity failed: `RETRY_WITH_ALTERNATIVES`.
pub fn assert_no_capacity(r: &v1::PreflightResponse) {
    assert_eq!(
        r.decision,
        v1::Decision::RetryWithAlternatives as i32,
        "{r:#?}"
    );
    assert_eq!(r.checks[2].status, FAILED, "{r:#?}");
}

/// The cloud refused the permission step with its error `code`; quota was skipped.
pub fn assert_permission_refused(r: &v1::PreflightResponse, code: &str) {
    assert_eq!(r.decision, v1::Decision::FixAccountIssue as i32, "{r:#?}");
    assert_eq!(
        (r.checks[0].status, r.checks[0].error_code.as_str()),
        (FAILED, code),
        "{r:#?}"
    );
    assert_eq!(r.checks[1].status, SKIPPED, "{r:#?}");
}

/// An account issue whose permission step's reason mentions `text` (a registration missing, a
/// credential variable not set here).
pub fn assert_account_issue(r: &v1::PreflightResponse, text: &str) {
    assert_eq!(r.decision, v1::Decision::FixAccountIssue as i32, "{r:#?}");
    assert!(r.checks[0].reason.contains(text), "{text}: {r:#?}");
}
