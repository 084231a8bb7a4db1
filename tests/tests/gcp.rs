//! Google Cloud signals end to end on the real stack: cloudsim with a GCP section (scenario
//! `gcp`), the collectors' libraries with the production GCP adapter (the operator's project
//! `capsight-ops`, its service-account key through the token endpoint), the broker, ClickHouse
//! and the `capsight-scorer` binary. Every GCP signal kind is published — quota (GPUs), Spot
//! price (Billing Catalog), offering (machine types), status (`incidents.json`), probe launch
//! attempts (insert, then delete) — and the GCP keys are scored: the stocked-out zone below the
//! stocked one.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use capsight_cloud::CloudAdapter;
use capsight_probe::{Planned, ProbeSettings, Prober, audit::Audit, budget::Budget};
use capsight_proto::{
    codec,
    domain::{CapacityKey, Provider},
};
use capsight_publisher::{Publisher, PublisherSettings};
use capsight_testkit::{
    Sandbox,
    cloud::{catalog, quick_retries},
};

/// Two H100s in stock all along.
const STOCKED: &str = "gcp/us-central1/us-central1-a/a3-highgpu-8g/on_demand";
/// Two H100s until the stockout at 10 minutes.
const STOCKED_OUT: &str = "gcp/us-central1/us-central1-c/a3-highgpu-8g/on_demand";

#[derive(serde::Deserialize)]
struct Defaults {
    quota: capsight_quota::QuotaSettings,
    spot: capsight_spot::SpotSettings,
    status: capsight_status::StatusSettings,
    probe: ProbeSettings,
}

#[tokio::test(flavor = "multi_thread")]
async fn every_gcp_signal_kind_is_published_and_a_stocked_out_zone_scores_below_a_stocked_one() {
    let sandbox = Sandbox::scoring("gcp").scenario("gcp").start().await;
    let _scorer = sandbox.spawn_scorer();
    let sim = sandbox.sim();
    let publisher =
        Publisher::new(&sandbox.kafka, &PublisherSettings::default(), "gcp-e2e").unwrap();
    let adapter: Arc<dyn CloudAdapter> =
        Arc::new(sim.gcp_adapter("operator", "capsight-ops", "us-central1", quick_retries(2)));
    let defaults = capsight_runtime::config::load_defaults::<Defaults>().unwrap();
    let now = chrono::Utc::now();

    // quota, Spot prices and offerings of us-central1
    let mut quota = capsight_quota::QuotaCollector::new(
        vec![Arc::clone(&adapter)],
        catalog(),
        defaults.quota.clone(),
        publisher.clone(),
    );
    let q = quota.poll_once(now).await;
    assert!(q.published > 0, "{q:?}");
    let mut spot = capsight_spot::SpotCollector::new(
        vec![Arc::clone(&adapter)],
        catalog(),
        defaults.spot.clone(),
        publisher.clone(),
    )
    .unwrap();
    let prices = spot.prices(now).await;
    assert!(prices.published > 0 && prices.errors == 0, "{prices:?}");
    let offerings = spot.offerings(now).await;
    assert!(
        offerings.published > 0 && offerings.errors == 0,
        "{offerings:?}"
    );

    // the status page's incident at 5 minutes, read as Google's incidents.json
    sim.advance(300).await;
    let mut status_settings = defaults.status.clone();
    status_settings.feeds = vec![capsight_status::feeds::FeedConfig {
        name: "gcp".into(),
        kind: capsight_status::feeds::FeedKind::GcpIncidents,
        url: format!("{}/incidents.json", sim.url()),
        provider: "gcp".into(),
        region: None,
        locations: Default::default(),
        products: vec![],
    }];
    let mut status = capsight_status::Collector::new(
        &status_settings,
        publisher.clone(),
        Arc::new(capsight_status::CatalogKeys((*catalog()).clone())),
    )
    .unwrap();
    let polled = status.poll_once().await;
    assert!(polled.signals > 0, "{polled:?}");

    // probes after the stockout of us-central1-c: success in -a, capacity errors in -c
    sim.advance(360).await;
    let audit = Audit::new(&sandbox.clickhouse).unwrap();
    let mut probe_settings = defaults.probe.clone();
    probe_settings.instance = "gcp-e2e".into();
    let prober = Prober::new(
        vec![Arc::clone(&adapter)],
        catalog(),
        probe_settings,
        publisher.clone(),
        audit,
        Budget::with_spent(10_000.0, 0.0, chrono::Utc::now()),
        "capsight-ops".into(),
    );
    for round in 0..4 {
        for key in [STOCKED, STOCKED_OUT] {
            let planned = Planned {
                key: key.parse::<CapacityKey>().unwrap(),
                priority: round,
                demand: 0.0,
            };
            let report = prober.probe(&planned).await;
            assert!(report.signal.is_some(), "{key}: {:?}", report.audit);
        }
    }
    // every probe instance is gone
    assert!(adapter.describe(&[]).await.unwrap().is_empty());
    publisher.flush(Duration::from_secs(30)).await.unwrap();

    // every signal kind on GCP keys, the probes' published in the background included
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let kinds = loop {
        let signals: Vec<_> = sandbox
            .read_topic(&sandbox.kafka.topics.signals)
            .await
            .iter()
            .filter_map(|r| codec::decode_signal(&r.payload).ok())
            .filter(|s| s.key.provider == Provider::Gcp)
            .collect();
        let probes = signals
            .iter()
            .filter(|s| s.payload.kind() == "launch_attempt")
            .count();
        if probes >= 8 || std::time::Instant::now() > deadline {
            break signals
                .iter()
                .map(|s| s.payload.kind())
                .collect::<BTreeSet<&str>>();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for kind in [
        "quota",
        "spot_price",
        "offering",
        "status",
        "launch_attempt",
    ] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }

    // scored: the stocked zone above the stocked-out one
    let scores = sandbox
        .wait_for_signal_counts(Duration::from_secs(120), &[STOCKED, STOCKED_OUT], 5)
        .await;
    let (up, out) = (&scores[STOCKED], &scores[STOCKED_OUT]);
    assert!(up.score > out.score, "{up:?} vs {out:?}");
    println!(
        "gcp: {STOCKED} {} ({}), {STOCKED_OUT} {} ({}); signal kinds {kinds:?}",
        up.score, up.label, out.score, out.label
    );
    sandbox.cleanup().await;
}
