//! `capsight-scorer`: parses flags, loads the `[telemetry]`, `[kafka]`, `[clickhouse]` and
//! `[scorer]` sections, starts tracing and runs [`capsight_scorer::run`] until SIGINT/SIGTERM.

use capsight_clickhouse::ClickHouseSettings;
use capsight_kafka::KafkaSettings;
use capsight_runtime::{config::ConfigArgs, shutdown::Shutdown, telemetry::TelemetrySettings};
use capsight_scorer::{ScorerConfig, ScorerSettings};
use clap::Parser;
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "capsight scorer: signals -> windowed scores in ClickHouse and capsight.scores.v1"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

/// The sections this binary reads.
#[derive(Debug, Deserialize)]
struct Config {
    telemetry: TelemetrySettings,
    kafka: KafkaSettings,
    clickhouse: ClickHouseSettings,
    scorer: ScorerSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: Config = capsight_runtime::config::load(cli.config.config.as_deref())?;
    capsight_runtime::telemetry::init("capsight-scorer", &config.telemetry)?;
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    capsight_scorer::run(
        ScorerConfig {
            kafka: config.kafka,
            clickhouse: config.clickhouse,
            scorer: config.scorer,
        },
        shutdown,
    )
    .await?;
    Ok(())
}
