//! Score poisoning through a tenant's launch reports, performed on the real stack: the reports
//! intake and the scorer binaries, the broker and ClickHouse. A tenant that sends 500 false
//! `launch_failed` reports for a key that probes find in stock must not move its score beyond
//! the per-tenant cap: a tenant's launches are an opinion, not first-party evidence.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::time::Duration;

use capsight_proto::domain::Label;
use capsight_testkit::{
    Sandbox, fixtures::report, reports, signals::hourly_probe_successes, tenants::tenant,
};
use chrono::Utc;

const KEY: &str = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";
/// `[scorer.model] tenant_cap_points` in the defaults.
const TENANT_CAP_POINTS: u8 = 3;
const REQUESTS: usize = 5;
const REPORTS_PER_REQUEST: usize = 100;

#[tokio::test(flavor = "multi_thread")]
async fn one_tenants_false_launch_failures_cannot_take_an_in_stock_key_down() {
    let sandbox = Sandbox::scoring("poison")
        .tenants([tenant("mallory").with_key()])
        .start()
        .await;
    let _scorer = sandbox.spawn_scorer();
    let (_intake, intake_addr) = sandbox.spawn_intake();

    // what capsight itself saw: a probe success every hour of the last six
    sandbox
        .publish(&hourly_probe_successes(KEY, 6, Utc::now()))
        .await;
    let honest = sandbox
        .wait_for_score(Duration::from_secs(90), KEY, 6)
        .await;
    assert_eq!(honest.label, Label::Available, "{honest:?}");

    // the attack: 5 requests of 100 false capacity errors, all accepted
    let http = reqwest::Client::new();
    let key = sandbox.key("mallory");
    for r in 0..REQUESTS {
        let batch: Vec<_> = (0..REPORTS_PER_REQUEST)
            .map(|i| {
                let mut rep = report("false-launch-failure");
                rep["id"] = format!("lie-{r}-{i}").into();
                rep
            })
            .collect();
        let resp = reports::post(&http, &intake_addr, &key, &batch).await;
        assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
    }

    let attacked = sandbox
        .wait_for_score(
            Duration::from_secs(90),
            KEY,
            6 + (REQUESTS * REPORTS_PER_REQUEST) as u64,
        )
        .await;
    assert_eq!(attacked.label, Label::Available, "{attacked:?}");
    assert!(
        honest.score.abs_diff(attacked.score) <= TENANT_CAP_POINTS,
        "{} -> {}",
        honest.score,
        attacked.score
    );
    sandbox.cleanup().await;
}
