//! `capsight-gpuclouds --once` against an in-process cloudsim's Lambda API (scenario
//! `lambda`) and the real broker: one availability signal per watched (region, type), available
//! exactly where the scenario has stock, with the listed price; offerings for the same keys; a
//! failed poll publishes no availability at all. The same against cloudsim's RunPod API
//! (scenario `runpod`, config `gpuclouds-runpod`): RunPod's stock level per (cloud type, type).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::collections::BTreeMap;

use capsight_proto::domain::{Availability, Payload, Provider, Signal, SignalSource, StockLevel};
use capsight_testkit::fixtures::collector_world;
use capsight_testkit::{Sandbox, kafka::consume_all, process::succeed};

const OPS: &str = "secret_ops_0123456789";

/// Runs `capsight-gpuclouds --once` with the provider credentials in `env` (no retries) and
/// returns every signal it published.
async fn poll_once(sandbox: &Sandbox, env: [(&'static str, String); 2]) -> Vec<Signal> {
    succeed(
        sandbox
            .once(env!("CARGO_BIN_EXE_capsight-gpuclouds"))
            .envs(env),
    );
    consume_all(&sandbox.kafka, &sandbox.kafka.topics.signals).await
}

/// The availability of each key of `signals`, and the keys offered (each offering signal says
/// offered); any other payload fails the test.
fn by_payload(signals: &[Signal]) -> (BTreeMap<String, Availability>, Vec<String>) {
    let mut availability = BTreeMap::new();
    let mut offered = Vec::new();
    for s in signals {
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
    (availability, offered)
}

/// The keys `availability` says are available, in order.
fn available(availability: &BTreeMap<String, Availability>) -> Vec<&String> {
    availability
        .iter()
        .filter(|(_, a)| a.available)
        .map(|(k, _)| k)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listing_becomes_availability_and_offering_signals() {
    let sandbox = collector_world("gpuclouds", 2, "lambda").start().await;
    let signals = poll_once(&sandbox, sandbox.sim().lambda_env(OPS)).await;
    let mut ids = std::collections::BTreeSet::new();
    for s in &signals {
        assert_eq!(s.source, SignalSource::Availability, "{s:?}");
        assert_eq!(s.key.provider, Provider::Lambda);
        assert_eq!(s.key.zone, None, "Lambda keys are region-wide");
        assert!(s.id.as_str().starts_with("availability-"), "{s:?}");
        assert!(ids.insert(s.id.clone()), "duplicate id {s:?}");
    }
    let (availability, mut offered) = by_payload(&signals);
    let h100 = |r: &str| format!("lambda/{r}//gpu_8x_h100_sxm5/on_demand");
    let a100 = |r: &str| format!("lambda/{r}//gpu_1x_a100_sxm4/on_demand");
    assert_eq!(
        availability[&h100("us-south-2")],
        Availability {
            available: true,
            listed_usd_per_hour: Some(23.92),
            stock: None,
        }
    );
    // a catalog region without stock (us-west-3 has a pool, empty; us-east-3 has none)
    assert!(!availability[&h100("us-west-3")].available);
    assert!(!availability[&h100("us-east-3")].available);
    assert!(availability[&a100("us-east-1")].available);
    assert!(availability[&a100("us-west-1")].available);
    assert!(!availability[&a100("asia-south-1")].available);
    // exactly the scenario's stocked pools are available
    assert_eq!(
        available(&availability),
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
    let sandbox = collector_world("gpuclouds_fail", 1, "lambda").start().await;
    sandbox.sim().fault("lambda/instance-types", "500", 1).await;
    let signals = poll_once(&sandbox, sandbox.sim().lambda_env(OPS)).await;
    assert!(!signals.is_empty(), "offerings still published");
    assert!(
        signals
            .iter()
            .all(|s| !matches!(s.payload, Payload::Availability(_))),
        "{signals:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runpod_stock_becomes_availability_signals_with_its_level() {
    let sandbox = collector_world("gpuclouds_runpod", 1, "runpod")
        .profile("gpuclouds-runpod")
        .start()
        .await;
    let signals = poll_once(&sandbox, sandbox.sim().runpod_env("rpa_OPS0123456789")).await;
    for s in &signals {
        assert_eq!(s.key.provider, Provider::RunPod, "{s:?}");
        assert_eq!(s.source, SignalSource::Availability);
    }
    let (availability, offered) = by_payload(&signals);
    let runpod_types = capsight_testkit::cloud::catalog()
        .iter()
        .filter(|g| g.provider == Provider::RunPod)
        .count();
    // both cloud types of every catalog RunPod type, once each
    assert_eq!(availability.len(), 2 * runpod_types);
    assert_eq!(offered.len(), 2 * runpod_types);
    let level = |k: &str| availability[k].stock;
    assert_eq!(
        availability["runpod/secure//1x_h100_sxm/on_demand"],
        Availability {
            available: true,
            listed_usd_per_hour: Some(2.69),
            stock: Some(StockLevel::High),
        }
    );
    assert_eq!(
        level("runpod/secure//8x_h100_sxm/on_demand"),
        Some(StockLevel::Medium)
    );
    assert_eq!(
        level("runpod/community//1x_rtx_4090/on_demand"),
        Some(StockLevel::Low)
    );
    let none = &availability["runpod/community//1x_h100_sxm/on_demand"];
    assert_eq!(none.stock, Some(StockLevel::None));
    assert!(!none.available);
    // exactly the scenario's stocked on-demand pools are available
    assert_eq!(
        available(&availability),
        [
            "runpod/community//1x_rtx_4090/on_demand",
            "runpod/secure//1x_h100_sxm/on_demand",
            "runpod/secure//8x_h100_sxm/on_demand",
        ]
    );
}
