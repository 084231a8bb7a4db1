//! `capsight-spot --once` against an in-process cloudsim (through the standard AWS environment
//! chain) and the real broker: every source produces its signals.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::collections::BTreeMap;

use capsight_proto::domain::{
    OfferingExposure, Payload, Provider, Signal, SignalSource, SpotAdvisory,
};
use capsight_testkit::fixtures::collector_world;
use capsight_testkit::{kafka::consume_all, process::succeed};

#[tokio::test(flavor = "multi_thread")]
async fn every_source_becomes_signals() {
    let sandbox = collector_world("spot", 2, "spot").start().await;
    let advisor = sandbox.dir.join("advisor.json");
    std::fs::write(
        &advisor,
        r#"{"spot_advisor":{"us-east-1":{"Linux":{"g5.xlarge":{"s":68,"r":1}}}}}"#,
    )
    .unwrap();

    succeed(
        sandbox
            .once(env!("CARGO_BIN_EXE_capsight-spot"))
            .envs(sandbox.sim().aws_env("AKIATESTSPOT"))
            .env("CAPSIGHT_SPOT__REGIONS", "[\"us-east-1\"]")
            .env("CAPSIGHT_SPOT__ADVISOR_SOURCE", &advisor)
            .env("CAPSIGHT_SPOT__PLACEMENT_CALLS_PER_DAY", "1000"),
    );

    let mut kinds: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut placement = BTreeMap::new();
    let mut by_key: BTreeMap<(String, &'static str), Signal> = BTreeMap::new();
    // each keyed by its partition key
    for s in consume_all(&sandbox.kafka, &sandbox.kafka.topics.signals).await {
        // fields every spot signal shares
        assert_eq!(s.source, SignalSource::Spot, "{s:?}");
        assert_eq!(s.tenant, None, "{s:?}");
        assert_eq!(s.key.provider, Provider::Aws);
        assert_eq!(s.key.region.as_str(), "us-east-1");
        assert!(s.id.as_str().starts_with("spot-"), "{s:?}");
        by_key.insert((s.key.to_string(), s.payload.kind()), s.clone());
        if let Payload::PlacementScore(p) = &s.payload {
            placement.insert(s.key.to_string(), p.score);
        }
        kinds
            .entry(s.payload.kind())
            .or_default()
            .push(s.key.to_string());
    }
    assert!(
        kinds["spot_price"].contains(&"aws/us-east-1/use1-az1/g5.xlarge/spot".to_owned()),
        "{kinds:?}"
    );
    assert!(
        kinds["offering"]
            .iter()
            .any(|k| k.starts_with("aws/us-east-1/use1-az")),
        "{kinds:?}"
    );
    assert!(
        kinds["capacity_block_offer"]
            .contains(&"aws/us-east-1/use1-az4/p5.48xlarge/capacity_block".to_owned()),
        "{kinds:?}"
    );
    assert_eq!(
        kinds["spot_advisory"],
        vec!["aws/us-east-1//g5.xlarge/spot".to_owned()]
    );
    // each kind's payload, field by field
    let get = |k: &str, kind: &'static str| by_key.get(&(k.to_owned(), kind)).unwrap().clone();
    let price = get("aws/us-east-1/use1-az1/g5.xlarge/spot", "spot_price");
    let Payload::SpotPrice(p) = &price.payload else {
        unreachable!()
    };
    assert_eq!(p.currency, "USD");
    // around the scenario's base price (0.5) times at most the scarcity factor
    assert!((0.4..0.8).contains(&p.price_per_hour), "{p:?}");
    let block = get(
        "aws/us-east-1/use1-az4/p5.48xlarge/capacity_block",
        "capacity_block_offer",
    );
    let Payload::CapacityBlockOffer(b) = &block.payload else {
        unreachable!()
    };
    assert!(!b.offering_id.is_empty());
    assert!(b.instance_count >= 1 && b.instance_count <= 2, "{b:?}");
    assert!(b.end > b.start && b.start > chrono::Utc::now(), "{b:?}");
    assert_eq!(b.duration_hours % 24, 0, "{b:?}");
    assert_eq!(
        b.end - b.start,
        chrono::TimeDelta::hours(i64::from(b.duration_hours))
    );
    assert!(
        (b.upfront_fee - 31.5 * f64::from(b.instance_count) * f64::from(b.duration_hours)).abs()
            < 1e-6,
        "{b:?}"
    );
    assert_eq!(b.currency, "USD");
    let advisory = get("aws/us-east-1//g5.xlarge/spot", "spot_advisory");
    assert_eq!(
        advisory.payload,
        Payload::SpotAdvisory(SpotAdvisory {
            interruption_bucket: 1,
            savings_percent: 68,
        })
    );
    let offering = by_key
        .iter()
        .find(|((k, kind), _)| *kind == "offering" && k.contains("/p5.48xlarge/"))
        .map(|(_, s)| s.clone())
        .unwrap();
    assert_eq!(
        offering.payload,
        Payload::Offering(OfferingExposure { offered: true })
    );
    let score = get("aws/us-east-1/use1-az1/g5.xlarge/spot", "placement_score");
    let Payload::PlacementScore(ps) = &score.payload else {
        unreachable!()
    };
    assert!((1..=10).contains(&ps.score));
    assert_eq!(ps.target_capacity, 1, "default placement target");
    // placement scores follow true stock: the well-stocked zone scores higher
    let deep = placement["aws/us-east-1/use1-az1/g5.xlarge/spot"];
    let shallow = placement["aws/us-east-1/use1-az4/g5.xlarge/spot"];
    assert!(deep > shallow, "{placement:?}");
}
