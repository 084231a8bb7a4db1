//! Against the real RabbitMQ (started by `deploy/local/stack up`; URL from
//! `CAPSIGHT_AMQP__URL`), one prefixed topology per test. Fails, never skips, when it is down.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::time::Duration;

use capsight_amqp::{AmqpSettings, LaunchTopology};
use capsight_testkit::{Sandbox, wait::eventually_every};
use futures::StreamExt;
use lapin::{
    BasicProperties, Channel, Connection,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions,
        BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    },
    types::FieldTable,
};

/// The test's own topology names.
async fn settings(test: &str) -> AmqpSettings {
    Sandbox::builder(test).amqp().start().await.amqp.clone()
}

/// A connection and a channel in confirm mode on which `s`'s topology is declared.
async fn open(s: &AmqpSettings) -> (Connection, Channel) {
    let conn = s
        .connect()
        .await
        .expect("RabbitMQ reachable at CAPSIGHT_AMQP__URL (run deploy/local/stack up)");
    let channel = conn.create_channel().await.unwrap();
    s.launch.declare(&channel).await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (conn, channel)
}

async fn publish_confirmed(channel: &Channel, t: &LaunchTopology, key: &str, body: &[u8]) {
    let confirm = channel
        .basic_publish(
            t.exchange.as_str().into(),
            key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "broker acked the publish");
    assert!(confirm.take_message().is_none(), "message was routed");
}

async fn get(channel: &Channel, queue: &str) -> Option<lapin::message::BasicGetMessage> {
    channel
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .unwrap()
}

async fn cleanup(channel: &Channel, t: &LaunchTopology) {
    t.delete(channel).await.unwrap();
}

#[tokio::test]
async fn a_confirmed_job_is_consumed_and_acked() {
    let s = settings("amqp_roundtrip").await;
    let (conn, channel) = open(&s).await;
    // declaring twice with the same arguments is a no-op
    s.launch.declare(&channel).await.unwrap();
    publish_confirmed(&channel, &s.launch, &s.launch.jobs_routing_key, b"job-1").await;

    let consumer_channel = conn.create_channel().await.unwrap();
    consumer_channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consumer_channel
        .basic_consume(
            s.launch.jobs_queue.as_str().into(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .expect("delivered within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(delivery.data, b"job-1");
    delivery.ack(BasicAckOptions::default()).await.unwrap();
    drop(consumer);
    consumer_channel.close(200, "done".into()).await.unwrap();

    // acked means gone
    let left = get(&channel, &s.launch.jobs_queue).await;
    assert!(left.is_none());
    cleanup(&channel, &s.launch).await;
}

#[tokio::test]
async fn a_job_past_its_delivery_limit_is_dead_lettered() {
    let mut s = settings("amqp_poison").await;
    s.launch.delivery_limit = 2;
    let (_conn, channel) = open(&s).await;
    publish_confirmed(&channel, &s.launch, &s.launch.jobs_routing_key, b"poison").await;

    // reject with requeue until the broker gives up on it
    let mut rejections = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never dead-lettered"
        );
        if let Some(m) = get(&channel, &s.launch.jobs_queue).await {
            rejections += 1;
            m.delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
                .unwrap();
            continue;
        }
        if let Some(dead) = get(&channel, &s.launch.dead_letter_queue).await {
            assert_eq!(dead.delivery.data, b"poison");
            dead.delivery.ack(BasicAckOptions::default()).await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // delivery limit 2: delivered, redelivered twice more at most, then dead-lettered
    assert!((2..=3).contains(&rejections), "rejected {rejections} times");
    cleanup(&channel, &s.launch).await;
}

#[tokio::test]
async fn a_retried_job_comes_back_after_the_delay() {
    let mut s = settings("amqp_retry").await;
    s.launch.retry_delay = Duration::from_millis(500);
    let (_conn, channel) = open(&s).await;
    publish_confirmed(&channel, &s.launch, &s.launch.retry_routing_key, b"later").await;
    let start = tokio::time::Instant::now();
    let m = eventually_every(
        Duration::from_millis(100),
        Duration::from_secs(15),
        "the retried job back on the jobs queue",
        || get(&channel, &s.launch.jobs_queue),
    )
    .await;
    assert_eq!(m.delivery.data, b"later");
    m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "waited the delay"
    );
    cleanup(&channel, &s.launch).await;
}
