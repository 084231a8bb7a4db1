//! Launches on Google Cloud and onto it across providers, with the real `capsight-launcher`
//! binary on the local stack and cloudsim (scenario `cross-provider-gcp`): a GCP job runs with
//! exactly one instance named by its token; an AWS H100 job that fails for capacity falls back
//! to GCP's H100 (a3-highgpu-8g) and runs there when the tenant allows other providers, and
//! does not when it does not. The tenant's service-account key file is at the path its
//! registered variable holds. Needs `cargo build -p capsight-launcher --bins`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod launcher;

use std::time::Duration;

use capsight_cloud::{CloudAdapter, Instance, InstanceState};
use capsight_proto::v1;
use capsight_testkit::{
    cloud::{ROLE_ACME, quick_retries},
    fixtures, launches,
    signals::score,
    tenants::tenant,
};
use launcher::{ACME, Harness, P5_AZ1, states};

const LIMIT: Duration = Duration::from_secs(90);
/// The variable holding the path of acme's service-account key file.
const ACME_CREDENTIALS_ENV: &str = "CAPSIGHT_GCP_CREDENTIALS_ACME";
/// Two in stock.
const GCP_H100: &str = "gcp/us-central1/us-central1-a/a3-highgpu-8g/on_demand";

async fn harness() -> Harness {
    Harness::start_with_tenants(
        fixtures::scenario("cross-provider-gcp"),
        [tenant(ACME)
            .role(ROLE_ACME, "ext-acme")
            .gcp("acme-ml", ACME_CREDENTIALS_ENV)],
    )
    .await
}

/// The launcher binary with Google's endpoint (cloudsim) and acme's key file in its
/// environment.
fn spawn(h: &Harness, log: &str) -> capsight_testkit::process::ChildGuard {
    let sim = h.sandbox.sim();
    let url = sim.url();
    let key = sim.gcp_credentials("acme").display().to_string();
    h.spawn_binary(
        &[
            ("CAPSIGHT_GCP__ENDPOINT", url.as_str()),
            (ACME_CREDENTIALS_ENV, key.as_str()),
        ],
        log,
    )
}

fn job(key: &str, max_fallbacks: u32, other_providers: bool) -> v1::LaunchJob {
    let mut job = launches::job(ACME, key, 1, max_fallbacks);
    job.constraints = Some(v1::Constraints {
        allow_other_providers: other_providers,
        ..Default::default()
    });
    job
}

/// The job's live instances in acme's project, found by the token they carry.
async fn gcp_instances(h: &Harness, job_id: &str) -> Vec<Instance> {
    h.sandbox
        .sim()
        .gcp_adapter("acme", "acme-ml", "us-central1", quick_retries(1))
        .describe(&[])
        .await
        .unwrap()
        .into_iter()
        .filter(|i| {
            i.client_token
                .as_deref()
                .is_some_and(|t| t.starts_with(job_id))
        })
        .filter(|i| !matches!(i.state, InstanceState::Terminated))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gcp_launch_runs_and_an_aws_capacity_failure_falls_back_to_gcp_when_allowed() {
    let h = harness().await;
    h.put_scores(&[score(P5_AZ1, 20, 0.8), score(GCP_H100, 90, 0.8)])
        .await;
    let worker = spawn(&h, "launcher");

    // on GCP directly: queued -> preflight -> provisioning -> running, one instance
    let plain = job(GCP_H100, 0, false);
    h.submit(&plain).await;
    let events = h.wait_state(ACME, &plain.job_id, "running", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning running");
    let instances = gcp_instances(&h, &plain.job_id).await;
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(events[3].provider, "gcp");
    assert_eq!(events[3].instance_id, instances[0].id.as_str());
    assert_eq!(
        instances[0].client_token.as_deref(),
        Some(plain.job_id.as_str())
    );
    assert_eq!(instances[0].tags["capsight:job"], plain.job_id);

    // other providers not allowed (the default): the AWS job fails, nothing on GCP
    let default = job(P5_AZ1, 2, false);
    h.submit(&default).await;
    let events = h.wait_state(ACME, &default.job_id, "failed", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning failed");
    assert!(events.iter().all(|e| e.provider != "gcp"), "{events:?}");
    assert!(gcp_instances(&h, &default.job_id).await.is_empty());

    // allowed: AWS has no H100, GCP's runs it
    let allowed = job(P5_AZ1, 2, true);
    h.submit(&allowed).await;
    let events = h.wait_state(ACME, &allowed.job_id, "running", LIMIT).await;
    assert_eq!(
        states(&events),
        "queued preflight provisioning provisioning running"
    );
    assert_eq!(events[2].provider, "aws");
    assert_eq!(events[3].provider, "gcp");
    assert_eq!(events[3].zone_id, "us-central1-a");
    assert_eq!(events[3].instance_type, "a3-highgpu-8g");
    assert!(
        events[3].detail.contains("InsufficientInstanceCapacity"),
        "{}",
        events[3].detail
    );
    let on_gcp = gcp_instances(&h, &allowed.job_id).await;
    assert_eq!(on_gcp.len(), 1, "{on_gcp:?}");
    assert_eq!(
        on_gcp[0].client_token.as_deref(),
        Some(format!("{}-2", allowed.job_id).as_str())
    );
    assert_eq!(events[4].instance_id, on_gcp[0].id.as_str());
    assert!(h.instances_of(&allowed.job_id).await.is_empty());
    worker.kill();
    h.sandbox.cleanup().await;
}
