//! `capsight-scorer-bench`: the measurements behind `docs/benchmarks.md`.
//!
//! * `aggregate` — in-process: decode + window + score throughput on one core, no I/O;
//! * `memory`    — resident memory per tracked key with a full window;
//! * `e2e`       — against the running stack: the scorer's end-to-end rate over a topic as a
//!   ratio of a raw rdkafka consume of the same topic in the same run;
//! * `restart`   — against the running stack: time from start to every key's score published
//!   with 1M signals in the window (the rebuild from ClickHouse);
//! * `scale`     — in-process: resident memory of up to 1M keys' windows, then the time to
//!   re-score every key once and to sweep all keys for eviction;
//! * `storage`   — against the running ClickHouse: realistic signals (and the score history and
//!   alerts the engine derives from them) inserted with the real row types, then the bytes each
//!   table and rollup holds after merges (`system.parts`).
//!
//! Build with `--release`; the stack commands need `deploy/local/stack up`. Each stack run uses
//! its own topics, group and database and drops the database afterwards.

use std::time::{Duration, Instant};

use anyhow::Context;
use capsight_clickhouse::{
    ClickHouseSettings, migrate,
    rows::{AlertRow, ScoreRow, SignalRow},
};
use capsight_kafka::{KafkaSettings, admin};
use capsight_proto::codec;
use capsight_proto::domain::{
    CapacityKey, ErrorClass, LaunchAttempt, Market, Payload, PlacementScore, QuotaReading, Signal,
    SignalId, SignalSource, SpotPrice, VerdictPolicy,
};
use capsight_runtime::shutdown::Shutdown;
use capsight_scorer::engine::Engine;
use capsight_scorer::{ScorerConfig, ScorerSettings};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

#[derive(Debug, Parser)]
#[command(about = "scorer benchmarks (see docs/benchmarks.md)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// In-process decode + aggregation + scoring throughput on one core.
    Aggregate {
        #[arg(long, default_value_t = 1_000_000)]
        signals: usize,
        #[arg(long, default_value_t = 1_000)]
        keys: usize,
        #[arg(long, default_value_t = 50_000)]
        batch: usize,
    },
    /// Resident memory per tracked key with `per_key` observations in each window.
    Memory {
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        #[arg(long, default_value_t = 100)]
        per_key: usize,
    },
    /// End-to-end scorer rate vs a raw consume of the same topic.
    E2e {
        #[arg(long, default_value_t = 200_000)]
        signals: usize,
        #[arg(long, default_value_t = 500)]
        keys: usize,
    },
    /// Start-to-serving time with `signals` stored signals in the window.
    Restart {
        #[arg(long, default_value_t = 1_000_000)]
        signals: usize,
        #[arg(long, default_value_t = 1_000)]
        keys: usize,
    },
    /// Memory of `keys` windows of `per_key` realistic observations, then the cost of
    /// re-scoring every key once and of one eviction sweep over all keys.
    Scale {
        #[arg(long, default_value_t = 1_000_000)]
        keys: usize,
        #[arg(long, default_value_t = 10)]
        per_key: usize,
    },
    /// ClickHouse bytes per table for `signals` realistic signals over `keys` keys in one day.
    Storage {
        #[arg(long, default_value_t = 1_000_000)]
        signals: usize,
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        /// Keep the database afterwards (to copy its rows elsewhere).
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Debug, serde::Deserialize)]
struct Conf {
    kafka: KafkaSettings,
    clickhouse: ClickHouseSettings,
    scorer: ScorerSettings,
    trust: capsight_tenancy::trust::TrustSettings,
    #[serde(default)]
    verdict: VerdictPolicy,
}

fn key_name(k: usize) -> String {
    let types = ["p5.48xlarge", "p4d.24xlarge", "g6e.xlarge", "g5.xlarge"];
    let zones = ["use1-az1", "use1-az2", "use1-az4", "use1-az6"];
    let markets = ["on_demand", "spot"];
    // 32 real keys, then numbered instance sizes for as many distinct keys as asked
    let it = if k < 32 {
        types[k / 8].to_owned()
    } else {
        format!("p5e.{k}xlarge")
    };
    format!("aws/us-east-1/{}/{it}/{}", zones[k % 4], markets[k / 4 % 2])
}

/// `n` signals over `keys` keys, `span` of event time ending at `end`.
fn signals(n: usize, keys: usize, end: DateTime<Utc>, span: Duration) -> Vec<Signal> {
    let keys: Vec<capsight_proto::domain::CapacityKey> = (0..keys)
        .map(|k| key_name(k).parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let step = span.as_millis() as i64 / n.max(1) as i64;
    let start = end - chrono::Duration::milliseconds(step * n as i64);
    (0..n)
        .map(|i| {
            let key = keys[i % keys.len()].clone();
            let at = start + chrono::Duration::milliseconds(step * i as i64);
            let payload = if i % 4 == 3 {
                Payload::SpotPrice(SpotPrice {
                    price_per_hour: 30.0 + (i % 100) as f64 / 10.0,
                    currency: "USD".into(),
                })
            } else {
                let ok = i % 5 != 0;
                let class = if ok {
                    ErrorClass::None
                } else {
                    ErrorClass::Capacity
                };
                let provisioning_ms = 40_000 + (i % 1000) as u32 * 50;
                Payload::LaunchAttempt(LaunchAttempt::with_class(class, Some(provisioning_ms)))
            };
            Signal {
                id: SignalId::parse("id", &format!("bench-{i}"))
                    .unwrap_or_else(|_| SignalId::random()),
                observed_at: at,
                source: SignalSource::Probe,
                tenant: None,
                key,
                payload,
            }
        })
        .collect()
}

/// Realistic signal `n` (unique), the `i`th of `key`, at `at`, as the collectors publish them:
/// spot keys get spot prices and placement scores, on-demand keys probe launches (one in five a
/// capacity error with the provider's message) and quota readings; ids derived as the
/// collectors do.
fn realistic(n: usize, i: usize, key: &CapacityKey, at: DateTime<Utc>) -> Signal {
    let n = n.to_string();
    let (source, payload) = match (key.market, i % 4) {
        (Market::Spot, 0 | 2) => (
            SignalSource::Spot,
            Payload::SpotPrice(SpotPrice {
                price_per_hour: 30.0 + (i % 100) as f64 / 10.0,
                currency: "USD".into(),
            }),
        ),
        (Market::Spot, _) => (
            SignalSource::Spot,
            Payload::PlacementScore(PlacementScore {
                score: (i % 10) as u8 + 1,
                target_capacity: 1,
            }),
        ),
        (_, 3) => (
            SignalSource::Quota,
            Payload::Quota(QuotaReading {
                quota_code: "L-417A185B".into(),
                limit: 1152.0,
                used: (i % 12) as f64 * 96.0,
                headroom_instances: 12 - (i % 12) as u32,
            }),
        ),
        _ if i.is_multiple_of(5) => {
            let mut a = LaunchAttempt::with_class(ErrorClass::Capacity, None);
            a.error_code = "InsufficientInstanceCapacity".into();
            a.error_message = format!(
                "We currently do not have sufficient {} capacity in the Availability Zone you \
                 requested ({}). Our system will be working on provisioning additional capacity.",
                key.instance_type.as_str(),
                key.zone_str()
            );
            (SignalSource::Probe, Payload::LaunchAttempt(a))
        }
        _ => (
            SignalSource::Probe,
            Payload::LaunchAttempt(LaunchAttempt::with_class(
                ErrorClass::None,
                Some(40_000 + (i % 1000) as u32 * 50),
            )),
        ),
    };
    Signal {
        id: SignalId::derived(source, &[&key.to_string(), &n]),
        observed_at: at,
        source,
        tenant: None,
        key: key.clone(),
        payload,
    }
}

fn rss_bytes() -> u64 {
    capsight_runtime::process::status_bytes("VmRSS:")
}

fn aggregate(n: usize, keys: usize, batch: usize) {
    let end = DateTime::<Utc>::from_timestamp(1_795_000_000, 0).unwrap_or_default();
    let encoded: Vec<Vec<u8>> = signals(n, keys, end, Duration::from_secs(48 * 3600))
        .iter()
        .map(codec::encode_signal)
        .collect();
    let mut engine = Engine::new(ScorerSettings::default(), &VerdictPolicy::default());
    let started = Instant::now();
    let mut scores = 0usize;
    for chunk in encoded.chunks(batch) {
        let decoded: Vec<Signal> = chunk
            .iter()
            .filter_map(|b| codec::decode_signal(b).ok())
            .collect();
        let out = engine.apply(decoded.iter().map(|s| (0, s)));
        scores += out.scores.len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "aggregate: {n} signals, {keys} keys, batches of {batch}: {secs:.2} s = {:.0} signals/s on one core \
         (decode + window + score; {scores} scores; {} observations held at the end)",
        n as f64 / secs,
        engine.observation_count()
    );
}

fn memory(keys: usize, per_key: usize) {
    let end = DateTime::<Utc>::from_timestamp(1_795_000_000, 0).unwrap_or_default();
    let all = signals(keys * per_key, keys, end, Duration::from_secs(20 * 3600));
    let before = rss_bytes();
    let mut engine = Engine::new(ScorerSettings::default(), &VerdictPolicy::default());
    for chunk in all.chunks(50_000) {
        engine.apply(chunk.iter().map(|s| (0, s)));
    }
    let after = rss_bytes();
    let per_key_bytes = (after.saturating_sub(before)) as f64 / keys as f64;
    println!(
        "memory: {keys} keys x {per_key} observations ({} held): RSS +{:.1} MiB = {:.0} bytes per key, {:.0} bytes per observation",
        engine.observation_count(),
        (after - before) as f64 / 1_048_576.0,
        per_key_bytes,
        per_key_bytes / per_key as f64
    );
}

/// Fills an engine round by round (one realistic signal per key per round, rounds evenly
/// spread over 20 h, batches of 50 000 as in production), then times one more round (every key
/// re-scored once with its full window) and an eviction sweep that evicts nothing.
fn scale(n: usize, per_key: usize) {
    let keys: Vec<CapacityKey> = (0..n)
        .map(|k| key_name(k).parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let end = DateTime::<Utc>::from_timestamp(1_795_000_000, 0).unwrap_or_default();
    let step = chrono::Duration::seconds(20 * 3600 / per_key.max(1) as i64);
    let start = end - step * per_key as i32;
    let mut engine = Engine::new(ScorerSettings::default(), &VerdictPolicy::default());
    let round = |engine: &mut Engine, r: usize| {
        let at = start + step * r as i32;
        let mut out = (0usize, 0usize, 0usize, 0usize, 0usize);
        for (c, chunk) in keys.chunks(50_000).enumerate() {
            let batch: Vec<Signal> = chunk
                .iter()
                .enumerate()
                .map(|(j, k)| realistic(r * n + c * 50_000 + j, r, k, at))
                .collect();
            let o = engine.apply(batch.iter().map(|s| (0, s)));
            out.0 += o.scores.len();
            out.1 += o.history.len();
            out.2 += o.alerts.len();
            out.3 += o.scores.iter().map(|s| s.evidence.len()).sum::<usize>();
            out.4 += o
                .scores
                .iter()
                .map(|s| codec::encode_score(s).len())
                .sum::<usize>();
        }
        out
    };
    let before = rss_bytes();
    let t = Instant::now();
    let mut history = 0usize;
    for r in 0..per_key {
        history += round(&mut engine, r).1;
    }
    let fill = t.elapsed().as_secs_f64();
    let after = rss_bytes();
    let held = engine.observation_count();
    let grown = after.saturating_sub(before) as f64;
    println!(
        "scale: {n} keys x {per_key} observations ({held} held) in {fill:.1} s: RSS +{:.1} MiB = \
         {:.0} bytes per key, {:.0} bytes per observation; {history} history rows while filling",
        grown / 1_048_576.0,
        grown / n as f64,
        grown / held.max(1) as f64
    );
    let t = Instant::now();
    let (scores, history, alerts, evidence, bytes) = round(&mut engine, per_key);
    let rescore = t.elapsed().as_secs_f64();
    println!(
        "scale: one more signal for every key = {scores} keys re-scored in {rescore:.2} s = \
         {:.2} us per key ({:.0} keys/s on one core, windows of {} observations); {history} \
         history rows, {alerts} alerts; {:.1} evidence entries and {:.0} bytes per encoded score",
        rescore * 1e6 / scores.max(1) as f64,
        scores as f64 / rescore,
        per_key + 1,
        evidence as f64 / scores.max(1) as f64,
        bytes as f64 / scores.max(1) as f64
    );
    let t = Instant::now();
    let evicted = engine.evict_idle(end, Duration::from_secs(48 * 3600)).len();
    let sweep = t.elapsed().as_secs_f64();
    println!(
        "scale: eviction sweep over {} keys ({evicted} evicted): {:.1} ms = {:.0} ns per key",
        engine.key_count(),
        sweep * 1e3,
        sweep * 1e9 / engine.key_count().max(1) as f64
    );
    println!(
        "scale: peak RSS {:.1} MiB",
        peak_rss_bytes() as f64 / 1_048_576.0
    );
}

fn peak_rss_bytes() -> u64 {
    capsight_runtime::process::status_bytes("VmHWM:")
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct PartBytes {
    table: String,
    rows: u64,
    on_disk: u64,
    compressed: u64,
    uncompressed: u64,
}

/// Realistic signals for one day through the engine into a fresh database, merged, measured.
async fn storage(n: usize, keys: usize, keep: bool) -> anyhow::Result<()> {
    let conf: Conf = capsight_runtime::config::load(None)?;
    let run = format!("storage_{}", Utc::now().timestamp_millis());
    let ch = conf.clickhouse.with_database(&format!("bench_{run}"));
    migrate::apply(&ch).await?;
    let client = ch.client()?;
    let all: Vec<CapacityKey> = (0..keys)
        .map(|k| key_name(k).parse().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let end = Utc::now();
    let step_ms = 24 * 3600 * 1000 / (n / keys.max(1)).max(1) as i64;
    let start = end - chrono::Duration::hours(24);
    let mut engine = Engine::new(ScorerSettings::default(), &VerdictPolicy::default());
    let (mut history, mut alerts) = (0usize, 0usize);
    let t = Instant::now();
    let signals: Vec<Signal> = (0..n)
        .map(|i| {
            let at = start + chrono::Duration::milliseconds(step_ms * (i / keys) as i64);
            realistic(i, i / keys, &all[i % keys], at)
        })
        .collect();
    for chunk in signals.chunks(50_000) {
        let out = engine.apply(chunk.iter().map(|s| (0, s)));
        let mut insert = client.insert::<SignalRow>("signals").await?;
        for s in chunk {
            insert.write(&SignalRow::new(s, end)).await?;
        }
        insert.end().await?;
        let mut insert = client.insert::<ScoreRow>("scores").await?;
        for s in &out.history {
            insert.write(&ScoreRow::new(s)).await?;
        }
        insert.end().await?;
        if !out.alerts.is_empty() {
            let mut insert = client.insert::<AlertRow>("alerts").await?;
            for a in &out.alerts {
                insert
                    .write(&AlertRow::new(&a.score, a.from, a.low_confidence))
                    .await?;
            }
            insert.end().await?;
        }
        history += out.history.len();
        alerts += out.alerts.len();
    }
    println!(
        "storage: {n} signals over {keys} keys (one day) -> {history} history rows, {alerts} \
         alerts, inserted in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // steady state: everything merged, as ClickHouse does in the background
    for table in [
        "signals",
        "scores",
        "alerts",
        "signals_hourly",
        "scores_hourly",
    ] {
        client
            .query(&format!("OPTIMIZE TABLE {table} FINAL"))
            .execute()
            .await?;
    }
    let parts: Vec<PartBytes> = client
        .query(
            "SELECT table, sum(rows), sum(bytes_on_disk), sum(data_compressed_bytes), \
             sum(data_uncompressed_bytes) FROM system.parts \
             WHERE database = currentDatabase() AND active GROUP BY table ORDER BY table",
        )
        .fetch_all()
        .await?;
    println!("| table | rows | on disk | compressed | uncompressed | on disk per 1M signals |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mib = |b: u64| b as f64 / 1_048_576.0;
    for p in &parts {
        println!(
            "| {} | {} | {:.2} MiB | {:.2} MiB | {:.2} MiB | {:.2} MiB |",
            p.table,
            p.rows,
            mib(p.on_disk),
            mib(p.compressed),
            mib(p.uncompressed),
            mib(p.on_disk) * 1e6 / n as f64
        );
    }
    if keep {
        println!("storage: kept database {}", ch.database);
        Ok(())
    } else {
        drop_db(&ch).await
    }
}

async fn sandbox(run: &str) -> anyhow::Result<ScorerConfig> {
    let conf: Conf = capsight_runtime::config::load(None)?;
    let mut kafka = conf.kafka;
    kafka.topics.signals = format!("bench.{run}.signals");
    kafka.topics.scores = format!("bench.{run}.scores");
    kafka.topics.signals_dlq = format!("bench.{run}.dlq");
    admin::ensure_topics(&kafka, &kafka.topics.specs())
        .await
        .context("creating topics (is the stack up?)")?;
    let clickhouse = conf.clickhouse.with_database(&format!("bench_{run}"));
    migrate::apply(&clickhouse).await?;
    Ok(ScorerConfig {
        kafka,
        clickhouse,
        scorer: ScorerSettings {
            group_id: format!("bench-{run}"),
            health_listen: "127.0.0.1:0".parse()?,
            ..conf.scorer
        },
        trust: conf.trust,
        verdict: conf.verdict,
    })
}

async fn publish(kafka: &KafkaSettings, signals: &[Signal]) -> anyhow::Result<()> {
    let producer: FutureProducer = kafka.producer_config("bench").create()?;
    for chunk in signals.chunks(10_000) {
        let encoded: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|s| (s.key.partition_key(), codec::encode_signal(s)))
            .collect();
        let sends = encoded.iter().map(|(k, v)| {
            producer.send(
                FutureRecord::to(&kafka.topics.signals).key(k).payload(v),
                Duration::from_secs(60),
            )
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| e)?;
        }
    }
    Ok(())
}

async fn count(client: &clickhouse::Client, sql: &str) -> anyhow::Result<u64> {
    Ok(client.query(sql).fetch_one::<u64>().await?)
}

async fn run_scorer_until(
    config: &ScorerConfig,
    done: impl AsyncFn() -> anyhow::Result<bool>,
) -> anyhow::Result<Duration> {
    let shutdown = Shutdown::new();
    let started = Instant::now();
    let task = tokio::spawn(capsight_scorer::run(config.clone(), shutdown.clone()));
    let deadline = started + Duration::from_secs(600);
    while !done().await? {
        anyhow::ensure!(Instant::now() < deadline, "scorer did not finish in 600 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    shutdown.trigger();
    task.await??;
    Ok(elapsed)
}

async fn e2e(n: usize, keys: usize) -> anyhow::Result<()> {
    let run = format!("e2e_{}", Utc::now().timestamp_millis());
    let config = sandbox(&run).await?;
    let end = Utc::now();
    let all = signals(n, keys, end, Duration::from_secs(20 * 3600));
    let t = Instant::now();
    publish(&config.kafka, &all).await?;
    println!(
        "e2e: published {n} signals in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // raw consume of the same topic: receive and store the offset, nothing else
    let consumer: StreamConsumer = config
        .kafka
        .consumer_config("bench-raw", &format!("bench-raw-{run}"))
        .create()?;
    consumer.subscribe(&[&config.kafka.topics.signals])?;
    let started = Instant::now();
    let mut got = 0usize;
    let mut first: Option<Instant> = None;
    while got < n {
        let m = consumer.recv().await?;
        first.get_or_insert_with(Instant::now);
        let _ = m.payload();
        consumer.store_offset_from_message(&m)?;
        got += 1;
    }
    let raw_total = started.elapsed().as_secs_f64();
    let raw = first.map_or(raw_total, |f| f.elapsed().as_secs_f64());
    drop(consumer);

    let client = config.clickhouse.client()?;
    let scorer = run_scorer_until(&config, async || {
        Ok(count(&client, "SELECT count() FROM signals").await? >= n as u64)
    })
    .await?
    .as_secs_f64();
    println!(
        "e2e: raw rdkafka consume {n} msgs: {raw:.2} s from first message ({raw_total:.2} s incl. group join) = {:.0} msgs/s",
        n as f64 / raw
    );
    println!(
        "e2e: scorer (consume, decode, rebuild, score, ClickHouse insert, publish scores, store offsets): \
         {scorer:.2} s incl. group join = {:.0} signals/s; ratio to raw (both incl. join) = {:.2}",
        n as f64 / scorer,
        raw_total / scorer
    );
    drop_db(&config.clickhouse).await
}

async fn restart(n: usize, keys: usize) -> anyhow::Result<()> {
    let run = format!("restart_{}", Utc::now().timestamp_millis());
    let config = sandbox(&run).await?;
    let end = Utc::now();
    let stored = signals(
        n,
        keys,
        end - chrono::Duration::minutes(1),
        Duration::from_secs(20 * 3600),
    );
    let client = config.clickhouse.client()?;
    let t = Instant::now();
    for chunk in stored.chunks(100_000) {
        let mut insert = client.insert::<SignalRow>("signals").await?;
        for s in chunk {
            insert.write(&SignalRow::new(s, end)).await?;
        }
        insert.end().await?;
    }
    println!(
        "restart: stored {n} signals for {keys} keys in ClickHouse in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // one new signal per key on the topic: the scorer must rebuild every key's window first
    let fresh: Vec<Signal> = signals(keys, keys, end, Duration::from_secs(1))
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            s.id =
                SignalId::parse("id", &format!("fresh-{i}")).unwrap_or_else(|_| SignalId::random());
            s
        })
        .collect();
    publish(&config.kafka, &fresh).await?;
    let scores_topic = config.kafka.topics.scores.clone();
    let reader: StreamConsumer = config
        .kafka
        .consumer_config("bench-scores", &format!("bench-scores-{run}"))
        .create()?;
    reader.subscribe(&[&scores_topic])?;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let reader_task = tokio::spawn({
        let seen = seen.clone();
        async move {
            while let Ok(m) = reader.recv().await {
                if let Some(Ok(score)) = m.payload().map(codec::decode_score)
                    && let Ok(mut s) = seen.lock()
                {
                    s.insert(score.key.to_string(), score.signal_count);
                }
            }
        }
    });
    let expected_per_key = (n / keys + 1) as u64;
    let elapsed = run_scorer_until(&config, async || {
        Ok(seen
            .lock()
            .map(|s| s.len() == keys && s.values().all(|c| *c >= expected_per_key))
            .unwrap_or(false))
    })
    .await?;
    reader_task.abort();
    println!(
        "restart: {n} signals in the window over {keys} keys: start to every key's full-window score published = {:.2} s",
        elapsed.as_secs_f64()
    );
    drop_db(&config.clickhouse).await
}

async fn drop_db(ch: &ClickHouseSettings) -> anyhow::Result<()> {
    ch.server_client()?
        .query(&format!("DROP DATABASE IF EXISTS {}", ch.database))
        .execute()
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Aggregate {
            signals,
            keys,
            batch,
        } => aggregate(signals, keys, batch),
        Cmd::Memory { keys, per_key } => memory(keys, per_key),
        Cmd::E2e { signals, keys } => e2e(signals, keys).await?,
        Cmd::Restart { signals, keys } => restart(signals, keys).await?,
        Cmd::Scale { keys, per_key } => scale(keys, per_key),
        Cmd::Storage {
            signals,
            keys,
            keep,
        } => storage(signals, keys, keep).await?,
    }
    Ok(())
}
