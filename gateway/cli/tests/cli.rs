//! The `capsight` binary against a real gateway (the gateway's test harness: real stack,
//! in-process cloudsim): scores table and JSON, preflight, alternatives, launch, status,
//! heartbeat, report, and errors.

#![allow(
    clippy::unwrap_used,
    reason = "a panic in a test is a failed assertion"
)]

#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

use common::{Harness, score};

const AZ1: &str = "aws/us-east-1/use1-az1/p5.48xlarge/on_demand";
const AZ4: &str = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";

fn capsight(h: &Harness, key: &str, args: &[&str]) -> Output {
    let addr = h.running.as_ref().unwrap().addr;
    let config = h.dir.join("cli.toml");
    std::fs::write(&config, "# the environment sets everything\n").unwrap();
    Command::new(env!("CARGO_BIN_EXE_capsight"))
        .args(args)
        .env("CAPSIGHT_ENDPOINT", format!("http://{addr}"))
        .env("CAPSIGHT_API_KEY", key)
        .env("CAPSIGHT_CLI_CONFIG", &config)
        .env_remove("CAPSIGHT_IMAGE_ID")
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success() || out.status.code() == Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_drives_every_command() {
    let h = Harness::start(&[score(AZ1, 15, 0.9), score(AZ4, 88, 0.2)]).await;
    h.wait_ready().await;
    let key = h.keys.acme.clone();

    let out = capsight(&h, &key, &["scores"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains(AZ1) && table.contains("unavailable"),
        "{table}"
    );
    assert!(table.contains("0.20*"), "low confidence is marked: {table}");
    assert!(!table.contains("\x1b["), "no colour when not a terminal");

    let v = json(&capsight(
        &h,
        &key,
        &["scores", "--min-label", "available", "-o", "json"],
    ));
    assert_eq!(v["scores"].as_array().unwrap().len(), 1);
    assert_eq!(v["scores"][0]["key"], AZ4);

    let pre = capsight(
        &h,
        &key,
        &[
            "preflight",
            AZ1,
            "--image",
            "ami-0123456789abcdef0",
            "-o",
            "json",
        ],
    );
    assert_eq!(pre.status.code(), Some(2), "not CAN_LAUNCH exits 2");
    let v = json(&pre);
    assert_eq!(v["decision"], "retry_with_alternatives");
    assert_eq!(v["alternatives"][0]["key"], AZ4);

    let v = json(&capsight(&h, &key, &["alternatives", AZ1, "-o", "json"]));
    assert_eq!(v["alternatives"][0]["rank"], 1);

    let v = json(&capsight(
        &h,
        &key,
        &[
            "launch",
            AZ4,
            "--image",
            "ami-0123456789abcdef0",
            "--count",
            "1",
            "-o",
            "json",
        ],
    ));
    assert_eq!(v["state"], "queued");
    let job = v["job_id"].as_str().unwrap().to_owned();
    let v = json(&capsight(&h, &key, &["status", &job, "-o", "json"]));
    assert_eq!(v["state"], "queued");
    let v = json(&capsight(&h, &key, &["launches", "-o", "json"]));
    assert_eq!(v["launches"].as_array().unwrap().len(), 1);

    // heartbeat: refused while queued; accepted once running (as the launcher records it)
    let early = capsight(&h, &key, &["heartbeat", &job]);
    assert_eq!(early.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&early.stderr).contains("FailedPrecondition"));
    h.clickhouse()
        .query(
            "INSERT INTO launch_events SELECT job_id, 1, tenant, now(), 0, 'running', provider, \
             region, zone_id, instance_type, market, 'i-0123', 1, '', '', 'test' \
             FROM launch_events WHERE job_id = ? AND seq = 0",
        )
        .bind(&job)
        .execute()
        .await
        .unwrap();
    let v = json(&capsight(
        &h,
        &key,
        &["heartbeat", &job, "--note", "gpu 97%", "-o", "json"],
    ));
    assert_eq!(v["state"], "running");
    let beats: u64 = h
        .clickhouse()
        .query("SELECT count() FROM launch_activity WHERE job_id = ? AND note = 'gpu 97%'")
        .bind(&job)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(beats, 1);

    let v = json(&capsight(
        &h,
        &key,
        &["report", AZ4, "--outcome", "available", "-o", "json"],
    ));
    assert!(v["signal_id"].as_str().unwrap().starts_with("report-"));

    // errors: the field is named, exit 1
    let bad = capsight(
        &h,
        &key,
        &[
            "launch",
            AZ4,
            "--image",
            "ami-0123456789abcdef0",
            "--count",
            "40",
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("InvalidArgument") && err.contains("spec.count"),
        "{err}"
    );
    let unauth = capsight(&h, "csk_nope_nope", &["scores"]);
    assert_eq!(unauth.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unauth.stderr).contains("Unauthenticated"));
    h.cleanup().await;
}
