//! `capsight-admin scores` reads the compacted scores topic and shows the latest score per key.

#![allow(
    clippy::unwrap_used,
    reason = "a panic in a test is a failed assertion"
)]

use std::{process::Command, time::Duration};

use capsight_e2e::admin_bin;
use capsight_kafka::{KafkaSettings, TopicSpec, admin};
use capsight_proto::{
    codec,
    domain::{Evidence, Feature, Label, Score},
};
use rdkafka::producer::{FutureProducer, FutureRecord};

#[derive(serde::Deserialize)]
struct Conf {
    kafka: KafkaSettings,
}

fn score(key: &str, value: u8) -> Score {
    Score {
        key: key.parse().unwrap(),
        score: value,
        label: Label::for_score(value),
        confidence: 0.7,
        evidence: vec![Evidence {
            feature: Feature::LaunchSuccessRate,
            value: 0.9,
            contribution: 36.0,
            samples: 10,
        }],
        window: Duration::from_secs(86_400),
        updated_at: chrono::Utc::now(),
        signal_count: 10,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scores_table_shows_the_latest_score_per_key() {
    let kafka = capsight_runtime::config::load::<Conf>(None).unwrap().kafka;
    let topic = format!("test.scores-{}", uuid::Uuid::new_v4().simple());
    admin::ensure_topics(
        &kafka,
        &[TopicSpec {
            name: topic.clone(),
            partitions: 2,
            replication: 1,
            configs: vec![("cleanup.policy".into(), "compact".into())],
        }],
    )
    .await
    .unwrap();
    let producer: FutureProducer = kafka.producer_config("test").create().unwrap();
    for s in [
        score("aws/us-east-1/use1-az4/p5.48xlarge/spot", 91),
        score("aws/us-east-1/use1-az4/p5.48xlarge/spot", 42),
        score("aws/us-west-2//g6e.xlarge/on_demand", 65),
    ] {
        let key = s.key.to_string();
        producer
            .send(
                FutureRecord::to(&topic)
                    .key(&key)
                    .payload(&codec::encode_score(&s)),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let out = Command::new(admin_bin())
        .arg("scores")
        .env("CAPSIGHT_KAFKA__TOPICS__SCORES", &topic)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 keys"), "{stdout}");
    let p5 = stdout
        .lines()
        .find(|l| l.starts_with("aws/us-east-1/use1-az4/p5.48xlarge/spot"))
        .unwrap();
    assert!(p5.contains(" 42 ") && p5.contains("unavailable"), "{p5}");
    assert!(stdout.contains("limited"), "{stdout}");
}
