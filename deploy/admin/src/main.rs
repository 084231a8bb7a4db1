//! `capsight-admin`: the operator tool for the infrastructure capsight runs on.
//!
//! * `setup`   — create the Kafka topics, apply ClickHouse migrations, declare the RabbitMQ
//!   topology; each step is idempotent, so `setup` twice changes nothing the second time.
//! * `topics`, `migrate`, `amqp` — one of those steps.
//! * `check`   — connect to all three and report; exits non-zero if any is unreachable.
//! * `scores`  — print the latest score per key from the compacted scores topic.
//! * `tenant`  — add tenants, issue and revoke their API keys, register their roles, derive
//!   their AZ maps from their accounts (`tenant zones`); `tenant trust` shows how far each
//!   tenant's reports agree with capsight's own probes.
//! * `sql`     — print every statement capsight sends to a ClickHouse of a given version
//!   (migration plan, queries, inserts) as JSON, without connecting.
//! * `demo`    — push a few sample signals through Kafka into ClickHouse and print them: the
//!   smallest pipeline that exists until the collectors and the scorer land.
//!
//! Configuration: `deploy/config/capsight.toml` sections `telemetry`, `kafka`, `clickhouse`,
//! `amqp`, overridable by `--config` and `CAPSIGHT_*` variables.

mod demo;
mod scores;
mod sql;
mod trust;
mod zones;

use anyhow::Context;
use capsight_amqp::AmqpSettings;
use capsight_clickhouse::ClickHouseSettings;
use capsight_kafka::{KafkaSettings, admin::TopicOutcome};
use capsight_runtime::{config::ConfigArgs, telemetry::TelemetrySettings};
use capsight_tenancy::{CloudAccount, Registry, TenancySettings, TenantId, trust::TrustSettings};
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
    /// Print, as JSON, every statement capsight would send to a ClickHouse server of the given
    /// version (migration plan, queries with sample values, inserts); connects to nothing.
    Sql {
        /// The server's `MAJOR.MINOR`, e.g. `18.16` or `26.9`.
        #[arg(long)]
        server_version: String,
        /// Cluster name, overriding `clickhouse.cluster` (`""` for one server).
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Push sample signals through Kafka into ClickHouse and print them.
    Demo,
    /// Print the latest score per key from the compacted scores topic.
    Scores,
    /// Manage tenants and their API keys in the registry file.
    #[command(subcommand)]
    Tenant(TenantCommand),
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Add a tenant (no keys yet).
    Add {
        /// Tenant id: 1-64 of a-z 0-9 - _.
        id: String,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
        /// Requests per minute (default: tenancy.default_rate_per_minute).
        #[arg(long)]
        rate_per_minute: Option<u32>,
    },
    /// Issue an API key; it is printed once and only its hash is stored.
    Key {
        /// Tenant id.
        id: String,
    },
    /// Revoke an API key.
    Revoke {
        /// Tenant id.
        id: String,
        /// The key id (the part after `csk_`).
        key_id: String,
    },
    /// Derive tenants' AWS AZ name -> AZ ID maps from their own accounts (their registered
    /// role, DescribeAvailabilityZones); run after `tenant role` and periodically.
    Zones {
        /// Tenant ids; none = every tenant with a role.
        ids: Vec<String>,
        /// Regions; none = every AWS region of the GPU catalog.
        #[arg(long)]
        region: Vec<String>,
    },
    /// Map the tenant's AWS AZ names to AZ IDs by hand (`us-east-1a=use1-az4` ...); `tenant
    /// zones` derives them from the tenant's account instead.
    ZoneMap {
        /// Tenant id.
        id: String,
        /// `name=id` pairs.
        #[arg(required = true)]
        pairs: Vec<String>,
    },
    /// Set the AWS role capsight assumes in the tenant's account (preflight, launches).
    Role {
        /// Tenant id.
        id: String,
        /// `arn:aws:iam::<account>:role/<name>`.
        #[arg(long)]
        role_arn: String,
        /// Generate a new external id even if the tenant has one (the old one stops working
        /// once the tenant's trust policy carries the new one).
        #[arg(long)]
        new_external_id: bool,
    },
    /// Register the tenant's Lambda Cloud account (preflight permission and quota on Lambda):
    /// the name of the environment variable that holds its API key on the gateway (never the
    /// key itself) and the account's instance limit.
    Lambda {
        /// Tenant id.
        id: String,
        /// The environment variable with the tenant's Lambda API key, e.g.
        /// `CAPSIGHT_LAMBDA_KEY_ACME`.
        #[arg(long, required_unless_present = "remove")]
        api_key_env: Option<String>,
        /// The account's instance limit (Lambda has no quota API).
        #[arg(long, required_unless_present = "remove")]
        instance_limit: Option<u32>,
        /// Remove the registration.
        #[arg(long)]
        remove: bool,
    },
    /// Register the tenant's Google Cloud project (preflight permission and quota, launches on
    /// GCP): its project id and the name of the environment variable that holds the path of its
    /// service-account JSON key file on the gateway and the launcher (never the key itself).
    Gcp {
        /// Tenant id.
        id: String,
        /// The project id, e.g. `acme-ml`.
        #[arg(long, required_unless_present = "remove")]
        project: Option<String>,
        /// The environment variable with the path of the tenant's service-account key file,
        /// e.g. `CAPSIGHT_GCP_CREDENTIALS_ACME`.
        #[arg(long, required_unless_present = "remove")]
        credentials_env: Option<String>,
        /// Remove the registration.
        #[arg(long)]
        remove: bool,
    },
    /// Register the tenant's Azure subscription (preflight and launches on Azure): the app
    /// registration capsight acts as, the subscription and resource group, and the name of the
    /// environment variable that holds the client secret on the gateway and the launcher (never
    /// the secret itself).
    Azure {
        /// Tenant id.
        id: String,
        /// The Entra ID tenant (directory) id of the app registration.
        #[arg(long, required_unless_present = "remove")]
        tenant_id: Option<String>,
        /// The app registration's client (application) id.
        #[arg(long, required_unless_present = "remove")]
        client_id: Option<String>,
        /// The subscription.
        #[arg(long, required_unless_present = "remove")]
        subscription_id: Option<String>,
        /// The resource group launches go to.
        #[arg(long, required_unless_present = "remove")]
        resource_group: Option<String>,
        /// The environment variable with the client secret, e.g. `CAPSIGHT_AZURE_SECRET_ACME`.
        #[arg(long, required_unless_present = "remove")]
        client_secret_env: Option<String>,
        /// Remove the registration.
        #[arg(long)]
        remove: bool,
    },
    /// Register the tenant's RunPod account (preflight permission and quota on RunPod,
    /// launches): the name of the environment variable that holds its API key on the gateway
    /// and the launcher (never the key itself) and the account's GPU limit.
    Runpod {
        /// Tenant id.
        id: String,
        /// The environment variable with the tenant's RunPod API key, e.g.
        /// `CAPSIGHT_RUNPOD_KEY_ACME`.
        #[arg(long, required_unless_present = "remove")]
        api_key_env: Option<String>,
        /// The most GPUs the account's pods may hold at once (RunPod has no quota API).
        #[arg(long, required_unless_present = "remove")]
        gpu_limit: Option<u32>,
        /// Remove the registration.
        #[arg(long)]
        remove: bool,
    },
    /// Set the most GPUs the tenant's live launches may hold together (0 = tenancy.default_gpu_quota).
    Quota {
        /// Tenant id.
        id: String,
        /// GPUs; 0 removes the tenant's own quota (the default applies).
        gpus: u32,
    },
    /// List tenants and key ids.
    List,
    /// Every tenant's reports checked against capsight's own probes and launches: checks,
    /// contradictions and the trust its reports are weighted by, least trusted first.
    Trust {
        /// `table` for people, `json` for machines.
        #[arg(long, value_enum, default_value = "table")]
        output: trust::Format,
    },
}

/// The sections this tool reads.
#[derive(Debug, Deserialize)]
struct AdminConfig {
    telemetry: TelemetrySettings,
    kafka: KafkaSettings,
    clickhouse: ClickHouseSettings,
    amqp: AmqpSettings,
    tenancy: TenancySettings,
    trust: TrustSettings,
    /// `[cloud]` (tenant zone maps).
    #[serde(default)]
    cloud: capsight_cloud::CloudSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    capsight_runtime::tls::install_crypto_provider();
    let cli = Cli::parse();
    let config: AdminConfig = capsight_runtime::config::load(cli.config.config.as_deref())?;
    capsight_runtime::telemetry::init("capsight-admin", &config.telemetry)?;
    let ran = command(cli.command, &config).await;
    capsight_runtime::telemetry::finish().await;
    ran
}

/// Runs one admin command.
async fn command(command: Command, config: &AdminConfig) -> anyhow::Result<()> {
    match command {
        Command::Setup => {
            topics(&config.kafka).await?;
            migrate(&config.clickhouse).await?;
            amqp(&config.amqp).await?;
        }
        Command::Topics => topics(&config.kafka).await?,
        Command::Migrate => migrate(&config.clickhouse).await?,
        Command::Amqp => amqp(&config.amqp).await?,
        Command::Check => check(config).await?,
        Command::Sql {
            server_version,
            cluster,
        } => sql::print(&config.clickhouse, &server_version, cluster.as_deref())?,
        Command::Demo => demo::run(&config.kafka, &config.clickhouse).await?,
        Command::Tenant(TenantCommand::Trust { output }) => {
            trust::run(&config.clickhouse, &config.tenancy, &config.trust, output).await?;
        }
        Command::Tenant(TenantCommand::Zones { ids, region }) => {
            zones::refresh(&config.tenancy, &config.cloud, &ids, &region).await?;
        }
        Command::Tenant(cmd) => tenant(&config.tenancy, cmd)?,
        Command::Scores => scores::run(&config.kafka).await?,
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

fn tenant(settings: &TenancySettings, cmd: TenantCommand) -> anyhow::Result<()> {
    let path = &settings.registry;
    let mut reg = Registry::load(path)?;
    match cmd {
        TenantCommand::Add {
            id,
            name,
            rate_per_minute,
        } => {
            let id = TenantId::parse(&id)?;
            reg.add_tenant(id.clone(), &name)?;
            if let Some(t) = reg.tenants.iter_mut().find(|t| t.id == id) {
                t.rate_per_minute = rate_per_minute;
            }
            reg.save(path)?;
            println!("tenant {id} added to {}", path.display());
        }
        TenantCommand::Key { id } => {
            let issued = reg.issue_key(&TenantId::parse(&id)?)?;
            reg.save(path)?;
            eprintln!("key {} issued for {id}; it is shown once:", issued.key_id);
            println!("{}", issued.key);
        }
        TenantCommand::Revoke { id, key_id } => {
            reg.revoke_key(&TenantId::parse(&id)?, &key_id)?;
            reg.save(path)?;
            println!("key {key_id} of {id} revoked");
        }
        TenantCommand::ZoneMap { id, pairs } => {
            let id = TenantId::parse(&id)?;
            let tenant = reg
                .tenants
                .iter_mut()
                .find(|t| t.id == id)
                .ok_or_else(|| anyhow::anyhow!("no tenant {id}"))?;
            for pair in pairs {
                let (name, zone) = pair
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("{pair:?} is not az-name=az-id"))?;
                tenant.zone_map.insert(name.to_owned(), zone.to_owned());
            }
            reg.save(path)?;
            println!("zone map of {id} updated");
        }
        TenantCommand::Role {
            id,
            role_arn,
            new_external_id,
        } => {
            let id = TenantId::parse(&id)?;
            let fresh = reg.register_aws_role(&id, role_arn, new_external_id)?;
            reg.save(path)?;
            match fresh {
                Some(external_id) => {
                    // stdout carries only the id, for scripts; it is shown this once
                    eprintln!(
                        "aws role of {id} set; its external id (put it in the role's trust \
                         policy as sts:ExternalId; shown once):"
                    );
                    println!("{external_id}");
                }
                None => eprintln!("aws role of {id} set; its external id is unchanged"),
            }
        }
        TenantCommand::Lambda {
            id,
            api_key_env,
            instance_limit,
            remove,
        } => {
            let id = TenantId::parse(&id)?;
            let account = match (remove, api_key_env, instance_limit) {
                (true, _, _) => None,
                (false, Some(api_key_env), Some(instance_limit)) => {
                    Some(capsight_tenancy::LambdaAccount {
                        api_key_env,
                        instance_limit,
                    })
                }
                _ => anyhow::bail!("--api-key-env and --instance-limit are required"),
            };
            save_account(&mut reg, path, &id, account, "lambda account")?;
        }
        TenantCommand::Gcp {
            id,
            project,
            credentials_env,
            remove,
        } => {
            let id = TenantId::parse(&id)?;
            let account = match (remove, project, credentials_env) {
                (true, _, _) => None,
                (false, Some(project_id), Some(credentials_env)) => {
                    Some(capsight_tenancy::GcpAccount {
                        project_id,
                        credentials_env,
                    })
                }
                _ => anyhow::bail!("--project and --credentials-env are required"),
            };
            save_account(&mut reg, path, &id, account, "gcp project")?;
        }
        TenantCommand::Azure {
            id,
            tenant_id,
            client_id,
            subscription_id,
            resource_group,
            client_secret_env,
            remove,
        } => {
            let id = TenantId::parse(&id)?;
            let account = match (
                remove,
                tenant_id,
                client_id,
                subscription_id,
                resource_group,
                client_secret_env,
            ) {
                (true, ..) => None,
                (
                    false,
                    Some(tenant_id),
                    Some(client_id),
                    Some(subscription_id),
                    Some(resource_group),
                    Some(client_secret_env),
                ) => Some(capsight_tenancy::AzureAccount {
                    tenant_id,
                    client_id,
                    subscription_id,
                    resource_group,
                    client_secret_env,
                }),
                _ => anyhow::bail!(
                    "--tenant-id, --client-id, --subscription-id, --resource-group and --client-secret-env are required"
                ),
            };
            save_account(&mut reg, path, &id, account, "azure subscription")?;
        }
        TenantCommand::Runpod {
            id,
            api_key_env,
            gpu_limit,
            remove,
        } => {
            let id = TenantId::parse(&id)?;
            let account = match (remove, api_key_env, gpu_limit) {
                (true, _, _) => None,
                (false, Some(api_key_env), Some(gpu_limit)) => {
                    Some(capsight_tenancy::RunPodAccount {
                        api_key_env,
                        gpu_limit,
                    })
                }
                _ => anyhow::bail!("--api-key-env and --gpu-limit are required"),
            };
            save_account(&mut reg, path, &id, account, "runpod account")?;
        }
        TenantCommand::Quota { id, gpus } => {
            let id = TenantId::parse(&id)?;
            reg.set_gpu_quota(&id, (gpus > 0).then_some(gpus))?;
            reg.save(path)?;
            if gpus > 0 {
                println!("GPU quota of {id} set to {gpus}");
            } else {
                println!("GPU quota of {id} removed; tenancy.default_gpu_quota applies");
            }
        }
        TenantCommand::Trust { .. } | TenantCommand::Zones { .. } => {
            anyhow::bail!("this tenant command calls out: run async")
        }
        TenantCommand::List => {
            for t in &reg.tenants {
                let keys: Vec<String> = t
                    .keys
                    .iter()
                    .map(|k| format!("{}{}", k.key_id, if k.revoked { " (revoked)" } else { "" }))
                    .collect();
                println!("{:<20} {:<30} keys: {}", t.id, t.name, keys.join(", "));
            }
        }
    }
    Ok(())
}

/// Sets (or with `None` removes) `id`'s account `what` (e.g. "gcp project") and saves the
/// registry.
fn save_account<A: CloudAccount>(
    reg: &mut Registry,
    path: &std::path::Path,
    id: &TenantId,
    account: Option<A>,
    what: &str,
) -> anyhow::Result<()> {
    let set = account.is_some();
    reg.set_account(id, account)?;
    reg.save(path)?;
    println!("{what} of {id} {}", if set { "set" } else { "removed" });
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
        let client = config.clickhouse.server_client()?;
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
        use capsight_runtime::config::defaults_match;
        let _: AdminConfig = capsight_runtime::config::load_defaults().unwrap();
        defaults_match("kafka", &KafkaSettings::default()).unwrap_or_else(|e| panic!("{e}"));
        defaults_match("clickhouse", &ClickHouseSettings::default())
            .unwrap_or_else(|e| panic!("{e}"));
        defaults_match("amqp", &AmqpSettings::default()).unwrap_or_else(|e| panic!("{e}"));
        defaults_match("trust", &TrustSettings::default()).unwrap_or_else(|e| panic!("{e}"));
    }

    /// `tenant runpod` stores the variable's name and the GPU limit, refuses a key in place of
    /// a name and a registration without its flags, and `--remove` removes it.
    #[test]
    fn tenant_runpod_registers_a_variable_name_and_a_gpu_limit() {
        let dir = std::env::temp_dir().join(format!("capsight-admin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let settings = TenancySettings {
            registry: dir.join("tenants.toml"),
            ..TenancySettings::default()
        };
        let run = |args: &[&str]| {
            let cli = Cli::try_parse_from(["capsight-admin", "tenant"].iter().chain(args))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            match cli.command {
                Command::Tenant(cmd) => tenant(&settings, cmd),
                _ => unreachable!("a tenant command"),
            }
        };
        run(&["add", "acme"]).unwrap();
        let flags = [
            "--api-key-env",
            "CAPSIGHT_RUNPOD_KEY_ACME",
            "--gpu-limit",
            "8",
        ];
        run(&[&["runpod", "acme"][..], &flags].concat()).unwrap();
        let stored = || {
            Registry::load(&settings.registry)
                .unwrap()
                .tenants
                .into_iter()
                .find(|t| t.id.as_str() == "acme")
                .unwrap()
                .runpod
        };
        let account = stored().unwrap();
        assert_eq!(
            (account.api_key_env.as_str(), account.gpu_limit),
            ("CAPSIGHT_RUNPOD_KEY_ACME", 8)
        );
        let key = ["--api-key-env", "rpa_0123456789", "--gpu-limit", "8"];
        assert!(run(&[&["runpod", "acme"][..], &key].concat()).is_err());
        assert!(run(&["runpod", "acme", "--gpu-limit", "8"]).is_err());
        run(&["runpod", "acme", "--remove"]).unwrap();
        assert!(stored().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
