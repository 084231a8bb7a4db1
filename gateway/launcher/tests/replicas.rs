//! Several launchers on the real stack (ClickHouse, RabbitMQ, cloudsim) with the real
//! `capsight-launcher` binary: three replicas, one of them killed (`kill -9`) and restarted
//! repeatedly while concurrent jobs of two tenants run, every job published twice (a gateway
//! and the outbox sweep both dispatching it). Checks: exactly one instance per attempt (client
//! token) in cloudsim, the capped tenant's GPU quota never exceeded (sampled throughout),
//! every job's sequence numbers gap-free and each written once (an audit copy of every
//! insert), no instance left without a running job. Needs
//! `cargo build -p capsight-launcher --bins`. Results: `docs/reliability.md`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod launcher;

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use capsight_proto::domain::LaunchState;
use capsight_testkit::wait::eventually;
use launcher::{ACME, CAPPED, Harness, P5_AZ4, P5_AZ6, states};

const LIMIT: Duration = Duration::from_secs(180);

/// Quick sweeps and leader failover, no per-launcher tenant share (all jobs run at once).
const ENV: &[(&str, &str)] = &[
    ("CAPSIGHT_LAUNCHER__TENANT_SHARE", "0"),
    ("CAPSIGHT_LAUNCHER__PREFETCH", "8"),
    ("CAPSIGHT_LAUNCHER__POLL_INTERVAL", "200ms"),
    ("CAPSIGHT_LAUNCHER__CANCEL_SWEEP_INTERVAL", "500ms"),
    ("CAPSIGHT_LAUNCHER__OUTBOX__INTERVAL", "500ms"),
    ("CAPSIGHT_LAUNCHER__RECONCILE__INTERVAL", "500ms"),
    ("CAPSIGHT_LAUNCHER__RECONCILE__GONE_GRACE", "5s"),
    ("CAPSIGHT_LAUNCHER__RECONCILE__ORPHAN_GRACE", "10s"),
    ("CAPSIGHT_LAUNCHER__LIFECYCLE__INTERVAL", "500ms"),
    ("CAPSIGHT_LAUNCHER__LEASES__LEADER_RETRY", "300ms"),
    ("CAPSIGHT_LAUNCHER__LEASES__RETRY", "100ms"),
    ("CAPSIGHT_LAUNCHER__LEASES__WAIT", "2s"),
];

/// A plain `MergeTree` copy of every `launch_events` insert (never collapsed), so a seq written
/// twice shows.
async fn audit_inserts(h: &Harness) {
    let client = h.sandbox.client();
    client
        .query(
            "CREATE TABLE IF NOT EXISTS launch_events_audit ENGINE = MergeTree() \
             ORDER BY (tenant, job_id, seq) AS SELECT * FROM launch_events WHERE 0",
        )
        .execute()
        .await
        .unwrap();
    client
        .query(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS launch_events_audit_mv \
             TO launch_events_audit AS SELECT * FROM launch_events",
        )
        .execute()
        .await
        .unwrap();
}

/// Every (tenant, job, seq) as inserted, with how many times.
async fn inserted(h: &Harness) -> BTreeMap<(String, String), Vec<(u32, u64)>> {
    let rows: Vec<(String, String, u32, u64)> = h
        .sandbox
        .client()
        .query(
            "SELECT tenant, job_id, seq, count() FROM launch_events_audit \
             GROUP BY tenant, job_id, seq ORDER BY tenant, job_id, seq",
        )
        .fetch_all()
        .await
        .unwrap();
    let mut by_job: BTreeMap<(String, String), Vec<(u32, u64)>> = BTreeMap::new();
    for (tenant, job, seq, n) in rows {
        by_job.entry((tenant, job)).or_default().push((seq, n));
    }
    by_job
}

/// Live instances of `tenant` (tag `capsight:tenant`) in the shared test account.
async fn live_of(h: &Harness, tenant: &str) -> Vec<capsight_cloud::Instance> {
    h.sandbox
        .tenant_adapter(ACME)
        .await
        .describe(&[])
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.tags.get("capsight:tenant").map(String::as_str) == Some(tenant))
        .filter(|i| i.state.is_live())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_launchers_one_killed_repeatedly_launch_each_attempt_once_within_the_quota() {
    // p5.48xlarge in use1-az6 takes 3 s (real) to run: kills land while jobs provision
    let h = Harness::start("180s").await;
    audit_inserts(&h).await;
    let mut victim = Some(h.spawn_binary(ENV, "victim-0"));
    let _b = h.spawn_binary(ENV, "replica-b");
    let _c = h.spawn_binary(ENV, "replica-c");

    // the capped tenant (8 GPUs = one p5.48xlarge) never holds more than one instance
    let over_quota = Arc::new(AtomicUsize::new(0));
    let sampling = Arc::new(tokio::sync::Notify::new());
    let sampler = {
        let h_client = h.sandbox.tenant_adapter(ACME).await;
        let over = Arc::clone(&over_quota);
        let stop = Arc::clone(&sampling);
        tokio::spawn(async move {
            loop {
                if let Ok(all) = h_client.describe(&[]).await {
                    let capped = all
                        .iter()
                        .filter(|i| {
                            i.tags.get("capsight:tenant").map(String::as_str) == Some(CAPPED)
                                && i.state.is_live()
                        })
                        .count();
                    over.fetch_max(capped, Ordering::SeqCst);
                }
                tokio::select! {
                    () = stop.notified() => return,
                    () = tokio::time::sleep(Duration::from_millis(150)) => {}
                }
            }
        })
    };

    let mut acme = Vec::new();
    let mut capped = Vec::new();
    for round in 0..4 {
        for _ in 0..3 {
            let job = h.launch(ACME, P5_AZ6, 1, 0).await;
            // a second dispatch of the same job (the outbox sweep and a late gateway)
            h.publish_raw(&job).await;
            acme.push(job);
        }
        let job = h.launch(CAPPED, P5_AZ4, 1, 0).await;
        h.publish_raw(&job).await;
        capped.push(job);
        // kill -9 the victim while these jobs are in flight, restart it
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if let Some(v) = victim.take() {
            v.kill();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        victim = Some(h.spawn_binary(ENV, &format!("victim-{}", round + 1)));
    }

    for job in &acme {
        let events = h.wait_state(ACME, &job.job_id, "running", LIMIT).await;
        assert_eq!(
            states(&events),
            "queued preflight provisioning running",
            "{}",
            job.job_id
        );
    }
    let mut running_capped = 0;
    for job in &capped {
        let last = eventually(LIMIT, "capped job settled", || async {
            h.events(CAPPED, &job.job_id)
                .await
                .last()
                .filter(|e| matches!(e.state, LaunchState::Running | LaunchState::Failed))
                .cloned()
        })
        .await;
        match last.state {
            LaunchState::Running => running_capped += 1,
            _ => assert_eq!(last.error_code, "TenantGpuQuotaExceeded", "{last:?}"),
        }
    }
    assert_eq!(running_capped, 1, "exactly one capped job fits its quota");
    // every delivery settled: nothing waiting, nothing dead-lettered
    let t = h.config.amqp.launch.clone();
    eventually(LIMIT, "queues drained", || async {
        (h.queue_depth(&t.jobs_queue).await == 0 && h.queue_depth(&t.retry_queue).await == 0)
            .then_some(())
    })
    .await;
    assert_eq!(h.queue_depth(&t.dead_letter_queue).await, 0);
    sampling.notify_one();
    sampler.await.unwrap();
    assert!(
        over_quota.load(Ordering::SeqCst) <= 1,
        "the capped tenant held {} instances at once (quota: one)",
        over_quota.load(Ordering::SeqCst)
    );

    // exactly one instance per attempt: every instance the jobs ever launched, by client token
    let all = h
        .sandbox
        .tenant_adapter(ACME)
        .await
        .describe(&[])
        .await
        .unwrap();
    let mut per_token: BTreeMap<String, usize> = BTreeMap::new();
    for i in &all {
        if i.tags.contains_key("capsight:job") {
            *per_token
                .entry(i.client_token.clone().unwrap_or_default())
                .or_default() += 1;
        }
    }
    assert!(per_token.values().all(|n| *n == 1), "{per_token:?}");
    for job in &acme {
        assert_eq!(h.instances_of(&job.job_id).await.len(), 1, "{}", job.job_id);
    }
    // no leaked instance: each live one is the running instance of its job
    let mut serving = Vec::new();
    for job in acme.iter().chain(&capped) {
        if let Some(last) = h.events(&job.tenant, &job.job_id).await.last()
            && last.state == LaunchState::Running
        {
            serving.push(last.instance_id.clone());
        }
    }
    for tenant in [ACME, CAPPED] {
        for i in live_of(&h, tenant).await {
            assert!(
                serving.contains(&i.id.as_str().to_owned()),
                "leaked instance {} ({tenant})",
                i.id.as_str()
            );
        }
    }
    // gap-free sequences, each seq inserted once
    let audit = inserted(&h).await;
    for job in acme.iter().chain(&capped) {
        let seqs = &audit[&(job.tenant.clone(), job.job_id.clone())];
        let expected: Vec<u32> = (0..u32::try_from(seqs.len()).unwrap()).collect();
        let got: Vec<u32> = seqs.iter().map(|(s, _)| *s).collect();
        assert_eq!(got, expected, "gap in {}: {seqs:?}", job.job_id);
        assert!(
            seqs.iter().all(|(_, n)| *n == 1),
            "a seq of {} written twice: {seqs:?}",
            job.job_id
        );
    }
    h.sandbox.cleanup().await;
}
