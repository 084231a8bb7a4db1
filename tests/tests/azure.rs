//! Azure end to end on the real stack: cloudsim with an Azure section (scenario `azure`), the
//! `capsight-quota`, `capsight-spot`, `capsight-probe` and `capsight-status` binaries with
//! the operator's `[azure]` subscription, the `capsight-scorer` binary, the broker and
//! ClickHouse. Every signal kind Azure feeds (offerings from resource SKUs, quota from usages,
//! Spot list prices, probes that create and delete a VM, the Azure status RSS) is published on
//! Azure keys, and the scorer scores them: the H100 zone with stock (eastus-1) above the one
//! without (eastus-2). Needs the workspace binaries (`cargo build --workspace --bins`).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::time::Duration;

use capsight_e2e::bin;
use capsight_testkit::{Sandbox, cloud::OPERATOR, wait::eventually};

/// One H100 in stock at the start (the operator's logical zone "3").
const STOCKED: &str = "azure/eastus/eastus-1/Standard_ND96isr_H100_v5/on_demand";
/// None in stock.
const EMPTY: &str = "azure/eastus/eastus-2/Standard_ND96isr_H100_v5/on_demand";
/// The same GPU restricted for the operator's subscription: never offered, never probed.
const RESTRICTED: &str = "azure/eastus/eastus-3/Standard_ND96isr_H100_v5/on_demand";
const REGIONS: &str = "[\"eastus\"]";
const AWS_ONLY_HOME: &str = "[\"us-east-1\"]";

/// The kinds of the signals published on Azure keys, with their sources.
async fn azure_kinds(sandbox: &Sandbox) -> Vec<(String, String)> {
    sandbox
        .client()
        .query(
            "SELECT DISTINCT source, kind FROM signals WHERE provider = 'azure' ORDER BY source, kind",
        )
        .fetch_all::<(String, String)>()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_signals_of_every_kind_are_published_and_scored() {
    let sandbox = Sandbox::scoring("azure").scenario("azure").start().await;
    let sim = sandbox.sim();
    let _scorer = sandbox.spawn_scorer();
    let collector = |name: &str| {
        let mut c = sandbox.command(bin(name));
        c.envs(sim.aws_env(OPERATOR))
            .envs(sim.azure_env(REGIONS))
            .env("CAPSIGHT_CLOUD__MAX_ATTEMPTS", "1");
        c
    };
    let _quota = sandbox.spawn(
        "capsight-quota",
        collector("capsight-quota")
            .env("CAPSIGHT_QUOTA__REGIONS", AWS_ONLY_HOME)
            .env("CAPSIGHT_QUOTA__INTERVAL", "2s")
            .env("CAPSIGHT_QUOTA__MARKETS", "[\"on_demand\", \"spot\"]"),
    );
    let _spot = sandbox.spawn(
        "capsight-spot",
        collector("capsight-spot")
            .env("CAPSIGHT_SPOT__REGIONS", AWS_ONLY_HOME)
            .env("CAPSIGHT_SPOT__PRICE_INTERVAL", "2s")
            .env("CAPSIGHT_SPOT__OFFERINGS_INTERVAL", "2s")
            .env("CAPSIGHT_SPOT__PLACEMENT_INTERVAL", "2s"),
    );
    // one planning pass over the H100 keys of eastus: create then delete a VM per zone
    let probe = sandbox.spawn(
        "capsight-probe",
        collector("capsight-probe")
            .env("CAPSIGHT_PROBE__INSTANCE", "azure-e2e")
            .env("CAPSIGHT_PROBE__REGIONS", AWS_ONLY_HOME)
            .env(
                "CAPSIGHT_PROBE__INSTANCE_TYPES",
                "[\"Standard_ND96isr_H100_v5\"]",
            )
            .env("CAPSIGHT_PROBE__MARKETS", "[\"on_demand\"]")
            .env("CAPSIGHT_PROBE__DAILY_BUDGET_USD", "1000")
            .env("CAPSIGHT_PROBE__MAX_PER_PASS", "10")
            .arg("--once"),
    );
    let feed = format!(
        "[{{name = \"azure\", kind = \"azure_rss\", provider = \"azure\", url = \"{}/azure/status/feed\"}}]",
        sim.url()
    );
    let _status = sandbox.spawn(
        "capsight-status",
        sandbox
            .command(bin("capsight-status"))
            .env("CAPSIGHT_STATUS__FEEDS", feed)
            .env("CAPSIGHT_STATUS__POLL_INTERVAL", "1s"),
    );

    // probes, offerings, quota and prices scored: the stocked zone above the empty one
    let scores = sandbox
        .wait_for_scores(Duration::from_secs(180), |s| {
            [STOCKED, EMPTY]
                .iter()
                .all(|k| s.get(*k).is_some_and(|s| s.signal_count >= 3))
                && s.keys()
                    .any(|k| k.starts_with("azure/eastus//") && k.ends_with("/spot"))
        })
        .await;
    let (stocked, empty) = (&scores[STOCKED], &scores[EMPTY]);
    assert!(stocked.score > empty.score, "{stocked:?} vs {empty:?}");
    assert!(
        !scores.contains_key(RESTRICTED),
        "a restricted zone is neither offered nor probed: {:?}",
        scores.get(RESTRICTED)
    );
    drop(probe);

    // a day later eastus has an incident on the Azure status feed
    sim.advance(86_400).await;
    let want = [
        ("probe", "launch_attempt"),
        ("quota", "quota"),
        ("spot", "offering"),
        ("spot", "spot_price"),
        ("status", "status"),
    ];
    let kinds = eventually(
        Duration::from_secs(60),
        "every kind of Azure signal",
        || async {
            let kinds = azure_kinds(&sandbox).await;
            want.iter()
                .all(|(s, k)| kinds.iter().any(|(ks, kk)| ks == s && kk == k))
                .then_some(kinds)
        },
    )
    .await;
    // the probe of the empty zone met Azure's zonal allocation failure; the stocked one ran
    let codes: Vec<(String, String)> = sandbox
        .client()
        .query(
            "SELECT zone_id, error_code FROM signals WHERE provider = 'azure' AND source = 'probe' ORDER BY zone_id",
        )
        .fetch_all::<(String, String)>()
        .await
        .unwrap();
    assert_eq!(
        codes,
        [
            ("eastus-1".to_owned(), String::new()),
            ("eastus-2".to_owned(), "ZonalAllocationFailed".to_owned()),
        ]
    );
    println!(
        "stocked {} ({}), empty {} ({}); azure signal kinds {kinds:?}",
        stocked.score, stocked.label, empty.score, empty.label
    );
    sandbox.cleanup().await;
}
