//! Faults between the parts, on the real stack (ClickHouse, RabbitMQ, cloudsim) with the real
//! `capsight-launcher` binary: the launch outbox (a gateway that died between recording and
//! publishing, RabbitMQ stopped at submit time, a confirm that never came), and the reconciler
//! (instances that outlived a failed job, a spot instance interrupted with no warm standby,
//! `kill -9` between the cloud call and the record). Needs
//! `cargo build -p capsight-launcher --bins`. Results: `docs/reliability.md`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod launcher;

use std::{os::unix::process::ExitStatusExt, time::Duration};

use capsight_cloud::LaunchRequest;
use capsight_cloudsim::scenario::PoolMarket;
use capsight_launch::{outbox, queue::JobPublisher};
use capsight_proto::{
    domain::{CapacityKey, LaunchState},
    v1,
};
use capsight_testkit::launches::launch_request as request;
use capsight_testkit::{cloud::instance_state, launches, wait::eventually};
use launcher::{ACME, CAPPED, Harness, P5_AZ4, P5_AZ6, scenario, states};

const LIMIT: Duration = Duration::from_secs(90);
/// p5.48xlarge spot in use1-az4 (added to the launcher scenario by [`with_spot`]).
const P5_SPOT: &str = "aws/us-east-1/use1-az4/p5.48xlarge/spot";

/// A launcher binary that sweeps the outbox and reconciles every half second, with short
/// graces.
const QUICK: &[(&str, &str)] = &[
    ("CAPSIGHT_LAUNCHER__OUTBOX__INTERVAL", "500ms"),
    ("CAPSIGHT_LAUNCHER__OUTBOX__GRACE", "1s"),
    ("CAPSIGHT_LAUNCHER__RECONCILE__INTERVAL", "500ms"),
    ("CAPSIGHT_LAUNCHER__RECONCILE__GONE_GRACE", "2s"),
    ("CAPSIGHT_LAUNCHER__RECONCILE__ORPHAN_GRACE", "3s"),
];

fn env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    QUICK.iter().chain(extra).copied().collect()
}

/// [`launcher::submit`], which must be accepted: the job id and its state.
async fn submit(
    h: &Harness,
    queue: &JobPublisher,
    req: v1::LaunchRequest,
) -> (String, LaunchState) {
    let s = launcher::submit(&h.store(), queue, req).await.unwrap();
    (s.job_id.into_string(), s.state)
}

async fn dispatched(h: &Harness, job_id: &str) -> bool {
    h.store()
        .outbox_job(ACME, job_id)
        .await
        .unwrap()
        .is_some_and(|r| r.dispatched == 1)
}

/// The state a gateway killed between recording a job and publishing it leaves — its outbox
/// row and its request with `queued` — and that of one killed before recording it (the outbox
/// row only, the client got no job id): a launcher's outbox sweep publishes the first, which
/// runs once, and never the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_the_gateway_never_published_is_published_by_the_sweep_and_runs_once() {
    let h = Harness::start("60s").await;
    let store = h.store();
    let now = chrono::Utc::now();
    let recorded = launches::job(ACME, P5_AZ4, 1, 0);
    store
        .record_outbox(&outbox::row(&recorded, now, false))
        .await
        .unwrap();
    let request = launches::job_request(&recorded, now);
    store
        .record_launch(&request, &launches::queued(&request))
        .await
        .unwrap();
    let unrecorded = launches::job(ACME, P5_AZ4, 1, 0);
    store
        .record_outbox(&outbox::row(&unrecorded, now, false))
        .await
        .unwrap();

    let worker = h.spawn_binary(&env(&[]), "outbox");
    let events = h.wait_state(ACME, &recorded.job_id, "running", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning running");
    assert_eq!(h.instances_of(&recorded.job_id).await.len(), 1);
    eventually(LIMIT, "the job marked dispatched", || async {
        dispatched(&h, &recorded.job_id).await.then_some(())
    })
    .await;
    eventually(LIMIT, "the job acknowledged", || async {
        (h.queue_depth(&h.config.amqp.launch.jobs_queue).await == 0).then_some(())
    })
    .await;
    // many sweeps later: the job with no request was never published, nothing more happened
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(h.events(ACME, &unrecorded.job_id).await.is_empty());
    assert!(h.instances_of(&unrecorded.job_id).await.is_empty());
    assert!(!dispatched(&h, &unrecorded.job_id).await);
    assert_eq!(h.events(ACME, &recorded.job_id).await.len(), 4);
    assert_eq!(h.instances_of(&recorded.job_id).await.len(), 1);
    worker.kill();
    h.sandbox.cleanup().await;
}

/// RabbitMQ stopped when the tenant launches: the job is accepted (QUEUED, nothing written
/// after seq 0, no "failed, submit again"), a retry with the same idempotency key answers its
/// real state and, once the broker is back, publishes it; it runs exactly once. A second job
/// accepted during the outage, never retried, is published by the outbox sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rabbitmq_down_at_submit_loses_no_job_and_launches_each_once() {
    let mut h = Harness::start("60s").await;
    let mut rabbit = h.private_rabbit().await;
    let queue = JobPublisher::new(h.config.amqp.clone(), Duration::from_secs(2));
    queue.connect().await.unwrap();
    rabbit.stop().await;

    let (retried, state) = submit(&h, &queue, request(P5_AZ4, "fault-retried")).await;
    assert_eq!(state, LaunchState::Queued);
    let (swept, state) = submit(&h, &queue, request(P5_AZ4, "")).await;
    assert_eq!(state, LaunchState::Queued);
    // a retry while the broker is still down: the same job, still queued, nothing written
    let (again, state) = submit(&h, &queue, request(P5_AZ4, "fault-retried")).await;
    assert_eq!(
        (again.as_str(), state),
        (retried.as_str(), LaunchState::Queued)
    );
    for job in [&retried, &swept] {
        assert_eq!(states(&h.events(ACME, job).await), "queued");
        assert!(!dispatched(&h, job).await);
    }

    rabbit.start().await;
    // the sweep waits an hour: only the retry can publish the first job
    let url = rabbit.url();
    let worker = h.spawn_binary(
        &[
            ("CAPSIGHT_AMQP__URL", url.as_str()),
            ("CAPSIGHT_LAUNCHER__OUTBOX__GRACE", "1h"),
        ],
        "no-sweep",
    );
    let (again, _) = submit(&h, &queue, request(P5_AZ4, "fault-retried")).await;
    assert_eq!(again, retried);
    let events = h.wait_state(ACME, &retried, "running", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning running");
    assert!(dispatched(&h, &retried).await);
    assert_eq!(states(&h.events(ACME, &swept).await), "queued");
    worker.kill();

    // a launcher that sweeps publishes the other one
    let worker = h.spawn_binary(&env(&[("CAPSIGHT_AMQP__URL", url.as_str())]), "sweep");
    let events = h.wait_state(ACME, &swept, "running", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning running");
    eventually(LIMIT, "both jobs acknowledged", || async {
        (h.queue_depth(&h.config.amqp.launch.jobs_queue).await == 0).then_some(())
    })
    .await;
    for job in [&retried, &swept] {
        assert_eq!(h.instances_of(job).await.len(), 1, "{job}");
        assert_eq!(h.events(ACME, job).await.len(), 4, "{job}");
    }
    assert_eq!(
        h.queue_depth(&h.config.amqp.launch.dead_letter_queue).await,
        0
    );
    worker.kill();
    h.sandbox.cleanup().await;
    rabbit.stop().await;
}

/// Retries run out after `RunInstances` succeeded (the instance never runs within the
/// provisioning timeout and no retry is allowed): the job is recorded failed and the reconciler
/// terminates its instance. An instance tagged with a job acme does not have is terminated
/// after the orphan grace; one tagged with another tenant of the same account is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_instance_outlives_its_job() {
    // use1-az6 instances take 30 simulated minutes = 30 s to run
    let h = Harness::start("30m").await;
    let adapter = h.sandbox.tenant_adapter(ACME).await;
    let key: CapacityKey = P5_AZ4.parse().unwrap();
    let orphan_of = |job: &str, tenant: &str| {
        LaunchRequest::new(
            key.instance_type.clone(),
            key.zone.clone(),
            launches::IMAGE,
            format!("orphan-{job}"),
        )
        .tag("capsight:job", job)
        .tag("capsight:tenant", tenant)
    };
    let unknown = uuid::Uuid::now_v7().to_string();
    let orphan = adapter.launch(&orphan_of(&unknown, ACME)).await.unwrap();
    let foreign = uuid::Uuid::now_v7().to_string();
    let theirs = adapter.launch(&orphan_of(&foreign, CAPPED)).await.unwrap();

    let worker = h.spawn_binary(
        &env(&[
            ("CAPSIGHT_LAUNCHER__MAX_RETRIES", "0"),
            ("CAPSIGHT_LAUNCHER__PROVISIONING_TIMEOUT", "3s"),
        ]),
        "leak",
    );
    let job = h.launch(ACME, P5_AZ6, 1, 0).await;
    let events = h.wait_state(ACME, &job.job_id, "failed", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning failed");
    assert_eq!(events.last().unwrap().error_code, "RetriesExhausted");
    eventually(LIMIT, "the failed job's instance terminated", || async {
        h.instances_of(&job.job_id).await.is_empty().then_some(())
    })
    .await;
    eventually(LIMIT, "the unknown job's instance terminated", || async {
        h.instances_of(&unknown).await.is_empty().then_some(())
    })
    .await;
    assert!(
        !instance_state(&*adapter, orphan[0].id.as_str())
            .await
            .is_live()
    );
    // the other tenant's instance (the account is shared) is not acme's to judge
    assert_eq!(h.instances_of(&foreign).await.len(), 1, "{theirs:?}");
    // nothing was written after the failure
    assert_eq!(h.events(ACME, &job.job_id).await.len(), 4);
    worker.kill();
    h.sandbox.cleanup().await;
}

/// The launcher scenario with a p5.48xlarge spot pool in use1-az4 and a spot quota.
fn with_spot() -> capsight_cloudsim::scenario::Scenario {
    let mut s = scenario("60s");
    let mut spot = s
        .pools
        .iter()
        .find(|p| p.zone == "use1-az4" && p.instance_type == "p5.48xlarge")
        .unwrap()
        .clone();
    spot.market = PoolMarket::Spot;
    s.pools.push(spot);
    // the tenant's account may run P spot instances
    for account in &mut s.accounts {
        if account.quotas.contains_key("L-417A185B") {
            account.quotas.insert("L-C4BD4855".into(), 19_200.0);
        }
    }
    s
}

/// A spot launch without warm standby is interrupted: the reconciler ends it `terminated` with
/// the reason (GPU-hours stop counting), exactly once — also when the launcher is killed with
/// `kill -9` after the cloud call and before the record, and when two launchers reconcile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_spot_launch_without_standby_ends_terminated_once() {
    let h = Harness::start_with(with_spot()).await;
    let worker = h.spawn_binary(
        &[("CAPSIGHT_LAUNCHER__RECONCILE__INTERVAL", "1h")],
        "launch",
    );
    let job = h.launch(ACME, P5_SPOT, 1, 0).await;
    let events = h.wait_state(ACME, &job.job_id, "running", LIMIT).await;
    let spot = events.last().unwrap().instance_id.clone();
    assert_eq!(events.last().unwrap().market, "spot");
    worker.kill();

    assert_eq!(h.sandbox.sim().interrupt(&spot).await, 204);
    let adapter = h.sandbox.tenant_adapter(ACME).await;
    eventually(LIMIT, "the spot instance gone", || async {
        (!instance_state(&*adapter, &spot).await.is_live()).then_some(())
    })
    .await;
    // the reconciler dies between the cloud call and the record
    let mut doomed = h.spawn_binary(
        &env(&[("CAPSIGHT_LAUNCHER__CRASH_AFTER", "reconciled")]),
        "crash-reconciled",
    );
    let status = doomed.exited(LIMIT).await;
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert_eq!(
        h.events(ACME, &job.job_id).await.last().unwrap().state,
        LaunchState::Running
    );
    // two launchers pick it up
    let a = h.spawn_binary(&env(&[]), "reconcile-a");
    let b = h.spawn_binary(&env(&[]), "reconcile-b");
    let events = h.wait_state(ACME, &job.job_id, "terminated", LIMIT).await;
    assert_eq!(
        states(&events),
        "queued preflight provisioning running terminated"
    );
    let last = events.last().unwrap();
    assert!(last.detail.contains(&spot), "{}", last.detail);
    assert!(last.detail.contains("instances gone"), "{}", last.detail);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.events(ACME, &job.job_id).await.len(), 5);
    a.kill();
    b.kill();
    h.sandbox.cleanup().await;
}

/// ClickHouse (a private server) hung, then down for a minute, while launches and heartbeats
/// go on: a launch is refused quickly (client-side timeout; nothing accepted), a job delivered
/// during the outage waits in the retry queue without using up its retries and runs once
/// afterwards, and the idle-TTL reaper does not terminate a launch whose heartbeats failed on
/// capsight's side — it terminates it only once the tenant really stops heartbeating.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clickhouse_outage_loses_nothing_and_reaps_no_heartbeating_launch() {
    use capsight_clickhouse::rows::LaunchActivityRow;
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    let h = Harness::start("60s").await;
    let (mut ch, settings) = h.private_clickhouse().await;
    let store = capsight_launch::store::Store::new(settings.client().unwrap());
    let url = ch.url();
    let worker = h.spawn_binary(
        &[
            ("CAPSIGHT_CLICKHOUSE__URL", url.as_str()),
            ("CAPSIGHT_CLICKHOUSE__CONNECT_TIMEOUT", "1s"),
            ("CAPSIGHT_CLICKHOUSE__IO_TIMEOUT", "2s"),
            ("CAPSIGHT_LAUNCHER__LIFECYCLE__INTERVAL", "1s"),
        ],
        "ch-outage",
    );
    let submit_to = |job: v1::LaunchJob| {
        let store = store.clone();
        async move {
            let request = launches::job_request(&job, chrono::Utc::now());
            store
                .record_launch(&request, &launches::queued(&request))
                .await
                .unwrap();
            job
        }
    };
    let wait_state = |job_id: String, state: &'static str| {
        let store = store.clone();
        async move {
            eventually(LIMIT, &format!("{job_id} {state}"), || async {
                let l = store.launch(ACME, &job_id).await.ok()??;
                (l.events.last()?.state.as_str() == state).then_some(l.events)
            })
            .await
        }
    };

    // an idle-TTL launch that heartbeats every second while `beating`
    let mut idle = launches::job(ACME, P5_AZ4, 1, 0);
    idle.idle_ttl_seconds = 15;
    let idle = submit_to(idle).await;
    h.publish_raw(&idle).await;
    wait_state(idle.job_id.clone(), "running").await;
    let beating = Arc::new(AtomicBool::new(true));
    let beats = {
        let (store, beating, job_id) = (store.clone(), Arc::clone(&beating), idle.job_id.clone());
        tokio::spawn(async move {
            loop {
                if beating.load(Ordering::SeqCst) {
                    let (at, at_ms) = capsight_clickhouse::rows::split_time(chrono::Utc::now());
                    let row = LaunchActivityRow {
                        job_id: job_id.clone(),
                        tenant: ACME.into(),
                        at,
                        at_ms,
                        note: String::new(),
                    };
                    // failures are the tenant's 503s: it keeps trying
                    let _ = store.heartbeat(&row).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    // a job recorded before the outage and delivered during it
    let delivered = submit_to(launches::job(ACME, P5_AZ4, 1, 0)).await;

    // 1. hung: calls fail within the client-side timeout instead of blocking
    ch.pause();
    let started = std::time::Instant::now();
    let refused = store.launch(ACME, &idle.job_id).await;
    assert!(refused.is_err(), "a read from a hung ClickHouse succeeded");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a call to a hung ClickHouse took {:?}",
        started.elapsed()
    );
    // 2. down for a minute; heartbeats fail (the tenant retries), a job is delivered
    beating.store(false, Ordering::SeqCst);
    ch.resume();
    ch.stop().await;
    h.publish_raw(&delivered).await;
    // a launch now is refused (UNAVAILABLE upstream): nothing accepted, nothing queued
    let queue = JobPublisher::new(h.config.amqp.clone(), Duration::from_secs(5));
    let refused = launcher::submit(&store, &queue, request(P5_AZ4, "during-the-outage")).await;
    assert!(
        matches!(refused, Err(capsight_launch::submit::SubmitError::Store(_))),
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    ch.start().await;
    // the tenant's agent gets through again a few seconds after the recovery
    tokio::time::sleep(Duration::from_secs(5)).await;
    beating.store(true, Ordering::SeqCst);

    let events = wait_state(delivered.job_id.clone(), "running").await;
    assert_eq!(states(&events), "queued preflight provisioning running");
    assert_eq!(h.instances_of(&delivered.job_id).await.len(), 1);
    // well past the idle TTL after the recovery: still running, its instance too
    tokio::time::sleep(Duration::from_secs(20)).await;
    let l = store.launch(ACME, &idle.job_id).await.unwrap().unwrap();
    assert_eq!(
        states(&l.events),
        "queued preflight provisioning running",
        "reaped although heartbeats only failed on capsight's side"
    );
    assert_eq!(h.instances_of(&idle.job_id).await.len(), 1);
    // the tenant stops heartbeating: reaped as idle
    beats.abort();
    let events = wait_state(idle.job_id.clone(), "terminated").await;
    assert!(events.last().unwrap().detail.contains("idle TTL"));
    eventually(LIMIT, "the idle launch's instance terminated", || async {
        h.instances_of(&idle.job_id).await.is_empty().then_some(())
    })
    .await;
    eventually(LIMIT, "every job acknowledged", || async {
        (h.queue_depth(&h.config.amqp.launch.jobs_queue).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        h.queue_depth(&h.config.amqp.launch.dead_letter_queue).await,
        0
    );
    worker.kill();
    h.sandbox.cleanup().await;
    ch.stop().await;
}
