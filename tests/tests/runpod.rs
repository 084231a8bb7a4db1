//! RunPod end to end on the real stack: cloudsim with a RunPod section (scenario `runpod`),
//! the `capsight-gpuclouds` collector polling RunPod's stock status (config
//! `gpuclouds-runpod`), the `capsight-scorer` binary, the broker and ClickHouse. A key RunPod
//! lists with High stock scores above one with Low stock, which scores above one with none;
//! the marketplace stock is in each score's evidence. Then deploys (through the production
//! RunPod adapter) take the High key's stock to none and its score falls.

#![allow(
    clippy::unwrap_used,
    reason = "a panic in a test is a failed assertion"
)]

use std::time::Duration;

use capsight_cloud::{CloudAdapter, InstanceType, LaunchRequest, Provider};
use capsight_e2e::bin;
use capsight_proto::domain::{Feature, Score};
use capsight_testkit::{
    Sandbox,
    cloud::{Sim, quick_retries},
    fixtures::scenario,
};

const OPS: &str = "rpa_OPS0123456789";
/// Four of four single H100s in Secure Cloud: High.
const HIGH: &str = "runpod/secure//1x_h100_sxm/on_demand";
/// One of ten RTX 4090s in Community Cloud: Low.
const LOW: &str = "runpod/community//1x_rtx_4090/on_demand";
/// No single H100s in Community Cloud: none.
const NONE: &str = "runpod/community//1x_h100_sxm/on_demand";

fn stock(s: &Score) -> Option<f64> {
    s.evidence
        .iter()
        .find(|e| e.feature == Feature::MarketplaceStock)
        .map(|e| e.value)
}

#[tokio::test(flavor = "multi_thread")]
async fn runpod_stock_is_scored_high_above_low_above_none_and_follows_deploys() {
    let sandbox = Sandbox::builder("runpod")
        .topics(1)
        .database()
        .profile("scorer")
        .profile("gpuclouds-runpod")
        .cloudsim(Sim::builder(scenario("runpod")))
        .start()
        .await;
    let _scorer = sandbox.spawn_scorer();
    let _collector = sandbox.spawn(
        "capsight-gpuclouds",
        sandbox
            .command(bin("capsight-gpuclouds"))
            .envs(sandbox.sim().runpod_env(OPS))
            .env("CAPSIGHT_GPUCLOUDS__INTERVAL", "1s")
            .env("CAPSIGHT_CLOUD__MAX_ATTEMPTS", "1"),
    );

    let before = sandbox
        .wait_for_scores(Duration::from_secs(120), |s| {
            [HIGH, LOW, NONE]
                .iter()
                .all(|k| s.get(*k).is_some_and(|s| s.signal_count >= 10))
        })
        .await;
    let (high, low, none) = (&before[HIGH], &before[LOW], &before[NONE]);
    assert!(high.score > low.score, "{high:?} vs {low:?}");
    assert!(low.score > none.score, "{low:?} vs {none:?}");
    assert_eq!(stock(high), Some(1.0), "{high:?}");
    assert_eq!(stock(none), Some(0.0), "{none:?}");

    // four deploys take Secure Cloud's single H100s: the next polls list none
    let runpod = sandbox
        .sim()
        .runpod_adapter(OPS, "secure", quick_retries(1));
    let h100 = InstanceType::parse("t", Provider::RunPod, "1x_h100_sxm").unwrap();
    let pods = runpod
        .launch(&LaunchRequest {
            count: 4,
            ..LaunchRequest::new(h100, None, "", "e2e-runpod-1")
        })
        .await
        .unwrap();
    assert_eq!(pods.len(), 4);
    let after = sandbox
        .wait_for_scores(Duration::from_secs(120), |s| {
            s.get(HIGH).is_some_and(|s| stock(s) == Some(0.0))
        })
        .await;
    let emptied = &after[HIGH];
    assert!(emptied.score < high.score, "{high:?} -> {emptied:?}");
    println!(
        "RunPod stock High {} ({}), Low {} ({}), none {} ({}); High after four deploys {} ({})",
        high.score,
        high.label,
        low.score,
        low.label,
        none.score,
        none.label,
        emptied.score,
        emptied.label
    );
    sandbox.cleanup().await;
}
