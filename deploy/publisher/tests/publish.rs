//! The publisher against real Kafka-protocol brokers: the shared local one
//! (`CAPSIGHT_KAFKA__BROKERS`) and a private tansu started on a free port to play "the broker is
//! down, then comes back".

#![allow(
    clippy::unwrap_used,
    reason = "a panic in a test is a failed assertion"
)]

use std::{collections::HashMap, time::Duration};

use capsight_kafka::{KafkaSettings, TopicSpec, admin};
use capsight_proto::{
    codec,
    domain::{Payload, Signal, SignalId, SignalSource, SpotPrice},
};
use capsight_publisher::{Publisher, PublisherSettings, SIGNAL_ID_HEADER};
use capsight_testkit::{
    broker::PrivateBroker,
    process::{free_port, unique},
};
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
    message::Headers,
};

#[derive(serde::Deserialize)]
struct Conf {
    kafka: KafkaSettings,
}

fn shared_kafka() -> KafkaSettings {
    capsight_runtime::config::load::<Conf>(None).unwrap().kafka
}

fn signal(i: usize) -> Signal {
    Signal {
        id: SignalId::derived(
            SignalSource::Spot,
            &["test", &i.to_string(), &unique("run")],
        ),
        observed_at: chrono::Utc::now(),
        source: SignalSource::Spot,
        tenant: None,
        key: format!("aws/us-west-2/usw2-az{}/g6e.xlarge/spot", i % 4 + 1)
            .parse()
            .unwrap(),
        payload: Payload::SpotPrice(SpotPrice {
            price_per_hour: 1.0 + i as f64 / 100.0,
            currency: "USD".into(),
        }),
    }
}

async fn create_topic(kafka: &KafkaSettings, topic: &str) {
    let spec = TopicSpec::plain(topic.to_owned(), 4);
    admin::ensure_topics(kafka, &[spec]).await.unwrap();
}

/// Reads `n` messages from `topic` (from the start) as (signal, headers).
async fn consume(
    kafka: &KafkaSettings,
    topic: &str,
    n: usize,
) -> Vec<(Signal, HashMap<String, String>)> {
    let consumer: StreamConsumer = kafka
        .consumer_config("test", &unique("test-group"))
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("messages arrive within 30 s")
            .unwrap();
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let s = codec::decode_signal(msg.payload().unwrap()).unwrap();
        assert_eq!(msg.key(), Some(s.key.partition_key().as_bytes()));
        out.push((s, headers));
    }
    // nothing beyond n: no duplicates
    let extra = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await;
    assert!(extra.is_err(), "more than {n} messages on {topic}");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn published_signals_arrive_once_with_headers() {
    let _ = capsight_runtime::telemetry::init("publisher-test", &Default::default());
    let mut kafka = shared_kafka();
    kafka.topics.signals = unique("test.publish");
    create_topic(&kafka, &kafka.topics.signals).await;
    let publisher = Publisher::new(&kafka, &PublisherSettings::default(), "test").unwrap();
    let sent: Vec<Signal> = (0..30).map(signal).collect();
    let span = tracing::info_span!("probe-run");
    let _guard = span.enter();
    for s in &sent {
        publisher.publish(s).await.unwrap();
    }
    drop(_guard);
    publisher.flush(Duration::from_secs(5)).await.unwrap();
    let stats = publisher.stats();
    assert_eq!((stats.delivered, stats.failed, stats.buffered), (30, 0, 0));

    let got = consume(&kafka, &kafka.topics.signals, sent.len()).await;
    let mut ids: Vec<&str> = got.iter().map(|(s, _)| s.id.as_str()).collect();
    ids.sort_unstable();
    let mut want: Vec<&str> = sent.iter().map(|s| s.id.as_str()).collect();
    want.sort_unstable();
    assert_eq!(ids, want);
    for (s, headers) in &got {
        assert_eq!(headers.get(SIGNAL_ID_HEADER), Some(&s.id.to_string()));
        assert!(
            headers
                .get("traceparent")
                .is_some_and(|t| t.starts_with("00-")),
            "{headers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_wait_for_an_unreachable_broker_and_a_full_buffer_never_drops() {
    let port = free_port();
    let mut kafka = shared_kafka();
    kafka.brokers = format!("127.0.0.1:{port}");
    kafka.topics.signals = unique("test.outage");
    let settings = PublisherSettings {
        buffer_max_messages: 5,
        ..PublisherSettings::default()
    };
    let publisher = Publisher::new(&kafka, &settings, "test").unwrap();

    // 12 signals while nothing listens: 5 fill the buffer, 7 wait for room
    let sent: Vec<Signal> = (0..12).map(signal).collect();
    let tasks: Vec<_> = sent
        .iter()
        .cloned()
        .map(|s| {
            let p = publisher.clone();
            tokio::spawn(async move { p.publish(&s).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = publisher.stats();
    assert_eq!(stats.buffered, 5, "{stats:?}");
    assert_eq!((stats.delivered, stats.failed), (0, 0), "{stats:?}");
    assert!(
        tasks.iter().all(|t| !t.is_finished()),
        "publish returned while undelivered"
    );

    // the broker comes up; the topic is created; everything drains
    let _broker = PrivateBroker::start_on(port).await;
    let mut created = false;
    for _ in 0..50 {
        if admin::cluster_brokers(&kafka).await.is_ok() {
            create_topic(&kafka, &kafka.topics.signals).await;
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(created, "private broker did not start on {port}");
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("delivered within 60 s of the broker coming up")
            .unwrap()
            .unwrap();
    }
    publisher.flush(Duration::from_secs(5)).await.unwrap();
    let stats = publisher.stats();
    assert_eq!((stats.delivered, stats.failed, stats.buffered), (12, 0, 0));
    let got = consume(&kafka, &kafka.topics.signals, 12).await;
    assert_eq!(got.len(), 12);
}
