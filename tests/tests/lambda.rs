//! Lambda Cloud end to end on the real stack: cloudsim with a Lambda section (scenario
//! `lambda`), the `capsight-gpuclouds` collector polling its instance-types listing, the
//! `capsight-scorer` binary, the broker and ClickHouse. A Lambda key with capacity scores above
//! one without; then a launch (through the production Lambda adapter) takes the last H100 of
//! the region and, at the next poll, the key's score drops.

#![allow(
    clippy::unwrap_used,
    reason = "a panic in a test is a failed assertion"
)]

use std::time::Duration;

use capsight_cloud::{CloudAdapter, InstanceType, LaunchRequest, Provider};
use capsight_e2e::bin;
use capsight_proto::domain::{Feature, Label, Score};
use capsight_testkit::{
    Sandbox,
    cloud::{Sim, quick_retries},
    fixtures::scenario,
};

const OPS: &str = "secret_ops_0123456789";
/// One H100 in stock at the start.
const STOCKED: &str = "lambda/us-south-2//gpu_8x_h100_sxm5/on_demand";
/// A pool with none.
const EMPTY: &str = "lambda/us-west-3//gpu_8x_h100_sxm5/on_demand";

fn listed(s: &Score) -> Option<f64> {
    s.evidence
        .iter()
        .find(|e| e.feature == Feature::ListedAvailability)
        .map(|e| e.value)
}

#[tokio::test(flavor = "multi_thread")]
async fn lambda_availability_is_scored_and_a_launch_that_takes_the_last_gpu_drops_the_score() {
    let sandbox = Sandbox::builder("lambda")
        .topics(1)
        .database()
        .profile("scorer")
        .cloudsim(Sim::builder(scenario("lambda")))
        .start()
        .await;
    let _scorer = sandbox.spawn_scorer();
    let _collector = sandbox.spawn(
        "capsight-gpuclouds",
        sandbox
            .command(bin("capsight-gpuclouds"))
            .envs(sandbox.sim().lambda_env(OPS))
            .env("CAPSIGHT_GPUCLOUDS__INTERVAL", "1s")
            .env("CAPSIGHT_CLOUD__MAX_ATTEMPTS", "1"),
    );

    // ten polls in: the key with stock is available, the one without is not
    let before = sandbox
        .wait_for_scores(Duration::from_secs(120), |s| {
            [STOCKED, EMPTY]
                .iter()
                .all(|k| s.get(*k).is_some_and(|s| s.signal_count >= 10))
        })
        .await;
    let (stocked, empty) = (&before[STOCKED], &before[EMPTY]);
    assert!(stocked.score > empty.score, "{stocked:?} vs {empty:?}");
    assert_eq!(stocked.label, Label::Available, "{stocked:?}");
    assert_eq!(empty.label, Label::Unavailable, "{empty:?}");
    assert_eq!(listed(stocked), Some(1.0), "{stocked:?}");
    assert_eq!(listed(empty), Some(0.0), "{empty:?}");

    // a launch takes the last H100 of us-south-2
    let lambda = sandbox
        .sim()
        .lambda_adapter(OPS, "us-south-2", quick_retries(1));
    let h100 = InstanceType::parse("t", Provider::Lambda, "gpu_8x_h100_sxm5").unwrap();
    let launched = lambda
        .launch(&LaunchRequest::new(h100, None, "", "e2e-job-1"))
        .await
        .unwrap();
    assert_eq!(launched.len(), 1);

    // the next poll lists no capacity there: the score drops below available
    let after = sandbox
        .wait_for_scores(Duration::from_secs(120), |s| {
            s.get(STOCKED)
                .is_some_and(|s| listed(s) == Some(0.0) && s.label != Label::Available)
        })
        .await;
    let dropped = &after[STOCKED];
    assert!(dropped.score < stocked.score, "{stocked:?} -> {dropped:?}");
    assert!(dropped.score < 50, "{dropped:?}");

    // terminating it gives the capacity back and the score recovers
    lambda.terminate(&[launched[0].id.clone()]).await.unwrap();
    let back = sandbox
        .wait_for_scores(Duration::from_secs(120), |s| {
            s.get(STOCKED)
                .is_some_and(|s| listed(s) == Some(1.0) && s.label == Label::Available)
        })
        .await;
    assert!(back[STOCKED].score > dropped.score);
    println!(
        "with capacity {} ({}), without {} ({}); after the launch {} ({}); after the terminate {} ({})",
        stocked.score,
        stocked.label,
        empty.score,
        empty.label,
        dropped.score,
        dropped.label,
        back[STOCKED].score,
        back[STOCKED].label
    );
    sandbox.cleanup().await;
}
