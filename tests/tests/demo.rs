//! The README's main job, as far as it exists: sample signals travel producer -> Kafka ->
//! consumer group -> ClickHouse, and come back out of ClickHouse.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::process::Command;

use capsight_e2e::admin_bin;

#[test]
fn demo_pipeline_moves_signals_into_clickhouse() {
    let out = Command::new(admin_bin()).arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("published 5 signals"), "{stdout}");
    assert!(stdout.contains("consumed 5 signals back"), "{stdout}");
    assert!(
        stdout.contains("aws/us-east-1/use1-az4/p5.48xlarge/on_demand"),
        "{stdout}"
    );
}
