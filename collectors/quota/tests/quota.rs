//! `capsight-quota --once` against an in-process cloudsim (through the standard AWS
//! environment chain, as in production) and the real broker.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::collections::BTreeMap;

use capsight_proto::domain::{Market, Payload, Provider, QuotaReading, SignalSource};
use capsight_testkit::fixtures::collector_world;
use capsight_testkit::{Sandbox, kafka::consume_all, process::succeed};

/// `capsight-quota --once`, which must succeed.
fn run_once(sandbox: &Sandbox) {
    succeed(
        sandbox
            .once(env!("CARGO_BIN_EXE_capsight-quota"))
            .envs(sandbox.sim().aws_env("AKIATESTQUOTA"))
            .env("CAPSIGHT_QUOTA__REGIONS", "[\"us-east-1\"]")
            .env("CAPSIGHT_QUOTA__MARKETS", "[\"on_demand\"]"),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quotas_become_headroom_signals_one_id_per_observation() {
    let sandbox = collector_world("quota", 2, "quota").start().await;

    let started = chrono::Utc::now();
    for _ in 0..2 {
        run_once(&sandbox);
    }

    let mut ids: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    let mut headroom: BTreeMap<String, u32> = BTreeMap::new();
    let mut readings = BTreeMap::new();
    // each keyed by its partition key
    for s in consume_all(&sandbox.kafka, &sandbox.kafka.topics.signals).await {
        let Payload::Quota(q) = &s.payload else {
            panic!("not a quota signal: {s:?}")
        };
        // every field of the signal
        assert_eq!(s.source, SignalSource::Quota);
        assert_eq!(s.tenant, None);
        assert_eq!(s.key.provider, Provider::Aws);
        assert_eq!(s.key.region.as_str(), "us-east-1");
        assert_eq!(s.key.zone, None, "quotas are regional");
        assert_eq!(s.key.market, Market::OnDemand);
        assert!(
            s.observed_at >= started && s.observed_at <= chrono::Utc::now(),
            "{s:?}"
        );
        assert!(s.id.as_str().starts_with("quota-"), "{s:?}");
        headroom.insert(s.key.instance_type.to_string(), q.headroom_instances);
        readings.insert(s.key.instance_type.to_string(), q.clone());
        ids.entry(s.key.to_string())
            .or_default()
            .push((s.id.to_string(), s.observed_at.timestamp_millis()));
    }
    // 1152 vCPUs of P quota: 6 x p5.48xlarge (192 vCPUs); 64 vCPUs of G quota: 16 x g5.xlarge
    assert_eq!(headroom.get("p5.48xlarge"), Some(&6), "{headroom:?}");
    assert_eq!(headroom.get("g5.xlarge"), Some(&16), "{headroom:?}");
    assert_eq!(
        readings["p5.48xlarge"],
        QuotaReading {
            quota_code: "L-417A185B".into(),
            limit: 1152.0,
            used: 0.0,
            headroom_instances: 6,
        }
    );
    assert_eq!(
        readings["g5.xlarge"],
        QuotaReading {
            quota_code: "L-DB2E81BA".into(),
            limit: 64.0,
            used: 0.0,
            headroom_instances: 16,
        }
    );
    // two runs (a restart) are two observations of each key, each under an id of its own: one
    // id at two observation times would be stored and counted as two observations of one id
    assert!(!ids.is_empty());
    for (key, v) in &ids {
        assert_eq!(v.len(), 2, "{key}: {v:?}");
        assert_ne!(v[0].0, v[1].0, "{key}: {v:?}");
        assert_ne!(v[0].1, v[1].1, "{key}: {v:?}");
    }
}
