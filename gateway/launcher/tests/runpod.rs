//! Launches on RunPod and across providers, with the real `capsight-launcher` binary on the
//! local stack and cloudsim (scenario `cross-provider-runpod`): a RunPod job runs with exactly
//! one pod, also when the launcher is `kill -9`ed right after the cloud call; an AWS H100 job
//! that fails for capacity falls back to RunPod's 8x H100 pod when the tenant allows other
//! providers, and does not when it does not or has no RunPod account (`launcher::keyed`).
//! Needs `cargo build -p capsight-launcher --bins`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod launcher;

use capsight_cloud::CloudAdapter;
use capsight_testkit::cloud::quick_retries;
use launcher::keyed::{
    KeyedCloud, falls_back_only_with_an_account, no_instance_outlives_its_job,
    runs_once_after_a_kill_9,
};

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
