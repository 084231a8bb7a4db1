//! The web dashboard in a real browser: Debian's Chromium driven by `playwright-core`
//! (`tests/browser/dashboard.mjs`, packages installed by `deploy/local/stack` with `npm ci`)
//! against the live pipeline in one kit sandbox — the scorer and the prober as binaries, the
//! gateway (with its web listener) and the launcher in-process, cloudsim with the `dashboard`
//! scenario at 60 simulated seconds a second.
//!
//! The user's walk: a wrong key is refused; tenant acme signs in and sees the capacity map; the
//! test moves cloudsim's clock to p5.48xlarge's stockout in use1-az4, the prober's next probe
//! fails there and the cell turns Unavailable without a reload; its explanation and history
//! open from the keyboard; its preflight offers alternatives; one is launched, reaches running
//! and is cancelled; the stocked-out key launched anyway with fallbacks falls back live; the
//! history marks the probes per range; the launch is listed with this month's GPU-hours; tenant globex does not
//! see it (not listed, 404 on read and cancel); the operator view refuses acme's key and opens
//! with the operator key, listing usage and downloading a documented query as CSV. Screenshots of each view go to the sandbox, or
//! to `$CAPSIGHT_SCREENSHOTS` (e.g. `docs/dashboard`) when set.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use capsight_e2e::{bin, repo_root};
use capsight_proto::domain::Label;
use capsight_runtime::shutdown::Shutdown;
use capsight_testkit::{
    cloud::{OPERATOR, ROLE_ACME, Sim, catalog},
    fixtures::{OPERATOR_KEY, OPERATOR_KEY_SHA256, pipeline_world, scenario},
    process::ChildGuard,
    tenants::tenant,
};
use serde_json::Value;
use tokio::sync::mpsc;

const STOCKOUT: &str = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";
const IN_STOCK: &str = "aws/us-east-1/use1-az1/p5.48xlarge/on_demand";
/// The scenario's stockout, simulated seconds after its start.
const STOCKOUT_AT: u64 = 24 * 3600;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_a_stockout_live_and_launches_an_alternative_in_chromium() {
    let sandbox = pipeline_world("dashboard")
        .tenants([
            tenant("acme").role(ROLE_ACME, "ext-acme").with_key(),
            tenant("globex").with_key(),
        ])
        .cloudsim(Sim::builder(scenario("dashboard")).time_scale(60.0))
        .start()
        .await;
    let _scorer = sandbox.spawn(
        "capsight-scorer",
        &mut sandbox.command(bin("capsight-scorer")),
    );
    // the prober, every key of two types every few seconds
    let _probe = sandbox.spawn(
        "capsight-probe",
        sandbox
            .command(bin("capsight-probe"))
            .envs(sandbox.sim().aws_env(OPERATOR))
            .env("CAPSIGHT_CLOUD__MAX_ATTEMPTS", "1")
            .env("CAPSIGHT_PROBE__INSTANCE", "probe-dashboard")
            .env("CAPSIGHT_PROBE__REGIONS", "[\"us-east-1\"]")
            .env(
                "CAPSIGHT_PROBE__INSTANCE_TYPES",
                "[\"p5.48xlarge\", \"g5.xlarge\"]",
            )
            .env("CAPSIGHT_PROBE__TICK", "1s")
            .env("CAPSIGHT_PROBE__MAX_PER_PASS", "10")
            .env("CAPSIGHT_PROBE__MAX_CONCURRENT", "4")
            .env("CAPSIGHT_PROBE__CADENCE__MIN_INTERVAL", "2s")
            .env("CAPSIGHT_PROBE__CADENCE__MAX_INTERVAL", "3s")
            .env("CAPSIGHT_PROBE__LIMITS__PER_API_PER_MINUTE", "0")
            .env("CAPSIGHT_PROBE__LIMITS__PER_ACCOUNT_PER_MINUTE", "0"),
    );
    let shutdown = Shutdown::new();
    let mut config: capsight_gateway::GatewayConfig = sandbox.config();
    config.gateway.web_operator_key_sha256 = OPERATOR_KEY_SHA256.to_owned();
    let gateway = capsight_gateway::start(config, sandbox.clouds(), shutdown.clone())
        .await
        .unwrap();
    let web = gateway
        .web_addr
        .expect("the gateway profile sets web_listen");
    let launcher = tokio::spawn(capsight_launcher::run(
        sandbox.config(),
        catalog(),
        sandbox.clouds(),
        shutdown.clone(),
    ));

    // the probes' first verdicts: both p5 zones in stock — Available, or Limited while a few
    // successful probes are still pulled towards the prior (scores hover around 75-85 then)
    sandbox
        .wait_for_scores(Duration::from_secs(120), |s| {
            [STOCKOUT, IN_STOCK].iter().all(|k| {
                s.get(*k).is_some_and(|s| {
                    matches!(s.label, Label::Available | Label::Limited) && s.score >= 60
                })
            })
        })
        .await;

    let root = repo_root();
    let shots = std::env::var_os("CAPSIGHT_SCREENSHOTS")
        .map(|d| root.join(PathBuf::from(d)))
        .unwrap_or_else(|| sandbox.config_file().with_file_name("screenshots"));
    let script = root.join("tests/browser/dashboard.mjs");
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .exists(),
        "playwright-core is not installed: run deploy/local/stack install (npm ci in tests/browser)"
    );
    let mut node = ChildGuard::spawn(
        "node dashboard.mjs",
        Command::new("node")
            .arg(&script)
            .current_dir(root.join("tests/browser"))
            .env("DASHBOARD_URL", format!("http://{web}/"))
            .env("KEY_A", sandbox.key("acme"))
            .env("KEY_B", sandbox.key("globex"))
            .env("STOCKOUT_KEY", STOCKOUT)
            .env("OPERATOR_KEY", OPERATOR_KEY)
            .env("SCREENSHOTS", &shots)
            .env("FAILURE_DIR", sandbox.config_file().parent().unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let (stdout, stderr) = node.take_output();
    let (tx, mut lines) = mpsc::unbounded_channel::<String>();
    for stream in [
        Box::new(stdout.unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(stderr.unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);

    let mut output = Vec::new();
    let mut result: Option<Value> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while let Some(line) = tokio::time::timeout_at(deadline, lines.recv())
        .await
        .unwrap_or_else(|_| panic!("the browser test ran over 10 min:\n{}", output.join("\n")))
    {
        if line == "WAITING stockout" {
            // p5.48xlarge in use1-az4 stocks out; the prober's next probes there fail
            sandbox.sim().advance(STOCKOUT_AT + 60).await;
        }
        if let Some(json) = line.strip_prefix("RESULT ") {
            result = Some(serde_json::from_str(json).unwrap());
        }
        output.push(line);
    }
    let status = node.exited(Duration::from_secs(30)).await;
    let log = output.join("\n");
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{log}"
    );
    let r = result.unwrap_or_else(|| panic!("no RESULT line:\n{log}"));
    let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();

    // sign-in: a wrong key is refused, the key never goes into the URL
    assert!(text("wrong_key_message").contains("refused"), "{r}");
    assert_eq!(r["wrong_key_app_hidden"], true, "{r}");
    assert!(text("tenant_a").contains("acme"), "{r}");
    assert_eq!(r["key_in_url"], false, "{r}");
    assert_eq!(r["no_key_status"], 401, "{r}");
    // the capacity map and its filters
    // in stock before the stockout: Available, or Limited while the thin evidence of a few
    // probes is still pulled towards the prior (the probes keep moving it between the two)
    assert!(
        ["available", "limited"].contains(&text("label_before").as_str()),
        "{r}"
    );
    let (all, eight) = (
        r["cells_all"].as_u64().unwrap(),
        r["cells_with_8_gpus"].as_u64().unwrap(),
    );
    assert!(
        eight >= 3 && eight < all,
        "p5 (8 GPUs) only: {eight} of {all}"
    );
    // the stockout arrived live, in the same document
    assert_eq!(r["same_document"], true, "{r}");
    assert_eq!(r["change_listed"], true, "{r}");
    // why this score
    assert!(text("explain_facts").contains("Unavailable"), "{r}");
    assert!(r["evidence_rows"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["history_points"].as_u64().unwrap() >= 1, "{r}");
    // the probes that moved it are marked on the time axis of each range, the failed ones
    // (the stockout) told apart by icon and words, not colour alone
    for range in ["1h", "24h", "7d"] {
        let m = &r["history_marks"][range];
        assert!(m["probe"].as_u64().unwrap() >= 1, "{range}: {r}");
        assert!(m["failed_probe"].as_u64().unwrap() >= 1, "{range}: {r}");
        assert_eq!(m["lanes"], 5, "{range}: {r}");
        assert!(
            m["title"].as_str().unwrap().contains("probe"),
            "{range}: {r}"
        );
        assert!(
            m["mark_title"].as_str().unwrap().contains("failed"),
            "{range}: {r}"
        );
        for kind in ["probe", "capacity error", "price", "status", "crowd"] {
            assert!(m["legend"].as_str().unwrap().contains(kind), "{range}: {r}");
        }
    }
    // alerts: the watched key's label change stays listed under "only keys I watch"
    assert_eq!(text("watching"), "true", "{r}");
    assert!(r["watched_alerts"].as_u64().unwrap() >= 1, "{r}");
    // preflight -> alternatives -> launch -> running -> cancelled
    assert!(text("decision").contains("retry with alternatives"), "{r}");
    assert!(r["alternatives"].as_u64().unwrap() >= 1, "{r}");
    assert_ne!(text("first_alternative"), STOCKOUT, "{r}");
    let states: Vec<&str> = r["job_states"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(states.first(), Some(&"queued"), "{r}");
    assert_eq!(states.last(), Some(&"running"), "{r}");
    assert!(states.contains(&"provisioning"), "{r}");
    let after: Vec<&str> = r["job_states_after_cancel"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(after.last(), Some(&"cancelled"), "{r}");
    assert_eq!(r["cancel_disabled"], true, "{r}");
    // launch options: the warm standby follows the market and the service refuses it off spot
    assert_eq!(r["standby_disabled_on_demand"], true, "{r}");
    assert_eq!(r["standby_enabled_on_spot"], true, "{r}");
    assert_eq!(r["standby_refused_on_demand"]["status"], 400, "{r}");
    assert!(
        r["standby_refused_on_demand"]["body"]["message"]
            .as_str()
            .unwrap()
            .contains("warm_standby"),
        "{r}"
    );
    // the stocked-out key launched anyway with 2 fallbacks: its capacity error falls back to
    // an alternative, shown live as a fallback transition, and the job runs
    assert_ne!(r["fallback_job_id"], r["job_id"], "{r}");
    assert!(
        text("fallback_options").contains("Up to 2 fallbacks"),
        "{r}"
    );
    assert_eq!(text("fallback_count"), "1", "{r}");
    assert!(
        text("fallback_event").contains("Fallback (attempt 2)"),
        "{r}"
    );
    let fallback: Vec<&str> = r["fallback_states"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(fallback.contains(&"provisioning:fallback"), "{r}");
    assert_eq!(fallback.last(), Some(&"running"), "{r}");
    assert!(text("usage").contains("GPU-hours"), "{r}");
    assert_eq!(r["own_launch_status"], 200, "{r}");
    // tenancy: globex sees nothing of acme's launch
    assert!(text("tenant_b").contains("globex"), "{r}");
    assert_eq!(r["key_cleared"], true, "{r}");
    assert_eq!(r["b_sees_launch_in_list"], false, "{r}");
    assert_eq!(r["b_get_launch_status"], 404, "{r}");
    assert_eq!(r["b_cancel_status"], 404, "{r}");
    // notifications: acme subscribes from the launches view (secret shown once), a private
    // address is refused naming the field; globex sees none and cannot delete acme's
    assert_eq!(r["subscription_rows"], 1, "{r}");
    assert!(
        text("subscription_text").contains("hooks.example.com"),
        "{r}"
    );
    assert!(text("subscription_text").contains("slack"), "{r}");
    assert_eq!(r["secret_shown"], true, "{r}");
    assert!(text("private_url_error").contains("url"), "{r}");
    assert_eq!(r["b_subscriptions"], 0, "{r}");
    assert_eq!(r["b_delete_subscription_status"], 404, "{r}");
    // the operator view: a tenant key is refused, the operator key opens it
    assert!(text("operator_with_tenant_key").contains("Refused"), "{r}");
    assert!(text("operator_usage").contains("acme"), "{r}");
    assert!(r["operator_queries"].as_u64().unwrap() >= 10, "{r}");
    assert_eq!(r["b_pipeline_status"], 403, "{r}");
    // report trust per tenant, as a share with the reports it rests on
    for k in ["operator_trust_acme", "operator_tenant_trust"] {
        assert!(
            text(k).contains('%') && text(k).contains("checked"),
            "{k}: {r}"
        );
    }
    // pipeline health: the scorer's lag and output, the dead letters, collector freshness
    let health: Vec<&str> = r["operator_pipeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["id"].as_str())
        .collect();
    assert_eq!(health, ["scorer-lag", "scorer-output", "dlq"], "{r}");
    assert_eq!(text("operator_dlq"), "0", "{r}");
    let sources: Vec<&str> = r["operator_collectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(sources.contains(&"probe"), "{r}");
    // probe spend of today against the daily budget, per prober
    let probers = r["operator_probers"].as_array().unwrap();
    assert!(
        probers.iter().any(
            |p| p["prober"] == "probe-dashboard" && p["text"].as_str().unwrap().contains("/ $")
        ),
        "{r}"
    );
    assert!(text("operator_probe_spent").starts_with('$'), "{r}");
    assert_eq!(text("operator_csv_name"), "capsight-query-0.csv", "{r}");
    // no script errors (failed requests the test provoked are logged by the browser as such)
    let errors: Vec<&str> = r["console_errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|e| !e.starts_with("Failed to load resource"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    for view in [
        "signin-refused",
        "capacity",
        "capacity-stockout",
        "explain",
        "preflight",
        "launch",
        "launch-fallback",
        "launches",
        "operator",
    ] {
        let png = shots.join(format!("{view}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{}", png.display());
    }

    shutdown.trigger();
    launcher.await.unwrap().unwrap();
    drop(gateway);
    sandbox.cleanup().await;
}
