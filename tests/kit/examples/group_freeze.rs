//! Minimal reproduction: a bare librdkafka group consumer against a private tansu broker that
//! is frozen (`SIGSTOP`) for longer than the session timeout, then thawed. Prints a timeline of
//! rebalance callbacks and consumed messages; with tansu 0.6.0 the consumer never gets its
//! partition back (see `docs/adr/0004-consumer-liveness.md`).
//!
//! `cargo run -p capsight-testkit --example group_freeze` (needs tansu: `deploy/local/stack
//! install`).

#![allow(
    clippy::unwrap_used,
    reason = "a reproduction: any failure is the output"
)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use capsight_testkit::broker::PrivateBroker;
use rdkafka::{
    ClientConfig, ClientContext,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance},
    producer::{FutureProducer, FutureRecord},
};

struct Ctx(Instant);
impl ClientContext for Ctx {}
impl ConsumerContext for Ctx {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let what = match r {
            Rebalance::Assign(tpl) => format!("assigned {} partition(s)", tpl.count()),
            Rebalance::Revoke(tpl) => format!("revoked {} partition(s)", tpl.count()),
            Rebalance::Error(e) => format!("rebalance error {e}"),
        };
        println!("{:>6.1}s  {what}", self.0.elapsed().as_secs_f64());
    }
}

async fn produce(p: &FutureProducer, topic: &str, from: u64, n: u64) {
    for i in from..from + n {
        let payload = i.to_string();
        p.send(
            FutureRecord::to(topic).key("k").payload(&payload),
            Duration::from_secs(120),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    }
}

#[tokio::main]
async fn main() {
    let start = Instant::now();
    let broker = PrivateBroker::start().await;
    let topic = "freeze";
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    let consumed = Arc::new(AtomicU64::new(0));
    let consumer: BaseConsumer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "freeze-group")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("auto.offset.reset", "earliest")
        .create_with_context(Ctx(start))
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let counter = Arc::clone(&consumed);
    std::thread::spawn(move || {
        loop {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(200)) {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let report = |what: &str| {
        println!(
            "{:>6.1}s  {what}: {} consumed",
            start.elapsed().as_secs_f64(),
            consumed.load(Ordering::SeqCst)
        );
    };
    produce(&producer, topic, 0, 100).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    report("before the freeze (100 produced)");
    broker.pause();
    report("broker frozen (SIGSTOP) for 10 s > session.timeout.ms 6 s");
    tokio::time::sleep(Duration::from_secs(10)).await;
    broker.resume();
    report("broker thawed (SIGCONT)");
    produce(&producer, topic, 100, 100).await;
    report("100 more produced");
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        report("waiting");
    }
    let n = consumed.load(Ordering::SeqCst);
    println!(
        "result: {n} of 200 consumed 60 s after the thaw: {}",
        if n >= 200 {
            "the consumer recovered"
        } else {
            "the consumer is stuck"
        }
    );
}
