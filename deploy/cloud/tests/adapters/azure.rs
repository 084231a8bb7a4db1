//! The Azure adapter over HTTP against cloudsim's Entra ID, Resource Manager and Retail Prices
//! endpoints (scenario `tests/fixtures/scenarios/azure.toml`), through the same reqwest client
//! production uses: the subscription's logical zones mapped to physical ones, SKU offerings
//! minus restrictions, usages, Spot list prices, VM creation idempotent by name, deletion giving
//! stock back, and the classification of every documented capacity, quota and permission
//! error.

use capsight_cloud::{
    CloudAdapter, CloudError, InstanceState, InstanceType, LaunchRequest, Market, Permission,
    PlacementScoreQuery, Provider, ZoneId, azure::AzureAdapter,
};
use capsight_proto::domain::ErrorClass;
use capsight_testkit::cloud::{
    AZURE_OPS_APP, AZURE_OPS_SUBSCRIPTION, AZURE_READER_APP, AZURE_SMALL_APP,
    AZURE_SMALL_SUBSCRIPTION, Sim, quick_retries,
};

use crate::{
    assert_unsupported, class_and_code, denied, instance_type, launch, launch_error, zone_of,
};

const H100X8: &str = "Standard_ND96isr_H100_v5";
const H100X1: &str = "Standard_NC40ads_H100_v5";
const A100X1: &str = "Standard_NC24ads_A100_v4";

async fn sim() -> Sim {
    crate::sim("azure").await
}

fn ops(sim: &Sim, region: &str) -> AzureAdapter {
    sim.azure_adapter(
        AZURE_OPS_APP,
        AZURE_OPS_SUBSCRIPTION,
        region,
        quick_retries(1),
    )
}

fn t(name: &str) -> InstanceType {
    instance_type(Provider::Azure, name)
}

/// A capsight zone id (`eastus-2`) as a zone of its region.
fn zone(id: &str) -> ZoneId {
    zone_of(Provider::Azure, id.rsplit_once('-').unwrap().0, id)
}

fn request(name: &str, zone_id: Option<&str>, token: &str) -> LaunchRequest {
    launch(Provider::Azure, name, zone_id.map(zone), token)
}

#[tokio::test]
async fn logical_zones_map_to_physical_ones_and_restrictions_remove_offerings() {
    let sim = sim().await;
    let eastus = ops(&sim, "eastus");
    assert_eq!(eastus.provider(), Provider::Azure);
    // the operator's subscription is shifted by one: its zone "1" is eastus-az2
    let zones = eastus.zones().await.unwrap();
    assert_eq!(zones.id_of("1"), Some(&zone("eastus-2")));
    assert_eq!(zones.id_of("3"), Some(&zone("eastus-1")));
    assert_eq!(zones.len(), 3);
    // the H100 is offered in three zones, restricted in eastus-3 for this subscription
    let offered = eastus.instance_type_offerings(&[t(H100X8)]).await.unwrap();
    let zones_of: Vec<String> = offered.iter().map(|o| o.zone.to_string()).collect();
    assert_eq!(zones_of, ["eastus-1", "eastus-2"]);
    // a location restriction takes the whole region away
    let south = ops(&sim, "southcentralus");
    assert!(
        south
            .instance_type_offerings(&[t(A100X1)])
            .await
            .unwrap()
            .is_empty()
    );
    // another subscription is not restricted there
    let small = sim.azure_adapter(
        AZURE_SMALL_APP,
        AZURE_SMALL_SUBSCRIPTION,
        "southcentralus",
        quick_retries(1),
    );
    assert_eq!(
        small
            .instance_type_offerings(&[t(A100X1)])
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn create_is_idempotent_by_name_takes_stock_and_delete_returns_it() {
    let sim = sim().await;
    let a = ops(&sim, "eastus");
    let headroom = a
        .quota_headroom(&t(H100X8), Market::OnDemand)
        .await
        .unwrap();
    assert_eq!(
        (
            headroom.quota_code.as_str(),
            headroom.limit_vcpus,
            headroom.headroom_instances
        ),
        ("standardNDSH100v5Family", 192.0, 2)
    );

    let launched = a
        .launch(&request(H100X8, Some("eastus-1"), "job-1"))
        .await
        .unwrap();
    assert_eq!(launched.len(), 1);
    let vm = &launched[0];
    assert_eq!(vm.id.as_str(), "job-1");
    assert_eq!(vm.client_token.as_deref(), Some("job-1"));
    assert_eq!(vm.zone, Some(zone("eastus-1")));
    // logical zone "3" of this subscription
    assert_eq!(vm.zone_name, "3");
    assert_eq!(vm.state, InstanceState::Pending);
    assert_eq!(
        sim.stock(&format!("azure/eastus/eastus-1/{H100X8}/on_demand"))
            .await,
        0
    );
    let headroom = a
        .quota_headroom(&t(H100X8), Market::OnDemand)
        .await
        .unwrap();
    assert_eq!(
        (headroom.used_vcpus, headroom.headroom_instances),
        (96.0, 1)
    );

    // the same token again: the same VM, no stock taken
    let again = a
        .launch(&request(H100X8, Some("eastus-1"), "job-1"))
        .await
        .unwrap();
    assert_eq!(again[0].id, vm.id);
    // another token: eastus-1 has nothing left
    let e = launch_error(&a, &request(H100X8, Some("eastus-1"), "job-2")).await;
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::Capacity, "ZonalAllocationFailed")
    );
    // the failed VM is not left behind
    assert_eq!(a.describe(&[]).await.unwrap().len(), 1);

    // provisioning done: running; listed with its tag
    sim.advance(180).await;
    let described = a.describe(std::slice::from_ref(&vm.id)).await.unwrap();
    assert_eq!(described[0].state, InstanceState::Running);
    assert_eq!(described[0].instance_type, H100X8);

    // delete gives the stock back; a second delete finds nothing
    let changes = a.terminate(std::slice::from_ref(&vm.id)).await.unwrap();
    assert_eq!(changes[0].current, InstanceState::ShuttingDown);
    assert_eq!(
        sim.stock(&format!("azure/eastus/eastus-1/{H100X8}/on_demand"))
            .await,
        1
    );
    assert!(
        a.describe(std::slice::from_ref(&vm.id))
            .await
            .unwrap()
            .is_empty()
    );
    let changes = a.terminate(std::slice::from_ref(&vm.id)).await.unwrap();
    assert_eq!(changes[0].current, InstanceState::Terminated);

    // a tagged spot VM, found by its tag
    let spot = request(H100X8, Some("eastus-1"), "probe-1")
        .market(Market::Spot)
        .tag("capsight:probe", "probe-1");
    a.launch(&spot).await.unwrap();
    let tagged = a.describe_tagged("capsight:probe").await.unwrap();
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0].market, Market::Spot);
    let spot_quota = a.quota_headroom(&t(H100X8), Market::Spot).await.unwrap();
    assert_eq!(
        (
            spot_quota.quota_code.as_str(),
            spot_quota.used_vcpus,
            spot_quota.headroom_instances
        ),
        ("lowPriorityCores", 96.0, 0)
    );
}

#[tokio::test]
async fn every_documented_capacity_quota_and_permission_error_is_classified() {
    let sim = sim().await;
    let a = ops(&sim, "eastus");
    // capacity: an empty zone, and a region-wide request once every usable zone is empty
    let e = launch_error(&a, &request(H100X8, Some("eastus-2"), "c-1")).await;
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::Capacity, "ZonalAllocationFailed")
    );
    a.launch(&request(H100X8, None, "c-2")).await.unwrap();
    let e = launch_error(&a, &request(H100X8, None, "c-3")).await;
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::Capacity, "AllocationFailed")
    );
    // a spot price cap under the price: over-constrained
    let e = launch_error(
        &a,
        &request(H100X8, Some("eastus-1"), "c-4")
            .market(Market::Spot)
            .spot_max_price(1.0),
    )
    .await;
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::Capacity, "OverconstrainedAllocationRequest")
    );
    // not offered: the restricted zone, and a size with no capacity in the location at all
    let e = launch_error(&a, &request(H100X8, Some("eastus-3"), "n-1")).await;
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::NotOffered, "SkuNotAvailable")
    );
    let e = launch_error(&a, &request(A100X1, None, "n-2")).await;
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::NotOffered, "SkuNotAvailable")
    );

    // quota: the family limit (OperationNotAllowed), the regional cores limit (QuotaExceeded)
    let small = sim.azure_adapter(
        AZURE_SMALL_APP,
        AZURE_SMALL_SUBSCRIPTION,
        "eastus",
        quick_retries(1),
    );
    let e = launch_error(&small, &request(H100X8, Some("eastus-1"), "q-1")).await;
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::Quota, "OperationNotAllowed")
    );
    assert!(
        e.classified()
            .unwrap()
            .message
            .contains("standardNDSH100v5Family"),
        "{e}"
    );
    let e = launch_error(&small, &request(H100X1, None, "q-2")).await;
    assert_eq!(class_and_code(&e), (ErrorClass::Quota, "QuotaExceeded"));
    assert_eq!(
        small
            .quota_headroom(&t(H100X8), Market::OnDemand)
            .await
            .unwrap()
            .headroom_instances,
        0
    );

    // permission: a reader may not create; its permission check says so; the operator may
    let reader = sim.azure_adapter(
        AZURE_READER_APP,
        AZURE_OPS_SUBSCRIPTION,
        "eastus",
        quick_retries(1),
    );
    let e = launch_error(&reader, &request(H100X1, None, "p-1")).await;
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::Permission, "AuthorizationFailed")
    );
    let probe = request(H100X1, None, "p-2");
    denied(reader.check_launch_permission(&probe).await.unwrap());
    assert_eq!(
        a.check_launch_permission(&probe).await.unwrap(),
        Permission::Allowed
    );
    // another subscription's resources: AuthorizationFailed
    let stranger = sim.azure_adapter(
        AZURE_OPS_APP,
        AZURE_SMALL_SUBSCRIPTION,
        "eastus",
        quick_retries(1),
    );
    let e = stranger.describe(&[]).await.unwrap_err();
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::Permission, "AuthorizationFailed")
    );
    // a wrong client secret: Entra ID refuses the token
    let wrong = sim.azure_adapter(
        (AZURE_OPS_APP.0, "nope"),
        AZURE_OPS_SUBSCRIPTION,
        "eastus",
        quick_retries(1),
    );
    let e = wrong.describe(&[]).await.unwrap_err();
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::Permission, "invalid_client")
    );
    // a token ARM refuses twice: a new token is fetched once, then the refusal is the answer
    sim.fault(
        "azure/virtualMachines/list",
        "InvalidAuthenticationToken",
        1,
    )
    .await;
    assert!(a.describe(&[]).await.is_ok());
    sim.fault(
        "azure/virtualMachines/list",
        "InvalidAuthenticationToken",
        2,
    )
    .await;
    let e = a.describe(&[]).await.unwrap_err();
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::Permission, "InvalidAuthenticationToken")
    );
}

#[tokio::test]
async fn throttling_is_retried_prices_are_listed_and_unsupported_operations_are_typed() {
    let sim = sim().await;
    // 429 TooManyRequests: throttled, retried when attempts allow
    sim.fault("azure/usages", "TooManyRequests", 1).await;
    let once = ops(&sim, "eastus");
    let e = once.list_quotas().await.unwrap_err();
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::Throttled, "TooManyRequests")
    );
    sim.fault("azure/usages", "TooManyRequests", 1).await;
    let patient = sim.azure_adapter(
        AZURE_OPS_APP,
        AZURE_OPS_SUBSCRIPTION,
        "eastus",
        quick_retries(3),
    );
    let quotas = patient.list_quotas().await.unwrap();
    let family = quotas
        .iter()
        .find(|q| q.code == "standardNDSH100v5Family")
        .unwrap();
    assert_eq!(family.value, 192.0);

    // Spot list prices: Linux Spot items only, region-wide; the pool's own price where set
    let points = once
        .spot_price_history(&[t(H100X8), t(H100X1)], chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(points.len(), 2, "{points:?}");
    let h100 = points.iter().find(|p| p.instance_type == H100X8).unwrap();
    assert_eq!((h100.usd_per_hour, h100.zone.clone()), (40.0, None));
    let nc = points.iter().find(|p| p.instance_type == H100X1).unwrap();
    // catalog on-demand 6.98 x the default spot discount 0.4
    assert!((nc.usd_per_hour - 2.792).abs() < 1e-9, "{nc:?}");

    assert_unsupported(
        Provider::Azure,
        [
            once.spot_placement_scores(&PlacementScoreQuery {
                instance_types: vec![t(H100X8)],
                target_capacity: 1,
                single_zone: true,
                regions: vec![],
            })
            .await
            .unwrap_err(),
            once.start(&[]).await.unwrap_err(),
            once.launch(&request(H100X8, None, "b-1").market(Market::CapacityBlock))
                .await
                .unwrap_err(),
        ],
    );
    // a client token that cannot be a VM name is refused before any call
    assert!(matches!(
        once.launch(&request(H100X8, None, "bad name")).await,
        Err(CloudError::Invalid(_))
    ));
}
