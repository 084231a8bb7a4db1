//! The dashboard's capacity map with 5,000 keys, in Debian's Chromium
//! (`tests/browser/load.mjs`): the gateway's view holds 5,000 scores (published to a sandbox
//! scores topic), a tenant signs in five times and the map shows every key each time. The test
//! asserts that all 5,000 cells render; it prints the time from submitting the key to the full
//! map (figures and method in `docs/benchmarks.md`, no timing assertion here).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{process::Command, time::Duration};

use capsight_e2e::repo_root;
use capsight_proto::domain::{CapacityKey, Market};
use capsight_runtime::shutdown::Shutdown;
use capsight_testkit::{
    cloud::catalog, fixtures::dashboard_world, signals::score, wait::eventually,
};
use serde_json::Value;

const KEYS: usize = 5000;

/// `n` distinct AWS keys: catalog types x their regions x up to eleven zones x three markets
/// (the catalog's 157 type-region pairs need that many to reach 5,000).
fn keys(n: usize) -> Vec<CapacityKey> {
    let mut out = Vec::new();
    for t in catalog().iter() {
        for region in &t.regions {
            let parts: Vec<&str> = region.as_str().split('-').collect();
            let [a, b, c] = parts.as_slice() else {
                continue;
            };
            let prefix = format!("{a}{}{c}", b.chars().next().unwrap_or('x'));
            for az in 1..=11 {
                for market in [Market::OnDemand, Market::Spot, Market::CapacityBlock] {
                    if let Ok(k) = CapacityKey::parse(
                        t.provider.as_str(),
                        region.as_str(),
                        &format!("{prefix}-az{az}"),
                        t.instance_type.as_str(),
                        market,
                    ) {
                        out.push(k);
                        if out.len() == n {
                            return out;
                        }
                    }
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_capacity_map_shows_5000_keys_in_chromium() {
    let sandbox = dashboard_world("dashboard_load").start().await;
    let keys = keys(KEYS);
    assert_eq!(keys.len(), KEYS, "the catalog yields {} keys", keys.len());
    for (i, k) in keys.iter().enumerate() {
        let value = u8::try_from(i % 101).unwrap();
        sandbox
            .publish_score(&score(&k.to_string(), value, 0.7))
            .await;
    }
    let shutdown = Shutdown::new();
    let gateway = capsight_gateway::start(sandbox.config(), sandbox.clouds(), shutdown.clone())
        .await
        .unwrap();
    let view = gateway.view.clone();
    eventually(Duration::from_secs(60), "the view holds every key", || {
        let view = view.clone();
        async move { (view.is_ready() && view.len() == KEYS).then_some(()) }
    })
    .await;

    let root = repo_root();
    let out = Command::new("node")
        .arg(root.join("tests/browser/load.mjs"))
        .current_dir(root.join("tests/browser"))
        .env(
            "DASHBOARD_URL",
            format!("http://{}/", gateway.web_addr.unwrap()),
        )
        .env("KEY", sandbox.key("acme"))
        .env("EXPECTED", KEYS.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| panic!("no RESULT line: {stdout}"));
    assert_eq!(r["cells"], KEYS, "{r}");
    println!("dashboard with {KEYS} keys: sign-in to full map {r}");

    shutdown.trigger();
    drop(gateway);
    sandbox.cleanup().await;
}
