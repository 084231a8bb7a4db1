//! `capsight-gateway`: loads configuration, starts telemetry, serves until SIGINT/SIGTERM.

use capsight_gateway::GatewayConfig;
use capsight_runtime::{config::ConfigArgs, process::Process};
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
    let p = Process::start_with("capsight-gateway", &args.config, |c: &mut GatewayConfig| {
        if let Some(listen) = args.listen {
            c.gateway.listen = listen;
        }
    })?;
    let ran = capsight_gateway::run(p.config, p.shutdown).await;
    capsight_runtime::telemetry::finish().await;
    ran?;
    Ok(())
}
