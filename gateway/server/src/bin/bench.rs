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
//!
//! `capsight-gateway-bench view` (in process, no stack): resident memory of a [`ScoresView`]
//! holding `--keys` scores, and the cost of a `GetScore` lookup and of a `ListScores` page at
//! that size, the page both as the handler computes it ([`ScoresView::page`]) and as it did
//! before (every match after the token collected, plus a second full pass for the total).
//!
//! `capsight-gateway-bench tenants` (in process): the admission every RPC goes through (API key
//! check against the tenant registry, rate limiter, tenant hash) with 100 to 10 000 tenants.
//!
//! `capsight-gateway-bench amqp` (the stack's RabbitMQ): launch jobs published through the
//! gateway's [`JobPublisher`] (confirms, `mandatory`, the job size of a real `LaunchJob`), one
//! publisher and several, then consumed with the launcher's manual acks and prefetch.

#![allow(clippy::print_stdout, reason = "a benchmark prints its results")]

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use capsight_gateway::{jobs::JobPublisher, view::ScoresView};
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
    /// Scores-view memory and lookup/page cost at `keys` keys (in process).
    View {
        #[arg(long, default_value_t = 1_000_000)]
        keys: usize,
        /// Evidence entries per score (the scorer's `scale` bench prints the mean).
        #[arg(long, default_value_t = 4)]
        evidence: usize,
        /// ListScores page size.
        #[arg(long, default_value_t = 100)]
        page_size: usize,
    },
    /// Admission cost per request against registries of these sizes (in process).
    Tenants {
        #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
        tenants: Vec<usize>,
        /// API keys per tenant.
        #[arg(long, default_value_t = 2)]
        keys_per_tenant: usize,
    },
    /// Launch-job throughput through RabbitMQ: publish with confirms, consume with acks.
    Amqp {
        #[arg(long, default_value_t = 5_000)]
        jobs: usize,
        /// Concurrent publishers (each its own connection, as separate gateway replicas).
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        /// Consumer prefetch (the launcher's `launcher.prefetch`).
        #[arg(long, default_value_t = 4)]
        prefetch: u16,
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

        market_usd_per_hour: None,
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

/// Key `k` of a synthetic set as large as asked: real regions and zones, numbered sizes.
fn synthetic_key(k: usize) -> Option<CapacityKey> {
    const REGIONS: [(&str, &str); 4] = [
        ("us-east-1", "use1"),
        ("us-west-2", "usw2"),
        ("eu-west-1", "euw1"),
        ("ap-northeast-1", "apne1"),
    ];
    let (region, prefix) = REGIONS[k % 4];
    let zone = format!("{prefix}-az{}", k / 4 % 4 + 1);
    let market = if (k / 16).is_multiple_of(2) {
        Market::OnDemand
    } else {
        Market::Spot
    };
    let it = format!("p5e.{}xlarge", k / 32);
    CapacityKey::parse("aws", region, &zone, &it, market).ok()
}

fn evidence_score(key: CapacityKey, value: u8, evidence: usize) -> Score {
    let features = [
        Feature::LaunchSuccessRate,
        Feature::CapacityErrorRatio,
        Feature::ProvisioningLatency,
        Feature::SpotStability,
        Feature::ReservableSupply,
        Feature::CatalogExposure,
    ];
    let mut s = sample_score(key, value);
    s.evidence = (0..evidence)
        .map(|i| Evidence {
            feature: features[i % features.len()],
            value: 0.5 + i as f64 / 10.0,
            contribution: 10.0 - i as f64,
            samples: 40,
        })
        .collect();
    s
}

/// The ListScores page as the handler computed it before [`ScoresView::page`]: every match
/// after the token collected, and for a later page a second full pass for the total.
fn old_page(
    view: &ScoresView,
    after: Option<&str>,
    size: usize,
    keep: impl Fn(&Score) -> bool,
) -> (usize, usize) {
    let matches = view.select(after, &keep);
    let page = matches.iter().take(size).count();
    let total = if after.is_none() {
        matches.len()
    } else {
        view.select(None, &keep).len()
    };
    (page, total)
}

/// Mean time of `f` over `runs` runs, in ms.
fn mean_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..runs {
        f();
    }
    t.elapsed().as_secs_f64() * 1e3 / runs as f64
}

fn view_bench(n: usize, evidence: usize, page_size: usize) -> anyhow::Result<()> {
    let before = capsight_runtime::process::status_bytes("VmRSS:");
    let view = ScoresView::new();
    let t = Instant::now();
    let mut names = Vec::with_capacity(1000);
    for k in 0..n {
        let key = synthetic_key(k).context("synthetic key")?;
        if k % (n / 1000).max(1) == 0 {
            names.push(key.to_string());
        }
        let name = key.to_string();
        view.apply(&name, Some(evidence_score(key, (k % 101) as u8, evidence)));
    }
    let fill = t.elapsed().as_secs_f64();
    let after = capsight_runtime::process::status_bytes("VmRSS:");
    anyhow::ensure!(view.len() == n, "view holds {} of {n} keys", view.len());
    let grown = after.saturating_sub(before) as f64;
    println!(
        "view: {n} scores with {evidence} evidence entries each, applied in {fill:.1} s: RSS +{:.1} MiB = {:.0} bytes per key",
        grown / 1_048_576.0,
        grown / n as f64
    );
    let lookups = 1_000_000;
    let t = Instant::now();
    let mut found = 0usize;
    for i in 0..lookups {
        found += usize::from(view.get(&names[i % names.len()]).is_some());
    }
    println!(
        "view: GetScore lookup: {:.0} ns ({found} of {lookups} found)",
        t.elapsed().as_secs_f64() * 1e9 / lookups as f64
    );
    let middle = names.get(names.len() / 2).map(String::as_str);
    let everything = |_: &Score| true;
    let one_region = |s: &Score| s.key.region.as_str() == "us-west-2";
    println!("| ListScores page ({page_size}) | before: select | after: page |");
    println!("|---|---:|---:|");
    for (what, after, prefix, keep) in [
        ("no filter, first page", None, "", None),
        ("no filter, a middle page", middle, "", None),
        (
            "region filter, first page",
            None,
            "aws/us-west-2/",
            Some(&one_region as &dyn Fn(&Score) -> bool),
        ),
    ] {
        let old_keep = |s: &Score| keep.is_none_or(|k| k(s)) && everything(s);
        let runs = 5;
        let mut old = (0, 0);
        let before = mean_ms(runs, || old = old_page(&view, after, page_size, old_keep));
        let mut new = (0, 0);
        let now = mean_ms(runs, || {
            let p = view.page(prefix, after, page_size, keep);
            new = (p.scores.len(), p.total);
        });
        anyhow::ensure!(
            old == new,
            "{what}: page/total {old:?} before, {new:?} after"
        );
        println!(
            "| {what} (total {}) | {before:.2} ms | {now:.3} ms |",
            new.1
        );
    }
    println!(
        "view: peak RSS {:.1} MiB",
        capsight_runtime::process::status_bytes("VmHWM:") as f64 / 1_048_576.0
    );
    Ok(())
}

fn tenants_bench(sizes: &[usize], keys_per_tenant: usize) -> anyhow::Result<()> {
    use capsight_tenancy::{SharedRegistry, TenantHasher, admission::Admission};
    let dir = std::env::temp_dir().join(format!("capsight-bench-tenants-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    println!(
        "| tenants | keys | registry file | admit (key check + limiter + hash) | lookups/s on one core |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for &n in sizes {
        let path = dir.join(format!("tenants-{n}.toml"));
        let mut reg = Registry::default();
        let mut keys = Vec::new();
        for t in 0..n {
            let id = TenantId::parse(&format!("tenant-{t:05}"))?;
            reg.add_tenant(id.clone(), &format!("Tenant {t}"))?;
            for _ in 0..keys_per_tenant {
                keys.push(reg.issue_key(&id)?.key);
            }
        }
        for t in &mut reg.tenants {
            t.rate_per_minute = Some(u32::MAX);
        }
        reg.save(&path)?;
        let file = std::fs::metadata(&path)?.len();
        let shared = SharedRegistry::open(path, Duration::from_secs(3600))?;
        let admission = Admission::new(
            shared,
            TenantHasher::new(&"bench-secret".to_owned().into()),
            600,
        );
        // keys spread over the registry, each admitted many times
        let runs = 200_000;
        let t = Instant::now();
        for i in 0..runs {
            let key = &keys[(i * 7919) % keys.len()];
            admission
                .admit(Some(key))
                .map_err(|d| anyhow::anyhow!("{d:?}"))?;
        }
        let per = t.elapsed().as_secs_f64() / runs as f64;
        println!(
            "| {n} | {} | {:.0} KiB | {:.2} us | {:.0} |",
            keys.len(),
            file as f64 / 1024.0,
            per * 1e6,
            1.0 / per
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[derive(Debug, serde::Deserialize)]
struct AmqpConf {
    amqp: capsight_amqp::AmqpSettings,
}

/// A launch job as the gateway builds it, with every field a real one carries.
fn launch_job(i: usize) -> v1::LaunchJob {
    let key = synthetic_key(i % 1000).map(|k| v1::CapacityKey::from(&k));
    v1::LaunchJob {
        job_id: uuid::Uuid::now_v7().to_string(),
        tenant: "tenant-0042".into(),
        tenant_hash: "3f9a2c4e8b7d6a5f1e0d9c8b7a6f5e4d".into(),
        created_at: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp(),
            nanos: 0,
        }),
        spec: Some(v1::LaunchSpec {
            key,
            count: 2,
            image_id: "ami-0123456789abcdef0".into(),
            subnet_id: "subnet-0a1b2c3d4e5f67890".into(),
            spot_max_price: 0.0,
        }),
        constraints: Some(v1::Constraints {
            allowed_regions: vec!["us-east-1".into(), "us-west-2".into()],
            max_usd_per_gpu_hour: 12.5,
            markets: vec![],
            interruptible: false,
            allow_substitutes: true,
            allow_other_providers: false,
            min_label: 0,
            limit: 3,
        }),
        max_fallbacks: 3,
        warm_standby: false,
        max_lifetime_seconds: 86_400,
        idle_ttl_seconds: 3_600,
        preflight_decision: 1,
    }
}

async fn amqp_bench(jobs: usize, publishers: usize, prefetch: u16) -> anyhow::Result<()> {
    use futures::StreamExt;
    use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
    use prost::Message;

    let conf: AmqpConf = capsight_runtime::config::load(None)?;
    let mut settings = conf.amqp;
    settings.launch = settings
        .launch
        .prefixed(&format!("bench{}", chrono::Utc::now().timestamp_millis()));
    let size = launch_job(0).encode_to_vec().len();
    // one publisher, one job at a time: a gateway replica (its publisher holds one channel)
    let one = JobPublisher::new(settings.clone(), Duration::from_secs(30));
    one.connect().await?;
    let single = jobs / 4;
    let t = Instant::now();
    for i in 0..single {
        one.publish(&launch_job(i)).await?;
    }
    let one_secs = t.elapsed().as_secs_f64();
    println!(
        "amqp: {single} jobs of {size} bytes, one publisher (confirm per job): {one_secs:.2} s = {:.0} jobs/s, {:.2} ms per job",
        single as f64 / one_secs,
        one_secs * 1e3 / single as f64
    );
    // several publishers at once: several gateway replicas
    let many: Vec<Arc<JobPublisher>> = (0..publishers)
        .map(|_| Arc::new(JobPublisher::new(settings.clone(), Duration::from_secs(30))))
        .collect();
    for p in &many {
        p.connect().await?;
    }
    let rest = jobs - single;
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (w, p) in many.iter().enumerate() {
        let p = Arc::clone(p);
        let share = rest / publishers + usize::from(w < rest % publishers);
        tasks.spawn(async move {
            for i in 0..share {
                p.publish(&launch_job(i)).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let many_secs = t.elapsed().as_secs_f64();
    println!(
        "amqp: {rest} jobs, {publishers} publishers at once: {many_secs:.2} s = {:.0} jobs/s",
        rest as f64 / many_secs
    );
    // consume everything with manual acks and the launcher's prefetch
    let conn = settings.connect().await?;
    let channel = conn.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            settings.launch.jobs_queue.as_str().into(),
            "bench".into(),
            BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await?;
    let t = Instant::now();
    let mut got = 0usize;
    while got < jobs {
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .context("no delivery within 30 s")?
            .context("consumer ended")??;
        v1::LaunchJob::decode(delivery.data.as_slice())?;
        delivery.ack(BasicAckOptions::default()).await?;
        got += 1;
    }
    let consume_secs = t.elapsed().as_secs_f64();
    println!(
        "amqp: consumed and acked {got} jobs with prefetch {prefetch}: {consume_secs:.2} s = {:.0} jobs/s",
        got as f64 / consume_secs
    );
    settings.launch.delete(&channel).await?;
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
        Cmd::View {
            keys,
            evidence,
            page_size,
        } => view_bench(keys, evidence, page_size),
        Cmd::Tenants {
            tenants,
            keys_per_tenant,
        } => tenants_bench(&tenants, keys_per_tenant),
        Cmd::Amqp {
            jobs,
            publishers,
            prefetch,
        } => amqp_bench(jobs, publishers, prefetch).await,
    }
}
