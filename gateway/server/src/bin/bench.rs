//! `capsight-gateway-bench`: GetScore / ListScores throughput and latency of the real gateway,
//! compared in the same run with a minimal tonic server that returns a constant.
//!
//! `capsight-gateway-bench run` (method in `docs/benchmarks.md`):
//! 1. publishes `--keys` scores to a fresh compacted topic, writes a tenant registry with one
//!    unlimited bench tenant;
//! 2. starts the real `capsight-gateway` (the binary next to this one) on that topic and waits
//!    for health SERVING, and starts `capsight-gateway-bench constant` (same ScoreService
//!    messages, no auth, no lookup) — both as separate processes;
//! 3. from this process, for each server and method: warm-up, then `--concurrency` client tasks
//!    over `--connections` HTTP/2 connections for `--duration`; prints throughput and latency
//!    percentiles as a Markdown table.
//!
//! Needs the local stack's Kafka (configuration as for every capsight binary).

#![allow(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use capsight_kafka::{KafkaSettings, TopicSpec, admin};
use capsight_proto::{
    codec,
    domain::{CapacityKey, Evidence, Feature, Label, Market, Score},
    v1::{
        self,
        score_service_client::ScoreServiceClient,
        score_service_server::{ScoreService, ScoreServiceServer},
    },
};
use capsight_tenancy::{Registry, TenantId};
use clap::{Parser, Subcommand};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tonic::{Request, Response, Status, transport::Channel};

#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Serve a constant ScoreService (the baseline).
    Constant {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Run the comparison.
    Run {
        /// Scores in the view.
        #[arg(long, default_value_t = 1000)]
        keys: usize,
        /// Concurrent requests in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// HTTP/2 connections shared by the client tasks.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Measured time per (server, method).
        #[arg(long, default_value = "10s", value_parser = humantime_serde::re::humantime::parse_duration)]
        duration: Duration,
        /// ListScores page size.
        #[arg(long, default_value_t = 50)]
        page_size: u32,
    },
}

fn sample_score(key: CapacityKey, value: u8) -> Score {
    Score {
        key,
        score: value,
        label: Label::for_score(value),
        confidence: 0.72,
        evidence: vec![
            Evidence {
                feature: Feature::LaunchSuccessRate,
                value: 0.82,
                contribution: 32.8,
                samples: 40,
            },
            Evidence {
                feature: Feature::CapacityErrorRatio,
                value: 0.05,
                contribution: -1.0,
                samples: 40,
            },
        ],
        window: Duration::from_secs(86_400),
        updated_at: chrono::Utc::now(),
        signal_count: 40,
    }
}

fn keys(n: usize) -> Vec<CapacityKey> {
    let catalog = capsight_catalog::Catalog::embedded().unwrap_or_else(|_| unreachable_catalog());
    let mut out = Vec::new();
    'outer: for t in catalog.iter() {
        if t.provider != capsight_proto::domain::Provider::Aws {
            continue;
        }
        for region in &t.regions {
            let prefix: String = {
                let parts: Vec<&str> = region.as_str().split('-').collect();
                match parts.as_slice() {
                    [a, b, c] => format!("{a}{}{c}", b.chars().next().unwrap_or('x')),
                    _ => continue,
                }
            };
            for az in 1..=4 {
                for market in [Market::OnDemand, Market::Spot] {
                    let zone = format!("{prefix}-az{az}");
                    if let Ok(k) = CapacityKey::parse(
                        "aws",
                        region.as_str(),
                        &zone,
                        t.instance_type.as_str(),
                        market,
                    ) {
                        out.push(k);
                        if out.len() >= n {
                            break 'outer;
                        }
                    }
                }
            }
        }
    }
    out
}

#[cold]
fn unreachable_catalog() -> ! {
    panic!("the embedded catalog is validated by its tests")
}

/// The baseline: the same messages, no auth, no lookup.
#[derive(Debug)]
struct Constant {
    score: v1::Score,
    page: v1::ListScoresResponse,
}

#[tonic::async_trait]
impl ScoreService for Constant {
    async fn get_score(
        &self,
        _: Request<v1::GetScoreRequest>,
    ) -> Result<Response<v1::Score>, Status> {
        Ok(Response::new(self.score.clone()))
    }
    async fn list_scores(
        &self,
        _: Request<v1::ListScoresRequest>,
    ) -> Result<Response<v1::ListScoresResponse>, Status> {
        Ok(Response::new(self.page.clone()))
    }
    type WatchScoresStream = futures::stream::Empty<Result<v1::ScoreTransition, Status>>;
    async fn watch_scores(
        &self,
        _: Request<v1::WatchScoresRequest>,
    ) -> Result<Response<Self::WatchScoresStream>, Status> {
        Err(Status::unimplemented("constant"))
    }
    async fn get_history(
        &self,
        _: Request<v1::GetHistoryRequest>,
    ) -> Result<Response<v1::GetHistoryResponse>, Status> {
        Err(Status::unimplemented("constant"))
    }
}

async fn constant(listen: SocketAddr, page_size: usize) -> anyhow::Result<()> {
    let ks = keys(page_size.max(1));
    let first = ks.first().cloned().context("no keys")?;
    let svc = Constant {
        score: v1::Score::from(&sample_score(first, 85)),
        page: v1::ListScoresResponse {
            scores: ks
                .into_iter()
                .map(|k| v1::Score::from(&sample_score(k, 85)))
                .collect(),
            next_page_token: "x".into(),
            total: 1000,
        },
    };
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(ScoreServiceServer::new(svc))
        .serve(listen)
        .await?;
    Ok(())
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

async fn connect(addr: SocketAddr, deadline: Duration) -> anyhow::Result<Channel> {
    let start = Instant::now();
    loop {
        match Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await
        {
            Ok(c) => return Ok(c),
            Err(e) if start.elapsed() > deadline => bail!("{addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Method {
    Get,
    List,
}

struct Result_ {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    p999: Duration,
}

#[allow(clippy::too_many_arguments)]
async fn load(
    channels: &[Channel],
    key: &str,
    method: Method,
    keys: Arc<Vec<v1::CapacityKey>>,
    concurrency: usize,
    duration: Duration,
    page_size: u32,
) -> Result_ {
    let start = Instant::now();
    let stop = start + duration;
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let mut client = ScoreServiceClient::new(channels[i % channels.len()].clone());
        let auth: tonic::metadata::MetadataValue<_> = format!("Bearer {key}")
            .parse()
            .unwrap_or_else(|_| unreachable_catalog());
        let keys = Arc::clone(&keys);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0;
            let mut n = i;
            while Instant::now() < stop {
                n = n.wrapping_add(7919);
                let t0 = Instant::now();
                let ok = match method {
                    Method::Get => {
                        let mut r = Request::new(v1::GetScoreRequest {
                            key: Some(keys[n % keys.len()].clone()),
                        });
                        r.metadata_mut().insert("authorization", auth.clone());
                        client.get_score(r).await.is_ok()
                    }
                    Method::List => {
                        let mut r = Request::new(v1::ListScoresRequest {
                            filter: None,
                            page_size,
                            page_token: String::new(),
                        });
                        r.metadata_mut().insert("authorization", auth.clone());
                        client.list_scores(r).await.is_ok()
                    }
                };
                if ok {
                    lat.push(t0.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            all.extend(l);
            errors += e;
        }
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    let pct = |p: f64| {
        if all.is_empty() {
            return Duration::ZERO;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all[i.min(all.len() - 1)]
    };
    Result_ {
        requests: all.len(),
        errors,
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        p999: pct(0.999),
    }
}

#[derive(serde::Deserialize)]
struct Conf {
    kafka: KafkaSettings,
}

struct Child(tokio::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

async fn run(
    n_keys: usize,
    concurrency: usize,
    connections: usize,
    duration: Duration,
    page_size: u32,
) -> anyhow::Result<()> {
    let kafka = capsight_runtime::config::load::<Conf>(None)?.kafka;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("bench.gw.{}.scores", &id[..12]);
    admin::ensure_topics(
        &kafka,
        &[TopicSpec {
            name: topic.clone(),
            partitions: 4,
            replication: 1,
            configs: vec![("cleanup.policy".into(), "compact".into())],
        }],
    )
    .await?;
    let producer: FutureProducer = kafka.producer_config("bench").create()?;
    let ks = keys(n_keys);
    for (i, k) in ks.iter().enumerate() {
        let s = sample_score(k.clone(), u8::try_from(i % 101).unwrap_or(50));
        producer
            .send(
                FutureRecord::to(&topic)
                    .key(&k.to_string())
                    .payload(&codec::encode_score(&s)),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    let dir = std::env::temp_dir().join(format!("capsight-bench-{id}"));
    std::fs::create_dir_all(&dir)?;
    let registry = dir.join("tenants.toml");
    let mut reg = Registry::default();
    let tenant = TenantId::parse("bench")?;
    reg.add_tenant(tenant.clone(), "bench")?;
    if let Some(t) = reg.tenants.first_mut() {
        t.rate_per_minute = Some(u32::MAX);
    }
    let api_key = reg.issue_key(&tenant)?.key;
    reg.save(&registry)?;

    let exe = std::env::current_exe()?;
    let bin_dir = exe.parent().context("exe dir")?.to_owned();
    let gateway_bin: PathBuf = bin_dir.join("capsight-gateway");
    let gw_addr = free_port()?;
    let _gateway = Child(
        tokio::process::Command::new(&gateway_bin)
            .arg("--listen")
            .arg(gw_addr.to_string())
            .env("CAPSIGHT_KAFKA__TOPICS__SCORES", &topic)
            .env("CAPSIGHT_TENANCY__REGISTRY", &registry)
            .env("CAPSIGHT_TELEMETRY__LOG_FILTER", "warn")
            // not measured here; and the default metrics port may be taken
            .env("CAPSIGHT_METRICS__ENABLED", "false")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", gateway_bin.display()))?,
    );
    let const_addr = free_port()?;
    let _constant = Child(
        tokio::process::Command::new(&exe)
            .args(["constant", "--listen", &const_addr.to_string()])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?,
    );
    // wait until the gateway's view holds every key
    let gw = connect(gw_addr, Duration::from_secs(30)).await?;
    let mut probe = ScoreServiceClient::new(gw.clone());
    let started = Instant::now();
    loop {
        let mut r = Request::new(v1::ListScoresRequest::default());
        r.metadata_mut()
            .insert("authorization", format!("Bearer {api_key}").parse()?);
        if let Ok(resp) = probe.list_scores(r).await
            && resp.get_ref().total as usize >= ks.len()
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the gateway never served all {} keys", ks.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    connect(const_addr, Duration::from_secs(30)).await?;

    let wire_keys: Arc<Vec<v1::CapacityKey>> =
        Arc::new(ks.iter().map(v1::CapacityKey::from).collect());
    println!(
        "keys={} concurrency={concurrency} connections={connections} duration={duration:?} page_size={page_size} cpus={}",
        ks.len(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!();
    println!("| server | method | requests/s | p50 | p99 | p99.9 | errors |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for method in [Method::Get, Method::List] {
        for (name, addr) in [
            ("constant tonic", const_addr),
            ("capsight-gateway", gw_addr),
        ] {
            let mut chans = Vec::new();
            for _ in 0..connections {
                chans.push(connect(addr, Duration::from_secs(10)).await?);
            }
            // warm-up
            load(
                &chans,
                &api_key,
                method,
                Arc::clone(&wire_keys),
                concurrency,
                Duration::from_secs(1),
                page_size,
            )
            .await;
            let r = load(
                &chans,
                &api_key,
                method,
                Arc::clone(&wire_keys),
                concurrency,
                duration,
                page_size,
            )
            .await;
            #[allow(clippy::cast_precision_loss)]
            let rps = r.requests as f64 / r.elapsed.as_secs_f64();
            println!(
                "| {name} | {} | {rps:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
                match method {
                    Method::Get => "GetScore",
                    Method::List => "ListScores",
                },
                r.p50.as_secs_f64() * 1e3,
                r.p99.as_secs_f64() * 1e3,
                r.p999.as_secs_f64() * 1e3,
                r.errors
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Cmd::Constant { listen } => constant(listen, 50).await,
        Cmd::Run {
            keys,
            concurrency,
            connections,
            duration,
            page_size,
        } => run(keys, concurrency, connections, duration, page_size).await,
    }
}
