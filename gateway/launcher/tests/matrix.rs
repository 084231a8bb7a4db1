//! The launch path's fault matrix, on private services (RabbitMQ, ClickHouse, a Kafka broker:
//! never the shared stack) with two real `capsight-launcher` binaries: a steady workload of
//! launches submitted as the gateway's `Launch` does it (outbox, idempotency key, retried by
//! the client while refused), and one fault at a time, each twice — a launcher `kill -9`ed,
//! RabbitMQ stopped, ClickHouse killed, the Kafka broker killed. Per fault it prints and checks: jobs
//! lost, double launches (instances per client token), leaked instances, launch-attempt
//! signals lost or duplicated on Kafka, and the recovery time (fault over -> every job of the
//! row running). Needs `cargo build -p capsight-launcher --bins`. Results table:
//! `docs/reliability.md`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod launcher;

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use capsight_kafka::TopicSpec;
use capsight_launch::{queue::JobPublisher, store::Store};
use capsight_proto::domain::{LaunchState, Payload, SignalId, SignalSource};
use capsight_testkit::launches::launch_request as request;
use capsight_testkit::{
    broker::PrivateBroker, kafka, outage::outages, private_clickhouse::PrivateClickHouse,
    process::ChildGuard, rabbit::PrivateRabbit,
};
use launcher::{ACME, Harness, P5_AZ4, P5_AZ6};

const LIMIT: Duration = Duration::from_secs(120);
/// Jobs submitted before each fault, and at most during it (one every 1.5 s).
const BEFORE: usize = 2;
const DURING: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    LauncherKill9,
    RabbitMqStopped,
    ClickHouseKilled,
    KafkaBrokerKilled,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::LauncherKill9 => "launcher kill -9 (x2)",
            Self::RabbitMqStopped => "RabbitMQ stopped 5 s (x2)",
            Self::ClickHouseKilled => "ClickHouse killed 5 s (x2)",
            Self::KafkaBrokerKilled => "Kafka broker killed 3 s (x2)",
        }
    }
}

/// Fields drop in order: the harness last, since its sandbox directory holds the private
/// nodes' state (stopping RabbitMQ needs its home directory).
struct World {
    rabbit: PrivateRabbit,
    ch: PrivateClickHouse,
    broker: PrivateBroker,
    store: Store,
    queue: Arc<JobPublisher>,
    env: Vec<(String, String)>,
    victim: Option<ChildGuard>,
    spawned: usize,
    h: Harness,
}

impl World {
    fn spawn(&mut self) -> ChildGuard {
        self.spawned += 1;
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.h
            .spawn_binary(&env, &format!("matrix-{}", self.spawned))
    }
}

/// `Launch` as a client drives it: retried (same idempotency key) until accepted. Returns the
/// job id and how many attempts were refused.
async fn submit(
    store: &Store,
    queue: &JobPublisher,
    key: &str,
    idempotency_key: &str,
) -> (String, u32) {
    let mut refused = 0;
    loop {
        let s = launcher::submit(store, queue, request(key, idempotency_key)).await;
        match s {
            Ok(s) => return (s.job_id.into_string(), refused),
            Err(_) => {
                refused += 1;
                assert!(refused < 200, "Launch refused for 100 s");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn inject(w: &mut World, fault: Fault) {
    match fault {
        Fault::LauncherKill9 => {
            for _ in 0..2 {
                if let Some(v) = w.victim.take() {
                    v.kill();
                }
                tokio::time::sleep(Duration::from_millis(800)).await;
                w.victim = Some(w.spawn());
                tokio::time::sleep(Duration::from_millis(1200)).await;
            }
        }
        Fault::RabbitMqStopped => outages(&mut w.rabbit, 2, secs(5), secs(2)).await,
        Fault::ClickHouseKilled => outages(&mut w.ch, 2, secs(5), secs(2)).await,
        Fault::KafkaBrokerKilled => outages(&mut w.broker, 2, secs(3), secs(2)).await,
    }
}

#[derive(Debug, Default)]
struct Row {
    fault: &'static str,
    jobs: usize,
    refused: u32,
    lost: usize,
    double: usize,
    leaked: usize,
    signals_lost: usize,
    signals_duplicated: usize,
    recovery: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_matrix_of_the_launch_path() {
    let h = Harness::start("60s").await;
    let mut rabbit = PrivateRabbit::new(&h.sandbox.dir);
    rabbit.start().await;
    let (ch, ch_settings) = h.private_clickhouse().await;
    let broker = PrivateBroker::start().await;
    let mut kafka_settings = h.config.kafka.clone();
    kafka_settings.brokers = broker.brokers();
    kafka::wait_for_broker(&kafka_settings, Duration::from_secs(10)).await;
    kafka::ensure_topics(
        &kafka_settings,
        &[TopicSpec::plain(kafka_settings.topics.signals.clone(), 2)],
    )
    .await;
    let mut amqp = h.config.amqp.clone();
    amqp.url = rabbit.url().into();
    let env: Vec<(String, String)> = [
        ("CAPSIGHT_AMQP__URL", rabbit.url()),
        ("CAPSIGHT_CLICKHOUSE__URL", ch.url()),
        ("CAPSIGHT_CLICKHOUSE__CONNECT_TIMEOUT", "1s".into()),
        ("CAPSIGHT_CLICKHOUSE__IO_TIMEOUT", "2s".into()),
        ("CAPSIGHT_KAFKA__BROKERS", broker.brokers()),
        ("CAPSIGHT_LAUNCHER__TENANT_SHARE", "0".into()),
        ("CAPSIGHT_LAUNCHER__POLL_INTERVAL", "200ms".into()),
        ("CAPSIGHT_LAUNCHER__CLOUD_TIMEOUT", "5s".into()),
        ("CAPSIGHT_LAUNCHER__RECONNECT_DELAY", "500ms".into()),
        ("CAPSIGHT_LAUNCHER__OUTBOX__INTERVAL", "500ms".into()),
        ("CAPSIGHT_LAUNCHER__OUTBOX__GRACE", "2s".into()),
        ("CAPSIGHT_LAUNCHER__RECONCILE__INTERVAL", "1s".into()),
        ("CAPSIGHT_LAUNCHER__LEASES__LEADER_RETRY", "300ms".into()),
        ("CAPSIGHT_LAUNCHER__LEASES__WAIT", "2s".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let store = Store::new(ch_settings.client().unwrap());
    let queue = Arc::new(JobPublisher::new(amqp, Duration::from_secs(2)));
    let mut w = World {
        h,
        rabbit,
        ch,
        broker,
        store,
        queue,
        env,
        victim: None,
        spawned: 0,
    };
    w.victim = Some(w.spawn());
    let _steady = w.spawn();

    let mut rows = Vec::new();
    let mut all_jobs = Vec::new();
    for (n, fault) in [
        Fault::LauncherKill9,
        Fault::RabbitMqStopped,
        Fault::ClickHouseKilled,
        Fault::KafkaBrokerKilled,
    ]
    .into_iter()
    .enumerate()
    {
        let mut row = Row {
            fault: fault.name(),
            ..Row::default()
        };
        let key = |i: usize| {
            if (n + i).is_multiple_of(2) {
                P5_AZ4
            } else {
                P5_AZ6
            }
        };
        let mut jobs = Vec::new();
        for i in 0..BEFORE {
            let (job, refused) = submit(&w.store, &w.queue, key(i), &format!("m-{n}-{i}")).await;
            row.refused += refused;
            jobs.push(job);
        }
        // the workload goes on during the fault (clients retry what is refused)
        let stop = Arc::new(AtomicBool::new(false));
        let during = {
            let (store, queue, stop) = (w.store.clone(), Arc::clone(&w.queue), Arc::clone(&stop));
            let keys: Vec<&'static str> = (BEFORE..BEFORE + DURING).map(key).collect();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for (i, key) in keys.into_iter().enumerate() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    out.push(submit(&store, &queue, key, &format!("m-{n}-d{i}")).await);
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                }
                out
            })
        };
        inject(&mut w, fault).await;
        let over = Instant::now();
        stop.store(true, Ordering::SeqCst);
        for (job, refused) in during.await.unwrap() {
            row.refused += refused;
            jobs.push(job);
        }
        row.jobs = jobs.len();
        let deadline = over + LIMIT;
        loop {
            let mut running = 0;
            for job in &jobs {
                if let Ok(Some(l)) = w.store.launch(ACME, job).await
                    && l.events
                        .last()
                        .is_some_and(|e| e.state == LaunchState::Running)
                {
                    running += 1;
                }
            }
            if running == jobs.len() {
                row.recovery = over.elapsed();
                break;
            }
            if Instant::now() >= deadline {
                row.lost = jobs.len() - running;
                row.recovery = over.elapsed();
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        rows.push(row);
        all_jobs.push(jobs);
    }

    // instances: one per client token, each the running instance of its job
    let instances =
        w.h.sandbox
            .tenant_adapter(ACME)
            .await
            .describe(&[])
            .await
            .unwrap();
    let signals = kafka::consume_all(&kafka_settings, &kafka_settings.topics.signals).await;
    let mut signal_ids: BTreeMap<SignalId, usize> = BTreeMap::new();
    for s in &signals {
        if s.source == SignalSource::Launch && matches!(s.payload, Payload::LaunchAttempt(_)) {
            *signal_ids.entry(s.id.clone()).or_default() += 1;
        }
    }
    for (row, jobs) in rows.iter_mut().zip(&all_jobs) {
        for job in jobs {
            let mine: Vec<_> = instances
                .iter()
                .filter(|i| i.tags.get("capsight:job") == Some(job))
                .collect();
            let mut tokens: BTreeMap<String, usize> = BTreeMap::new();
            for i in &mine {
                *tokens
                    .entry(i.client_token.clone().unwrap_or_default())
                    .or_default() += 1;
            }
            row.double += tokens.values().filter(|n| **n > 1).count();
            let serving = w
                .store
                .launch(ACME, job)
                .await
                .unwrap()
                .and_then(|l| l.events.last().cloned())
                .filter(|e| e.state == LaunchState::Running)
                .map(|e| e.instance_id)
                .unwrap_or_default();
            row.leaked += mine
                .iter()
                .filter(|i| i.state.is_live() && i.id.as_str() != serving)
                .count();
            let id = SignalId::derived(SignalSource::Launch, &[job, "1", "succeeded"]);
            match signal_ids.get(&id).copied().unwrap_or(0) {
                0 => row.signals_lost += 1,
                1 => {}
                n => row.signals_duplicated += n - 1,
            }
        }
    }
    println!(
        "| fault | jobs | Launch refused (client retried) | jobs lost | double launches | leaked \
         instances | signals lost | signals duplicated | recovery |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s |",
            r.fault,
            r.jobs,
            r.refused,
            r.lost,
            r.double,
            r.leaked,
            r.signals_lost,
            r.signals_duplicated,
            r.recovery.as_secs_f64()
        );
    }
    for r in &rows {
        assert_eq!((r.lost, r.double, r.leaked), (0, 0, 0), "{r:?}");
    }
    w.h.sandbox.cleanup().await;
}
