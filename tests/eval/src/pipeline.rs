//! capsight's real pipeline for one capsight arm, on the local stack: a test-kit sandbox (its own
//! topics, a migrated ClickHouse database, RabbitMQ names, a tenant registry with one API key
//! per simulated tenant), a config whose real-time durations are the production defaults
//! divided by the time scale, and the service binaries — `capsight-scorer`, `capsight-gateway`,
//! `capsight-launcher`, the collectors `capsight-quota`, `capsight-spot`, `capsight-status`,
//! `capsight-probe` (unless ablated) and `capsight-reports` (unless ablated) — pointed at the
//! arm's cloudsim with the operator's key.
//!
//! Contract: [`Pipeline::start`] returns once the gateway answers; [`Pipeline::stop`] stops
//! every process (SIGTERM, 30 s, then SIGKILL), drops the database and deletes the RabbitMQ
//! topology. Dropping a pipeline kills its processes. Kafka topics are left behind on purpose
//! (deleting topics crashed the shared broker before; they are cheap and uniquely named).
//! Process logs go to the arm's directory.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use capsight_cloudsim::scenario::{Scenario, SimProvider};
use capsight_proto::v1::{ListScoresRequest, score_service_client::ScoreServiceClient};
use capsight_testkit::{Sandbox, tenants::tenant};
use tonic::transport::Channel;

use crate::workload::Workload;

/// Why the pipeline could not run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A binary is missing.
    #[error(
        "{0} is missing: build the workspace's binaries first (cargo build --workspace --bins) \
         or set CAPSIGHT_EVAL_BIN_DIR"
    )]
    Missing(PathBuf),
    /// A file could not be written or read.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A process could not be spawned.
    #[error("spawning {name}: {source}")]
    Spawn {
        /// The binary.
        name: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The gateway never answered.
    #[error("the gateway at {0} did not answer within 120 s (logs in the arm's directory)")]
    Gateway(SocketAddr),
    /// A process exited early.
    #[error("{0} exited during start-up (see its log)")]
    Exited(String),
}

/// What an arm leaves out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Ablation {
    /// No crowd reports: no reports intake, no events webhook, no reporters.
    pub no_reports: bool,
    /// No active probes.
    pub no_probes: bool,
}

/// The directory of the workspace binaries: `CAPSIGHT_EVAL_BIN_DIR`, else the directory of the
/// running executable (or its parent for a test binary in `deps/`).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CAPSIGHT_EVAL_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    }
}

/// The binaries of a full pipeline.
pub const BINARIES: &[&str] = &[
    "capsight-scorer",
    "capsight-gateway",
    "capsight-launcher",
    "capsight-quota",
    "capsight-spot",
    "capsight-status",
    "capsight-probe",
    "capsight-reports",
];

/// Checks that every binary exists.
pub fn check_binaries() -> Result<(), PipelineError> {
    let dir = bin_dir();
    for b in BINARIES {
        let p = dir.join(b);
        if !p.exists() {
            return Err(PipelineError::Missing(p));
        }
    }
    Ok(())
}

/// A real-time duration for `sim_seconds` of simulated time at `scale`, at least 100 ms, as a
/// humantime string.
fn real(sim_seconds: f64, scale: f64) -> String {
    let ms = (sim_seconds / scale * 1000.0).round().max(100.0);
    format!("{ms}ms")
}

/// A free TCP port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}

/// `profile` with every duration string (production time, e.g. `recent_half_life = "30m"`)
/// divided by `scale` like the overlay's cadences; other values as they are.
fn scaled_durations(profile: &toml::Table, scale: f64) -> toml::Table {
    fn walk(v: &toml::Value, scale: f64) -> toml::Value {
        match v {
            toml::Value::String(text) => humantime_serde::re::humantime::parse_duration(text)
                .map_or_else(
                    |_| v.clone(),
                    |d| toml::Value::String(real(d.as_secs_f64(), scale)),
                ),
            toml::Value::Table(t) => toml::Value::Table(scaled_durations(t, scale)),
            toml::Value::Array(a) => toml::Value::Array(a.iter().map(|x| walk(x, scale)).collect()),
            other => other.clone(),
        }
    }
    profile
        .iter()
        .map(|(k, v)| (k.clone(), walk(v, scale)))
        .collect()
}

/// The config overlay of a capsight arm: production cadences divided by `scale`.
fn overlay(
    scenario: &Scenario,
    scale: f64,
    gateway: SocketAddr,
    reports: SocketAddr,
    cloudsim: &str,
) -> String {
    let r = |s: f64| real(s, scale);
    let q = |v: &[String]| {
        v.iter()
            .map(|x| format!("{x:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut regions: Vec<String> = scenario.zones.iter().map(|z| z.region.clone()).collect();
    regions.sort();
    regions.dedup();
    let mut types: Vec<String> = scenario
        .pools
        .iter()
        .filter(|p| p.provider == SimProvider::Aws && p.market.as_str() == "on_demand")
        .map(|p| p.instance_type.clone())
        .collect();
    types.sort();
    types.dedup();
    let (h, m) = (3600.0, 60.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"
[tenancy]
default_rate_per_minute = 1000000

[cloud]
max_attempts = 3
retry_min_delay = "20ms"
retry_max_delay = "200ms"

[gateway]
listen = "{gateway}"
web_listen = ""
ageing_interval = "{ageing}"
watch_poll_interval = "200ms"
registry_recheck = "500ms"

[reports]
listen = "{reports}"
registry_recheck = "500ms"

[verdict]
half_life = "{half_life}"
stale_after = "{stale_after}"

[scorer]
window = "{window}"
score_heartbeat = "{heartbeat}"
alert_cooldown = "{cooldown}"
batch_max_interval = "200ms"
retry_backoff = "200ms"
health_listen = "127.0.0.1:0"

[trust]
refresh_interval = "{trust_refresh}"

[amqp.launch]
retry_delay = "{retry}"

[launcher]
poll_interval = "200ms"
provisioning_timeout = "{prov_timeout}"
cancel_sweep_interval = "500ms"
reconnect_delay = "500ms"
cloud_timeout = "20s"
scores_max_age = "{window}"
health_listen = "127.0.0.1:0"

[launcher.lifecycle]
interval = "1s"

[launcher.standby]
cooldown = "{standby_cooldown}"
interval = "500ms"

[status]
poll_interval = "{status_poll}"
request_timeout = "5s"

[[status.feeds]]
name = "cloudsim-statuspage"
kind = "statuspage"
url = "{cloudsim}/api/v2/summary.json"
provider = "aws"
"#,
        window = r(24.0 * h),
        half_life = r(6.0 * h),
        stale_after = r(12.0 * h),
        ageing = r(m),
        heartbeat = r(15.0 * m),
        cooldown = r(30.0 * m),
        retry = r(30.0),
        prov_timeout = r(10.0 * m),
        standby_cooldown = r(10.0 * m),
        status_poll = r(5.0 * m),
        trust_refresh = r(m),
    );
    for region in &regions {
        let _ = write!(
            s,
            r#"
[[status.feeds]]
name = "cloudsim-aws-ec2-{region}"
kind = "aws_rss"
url = "{cloudsim}/rss/ec2-{region}.rss"
provider = "aws"
region = "{region}"
"#
        );
    }
    let _ = write!(
        s,
        r#"
[quota]
interval = "{quota}"
heartbeat = "{quota_hb}"
regions = [{regions}]

[spot]
price_interval = "{price}"
placement_interval = "{placement}"
offerings_interval = "{offerings}"
regions = [{regions}]

[probe]
regions = [{regions}]
instance_types = [{types}]
markets = ["on_demand"]
tick = "{tick}"
daily_budget_usd = 50.0
reservation_hold = "{hold}"
reservation_expiry = "{expiry}"
launch_hold = "{launch_hold}"
demand_window = "{window}"
demand_refresh = "{refresh}"
sweep_interval = "{sweep}"
sweep_after = "{sweep_after}"
shutdown_grace = "10s"

[probe.cadence]
min_interval = "{min_i}"
max_interval = "{max_i}"
recovery_interval = "{recovery_i}"
waiting_window = "{waiting}"

[probe.limits]
per_api_per_minute = {per_api}
per_account_per_minute = {per_account}
"#,
        quota = r(h),
        quota_hb = r(6.0 * h),
        regions = q(&regions),
        types = q(&types),
        price = r(10.0 * m),
        placement = r(h),
        offerings = r(6.0 * h),
        tick = r(30.0),
        hold = r(30.0),
        expiry = r(10.0 * m),
        launch_hold = r(60.0),
        window = r(24.0 * h),
        refresh = r(5.0 * m),
        sweep = r(m),
        sweep_after = r(5.0 * m),
        min_i = r(10.0 * m),
        recovery_i = r(3.0 * m),
        waiting = r(15.0 * m),
        max_i = r(30.0 * m),
        per_api = (20.0 * scale).ceil() as u64,
        per_account = (60.0 * scale).ceil() as u64,
    );
    let keyed_regions = |provider: SimProvider| -> Vec<String> {
        let mut regions: Vec<String> = scenario
            .pools
            .iter()
            .filter(|p| p.provider == provider)
            .map(|p| p.region.clone())
            .collect();
        regions.sort();
        regions.dedup();
        regions
    };
    let (lambda, runpod) = (
        keyed_regions(SimProvider::Lambda),
        keyed_regions(SimProvider::RunPod),
    );
    let providers: Vec<String> = [("lambda", &lambda), ("runpod", &runpod)]
        .iter()
        .filter(|(_, r)| !r.is_empty())
        .map(|(p, _)| (*p).to_owned())
        .collect();
    if !providers.is_empty() {
        let _ = write!(
            s,
            r#"
[gpuclouds]
interval = "{interval}"
offerings_interval = "{offerings}"
regions = [{regions}]
providers = [{providers}]

[lambda]
endpoint = "{cloudsim}"

[runpod]
endpoint = "{cloudsim}"
"#,
            interval = r(3.0 * m),
            offerings = r(h),
            regions = q(&lambda),
            providers = q(&providers),
        );
    }
    s
}

/// Merges `over` into `base`, table by table (arrays are replaced).
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

struct Proc {
    name: String,
    child: Child,
}

/// One capsight arm's running pipeline.
pub struct Pipeline {
    sandbox: Sandbox,
    procs: Vec<Proc>,
    /// The gateway's address.
    pub gateway: SocketAddr,
    /// The reports intake's address (also when it is not started).
    pub reports: SocketAddr,
    /// API key per tenant id.
    pub keys: BTreeMap<String, String>,
    /// Tenant account id -> that tenant's API key (its EventBridge forwarding).
    pub account_keys: BTreeMap<String, String>,
    /// The arm's config file.
    pub config: PathBuf,
    dir: PathBuf,
    /// Tenants' Lambda and RunPod API keys by the variable their registrations name.
    tenant_keys: BTreeMap<String, String>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("sandbox", &self.sandbox.name)
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

impl Pipeline {
    /// Creates the sandbox (topics, database, RabbitMQ names, registry) for `arm`; the
    /// processes start with [`Pipeline::spawn`] once the arm's cloudsim runs.
    pub async fn prepare(arm: &str, workload: &Workload, dir: &Path) -> Self {
        let prefix: String = format!("eval_{arm}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let specs = workload.tenants.iter().map(|t| {
            let mut s = tenant(&t.id)
                .role(&t.role, t.external_id.as_deref().unwrap_or_default())
                .rate(1_000_000)
                .with_key();
            if let Some(q) = t.gpu_quota {
                s = s.gpu_quota(q);
            }
            for (provider, account) in t.keyed_accounts() {
                let env = crate::cloud::key_env(provider, &t.id);
                s = match provider {
                    capsight_proto::domain::Provider::RunPod => s.runpod(&env, account.limit),
                    _ => s.lambda(&env, account.limit),
                };
            }
            s
        });
        let tenant_keys = workload
            .tenants
            .iter()
            .flat_map(|t| {
                t.keyed_accounts()
                    .map(|(p, a)| (crate::cloud::key_env(p, &t.id), a.api_key.clone()))
            })
            .collect();
        let sandbox = Sandbox::builder(&prefix)
            .topics(2)
            .database()
            .amqp()
            .tenants(specs)
            .start()
            .await;
        let keys = workload
            .tenants
            .iter()
            .map(|t| (t.id.clone(), sandbox.key(&t.id)))
            .collect();
        let account_keys = workload
            .tenants
            .iter()
            .filter_map(|t| Some((role_account(&t.role)?.to_owned(), sandbox.key(&t.id))))
            .collect();
        Self {
            sandbox,
            procs: Vec::new(),
            gateway: SocketAddr::from(([127, 0, 0, 1], free_port())),
            reports: SocketAddr::from(([127, 0, 0, 1], free_port())),
            keys,
            account_keys,
            config: dir.join("capsight.toml"),
            dir: dir.to_path_buf(),
            tenant_keys,
        }
    }

    /// The sandbox's name (its database is `test_<name>`).
    pub fn name(&self) -> &str {
        &self.sandbox.name
    }

    /// Writes the config (the run's overlay, then the `model` profile when given) and starts
    /// the processes against the cloudsim at `cloudsim`, acting as `operator`; returns once the
    /// gateway answers.
    pub async fn spawn(
        &mut self,
        scenario: &Scenario,
        scale: f64,
        cloudsim: &str,
        operator: &str,
        ablation: Ablation,
        model: Option<&toml::Table>,
    ) -> Result<(), PipelineError> {
        let base_path = self.sandbox.config_file().to_path_buf();
        let file_err = |path: &Path, e: &dyn std::fmt::Display| PipelineError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let base_text =
            std::fs::read_to_string(&base_path).map_err(|e| file_err(&base_path, &e))?;
        let mut table: toml::Table = base_text.parse().map_err(|e| file_err(&base_path, &e))?;
        let over: toml::Table = overlay(scenario, scale, self.gateway, self.reports, cloudsim)
            .parse()
            .map_err(|e| file_err(&self.config, &e))?;
        merge(&mut table, over);
        if let Some(model) = model {
            merge(&mut table, scaled_durations(model, scale));
        }
        let text = toml::to_string(&table).map_err(|e| file_err(&self.config, &e))?;
        std::fs::write(&self.config, text).map_err(|e| file_err(&self.config, &e))?;

        let region = scenario
            .zones
            .first()
            .map_or_else(|| "us-east-1".to_owned(), |z| z.region.clone());
        let dir = bin_dir();
        // Lambda Cloud's listing and RunPod's stock, when the scenario sells there: the
        // operator's key on each is the scenario's first principal of that provider
        let operator_key = |provider: SimProvider, var: &'static str| {
            scenario
                .principals
                .iter()
                .find(|p| {
                    p.provider == provider && scenario.pools.iter().any(|q| q.provider == provider)
                })
                .map(|p| (var, p.api_key.clone()))
        };
        let operator_keys: Vec<(&str, String)> = [
            operator_key(SimProvider::Lambda, "LAMBDA_API_KEY"),
            operator_key(SimProvider::RunPod, "RUNPOD_API_KEY"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let extra: &[&str] = if operator_keys.is_empty() {
            &[]
        } else {
            &["capsight-gpuclouds"]
        };
        for name in BINARIES.iter().chain(extra) {
            if (ablation.no_probes && *name == "capsight-probe")
                || (ablation.no_reports && *name == "capsight-reports")
            {
                continue;
            }
            let exe = dir.join(name);
            if !exe.exists() {
                return Err(PipelineError::Missing(exe));
            }
            let log_path = self.dir.join(format!("{name}.log"));
            let log = std::fs::File::create(&log_path).map_err(|e| file_err(&log_path, &e))?;
            let mut cmd = Command::new(&exe);
            cmd.env("CAPSIGHT_CONFIG", &self.config)
                .env("RUST_LOG", "info")
                .env("AWS_ENDPOINT_URL", cloudsim)
                .env("AWS_ACCESS_KEY_ID", operator)
                .env("AWS_SECRET_ACCESS_KEY", "cloudsim")
                .env("AWS_REGION", &region)
                .env_remove("AWS_PROFILE")
                .envs(&self.tenant_keys)
                .envs(operator_keys.iter().map(|(var, key)| (*var, key)))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            let child = cmd.spawn().map_err(|source| PipelineError::Spawn {
                name: (*name).to_owned(),
                source,
            })?;
            self.procs.push(Proc {
                name: (*name).to_owned(),
                child,
            });
        }
        self.wait_for_gateway().await
    }

    async fn wait_for_gateway(&mut self) -> Result<(), PipelineError> {
        let key = self.keys.values().next().cloned().unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(120);
        let endpoint = format!("http://{}", self.gateway);
        loop {
            for p in &mut self.procs {
                if let Ok(Some(_)) = p.child.try_wait() {
                    return Err(PipelineError::Exited(p.name.clone()));
                }
            }
            if let Ok(channel) = Channel::from_shared(endpoint.clone())
                .map_err(|_| ())
                .map(|e| e.connect_timeout(Duration::from_secs(2)))
                && let Ok(channel) = channel.connect().await
            {
                let mut client = ScoreServiceClient::new(channel);
                let req = crate::replay::authed(ListScoresRequest::default(), &key);
                if client.list_scores(req).await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(PipelineError::Gateway(self.gateway));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// A channel to the gateway.
    pub fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.gateway))
            .map(|e| e.connect_lazy())
            .unwrap_or_else(|_| Channel::from_static("http://127.0.0.1:1").connect_lazy())
    }

    /// The client of the arm's ClickHouse database.
    pub fn clickhouse(&self) -> Option<clickhouse::Client> {
        self.sandbox.clickhouse.client().ok()
    }

    /// Stops every process (SIGTERM, 30 s, SIGKILL), drops the database and the RabbitMQ
    /// topology. Returns the processes that did not exit cleanly.
    pub async fn stop(mut self) -> Vec<String> {
        let mut unclean = Vec::new();
        for p in &self.procs {
            let _ = Command::new("kill")
                .args(["-TERM", &p.child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for p in &mut self.procs {
            loop {
                match p.child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            unclean.push(format!("{} exited with {status}", p.name));
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    _ => {
                        let _ = p.child.kill();
                        let _ = p.child.wait();
                        unclean.push(format!("{} killed after 30 s", p.name));
                        break;
                    }
                }
            }
        }
        self.procs.clear();
        self.sandbox.cleanup().await;
        unclean
    }
}

/// The account id of an IAM role ARN (`arn:aws:iam::<account>:role/<name>`).
fn role_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_profiles_durations_are_scaled_and_its_numbers_kept() {
        let profile: toml::Table = "[scorer]\nrecent_half_life = \"30m\"\n[scorer.weights]\nrecent_outcome = 40.0\n[verdict.market_prior]\nspot = 60.0\n"
            .parse()
            .expect("toml");
        let scaled = scaled_durations(&profile, 30.0);
        assert_eq!(
            scaled["scorer"]["recent_half_life"].as_str(),
            Some("60000ms")
        );
        assert_eq!(
            scaled["scorer"]["weights"]["recent_outcome"].as_float(),
            Some(40.0)
        );
        assert_eq!(
            scaled["verdict"]["market_prior"]["spot"].as_float(),
            Some(60.0)
        );
    }
}
