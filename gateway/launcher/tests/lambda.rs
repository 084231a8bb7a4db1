//! Launches on Lambda Cloud and across providers, with the real `capsight-launcher` binary on
//! the local stack and cloudsim (scenario `cross-provider`): a Lambda job runs with exactly one
//! instance, also when the launcher is `kill -9`ed right after the cloud call; an AWS H100 job
//! that fails for capacity falls back to Lambda's H100 when the tenant allows other providers,
//! and does not when it does not (the default) or has no Lambda account
//! (`launcher::keyed`). Needs `cargo build -p capsight-launcher --bins`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod launcher;

use capsight_cloud::CloudAdapter;
use capsight_testkit::cloud::quick_retries;
use launcher::keyed::{
    KeyedCloud, falls_back_only_with_an_account, no_instance_outlives_its_job,
    runs_once_after_a_kill_9,
};

/// Two in stock.
const LAMBDA_H100: &str = "lambda/us-south-2//gpu_8x_h100_sxm5/on_demand";

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
