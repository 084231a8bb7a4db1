//! The prober's acceptance tests on the real stack (tansu Kafka, ClickHouse) and cloudsim:
//! signals and audit rows checked field by field, the budget under concurrency and across a
//! restart, the sweeper after a `kill -9`, and a broker `kill -9` in the middle of a run.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
    sync::Arc,
    time::Duration,
};

use capsight_clickhouse::rows::{PreflightLogRow, ProbeAuditRow, split_time};
use capsight_cloud::{CloudAdapter, InstanceState, aws::AwsAdapter};
use capsight_cloudsim::scenario::Scenario;
use capsight_probe::{
    PROBE_AT_TAG, PROBE_TAG, Planned, ProbeSettings, Prober, audit::Audit, budget::Budget,
};
use capsight_proto::codec;
use capsight_proto::domain::{
    CapacityKey, ErrorClass, LaunchOutcome, Payload, ProbeMethod, SignalId, SignalSource,
};
use capsight_publisher::{Publisher, PublisherSettings};
use capsight_testkit::{
    Sandbox,
    broker::PrivateBroker,
    clickhouse::insert,
    cloud::{Sim, catalog, quick_retries},
    fixtures,
    kafka::{consume_all, wait_for_broker},
    process::succeed,
    wait::poll,
};

const KEY_ID: &str = "AKIATESTPROBE";
const ACCOUNT: &str = "111111111111";
const P5_AZ1: &str = "aws/us-east-1/use1-az1/p5.48xlarge/on_demand";

/// us-east-1 with two zones: p5 has stock in az1 and none in az4; the G family has `g_quota`
/// vCPUs of quota (`L-DB2E81BA`).
fn scenario(g_quota: u32) -> Scenario {
    let mut scenario = fixtures::scenario("probe");
    for account in &mut scenario.accounts {
        account
            .quotas
            .insert("L-DB2E81BA".into(), f64::from(g_quota));
    }
    scenario
}

/// The test's topic (2 partitions), migrated database and cloudsim (frozen clock).
fn sandbox(test: &str, g_quota: u32) -> capsight_testkit::sandbox::Builder {
    Sandbox::builder(test)
        .signals(2)
        .database()
        .cloudsim(Sim::builder(scenario(g_quota)))
}

/// The operator's adapter, as the prober builds it.
async fn adapter(sandbox: &Sandbox) -> AwsAdapter {
    sandbox.sim().adapter(KEY_ID, quick_retries(3)).await
}

/// The `capsight-probe` binary configured for the sandbox, plus `extra` variables.
fn probe_command(sandbox: &Sandbox, extra: &[(&str, &str)]) -> Command {
    let mut c = sandbox.command(env!("CARGO_BIN_EXE_capsight-probe"));
    c.envs(sandbox.sim().aws_env(KEY_ID))
        .env("CAPSIGHT_CLOUD__MAX_ATTEMPTS", "1")
        .env("CAPSIGHT_PROBE__INSTANCE", "probe-test")
        .env("CAPSIGHT_PROBE__REGIONS", "[\"us-east-1\"]")
        .env("CAPSIGHT_PROBE__MAX_PER_PASS", "10")
        .env("CAPSIGHT_PROBE__MAX_CONCURRENT", "4")
        .envs(extra.iter().copied());
    c
}

/// Every audit row, oldest first.
async fn audit_rows(sandbox: &Sandbox) -> Vec<ProbeAuditRow> {
    sandbox
        .client()
        .query("SELECT ?fields FROM probe_audit ORDER BY at, at_ms, probe_id, phase DESC")
        .fetch_all::<ProbeAuditRow>()
        .await
        .unwrap()
}

/// The on-demand price of `instance_type` per hour.
fn price(instance_type: &str) -> f64 {
    catalog()
        .iter()
        .find(|t| t.instance_type.as_str() == instance_type)
        .unwrap()
        .on_demand_usd_per_hour
}

/// Tags of a map, for assertions.
fn tag<'a>(tags: &'a BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    tags.get(k).map(String::as_str)
}

fn key(s: &str) -> CapacityKey {
    s.parse().unwrap()
}

fn done(rows: &[ProbeAuditRow]) -> Vec<&ProbeAuditRow> {
    rows.iter().filter(|r| r.phase == "done").collect()
}

/// `n` preflights of p5 in `zone` just now, answered `decision`.
async fn preflight(sandbox: &Sandbox, zone: &str, n: usize, decision: &str) {
    let (at, at_ms) = split_time(chrono::Utc::now());
    let rows: Vec<PreflightLogRow> = (0..n)
        .map(|i| PreflightLogRow {
            preflight_id: format!("pf-{i}"),
            tenant: "acme".into(),
            at,
            at_ms,
            provider: "aws".into(),
            region: "us-east-1".into(),
            zone_id: zone.into(),
            instance_type: "p5.48xlarge".into(),
            market: "on_demand".into(),
            count: 1,
            decision: decision.into(),
            permission: "passed".into(),
            quota: "passed".into(),
            capacity: "passed".into(),
            quota_headroom: 6,
            score: 80,
            alternatives: 0,
            checks: "[]".into(),
        })
        .collect();
    insert(&sandbox.client(), "preflight_log", &rows).await;
}

/// (a) `capsight-probe --once`: a reservation that gets capacity, one that hits a stockout
/// (with the zone hint), a key skipped for quota 0; signals and audit rows field by field.
#[tokio::test(flavor = "multi_thread")]
async fn once_probes_publish_classified_signals_and_audit_every_probe() {
    let sb = sandbox("probe_once", 0).start().await;
    let sim = sb.sim();
    // tenants asked 5 times about p5 in az4 today: it is probed first
    preflight(&sb, "use1-az4", 5, "can_launch").await;
    let started = chrono::Utc::now();
    succeed(
        probe_command(
            &sb,
            &[(
                "CAPSIGHT_PROBE__INSTANCE_TYPES",
                "[\"p5.48xlarge\", \"g5.xlarge\"]",
            )],
        )
        .arg("--once"),
    );
    let finished = chrono::Utc::now();

    let rows = audit_rows(&sb).await;
    let done = done(&rows);
    assert_eq!(done.len(), 3, "{rows:#?}");
    let by_key = |zone: &str, t: &str| {
        *done
            .iter()
            .find(|r| r.zone_id == zone && r.instance_type == t)
            .unwrap_or_else(|| panic!("no audit row for {zone}/{t}: {rows:#?}"))
    };
    let ok = by_key("use1-az1", "p5.48xlarge");
    let out_of_stock = by_key("use1-az4", "p5.48xlarge");
    let no_quota = by_key("use1-az1", "g5.xlarge");
    let p5_price = price("p5.48xlarge");
    let estimate = p5_price * 30.0 / 3600.0;

    // who / what / why / cost / outcome of each probe
    for r in [ok, out_of_stock, no_quota] {
        assert_eq!(r.prober, "probe-test");
        assert_eq!(r.account, ACCOUNT);
        assert_eq!(
            (r.provider.as_str(), r.region.as_str()),
            ("aws", "us-east-1")
        );
        assert_eq!(r.market, "on_demand");
        assert!(r.probe_id.starts_with("probe-"), "{r:?}");
    }
    assert_eq!(out_of_stock.priority, 0, "demanded key first");
    assert!((out_of_stock.demand - 5.0).abs() < 1e-9, "{out_of_stock:?}");
    assert_eq!(ok.demand, 0.0);
    assert_eq!(ok.method, "capacity_reservation");
    assert_eq!(ok.outcome, "succeeded");
    assert_eq!(ok.error_class, "none");
    assert_eq!(ok.error_code, "");
    assert!((ok.estimated_usd - estimate).abs() < 1e-9, "{ok:?}");
    assert!(
        ok.actual_usd > 0.0 && ok.actual_usd < ok.estimated_usd,
        "{ok:?}"
    );
    assert!(ok.resources.starts_with("cr-"), "{ok:?}");
    assert_eq!(ok.reason, "due");
    assert_eq!(out_of_stock.method, "capacity_reservation");
    assert_eq!(out_of_stock.outcome, "failed");
    assert_eq!(out_of_stock.error_class, "capacity");
    assert_eq!(out_of_stock.error_code, "InsufficientInstanceCapacity");
    assert_eq!(
        out_of_stock.actual_usd, 0.0,
        "a refused reservation costs nothing"
    );
    assert_eq!(out_of_stock.resources, "");
    assert_eq!(no_quota.outcome, "skipped");
    assert_eq!(no_quota.method, "");
    assert_eq!(no_quota.estimated_usd, 0.0);
    assert!(no_quota.reason.contains("quota headroom 0"), "{no_quota:?}");
    // the two probes that ran reserved their estimate BEFORE calling the cloud
    for r in [ok, out_of_stock] {
        let reserved: Vec<_> = rows
            .iter()
            .filter(|x| x.probe_id == r.probe_id && x.phase == "reserved")
            .collect();
        assert_eq!(reserved.len(), 1, "{rows:#?}");
        assert!((reserved[0].estimated_usd - estimate).abs() < 1e-9);
        assert!((reserved[0].at, reserved[0].at_ms) <= (r.at, r.at_ms));
    }
    assert!(
        !rows
            .iter()
            .any(|x| x.probe_id == no_quota.probe_id && x.phase == "reserved")
    );
    // the reservation was cancelled: the stock is back
    assert_eq!(sim.stock(P5_AZ1).await, 2);
    let reservations = adapter(&sb)
        .await
        .describe_tagged_reservations(PROBE_TAG)
        .await
        .unwrap();
    assert_eq!(reservations.len(), 1, "{reservations:?}");
    assert_eq!(reservations[0].id, ok.resources);
    assert_eq!(reservations[0].state, "cancelled");
    assert_eq!(
        tag(&reservations[0].tags, PROBE_TAG),
        Some(ok.probe_id.as_str())
    );
    assert!(tag(&reservations[0].tags, PROBE_AT_TAG).is_some());

    // the signals, field by field
    let signals = consume_all(&sb.kafka, &sb.kafka.topics.signals).await;
    assert_eq!(signals.len(), 2, "{signals:#?}");
    for (row, want_key) in [
        (ok, "aws/us-east-1/use1-az1/p5.48xlarge/on_demand"),
        (out_of_stock, "aws/us-east-1/use1-az4/p5.48xlarge/on_demand"),
    ] {
        let s = signals
            .iter()
            .find(|s| s.key.to_string() == want_key)
            .unwrap();
        assert_eq!(
            s.id,
            SignalId::derived(SignalSource::Probe, &[&row.probe_id])
        );
        assert_eq!(s.source, SignalSource::Probe);
        assert_eq!(s.tenant, None);
        assert!(
            s.observed_at >= started && s.observed_at <= finished,
            "{s:?}"
        );
        let Payload::LaunchAttempt(a) = &s.payload else {
            panic!("not a launch attempt: {s:?}")
        };
        assert_eq!(a.method, ProbeMethod::CapacityReservation);
        assert_eq!(a.count, 1);
        assert!(a.hinted_regions.is_empty());
        if row.outcome == "succeeded" {
            assert_eq!(a.outcome, LaunchOutcome::Succeeded);
            assert_eq!(a.error_class, ErrorClass::None);
            assert_eq!((a.error_code.as_str(), a.error_message.as_str()), ("", ""));
            assert_eq!(a.provisioning_ms, Some(row.provisioning_ms));
            assert!(a.hinted_zones.is_empty());
        } else {
            assert_eq!(a.outcome, LaunchOutcome::Failed);
            assert_eq!(a.error_class, ErrorClass::Capacity);
            assert_eq!(a.error_code, "InsufficientInstanceCapacity");
            assert!(a.error_message.contains("us-east-1a"), "{a:?}");
            assert_eq!(a.provisioning_ms, None);
            assert_eq!(
                a.hinted_zones
                    .iter()
                    .map(|z| z.as_str())
                    .collect::<Vec<_>>(),
                ["use1-az1"],
                "the stockout names the zone with stock, as an AZ ID"
            );
        }
    }
    sb.cleanup().await;
}

/// Without permission to reserve, the reservation probe falls back to a launch probe (its own
/// budget reservation and audit row), and the launched instance is terminated at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_reservation_denied_falls_back_to_a_launch_probe() {
    let sb = sandbox("probe_fallback", 0).start().await;
    succeed(
        probe_command(
            &sb,
            &[
                ("AWS_ACCESS_KEY_ID", "AKIATESTNORESERVE"),
                (
                    "CAPSIGHT_PROBE__KEYS",
                    "[\"aws/us-east-1/use1-az1/p5.48xlarge/on_demand\"]",
                ),
                ("CAPSIGHT_PROBE__INSTANCE_TYPES", "[\"g6e.xlarge\"]"),
            ],
        )
        .arg("--once"),
    );
    let rows = audit_rows(&sb).await;
    let p5_price = price("p5.48xlarge");
    let (reservation, launch) = (p5_price * 30.0 / 3600.0, p5_price * 60.0 / 3600.0);
    let reserved: Vec<_> = rows.iter().filter(|r| r.phase == "reserved").collect();
    assert_eq!(
        reserved
            .iter()
            .map(|r| r.method.as_str())
            .collect::<Vec<_>>(),
        ["capacity_reservation", "launch"],
        "{rows:#?}"
    );
    assert!(reserved.iter().all(|r| r.probe_id == reserved[0].probe_id));
    let d = done(&rows);
    assert_eq!(d.len(), 1, "{rows:#?}");
    let d = d[0];
    assert_eq!(d.method, "launch");
    assert_eq!(d.outcome, "succeeded");
    assert!(
        d.reason
            .contains("fallback to launch: reservation UnauthorizedOperation"),
        "{d:?}"
    );
    assert!(
        (d.estimated_usd - (reservation + launch)).abs() < 1e-9,
        "{d:?}"
    );
    assert!(
        (d.actual_usd - launch).abs() < 1e-9,
        "billed one minute: {d:?}"
    );
    assert!(d.resources.starts_with("i-"), "{d:?}");
    let instances = adapter(&sb).await.describe_tagged(PROBE_TAG).await.unwrap();
    assert_eq!(instances.len(), 1, "{instances:?}");
    assert_eq!(instances[0].id.to_string(), d.resources);
    assert_eq!(
        instances[0].client_token.as_deref(),
        Some(d.probe_id.as_str())
    );
    assert!(
        matches!(
            instances[0].state,
            InstanceState::ShuttingDown | InstanceState::Terminated
        ),
        "{instances:?}"
    );
    let signals = consume_all(&sb.kafka, &sb.kafka.topics.signals).await;
    assert_eq!(signals.len(), 1, "{signals:#?}");
    assert_eq!(
        signals[0].id,
        SignalId::derived(SignalSource::Probe, &[&d.probe_id])
    );
    let Payload::LaunchAttempt(a) = &signals[0].payload else {
        panic!("{signals:?}")
    };
    assert_eq!(a.method, ProbeMethod::Launch);
    assert_eq!(a.outcome, LaunchOutcome::Succeeded);
    assert_eq!(a.provisioning_ms, Some(d.provisioning_ms));
    sb.cleanup().await;
}

fn settings(instance: &str) -> ProbeSettings {
    #[derive(serde::Deserialize)]
    struct Conf {
        probe: ProbeSettings,
    }
    let mut s = capsight_runtime::config::load_defaults::<Conf>()
        .unwrap()
        .probe;
    s.instance = instance.into();
    s.regions = vec!["us-east-1".into()];
    s
}

async fn prober(
    sb: &Sandbox,
    publisher: &Publisher,
    audit: &Audit,
    instance: &str,
    limit: f64,
) -> Arc<Prober> {
    let now = chrono::Utc::now();
    let spent = audit.spent_on(instance, now.date_naive()).await.unwrap();
    let adapter: Arc<dyn CloudAdapter> = Arc::new(adapter(sb).await);
    Arc::new(Prober::new(
        vec![adapter],
        catalog(),
        settings(instance),
        publisher.clone(),
        audit.clone(),
        Budget::with_spent(limit, spent, now),
        ACCOUNT.into(),
    ))
}

/// Runs `n` probes of `key` at once; returns how many reached the cloud.
async fn concurrently(p: &Arc<Prober>, key: &CapacityKey, n: usize) -> usize {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (p, key) = (Arc::clone(p), key.clone());
            tokio::spawn(async move {
                p.probe(&Planned {
                    key,
                    priority: u32::try_from(i).unwrap(),
                    demand: 0.0,
                })
                .await
            })
        })
        .collect();
    let mut ran = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if r.audit.outcome != "skipped" {
            assert_eq!(r.audit.outcome, "succeeded", "{:?}", r.audit);
            ran += 1;
        } else {
            assert!(r.audit.reason.contains("budget exhausted"), "{:?}", r.audit);
        }
    }
    ran
}

/// (c) Ten concurrent launch probes against a budget for 3.5 of them: exactly 3 run and the
/// audited spend stays under the budget; a restarted prober recovers that spend (and the
/// estimate of a probe killed mid-flight) and runs only what is left.
#[tokio::test(flavor = "multi_thread")]
async fn budget_holds_under_concurrent_probes_and_across_restarts() {
    let sb = sandbox("probe_budget", 1000).start().await;
    let audit = Audit::new(&sb.clickhouse).unwrap();
    let publisher = Publisher::new(&sb.kafka, &PublisherSettings::default(), "test").unwrap();
    // region-level on-demand key: a launch probe, billed exactly the 60 s minimum
    let k = key("aws/us-east-1//g5.xlarge/on_demand");
    let one = price("g5.xlarge") * 60.0 / 3600.0;
    let limit = 3.5 * one;
    let today = chrono::Utc::now().date_naive();

    let first = prober(&sb, &publisher, &audit, "budget-a", limit).await;
    assert_eq!(concurrently(&first, &k, 10).await, 3);
    let rows = audit_rows(&sb).await;
    let spent: f64 = done(&rows).iter().map(|r| r.actual_usd).sum();
    assert!(spent <= limit + 1e-12, "{spent} > {limit}");
    assert!((spent - 3.0 * one).abs() < 1e-9);
    assert_eq!(done(&rows).len(), 10);
    assert_eq!(rows.iter().filter(|r| r.phase == "reserved").count(), 3);
    assert!((audit.spent_on("budget-a", today).await.unwrap() - spent).abs() < 1e-9);
    // every probe instance is gone
    let left: Vec<_> = adapter(&sb)
        .await
        .describe_tagged(PROBE_TAG)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| matches!(i.state, InstanceState::Pending | InstanceState::Running))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // restart: the same prober recovers 3 probes' spend; 0.5 of a probe is left
    let restarted = prober(&sb, &publisher, &audit, "budget-a", limit).await;
    assert_eq!(concurrently(&restarted, &k, 10).await, 0);

    // a prober killed after reserving 2 probes (reserved rows, no done rows) restarts: only 1
    // more fits
    for i in 0..2 {
        let mut row = done(&rows)[0].clone();
        row.probe_id = format!("probe-killed-{i}");
        row.prober = "budget-b".into();
        row.phase = "reserved".into();
        row.estimated_usd = one;
        row.actual_usd = 0.0;
        audit.write(&row).await.unwrap();
    }
    assert!((audit.spent_on("budget-b", today).await.unwrap() - 2.0 * one).abs() < 1e-9);
    let killed = prober(&sb, &publisher, &audit, "budget-b", limit).await;
    assert_eq!(concurrently(&killed, &k, 10).await, 1);
    assert!(audit.spent_on("budget-b", today).await.unwrap() <= limit + 1e-12);

    // the signals of exactly the 4 probes that ran are on the topic
    let signals = consume_all(&sb.kafka, &sb.kafka.topics.signals).await;
    assert_eq!(signals.len(), 4, "{signals:#?}");
    for s in &signals {
        let Payload::LaunchAttempt(a) = &s.payload else {
            panic!("{s:?}")
        };
        assert_eq!(a.method, ProbeMethod::Launch);
        assert_eq!(a.outcome, LaunchOutcome::Succeeded);
        assert_eq!(s.key, k);
    }
    sb.cleanup().await;
}

/// (d) The real binary is `kill -9`ed while its cleanup calls keep failing, leaving a probe
/// reservation and a probe instance; the restarted binary's start-up sweep removes both.
#[tokio::test(flavor = "multi_thread")]
async fn sweeper_removes_what_a_killed_prober_left_behind() {
    let sb = sandbox("probe_sweep", 1000).start().await;
    let sim = sb.sim();
    for action in ["CancelCapacityReservation", "TerminateInstances"] {
        sim.fault(action, "InternalError", 100_000).await;
    }
    // p5 in az1: reservation probe; g5 region-level: launch probe. Cleanup retries forever.
    let child = sb.spawn(
        "probe",
        probe_command(
            &sb,
            &[
                ("CAPSIGHT_PROBE__INSTANCE_TYPES", "[\"p5.48xlarge\"]"),
                (
                    "CAPSIGHT_PROBE__KEYS",
                    "[\"aws/us-east-1//g5.xlarge/on_demand\"]",
                ),
                ("CAPSIGHT_CLOUD__MAX_ATTEMPTS", "100000"),
                ("CAPSIGHT_CLOUD__RETRY_MIN_DELAY", "100ms"),
                ("CAPSIGHT_CLOUD__RETRY_MAX_DELAY", "200ms"),
            ],
        )
        .arg("--once"),
    );
    let adapter = adapter(&sb).await;
    let live_instances = |a: &capsight_cloud::aws::AwsAdapter| {
        let a = a.clone();
        async move {
            a.describe_tagged(PROBE_TAG)
                .await
                .unwrap()
                .into_iter()
                .filter(|i| {
                    matches!(
                        i.state,
                        InstanceState::Pending | InstanceState::Running | InstanceState::Stopped
                    )
                })
                .map(|i| i.id.to_string())
                .collect::<Vec<_>>()
        }
    };
    let active_reservations = |a: &capsight_cloud::aws::AwsAdapter| {
        let a = a.clone();
        async move {
            a.describe_tagged_reservations(PROBE_TAG)
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.state == "active")
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    let leftovers = poll(Duration::from_secs(60), || async {
        let i = live_instances(&adapter).await;
        let r = active_reservations(&adapter).await;
        (!i.is_empty() && !r.is_empty()).then_some((i, r))
    })
    .await
    .expect("the prober created a tagged instance and reservation");
    // kill -9 between create and cleanup
    child.kill();
    assert_eq!(leftovers.0.len(), 1, "{leftovers:?}");
    assert_eq!(leftovers.1.len(), 1, "{leftovers:?}");
    // the killed probes reserved budget but never finished
    let first_run = audit_rows(&sb).await;
    let unfinished: BTreeSet<(&str, &str)> = first_run
        .iter()
        .filter(|r| r.phase == "reserved")
        .filter(|r| {
            !first_run
                .iter()
                .any(|d| d.phase == "done" && d.probe_id == r.probe_id)
        })
        .map(|r| (r.zone_id.as_str(), r.instance_type.as_str()))
        .collect();
    // (the stockout probe of az4 has nothing to clean up; it may or may not have finished)
    assert!(
        unfinished.is_superset(&BTreeSet::from([
            ("", "g5.xlarge"),
            ("use1-az1", "p5.48xlarge")
        ])),
        "{first_run:#?}"
    );
    // the leftovers are still there after the kill
    assert_eq!(live_instances(&adapter).await, leftovers.0);
    assert_eq!(active_reservations(&adapter).await, leftovers.1);

    // the cloud recovers; the prober restarts (no budget left today: it only sweeps)
    sim.clear_faults().await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // older than sweep_after
    let out = succeed(
        probe_command(
            &sb,
            &[
                ("CAPSIGHT_PROBE__INSTANCE_TYPES", "[\"p5.48xlarge\"]"),
                ("CAPSIGHT_PROBE__SWEEP_AFTER", "1s"),
                ("CAPSIGHT_PROBE__DAILY_BUDGET_USD", "0"),
            ],
        )
        .arg("--once"),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(live_instances(&adapter).await.is_empty(), "{log}");
    assert!(active_reservations(&adapter).await.is_empty(), "{log}");
    let terminated: Vec<_> = adapter
        .describe_tagged(PROBE_TAG)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| leftovers.0.contains(&i.id.to_string()))
        .map(|i| i.state)
        .collect();
    assert!(
        terminated
            .iter()
            .all(|s| matches!(s, InstanceState::ShuttingDown | InstanceState::Terminated)),
        "{terminated:?}"
    );
    // the stock held by the reservation is back
    assert_eq!(sim.stock(P5_AZ1).await, 2);
    // the restarted prober ran nothing: its budget is 0
    let rows = audit_rows(&sb).await;
    let second_run: Vec<_> = rows
        .iter()
        .filter(|r| !first_run.iter().any(|f| f.probe_id == r.probe_id))
        .collect();
    assert!(!second_run.is_empty());
    assert!(
        second_run
            .iter()
            .all(|r| r.phase == "done" && r.outcome == "skipped" && r.reason.contains("budget")),
        "{second_run:#?}"
    );
    sb.cleanup().await;
}

/// (b) The real binary probes in a loop through a private broker that is `kill -9`ed and
/// restarted on the same data directory mid-run: every probe that ran has its signal on the
/// topic, once per id.
#[tokio::test(flavor = "multi_thread")]
async fn broker_restart_mid_run_loses_no_probe_signal() {
    let mut broker = PrivateBroker::start().await;
    let sb = sandbox("probe_restart", 1000)
        .brokers(&broker.brokers())
        .start()
        .await;
    let kafka = &sb.kafka;
    let mut probe = probe_command(
        &sb,
        &[
            ("CAPSIGHT_PROBE__INSTANCE_TYPES", "[\"p5.48xlarge\"]"),
            (
                "CAPSIGHT_PROBE__KEYS",
                "[\"aws/us-east-1//g5.xlarge/on_demand\"]",
            ),
            ("CAPSIGHT_PROBE__TICK", "200ms"),
            ("CAPSIGHT_PROBE__CADENCE__MIN_INTERVAL", "1s"),
            ("CAPSIGHT_PROBE__CADENCE__MAX_INTERVAL", "1s"),
            ("CAPSIGHT_PROBE__CADENCE__JITTER", "0"),
            ("CAPSIGHT_PROBE__CADENCE__BACKOFF_AFTER", "1000"),
            ("CAPSIGHT_PROBE__DAILY_BUDGET_USD", "1000000"),
            ("CAPSIGHT_PROBE__LIMITS__PER_API_PER_MINUTE", "6000"),
            ("CAPSIGHT_PROBE__LIMITS__PER_ACCOUNT_PER_MINUTE", "60000"),
        ],
    );
    let child = sb.spawn("probe", &mut probe);
    let ran = || async {
        audit_rows(&sb)
            .await
            .into_iter()
            .filter(|r| r.phase == "reserved")
            .count()
    };
    poll(Duration::from_secs(60), || async {
        (ran().await >= 4).then_some(())
    })
    .await
    .expect("probes run before the outage");
    broker.kill9();
    let at_kill = ran().await;
    // probes keep reaching the cloud while the broker is down; their signals wait
    poll(Duration::from_secs(60), || async {
        (ran().await > at_kill).then_some(())
    })
    .await
    .expect("probes run during the outage");
    broker.restart().await;
    wait_for_broker(kafka, Duration::from_secs(30)).await;
    let at_restart = ran().await;
    poll(Duration::from_secs(60), || async {
        (ran().await >= at_restart + 4).then_some(())
    })
    .await
    .expect("probes run after the restart");
    // graceful stop: probes in flight finish, the publisher flushes
    child.stop(Duration::from_secs(300)).await;

    let rows = audit_rows(&sb).await;
    let reserved: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.phase == "reserved")
        .map(|r| r.probe_id.clone())
        .collect();
    let finished: Vec<&ProbeAuditRow> = done(&rows)
        .into_iter()
        .filter(|r| r.outcome != "skipped")
        .collect();
    // every probe that reached the cloud finished (its publish was acknowledged)
    assert_eq!(
        finished
            .iter()
            .map(|r| r.probe_id.clone())
            .collect::<BTreeSet<_>>(),
        reserved
    );
    let want: BTreeSet<String> = finished
        .iter()
        .map(|r| SignalId::derived(SignalSource::Probe, &[&r.probe_id]).to_string())
        .collect();
    let got = consume_all(kafka, &kafka.topics.signals).await;
    let got_ids: Vec<String> = got.iter().map(|s| s.id.to_string()).collect();
    let distinct: BTreeSet<String> = got_ids.iter().cloned().collect();
    println!(
        "probes: {at_kill} before the kill, {} by the restart, {} in all; {} signals consumed",
        at_restart,
        want.len(),
        got_ids.len()
    );
    assert_eq!(distinct, want, "no signal lost");
    assert_eq!(got_ids.len(), want.len(), "no signal duplicated");
    assert!(want.len() >= at_restart + 4);
    sb.cleanup().await;
}

/// A key a tenant was just refused on is probed again at the recovery interval while its probes
/// fail, not at its (much longer) demand-driven one; a key nobody was refused on keeps its
/// interval.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_a_tenant_was_refused_on_is_probed_at_the_recovery_interval() {
    let sb = sandbox("probe_recovery", 0).start().await;
    // a tenant was refused on p5 in az4 (no stock there) a moment ago
    preflight(&sb, "use1-az4", 1, "retry_with_alternatives").await;
    let mut probe = probe_command(
        &sb,
        &[
            ("CAPSIGHT_PROBE__INSTANCE_TYPES", "[\"p5.48xlarge\"]"),
            ("CAPSIGHT_PROBE__TICK", "200ms"),
            ("CAPSIGHT_PROBE__DEMAND_REFRESH", "1s"),
            ("CAPSIGHT_PROBE__CADENCE__MIN_INTERVAL", "10m"),
            ("CAPSIGHT_PROBE__CADENCE__MAX_INTERVAL", "10m"),
            ("CAPSIGHT_PROBE__CADENCE__JITTER", "0"),
            ("CAPSIGHT_PROBE__CADENCE__RECOVERY_INTERVAL", "2s"),
            ("CAPSIGHT_PROBE__CADENCE__WAITING_WINDOW", "10m"),
            ("CAPSIGHT_PROBE__DAILY_BUDGET_USD", "1000000"),
        ],
    );
    let child = sb.spawn("probe", &mut probe);
    let probes_of = |rows: &[ProbeAuditRow], zone: &str| {
        done(rows)
            .iter()
            .filter(|r| r.zone_id == zone && r.instance_type == "p5.48xlarge")
            .count()
    };
    poll(Duration::from_secs(60), || async {
        (probes_of(&audit_rows(&sb).await, "use1-az4") >= 3).then_some(())
    })
    .await
    .expect("the waited-on key is probed again and again");
    child.stop(Duration::from_secs(60)).await;
    let rows = audit_rows(&sb).await;
    let waited: Vec<&ProbeAuditRow> = done(&rows)
        .into_iter()
        .filter(|r| r.zone_id == "use1-az4")
        .collect();
    assert!(waited.iter().all(|r| r.outcome == "failed"), "{waited:#?}");
    // consecutive probes of the waited-on key are about the recovery interval apart
    let times: Vec<i64> = waited
        .iter()
        .map(|r| i64::from(r.at) * 1000 + i64::from(r.at_ms))
        .collect();
    for gap in times.windows(2).map(|w| w[1] - w[0]) {
        assert!(
            (1_500..10_000).contains(&gap),
            "{gap} ms between probes: {times:?}"
        );
    }
    // the key that got capacity was probed once: its interval is ten minutes
    assert_eq!(probes_of(&rows, "use1-az1"), 1, "{rows:#?}");
    sb.cleanup().await;
}

/// A prober killed after the cloud answered but before the broker acknowledged the signal loses
/// no observation: the `done` row is the outbox, and the next start publishes it (same id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prober_killed_before_publishing_republishes_at_its_next_start() {
    let sb = sandbox("probe_outbox", 0).start().await;
    let kafka = &sb.kafka;
    let one_key = [
        ("CAPSIGHT_PROBE__INSTANCE_TYPES", "[\"p5.48xlarge\"]"),
        ("CAPSIGHT_PROBE__MAX_CONCURRENT", "1"),
        ("CAPSIGHT_PROBE__MAX_PER_PASS", "1"),
    ];
    let mut crashing = one_key.to_vec();
    crashing.push(("CAPSIGHT_PROBE__CRASH_AFTER", "done"));
    let out = probe_command(&sb, &crashing)
        .arg("--once")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the failpoint did not fire: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = audit_rows(&sb).await;
    let done_rows = done(&rows);
    assert_eq!(done_rows.len(), 1, "{rows:#?}");
    let probe_id = done_rows[0].probe_id.clone();
    let kept = codec::decode_signal(&hex::decode(&done_rows[0].signal).unwrap()).unwrap();
    assert_eq!(
        kept.id,
        SignalId::derived(SignalSource::Probe, &[&probe_id])
    );
    assert!(rows.iter().all(|r| r.phase != "published"), "{rows:#?}");
    assert!(consume_all(kafka, &kafka.topics.signals).await.is_empty());

    // the next start (no budget: it probes nothing new) publishes the kept observation
    let mut restart = one_key.to_vec();
    restart.push(("CAPSIGHT_PROBE__DAILY_BUDGET_USD", "0"));
    succeed(probe_command(&sb, &restart).arg("--once"));
    let signals = consume_all(&sb.kafka, &sb.kafka.topics.signals).await;
    assert_eq!(signals.len(), 1, "{signals:#?}");
    assert_eq!(signals[0], kept);
    let rows = audit_rows(&sb).await;
    let published: Vec<_> = rows.iter().filter(|r| r.phase == "published").collect();
    assert_eq!(published.len(), 1, "{rows:#?}");
    assert_eq!(published[0].probe_id, probe_id);

    // and only once: a third start has nothing left to send
    succeed(probe_command(&sb, &restart).arg("--once"));
    assert_eq!(consume_all(kafka, &kafka.topics.signals).await.len(), 1);
    sb.cleanup().await;
}
