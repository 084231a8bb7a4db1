//! Every `sql` block of `docs/analytics.md` runs on the real ClickHouse (18.16 locally and in
//! CI) against data the scorer wrote, and the rollup views return the expected numbers.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::time::Duration;

use capsight_proto::domain::{ErrorClass, Payload, SpotPrice};
use capsight_runtime::shutdown::Shutdown;
use capsight_scorer::ScorerConfig;
use capsight_testkit::{Sandbox, clickhouse::tsv, fixtures::documented_queries, signals::launch};

const KEY: &str = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_query_runs_on_the_scorers_data() {
    let sandbox = Sandbox::builder("scorer_analytics")
        .topics(1)
        .database()
        .profile("scorer")
        .start()
        .await;
    let config: ScorerConfig = sandbox.config();
    let now = chrono::Utc::now();
    let at = |i: i64| now - chrono::Duration::minutes(30 - i);
    let mut signals = Vec::new();
    for i in 0..10 {
        signals.push(launch(&format!("an-ok-{i}"), KEY, at(i), ErrorClass::None));
    }
    for i in 0..4 {
        signals.push(launch(
            &format!("an-cap-{i}"),
            KEY,
            at(10 + i),
            ErrorClass::Capacity,
        ));
        signals.push(launch(
            &format!("an-quota-{i}"),
            KEY,
            at(10 + i),
            ErrorClass::Quota,
        ));
    }
    for i in 0..3 {
        let mut s = launch(&format!("an-price-{i}"), KEY, at(i), ErrorClass::None);
        s.key = "aws/us-east-1/use1-az4/p5.48xlarge/spot".parse().unwrap();
        s.payload = Payload::SpotPrice(SpotPrice {
            price_per_hour: 30.0 + i as f64,
            currency: "USD".into(),
        });
        signals.push(s);
    }
    sandbox.publish(&signals).await;

    let shutdown = Shutdown::new();
    let task = tokio::spawn(capsight_scorer::run(config, shutdown.clone()));
    sandbox
        .wait_for_scores(Duration::from_secs(60), |s| {
            s.get(KEY).is_some_and(|k| k.signal_count == 18)
        })
        .await;
    shutdown.trigger();
    task.await.unwrap().unwrap();

    let blocks = documented_queries("analytics.md");
    assert!(blocks.len() >= 8, "found {} sql blocks", blocks.len());
    let client = sandbox.client();
    let mut results = Vec::new();
    for sql in &blocks {
        results.push(tsv(&client, sql).await);
    }
    // the current score, the hourly trend and the daily GPU view all see the key
    assert!(results[0].contains(KEY), "{}", results[0]);
    assert!(results[1].contains("use1-az4"), "{}", results[1]);
    assert!(results[2].contains("H100"), "{}", results[2]);

    // exact rollup numbers: 14 capacity-relevant attempts (quota excluded), 4 capacity errors
    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Rollup {
        attempts: u64,
        capacity_errors: u64,
    }
    let r = client
        .query(
            "SELECT sum(attempts) AS attempts, sum(capacity_errors) AS capacity_errors \
             FROM key_hourly WHERE market = 'on_demand'",
        )
        .fetch_one::<Rollup>()
        .await
        .unwrap();
    assert_eq!((r.attempts, r.capacity_errors), (14, 4));
    sandbox.cleanup().await;
}
