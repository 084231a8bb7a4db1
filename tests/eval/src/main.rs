//! `capsight-eval`: `run` one scenario + workload pair, the whole `suite` of the library
//! (`tests/eval/library`), or `fit` the model on runs already made. See `docs/evaluation.md`.

use std::path::PathBuf;

use anyhow::Context as _;
use capsight_eval::run::{self, RunOptions};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "capsight-eval",
    about = "Measure capsight's verdicts and time-to-GPU against cloudsim's ground truth"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario + workload pair.
    Run {
        /// cloudsim scenario file.
        #[arg(long)]
        scenario: PathBuf,
        /// Workload file.
        #[arg(long)]
        workload: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Fit the model's priors and feature weights on the signals and samples that earlier
    /// runs exported (every capsight arm under the given directories), with leave-one-pair-out
    /// cross-validation; writes `fit.md` and `fitted.toml` into `--out`.
    Fit {
        /// Run or suite output directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Where to write the report and the fitted config.
        #[arg(long, default_value = ".capsight/eval/fit")]
        out: PathBuf,
    },
    /// Run every pair of the library.
    Suite {
        /// Directory of `<pair>/{scenario,workload}.toml`.
        #[arg(long)]
        library: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
struct Common {
    /// Comma-separated arms: capsight, capsight-no-reports, capsight-no-probes,
    /// blind-failover, ice-cache, placement-score, oracle (default: all).
    #[arg(long, value_delimiter = ',')]
    strategies: Vec<String>,
    /// Seed (default: the scenario's).
    #[arg(long)]
    seed: Option<u64>,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 30.0)]
    time_scale: f64,
    /// Runs with the same seed, to measure the noise.
    #[arg(long, default_value_t = 1)]
    repeats: u32,
    /// Output directory (default .capsight/eval/<timestamp>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not run `deploy/local/stack up` first.
    #[arg(long)]
    no_stack_up: bool,
    /// A model profile merged into every capsight arm's config (e.g. `capsight-eval fit`'s
    /// `fitted.toml`, or `deploy/config/model-fitted.toml`); its durations are production time,
    /// divided by `--time-scale` like every cadence. Default: the shipped defaults.
    #[arg(long)]
    model: Option<PathBuf>,
}

impl Common {
    fn options(&self, scenario: PathBuf, workload: PathBuf) -> anyhow::Result<RunOptions> {
        anyhow::ensure!(
            self.time_scale.is_finite() && self.time_scale > 0.0,
            "--time-scale must be above 0"
        );
        let model = match &self.model {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("--model {}", path.display()))?;
                Some(
                    text.parse::<toml::Table>()
                        .with_context(|| format!("--model {}: not TOML", path.display()))?,
                )
            }
        };
        let out = self.out.clone().unwrap_or_else(|| {
            run::repo_root()
                .join(".capsight/eval")
                .join(chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string())
        });
        Ok(RunOptions {
            scenario,
            workload,
            arms: if self.strategies.is_empty() {
                run::default_arms()
            } else {
                self.strategies.clone()
            },
            seed: self.seed,
            time_scale: self.time_scale,
            repeats: self.repeats.max(1),
            out,
            stack_up: !self.no_stack_up,
            model,
            command: std::env::args().collect::<Vec<_>>().join(" "),
        })
    }
}

/// `work`, or an error when SIGINT or SIGTERM comes first: `work` is then dropped, and with it
/// the guards of every process it started (an interrupted run leaves no pipeline behind).
async fn interruptible<T>(work: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    let shutdown = capsight_runtime::shutdown::Shutdown::new();
    shutdown.listen_for_signals();
    tokio::select! {
        out = work => Ok(out),
        () = shutdown.wait() => anyhow::bail!("interrupted; the arm's processes were stopped"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // a suite runs for most of an hour: the test kit's watchdog is for test binaries
    capsight_testkit::process::no_watchdog();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().command {
        Command::Run {
            scenario,
            workload,
            common,
        } => {
            let opts = common.options(scenario, workload)?;
            let report = interruptible(run::run(&opts))
                .await?
                .context("evaluation run")?;
            println!("{}", run::console_summary(&report));
            println!("report: {}", opts.out.join("report.md").display());
        }
        Command::Fit { runs, out } => {
            use capsight_eval::fit;
            let data = fit::Dataset::load(&runs).context("fitting data")?;
            eprintln!(
                "fitting on {} pairs ({} sample points); leave-one-pair-out first",
                data.pairs.len(),
                data.pairs.iter().map(fit::Pair::points).sum::<usize>()
            );
            let folds = fit::cross_validate(&data).context("cross-validation")?;
            let all: Vec<&fit::Pair> = data.pairs.iter().collect();
            let (fitted, objective) = fit::fit(&all);
            std::fs::create_dir_all(&out).with_context(|| format!("{}", out.display()))?;
            let report = fit::report(&data, &folds, &fitted);
            std::fs::write(out.join("fit.md"), &report).context("fit.md")?;
            std::fs::write(out.join("fitted.toml"), fitted.to_toml()).context("fitted.toml")?;
            println!("{report}");
            println!("mean Brier {objective:.4}; written to {}", out.display());
        }
        Command::Suite { library, common } => {
            let library = library.unwrap_or_else(|| run::repo_root().join("tests/eval/library"));
            let opts = common.options(PathBuf::new(), PathBuf::new())?;
            interruptible(capsight_eval::suite::suite(&library, &opts))
                .await?
                .context("evaluation suite")?;
            println!("summary: {}", opts.out.join("summary.md").display());
        }
    }
    Ok(())
}
