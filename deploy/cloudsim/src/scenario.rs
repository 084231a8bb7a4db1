//! Scenario files: the world cloudsim simulates and the timeline of what happens to it.
//!
//! A scenario is a TOML file (format documented in `docs/cloudsim.md`, examples in
//! `deploy/cloudsim/scenarios/`). [`Scenario::parse`] rejects unknown keys and inconsistent
//! references (a pool in an undeclared zone, a principal in an undeclared account), so a loaded
//! scenario is internally consistent. Times (`at`, `start_in`, ...) are simulated durations from
//! the start of the run.

use std::{collections::BTreeMap, path::Path, time::Duration};

use serde::Deserialize;

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file cannot be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown keys.
    #[error("invalid scenario: {0}")]
    Parse(String),
    /// The scenario refers to something it does not declare.
    #[error("inconsistent scenario: {0}")]
    Inconsistent(String),
}

/// A market for a pool: what `InstanceMarketOptions.MarketType` selects.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PoolMarket {
    /// On-demand (also used by capacity reservations).
    OnDemand,
    /// Spot.
    Spot,
}

impl PoolMarket {
    /// `on_demand` / `spot`, as in capacity keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnDemand => "on_demand",
            Self::Spot => "spot",
        }
    }
}

/// Which cloud a pool, account or principal belongs to. `aws` (the default) is keyed by zone;
/// `lambda` (Lambda Cloud) has no zones and is keyed by region, as in capacity keys
/// (`lambda/us-east-1//gpu_8x_h100_sxm5/on_demand`); `runpod` has no zones either and is keyed
/// by its cloud type (`secure`, `community`) and market
/// (`runpod/community//1x_rtx_4090/spot`); `gcp` (Compute Engine) is keyed by its
/// zone (`us-central1-a`), declared in `[[zones]]` with `provider = "gcp"`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SimProvider {
    /// Amazon Web Services (EC2 Query API, SigV4 access keys).
    #[default]
    Aws,
    /// Lambda Cloud (its REST API under `/api/v1`, API keys).
    Lambda,
    /// Google Cloud Compute Engine (`/compute/v1`, service accounts with OAuth2 tokens).
    Gcp,
    /// Microsoft Azure (Resource Manager JSON under `/subscriptions`, Entra ID client
    /// credentials). Keyed by zone like AWS: a zone's `id` is capsight's `<region>-<n>` for the
    /// physical zone `<region>-az<n>`, its `name` the logical zone (`1`) of subscriptions with
    /// `zone_shift = 0`.
    Azure,
    /// RunPod (its GraphQL API at `/graphql`, API keys).
    #[serde(rename = "runpod")]
    RunPod,
}

impl SimProvider {
    /// `aws` / `lambda`, as in capacity keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Lambda => "lambda",
            Self::Gcp => "gcp",
            Self::Azure => "azure",
            Self::RunPod => "runpod",
        }
    }

    /// Whether callers are API keys (Lambda, RunPod) rather than AWS access keys.
    pub fn uses_api_keys(self) -> bool {
        matches!(self, Self::Lambda | Self::RunPod)
    }
}

/// The Lambda account instance limit's quota code (the GPU catalog's name for it).
pub const LAMBDA_INSTANCE_QUOTA: &str = "lambda-account-instances";

/// The RunPod account GPU limit's quota code (the GPU catalog's name for it).
pub const RUNPOD_GPU_QUOTA: &str = "runpod-account-gpus";

/// RunPod's cloud types: a RunPod pool's `region`.
pub const RUNPOD_CLOUDS: &[&str] = &["secure", "community"];

/// The whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, shown by the admin API.
    pub name: String,
    /// What the scenario demonstrates.
    #[serde(default)]
    pub description: String,
    /// RNG seed used when `--seed` is not given.
    #[serde(default)]
    pub seed: u64,
    /// Simulated time per market step (refills, demand, prices, ground truth).
    #[serde(with = "humantime_serde", default = "default_step")]
    pub step: Duration,
    /// Replays the event timeline every `repeat` (longer than the last event), for long demos.
    #[serde(with = "humantime_serde", default)]
    pub repeat: Option<Duration>,
    /// Defaults for everything below.
    #[serde(default)]
    pub defaults: Defaults,
    /// Availability zones (AWS; Lambda has none).
    #[serde(default)]
    pub zones: Vec<Zone>,
    /// Accounts and their quotas.
    #[serde(default)]
    pub accounts: Vec<Account>,
    /// Long-term credentials.
    #[serde(default)]
    pub principals: Vec<Principal>,
    /// Roles that principals may assume.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Capacity pools per (zone, instance type, market).
    #[serde(default)]
    pub pools: Vec<Pool>,
    /// Capacity Block offers.
    #[serde(default)]
    pub capacity_blocks: Vec<CapacityBlock>,
    /// The status page.
    #[serde(default)]
    pub status: StatusPage,
    /// Timed events.
    #[serde(default)]
    pub events: Vec<Event>,
}

fn default_step() -> Duration {
    Duration::from_secs(60)
}

/// Scenario-wide defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// Quota value (vCPUs) for any quota code an account does not list.
    pub quota_vcpus: f64,
    /// pending -> running delay for pools without their own.
    #[serde(with = "humantime_serde")]
    pub provisioning: Duration,
    /// Interruption warning -> termination (AWS: two minutes).
    #[serde(with = "humantime_serde")]
    pub interruption_notice: Duration,
    /// Rebalance recommendation -> interruption warning.
    #[serde(with = "humantime_serde")]
    pub rebalance_lead: Duration,
    /// Placement scores for fewer instance types than this are capped at 3 (AWS scores such
    /// requests low). 1 disables the cap.
    pub placement_min_types: usize,
    /// Spot base price as a fraction of the catalog's on-demand price, for spot pools without
    /// their own `spot_price`.
    pub spot_discount: f64,
    /// EC2 API requests per real second per account before `RequestLimitExceeded`
    /// (token bucket); 0 = unlimited.
    pub api_requests_per_second: f64,
    /// Token bucket size for `api_requests_per_second`.
    pub api_burst: u32,
    /// Lambda accounts: instances an account may hold (booting or active) when it does not
    /// set the `lambda-account-instances` quota.
    pub lambda_instance_limit: u32,
    /// GCP projects: the limit of any quota metric a project does not list (new projects have
    /// no GPU quota).
    pub gcp_quota: f64,
    /// Azure: how long an Entra ID access token is valid (`expires_in`), in real time.
    #[serde(with = "humantime_serde")]
    pub azure_token_lifetime: Duration,
    /// RunPod accounts: GPUs an account's running pods may hold together when it does not set
    /// the `runpod-account-gpus` quota.
    pub runpod_gpu_limit: u32,
    /// RunPod accounts: balance in USD of accounts without their own `balance_usd`.
    pub runpod_balance_usd: f64,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            quota_vcpus: 0.0,
            provisioning: Duration::from_secs(60),
            interruption_notice: Duration::from_secs(120),
            rebalance_lead: Duration::from_secs(180),
            placement_min_types: 3,
            spot_discount: 0.4,
            api_requests_per_second: 0.0,
            api_burst: 20,
            lambda_instance_limit: 10,
            gcp_quota: 0.0,
            azure_token_lifetime: Duration::from_secs(3599),
            runpod_gpu_limit: 16,
            runpod_balance_usd: 1000.0,
        }
    }
}

/// An availability zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// The cloud (`aws` unless `gcp` or `azure`; Lambda has no zones).
    #[serde(default)]
    pub provider: SimProvider,
    /// Region, e.g. `us-east-1`.
    pub region: String,
    /// AZ ID, e.g. `use1-az4`: the same physical zone for every account (GCP: the zone name,
    /// e.g. `us-central1-a`, the same for every project).
    pub id: String,
    /// AZ name for accounts with `zone_shift = 0`, e.g. `us-east-1a` (GCP: leave out).
    #[serde(default)]
    pub name: String,
}

/// An account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// 12-digit account id (AWS); any name (Lambda); the project id (GCP).
    pub id: String,
    /// The cloud (`aws` unless `lambda`).
    #[serde(default)]
    pub provider: SimProvider,
    /// Lambda: the account is deactivated; every call answers 403 `global/account-inactive`.
    #[serde(default)]
    pub inactive: bool,
    /// RunPod: the account's balance in USD (`defaults.runpod_balance_usd` when absent); a
    /// deploy needs at least one hour of the pod's price.
    #[serde(default)]
    pub balance_usd: Option<f64>,
    /// Rotates this account's AZ names over the region's zone ids (AWS shuffles names per
    /// account): name i maps to id (i + shift) mod n.
    #[serde(default)]
    pub zone_shift: usize,
    /// Quota code -> value in vCPUs (Service Quotas, service `ec2`); Lambda:
    /// `lambda-account-instances` -> instances the account may hold; GCP: quota metric
    /// (`NVIDIA_H100_GPUS`, `PREEMPTIBLE_NVIDIA_H100_GPUS`, `CPUS`: the limit in every region;
    /// `GPUS_ALL_REGIONS`: the project-wide GPU limit); Azure: usage name
    /// (`standardNDSH100v5Family`, `lowPriorityCores`, `cores`) -> vCPU limit; RunPod:
    /// `runpod-account-gpus` -> GPUs the account's running pods may hold.
    #[serde(default)]
    pub quotas: BTreeMap<String, f64>,
    /// Azure: SKUs the subscription may not use in a location or some of its zones
    /// (`restrictions` with reason `NotAvailableForSubscription`).
    #[serde(default)]
    pub restrictions: Vec<SkuRestriction>,
}

/// An Azure SKU restriction of one subscription.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkuRestriction {
    /// VM size, e.g. `Standard_ND96isr_H100_v5`.
    pub instance_type: String,
    /// Region (location), e.g. `eastus`.
    pub region: String,
    /// Zone ids (`eastus-2`) restricted; empty = the whole location.
    #[serde(default)]
    pub zones: Vec<String>,
}

/// Long-term credentials of an IAM user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// The cloud (`aws` unless `lambda`).
    #[serde(default)]
    pub provider: SimProvider,
    /// The access key id the SDK signs with (AWS).
    #[serde(default)]
    pub access_key_id: String,
    /// The API key (Lambda: `Authorization: Bearer <key>` or basic auth with the key as user;
    /// RunPod: `Authorization: Bearer <key>` or `?api_key=<key>`).
    #[serde(default)]
    pub api_key: String,
    /// The service account's email (GCP): the `iss` of the JWT it exchanges for a token.
    #[serde(default)]
    pub client_email: String,
    /// The service account's public key (GCP), PEM (`BEGIN RSA PUBLIC KEY`): the JWT's
    /// signature is checked with it.
    #[serde(default)]
    pub public_key: String,
    /// Azure: the Entra ID tenant (directory) the app registration lives in.
    #[serde(default)]
    pub directory: String,
    /// Azure: the app registration's client id.
    #[serde(default)]
    pub client_id: String,
    /// Azure: the app registration's client secret.
    #[serde(default)]
    pub client_secret: String,
    /// The account.
    pub account: String,
    /// IAM user name, for ARNs in messages.
    pub user: String,
    /// Allowed actions: `ec2:RunInstances`, `ec2:Describe*`, `ec2:*`, `servicequotas:*`,
    /// `sts:AssumeRole`, `*`; GCP: IAM permissions, `compute.instances.create`,
    /// `compute.instances.*`, `compute.*`; Azure: `Microsoft.Compute/virtualMachines/write`,
    /// `Microsoft.Compute/*`, `*`.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// A role in a (tenant) account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// `arn:aws:iam::<account>:role/<name>`.
    pub arn: String,
    /// Required `ExternalId`, if any.
    pub external_id: Option<String>,
    /// Accounts whose principals may assume it.
    pub trusted_accounts: Vec<String>,
    /// Actions the session may perform (same patterns as principals).
    #[serde(default)]
    pub allow: Vec<String>,
}

impl Role {
    /// The account id inside the ARN.
    pub fn account(&self) -> Option<&str> {
        self.arn.split(':').nth(4).filter(|a| !a.is_empty())
    }

    /// The role name inside the ARN.
    pub fn name(&self) -> &str {
        self.arn.rsplit('/').next().unwrap_or(&self.arn)
    }
}

/// A capacity pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// The cloud (`aws` unless `lambda`).
    #[serde(default)]
    pub provider: SimProvider,
    /// AZ ID (AWS), zone (GCP); empty for Lambda and RunPod, which have no zones.
    #[serde(default)]
    pub zone: String,
    /// Region (Lambda; RunPod: its cloud type, `secure` or `community`); an AWS pool's region
    /// is its zone's.
    #[serde(default)]
    pub region: String,
    /// Instance type (must be in the GPU catalog for the pool's provider).
    pub instance_type: String,
    /// Market.
    pub market: PoolMarket,
    /// Most instances the pool holds.
    pub capacity: u32,
    /// Instances available at the start.
    pub stock: u32,
    /// Instances returned per simulated hour (other customers releasing capacity).
    #[serde(default)]
    pub refill_per_hour: f64,
    /// Instances taken per simulated hour by other customers.
    #[serde(default)]
    pub demand_per_hour: f64,
    /// pending -> running delay; default `defaults.provisioning`.
    #[serde(with = "humantime_serde", default)]
    pub provisioning: Option<Duration>,
    /// Spot pools: base price in USD/hour (default: catalog on-demand price x
    /// `defaults.spot_discount`). GCP spot prices stay at this price (Google changes them at
    /// most monthly).
    pub spot_price: Option<f64>,
    /// Spot pools: per-step relative price noise.
    #[serde(default = "default_volatility")]
    pub volatility: f64,
}

fn default_volatility() -> f64 {
    0.02
}

/// A bookable Capacity Block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityBlock {
    /// AZ ID.
    pub zone: String,
    /// Instance type.
    pub instance_type: String,
    /// Most instances one offering may hold.
    pub instance_count: u32,
    /// How long after "now" the earliest block starts.
    #[serde(with = "humantime_serde")]
    pub start_in: Duration,
    /// Upfront fee per instance-hour, USD.
    pub usd_per_instance_hour: f64,
}

/// The Statuspage-style page and the AWS-style RSS feeds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusPage {
    /// Page name.
    pub name: String,
    /// Component names (operational at start).
    pub components: Vec<String>,
}

impl Default for StatusPage {
    fn default() -> Self {
        Self {
            name: "cloudsim".into(),
            components: Vec::new(),
        }
    }
}

/// A timed event. (Unknown keys are rejected by [`EventKind`]: `deny_unknown_fields` cannot be
/// combined with `flatten` here.)
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    /// When, from the start of the run.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// What.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an event does.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EventKind {
    /// The pool empties and stops refilling until a `recover`.
    Stockout {
        /// The pool's cloud (`aws` unless `lambda`, `runpod` or `azure`).
        #[serde(default)]
        provider: SimProvider,
        /// AZ ID (AWS), zone id (Azure).
        #[serde(default)]
        zone: String,
        /// Region (Lambda; RunPod's cloud type).
        #[serde(default)]
        region: String,
        /// Instance type.
        instance_type: String,
        /// Market.
        market: PoolMarket,
        /// Spot pools: also interrupt the running spot instances of the pool.
        #[serde(default)]
        interrupt: bool,
    },
    /// The pool gets `stock` instances and refills again.
    Recover {
        /// The pool's cloud (`aws` unless `lambda`, `runpod` or `azure`).
        #[serde(default)]
        provider: SimProvider,
        /// AZ ID (AWS), zone id (Azure).
        #[serde(default)]
        zone: String,
        /// Region (Lambda; RunPod's cloud type).
        #[serde(default)]
        region: String,
        /// Instance type.
        instance_type: String,
        /// Market.
        market: PoolMarket,
        /// Stock after recovery.
        stock: u32,
    },
    /// Spot prices of a type (in one zone, or all) multiply by `factor` for `duration`.
    PriceSpike {
        /// AZ ID; all zones when absent.
        zone: Option<String>,
        /// Instance type.
        instance_type: String,
        /// Multiplier.
        factor: f64,
        /// How long.
        #[serde(with = "humantime_serde")]
        duration: Duration,
    },
    /// A fraction of running spot instances (matching zone/type when given) get a rebalance
    /// recommendation, then an interruption warning, then are terminated.
    InterruptionStorm {
        /// AZ ID filter.
        zone: Option<String>,
        /// Instance type filter.
        instance_type: Option<String>,
        /// Fraction in 0..=1 of matching instances.
        fraction: f64,
    },
    /// An account's quota value changes.
    Quota {
        /// Account id.
        account: String,
        /// Quota code.
        code: String,
        /// New value in vCPUs.
        value: f64,
    },
    /// A status-page component changes; `operational` resolves the open incident.
    Status {
        /// Component name.
        component: String,
        /// operational | degraded_performance | partial_outage | major_outage |
        /// under_maintenance.
        status: String,
        /// Incident title.
        #[serde(default)]
        title: String,
        /// Incident update text.
        #[serde(default)]
        body: String,
    },
    /// The next `count` calls of `action` fail with `code` (throttling, server errors).
    Fault {
        /// EC2 action, e.g. `RunInstances`, or `*`.
        action: String,
        /// AWS error code.
        code: String,
        /// How many calls.
        count: u32,
        /// Message; a generic one when absent.
        message: Option<String>,
    },
}

/// The pool a `stockout` or `recover` event names, whatever its provider, and what it does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolEvent<'a> {
    /// The pool's cloud.
    pub provider: SimProvider,
    /// AZ ID (AWS), zone (Azure, GCP).
    pub zone: &'a str,
    /// Region (Lambda; RunPod's cloud type).
    pub region: &'a str,
    /// Instance type.
    pub instance_type: &'a str,
    /// Market.
    pub market: PoolMarket,
    /// `Some(stock)` for a recover, `None` for a stockout.
    pub recover: Option<u32>,
    /// A stockout that also interrupts the pool's running spot instances.
    pub interrupt: bool,
}

impl EventKind {
    /// The pool event of a `stockout` or `recover`.
    pub fn pool_event(&self) -> Option<PoolEvent<'_>> {
        let (provider, zone, region, instance_type, market, recover, interrupt) = match self {
            Self::Stockout {
                provider,
                zone,
                region,
                instance_type,
                market,
                interrupt,
            } => (
                provider,
                zone,
                region,
                instance_type,
                market,
                None,
                *interrupt,
            ),
            Self::Recover {
                provider,
                zone,
                region,
                instance_type,
                market,
                stock,
            } => (
                provider,
                zone,
                region,
                instance_type,
                market,
                Some(*stock),
                false,
            ),
            _ => return None,
        };
        Some(PoolEvent {
            provider: *provider,
            zone,
            region,
            instance_type,
            market: *market,
            recover,
            interrupt,
        })
    }
}

const STATUSES: &[&str] = &[
    "operational",
    "degraded_performance",
    "partial_outage",
    "major_outage",
    "under_maintenance",
];

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and validates scenario text.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let s: Self = toml::from_str(text).map_err(|e| ScenarioError::Parse(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        let bad = |m: String| Err(ScenarioError::Inconsistent(m));
        if self.step.is_zero() {
            return bad("step must be positive".into());
        }
        if let Some(r) = self.repeat {
            let last = self.events.iter().map(|e| e.at).max().unwrap_or_default();
            if r <= last || r.is_zero() {
                return bad(format!(
                    "repeat ({r:?}) must be longer than the last event ({last:?})"
                ));
            }
        }
        let zone_of = |provider: SimProvider, id: &str| {
            self.zones
                .iter()
                .any(|z| z.id == id && z.provider == provider)
        };
        let zone = |id: &str| zone_of(SimProvider::Aws, id);
        for z in &self.zones {
            match z.provider {
                SimProvider::Aws if z.name.is_empty() => {
                    return bad(format!("zone {}: an AWS zone needs its name", z.id));
                }
                SimProvider::Lambda => {
                    return bad(format!("zone {}: Lambda has no zones", z.id));
                }
                SimProvider::Gcp if !z.id.starts_with(&format!("{}-", z.region)) => {
                    return bad(format!(
                        "gcp zone {}: a GCP zone is named <region>-<letter> ({})",
                        z.id, z.region
                    ));
                }
                _ => {}
            }
        }
        let account = |id: &str| self.accounts.iter().any(|a| a.id == id);
        let account_of = |id: &str| self.accounts.iter().find(|a| a.id == id);
        // a pool of the event's provider and type, in its zone (GCP) or region (Lambda, RunPod;
        // RunPod's of its market too)
        let event_pool = |e: &PoolEvent<'_>| {
            self.pools.iter().any(|p| {
                p.provider == e.provider
                    && p.instance_type == e.instance_type
                    && match e.provider {
                        SimProvider::Gcp => p.zone == e.zone,
                        SimProvider::RunPod => p.region == e.region && p.market == e.market,
                        _ => p.region == e.region,
                    }
            })
        };
        for p in &self.pools {
            if p.stock > p.capacity {
                let place = if p.zone.is_empty() {
                    &p.region
                } else {
                    &p.zone
                };
                return bad(format!(
                    "pool {place}/{}: stock > capacity",
                    p.instance_type
                ));
            }
            if p.provider == SimProvider::Gcp {
                if !p.region.is_empty() || !zone_of(SimProvider::Gcp, &p.zone) {
                    return bad(format!(
                        "gcp pool {}: give a declared gcp zone, not a region ({:?})",
                        p.instance_type, p.zone
                    ));
                }
                continue;
            }
            if p.provider == SimProvider::RunPod {
                if !p.zone.is_empty() || !RUNPOD_CLOUDS.contains(&p.region.as_str()) {
                    return bad(format!(
                        "runpod pool {}: RunPod has no zones; region is its cloud type ({})",
                        p.instance_type,
                        RUNPOD_CLOUDS.join(" or ")
                    ));
                }
                continue;
            }
            if p.provider == SimProvider::Lambda {
                if !p.zone.is_empty() || p.region.is_empty() {
                    return bad(format!(
                        "lambda pool {}: Lambda has no zones; give region, not zone",
                        p.instance_type
                    ));
                }
                if p.market != PoolMarket::OnDemand {
                    return bad(format!(
                        "lambda pool {}/{}: Lambda sells on-demand only",
                        p.region, p.instance_type
                    ));
                }
                continue;
            }
            if p.provider == SimProvider::Azure {
                if !p.region.is_empty() || !zone_of(SimProvider::Azure, &p.zone) {
                    return bad(format!(
                        "azure pool {}: give the zone id of a declared azure zone (e.g. eastus-1), not a region",
                        p.instance_type
                    ));
                }
                continue;
            }
            if !p.region.is_empty() {
                return bad(format!(
                    "pool {}/{}: an AWS pool's region is its zone's; leave region out",
                    p.zone, p.instance_type
                ));
            }
            if !zone(&p.zone) {
                return bad(format!(
                    "pool {} in undeclared zone {}",
                    p.instance_type, p.zone
                ));
            }
        }
        for b in &self.capacity_blocks {
            if !zone(&b.zone) {
                return bad(format!("capacity block in undeclared zone {}", b.zone));
            }
        }
        for p in &self.principals {
            let (name, key) = match p.provider {
                SimProvider::Aws => ("access_key_id", &p.access_key_id),
                SimProvider::Lambda | SimProvider::RunPod => ("api_key", &p.api_key),
                SimProvider::Gcp => ("client_email", &p.client_email),
                SimProvider::Azure => ("client_id", &p.client_id),
            };
            if p.provider == SimProvider::Gcp && !p.public_key.contains("BEGIN RSA PUBLIC KEY") {
                return bad(format!(
                    "gcp principal {key}: public_key must be a PEM RSA public key"
                ));
            }
            if p.provider == SimProvider::Azure
                && (p.client_secret.is_empty() || p.directory.is_empty())
            {
                return bad(format!(
                    "azure principal {}: directory and client_secret are required",
                    p.user
                ));
            }
            if key.is_empty() {
                return bad(format!(
                    "{} principal {}: {name} is required",
                    p.provider.as_str(),
                    p.user
                ));
            }
            match account_of(&p.account) {
                Some(a) if a.provider == p.provider => {}
                Some(_) => {
                    return bad(format!(
                        "principal {key}: account {} is not a {} account",
                        p.account,
                        p.provider.as_str()
                    ));
                }
                None => {
                    return bad(format!(
                        "principal {key} in undeclared account {}",
                        p.account
                    ));
                }
            }
        }
        for r in &self.roles {
            match r.account() {
                Some(a) if account(a) => {}
                _ => return bad(format!("role {} is not in a declared account", r.arn)),
            }
        }
        for e in &self.events {
            if let Some(p) = e.kind.pool_event() {
                let (found, missing) = match p.provider {
                    SimProvider::Aws => (zone(p.zone), format!("undeclared zone {}", p.zone)),
                    SimProvider::Azure => (
                        zone_of(SimProvider::Azure, p.zone),
                        format!("undeclared azure zone {}", p.zone),
                    ),
                    SimProvider::Lambda => (
                        event_pool(&p),
                        format!("no lambda pool {}/{}", p.region, p.instance_type),
                    ),
                    SimProvider::Gcp => (
                        event_pool(&p),
                        format!("no gcp pool {}/{}", p.zone, p.instance_type),
                    ),
                    SimProvider::RunPod => (
                        event_pool(&p),
                        format!(
                            "no runpod pool {}/{}/{}",
                            p.region,
                            p.instance_type,
                            p.market.as_str()
                        ),
                    ),
                };
                if !found {
                    return bad(format!("event at {:?}: {missing}", e.at));
                }
            }
            match &e.kind {
                EventKind::Quota { account: a, .. } if !account(a) => {
                    return bad(format!("event at {:?}: undeclared account {a}", e.at));
                }
                EventKind::Status { status, .. } if !STATUSES.contains(&status.as_str()) => {
                    return bad(format!(
                        "event at {:?}: status {status:?} is not one of {}",
                        e.at,
                        STATUSES.join(", ")
                    ));
                }
                EventKind::InterruptionStorm { fraction, .. }
                    if !(0.0..=1.0).contains(fraction) =>
                {
                    return bad(format!(
                        "event at {:?}: fraction must be within 0..=1",
                        e.at
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_keys_and_dangling_references() {
        let ok = r#"
            name = "t"
            [[zones]]
            region = "us-east-1"
            id = "use1-az4"
            name = "us-east-1a"
            [[pools]]
            zone = "use1-az4"
            instance_type = "p5.48xlarge"
            market = "on_demand"
            capacity = 2
            stock = 1
            [[events]]
            at = "10m"
            kind = "stockout"
            zone = "use1-az4"
            instance_type = "p5.48xlarge"
            market = "on_demand"
        "#;
        let s = Scenario::parse(ok).unwrap();
        assert_eq!(s.events[0].at, Duration::from_secs(600));
        assert!(Scenario::parse(&ok.replace("stock = 1", "stock = 1\nstok = 2")).is_err());
        assert!(Scenario::parse(&ok.replace("at = \"10m\"", "at = \"10m\"\nzonee = 1")).is_err());
        assert!(
            Scenario::parse(&ok.replace(
                "zone = \"use1-az4\"\n            instance_type",
                "zone = \"use1-az9\"\n            instance_type"
            ))
            .is_err()
        );
    }

    #[test]
    fn lambda_pools_have_regions_not_zones_and_principals_match_their_accounts() {
        let ok = r#"
            name = "t"
            [[accounts]]
            id = "acme"
            provider = "lambda"
            [[principals]]
            provider = "lambda"
            api_key = "secret"
            account = "acme"
            user = "acme"
            [[pools]]
            provider = "lambda"
            region = "us-south-2"
            instance_type = "gpu_8x_h100_sxm5"
            market = "on_demand"
            capacity = 2
            stock = 1
            [[events]]
            at = "1m"
            kind = "stockout"
            provider = "lambda"
            region = "us-south-2"
            instance_type = "gpu_8x_h100_sxm5"
            market = "on_demand"
        "#;
        let s = Scenario::parse(ok).unwrap();
        assert_eq!(s.pools[0].provider, SimProvider::Lambda);
        assert!(s.zones.is_empty());
        let bad = |from: &str, to: &str| {
            let text = ok.replacen(from, to, 1);
            assert!(Scenario::parse(&text).is_err(), "{to}");
        };
        // a zone, a spot market, no key, an AWS account, an event for a pool that is not there
        bad(
            "region = \"us-south-2\"\n            instance_type",
            "zone = \"x\"\n            instance_type",
        );
        bad(
            "market = \"on_demand\"\n            capacity",
            "market = \"spot\"\n            capacity",
        );
        bad("api_key = \"secret\"", "api_key = \"\"");
        bad(
            "id = \"acme\"\n            provider = \"lambda\"",
            "id = \"acme\"",
        );
        bad(
            "at = \"1m\"\n            kind = \"stockout\"\n            provider = \"lambda\"\n            region = \"us-south-2\"",
            "at = \"1m\"\n            kind = \"stockout\"\n            provider = \"lambda\"\n            region = \"us-west-3\"",
        );
    }

    #[test]
    fn azure_pools_sit_in_azure_zones_and_app_registrations_need_a_directory_and_secret() {
        let ok = r#"
            name = "t"
            [[zones]]
            provider = "azure"
            region = "eastus"
            id = "eastus-1"
            name = "1"
            [[accounts]]
            id = "sub-1"
            provider = "azure"
            [[accounts.restrictions]]
            instance_type = "Standard_ND96isr_H100_v5"
            region = "eastus"
            [[principals]]
            provider = "azure"
            directory = "dir"
            client_id = "app"
            client_secret = "secret"
            account = "sub-1"
            user = "ops"
            [[pools]]
            provider = "azure"
            zone = "eastus-1"
            instance_type = "Standard_ND96isr_H100_v5"
            market = "spot"
            capacity = 2
            stock = 1
            [[events]]
            at = "1m"
            kind = "stockout"
            provider = "azure"
            zone = "eastus-1"
            instance_type = "Standard_ND96isr_H100_v5"
            market = "spot"
        "#;
        let s = Scenario::parse(ok).unwrap();
        assert_eq!(s.pools[0].provider, SimProvider::Azure);
        assert!(s.accounts[0].restrictions[0].zones.is_empty());
        let bad = |from: &str, to: &str| {
            let text = ok.replacen(from, to, 1);
            assert!(Scenario::parse(&text).is_err(), "{to}");
        };
        // a pool in an AWS zone, a region instead of a zone, no secret, an undeclared zone
        bad(
            "provider = \"azure\"\n            region = \"eastus\"",
            "region = \"eastus\"",
        );
        bad(
            "zone = \"eastus-1\"\n            instance_type",
            "region = \"eastus\"\n            instance_type",
        );
        bad("client_secret = \"secret\"", "client_secret = \"\"");
        bad(
            "at = \"1m\"\n            kind = \"stockout\"\n            provider = \"azure\"\n            zone = \"eastus-1\"",
            "at = \"1m\"\n            kind = \"stockout\"\n            provider = \"azure\"\n            zone = \"eastus-9\"",
        );
    }
}
