//! `capsight-collector-kit`: the process shape every collector binary shares, so each `main.rs`
//! is one [`collector_main!`] line and each library one `run(&Collector<Config>, once)`.
//!
//! [`Collector::start`] parses nothing itself: the binary's `clap` parser flattens
//! [`CollectorArgs`]. It then starts the process ([`capsight_runtime::process`]: the layered
//! configuration — the sections every collector reads, `[telemetry]`, `[kafka]`,
//! `[publisher]`, plus the collector's own, `S` — tracing and the shutdown signal), loads the
//! GPU catalog and creates the signal publisher (with its periodic buffer report).
//! [`Collector::finish`] flushes the publisher: what could not be delivered within 30 s is
//! reported as an error.

pub mod observation;

use std::{path::PathBuf, sync::Arc, time::Duration};

use capsight_catalog::{Catalog, CatalogError};
use capsight_cloud::{CloudAdapter, regional::WatchedClouds};
use capsight_kafka::KafkaSettings;
use capsight_publisher::{PublishError, Publisher, PublisherSettings};
use capsight_runtime::{
    config::ConfigArgs,
    process::{Process, ProcessError},
    shutdown::Shutdown,
};
use serde::{Deserialize, de::DeserializeOwned};

/// Why a collector process failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// Configuration or tracing.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The GPU catalog (`--catalog`).
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The signal publisher could not be created.
    #[error("creating the signal publisher: {0}")]
    Publisher(#[source] PublishError),
    /// Signals were left undelivered at shutdown.
    #[error("flushing signals at shutdown: {0}")]
    Flush(#[source] PublishError),
    /// The collector's own set-up (regions, cloud adapters, stores).
    #[error("{what}: {source}")]
    Setup {
        /// What was being set up.
        what: &'static str,
        /// Why it failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl CollectorError {
    /// A failed set-up step of a collector.
    pub fn setup(
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Setup {
            what,
            source: source.into(),
        }
    }
}

/// The `main` of a polling collector: parses [`CollectorArgs`] (with `about` as the help),
/// starts the [`Collector`] named `name` (publisher role `role`), calls `run(&collector, once)`
/// and flushes. The binary depends on `clap`, `tokio` and `anyhow`.
#[macro_export]
macro_rules! collector_main {
    ($name:literal, $role:literal, $about:literal, $run:path) => {
        #[derive(Debug, clap::Parser)]
        #[command(version, about = $about)]
        struct Cli {
            #[command(flatten)]
            args: $crate::CollectorArgs,
        }

        #[tokio::main]
        async fn main() -> anyhow::Result<()> {
            let Cli { args } = <Cli as clap::Parser>::parse();
            let c = $crate::Collector::start($name, $role, &args.config, args.catalog.as_deref())?;
            let ran = $run(&c, args.once).await;
            let flushed = c.finish().await;
            capsight_runtime::telemetry::finish().await;
            ran?;
            flushed?;
            Ok(())
        }
    };
}

/// How long the final flush may take.
const FLUSH: Duration = Duration::from_secs(30);

/// The flags every polling collector takes.
#[derive(Debug, clap::Args)]
pub struct CollectorArgs {
    #[command(flatten)]
    /// `--config PATH`.
    pub config: ConfigArgs,
    /// Run one pass, publish, flush and exit.
    #[arg(long)]
    pub once: bool,
    /// GPU catalog file (default: the catalog built into the binary).
    #[arg(long, env = "CAPSIGHT_CATALOG", value_name = "PATH")]
    pub catalog: Option<PathBuf>,
}

/// The configuration sections every collector reads, and its own (`S`, flattened: its fields
/// are sections such as `cloud` and `quota`).
#[derive(Debug, Deserialize)]
struct Sections<S> {
    kafka: KafkaSettings,
    publisher: PublisherSettings,
    #[serde(flatten)]
    own: S,
}

/// A started collector process.
#[derive(Debug)]
pub struct Collector<S> {
    /// The collector's own sections.
    pub config: S,
    /// `[kafka]`.
    pub kafka: KafkaSettings,
    /// The GPU catalog.
    pub catalog: Arc<Catalog>,
    /// Where its signals go.
    pub publisher: Publisher,
    /// Fired by SIGINT/SIGTERM.
    pub shutdown: Shutdown,
}

impl<S: DeserializeOwned> Collector<S> {
    /// Starts the process shape (see the crate doc); `name` is the binary (for telemetry),
    /// `role` the publisher's client-id suffix. Call inside the tokio runtime.
    pub fn start(
        name: &'static str,
        role: &str,
        config: &ConfigArgs,
        catalog: Option<&std::path::Path>,
    ) -> Result<Self, CollectorError> {
        let Process {
            config: sections,
            shutdown,
        } = Process::<Sections<S>>::start(name, config)?;
        let catalog = Arc::new(Catalog::load_or_embedded(catalog)?);
        let publisher = Publisher::new(&sections.kafka, &sections.publisher, role)
            .map_err(CollectorError::Publisher)?;
        publisher.spawn_report(sections.publisher.report_interval, shutdown.clone());
        Ok(Self {
            config: sections.own,
            kafka: sections.kafka,
            catalog,
            publisher,
            shutdown,
        })
    }
}

impl<S> Collector<S> {
    /// One adapter per region `clouds` watches (AWS: `aws_regions`, empty = every region the
    /// catalog lists); failing that, a set-up error of `what`.
    pub async fn adapters(
        &self,
        clouds: &WatchedClouds,
        aws_regions: &[String],
        what: &'static str,
    ) -> Result<Vec<Arc<dyn CloudAdapter>>, CollectorError> {
        clouds
            .adapters(&self.catalog, aws_regions)
            .await
            .map_err(|e| CollectorError::setup(what, e))
    }

    /// Flushes what is still buffered (at most 30 s).
    pub async fn finish(&self) -> Result<(), CollectorError> {
        self.publisher
            .flush(FLUSH)
            .await
            .map_err(CollectorError::Flush)
    }
}
