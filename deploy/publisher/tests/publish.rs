//! The publisher against real Kafka-protocol brokers: the shared local one
//! (`CAPSIGHT_KAFKA__BROKERS`) and a private tansu started on a free port to play "the broker is
//! down, then comes back".

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{collections::HashMap, time::Duration};

use capsight_kafka::{KafkaSettings, TopicSpec};
use capsight_proto::domain::{Signal, SignalId, SignalSource};
use capsight_publisher::{Publisher, PublisherSettings, SIGNAL_ID_HEADER};
use capsight_testkit::{
    Sandbox,
    broker::PrivateBroker,
    kafka,
    process::{free_port, unique},
    signals::spot_price,
};

fn signal(i: usize) -> Signal {
    spot_price(
        SignalId::derived(
            SignalSource::Spot,
            &["test", &i.to_string(), &unique("run")],
        ),
        &format!("aws/us-west-2/usw2-az{}/g6e.xlarge/spot", i % 4 + 1),
        1.0 + i as f64 / 100.0,
    )
}

/// Reads exactly `n` messages from `topic` (from the start, each within 30 s, nothing more
/// within 2 s: no duplicates) as (signal, headers).
async fn consume(
    kafka: &KafkaSettings,
    topic: &str,
    n: usize,
) -> Vec<(Signal, HashMap<String, String>)> {
    let reader = kafka::Reader::subscribe(kafka, topic);
    let got = reader.take(n, Duration::from_secs(30)).await;
    reader.expect_quiet(Duration::from_secs(2)).await;
    got.into_iter().map(|r| (r.signal(), r.headers)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn published_signals_arrive_once_with_headers() {
    let _ = capsight_runtime::telemetry::init("publisher-test", &Default::default());
    let sandbox = Sandbox::builder("publish").signals(4).start().await;
    let kafka = &sandbox.kafka;
    let publisher = Publisher::new(kafka, &PublisherSettings::default(), "test").unwrap();
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

    let got = consume(kafka, &kafka.topics.signals, sent.len()).await;
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
    // nothing listens on the port yet
    let sandbox = Sandbox::builder("outage")
        .brokers(&format!("127.0.0.1:{port}"))
        .start()
        .await;
    let kafka = &sandbox.kafka;
    let settings = PublisherSettings {
        buffer_max_messages: 5,
        ..PublisherSettings::default()
    };
    let publisher = Publisher::new(kafka, &settings, "test").unwrap();

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
    kafka::wait_for_broker(kafka, Duration::from_secs(10)).await;
    kafka::ensure_topics(kafka, &[TopicSpec::plain(kafka.topics.signals.clone(), 4)]).await;
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
    let got = consume(kafka, &kafka.topics.signals, 12).await;
    assert_eq!(got.len(), 12);
}
