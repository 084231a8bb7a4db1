//! cloudsim as a black box: the `cloudsim` binary, scenario determinism, status feeds,
//! AWS-shaped errors for malformed requests, and RunPod's GraphQL as documents (keys in a
//! header or the query string, aliases, variables, RunPod-shaped errors). (The AWS SDK's view of cloudsim is tested in
//! `deploy/cloud/tests/adapters/aws.rs`.)

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::time::Duration;

use capsight_cloudsim::{DEFAULT_SCENARIO, scenario::Scenario, type_table, world::World};
use capsight_testkit::{
    cloud::{Sim, http},
    fixtures::{scenario, scenario_text, shipped_scenario},
    process::{ChildGuard, free_port},
    wait::poll,
};
use tokio::net::TcpStream;

fn world(text: &str, seed: u64) -> World {
    let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .to_utc();
    World::new(Scenario::parse(text).unwrap(), seed, type_table(), start)
}

#[test]
fn same_seed_same_ground_truth_different_seed_different() {
    let run = |seed| {
        let mut w = world(DEFAULT_SCENARIO, seed);
        w.advance(Duration::from_secs(3 * 3600));
        w.truth()
    };
    let a = run(42);
    assert_eq!(a, run(42));
    assert_ne!(a.stock, run(43).stock);
    assert_eq!(a.until_seconds, 3 * 3600);
    // The default scenario's stockout and recovery are in the truth.
    let key = &a.stock["aws/us-east-1/use1-az4/p5.48xlarge/on_demand"];
    let at = |t: u64| key.iter().rev().find(|(s, _)| *s <= t).unwrap().1;
    assert_eq!(at(10 * 60), 0);
    assert_eq!(at(39 * 60), 0);
    assert!(key.iter().any(|(s, v)| *s == 40 * 60 && *v == 3), "{key:?}");
    assert!(
        a.events
            .iter()
            .any(|(t, kind, _)| *t == 600 && kind == "Stockout"),
        "{:?}",
        a.events
    );
    let only = a
        .clone()
        .filtered("aws/us-east-1/use1-az4/p5.48xlarge/on_demand", 20 * 60);
    assert_eq!(only.stock.len(), 1);
    assert_eq!(
        only.stock.values().next().unwrap()[0].1,
        0,
        "value in force at 20m"
    );
    // `repeat = "1h"`: the stockout comes back every hour.
    assert_eq!(at(70 * 60), 0);
    assert_eq!(at(130 * 60), 0);
    assert!(
        key.iter().any(|(s, v)| *s == 100 * 60 && *v == 3),
        "{key:?}"
    );
}

#[test]
fn wall_timestamps_compress_simulated_time_onto_the_real_clock() {
    let mut w = world(DEFAULT_SCENARIO, 5);
    let start = w.time_at(Duration::ZERO);
    assert_eq!(
        w.time_at(Duration::from_secs(600)) - start,
        chrono::Duration::minutes(10)
    );
    w.stamp_on_real_clock(30.0);
    assert_eq!(
        w.time_at(Duration::from_secs(600)) - start,
        chrono::Duration::seconds(20)
    );
    assert_eq!(
        w.simulated_span(Duration::from_secs(20)),
        Duration::from_secs(600)
    );
    w.stamp_on_real_clock(0.0);
    assert_eq!(
        w.simulated_span(Duration::from_secs(1)),
        Duration::from_secs(30),
        "0 is ignored"
    );
}

#[test]
fn advancing_in_pieces_equals_advancing_at_once() {
    let mut once = world(DEFAULT_SCENARIO, 5);
    once.advance(Duration::from_secs(7200));
    let mut pieces = world(DEFAULT_SCENARIO, 5);
    for s in (0..=7200).step_by(37) {
        pieces.advance(Duration::from_secs(s));
    }
    pieces.advance(Duration::from_secs(7200));
    assert_eq!(once.truth(), pieces.truth());
}

#[test]
fn every_shipped_scenario_is_valid_and_uses_catalog_types() {
    let types = type_table();
    assert!(types.contains_key("p5.48xlarge"), "catalog bridge is empty");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let lambda = capsight_cloudsim::lambda::type_names();
        let runpod = capsight_cloudsim::runpod::type_names();
        for p in &s.pools {
            let known = match p.provider {
                capsight_cloudsim::scenario::SimProvider::Aws => {
                    types.contains_key(&p.instance_type)
                }
                capsight_cloudsim::scenario::SimProvider::Lambda => {
                    lambda.contains(&p.instance_type)
                }
                capsight_cloudsim::scenario::SimProvider::Gcp => {
                    capsight_cloudsim::world::gcp::gcp_types().contains_key(&p.instance_type)
                }
                capsight_cloudsim::scenario::SimProvider::Azure => {
                    capsight_cloudsim::world::azure::sizes().contains_key(&p.instance_type)
                }
                capsight_cloudsim::scenario::SimProvider::RunPod => {
                    runpod.contains(&p.instance_type)
                }
            };
            assert!(known, "{}: {}", path.display(), p.instance_type);
        }
        n += 1;
    }
    assert!(n >= 2);
}

async fn stockout() -> Sim {
    Sim::builder(shipped_scenario("stockout")).start().await
}

const AUTH: (&str, &str) = (
    "Authorization",
    "AWS4-HMAC-SHA256 Credential=AKIASTOCKOUT/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=x",
);

#[tokio::test]
async fn malformed_requests_get_aws_shaped_errors() {
    let sim = stockout().await;
    let addr = sim.addr();
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, u16, &'a str);
    let cases: &[Case<'_>] = &[
        (
            &[form],
            "Action=DescribeInstances&Version=2016-11-15",
            401,
            "MissingAuthenticationToken",
        ),
        (
            &[form, AUTH],
            "Action=Nope&Version=2016-11-15",
            400,
            "InvalidAction",
        ),
        (
            &[form, AUTH],
            "Action=RunInstances&Version=2016-11-15&InstanceType=p5.48xlarge",
            400,
            "MissingParameter",
        ),
        (
            &[form, AUTH],
            "Action=RunInstances&Version=2016-11-15&ImageId=a&MinCount=x&MaxCount=1",
            400,
            "InvalidParameterValue",
        ),
        (
            &[form, AUTH],
            "Action=RunInstances&Version=2016-11-15&ImageId=a&MinCount=1&MaxCount=1&InstanceType=zz.huge",
            400,
            "InvalidParameterValue",
        ),
        (
            &[form, AUTH],
            "Action=RunInstances&Version=2016-11-15&ImageId=a&MinCount=1&MaxCount=1&InstanceType=p5.48xlarge&Placement.AvailabilityZone=mars-1a",
            400,
            "InvalidParameterValue",
        ),
        (
            &[form, AUTH],
            "Action=RunInstances&Version=2016-11-15&DryRun=maybe",
            400,
            "InvalidParameterValue",
        ),
        (
            &[form, AUTH],
            "Action=RunInstances&Version=2016-11-15&DryRun=true",
            412,
            "DryRunOperation",
        ),
        (
            &[form, AUTH],
            "Action=GetSpotPlacementScores&Version=2016-11-15&InstanceType.1=g5.xlarge&TargetCapacity=4294967295",
            200,
            "spotPlacementScoreSet",
        ),
        (
            &[form, AUTH],
            "Action=DescribeCapacityBlockOfferings&Version=2016-11-15&InstanceType=p5.48xlarge&InstanceCount=1&CapacityDurationHours=4294967280",
            200,
            "capacityBlockOfferingSet",
        ),
        (
            &[form, AUTH],
            "Action=DescribeSpotPriceHistory&Version=2016-11-15&NextToken=18446744073709551615",
            200,
            "spotPriceHistorySet",
        ),
        (&[form, AUTH], "%%%&&&==", 400, "InvalidAction"),
        (
            &[
                ("X-Amz-Target", "ServiceQuotasV20190624.GetServiceQuota"),
                AUTH,
            ],
            "{not json",
            400,
            "SerializationException",
        ),
        (
            &[
                ("X-Amz-Target", "ServiceQuotasV20190624.GetServiceQuota"),
                AUTH,
            ],
            "{\"ServiceCode\":\"ec2\",\"QuotaCode\":\"L-NOPE\"}",
            400,
            "NoSuchResourceException",
        ),
        (
            &[form, AUTH],
            "Action=AssumeRole&Version=2011-06-15",
            400,
            "MissingParameter",
        ),
    ];
    for (headers, body, status, needle) in cases {
        let (got, text) = http(addr, "POST", "/", headers, body).await;
        assert_eq!(got, *status, "{body}: {text}");
        assert!(text.contains(needle), "{body}: {text}");
        if *status >= 400 && !headers.iter().any(|(k, _)| *k == "X-Amz-Target") {
            assert!(
                text.contains("<Code>") && text.contains("<Message>"),
                "{text}"
            );
        }
    }
    let (got, _) = http(addr, "POST", "/admin/advance", &[], "{\"seconds\": 1e300}").await;
    assert_eq!(got, 400);
    let (got, _) = http(addr, "POST", "/admin/faults", &[], "[]").await;
    assert_eq!(got, 400);
    // Still serving.
    assert_eq!(http(addr, "GET", "/healthz", &[], "").await.0, 200);
}

#[tokio::test]
async fn status_page_and_rss_follow_the_scenario() {
    let sim = stockout().await;
    let addr = sim.addr();
    let summary = |addr| async move {
        let (s, body) = http(addr, "GET", "/api/v2/summary.json", &[], "").await;
        assert_eq!(s, 200);
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let v = summary(addr).await;
    assert_eq!(v["status"]["indicator"], "none");
    assert_eq!(v["components"][0]["status"], "operational");
    assert!(v["incidents"].as_array().unwrap().is_empty());

    http(addr, "POST", "/admin/advance", &[], "{\"seconds\": 420}").await;
    let v = summary(addr).await;
    assert_eq!(v["status"]["indicator"], "major");
    assert_eq!(v["components"][0]["status"], "partial_outage");
    assert_eq!(
        v["incidents"][0]["name"],
        "Insufficient capacity for P5 instances"
    );
    assert_eq!(v["incidents"][0]["status"], "investigating");
    // an incident names its components by the same id as the page's component list (the
    // Statuspage shape the status collector parses)
    assert_eq!(
        v["incidents"][0]["components"][0]["id"],
        v["components"][0]["id"]
    );
    let (_, rss) = http(addr, "GET", "/rss/ec2-us-east-1.rss", &[], "").await;
    assert!(
        rss.contains("<rss version=\"2.0\">") && rss.contains("Insufficient capacity for P5"),
        "{rss}"
    );
    let (_, other) = http(addr, "GET", "/rss/ec2-us-west-2.rss", &[], "").await;
    assert!(!other.contains("<item>"), "{other}");

    http(addr, "POST", "/admin/advance", &[], "{\"seconds\": 600}").await;
    let v = summary(addr).await;
    assert_eq!(v["status"]["indicator"], "none");
    assert!(v["incidents"].as_array().unwrap().is_empty());
    let (_, rss) = http(addr, "GET", "/rss/ec2-us-east-1.rss", &[], "").await;
    assert!(rss.contains("[RESOLVED]"), "{rss}");
}

#[tokio::test]
async fn the_binary_serves_the_default_scenario() {
    let port = free_port();
    let child = ChildGuard::spawn(
        "cloudsim",
        std::process::Command::new(env!("CARGO_BIN_EXE_cloudsim"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--seed",
                "9",
                "--time-scale",
                "60",
            ])
            .env_remove("CAPSIGHT_CONFIG"),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = poll(Duration::from_secs(5), || TcpStream::connect(addr)).await;
    assert!(up.is_some(), "cloudsim did not start");
    let (s, body) = http(addr, "GET", "/admin/state", &[], "").await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["scenario"], "demo");
    assert_eq!(v["time_scale"], 60.0);
    let (_, truth) = http(addr, "GET", "/admin/truth", &[], "").await;
    let t: serde_json::Value = serde_json::from_str(&truth).unwrap();
    assert_eq!(t["seed"], 9);
    child.kill();
}

#[test]
fn unmet_spot_demand_reclaims_running_spot_instances() {
    let mut w = world(&scenario_text("reclaim"), 1);
    let who = w.identity("AKIARECLAIM").unwrap();
    let spec = capsight_cloudsim::world::LaunchSpec {
        instance_type: "g5.xlarge".into(),
        zone_name: Some("us-east-1a".into()),
        zone_id: None,
        market: capsight_cloudsim::scenario::PoolMarket::Spot,
        max_price: None,
        min_count: 1,
        max_count: 1,
        image_id: "ami-1".into(),
        tags: vec![],
        client_token: None,
    };
    let ids = w
        .run_instances(&who, "us-east-1", spec, Duration::ZERO)
        .unwrap();
    let kinds = |w: &mut World| -> Vec<String> {
        w.take_outbox()
            .iter()
            .map(|e| e["detail-type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(kinds(&mut w), ["EC2 Spot Instance Request Fulfillment"]);
    w.advance(Duration::from_secs(60));
    assert_eq!(kinds(&mut w), ["EC2 Instance Rebalance Recommendation"]);
    w.advance(Duration::from_secs(120));
    assert_eq!(kinds(&mut w), ["EC2 Spot Instance Interruption Warning"]);
    w.advance(Duration::from_secs(240));
    assert_eq!(kinds(&mut w), ["EC2 Instance State-change Notification"]);
    let i = w.instance("111111111111", &ids[0]).unwrap();
    assert_eq!(i.state.name(), "terminated");
}

#[tokio::test]
async fn api_rate_limit_answers_request_limit_exceeded() {
    let mut scenario = shipped_scenario("stockout");
    scenario.defaults.api_requests_per_second = 0.5;
    scenario.defaults.api_burst = 2;
    let sim = Sim::builder(scenario).start().await;
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let body = "Action=DescribeAvailabilityZones&Version=2016-11-15";
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, text) = http(sim.addr(), "POST", "/", &[form, AUTH], body).await;
        statuses.push(status);
        if status == 503 {
            assert!(text.contains("<Code>RequestLimitExceeded</Code>"), "{text}");
        }
    }
    assert_eq!(statuses, [200, 200, 503]);
}

/// POSTs a GraphQL request to cloudsim's `/graphql` (`path` may carry `?api_key=`).
async fn graphql(
    sim: &Sim,
    path: &str,
    key: Option<&str>,
    query: &str,
    variables: serde_json::Value,
) -> (u16, serde_json::Value) {
    let bearer = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
    }
    let body = serde_json::json!({ "query": query, "variables": variables }).to_string();
    let (status, text) = http(sim.addr(), "POST", path, &headers, &body).await;
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, value)
}

#[tokio::test]
async fn runpod_graphql_is_parsed_as_documents_with_runpods_errors() {
    let sim = Sim::builder(scenario("runpod")).start().await;
    let key = "rpa_OPS0123456789";
    // aliases and a variable with its default; the key as a query parameter
    let q = "query Stock($n: Int = 1) { gpuTypes(input: {id: \"NVIDIA H100 80GB HBM3\"}) { id \
             secure: lowestPrice(input: {gpuCount: $n, secureCloud: true}) { stockStatus } \
             community: lowestPrice(input: {gpuCount: $n, secureCloud: false}) { stockStatus } \
             eight: lowestPrice(input: {gpuCount: 8}) { stockStatus uninterruptablePrice } } }";
    let path = format!("/graphql?api_key={key}");
    let (status, v) = graphql(&sim, &path, None, q, serde_json::json!({})).await;
    assert_eq!(status, 200, "{v}");
    let t = &v["data"]["gpuTypes"][0];
    assert_eq!(t["id"], "NVIDIA H100 80GB HBM3");
    assert_eq!(t["secure"]["stockStatus"], "High");
    assert_eq!(t["community"]["stockStatus"], serde_json::Value::Null);
    assert_eq!(t["eight"]["stockStatus"], "Medium");
    assert_eq!(t["eight"]["uninterruptablePrice"], 2.69);
    assert_eq!(
        t.as_object().unwrap().len(),
        4,
        "only what was selected: {t}"
    );
    // a variable overrides the default
    let (_, v) = graphql(&sim, "/graphql", Some(key), q, serde_json::json!({"n": 8})).await;
    assert_eq!(v["data"]["gpuTypes"][0]["secure"]["stockStatus"], "Medium");

    // no key, or an unknown one: 401 Unauthorized
    for k in [None, Some("rpa_nobody")] {
        let (status, v) = graphql(
            &sim,
            "/graphql",
            k,
            "{ myself { id } }",
            serde_json::json!({}),
        )
        .await;
        assert_eq!(status, 401, "{v}");
        assert_eq!(v["errors"][0]["message"], "Unauthorized");
    }
    // malformed documents, unknown fields, arguments and input fields: 400 with a message
    for (q, needle) in [
        ("{ myself { id }", "Syntax Error"),
        (
            "{ myself { id balance } }",
            "Cannot query field \"balance\"",
        ),
        ("{ myself }", "must have a selection of subfields"),
        (
            "{ podTerminate(input: {podId: \"x\"}) }",
            "Cannot query field \"podTerminate\" on type \"Query\"",
        ),
        (
            "mutation { podTerminate(input: {pod: \"x\"}) }",
            "Invalid value for PodTerminateInput",
        ),
        (
            "{ gpuTypes(filter: {id: \"x\"}) { id } }",
            "Unknown argument \"filter\"",
        ),
        (
            "query Q { myself { ...F } } fragment F on User { id }",
            "fragments",
        ),
    ] {
        let (status, v) = graphql(&sim, "/graphql", Some(key), q, serde_json::json!({})).await;
        assert_eq!(status, 400, "{q}: {v}");
        let message = v["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{q}: {message}");
    }

    // a deploy the API refuses: HTTP 200, errors[].message with the field's path, data null
    let deploy = "mutation Deploy($input: PodFindAndDeployOnDemandInput!) { \
                  podFindAndDeployOnDemand(input: $input) { id desiredStatus } }";
    let input = |cloud: &str| {
        serde_json::json!({"input": {"cloudType": cloud, "gpuCount": 1,
            "gpuTypeId": "NVIDIA H100 80GB HBM3", "name": "t-1", "imageName": "runpod/base"}})
    };
    let (status, v) = graphql(&sim, "/graphql", Some(key), deploy, input("COMMUNITY")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["errors"][0]["message"],
        "There are no longer any instances available with the requested specifications. \
         Please refresh and try again."
    );
    assert_eq!(v["errors"][0]["path"][0], "podFindAndDeployOnDemand");
    assert_eq!(
        v["data"]["podFindAndDeployOnDemand"],
        serde_json::Value::Null
    );
    // the same in Secure Cloud deploys: only the selected fields, a pod that is not up yet
    let (_, v) = graphql(&sim, "/graphql", Some(key), deploy, input("SECURE")).await;
    let pod = &v["data"]["podFindAndDeployOnDemand"];
    assert_eq!(pod["desiredStatus"], "RUNNING", "{v}");
    assert_eq!(pod.as_object().unwrap().len(), 2);
    assert_eq!(sim.stock("runpod/secure//1x_h100_sxm/on_demand").await, 3);
    // an input field RunPod does not define
    let mut bad = input("SECURE");
    bad["input"]["gpuTypeIdd"] = serde_json::json!("x");
    let (status, _) = graphql(&sim, "/graphql", Some(key), deploy, bad).await;
    assert_eq!(status, 400);
}
