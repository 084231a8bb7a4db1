//! Against the real Kafka-protocol broker (started by `deploy/local/stack up`; address from
//! `CAPSIGHT_KAFKA__BROKERS`). Fails, never skips, when the broker is down.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::time::Duration;

use capsight_kafka::{KafkaSettings, TopicSpec, admin};
use capsight_proto::{
    codec,
    domain::{Signal, SignalId},
};
use capsight_testkit::{kafka, process::unique, signals::spot_price};
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
};

fn settings() -> KafkaSettings {
    #[derive(serde::Deserialize)]
    struct Conf {
        kafka: KafkaSettings,
    }
    let mut k = capsight_runtime::config::load::<Conf>(None).unwrap().kafka;
    // fail within seconds, not minutes, when the broker is down
    k.request_timeout = Duration::from_secs(10);
    k
}

fn signal(i: usize) -> Signal {
    spot_price(
        SignalId::parse("id", &unique(&format!("test-{i}"))).unwrap(),
        &format!("aws/us-east-1/use1-az{}/p5.48xlarge/spot", i % 6 + 1),
        30.0 + i as f64,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_survive_the_broker_and_a_consumer_group_intact() {
    let kafka = settings();
    let topic = unique("test.signals");
    let specs = [TopicSpec::plain(topic.clone(), 3)];
    let created = admin::ensure_topics(&kafka, &specs)
        .await
        .expect("broker reachable at CAPSIGHT_KAFKA__BROKERS (run deploy/local/stack up)");
    assert_eq!(created, vec![admin::TopicOutcome::Created(topic.clone())]);
    // idempotent: a second call creates nothing
    let again = admin::ensure_topics(&kafka, &specs).await.unwrap();
    assert_eq!(again, vec![admin::TopicOutcome::Existed(topic.clone())]);

    let producer = kafka::producer(&kafka, Duration::from_secs(15));
    let sent: Vec<Signal> = (0..20).map(signal).collect();
    for s in &sent {
        kafka::send_signals(
            &producer,
            &topic,
            std::slice::from_ref(s),
            Duration::from_secs(15),
        )
        .await;
    }

    // a group member that stores each offset once it handled the message
    let consumer: StreamConsumer = kafka
        .consumer_config("test", &unique("test-group"))
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut received = Vec::new();
    while received.len() < sent.len() {
        let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("messages arrive within 30 s")
            .unwrap();
        let s = codec::decode_signal(msg.payload().unwrap()).unwrap();
        assert_eq!(msg.key(), Some(s.key.partition_key().as_bytes()));
        consumer.store_offset_from_message(&msg).unwrap();
        received.push(s);
    }
    received.sort_by(|a, b| a.id.cmp(&b.id));
    let mut expected = sent.clone();
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(received, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_broker_is_an_error_not_a_hang() {
    let mut kafka = settings();
    kafka.brokers = "127.0.0.1:1".into();
    kafka.request_timeout = Duration::from_secs(2);
    assert!(admin::cluster_brokers(&kafka).await.is_err());
}
