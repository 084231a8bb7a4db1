//! Launches on Lambda Cloud and across providers, with the real `capsight-launcher` binary on
//! the local stack and cloudsim (scenario `cross-provider`): a Lambda job runs with exactly one
//! instance, also when the launcher is `kill -9`ed right after the cloud call; an AWS H100 job
//! that fails for capacity falls back to Lambda's H100 when the tenant allows other providers,
//! and does not when it does not (the default) or has no Lambda account. Needs
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
/// acme's Lambda API key (the scenario's principal) and the variable naming it.
const ACME_KEY: &str = "secret_acme_0123456789";
const ACME_KEY_ENV: &str = "LAMBDA_KEY_ACME";
/// Two in stock.
const LAMBDA_H100: &str = "lambda/us-south-2//gpu_8x_h100_sxm5/on_demand";
/// A tenant with an AWS role and no Lambda account.
const AWS_ONLY: &str = "awsonly";

async fn harness() -> Harness {
    Harness::start_with_tenants(
        fixtures::scenario("cross-provider"),
        [
            tenant(ACME)
                .role(ROLE_ACME, "ext-acme")
                .lambda(ACME_KEY_ENV, 4),
            tenant(AWS_ONLY).role(ROLE_ACME, "ext-acme"),
        ],
    )
    .await
}

/// The launcher binary with Lambda's endpoint (cloudsim) and acme's key in its environment.
fn spawn(h: &Harness, env: &[(&str, &str)], log: &str) -> capsight_testkit::process::ChildGuard {
    let url = h.sandbox.sim().url();
    let mut all = vec![
        ("CAPSIGHT_LAMBDA__ENDPOINT", url.as_str()),
        (ACME_KEY_ENV, ACME_KEY),
    ];
    all.extend_from_slice(env);
    h.spawn_binary(&all, log)
}

/// The job's live instances on Lambda (us-south-2), found by the name carrying its token.
async fn lambda_instances(h: &Harness, job_id: &str) -> Vec<Instance> {
    named_instances(
        &h.sandbox
            .sim()
            .lambda_adapter(ACME_KEY, "us-south-2", quick_retries(1)),
        job_id,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lambda_launch_runs_with_one_instance_also_after_a_kill_9_right_after_the_cloud_call() {
    let h = harness().await;

    // plain: queued -> preflight -> provisioning -> running, one instance named by the token
    let plain = job(ACME, LAMBDA_H100, 0, false);
    h.submit(&plain).await;
    let worker = spawn(&h, &[], "plain");
    let events = h.wait_state(ACME, &plain.job_id, "running", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning running");
    let instances = lambda_instances(&h, &plain.job_id).await;
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(events[3].provider, "lambda");
    assert_eq!(events[3].instance_id, instances[0].id.as_str());
    assert_eq!(
        instances[0].client_token.as_deref(),
        Some(plain.job_id.as_str())
    );
    worker.kill();

    // killed right after Lambda accepted the launch: the restart finds it, launches nothing
    let crashed = job(ACME, LAMBDA_H100, 0, false);
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
    assert_eq!(lambda_instances(&h, &crashed.job_id).await.len(), 1);

    let worker = spawn(&h, &[], "restart");
    let events = h.wait_state(ACME, &crashed.job_id, "running", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning running");
    let instances = lambda_instances(&h, &crashed.job_id).await;
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(events[3].instance_id, instances[0].id.as_str());
    worker.kill();
    h.sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_aws_capacity_failure_falls_back_to_lambda_only_when_the_tenant_allows_it() {
    let h = harness().await;
    h.put_scores(&[score(P5_AZ1, 20, 0.8), score(LAMBDA_H100, 90, 0.8)])
        .await;
    let worker = spawn(&h, &[], "launcher");

    // the default: other providers not allowed -> no alternative, the job fails on AWS
    let default = job(ACME, P5_AZ1, 2, false);
    h.submit(&default).await;
    let events = h.wait_state(ACME, &default.job_id, "failed", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning failed");
    assert!(events.iter().all(|e| e.provider != "lambda"), "{events:?}");
    assert!(lambda_instances(&h, &default.job_id).await.is_empty());

    // allowed, but the tenant has no Lambda account: never falls back there
    let no_account = job(AWS_ONLY, P5_AZ1, 2, true);
    h.submit(&no_account).await;
    let events = h
        .wait_state(AWS_ONLY, &no_account.job_id, "failed", LIMIT)
        .await;
    assert_eq!(states(&events), "queued preflight provisioning failed");
    assert!(events.iter().all(|e| e.provider != "lambda"), "{events:?}");

    // allowed: falls back to Lambda's H100 and runs there
    let allowed = job(ACME, P5_AZ1, 2, true);
    h.submit(&allowed).await;
    let events = h.wait_state(ACME, &allowed.job_id, "running", LIMIT).await;
    assert_eq!(
        states(&events),
        "queued preflight provisioning provisioning running"
    );
    assert_eq!(events[2].provider, "aws");
    assert_eq!(events[3].provider, "lambda");
    assert_eq!(events[3].region, "us-south-2");
    assert_eq!(events[3].instance_type, "gpu_8x_h100_sxm5");
    assert!(
        events[3].detail.contains("InsufficientInstanceCapacity"),
        "{}",
        events[3].detail
    );
    let on_lambda = lambda_instances(&h, &allowed.job_id).await;
    assert_eq!(on_lambda.len(), 1, "{on_lambda:?}");
    assert_eq!(
        on_lambda[0].client_token.as_deref(),
        Some(format!("{}-2", allowed.job_id).as_str())
    );
    assert_eq!(events[4].instance_id, on_lambda[0].id.as_str());
    assert!(h.instances_of(&allowed.job_id).await.is_empty());
    worker.kill();
    h.sandbox.cleanup().await;
}
