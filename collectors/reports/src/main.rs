//! `capsight-reports`: the crowdsourced intake (HTTP, default 127.0.0.1:8088).
//! Configuration: sections `telemetry`, `kafka`, `publisher`, `tenancy`, `clickhouse`, `reports` of
//! `deploy/config/capsight.toml`, overridable by `--config` and `CAPSIGHT_*` variables.

use capsight_reports::ReportsConfig;
use capsight_runtime::{config::ConfigArgs, process::Process};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "capsight reports intake: tenants' reports and EventBridge events -> signals"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let p: Process<ReportsConfig> = Process::start("capsight-reports", &Cli::parse().config)?;
    capsight_reports::start(p.config, p.shutdown).await?;
    Ok(())
}
