//! `capsight-admin`: the operator tool for the infrastructure capsight runs on.
//!
//! * `setup`   — create the Kafka topics, apply ClickHouse migrations, declare the RabbitMQ
//!   topology; each step is idempotent, so `setup` twice changes nothing the second time.
//! * `topics`, `migrate`, `amqp` — one of those steps.
//! * `check`   — connect to all three and report; exits non-zero if any is unreachable.
//! * `demo`    — push a few sample signals through Kafka into ClickHouse and print them: the
//!   smallest pipeline that exists until the collectors and the scorer land.
//!
//! Configuration: `deploy/config/capsight.toml` sections `telemetry`, `kafka`, `clickhouse`,
//! `amqp`, overridable by `--config` and `CAPSIGHT_*` variables.

mod demo;

use anyhow::Context;
use capsight_amqp::AmqpSettings;
use capsight_clickhouse::ClickHouseSettings;
use capsight_kafka::{KafkaSettings, admin::TopicOutcome};
use capsight_runtime::{config::ConfigArgs, telemetry::TelemetrySettings};
use clap::{Parser, Subcommand};
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "capsight operator tool: topics, migrations, queues, health"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create topics, apply migrations and declare queues (idempotent).
    Setup,
    /// Create missing Kafka topics.
    Topics,
    /// Apply pending ClickHouse migrations.
    Migrate,
    /// Declare the RabbitMQ launch topology.
    Amqp,
    /// Check connectivity to Kafka, ClickHouse and RabbitMQ.
    Check,
    /// Push sample signals through Kafka into ClickHouse and print them.
    Demo,
}

/// The sections this tool reads.
#[derive(Debug, Deserialize)]
struct AdminConfig {
    telemetry: TelemetrySettings,
    kafka: KafkaSettings,
    clickhouse: ClickHouseSettings,
    amqp: AmqpSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: AdminConfig = capsight_runtime::config::load(cli.config.config.as_deref())?;
    capsight_runtime::telemetry::init("capsight-admin", &config.telemetry)?;
    match cli.command {
        Command::Setup => {
            topics(&config.kafka).await?;
            migrate(&config.clickhouse).await?;
            amqp(&config.amqp).await?;
        }
        Command::Topics => topics(&config.kafka).await?,
        Command::Migrate => migrate(&config.clickhouse).await?,
        Command::Amqp => amqp(&config.amqp).await?,
        Command::Check => check(&config).await?,
        Command::Demo => demo::run(&config.kafka, &config.clickhouse).await?,
    }
    Ok(())
}

async fn topics(kafka: &KafkaSettings) -> anyhow::Result<()> {
    let outcomes = capsight_kafka::admin::ensure_topics(kafka, &kafka.topics.specs())
        .await
        .with_context(|| format!("kafka at {}", kafka.brokers))?;
    let created: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| match o {
            TopicOutcome::Created(t) => Some(t.as_str()),
            TopicOutcome::Existed(_) => None,
        })
        .collect();
    println!(
        "kafka: {} topics created {:?}, {} existed",
        created.len(),
        created,
        outcomes.len() - created.len()
    );
    Ok(())
}

async fn migrate(clickhouse: &ClickHouseSettings) -> anyhow::Result<()> {
    let report = capsight_clickhouse::migrate::apply(clickhouse)
        .await
        .with_context(|| format!("clickhouse at {}", clickhouse.url))?;
    println!(
        "clickhouse: {} migrations applied {:?}, {} already applied, {} skipped {:?}",
        report.applied.len(),
        report.applied,
        report.already_applied,
        report.skipped.len(),
        report.skipped
    );
    Ok(())
}

async fn amqp(amqp: &AmqpSettings) -> anyhow::Result<()> {
    let connection = amqp.connect().await?;
    let channel = connection.create_channel().await?;
    amqp.launch.declare(&channel).await?;
    connection.close(200, "done".into()).await?;
    println!(
        "amqp: topology declared (exchange {}, queue {} delivery limit {})",
        amqp.launch.exchange, amqp.launch.jobs_queue, amqp.launch.delivery_limit
    );
    Ok(())
}

async fn check(config: &AdminConfig) -> anyhow::Result<()> {
    let mut failed = 0;
    let kafka = capsight_kafka::admin::cluster_brokers(&config.kafka).await;
    report(
        "kafka",
        &config.kafka.brokers,
        kafka.map(|n| format!("{n} broker(s)")),
        &mut failed,
    );
    let ch = async {
        let client = config.clickhouse.server_client();
        capsight_clickhouse::server_version(&client).await
    }
    .await;
    report(
        "clickhouse",
        &config.clickhouse.url,
        ch.map(|(a, b)| format!("version {a}.{b}")),
        &mut failed,
    );
    let mq = async {
        let c = config.amqp.connect().await?;
        c.close(200, "check".into()).await.ok();
        Ok::<_, capsight_amqp::AmqpError>("connected".to_owned())
    }
    .await;
    report("amqp", "(configured url)", mq, &mut failed);
    anyhow::ensure!(failed == 0, "{failed} service(s) unreachable");
    Ok(())
}

fn report<E: std::fmt::Display>(
    name: &str,
    addr: &str,
    result: Result<String, E>,
    failed: &mut u32,
) {
    match result {
        Ok(what) => println!("{name:<10} ok    {addr} {what}"),
        Err(e) => {
            *failed += 1;
            println!("{name:<10} DOWN  {addr} {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded reference config parses and matches the Rust defaults of every section.
    #[test]
    fn reference_config_matches_code_defaults() {
        let c: AdminConfig = capsight_runtime::config::load_defaults().unwrap();
        assert_eq!(
            format!("{:?}", c.kafka),
            format!("{:?}", KafkaSettings::default())
        );
        assert_eq!(
            format!("{:?}", c.clickhouse),
            format!("{:?}", ClickHouseSettings::default())
        );
        assert_eq!(
            format!("{:?}", c.amqp),
            format!("{:?}", AmqpSettings::default())
        );
    }
}
