//! Lambda Cloud in the world: API keys, account instance limits, per-region pools (Lambda has
//! no zones) and instances, with the error codes of Lambda's API (`global/invalid-api-key`,
//! `instance-operations/launch/insufficient-capacity`, `global/quota-exceeded`, ...).
//!
//! Contract: launches take stock from their (region, type) pool and count against the
//! account's instance limit (`lambda-account-instances`, else `defaults.lambda_instance_limit`)
//! while booting or active; terminations give both back. Booting instances turn active after
//! the pool's provisioning delay. Nothing here consumes the market RNG.

use super::*;
use crate::scenario::{LAMBDA_INSTANCE_QUOTA, SimProvider};

/// A Lambda-shaped error: `{"error": {"code", "message", "suggestion"}}` with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct LambdaError {
    /// HTTP status.
    pub status: u16,
    /// Lambda's error code, e.g. `global/quota-exceeded`.
    pub code: String,
    /// The message.
    pub message: String,
    /// Lambda's suggestion, if any.
    pub suggestion: Option<String>,
}

impl LambdaError {
    /// An error with a status, code and message.
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            suggestion: None,
        }
    }

    /// Adds a suggestion.
    #[must_use]
    pub fn suggest(mut self, suggestion: impl Into<String>) -> Self {
        self.suggestion = Some(suggestion.into());
        self
    }

    /// `400 global/invalid-parameters`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "global/invalid-parameters", message)
    }

    /// The status Lambda answers `code` with (injected faults).
    pub fn status_for(code: &str) -> u16 {
        match code {
            "global/invalid-api-key" => 401,
            "global/account-inactive" => 403,
            "global/object-does-not-exist" => 404,
            "global/too-many-requests" => 429,
            c if c.starts_with("global/internal") || c == "global/unknown" => 500,
            _ => 400,
        }
    }
}

/// A Lambda instance's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LambdaStatus {
    /// Launched, not yet reachable.
    Booting,
    /// Running.
    Active,
    /// Unhealthy (never set by the simulation; listed for the API's shape).
    Unhealthy,
    /// Terminated.
    Terminated,
}

impl LambdaStatus {
    /// Lambda's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booting => "booting",
            Self::Active => "active",
            Self::Unhealthy => "unhealthy",
            Self::Terminated => "terminated",
        }
    }

    fn holds_capacity(self) -> bool {
        !matches!(self, Self::Terminated)
    }
}

/// A simulated Lambda instance.
#[derive(Debug, Clone)]
pub struct LambdaInstance {
    /// 32 hex digits.
    pub id: String,
    /// Owner account.
    pub account: String,
    /// The name given at launch, if any.
    pub name: Option<String>,
    /// Region.
    pub region: String,
    /// Instance type.
    pub instance_type: String,
    /// Status.
    pub status: LambdaStatus,
    /// When a booting instance turns active.
    pub active_at: Option<Duration>,
    /// Launch time.
    pub launched: DateTime<Utc>,
    /// The SSH key names given at launch.
    pub ssh_key_names: Vec<String>,
}

/// What `POST /instance-operations/launch` asks for.
#[derive(Debug, Clone)]
pub struct LambdaLaunch {
    /// Region.
    pub region: String,
    /// Instance type.
    pub instance_type: String,
    /// Instances (all or nothing).
    pub quantity: u32,
    /// Instance name.
    pub name: Option<String>,
    /// SSH key names (exactly one).
    pub ssh_key_names: Vec<String>,
}

impl World {
    /// The account behind a Lambda API key: 401 `global/invalid-api-key` for an unknown key,
    /// 403 `global/account-inactive` for a deactivated account.
    pub fn lambda_account(&self, api_key: &str) -> Result<String, LambdaError> {
        let principal = self
            .scenario
            .principals
            .iter()
            .find(|p| {
                p.provider == SimProvider::Lambda && !api_key.is_empty() && p.api_key == api_key
            })
            .ok_or_else(|| {
                LambdaError::new(
                    401,
                    "global/invalid-api-key",
                    "API key was invalid, expired, or deleted.",
                )
                .suggest("Check your API key or create a new one, then try again.")
            })?;
        let inactive = self
            .scenario
            .accounts
            .iter()
            .any(|a| a.id == principal.account && a.inactive);
        if inactive {
            return Err(LambdaError::new(
                403,
                "global/account-inactive",
                "Your account is inactive.",
            )
            .suggest("Make sure you have verified your email address and have a valid payment method. Contact Support if problems continue."));
        }
        Ok(principal.account.clone())
    }

    /// The account's API rate limit (`defaults.api_requests_per_second`, shared with AWS
    /// accounts' buckets by account id): 429 when exhausted.
    pub fn lambda_throttle(&mut self, account: &str) -> Result<(), LambdaError> {
        self.throttle(account, std::time::Instant::now())
            .map_err(|_| {
                LambdaError::new(429, "global/too-many-requests", "Too many requests.")
                    .suggest("Retry after a short wait.")
            })
    }

    /// Consumes one injected fault for the Lambda operation `op` (`launch`, `terminate`,
    /// `instance-types`, `instances`): faults whose action is `lambda/<op>` or `lambda/*`
    /// (an AWS fault, `*` included, never hits Lambda).
    pub fn lambda_fault(&mut self, op: &str) -> Option<LambdaError> {
        let (code, message) = self.take_provider_fault("lambda", op, None)?;
        let status = http_status(&code).unwrap_or_else(|| LambdaError::status_for(&code));
        Some(LambdaError::new(status, code, message))
    }

    /// Lambda pools by (region, type).
    pub fn lambda_pools(&self) -> &BTreeMap<(String, String), PoolState> {
        &self.lambda_pools
    }

    /// Regions where `instance_type` has stock now, in name order.
    pub fn lambda_regions_with_capacity(&self, instance_type: &str) -> Vec<String> {
        self.lambda_pools
            .iter()
            .filter(|((_, t), p)| t == instance_type && p.stock > 0)
            .map(|((r, _), _)| r.clone())
            .collect()
    }

    /// The account's instance limit.
    pub fn lambda_instance_limit(&self, account: &str) -> u32 {
        self.quotas
            .get(&(account.to_owned(), LAMBDA_INSTANCE_QUOTA.to_owned()))
            .map_or(self.scenario.defaults.lambda_instance_limit, |v| {
                // saturating float-to-int conversion of a quota value
                v.max(0.0) as u32
            })
    }

    /// The account's booting, active or unhealthy instances.
    pub fn lambda_in_use(&self, account: &str) -> u32 {
        let n = self
            .lambda_instances
            .values()
            .filter(|i| i.account == account && i.status.holds_capacity())
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Launches `spec.quantity` instances (all or nothing). Checks, in order: parameters
    /// (the type must be `known_type`, the region must have a Lambda pool, quantity >= 1,
    /// one SSH key name), capacity (`instance-operations/launch/insufficient-capacity`, naming
    /// the regions with capacity in the suggestion), then the account's instance limit
    /// (`global/quota-exceeded`).
    pub fn lambda_launch(
        &mut self,
        account: &str,
        spec: &LambdaLaunch,
        known_type: bool,
        elapsed: Duration,
    ) -> Result<Vec<String>, LambdaError> {
        if !known_type {
            return Err(LambdaError::invalid(format!(
                "Invalid instance type name: {}",
                spec.instance_type
            )));
        }
        if !self.lambda_pools.keys().any(|(r, _)| *r == spec.region) {
            return Err(LambdaError::invalid(format!(
                "Invalid region name: {}",
                spec.region
            )));
        }
        if spec.quantity == 0 {
            return Err(LambdaError::invalid("quantity must be at least 1"));
        }
        if spec.ssh_key_names.len() != 1 {
            return Err(LambdaError::invalid(
                "ssh_key_names must name exactly one SSH key",
            ));
        }
        let key = (spec.region.clone(), spec.instance_type.clone());
        let stock = self.lambda_pools.get(&key).map_or(0, |p| p.stock);
        if stock < spec.quantity {
            let elsewhere: Vec<String> = self
                .lambda_regions_with_capacity(&spec.instance_type)
                .into_iter()
                .filter(|r| *r != spec.region)
                .collect();
            let suggestion = if elsewhere.is_empty() {
                "Try again later.".to_owned()
            } else {
                format!("Regions with capacity available: {}.", elsewhere.join(", "))
            };
            return Err(LambdaError::new(
                400,
                "instance-operations/launch/insufficient-capacity",
                "Not enough capacity to fulfill launch request.",
            )
            .suggest(suggestion));
        }
        let limit = self.lambda_instance_limit(account);
        let used = self.lambda_in_use(account);
        if used.saturating_add(spec.quantity) > limit {
            return Err(LambdaError::new(
                400,
                "global/quota-exceeded",
                format!("Quota exceeded: the account may run {limit} instances and runs {used}."),
            )
            .suggest("Contact Support to increase your quota."));
        }
        let Some(pool) = self.lambda_pools.get_mut(&key) else {
            return Err(LambdaError::invalid("no such pool"));
        };
        pool.stock -= spec.quantity;
        let active_at = elapsed + pool.provisioning;
        let launched = self.time_at(elapsed);
        let mut ids = Vec::new();
        for _ in 0..spec.quantity {
            let id = self.lambda_id();
            self.lambda_instances.insert(
                id.clone(),
                LambdaInstance {
                    id: id.clone(),
                    account: account.to_owned(),
                    name: spec.name.clone(),
                    region: spec.region.clone(),
                    instance_type: spec.instance_type.clone(),
                    status: LambdaStatus::Booting,
                    active_at: Some(active_at),
                    launched,
                    ssh_key_names: spec.ssh_key_names.clone(),
                },
            );
            ids.push(id);
        }
        Ok(ids)
    }

    /// Terminates the account's instances `ids` (all must exist: otherwise 404
    /// `global/object-does-not-exist` and nothing changes); returns them, terminated. Already
    /// terminated ones stay so.
    pub fn lambda_terminate(
        &mut self,
        account: &str,
        ids: &[String],
    ) -> Result<Vec<LambdaInstance>, LambdaError> {
        if ids.is_empty() {
            return Err(LambdaError::invalid("instance_ids must not be empty"));
        }
        if let Some(missing) = ids
            .iter()
            .find(|id| self.lambda_instance(account, id).is_none())
        {
            return Err(LambdaError::new(
                404,
                "global/object-does-not-exist",
                format!("Specified instance does not exist: {missing}"),
            ));
        }
        let mut out = Vec::new();
        for id in ids {
            let Some(i) = self.lambda_instances.get_mut(id) else {
                continue;
            };
            if i.status.holds_capacity() {
                i.status = LambdaStatus::Terminated;
                i.active_at = None;
                if let Some(pool) = self
                    .lambda_pools
                    .get_mut(&(i.region.clone(), i.instance_type.clone()))
                    && !pool.stocked_out
                {
                    pool.stock = (pool.stock + 1).min(pool.capacity);
                }
            }
            out.push(i.clone());
        }
        Ok(out)
    }

    /// The account's instance `id` (terminated ones too).
    pub fn lambda_instance(&self, account: &str, id: &str) -> Option<&LambdaInstance> {
        self.lambda_instances
            .get(id)
            .filter(|i| i.account == account)
    }

    /// The account's instances that are not terminated, by id.
    pub fn lambda_instances(&self, account: &str) -> impl Iterator<Item = &LambdaInstance> {
        self.lambda_instances
            .values()
            .filter(move |i| i.account == account && i.status.holds_capacity())
    }

    /// Booting instances whose time has come turn active.
    pub(super) fn settle_lambda(&mut self, elapsed: Duration) {
        for i in self.lambda_instances.values_mut() {
            if i.status == LambdaStatus::Booting && i.active_at.is_some_and(|at| at <= elapsed) {
                i.status = LambdaStatus::Active;
                i.active_at = None;
            }
        }
    }

    /// A new instance id: 32 hex digits, deterministic per (seed, counter).
    fn lambda_id(&mut self) -> String {
        self.counter += 1;
        let mixed = (self.counter ^ self.seed.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        format!("{mixed:016x}{:016x}", self.counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = r#"
        [[accounts]]
        id = "acme"
        provider = "lambda"
        [accounts.quotas]
        "lambda-account-instances" = 2
        [[accounts]]
        id = "gone"
        provider = "lambda"
        inactive = true
        [[principals]]
        provider = "lambda"
        api_key = "k-acme"
        account = "acme"
        user = "acme"
        [[principals]]
        provider = "lambda"
        api_key = "k-gone"
        account = "gone"
        user = "gone"
        [[pools]]
        provider = "lambda"
        region = "us-south-2"
        instance_type = "gpu_8x_h100_sxm5"
        market = "on_demand"
        capacity = 3
        stock = 2
        [[pools]]
        provider = "lambda"
        region = "us-west-3"
        instance_type = "gpu_8x_h100_sxm5"
        market = "on_demand"
        capacity = 3
        stock = 1
        [[events]]
        at = "10m"
        kind = "stockout"
        provider = "lambda"
        region = "us-west-3"
        instance_type = "gpu_8x_h100_sxm5"
        market = "on_demand"
    "#;

    fn world() -> World {
        test_world("lambda-unit", SCENARIO)
    }

    fn spec(region: &str, quantity: u32) -> LambdaLaunch {
        LambdaLaunch {
            region: region.into(),
            instance_type: "gpu_8x_h100_sxm5".into(),
            quantity,
            name: Some("job-1".into()),
            ssh_key_names: vec!["k".into()],
        }
    }

    #[test]
    fn keys_accounts_stock_limits_and_events() {
        let mut w = world();
        assert_eq!(w.lambda_account("nope").unwrap_err().status, 401);
        assert_eq!(
            w.lambda_account("k-gone").unwrap_err().code,
            "global/account-inactive"
        );
        let acme = w.lambda_account("k-acme").unwrap();
        let t0 = Duration::ZERO;
        // unknown type, unknown region, bad ssh keys: invalid parameters
        for (s, known) in [
            (spec("us-south-2", 1), false),
            (spec("mars-north-1", 1), true),
            (
                LambdaLaunch {
                    ssh_key_names: vec![],
                    ..spec("us-south-2", 1)
                },
                true,
            ),
        ] {
            let e = w.lambda_launch(&acme, &s, known, t0).unwrap_err();
            assert_eq!(
                (e.status, e.code.as_str()),
                (400, "global/invalid-parameters")
            );
        }
        // more than the stock: capacity, naming the region that has some
        let e = w
            .lambda_launch(&acme, &spec("us-south-2", 3), true, t0)
            .unwrap_err();
        assert_eq!(e.code, "instance-operations/launch/insufficient-capacity");
        assert_eq!(
            e.suggestion.as_deref(),
            Some("Regions with capacity available: us-west-3.")
        );
        // launches take stock, boot, then count against the limit of 2
        let ids = w
            .lambda_launch(&acme, &spec("us-south-2", 2), true, t0)
            .unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(
            w.lambda_regions_with_capacity("gpu_8x_h100_sxm5"),
            ["us-west-3"]
        );
        let e = w
            .lambda_launch(&acme, &spec("us-west-3", 1), true, t0)
            .unwrap_err();
        assert_eq!(e.code, "global/quota-exceeded");
        assert_eq!(
            w.lambda_instance(&acme, &ids[0]).unwrap().status,
            LambdaStatus::Booting
        );
        w.advance(Duration::from_secs(180));
        assert_eq!(
            w.lambda_instance(&acme, &ids[0]).unwrap().status,
            LambdaStatus::Active
        );
        // terminate gives stock back; an unknown id changes nothing
        let e = w
            .lambda_terminate(&acme, &[ids[0].clone(), "nope".into()])
            .unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (404, "global/object-does-not-exist")
        );
        assert_eq!(w.lambda_instances(&acme).count(), 2);
        let done = w.lambda_terminate(&acme, &ids[..1]).unwrap();
        assert_eq!(done[0].status, LambdaStatus::Terminated);
        assert_eq!(w.lambda_instances(&acme).count(), 1);
        assert_eq!(
            w.lambda_regions_with_capacity("gpu_8x_h100_sxm5"),
            ["us-south-2", "us-west-3"]
        );
        // the stockout event empties us-west-3; the truth records every change
        w.advance(Duration::from_secs(600));
        assert_eq!(
            w.lambda_regions_with_capacity("gpu_8x_h100_sxm5"),
            ["us-south-2"]
        );
        let truth = w.truth();
        assert_eq!(
            truth.stock["lambda/us-west-3//gpu_8x_h100_sxm5/on_demand"],
            [(0, 1), (600, 0)]
        );
        assert_eq!(
            truth.stock["lambda/us-south-2//gpu_8x_h100_sxm5/on_demand"]
                .last()
                .unwrap()
                .1,
            1
        );
    }

    #[test]
    fn lambda_faults_never_hit_aws_and_aws_faults_never_hit_lambda() {
        let mut w = world();
        w.add_fault(Fault::once("*", "InternalError"));
        assert!(w.lambda_fault("launch").is_none());
        w.add_fault(Fault::once("lambda/launch", "429"));
        assert!(w.lambda_fault("terminate").is_none());
        assert_eq!(w.lambda_fault("launch").unwrap().status, 429);
        assert!(w.lambda_fault("launch").is_none());
        assert!(w.take_fault("RunInstances").is_some());
    }
}
