//! Warm standby, lifecycle reaper and GPU-hours across services on the real local stack:
//! ClickHouse 18.16, Kafka, a cloudsim whose webhook feeds the reports intake (in-process), the
//! launcher's standby manager and reaper (in-process, or its binary), and for heartbeats the
//! gateway (in-process). Each test runs in a kit sandbox: its own ClickHouse database, Kafka
//! topics, consumer groups, RabbitMQ names, tenant registry and cloudsim. Running launches are
//! set up by launching instances in cloudsim and writing the `launch_requests` /
//! `launch_events` rows the gateway and worker would have written.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "a panic in a test is a failed assertion"
)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use capsight_clickhouse::rows::{LaunchEventRow, LaunchRequestRow};
use capsight_cloud::{CloudAdapter, InstanceId, InstanceState, Market, tenants::TenantClouds};
use capsight_e2e::standby::{self, TIME_SCALE, registry};
use capsight_gateway::{GatewayConfig, jobs::JobPublisher};
use capsight_launcher::{
    LauncherConfig,
    lifecycle::{LifecycleSettings, Reaper},
    standby::{Standby, StandbySettings},
    store::{Store, follow_up},
    usage,
};
use capsight_proto::domain::{CapacityKey, LaunchState};
use capsight_proto::v1::{self, launch_service_client::LaunchServiceClient};
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::TenantHasher;
use capsight_testkit::{
    Sandbox,
    clickhouse::{insert, tsv},
    cloud::{self, OPERATOR, catalog, instance_state, wait_instance},
    fixtures::documented_queries,
    grpc,
    launches::{self, job_request, queued},
    process::bin,
    wait::eventually_every,
};
use chrono::Datelike;
use tonic::Code;

/// The test's sandbox (signals and compacted scores topics, database, launch topology, tenants
/// `acme` with a role and a key and `globex`, the launcher and gateway at test pace) with the
/// reports intake in-process (finding capsight's own launches in ClickHouse), fed by the
/// sandbox's cloudsim (the standby scenario at [`TIME_SCALE`]) through its webhook with acme's
/// key. The intake stops with the returned shutdown.
async fn sandbox() -> (Sandbox, Shutdown) {
    let (sandbox, shutdown, _) = sandbox_with_intake().await;
    (sandbox, shutdown)
}

/// [`sandbox`], also returning the intake's events URL (`globex` has a key too, to attack).
async fn sandbox_with_intake() -> (Sandbox, Shutdown, String) {
    standby::world("standby", &[]).await
}

/// A standby manager over the sandbox (its store, tenants' clouds, registry and tenant hasher).
fn standby_manager(sb: &Sandbox, settings: StandbySettings) -> Standby {
    let config: LauncherConfig = sb.config();
    Standby::new(
        Store::new(sb.client()),
        sb.clouds(),
        registry(sb),
        settings,
        TenantHasher::new(&config.tenancy.hash_secret),
    )
}

/// Standby settings with a 10-minute cooldown and a 200 ms sweep, consuming as the sandbox's
/// group with `suffix`.
fn quick_sweep(sb: &Sandbox, suffix: &str) -> StandbySettings {
    StandbySettings {
        cooldown: Duration::from_secs(600),
        interval: Duration::from_millis(200),
        consumer_group: format!("{}-{suffix}", sb.group),
    }
}

/// Writes the request and queued -> provisioning -> running rows of acme's running launch of
/// g5.xlarge in use1-az1 (running `running_for` ago).
async fn record_running(
    sandbox: &Sandbox,
    job_id: &str,
    instance: &str,
    market: Market,
    running_for: Duration,
    limits: (u64, u64),
    warm_standby: bool,
) {
    let now = chrono::Utc::now();
    let ago = |back: Duration| now - chrono::Duration::from_std(back).unwrap();
    let key: CapacityKey = format!("aws/us-east-1/use1-az1/g5.xlarge/{}", market.as_str())
        .parse()
        .unwrap();
    let request = LaunchRequestRow {
        image_id: "ami-test".into(),
        warm_standby: u8::from(warm_standby),
        max_lifetime_secs: limits.0,
        idle_ttl_secs: limits.1,
        ..launches::request(
            job_id,
            "acme",
            &key,
            1,
            ago(running_for + Duration::from_secs(5)),
        )
    };
    insert(
        &sandbox.client(),
        "launch_requests",
        std::slice::from_ref(&request),
    )
    .await;
    let at = [
        ago(running_for + Duration::from_secs(5)),
        ago(running_for + Duration::from_secs(2)),
        ago(running_for),
    ];
    let store = Store::new(sandbox.client());
    for event in launches::ran(&request, at, instance) {
        store.append(&event).await.unwrap();
    }
}

/// Acme's job's transitions.
async fn events_of(sandbox: &Sandbox, job_id: &str) -> Vec<LaunchEventRow> {
    Store::new(sandbox.client())
        .events("acme", job_id, None)
        .await
        .unwrap()
}

/// Polls (every 50 ms) acme's job's transitions until one satisfies `pred`.
async fn wait_event(
    sandbox: &Sandbox,
    job_id: &str,
    within: Duration,
    pred: impl Fn(&LaunchEventRow) -> bool,
) -> LaunchEventRow {
    eventually_every(
        Duration::from_millis(50),
        within,
        &format!("a matching transition of {job_id}"),
        || async {
            let events = events_of(sandbox, job_id).await;
            events
                .iter()
                .find(|e| pred(e))
                .cloned()
                .ok_or_else(|| format!("{events:#?}"))
        },
    )
    .await
}

/// Acme's launch running on an instance launched for it (see [`record_running`]): (job id,
/// instance id).
async fn running_launch(
    sandbox: &Sandbox,
    adapter: &dyn CloudAdapter,
    market: Market,
    running_for: Duration,
    limits: (u64, u64),
    warm_standby: bool,
) -> (String, String) {
    let job_id = job();
    let instance = cloud::run_g5(adapter, &job_id, market).await;
    record_running(
        sandbox,
        &job_id,
        &instance,
        market,
        running_for,
        limits,
        warm_standby,
    )
    .await;
    (job_id, instance)
}

/// [`wait_event`] for the job's `terminated` transition.
async fn wait_terminated(sandbox: &Sandbox, job_id: &str, within: Duration) -> LaunchEventRow {
    wait_event(sandbox, job_id, within, |e| {
        e.state == LaunchState::Terminated
    })
    .await
}

/// Waits (10 s) until instance `id` is stopping or stopped.
async fn wait_stopping(adapter: &dyn CloudAdapter, id: &str) {
    wait_instance(
        adapter,
        id,
        &[InstanceState::Stopping, InstanceState::Stopped],
        Duration::from_secs(10),
    )
    .await;
}

/// Waits until instance `id` is shutting down or terminated.
async fn wait_gone(adapter: &dyn CloudAdapter, id: &str, within: Duration) {
    wait_instance(
        adapter,
        id,
        &[InstanceState::ShuttingDown, InstanceState::Terminated],
        within,
    )
    .await;
}

/// [`wait_event`] for a transition whose detail starts with `prefix`.
async fn wait_detail(
    sandbox: &Sandbox,
    job_id: &str,
    within: Duration,
    prefix: &str,
) -> LaunchEventRow {
    wait_event(sandbox, job_id, within, |e| e.detail.starts_with(prefix)).await
}

/// Waits (60 s) for the job's `standby ready` transition and (30 s) until its standby is
/// stopped: (the transition, the standby's id).
async fn stopped_standby(
    sandbox: &Sandbox,
    adapter: &dyn CloudAdapter,
    job_id: &str,
) -> (LaunchEventRow, String) {
    let ready = wait_detail(sandbox, job_id, Duration::from_secs(60), "standby ready").await;
    let standby_id = standby_of(&ready);
    wait_instance(
        adapter,
        &standby_id,
        &[InstanceState::Stopped],
        Duration::from_secs(30),
    )
    .await;
    (ready, standby_id)
}

/// Interrupts the job's `spot` instance (cloudsim sends a rebalance recommendation to the
/// intake) and waits (30 s) for the job's `standby active` transition, then (30 s) until
/// `standby` runs: (the transition, how long it took to be recorded, how long until the standby
/// ran).
async fn interrupt(
    sandbox: &Sandbox,
    adapter: &dyn CloudAdapter,
    job_id: &str,
    spot: &str,
    standby: &str,
) -> (LaunchEventRow, Duration, Duration) {
    let t0 = Instant::now();
    assert_eq!(sandbox.sim().interrupt(spot).await, 204);
    let active = wait_detail(sandbox, job_id, Duration::from_secs(30), "standby active").await;
    let recorded = t0.elapsed();
    let to_running = wait_instance(
        adapter,
        standby,
        &[InstanceState::Running],
        Duration::from_secs(30),
    )
    .await
        + recorded;
    (active, recorded, to_running)
}

/// The standby instance named by a `standby ready` transition.
fn standby_of(ready: &LaunchEventRow) -> String {
    ready
        .detail
        .split_whitespace()
        .find_map(|w| w.strip_prefix("standby="))
        .unwrap()
        .to_owned()
}

fn job() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn interruption_starts_the_standby_and_a_replacement_ends_it_after_the_cooldown() {
    let (sb, _intake) = sandbox().await;
    let adapter = sb.tenant_adapter("acme").await;
    let (job_id, spot) =
        running_launch(&sb, &*adapter, Market::Spot, Duration::ZERO, (0, 0), true).await;
    // an on-demand job without a standby is left alone
    let (plain, _) = running_launch(
        &sb,
        &*adapter,
        Market::OnDemand,
        Duration::ZERO,
        (0, 0),
        false,
    )
    .await;

    let cooldown = Duration::from_secs(4);
    let settings = StandbySettings {
        cooldown,
        interval: Duration::from_millis(200),
        consumer_group: format!("{}-standby", sb.group),
    };
    let first = Shutdown::new();
    let manager = standby_manager(&sb, settings.clone());
    let task = tokio::spawn(manager.run(sb.kafka.clone(), first.clone()));

    // 1. the stopped on-demand clone
    let (ready, standby_id) = stopped_standby(&sb, &*adapter, &job_id).await;
    assert_eq!(ready.state, LaunchState::Running);
    assert_eq!(ready.instance_id, spot, "the spot instance still serves");
    assert_ne!(standby_id, spot);
    let standby = adapter
        .describe(&[InstanceId::new(&standby_id).unwrap()])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(standby.market, Market::OnDemand);
    assert_eq!(standby.instance_type, "g5.xlarge");
    assert_eq!(
        standby.client_token.as_deref(),
        Some(format!("{job_id}-standby").as_str())
    );
    assert!(
        events_of(&sb, &plain)
            .await
            .iter()
            .all(|e| !e.detail.starts_with("standby")),
        "a job without warm_standby gets no standby"
    );

    // 2. interrupt the spot instance: cloudsim -> webhook -> reports intake -> Kafka -> launcher
    let (active, recorded, to_running) =
        interrupt(&sb, &*adapter, &job_id, &spot, &standby_id).await;
    println!(
        "MEASURED: interruption (rebalance recommendation) -> standby started and recorded in {} ms; \
         -> standby running in {} ms (cloudsim provisioning 10 s simulated at time scale {TIME_SCALE}); \
         detail: {}",
        recorded.as_millis(),
        to_running.as_millis(),
        active.detail
    );
    assert_eq!(active.state, LaunchState::Running);
    assert_eq!(active.instance_id, standby_id, "the standby serves");
    assert_eq!(active.market, "on_demand");
    assert!(
        active.detail.contains("event=rebalance_recommendation"),
        "switched on the event from the intake, not the safety net: {}",
        active.detail
    );
    assert!(
        active.detail.contains(&format!("interrupted={spot}")),
        "{}",
        active.detail
    );
    assert!(
        recorded < Duration::from_secs(10),
        "the switch took {recorded:?}"
    );

    // 3. a replacement spot instance runs; the interrupted one is terminated
    let replaced = wait_detail(&sb, &job_id, Duration::from_secs(60), "replacement running").await;
    let replacement = replaced.instance_id.clone();
    assert!(!replacement.is_empty() && replacement != spot && replacement != standby_id);
    assert_eq!(replaced.market, "spot");
    let r = adapter
        .describe(&[InstanceId::new(&replacement).unwrap()])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(r.state, InstanceState::Running);
    assert_eq!(r.market, Market::Spot);
    assert_eq!(
        r.client_token.as_deref(),
        Some(format!("{job_id}-r1").as_str())
    );
    wait_gone(&*adapter, &spot, Duration::from_secs(30)).await;
    assert_eq!(
        instance_state(&*adapter, &standby_id).await,
        InstanceState::Running,
        "the standby serves during the cooldown"
    );

    // 4. restart the manager: the state comes back from launch_events
    first.trigger();
    task.await.unwrap().unwrap();
    let second = Shutdown::new();
    let task = tokio::spawn(standby_manager(&sb, settings).run(sb.kafka.clone(), second.clone()));
    let stopped = wait_detail(&sb, &job_id, Duration::from_secs(60), "standby stopped").await;
    assert!(
        stopped.at >= replaced.at + u32::try_from(cooldown.as_secs()).unwrap(),
        "stopped at {} before the cooldown after {}",
        stopped.at,
        replaced.at
    );
    assert_eq!(stopped.instance_id, replacement, "the replacement serves");
    wait_stopping(&*adapter, &standby_id).await;
    // exactly one switch, one replacement
    let events = events_of(&sb, &job_id).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.detail.starts_with("standby active"))
            .count(),
        1,
        "{events:#?}"
    );
    // the job ends (as a cancel that knows only the serving instance would leave it): the
    // standby and the replacement are terminated too
    let last = events_of(&sb, &job_id).await.pop().unwrap();
    Store::new(sb.client())
        .append(&follow_up(
            &last,
            LaunchState::Cancelled,
            "cancel requested",
        ))
        .await
        .unwrap();
    for id in [&standby_id, &replacement] {
        wait_gone(&*adapter, id, Duration::from_secs(20)).await;
    }
    second.trigger();
    task.await.unwrap().unwrap();
    sb.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reaper_ends_launches_past_max_lifetime_or_idle_ttl_and_heartbeats_keep_one_alive() {
    let (sb, _intake) = sandbox().await;
    let adapter = sb.tenant_adapter("acme").await;
    let clouds: Arc<dyn TenantClouds> = sb.clouds();
    let shutdown = Shutdown::new();
    // the gateway, for Heartbeat
    let gw: GatewayConfig = sb.config();
    let running = capsight_gateway::start(gw, Arc::clone(&clouds), shutdown.clone())
        .await
        .unwrap();
    let mut launch = LaunchServiceClient::new(grpc::channel(running.addr));
    let acme_key = sb.key("acme");
    let beat = |job: &str| {
        grpc::authed(
            v1::HeartbeatRequest {
                job_id: job.to_owned(),
                note: "gpu util 97%".into(),
            },
            &acme_key,
        )
    };

    // old: running 100 s with a 60 s lifetime; idle: 3 s idle TTL, no heartbeat;
    // busy: 3 s idle TTL kept alive by heartbeats; fresh: nothing applies
    let (old, idle, busy, fresh) = (job(), job(), job(), job());
    let old_i = cloud::run_g5(&*adapter, &old, Market::OnDemand).await;
    let idle_i = cloud::run_g5(&*adapter, &idle, Market::OnDemand).await;
    let busy_i = cloud::run_g5(&*adapter, &busy, Market::OnDemand).await;
    let fresh_i = cloud::run_g5(&*adapter, &fresh, Market::OnDemand).await;
    for (job_id, instance, running_for, limits) in [
        (&old, &old_i, Duration::from_secs(100), (60, 0)),
        (&idle, &idle_i, Duration::ZERO, (0, 3)),
        (&busy, &busy_i, Duration::ZERO, (0, 3)),
        (&fresh, &fresh_i, Duration::ZERO, (3600, 0)),
    ] {
        record_running(
            &sb,
            job_id,
            instance,
            Market::OnDemand,
            running_for,
            limits,
            false,
        )
        .await;
    }

    // heartbeat validation: unknown / other tenant's job and a bad id are refused
    let err = launch.heartbeat(beat("not-a-uuid")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = launch.heartbeat(beat(&job())).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let reaper = Reaper::new(
        Store::new(sb.client()),
        Arc::clone(&clouds),
        registry(&sb),
        LifecycleSettings {
            interval: Duration::from_millis(300),
            default_max_lifetime: Duration::ZERO,
        },
    );
    // busy beats every 500 ms from before the reaper starts until `quiet` fires
    let quiet = Shutdown::new();
    let beats = {
        let mut client = launch.clone();
        let key = acme_key.clone();
        let busy = busy.clone();
        let quiet = quiet.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            while !quiet.is_triggered() {
                let r = grpc::authed(
                    v1::HeartbeatRequest {
                        job_id: busy.clone(),
                        note: "gpu util 97%".into(),
                    },
                    &key,
                );
                let resp = client.heartbeat(r).await.unwrap().into_inner();
                assert_eq!(resp.state, v1::LaunchState::Running as i32);
                n += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let task = tokio::spawn(reaper.run(false, shutdown.clone()));

    let ended = wait_terminated(&sb, &old, Duration::from_secs(30)).await;
    assert!(ended.detail.contains("max lifetime"), "{}", ended.detail);
    wait_gone(&*adapter, &old_i, Duration::from_secs(10)).await;

    // idle is reaped while busy, well past its own 3 s TTL, keeps beating
    let idle_end = wait_terminated(&sb, &idle, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    quiet.trigger();
    let sent = beats.await.unwrap();
    // a heartbeat every 0.5 s over more than 3 idle TTLs: a handful at least, however loaded
    // the machine (what matters is asserted below: busy was never reaped)
    assert!(sent >= 4, "{sent} heartbeats sent");
    let _ = wait_terminated(&sb, &idle, Duration::from_secs(1)).await;
    assert!(
        idle_end.detail.contains("idle TTL 3s"),
        "{}",
        idle_end.detail
    );
    assert!(
        events_of(&sb, &busy)
            .await
            .iter()
            .all(|e| e.state == LaunchState::Running || e.seq < 2),
        "heartbeats keep busy running"
    );
    let n: u64 = sb
        .client()
        .query("SELECT count() FROM launch_activity WHERE tenant = 'acme' AND job_id = ?")
        .bind(&busy)
        .fetch_one()
        .await
        .unwrap();
    assert!(n >= 10, "{n} heartbeats recorded");
    assert_eq!(
        instance_state(&*adapter, &busy_i).await,
        InstanceState::Running
    );

    // heartbeats stop: busy goes idle and ends
    let busy_end = wait_terminated(&sb, &busy, Duration::from_secs(15)).await;
    assert!(busy_end.detail.contains("idle TTL"), "{}", busy_end.detail);
    wait_gone(&*adapter, &busy_i, Duration::from_secs(10)).await;
    // a finished launch takes no heartbeat
    let err = launch.heartbeat(beat(&busy)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // fresh is untouched
    assert!(
        events_of(&sb, &fresh)
            .await
            .iter()
            .all(|e| e.state != LaunchState::Terminated),
        "fresh ended too early"
    );
    assert_eq!(
        instance_state(&*adapter, &fresh_i).await,
        InstanceState::Running
    );
    shutdown.trigger();
    task.await.unwrap();
    let _ = running;
    sb.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gpu_hours_per_tenant_and_market_match_a_known_set_of_events() {
    let (sb, _intake) = sandbox().await;
    let client = sb.client();
    assert!(usage::sync_catalog(&client, &catalog()).await.unwrap() > 10);
    // month boundary in the server's time zone
    let boundary: u32 = client
        .query("SELECT toUInt32(toDateTime(toStartOfMonth(now())))")
        .fetch_one()
        .await
        .unwrap();
    let now = u32::try_from(chrono::Utc::now().timestamp()).unwrap();
    let prev = boundary - 20 * 86_400;
    let h = 3600;
    let mut rows = Vec::new();
    let mut requests = Vec::new();
    let mut add =
        |tenant: &str, job: &str, count: u32, itype: &str, seq_states: &[(u32, &str, &str)]| {
            let key: CapacityKey = format!("aws/us-east-1//{itype}/spot").parse().unwrap();
            let request = LaunchRequestRow {
                created_ms: 0,
                image_id: "ami-x".into(),
                ..launches::request(
                    job,
                    tenant,
                    &key,
                    count,
                    chrono::DateTime::from_timestamp(i64::from(prev), 0).unwrap(),
                )
            };
            for (i, (at, state, market)) in seq_states.iter().enumerate() {
                rows.push(LaunchEventRow {
                    at: *at,
                    at_ms: 0,
                    market: (*market).into(),
                    instance_id: "i-x".into(),
                    attempt: 1,
                    ..launches::event(
                        &request,
                        u32::try_from(i).unwrap(),
                        LaunchState::parse("state", state).unwrap(),
                    )
                });
            }
            requests.push(request);
        };
    // t1: 2 x p5.48xlarge (8 GPUs) on spot for 1 h = 16; g5.xlarge on-demand 30 min = 0.5
    add(
        "t1",
        "x",
        2,
        "p5.48xlarge",
        &[
            (prev - 60, "queued", "spot"),
            (prev, "running", "spot"),
            (prev + h, "terminated", "spot"),
        ],
    );
    add(
        "t1",
        "y",
        1,
        "g5.xlarge",
        &[
            (prev, "queued", "on_demand"),
            (prev + 60, "running", "on_demand"),
            (prev + 60 + h / 2, "cancelled", "on_demand"),
        ],
    );
    // t2: p5.48xlarge spot 1 h, warm standby on-demand 30 min, replacement spot 1 h
    add(
        "t2",
        "z",
        1,
        "p5.48xlarge",
        &[
            (prev, "running", "spot"),
            (prev + h, "running", "on_demand"),
            (prev + h + h / 2, "running", "spot"),
            (prev + 2 * h + h / 2, "terminated", "spot"),
        ],
    );
    // t1: g5.xlarge on-demand across the month boundary: 1 h in each month
    add(
        "t1",
        "w",
        1,
        "g5.xlarge",
        &[
            (boundary - h, "running", "on_demand"),
            (boundary + h, "failed", "on_demand"),
        ],
    );
    // t1: still running g5.xlarge spot since (at most) 1 h ago
    let v_start = (now - h).max(boundary);
    add("t1", "v", 1, "g5.xlarge", &[(v_start, "running", "spot")]);
    // a replayed transition (same seq twice) is not counted twice
    rows.push(LaunchEventRow {
        at: prev + 5,
        ..rows[1].clone()
    });
    insert(&client, "launch_events", &rows).await;
    insert(&client, "launch_requests", &requests).await;

    // the documented monthly summary, verbatim from docs/analytics.md
    let blocks = documented_queries("analytics.md");
    let monthly_sql = blocks
        .iter()
        .find(|b| b.contains("FROM tenant_gpu_hours_monthly"))
        .expect("docs/analytics.md documents the monthly GPU-hours query");
    let per_launch_sql = blocks
        .iter()
        .find(|b| b.contains("FROM launch_gpu_segments"))
        .expect("docs/analytics.md documents the per-launch segments");
    let out = tsv(&client, monthly_sql).await;
    println!("{out}");
    let this_month = chrono::DateTime::from_timestamp(i64::from(boundary) + 43_200, 0).unwrap();
    let last_month = chrono::DateTime::from_timestamp(i64::from(prev), 0).unwrap();
    let row = |month: chrono::DateTime<chrono::Utc>, tenant: &str, market: &str| -> Vec<String> {
        let m = month.format("%Y-%m-01").to_string();
        out.lines()
            .map(|l| l.split('\t').map(str::to_owned).collect::<Vec<_>>())
            .find(|c| c[0] == m && c[1] == tenant && c[2] == market)
            .unwrap_or_else(|| panic!("no row {m} {tenant} {market} in\n{out}"))
    };
    let hours = |r: &[String]| r[3].parse::<f64>().unwrap();
    assert_eq!(hours(&row(last_month, "t1", "spot")), 16.0);
    assert_eq!(hours(&row(last_month, "t1", "on_demand")), 1.5);
    assert_eq!(hours(&row(last_month, "t2", "spot")), 16.0);
    assert_eq!(hours(&row(last_month, "t2", "on_demand")), 4.0);
    assert_eq!(hours(&row(this_month, "t1", "on_demand")), 1.0);
    let v = row(this_month, "t1", "spot");
    let expected_v = f64::from(now - v_start) / 3600.0;
    assert!(
        (hours(&v) - expected_v).abs() < 0.05,
        "{v:?} vs {expected_v}"
    );
    assert_eq!(v[5], "1", "still running");
    assert_eq!(row(last_month, "t2", "spot")[4], "1", "one launch");

    // the library function reads the same view
    let from = last_month.date_naive().with_day(1).unwrap();
    let t2 = usage::monthly(&client, from, Some("t2")).await.unwrap();
    assert_eq!(t2.len(), 2, "{t2:?}");
    assert!(t2.iter().all(|u| u.tenant == "t2"));
    let od = t2.iter().find(|u| u.market == "on_demand").unwrap();
    assert!((od.gpu_hours - 4.0).abs() < 1e-9);

    let segments = tsv(&client, per_launch_sql).await;
    // the last 31 days: w (across the month boundary) and the still-running v
    assert!(
        segments.contains("\tw\ton_demand\t") && segments.contains("\tv\tspot\t"),
        "{segments}"
    );
    sb.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spot_job_with_warm_standby_through_the_real_binary() {
    let (sb, _intake) = sandbox().await;
    let adapter = sb.tenant_adapter("acme").await;
    // the launcher at test pace (the sandbox's config) with a quick reaper and standby
    let child = sb.spawn(
        "launcher",
        sb.command(bin("capsight-launcher"))
            .envs(sb.sim().aws_env(OPERATOR))
            .env("CAPSIGHT_LAUNCHER__LIFECYCLE__INTERVAL", "500ms")
            .env("CAPSIGHT_LAUNCHER__STANDBY__COOLDOWN", "3s")
            .env("CAPSIGHT_LAUNCHER__STANDBY__INTERVAL", "200ms"),
    );

    // the job as the gateway's Launch records and publishes it: spot, warm standby, 1 h lifetime
    let mut job = launches::job("acme", "aws/us-east-1/use1-az1/g5.xlarge/spot", 1, 0);
    job.constraints = Some(v1::Constraints::default());
    job.warm_standby = true;
    job.max_lifetime_seconds = 3600;
    let job_id = job.job_id.clone();
    let request = job_request(&job, chrono::Utc::now());
    Store::new(sb.client())
        .record_launch(&request, &queued(&request))
        .await
        .unwrap();
    let config: LauncherConfig = sb.config();
    JobPublisher::new(config.amqp, Duration::from_secs(10))
        .publish(&job)
        .await
        .unwrap();

    let running = wait_event(&sb, &job_id, Duration::from_secs(90), |e| {
        e.state == LaunchState::Running
    })
    .await;
    let spot = running.instance_id.clone();
    assert_eq!(running.market, "spot");
    let (_, standby_id) = stopped_standby(&sb, &*adapter, &job_id).await;

    let (active, recorded, to_running) =
        interrupt(&sb, &*adapter, &job_id, &spot, &standby_id).await;
    println!(
        "MEASURED (binary): interruption -> standby started and recorded in {} ms, running in {} ms; {}",
        recorded.as_millis(),
        to_running.as_millis(),
        active.detail
    );
    assert_eq!(active.instance_id, standby_id);
    assert!(
        active.detail.contains("event=rebalance_recommendation"),
        "{}",
        active.detail
    );
    let replaced = wait_detail(&sb, &job_id, Duration::from_secs(60), "replacement running").await;
    let stopped = wait_detail(&sb, &job_id, Duration::from_secs(60), "standby stopped").await;
    assert!(stopped.at >= replaced.at + 3);
    assert_eq!(stopped.instance_id, replaced.instance_id);
    wait_stopping(&*adapter, &standby_id).await;

    child.kill();
    sb.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missed_interruption_is_caught_when_the_spot_instance_is_gone() {
    let (sb, _intake) = sandbox().await;
    let adapter = sb.tenant_adapter("acme").await;
    let armed = armed_spot_job(&sb, &*adapter, "missed").await;
    let (job_id, spot, standby_id) = (&armed.job_id, armed.spot.as_str(), &armed.standby_id);
    // the spot instance disappears without any interruption event (a terminate emits none)
    adapter
        .terminate(&[InstanceId::new(spot).unwrap()])
        .await
        .unwrap();
    let active = wait_detail(&sb, job_id, Duration::from_secs(20), "standby active").await;
    assert!(
        active.detail.contains("event=instance_gone"),
        "{}",
        active.detail
    );
    assert_eq!(&active.instance_id, standby_id);
    wait_instance(
        &*adapter,
        standby_id,
        &[InstanceState::Running],
        Duration::from_secs(30),
    )
    .await;
    armed.stop().await;
    sb.cleanup().await;
}

/// A running spot job of acme's with its stopped standby, watched by a standby manager that
/// consumes as the sandbox's group with `suffix`.
struct Armed {
    job_id: String,
    spot: String,
    standby_id: String,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<Result<(), capsight_launcher::standby::StandbyError>>,
}

impl Armed {
    /// Stops the standby manager; it must end cleanly.
    async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.unwrap().unwrap();
    }
}

async fn armed_spot_job(sb: &Sandbox, adapter: &dyn CloudAdapter, suffix: &str) -> Armed {
    let (job_id, spot) =
        running_launch(sb, adapter, Market::Spot, Duration::ZERO, (0, 0), true).await;
    let shutdown = Shutdown::new();
    let task = tokio::spawn(
        standby_manager(sb, quick_sweep(sb, suffix)).run(sb.kafka.clone(), shutdown.clone()),
    );
    let (_, standby_id) = stopped_standby(sb, adapter, &job_id).await;
    Armed {
        job_id,
        spot,
        standby_id,
        shutdown,
        task,
    }
}

/// Posts one EventBridge event to the intake with `key`: the HTTP status.
async fn post_event(intake: &str, key: &str, event: &serde_json::Value) -> u16 {
    let addr = intake
        .trim_start_matches("http://")
        .trim_end_matches("/v1/events")
        .parse()
        .unwrap();
    let auth = format!("Bearer {key}");
    let (status, body) = capsight_testkit::cloud::http(
        addr,
        "POST",
        "/v1/events",
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        &event.to_string(),
    )
    .await;
    assert!(status < 500, "{status} {body}");
    status
}

/// Attack with one tenant key: globex, knowing an instance id of acme's spot job, "teaches" the
/// intake that instance with a forged CloudTrail RunInstances and then sends an interruption
/// warning for it. The intake accepts both (they are globex's own claims), but the launcher must
/// not act on them: only acme's own event (cloudsim's, through acme's webhook) switches acme's
/// job to its standby. Instance events of one partition are handled in order, so when acme's
/// real rebalance recommendation has switched the job, globex's earlier warning was refused.
/// An event under acme's own key but from another AWS account than acme's role is refused (403).
#[tokio::test(flavor = "multi_thread")]
async fn another_tenants_forged_events_cannot_move_a_tenants_instances() {
    let (sb, _intake, intake) = sandbox_with_intake().await;
    let adapter = sb.tenant_adapter("acme").await;
    let armed = armed_spot_job(&sb, &*adapter, "forged").await;
    let (job_id, spot, standby_id) = (&armed.job_id, armed.spot.as_str(), &armed.standby_id);

    let now = chrono::Utc::now().to_rfc3339();
    let globex = sb.key("globex");
    let forged_launch = serde_json::json!({"version": "0", "id": format!("forge-{job_id}"),
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2",
        "account": "222222222222", "time": now, "region": "us-east-1", "resources": [],
        "detail": {"eventName": "RunInstances", "awsRegion": "us-east-1",
            "requestParameters": {"instanceType": "g5.xlarge",
                "instanceMarketOptions": {"marketType": "spot"}},
            "responseElements": {"instancesSet": {"items": [{"instanceId": spot}]}}}});
    assert_eq!(post_event(&intake, &globex, &forged_launch).await, 202);
    let warning = serde_json::json!({"version": "0", "id": format!("warn-{job_id}"),
        "detail-type": "EC2 Spot Instance Interruption Warning", "source": "aws.ec2",
        "account": "222222222222", "time": now, "region": "us-east-1",
        "resources": [format!("arn:aws:ec2:us-east-1:222222222222:instance/{spot}")],
        "detail": {"instance-id": spot, "instance-action": "terminate"}});
    assert_eq!(post_event(&intake, &globex, &warning).await, 202);
    // acme's key with an event of another AWS account than acme's registered role's: refused
    let mut foreign = warning.clone();
    foreign["id"] = serde_json::json!(format!("foreign-{job_id}"));
    foreign["account"] = serde_json::json!("999999999999");
    assert_eq!(post_event(&intake, &sb.key("acme"), &foreign).await, 403);

    // acme's own interruption, delivered by the cloud through acme's webhook, after globex's
    let (active, _, _) = interrupt(&sb, &*adapter, job_id, spot, standby_id).await;
    assert!(
        active.detail.contains("event=rebalance_recommendation"),
        "switched on globex's forged warning: {}",
        active.detail
    );
    let switches = events_of(&sb, job_id)
        .await
        .into_iter()
        .filter(|e| e.detail.starts_with("standby active"))
        .count();
    assert_eq!(switches, 1);
    armed.stop().await;
    sb.cleanup().await;
}
