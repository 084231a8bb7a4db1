//! The AWS adapter, with the real AWS SDK, against `cloudsim` started in-process on an ephemeral
//! port: every adapter operation and every error class cloudsim can produce.
//!
//! Each test starts its own cloudsim with a frozen clock (`time_scale = 0`) and moves simulated
//! time with `POST /admin/advance`, so timing never flakes. Credentials, region and endpoint are
//! set per test on the SDK config builder; the process environment is not touched.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use capsight_cloud::{
    CapacityBlockQuery, CloudAdapter, CloudError, InstanceState, InstanceType, LaunchRequest,
    Market, Permission, PlacementScoreQuery, Provider, ReservationRequest, ZoneId, aws::AwsAdapter,
};
use capsight_proto::domain::ErrorClass;
use capsight_testkit::{
    cloud::{OPERATOR, Sim, quick_retries},
    fixtures::{scenario, shipped_scenario},
};

use crate::{denied, instance_type, zone_of};

const READONLY: &str = "AKIATESTREADONLY";
const P5_AZ1: &str = "aws/us-east-1/use1-az1/p5.48xlarge/on_demand";
const P5_AZ4: &str = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";

/// A world for the tests: us-east-1 with three zones; the tenant account's AZ names are shifted.
async fn sim() -> Sim {
    crate::sim("adapter").await
}

/// An adapter acting as `access_key`, three attempts per call.
async fn adapter(sim: &Sim, access_key: &str) -> AwsAdapter {
    sim.adapter(access_key, quick_retries(3)).await
}

fn it(t: &str) -> InstanceType {
    instance_type(Provider::Aws, t)
}

fn zone(z: &str) -> ZoneId {
    zone_of(Provider::Aws, "us-east-1", z)
}

fn p5(z: &str, token: &str) -> LaunchRequest {
    LaunchRequest::new(it("p5.48xlarge"), Some(zone(z)), "ami-12345678", token)
}

/// Spot placement scores of g5.xlarge for `target` instances, per zone or per region.
fn g5_placement(target: u32, single_zone: bool) -> PlacementScoreQuery {
    PlacementScoreQuery {
        instance_types: vec![it("g5.xlarge")],
        target_capacity: target,
        single_zone,
        regions: vec![],
    }
}

/// A reservation of `count` p5.48xlarge in `z`, untagged and unlimited.
fn p5_reservation(z: &str, count: u32, client_token: &str) -> ReservationRequest {
    ReservationRequest {
        instance_type: it("p5.48xlarge"),
        zone: zone(z),
        count,
        client_token: client_token.into(),
        tags: BTreeMap::new(),
        expires_at: None,
    }
}

fn class(e: &CloudError) -> ErrorClass {
    e.class()
}

/// A g5.xlarge launch request in `z` (image `ami-1`).
fn g5(z: &str, token: &str) -> LaunchRequest {
    LaunchRequest::new(it("g5.xlarge"), Some(zone(z)), "ami-1", token)
}

/// Asserts the error's provider code and its class.
#[track_caller]
fn assert_refused(err: &CloudError, code: &str, expected: ErrorClass) {
    assert_eq!(err.code(), Some(code), "{err}");
    assert_eq!(class(err), expected, "{err}");
}

#[tokio::test]
async fn zones_map_names_to_ids_per_account() {
    let sim = sim().await;
    let op = adapter(&sim, OPERATOR).await;
    // Object safety: callers hold the adapter as `Arc<dyn CloudAdapter>`.
    let dynamic: Arc<dyn CloudAdapter> = Arc::new(op.clone());
    assert_eq!(dynamic.provider(), Provider::Aws);
    assert_eq!(dynamic.region().as_str(), "us-east-1");
    let map = dynamic.zones().await.unwrap();
    assert_eq!(map.len(), 3);
    assert_eq!(map.id_of("us-east-1a"), Some(&zone("use1-az1")));
    assert_eq!(map.name_of(&zone("use1-az4")), Some("us-east-1b"));
    // The tenant's names are shuffled: the same name is another physical zone.
    let tenant = op
        .for_tenant("arn:aws:iam::222222222222:role/capsight", "ext-123")
        .await
        .unwrap();
    let tmap = tenant.zones().await.unwrap();
    assert_eq!(tmap.id_of("us-east-1a"), Some(&zone("use1-az4")));
    let (account, arn) = tenant.caller_identity().await.unwrap();
    assert_eq!(account, "222222222222");
    assert!(arn.contains("assumed-role/capsight/capsight"), "{arn}");
}

#[tokio::test]
async fn assume_role_with_a_wrong_external_id_is_a_permission_error() {
    let sim = sim().await;
    let op = adapter(&sim, OPERATOR).await;
    let err = op
        .for_tenant("arn:aws:iam::222222222222:role/capsight", "wrong")
        .await
        .unwrap_err();
    assert_refused(&err, "AccessDenied", ErrorClass::Permission);
    let unknown = adapter(&sim, "AKIANOBODY").await;
    let err = unknown.zones().await.unwrap_err();
    assert_refused(&err, "AuthFailure", ErrorClass::Permission);
}

#[tokio::test]
async fn launch_describe_stop_start_terminate_with_idempotent_client_token() {
    let sim = sim().await;
    let op = adapter(&sim, OPERATOR).await;
    let req = p5("use1-az4", "token-1").tag("capsight:probe", "true");
    let launched = op.launch(&req).await.unwrap();
    assert_eq!(launched.len(), 1);
    let i = &launched[0];
    assert_eq!(i.state, InstanceState::Pending);
    assert_eq!(i.zone, Some(zone("use1-az4")));
    assert_eq!(i.zone_name, "us-east-1b");
    assert_eq!(i.market, Market::OnDemand);
    assert_eq!(
        i.tags.get("capsight:probe").map(String::as_str),
        Some("true")
    );
    assert_eq!(i.client_token.as_deref(), Some("token-1"));
    assert_eq!(sim.stock(P5_AZ4).await, 1);

    // Same token: same instance, no new capacity taken.
    let again = op.launch(&req).await.unwrap();
    assert_eq!(again[0].id, i.id);
    assert_eq!(sim.stock(P5_AZ4).await, 1);

    // Provisioning delay: pending -> running after 2 simulated minutes.
    sim.advance(150).await;
    let described = op.describe(std::slice::from_ref(&i.id)).await.unwrap();
    assert_eq!(described[0].state, InstanceState::Running);
    assert_eq!(op.describe(&[]).await.unwrap().len(), 1);

    let stopped = op.stop(std::slice::from_ref(&i.id)).await.unwrap();
    assert_eq!(stopped[0].previous, InstanceState::Running);
    assert_eq!(stopped[0].current, InstanceState::Stopping);
    sim.advance(60).await;
    assert_eq!(
        op.describe(std::slice::from_ref(&i.id)).await.unwrap()[0].state,
        InstanceState::Stopped
    );
    assert_eq!(sim.stock(P5_AZ4).await, 2);

    // A warm standby cannot start when its pool has been drained meanwhile.
    let drain = op.launch(&p5("use1-az4", "drain").count(2)).await.unwrap();
    let err = op.start(std::slice::from_ref(&i.id)).await.unwrap_err();
    assert_eq!(class(&err), ErrorClass::Capacity, "{err}");
    assert_eq!(err.zone_id_hints(), [zone("use1-az1")]);
    op.terminate(&drain.iter().map(|d| d.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    let started = op.start(std::slice::from_ref(&i.id)).await.unwrap();
    assert_eq!(started[0].current, InstanceState::Pending);
    let terminated = op.terminate(std::slice::from_ref(&i.id)).await.unwrap();
    assert_eq!(terminated[0].current, InstanceState::ShuttingDown);
    sim.advance(60).await;
    assert_eq!(
        op.describe(std::slice::from_ref(&i.id)).await.unwrap()[0].state,
        InstanceState::Terminated
    );
    assert_eq!(sim.stock(P5_AZ4).await, 2);

    let missing = op
        .describe(&[capsight_cloud::InstanceId::new("i-doesnotexist").unwrap()])
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Some("InvalidInstanceID.NotFound"));
    assert_eq!(class(&missing), ErrorClass::Unknown);
}

#[tokio::test]
async fn dry_run_answers_permission_only() {
    let sim = sim().await;
    let op = adapter(&sim, OPERATOR).await;
    // Allowed even where there is no stock: DryRun checks permission only.
    assert_eq!(
        op.check_launch_permission(&p5("use1-az6", "dry-1"))
            .await
            .unwrap(),
        Permission::Allowed
    );
    let ro = adapter(&sim, READONLY).await;
    let permission = ro.check_launch_permission(&p5("use1-az4", "dry-2")).await;
    let (code, message) = denied(permission.unwrap());
    assert_eq!(code, "UnauthorizedOperation");
    assert!(message.contains("ec2:RunInstances"), "{message}");
    // Nothing was launched.
    assert!(op.describe(&[]).await.unwrap().is_empty());
    // Service Quotas without servicequotas:* permission.
    let err = ro.list_quotas().await.unwrap_err();
    assert_refused(&err, "AccessDeniedException", ErrorClass::Permission);
    // A real launch without permission: class permission.
    let err = ro.launch(&p5("use1-az4", "ro-1")).await.unwrap_err();
    assert_refused(&err, "UnauthorizedOperation", ErrorClass::Permission);
}

#[tokio::test]
async fn capacity_error_names_zones_with_stock_as_ids() {
    let sim = sim().await;
    let op = adapter(&sim, OPERATOR).await;
    let err = op.launch(&p5("use1-az6", "ice-1")).await.unwrap_err();
    assert_refused(&err, "InsufficientInstanceCapacity", ErrorClass::Capacity);
    let c = err.classified().unwrap();
    assert_eq!(c.zone_hints, ["us-east-1a", "us-east-1b"]);
    assert_eq!(err.zone_id_hints(), [zone("use1-az1"), zone("use1-az4")]);
    assert!(!err.is_retryable());
    // Reservations hit the same pools.
    let res = op
        .create_capacity_reservation(&p5_reservation("use1-az4", 3, "cr-ice"))
        .await
        .unwrap_err();
    assert_eq!(class(&res), ErrorClass::Capacity);
    assert_eq!(res.zone_id_hints(), [zone("use1-az1")]);
}

#[tokio::test]
async fn capacity_reservation_takes_and_returns_stock() {
    let sim = sim().await;
    let op = adapter(&sim, OPERATOR).await;
    let req = ReservationRequest {
        tags: BTreeMap::from([("capsight:probe".to_owned(), "true".to_owned())]),
        ..p5_reservation("use1-az1", 2, "cr-1")
    };
    let r = op.create_capacity_reservation(&req).await.unwrap();
    assert!(r.id.starts_with("cr-"), "{r:?}");
    assert_eq!(r.zone, Some(zone("use1-az1")));
    assert_eq!(r.count, 2);
    assert_eq!(r.state, "active");
    assert_eq!(sim.stock(P5_AZ1).await, 1);
    // Idempotent by client token.
    assert_eq!(op.create_capacity_reservation(&req).await.unwrap().id, r.id);
    assert_eq!(sim.stock(P5_AZ1).await, 1);
    op.cancel_capacity_reservation(&r.id).await.unwrap();
    assert_eq!(sim.stock(P5_AZ1).await, 3);
    // A limited reservation ends by itself and gives its stock back.
    let limited = op
        .create_capacity_reservation(&ReservationRequest {
            client_token: "cr-limited".into(),
            count: 1,
            expires_at: Some(chrono::Utc::now() + chrono::Duration::minutes(5)),
            ..req.clone()
        })
        .await
        .unwrap();
    assert_eq!(limited.state, "active");
    assert_eq!(sim.stock(P5_AZ1).await, 2);
    sim.advance(6 * 60).await;
    assert_eq!(sim.stock(P5_AZ1).await, 3);
    let err = op.cancel_capacity_reservation("cr-nope").await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidCapacityReservationId.NotFound"));
}

#[tokio::test]
async fn quota_headroom_and_quota_errors() {
    let sim = sim().await;
    let op = adapter(&sim, OPERATOR).await;
    let quotas = op.list_quotas().await.unwrap();
    let p = quotas.iter().find(|q| q.code == "L-417A185B").unwrap();
    assert_eq!(p.value, 1152.0);
    let h = op
        .quota_headroom(&it("p5.48xlarge"), Market::OnDemand)
        .await
        .unwrap();
    assert_eq!(
        (h.quota_code.as_str(), h.limit_vcpus, h.used_vcpus),
        ("L-417A185B", 1152.0, 0.0)
    );
    assert_eq!(h.vcpus_per_instance, 192);
    assert_eq!(h.headroom_instances, 6);
    op.launch(&p5("use1-az1", "q-1").count(2)).await.unwrap();
    let h = op
        .quota_headroom(&it("p5.48xlarge"), Market::OnDemand)
        .await
        .unwrap();
    assert_eq!((h.used_vcpus, h.headroom_instances), (384.0, 4));

    // The tenant has 192 vCPUs of P: one p5 fits, two do not.
    let tenant = op
        .for_tenant("arn:aws:iam::222222222222:role/capsight", "ext-123")
        .await
        .unwrap();
    let th = tenant
        .quota_headroom(&it("p5.48xlarge"), Market::OnDemand)
        .await
        .unwrap();
    assert_eq!(th.headroom_instances, 1);
    let err = tenant
        .launch(&LaunchRequest::new(it("p5.48xlarge"), None, "ami-1", "t-1").count(2))
        .await
        .unwrap_err();
    assert_refused(&err, "VcpuLimitExceeded", ErrorClass::Quota);
    // Spot G quota of the operator: 32 vCPUs = 8 g5.xlarge (stock is 10); 9 is too many.
    let err = op
        .launch(&g5("use1-az1", "s-q").market(Market::Spot).count(9))
        .await
        .unwrap_err();
    assert_refused(&err, "MaxSpotInstanceCountExceeded", ErrorClass::Quota);
    let sh = op
        .quota_headroom(&it("g5.xlarge"), Market::Spot)
        .await
        .unwrap();
    assert_eq!(
        (sh.quota_code.as_str(), sh.headroom_instances),
        ("L-3819A6DF", 8)
    );
}

#[tokio::test]
async fn not_offered_price_throttled_transient_and_unknown() {
    let sim = sim().await;
    let op = adapter(&sim, OPERATOR).await;

    // Not offered: g5.xlarge has no pool in any market in use1-az6.
    let err = op.launch(&g5("use1-az6", "no-1")).await.unwrap_err();
    assert_refused(&err, "Unsupported", ErrorClass::NotOffered);

    // Offered but not in this market (only a spot pool in use1-az4): out of capacity, as on AWS.
    let err = op.launch(&g5("use1-az4", "no-2")).await.unwrap_err();
    assert_refused(&err, "InsufficientInstanceCapacity", ErrorClass::Capacity);

    // Price: a spot max price below the market.
    let err = op
        .launch(
            &g5("use1-az1", "price-1")
                .market(Market::Spot)
                .spot_max_price(0.01),
        )
        .await
        .unwrap_err();
    assert_refused(&err, "SpotMaxPriceTooLow", ErrorClass::Price);

    // Throttled twice, then success: retried within max_attempts = 3.
    sim.fault("DescribeInstances", "RequestLimitExceeded", 2)
        .await;
    assert!(op.describe(&[]).await.is_ok());
    // Throttled more often than that: the throttled error surfaces.
    sim.fault("DescribeInstances", "RequestLimitExceeded", 5)
        .await;
    let err = op.describe(&[]).await.unwrap_err();
    assert_eq!(class(&err), ErrorClass::Throttled);
    assert!(err.is_retryable());
    // 3 attempts consumed 3 of the 5 faults: the next call sees 2 more, then succeeds.
    assert!(op.describe(&[]).await.is_ok());

    // Transient server error, retried.
    sim.fault("DescribeSpotPriceHistory", "InternalError", 1)
        .await;
    assert!(
        op.spot_price_history(&[], chrono::Utc::now() - chrono::Duration::hours(1))
            .await
            .is_ok()
    );

    // Unknown codes are kept verbatim and never retried.
    sim.fault("GetSpotPlacementScores", "SomethingNobodyKnows", 2)
        .await;
    let err = op
        .spot_placement_scores(&g5_placement(1, true))
        .await
        .unwrap_err();
    assert_refused(&err, "SomethingNobodyKnows", ErrorClass::Unknown);
    // One fault left: not retried means the second is still there.
    let again = op
        .spot_placement_scores(&g5_placement(1, true))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some("SomethingNobodyKnows"));
}

#[tokio::test]
async fn spot_prices_placement_scores_capacity_blocks_and_offerings() {
    let sim = sim().await;
    let op = adapter(&sim, OPERATOR).await;
    sim.advance(600).await;
    let prices = op
        .spot_price_history(
            &[it("g5.xlarge")],
            chrono::Utc::now() - chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    assert!(prices.len() >= 2, "{prices:?}");
    assert!(
        prices
            .iter()
            .all(|p| p.instance_type == "g5.xlarge" && p.usd_per_hour > 0.0)
    );
    assert!(prices.iter().any(|p| p.zone == Some(zone("use1-az4"))));
    assert!(
        prices.windows(2).all(|w| w[0].at >= w[1].at),
        "newest first"
    );

    let scores = op
        .spot_placement_scores(&g5_placement(4, true))
        .await
        .unwrap();
    let az1 = scores
        .iter()
        .find(|s| s.zone == Some(zone("use1-az1")))
        .unwrap();
    let az6 = scores
        .iter()
        .find(|s| s.zone == Some(zone("use1-az6")))
        .unwrap();
    assert!(az1.score > az6.score, "{scores:?}");
    assert!(scores.iter().all(|s| (1..=10).contains(&s.score)));
    let regional = op
        .spot_placement_scores(&g5_placement(4, false))
        .await
        .unwrap();
    assert_eq!(regional.len(), 1);
    assert_eq!(regional[0].zone, None);

    let blocks = op
        .capacity_block_offerings(&CapacityBlockQuery {
            instance_type: it("p5.48xlarge"),
            count: 2,
            duration_hours: 48,
            start_after: None,
            end_before: None,
        })
        .await
        .unwrap();
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let b = &blocks[0];
    assert_eq!(
        (b.zone.clone(), b.count, b.duration_hours),
        (Some(zone("use1-az4")), 2, 48)
    );
    assert!((b.upfront_fee - 31.5 * 2.0 * 48.0).abs() < 0.01);
    assert!(b.start.unwrap() > chrono::Utc::now());

    let offerings = op
        .instance_type_offerings(&[it("p5.48xlarge")])
        .await
        .unwrap();
    let zones: Vec<_> = offerings
        .iter()
        .map(|o| o.zone.as_str().to_owned())
        .collect();
    assert_eq!(zones, ["use1-az1", "use1-az4", "use1-az6"]);
    assert_eq!(op.instance_type_offerings(&[]).await.unwrap().len(), 5);
}

#[tokio::test]
async fn stockout_scenario_flips_launches_to_capacity_errors_and_back() {
    let sim = Sim::builder(shipped_scenario("stockout")).start().await;
    let op = adapter(&sim, "AKIASTOCKOUT").await;
    let launch = |n: u32| {
        let op = op.clone();
        async move { op.launch(&p5("use1-az4", &format!("so-{n}"))).await }
    };
    assert!(launch(1).await.is_ok(), "before the stockout");
    sim.advance(5 * 60).await;
    let err = launch(2).await.unwrap_err();
    assert_eq!(class(&err), ErrorClass::Capacity);
    // Hints name the zone that still has stock (use1-az1), not the empty one (use1-az6).
    assert_eq!(err.zone_id_hints(), [zone("use1-az1")]);
    sim.advance(9 * 60).await;
    assert_eq!(
        class(&launch(3).await.unwrap_err()),
        ErrorClass::Capacity,
        "still out at 14m"
    );
    sim.advance(60).await;
    assert!(launch(4).await.is_ok(), "recovered at 15m");

    // Ground truth saw it too.
    let (_, body) = sim.admin("GET", "/admin/truth", "").await;
    let truth: serde_json::Value = serde_json::from_str(&body).unwrap();
    let series = truth["stock"]["aws/us-east-1/use1-az4/p5.48xlarge/on_demand"]
        .as_array()
        .unwrap();
    assert!(
        series.iter().any(|p| p[0] == 300 && p[1] == 0),
        "{series:?}"
    );
    assert!(
        series.iter().any(|p| p[0] == 900 && p[1] == 10),
        "{series:?}"
    );
}

#[tokio::test]
async fn interruptions_and_rebalance_recommendations_reach_the_webhook() {
    use axum::{Router, extract::State, routing::post};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<serde_json::Value>(16);
    let app =
        Router::new()
            .route(
                "/events",
                post(
                    |State(tx): State<tokio::sync::mpsc::Sender<serde_json::Value>>,
                     body: String| async move {
                        let _ = tx.send(serde_json::from_str(&body).unwrap()).await;
                        "ok"
                    },
                ),
            )
            .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let sim = Sim::builder(scenario("adapter"))
        .webhook(&hook, "")
        .start()
        .await;
    let op = adapter(&sim, OPERATOR).await;
    let spot = op
        .launch(&g5("use1-az1", "spot-1").market(Market::Spot))
        .await
        .unwrap();
    assert_eq!(spot[0].market, Market::Spot);
    let id = spot[0].id.as_str().to_owned();

    async fn next(rx: &mut tokio::sync::mpsc::Receiver<serde_json::Value>) -> serde_json::Value {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap()
    }
    let e = next(&mut rx).await;
    assert_eq!(e["detail-type"], "EC2 Spot Instance Request Fulfillment");
    assert_eq!(e["detail"]["instance-id"], id);
    sim.advance(30 * 60).await; // the storm
    let e = next(&mut rx).await;
    assert_eq!(e["detail-type"], "EC2 Instance Rebalance Recommendation");
    assert_eq!(e["source"], "aws.ec2");
    assert_eq!(e["account"], "111111111111");
    assert_eq!(e["region"], "us-east-1");
    assert_eq!(e["detail"]["instance-id"], id);
    for key in ["version", "id", "time", "resources"] {
        assert!(e.get(key).is_some(), "{key} missing in {e}");
    }
    sim.advance(60).await;
    let e = next(&mut rx).await;
    assert_eq!(e["detail-type"], "EC2 Spot Instance Interruption Warning");
    assert_eq!(e["detail"]["instance-action"], "terminate");
    sim.advance(120).await;
    let e = next(&mut rx).await;
    assert_eq!(e["detail-type"], "EC2 Instance State-change Notification");
    assert_eq!(e["detail"]["state"], "terminated");
    let d = op
        .describe(&spot.iter().map(|i| i.id.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(d[0].state, InstanceState::Terminated);
    assert!(
        d[0].state_reason.as_deref().unwrap_or("").contains("Spot"),
        "{d:?}"
    );
}

#[tokio::test]
async fn tagged_instances_and_reservations_are_found_by_tag_key() {
    let sim = sim().await;
    let op = adapter(&sim, OPERATOR).await;
    let tagged = op
        .launch(&p5("use1-az1", "tagged-1").tag("capsight:probe", "probe-1"))
        .await
        .unwrap();
    op.launch(&p5("use1-az1", "untagged-1")).await.unwrap();
    let r = op
        .create_capacity_reservation(&ReservationRequest {
            tags: BTreeMap::from([("capsight:probe".to_owned(), "probe-2".to_owned())]),
            expires_at: Some(chrono::Utc::now() + chrono::Duration::minutes(10)),
            ..p5_reservation("use1-az4", 1, "cr-tagged")
        })
        .await
        .unwrap();
    assert_eq!(
        r.tags.get("capsight:probe").map(String::as_str),
        Some("probe-2")
    );
    assert!(r.created_at.is_some(), "{r:?}");
    op.create_capacity_reservation(&p5_reservation("use1-az4", 1, "cr-untagged"))
        .await
        .unwrap();

    let found = op.describe_tagged("capsight:probe").await.unwrap();
    assert_eq!(
        found.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        vec![tagged[0].id.clone()]
    );
    assert_eq!(found[0].tags["capsight:probe"], "probe-1");
    let reservations = op
        .describe_tagged_reservations("capsight:probe")
        .await
        .unwrap();
    assert_eq!(reservations.len(), 1, "{reservations:?}");
    assert_eq!(reservations[0].id, r.id);
    assert_eq!(reservations[0].state, "active");
    assert_eq!(reservations[0].zone, Some(zone("use1-az4")));
    assert_eq!(reservations[0].count, 1);
    // a cancelled reservation is still described, with its state
    op.cancel_capacity_reservation(&r.id).await.unwrap();
    let reservations = op
        .describe_tagged_reservations("capsight:probe")
        .await
        .unwrap();
    assert_eq!(reservations[0].state, "cancelled");
    assert!(
        op.describe_tagged("nobody:uses-this")
            .await
            .unwrap()
            .is_empty()
    );
}
