//! `capsight-scorer`: reads `[telemetry]`, `[kafka]`, `[clickhouse]` and `[scorer]` and runs
//! [`capsight_scorer::run`] until SIGINT/SIGTERM.

use capsight_runtime::{config::ConfigArgs, process::Process};
use capsight_scorer::ScorerConfig;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "capsight scorer: signals -> windowed scores in ClickHouse and capsight.scores.v1"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let p: Process<ScorerConfig> = Process::start("capsight-scorer", &Cli::parse().config)?;
    capsight_scorer::run(p.config, p.shutdown).await?;
    Ok(())
}
