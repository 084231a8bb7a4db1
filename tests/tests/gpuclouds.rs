//! The GPU-clouds collector end to end on the real stack: cloudsim with a Lambda section
//! (scenario `lambda`) or a RunPod section (scenario `runpod`), the `capsight-gpuclouds`
//! collector polling the provider's listing, the `capsight-scorer` binary, the broker and
//! ClickHouse.
//!
//! - Lambda: a key with capacity scores above one without; then a launch (through the
//!   production Lambda adapter) takes the last H100 of the region and, at the next poll, the
//!   key's score drops; terminating it brings the score back.
//! - RunPod (config `gpuclouds-runpod`): a key listed with High stock scores above one with
//!   Low stock, which scores above one with none; the marketplace stock is in each score's
//!   evidence. Then deploys (through the production RunPod adapter) take the High key's stock
//!   to none and its score falls.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::time::Duration;

use capsight_cloud::{CloudAdapter, InstanceType, LaunchRequest, Provider};
use capsight_proto::domain::{Feature, Label, Score};
use capsight_testkit::{Sandbox, cloud::quick_retries};

const LAMBDA_OPS: &str = "secret_ops_0123456789";
/// One H100 in stock at the start.
const LAMBDA_STOCKED: &str = "lambda/us-south-2//gpu_8x_h100_sxm5/on_demand";
/// A pool with none.
const LAMBDA_EMPTY: &str = "lambda/us-west-3//gpu_8x_h100_sxm5/on_demand";

const RUNPOD_OPS: &str = "rpa_OPS0123456789";
/// Four of four single H100s in Secure Cloud: High.
const RUNPOD_HIGH: &str = "runpod/secure//1x_h100_sxm/on_demand";
/// One of ten RTX 4090s in Community Cloud: Low.
const RUNPOD_LOW: &str = "runpod/community//1x_rtx_4090/on_demand";
/// No single H100s in Community Cloud: none.
const RUNPOD_NONE: &str = "runpod/community//1x_h100_sxm/on_demand";

/// Lambda's listing: 1 with capacity, 0 without.
fn listed(s: &Score) -> Option<f64> {
    s.evidence_of(Feature::ListedAvailability).map(|e| e.value)
}

/// RunPod's stock status: 1 High, 0 none.
fn stock(s: &Score) -> Option<f64> {
    s.evidence_of(Feature::MarketplaceStock).map(|e| e.value)
}

#[tokio::test(flavor = "multi_thread")]
async fn lambda_availability_is_scored_and_a_launch_that_takes_the_last_gpu_drops_the_score() {
    let sandbox = Sandbox::scoring("lambda").scenario("lambda").start().await;
    let _scorer = sandbox.spawn_scorer();
    let _collector = sandbox.spawn_gpuclouds(sandbox.sim().lambda_env(LAMBDA_OPS));

    // ten polls in: the key with stock is available, the one without is not
    let before = sandbox
        .wait_for_signal_counts(
            Duration::from_secs(120),
            &[LAMBDA_STOCKED, LAMBDA_EMPTY],
            10,
        )
        .await;
    let (stocked, empty) = (&before[LAMBDA_STOCKED], &before[LAMBDA_EMPTY]);
    assert!(stocked.score > empty.score, "{stocked:?} vs {empty:?}");
    assert_eq!(stocked.label, Label::Available, "{stocked:?}");
    assert_eq!(empty.label, Label::Unavailable, "{empty:?}");
    assert_eq!(listed(stocked), Some(1.0), "{stocked:?}");
    assert_eq!(listed(empty), Some(0.0), "{empty:?}");

    // a launch takes the last H100 of us-south-2
    let lambda = sandbox
        .sim()
        .lambda_adapter(LAMBDA_OPS, "us-south-2", quick_retries(1));
    let h100 = InstanceType::parse("t", Provider::Lambda, "gpu_8x_h100_sxm5").unwrap();
    let launched = lambda
        .launch(&LaunchRequest::new(h100, None, "", "e2e-job-1"))
        .await
        .unwrap();
    assert_eq!(launched.len(), 1);

    // the next poll lists no capacity there: the score drops below available
    let after = sandbox
        .wait_for_scores(Duration::from_secs(120), |s| {
            s.get(LAMBDA_STOCKED)
                .is_some_and(|s| listed(s) == Some(0.0) && s.label != Label::Available)
        })
        .await;
    let dropped = &after[LAMBDA_STOCKED];
    assert!(dropped.score < stocked.score, "{stocked:?} -> {dropped:?}");
    assert!(dropped.score < 50, "{dropped:?}");

    // terminating it gives the capacity back and the score recovers
    lambda.terminate(&[launched[0].id.clone()]).await.unwrap();
    let back = sandbox
        .wait_for_scores(Duration::from_secs(120), |s| {
            s.get(LAMBDA_STOCKED)
                .is_some_and(|s| listed(s) == Some(1.0) && s.label == Label::Available)
        })
        .await;
    assert!(back[LAMBDA_STOCKED].score > dropped.score);
    println!(
        "with capacity {} ({}), without {} ({}); after the launch {} ({}); after the terminate {} ({})",
        stocked.score,
        stocked.label,
        empty.score,
        empty.label,
        dropped.score,
        dropped.label,
        back[LAMBDA_STOCKED].score,
        back[LAMBDA_STOCKED].label
    );
    sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runpod_stock_is_scored_high_above_low_above_none_and_follows_deploys() {
    let sandbox = Sandbox::scoring("runpod")
        .profile("gpuclouds-runpod")
        .scenario("runpod")
        .start()
        .await;
    let _scorer = sandbox.spawn_scorer();
    let _collector = sandbox.spawn_gpuclouds(sandbox.sim().runpod_env(RUNPOD_OPS));

    let before = sandbox
        .wait_for_signal_counts(
            Duration::from_secs(120),
            &[RUNPOD_HIGH, RUNPOD_LOW, RUNPOD_NONE],
            10,
        )
        .await;
    let (high, low, none) = (
        &before[RUNPOD_HIGH],
        &before[RUNPOD_LOW],
        &before[RUNPOD_NONE],
    );
    assert!(high.score > low.score, "{high:?} vs {low:?}");
    assert!(low.score > none.score, "{low:?} vs {none:?}");
    assert_eq!(stock(high), Some(1.0), "{high:?}");
    assert_eq!(stock(none), Some(0.0), "{none:?}");

    // four deploys take Secure Cloud's single H100s: the next polls list none
    let runpod = sandbox
        .sim()
        .runpod_adapter(RUNPOD_OPS, "secure", quick_retries(1));
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
            s.get(RUNPOD_HIGH).is_some_and(|s| stock(s) == Some(0.0))
        })
        .await;
    let emptied = &after[RUNPOD_HIGH];
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
