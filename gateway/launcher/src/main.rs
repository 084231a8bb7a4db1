//! `capsight-launcher`: consumes launch jobs from RabbitMQ and drives them to running.
//! Configuration: sections `telemetry`, `kafka`, `publisher`, `clickhouse`, `amqp`, `tenancy`,
//! `cloud`, `launcher` of `deploy/config/capsight.toml`; AWS endpoint and operator credentials
//! from the standard AWS chain (tenants' roles are assumed from there).

use std::sync::Arc;

use capsight_catalog::Catalog;
use capsight_cloud::tenants::AwsClouds;
use capsight_launcher::LauncherConfig;
use capsight_runtime::{config::ConfigArgs, shutdown::Shutdown};
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
    let config: LauncherConfig = capsight_runtime::config::load(cli.config.config.as_deref())?;
    capsight_runtime::telemetry::init("capsight-launcher", &config.telemetry)?;
    let catalog = Arc::new(Catalog::load_or_embedded(cli.catalog.as_deref())?);
    let clouds = Arc::new(AwsClouds::from_env(
        config.cloud.clone(),
        Arc::clone(&catalog),
    ));
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    capsight_launcher::run(config, catalog, clouds, shutdown).await?;
    Ok(())
}
