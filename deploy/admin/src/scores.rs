//! `capsight-admin scores`: the latest score per key, read from the compacted scores topic and
//! printed as a table — what the demo shows until the gateway and CLI serve it.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Context;
use capsight_kafka::KafkaSettings;
use capsight_proto::{codec, domain::Score};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
};

/// Reads the whole scores topic (up to its high watermarks) and keeps the last score per key.
pub async fn latest(kafka: &KafkaSettings) -> anyhow::Result<BTreeMap<String, Score>> {
    let group = format!("capsight-admin-scores-{}", std::process::id());
    let consumer: StreamConsumer = kafka
        .consumer_config("admin", &group)
        .set("enable.auto.commit", "false")
        .create()?;
    let topic = kafka.topics.scores.clone();
    let timeout = kafka.request_timeout;
    let (consumer, highs) = tokio::task::spawn_blocking(move || {
        let meta = consumer.fetch_metadata(Some(&topic), timeout)?;
        let partitions: Vec<i32> = meta
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut highs = BTreeMap::new();
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            let (low, high) = consumer.fetch_watermarks(&topic, p, timeout)?;
            if high > low {
                highs.insert(p, high);
                tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
            }
        }
        consumer.assign(&tpl)?;
        Ok::<_, rdkafka::error::KafkaError>((consumer, highs))
    })
    .await??;

    let mut latest = BTreeMap::new();
    let mut pending = highs;
    while !pending.is_empty() {
        let msg = tokio::time::timeout(Duration::from_secs(10), consumer.recv())
            .await
            .context("timed out reading the scores topic")??;
        if let Ok(score) = codec::decode_score(msg.payload().unwrap_or_default()) {
            latest.insert(score.key.to_string(), score);
        }
        if pending
            .get(&msg.partition())
            .is_some_and(|high| msg.offset() + 1 >= *high)
        {
            pending.remove(&msg.partition());
        }
    }
    Ok(latest)
}

/// Prints the table.
pub async fn run(kafka: &KafkaSettings) -> anyhow::Result<()> {
    let scores = latest(kafka).await?;
    if scores.is_empty() {
        println!("no scores yet on {}", kafka.topics.scores);
        return Ok(());
    }
    println!(
        "{:<52} {:>5}  {:<11} {:>4}  {:>7}  {:<8}  evidence",
        "key", "score", "label", "conf", "signals", "updated"
    );
    for (key, s) in &scores {
        let evidence: Vec<String> = s
            .evidence
            .iter()
            .take(3)
            .map(|e| format!("{} {:+.0}", e.feature, e.contribution))
            .collect();
        println!(
            "{:<52} {:>5}  {:<11} {:>4.2}  {:>7}  {:<8}  {}",
            key,
            s.score,
            s.label.as_str(),
            s.confidence,
            s.signal_count,
            s.updated_at.format("%H:%M:%S"),
            evidence.join(", ")
        );
    }
    println!("{} keys", scores.len());
    Ok(())
}
