//! The `capsight` binary against a real gateway (in-process, in the kit's gateway world: real
//! stack, in-process cloudsim): scores table and JSON, preflight, alternatives, launch, status,
//! heartbeat, report, and errors.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{
    net::SocketAddr,
    process::{Command, Output},
    time::Duration,
};

use capsight_runtime::shutdown::Shutdown;
use capsight_testkit::{Sandbox, fixtures::gateway_world, launches, signals::score};

const AZ1: &str = "aws/us-east-1/use1-az1/p5.48xlarge/on_demand";
const AZ4: &str = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";

/// The CLI of a gateway at `addr` whose sandbox is `sandbox`.
struct Cli<'a> {
    sandbox: &'a Sandbox,
    addr: SocketAddr,
}

fn capsight(h: &Cli<'_>, key: &str, args: &[&str]) -> Output {
    let addr = h.addr;
    let config = h.sandbox.dir.join("cli.toml");
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

/// `capsight launch` of `count` instances of AZ4, then `extra`.
fn launch_az4(count: &'static str, extra: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec!["launch", AZ4, "--image", launches::IMAGE, "--count", count];
    args.extend_from_slice(extra);
    args
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
    let sandbox = gateway_world("cli").scores(2).start().await;
    for s in [score(AZ1, 15, 0.9), score(AZ4, 88, 0.2)] {
        sandbox.publish_score(&s).await;
    }
    let shutdown = Shutdown::new();
    let gateway = capsight_gateway::start(sandbox.config(), sandbox.clouds(), shutdown.clone())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), gateway.view.wait_ready())
        .await
        .expect("scores view ready within 30 s");
    let h = Cli {
        sandbox: &sandbox,
        addr: gateway.addr,
    };
    let key = sandbox.key("acme");

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

    let v = json(&capsight(&h, &key, &launch_az4("1", &["-o", "json"])));
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
    sandbox
        .client()
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
    let beats: u64 = sandbox
        .client()
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
    let bad = capsight(&h, &key, &launch_az4("40", &[]));
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("InvalidArgument") && err.contains("spec.count"),
        "{err}"
    );
    let unauth = capsight(&h, "csk_nope_nope", &["scores"]);
    assert_eq!(unauth.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unauth.stderr).contains("Unauthenticated"));
    shutdown.trigger();
    sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_manages_notification_subscriptions() {
    let sandbox = gateway_world("cli_notify").scores(1).start().await;
    let shutdown = Shutdown::new();
    let gateway = capsight_gateway::start(sandbox.config(), sandbox.clouds(), shutdown.clone())
        .await
        .unwrap();
    let h = Cli {
        sandbox: &sandbox,
        addr: gateway.addr,
    };
    let key = sandbox.key("acme");
    let created = json(&capsight(
        &h,
        &key,
        &[
            "notify",
            "subscribe",
            "--url",
            "https://hooks.example.com/capsight",
            "--format",
            "slack",
            "--event",
            "label_changed",
            "--event",
            "standby_started",
            "--key",
            "gpu:H100@us-east-1",
            "--key",
            "aws/*/p5.48xlarge/spot",
            "--cooldown",
            "30m",
            "--output",
            "json",
        ],
    ));
    let id = created["subscription"]["id"].as_str().unwrap().to_owned();
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["subscription"]["format"], "slack");
    assert_eq!(created["subscription"]["cooldown_seconds"], 1800);
    assert_eq!(created["subscription"]["keys"][0]["gpu_model"], "H100");
    assert_eq!(
        created["subscription"]["keys"][1]["instance_type"],
        "p5.48xlarge"
    );

    let listed = json(&capsight(&h, &key, &["notify", "list", "--output", "json"]));
    assert_eq!(listed["subscriptions"][0]["id"], id.as_str());
    assert_eq!(
        listed["subscriptions"][0]["events"],
        serde_json::json!(["label_changed", "standby_started"])
    );
    assert!(
        listed["subscriptions"][0].get("secret").is_none(),
        "the secret is shown only at creation"
    );
    let table = capsight(&h, &key, &["notify", "list"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains(&id));
    // another tenant sees none of it
    let theirs = json(&capsight(
        &h,
        &sandbox.key("globex"),
        &["notify", "list", "--output", "json"],
    ));
    assert_eq!(theirs["subscriptions"], serde_json::json!([]));

    // a bad event is refused by the CLI, a private address by the gateway (field first)
    let bad = capsight(
        &h,
        &key,
        &[
            "notify",
            "subscribe",
            "--url",
            "https://x.example/",
            "--event",
            "everything",
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--event"));
    let private = capsight(
        &h,
        &key,
        &[
            "notify",
            "subscribe",
            "--url",
            "http://10.1.2.3/",
            "--event",
            "reaped",
        ],
    );
    assert_eq!(private.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&private.stderr).contains("url:"),
        "{}",
        String::from_utf8_lossy(&private.stderr)
    );

    let dead = json(&capsight(
        &h,
        &key,
        &["notify", "dead-letters", "--output", "json"],
    ));
    assert_eq!(dead["dead_letters"], serde_json::json!([]));
    let deleted = capsight(&h, &key, &["notify", "delete", &id]);
    assert!(deleted.status.success());
    let again = capsight(&h, &key, &["notify", "delete", &id]);
    assert_eq!(again.status.code(), Some(1), "deleted: not found");
    let listed = json(&capsight(&h, &key, &["notify", "list", "--output", "json"]));
    assert_eq!(listed["subscriptions"], serde_json::json!([]));

    shutdown.trigger();
    sandbox.cleanup().await;
}
