//! Launches on RunPod and across providers, with the real `capsight-launcher` binary on the
//! local stack and cloudsim (scenario `cross-provider-runpod`): a RunPod job runs with exactly
//! one pod, also when the launcher is `kill -9`ed right after the cloud call; an AWS H100 job
//! that fails for capacity falls back to RunPod's 8x H100 pod when the tenant allows other
//! providers, and does not when the tenant has no RunPod account. Needs
//! `cargo build -p capsight-launcher --bins`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod launcher;

use std::{os::unix::process::ExitStatusExt, time::Duration};

use capsight_cloud::Instance;
use capsight_testkit::{
    cloud::{ROLE_ACME, quick_retries},
    fixtures,
    signals::score,
    tenants::tenant,
};
use launcher::{ACME, Harness, P5_AZ1, cross_provider_job as job, named_instances, states};

const LIMIT: Duration = Duration::from_secs(90);
/// acme's RunPod API key (the scenario's principal) and the variable naming it.
const ACME_KEY: &str = "rpa_ACME0123456789";
const ACME_KEY_ENV: &str = "RUNPOD_KEY_ACME";
/// Four in stock.
const RUNPOD_H100: &str = "runpod/secure//1x_h100_sxm/on_demand";
/// Two in stock: the same GPU model and count as a p5.48xlarge.
const RUNPOD_8X_H100: &str = "runpod/secure//8x_h100_sxm/on_demand";
/// A tenant with an AWS role and no RunPod account.
const AWS_ONLY: &str = "awsonly";

async fn harness() -> Harness {
    Harness::start_with_tenants(
        fixtures::scenario("cross-provider-runpod"),
        [
            tenant(ACME)
                .role(ROLE_ACME, "ext-acme")
                .runpod(ACME_KEY_ENV, 16),
            tenant(AWS_ONLY).role(ROLE_ACME, "ext-acme"),
        ],
    )
    .await
}

/// The launcher binary with RunPod's endpoint (cloudsim) and acme's key in its environment.
fn spawn(h: &Harness, env: &[(&str, &str)], log: &str) -> capsight_testkit::process::ChildGuard {
    let url = h.sandbox.sim().url();
    let mut all = vec![
        ("CAPSIGHT_RUNPOD__ENDPOINT", url.as_str()),
        (ACME_KEY_ENV, ACME_KEY),
    ];
    all.extend_from_slice(env);
    h.spawn_binary(&all, log)
}

/// The job's live pods, found by the name carrying its token.
async fn pods(h: &Harness, job_id: &str) -> Vec<Instance> {
    named_instances(
        &h.sandbox
            .sim()
            .runpod_adapter(ACME_KEY, "secure", quick_retries(1)),
        job_id,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runpod_launch_runs_with_one_pod_also_after_a_kill_9_right_after_the_cloud_call() {
    let h = harness().await;

    // plain: queued -> preflight -> provisioning -> running, one pod named by the token
    let plain = job(ACME, RUNPOD_H100, 0, false);
    h.submit(&plain).await;
    let worker = spawn(&h, &[], "plain");
    let events = h.wait_state(ACME, &plain.job_id, "running", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning running");
    let found = pods(&h, &plain.job_id).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(events[3].provider, "runpod");
    assert_eq!(events[3].region, "secure");
    assert_eq!(events[3].instance_id, found[0].id.as_str());
    assert_eq!(
        found[0].client_token.as_deref(),
        Some(plain.job_id.as_str())
    );
    worker.kill();

    // killed right after RunPod accepted the deploy: the restart finds the pod, deploys nothing
    let crashed = job(ACME, RUNPOD_H100, 0, false);
    h.submit(&crashed).await;
    let mut doomed = spawn(
        &h,
        &[("CAPSIGHT_LAUNCHER__CRASH_AFTER", "launched")],
        "crash",
    );
    let status = doomed.exited(LIMIT).await;
    assert_eq!(status.signal(), Some(9), "{status:?}");
    let events = h.events(ACME, &crashed.job_id).await;
    assert_eq!(states(&events), "queued preflight provisioning");
    assert_eq!(pods(&h, &crashed.job_id).await.len(), 1);

    let worker = spawn(&h, &[], "restart");
    let events = h.wait_state(ACME, &crashed.job_id, "running", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning running");
    let found = pods(&h, &crashed.job_id).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(events[3].instance_id, found[0].id.as_str());
    assert_eq!(
        h.sandbox
            .sim()
            .stock("runpod/secure//1x_h100_sxm/on_demand")
            .await,
        2
    );
    worker.kill();
    h.sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_aws_capacity_failure_falls_back_to_runpod_only_with_a_runpod_account() {
    let h = harness().await;
    h.put_scores(&[score(P5_AZ1, 20, 0.8), score(RUNPOD_8X_H100, 90, 0.8)])
        .await;
    let worker = spawn(&h, &[], "launcher");

    // allowed, but the tenant has no RunPod account: never falls back there
    let no_account = job(AWS_ONLY, P5_AZ1, 2, true);
    h.submit(&no_account).await;
    let events = h
        .wait_state(AWS_ONLY, &no_account.job_id, "failed", LIMIT)
        .await;
    assert_eq!(states(&events), "queued preflight provisioning failed");
    assert!(events.iter().all(|e| e.provider != "runpod"), "{events:?}");

    // allowed: falls back to RunPod's 8x H100 pod and runs there
    let allowed = job(ACME, P5_AZ1, 2, true);
    h.submit(&allowed).await;
    let events = h.wait_state(ACME, &allowed.job_id, "running", LIMIT).await;
    assert_eq!(
        states(&events),
        "queued preflight provisioning provisioning running"
    );
    assert_eq!(events[2].provider, "aws");
    assert_eq!(events[3].provider, "runpod");
    assert_eq!(events[3].region, "secure");
    assert_eq!(events[3].instance_type, "8x_h100_sxm");
    let on_runpod = pods(&h, &allowed.job_id).await;
    assert_eq!(on_runpod.len(), 1, "{on_runpod:?}");
    assert_eq!(
        on_runpod[0].client_token.as_deref(),
        Some(format!("{}-2", allowed.job_id).as_str())
    );
    assert_eq!(events[4].instance_id, on_runpod[0].id.as_str());
    assert!(h.instances_of(&allowed.job_id).await.is_empty());
    worker.kill();
    h.sandbox.cleanup().await;
}
