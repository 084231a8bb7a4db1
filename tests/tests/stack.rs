//! The local stack script on the real machine: `up` on a running stack is a no-op that
//! re-installs and re-creates nothing, and `status` reports every service healthy.
//!
//! Runs after `deploy/local/stack test` has brought the stack up and built the binaries.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::process::Command;

use capsight_e2e::{admin_bin, repo_root};

fn stack(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(repo_root().join("deploy/local/stack"))
        .args(args)
        .env("CAPSIGHT_ADMIN", admin_bin())
        .output()
        .expect("deploy/local/stack runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn up_twice_is_a_no_op_and_status_is_healthy() {
    for round in 1..=2 {
        let (ok, stdout, stderr) = stack(&["up"]);
        assert!(ok, "up #{round} failed:\n{stdout}\n{stderr}");
        for service in ["kafka", "clickhouse", "rabbitmq", "prometheus"] {
            assert!(
                stderr.contains(&format!("{service} already running")),
                "up #{round} restarted {service}:\n{stderr}"
            );
        }
        assert!(
            !stderr.contains("installing"),
            "up #{round} installed something:\n{stderr}"
        );
        assert!(stdout.contains("kafka: 0 topics created"), "{stdout}");
        assert!(
            stdout.contains("clickhouse: 0 migrations applied"),
            "{stdout}"
        );
        assert!(stdout.contains("amqp: topology declared"), "{stdout}");
    }
    let (ok, stdout, stderr) = stack(&["status"]);
    assert!(ok, "status not healthy:\n{stdout}\n{stderr}");
    for service in ["kafka", "clickhouse", "rabbitmq", "prometheus"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(service) && l.contains(" healthy ")),
            "{service} not healthy:\n{stdout}"
        );
    }
}

#[test]
fn admin_check_reaches_all_three_services() {
    let out = Command::new(admin_bin()).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(stdout.matches(" ok ").count(), 3, "{stdout}");
}
