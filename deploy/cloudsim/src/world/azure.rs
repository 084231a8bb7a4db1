//! Azure in the world: Entra ID app registrations (client credentials -> access tokens),
//! subscriptions with per-family vCPU quotas and SKU restrictions, zonal pools and virtual
//! machines, with Azure Resource Manager's error codes and messages ([`AzureError`]).
//!
//! Contract:
//! * Zones: a subscription's logical zones (`1`, `2`, `3`) map onto the physical zones
//!   (`<region>-az<n>`, keyed `<region>-<n>` like capsight) rotated by its `zone_shift`, as AWS
//!   AZ names are ([`World::zones`]).
//! * A VM create (PUT on a name) is idempotent by name: an existing VM that did not fail is
//!   returned unchanged; a failed one is allocated again. The synchronous checks, in order:
//!   size and location known, zone known, SKU restriction or no pool (`SkuNotAvailable`),
//!   family or low-priority quota (`OperationNotAllowed`), regional cores (`QuotaExceeded`).
//!   Allocation is decided at once but reported through the long-running operation, as Azure
//!   does: a spot price cap under the current price (`OverconstrainedAllocationRequest`), no
//!   stock in the zone (`ZonalAllocationFailed`) or in any zone (`AllocationFailed`) leave the
//!   VM `Failed`; otherwise it takes one instance of stock and turns `Succeeded` after the
//!   pool's provisioning delay. Deleting gives the stock back.
//! * Spot prices are list prices (the Retail Prices API): the pool's `spot_price`, else the
//!   catalog's on-demand price times `defaults.spot_discount`. Nothing here consumes the
//!   market RNG.

use super::*;
use crate::scenario::SimProvider;

/// The low-priority (spot) vCPU quota's usage name.
pub const LOW_PRIORITY_CORES: &str = "lowPriorityCores";
/// The total regional vCPU quota's usage name.
pub const REGIONAL_CORES: &str = "cores";

/// An ARM-shaped error: `{"error": {"code", "message"}}` with its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct AzureError {
    /// HTTP status.
    pub status: u16,
    /// ARM error code, e.g. `SkuNotAvailable`.
    pub code: String,
    /// The message.
    pub message: String,
}

impl AzureError {
    /// An error with a status, code and message.
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// `400 InvalidParameter`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidParameter", message)
    }

    /// `404 ResourceNotFound` for a VM.
    pub fn vm_not_found(rg: &str, name: &str) -> Self {
        Self::new(
            404,
            "ResourceNotFound",
            format!(
                "The Resource 'Microsoft.Compute/virtualMachines/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        )
    }

    /// The status ARM answers `code` with (injected faults).
    pub fn status_for(code: &str) -> u16 {
        match code {
            "InvalidAuthenticationToken" | "AuthenticationFailed" => 401,
            "AuthorizationFailed" => 403,
            "ResourceNotFound" => 404,
            "TooManyRequests" | "SubscriptionRequestsThrottled" => 429,
            "InternalServerError" | "InternalExecutionError" => 500,
            "ServiceUnavailable" => 503,
            "SkuNotAvailable" | "OperationNotAllowed" | "QuotaExceeded" => 409,
            _ => 400,
        }
    }
}

/// What an Azure VM size is to the world (from the GPU catalog).
#[derive(Debug, Clone, PartialEq)]
pub struct AzureSize {
    /// vCPUs.
    pub vcpus: u32,
    /// GPUs.
    pub gpus: u32,
    /// Memory, GiB.
    pub memory_gib: u32,
    /// The family's usage name (`standardNDSH100v5Family`).
    pub family: String,
    /// On-demand list price, USD/hour.
    pub on_demand_usd_per_hour: f64,
}

/// The Azure sizes of the embedded GPU catalog, by name.
pub fn sizes() -> &'static BTreeMap<String, AzureSize> {
    static SIZES: std::sync::OnceLock<BTreeMap<String, AzureSize>> = std::sync::OnceLock::new();
    SIZES.get_or_init(|| {
        catalog_by_name("azure", |g| AzureSize {
            vcpus: g.vcpus,
            gpus: g.gpu_count,
            memory_gib: g.memory_gib,
            family: g.quota.on_demand.clone(),
            on_demand_usd_per_hour: g.on_demand_usd_per_hour,
        })
    })
}

/// A VM's `provisioningState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioning {
    /// Allocated, booting.
    Creating,
    /// Running.
    Succeeded,
    /// Allocation failed; holds nothing.
    Failed,
}

impl Provisioning {
    /// ARM's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "Creating",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }
}

/// A simulated Azure virtual machine.
#[derive(Debug, Clone)]
pub struct AzureVm {
    /// Subscription.
    pub subscription: String,
    /// Resource group.
    pub resource_group: String,
    /// Name (unique in the resource group).
    pub name: String,
    /// `vmId` (a GUID).
    pub vm_id: String,
    /// Location.
    pub location: String,
    /// Logical zone requested (`1`), if any.
    pub zone: Option<String>,
    /// Physical zone id (`eastus-1`) it was allocated in.
    pub zone_id: Option<String>,
    /// VM size.
    pub vm_size: String,
    /// Regular (on-demand) or Spot.
    pub market: PoolMarket,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// `provisioningState`.
    pub provisioning: Provisioning,
    /// When a creating VM succeeds.
    pub ready_at: Option<Duration>,
    /// `timeCreated`.
    pub created: DateTime<Utc>,
    /// The long-running operation of its last create.
    pub operation: String,
}

impl AzureVm {
    fn holds_capacity(&self) -> bool {
        self.provisioning != Provisioning::Failed
    }
}

/// A long-running operation's status (`Azure-AsyncOperation`).
#[derive(Debug, Clone)]
pub struct AzureOperation {
    /// Id.
    pub id: String,
    /// Subscription.
    pub subscription: String,
    /// `InProgress`, `Succeeded`, `Failed`.
    pub status: &'static str,
    /// The error of a failed operation.
    pub error: Option<AzureError>,
    /// Start.
    pub started: DateTime<Utc>,
    /// The VM whose creation it tracks (its status follows the VM's).
    pub vm: Option<(String, String, String)>,
}

/// A requested VM.
#[derive(Debug, Clone)]
pub struct AzureCreate {
    /// Location.
    pub location: String,
    /// Logical zones (at most one).
    pub zones: Vec<String>,
    /// VM size.
    pub vm_size: String,
    /// Regular or Spot.
    pub market: PoolMarket,
    /// Spot price cap, USD/hour; `-1` or absent = up to the on-demand price.
    pub max_price: Option<f64>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// An issued Entra ID access token.
#[derive(Debug, Clone)]
pub(super) struct AzureToken {
    identity: Identity,
    expires: std::time::Instant,
}

impl World {
    /// Issues an access token for the client-credentials grant, or the Entra ID error
    /// (`error`, `error_description`, HTTP status) the real token endpoint answers.
    pub fn azure_token(
        &mut self,
        directory: &str,
        client_id: &str,
        client_secret: &str,
        now: std::time::Instant,
    ) -> Result<(String, Duration), (u16, &'static str, String)> {
        let in_directory: Vec<_> = self
            .scenario
            .principals
            .iter()
            .filter(|p| p.provider == SimProvider::Azure && p.directory == directory)
            .collect();
        if in_directory.is_empty() {
            return Err((
                400,
                "invalid_request",
                format!(
                    "AADSTS90002: Tenant '{directory}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
                ),
            ));
        }
        let Some(p) = in_directory.into_iter().find(|p| p.client_id == client_id) else {
            return Err((
                400,
                "unauthorized_client",
                format!(
                    "AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{directory}'."
                ),
            ));
        };
        if p.client_secret != client_secret {
            return Err((
                401,
                "invalid_client",
                format!(
                    "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            ));
        }
        let identity = Identity {
            account: p.account.clone(),
            arn: p.client_id.clone(),
            user_id: p.user.clone(),
            allow: p.allow.clone(),
        };
        self.counter += 1;
        let token = format!(
            "eyJ0eXAiOiJKV1Qi.cloudsim.{:016x}{:08x}",
            self.seed.rotate_left(7) ^ self.counter,
            self.counter
        );
        let lifetime = self.scenario.defaults.azure_token_lifetime;
        self.azure_tokens.insert(
            token.clone(),
            AzureToken {
                identity,
                expires: now + lifetime,
            },
        );
        Ok((token, lifetime))
    }

    /// The caller behind a bearer token: `401 InvalidAuthenticationToken` when unknown or
    /// expired, `401 AuthenticationFailed` when missing.
    pub fn azure_caller(
        &self,
        token: Option<&str>,
        now: std::time::Instant,
    ) -> Result<Identity, AzureError> {
        let Some(token) = token else {
            return Err(AzureError::new(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            ));
        };
        match self.azure_tokens.get(token) {
            Some(t) if t.expires > now => Ok(t.identity.clone()),
            Some(_) => Err(AzureError::new(
                401,
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
            )),
            None => Err(AzureError::new(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            )),
        }
    }

    /// Authorizes `action` on `scope` for `who` in `subscription`: `403 AuthorizationFailed`
    /// when the identity has no role with the action there.
    pub fn azure_authorize(
        &self,
        who: &Identity,
        subscription: &str,
        action: &str,
        scope: &str,
    ) -> Result<(), AzureError> {
        if who.account == subscription && who.may(action) {
            return Ok(());
        }
        Err(AzureError::new(
            403,
            "AuthorizationFailed",
            format!(
                "The client '{}' with object id '{}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
                who.arn, who.user_id
            ),
        ))
    }

    /// The subscription's rate limit (shared token buckets): `429 TooManyRequests`.
    pub fn azure_throttle(&mut self, subscription: &str) -> Result<(), AzureError> {
        self.throttle(subscription, std::time::Instant::now())
            .map_err(|_| {
                AzureError::new(
                    429,
                    "TooManyRequests",
                    "The request is being throttled as the limit has been reached for operation type - Read_ObservationWindow_00:03:00. For more information, see - https://aka.ms/srpthrottlinglimits",
                )
            })
    }

    /// Consumes one injected fault for the Azure operation `op`: faults whose action is
    /// `azure/<op>` or `azure/*`.
    pub fn azure_fault(&mut self, op: &str) -> Option<AzureError> {
        let (code, message) = self.take_provider_fault("azure", op, None)?;
        let status = http_status(&code).unwrap_or_else(|| AzureError::status_for(&code));
        Some(AzureError::new(status, code, message))
    }

    /// Azure regions of the scenario (those with zones), in name order.
    pub fn azure_regions(&self) -> BTreeSet<String> {
        self.scenario
            .zones
            .iter()
            .filter(|z| z.provider == SimProvider::Azure)
            .map(|z| z.region.clone())
            .collect()
    }

    /// Azure pools.
    pub fn azure_pools(&self) -> &BTreeMap<PoolKey, PoolState> {
        &self.azure_pools
    }

    /// Zone ids of `location` where `vm_size` has a pool (any market), in id order.
    pub fn azure_sku_zones(&self, location: &str, vm_size: &str) -> BTreeSet<String> {
        self.azure_pools
            .iter()
            .filter(|(k, p)| p.region == location && k.instance_type == vm_size)
            .map(|(k, _)| k.zone_id.clone())
            .collect()
    }

    /// The subscription's restriction of `vm_size` in `location`: `Some(empty)` for the whole
    /// location, `Some(zone ids)` for some zones, `None` when unrestricted.
    pub fn azure_restriction(
        &self,
        subscription: &str,
        location: &str,
        vm_size: &str,
    ) -> Option<Vec<String>> {
        let account = self
            .scenario
            .accounts
            .iter()
            .find(|a| a.id == subscription)?;
        let mut zones = Vec::new();
        let mut any = false;
        for r in account
            .restrictions
            .iter()
            .filter(|r| r.region == location && r.instance_type == vm_size)
        {
            if r.zones.is_empty() {
                return Some(Vec::new());
            }
            any = true;
            zones.extend(r.zones.iter().cloned());
        }
        any.then_some(zones)
    }

    /// The subscription's vCPU limit for the usage `name`.
    pub fn azure_limit(&self, subscription: &str, name: &str) -> f64 {
        self.quotas
            .get(&(subscription.to_owned(), name.to_owned()))
            .copied()
            .unwrap_or(self.scenario.defaults.quota_vcpus)
    }

    /// vCPUs the subscription's VMs in `location` hold, counted under the usage `name`: a
    /// family (regular VMs of its sizes), `lowPriorityCores` (spot VMs) or `cores` (every
    /// regular VM).
    pub fn azure_usage(&self, subscription: &str, location: &str, name: &str) -> f64 {
        self.azure_vms
            .values()
            .filter(|v| v.subscription == subscription && v.location == location)
            .filter(|v| v.holds_capacity())
            .filter_map(|v| {
                let size = sizes().get(&v.vm_size)?;
                let counts = match name {
                    LOW_PRIORITY_CORES => v.market == PoolMarket::Spot,
                    REGIONAL_CORES => v.market == PoolMarket::OnDemand,
                    family => v.market == PoolMarket::OnDemand && size.family == family,
                };
                counts.then_some(f64::from(size.vcpus))
            })
            .sum()
    }

    /// The usage names of a location: every catalog family, low-priority and regional cores.
    pub fn azure_usage_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = sizes().values().map(|s| s.family.clone()).collect();
        names.insert(LOW_PRIORITY_CORES.into());
        names.insert(REGIONAL_CORES.into());
        names.into_iter().collect()
    }

    /// The spot list price of `vm_size` in `location`, USD/hour.
    pub fn azure_spot_price(&self, location: &str, vm_size: &str) -> Option<f64> {
        let od = sizes().get(vm_size)?.on_demand_usd_per_hour;
        let own = self.scenario.pools.iter().find_map(|p| {
            let in_location = self
                .scenario
                .zones
                .iter()
                .any(|z| z.id == p.zone && z.region == location);
            (p.provider == SimProvider::Azure
                && p.market == PoolMarket::Spot
                && p.instance_type == vm_size
                && in_location)
                .then_some(p.spot_price)
                .flatten()
        });
        Some(round4(
            own.unwrap_or(od * self.scenario.defaults.spot_discount),
        ))
    }

    /// Creates (or returns) the VM `name`; see the module contract. Returns the VM and whether
    /// it was created now.
    pub fn azure_create(
        &mut self,
        subscription: &str,
        resource_group: &str,
        name: &str,
        spec: &AzureCreate,
        elapsed: Duration,
    ) -> Result<(AzureVm, bool), AzureError> {
        let key = (
            subscription.to_owned(),
            resource_group.to_lowercase(),
            name.to_lowercase(),
        );
        if let Some(vm) = self.azure_vms.get(&key)
            && vm.provisioning != Provisioning::Failed
        {
            return Ok((vm.clone(), false));
        }
        let Some(size) = sizes().get(&spec.vm_size).cloned() else {
            return Err(AzureError::invalid(format!(
                "The value {} provided for the VM size is not valid. The valid sizes in the current region are listed at https://aka.ms/azure-regionservices.",
                spec.vm_size
            )));
        };
        if !self.azure_regions().contains(&spec.location) {
            return Err(AzureError::new(
                400,
                "LocationNotAvailableForResourceType",
                format!(
                    "The provided location '{}' is not available for resource type 'Microsoft.Compute/virtualMachines'.",
                    spec.location
                ),
            ));
        }
        if spec.zones.len() > 1 {
            return Err(AzureError::invalid(
                "A virtual machine can be placed in at most one availability zone.",
            ));
        }
        let zone_id = match spec.zones.first() {
            Some(logical) => Some(
                self.zone_id(subscription, &spec.location, logical)
                    .ok_or_else(|| {
                        AzureError::invalid(format!(
                            "The zone '{logical}' is not a valid availability zone of location '{}'.",
                            spec.location
                        ))
                    })?,
            ),
            None => None,
        };
        let scope = format!(
            "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Compute/virtualMachines/{name}"
        );
        // SKU availability for the subscription: restrictions, or no pool at all
        let offered = self.azure_sku_zones(&spec.location, &spec.vm_size);
        let restricted = self.azure_restriction(subscription, &spec.location, &spec.vm_size);
        let usable = usable_zones(&offered, restricted.as_deref());
        let available = match &zone_id {
            Some(z) => usable.contains(z),
            None => !usable.is_empty(),
        };
        if !available {
            let zones = spec
                .zones
                .first()
                .map(|z| format!(" zones '{z}'"))
                .unwrap_or_default();
            return Err(AzureError::new(
                409,
                "SkuNotAvailable",
                format!(
                    "The requested VM size for resource '{scope}' is currently not available in location '{}'{zones} for subscription '{subscription}'. Please try another size or deploy to a different location or zones. See https://aka.ms/azureskunotavailable for details.",
                    spec.location
                ),
            ));
        }
        // quota
        let vcpus = f64::from(size.vcpus);
        let (usage, label) = match spec.market {
            PoolMarket::Spot => (
                LOW_PRIORITY_CORES.to_owned(),
                "Low Priority Cores".to_owned(),
            ),
            PoolMarket::OnDemand => (size.family.clone(), format!("{} Cores", size.family)),
        };
        let limit = self.azure_limit(subscription, &usage);
        let used = self.azure_usage(subscription, &spec.location, &usage);
        if used + vcpus > limit {
            return Err(AzureError::new(
                409,
                "OperationNotAllowed",
                format!(
                    "Operation could not be completed as it results in exceeding approved {label} quota. Additional details - Deployment Model: Resource Manager, Location: {}, Current Limit: {limit}, Current Usage: {used}, Additional Required: {vcpus}, (Minimum) New Limit Required: {}. Submit a request for Quota increase at https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView by specifying parameters listed in the 'Details' section for deployment to succeed.",
                    spec.location,
                    used + vcpus
                ),
            ));
        }
        if spec.market == PoolMarket::OnDemand
            && self
                .quotas
                .contains_key(&(subscription.to_owned(), REGIONAL_CORES.to_owned()))
        {
            let limit = self.azure_limit(subscription, REGIONAL_CORES);
            let used = self.azure_usage(subscription, &spec.location, REGIONAL_CORES);
            if used + vcpus > limit {
                return Err(AzureError::new(
                    409,
                    "QuotaExceeded",
                    format!(
                        "Operation results in exceeding quota limits of Core. Maximum allowed: {limit}, Current in use: {used}, Additional requested: {vcpus}. Please read more about quota increase at https://aka.ms/quotaincreaserequest."
                    ),
                ));
            }
        }
        // allocation, reported through the operation
        let allocation = self.azure_allocate(spec, zone_id.as_deref(), usable);
        let operation = self.azure_operation_id();
        let created = self.time_at(elapsed);
        let (provisioning, ready_at, zone_id, error) = match allocation {
            Ok((zone, provisioning)) => (
                Provisioning::Creating,
                Some(elapsed + provisioning),
                Some(zone),
                None,
            ),
            Err(e) => (Provisioning::Failed, None, zone_id, Some(e)),
        };
        let vm = AzureVm {
            subscription: subscription.to_owned(),
            resource_group: resource_group.to_owned(),
            name: name.to_owned(),
            vm_id: self.azure_guid(),
            location: spec.location.clone(),
            zone: spec.zones.first().cloned(),
            zone_id,
            vm_size: spec.vm_size.clone(),
            market: spec.market,
            tags: spec.tags.clone(),
            provisioning,
            ready_at,
            created,
            operation: operation.clone(),
        };
        self.azure_operations.insert(
            operation.clone(),
            AzureOperation {
                id: operation,
                subscription: subscription.to_owned(),
                status: if error.is_some() {
                    "Failed"
                } else {
                    "InProgress"
                },
                error,
                started: created,
                vm: Some(key.clone()),
            },
        );
        self.azure_vms.insert(key, vm.clone());
        Ok((vm, true))
    }

    /// Takes one instance of stock for `spec`: the zone asked for, else the first zone with
    /// stock among `usable`; the error the operation reports otherwise.
    fn azure_allocate(
        &mut self,
        spec: &AzureCreate,
        zone_id: Option<&str>,
        usable: Vec<String>,
    ) -> Result<(String, Duration), AzureError> {
        if spec.market == PoolMarket::Spot {
            let price = self
                .azure_spot_price(&spec.location, &spec.vm_size)
                .unwrap_or(0.0);
            if let Some(cap) = spec.max_price.filter(|p| *p >= 0.0)
                && cap < price
            {
                return Err(AzureError::new(
                    200,
                    "OverconstrainedAllocationRequest",
                    format!(
                        "Allocation failed. VM(s) with the following constraints cannot be allocated, because the condition is too restrictive. Please remove some constraints and try again. Constraints applied are: - Spot max price ({cap}) below the current price ({price}) - VM Size"
                    ),
                ));
            }
        }
        let candidates: Vec<String> = match zone_id {
            Some(z) => vec![z.to_owned()],
            None => usable,
        };
        for z in &candidates {
            let key = PoolKey {
                zone_id: z.clone(),
                instance_type: spec.vm_size.clone(),
                market: spec.market,
            };
            if let Some(pool) = self.azure_pools.get_mut(&key)
                && pool.stock > 0
            {
                pool.stock -= 1;
                return Ok((z.clone(), pool.provisioning));
            }
        }
        let (code, scope) = if zone_id.is_some() {
            ("ZonalAllocationFailed", "zone")
        } else {
            ("AllocationFailed", "region")
        };
        Err(AzureError::new(
            200,
            code,
            format!(
                "Allocation failed. We do not have sufficient capacity for the requested VM size in this {scope}. Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance"
            ),
        ))
    }

    /// Deletes the VM `name`; `false` when there was none. Its stock goes back to its pool.
    pub fn azure_delete(&mut self, subscription: &str, resource_group: &str, name: &str) -> bool {
        let key = (
            subscription.to_owned(),
            resource_group.to_lowercase(),
            name.to_lowercase(),
        );
        let Some(vm) = self.azure_vms.remove(&key) else {
            return false;
        };
        if vm.holds_capacity()
            && let Some(zone) = &vm.zone_id
            && let Some(pool) = self.azure_pools.get_mut(&PoolKey {
                zone_id: zone.clone(),
                instance_type: vm.vm_size.clone(),
                market: vm.market,
            })
            && !pool.stocked_out
        {
            pool.stock = (pool.stock + 1).min(pool.capacity);
        }
        true
    }

    /// The VM `name` of the subscription's resource group.
    pub fn azure_vm(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
    ) -> Option<&AzureVm> {
        self.azure_vms.get(&(
            subscription.to_owned(),
            resource_group.to_lowercase(),
            name.to_lowercase(),
        ))
    }

    /// The VMs of a resource group, by name.
    pub fn azure_vms_in(
        &self,
        subscription: &str,
        resource_group: &str,
    ) -> impl Iterator<Item = &AzureVm> {
        let rg = resource_group.to_lowercase();
        self.azure_vms
            .iter()
            .filter(move |((s, r, _), _)| s == subscription && *r == rg)
            .map(|(_, v)| v)
    }

    /// A long-running operation of the subscription, its status following its VM's.
    pub fn azure_operation(&self, subscription: &str, id: &str) -> Option<AzureOperation> {
        let mut op = self
            .azure_operations
            .get(id)
            .filter(|o| o.subscription == subscription)?
            .clone();
        if op.status == "InProgress" {
            op.status = match op.vm.as_ref().and_then(|k| self.azure_vms.get(k)) {
                Some(vm) if vm.provisioning == Provisioning::Creating => "InProgress",
                Some(vm) if vm.provisioning == Provisioning::Failed => "Failed",
                // succeeded, or deleted after it was made
                _ => "Succeeded",
            };
        }
        Some(op)
    }

    /// Creating VMs whose time has come succeed.
    pub(super) fn settle_azure(&mut self, elapsed: Duration) {
        for vm in self.azure_vms.values_mut() {
            if vm.provisioning == Provisioning::Creating
                && vm.ready_at.is_some_and(|t| t <= elapsed)
            {
                vm.provisioning = Provisioning::Succeeded;
                vm.ready_at = None;
            }
        }
    }

    fn azure_operation_id(&mut self) -> String {
        self.azure_guid()
    }

    /// A GUID, deterministic per (seed, counter).
    fn azure_guid(&mut self) -> String {
        self.counter += 1;
        let mixed = (self.counter ^ self.seed.rotate_left(41)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let hex = format!("{mixed:016x}{:016x}", self.counter);
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

/// The zones of `offered` the subscription may use (`restricted`: `None` = all, empty = none).
fn usable_zones(offered: &BTreeSet<String>, restricted: Option<&[String]>) -> Vec<String> {
    offered
        .iter()
        .filter(|z| restricted.is_none_or(|r| !r.is_empty() && !r.contains(z)))
        .cloned()
        .collect()
}
