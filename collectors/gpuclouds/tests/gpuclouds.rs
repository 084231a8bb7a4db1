//! `capsight-gpuclouds --once` against an in-process cloudsim's Lambda API (scenario
//! `lambda`) and the real broker: one availability signal per watched (region, type), available
//! exactly where the scenario has stock, with the listed price; offerings for the same keys; a
//! failed poll publishes no availability at all.

#![allow(
    clippy::unwrap_used,
    reason = "a panic in a test is a failed assertion"
)]

use std::collections::BTreeMap;

use capsight_proto::domain::{Availability, Payload, Provider, SignalSource};
use capsight_testkit::{
    Sandbox, cloud::Sim, fixtures::scenario, kafka::consume_all, process::succeed,
};

const OPS: &str = "secret_ops_0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn the_listing_becomes_availability_and_offering_signals() {
    let sandbox = Sandbox::builder("gpuclouds")
        .signals(2)
        .cloudsim(Sim::builder(scenario("lambda")))
        .start()
        .await;
    succeed(
        sandbox
            .command(env!("CARGO_BIN_EXE_capsight-gpuclouds"))
            .arg("--once")
            .envs(sandbox.sim().lambda_env(OPS))
            .env("CAPSIGHT_CLOUD__MAX_ATTEMPTS", "1"),
    );
    let signals = consume_all(&sandbox.kafka, &sandbox.kafka.topics.signals).await;
    let mut availability = BTreeMap::new();
    let mut offered = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for s in &signals {
        assert_eq!(s.source, SignalSource::Availability, "{s:?}");
        assert_eq!(s.key.provider, Provider::Lambda);
        assert_eq!(s.key.zone, None, "Lambda keys are region-wide");
        assert!(s.id.as_str().starts_with("availability-"), "{s:?}");
        assert!(ids.insert(s.id.clone()), "duplicate id {s:?}");
        match &s.payload {
            Payload::Availability(a) => {
                availability.insert(s.key.to_string(), a.clone());
            }
            Payload::Offering(o) => {
                assert!(o.offered);
                offered.push(s.key.to_string());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let h100 = |r: &str| format!("lambda/{r}//gpu_8x_h100_sxm5/on_demand");
    let a100 = |r: &str| format!("lambda/{r}//gpu_1x_a100_sxm4/on_demand");
    assert_eq!(
        availability[&h100("us-south-2")],
        Availability {
            available: true,
            listed_usd_per_hour: Some(23.92)
        }
    );
    // a catalog region without stock (us-west-3 has a pool, empty; us-east-3 has none)
    assert!(!availability[&h100("us-west-3")].available);
    assert!(!availability[&h100("us-east-3")].available);
    assert!(availability[&a100("us-east-1")].available);
    assert!(availability[&a100("us-west-1")].available);
    assert!(!availability[&a100("asia-south-1")].available);
    // exactly the scenario's stocked pools are available
    let available: Vec<&String> = availability
        .iter()
        .filter(|(_, a)| a.available)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        available,
        [&a100("us-east-1"), &h100("us-south-2"), &a100("us-west-1")]
    );
    // one offering per watched key
    let mut keys: Vec<String> = availability.keys().cloned().collect();
    keys.sort();
    offered.sort();
    assert_eq!(offered, keys);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_poll_publishes_no_availability() {
    let sandbox = Sandbox::builder("gpuclouds_fail")
        .signals(1)
        .cloudsim(Sim::builder(scenario("lambda")))
        .start()
        .await;
    sandbox.sim().fault("lambda/instance-types", "500", 1).await;
    succeed(
        sandbox
            .command(env!("CARGO_BIN_EXE_capsight-gpuclouds"))
            .arg("--once")
            .envs(sandbox.sim().lambda_env(OPS))
            .env("CAPSIGHT_CLOUD__MAX_ATTEMPTS", "1"),
    );
    let signals = consume_all(&sandbox.kafka, &sandbox.kafka.topics.signals).await;
    assert!(!signals.is_empty(), "offerings still published");
    assert!(
        signals
            .iter()
            .all(|s| !matches!(s.payload, Payload::Availability(_))),
        "{signals:?}"
    );
}
