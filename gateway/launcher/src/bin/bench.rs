//! `capsight-launcher-bench`: what the launcher's background sweeps cost against a long launch
//! history, before (the whole-history reads and per-job queries) and after (the live-launch
//! index `launch_live` and batched reads). Needs the local stack's ClickHouse; works in a
//! scratch database it drops at the end. Method and figures: `docs/benchmarks.md`.
//!
//! ```sh
//! eval "$(deploy/local/stack env)"
//! cargo run --release -p capsight-launcher --bin capsight-launcher-bench -- --history 100000
//! ```

use std::time::{Duration, Instant};

use anyhow::Context;
use capsight_clickhouse::{
    ClickHouseSettings,
    rows::{LaunchCancellationRow, LaunchEventRow, LaunchRequestRow},
};
use capsight_launch::store::{LiveSettings, Store, job_keys};
use capsight_proto::domain::LaunchState;
use clap::Parser;
use clickhouse::Row as _;
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(about = "Cost of the launcher's sweeps against a long launch history")]
struct Args {
    /// Ended launches in the history (5 transitions each), written before the index exists.
    #[arg(long, default_value_t = 100_000)]
    history: usize,
    /// Running launches (4 transitions each; one in ten with a warm standby, one in twenty
    /// with a cancel request).
    #[arg(long, default_value_t = 100)]
    live: usize,
    /// Timed runs per measurement (the median is reported).
    #[arg(long, default_value_t = 15)]
    runs: usize,
    /// Keep the scratch database.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Deserialize)]
struct Conf {
    clickhouse: ClickHouseSettings,
}

const TENANTS: usize = 20;

/// The sweeps' reads before the live-launch index (kept here for the comparison).
mod before {
    pub const LIVE: &str = "SELECT job_id, tenant, max(seq) AS last_seq, \
        argMax(state, seq) AS last_state, argMax(provider, seq), argMax(region, seq), \
        argMax(zone_id, seq), argMax(instance_type, seq), argMax(market, seq), \
        argMax(instance_id, seq), argMax(attempt, seq), toUInt32(argMax(at, seq)) \
        FROM launch_events WHERE (? = '' OR tenant = ?) GROUP BY tenant, job_id \
        HAVING last_state IN ('provisioning', 'running') ORDER BY tenant, job_id";
    pub const RUNNING_SINCE: &str = "SELECT tenant, job_id, toUInt32(min(at)) AS t \
        FROM launch_events WHERE has(?, job_id) AND state = 'running' GROUP BY tenant, job_id";
    pub const CANCEL_REQUESTED: &str =
        "SELECT count() FROM launch_cancellations WHERE tenant = ? AND job_id = ?";
    pub const REQUEST: &str = "SELECT ?fields FROM launch_requests \
        WHERE tenant = ? AND job_id = ? LIMIT 1";
    pub const EVENTS: &str = "SELECT ?fields FROM launch_events \
        WHERE tenant = ? AND job_id = ? AND seq >= ? ORDER BY seq";
    pub const ENDED_WITH_STANDBY: &str = "SELECT tenant, job_id FROM launch_events \
        WHERE at >= now() - 3600 GROUP BY tenant, job_id \
        HAVING argMax(state, seq) IN ('terminated', 'failed', 'cancelled') \
        AND countIf(detail LIKE 'standby ready%') > 0";
}

fn event(tenant: &str, job: &str, seq: u32, state: LaunchState, at: u32) -> LaunchEventRow {
    LaunchEventRow {
        job_id: job.to_owned(),
        seq,
        tenant: tenant.to_owned(),
        at,
        at_ms: 0,
        state,
        provider: "aws".into(),
        region: "us-east-1".into(),
        zone_id: "use1-az4".into(),
        instance_type: "p5.48xlarge".into(),
        market: "spot".into(),
        instance_id: if seq >= 3 {
            format!("i-{:017x}", seq)
        } else {
            String::new()
        },
        attempt: u32::from(seq >= 2),
        error_class: String::new(),
        error_code: String::new(),
        detail: if seq == 3 {
            "standby ready: standby=i-0".into()
        } else {
            String::new()
        },
    }
}

/// A launch's transitions from queued to terminated (a live one stops at running).
const RUN_TO_END: [LaunchState; 5] = [
    LaunchState::Queued,
    LaunchState::Preflight,
    LaunchState::Provisioning,
    LaunchState::Running,
    LaunchState::Terminated,
];

/// Appends `job`'s transitions through `states` (seq 0, 1, ...) at `at`.
fn push_run(
    events: &mut Vec<LaunchEventRow>,
    tenant: &str,
    job: &str,
    states: &[LaunchState],
    at: u32,
) -> anyhow::Result<()> {
    for (seq, state) in states.iter().enumerate() {
        events.push(event(tenant, job, u32::try_from(seq)?, *state, at));
    }
    Ok(())
}

fn request(tenant: &str, job: &str, at: u32, standby: bool) -> LaunchRequestRow {
    LaunchRequestRow {
        job_id: job.to_owned(),
        tenant: tenant.to_owned(),
        created_at: at,
        created_ms: 0,
        provider: "aws".into(),
        region: "us-east-1".into(),
        zone_id: "use1-az4".into(),
        instance_type: "p5.48xlarge".into(),
        market: "spot".into(),
        count: 1,
        image_id: "ami-0".into(),
        subnet_id: String::new(),
        spot_max_price: 0.0,
        warm_standby: u8::from(standby),
        max_lifetime_secs: 0,
        idle_ttl_secs: 0,
        max_fallbacks: 0,
    }
}

/// Every live launch, the way the launcher read them before the live index.
async fn live_before(client: &clickhouse::Client) -> anyhow::Result<Vec<Live>> {
    Ok(client
        .query(before::LIVE)
        .bind("")
        .bind("")
        .fetch_all()
        .await?)
}

/// Column names as a `?fields` list.
fn quoted(columns: &[&str]) -> String {
    columns
        .iter()
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn insert<R>(client: &clickhouse::Client, table: &str, rows: &[R]) -> anyhow::Result<()>
where
    R: clickhouse::RowOwned + clickhouse::RowWrite,
{
    for chunk in rows.chunks(50_000) {
        let mut insert = client.insert::<R>(table).await?;
        for r in chunk {
            insert.write(r).await?;
        }
        insert.end().await?;
    }
    Ok(())
}

/// Writes `history` ended launches spread over the last 90 days, then `live` running ones.
async fn fill(client: &clickhouse::Client, history: usize, live: usize) -> anyhow::Result<()> {
    let now = u32::try_from(chrono::Utc::now().timestamp())?;
    let mut events = Vec::new();
    let mut requests = Vec::new();
    for n in 0..history {
        let tenant = format!("t{}", n % TENANTS);
        let job = uuid::Uuid::new_v4().to_string();
        let at = now - 3600 - u32::try_from(n % (90 * 86_400))?;
        push_run(&mut events, &tenant, &job, &RUN_TO_END, at)?;
        requests.push(request(&tenant, &job, at, n % 10 == 0));
    }
    insert(client, "launch_events", &events).await?;
    insert(client, "launch_requests", &requests).await?;
    // the history predates the index: empty it, as a fresh migration leaves it
    client.query("TRUNCATE TABLE launch_live").execute().await?;
    let (mut events, mut requests, mut cancels) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..live {
        let tenant = format!("t{}", n % TENANTS);
        let job = uuid::Uuid::new_v4().to_string();
        let at = now - 600;
        push_run(&mut events, &tenant, &job, &RUN_TO_END[..4], at)?;
        requests.push(request(&tenant, &job, at, n % 10 == 0));
        if n % 20 == 0 {
            cancels.push(LaunchCancellationRow {
                job_id: job.clone(),
                tenant: tenant.clone(),
                at: now,
            });
        }
    }
    insert(client, "launch_events", &events).await?;
    insert(client, "launch_requests", &requests).await?;
    insert(client, "launch_cancellations", &cancels).await?;
    Ok(())
}

/// The median of `runs` timings of `f`, and its last result.
async fn median<T, F, Fut>(runs: usize, mut f: F) -> anyhow::Result<(Duration, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        last = Some(f().await?);
        times.push(start.elapsed());
    }
    times.sort();
    Ok((times[times.len() / 2], last.context("no run")?))
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Live {
    job_id: String,
    tenant: String,
    _seq: u32,
    _state: String,
    _p: String,
    _r: String,
    _z: String,
    _t: String,
    _m: String,
    _i: String,
    _a: u32,
    _at: u32,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let conf: Conf = capsight_runtime::config::load(None)?;
    let db = format!(
        "capsight_bench_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let settings = conf.clickhouse.with_database(&db);
    capsight_clickhouse::migrate::apply(&settings).await?;
    let client = settings.client()?;
    let result = bench(&args, &client).await;
    if !args.keep {
        settings
            .server_client()?
            .query(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute()
            .await?;
    }
    result
}

async fn bench(args: &Args, client: &clickhouse::Client) -> anyhow::Result<()> {
    let start = Instant::now();
    fill(client, args.history, args.live).await?;
    println!(
        "history: {} ended launches ({} transitions), {} running; written in {:.1} s",
        args.history,
        args.history * 5,
        args.live,
        start.elapsed().as_secs_f64()
    );
    let store = Store::new(client.clone()).with_live(LiveSettings::default());
    // what the first upkeep after the upgrade does (the index of a fresh migration is empty)
    let start = Instant::now();
    client
        .query(capsight_clickhouse::sql::LIVE_REBUILD.sql)
        .execute()
        .await?;
    let rebuild = start.elapsed();
    let (refresh, _) = median(args.runs, || async { Ok(store.refresh_live().await?) }).await?;
    let runs = args.runs;

    let (old_live, rows) = median(runs, || async {
        Ok(client
            .query(before::LIVE)
            .bind("")
            .bind("")
            .fetch_all::<Live>()
            .await?)
    })
    .await?;
    let (new_live, live) = median(runs, || async { Ok(store.live_launches(None).await?) }).await?;
    anyhow::ensure!(
        rows.len() == live.len() && live.len() == args.live,
        "live launches: before {}, after {}, expected {}",
        rows.len(),
        live.len(),
        args.live
    );
    let pairs: Vec<(String, String)> = rows
        .iter()
        .map(|l| (l.tenant.clone(), l.job_id.clone()))
        .collect();
    let ids: Vec<String> = pairs.iter().map(|(_, j)| j.clone()).collect();
    let keys = job_keys(pairs.iter().map(|(t, j)| (t.as_str(), j.as_str())));

    let (old_since, _) = median(runs, || async {
        Ok(client
            .query(before::RUNNING_SINCE)
            .bind(&ids)
            .fetch_all::<(String, String, u32)>()
            .await?)
    })
    .await?;
    let (new_since, _) = median(runs, || async {
        Ok(client
            .query(capsight_clickhouse::sql::RUNNING_SINCE.sql)
            .bind(&keys)
            .fetch_all::<(String, String, u32)>()
            .await?)
    })
    .await?;

    // cancel sweep: live launches, then one query per job (before) / one for all (after)
    let (old_cancel, old_n) = median(runs, || async {
        let live = live_before(client).await?;
        let mut n = 0;
        for l in &live {
            let c: u64 = client
                .query(before::CANCEL_REQUESTED)
                .bind(&l.tenant)
                .bind(&l.job_id)
                .fetch_one()
                .await?;
            n += usize::from(c > 0);
        }
        Ok(n)
    })
    .await?;
    let (new_cancel, new_n) = median(runs, || async {
        Ok(store.running_cancelled().await?.len())
    })
    .await?;
    anyhow::ensure!(
        old_n == new_n,
        "cancel sweep: before {old_n}, after {new_n}"
    );

    // the standby's read of its managed jobs, on every sweep and every interruption warning
    let request_sql = before::REQUEST.replace("?fields", &quoted(LaunchRequestRow::COLUMN_NAMES));
    let events_sql = before::EVENTS.replace("?fields", &quoted(LaunchEventRow::COLUMN_NAMES));
    let (old_managed, old_m) = median(runs, || async {
        let live = live_before(client).await?;
        let mut n = 0;
        for l in &live {
            let Some(r) = client
                .query(&request_sql)
                .bind(&l.tenant)
                .bind(&l.job_id)
                .fetch_optional::<LaunchRequestRow>()
                .await?
            else {
                continue;
            };
            if r.warm_standby == 0 {
                continue;
            }
            let e: Vec<LaunchEventRow> = client
                .query(&events_sql)
                .bind(&l.tenant)
                .bind(&l.job_id)
                .bind(0u32)
                .fetch_all()
                .await?;
            n += usize::from(!e.is_empty());
        }
        Ok(n)
    })
    .await?;
    let (new_managed, new_m) = median(runs, || async {
        let running: Vec<(String, String)> = store
            .running_launches()
            .await?
            .into_iter()
            .map(|l| (l.tenant, l.job_id))
            .collect();
        let managed: Vec<(String, String)> = store
            .requests_of(&running)
            .await?
            .into_iter()
            .filter(|r| r.warm_standby != 0)
            .map(|r| (r.tenant, r.job_id))
            .collect();
        Ok(store.events_by_job(&managed).await?.len())
    })
    .await?;
    anyhow::ensure!(old_m == new_m, "managed: before {old_m}, after {new_m}");

    let (old_ended, _) = median(runs, || async {
        Ok(client
            .query(before::ENDED_WITH_STANDBY)
            .fetch_all::<(String, String)>()
            .await?)
    })
    .await?;
    let (new_ended, _) = median(runs, || async {
        Ok(client
            .query(capsight_clickhouse::sql::ENDED_WITH_STANDBY.sql)
            .fetch_all::<(String, String)>()
            .await?)
    })
    .await?;

    println!("median of {runs} runs | before | after");
    println!(
        "live launches (reaper, reconciler, quota, metrics) | {} | {}",
        ms(old_live),
        ms(new_live)
    );
    println!(
        "running-since of the live launches (reaper) | {} | {}",
        ms(old_since),
        ms(new_since)
    );
    println!(
        "cancel sweep ({} cancels) | {} | {}",
        new_n,
        ms(old_cancel),
        ms(new_cancel)
    );
    println!(
        "standby's managed jobs = DB part of acting on an interruption ({} jobs) | {} | {}",
        new_m,
        ms(old_managed),
        ms(new_managed)
    );
    println!(
        "ended jobs with a standby (standby sweep) | {} | {}",
        ms(old_ended),
        ms(new_ended)
    );
    println!(
        "index upkeep (leader, every launcher.live.refresh) | - | {}",
        ms(refresh)
    );
    println!(
        "index rebuild from the whole history (once, after the upgrade) | - | {}",
        ms(rebuild)
    );
    Ok(())
}
