//! The smallest pipeline that exists before the collectors and the scorer: publish sample
//! signals to the signals topic, consume them back in a consumer group, store them in ClickHouse
//! and print what ClickHouse holds.

use std::time::Duration;

use anyhow::Context;
use capsight_clickhouse::{ClickHouseSettings, rows::SignalRow};
use capsight_kafka::KafkaSettings;
use capsight_proto::{
    codec,
    domain::{
        ErrorClass, LaunchAttempt, Payload, ProbeMethod, Signal, SignalId, SignalSource, SpotPrice,
    },
};
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
    producer::{FutureProducer, FutureRecord},
};

fn samples(run: &str) -> anyhow::Result<Vec<Signal>> {
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for (i, (key, ok)) in [
        ("aws/us-east-1/use1-az4/p5.48xlarge/on_demand", false),
        ("aws/us-east-1/use1-az6/p5.48xlarge/on_demand", true),
        ("aws/us-west-2/usw2-az2/p4d.24xlarge/on_demand", true),
        ("aws/eu-west-1/euw1-az1/g6e.xlarge/on_demand", true),
    ]
    .into_iter()
    .enumerate()
    {
        let key = key.parse()?;
        out.push(Signal {
            id: SignalId::parse("id", &format!("demo-{run}-{i}"))?,
            observed_at: now,
            source: SignalSource::Probe,
            tenant: None,
            key,
            payload: Payload::LaunchAttempt(LaunchAttempt {
                error_code: if ok {
                    String::new()
                } else {
                    "InsufficientInstanceCapacity".into()
                },
                method: ProbeMethod::CapacityReservation,
                ..LaunchAttempt::with_class(
                    if ok {
                        ErrorClass::None
                    } else {
                        ErrorClass::Capacity
                    },
                    Some(41_000),
                )
            }),
        });
    }
    out.push(Signal {
        id: SignalId::parse("id", &format!("demo-{run}-price"))?,
        observed_at: now,
        source: SignalSource::Spot,
        tenant: None,
        key: "aws/us-east-1/use1-az4/p5.48xlarge/spot".parse()?,
        payload: Payload::SpotPrice(SpotPrice {
            price_per_hour: 31.46,
            currency: "USD".into(),
        }),
    });
    Ok(out)
}

/// Runs the demo.
pub async fn run(kafka: &KafkaSettings, clickhouse: &ClickHouseSettings) -> anyhow::Result<()> {
    let run = chrono::Utc::now().timestamp_millis().to_string();
    let signals = samples(&run)?;
    let producer: FutureProducer = kafka.producer_config("demo").create()?;
    for s in &signals {
        let payload = codec::encode_signal(s);
        let key = s.key.partition_key();
        producer
            .send(
                FutureRecord::to(&kafka.topics.signals)
                    .key(&key)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .context("publishing a sample signal")?;
    }
    println!(
        "demo: published {} signals to {}",
        signals.len(),
        kafka.topics.signals
    );

    let consumer: StreamConsumer = kafka.consumer_config("demo", "capsight-demo").create()?;
    consumer.subscribe(&[&kafka.topics.signals])?;
    let wanted: std::collections::HashSet<&str> = signals.iter().map(|s| s.id.as_str()).collect();
    let mut rows = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while rows.len() < wanted.len() {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .context("timed out waiting for the sample signals to come back")??;
        match codec::decode_signal(msg.payload().unwrap_or_default()) {
            Ok(s) if wanted.contains(s.id.as_str()) => {
                rows.push(SignalRow::new(&s, chrono::Utc::now()))
            }
            Ok(_) => {}
            Err(e) => println!("demo: skipping an undecodable message: {}", e.reason()),
        }
        consumer.store_offset_from_message(&msg)?;
    }
    println!(
        "demo: consumed {} signals back through consumer group capsight-demo",
        rows.len()
    );

    let client = clickhouse.client()?;
    let mut insert = client.insert::<SignalRow>("signals").await?;
    for row in &rows {
        insert.write(row).await?;
    }
    insert.end().await?;
    println!(
        "demo: wrote them to ClickHouse {}.signals; read back:",
        clickhouse.database
    );

    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Line {
        key: String,
        kind: String,
        outcome: String,
        error_code: String,
    }
    let lines = client
        .query(capsight_clickhouse::sql::DEMO_SIGNALS.sql)
        .bind(format!("demo-{run}-"))
        .fetch_all::<Line>()
        .await?;
    for l in lines {
        println!(
            "  {:<50} {:<15} {:<10} {}",
            l.key, l.kind, l.outcome, l.error_code
        );
    }
    Ok(())
}
