//! Tenant trust across keys, on the real stack (the reports intake, the scorer and
//! `capsight-admin` binaries, the broker and ClickHouse): a tenant whose reports contradict
//! capsight's probes on one key loses weight on every key. Its false capacity errors on a key
//! the probes find in stock are recorded as contradictions; afterwards its reports on a key no
//! probe looks at move that key less than an honest tenant's identical reports move another,
//! and `capsight-admin tenant trust` shows its lower trust.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::time::Duration;

use capsight_e2e::admin_bin;
use capsight_testkit::{
    Sandbox, fixtures::report, reports, signals::hourly_probe_successes, tenants::tenant,
};
use chrono::Utc;

/// Probed: capsight's own launches find stock here.
const PROBED: &str = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";
/// Never probed: only the two tenants speak about these.
const LIAR_SPOKEN: &str = "aws/us-east-1/use1-az1/p5.48xlarge/on_demand";
const HONEST_SPOKEN: &str = "aws/us-east-1/use1-az2/p5.48xlarge/on_demand";
const LIES: usize = 30;
const REPORTS: usize = 20;

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_that_contradicts_probes_loses_weight_on_other_keys() {
    let sandbox = Sandbox::scoring("trust")
        .tenants([tenant("mallory").with_key(), tenant("honest").with_key()])
        .start()
        .await;
    // a wide cap so the difference is many points, and trust reloaded every second
    let _scorer = sandbox.spawn(
        "capsight-scorer",
        sandbox
            .scorer_command(None)
            .env("CAPSIGHT_SCORER__TENANT_CAP_POINTS", "20")
            .env("CAPSIGHT_SCORER__CROWD_MAX_POINTS", "40")
            .env("CAPSIGHT_TRUST__REFRESH_INTERVAL", "1s"),
    );
    let (_intake, intake) = sandbox.spawn_intake();

    // capsight's own probes find stock on PROBED every hour of the last six
    let now = Utc::now();
    sandbox
        .publish(&hourly_probe_successes(PROBED, 6, now))
        .await;
    sandbox
        .wait_for_score(Duration::from_secs(90), PROBED, 6)
        .await;

    // mallory lies about PROBED: every report contradicts the probes
    let http = reqwest::Client::new();
    post(
        &http,
        &intake,
        &sandbox.key("mallory"),
        &failures("lie", PROBED, LIES),
    )
    .await;
    let trust = wait_for_trust(&sandbox, |t| {
        entry(t, "mallory").is_some_and(|m| m["contradictions"] == LIES as u64)
    })
    .await;
    let mallory = entry(&trust, "mallory").unwrap().clone();
    let honest = entry(&trust, "honest").unwrap().clone();
    assert_eq!(mallory["checks"], LIES as u64, "{trust:#}");
    assert_eq!(mallory["agreements"], 0, "{trust:#}");
    assert!(mallory["trust"].as_f64().unwrap() < 0.2, "{trust:#}");
    // honest has no checks yet: the fresh tenant's trust
    assert_eq!(honest["checks"], 0, "{trust:#}");
    assert!(
        (honest["trust"].as_f64().unwrap() - 0.8).abs() < 1e-9,
        "{trust:#}"
    );
    // the table prints the same
    let table = admin(&sandbox, &["tenant", "trust"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("mallory") && l.contains("0.114")),
        "{table}"
    );

    // every scorer reloads trust every second: give it a few
    tokio::time::sleep(Duration::from_secs(3)).await;

    // identical false capacity errors on two unprobed keys, one from each tenant
    post(
        &http,
        &intake,
        &sandbox.key("mallory"),
        &failures("b", LIAR_SPOKEN, REPORTS),
    )
    .await;
    post(
        &http,
        &intake,
        &sandbox.key("honest"),
        &failures("b", HONEST_SPOKEN, REPORTS),
    )
    .await;
    let by_liar = sandbox
        .wait_for_score(Duration::from_secs(90), LIAR_SPOKEN, REPORTS as u64)
        .await;
    let by_honest = sandbox
        .wait_for_score(Duration::from_secs(90), HONEST_SPOKEN, REPORTS as u64)
        .await;
    // no first-party evidence there: both start from the neutral 50
    let moved_by_liar = 50 - i32::from(by_liar.score);
    let moved_by_honest = 50 - i32::from(by_honest.score);
    assert!(
        moved_by_honest >= 12,
        "an honest tenant's reports still count: {by_honest:?}"
    );
    assert!(
        moved_by_liar * 3 < moved_by_honest,
        "mallory moved {moved_by_liar}, honest {moved_by_honest}: {by_liar:?} {by_honest:?}"
    );
    sandbox.cleanup().await;
}

/// `n` false capacity errors on `key`, ids `<prefix>-<i>`.
fn failures(prefix: &str, key: &str, n: usize) -> Vec<serde_json::Value> {
    let parts: Vec<&str> = key.split('/').collect();
    (0..n)
        .map(|i| {
            let mut r = report("false-launch-failure");
            r["id"] = format!("{prefix}-{i}").into();
            r["zone_id"] = parts[2].into();
            r
        })
        .collect()
}

/// The entry of `tenant` in `capsight-admin tenant trust --output json`.
fn entry<'a>(all: &'a serde_json::Value, tenant: &str) -> Option<&'a serde_json::Value> {
    all.as_array()?.iter().find(|t| t["tenant"] == tenant)
}

/// `capsight-admin <args>` in the sandbox; its standard output.
fn admin(sandbox: &Sandbox, args: &[&str]) -> String {
    let out = sandbox.command(admin_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "capsight-admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Polls `capsight-admin tenant trust --output json` until `done` holds.
async fn wait_for_trust(
    sandbox: &Sandbox,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let json = admin(sandbox, &["tenant", "trust", "--output", "json"]);
        let all: serde_json::Value = serde_json::from_str(&json).unwrap();
        if done(&all) {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "trust never got there: {all:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Posts `batch` with `key` to the intake; expects 202.
async fn post(http: &reqwest::Client, addr: &str, key: &str, batch: &[serde_json::Value]) {
    let resp = reports::post(http, addr, key, batch).await;
    assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
}
