//! `capsight-collector-kit`: the process shape every collector binary shares, so each `main.rs`
//! only wires its own collector.
//!
//! [`Collector::start`] parses nothing itself: the binary's `clap` parser flattens
//! [`CollectorArgs`]. It then loads the layered configuration (the sections every collector
//! reads — `[telemetry]`, `[kafka]`, `[publisher]` — plus the collector's own, `S`), starts
//! tracing, loads the GPU catalog, creates the signal publisher (with its periodic buffer
//! report) and the shutdown signal (SIGINT/SIGTERM). [`Collector::finish`] flushes the
//! publisher: what could not be delivered within 30 s is reported as an error.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use capsight_catalog::Catalog;
use capsight_kafka::KafkaSettings;
use capsight_publisher::{Publisher, PublisherSettings};
use capsight_runtime::{config::ConfigArgs, shutdown::Shutdown, telemetry::TelemetrySettings};
use serde::{Deserialize, de::DeserializeOwned};

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
    telemetry: TelemetrySettings,
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
    ) -> anyhow::Result<Self> {
        let sections: Sections<S> = capsight_runtime::config::load(config.config.as_deref())?;
        capsight_runtime::telemetry::init(name, &sections.telemetry)?;
        let catalog = Arc::new(Catalog::load_or_embedded(catalog)?);
        let publisher = Publisher::new(&sections.kafka, &sections.publisher, role)
            .context("creating the signal publisher")?;
        let shutdown = Shutdown::new();
        shutdown.listen_for_signals();
        tokio::spawn({
            let (p, s) = (publisher.clone(), shutdown.clone());
            let every = sections.publisher.report_interval;
            async move { p.report(every, s).await }
        });
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
    /// Flushes what is still buffered (at most 30 s).
    pub async fn finish(&self) -> anyhow::Result<()> {
        self.publisher
            .flush(FLUSH)
            .await
            .context("flushing signals at shutdown")?;
        Ok(())
    }
}
