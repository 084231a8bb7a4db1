//! The start of every capsight binary: install the TLS crypto provider, load the layered
//! configuration, start tracing, create the shutdown signal listening for SIGINT/SIGTERM, serve
//! Prometheus metrics (`[metrics]`). A `main.rs` parses its flags (flattening
//! [`ConfigArgs`]), calls [`Process::start`] and hands `config` and `shutdown` to its library's
//! `run`/`start`; tests call the same library function with a config and a shutdown of their own.

use serde::{Deserialize, de::DeserializeOwned};

use crate::{
    config::{ConfigArgs, ConfigError},
    metrics::{MetricsError, MetricsSettings},
    shutdown::Shutdown,
    telemetry::{TelemetryError, TelemetrySettings},
};

/// The `main` of a service that takes no flag but `--config`: parses [`ConfigArgs`] (with
/// `about` as the help), starts the [`Process`] named `name` reading `Config`, and runs
/// `run(config, shutdown)` to its end, then exports the spans still buffered
/// ([`crate::telemetry::finish`]). The binary depends on `clap`, `tokio` and `anyhow`.
#[macro_export]
macro_rules! service_main {
    ($name:literal, $about:literal, $config:ty, $run:path) => {
        #[derive(Debug, clap::Parser)]
        #[command(version, about = $about)]
        struct Cli {
            #[command(flatten)]
            config: $crate::config::ConfigArgs,
        }

        #[tokio::main]
        async fn main() -> anyhow::Result<()> {
            let cli = <Cli as clap::Parser>::parse();
            let p = $crate::process::Process::<$config>::start($name, &cli.config)?;
            let ran = $run(p.config, p.shutdown).await;
            $crate::telemetry::finish().await;
            ran?;
            Ok(())
        }
    };
}

/// Why a process could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The configuration does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Tracing could not be initialised.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// The `[telemetry]` and `[metrics]` sections, read next to a binary's own sections.
#[derive(Debug, Deserialize)]
struct Telemetry {
    telemetry: TelemetrySettings,
    metrics: MetricsSettings,
}

/// A started process: its configuration and its shutdown signal.
#[derive(Debug)]
pub struct Process<C> {
    /// The sections the binary reads.
    pub config: C,
    /// Fired by SIGINT/SIGTERM (or by code).
    pub shutdown: Shutdown,
}

impl<C: DeserializeOwned> Process<C> {
    /// Loads `C` from defaults < `--config` < environment, starts tracing for `name` from
    /// `[telemetry]`, creates the shutdown signal (listening for SIGINT/SIGTERM: call inside
    /// the tokio runtime) and serves `GET /metrics` on `name`'s `[metrics.listen]` address.
    pub fn start(name: &'static str, args: &ConfigArgs) -> Result<Self, ProcessError> {
        Self::start_with(name, args, |_| {})
    }

    /// [`Process::start`], adjusting the loaded config (flags that override keys) before
    /// tracing starts.
    pub fn start_with(
        name: &'static str,
        args: &ConfigArgs,
        adjust: impl FnOnce(&mut C),
    ) -> Result<Self, ProcessError> {
        // before any client or server builds a TLS config
        crate::tls::install_crypto_provider();
        let file = args.config.as_deref();
        let mut config: C = crate::config::load(file)?;
        adjust(&mut config);
        let Telemetry { telemetry, metrics } = crate::config::load(file)?;
        crate::telemetry::init(name, &telemetry)?;
        let shutdown = Shutdown::new();
        shutdown.listen_for_signals();
        crate::metrics::serve(name, &metrics, shutdown.clone())?;
        Ok(Self { config, shutdown })
    }
}

/// A `kB` line of `/proc/self/status` (`VmRSS:`, `VmHWM:`) in bytes, for benchmarks that
/// report their memory; 0 where it cannot be read (not Linux, or no such line).
pub fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}
