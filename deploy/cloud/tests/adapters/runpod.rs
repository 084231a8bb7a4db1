//! The RunPod adapter over HTTP against cloudsim's RunPod GraphQL API (scenario
//! `tests/fixtures/scenarios/runpod.toml`), through the same reqwest client production uses:
//! the stock listing, deploys that take stock and are idempotent by pod name, terminations
//! that return it, spot pods, and the classification of every capacity, quota (balance, GPU
//! limit) and permission error RunPod answers.

use capsight_cloud::{
    CloudAdapter, CloudError, InstanceState, LaunchRequest, Market, Permission, Provider,
    runpod::RunPodAdapter,
};
use capsight_proto::domain::{ErrorClass, StockLevel};
use capsight_testkit::cloud::{Sim, quick_retries};

use crate::{assert_unsupported, assert_zoneless_refusals, denied, launch, launch_error};

const OPS: &str = "rpa_OPS0123456789";
const SMALL: &str = "rpa_SMALL0123456789";
const BROKE: &str = "rpa_BROKE0123456789";
const H100: &str = "1x_h100_sxm";
const H100X8: &str = "8x_h100_sxm";
const RTX: &str = "1x_rtx_4090";
const NO_STOCK: &str = "There are no longer any instances available with the requested \
                        specifications. Please refresh and try again.";

async fn sim() -> Sim {
    crate::sim("runpod").await
}

fn adapter(sim: &Sim, key: &str, cloud: &str) -> RunPodAdapter {
    sim.runpod_adapter(key, cloud, quick_retries(1))
}

fn request(t: &str, token: &str) -> LaunchRequest {
    launch(Provider::RunPod, t, None, token)
}

async fn stock_of(a: &RunPodAdapter, t: &str, cloud: &str) -> (StockLevel, Option<f64>) {
    let s = a
        .stock()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.instance_type.as_str() == t && s.cloud.as_str() == cloud)
        .unwrap();
    (s.stock, s.usd_per_hour)
}

fn class_and_message(e: &CloudError) -> (ErrorClass, String) {
    (
        e.class(),
        e.classified()
            .map(|c| c.message.clone())
            .unwrap_or_default(),
    )
}

#[tokio::test]
async fn stock_deploys_idempotency_and_terminate() {
    let sim = sim().await;
    let secure = adapter(&sim, OPS, "secure");
    assert_eq!(secure.provider(), Provider::RunPod);
    assert!(secure.zones().await.unwrap().is_empty());

    // the listing: every catalog type in both clouds, with RunPod's stock status
    let listing = secure.stock().await.unwrap();
    assert_eq!(
        listing.len(),
        2 * capsight_testkit::cloud::catalog()
            .iter()
            .filter(|g| g.provider == Provider::RunPod)
            .count()
    );
    let (level, price) = stock_of(&secure, H100, "secure").await;
    assert_eq!(level, StockLevel::High);
    assert!((price.unwrap() - 2.69).abs() < 1e-9, "{price:?}");
    assert_eq!(
        stock_of(&secure, H100, "community").await.0,
        StockLevel::None
    );
    let (level, price) = stock_of(&secure, H100X8, "secure").await;
    assert_eq!(level, StockLevel::Medium);
    assert!((price.unwrap() - 21.52).abs() < 1e-6, "{price:?}");
    assert_eq!(stock_of(&secure, RTX, "community").await.0, StockLevel::Low);
    // no pool at all: none, no price
    assert_eq!(
        stock_of(&secure, "1x_l40s", "secure").await,
        (StockLevel::None, None)
    );

    // a deploy takes a pod of secure H100s (four of four in stock: High); the pod runs once
    // provisioned
    let launched = secure.launch(&request(H100, "job-1")).await.unwrap();
    assert_eq!(launched.len(), 1);
    let id = launched[0].id.clone();
    assert_eq!(launched[0].state, InstanceState::Pending);
    assert_eq!(launched[0].client_token.as_deref(), Some("job-1"));
    assert_eq!(launched[0].instance_type, H100);
    assert_eq!(sim.stock("runpod/secure//1x_h100_sxm/on_demand").await, 3);
    sim.advance(180).await;
    let described = secure.describe(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(described[0].state, InstanceState::Running);
    assert_eq!(described[0].market, Market::OnDemand);
    assert_eq!(secure.gpus_in_use().await.unwrap(), 1);

    // the same token again: the same pod, no new stock taken
    let again = secure.launch(&request(H100, "job-1")).await.unwrap();
    assert_eq!(again.iter().map(|i| &i.id).collect::<Vec<_>>(), [&id]);
    assert_eq!(sim.stock("runpod/secure//1x_h100_sxm/on_demand").await, 3);
    // three pods under one token: the one there and two more; one of four left is Medium
    let three = LaunchRequest {
        count: 3,
        ..request(H100, "job-1")
    };
    assert_eq!(secure.launch(&three).await.unwrap().len(), 3);
    assert_eq!(
        stock_of(&secure, H100, "secure").await.0,
        StockLevel::Medium
    );

    // terminate returns the stock; terminated pods are no longer described
    let all = secure.describe(&[]).await.unwrap();
    let ids: Vec<_> = all.iter().map(|i| i.id.clone()).collect();
    let changes = secure.terminate(&ids).await.unwrap();
    assert!(
        changes
            .iter()
            .all(|c| c.current == InstanceState::Terminated)
    );
    assert_eq!(sim.stock("runpod/secure//1x_h100_sxm/on_demand").await, 4);
    assert!(secure.describe(&ids).await.unwrap().is_empty());
    // terminating a pod RunPod no longer knows is not an error: it is gone
    assert_eq!(secure.terminate(&ids[..1]).await.unwrap().len(), 1);
}

#[tokio::test]
async fn spot_pods_bid_the_minimum_and_need_a_spot_pool() {
    let sim = sim().await;
    let community = adapter(&sim, OPS, "community");
    let spot = request(RTX, "spot-1").market(Market::Spot);
    let pods = community.launch(&spot).await.unwrap();
    assert_eq!(pods[0].market, Market::Spot);
    assert_eq!(sim.stock("runpod/community//1x_rtx_4090/spot").await, 1);
    sim.advance(180).await;
    // a spot bid in a cloud without a spot pool: RunPod's no-stock answer (another token: pods
    // are found by name in every cloud type)
    let elsewhere = request(RTX, "spot-2").market(Market::Spot);
    let e = launch_error(&adapter(&sim, OPS, "secure"), &elsewhere).await;
    assert_eq!(
        class_and_message(&e),
        (ErrorClass::Capacity, NO_STOCK.to_owned())
    );
}

#[tokio::test]
async fn every_capacity_quota_and_permission_error_is_classified() {
    let sim = sim().await;
    // capacity: community has no single H100s
    let e = launch_error(&adapter(&sim, OPS, "community"), &request(H100, "cap-1")).await;
    assert_eq!(
        class_and_message(&e),
        (ErrorClass::Capacity, NO_STOCK.to_owned()),
        "{e}"
    );
    assert_eq!(e.code(), Some("200"));

    // quota: the small account's GPU limit is 1
    let small = adapter(&sim, SMALL, "secure");
    small.launch(&request(H100, "q-1")).await.unwrap();
    let e = launch_error(&small, &request(H100, "q-2")).await;
    assert_eq!(e.class(), ErrorClass::Quota, "{e}");
    assert!(e.to_string().contains("maximum number of GPUs"), "{e}");
    // quota: a balance below an hour of the pod
    let e = launch_error(&adapter(&sim, BROKE, "secure"), &request(H100, "b-1")).await;
    assert_eq!(e.class(), ErrorClass::Quota, "{e}");
    assert!(e.to_string().contains("balance is too low"), "{e}");
    // the broke account has nothing to pay with, but its key is fine
    let broke = adapter(&sim, BROKE, "secure");
    assert_eq!(broke.balance().await.unwrap(), 0.5);
    assert_eq!(
        broke
            .check_launch_permission(&request(H100, "p-1"))
            .await
            .unwrap(),
        Permission::Allowed
    );

    // permission: an unknown key, on every call
    let nobody = adapter(&sim, "rpa_NOBODY", "secure");
    let e = launch_error(&nobody, &request(H100, "p-1")).await;
    assert_eq!((e.class(), e.code()), (ErrorClass::Permission, Some("401")));
    let e = nobody.stock().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permission, "{e}");
    let permission = nobody.check_launch_permission(&request(H100, "p-1")).await;
    assert_eq!(denied(permission.unwrap()).0, "401");
}

#[tokio::test]
async fn throttling_and_failures_are_retried_and_unsupported_operations_are_typed() {
    let sim = sim().await;
    // one attempt: the 429 is the answer, classified throttled
    sim.fault("runpod/myself", "429", 1).await;
    let one = adapter(&sim, OPS, "secure");
    let e = launch_error(&one, &request(H100, "t-1")).await;
    assert_eq!(e.class(), ErrorClass::Throttled, "{e}");
    // three attempts: retried through a 429 and RunPod's "Something went wrong"
    sim.fault("runpod/myself", "429", 1).await;
    sim.fault("runpod/podFindAndDeployOnDemand", "boom", 1)
        .await;
    let three = sim.runpod_adapter(OPS, "secure", quick_retries(3));
    let launched = three.launch(&request(H100, "t-1")).await.unwrap();
    assert_eq!(launched.len(), 1);
    assert_eq!(sim.stock("runpod/secure//1x_h100_sxm/on_demand").await, 3);

    // what RunPod's API has no operation for, and launches naming a zone or a name it cannot
    // take
    assert_zoneless_refusals(Provider::RunPod, &three, &launched[0].id, |token| {
        request(H100, token)
    })
    .await;
    // nor tags, nor capacity blocks
    let block = request(H100, "cb-1").market(Market::CapacityBlock);
    assert_unsupported(
        Provider::RunPod,
        [
            three.describe_tagged("capsight:job").await.unwrap_err(),
            launch_error(&three, &block).await,
        ],
    );
    // types outside the catalog are refused before any call
    let unknown = request("2x_h100_sxm", "u-1");
    assert!(matches!(
        launch_error(&three, &unknown).await,
        CloudError::Invalid(_)
    ));
}
