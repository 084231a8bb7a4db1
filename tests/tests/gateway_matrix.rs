//! The request path's fault: the real `capsight-gateway` binary `kill -9`ed and restarted (on
//! the same address) twice, and once killed by its failpoint (`gateway.crash_after = recorded`:
//! `SIGKILL` once a job is recorded, before it is published and answered), while tenants' clients keep calling it — a launch client sending a
//! new `Launch` (with an idempotency key) every 700 ms and retrying a refused or unanswered one
//! with the same key every 300 ms, and a preflight client every 250 ms — with a real
//! `capsight-launcher` binary, cloudsim (scenario `launcher`, 60x) and the shared stack. A
//! gateway killed between recording a job and answering leaves the client without an answer;
//! the retry must find the same job. Checks: every idempotency key answered with one job id
//! (also on a retry after the faults), every accepted job running, one instance per job, no
//! live instance a running job does not own. Prints one row for the launch-path table in
//! `docs/reliability.md`. Needs the workspace binaries (`cargo build --workspace --bins`).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    os::unix::process::ExitStatusExt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use capsight_proto::{
    domain::CapacityKey,
    v1::{
        self, LaunchState, launch_service_client::LaunchServiceClient,
        preflight_service_client::PreflightServiceClient,
    },
};
use capsight_testkit::{
    Sandbox,
    cloud::{JOB_TAG, OPERATOR},
    fixtures::gateway_launcher_world,
    grpc::{self, authed},
    launches::IMAGE,
    process::{ChildGuard, bin, free_port},
};
use tonic::transport::Channel;

/// Launches submitted in all (the scenario's P5 stock: 16 in each of two zones).
const JOBS: usize = 12;
/// Until every accepted job runs, after the faults.
const LIMIT: Duration = Duration::from_secs(120);

const KEYS: [&str; 2] = [
    "aws/us-east-1/use1-az4/p5.48xlarge/on_demand",
    "aws/us-east-1/use1-az6/p5.48xlarge/on_demand",
];

fn spec(n: usize) -> v1::LaunchSpec {
    let key: CapacityKey = KEYS[n % 2].parse().unwrap();
    v1::LaunchSpec {
        key: Some(v1::CapacityKey::from(&key)),
        count: 1,
        image_id: IMAGE.into(),
        ..Default::default()
    }
}

/// What the clients saw.
#[derive(Default)]
struct Seen {
    /// Every answer to `Launch`, by idempotency key (a retry adds another).
    answers: Mutex<BTreeMap<String, Vec<String>>>,
    launch_refused: AtomicU32,
    preflights: AtomicU32,
    preflight_refused: AtomicU32,
    stop: AtomicBool,
}

/// `Launch` with `idempotency_key`, retried every 300 ms until answered; the job id.
async fn launch(
    client: &mut LaunchServiceClient<Channel>,
    key: &str,
    n: usize,
    idempotency_key: &str,
    seen: &Seen,
) -> String {
    let started = Instant::now();
    loop {
        let req = v1::LaunchRequest {
            spec: Some(spec(n)),
            idempotency_key: idempotency_key.into(),
            ..Default::default()
        };
        match client.launch(authed(req, key)).await {
            Ok(r) => {
                let job = r.into_inner().job_id;
                seen.answers
                    .lock()
                    .unwrap()
                    .entry(idempotency_key.to_owned())
                    .or_default()
                    .push(job.clone());
                return job;
            }
            Err(status) => {
                assert!(
                    !matches!(
                        status.code(),
                        tonic::Code::InvalidArgument
                            | tonic::Code::PermissionDenied
                            | tonic::Code::Unauthenticated
                    ),
                    "Launch refused for the request itself: {status:?}"
                );
                seen.launch_refused.fetch_add(1, Ordering::SeqCst);
                assert!(
                    started.elapsed() < Duration::from_secs(100),
                    "Launch {idempotency_key} refused for 100 s: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

async fn launch_client(channel: Channel, key: String, seen: Arc<Seen>) {
    let mut client = LaunchServiceClient::new(channel);
    for n in 0..JOBS {
        if seen.stop.load(Ordering::SeqCst) {
            break;
        }
        launch(&mut client, &key, n, &format!("gw-{n}"), &seen).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}

async fn preflight_client(channel: Channel, key: String, seen: Arc<Seen>) {
    let mut client = PreflightServiceClient::new(channel);
    let mut n = 0;
    while !seen.stop.load(Ordering::SeqCst) {
        let req = v1::PreflightRequest {
            spec: Some(spec(n)),
            ..Default::default()
        };
        match client.preflight(authed(req, &key)).await {
            Ok(_) => seen.preflights.fetch_add(1, Ordering::SeqCst),
            Err(_) => seen.preflight_refused.fetch_add(1, Ordering::SeqCst),
        };
        n += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The gateway binary on `addr`, with its failpoint `crash_after` ("" = none).
fn gateway(sandbox: &Sandbox, addr: SocketAddr, n: usize, crash_after: &str) -> ChildGuard {
    let mut cmd = sandbox.command(bin("capsight-gateway"));
    cmd.envs(sandbox.sim().aws_env(OPERATOR))
        .env("CAPSIGHT_GATEWAY__CRASH_AFTER", crash_after)
        .env("CAPSIGHT_GATEWAY__LISTEN", addr.to_string())
        .env(
            "CAPSIGHT_GATEWAY__WEB_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        );
    sandbox.spawn(&format!("capsight-gateway-{n}"), &mut cmd)
}

/// Whether the gateway at `channel` answers a preflight.
async fn answers(channel: &Channel, key: &str) -> bool {
    let req = v1::PreflightRequest {
        spec: Some(spec(0)),
        ..Default::default()
    };
    PreflightServiceClient::new(channel.clone())
        .preflight(authed(req, key))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_gateway_loses_no_launch_and_launches_none_twice() {
    let sandbox = gateway_launcher_world("gw_matrix").start().await;
    let key = sandbox.key("acme");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut spawned = 1;
    let mut gw = gateway(&sandbox, addr, spawned, "");
    let _launcher = sandbox.spawn(
        "capsight-launcher",
        sandbox
            .command(bin("capsight-launcher"))
            .envs(sandbox.sim().aws_env(OPERATOR))
            .env("CAPSIGHT_LAUNCHER__TENANT_SHARE", "0"),
    );
    let channel = grpc::channel(addr);
    let ready = Instant::now();
    while !answers(&channel, &key).await {
        assert!(
            ready.elapsed() < Duration::from_secs(60),
            "the gateway did not answer within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let seen = Arc::new(Seen::default());
    let launches = tokio::spawn(launch_client(
        channel.clone(),
        key.clone(),
        Arc::clone(&seen),
    ));
    let preflights = tokio::spawn(preflight_client(
        channel.clone(),
        key.clone(),
        Arc::clone(&seen),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // kill -9 twice; the first restart comes up with the failpoint, so the next Launch kills it
    // once the job is recorded (neither published nor answered). Restart -> first answer, the
    // slowest.
    let mut answering = Duration::ZERO;
    let mut over = Instant::now();
    for kill in 0..2 {
        gw.kill();
        tokio::time::sleep(Duration::from_secs(1)).await;
        if kill == 0 {
            spawned += 1;
            gw = gateway(&sandbox, addr, spawned, "recorded");
            let died = gw.wait_for(Duration::from_secs(60));
            assert_eq!(
                died.and_then(|s| s.signal()),
                Some(9),
                "the gateway did not die at its failpoint (SIGKILL): {died:?}"
            );
        }
        spawned += 1;
        gw = gateway(&sandbox, addr, spawned, "");
        over = Instant::now();
        while !answers(&channel, &key).await {
            assert!(over.elapsed() < LIMIT, "the gateway did not come back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        answering = answering.max(over.elapsed());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    launches.await.unwrap();
    seen.stop.store(true, Ordering::SeqCst);
    preflights.await.unwrap();

    // a retry of every key after the faults answers the job it answered before
    let mut client = LaunchServiceClient::new(channel.clone());
    let mut jobs: BTreeMap<String, String> = BTreeMap::new();
    for n in 0..JOBS {
        let ik = format!("gw-{n}");
        jobs.insert(ik.clone(), launch(&mut client, &key, n, &ik, &seen).await);
    }
    let answers = seen.answers.lock().unwrap().clone();
    let mut two_jobs_for_one_key = Vec::new();
    for (ik, ids) in &answers {
        let distinct: BTreeSet<&String> = ids.iter().collect();
        if distinct.len() != 1 {
            two_jobs_for_one_key.push(format!("{ik}: {ids:?}"));
        }
    }

    // every job running, with one instance, and nothing else live
    let adapter = sandbox.tenant_adapter("acme").await;
    let deadline = Instant::now() + LIMIT;
    let mut running: BTreeMap<String, String> = BTreeMap::new();
    while running.len() < jobs.len() && Instant::now() < deadline {
        for job in jobs.values() {
            if running.contains_key(job) {
                continue;
            }
            let s = client
                .get_launch(authed(
                    v1::GetLaunchRequest {
                        job_id: job.clone(),
                    },
                    &key,
                ))
                .await;
            if let Ok(s) = s
                && s.get_ref().state() == LaunchState::Running
            {
                let instance = s
                    .get_ref()
                    .events
                    .last()
                    .map(|e| e.instance_id.clone())
                    .unwrap_or_default();
                running.insert(job.clone(), instance);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let recovery = over.elapsed();
    let lost = jobs.len() - running.len();
    let instances = adapter.describe(&[]).await.unwrap();
    let live: Vec<_> = instances.iter().filter(|i| i.state.is_live()).collect();
    let mut per_job: BTreeMap<&str, usize> = BTreeMap::new();
    for i in &live {
        *per_job
            .entry(i.tags.get(JOB_TAG).map_or("", String::as_str))
            .or_default() += 1;
    }
    let double = per_job.values().filter(|n| **n > 1).count();
    let leaked = live
        .iter()
        .filter(|i| {
            let job = i.tags.get(JOB_TAG).map_or("", String::as_str);
            running.get(job).map(String::as_str) != Some(i.id.as_str())
        })
        .count();

    println!(
        "| fault | jobs | Launch refused (client retried) | preflights answered / refused | jobs lost | double launches | leaked instances | restart to first answer | recovery (last restart to every job running) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| gateway kill -9 (x2); the first restart killed at its failpoint (SIGKILL after recording a job, before publishing and answering it) | {} | {} | {} / {} | {lost} | {double} | {leaked} | {:.1} s | {:.1} s |",
        jobs.len(),
        seen.launch_refused.load(Ordering::SeqCst),
        seen.preflights.load(Ordering::SeqCst),
        seen.preflight_refused.load(Ordering::SeqCst),
        answering.as_secs_f64(),
        recovery.as_secs_f64(),
    );
    assert!(two_jobs_for_one_key.is_empty(), "{two_jobs_for_one_key:#?}");
    assert_eq!(jobs.len(), JOBS);
    assert_eq!((lost, double, leaked), (0, 0, 0), "{running:?} {live:?}");
    assert!(
        seen.launch_refused.load(Ordering::SeqCst) > 0,
        "no Launch met a dead gateway: the fault did not hit the workload"
    );
    drop(gw);
    sandbox.cleanup().await;
}
