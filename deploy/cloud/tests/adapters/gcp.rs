//! The GCP adapter over HTTP against cloudsim's Google APIs (scenario
//! `tests/fixtures/scenarios/gcp.toml`, service-account keys in `tests/fixtures/gcp/`), through
//! the same reqwest client and token exchange production uses: zones, launches that take stock
//! and are idempotent by request id and name, deletes that return it, quotas in GPUs, Spot
//! prices from the Billing Catalog, offerings, IAM checks, and the classification of every
//! documented capacity, quota and permission error.

use capsight_cloud::{
    CloudAdapter, CloudError, InstanceId, InstanceState, LaunchRequest, Market, Permission,
    Provider, ZoneId, gcp::GcpAdapter,
};
use capsight_proto::domain::ErrorClass;
use capsight_testkit::cloud::{Sim, quick_retries};

use crate::{
    assert_unsupported, class_and_code, denied, instance_type, launch, launch_error, zone_of,
};

const H100: &str = "a3-highgpu-8g";
const L4: &str = "g2-standard-4";
const REGION: &str = "us-central1";

async fn sim() -> Sim {
    crate::sim("gcp").await
}

fn acme(sim: &Sim) -> GcpAdapter {
    sim.gcp_adapter("acme", "acme-ml", REGION, quick_retries(1))
}

fn zone(z: &str) -> ZoneId {
    zone_of(Provider::Gcp, REGION, z)
}

fn request(t: &str, z: Option<&str>, token: &str) -> LaunchRequest {
    launch(Provider::Gcp, t, z.map(zone), token).tag("capsight:job", "Job-1")
}

#[tokio::test]
async fn zones_launch_idempotency_describe_and_delete() {
    let sim = sim().await;
    let a = acme(&sim);
    assert_eq!(a.provider(), Provider::Gcp);
    let zones = a.zones().await.unwrap();
    let names: Vec<&str> = zones.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["us-central1-a", "us-central1-b", "us-central1-c"]);
    assert_eq!(zones.id_of("us-central1-a"), Some(&zone("us-central1-a")));

    // a launch takes stock, provisions, then runs; tags and the token come back verbatim
    let key = "gcp/us-central1/us-central1-a/a3-highgpu-8g/on_demand";
    assert_eq!(sim.stock(key).await, 2);
    let made = a
        .launch(&request(H100, Some("us-central1-a"), "job-1"))
        .await
        .unwrap();
    assert_eq!(made.len(), 1);
    let i = &made[0];
    assert_eq!(i.id.as_str(), "us-central1-a/cs-job-1-0");
    assert_eq!(i.state, InstanceState::Pending);
    assert_eq!(i.client_token.as_deref(), Some("job-1"));
    assert_eq!(i.tags["capsight:job"], "Job-1");
    assert_eq!(i.zone, Some(zone("us-central1-a")));
    assert_eq!(sim.stock(key).await, 1);

    // the same token again: the same instance, no second one
    let again = a
        .launch(&request(H100, Some("us-central1-a"), "job-1"))
        .await
        .unwrap();
    assert_eq!(again[0].id, i.id);
    assert_eq!(sim.stock(key).await, 1);

    // found by its tag (a label) and listed; running after the provisioning delay
    let tagged = a.describe_tagged("capsight:job").await.unwrap();
    assert_eq!(tagged.len(), 1);
    assert_eq!(a.describe(&[]).await.unwrap().len(), 1);
    sim.advance(60).await;
    let now = a.describe(std::slice::from_ref(&i.id)).await.unwrap();
    assert_eq!(now[0].state, InstanceState::Running);

    // delete gives the stock back; a deleted instance is gone, deleting again is no error
    let done = a.terminate(std::slice::from_ref(&i.id)).await.unwrap();
    assert_eq!(done[0].current, InstanceState::Terminated);
    assert_eq!(sim.stock(key).await, 2);
    assert!(
        a.describe(std::slice::from_ref(&i.id))
            .await
            .unwrap()
            .is_empty()
    );
    let twice = a.terminate(std::slice::from_ref(&i.id)).await.unwrap();
    assert_eq!(twice[0].previous, InstanceState::Terminated);
    assert!(matches!(
        a.describe(&[InstanceId::new("no-zone").unwrap()]).await,
        Err(CloudError::Invalid(_))
    ));

    // spot: its own pool and metric
    let spot = a
        .launch(&request(H100, Some("us-central1-a"), "spot-1").market(Market::Spot))
        .await
        .unwrap();
    assert_eq!(spot[0].market, Market::Spot);
    assert_eq!(
        sim.stock("gcp/us-central1/us-central1-a/a3-highgpu-8g/spot")
            .await,
        1
    );
}

#[tokio::test]
async fn a_region_wide_launch_walks_the_zones_past_capacity_errors() {
    let sim = sim().await;
    let a = sim.gcp_adapter("operator", "capsight-ops", REGION, quick_retries(1));
    // us-central1-a has 2: two region-wide launches land there, the third in -c (-b is empty)
    for token in ["r-1", "r-2", "r-3"] {
        let made = a.launch(&request(H100, None, token)).await.unwrap();
        assert_eq!(made.len(), 1, "{token}");
    }
    let zones: Vec<String> = a
        .describe(&[])
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.zone_name)
        .collect();
    assert_eq!(zones, ["us-central1-a", "us-central1-a", "us-central1-c"]);
}

#[tokio::test]
async fn every_documented_error_is_classified() {
    let sim = sim().await;
    let a = acme(&sim);

    // an emptied zone: ZONE_RESOURCE_POOL_EXHAUSTED, nothing left behind
    let e = launch_error(&a, &request(H100, Some("us-central1-b"), "cap-1")).await;
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::Capacity, "ZONE_RESOURCE_POOL_EXHAUSTED")
    );
    // a stocked-out zone: ..._WITH_DETAILS
    sim.advance(600).await;
    let e = launch_error(&a, &request(H100, Some("us-central1-c"), "cap-2")).await;
    assert_eq!(
        class_and_code(&e),
        (
            ErrorClass::Capacity,
            "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"
        )
    );

    // no L4 quota in the region: QUOTA_EXCEEDED naming the metric
    let e = launch_error(&a, &request(L4, Some("us-central1-a"), "quota-1")).await;
    assert_eq!(class_and_code(&e), (ErrorClass::Quota, "QUOTA_EXCEEDED"));
    let c = e.classified().unwrap();
    assert_eq!(c.quota_metric(), Some("NVIDIA_L4_GPUS"));
    assert!(!c.is_global_quota());

    // 24 GPUs in all regions: two on-demand and two Spot H100s are over it (each regional
    // metric allows two); the Spot launch is all or nothing
    let two = request(H100, Some("us-central1-a"), "big").count(2);
    a.launch(&two).await.unwrap();
    let spot = "gcp/us-central1/us-central1-a/a3-highgpu-8g/spot";
    let e = a
        .launch(
            &request(H100, Some("us-central1-a"), "big-3")
                .market(Market::Spot)
                .count(2),
        )
        .await
        .unwrap_err();
    assert_eq!(sim.stock(spot).await, 2);
    assert_eq!(class_and_code(&e), (ErrorClass::Quota, "QUOTA_EXCEEDED"));
    assert!(e.classified().unwrap().is_global_quota(), "{e}");

    // a machine type the zone does not offer: not offered
    let e = launch_error(
        &a,
        &request("a2-highgpu-1g", Some("us-central1-a"), "none-1"),
    )
    .await;
    assert_eq!(e.class(), ErrorClass::NotOffered, "{e}");

    // an account that may not create instances: 403 forbidden, and testIamPermissions says so
    let viewer = sim.gcp_adapter("viewer", "acme-ml", REGION, quick_retries(1));
    let e = launch_error(&viewer, &request(H100, Some("us-central1-a"), "deny-1")).await;
    assert_eq!(e.class(), ErrorClass::Permission, "{e}");
    let permission = viewer
        .check_launch_permission(&request(H100, None, "p"))
        .await;
    let (code, message) = denied(permission.unwrap());
    assert_eq!(code, "IAM_PERMISSION_DENIED");
    assert!(message.contains("compute.instances.create"), "{message}");
    assert_eq!(
        a.check_launch_permission(&request(H100, None, "p"))
            .await
            .unwrap(),
        Permission::Allowed
    );
    // another project's resources: 403
    let other = sim.gcp_adapter("acme", "capsight-ops", REGION, quick_retries(1));
    assert_eq!(
        other
            .quota_headroom(&instance_type(Provider::Gcp, H100), Market::OnDemand)
            .await
            .unwrap_err()
            .class(),
        ErrorClass::Permission
    );

    // a key cloudsim does not know for that account: the token is refused, permission
    let rogue = sim.gcp_adapter("rogue", "acme-ml", REGION, quick_retries(1));
    let e = rogue.zones().await.unwrap_err();
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::Permission, "invalid_grant")
    );
    denied(
        rogue
            .check_launch_permission(&request(H100, None, "p"))
            .await
            .unwrap(),
    );

    // 429 is throttled and retried; a second attempt succeeds
    sim.fault("gcp/regions.get", "429", 1).await;
    let e = a.list_quotas().await.unwrap_err();
    assert_eq!(
        class_and_code(&e),
        (ErrorClass::Throttled, "rateLimitExceeded")
    );
    sim.fault("gcp/regions.get", "429", 1).await;
    let retried = sim.gcp_adapter("acme", "acme-ml", REGION, quick_retries(2));
    assert!(!retried.list_quotas().await.unwrap().is_empty());
    // 503 is transient
    sim.fault("gcp/zones.list", "503", 1).await;
    let fresh = acme(&sim);
    assert_eq!(
        fresh.zones().await.unwrap_err().class(),
        ErrorClass::Transient
    );
    // an injected operation error on insert is classified like a real one
    sim.fault("gcp/insert", "ZONE_RESOURCE_POOL_EXHAUSTED", 1)
        .await;
    let e = launch_error(&a, &request(H100, Some("us-central1-a"), "inj-1")).await;
    assert_eq!(e.class(), ErrorClass::Capacity);
    // 404 on an unknown instance is "gone", not an error
    assert!(
        a.describe(&[InstanceId::new("us-central1-a/cs-nope-0").unwrap()])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn quotas_spot_prices_and_offerings() {
    let sim = sim().await;
    let a = acme(&sim);
    let h100 = instance_type(Provider::Gcp, H100);

    // 16 regional H100 GPUs, 24 in all regions: two 8-GPU instances
    let q = a.quota_headroom(&h100, Market::OnDemand).await.unwrap();
    assert_eq!(
        (
            q.quota_code.as_str(),
            q.limit_vcpus,
            q.vcpus_per_instance,
            q.headroom_instances
        ),
        ("NVIDIA_H100_GPUS", 16.0, 8, 2)
    );
    a.launch(&request(H100, Some("us-central1-a"), "q-1").count(2))
        .await
        .unwrap();
    let q = a.quota_headroom(&h100, Market::OnDemand).await.unwrap();
    assert_eq!((q.used_vcpus, q.headroom_instances), (16.0, 0));
    // spot: its own metric, but GPUS_ALL_REGIONS (24, 16 used) binds first
    let q = a.quota_headroom(&h100, Market::Spot).await.unwrap();
    assert_eq!(
        (q.quota_code.as_str(), q.headroom_instances),
        ("GPUS_ALL_REGIONS", 1)
    );
    let all = a.list_quotas().await.unwrap();
    assert!(all.iter().any(|v| v.code == "CPUS" && v.value == 600.0));

    // the Spot price: the Billing Catalog's per-GPU SKU x 8, in every zone of the region
    let prices = a
        .spot_price_history(std::slice::from_ref(&h100), chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!(prices.len(), 3, "{prices:?}");
    assert!((prices[0].usd_per_hour - 30.0).abs() < 1e-6, "{prices:?}");
    assert_eq!(prices[0].zone, Some(zone("us-central1-a")));

    // offerings: the machine types each zone lists
    let offers = a.instance_type_offerings(&[]).await.unwrap();
    let got: Vec<(&str, &str)> = offers
        .iter()
        .map(|o| (o.instance_type.as_str(), o.zone.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (H100, "us-central1-a"),
            (H100, "us-central1-b"),
            (H100, "us-central1-c"),
            (L4, "us-central1-a"),
        ]
    );

    // what GCP has no equivalent for, or this adapter does not do
    assert_unsupported(
        Provider::Gcp,
        [
            a.start(&[]).await.unwrap_err(),
            a.spot_placement_scores(&capsight_cloud::PlacementScoreQuery {
                instance_types: vec![h100],
                target_capacity: 1,
                single_zone: true,
                regions: vec![],
            })
            .await
            .unwrap_err(),
        ],
    );
}
