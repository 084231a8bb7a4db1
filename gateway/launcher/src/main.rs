//! `capsight-launcher`: consumes launch jobs from RabbitMQ and drives them to running.
//! Configuration: sections `telemetry`, `kafka`, `publisher`, `clickhouse`, `amqp`, `tenancy`,
//! `cloud`, `launcher` of `deploy/config/capsight.toml`; AWS endpoint and operator credentials
//! from the standard AWS chain (tenants' roles are assumed from there).

use capsight_launcher::LauncherConfig;
use capsight_runtime::{config::ConfigArgs, process::Process};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "capsight launcher: launch jobs from RabbitMQ -> instances in tenants' accounts"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// GPU catalog file (default: the catalog built into the binary).
    #[arg(long, env = "CAPSIGHT_CATALOG", value_name = "PATH")]
    catalog: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let p: Process<LauncherConfig> = Process::start("capsight-launcher", &cli.config)?;
    let ran = capsight_launcher::run_on_aws(p.config, cli.catalog.as_deref(), p.shutdown).await;
    capsight_runtime::telemetry::finish().await;
    ran?;
    Ok(())
}
