//! Azure (Compute) implementation of [`CloudAdapter`] over Azure Resource Manager's REST API
//! with `reqwest`, plus the Retail Prices API for Spot prices.
//!
//! Why not an Azure SDK: the official Rust SDK crates (`azure_core`, `azure_identity`) are
//! pre-release and have no Compute management client; the older `azure_mgmt_compute` is
//! unmaintained. The calls capsight makes are a handful of ARM JSON requests, so they are made
//! with the `reqwest` client the Lambda adapter already uses, with both endpoints overridable.
//!
//! Contract:
//! * One adapter = one subscription and resource group (`[azure]`) in one region. Credentials:
//!   the client-credentials grant of an Entra ID app registration (`AZURE_TENANT_ID`,
//!   `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`; [`AzureCredentials`]) against `azure.authority`
//!   (else `AZURE_AUTHORITY_HOST`, else `https://login.microsoftonline.com`). The access token
//!   is cached, shared by the adapters of every region of the same credentials, and fetched
//!   again shortly before it expires or when ARM answers 401.
//! * Zones: Azure's zones are *logical* per subscription (`1`, `2`, `3`); capsight keys the
//!   *physical* zone, the same for every subscription: `eastus-2` is Azure's `eastus-az2`. The
//!   subscription's mapping comes from `GET /subscriptions/{s}/locations`
//!   (`availabilityZoneMappings`), cached per adapter: [`CloudAdapter::zones`] maps logical
//!   zone names to capsight zone ids exactly as the AWS adapter maps AZ names to AZ IDs.
//! * Errors are classified with the Azure table (`capsight_classify`): synchronous ARM errors
//!   from the body's `error.code`, allocation failures from the long-running operation's
//!   `error`. Throttled and transient failures are retried like the other adapters' (`[cloud]`
//!   `max_attempts`, backoff with jitter); nothing else is.
//! * Idempotent creation: the VM *name* is the request's client token (`<token>` for one VM,
//!   `<token>-<i>` for several), and a PUT on a name is idempotent in ARM: a retry returns the
//!   VM made by the first attempt. A launch waits for the create's `Azure-AsyncOperation` up to
//!   `azure.launch_wait`, so allocation failures (`AllocationFailed`, `ZonalAllocationFailed`,
//!   `OverconstrainedAllocationRequest`) are answers of `launch`; the VM a failed allocation
//!   leaves behind is deleted. Instance ids are VM names.
//! * Permission (no DryRun in Azure): the caller's actions on the resource group
//!   (`Microsoft.Authorization/permissions`) must include `Microsoft.Compute/virtualMachines/write`.
//! * Quota: `usages` of the location: the VM family's vCPUs (on-demand) or `lowPriorityCores`
//!   (Spot), limit minus current value.
//! * Spot prices: the Retail Prices API's Linux Spot items of the region (list prices, region
//!   wide: [`SpotPricePoint::zone`] is `None`), observed now.
//! * Offerings: resource SKUs of the location, minus the zones (or the whole location) their
//!   `restrictions` take away from the subscription (`NotAvailableForSubscription`).
//! * Not implemented: Spot placement scores (Azure's is a preview API), capacity blocks (no
//!   equivalent), capacity reservations, stop/start (deallocate/start) — all
//!   [`CloudError::Unsupported`]; probes create and delete a VM instead of reserving.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use capsight_catalog::Catalog;
use capsight_classify::{classify, classify_http};
use capsight_proto::domain::{InstanceType, Market, Provider, Region, ZoneId};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    CloudAdapter, CloudError, CloudSettings,
    http::{Answer, Api, exchange, http_url},
    types::{
        Instance, InstanceId, InstanceState, LaunchRequest, Offering, Permission, QuotaHeadroom,
        QuotaValue, SpotPricePoint, StateChange, ZoneMap,
    },
};

/// The environment variable holding the Entra ID tenant (directory) id.
pub const TENANT_ENV: &str = "AZURE_TENANT_ID";
/// The environment variable holding the app registration's client id.
pub const CLIENT_ID_ENV: &str = "AZURE_CLIENT_ID";
/// The environment variable holding the app registration's client secret.
pub const CLIENT_SECRET_ENV: &str = "AZURE_CLIENT_SECRET";
/// The environment variable overriding the Entra ID authority host.
pub const AUTHORITY_ENV: &str = "AZURE_AUTHORITY_HOST";
/// The public cloud's authority host.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The action a launch needs on the resource group.
pub const LAUNCH_ACTION: &str = "Microsoft.Compute/virtualMachines/write";
/// The Spot quota's usage name.
pub const LOW_PRIORITY_CORES: &str = "lowPriorityCores";
/// Longest VM name (the client token must fit).
pub const MAX_NAME: usize = 64;

const COMPUTE_API: &str = "2024-07-01";
const SKUS_API: &str = "2021-07-01";
const LOCATIONS_API: &str = "2022-12-01";
const PERMISSIONS_API: &str = "2022-04-01";
const PRICES_API: &str = "2023-01-01-preview";
/// The token scope: Azure Resource Manager.
const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// The `[azure]` config section. Secrets are never here: the client secret comes from
/// `AZURE_CLIENT_SECRET` (operator) or the variable a tenant's registration names.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AzureSettings {
    /// Azure Resource Manager endpoint.
    pub endpoint: String,
    /// Entra ID authority host; empty = `AZURE_AUTHORITY_HOST`, else the public cloud's.
    pub authority: String,
    /// Retail Prices API endpoint (without `/api/retail/prices`).
    pub prices_endpoint: String,
    /// The operator's subscription; empty = Azure is not configured (collectors skip it).
    pub subscription_id: String,
    /// The resource group VMs (probes) are created in and listed from.
    pub resource_group: String,
    /// Regions to watch; empty = every region the GPU catalog lists for Azure.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Image of launched VMs when the request's image is not an Azure one: an image resource
    /// id, or a marketplace URN `publisher:offer:sku:version`.
    pub image: String,
    /// Subnet resource id launched VMs attach to (a NIC configuration per VM).
    pub subnet_id: String,
    /// Admin user of launched VMs.
    pub admin_username: String,
    /// SSH public key installed for the admin user.
    pub ssh_public_key: String,
    /// How long a launch waits for the create operation to finish (allocation answers).
    #[serde(with = "humantime_serde")]
    pub launch_wait: Duration,
}

impl Default for AzureSettings {
    fn default() -> Self {
        Self {
            endpoint: "https://management.azure.com".into(),
            authority: String::new(),
            prices_endpoint: "https://prices.azure.com".into(),
            subscription_id: String::new(),
            resource_group: "capsight".into(),
            regions: Vec::new(),
            image: "Canonical:ubuntu-24_04-lts:server:latest".into(),
            subnet_id: String::new(),
            admin_username: "capsight".into(),
            ssh_public_key: String::new(),
            launch_wait: Duration::from_secs(600),
        }
    }
}

impl AzureSettings {
    /// Whether an Azure subscription is configured.
    pub fn is_configured(&self) -> bool {
        !self.subscription_id.trim().is_empty()
    }
}

/// An app registration's client credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct AzureCredentials {
    /// Entra ID tenant (directory) id.
    pub tenant_id: String,
    /// Client (application) id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
}

impl std::fmt::Debug for AzureCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the secret
        f.debug_struct("AzureCredentials")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl AzureCredentials {
    /// From `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`.
    pub fn from_env() -> Result<Self, CloudError> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| CloudError::Invalid(format!("{name} is not set")))
        };
        Ok(Self {
            tenant_id: var(TENANT_ENV)?,
            client_id: var(CLIENT_ID_ENV)?,
            client_secret: var(CLIENT_SECRET_ENV)?,
        })
    }
}

/// Where an adapter acts: a subscription and resource group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AzureScope {
    /// Subscription id.
    pub subscription_id: String,
    /// Resource group.
    pub resource_group: String,
}

#[derive(Debug)]
struct CachedToken {
    value: String,
    refresh_at: Instant,
}

/// What the adapters of every region of one account share.
struct Shared {
    api: Api,
    arm: String,
    authority: String,
    prices: String,
    credentials: AzureCredentials,
    scope: AzureScope,
    azure: AzureSettings,
    catalog: Arc<Catalog>,
    token: tokio::sync::Mutex<Option<CachedToken>>,
    zones: std::sync::Mutex<HashMap<Region, ZoneMap>>,
}

/// The Azure adapter for one subscription, resource group and region.
#[derive(Clone)]
pub struct AzureAdapter {
    shared: Arc<Shared>,
    region: Region,
}

impl std::fmt::Debug for AzureAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the client secret or the token
        f.debug_struct("AzureAdapter")
            .field("endpoint", &self.shared.arm)
            .field("subscription", &self.shared.scope.subscription_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// `?a=b&c=d`, form-encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    format!("?{}", s.finish())
}

/// Whether an Azure RBAC action pattern (`*`, `Microsoft.Compute/*`,
/// `Microsoft.Compute/virtualMachines/*`) covers `action` (case-insensitive).
fn action_matches(pattern: &str, action: &str) -> bool {
    let (p, a) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    let mut parts = p.split('*');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = a.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    if parts.is_empty() {
        return rest.is_empty();
    }
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return part.is_empty() || rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// capsight's zone id of Azure's physical zone (`eastus-az2` -> `eastus-2`).
fn zone_id_of_physical(region: &Region, physical: &str) -> Option<ZoneId> {
    let (r, n) = physical.rsplit_once("-az")?;
    if r != region.as_str() {
        return None;
    }
    ZoneId::parse_optional("zone", Provider::Azure, region, &format!("{r}-{n}"))
        .ok()
        .flatten()
}

fn state_of(provisioning: &str, power: Option<&str>) -> InstanceState {
    match (provisioning.to_ascii_lowercase().as_str(), power) {
        ("creating", _) => InstanceState::Pending,
        ("deleting", _) => InstanceState::ShuttingDown,
        (_, Some("PowerState/deallocated" | "PowerState/stopped")) => InstanceState::Stopped,
        (_, Some("PowerState/deallocating" | "PowerState/stopping")) => InstanceState::Stopping,
        ("succeeded" | "updating", _) => InstanceState::Running,
        (other, _) => InstanceState::Other(other.to_owned()),
    }
}

// ------------------------------------------------------------------ wire shapes

#[derive(Debug, Deserialize)]
struct List<T> {
    value: Vec<T>,
    #[serde(default, rename = "nextLink")]
    next_link: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Token {
    access_token: String,
    #[serde(default)]
    expires_in: u64,
}

#[derive(Debug, Deserialize)]
struct EntraError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    name: String,
    #[serde(default)]
    availability_zone_mappings: Vec<ZoneMapping>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ZoneMapping {
    logical_zone: String,
    physical_zone: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sku {
    #[serde(default)]
    resource_type: String,
    name: String,
    #[serde(default)]
    location_info: Vec<SkuLocation>,
    #[serde(default)]
    restrictions: Vec<SkuRestriction>,
}

#[derive(Debug, Deserialize)]
struct SkuLocation {
    location: String,
    #[serde(default)]
    zones: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SkuRestriction {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    restriction_info: RestrictionInfo,
}

#[derive(Debug, Default, Deserialize)]
struct RestrictionInfo {
    #[serde(default)]
    locations: Vec<String>,
    #[serde(default)]
    zones: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Usage {
    name: UsageName,
    #[serde(default)]
    current_value: f64,
    #[serde(default)]
    limit: f64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageName {
    value: String,
    #[serde(default)]
    localized_value: String,
}

#[derive(Debug, Deserialize)]
struct Vm {
    name: String,
    #[serde(default)]
    zones: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    properties: VmProperties,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VmProperties {
    #[serde(default)]
    hardware_profile: Option<HardwareProfile>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    provisioning_state: String,
    #[serde(default)]
    time_created: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    instance_view: Option<InstanceView>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HardwareProfile {
    vm_size: String,
}

#[derive(Debug, Deserialize)]
struct InstanceView {
    #[serde(default)]
    statuses: Vec<Status>,
}

#[derive(Debug, Deserialize)]
struct Status {
    code: String,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Operation {
    status: String,
    #[serde(default)]
    error: Option<OperationError>,
}

#[derive(Debug, Deserialize)]
struct OperationError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct Permissions {
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default, rename = "notActions")]
    not_actions: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Prices {
    #[serde(rename = "Items", default)]
    items: Vec<PriceItem>,
    #[serde(rename = "NextPageLink", default)]
    next_page_link: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PriceItem {
    #[serde(default)]
    retail_price: f64,
    #[serde(default)]
    arm_sku_name: String,
    #[serde(default)]
    sku_name: String,
    #[serde(default)]
    product_name: String,
    #[serde(default)]
    currency_code: String,
}

fn api_error(operation: &'static str, code: &str, message: &str) -> CloudError {
    CloudError::Api {
        operation,
        classified: Box::new(classify(Provider::Azure, code, message)),
        zone_id_hints: Vec::new(),
        request_id: None,
    }
}

impl AzureAdapter {
    /// An adapter acting with `credentials` in `scope` and `region`.
    pub fn new(
        azure: AzureSettings,
        settings: CloudSettings,
        credentials: AzureCredentials,
        scope: AzureScope,
        region: Region,
        catalog: Arc<Catalog>,
    ) -> Result<Self, CloudError> {
        if credentials.tenant_id.trim().is_empty()
            || credentials.client_id.trim().is_empty()
            || credentials.client_secret.trim().is_empty()
        {
            return Err(CloudError::Invalid(
                "Azure client credentials need a tenant id, a client id and a client secret".into(),
            ));
        }
        if scope.subscription_id.trim().is_empty() || scope.resource_group.trim().is_empty() {
            return Err(CloudError::Invalid(
                "azure.subscription_id and azure.resource_group are required".into(),
            ));
        }
        let authority = if azure.authority.trim().is_empty() {
            std::env::var(AUTHORITY_ENV)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_AUTHORITY.to_owned())
        } else {
            azure.authority.clone()
        };
        Ok(Self {
            shared: Arc::new(Shared {
                api: Api::new(Provider::Azure, "azure-api", settings)?,
                arm: http_url("azure.endpoint", &azure.endpoint)?,
                authority: http_url("azure.authority", &authority)?,
                prices: http_url("azure.prices_endpoint", &azure.prices_endpoint)?,
                credentials,
                scope,
                azure,
                catalog,
                token: tokio::sync::Mutex::new(None),
                zones: std::sync::Mutex::new(HashMap::new()),
            }),
            region,
        })
    }

    /// The operator's adapter: `[azure]` subscription and resource group, credentials from the
    /// environment.
    pub fn from_env(
        azure: AzureSettings,
        settings: CloudSettings,
        region: Region,
        catalog: Arc<Catalog>,
    ) -> Result<Self, CloudError> {
        let scope = AzureScope {
            subscription_id: azure.subscription_id.clone(),
            resource_group: azure.resource_group.clone(),
        };
        Self::new(
            azure,
            settings,
            AzureCredentials::from_env()?,
            scope,
            region,
            catalog,
        )
    }

    /// The same account in another region (sharing the token).
    pub fn in_region(&self, region: Region) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            region,
        }
    }

    fn subscription(&self) -> String {
        format!(
            "{}/subscriptions/{}",
            self.shared.arm, self.shared.scope.subscription_id
        )
    }

    fn vm_url(&self, name: &str) -> String {
        format!(
            "{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{name}",
            self.subscription(),
            self.shared.scope.resource_group
        )
    }

    /// A valid access token: the cached one, or a new one from the token endpoint.
    async fn token(&self, operation: &'static str) -> Result<String, CloudError> {
        let mut cached = self.shared.token.lock().await;
        if let Some(t) = cached.as_ref()
            && t.refresh_at > Instant::now()
        {
            return Ok(t.value.clone());
        }
        let c = &self.shared.credentials;
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials")
                .append_pair("client_id", &c.client_id)
                .append_pair("client_secret", &c.client_secret)
                .append_pair("scope", ARM_SCOPE);
            form.finish()
        };
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.shared.authority, c.tenant_id
        );
        let started = Instant::now();
        let response = self
            .shared
            .api
            .client()
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(|e| CloudError::Transport {
                operation,
                message: format!("token: {e}"),
            })?;
        let status = response.status();
        let body = response.text().await.map_err(|e| CloudError::Transport {
            operation,
            message: format!("token: {e}"),
        })?;
        if !status.is_success() {
            let e: EntraError = serde_json::from_str(&body).unwrap_or(EntraError {
                error: status.as_u16().to_string(),
                error_description: body.clone(),
            });
            return Err(api_error(operation, &e.error, &e.error_description));
        }
        let t: Token = serde_json::from_str(&body).map_err(|e| CloudError::Response {
            operation,
            message: format!("token: {e}"),
        })?;
        // refresh a little before expiry: 5 minutes, or half the lifetime of a short one
        let lifetime = Duration::from_secs(t.expires_in);
        let margin = (lifetime / 2).min(Duration::from_secs(300));
        *cached = Some(CachedToken {
            value: t.access_token.clone(),
            refresh_at: started + lifetime - margin,
        });
        Ok(t.access_token)
    }

    /// One ARM request (no retry): a 401 drops the cached token and tries once more with a
    /// new one; a non-2xx answer is classified with the Azure table.
    async fn send(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Answer, CloudError> {
        for attempt in 0..2 {
            let token = self.token(operation).await?;
            let mut request = self
                .shared
                .api
                .client()
                .request(method.clone(), url)
                .bearer_auth(token);
            if let Some(b) = body {
                request = request.json(b);
            }
            let answer = exchange(operation, request).await?;
            if answer.status == 401 && attempt == 0 {
                tracing::debug!(operation, "azure token refused; fetching a new one");
                *self.shared.token.lock().await = None;
                continue;
            }
            // deleting what is not there is not an error
            let answered =
                answer.is_success() || (method == reqwest::Method::DELETE && answer.status == 404);
            if !answered {
                return Err(CloudError::Api {
                    operation,
                    classified: Box::new(classify_http(
                        Provider::Azure,
                        answer.status,
                        &answer.body,
                    )),
                    zone_id_hints: Vec::new(),
                    request_id: answer
                        .headers
                        .get("x-ms-request-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                });
            }
            return Ok(answer);
        }
        Err(CloudError::Response {
            operation,
            message: "unauthenticated twice".into(),
        })
    }

    /// GET `url`, retried, as JSON.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        url: &str,
    ) -> Result<T, CloudError> {
        self.shared
            .api
            .retrying(operation, || async {
                self.send(operation, reqwest::Method::GET, url, None)
                    .await?
                    .json(operation)
            })
            .await
    }

    /// Every page of an ARM list.
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        url: String,
    ) -> Result<Vec<T>, CloudError> {
        let mut out = Vec::new();
        let mut next = Some(url);
        while let Some(url) = next.take() {
            let page: List<T> = self.get(operation, &url).await?;
            out.extend(page.value);
            next = page.next_link.filter(|l| !l.is_empty());
        }
        Ok(out)
    }

    /// The resource group's VMs, with their instance views.
    async fn vms(&self) -> Result<Vec<Vm>, CloudError> {
        let url = format!(
            "{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines{}",
            self.subscription(),
            self.shared.scope.resource_group,
            query(&[("api-version", COMPUTE_API), ("statusOnly", "true")])
        );
        self.list("virtualMachines/list", url).await
    }

    /// A VM, with its instance view; `None` when there is none of that name.
    async fn vm(&self, name: &str) -> Result<Option<Vm>, CloudError> {
        let url = format!(
            "{}{}",
            self.vm_url(name),
            query(&[("api-version", COMPUTE_API), ("$expand", "instanceView")])
        );
        match self.get::<Vm>("virtualMachines/get", &url).await {
            Ok(vm) => Ok(Some(vm)),
            Err(e) if matches!(e.code(), Some("ResourceNotFound" | "NotFound")) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The instance a VM is (`None` for a name that is no instance id, which ARM never gives).
    async fn instance(&self, vm: Vm) -> Option<Instance> {
        let zones = self.zones().await.unwrap_or_default();
        let zone_name = vm.zones.first().cloned().unwrap_or_default();
        let power = vm
            .properties
            .instance_view
            .as_ref()
            .and_then(|v| {
                v.statuses
                    .iter()
                    .find(|s| s.code.starts_with("PowerState/"))
            })
            .map(|s| s.code.as_str());
        let state = state_of(&vm.properties.provisioning_state, power);
        let failure = vm.properties.instance_view.as_ref().and_then(|v| {
            v.statuses
                .iter()
                .find(|s| s.code.starts_with("ProvisioningState/failed"))
                .map(|s| format!("{}: {}", s.code, s.message.clone().unwrap_or_default()))
        });
        Some(Instance {
            id: InstanceId::new(vm.name.clone())?,
            instance_type: vm
                .properties
                .hardware_profile
                .map(|h| h.vm_size)
                .unwrap_or_default(),
            zone: zones.id_of(&zone_name).cloned(),
            zone_name,
            state,
            market: if vm.properties.priority.as_deref() == Some("Spot") {
                Market::Spot
            } else {
                Market::OnDemand
            },
            launch_time: vm.properties.time_created,
            tags: vm.tags,
            client_token: Some(vm.name),
            state_reason: failure,
        })
    }

    /// The image reference of a launch: the request's when it is an Azure image, else
    /// `azure.image`.
    fn image_reference(&self, image: &str) -> Value {
        let image = if image.starts_with("/subscriptions/") || image.split(':').count() == 4 {
            image
        } else {
            self.shared.azure.image.as_str()
        };
        if image.starts_with('/') {
            return json!({ "id": image });
        }
        let parts: Vec<&str> = image.split(':').collect();
        match parts.as_slice() {
            [publisher, offer, sku, version] => json!({
                "publisher": publisher, "offer": offer, "sku": sku, "version": version,
            }),
            _ => json!({ "id": image }),
        }
    }

    fn vm_body(&self, request: &LaunchRequest, zone: Option<&str>, name: &str) -> Value {
        let a = &self.shared.azure;
        let subnet = request
            .subnet_id
            .clone()
            .unwrap_or_else(|| a.subnet_id.clone());
        let mut properties = json!({
            "hardwareProfile": { "vmSize": request.instance_type.as_str() },
            "storageProfile": {
                "imageReference": self.image_reference(&request.image_id),
                "osDisk": { "createOption": "FromImage", "deleteOption": "Delete" },
            },
            "osProfile": {
                "computerName": name.chars().take(15).collect::<String>(),
                "adminUsername": a.admin_username,
                "linuxConfiguration": {
                    "disablePasswordAuthentication": true,
                    "ssh": { "publicKeys": [{
                        "path": format!("/home/{}/.ssh/authorized_keys", a.admin_username),
                        "keyData": a.ssh_public_key,
                    }] },
                },
            },
            "networkProfile": {
                "networkApiVersion": "2020-11-01",
                "networkInterfaceConfigurations": [{
                    "name": format!("{name}-nic"),
                    "properties": {
                        "primary": true,
                        "deleteOption": "Delete",
                        "ipConfigurations": [{
                            "name": "ipconfig1",
                            "properties": { "subnet": { "id": subnet } },
                        }],
                    },
                }],
            },
        });
        if request.market == Market::Spot {
            properties["priority"] = json!("Spot");
            properties["evictionPolicy"] = json!("Delete");
            properties["billingProfile"] =
                json!({ "maxPrice": request.spot_max_price.unwrap_or(-1.0) });
        } else {
            properties["priority"] = json!("Regular");
        }
        let mut body = json!({
            "location": self.region.as_str(),
            "tags": request.tags,
            "properties": properties,
        });
        if let Some(z) = zone {
            body["zones"] = json!([z]);
        }
        body
    }

    /// Creates (or finds) the VM `name` and waits for its create operation up to
    /// `azure.launch_wait`; an allocation failure deletes the failed VM and is the error.
    async fn create(
        &self,
        request: &LaunchRequest,
        zone: Option<&str>,
        name: &str,
    ) -> Result<Instance, CloudError> {
        const OP: &str = "virtualMachines/createOrUpdate";
        let url = format!(
            "{}{}",
            self.vm_url(name),
            query(&[("api-version", COMPUTE_API)])
        );
        let body = self.vm_body(request, zone, name);
        let answer = self
            .shared
            .api
            .retrying(OP, || {
                self.send(OP, reqwest::Method::PUT, &url, Some(&body))
            })
            .await?;
        let vm: Vm = answer.json(OP)?;
        if answer.status == 200 {
            tracing::info!(name, "azure VM already exists; not creating again");
        }
        if let Some(operation) = answer
            .headers
            .get("azure-asyncoperation")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        {
            let retry_after = answer
                .headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(Duration::from_secs(5), Duration::from_secs)
                .clamp(Duration::from_millis(200), Duration::from_secs(30));
            let deadline = Instant::now() + self.shared.azure.launch_wait;
            loop {
                let op: Operation = self.get("operations/get", &operation).await?;
                match op.status.as_str() {
                    "Succeeded" => break,
                    "Failed" | "Canceled" => {
                        let e = op.error.unwrap_or(OperationError {
                            code: op.status.clone(),
                            message: String::new(),
                        });
                        // the failed VM holds nothing; do not leave it behind
                        if let Err(d) = self.delete(name).await {
                            tracing::warn!(name, error = %d, "cannot delete the failed VM");
                        }
                        return Err(api_error(OP, &e.code, &e.message));
                    }
                    _ if Instant::now() >= deadline => break,
                    _ => tokio::time::sleep(retry_after).await,
                }
            }
        }
        let vm = self.vm(name).await?.unwrap_or(vm);
        self.instance(vm).await.ok_or_else(|| CloudError::Response {
            operation: OP,
            message: format!("VM name {name:?} is not an instance id"),
        })
    }

    /// DELETE a VM; `true` when it existed.
    async fn delete(&self, name: &str) -> Result<bool, CloudError> {
        const OP: &str = "virtualMachines/delete";
        let url = format!(
            "{}{}",
            self.vm_url(name),
            query(&[("api-version", COMPUTE_API)])
        );
        let answer = self
            .shared
            .api
            .retrying(OP, || self.send(OP, reqwest::Method::DELETE, &url, None))
            .await?;
        Ok(answer.status == 200 || answer.status == 202)
    }

    async fn usages(&self) -> Result<Vec<Usage>, CloudError> {
        let url = format!(
            "{}/providers/Microsoft.Compute/locations/{}/usages{}",
            self.subscription(),
            self.region.as_str(),
            query(&[("api-version", COMPUTE_API)])
        );
        self.list("usages", url).await
    }

    /// The catalog's Azure types among `types` (all of them when empty).
    fn catalog_types(&self, types: &[InstanceType]) -> Vec<InstanceType> {
        if types.is_empty() {
            self.shared
                .catalog
                .iter()
                .filter(|g| g.provider == Provider::Azure)
                .map(|g| g.instance_type.clone())
                .collect()
        } else {
            types.to_vec()
        }
    }
}

#[async_trait]
impl CloudAdapter for AzureAdapter {
    fn provider(&self) -> Provider {
        Provider::Azure
    }

    fn region(&self) -> &Region {
        &self.region
    }

    /// The subscription's logical zones -> capsight zone ids (physical zones).
    async fn zones(&self) -> Result<ZoneMap, CloudError> {
        if let Ok(cache) = self.shared.zones.lock()
            && let Some(z) = cache.get(&self.region)
        {
            return Ok(z.clone());
        }
        let url = format!(
            "{}/locations{}",
            self.subscription(),
            query(&[("api-version", LOCATIONS_API)])
        );
        let locations: Vec<Location> = self.list("locations", url).await?;
        let location = locations
            .into_iter()
            .find(|l| l.name == self.region.as_str())
            .ok_or_else(|| {
                CloudError::Invalid(format!(
                    "location {} is not available to subscription {}",
                    self.region, self.shared.scope.subscription_id
                ))
            })?;
        let map = ZoneMap::new(location.availability_zone_mappings.iter().filter_map(|m| {
            Some((
                m.logical_zone.clone(),
                zone_id_of_physical(&self.region, &m.physical_zone)?,
            ))
        }));
        if let Ok(mut cache) = self.shared.zones.lock() {
            cache.insert(self.region.clone(), map.clone());
        }
        Ok(map)
    }

    /// Azure has no DryRun: the caller's actions on the resource group must include
    /// `Microsoft.Compute/virtualMachines/write` (and no `notActions` take it away).
    async fn check_launch_permission(
        &self,
        _request: &LaunchRequest,
    ) -> Result<Permission, CloudError> {
        let url = format!(
            "{}/resourceGroups/{}/providers/Microsoft.Authorization/permissions{}",
            self.subscription(),
            self.shared.scope.resource_group,
            query(&[("api-version", PERMISSIONS_API)])
        );
        match self.list::<Permissions>("permissions", url).await {
            Ok(sets) => {
                let allowed = sets.iter().any(|p| {
                    p.actions.iter().any(|a| action_matches(a, LAUNCH_ACTION))
                        && !p
                            .not_actions
                            .iter()
                            .any(|a| action_matches(a, LAUNCH_ACTION))
                });
                Ok(if allowed {
                    Permission::Allowed
                } else {
                    Permission::Denied {
                        code: "AuthorizationFailed".into(),
                        message: format!(
                            "the identity has no role with {LAUNCH_ACTION} on resource group {} of subscription {}",
                            self.shared.scope.resource_group, self.shared.scope.subscription_id
                        ),
                    }
                })
            }
            Err(e) => Permission::refused(e),
        }
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>, CloudError> {
        if request.market == Market::CapacityBlock {
            return Err(crate::unsupported(
                Provider::Azure,
                "launch (Azure has no capacity blocks)",
            ));
        }
        if request.count == 0 {
            return Err(CloudError::Invalid("count must be at least 1".into()));
        }
        let token = request.client_token.as_str();
        let suffix = if request.count > 1 {
            request.count.to_string().len() + 1
        } else {
            0
        };
        let valid = !token.is_empty()
            && token.len() + suffix <= MAX_NAME
            && token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !token.starts_with(['_', '-', '.'])
            && !token.ends_with(['.', '-']);
        if !valid {
            return Err(CloudError::Invalid(format!(
                "client_token {token:?} must be 1-{MAX_NAME} characters [A-Za-z0-9-_.], not starting with -_. nor ending with .- (it is the Azure VM name)"
            )));
        }
        let zone = match &request.zone {
            Some(id) => {
                let zones = self.zones().await?;
                Some(zones.name_of(id).map(str::to_owned).ok_or_else(|| {
                    CloudError::Invalid(format!(
                        "zone {id} is not a zone of {} for this subscription",
                        self.region
                    ))
                })?)
            }
            None => None,
        };
        let names: Vec<String> = if request.count == 1 {
            vec![token.to_owned()]
        } else {
            (1..=request.count)
                .map(|i| format!("{token}-{i}"))
                .collect()
        };
        let mut made = Vec::new();
        for name in &names {
            match self.create(request, zone.as_deref(), name).await {
                Ok(i) => made.push(i),
                Err(e) => {
                    // all or nothing
                    for i in &made {
                        if let Err(d) = self.delete(i.id.as_str()).await {
                            tracing::warn!(vm = %i.id, error = %d, "cannot delete a VM of a failed launch");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(made)
    }

    async fn describe(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, CloudError> {
        let vms = if ids.is_empty() {
            self.vms().await?
        } else {
            let mut out = Vec::new();
            for id in ids {
                out.extend(self.vm(id.as_str()).await?);
            }
            out
        };
        let mut out = Vec::new();
        for vm in vms {
            out.extend(self.instance(vm).await);
        }
        Ok(out)
    }

    async fn describe_tagged(&self, tag_key: &str) -> Result<Vec<Instance>, CloudError> {
        let mut out = Vec::new();
        for vm in self.vms().await? {
            if vm.tags.contains_key(tag_key) {
                out.extend(self.instance(vm).await);
            }
        }
        Ok(out)
    }

    async fn terminate(&self, ids: &[InstanceId]) -> Result<Vec<StateChange>, CloudError> {
        let mut out = Vec::new();
        for id in ids {
            let existed = self.delete(id.as_str()).await?;
            out.push(StateChange {
                id: id.clone(),
                // ARM does not report the state before deletion
                previous: InstanceState::Other("unreported".into()),
                current: if existed {
                    InstanceState::ShuttingDown
                } else {
                    InstanceState::Terminated
                },
            });
        }
        Ok(out)
    }

    async fn list_quotas(&self) -> Result<Vec<QuotaValue>, CloudError> {
        Ok(self
            .usages()
            .await?
            .into_iter()
            .map(|u| QuotaValue {
                code: u.name.value,
                name: u.name.localized_value,
                value: u.limit,
            })
            .collect())
    }

    async fn quota_headroom(
        &self,
        instance_type: &InstanceType,
        market: Market,
    ) -> Result<QuotaHeadroom, CloudError> {
        let gpu = self
            .shared
            .catalog
            .get(Provider::Azure, instance_type)
            .ok_or_else(|| {
                CloudError::Invalid(format!(
                    "{instance_type} is not an Azure type of the catalog"
                ))
            })?;
        let code = match market {
            Market::OnDemand => gpu.quota.on_demand.clone(),
            Market::Spot => gpu
                .quota
                .spot
                .clone()
                .unwrap_or_else(|| LOW_PRIORITY_CORES.to_owned()),
            Market::CapacityBlock => {
                return Err(crate::unsupported(
                    Provider::Azure,
                    "quota_headroom (Azure has no capacity blocks)",
                ));
            }
        };
        let usage = self
            .usages()
            .await?
            .into_iter()
            .find(|u| u.name.value.eq_ignore_ascii_case(&code))
            .ok_or_else(|| CloudError::Response {
                operation: "usages",
                message: format!("no usage {code} in {}", self.region),
            })?;
        Ok(QuotaHeadroom {
            quota_code: code,
            limit_vcpus: usage.limit,
            used_vcpus: usage.current_value,
            vcpus_per_instance: gpu.vcpus,
            headroom_instances: gpu.headroom(usage.limit, usage.current_value),
        })
    }

    /// Current Linux Spot list prices of the region (Retail Prices API), observed now.
    async fn spot_price_history(
        &self,
        instance_types: &[InstanceType],
        _since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<SpotPricePoint>, CloudError> {
        const OP: &str = "retail/prices";
        let wanted = self.catalog_types(instance_types);
        let mut filter = format!(
            "serviceName eq 'Virtual Machines' and armRegionName eq '{}' and priceType eq 'Consumption'",
            self.region
        );
        if let [one] = wanted.as_slice() {
            filter.push_str(&format!(" and armSkuName eq '{one}'"));
        }
        let mut next = Some(format!(
            "{}/api/retail/prices{}",
            self.shared.prices,
            query(&[("api-version", PRICES_API), ("$filter", &filter)])
        ));
        let now = chrono::Utc::now();
        let mut out = Vec::new();
        while let Some(url) = next.take() {
            // the Retail Prices API needs no token
            let page: Prices = self
                .shared
                .api
                .retrying(OP, || async {
                    let api = &self.shared.api;
                    api.send(OP, api.client().get(&url)).await?.json(OP)
                })
                .await?;
            for item in page.items {
                let spot_linux = item.sku_name.ends_with(" Spot")
                    && !item.product_name.contains("Windows")
                    && (item.currency_code.is_empty() || item.currency_code == "USD");
                if spot_linux
                    && item.retail_price > 0.0
                    && wanted.iter().any(|t| t.as_str() == item.arm_sku_name)
                {
                    out.push(SpotPricePoint {
                        instance_type: item.arm_sku_name,
                        zone_name: String::new(),
                        zone: None,
                        usd_per_hour: item.retail_price,
                        at: now,
                    });
                }
            }
            next = page.next_page_link.filter(|l| !l.is_empty());
        }
        Ok(out)
    }

    /// Resource SKUs of the location: each type's zones minus those its restrictions take away
    /// from the subscription (all of them for a `Location` restriction).
    async fn instance_type_offerings(
        &self,
        instance_types: &[InstanceType],
    ) -> Result<Vec<Offering>, CloudError> {
        let wanted = self.catalog_types(instance_types);
        let filter = format!("location eq '{}'", self.region);
        let url = format!(
            "{}/providers/Microsoft.Compute/skus{}",
            self.subscription(),
            query(&[("api-version", SKUS_API), ("$filter", &filter)])
        );
        let skus: Vec<Sku> = self.list("skus", url).await?;
        let zones = self.zones().await?;
        let region = self.region.as_str();
        let mut out = Vec::new();
        for sku in skus.into_iter().filter(|s| {
            s.resource_type == "virtualMachines" && wanted.iter().any(|t| t.as_str() == s.name)
        }) {
            let here =
                |locations: &[String]| locations.iter().any(|l| l.eq_ignore_ascii_case(region));
            if sku
                .restrictions
                .iter()
                .any(|r| r.kind == "Location" && here(&r.restriction_info.locations))
            {
                continue;
            }
            let restricted: Vec<&String> = sku
                .restrictions
                .iter()
                .filter(|r| r.kind == "Zone" && here(&r.restriction_info.locations))
                .flat_map(|r| r.restriction_info.zones.iter())
                .collect();
            for logical in sku
                .location_info
                .iter()
                .filter(|l| l.location.eq_ignore_ascii_case(region))
                .flat_map(|l| l.zones.iter())
                .filter(|z| !restricted.contains(z))
            {
                if let Some(zone) = zones.id_of(logical) {
                    out.push(Offering {
                        instance_type: sku.name.clone(),
                        zone: zone.clone(),
                    });
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

#[cfg(test)]
capsight_runtime::documented_defaults_test!("azure", AzureSettings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rbac_patterns_cover_actions() {
        assert!(action_matches("*", LAUNCH_ACTION));
        assert!(action_matches("Microsoft.Compute/*", LAUNCH_ACTION));
        assert!(action_matches(
            "microsoft.compute/virtualmachines/*",
            LAUNCH_ACTION
        ));
        assert!(action_matches("Microsoft.Compute/*/write", LAUNCH_ACTION));
        assert!(action_matches(LAUNCH_ACTION, LAUNCH_ACTION));
        assert!(!action_matches("Microsoft.Compute/*/read", LAUNCH_ACTION));
        assert!(!action_matches("Microsoft.Network/*", LAUNCH_ACTION));
        assert!(!action_matches(
            "Microsoft.Compute/virtualMachines/read",
            LAUNCH_ACTION
        ));
    }

    #[test]
    fn physical_zones_become_zone_ids_of_their_region_only() {
        let eastus = Region::parse("r", Provider::Azure, "eastus").unwrap();
        assert_eq!(
            zone_id_of_physical(&eastus, "eastus-az2").map(|z| z.to_string()),
            Some("eastus-2".to_owned())
        );
        assert_eq!(zone_id_of_physical(&eastus, "eastus2-az2"), None);
        assert_eq!(zone_id_of_physical(&eastus, "garbage"), None);
    }

    #[test]
    fn provisioning_and_power_states_map_to_instance_states() {
        assert_eq!(state_of("Creating", None), InstanceState::Pending);
        assert_eq!(
            state_of("Succeeded", Some("PowerState/running")),
            InstanceState::Running
        );
        assert_eq!(state_of("Succeeded", None), InstanceState::Running);
        assert_eq!(
            state_of("Succeeded", Some("PowerState/deallocated")),
            InstanceState::Stopped
        );
        assert_eq!(state_of("Deleting", None), InstanceState::ShuttingDown);
        assert_eq!(
            state_of("Failed", None),
            InstanceState::Other("failed".into())
        );
    }

    #[test]
    fn credentials_and_http_endpoints_are_required_and_the_secret_is_never_printed() {
        let region = Region::parse("r", Provider::Azure, "eastus").unwrap();
        let catalog = Arc::new(Catalog::embedded().unwrap());
        let creds = AzureCredentials {
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: "s3cr3t_value".into(),
        };
        let scope = AzureScope {
            subscription_id: "sub".into(),
            resource_group: "rg".into(),
        };
        let make = |azure: AzureSettings, creds: AzureCredentials, scope: AzureScope| {
            AzureAdapter::new(
                azure,
                CloudSettings::default(),
                creds,
                scope,
                region.clone(),
                Arc::clone(&catalog),
            )
        };
        let no_secret = AzureCredentials {
            client_secret: " ".into(),
            ..creds.clone()
        };
        assert!(make(AzureSettings::default(), no_secret, scope.clone()).is_err());
        let no_rg = AzureScope {
            resource_group: String::new(),
            ..scope.clone()
        };
        assert!(make(AzureSettings::default(), creds.clone(), no_rg).is_err());
        let ftp = AzureSettings {
            endpoint: "ftp://x".into(),
            ..AzureSettings::default()
        };
        assert!(make(ftp, creds.clone(), scope.clone()).is_err());
        let a = make(AzureSettings::default(), creds.clone(), scope).unwrap();
        assert!(!format!("{a:?}").contains("s3cr3t_value"));
        assert!(!format!("{creds:?}").contains("s3cr3t_value"));
    }
}
