//! The Lambda Cloud adapter over HTTP against cloudsim's Lambda API (scenario
//! `tests/fixtures/scenarios/lambda.toml`), through the same reqwest client production uses:
//! the availability listing, launches that take stock and are idempotent by name,
//! terminations that return it, and the classification of every documented capacity, quota
//! and permission error.

use capsight_cloud::{
    CloudAdapter, InstanceState, LaunchRequest, Market, Permission, Provider, lambda::LambdaAdapter,
};
use capsight_proto::domain::ErrorClass;
use capsight_testkit::cloud::{Sim, quick_retries};

use crate::{
    assert_unsupported, assert_zoneless_refusals, class_and_code, denied, launch, launch_error,
};

const OPS: &str = "secret_ops_0123456789";
const SMALL: &str = "secret_small_0123456789";
const CLOSED: &str = "secret_closed_0123456789";
const H100: &str = "gpu_8x_h100_sxm5";
const A100: &str = "gpu_1x_a100_sxm4";

async fn sim() -> Sim {
    crate::sim("lambda").await
}

fn adapter(sim: &Sim, key: &str, region: &str) -> LambdaAdapter {
    sim.lambda_adapter(key, region, quick_retries(1))
}

fn request(t: &str, token: &str) -> LaunchRequest {
    launch(Provider::Lambda, t, None, token)
}

async fn regions_with(a: &LambdaAdapter, t: &str) -> Vec<String> {
    a.availability()
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.instance_type == t)
        .unwrap()
        .regions_with_capacity
}

#[tokio::test]
async fn availability_launch_idempotency_and_terminate() {
    let sim = sim().await;
    let south = adapter(&sim, OPS, "us-south-2");
    assert_eq!(south.provider(), Provider::Lambda);
    assert!(south.zones().await.unwrap().is_empty());

    // the listing: catalog facts and the regions with stock now
    let listing = south.availability().await.unwrap();
    let h100 = listing.iter().find(|t| t.instance_type == H100).unwrap();
    assert_eq!(h100.gpus, 8);
    assert!((h100.usd_per_hour - 23.92).abs() < 1e-9, "{h100:?}");
    assert_eq!(h100.regions_with_capacity, ["us-south-2"]);
    assert_eq!(regions_with(&south, A100).await, ["us-east-1", "us-west-1"]);

    // a launch takes the last H100 of us-south-2; booting, then active
    let launched = south.launch(&request(H100, "job-1")).await.unwrap();
    assert_eq!(launched.len(), 1);
    let id = launched[0].id.clone();
    assert_eq!(launched[0].state, InstanceState::Pending);
    assert_eq!(launched[0].client_token.as_deref(), Some("job-1"));
    assert!(regions_with(&south, H100).await.is_empty());
    sim.advance(180).await;
    let described = south.describe(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(described[0].state, InstanceState::Running);
    assert_eq!(described[0].instance_type, H100);
    assert_eq!(described[0].market, Market::OnDemand);

    // the same token again: the same instance, no new capacity taken (no capacity error
    // although the pool is empty)
    let again = south.launch(&request(H100, "job-1")).await.unwrap();
    assert_eq!(again.iter().map(|i| &i.id).collect::<Vec<_>>(), [&id]);
    assert_eq!(
        sim.stock("lambda/us-south-2//gpu_8x_h100_sxm5/on_demand")
            .await,
        0
    );
    // the account's instances in the adapter's region only
    assert_eq!(south.describe(&[]).await.unwrap().len(), 1);
    assert!(
        adapter(&sim, OPS, "us-east-1")
            .describe(&[])
            .await
            .unwrap()
            .is_empty()
    );

    // terminate returns the stock; the instance reads terminated
    let changes = south.terminate(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].current, InstanceState::Terminated);
    assert_eq!(regions_with(&south, H100).await, ["us-south-2"]);
    let gone = south.describe(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(gone[0].state, InstanceState::Terminated);
    assert!(south.describe(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn every_documented_capacity_quota_and_permission_error_is_classified() {
    let sim = sim().await;
    // capacity, with the regions Lambda suggests as hints
    let west = adapter(&sim, OPS, "us-west-3");
    let e = launch_error(&west, &request(H100, "cap-1")).await;
    assert_eq!(
        class_and_code(&e),
        (
            ErrorClass::Capacity,
            "instance-operations/launch/insufficient-capacity"
        ),
        "{e}"
    );
    assert_eq!(e.classified().unwrap().region_hints, ["us-south-2"]);

    // quota: the small account may hold one instance
    let small = adapter(&sim, SMALL, "us-east-1");
    small.launch(&request(A100, "q-1")).await.unwrap();
    let e = launch_error(&small, &request(A100, "q-2")).await;
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::Quota, "global/quota-exceeded"),
        "{e}"
    );

    // permission: an unknown key (401) and an inactive account (403), on every call
    for (key, code) in [
        ("secret_nobody", "global/invalid-api-key"),
        (CLOSED, "global/account-inactive"),
    ] {
        let a = adapter(&sim, key, "us-east-1");
        let e = launch_error(&a, &request(A100, "p-1")).await;
        assert_eq!(class_and_code(&e), (ErrorClass::Permission, code), "{e}");
        let e = a.availability().await.unwrap_err();
        assert_eq!(class_and_code(&e), (ErrorClass::Permission, code), "{e}");
        let permission = a.check_launch_permission(&request(A100, "p-1")).await;
        assert_eq!(denied(permission.unwrap()).0, code, "{key}");
    }
    assert_eq!(
        adapter(&sim, OPS, "us-east-1")
            .check_launch_permission(&request(A100, "p-1"))
            .await
            .unwrap(),
        Permission::Allowed
    );

    // a region Lambda does not have: invalid parameters, which says nothing about capacity
    let e = launch_error(&adapter(&sim, OPS, "mars-north-1"), &request(A100, "x-1")).await;
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::Unknown, "global/invalid-parameters")
    );
    // an instance the account does not have is simply not described; terminating it fails
    let ghost = capsight_cloud::InstanceId::new("0123456789abcdef0123456789abcdef").unwrap();
    let ops = adapter(&sim, OPS, "us-east-1");
    assert!(
        ops.describe(std::slice::from_ref(&ghost))
            .await
            .unwrap()
            .is_empty()
    );
    let e = ops.terminate(&[ghost]).await.unwrap_err();
    assert_eq!(e.code(), Some("global/object-does-not-exist"));
}

#[tokio::test]
async fn throttling_is_retried_and_unsupported_operations_are_typed() {
    let sim = sim().await;
    // one attempt: the 429 is the answer, classified throttled
    sim.fault("lambda/launch", "429", 1).await;
    let one = adapter(&sim, OPS, "us-east-1");
    let e = launch_error(&one, &request(A100, "t-1")).await;
    assert_eq!(e.class(), ErrorClass::Throttled, "{e}");
    // three attempts: retried through two 429s, one instance launched
    sim.fault("lambda/launch", "429", 2).await;
    let three = sim.lambda_adapter(OPS, "us-east-1", quick_retries(3));
    let launched = three.launch(&request(A100, "t-1")).await.unwrap();
    assert_eq!(launched.len(), 1);
    assert_eq!(
        sim.stock("lambda/us-east-1//gpu_1x_a100_sxm4/on_demand")
            .await,
        2
    );

    // what Lambda's API has no operation for, and launches naming a zone or a name it cannot
    // take
    assert_zoneless_refusals(Provider::Lambda, &three, &launched[0].id, |token| {
        request(A100, token)
    })
    .await;
    // spot is refused before any call
    let spot = request(A100, "s-1").market(Market::Spot);
    assert_unsupported(Provider::Lambda, [launch_error(&three, &spot).await]);
}
