//! Crash test: the real `capsight-scorer` binary is killed with SIGKILL again and again while
//! 100 000 signals flow. Afterwards ClickHouse holds every signal exactly once (after
//! de-duplication) and the final scores equal those of an uninterrupted run of the same binary
//! over the same topic (a second deployment: own group, scores topic and database).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use capsight_kafka::DLQ_REASON_HEADER;
use capsight_proto::domain::{
    CrowdReport, CrowdReportKind, ErrorClass, OfferingExposure, Payload, PlacementScore, Signal,
    SignalId, SignalSource, SpotPrice, StatusEvent, StatusSeverity, TenantHash,
};
use capsight_testkit::{
    Sandbox, clickhouse::signal_counts, process::ChildGuard, signals::launch,
    wait::eventually_every,
};
use chrono::{DateTime, Utc};

const SIGNALS: usize = 100_000;
const GARBAGE: usize = 10;
const KILLS: usize = 5;

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn keys() -> Vec<String> {
    let mut keys = Vec::new();
    for (region, zones) in [
        (
            "us-east-1",
            &["use1-az1", "use1-az2", "use1-az4", "use1-az6"][..],
        ),
        ("us-west-2", &["usw2-az1", "usw2-az2", "usw2-az3"][..]),
        ("eu-west-1", &["euw1-az1", "euw1-az2", "euw1-az3"][..]),
    ] {
        for zone in zones {
            for it in ["p5.48xlarge", "p4d.24xlarge", "g6e.xlarge", "g5.xlarge"] {
                for market in ["on_demand", "spot"] {
                    keys.push(format!("aws/{region}/{zone}/{it}/{market}"));
                }
            }
        }
    }
    keys
}

/// 100k signals over ~47 h of event time, slightly out of order, with sub-millisecond times,
/// every payload kind the model reads, and several tenants.
fn signals(run: &str) -> Vec<Signal> {
    let keys = keys();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let base = DateTime::<Utc>::from_timestamp(1_795_000_000, 0).unwrap();
    (0..SIGNALS)
        .map(|i| {
            let key = &keys[rng.below(keys.len() as u64) as usize];
            let jitter_ms = rng.below(600_000) as i64 - 300_000;
            let at = base
                + chrono::Duration::milliseconds(i as i64 * 1_700 + jitter_ms)
                + chrono::Duration::nanoseconds(rng.below(1_000_000) as i64);
            let id = format!("crash-{run}-{i}");
            let roll = rng.below(100);
            let mut s = match roll {
                0..=39 => launch(&id, key, at, ErrorClass::None),
                40..=54 => launch(&id, key, at, ErrorClass::Capacity),
                55..=59 => launch(&id, key, at, ErrorClass::Quota),
                _ => launch(&id, key, at, ErrorClass::None),
            };
            s.payload = match roll {
                0..=59 => s.payload,
                60..=74 => Payload::SpotPrice(SpotPrice {
                    price_per_hour: 20.0 + rng.below(2_000) as f64 / 100.0,
                    currency: "USD".into(),
                }),
                75..=84 => Payload::PlacementScore(PlacementScore {
                    score: 1 + rng.below(10) as u8,
                    target_capacity: 1,
                }),
                85..=92 => {
                    s.source = SignalSource::Report;
                    s.tenant =
                        Some(TenantHash::parse("tenant", &format!("t{}", rng.below(6))).unwrap());
                    Payload::CrowdReport(CrowdReport {
                        kind: [
                            CrowdReportKind::Available,
                            CrowdReportKind::Unavailable,
                            CrowdReportKind::Interrupted,
                        ][rng.below(3) as usize],
                        error_class: ErrorClass::Capacity,
                        error_code: String::new(),
                        note: String::new(),
                    })
                }
                93..=96 => {
                    s.source = SignalSource::Status;
                    Payload::Status(StatusEvent {
                        feed: "aws-rss".into(),
                        incident_id: format!("inc-{}", rng.below(3)),
                        severity: StatusSeverity::ALL[rng.below(5) as usize],
                        title: "t".into(),
                        resolved: rng.below(2) == 0,
                        url: String::new(),
                    })
                }
                _ => Payload::Offering(OfferingExposure {
                    offered: rng.below(10) != 0,
                }),
            };
            if matches!(
                s.payload,
                Payload::SpotPrice(_) | Payload::PlacementScore(_)
            ) {
                s.source = SignalSource::Spot;
            }
            s.id = SignalId::parse("id", &id).unwrap();
            s
        })
        .collect()
}

/// Shortened for test time, not for production (45 s / 2 min there): a killed member must leave
/// the group within seconds, and a member that lost the group must notice and rejoin within a
/// test's patience; stored offsets are committed every second, so a kill finds some committed.
/// The session timeout leaves room for a broker that answers heartbeats late under this load
/// (tansu has taken over 6 s late in a full test run).
/// Fast group liveness; and tenant trust held at its prior (no report is ever checked: a
/// first-party verdict never reaches 1). Trust is an input reloaded on a wall-clock interval,
/// so two runs would score the last batch of a key under different trust snapshots; this test
/// compares what crashes do to signal processing with that input fixed (trust itself:
/// `tests/tests/tenant_trust.rs`).
const CONSUMER_ENV: [(&str, &str); 6] = [
    ("CAPSIGHT_KAFKA__CONSUMER__SESSION_TIMEOUT", "10s"),
    ("CAPSIGHT_KAFKA__CONSUMER__HEARTBEAT_INTERVAL", "1s"),
    ("CAPSIGHT_KAFKA__CONSUMER__STALL_AFTER", "20s"),
    ("CAPSIGHT_KAFKA__CONSUMER__CHECK_INTERVAL", "2s"),
    ("CAPSIGHT_KAFKA__CONSUMER__COMMIT_INTERVAL", "1s"),
    ("CAPSIGHT_TRUST__MIN_VERDICT", "1"),
];

fn spawn_scorer(sandbox: &Sandbox, log: &str) -> ChildGuard {
    sandbox.spawn(
        &format!("capsight-scorer-{log}"),
        sandbox
            .command(env!("CARGO_BIN_EXE_capsight-scorer"))
            .envs(CONSUMER_ENV),
    )
}

/// Distinct signal ids stored so far.
async fn stored(sandbox: &Sandbox) -> u64 {
    signal_counts(&sandbox.client(), false).await.0
}

async fn wait_until_all_stored(sandbox: &Sandbox, timeout: Duration) {
    eventually_every(
        Duration::from_millis(500),
        timeout,
        &format!("{}: all {SIGNALS} signals stored", sandbox.name),
        || async {
            match stored(sandbox).await {
                n if n == SIGNALS as u64 => Ok(()),
                n => Err(format!("only {n} stored")),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_while_signals_flow_loses_nothing_and_double_counts_nothing() {
    let crashy = Arc::new(
        Sandbox::builder("scorer_crash")
            .topics(4)
            .database()
            .profile("scorer")
            .start()
            .await,
    );
    let calm = crashy.twin("calm").await;
    let signals = signals(&crashy.name);

    // both deployments consume the same topic; only one of them gets killed
    let calm_child = spawn_scorer(&calm, "calm");
    let mut child = spawn_scorer(&crashy, "crashy");

    // publish in slices while the killing goes on
    let publisher = tokio::spawn({
        let crashy = Arc::clone(&crashy);
        let signals = signals.clone();
        async move {
            for (n, chunk) in signals.chunks(SIGNALS / 20).enumerate() {
                crashy.publish(chunk).await;
                if n % 4 == 0 {
                    crashy
                        .publish_raw("garbage", format!("garbage {n}").as_bytes())
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(1_500)).await;
            }
            for n in 0..GARBAGE - 5 {
                crashy
                    .publish_raw("garbage", format!("late garbage {n}").as_bytes())
                    .await;
            }
        }
    });

    let mut rng = Rng(42);
    for kill in 0..KILLS {
        // kill only once this instance has written something (it holds partitions and has
        // state), then at a random point of its work
        let before = stored(&crashy).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while stored(&crashy).await == before && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1_500))).await;
        child.kill(); // SIGKILL
        eprintln!(
            "kill {kill}: {} signals stored so far",
            stored(&crashy).await
        );
        child = spawn_scorer(&crashy, "crashy");
    }
    publisher.await.unwrap();

    // Supervisor, as in production (systemd / Kubernetes restart a process that exited): a
    // scorer that lost its group membership rejoins by itself, and exits non-zero when that
    // does not help; it is then restarted, for as long as signals are missing (the give-up may
    // come late: tansu can keep a group wedged for minutes after a kill). Both scorers must
    // stay up otherwise.
    let mut restarts = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let n = stored(&crashy).await;
        if n == SIGNALS as u64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: only {n} of {SIGNALS} signals stored after 300 s ({restarts} restarts)",
            crashy.name
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(status) = child.wait_for(Duration::ZERO) {
            assert!(
                !status.success(),
                "the scorer exited cleanly without being asked to"
            );
            eprintln!("supervisor: the scorer exited with {status}; restarting it");
            child = spawn_scorer(&crashy, "crashy");
            restarts += 1;
            assert!(restarts <= 4, "the scorer keeps exiting");
        }
    }
    wait_until_all_stored(&calm, Duration::from_secs(150)).await;
    // let the last batches' scores out, then stop both gracefully
    child.terminate(Duration::from_secs(60));
    calm_child.terminate(Duration::from_secs(60));

    // every signal exactly once after de-duplication
    assert_eq!(
        signal_counts(&crashy.client(), true).await,
        (SIGNALS as u64, SIGNALS as u64)
    );

    // the same final scores as the uninterrupted run, for every key
    let crashed_scores = crashy.latest_scores().await;
    let calm_scores = calm.latest_scores().await;
    assert_eq!(calm_scores.len(), keys().len());
    let mut differing = BTreeSet::new();
    for (key, score) in &calm_scores {
        if crashed_scores.get(key) != Some(score) {
            differing.insert(key.clone());
        }
    }
    assert!(
        differing.is_empty(),
        "{} keys differ, e.g. {:?}: crashed {:?} vs calm {:?}",
        differing.len(),
        differing.first(),
        differing.first().and_then(|k| crashed_scores.get(k)),
        differing.first().and_then(|k| calm_scores.get(k)),
    );
    assert_eq!(crashed_scores.len(), calm_scores.len());

    // every garbage message reached the dead-letter topic (at least once) with a reason
    let dead = crashy.read_topic(&crashy.kafka.topics.signals_dlq).await;
    let payloads: BTreeSet<Vec<u8>> = dead.iter().map(|r| r.payload.clone()).collect();
    assert_eq!(payloads.len(), GARBAGE, "{payloads:?}");
    assert!(
        dead.iter()
            .all(|r| r.headers[DLQ_REASON_HEADER].starts_with("protobuf:"))
    );

    crashy.cleanup().await;
    calm.cleanup().await;
}
