//! One run: a scenario and a workload replayed under every chosen arm, concurrently, each arm
//! with its own cloudsim (same scenario, seed and time scale) and, for capsight arms, its own
//! pipeline; `--repeats` runs it all again with the same seed to measure the noise.
//!
//! Contract: [`run`] brings the local stack up unless told not to, prints a progress line about
//! every 10 s (simulated time and requests done per arm), and always cleans up — every process
//! stopped, every database dropped — also when an arm fails or on Ctrl-C; it writes the report
//! into `out` and returns it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use capsight_catalog::Catalog;
use capsight_cloudsim::scenario::Scenario;

use crate::{
    cloud::Hands,
    pipeline::{self, Pipeline},
    replay::{self, Arm, ArmSetup, Replayed, Strategy},
    report::{self, ArmSummary, Machine, ProbeSpend, Report},
    workload::Workload,
    world::{Truth, WebhookTarget, World},
};

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The scenario is unusable.
    #[error("scenario {path}: {message}")]
    Scenario {
        /// File.
        path: String,
        /// Why.
        message: String,
    },
    /// The workload is unusable.
    #[error("workload {path}: {source}")]
    Workload {
        /// File.
        path: String,
        /// Why.
        source: crate::workload::WorkloadError,
    },
    /// An arm name is unknown.
    #[error("unknown strategy {0:?} (known: {known})", known = replay::ARMS.join(", "))]
    Arm(String),
    /// The local stack did not come up.
    #[error("deploy/local/stack up failed: {0}")]
    Stack(String),
    /// The catalog could not be loaded.
    #[error("GPU catalog: {0}")]
    Catalog(String),
    /// Binaries are missing.
    #[error(transparent)]
    Pipeline(#[from] pipeline::PipelineError),
    /// The report could not be written.
    #[error("writing the report to {path}: {source}")]
    Write {
        /// Directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Interrupted by Ctrl-C (after cleaning up).
    #[error("interrupted")]
    Interrupted,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Scenario file.
    pub scenario: PathBuf,
    /// Workload file.
    pub workload: PathBuf,
    /// Arms ([`replay::ARMS`]).
    pub arms: Vec<String>,
    /// Seed; default the scenario's.
    pub seed: Option<u64>,
    /// Simulated seconds per real second.
    pub time_scale: f64,
    /// Repeats with the same seed.
    pub repeats: u32,
    /// Output directory.
    pub out: PathBuf,
    /// Run `deploy/local/stack up` first.
    pub stack_up: bool,
    /// A model profile (a config fragment such as `capsight-eval fit`'s `fitted.toml`) merged
    /// into every capsight arm's config; `None` runs the shipped defaults.
    pub model: Option<toml::Table>,
    /// The command line, for the report.
    pub command: String,
}

/// The arms of a run unless `--strategies` says otherwise: every arm.
pub fn default_arms() -> Vec<String> {
    replay::ARMS.iter().map(|s| (*s).to_owned()).collect()
}

/// The repository root (the harness is built in-tree).
pub fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(Path::parent)
        .map_or(here.clone(), Path::to_path_buf)
}

/// The commit of the checkout, or `unknown`.
pub fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Runs `deploy/local/stack up` (idempotent).
pub async fn stack_up() -> Result<(), RunError> {
    let root = repo_root();
    let out = tokio::process::Command::new(root.join("deploy/local/stack"))
        .arg("up")
        .current_dir(&root)
        .output()
        .await
        .map_err(|e| RunError::Stack(e.to_string()))?;
    if !out.status.success() {
        return Err(RunError::Stack(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .join(" | ")
        )));
    }
    Ok(())
}

/// One arm's outcome.
#[derive(Debug)]
struct ArmRun {
    summary: ArmSummary,
}

async fn probe_spend(p: &Pipeline, scale: f64, end_seconds: f64) -> Option<ProbeSpend> {
    let client = p.clickhouse()?;
    let sql = capsight_clickhouse::sql::PROBE_SPEND_TOTAL.sql;
    let bytes = client
        .query(sql)
        .fetch_bytes("TSV")
        .ok()?
        .collect()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let cols: Vec<&str> = text.trim().split('\t').collect();
    let probes: u64 = cols.first()?.parse().ok()?;
    let keys: u64 = cols.get(1)?.parse().ok()?;
    let usd_recorded: f64 = cols.get(2)?.parse().ok()?;
    let usd = usd_recorded * scale;
    let days = end_seconds / 86_400.0;
    Some(ProbeSpend {
        probes,
        keys,
        usd_recorded,
        usd,
        usd_per_key_day: (keys > 0 && days > 0.0).then(|| usd / keys as f64 / days),
    })
}

/// Writes every signal the arm's pipeline stored to `path`, one JSON line each, with its
/// observation time in simulated seconds (the data set `capsight-eval fit` replays).
async fn export_signals(p: &Pipeline, world: &World, path: &Path) -> Result<usize, String> {
    use std::io::Write as _;
    let client = p.clickhouse().ok_or("no ClickHouse client")?;
    let rows: Vec<capsight_clickhouse::rows::SignalRow> = client
        .query(capsight_clickhouse::sql::ALL_SIGNALS.sql)
        .fetch_all()
        .await
        .map_err(|e| e.to_string())?;
    let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut out = std::io::BufWriter::new(file);
    for row in &rows {
        let at = chrono::DateTime::from_timestamp(
            i64::from(row.observed_at),
            u32::from(row.observed_ms) * 1_000_000,
        )
        .unwrap_or_default();
        let line = crate::fit::FitSignal {
            t: world.sim_at(at),
            row: row.clone(),
        };
        serde_json::to_writer(&mut out, &line).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(rows.len())
}

struct ArmInput {
    arm: Arm,
    scenario: Scenario,
    workload: Workload,
    seed: u64,
    scale: f64,
    model: Option<toml::Table>,
    dir: PathBuf,
    catalog: Arc<Catalog>,
    operator: String,
    done: Arc<AtomicUsize>,
    clock: Arc<std::sync::Mutex<Option<Arc<World>>>>,
    cancel: tokio::sync::watch::Receiver<bool>,
}

fn failed_summary(arm: &Arm, workload: &Workload, why: &str) -> ArmSummary {
    let replayed = Replayed {
        requests: workload
            .expand()
            .into_iter()
            .map(|r| replay::RequestResult::failed(r.id, r.tenant, 0.0, why.to_owned()))
            .collect(),
        ..Replayed::default()
    };
    report::summarize(&arm.name, arm.strategy, &replayed, None, None, 0.0)
}

async fn run_arm(input: ArmInput) -> ArmRun {
    let ArmInput {
        arm,
        scenario,
        workload,
        seed,
        scale,
        model,
        dir,
        catalog,
        operator,
        done,
        clock,
        mut cancel,
    } = input;
    let _ = std::fs::create_dir_all(&dir);
    let capsight = arm.strategy == Strategy::Capsight;
    let mut pipeline = if capsight {
        Some(Pipeline::prepare(&arm.name, &workload, &dir).await)
    } else {
        None
    };
    let work = async {
        let webhook = match &pipeline {
            Some(p) if !arm.ablation.no_reports => Some(WebhookTarget {
                url: format!("http://{}/v1/events", p.reports),
                account_keys: p.account_keys.clone(),
            }),
            _ => None,
        };
        let world = Arc::new(
            World::start(scenario.clone(), seed, scale, webhook)
                .await
                .map_err(|e| e.to_string())?,
        );
        if let Ok(mut c) = clock.lock() {
            *c = Some(Arc::clone(&world));
        }
        let mut gateway = None;
        if let Some(p) = pipeline.as_mut() {
            p.spawn(
                &scenario,
                scale,
                &world.url(),
                &operator,
                arm.ablation,
                model.as_ref(),
            )
            .await
            .map_err(|e| e.to_string())?;
            gateway = Some((p.channel(), p.keys.clone()));
        }
        let hands = Hands::new(
            &world,
            &operator,
            &workload.tenants,
            Arc::clone(&catalog),
            &workload.image_id,
        )
        .map_err(|e| e.to_string())?;
        let setup = ArmSetup {
            arm: arm.clone(),
            world: Arc::clone(&world),
            hands,
            catalog: Arc::clone(&catalog),
            gateway,
            done: Arc::clone(&done),
        };
        let replayed = replay::replay(setup, &workload).await;
        let end = world.now();
        let truth: Option<Truth> = world.truth().await.ok();
        Ok::<_, String>((replayed, truth, end, world))
    };
    let result = tokio::select! {
        r = work => Some(r),
        _ = cancel.changed() => None,
    };
    let mut summary = match result {
        Some(Ok((replayed, truth, end, world))) => {
            let probes = match &pipeline {
                Some(p) => probe_spend(p, scale, end).await,
                None => None,
            };
            if let Some(p) = &pipeline {
                match export_signals(p, &world, &dir.join(crate::fit::SIGNALS_FILE)).await {
                    Ok(n) => tracing::info!(arm = %arm.name, signals = n, "fitting data exported"),
                    Err(e) => eprintln!("arm {}: signals not exported: {e}", arm.name),
                }
                if let Ok(json) = serde_json::to_string(&replayed.samples) {
                    let _ = std::fs::write(dir.join(crate::fit::SAMPLES_FILE), json);
                }
            }
            if let Ok(json) = serde_json::to_string_pretty(&replayed.requests) {
                let _ = std::fs::write(dir.join("requests.json"), json);
            }
            if let Some(t) = &truth
                && let Ok(json) = serde_json::to_string(&t.stock)
            {
                let _ = std::fs::write(dir.join("truth.json"), json);
            }
            report::summarize(
                &arm.name,
                arm.strategy,
                &replayed,
                truth.as_ref(),
                probes,
                end,
            )
        }
        Some(Err(e)) => {
            eprintln!("arm {} failed: {e}", arm.name);
            failed_summary(&arm, &workload, &e)
        }
        None => failed_summary(&arm, &workload, "interrupted"),
    };
    if let Some(p) = pipeline.take() {
        let unclean = p.stop().await;
        for u in unclean {
            summary.errors.push(format!("pipeline: {u}"));
        }
    }
    ArmRun { summary }
}

/// Runs `opts`; see the module contract.
pub async fn run(opts: &RunOptions) -> Result<Report, RunError> {
    let started = chrono::Utc::now();
    let t0 = Instant::now();
    let scenario = Scenario::load(&opts.scenario).map_err(|e| RunError::Scenario {
        path: opts.scenario.display().to_string(),
        message: e.to_string(),
    })?;
    let wl_err = |source| RunError::Workload {
        path: opts.workload.display().to_string(),
        source,
    };
    let workload = Workload::load(&opts.workload).map_err(wl_err)?;
    let catalog = Arc::new(Catalog::embedded().map_err(|e| RunError::Catalog(e.to_string()))?);
    workload
        .check_against(&scenario, &catalog)
        .map_err(wl_err)?;
    let operator = workload.operator_key(&scenario).unwrap_or_default();
    let arms: Vec<Arm> = opts
        .arms
        .iter()
        .map(|a| Arm::parse(a).ok_or_else(|| RunError::Arm(a.clone())))
        .collect::<Result<_, _>>()?;
    if arms.iter().any(|a| a.strategy == Strategy::Capsight) {
        pipeline::check_binaries()?;
    }
    if opts.stack_up {
        println!("bringing the local stack up (deploy/local/stack up)");
        stack_up().await?;
    }
    let seed = opts.seed.unwrap_or(scenario.seed);
    let total = workload.expand().len();
    let horizon = workload.horizon().as_secs_f64();
    println!(
        "{}: {} requests, {} arms, seed {seed}, {}x: about {:.0} simulated minutes, {:.1} real minutes per repeat",
        workload.name,
        total,
        arms.len(),
        opts.time_scale,
        horizon / 60.0,
        horizon / opts.time_scale / 60.0
    );
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    let mut repeats = Vec::new();
    let mut interrupted = false;
    for rep in 0..opts.repeats.max(1) {
        let mut handles = Vec::new();
        let mut progress = Vec::new();
        for arm in &arms {
            let done = Arc::new(AtomicUsize::new(0));
            let clock = Arc::new(std::sync::Mutex::new(None));
            progress.push((arm.name.clone(), Arc::clone(&done), Arc::clone(&clock)));
            let dir = opts.out.join(format!("repeat-{}", rep + 1)).join(&arm.name);
            handles.push(tokio::spawn(run_arm(ArmInput {
                arm: arm.clone(),
                scenario: scenario.clone(),
                workload: workload.clone(),
                seed,
                scale: opts.time_scale,
                model: opts.model.clone(),
                dir,
                catalog: Arc::clone(&catalog),
                operator: operator.clone(),
                done,
                clock,
                cancel: cancel_rx.clone(),
            })));
        }
        let all = futures::future::join_all(handles);
        tokio::pin!(all);
        let mut ticker = tokio::time::interval(std::time::Duration::from_secs(10));
        ticker.tick().await;
        let results = loop {
            tokio::select! {
                r = &mut all => break r,
                _ = ticker.tick() => {
                    let line: Vec<String> = progress.iter().map(|(name, done, clock)| {
                        let sim = clock.lock().ok().and_then(|c| c.as_ref().map(|w| w.now())).unwrap_or(0.0);
                        format!("{name} {:.0}m {}/{total}", sim / 60.0, done.load(Ordering::Relaxed))
                    }).collect();
                    println!("[repeat {} +{:.0}s] {}", rep + 1, t0.elapsed().as_secs_f64(), line.join(" | "));
                }
                _ = tokio::signal::ctrl_c(), if !interrupted => {
                    eprintln!("Ctrl-C: stopping every arm and cleaning up");
                    interrupted = true;
                    let _ = cancel_tx.send(true);
                }
            }
        };
        let mut summaries = Vec::new();
        for (r, arm) in results.into_iter().zip(&arms) {
            match r {
                Ok(a) => summaries.push(a.summary),
                Err(e) => summaries.push(failed_summary(
                    arm,
                    &workload,
                    &format!("arm panicked: {e}"),
                )),
            }
        }
        repeats.push(summaries);
        if interrupted {
            break;
        }
    }
    let mut report = Report {
        name: workload.name.clone(),
        command: opts.command.clone(),
        scenario: opts.scenario.display().to_string(),
        workload: opts.workload.display().to_string(),
        seed,
        time_scale: opts.time_scale,
        commit: commit(),
        machine: Machine::here(),
        started: started.to_rfc3339(),
        real_seconds: t0.elapsed().as_secs_f64(),
        warmup_minutes: workload.warmup.as_secs_f64() / 60.0,
        repeats,
        noise: Vec::new(),
    };
    report.compute_noise();
    report.write(&opts.out).map_err(|source| RunError::Write {
        path: opts.out.display().to_string(),
        source,
    })?;
    if interrupted {
        return Err(RunError::Interrupted);
    }
    Ok(report)
}

/// One line per arm of the first repeat, for the console.
pub fn console_summary(report: &Report) -> String {
    let mut lines = BTreeMap::new();
    for (i, a) in report.repeats.first().into_iter().flatten().enumerate() {
        lines.insert(
            i,
            format!(
                "{:<22} satisfied {:>3}/{:<3} failed attempts {:>3}  p50 {:>6} min  p90 {:>6} min",
                a.arm,
                a.satisfied,
                a.requests,
                a.failed_attempts,
                a.minutes_to_running
                    .0
                    .map_or_else(|| "-".into(), |v| format!("{v:.1}")),
                a.minutes_to_running
                    .1
                    .map_or_else(|| "-".into(), |v| format!("{v:.1}")),
            ),
        );
    }
    lines.into_values().collect::<Vec<_>>().join("\n")
}
