//! Workload files: the launch requests a run replays, the simulated tenants that make them and
//! the tenants that submit crowd reports (format in `docs/evaluation.md`, "Workload files").
//!
//! Contract: [`Workload::parse`] accepts only the documented keys (unknown keys are errors) and
//! checks every reference it can without the scenario (tenants of requests and reporters,
//! markets, counts, durations); [`Workload::check_against`] checks the rest against the
//! scenario and the GPU catalog. Every error names the field, and for requests and reporters
//! their index in the file (`requests[3].tenant: ...`). Request times count from the end of the
//! warm-up; [`Workload::expand`] turns `repeat` into separate requests, ordered by arrival.

use std::{collections::BTreeSet, path::Path, time::Duration};

use capsight_catalog::Catalog;
use capsight_cloudsim::scenario::Scenario;
use capsight_proto::domain::{InstanceType, Market, Provider};
use serde::Deserialize;

/// Why a workload file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML does not match the format.
    #[error("{0}")]
    Format(String),
    /// A value is wrong: `field` names it (`requests[2].market`).
    #[error("{field}: {message}")]
    Field {
        /// The field path.
        field: String,
        /// What is wrong.
        message: String,
    },
}

fn field(field: impl Into<String>, message: impl Into<String>) -> WorkloadError {
    WorkloadError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// A workload file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Short name (reports, directories).
    pub name: String,
    /// What it exercises.
    #[serde(default)]
    pub description: String,
    /// Simulated time from the world's start to the first request; collectors run during it.
    #[serde(with = "humantime_serde")]
    pub warmup: Duration,
    /// Default per-request deadline, simulated time from arrival.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Default time a satisfied request keeps its instances before releasing them.
    #[serde(with = "humantime_serde")]
    pub hold: Duration,
    /// Default wait between two rounds of a request that found nothing.
    #[serde(default = "default_retry_after", with = "humantime_serde")]
    pub retry_after: Duration,
    /// The operator's access key in the scenario (capsight's own account: collectors and the
    /// assumption of tenants' roles); default: the scenario's first principal.
    pub operator: Option<String>,
    /// Machine image of every launch.
    #[serde(default = "default_image")]
    pub image_id: String,
    /// Simulated tenants.
    pub tenants: Vec<TenantDef>,
    /// Launch requests.
    pub requests: Vec<RequestDef>,
    /// Tenants that submit crowd reports.
    #[serde(default)]
    pub reporters: Vec<ReporterDef>,
}

fn default_retry_after() -> Duration {
    Duration::from_secs(120)
}

fn default_image() -> String {
    "ami-0c0ffee0000e7a100".into()
}

/// One simulated tenant: a capsight API key and a role in the scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantDef {
    /// Tenant id (lowercase letters, digits, `-`).
    pub id: String,
    /// The scenario role capsight assumes for it (`arn:aws:iam::...:role/...`).
    pub role: String,
    /// The role's external id, when the scenario sets one.
    pub external_id: Option<String>,
    /// GPU quota in capsight's registry (`capsight-admin tenant quota`); default none.
    pub gpu_quota: Option<u32>,
    /// Its Lambda Cloud account (the limit: instances); none = no Lambda account.
    #[serde(default)]
    pub lambda: Option<KeyedAccountDef>,
    /// Its RunPod account (the limit: GPUs); none = no RunPod account.
    #[serde(default)]
    pub runpod: Option<KeyedAccountDef>,
}

impl TenantDef {
    /// Its accounts on the API-key clouds, by provider.
    pub fn keyed_accounts(&self) -> impl Iterator<Item = (Provider, &KeyedAccountDef)> {
        [
            (Provider::Lambda, self.lambda.as_ref()),
            (Provider::RunPod, self.runpod.as_ref()),
        ]
        .into_iter()
        .filter_map(|(p, a)| Some((p, a?)))
    }
}

/// A tenant's account on an API-key cloud (Lambda Cloud, RunPod) in a workload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyedAccountDef {
    /// The API key of a scenario principal of that provider.
    pub api_key: String,
    /// The limit registered with capsight: instances on Lambda, GPUs on RunPod.
    pub limit: u32,
}

/// A repetition of a request.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    /// Time between two copies.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// Copies in total (the first at `at`).
    pub times: u32,
}

/// One launch request as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestDef {
    /// Arrival, simulated time after the warm-up.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// Tenant id.
    pub tenant: String,
    /// Instance type (GPU catalog).
    pub instance_type: String,
    /// Instances (all or nothing).
    #[serde(default = "one")]
    pub count: u32,
    /// `on_demand` or `spot`.
    #[serde(default = "on_demand")]
    pub market: String,
    /// Allowed regions; empty = every region of the scenario.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Allowed zone ids; empty = every zone of the allowed regions.
    #[serde(default)]
    pub zones: Vec<String>,
    /// Allowed substitute instance types (on another provider too, with `other_providers`).
    #[serde(default)]
    pub substitutes: Vec<String>,
    /// Other providers (Lambda Cloud, RunPod) may serve it: the tenant's `allow_other_providers`.
    #[serde(default)]
    pub other_providers: bool,
    /// The work survives interruption (spot work).
    #[serde(default)]
    pub interruptible: bool,
    /// Overrides the workload's deadline.
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
    /// Overrides the workload's hold.
    #[serde(default, with = "humantime_serde")]
    pub hold: Option<Duration>,
    /// Overrides the workload's retry wait.
    #[serde(default, with = "humantime_serde")]
    pub retry_after: Option<Duration>,
    /// Copies of this request.
    pub repeat: Option<Repeat>,
}

fn one() -> u32 {
    1
}

fn on_demand() -> String {
    "on_demand".into()
}

/// A tenant that submits crowd reports through `ReportService.SubmitReport`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReporterDef {
    /// Tenant id (one of `tenants`).
    pub tenant: String,
    /// Honest: reports its own launch outcomes. Dishonest: reports `launch_failed` for keys
    /// that have stock.
    #[serde(default = "yes")]
    pub honest: bool,
    /// How often it reports (simulated time).
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// Keys (`aws/<region>/<zone id>/<type>/<market>`) it reports about; empty = every pool of
    /// the scenario (dishonest) or every key it launched in (honest).
    #[serde(default)]
    pub keys: Vec<String>,
}

fn yes() -> bool {
    true
}

/// One request after `repeat` was expanded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Request {
    /// Position after expansion, in arrival order.
    pub id: usize,
    /// Index of the `[[requests]]` entry it came from.
    pub source: usize,
    /// Arrival, simulated time after the warm-up.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// Tenant id.
    pub tenant: String,
    /// Instance type.
    pub instance_type: String,
    /// Instances.
    pub count: u32,
    /// Market.
    pub market: Market,
    /// Allowed regions (empty = all).
    pub regions: Vec<String>,
    /// Allowed zone ids (empty = all).
    pub zones: Vec<String>,
    /// Allowed substitutes.
    pub substitutes: Vec<String>,
    /// Other providers allowed.
    pub other_providers: bool,
    /// Interruptible.
    pub interruptible: bool,
    /// Deadline from arrival.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Hold once satisfied.
    #[serde(with = "humantime_serde")]
    pub hold: Duration,
    /// Wait between rounds.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
}

/// Which `[[requests]]` or `[[reporters]]` entry a byte offset of the file falls in.
fn entry_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset.min(text.len()))?;
    let mut last = None;
    for (table, name) in [("[[requests]]", "requests"), ("[[reporters]]", "reporters")] {
        let count = before.matches(table).count();
        if count > 0 {
            let pos = before.rfind(table).unwrap_or(0);
            if last.as_ref().is_none_or(|(p, _)| pos > *p) {
                last = Some((pos, format!("{name}[{}]", count - 1)));
            }
        }
    }
    last.map(|(_, n)| n)
}

impl Workload {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, WorkloadError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            WorkloadError::Format(m) => WorkloadError::Format(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses a workload and checks what needs no scenario.
    pub fn parse(text: &str) -> Result<Self, WorkloadError> {
        let w: Self = toml::from_str(text).map_err(|e| {
            let entry = e.span().and_then(|s| entry_at(text, s.start));
            let msg = e.message().to_owned();
            match entry {
                Some(entry) => WorkloadError::Format(format!("in {entry}: {msg}")),
                None => WorkloadError::Format(e.to_string()),
            }
        })?;
        w.check()?;
        Ok(w)
    }

    fn check(&self) -> Result<(), WorkloadError> {
        if self.name.trim().is_empty() {
            return Err(field("name", "must not be empty"));
        }
        for (name, d) in [
            ("deadline", self.deadline),
            ("retry_after", self.retry_after),
        ] {
            if d.is_zero() {
                return Err(field(name, "must be above 0"));
            }
        }
        if self.tenants.is_empty() {
            return Err(field("tenants", "at least one tenant"));
        }
        let mut ids = BTreeSet::new();
        for (i, t) in self.tenants.iter().enumerate() {
            capsight_tenancy::TenantId::parse(&t.id)
                .map_err(|e| field(format!("tenants[{i}].id"), e.to_string()))?;
            if !ids.insert(t.id.as_str()) {
                return Err(field(format!("tenants[{i}].id"), "duplicate tenant"));
            }
            if !t.role.starts_with("arn:") {
                return Err(field(format!("tenants[{i}].role"), "must be a role ARN"));
            }
        }
        if self.requests.is_empty() {
            return Err(field("requests", "at least one request"));
        }
        for (i, r) in self.requests.iter().enumerate() {
            let f = |name: &str| format!("requests[{i}].{name}");
            if !ids.contains(r.tenant.as_str()) {
                return Err(field(f("tenant"), format!("unknown tenant {:?}", r.tenant)));
            }
            let market = Market::parse(&f("market"), &r.market)
                .map_err(|e| field(f("market"), e.to_string()))?;
            if market == Market::CapacityBlock {
                return Err(field(f("market"), "on_demand or spot"));
            }
            if !(1..=32).contains(&r.count) {
                return Err(field(f("count"), "must be 1..=32"));
            }
            for (name, d) in [("deadline", r.deadline), ("retry_after", r.retry_after)] {
                if d.is_some_and(|d| d.is_zero()) {
                    return Err(field(f(name), "must be above 0"));
                }
            }
            if let Some(rep) = r.repeat {
                if rep.times == 0 {
                    return Err(field(f("repeat.times"), "must be at least 1"));
                }
                if rep.every.is_zero() && rep.times > 1 {
                    return Err(field(f("repeat.every"), "must be above 0"));
                }
            }
        }
        for (i, r) in self.reporters.iter().enumerate() {
            if !ids.contains(r.tenant.as_str()) {
                return Err(field(
                    format!("reporters[{i}].tenant"),
                    format!("unknown tenant {:?}", r.tenant),
                ));
            }
            if r.every.is_zero() {
                return Err(field(format!("reporters[{i}].every"), "must be above 0"));
            }
            for (k, key) in r.keys.iter().enumerate() {
                key.parse::<capsight_proto::domain::CapacityKey>()
                    .map_err(|e| field(format!("reporters[{i}].keys[{k}]"), e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Checks the workload against the scenario and the catalog: roles and the operator exist,
    /// instance types are catalog types, regions and zones are the scenario's.
    pub fn check_against(
        &self,
        scenario: &Scenario,
        catalog: &Catalog,
    ) -> Result<(), WorkloadError> {
        for (i, t) in self.tenants.iter().enumerate() {
            for (provider, account) in t.keyed_accounts() {
                if !scenario.principals.iter().any(|p| {
                    p.provider.as_str() == provider.as_str() && p.api_key == account.api_key
                }) {
                    return Err(field(
                        format!("tenants[{i}].{provider}.api_key"),
                        format!("the scenario has no {provider} principal with this key"),
                    ));
                }
            }
            let Some(role) = scenario.roles.iter().find(|r| r.arn == t.role) else {
                return Err(field(
                    format!("tenants[{i}].role"),
                    format!("the scenario has no role {:?}", t.role),
                ));
            };
            if role.external_id.is_some() && role.external_id != t.external_id {
                return Err(field(
                    format!("tenants[{i}].external_id"),
                    "does not match the scenario role's external_id",
                ));
            }
        }
        if let Some(op) = &self.operator
            && !scenario.principals.iter().any(|p| &p.access_key_id == op)
        {
            return Err(field(
                "operator",
                format!("the scenario has no principal {op:?}"),
            ));
        }
        if self.operator.is_none() && scenario.principals.is_empty() {
            return Err(field("operator", "the scenario declares no principal"));
        }
        let regions: BTreeSet<&str> = scenario.zones.iter().map(|z| z.region.as_str()).collect();
        let zones: BTreeSet<&str> = scenario.zones.iter().map(|z| z.id.as_str()).collect();
        for (i, r) in self.requests.iter().enumerate() {
            let f = |name: &str| format!("requests[{i}].{name}");
            let providers: &[Provider] = if r.other_providers {
                &[Provider::Aws, Provider::Lambda, Provider::RunPod]
            } else {
                &[Provider::Aws]
            };
            for t in std::iter::once(&r.instance_type).chain(&r.substitutes) {
                let known = providers.iter().any(|p| {
                    InstanceType::parse("instance_type", *p, t)
                        .is_ok_and(|it| catalog.get(*p, &it).is_some())
                });
                if !known {
                    return Err(field(
                        f("instance_type"),
                        format!("{t} is not in the GPU catalog"),
                    ));
                }
            }
            for reg in &r.regions {
                if !regions.contains(reg.as_str()) {
                    return Err(field(
                        f("regions"),
                        format!("the scenario has no region {reg}"),
                    ));
                }
            }
            for z in &r.zones {
                if !zones.contains(z.as_str()) {
                    return Err(field(f("zones"), format!("the scenario has no zone {z}")));
                }
            }
        }
        Ok(())
    }

    /// The operator's access key.
    pub fn operator_key(&self, scenario: &Scenario) -> Option<String> {
        self.operator
            .clone()
            .or_else(|| scenario.principals.first().map(|p| p.access_key_id.clone()))
    }

    /// Every request after `repeat`, in arrival order (ties in file order).
    pub fn expand(&self) -> Vec<Request> {
        let mut out = Vec::new();
        for (i, r) in self.requests.iter().enumerate() {
            let (every, times) = r.repeat.map_or((Duration::ZERO, 1), |p| (p.every, p.times));
            let market = Market::parse("market", &r.market).unwrap_or(Market::OnDemand);
            for k in 0..times {
                out.push(Request {
                    id: 0,
                    source: i,
                    at: r.at + every * k,
                    tenant: r.tenant.clone(),
                    instance_type: r.instance_type.clone(),
                    count: r.count,
                    market,
                    regions: r.regions.clone(),
                    zones: r.zones.clone(),
                    substitutes: r.substitutes.clone(),
                    other_providers: r.other_providers,
                    interruptible: r.interruptible,
                    deadline: r.deadline.unwrap_or(self.deadline),
                    hold: r.hold.unwrap_or(self.hold),
                    retry_after: r.retry_after.unwrap_or(self.retry_after),
                });
            }
        }
        out.sort_by_key(|r| (r.at, r.source));
        for (id, r) in out.iter_mut().enumerate() {
            r.id = id;
        }
        out
    }

    /// Simulated time from the world's start to the end of the last deadline.
    pub fn horizon(&self) -> Duration {
        self.expand()
            .iter()
            .map(|r| r.at + r.deadline + r.hold)
            .max()
            .unwrap_or_default()
            + self.warmup
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
warmup = "20m"
deadline = "30m"
hold = "10m"
[[tenants]]
id = "acme"
role = "arn:aws:iam::222222222222:role/capsight"
[[requests]]
at = "0m"
tenant = "acme"
instance_type = "p5.48xlarge"
[[requests]]
at = "5m"
tenant = "acme"
instance_type = "p4d.24xlarge"
market = "spot"
interruptible = true
repeat = { every = "10m", times = 3 }
"#;

    #[test]
    fn parses_and_expands_in_arrival_order() {
        let w = Workload::parse(GOOD).unwrap();
        let r = w.expand();
        assert_eq!(r.len(), 4);
        let at: Vec<u64> = r.iter().map(|r| r.at.as_secs() / 60).collect();
        assert_eq!(at, vec![0, 5, 15, 25]);
        assert_eq!(r[1].market, Market::Spot);
        assert_eq!(r[0].retry_after, Duration::from_secs(120));
        assert_eq!(r[3].id, 3);
    }

    #[test]
    fn unknown_keys_name_the_request() {
        let bad = GOOD.replace("market = \"spot\"", "markt = \"spot\"");
        let e = Workload::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("requests[1]"), "{e}");
        assert!(e.contains("markt"), "{e}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let bad = GOOD.replace("market = \"spot\"", "market = \"reserved\"");
        let e = Workload::parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("requests[1].market"), "{e}");
        let bad = GOOD.replace(
            "tenant = \"acme\"\ninstance_type = \"p4d",
            "tenant = \"nobody\"\ninstance_type = \"p4d",
        );
        let e = Workload::parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("requests[1].tenant"), "{e}");
    }
}
