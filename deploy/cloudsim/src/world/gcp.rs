//! Google Cloud Compute Engine in the world: projects (the scenario's `gcp` accounts), service
//! accounts and the OAuth2 tokens they were issued, zonal pools, instances, zone operations
//! (with `requestId` idempotency) and quotas, with the error codes of the Compute API
//! (`ZONE_RESOURCE_POOL_EXHAUSTED[_WITH_DETAILS]`, `QUOTA_EXCEEDED`, 403 `forbidden`, 404
//! `notFound`, 429 `rateLimitExceeded`).
//!
//! Contract:
//! * A machine type is offered in a zone when the scenario has a pool of it there. An insert
//!   takes one instance of stock from its (zone, type, market) pool and counts its GPUs against
//!   the project's regional metric (`NVIDIA_H100_GPUS`, or `PREEMPTIBLE_...` for Spot VMs) and
//!   `GPUS_ALL_REGIONS` while it lives; a delete gives both back at once.
//! * Inserts answer an operation `RUNNING`; quota and capacity failures are the operation's
//!   `error`, as Compute Engine reports them; the operation is `DONE` once read. The same
//!   `requestId` in the same project returns the same operation and changes nothing.
//! * A pool emptied by a `stockout` event answers `ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS`,
//!   one emptied by launches or demand `ZONE_RESOURCE_POOL_EXHAUSTED`.
//! * GCP pools draw from a market RNG of their own (seeded from the run's seed), so adding GCP
//!   to a scenario changes nothing of its AWS and Lambda randomness; requests never draw. Spot
//!   prices stay at the pool's base.

use std::sync::OnceLock;

use super::*;
use crate::scenario::SimProvider;

/// The regional quota metric every project reports besides the GPU ones.
pub const CPUS_METRIC: &str = "CPUS";
/// The project-wide GPU quota metric.
pub const GLOBAL_GPU_METRIC: &str = "GPUS_ALL_REGIONS";

/// What the world knows of a GCP machine type (from the GPU catalog).
#[derive(Debug, Clone, PartialEq)]
pub struct GcpType {
    /// vCPUs.
    pub vcpus: u32,
    /// Memory, GiB.
    pub memory_gib: u32,
    /// GPUs per instance.
    pub gpus: u32,
    /// GPU model, e.g. `H100`.
    pub gpu_model: String,
    /// Memory per GPU, GiB.
    pub gpu_memory_gib: u32,
    /// The regional on-demand GPU quota metric, e.g. `NVIDIA_H100_GPUS`.
    pub metric: String,
    /// The Spot VM metric, e.g. `PREEMPTIBLE_NVIDIA_H100_GPUS`.
    pub spot_metric: Option<String>,
    /// On-demand list price, USD per hour.
    pub on_demand_usd_per_hour: f64,
}

impl GcpType {
    /// The accelerator type's name (`nvidia-h100-80gb`, `nvidia-tesla-a100`, `nvidia-l4`).
    pub fn accelerator(&self) -> String {
        let model = self.gpu_model.to_lowercase();
        match (model.as_str(), self.gpu_memory_gib) {
            ("a100", 40) => "nvidia-tesla-a100".into(),
            ("l4", _) => "nvidia-l4".into(),
            (m, mem) => format!("nvidia-{m}-{mem}gb"),
        }
    }

    /// The metric an instance counts against in `market`.
    pub fn metric_for(&self, spot: bool) -> &str {
        match (&self.spot_metric, spot) {
            (Some(m), true) => m,
            _ => &self.metric,
        }
    }
}

/// The GCP machine types of the embedded GPU catalog, by name.
pub fn gcp_types() -> &'static BTreeMap<String, GcpType> {
    static TYPES: OnceLock<BTreeMap<String, GcpType>> = OnceLock::new();
    TYPES.get_or_init(|| {
        catalog_by_name("gcp", |g| GcpType {
            vcpus: g.vcpus,
            memory_gib: g.memory_gib,
            gpus: g.gpu_count,
            gpu_model: g.gpu_model.clone(),
            gpu_memory_gib: g.gpu_memory_gib,
            metric: g.quota.on_demand.clone(),
            spot_metric: g.quota.spot.clone(),
            on_demand_usd_per_hour: g.on_demand_usd_per_hour,
        })
    })
}

/// An error Compute Engine answers with an HTTP status:
/// `{"error": {"code", "message", "errors": [{"message", "domain", "reason"}], "status"}}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct GcpError {
    /// HTTP status.
    pub code: u16,
    /// Canonical status, e.g. `PERMISSION_DENIED`.
    pub status: &'static str,
    /// `errors[].reason`, e.g. `forbidden`.
    pub reason: String,
    /// `errors[].domain`.
    pub domain: &'static str,
    /// The message.
    pub message: String,
    /// `details` (`google.rpc.ErrorInfo`), if any.
    pub details: Vec<serde_json::Value>,
}

impl GcpError {
    fn new(
        code: u16,
        status: &'static str,
        reason: &str,
        domain: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            code,
            status,
            reason: reason.to_owned(),
            domain,
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// 401: no or an unknown bearer token.
    pub fn unauthenticated() -> Self {
        Self::new(
            401,
            "UNAUTHENTICATED",
            "authError",
            "global",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        )
    }

    /// 403: `permission` is missing on `resource`.
    pub fn denied(permission: &str, resource: &str) -> Self {
        let mut e = Self::new(
            403,
            "PERMISSION_DENIED",
            "forbidden",
            "global",
            format!("Required '{permission}' permission for '{resource}'"),
        );
        e.details.push(serde_json::json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "IAM_PERMISSION_DENIED",
            "domain": "iam.googleapis.com",
            "metadata": { "permission": permission, "resource": resource },
        }));
        e
    }

    /// 404: `resource` does not exist.
    pub fn not_found(resource: &str) -> Self {
        Self::new(
            404,
            "NOT_FOUND",
            "notFound",
            "global",
            format!("The resource '{resource}' was not found"),
        )
    }

    /// 409: `resource` exists.
    pub fn exists(resource: &str) -> Self {
        Self::new(
            409,
            "ALREADY_EXISTS",
            "alreadyExists",
            "global",
            format!("The resource '{resource}' already exists"),
        )
    }

    /// 429: the project's request rate is exhausted.
    pub fn rate_limited() -> Self {
        Self::new(
            429,
            "RESOURCE_EXHAUSTED",
            "rateLimitExceeded",
            "usageLimits",
            "Rate Limit Exceeded",
        )
    }

    /// 400: a malformed request.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "INVALID_ARGUMENT", "invalid", "global", message)
    }

    /// An injected fault answered with HTTP `code` (429, 500, 503, 403, ...).
    pub fn injected(code: u16, message: String) -> Self {
        let (status, reason, domain) = match code {
            429 => ("RESOURCE_EXHAUSTED", "rateLimitExceeded", "usageLimits"),
            401 => ("UNAUTHENTICATED", "authError", "global"),
            403 => ("PERMISSION_DENIED", "forbidden", "global"),
            404 => ("NOT_FOUND", "notFound", "global"),
            500 => ("INTERNAL", "internalError", "global"),
            503 => ("UNAVAILABLE", "backendError", "global"),
            _ => ("INVALID_ARGUMENT", "invalid", "global"),
        };
        Self::new(code, status, reason, domain, message)
    }
}

/// An operation's error (`operation.error.errors[]`): how Compute Engine reports a failed
/// insert.
#[derive(Debug, Clone, PartialEq)]
pub struct OpError {
    /// `ZONE_RESOURCE_POOL_EXHAUSTED`, `QUOTA_EXCEEDED`, ...
    pub code: String,
    /// The message.
    pub message: String,
    /// `errorDetails` (`quotaInfo`, `errorInfo`).
    pub details: Vec<serde_json::Value>,
    /// `httpErrorStatusCode`.
    pub http_status: u16,
}

/// An instance's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GcpStatus {
    /// Resources are being allocated.
    Provisioning,
    /// Running.
    Running,
}

impl GcpStatus {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "PROVISIONING",
            Self::Running => "RUNNING",
        }
    }
}

/// A simulated instance.
#[derive(Debug, Clone)]
pub struct GcpInstance {
    /// Numeric id.
    pub id: u64,
    /// Project.
    pub project: String,
    /// Zone.
    pub zone: String,
    /// Name.
    pub name: String,
    /// Machine type.
    pub machine_type: String,
    /// Spot VM.
    pub spot: bool,
    /// Status.
    pub status: GcpStatus,
    /// When a provisioning instance runs (simulated time since start).
    pub running_at: Option<Duration>,
    /// Created.
    pub created: DateTime<Utc>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Metadata items.
    pub metadata: Vec<(String, String)>,
}

/// A zone operation.
#[derive(Debug, Clone)]
pub struct GcpOperation {
    /// `operation-...`.
    pub name: String,
    /// Numeric id.
    pub id: u64,
    /// Project.
    pub project: String,
    /// Zone.
    pub zone: String,
    /// `insert` / `delete`.
    pub kind: &'static str,
    /// The instance's name.
    pub target: String,
    /// Read at least once (insert), or done at once (delete).
    pub done: bool,
    /// The failure, if it failed.
    pub error: Option<OpError>,
    /// Created.
    pub inserted: DateTime<Utc>,
}

/// What `instances.insert` asks for.
#[derive(Debug, Clone)]
pub struct GcpInsert {
    /// Instance name.
    pub name: String,
    /// Machine type name.
    pub machine_type: String,
    /// `scheduling.provisioningModel = SPOT`.
    pub spot: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Metadata items.
    pub metadata: Vec<(String, String)>,
}

/// GCP's part of the world.
#[derive(Debug)]
pub struct GcpWorld {
    /// The GCP pools' own market RNG.
    rng: ChaCha8Rng,
    /// Pools by (zone, type, market).
    pub(super) pools: BTreeMap<PoolKey, PoolState>,
    /// Spot base prices by (zone, type), USD per instance-hour.
    spot_prices: BTreeMap<(String, String), f64>,
    /// Instances by (project, zone, name).
    instances: BTreeMap<(String, String, String), GcpInstance>,
    /// Operations by name.
    operations: BTreeMap<String, GcpOperation>,
    /// (project, requestId) -> operation name.
    requests: BTreeMap<(String, String), String>,
    /// Access token -> service account email.
    tokens: BTreeMap<String, String>,
    counter: u64,
}

impl GcpWorld {
    /// The GCP pools and spot prices of `scenario`, their RNG seeded from `seed`.
    pub(super) fn new(scenario: &Scenario, seed: u64) -> Self {
        let mut world = Self {
            rng: ChaCha8Rng::seed_from_u64(seed.rotate_left(23) ^ 0x6763_705f_6d6b_7421),
            pools: BTreeMap::new(),
            spot_prices: BTreeMap::new(),
            instances: BTreeMap::new(),
            operations: BTreeMap::new(),
            requests: BTreeMap::new(),
            tokens: BTreeMap::new(),
            counter: 0,
        };
        for (p, key, state) in zonal_pools(scenario, SimProvider::Gcp) {
            world.pools.insert(key, state);
            if p.market == PoolMarket::Spot {
                let od = gcp_types()
                    .get(&p.instance_type)
                    .map_or(1.0, |t| t.on_demand_usd_per_hour);
                let base = p.spot_price.unwrap_or(od * scenario.defaults.spot_discount);
                world
                    .spot_prices
                    .insert((p.zone.clone(), p.instance_type.clone()), round4(base));
            }
        }
        world
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// Pools by (zone, type, market).
    pub fn pools(&self) -> &BTreeMap<PoolKey, PoolState> {
        &self.pools
    }

    /// One market step of the GCP pools, on their own RNG.
    pub(super) fn drift(&mut self, hours: f64) {
        for pool in self.pools.values_mut() {
            pool.drift(&mut self.rng, hours);
        }
    }
}

impl World {
    /// GCP's part of the world.
    pub fn gcp(&self) -> &GcpWorld {
        &self.gcp
    }

    /// The service account `email`'s public key (PEM), when the scenario registers it.
    pub fn gcp_public_key(&self, email: &str) -> Option<&str> {
        self.scenario
            .principals
            .iter()
            .find(|p| {
                p.provider == SimProvider::Gcp && !email.is_empty() && p.client_email == email
            })
            .map(|p| p.public_key.as_str())
    }

    /// Issues an access token to `email` (its assertion already verified).
    pub fn gcp_issue_token(&mut self, email: &str) -> String {
        let n = self.gcp.next();
        let mixed = (n ^ self.seed.rotate_left(41)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let token = format!("ya29.cloudsim-{mixed:016x}{n:08x}");
        self.gcp.tokens.insert(token.clone(), email.to_owned());
        token
    }

    /// The caller behind a bearer token: 401 for an unknown one. Its account is the service
    /// account's project, its ARN the service account's email.
    pub fn gcp_caller(&self, token: &str) -> Result<Identity, GcpError> {
        let email = self
            .gcp
            .tokens
            .get(token)
            .ok_or_else(GcpError::unauthenticated)?;
        let p = self
            .scenario
            .principals
            .iter()
            .find(|p| p.provider == SimProvider::Gcp && p.client_email == *email)
            .ok_or_else(GcpError::unauthenticated)?;
        Ok(Identity {
            account: p.account.clone(),
            arn: email.clone(),
            user_id: p.user.clone(),
            allow: p.allow.clone(),
        })
    }

    /// 403 unless `caller` acts in its own project and holds `permission`.
    pub fn gcp_authorize(
        &self,
        caller: &Identity,
        project: &str,
        permission: &str,
        resource: &str,
    ) -> Result<(), GcpError> {
        if caller.account != project || !caller.may(permission) {
            return Err(GcpError::denied(permission, resource));
        }
        Ok(())
    }

    /// The project's API rate limit (`defaults.api_requests_per_second`): 429 when exhausted.
    pub fn gcp_throttle(&mut self, project: &str) -> Result<(), GcpError> {
        self.throttle(project, std::time::Instant::now())
            .map_err(|_| GcpError::rate_limited())
    }

    /// Consumes one injected fault for the GCP operation `op` (`insert`, `get`, `list`,
    /// `delete`, `regions.get`, ...): faults whose action is `gcp/<op>` or `gcp/*`. A numeric
    /// code is an HTTP error with that status; another code is the failed operation's error
    /// (`Err(Ok(..))`), e.g. `ZONE_RESOURCE_POOL_EXHAUSTED` on `gcp/insert`.
    pub fn gcp_fault(&mut self, op: &str) -> Option<Result<GcpError, OpError>> {
        let (code, message) = self.take_provider_fault("gcp", op, None)?;
        Some(match http_status(&code) {
            Some(status) => Ok(GcpError::injected(status, message)),
            None => Err(OpError {
                code,
                message,
                details: Vec::new(),
                http_status: 400,
            }),
        })
    }

    /// Every GCP zone as (zone, region), in zone order.
    pub fn gcp_zones(&self) -> Vec<(String, String)> {
        let mut zones: Vec<(String, String)> = self
            .scenario
            .zones
            .iter()
            .filter(|z| z.provider == SimProvider::Gcp)
            .map(|z| (z.id.clone(), z.region.clone()))
            .collect();
        zones.sort();
        zones
    }

    /// The region of GCP zone `zone`.
    pub fn gcp_region_of(&self, zone: &str) -> Option<String> {
        self.gcp_zones()
            .into_iter()
            .find(|(z, _)| z == zone)
            .map(|(_, r)| r)
    }

    /// Machine types offered in `zone` (a pool of either market), in name order.
    pub fn gcp_machine_types(&self, zone: &str) -> Vec<(String, GcpType)> {
        let mut names: Vec<String> = self
            .gcp
            .pools
            .keys()
            .filter(|k| k.zone_id == zone)
            .map(|k| k.instance_type.clone())
            .collect();
        names.dedup();
        names
            .into_iter()
            .filter_map(|n| gcp_types().get(&n).map(|t| (n, t.clone())))
            .collect()
    }

    fn gcp_limit(&self, project: &str, metric: &str) -> f64 {
        self.quotas
            .get(&(project.to_owned(), metric.to_owned()))
            .copied()
            .unwrap_or(self.scenario.defaults.gcp_quota)
    }

    /// Usage of `metric` by the project's live instances, in `region` (`None` = every region).
    fn gcp_usage(&self, project: &str, region: Option<&str>, metric: &str) -> f64 {
        self.gcp
            .instances
            .values()
            .filter(|i| i.project == project)
            .filter(|i| region.is_none_or(|r| self.gcp_region_of(&i.zone).as_deref() == Some(r)))
            .filter_map(|i| {
                let t = gcp_types().get(&i.machine_type)?;
                let used = match metric {
                    CPUS_METRIC => t.vcpus,
                    GLOBAL_GPU_METRIC => t.gpus,
                    m if m == t.metric_for(i.spot) => t.gpus,
                    _ => 0,
                };
                Some(f64::from(used))
            })
            .sum()
    }

    /// `regions.get`'s quotas: (metric, limit, usage) for `CPUS` and every GPU metric of the
    /// catalog's GCP types, in metric order.
    pub fn gcp_region_quotas(&self, project: &str, region: &str) -> Vec<(String, f64, f64)> {
        let mut metrics = std::collections::BTreeSet::from([CPUS_METRIC.to_owned()]);
        for t in gcp_types().values() {
            metrics.insert(t.metric.clone());
            metrics.extend(t.spot_metric.clone());
        }
        metrics
            .into_iter()
            .map(|m| {
                let limit = self.gcp_limit(project, &m);
                let usage = self.gcp_usage(project, Some(region), &m);
                (m, limit, usage)
            })
            .collect()
    }

    /// `projects.get`'s quotas: `GPUS_ALL_REGIONS`.
    pub fn gcp_project_quotas(&self, project: &str) -> Vec<(String, f64, f64)> {
        vec![(
            GLOBAL_GPU_METRIC.to_owned(),
            self.gcp_limit(project, GLOBAL_GPU_METRIC),
            self.gcp_usage(project, None, GLOBAL_GPU_METRIC),
        )]
    }

    /// Spot prices as (region, type, USD per instance-hour): one per (region, type), the
    /// first zone's pool in zone order.
    pub fn gcp_spot_prices(&self) -> Vec<(String, String, f64)> {
        let mut out: Vec<(String, String, f64)> = Vec::new();
        for ((zone, itype), price) in &self.gcp.spot_prices {
            let Some(region) = self.gcp_region_of(zone) else {
                continue;
            };
            if !out.iter().any(|(r, t, _)| *r == region && t == itype) {
                out.push((region, itype.clone(), *price));
            }
        }
        out
    }

    fn gcp_operation_of(
        &mut self,
        project: &str,
        zone: &str,
        kind: &'static str,
        target: &str,
        error: Option<OpError>,
        elapsed: Duration,
    ) -> String {
        let id = self.gcp.next();
        let name = format!(
            "operation-{}-{:016x}",
            id,
            (id ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        );
        let inserted = self.time_at(elapsed);
        self.gcp.operations.insert(
            name.clone(),
            GcpOperation {
                name: name.clone(),
                id,
                project: project.to_owned(),
                zone: zone.to_owned(),
                kind,
                target: target.to_owned(),
                done: kind == "delete",
                error,
                inserted,
            },
        );
        name
    }

    /// `instances.insert`: the operation's name. A `request_id` seen before in the project
    /// returns its operation. 404 for a machine type the zone does not offer, 409 for a name in
    /// use; quota and capacity failures are the operation's error.
    pub fn gcp_insert(
        &mut self,
        project: &str,
        zone: &str,
        request_id: Option<&str>,
        spec: &GcpInsert,
        injected: Option<OpError>,
        elapsed: Duration,
    ) -> Result<String, GcpError> {
        if let Some(rid) = request_id
            && let Some(op) = self.gcp.requests.get(&(project.to_owned(), rid.to_owned()))
        {
            return Ok(op.clone());
        }
        let Some(region) = self.gcp_region_of(zone) else {
            return Err(GcpError::not_found(&format!(
                "projects/{project}/zones/{zone}"
            )));
        };
        let offered = self.gcp_machine_types(zone);
        let Some(t) = offered
            .iter()
            .find(|(n, _)| *n == spec.machine_type)
            .map(|(_, t)| t.clone())
        else {
            return Err(GcpError::not_found(&format!(
                "projects/{project}/zones/{zone}/machineTypes/{}",
                spec.machine_type
            )));
        };
        let key = (project.to_owned(), zone.to_owned(), spec.name.clone());
        if self.gcp.instances.contains_key(&key) {
            return Err(GcpError::exists(&format!(
                "projects/{project}/zones/{zone}/instances/{}",
                spec.name
            )));
        }
        let error = injected.or_else(|| self.gcp_refusal(project, zone, &region, spec, &t));
        if error.is_none() {
            let market = if spec.spot {
                PoolMarket::Spot
            } else {
                PoolMarket::OnDemand
            };
            let pool_key = PoolKey {
                zone_id: zone.to_owned(),
                instance_type: spec.machine_type.clone(),
                market,
            };
            let provisioning = match self.gcp.pools.get_mut(&pool_key) {
                Some(pool) => {
                    pool.stock -= 1;
                    pool.provisioning
                }
                None => self.scenario.defaults.provisioning,
            };
            let id = self.gcp.next();
            let created = self.time_at(elapsed);
            self.gcp.instances.insert(
                key,
                GcpInstance {
                    id: 4_000_000_000_000_000_000 + id,
                    project: project.to_owned(),
                    zone: zone.to_owned(),
                    name: spec.name.clone(),
                    machine_type: spec.machine_type.clone(),
                    spot: spec.spot,
                    status: GcpStatus::Provisioning,
                    running_at: Some(elapsed + provisioning),
                    created,
                    labels: spec.labels.clone(),
                    metadata: spec.metadata.clone(),
                },
            );
        }
        let op = self.gcp_operation_of(project, zone, "insert", &spec.name, error, elapsed);
        if let Some(rid) = request_id {
            self.gcp
                .requests
                .insert((project.to_owned(), rid.to_owned()), op.clone());
        }
        Ok(op)
    }

    /// Why an insert fails, if it does: the regional GPU metric, `GPUS_ALL_REGIONS`, then the
    /// zone's stock.
    fn gcp_refusal(
        &self,
        project: &str,
        zone: &str,
        region: &str,
        spec: &GcpInsert,
        t: &GcpType,
    ) -> Option<OpError> {
        let gpus = f64::from(t.gpus);
        let metric = t.metric_for(spec.spot).to_owned();
        let over = |limit: f64, usage: f64| usage + gpus > limit;
        let regional = (
            self.gcp_limit(project, &metric),
            self.gcp_usage(project, Some(region), &metric),
        );
        let global = (
            self.gcp_limit(project, GLOBAL_GPU_METRIC),
            self.gcp_usage(project, None, GLOBAL_GPU_METRIC),
        );
        let quota = |metric: &str, limit: f64, scope: String, dimensions: serde_json::Value| {
            let scope_suffix = if dimensions.is_null() { "" } else { "-region" };
            let limit_name = format!("{}-per-project{scope_suffix}", metric.replace('_', "-"));
            let dimensions = if dimensions.is_null() {
                serde_json::json!({})
            } else {
                dimensions
            };
            OpError {
                code: "QUOTA_EXCEEDED".into(),
                message: format!("Quota '{metric}' exceeded.  Limit: {limit:.1} {scope}."),
                details: vec![serde_json::json!({
                    "quotaInfo": {
                        "metricName": format!("compute.googleapis.com/{}", metric.to_lowercase()),
                        "limitName": limit_name,
                        "dimensions": dimensions,
                        "limit": limit,
                    }
                })],
                http_status: 403,
            }
        };
        if over(regional.0, regional.1) {
            return Some(quota(
                &metric,
                regional.0,
                format!("in region {region}"),
                serde_json::json!({ "region": region }),
            ));
        }
        if over(global.0, global.1) {
            return Some(quota(
                GLOBAL_GPU_METRIC,
                global.0,
                "globally".into(),
                serde_json::Value::Null,
            ));
        }
        let market = if spec.spot {
            PoolMarket::Spot
        } else {
            PoolMarket::OnDemand
        };
        let pool = self.gcp.pools.get(&PoolKey {
            zone_id: zone.to_owned(),
            instance_type: spec.machine_type.clone(),
            market,
        });
        match pool {
            Some(p) if p.stock > 0 => None,
            stocked_out => {
                let resource = format!("projects/{project}/zones/{zone}");
                Some(if stocked_out.is_some_and(|p| p.stocked_out) {
                    OpError {
                        code: "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS".into(),
                        message: format!(
                            "The zone '{resource}' does not have enough resources available to fulfill the request.  '(resource type:compute)'."
                        ),
                        details: vec![serde_json::json!({
                            "errorInfo": {
                                "reason": "resource_availability",
                                "domain": "compute.googleapis.com",
                                "metadatas": { "zone": zone, "vmType": spec.machine_type },
                            }
                        })],
                        http_status: 503,
                    }
                } else {
                    OpError {
                        code: "ZONE_RESOURCE_POOL_EXHAUSTED".into(),
                        message: format!(
                            "The zone '{resource}' does not have enough resources available to fulfill the request.  Try a different zone, or try again later."
                        ),
                        details: Vec::new(),
                        http_status: 503,
                    }
                })
            }
        }
    }

    /// `zoneOperations.get`: the operation, `DONE` from now on; 404 if unknown.
    pub fn gcp_operation(
        &mut self,
        project: &str,
        zone: &str,
        name: &str,
    ) -> Result<GcpOperation, GcpError> {
        let op = self
            .gcp
            .operations
            .get_mut(name)
            .filter(|o| o.project == project && o.zone == zone)
            .ok_or_else(|| {
                GcpError::not_found(&format!(
                    "projects/{project}/zones/{zone}/operations/{name}"
                ))
            })?;
        let seen = op.clone();
        op.done = true;
        Ok(seen)
    }

    /// The operation `name` as it is, without reading it as a caller would.
    pub fn gcp_operation_peek(&self, name: &str) -> Option<GcpOperation> {
        self.gcp.operations.get(name).cloned()
    }

    /// The project's instance `name` in `zone`.
    pub fn gcp_instance(&self, project: &str, zone: &str, name: &str) -> Option<&GcpInstance> {
        self.gcp
            .instances
            .get(&(project.to_owned(), zone.to_owned(), name.to_owned()))
    }

    /// The project's instances in `zone`, in name order.
    pub fn gcp_instances<'a>(
        &'a self,
        project: &'a str,
        zone: &'a str,
    ) -> impl Iterator<Item = &'a GcpInstance> {
        self.gcp
            .instances
            .values()
            .filter(move |i| i.project == project && i.zone == zone)
    }

    /// `instances.delete`: the instance is gone at once and its stock returns; the operation's
    /// name. 404 if there is no such instance.
    pub fn gcp_delete(
        &mut self,
        project: &str,
        zone: &str,
        name: &str,
        elapsed: Duration,
    ) -> Result<String, GcpError> {
        let Some(i) =
            self.gcp
                .instances
                .remove(&(project.to_owned(), zone.to_owned(), name.to_owned()))
        else {
            return Err(GcpError::not_found(&format!(
                "projects/{project}/zones/{zone}/instances/{name}"
            )));
        };
        let key = PoolKey {
            zone_id: i.zone.clone(),
            instance_type: i.machine_type.clone(),
            market: if i.spot {
                PoolMarket::Spot
            } else {
                PoolMarket::OnDemand
            },
        };
        if let Some(pool) = self.gcp.pools.get_mut(&key)
            && !pool.stocked_out
        {
            pool.stock = (pool.stock + 1).min(pool.capacity);
        }
        Ok(self.gcp_operation_of(project, zone, "delete", name, None, elapsed))
    }

    /// Provisioning instances whose time has come run.
    pub(super) fn settle_gcp(&mut self, elapsed: Duration) {
        for i in self.gcp.instances.values_mut() {
            if i.status == GcpStatus::Provisioning && i.running_at.is_some_and(|at| at <= elapsed) {
                i.status = GcpStatus::Running;
                i.running_at = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = r#"
        [[zones]]
        provider = "gcp"
        region = "us-central1"
        id = "us-central1-a"
        [[zones]]
        provider = "gcp"
        region = "us-central1"
        id = "us-central1-b"
        [[accounts]]
        id = "acme-ml"
        provider = "gcp"
        [accounts.quotas]
        NVIDIA_H100_GPUS = 16
        GPUS_ALL_REGIONS = 8
        [[pools]]
        provider = "gcp"
        zone = "us-central1-a"
        instance_type = "a3-highgpu-8g"
        market = "on_demand"
        capacity = 3
        stock = 2
        [[pools]]
        provider = "gcp"
        zone = "us-central1-b"
        instance_type = "a3-highgpu-8g"
        market = "on_demand"
        capacity = 3
        stock = 0
        [[events]]
        at = "10m"
        kind = "stockout"
        provider = "gcp"
        zone = "us-central1-a"
        instance_type = "a3-highgpu-8g"
        market = "on_demand"
    "#;

    fn world() -> World {
        test_world("gcp-unit", SCENARIO)
    }

    fn spec(name: &str) -> GcpInsert {
        GcpInsert {
            name: name.into(),
            machine_type: "a3-highgpu-8g".into(),
            spot: false,
            labels: BTreeMap::new(),
            metadata: Vec::new(),
        }
    }

    fn op_error(w: &mut World, op: &str, zone: &str) -> Option<String> {
        w.gcp_operation("acme-ml", zone, op)
            .unwrap()
            .error
            .map(|e| e.code)
    }

    #[test]
    fn inserts_take_stock_count_quota_and_are_idempotent_by_request_id() {
        let mut w = world();
        let t0 = Duration::ZERO;
        let z = "us-central1-a";
        let op = w
            .gcp_insert("acme-ml", z, Some("r-1"), &spec("a"), None, t0)
            .unwrap();
        assert_eq!(op_error(&mut w, &op, z), None);
        // the same request id: the same operation, no second instance
        let again = w
            .gcp_insert("acme-ml", z, Some("r-1"), &spec("a"), None, t0)
            .unwrap();
        assert_eq!(op, again);
        assert_eq!(w.gcp_instances("acme-ml", z).count(), 1);
        // 8 GPUs used of GPUS_ALL_REGIONS = 8: the next one is over the global quota
        let op = w
            .gcp_insert("acme-ml", z, Some("r-2"), &spec("b"), None, t0)
            .unwrap();
        let e = w.gcp_operation("acme-ml", z, &op).unwrap().error.unwrap();
        assert_eq!(e.code, "QUOTA_EXCEEDED");
        assert!(e.message.contains("'GPUS_ALL_REGIONS'") && e.message.contains("globally"));
        // a name in use, a type the zone does not offer
        assert_eq!(
            w.gcp_insert("acme-ml", z, None, &spec("a"), None, t0)
                .unwrap_err()
                .code,
            409
        );
        let mut odd = spec("c");
        odd.machine_type = "g2-standard-4".into();
        assert_eq!(
            w.gcp_insert("acme-ml", z, None, &odd, None, t0)
                .unwrap_err()
                .reason,
            "notFound"
        );
        assert_eq!(w.gcp_project_quotas("acme-ml")[0].2, 8.0);
        // provisioning -> running; delete gives the stock and the quota back
        w.advance(Duration::from_secs(180));
        assert_eq!(
            w.gcp_instance("acme-ml", z, "a").unwrap().status,
            GcpStatus::Running
        );
        w.gcp_delete("acme-ml", z, "a", Duration::from_secs(180))
            .unwrap();
        assert_eq!(w.gcp_project_quotas("acme-ml")[0].2, 0.0);
        assert_eq!(
            w.gcp_delete("acme-ml", z, "a", Duration::ZERO)
                .unwrap_err()
                .code,
            404
        );
    }

    #[test]
    fn empty_and_stocked_out_zones_answer_the_two_pool_exhausted_codes() {
        let mut w = world();
        let op = w
            .gcp_insert(
                "acme-ml",
                "us-central1-b",
                None,
                &spec("x"),
                None,
                Duration::ZERO,
            )
            .unwrap();
        assert_eq!(
            op_error(&mut w, &op, "us-central1-b").as_deref(),
            Some("ZONE_RESOURCE_POOL_EXHAUSTED")
        );
        w.advance(Duration::from_secs(600));
        let at = Duration::from_secs(600);
        let op = w
            .gcp_insert("acme-ml", "us-central1-a", None, &spec("y"), None, at)
            .unwrap();
        assert_eq!(
            op_error(&mut w, &op, "us-central1-a").as_deref(),
            Some("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS")
        );
        let truth = w.truth();
        assert_eq!(
            truth.stock["gcp/us-central1/us-central1-a/a3-highgpu-8g/on_demand"],
            [(0, 2), (600, 0)]
        );
    }

    #[test]
    fn gcp_pools_leave_aws_and_lambda_randomness_unchanged() {
        let base = r#"
            name = "mixed"
            step = "1m"
            [[zones]]
            region = "us-east-1"
            id = "use1-az4"
            name = "us-east-1a"
            [[pools]]
            zone = "use1-az4"
            instance_type = "p5.48xlarge"
            market = "spot"
            capacity = 9
            stock = 5
            refill_per_hour = 30
            demand_per_hour = 30
            [[pools]]
            provider = "lambda"
            region = "us-south-2"
            instance_type = "gpu_8x_h100_sxm5"
            market = "on_demand"
            capacity = 9
            stock = 5
            refill_per_hour = 20
            demand_per_hour = 20
        "#;
        let with_gcp = format!(
            "{base}\n[[zones]]\nprovider = \"gcp\"\nregion = \"us-central1\"\nid = \"us-central1-a\"\n\
             [[pools]]\nprovider = \"gcp\"\nzone = \"us-central1-a\"\ninstance_type = \"a3-highgpu-8g\"\n\
             market = \"on_demand\"\ncapacity = 9\nstock = 5\nrefill_per_hour = 40\ndemand_per_hour = 40\n"
        );
        let run = |text: &str| {
            let mut w = World::new(
                Scenario::parse(text).unwrap(),
                3,
                BTreeMap::new(),
                Utc::now(),
            );
            w.advance(Duration::from_secs(6 * 3600));
            w.truth()
        };
        let (plain, mixed) = (run(base), run(&with_gcp));
        for prefix in ["aws/", "lambda/"] {
            assert_eq!(
                plain.clone().filtered(prefix, 0).stock,
                mixed.clone().filtered(prefix, 0).stock,
                "{prefix}"
            );
        }
        assert!(mixed.stock.keys().any(|k| k.starts_with("gcp/")));
    }

    #[test]
    fn gcp_faults_never_hit_aws_or_lambda() {
        let mut w = world();
        w.add_fault(Fault::once("gcp/insert", "429"));
        assert!(w.take_fault("RunInstances").is_none());
        assert!(w.lambda_fault("launch").is_none());
        assert!(w.gcp_fault("delete").is_none());
        assert_eq!(w.gcp_fault("insert").unwrap().unwrap().code, 429);
        assert!(w.gcp_fault("insert").is_none());
    }
}
