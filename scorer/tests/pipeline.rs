//! The scorer library's `run` against the real broker and ClickHouse: a known signal sequence
//! gives the expected scores, labels, evidence and alerts in ClickHouse and on the scores
//! topic; garbage lands in the dead-letter topic with its reason; a restart rebuilds windows
//! from ClickHouse.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::time::Duration;

use capsight_kafka::DLQ_REASON_HEADER;
use capsight_proto::domain::{ErrorClass, Feature, Label, Signal};
use capsight_runtime::shutdown::Shutdown;
use capsight_scorer::{ScorerConfig, engine::Engine};
use capsight_testkit::{Sandbox, signals::launch};
use chrono::{DateTime, Utc};

const A: &str = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";
const B: &str = "aws/us-west-2/usw2-az2/p4d.24xlarge/on_demand";

fn t(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_000_000 + minute * 60, 0).unwrap()
}

/// The test's topics (signals and scores with `partitions` partitions), consumer group and
/// migrated database, and the scorer's config for them.
async fn sandbox(test: &str, partitions: i32) -> (Sandbox, ScorerConfig) {
    let sandbox = Sandbox::builder(test)
        .topics(partitions)
        .database()
        .profile("scorer")
        .start()
        .await;
    let config = sandbox.config();
    (sandbox, config)
}

fn start(config: &ScorerConfig) -> (Shutdown, tokio::task::JoinHandle<()>) {
    let shutdown = Shutdown::new();
    let task = tokio::spawn({
        let config = config.clone();
        let shutdown = shutdown.clone();
        async move { capsight_scorer::run(config, shutdown).await.unwrap() }
    });
    (shutdown, task)
}

async fn stop(shutdown: Shutdown, task: tokio::task::JoinHandle<()>) {
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the scorer stops within 60 s")
        .unwrap();
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct Count {
    n: u64,
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct HistoryLine {
    key: String,
    score: u8,
    label: String,
    evidence: String,
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct AlertLine {
    key: String,
    from_label: String,
    to_label: String,
    low_confidence: u8,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_known_sequence_gives_the_expected_scores_alerts_and_dead_letters() {
    let (sandbox, config) = sandbox("scorer_known", 3).await;
    let (shutdown, task) = start(&config);

    // phase 1: A and B both launch fine; B also sees quota and permission errors (ignored)
    let mut phase1: Vec<Signal> = Vec::new();
    for i in 0..10 {
        phase1.push(launch(&format!("a-ok-{i}"), A, t(i), ErrorClass::None));
        phase1.push(launch(&format!("b-ok-{i}"), B, t(i), ErrorClass::None));
        phase1.push(launch(&format!("b-quota-{i}"), B, t(i), ErrorClass::Quota));
        phase1.push(launch(
            &format!("b-perm-{i}"),
            B,
            t(i),
            ErrorClass::Permission,
        ));
    }
    sandbox.publish(&phase1).await;
    // a garbage message and a well-formed but invalid one (AZ name instead of AZ id)
    sandbox
        .publish_raw("garbage", b"\xff\xff\xff\xff not protobuf")
        .await;
    let mut bad = capsight_proto::v1::Signal::from(&launch("bad-1", A, t(0), ErrorClass::None));
    bad.key.as_mut().unwrap().zone_id = "us-east-1a".into();
    sandbox
        .publish_raw(
            "aws/us-east-1/p5.48xlarge",
            &prost::Message::encode_to_vec(&bad),
        )
        .await;

    // a signal from a producer whose clock runs a day ahead
    let future = launch(
        "future-1",
        A,
        Utc::now() + chrono::Duration::days(1),
        ErrorClass::None,
    );
    sandbox
        .publish_raw("future", &capsight_proto::codec::encode_signal(&future))
        .await;

    let scores = sandbox
        .wait_for_scores(Duration::from_secs(60), |s| {
            s.get(B).is_some_and(|b| b.signal_count == 30)
                && s.get(A).is_some_and(|a| a.signal_count == 10)
        })
        .await;
    // ten successes: Available, held a little short of 100 by the prior
    assert!(scores[A].score >= 90, "{:?}", scores[A]);
    assert_eq!(scores[A].label, Label::Available);
    assert_eq!(
        scores[B].score, scores[A].score,
        "quota/permission errors moved B: {:?}",
        scores[B]
    );

    // phase 2: B runs out of capacity
    let phase2: Vec<Signal> = (0..30)
        .map(|i| launch(&format!("b-cap-{i}"), B, t(20 + i), ErrorClass::Capacity))
        .collect();
    sandbox.publish(&phase2).await;
    let scores = sandbox
        .wait_for_scores(Duration::from_secs(60), |s| {
            s.get(B).is_some_and(|b| b.signal_count == 60)
        })
        .await;
    let b = &scores[B];
    assert_eq!(b.label, Label::Unavailable, "{b:?}");
    assert_eq!(b.updated_at, t(49), "event time, not wall clock");
    assert_eq!(b.evidence[0].feature, Feature::LaunchSuccessRate);
    assert!(b.evidence[0].contribution < 0.0);
    assert!(
        b.evidence
            .iter()
            .any(|e| e.feature == Feature::CapacityErrorRatio && e.value > 0.7)
    );

    // the same scores as the engine computes in process from the same signals
    let mut engine = Engine::new(config.scorer.clone(), &config.verdict);
    engine.apply(phase1.iter().chain(&phase2).map(|s| (0, s)));
    assert_eq!(&engine.score(&A.parse().unwrap()).unwrap(), &scores[A]);
    assert_eq!(&engine.score(&B.parse().unwrap()).unwrap(), b);

    stop(shutdown, task).await;

    // ClickHouse: every valid signal once, history with labels and evidence, one alert
    let ch = sandbox.client();
    let n = ch
        .query("SELECT uniqExact(id) AS n FROM signals")
        .fetch_one::<Count>()
        .await
        .unwrap();
    assert_eq!(n.n, 70);
    let history = ch
        .query(
            "SELECT concat(provider, '/', region, '/', zone_id, '/', instance_type, '/', market) AS key, \
             score, label, evidence FROM scores FINAL ORDER BY updated_at",
        )
        .fetch_all::<HistoryLine>()
        .await
        .unwrap();
    let last_b = history.iter().rev().find(|h| h.key == B).unwrap();
    assert_eq!(last_b.score, b.score);
    assert_eq!(last_b.label, "unavailable");
    assert!(
        last_b
            .evidence
            .contains("\"feature\":\"launch_success_rate\""),
        "{}",
        last_b.evidence
    );
    assert!(history.iter().any(|h| h.key == A && h.label == "available"));
    let alerts = ch
        .query(
            "SELECT concat(provider, '/', region, '/', zone_id, '/', instance_type, '/', market) AS key, \
             from_label, to_label, low_confidence FROM alerts FINAL",
        )
        .fetch_all::<AlertLine>()
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].key, B);
    // one alert: the first transition away from available (a later step down to unavailable
    // within the 30 min cooldown, if the errors arrived in two batches, is suppressed)
    assert_eq!(alerts[0].from_label, "available");
    assert_ne!(alerts[0].to_label, "available");
    assert!(alerts[0].low_confidence <= 1);

    // the dead-letter topic holds both bad messages, unchanged, with their reasons
    let dead = sandbox.read_topic(&sandbox.kafka.topics.signals_dlq).await;
    assert_eq!(dead.len(), 3, "{dead:?}");
    let garbage = dead.iter().find(|r| r.key == "garbage").unwrap();
    assert_eq!(garbage.payload, b"\xff\xff\xff\xff not protobuf");
    assert!(
        garbage.headers[DLQ_REASON_HEADER].starts_with("protobuf:"),
        "{:?}",
        garbage.headers
    );
    let ahead = dead.iter().find(|r| r.key == "future").unwrap();
    assert!(
        ahead.headers[DLQ_REASON_HEADER].starts_with("invalid: observed_at:"),
        "{:?}",
        ahead.headers
    );
    let invalid = dead
        .iter()
        .find(|r| r.key != "garbage" && r.key != "future")
        .unwrap();
    assert!(
        invalid.headers[DLQ_REASON_HEADER].starts_with("invalid: key.zone_id:"),
        "{:?}",
        invalid.headers
    );
    sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_scorer_rebuilds_windows_from_clickhouse_before_publishing() {
    let (sandbox, config) = sandbox("scorer_rebuild", 2).await;
    let first: Vec<Signal> = (0..8)
        .map(|i| launch(&format!("r-ok-{i}"), A, t(i), ErrorClass::None))
        .collect();
    let (shutdown, task) = start(&config);
    sandbox.publish(&first).await;
    sandbox
        .wait_for_scores(Duration::from_secs(60), |s| {
            s.get(A).is_some_and(|a| a.signal_count == 8)
        })
        .await;
    stop(shutdown, task).await;

    // the second run starts after the committed offsets: it sees only the new signals and
    // must score them together with the stored ones
    let second = [launch("r-cap-0", A, t(10), ErrorClass::Capacity)];
    sandbox.publish(&second).await;
    let (shutdown, task) = start(&config);
    let scores = sandbox
        .wait_for_scores(Duration::from_secs(60), |s| {
            s.get(A).is_some_and(|a| a.updated_at == t(10))
        })
        .await;
    stop(shutdown, task).await;
    assert_eq!(scores[A].signal_count, 9, "{:?}", scores[A]);
    let mut engine = Engine::new(config.scorer.clone(), &config.verdict);
    engine.apply(first.iter().chain(&second).map(|s| (0, s)));
    assert_eq!(engine.score(&A.parse().unwrap()).unwrap(), scores[A]);
    // no score was published from a partial window: every published A score after the first
    // run's counts all 8 earlier signals
    let all = sandbox.read_topic(&sandbox.kafka.topics.scores).await;
    for record in all {
        let s = record.score();
        if s.updated_at == t(10) {
            assert_eq!(s.signal_count, 9);
        }
    }
    sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_the_partitions_and_agree_with_a_single_one() {
    let (sandbox, config) = sandbox("scorer_shared", 4).await;
    let keys: Vec<String> = [
        "us-east-1/use1-az4/p5.48xlarge",
        "us-east-1/use1-az6/p4d.24xlarge",
        "us-west-2/usw2-az2/p5.48xlarge",
        "us-west-2/usw2-az1/g6e.xlarge",
        "eu-west-1/euw1-az1/g5.xlarge",
        "eu-west-1/euw1-az2/p4d.24xlarge",
    ]
    .iter()
    .map(|k| format!("aws/{k}/on_demand"))
    .collect();
    let batch = |round: i64| -> Vec<Signal> {
        let mut v = Vec::new();
        for (k, key) in keys.iter().enumerate() {
            for i in 0..10 {
                let class = if (i + k as i64 + round) % 3 == 0 {
                    ErrorClass::Capacity
                } else {
                    ErrorClass::None
                };
                v.push(launch(
                    &format!("shared-{round}-{k}-{i}"),
                    key,
                    t(round * 60 + i),
                    class,
                ));
            }
        }
        v
    };
    let first = batch(0);
    let second = batch(1);

    let (stop_x, x) = start(&config);
    sandbox.publish(&first).await;
    sandbox
        .wait_for_scores(Duration::from_secs(60), |s| {
            keys.iter()
                .all(|k| s.get(k).is_some_and(|sc| sc.signal_count == 10))
        })
        .await;
    // a second instance joins: partitions move, windows are dropped and rebuilt
    let (stop_y, y) = start(&config);
    tokio::time::sleep(Duration::from_secs(3)).await;
    sandbox.publish(&second).await;
    let scores = sandbox
        .wait_for_scores(Duration::from_secs(90), |s| {
            keys.iter()
                .all(|k| s.get(k).is_some_and(|sc| sc.signal_count == 20))
        })
        .await;
    stop(stop_y, y).await;
    stop(stop_x, x).await;

    let mut engine = Engine::new(config.scorer.clone(), &config.verdict);
    engine.apply(first.iter().chain(&second).map(|s| (0, s)));
    for k in &keys {
        assert_eq!(engine.score(&k.parse().unwrap()).unwrap(), scores[k], "{k}");
    }
    sandbox.cleanup().await;
}

/// Attack on memory: keys that nobody observes any more must not stay in every scorer and
/// gateway forever. A key idle past `evict_after` is dropped and tombstoned on the compacted
/// scores topic (the key with no payload, which gateways' views remove); seen again, it is
/// rebuilt from ClickHouse, so nothing it had is lost.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_key_is_evicted_and_tombstoned_then_rebuilt_when_seen_again() {
    let (sandbox, mut config) = sandbox("scorer_evict", 1).await;
    // the signals are dated in the past (t(..)): with a one-hour horizon they are idle at once
    config.scorer.evict_after = Duration::from_secs(3600);
    config.scorer.evict_interval = Duration::from_millis(200);
    let first: Vec<Signal> = (0..4)
        .map(|i| launch(&format!("e-ok-{i}"), A, t(i), ErrorClass::None))
        .collect();
    let (shutdown, task) = start(&config);
    sandbox.publish(&first).await;
    let topic = sandbox.kafka.topics.scores.clone();
    let tombstoned = capsight_testkit::wait::eventually_every(
        Duration::from_millis(300),
        Duration::from_secs(60),
        "a score then a tombstone for the idle key",
        || async {
            let records: Vec<_> = sandbox
                .read_topic(&topic)
                .await
                .into_iter()
                .filter(|r| r.key == A)
                .collect();
            let scored = records.iter().any(|r| !r.payload.is_empty());
            let last_is_tombstone = records.last().is_some_and(|r| r.payload.is_empty());
            (scored && last_is_tombstone).then_some(records.len())
        },
    )
    .await;
    assert!(tombstoned >= 2);

    // seen again: rebuilt from ClickHouse, the score counts the earlier signals too
    sandbox
        .publish(&[launch("e-ok-9", A, t(9), ErrorClass::None)])
        .await;
    let rebuilt = capsight_testkit::wait::eventually_every(
        Duration::from_millis(300),
        Duration::from_secs(60),
        "a score for the key seen again",
        || async {
            sandbox
                .read_topic(&topic)
                .await
                .into_iter()
                .filter(|r| r.key == A && !r.payload.is_empty())
                .map(|r| r.score())
                .find(|s| s.updated_at == t(9))
        },
    )
    .await;
    assert_eq!(rebuilt.signal_count, 5, "{rebuilt:?}");
    stop(shutdown, task).await;
    sandbox.cleanup().await;
}
