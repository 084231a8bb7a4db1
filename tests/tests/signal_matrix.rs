//! The signal path's fault matrix, on private services (a Kafka broker, ClickHouse: never the
//! shared stack) with every real binary of the path against cloudsim (scenario
//! `signal-matrix`): the spot, quota and status collectors and the prober (`capsight-spot`,
//! `-quota`, `-status`, `-probe`) polling every 1-2 s, the reports intake (`capsight-reports`)
//! fed one tenant report every 250 ms by a client that retries a refused report unchanged (same
//! id, same `observed_at`), and the scorer (`capsight-scorer`) writing to ClickHouse. One fault
//! at a time: each process `kill -9`ed and restarted twice, the broker killed (`SIGKILL`) for
//! 4 s twice, ClickHouse killed for 5 s twice. Per fault it prints: signals published (distinct ids the
//! broker accepted while the row ran), reports accepted by the intake (202) and refused (client
//! retried), signals lost (on the broker but never stored, or a 202 report never on the
//! broker), duplicated (a signal id stored twice after de-duplication, or one report published
//! under two ids), ids re-published at a new observation time, replays (rows written again and
//! merged away by id: the at-least-once the design allows), scores written, probe reservations
//! or instances a killed prober left for longer than the sweeper allows, and the recovery time
//! (fault over -> every signal the broker held at that moment stored, no probe leftover). After
//! the last row every key's latest score must count each of its stored signals once. Fails on a
//! lost signal, a duplicate, a re-published id, a probe leftover or a miscounted score.
//! Results: `docs/reliability.md`. Needs the workspace binaries (`cargo build --workspace
//! --bins`).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use capsight_cloud::CloudAdapter;
use capsight_probe::{PROBE_TAG, prober::probe_age};
use capsight_proto::{
    codec,
    domain::{Payload, Signal, SignalSource},
};
use capsight_testkit::{
    Sandbox,
    broker::PrivateBroker,
    cloud::{Sim, quick_retries},
    fixtures::scenario,
    kafka::read_to_end,
    outage::outages,
    private_clickhouse::PrivateClickHouse,
    process::{ChildGuard, bin, free_port},
    tenants::tenant,
};
use serde_json::json;

/// How long the pipeline may take to catch up after a fault before what is missing counts lost.
const LIMIT: Duration = Duration::from_secs(90);
/// Workload before each fault.
const STEADY: Duration = Duration::from_secs(3);
/// The collectors' credentials in the scenario.
const ACCESS_KEY: &str = "AKIATESTMATRIX";
/// A probe reservation or instance older than this is a leak: the sweeper (every 2 s, after
/// 5 s: `tests/fixtures/config/signal-matrix.toml`) should have removed it.
const PROBE_STALE: Duration = Duration::from_secs(20);

/// A capsight process of the signal path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Proc {
    Spot,
    Probe,
    Quota,
    Status,
    Reports,
    Scorer,
}

impl Proc {
    const ALL: [Self; 6] = [
        Self::Scorer,
        Self::Spot,
        Self::Probe,
        Self::Quota,
        Self::Status,
        Self::Reports,
    ];

    fn binary(self) -> &'static str {
        match self {
            Self::Spot => "capsight-spot",
            Self::Probe => "capsight-probe",
            Self::Quota => "capsight-quota",
            Self::Status => "capsight-status",
            Self::Reports => "capsight-reports",
            Self::Scorer => "capsight-scorer",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Spot => "spot collector",
            Self::Probe => "prober",
            Self::Quota => "quota collector",
            Self::Status => "status collector",
            Self::Reports => "reports intake",
            Self::Scorer => "scorer",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The process `kill -9`ed and restarted, twice.
    Kill9(Proc),
    BrokerKilled,
    ClickHouseKilled,
}

impl Fault {
    fn name(self) -> String {
        match self {
            Self::Kill9(Proc::Probe) => {
                "prober kill -9 (x2), then SIGKILL between audit and publish".into()
            }
            Self::Kill9(p) => format!("{} kill -9 (x2)", p.name()),
            Self::BrokerKilled => "Kafka broker killed 4 s (x2)".into(),
            Self::ClickHouseKilled => "ClickHouse killed 5 s (x2)".into(),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Row {
    fault: String,
    published: usize,
    reports: usize,
    refused: u32,
    lost: usize,
    duplicated: usize,
    republished: usize,
    replays: u64,
    scores: u64,
    probe_leftovers: usize,
    restarts: usize,
    recovery: Duration,
}

/// What the reports client saw: accepted report ids with the row they were accepted in.
#[derive(Default)]
struct Client {
    accepted: Mutex<Vec<(String, usize)>>,
    /// Refused tries (503, or the intake down), by row.
    refused: Mutex<BTreeMap<usize, u32>>,
    row: AtomicUsize,
    stop: AtomicBool,
}

struct World {
    sandbox: Sandbox,
    broker: PrivateBroker,
    ch: PrivateClickHouse,
    db: clickhouse::Client,
    intake_port: u16,
    procs: BTreeMap<Proc, ChildGuard>,
    spawned: usize,
    /// The next prober started crashes itself (`SIGKILL`) right after its first probe's outcome
    /// is in the audit table, before its signal is published: the worst point for a lost probe.
    crash_next_probe: bool,
}

impl World {
    fn spawn(&mut self, proc: Proc) {
        self.spawned += 1;
        let mut cmd = self.sandbox.command(bin(proc.binary()));
        cmd.env("CAPSIGHT_CLICKHOUSE__URL", self.ch.url());
        match proc {
            Proc::Spot | Proc::Quota => {
                cmd.envs(self.sandbox.sim().aws_env(ACCESS_KEY));
            }
            Proc::Probe => {
                cmd.envs(self.sandbox.sim().aws_env(ACCESS_KEY));
                if std::mem::take(&mut self.crash_next_probe) {
                    cmd.env("CAPSIGHT_PROBE__CRASH_AFTER", "done");
                }
            }
            Proc::Status => {
                cmd.env(
                    "CAPSIGHT_STATUS__FEEDS",
                    format!(
                        "[{{name=\"cloudsim-statuspage\",kind=\"statuspage\",url=\"{}/api/v2/summary.json\",provider=\"aws\"}}]",
                        self.sandbox.sim().url()
                    ),
                );
            }
            Proc::Reports => {
                cmd.env(
                    "CAPSIGHT_REPORTS__LISTEN",
                    format!("127.0.0.1:{}", self.intake_port),
                );
            }
            Proc::Scorer => {}
        }
        let child = self
            .sandbox
            .spawn(&format!("{}-{}", proc.binary(), self.spawned), &mut cmd);
        self.procs.insert(proc, child);
    }

    /// Restarts a process that exited by itself (what systemd / Kubernetes do); how many.
    fn supervise(&mut self) -> usize {
        let exited: Vec<Proc> = self
            .procs
            .iter_mut()
            .filter_map(|(p, c)| c.wait_for(Duration::ZERO).map(|_| *p))
            .collect();
        for p in &exited {
            eprintln!("supervisor: {} exited; restarting it", p.binary());
            self.spawn(*p);
        }
        exited.len()
    }

    async fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::Kill9(proc) => {
                for _ in 0..2 {
                    if let Some(v) = self.procs.remove(&proc) {
                        v.kill();
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    self.spawn(proc);
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                if proc == Proc::Probe {
                    // a third death at the worst point: after an outcome is audited, before
                    // its signal is published (the restarted prober publishes it from the audit)
                    if let Some(v) = self.procs.remove(&proc) {
                        v.kill();
                    }
                    self.crash_next_probe = true;
                    self.spawn(proc);
                    let crashed = self
                        .procs
                        .get_mut(&proc)
                        .and_then(|c| c.wait_for(Duration::from_secs(30)));
                    assert!(crashed.is_some(), "the prober did not reach its failpoint");
                    self.spawn(proc);
                }
            }
            Fault::BrokerKilled => {
                outages(
                    &mut self.broker,
                    2,
                    Duration::from_secs(4),
                    Duration::from_secs(3),
                )
                .await;
            }
            Fault::ClickHouseKilled => {
                outages(
                    &mut self.ch,
                    2,
                    Duration::from_secs(5),
                    Duration::from_secs(3),
                )
                .await;
            }
        }
    }

    /// Probe reservations and instances still live when the sweeper should have removed them
    /// (older than [`PROBE_STALE`]): what a killed prober leaked.
    async fn probe_leftovers(&self) -> usize {
        let adapter = self
            .sandbox
            .sim()
            .adapter(ACCESS_KEY, quick_retries(2))
            .await;
        let now = chrono::Utc::now();
        let stale = |tags: &BTreeMap<String, String>, created| {
            probe_age(tags, created, now).is_some_and(|age| age > PROBE_STALE)
        };
        let reservations = adapter
            .describe_tagged_reservations(PROBE_TAG)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.state == "active" && stale(&r.tags, r.created_at))
            .count();
        let instances = adapter
            .describe_tagged(PROBE_TAG)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|i| i.state.is_live() && stale(&i.tags, i.launch_time))
            .count();
        reservations + instances
    }

    /// Every signal on the broker, by [`identity`] (with how many records carry it).
    async fn on_broker(&self) -> BTreeMap<String, (Signal, usize)> {
        let mut out: BTreeMap<String, (Signal, usize)> = BTreeMap::new();
        for r in read_to_end(&self.sandbox.kafka, &self.sandbox.kafka.topics.signals).await {
            let s = r.signal();
            out.entry(identity(s.id.as_str(), s.observed_at.timestamp_millis()))
                .or_insert((s, 0))
                .1 += 1;
        }
        out
    }

    /// Stored signals by [`identity`] with their row counts (`FINAL`: after de-duplication, or
    /// raw).
    async fn stored(
        &self,
        merged: bool,
    ) -> Result<BTreeMap<String, u64>, clickhouse::error::Error> {
        #[derive(clickhouse::Row, serde::Deserialize)]
        struct Count {
            k: String,
            n: u64,
        }
        let sql = if merged {
            "SELECT concat(id, '@', toString(toUnixTimestamp(observed_at) * 1000 + observed_ms)) \
             AS k, count() AS n FROM signals FINAL GROUP BY k"
        } else {
            "SELECT concat(id, '@', toString(toUnixTimestamp(observed_at) * 1000 + observed_ms)) \
             AS k, count() AS n FROM signals GROUP BY k"
        };
        let rows: Vec<Count> = self.db.query(sql).fetch_all().await?;
        Ok(rows.into_iter().map(|c| (c.k, c.n)).collect())
    }

    /// Probe outcomes in the prober's audit table (its outbox) by [`identity`] of their signal.
    async fn audited_probes(&self) -> BTreeSet<String> {
        let rows: Vec<String> = self
            .db
            .query("SELECT signal FROM probe_audit WHERE phase = 'done' AND signal != ''")
            .fetch_all()
            .await
            .unwrap();
        rows.iter()
            .map(|hex| {
                let s = codec::decode_signal(&hex::decode(hex).unwrap()).unwrap();
                identity(s.id.as_str(), s.observed_at.timestamp_millis())
            })
            .collect()
    }

    async fn scores_written(&self) -> u64 {
        self.db
            .query("SELECT count() FROM scores FINAL")
            .fetch_one::<u64>()
            .await
            .unwrap()
    }
}

/// What the signals table and the scorer's window de-duplicate on: the signal id and its
/// observation time (ms). The same id at two times is two rows and two observations.
fn identity(id: &str, at_ms: i64) -> String {
    format!("{id}@{at_ms}")
}

/// The report's note: the client's id, so the report is found on the broker.
fn note(s: &Signal) -> Option<&str> {
    match &s.payload {
        Payload::CrowdReport(r) if s.source == SignalSource::Report => Some(r.note.as_str()),
        _ => None,
    }
}

/// Posts one report every 250 ms until stopped; a refused report is sent again unchanged.
async fn report_client(url: String, key: String, client: Arc<Client>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut n = 0;
    while !client.stop.load(Ordering::SeqCst) {
        n += 1;
        let id = format!("r-{n}");
        let body = json!({
            "id": id, "observed_at": chrono::Utc::now().to_rfc3339(), "provider": "aws",
            "region": "us-east-1", "zone_id": "use1-az4", "instance_type": "p5.48xlarge",
            "outcome": "unavailable", "note": id,
        })
        .to_string();
        let started = Instant::now();
        loop {
            let sent = http
                .post(format!("{url}/v1/reports"))
                .header("authorization", format!("Bearer {key}"))
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                    let row = client.row.load(Ordering::SeqCst);
                    client.accepted.lock().unwrap().push((id.clone(), row));
                    break;
                }
                Ok(r) if r.status().is_client_error() => {
                    panic!(
                        "report {id} refused: {} {}",
                        r.status(),
                        r.text().await.unwrap()
                    );
                }
                _ => {
                    let row = client.row.load(Ordering::SeqCst);
                    *client.refused.lock().unwrap().entry(row).or_default() += 1;
                    assert!(
                        started.elapsed() < Duration::from_secs(100),
                        "report {id} refused for 100 s"
                    );
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_matrix_of_the_signal_path() {
    let broker = PrivateBroker::start().await;
    let sandbox = Sandbox::builder("signal_matrix")
        .brokers(&broker.brokers())
        .topics(2)
        .profile("scorer")
        .profile("signal-matrix")
        .tenants([tenant("acme").name("Acme").rate(100_000).with_key()])
        .cloudsim(Sim::builder(scenario("signal-matrix")))
        .start()
        .await;
    let mut ch = PrivateClickHouse::new(&sandbox.dir);
    ch.start().await;
    let ch_settings = ch.settings(&sandbox.clickhouse);
    capsight_clickhouse::migrate::apply(&ch_settings)
        .await
        .unwrap();
    let db = ch_settings.client().unwrap();
    let mut w = World {
        sandbox,
        broker,
        ch,
        db,
        intake_port: free_port(),
        procs: BTreeMap::new(),
        spawned: 0,
        crash_next_probe: false,
    };
    for p in Proc::ALL {
        w.spawn(p);
    }

    let client = Arc::new(Client::default());
    let reports = tokio::spawn(report_client(
        format!("http://127.0.0.1:{}", w.intake_port),
        w.sandbox.key("acme"),
        Arc::clone(&client),
    ));

    let faults = Proc::ALL
        .into_iter()
        .map(Fault::Kill9)
        .chain([Fault::BrokerKilled, Fault::ClickHouseKilled]);
    let mut rows: Vec<Row> = Vec::new();
    // ids on the broker at the end of each row (a signal belongs to the first row that saw it)
    let mut seen_by_row: Vec<BTreeSet<String>> = Vec::new();
    let mut scores_before = 0;
    for (n, fault) in faults.into_iter().enumerate() {
        client.row.store(n, Ordering::SeqCst);
        let mut row = Row {
            fault: fault.name(),
            ..Row::default()
        };
        tokio::time::sleep(STEADY).await;
        w.inject(fault).await;
        let over = Instant::now();
        // what the broker holds now, and the reports accepted so far, must all be stored
        let held: BTreeSet<String> = w.on_broker().await.into_keys().collect();
        let accepted: BTreeSet<String> = client
            .accepted
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        loop {
            row.restarts += w.supervise();
            let stored = w.stored(false).await.unwrap_or_default();
            let on_broker = w.on_broker().await;
            let notes: BTreeSet<&str> = on_broker.values().filter_map(|(s, _)| note(s)).collect();
            let leftovers = w.probe_leftovers().await;
            let caught_up = held.iter().all(|id| stored.contains_key(id))
                && accepted.iter().all(|id| notes.contains(id.as_str()))
                && leftovers == 0;
            if caught_up || over.elapsed() >= LIMIT {
                row.recovery = over.elapsed();
                row.probe_leftovers = leftovers;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        seen_by_row.push(w.on_broker().await.into_keys().collect());
        let scores = w.scores_written().await;
        row.scores = scores - scores_before;
        scores_before = scores;
        rows.push(row);
    }

    // stop the workload, let the pipeline drain, then count
    client.stop.store(true, Ordering::SeqCst);
    reports.await.unwrap();
    for p in [Proc::Spot, Proc::Probe, Proc::Quota, Proc::Status] {
        if let Some(c) = w.procs.remove(&p) {
            c.kill();
        }
    }
    let deadline = Instant::now() + LIMIT;
    loop {
        w.supervise();
        let all: BTreeSet<String> = w.on_broker().await.into_keys().collect();
        let stored = w.stored(false).await.unwrap_or_default();
        if all.iter().all(|id| stored.contains_key(id)) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let on_broker = w.on_broker().await;
    let merged = w.stored(true).await.unwrap();
    let raw = w.stored(false).await.unwrap();
    let last = rows.len() - 1;
    let row_of = |id: &str| {
        seen_by_row
            .iter()
            .position(|s| s.contains(id))
            .unwrap_or(last)
    };
    for (id, (s, _)) in &on_broker {
        let r = &mut rows[row_of(id)];
        r.published += 1;
        match merged.get(id).copied().unwrap_or(0) {
            0 => {
                eprintln!("lost: {s:?}");
                r.lost += 1;
            }
            1 => {}
            k => {
                eprintln!("stored {k} times after de-duplication: {id}");
                r.duplicated += 1;
            }
        }
        r.replays += raw.get(id).copied().unwrap_or(0).saturating_sub(1);
    }
    // a signal id published again with another observation time (not a replay: stored and
    // counted as another observation)
    let mut times_of_id: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    for (s, _) in on_broker.values() {
        times_of_id
            .entry(s.id.as_str())
            .or_default()
            .insert(s.observed_at.timestamp_millis());
    }
    for (id, times) in &times_of_id {
        if times.len() > 1 {
            let first = identity(id, *times.first().unwrap());
            eprintln!("{id} published at {} observation times", times.len());
            rows[row_of(&first)].republished += times.len() - 1;
        }
    }
    // reports: each accepted one on the broker under exactly one id
    let mut ids_of_report: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (id, (s, _)) in &on_broker {
        if let Some(note) = note(s) {
            ids_of_report.entry(note).or_default().insert(id.as_str());
        }
    }
    for (report, row) in client.accepted.lock().unwrap().iter() {
        let r = &mut rows[*row];
        r.reports += 1;
        match ids_of_report.get(report.as_str()).map_or(0, BTreeSet::len) {
            0 => {
                eprintln!("report {report} accepted (202) but not on the broker");
                r.lost += 1;
            }
            1 => {}
            k => {
                eprintln!("report {report} published as {k} signals");
                r.duplicated += 1;
            }
        }
    }
    for (row, n) in client.refused.lock().unwrap().iter() {
        rows[*row].refused = *n;
    }
    // every probe outcome the prober audited reached the broker (the crashed prober's too)
    let prober_row = rows
        .iter()
        .position(|r| r.fault == Fault::Kill9(Proc::Probe).name())
        .unwrap();
    for probe in w.audited_probes().await {
        if !on_broker.contains_key(&probe) {
            eprintln!("probe outcome audited but never published: {probe}");
            rows[prober_row].lost += 1;
        }
    }
    // the workload really ran every collector
    let sources: BTreeSet<SignalSource> = on_broker.values().map(|(s, _)| s.source).collect();
    for source in [
        SignalSource::Spot,
        SignalSource::Probe,
        SignalSource::Quota,
        SignalSource::Status,
        SignalSource::Report,
    ] {
        assert!(
            sources.contains(&source),
            "no {source:?} signal: {sources:?}"
        );
    }

    // every key's latest score counts each of its stored signals (within the window) once
    let window = chrono::Duration::hours(24);
    let mut expected: BTreeMap<String, (i64, BTreeSet<i64>)> = BTreeMap::new();
    for (s, _) in on_broker.values() {
        let e = expected.entry(s.key.to_string()).or_default();
        e.1.insert(s.observed_at.timestamp_millis());
        e.0 = e.0.max(s.observed_at.timestamp_millis());
    }
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for (s, _) in on_broker.values() {
        let newest = expected[&s.key.to_string()].0;
        if s.observed_at.timestamp_millis() >= newest - window.num_milliseconds() {
            *per_key.entry(s.key.to_string()).or_default() += 1;
        }
    }
    let latest = w.sandbox.latest_scores().await;
    let miscounted: Vec<String> = per_key
        .iter()
        .filter(|(k, n)| latest.get(*k).map(|s| s.signal_count as usize) != Some(**n))
        .map(|(k, n)| {
            format!(
                "{k}: {n} signals, latest score counts {:?}",
                latest.get(k).map(|s| s.signal_count)
            )
        })
        .collect();

    println!(
        "| fault | signals published | reports accepted (202) | reports refused (client \
         retried) | signals lost | signals duplicated | ids re-published with a new time | \
         replay rows (unmerged, a lower bound) | scores written | probe leftovers | restarts by the \
         supervisor | recovery |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s |",
            r.fault,
            r.published,
            r.reports,
            r.refused,
            r.lost,
            r.duplicated,
            r.republished,
            r.replays,
            r.scores,
            r.probe_leftovers,
            r.restarts,
            r.recovery.as_secs_f64()
        );
    }
    println!(
        "keys whose latest score miscounts their signals: {}",
        miscounted.len()
    );
    for r in &rows {
        assert_eq!(
            (r.lost, r.duplicated, r.republished, r.probe_leftovers),
            (0, 0, 0, 0),
            "{r:?}"
        );
        assert!(r.published > 0, "no signal flowed during {r:?}");
    }
    assert!(miscounted.is_empty(), "{miscounted:#?}");
    w.sandbox.cleanup().await;
}
