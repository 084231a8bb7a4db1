//! Launches on the other providers and across to them, with the real `capsight-launcher`
//! binary on the local stack and cloudsim (one scenario per provider, `cross-provider*`).
//! Needs `cargo build -p capsight-launcher --bins`.
//!
//! * Lambda Cloud (`cross-provider`) and RunPod (`cross-provider-runpod`), the API-key clouds
//!   (`launcher::keyed`): a job runs with exactly one instance (pod), also when the launcher is
//!   `kill -9`ed right after the cloud call; an AWS H100 job that fails for capacity falls back
//!   to the cloud's same-GPU type when the tenant allows other providers, and does not when it
//!   does not (the default) or has no account there; no instance outlives its job.
//! * Google Cloud (`cross-provider-gcp`): a GCP job runs with exactly one instance named by its
//!   token; an AWS H100 job that fails for capacity falls back to GCP's H100 (a3-highgpu-8g)
//!   and runs there when the tenant allows other providers, and does not when it does not. The
//!   tenant's service-account key file is at the path its registered variable holds.
//! * Azure (`cross-provider-azure`): an AWS H100 job and a Lambda H100 job that fail for
//!   capacity fall back to Azure's H100 (same GPU model and count) when the tenant allows other
//!   providers, and run there as the tenant's own app registration, one VM named by the
//!   attempt's client token.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod launcher;

use std::time::Duration;

use capsight_cloud::{CloudAdapter, Instance, InstanceState};
use capsight_testkit::{
    cloud::{AZURE_DIRECTORY, ROLE_ACME, instances_of, quick_retries},
    fixtures,
    signals::score,
    tenants::{TenantSpec, tenant},
};
use launcher::{
    ACME, Harness, P5_AZ1, assert_fell_back, cross_provider_job as job,
    keyed::{
        KeyedCloud, falls_back_only_with_an_account, no_instance_outlives_its_job,
        runs_once_after_a_kill_9,
    },
    named_instances_except, states,
};

const LIMIT: Duration = Duration::from_secs(90);
/// Lambda's H100 (two in stock in `cross-provider`, none in `cross-provider-azure`).
const LAMBDA_H100: &str = "lambda/us-south-2//gpu_8x_h100_sxm5/on_demand";

/// A harness on `scenario` whose tenant acme has an AWS role and what `register` adds.
async fn harness(scenario: &str, register: impl FnOnce(TenantSpec) -> TenantSpec) -> Harness {
    Harness::start_with_tenants(
        fixtures::scenario(scenario),
        [register(tenant(ACME).role(ROLE_ACME, "ext-acme"))],
    )
    .await
}

const LAMBDA: KeyedCloud = KeyedCloud {
    provider: "lambda",
    scenario: "cross-provider",
    key: "secret_acme_0123456789",
    key_env: "LAMBDA_KEY_ACME",
    endpoint_env: "CAPSIGHT_LAMBDA__ENDPOINT",
    limit: 4,
    register: |t, env, limit| t.lambda(env, limit),
    adapter: |sim, key, region| -> Box<dyn CloudAdapter> {
        Box::new(sim.lambda_adapter(key, region, quick_retries(1)))
    },
    plain: (LAMBDA_H100, 0),
    fallback: (LAMBDA_H100, "us-south-2", "gpu_8x_h100_sxm5"),
    spare: "gpu_1x_a100_sxm4",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lambda_launch_runs_with_one_instance_also_after_a_kill_9_right_after_the_cloud_call() {
    runs_once_after_a_kill_9(&LAMBDA).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_aws_capacity_failure_falls_back_to_lambda_only_when_the_tenant_allows_it() {
    falls_back_only_with_an_account(&LAMBDA).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_lambda_instance_outlives_its_job() {
    no_instance_outlives_its_job(&LAMBDA).await;
}

const RUNPOD: KeyedCloud = KeyedCloud {
    provider: "runpod",
    scenario: "cross-provider-runpod",
    key: "rpa_ACME0123456789",
    key_env: "RUNPOD_KEY_ACME",
    endpoint_env: "CAPSIGHT_RUNPOD__ENDPOINT",
    limit: 16,
    register: |t, env, limit| t.runpod(env, limit),
    adapter: |sim, key, region| -> Box<dyn CloudAdapter> {
        Box::new(sim.runpod_adapter(key, region, quick_retries(1)))
    },
    // four single H100s in Secure Cloud: two after the two jobs
    plain: ("runpod/secure//1x_h100_sxm/on_demand", 2),
    // two 8x H100 pods: the same GPU model and count as a p5.48xlarge
    fallback: (
        "runpod/secure//8x_h100_sxm/on_demand",
        "secure",
        "8x_h100_sxm",
    ),
    spare: "1x_h100_sxm",
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runpod_launch_runs_with_one_pod_also_after_a_kill_9_right_after_the_cloud_call() {
    runs_once_after_a_kill_9(&RUNPOD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_aws_capacity_failure_falls_back_to_runpod_only_with_a_runpod_account() {
    falls_back_only_with_an_account(&RUNPOD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_runpod_instance_outlives_its_job() {
    no_instance_outlives_its_job(&RUNPOD).await;
}

/// The variable holding the path of acme's GCP service-account key file.
const ACME_CREDENTIALS_ENV: &str = "CAPSIGHT_GCP_CREDENTIALS_ACME";
/// Two in stock.
const GCP_H100: &str = "gcp/us-central1/us-central1-a/a3-highgpu-8g/on_demand";

/// The launcher binary with Google's endpoint (cloudsim) and acme's key file in its
/// environment.
fn spawn_on_gcp(h: &Harness, log: &str) -> capsight_testkit::process::ChildGuard {
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

/// The job's instances in acme's project not terminated, found by the token they carry.
async fn gcp_instances(h: &Harness, job_id: &str) -> Vec<Instance> {
    let acme = h
        .sandbox
        .sim()
        .gcp_adapter("acme", "acme-ml", "us-central1", quick_retries(1));
    // shutting down still counts: "nothing on GCP" means nothing was launched there
    named_instances_except(&acme, job_id, &[InstanceState::Terminated]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gcp_launch_runs_and_an_aws_capacity_failure_falls_back_to_gcp_when_allowed() {
    let h = harness("cross-provider-gcp", |t| {
        t.gcp("acme-ml", ACME_CREDENTIALS_ENV)
    })
    .await;
    h.put_scores(&[score(P5_AZ1, 20, 0.8), score(GCP_H100, 90, 0.8)])
        .await;
    let worker = spawn_on_gcp(&h, "launcher");

    // on GCP directly: queued -> preflight -> provisioning -> running, one instance
    let plain = job(ACME, GCP_H100, 0, false);
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
    let default = job(ACME, P5_AZ1, 2, false);
    h.submit(&default).await;
    let events = h.wait_state(ACME, &default.job_id, "failed", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning failed");
    assert!(events.iter().all(|e| e.provider != "gcp"), "{events:?}");
    assert!(gcp_instances(&h, &default.job_id).await.is_empty());

    // allowed: AWS has no H100, GCP's runs it
    let allowed = job(ACME, P5_AZ1, 2, true);
    h.submit(&allowed).await;
    let events = h.wait_state(ACME, &allowed.job_id, "running", LIMIT).await;
    assert_eq!(events[3].zone_id, "us-central1-a");
    let on_gcp = gcp_instances(&h, &allowed.job_id).await;
    let fell_back = ("gcp", "a3-highgpu-8g");
    assert_fell_back(&h, &allowed.job_id, &events, fell_back, &on_gcp).await;
    worker.kill();
    h.sandbox.cleanup().await;
}

/// acme's Azure app registration and subscription (the scenario's principal), and the variable
/// holding its client secret.
const ACME_APP: (&str, &str) = (
    "cccccccc-0000-0000-0000-000000000001",
    "secret-acme-azure-0123456789",
);
const ACME_SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000c3";
const ACME_SECRET_ENV: &str = "AZURE_SECRET_ACME";
/// Two in stock.
const AZURE_H100: &str = "azure/eastus/eastus-1/Standard_ND96isr_H100_v5/on_demand";
/// None in stock.
const AZURE_H100_EMPTY: &str = "azure/eastus/eastus-2/Standard_ND96isr_H100_v5/on_demand";

/// The launcher binary with Lambda's and Azure's endpoints (cloudsim) and acme's Lambda key
/// and Azure client secret in its environment.
fn spawn_on_azure(h: &Harness, log: &str) -> capsight_testkit::process::ChildGuard {
    let sim = h.sandbox.sim();
    let url = sim.url();
    let azure = sim.azure_endpoint_env();
    let mut all: Vec<(&str, &str)> = vec![
        (LAMBDA.endpoint_env, url.as_str()),
        (LAMBDA.key_env, LAMBDA.key),
        (ACME_SECRET_ENV, ACME_APP.1),
    ];
    all.extend(azure.iter().map(|(k, v)| (*k, v.as_str())));
    h.spawn_binary(&all, log)
}

/// The job's live VMs in acme's subscription (eastus), found by their job tag.
async fn azure_vms(h: &Harness, job_id: &str) -> Vec<Instance> {
    let acme =
        h.sandbox
            .sim()
            .azure_adapter(ACME_APP, ACME_SUBSCRIPTION, "eastus", quick_retries(1));
    instances_of(&acme, job_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_and_lambda_capacity_failures_fall_back_to_azure_and_run() {
    let h = harness("cross-provider-azure", |t| {
        t.lambda(LAMBDA.key_env, 4).azure(
            AZURE_DIRECTORY,
            ACME_APP.0,
            ACME_SUBSCRIPTION,
            ACME_SECRET_ENV,
        )
    })
    .await;
    h.put_scores(&[
        score(P5_AZ1, 20, 0.8),
        score(LAMBDA_H100, 25, 0.8),
        score(AZURE_H100_EMPTY, 15, 0.8),
        score(AZURE_H100, 90, 0.8),
    ])
    .await;
    let worker = spawn_on_azure(&h, "launcher");

    for (from, provider) in [(P5_AZ1, "aws"), (LAMBDA_H100, "lambda")] {
        // may fall back to other providers, in any region
        let j = job(ACME, from, 2, true);
        h.submit(&j).await;
        let events = h.wait_state(ACME, &j.job_id, "running", LIMIT).await;
        assert_eq!(
            states(&events),
            "queued preflight provisioning provisioning running",
            "{events:?}"
        );
        assert_eq!(events[2].provider, provider);
        assert_eq!(events[3].provider, "azure");
        assert_eq!(events[3].region, "eastus");
        assert_eq!(events[3].instance_type, "Standard_ND96isr_H100_v5");
        let vms = azure_vms(&h, &j.job_id).await;
        assert_eq!(vms.len(), 1, "{vms:?}");
        // attempt 2's client token is the VM's name
        assert_eq!(vms[0].id.as_str(), format!("{}-2", j.job_id));
        assert_eq!(
            vms[0].zone.as_ref().map(ToString::to_string).as_deref(),
            Some("eastus-1")
        );
        assert_eq!(events[4].instance_id, vms[0].id.as_str());
    }
    // both H100s of eastus-1 are taken by the two jobs
    assert_eq!(h.sandbox.sim().stock(AZURE_H100).await, 0);
    worker.kill();
    h.sandbox.cleanup().await;
}
