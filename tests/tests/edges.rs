//! Secrets and edges: the gateway, the launcher, the reports intake and the notifier (whose
//! webhook secrets derive from it) refuse to start on the
//! shipped development tenant-hash secret (anyone who knows it can link the tenant hashes on the
//! bus and in shared tables to tenant ids); a local demo opts in explicitly.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use capsight_e2e::bin;
use capsight_tenancy::DEV_HASH_SECRET;
use capsight_testkit::{Sandbox, tenants::tenant};

/// Each service with the development secret: exits non-zero within 30 s, naming the setting.
#[tokio::test(flavor = "multi_thread")]
async fn services_refuse_the_development_hash_secret_outside_a_demo() {
    let sandbox = Sandbox::builder("devsecret")
        .topics(1)
        .database()
        .amqp()
        .tenants([tenant("acme").with_key()])
        .start()
        .await;
    for service in [
        "capsight-gateway",
        "capsight-launcher",
        "capsight-reports",
        "capsight-notifier",
    ] {
        let mut cmd = ports(sandbox.command(bin(service)));
        cmd.env("CAPSIGHT_TENANCY__HASH_SECRET", DEV_HASH_SECRET);
        let (code, stderr) = run_for(&mut cmd, Duration::from_secs(30));
        let code = code.unwrap_or_else(|| panic!("{service} kept running on the dev secret"));
        assert_ne!(code, 0, "{service}: {stderr}");
        assert!(
            stderr.contains("tenancy.hash_secret"),
            "{service} must name the setting: {stderr}"
        );
    }
    // the demo's opt-in: the same process starts (it is still running after 5 s)
    let mut cmd = ports(sandbox.command(bin("capsight-reports")));
    cmd.env("CAPSIGHT_TENANCY__HASH_SECRET", DEV_HASH_SECRET)
        .env("CAPSIGHT_TENANCY__ALLOW_DEV_SECRET", "true");
    let (code, stderr) = run_for(&mut cmd, Duration::from_secs(5));
    assert_eq!(code, None, "with the opt-in it must run: {stderr}");
    sandbox.cleanup().await;
}

/// Every listener the services open on a port the OS picks when it binds (`:0`): a port
/// picked earlier and handed over could be taken by a concurrent test in between.
fn ports(mut cmd: Command) -> Command {
    for var in [
        "CAPSIGHT_GATEWAY__LISTEN",
        "CAPSIGHT_GATEWAY__WEB_LISTEN",
        "CAPSIGHT_LAUNCHER__HEALTH_LISTEN",
        "CAPSIGHT_REPORTS__LISTEN",
    ] {
        cmd.env(var, "127.0.0.1:0");
    }
    cmd
}

/// Runs `cmd` for at most `limit`: its exit code (`None` if it was still running and was
/// killed) and its standard error.
fn run_for(cmd: &mut Command, limit: Duration) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status.code().unwrap_or(-1));
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (code, stderr)
}
