//! The README's main job as a user runs it: `deploy/local/stack demo --for S` brings up every
//! component against cloudsim, prints live scores through the gateway (keys on AWS, Lambda Cloud,
//! RunPod, GCP and Azure), executes a launch made with the `capsight` CLI, and stops by itself
//! (every component exits) when the time is up.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use capsight_e2e::{bin, repo_root};
use capsight_testkit::process::ChildGuard;

const DEMO_SECS: u64 = 60;

fn capsight(args: &[&str], api_key: &str) -> String {
    let out = Command::new(bin("capsight"))
        .args(args)
        .env("CAPSIGHT_API_KEY", api_key)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_demo_shows_scores_runs_a_launch_and_stops_by_itself() {
    let root = repo_root();
    // the binaries this test was built with (`deploy/local/stack test` built them)
    let target_dir: PathBuf = bin("capsight-admin")
        .parent()
        .and_then(|debug| debug.parent())
        .unwrap()
        .to_path_buf();
    // killed with every component it started if this test fails
    let mut child = ChildGuard::spawn_group(
        "deploy/local/stack demo",
        Command::new("bash")
            .arg(root.join("deploy/local/stack"))
            .args(["demo", "--for", &DEMO_SECS.to_string()])
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("CAPSIGHT_DEMO_SKIP_BUILD", "1")
            .env("CAPSIGHT_DEMO_INTERVAL", "5")
            .env_remove("CAPSIGHT_API_KEY")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let output = Arc::new(Mutex::new(String::new()));
    let (stdout, stderr) = child.take_output();
    let readers: Vec<_> = [
        Box::new(stdout.unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(stderr.unwrap()),
    ]
    .into_iter()
    .map(|stream| {
        let output = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut out = output.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        })
    })
    .collect();
    let text = || output.lock().unwrap().clone();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(DEMO_SECS + 240);

    // the first scores table: every component is up
    while !text().contains(" keys (") {
        assert!(
            Instant::now() <= deadline && child.wait_for(Duration::ZERO).is_none(),
            "no scores table from the demo\n{}",
            text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let api_key = std::fs::read_to_string(root.join(".capsight/demo/api-key")).unwrap();
    let api_key = api_key.trim();

    // a launch through the gateway, executed by the demo's launcher in cloudsim
    let queued = capsight(
        &[
            "launch",
            "aws/us-east-1/use1-az1/g5.xlarge/on_demand",
            "--image",
            "ami-0123456789abcdef0",
        ],
        api_key,
    );
    let job = queued
        .split_whitespace()
        .skip_while(|w| *w != "launch")
        .nth(1)
        .unwrap_or_else(|| panic!("no job id in {queued:?}"))
        .to_owned();
    let mut status = String::new();
    while !status.contains(" running ") {
        assert!(
            Instant::now() <= deadline,
            "launch {job} never ran:\n{status}\n{}",
            text()
        );
        std::thread::sleep(Duration::from_millis(500));
        status = capsight(&["status", &job], api_key);
        assert!(!status.contains(" failed "), "{status}");
    }

    // the demo's world spans every provider capsight covers: each has scored keys
    let mut scores = String::new();
    while !["aws/", "lambda/", "runpod/", "gcp/", "azure/"]
        .iter()
        .all(|p| scores.contains(p))
    {
        assert!(
            Instant::now() <= deadline,
            "not every provider scored in the demo:\n{scores}\n{}",
            text()
        );
        std::thread::sleep(Duration::from_millis(500));
        scores = capsight(&["scores", "--all"], api_key);
    }

    // it stops by itself
    let exit = child
        .wait_for(deadline.saturating_duration_since(Instant::now()))
        .unwrap_or_else(|| panic!("the demo did not stop after --for\n{}", text()));
    for r in readers {
        r.join().unwrap();
    }
    let out = text();
    assert!(exit.success(), "{exit}\n{out}");
    assert!(out.contains("demo stopped"), "{out}");
    assert!(
        started.elapsed() >= Duration::from_secs(DEMO_SECS),
        "stopped early\n{out}"
    );
    let tables = out.matches(" keys (").count();
    assert!(tables >= 2, "{tables} scores tables\n{out}");
    // every component the demo started (cloudsim and each capsight binary) is still running
    let started_components = out.matches("stack: starting ").count();
    assert!(
        started_components >= 10,
        "{started_components} started\n{out}"
    );
    assert!(
        out.contains(&format!("{started_components} component(s) running")),
        "{out}"
    );
    let probe_log =
        std::fs::read_to_string(root.join(".capsight/demo/capsight-probe.log")).unwrap();
    assert!(probe_log.contains("probe done"), "{probe_log}");
}
