//! The launcher in-process against the real local stack and cloudsim: happy path, capacity
//! fallback with launch-attempt signals, cancel (before provisioning and while running),
//! poison dead-lettering, tenant GPU quota, fair share of the workers between tenants.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod launcher;

use std::time::Duration;

use capsight_proto::domain::{ErrorClass, LaunchOutcome, LaunchState, Payload, SignalSource};
use capsight_testkit::{kafka::consume, launches, signals::score, wait::eventually};
use lapin::{
    BasicProperties,
    options::{BasicGetOptions, BasicPublishOptions},
    types::AMQPValue,
};
use launcher::{ACME, CAPPED, Harness, P5_AZ1, P5_AZ4, P5_AZ6, states};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_reaches_running_with_one_instance_and_ordered_events() {
    let h = Harness::with_launcher("60s").await;
    let job = h.launch(ACME, P5_AZ4, 1, 0).await;

    let events = h.wait_state(ACME, &job.job_id, "running", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning running");
    let seqs: Vec<u32> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3]);
    let running = events.last().unwrap();
    assert_eq!(running.attempt, 1);
    assert_eq!(running.zone_id, "use1-az4");
    let instances = h.instances_of(&job.job_id).await;
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(running.instance_id, instances[0].id.as_str());
    assert_eq!(
        instances[0].client_token.as_deref(),
        Some(job.job_id.as_str())
    );

    // a duplicate delivery of the same job changes nothing
    h.publish_raw(&job).await;
    eventually(LIMIT, "jobs queue drained", || async {
        (h.queue_depth(&h.config.amqp.launch.jobs_queue).await == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.events(ACME, &job.job_id).await.len(), 4);
    assert_eq!(h.instances_of(&job.job_id).await.len(), 1);

    h.finish().await;
}

/// The tasks that write to a running job (cancel sweep, reaper, standby) go through
/// `Store::append_next`: concurrent writers never share a seq, and nothing follows a final state.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_a_running_job_never_share_a_seq() {
    let mut h = Harness::with_launcher("60s").await;
    let job = h.launch(ACME, P5_AZ4, 1, 0).await;
    let events = h.wait_state(ACME, &job.job_id, "running", LIMIT).await;
    h.stop_launcher().await;
    let running = events.last().unwrap().clone();

    let store = h.store();
    let writers = (0..8).map(|i| {
        let store = store.clone();
        let row = capsight_launcher::store::follow_up(
            &running,
            LaunchState::Running,
            format!("note {i}"),
        );
        tokio::spawn(async move { store.append_next(row).await.unwrap() })
    });
    let mut seqs = Vec::new();
    for w in writers {
        seqs.push(w.await.unwrap().expect("written").seq);
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (running.seq + 1..=running.seq + 8).collect::<Vec<_>>()
    );
    let after = h.events(ACME, &job.job_id).await;
    assert_eq!(after.len(), events.len() + 8);

    let last = after.last().unwrap();
    let append = |state, note| {
        let row = capsight_launcher::store::follow_up(last, state, note);
        let store = store.clone();
        async move { store.append_next(row).await.unwrap() }
    };
    let ended = append(LaunchState::Terminated, "test").await;
    assert_eq!(ended.map(|r| r.seq), Some(last.seq + 1));
    let late = append(LaunchState::Running, "too late").await;
    assert!(late.is_none(), "a row after a final state: {late:?}");
    let finals = h.events(ACME, &job.job_id).await;
    assert_eq!(finals.last().unwrap().state, LaunchState::Terminated);
    assert_eq!(finals.len(), after.len() + 1);
    h.sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_capacity_error_falls_back_to_the_best_ranked_alternative() {
    let mut h = Harness::start("60s").await;
    h.put_scores(&[
        score(P5_AZ1, 20, 0.8),
        score(P5_AZ4, 70, 0.8),
        score(P5_AZ6, 90, 0.8),
        // not allowed by the job: other region, spot without interruptible
        score("aws/us-west-2/usw2-az1/p5.48xlarge/on_demand", 99, 0.8),
        score("aws/us-east-1/use1-az4/p5.48xlarge/spot", 99, 0.8),
    ])
    .await;
    h.start_launcher();
    // use1-az1 has no stock
    let job = h.launch(ACME, P5_AZ1, 1, 2).await;

    let events = h.wait_state(ACME, &job.job_id, "running", LIMIT).await;
    assert_eq!(
        states(&events),
        "queued preflight provisioning provisioning running"
    );
    assert_eq!(events[2].zone_id, "use1-az1");
    assert_eq!(events[2].attempt, 1);
    assert_eq!(events[3].zone_id, "use1-az6", "{}", events[3].detail);
    assert_eq!(events[3].attempt, 2);
    assert!(
        events[3].detail.contains("InsufficientInstanceCapacity"),
        "{}",
        events[3].detail
    );
    let instances = h.instances_of(&job.job_id).await;
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].zone.as_ref().unwrap().as_str(), "use1-az6");
    assert_eq!(
        instances[0].client_token.as_deref(),
        Some(format!("{}-2", job.job_id).as_str())
    );

    // both attempts are launch-attempt signals of the tenant
    let kafka = &h.config.kafka;
    let mut signals = consume(kafka, &kafka.topics.signals, 2).await;
    signals.sort_by_key(|s| s.key.zone_str().to_owned());
    for s in &signals {
        assert_eq!(s.source, SignalSource::Launch);
        assert_eq!(s.tenant.as_ref().unwrap().as_str(), "hash-acme");
    }
    let Payload::LaunchAttempt(failed) = &signals[0].payload else {
        panic!("{:?}", signals[0].payload)
    };
    assert_eq!(signals[0].key.zone_str(), "use1-az1");
    assert_eq!(failed.outcome, LaunchOutcome::Failed);
    assert_eq!(failed.error_class, ErrorClass::Capacity);
    let Payload::LaunchAttempt(ok) = &signals[1].payload else {
        panic!("{:?}", signals[1].payload)
    };
    assert_eq!(signals[1].key.zone_str(), "use1-az6");
    assert_eq!(ok.outcome, LaunchOutcome::Succeeded);
    assert_ne!(signals[0].id, signals[1].id);

    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_fallbacks_a_capacity_error_fails_the_job() {
    let h = Harness::with_launcher("60s").await;
    let job = h.launch(ACME, P5_AZ1, 1, 0).await;
    let events = h.wait_state(ACME, &job.job_id, "failed", LIMIT).await;
    let failed = events.last().unwrap();
    assert_eq!(failed.error_class, "capacity");
    assert_eq!(failed.error_code, "InsufficientInstanceCapacity");
    assert!(
        failed.detail.contains("no fallbacks allowed"),
        "{}",
        failed.detail
    );
    assert!(h.instances_of(&job.job_id).await.is_empty());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_before_provisioning_and_while_running() {
    let h = Harness::with_launcher("60s").await;
    let gw = h.store();
    let cancel = |job_id: String| capsight_clickhouse::rows::LaunchCancellationRow {
        job_id,
        tenant: ACME.into(),
        at: capsight_clickhouse::rows::split_time(chrono::Utc::now()).0,
    };

    // cancelled while queued: nothing is launched
    let early = launches::job(ACME, P5_AZ4, 1, 0);
    gw.cancel(&cancel(early.job_id.clone())).await.unwrap();
    h.submit(&early).await;
    let events = h.wait_state(ACME, &early.job_id, "cancelled", LIMIT).await;
    assert_eq!(states(&events), "queued cancelled");
    assert!(h.instances_of(&early.job_id).await.is_empty());

    // cancelled while running: the instance is terminated
    let late = h.launch(ACME, P5_AZ4, 1, 0).await;
    h.wait_state(ACME, &late.job_id, "running", LIMIT).await;
    assert_eq!(h.instances_of(&late.job_id).await.len(), 1);
    gw.cancel(&cancel(late.job_id.clone())).await.unwrap();
    let events = h.wait_state(ACME, &late.job_id, "cancelled", LIMIT).await;
    assert_eq!(
        states(&events),
        "queued preflight provisioning running cancelled"
    );
    assert!(events.last().unwrap().detail.contains("terminated"));
    assert!(h.instances_of(&late.job_id).await.is_empty());

    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_jobs_are_dead_lettered_with_their_reason_and_the_worker_carries_on() {
    let h = Harness::with_launcher("60s").await;
    let t = h.config.amqp.launch.clone();

    // undecodable bytes
    let conn = h.config.amqp.connect().await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    t.declare(&ch).await.unwrap();
    ch.basic_publish(
        t.exchange.as_str().into(),
        t.jobs_routing_key.as_str().into(),
        BasicPublishOptions::default(),
        b"\xff\xff not protobuf",
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    // a well-formed job of a tenant the registry does not know
    let stranger = h.launch("nobody", P5_AZ4, 1, 0).await;
    // and a good job after them
    let good = h.launch(ACME, P5_AZ4, 1, 0).await;
    h.wait_state(ACME, &good.job_id, "running", LIMIT).await;

    let mut reasons = Vec::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while reasons.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "two dead letters: {reasons:?}"
        );
        let Some(msg) = ch
            .basic_get(
                t.dead_letter_queue.as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap()
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        match msg
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("capsight-dead-reason").cloned())
        {
            Some(AMQPValue::LongString(s)) => reasons.push(s.to_string()),
            other => panic!("no reason header: {other:?}"),
        }
    }
    reasons.sort();
    assert!(reasons[0].contains("is not in the registry"), "{reasons:?}");
    assert!(
        reasons[1].starts_with("undecodable LaunchJob"),
        "{reasons:?}"
    );
    // the unknown tenant's job is visible as failed with the reason
    let events = h.events("nobody", &stranger.job_id).await;
    assert_eq!(states(&events), "queued failed");
    assert!(events[1].detail.contains("not in the registry"));
    assert_eq!(h.queue_depth(&t.jobs_queue).await, 0);

    let _ = conn.close(200, "bye".into()).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_launch_over_the_tenant_gpu_quota_is_refused() {
    let h = Harness::with_launcher("60s").await;
    // quota 8 GPUs = one p5.48xlarge
    let first = h.launch(CAPPED, P5_AZ4, 1, 0).await;
    h.wait_state(CAPPED, &first.job_id, "running", LIMIT).await;

    let second = h.launch(CAPPED, P5_AZ4, 1, 0).await;
    let events = h.wait_state(CAPPED, &second.job_id, "failed", LIMIT).await;
    assert_eq!(states(&events), "queued preflight failed");
    let failed = events.last().unwrap();
    assert_eq!(failed.error_class, "quota");
    assert!(
        failed
            .detail
            .starts_with("tenant GPU quota exceeded: 8 GPUs in use + 8 requested = 16 > quota 8"),
        "{}",
        failed.detail
    );
    assert!(h.instances_of(&second.job_id).await.is_empty());

    // another tenant is not limited by it
    let other = h.launch(ACME, P5_AZ4, 2, 0).await;
    h.wait_state(ACME, &other.job_id, "running", LIMIT).await;
    assert_eq!(h.instances_of(&other.job_id).await.len(), 2);

    h.finish().await;
}

/// Jobs of one tenant delivered together (prefetch 4) are checked against its GPU quota one at
/// a time: exactly one of three 8-GPU launches fits a quota of 8.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_launches_of_a_tenant_do_not_overrun_its_gpu_quota() {
    let mut h = Harness::start("60s").await;
    let jobs: Vec<_> = (0..3)
        .map(|_| launches::job(CAPPED, P5_AZ4, 1, 0))
        .collect();
    for job in &jobs {
        h.submit(job).await;
    }
    h.start_launcher();
    let mut outcomes = Vec::new();
    for job in &jobs {
        let settled = eventually(LIMIT, "job settled", || async {
            let events = h.events(CAPPED, &job.job_id).await;
            events
                .last()
                .filter(|e| e.state == LaunchState::Running || e.state == LaunchState::Failed)
                .cloned()
        })
        .await;
        outcomes.push(settled);
    }
    let running = outcomes
        .iter()
        .filter(|e| e.state == LaunchState::Running)
        .count();
    let refused = outcomes
        .iter()
        .filter(|e| e.state == LaunchState::Failed && e.error_code == "TenantGpuQuotaExceeded")
        .count();
    assert_eq!((running, refused), (1, 2), "{outcomes:?}");
    let instances: usize =
        futures::future::join_all(jobs.iter().map(|j| h.instances_of(&j.job_id)))
            .await
            .iter()
            .map(Vec::len)
            .sum();
    assert_eq!(instances, 1);

    h.finish().await;
}

/// A tenant without a GPU quota of its own gets the default one: no tenant is unlimited.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_without_a_quota_gets_the_default_gpu_quota() {
    let mut h = Harness::start("60s").await;
    h.config.tenancy.default_gpu_quota = 8;
    h.start_launcher();
    let first = h.launch(ACME, P5_AZ4, 1, 0).await;
    h.wait_state(ACME, &first.job_id, "running", LIMIT).await;
    let second = h.launch(ACME, P5_AZ4, 1, 0).await;
    let events = h.wait_state(ACME, &second.job_id, "failed", LIMIT).await;
    let failed = events.last().unwrap();
    assert_eq!(failed.error_class, "quota");
    assert!(failed.detail.contains("> quota 8"), "{}", failed.detail);
    assert!(h.instances_of(&second.job_id).await.is_empty());
    h.finish().await;
}

/// Fairness: a tenant that queued many jobs first takes at most its share of the launcher's
/// workers (`tenant_share` 2 of `prefetch` 4); another tenant's job queued behind them starts
/// at once instead of waiting for the first tenant's slow launches, and the first tenant's
/// jobs still all run (they waited in the retry queue, nothing lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_tenants_queued_jobs_take_only_its_share_of_the_launcher() {
    // acme's launches stay pending 10 minutes (10 s at 60x)
    let mut h = Harness::start("600s").await;
    assert_eq!(
        (h.config.launcher.prefetch, h.config.launcher.tenant_share),
        (4, 2)
    );
    let greedy: Vec<_> = (0..4).map(|_| launches::job(ACME, P5_AZ6, 1, 0)).collect();
    for job in &greedy {
        h.submit(job).await;
    }
    let other = launches::job(CAPPED, P5_AZ4, 1, 0);
    h.submit(&other).await;
    h.start_launcher();

    h.wait_state(CAPPED, &other.job_id, "running", LIMIT).await;
    let mut started = 0;
    for job in &greedy {
        if h.events(ACME, &job.job_id).await.len() > 1 {
            started += 1;
        }
    }
    assert!(
        started <= 2,
        "{started} of acme's jobs were taken before the other tenant's job ran"
    );
    for job in &greedy {
        h.wait_state(ACME, &job.job_id, "running", LIMIT).await;
        assert_eq!(h.instances_of(&job.job_id).await.len(), 1);
    }
    h.finish().await;
}

/// A fallback never takes the tenant over its GPU quota: with 1 of 8 GPUs in use, the
/// higher-scored p5.48xlarge (8 GPUs) is skipped for a g5.xlarge (1 GPU).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fallback_skips_alternatives_over_the_tenant_gpu_quota() {
    let mut h = Harness::start("60s").await;
    h.put_scores(&[
        score("aws/us-east-1/use1-az1/g5.xlarge/on_demand", 10, 0.8),
        score(P5_AZ4, 99, 0.8),
        score("aws/us-east-1/use1-az4/g5.xlarge/on_demand", 50, 0.8),
    ])
    .await;
    h.start_launcher();
    let first = h
        .launch(CAPPED, "aws/us-east-1/use1-az4/g5.xlarge/on_demand", 1, 0)
        .await;
    h.wait_state(CAPPED, &first.job_id, "running", LIMIT).await;

    let mut second = launches::job(CAPPED, "aws/us-east-1/use1-az1/g5.xlarge/on_demand", 1, 2);
    second.constraints.as_mut().unwrap().allow_substitutes = true;
    h.submit(&second).await;
    let events = h.wait_state(CAPPED, &second.job_id, "running", LIMIT).await;
    let last = events.last().unwrap();
    assert_eq!(
        (
            last.zone_id.as_str(),
            last.instance_type.as_str(),
            last.attempt
        ),
        ("use1-az4", "g5.xlarge", 2),
        "{events:?}"
    );
    assert!(
        events.iter().all(|e| e.instance_type != "p5.48xlarge"),
        "{events:?}"
    );

    h.finish().await;
}

/// Makes the next `count` RunInstances calls of cloudsim fail with a transient error.
async fn inject_faults(h: &Harness, count: u32) {
    h.sandbox
        .sim()
        .fault("RunInstances", "InternalError", count)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transient_errors_are_retried_through_the_retry_queue_then_give_up() {
    let h = Harness::with_launcher("60s").await;
    // cloud.max_attempts = 2 in the harness: two faults fail the first job-level try
    inject_faults(&h, 2).await;
    let job = h.launch(ACME, P5_AZ4, 1, 0).await;
    let events = h.wait_state(ACME, &job.job_id, "running", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning running");
    assert_eq!(h.instances_of(&job.job_id).await.len(), 1);

    // faults outlasting launcher.max_retries (5): failed, and dead-lettered for replay
    inject_faults(&h, 1000).await;
    let doomed = h.launch(ACME, P5_AZ4, 1, 0).await;
    let events = h.wait_state(ACME, &doomed.job_id, "failed", LIMIT).await;
    let failed = events.last().unwrap();
    assert_eq!(failed.error_class, "transient");
    assert!(
        failed.detail.starts_with("gave up after 5 retries"),
        "{}",
        failed.detail
    );
    eventually(LIMIT, "the exhausted job dead-lettered", || async {
        (h.queue_depth(&h.config.amqp.launch.dead_letter_queue).await == 1).then_some(())
    })
    .await;
    assert!(h.instances_of(&doomed.job_id).await.is_empty());

    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_while_provisioning_terminates_the_pending_instance() {
    // use1-az6 instances take 20 simulated minutes = 20 s to run
    let h = Harness::with_launcher("20m").await;
    let job = h.launch(ACME, P5_AZ6, 1, 0).await;
    h.wait_pending(&job.job_id, LIMIT).await;
    h.store()
        .cancel(&capsight_clickhouse::rows::LaunchCancellationRow {
            job_id: job.job_id.clone(),
            tenant: ACME.into(),
            at: capsight_clickhouse::rows::split_time(chrono::Utc::now()).0,
        })
        .await
        .unwrap();
    let events = h.wait_state(ACME, &job.job_id, "cancelled", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning cancelled");
    assert!(
        events[3].detail.contains("terminated i-"),
        "{}",
        events[3].detail
    );
    assert!(h.instances_of(&job.job_id).await.is_empty());
    h.finish().await;
}
