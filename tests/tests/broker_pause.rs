//! A frozen broker must not stop capsight's consumers for good.
//!
//! The real `capsight-scorer` binary and the gateway's scores view run against a private broker
//! while signals flow. The broker is frozen (`SIGSTOP`) for longer than the consumers' session
//! timeout — at an arbitrary moment, and at the exact moment the scorer commits its offsets —
//! then thawed (`SIGCONT`), several times in one run. After every thaw each signal is stored
//! exactly once in ClickHouse, the scorer is the same process (it recovered without a restart)
//! and healthy, and the view holds, for every key, a score that counts every signal of the key
//! once.
//!
//! The session timeout is shortened to 6 s (and `stall_after` to 15 s) so that each freeze
//! outlasts it in test time; production keeps 45 s and 2 min (`[kafka.consumer]`).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use capsight_gateway::view::{self, ScoresView};
use capsight_kafka::KafkaSettings;
use capsight_proto::domain::Signal;
use capsight_runtime::shutdown::Shutdown;
use capsight_testkit::{
    Sandbox,
    broker::{PrivateBroker, api},
    clickhouse::signal_counts,
    kafka,
    process::{ChildGuard, free_port, send_signal},
    signals::launch,
};
use rdkafka::producer::FutureProducer;

const KEYS: usize = 8;
const PER_ROUND: usize = 1_500;
/// Longer than the 6 s session timeout.
const FREEZE: Duration = Duration::from_secs(10);

fn key(i: usize) -> String {
    let zones = ["use1-az1", "use1-az2", "use1-az4", "use1-az6"];
    let market = if i.is_multiple_of(2) {
        "on_demand"
    } else {
        "spot"
    };
    format!("aws/us-east-1/{}/p5.48xlarge/{market}", zones[i % 4])
}

/// How long a record may wait for a frozen broker: it must wait, not fail.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(300);

/// The shortened consumer timeouts, as a binary reads them from its environment.
const CONSUMER_ENV: [(&str, &str); 6] = [
    ("CAPSIGHT_KAFKA__CONSUMER__SESSION_TIMEOUT", "6s"),
    ("CAPSIGHT_KAFKA__CONSUMER__HEARTBEAT_INTERVAL", "1s"),
    ("CAPSIGHT_KAFKA__CONSUMER__COMMIT_INTERVAL", "1s"),
    ("CAPSIGHT_KAFKA__CONSUMER__STALL_AFTER", "15s"),
    ("CAPSIGHT_KAFKA__CONSUMER__CHECK_INTERVAL", "1s"),
    ("CAPSIGHT_KAFKA__CONSUMER__MAX_RECOVERIES", "3"),
];

struct Rig {
    broker: PrivateBroker,
    sandbox: Sandbox,
    /// The sandbox's Kafka settings with the shortened consumer timeouts.
    kafka: KafkaSettings,
    producer: FutureProducer,
    published: BTreeMap<String, usize>,
    next_id: usize,
}

impl Rig {
    async fn new() -> Self {
        let broker = PrivateBroker::start_behind_proxy().await;
        let sandbox = Sandbox::builder("pause")
            .brokers(&broker.brokers())
            .topics(4)
            .database()
            .profile("scorer")
            .start()
            .await;
        let mut kafka = sandbox.kafka.clone();
        kafka.consumer.session_timeout = Duration::from_secs(6);
        kafka.consumer.heartbeat_interval = Duration::from_secs(1);
        kafka.consumer.stall_after = Duration::from_secs(15);
        kafka.consumer.check_interval = Duration::from_secs(1);
        kafka.consumer.max_recoveries = 3;
        let producer = kafka::producer(&kafka, PRODUCE_TIMEOUT);
        Self {
            broker,
            sandbox,
            kafka,
            producer,
            published: BTreeMap::new(),
            next_id: 0,
        }
    }

    fn scorer(&self, health_port: u16) -> ChildGuard {
        self.sandbox.spawn(
            "capsight-scorer",
            self.sandbox
                .scorer_command(Some(health_port))
                .envs(CONSUMER_ENV),
        )
    }

    /// Publishes `n` new signals spread over the keys; returns when the broker acknowledged
    /// them (so it may be frozen meanwhile).
    async fn publish(&mut self, n: usize) {
        let now = chrono::Utc::now();
        let signals: Vec<Signal> = (0..n)
            .map(|i| {
                let id = self.next_id + i;
                let k = key(id % KEYS);
                *self.published.entry(k.clone()).or_default() += 1;
                launch(
                    &format!("pause-{id}"),
                    &k,
                    now - chrono::Duration::milliseconds((n - i) as i64),
                    capsight_proto::domain::ErrorClass::None,
                )
            })
            .collect();
        self.next_id += n;
        kafka::send_signals(
            &self.producer,
            &self.kafka.topics.signals,
            &signals,
            PRODUCE_TIMEOUT,
        )
        .await;
    }

    fn total(&self) -> u64 {
        self.next_id as u64
    }

    async fn stored(&self, merged: bool) -> (u64, u64) {
        signal_counts(&self.sandbox.client(), merged).await
    }

    /// Waits until every published signal is stored and the view counts every signal of every
    /// key; panics with the state after `timeout`.
    async fn wait_caught_up(&self, view: &ScoresView, what: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (distinct, _) = self.stored(false).await;
            let counted: BTreeMap<String, usize> = self
                .published
                .keys()
                .map(|k| {
                    (
                        k.clone(),
                        view.get(k).map_or(0, |s| s.signal_count as usize),
                    )
                })
                .collect();
            if distinct == self.total() && counted == self.published {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: after {timeout:?} {distinct} of {} signals stored; view counts {counted:?}, published {:?}",
                self.total(),
                self.published
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

async fn healthz(port: u16) -> u16 {
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{port}/healthz"),
        ])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn frozen_broker_loses_nothing_counts_nothing_twice_and_needs_no_restart() {
    let mut rig = Rig::new().await;
    let health_port = free_port();
    let mut scorer = rig.scorer(health_port);
    let pid_scorer = scorer.id();

    let view = ScoresView::new();
    let view_shutdown = Shutdown::new();
    let follow = tokio::spawn(view::follow(
        Arc::clone(&view),
        rig.kafka.clone(),
        view_shutdown.clone(),
    ));

    rig.publish(PER_ROUND).await;
    rig.wait_caught_up(&view, "before any freeze", Duration::from_secs(60))
        .await;
    assert_eq!(healthz(health_port).await, 200);

    // three freezes at arbitrary moments, then three at the moment of an offset commit, each
    // while more signals are on their way
    for round in 0..6 {
        let at_commit = round >= 3;
        let pid = rig.broker.pid();
        if at_commit {
            // a commit follows the next stored batch within commit_interval; on a slow machine
            // it can come while the first half is still being produced, which then waits for
            // the thaw like the second half, sent once the broker is frozen
            let frozen = rig.broker.pause_on_next(api::OFFSET_COMMIT);
            let is_frozen = tokio::sync::Notify::new();
            let freeze_then_thaw = async {
                tokio::time::timeout(Duration::from_secs(30), frozen)
                    .await
                    .expect("no offset commit within 30 s");
                is_frozen.notify_one();
                tokio::time::sleep(FREEZE).await;
                send_signal(pid, "CONT");
            };
            let publish = async {
                rig.publish(PER_ROUND / 2).await;
                is_frozen.notified().await;
                rig.publish(PER_ROUND / 2).await;
            };
            tokio::join!(freeze_then_thaw, publish);
        } else {
            rig.publish(PER_ROUND / 2).await;
            rig.broker.pause();
            // more signals while frozen: the producer holds them until the thaw
            let thaw = async move {
                tokio::time::sleep(FREEZE).await;
                send_signal(pid, "CONT");
            };
            tokio::join!(thaw, rig.publish(PER_ROUND / 2));
        }
        eprintln!(
            "round {round} (frozen {}): thawed; {} offset commits seen",
            if at_commit {
                "at an offset commit"
            } else {
                "mid-flow"
            },
            rig.broker.proxy().seen(api::OFFSET_COMMIT)
        );
        rig.wait_caught_up(&view, &format!("round {round}"), Duration::from_secs(120))
            .await;
        assert_eq!(
            scorer.wait_for(Duration::ZERO),
            None,
            "round {round}: the scorer exited instead of recovering"
        );
        assert_eq!(scorer.id(), pid_scorer);
    }

    // exactly once, and healthy again without a restart
    assert_eq!(rig.stored(true).await, (rig.total(), rig.total()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while healthz(health_port).await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the scorer reports unhealthy although it caught up"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    view_shutdown.trigger();
    follow.await.unwrap().unwrap();
    scorer.terminate(Duration::from_secs(60));
    rig.sandbox.cleanup().await;
}
