//! `capsight`: the command-line client of `capsight-gateway`.
//!
//! Contract: every command talks gRPC to the gateway (`--endpoint`, env `CAPSIGHT_ENDPOINT`,
//! default `http://127.0.0.1:50051`; `https://` uses TLS, with `--ca-cert` for a private CA) with
//! the API key from `--api-key` / env `CAPSIGHT_API_KEY` / the `api_key` of the CLI config file
//! (`--cli-config`, env `CAPSIGHT_CLI_CONFIG`, default `~/.config/capsight/cli.toml`, keys
//! `endpoint` and `api_key`). Output is a table for people, or with `--output json` one JSON
//! document per command (one JSON object per line for streams). Exit status: 0 on success, 1 on
//! an error (the gRPC status and message on stderr), 2 for a preflight whose decision is not
//! CAN_LAUNCH and for a launch watched to `failed`/`cancelled`.

mod output;

use std::{io::IsTerminal, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use capsight_proto::{
    domain::{CapacityKey, Label, Market},
    v1::{
        self, launch_service_client::LaunchServiceClient,
        notification_service_client::NotificationServiceClient,
        preflight_service_client::PreflightServiceClient,
        report_service_client::ReportServiceClient, score_service_client::ScoreServiceClient,
    },
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use tonic::{
    Request,
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint},
};

use crate::output::{Out, Style};

/// capsight: where can I get a GPU now?
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Gateway address.
    #[arg(long, env = "CAPSIGHT_ENDPOINT", global = true)]
    endpoint: Option<String>,
    /// API key (`csk_...`).
    #[arg(long, env = "CAPSIGHT_API_KEY", global = true, hide_env_values = true)]
    api_key: Option<String>,
    /// CLI config file with `endpoint` and `api_key`.
    #[arg(long, env = "CAPSIGHT_CLI_CONFIG", global = true)]
    cli_config: Option<PathBuf>,
    /// PEM CA certificate for an https:// endpoint with a private CA.
    #[arg(long, global = true)]
    ca_cert: Option<PathBuf>,
    /// table or json.
    #[arg(long, short, value_enum, default_value_t = Format::Table, global = true)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Latest scores, filtered.
    Scores(ScoresArgs),
    /// Stream label transitions as they happen.
    Watch(FilterArgs),
    /// Score history of one key.
    History {
        /// provider/region/zone_id/instance_type/market (zone may be empty).
        key: String,
        /// How far back.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: Duration,
        /// Bucket width.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        step: Duration,
    },
    /// Can I launch this here? permission -> quota -> capacity -> decision.
    Preflight(SpecArgs),
    /// Ranked alternatives for a request.
    Alternatives(SpecArgs),
    /// Queue a launch (and optionally watch it).
    Launch(LaunchArgs),
    /// One launch's state and transitions.
    Status {
        /// Job id.
        job_id: String,
    },
    /// Cancel a launch.
    Cancel {
        /// Job id.
        job_id: String,
    },
    /// Mark a running launch busy now (resets its idle TTL). Call it from the workload while
    /// its GPUs work, e.g. every minute while `nvidia-smi` shows utilization (docs/runbooks.md).
    Heartbeat {
        /// Job id.
        job_id: String,
        /// What is busy (at most 256 bytes).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Your launches, newest first.
    Launches {
        /// Most launches.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Report what you saw (a failed or successful launch, an interruption...).
    Report(ReportArgs),
    /// Webhook notifications: subscribe, list, delete, dead letters (docs/notifications.md).
    #[command(subcommand)]
    Notify(NotifyCommand),
}

#[derive(Debug, Subcommand)]
enum NotifyCommand {
    /// Subscribe a webhook; prints the signing secret once.
    Subscribe(SubscribeArgs),
    /// Your subscriptions.
    List,
    /// Delete one of your subscriptions.
    Delete {
        /// Subscription id.
        id: String,
    },
    /// Notifications your webhooks never accepted after every retry, newest first.
    DeadLetters {
        /// Most entries (at most 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Args)]
struct SubscribeArgs {
    /// The webhook (http:// or https://).
    #[arg(long)]
    url: String,
    /// json (signed), slack or discord.
    #[arg(long, default_value = "json")]
    format: String,
    /// Events (repeat): label_changed, fallback, interruption_warning, standby_started,
    /// standby_stopped, reaped.
    #[arg(long = "event", required = true)]
    events: Vec<String>,
    /// Label changes of these keys (repeat): `provider/region/instance_type/market` with `*`
    /// for any part, or `gpu:<MODEL>` (e.g. `gpu:H100`), optionally `gpu:<MODEL>@<region>`.
    #[arg(long = "key")]
    keys: Vec<String>,
    /// Same event about the same key or launch not re-sent within it (default: the server's).
    #[arg(long, value_parser = humantime::parse_duration)]
    cooldown: Option<Duration>,
    /// Also label changes scored at low confidence.
    #[arg(long)]
    include_low_confidence: bool,
}

#[derive(Debug, Args)]
struct FilterArgs {
    /// aws, gcp, azure, lambda, runpod.
    #[arg(long)]
    provider: Option<String>,
    #[arg(long)]
    region: Option<String>,
    /// Zone ID.
    #[arg(long)]
    zone: Option<String>,
    /// GPU model (H100, A100, L4...).
    #[arg(long)]
    gpu: Option<String>,
    /// Minimum GPUs per instance.
    #[arg(long, default_value_t = 0)]
    min_gpus: u32,
    /// on_demand, spot, capacity_block.
    #[arg(long)]
    market: Option<String>,
    /// available, limited or unknown (unknown keys pass limited and unknown).
    #[arg(long)]
    min_label: Option<String>,
    #[arg(long, default_value_t = 0.0)]
    min_confidence: f64,
    /// Exact instance type.
    #[arg(long = "type")]
    instance_type: Option<String>,
}

#[derive(Debug, Args)]
struct ScoresArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Most rows.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// Also list keys labelled unknown (not enough recent evidence), hidden by default.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Args)]
struct SpecArgs {
    /// provider/region/zone_id/instance_type/market, e.g. aws/us-east-1/use1-az4/p5.48xlarge/on_demand.
    key: String,
    /// Instances (1-32).
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Machine image (needed for preflight and launch).
    #[arg(long, env = "CAPSIGHT_IMAGE_ID", default_value = "")]
    image: String,
    #[arg(long, default_value = "")]
    subnet: String,
    /// Spot max price per instance-hour, USD.
    #[arg(long, default_value_t = 0.0)]
    spot_max_price: f64,
    /// Regions allowed for alternatives (repeatable).
    #[arg(long = "allow-region")]
    allowed_regions: Vec<String>,
    /// Most USD per GPU-hour.
    #[arg(long, default_value_t = 0.0)]
    max_price: f64,
    /// Markets allowed for alternatives (repeatable).
    #[arg(long = "allow-market")]
    markets: Vec<String>,
    /// The work survives interruption (makes spot eligible).
    #[arg(long)]
    interruptible: bool,
    /// Allow other instance types with a same-or-better GPU.
    #[arg(long)]
    substitutes: bool,
    /// Allow other providers.
    #[arg(long)]
    other_providers: bool,
    /// Most alternatives.
    #[arg(long, default_value_t = 0)]
    alternatives: u32,
    /// Preflight only: also reserve-and-release one instance to probe capacity live (billed
    /// while the reservation exists).
    #[arg(long)]
    live_probe: bool,
}

#[derive(Debug, Args)]
struct LaunchArgs {
    #[command(flatten)]
    spec: SpecArgs,
    /// Follow progress until running or failed.
    #[arg(long)]
    watch: bool,
    /// Spot: keep a stopped on-demand standby.
    #[arg(long)]
    warm_standby: bool,
    #[arg(long, value_parser = humantime::parse_duration)]
    max_lifetime: Option<Duration>,
    #[arg(long, value_parser = humantime::parse_duration)]
    idle_ttl: Option<Duration>,
    /// Alternatives the launcher may fall back to on a capacity error.
    #[arg(long, default_value_t = 0)]
    fallbacks: u32,
    /// Same key => same job (safe retries).
    #[arg(long, default_value = "")]
    idempotency_key: String,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// provider/region/zone_id/instance_type/market.
    key: String,
    /// launch_failed, launch_succeeded, available, unavailable, interrupted.
    #[arg(long)]
    outcome: String,
    #[arg(long, default_value = "")]
    error_code: String,
    #[arg(long, default_value = "")]
    error_message: String,
    #[arg(long, default_value_t = 0)]
    provisioning_ms: u32,
    #[arg(long, default_value_t = 1)]
    count: u32,
    #[arg(long, default_value = "")]
    note: String,
    /// Client id (de-duplicates retries).
    #[arg(long, default_value = "")]
    id: String,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CliConfig {
    endpoint: Option<String>,
    api_key: Option<String>,
}

fn load_cli_config(path: Option<&PathBuf>) -> anyhow::Result<CliConfig> {
    let explicit = path.is_some();
    let path = match path {
        Some(p) => p.clone(),
        None => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".config/capsight/cli.toml"),
            None => return Ok(CliConfig::default()),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("{}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(CliConfig::default()),
        Err(e) => Err(e).with_context(|| format!("{}", path.display())),
    }
}

/// Adds the API key to every request.
#[derive(Clone)]
struct Auth(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut r: Request<()>) -> Result<Request<()>, tonic::Status> {
        r.metadata_mut().insert("authorization", self.0.clone());
        Ok(r)
    }
}

type Authed = tonic::service::interceptor::InterceptedService<Channel, Auth>;

struct Clients {
    scores: ScoreServiceClient<Authed>,
    preflight: PreflightServiceClient<Authed>,
    launch: LaunchServiceClient<Authed>,
    report: ReportServiceClient<Authed>,
    notify: NotificationServiceClient<Authed>,
}

async fn connect(cli: &Cli) -> anyhow::Result<Clients> {
    let file = load_cli_config(cli.cli_config.as_ref())?;
    let endpoint = cli
        .endpoint
        .clone()
        .or(file.endpoint)
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let key = cli
        .api_key
        .clone()
        .or(file.api_key)
        .context("no API key: set CAPSIGHT_API_KEY, --api-key or api_key in the CLI config")?;
    let mut ep = Endpoint::from_shared(endpoint.clone())
        .with_context(|| format!("endpoint {endpoint:?}"))?
        .connect_timeout(Duration::from_secs(5));
    if endpoint.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_webpki_roots();
        if let Some(ca) = &cli.ca_cert {
            let pem = std::fs::read(ca).with_context(|| format!("{}", ca.display()))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        ep = ep.tls_config(tls)?;
    }
    let channel = ep
        .connect()
        .await
        .with_context(|| format!("cannot reach the gateway at {endpoint}"))?;
    let auth = Auth(
        format!("Bearer {key}")
            .parse()
            .context("the API key holds characters that cannot be sent")?,
    );
    Ok(Clients {
        scores: ScoreServiceClient::with_interceptor(channel.clone(), auth.clone()),
        preflight: PreflightServiceClient::with_interceptor(channel.clone(), auth.clone()),
        launch: LaunchServiceClient::with_interceptor(channel.clone(), auth.clone()),
        report: ReportServiceClient::with_interceptor(channel.clone(), auth.clone()),
        notify: NotificationServiceClient::with_interceptor(channel, auth),
    })
}

fn key(text: &str) -> anyhow::Result<v1::CapacityKey> {
    let k: CapacityKey = text.parse().map_err(|e| anyhow::anyhow!("key {e}"))?;
    Ok(v1::CapacityKey::from(&k))
}

fn market(field: &str, text: &str) -> anyhow::Result<i32> {
    Ok(Market::parse(field, text)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into())
}

fn label(field: &str, text: &str) -> anyhow::Result<i32> {
    Ok(Label::parse(field, text)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into())
}

fn filter(a: &FilterArgs) -> anyhow::Result<v1::ScoreFilter> {
    Ok(v1::ScoreFilter {
        provider: a.provider.clone().unwrap_or_default(),
        region: a.region.clone().unwrap_or_default(),
        zone_id: a.zone.clone().unwrap_or_default(),
        gpu_model: a.gpu.clone().unwrap_or_default(),
        min_gpus: a.min_gpus,
        market: a
            .market
            .as_deref()
            .map(|m| market("--market", m))
            .transpose()?
            .unwrap_or(0),
        min_label: a
            .min_label
            .as_deref()
            .map(|l| label("--min-label", l))
            .transpose()?
            .unwrap_or(0),
        min_confidence: a.min_confidence,
        instance_type: a.instance_type.clone().unwrap_or_default(),
    })
}

fn spec(a: &SpecArgs) -> anyhow::Result<(v1::LaunchSpec, v1::Constraints)> {
    Ok((
        v1::LaunchSpec {
            key: Some(key(&a.key)?),
            count: a.count,
            image_id: a.image.clone(),
            subnet_id: a.subnet.clone(),
            spot_max_price: a.spot_max_price,
        },
        v1::Constraints {
            allowed_regions: a.allowed_regions.clone(),
            max_usd_per_gpu_hour: a.max_price,
            markets: a
                .markets
                .iter()
                .map(|m| market("--allow-market", m))
                .collect::<anyhow::Result<_>>()?,
            interruptible: a.interruptible,
            allow_substitutes: a.substitutes,
            allow_other_providers: a.other_providers,
            min_label: 0,
            limit: a.alternatives,
        },
    ))
}

fn notification_event(text: &str) -> anyhow::Result<i32> {
    use v1::NotificationEvent as E;
    Ok(match text {
        "label_changed" => E::LabelChanged,
        "fallback" => E::Fallback,
        "interruption_warning" => E::InterruptionWarning,
        "standby_started" => E::StandbyStarted,
        "standby_stopped" => E::StandbyStopped,
        "reaped" => E::Reaped,
        other => bail!(
            "--event {other:?}: use label_changed, fallback, interruption_warning, standby_started, standby_stopped or reaped"
        ),
    } as i32)
}

fn webhook_format(text: &str) -> anyhow::Result<i32> {
    Ok(match text {
        "json" => v1::WebhookFormat::Json,
        "slack" => v1::WebhookFormat::Slack,
        "discord" => v1::WebhookFormat::Discord,
        other => bail!("--format {other:?}: use json, slack or discord"),
    } as i32)
}

/// `provider/region/instance_type/market` (`*` = any) or `gpu:MODEL[@region]`.
fn key_selector(text: &str) -> anyhow::Result<v1::KeySelector> {
    let any = |s: &str| {
        if s == "*" {
            String::new()
        } else {
            s.to_owned()
        }
    };
    if let Some(gpu) = text.strip_prefix("gpu:") {
        let (model, region) = gpu.split_once('@').unwrap_or((gpu, ""));
        return Ok(v1::KeySelector {
            gpu_model: model.to_owned(),
            region: region.to_owned(),
            ..v1::KeySelector::default()
        });
    }
    let parts: Vec<&str> = text.split('/').collect();
    let [provider, region, instance_type, m] = parts[..] else {
        bail!(
            "--key {text:?}: use provider/region/instance_type/market (* = any) or gpu:MODEL[@region]"
        );
    };
    Ok(v1::KeySelector {
        provider: any(provider),
        region: any(region),
        instance_type: any(instance_type),
        gpu_model: String::new(),
        market: if m == "*" {
            0
        } else {
            market("--key market", m)?
        },
    })
}

fn outcome(text: &str) -> anyhow::Result<i32> {
    Ok(match text {
        "launch_failed" => v1::ReportOutcome::LaunchFailed,
        "launch_succeeded" => v1::ReportOutcome::LaunchSucceeded,
        "available" => v1::ReportOutcome::Available,
        "unavailable" => v1::ReportOutcome::Unavailable,
        "interrupted" => v1::ReportOutcome::Interrupted,
        other => bail!(
            "--outcome {other:?}: use launch_failed, launch_succeeded, available, unavailable or interrupted"
        ),
    } as i32)
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let style = Style {
        color: cli.output == Format::Table
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none(),
    };
    let out = Out {
        json: cli.output == Format::Json,
        style,
    };
    let mut c = connect(&cli).await?;
    match &cli.command {
        Command::Scores(a) => {
            let filter = filter(&a.filter)?;
            let mut scores = Vec::new();
            let mut token = String::new();
            loop {
                let page = c
                    .scores
                    .list_scores(v1::ListScoresRequest {
                        filter: Some(filter.clone()),
                        page_size: 1000,
                        page_token: token,
                    })
                    .await?
                    .into_inner();
                scores.extend(page.scores);
                token = page.next_page_token;
                if token.is_empty() || scores.len() >= a.limit {
                    break;
                }
            }
            let before = scores.len();
            if !a.all {
                scores.retain(|s| s.label != i32::from(Label::Unknown));
            }
            let hidden = before - scores.len();
            scores.truncate(a.limit);
            out.scores(&scores);
            if hidden > 0 && !out.json {
                println!("{hidden} keys with unknown capacity hidden (--all lists them)");
            }
        }
        Command::Watch(a) => loop {
            // the gateway ends a stream after its lifetime (cleanly) or when this reader fell
            // behind (ABORTED): subscribe again
            let mut stream = c
                .scores
                .watch_scores(v1::WatchScoresRequest {
                    filter: Some(filter(a)?),
                })
                .await?
                .into_inner();
            while let Some(t) = stream.next().await {
                match t {
                    Ok(t) => out.transition(&t),
                    Err(s) if s.code() == tonic::Code::Aborted => {
                        eprintln!("{}; watching again", s.message());
                        break;
                    }
                    Err(s) => return Err(s.into()),
                }
            }
        },
        Command::History {
            key: k,
            since,
            step,
        } => {
            let now = chrono::Utc::now();
            let from = now - chrono::TimeDelta::from_std(*since).context("--since too large")?;
            let resp = c
                .scores
                .get_history(v1::GetHistoryRequest {
                    key: Some(key(k)?),
                    from: Some(prost_types::Timestamp {
                        seconds: from.timestamp(),
                        nanos: 0,
                    }),
                    to: None,
                    step_seconds: u32::try_from(step.as_secs()).unwrap_or(u32::MAX),
                })
                .await?
                .into_inner();
            out.history(k, &resp.points);
        }
        Command::Preflight(a) => {
            let (spec, constraints) = spec(a)?;
            let resp = c
                .preflight
                .preflight(v1::PreflightRequest {
                    spec: Some(spec),
                    constraints: Some(constraints),
                    live_probe: a.live_probe,
                })
                .await?
                .into_inner();
            out.preflight(&resp);
            if resp.decision != v1::Decision::CanLaunch as i32 {
                return Ok(2);
            }
        }
        Command::Alternatives(a) => {
            let (spec, constraints) = spec(a)?;
            let resp = c
                .preflight
                .alternatives(v1::AlternativesRequest {
                    spec: Some(spec),
                    constraints: Some(constraints),
                })
                .await?
                .into_inner();
            out.alternatives(&resp.alternatives);
        }
        Command::Launch(a) => {
            let (spec, constraints) = spec(&a.spec)?;
            let resp = c
                .launch
                .launch(v1::LaunchRequest {
                    spec: Some(spec),
                    constraints: Some(constraints),
                    warm_standby: a.warm_standby,
                    max_lifetime_seconds: a.max_lifetime.map_or(0, |d| d.as_secs()),
                    idle_ttl_seconds: a.idle_ttl.map_or(0, |d| d.as_secs()),
                    max_fallbacks: a.fallbacks,
                    idempotency_key: a.idempotency_key.clone(),
                })
                .await?
                .into_inner();
            out.launched(&resp);
            if a.watch {
                let mut stream = c
                    .launch
                    .watch_launch(v1::WatchLaunchRequest {
                        job_id: resp.job_id.clone(),
                        until_running: true,
                    })
                    .await?
                    .into_inner();
                let mut last = v1::LaunchState::Queued;
                while let Some(e) = stream.next().await {
                    let e = e?;
                    last = v1::LaunchState::try_from(e.state).unwrap_or_default();
                    out.launch_event(&e);
                }
                if matches!(last, v1::LaunchState::Failed | v1::LaunchState::Cancelled) {
                    return Ok(2);
                }
            }
        }
        Command::Status { job_id } => {
            let s = c
                .launch
                .get_launch(v1::GetLaunchRequest {
                    job_id: job_id.clone(),
                })
                .await?
                .into_inner();
            out.launch_status(&s);
        }
        Command::Cancel { job_id } => {
            let s = c
                .launch
                .cancel_launch(v1::CancelLaunchRequest {
                    job_id: job_id.clone(),
                })
                .await?
                .into_inner();
            out.launch_status(&s);
        }
        Command::Heartbeat { job_id, note } => {
            let r = c
                .launch
                .heartbeat(v1::HeartbeatRequest {
                    job_id: job_id.clone(),
                    note: note.clone(),
                })
                .await?
                .into_inner();
            out.heartbeat(job_id, &r);
        }
        Command::Launches { limit } => {
            let l = c
                .launch
                .list_launches(v1::ListLaunchesRequest { limit: *limit })
                .await?
                .into_inner();
            out.launches(&l.launches);
        }
        Command::Notify(NotifyCommand::Subscribe(a)) => {
            let req = v1::CreateSubscriptionRequest {
                url: a.url.clone(),
                format: webhook_format(&a.format)?,
                events: a
                    .events
                    .iter()
                    .map(|e| notification_event(e))
                    .collect::<anyhow::Result<_>>()?,
                keys: a
                    .keys
                    .iter()
                    .map(|k| key_selector(k))
                    .collect::<anyhow::Result<_>>()?,
                cooldown_seconds: a
                    .cooldown
                    .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
                    .unwrap_or(0),
                include_low_confidence: a.include_low_confidence,
            };
            let r = c.notify.create_subscription(req).await?.into_inner();
            out.subscribed(&r);
        }
        Command::Notify(NotifyCommand::List) => {
            let r = c
                .notify
                .list_subscriptions(v1::ListSubscriptionsRequest {})
                .await?
                .into_inner();
            out.subscriptions(&r.subscriptions);
        }
        Command::Notify(NotifyCommand::Delete { id }) => {
            c.notify
                .delete_subscription(v1::DeleteSubscriptionRequest { id: id.clone() })
                .await?;
            out.deleted(id);
        }
        Command::Notify(NotifyCommand::DeadLetters { limit }) => {
            let r = c
                .notify
                .list_dead_letters(v1::ListDeadLettersRequest { limit: *limit })
                .await?
                .into_inner();
            out.dead_letters(&r.dead_letters);
        }
        Command::Report(a) => {
            let k = key(&a.key)?;
            let resp = c
                .report
                .submit_report(v1::SubmitReportRequest {
                    id: a.id.clone(),
                    observed_at: None,
                    provider: k.provider,
                    region: k.region,
                    zone_id: k.zone_id,
                    zone_name: String::new(),
                    instance_type: k.instance_type,
                    market: k.market,
                    outcome: outcome(&a.outcome)?,
                    error_code: a.error_code.clone(),
                    error_message: a.error_message.clone(),
                    provisioning_ms: a.provisioning_ms,
                    count: a.count,
                    note: a.note.clone(),
                })
                .await?
                .into_inner();
            out.reported(&resp);
        }
    }
    Ok(0)
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let code = match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(s) => eprintln!("error: {:?}: {}", s.code(), s.message()),
                None => eprintln!("error: {e:#}"),
            }
            1
        }
    };
    std::process::exit(code);
}
