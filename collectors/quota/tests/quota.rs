//! `capsight-quota --once` against an in-process cloudsim (through the standard AWS
//! environment chain, as in production) and the real broker.

#![allow(
    clippy::unwrap_used,
    reason = "a panic in a test is a failed assertion"
)]

use std::{collections::BTreeMap, process::Command, time::Duration};

use capsight_cloudsim::{CloudsimSettings, scenario::Scenario};
use capsight_kafka::{KafkaSettings, TopicSpec, admin};
use capsight_proto::{
    codec,
    domain::{Market, Payload, Provider, QuotaReading, SignalSource},
};
use capsight_runtime::shutdown::Shutdown;
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
};

fn scenario() -> String {
    capsight_testkit::fixtures::scenario("quota")
}

#[derive(serde::Deserialize)]
struct Conf {
    kafka: KafkaSettings,
}

fn run_once(sim: &str, topic: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_capsight-quota"))
        .arg("--once")
        .env("AWS_ENDPOINT_URL", sim)
        .env("AWS_ACCESS_KEY_ID", "AKIATESTQUOTA")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_REGION", "us-east-1")
        .env("CAPSIGHT_KAFKA__TOPICS__SIGNALS", topic)
        .env("CAPSIGHT_QUOTA__REGIONS", "[\"us-east-1\"]")
        .env("CAPSIGHT_QUOTA__MARKETS", "[\"on_demand\"]")
        .env("CAPSIGHT_CLOUD__MAX_ATTEMPTS", "1")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn quotas_become_headroom_signals_with_stable_ids() {
    let shutdown = Shutdown::new();
    let settings = CloudsimSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        time_scale: 0.0,
        tick: Duration::from_millis(20),
        ..CloudsimSettings::default()
    };
    let sim = capsight_cloudsim::start(
        &settings,
        Scenario::parse(&scenario()).unwrap(),
        None,
        shutdown.clone(),
    )
    .await
    .unwrap();
    let kafka = capsight_runtime::config::load::<Conf>(None).unwrap().kafka;
    let topic = format!("test.quota-{}", uuid::Uuid::new_v4().simple());
    admin::ensure_topics(&kafka, &[TopicSpec::plain(topic.clone(), 2)])
        .await
        .expect("broker reachable (deploy/local/stack up)");

    let started = chrono::Utc::now();
    for _ in 0..2 {
        let out = run_once(&sim.url(), &topic);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let consumer: StreamConsumer = kafka
        .consumer_config("test", &format!("g-{}", uuid::Uuid::new_v4()))
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut headroom: BTreeMap<String, u32> = BTreeMap::new();
    let mut readings = BTreeMap::new();
    while let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
        let s = codec::decode_signal(msg.payload().unwrap()).unwrap();
        assert_eq!(msg.key(), Some(s.key.partition_key().as_bytes()));
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
            .push(s.id.to_string());
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
    // two runs in the same heartbeat period publish the same ids: downstream dedup absorbs them
    assert!(!ids.is_empty());
    for (key, v) in &ids {
        assert_eq!(v.len(), 2, "{key}: {v:?}");
        assert_eq!(v[0], v[1], "{key}");
    }
    shutdown.trigger();
}
