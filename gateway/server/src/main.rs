//! `capsight-gateway`: loads configuration, starts telemetry, serves until SIGINT/SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use capsight_catalog::Catalog;
use capsight_gateway::{GatewayConfig, clouds::AwsClouds};
use capsight_runtime::{config::ConfigArgs, shutdown::Shutdown};
use clap::Parser;

/// The capsight gRPC gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    config: ConfigArgs,
    /// Override `gateway.listen`.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config: GatewayConfig = capsight_runtime::config::load(args.config.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.gateway.listen = listen;
    }
    capsight_runtime::telemetry::init("capsight-gateway", &config.telemetry)?;
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let catalog = Arc::new(Catalog::embedded().context("GPU catalog")?);
    let clouds = Arc::new(AwsClouds::from_env(config.cloud.clone(), catalog));
    let running = capsight_gateway::start(config, clouds, shutdown).await?;
    running.join().await?;
    Ok(())
}
