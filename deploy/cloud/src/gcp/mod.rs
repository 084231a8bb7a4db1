//! Google Cloud Compute Engine implementation of [`CloudAdapter`] over its REST APIs with
//! `reqwest`: Compute `compute/v1`, Resource Manager (`testIamPermissions`) and the Cloud
//! Billing Catalog (Spot VM GPU prices).
//!
//! Why `reqwest` and not Google's `google-cloud-*` crates: the adapter needs a dozen calls,
//! the same HTTP client and retry loop as the Lambda adapter, and one endpoint override for
//! cloudsim across four Google APIs; the generated Compute client brings its own HTTP, auth
//! and retry stacks (a large build on this project's 2-core machines) for none of that.
//!
//! Contract:
//! * One adapter = one project in one region, acting as one service account ([`auth`]): its
//!   JSON key file (path in `GOOGLE_APPLICATION_CREDENTIALS`), a JWT signed RS256 exchanged at
//!   the file's `token_uri`, the token cached until shortly before it expires.
//! * Endpoint: `gcp.endpoint` replaces every Google API host when set (cloudsim's URL in tests);
//!   empty = Google's own hosts.
//! * Zones are GCP zone names (`us-central1-a`), which are the same in every project: the
//!   [`ZoneMap`] maps each to itself. Instance ids are `<zone>/<name>`.
//! * Errors: HTTP errors are classified with GCP's table (`capsight_classify::classify_http`:
//!   `errors[].reason`, then `status`); an insert's operation error (`ZONE_RESOURCE_POOL_EXHAUSTED`,
//!   `..._WITH_DETAILS`, `QUOTA_EXCEEDED`) with `classify`. Throttled and transient failures are
//!   retried in the adapters' one retry loop; nothing else is.
//! * Idempotent creation: instance `i` of a launch is named `cs-<token>-<i>` (or a hash of the
//!   token when it is not a valid name) and inserted with a `requestId` derived from the
//!   project, zone and name, so a retried insert returns the same operation and a replayed
//!   launch finds its instances by name. The client token and the tags are kept verbatim in
//!   metadata, and as labels (sanitized to GCP's label rules) for filtering.
//! * All or nothing: when one of a launch's inserts fails, the instances it made are deleted.
//!   A launch without a zone tries the region's zones in order, past capacity and not-offered
//!   errors.
//! * Quotas are counted in GPUs (`QuotaUnit::Gpus`): the regional metric of the type and
//!   market (`NVIDIA_H100_GPUS`, `PREEMPTIBLE_NVIDIA_H100_GPUS`) and the project's
//!   `GPUS_ALL_REGIONS`, whichever leaves less room.
//! * Spot prices come from the Billing Catalog's GPU SKUs (`usageType` `Preemptible`, per
//!   GPU-hour, matched by `Nvidia <model> <memory>GB` in the description) times the type's
//!   GPUs: the GPU part of a Spot VM's price, the same in every zone of the region.
//! * Operations this adapter does not implement for GCP — capacity reservations, stop/start,
//!   placement scores, capacity blocks — fail with [`CloudError::Unsupported`]; probes insert
//!   then delete an instance.

pub mod auth;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use capsight_catalog::Catalog;
use capsight_classify::classify;
use capsight_proto::domain::{ErrorClass, InstanceType, Market, Provider, Region, ZoneId};
use serde::{Deserialize, de::DeserializeOwned};
use sha2::Digest;
use tokio::sync::OnceCell;

pub use auth::{CREDENTIALS_ENV, ServiceAccount, Tokens};

use crate::{
    CloudAdapter, CloudError, CloudSettings,
    http::{Api, rfc3339},
    types::{
        Instance, InstanceId, InstanceState, LaunchRequest, Offering, Permission, QuotaHeadroom,
        QuotaValue, SpotPricePoint, StateChange, ZoneMap,
    },
};

/// The Billing Catalog's service id of Compute Engine.
pub const COMPUTE_SERVICE_ID: &str = "6F81-5844-456A";
/// The project-wide GPU quota metric.
pub const GLOBAL_GPU_METRIC: &str = "GPUS_ALL_REGIONS";
/// The metadata item holding the client token, verbatim.
pub const TOKEN_METADATA: &str = "capsight-client-token";
/// The metadata item holding the tags, verbatim (a JSON object).
pub const TAGS_METADATA: &str = "capsight-tags";
/// The IAM permissions a launch needs (checked by `check_launch_permission`).
pub const LAUNCH_PERMISSIONS: &[&str] = &[
    "compute.instances.create",
    "compute.instances.delete",
    "compute.instances.get",
    "compute.instances.list",
    "compute.zoneOperations.get",
];

/// The `[gcp]` config section. No credential is ever here: the service account's key file is
/// the one `GOOGLE_APPLICATION_CREDENTIALS` names (tenants': the variable their registration
/// names).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpSettings {
    /// The operator's project the collectors watch; empty = the collectors leave GCP out.
    pub project: String,
    /// GCP regions the collectors watch; empty = every region the GPU catalog lists for GCP.
    pub regions: Vec<String>,
    /// One base URL for every Google API (Compute, Resource Manager, Billing); empty = Google's
    /// own hosts. cloudsim's URL in tests and the demo.
    pub endpoint: String,
    /// Boot image of launches that name none.
    pub image: String,
    /// The VPC network of launched instances.
    pub network: String,
}

impl Default for GcpSettings {
    fn default() -> Self {
        Self {
            project: String::new(),
            regions: Vec::new(),
            endpoint: String::new(),
            image: "projects/debian-cloud/global/images/family/debian-12".into(),
            network: "global/networks/default".into(),
        }
    }
}

impl GcpSettings {
    fn base(&self, google: &str) -> String {
        let own = self.endpoint.trim_end_matches('/');
        if own.is_empty() {
            google.to_owned()
        } else {
            own.to_owned()
        }
    }
}

/// The Google API hosts an adapter calls.
#[derive(Debug, Clone)]
struct Hosts {
    compute: String,
    resource_manager: String,
    billing: String,
}

/// The Compute Engine adapter for one project and region.
#[derive(Clone)]
pub struct GcpAdapter {
    api: Api,
    hosts: Hosts,
    tokens: Tokens,
    project: String,
    region: Region,
    gcp: GcpSettings,
    catalog: Arc<Catalog>,
    zones: Arc<OnceCell<Vec<String>>>,
}

impl std::fmt::Debug for GcpAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpAdapter")
            .field("project", &self.project)
            .field("region", &self.region)
            .field("account", &self.tokens.account().email())
            .finish_non_exhaustive()
    }
}

// ------------------------------------------------------------------ wire shapes

#[derive(Debug, Default, Deserialize)]
struct Items<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

#[derive(Debug, Deserialize)]
struct WireZone {
    name: String,
    #[serde(default)]
    region: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMachineType {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
struct WireQuotas {
    #[serde(default)]
    quotas: Vec<WireQuota>,
}

#[derive(Debug, Clone, Deserialize)]
struct WireQuota {
    metric: String,
    #[serde(default)]
    limit: f64,
    #[serde(default)]
    usage: f64,
}

#[derive(Debug, Default, Deserialize)]
struct WireKeyValues {
    #[serde(default)]
    items: Vec<WireKeyValue>,
}

#[derive(Debug, Deserialize)]
struct WireKeyValue {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireScheduling {
    #[serde(default)]
    provisioning_model: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireInstance {
    name: String,
    #[serde(default)]
    zone: String,
    #[serde(default)]
    machine_type: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    creation_timestamp: Option<String>,
    #[serde(default)]
    metadata: WireKeyValues,
    #[serde(default)]
    scheduling: WireScheduling,
    #[serde(default)]
    status_message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOperation {
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: Option<WireOpErrors>,
}

#[derive(Debug, Deserialize)]
struct WireOpErrors {
    #[serde(default)]
    errors: Vec<WireOpError>,
}

#[derive(Debug, Deserialize)]
struct WireOpError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Default, Deserialize)]
struct WirePermissions {
    #[serde(default)]
    permissions: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSkus {
    #[serde(default)]
    skus: Vec<WireSku>,
    #[serde(default)]
    next_page_token: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSku {
    #[serde(default)]
    description: String,
    #[serde(default)]
    category: WireCategory,
    #[serde(default)]
    service_regions: Vec<String>,
    #[serde(default)]
    pricing_info: Vec<WirePricing>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCategory {
    #[serde(default)]
    resource_group: String,
    #[serde(default)]
    usage_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePricing {
    #[serde(default)]
    effective_time: Option<String>,
    pricing_expression: WireExpression,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireExpression {
    #[serde(default)]
    tiered_rates: Vec<WireRate>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRate {
    unit_price: WireMoney,
}

#[derive(Debug, Deserialize)]
struct WireMoney {
    #[serde(default)]
    units: String,
    #[serde(default)]
    nanos: i64,
}

/// A GCP instance status as an [`InstanceState`]. GCP's `TERMINATED` is a stopped instance
/// (deleted ones are gone).
fn state_of(status: &str) -> InstanceState {
    match status {
        "PROVISIONING" | "STAGING" => InstanceState::Pending,
        "RUNNING" => InstanceState::Running,
        "STOPPING" | "SUSPENDING" => InstanceState::Stopping,
        "TERMINATED" | "SUSPENDED" => InstanceState::Stopped,
        other => InstanceState::Other(other.to_owned()),
    }
}

/// The last path segment of a resource URL.
fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// A label key or value under GCP's rules: lowercase letters, digits, `_` and `-`, at most 63;
/// keys start with a letter. Other characters become `_`.
pub fn label(text: &str, key: bool) -> String {
    let mut out: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if key && !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert(0, 't');
    }
    out.truncate(63);
    out
}

/// The base of a launch's instance names: `cs-<token>` when the token is a valid name part,
/// else `cs-` and a hash of it.
pub fn name_base(token: &str) -> String {
    let safe = !token.is_empty()
        && token.len() <= 52
        && !token.ends_with('-')
        && token
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if safe {
        format!("cs-{token}")
    } else {
        let digest = sha2::Sha256::digest(token.as_bytes());
        format!("cs-{}", &hex::encode(digest)[..24])
    }
}

impl GcpAdapter {
    /// An adapter acting as `account` on `project` in `region`.
    pub fn new(
        gcp: GcpSettings,
        settings: CloudSettings,
        tokens: Tokens,
        project: impl Into<String>,
        region: Region,
        catalog: Arc<Catalog>,
    ) -> Result<Self, CloudError> {
        let project = project.into();
        if project.trim().is_empty() {
            return Err(CloudError::Invalid("a GCP project id is required".into()));
        }
        let endpoint_ok = gcp.endpoint.is_empty()
            || gcp.endpoint.starts_with("https://")
            || gcp.endpoint.starts_with("http://");
        if !endpoint_ok {
            return Err(CloudError::Invalid(format!(
                "gcp.endpoint {:?} must be an http(s) URL",
                gcp.endpoint
            )));
        }
        let hosts = Hosts {
            compute: gcp.base("https://compute.googleapis.com"),
            resource_manager: gcp.base("https://cloudresourcemanager.googleapis.com"),
            billing: gcp.base("https://cloudbilling.googleapis.com"),
        };
        Ok(Self {
            api: Api::new(Provider::Gcp, "gcp-api", settings)?,
            hosts,
            tokens,
            project,
            region,
            gcp,
            catalog,
            zones: Arc::default(),
        })
    }

    /// The operator's adapter: `gcp.project`, the key file of `GOOGLE_APPLICATION_CREDENTIALS`.
    pub fn from_env(
        gcp: GcpSettings,
        settings: CloudSettings,
        region: Region,
        catalog: Arc<Catalog>,
    ) -> Result<Self, CloudError> {
        let tokens = Tokens::new(ServiceAccount::from_env()?);
        let project = gcp.project.clone();
        Self::new(gcp, settings, tokens, project, region, catalog)
    }

    /// The same project and account in another region (sharing the token cache).
    pub fn in_region(&self, region: Region) -> Self {
        Self {
            region,
            zones: Arc::default(),
            ..self.clone()
        }
    }

    /// The project.
    pub fn project(&self) -> &str {
        &self.project
    }

    fn compute(&self, path: &str) -> String {
        format!(
            "{}/compute/v1/projects/{}{path}",
            self.hosts.compute, self.project
        )
    }

    /// Sends one request with a bearer token; a non-2xx answer is classified with GCP's table.
    async fn send<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CloudError> {
        let token = self.tokens.token(self.api.client()).await?;
        self.api
            .send(operation, request.bearer_auth(token))
            .await?
            .json(operation)
    }

    async fn get<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        url: &str,
    ) -> Result<T, CloudError> {
        self.api
            .retrying(operation, || {
                self.send(operation, self.api.client().get(url))
            })
            .await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<T, CloudError> {
        self.api
            .retrying(operation, || {
                self.send(operation, self.api.client().post(url).json(body))
            })
            .await
    }

    /// The region's zones, in name order (cached).
    async fn zone_names(&self) -> Result<Vec<String>, CloudError> {
        self.zones
            .get_or_try_init(|| async {
                let list: Items<WireZone> = self.get("zones.list", &self.compute("/zones")).await?;
                let mut zones: Vec<String> = list
                    .items
                    .into_iter()
                    .filter(|z| last_segment(&z.region) == self.region.as_str())
                    .map(|z| z.name)
                    .collect();
                zones.sort();
                Ok(zones)
            })
            .await
            .cloned()
    }

    fn zone_name(&self, zone: &ZoneId) -> String {
        zone.as_str().to_owned()
    }

    fn instance(&self, w: WireInstance) -> Option<Instance> {
        let zone_name = last_segment(&w.zone).to_owned();
        let id = InstanceId::new(format!("{zone_name}/{}", w.name))?;
        let meta = |key: &str| {
            w.metadata
                .items
                .iter()
                .find(|i| i.key == key)
                .map(|i| i.value.clone())
        };
        let tags: BTreeMap<String, String> = meta(TAGS_METADATA)
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Some(Instance {
            id,
            instance_type: last_segment(&w.machine_type).to_owned(),
            zone: ZoneId::parse_optional("zone", Provider::Gcp, &self.region, &zone_name)
                .ok()
                .flatten(),
            zone_name,
            state: state_of(&w.status),
            market: if w.scheduling.provisioning_model == "SPOT" {
                Market::Spot
            } else {
                Market::OnDemand
            },
            launch_time: rfc3339(w.creation_timestamp.as_deref()),
            tags,
            client_token: meta(TOKEN_METADATA),
            state_reason: w.status_message,
        })
    }

    /// One instance by zone and name; `None` when it does not exist.
    async fn find(&self, zone: &str, name: &str) -> Result<Option<Instance>, CloudError> {
        let url = self.compute(&format!("/zones/{zone}/instances/{name}"));
        match self.get::<WireInstance>("instances.get", &url).await {
            Ok(w) => Ok(self.instance(w)),
            Err(e) if e.code() == Some("notFound") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The project's instances in the region's zones matching `filter` (`instances.list`).
    async fn list(&self, filter: Option<&str>) -> Result<Vec<Instance>, CloudError> {
        let mut out = Vec::new();
        for zone in self.zone_names().await? {
            let mut url = self.compute(&format!("/zones/{zone}/instances"));
            if let Some(f) = filter {
                url.push_str("?filter=");
                url.extend(form_urlencoded::byte_serialize(f.as_bytes()));
            }
            let list: Items<WireInstance> = self.get("instances.list", &url).await?;
            out.extend(list.items.into_iter().filter_map(|w| self.instance(w)));
        }
        Ok(out)
    }

    /// Waits for a zone operation to be `DONE`; its error, classified, when it failed.
    async fn wait(&self, zone: &str, mut op: WireOperation) -> Result<(), CloudError> {
        let deadline = tokio::time::Instant::now() + self.api.settings().operation_timeout;
        let mut delay = Duration::from_millis(100);
        while op.status != "DONE" {
            if tokio::time::Instant::now() >= deadline {
                return Err(CloudError::Transport {
                    operation: "zoneOperations.get",
                    message: format!("operation {} not done in time", op.name),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            let url = self.compute(&format!("/zones/{zone}/operations/{}", op.name));
            op = self.get("zoneOperations.get", &url).await?;
        }
        match op.error.and_then(|e| e.errors.into_iter().next()) {
            None => Ok(()),
            Some(e) => Err(CloudError::Api {
                operation: "instances.insert",
                classified: Box::new(classify(Provider::Gcp, &e.code, &e.message)),
                zone_id_hints: Vec::new(),
                request_id: Some(op.name),
            }),
        }
    }

    /// The request id of instance `name` in `zone`: the same for every retry and replay.
    fn request_id(&self, zone: &str, name: &str) -> String {
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("capsight-gcp\u{1f}{}\u{1f}{zone}\u{1f}{name}", self.project).as_bytes(),
        )
        .to_string()
    }

    fn insert_body(&self, request: &LaunchRequest, zone: &str, name: &str) -> serde_json::Value {
        let mut labels: BTreeMap<String, String> = request
            .tags
            .iter()
            .map(|(k, v)| (label(k, true), label(v, false)))
            .collect();
        labels.insert("capsight-token".into(), label(&request.client_token, false));
        let tags = serde_json::to_string(&request.tags).unwrap_or_else(|_| "{}".into());
        let image = if request.image_id.is_empty() {
            self.gcp.image.clone()
        } else {
            request.image_id.clone()
        };
        let mut body = serde_json::json!({
            "name": name,
            "machineType": format!("zones/{zone}/machineTypes/{}", request.instance_type),
            "labels": labels,
            "metadata": { "items": [
                { "key": TOKEN_METADATA, "value": request.client_token },
                { "key": TAGS_METADATA, "value": tags },
            ]},
            "disks": [{
                "boot": true,
                "autoDelete": true,
                "initializeParams": { "sourceImage": image },
            }],
            "networkInterfaces": [{
                "network": self.gcp.network,
                "subnetwork": request.subnet_id,
            }],
            // GPU machine types cannot live-migrate
            "scheduling": { "onHostMaintenance": "TERMINATE", "automaticRestart": true },
        });
        if request.market == Market::Spot {
            body["scheduling"] = serde_json::json!({
                "provisioningModel": "SPOT",
                "instanceTerminationAction": "DELETE",
                "onHostMaintenance": "TERMINATE",
                "automaticRestart": false,
            });
        }
        body
    }

    /// Launches `request` in `zone`: all of its instances or none.
    async fn launch_in(
        &self,
        request: &LaunchRequest,
        zone: &str,
    ) -> Result<Vec<Instance>, CloudError> {
        let base = name_base(&request.client_token);
        let names: Vec<String> = (0..request.count).map(|i| format!("{base}-{i}")).collect();
        let mut made = Vec::new();
        for name in &names {
            let result = self.launch_one(request, zone, name).await;
            match result {
                Ok(i) => made.push(i),
                Err(e) => {
                    for n in &names {
                        if let Err(cleanup) = self.delete(zone, n).await {
                            tracing::error!(zone, name = %n, error = %cleanup,
                                "cannot delete an instance of a failed launch");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(made)
    }

    /// One instance: the existing one of that name, or a new insert (idempotent by request id).
    async fn launch_one(
        &self,
        request: &LaunchRequest,
        zone: &str,
        name: &str,
    ) -> Result<Instance, CloudError> {
        if let Some(found) = self.find(zone, name).await? {
            tracing::info!(zone, name, "gcp instance already made; not inserting again");
            return Ok(found);
        }
        let url = format!(
            "{}?requestId={}",
            self.compute(&format!("/zones/{zone}/instances")),
            self.request_id(zone, name)
        );
        let op: WireOperation = self
            .post(
                "instances.insert",
                &url,
                &self.insert_body(request, zone, name),
            )
            .await?;
        self.wait(zone, op).await?;
        self.find(zone, name)
            .await?
            .ok_or_else(|| CloudError::Response {
                operation: "instances.insert",
                message: format!("instance {zone}/{name} inserted but not found"),
            })
    }

    /// Deletes one instance; `false` when it was already gone.
    async fn delete(&self, zone: &str, name: &str) -> Result<bool, CloudError> {
        let url = self.compute(&format!("/zones/{zone}/instances/{name}"));
        let deleted = self
            .api
            .retrying("instances.delete", || {
                self.send::<WireOperation>("instances.delete", self.api.client().delete(&url))
            })
            .await;
        match deleted {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("notFound") => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn region_quotas(&self) -> Result<Vec<WireQuota>, CloudError> {
        let url = self.compute(&format!("/regions/{}", self.region));
        let r: WireQuotas = self.get("regions.get", &url).await?;
        Ok(r.quotas)
    }

    async fn project_quotas(&self) -> Result<Vec<WireQuota>, CloudError> {
        let r: WireQuotas = self.get("projects.get", &self.compute("")).await?;
        Ok(r.quotas)
    }

    /// Spot GPU SKUs of the region from the Billing Catalog: (description, USD per GPU-hour,
    /// effective time).
    async fn spot_gpu_skus(
        &self,
    ) -> Result<Vec<(String, f64, Option<chrono::DateTime<chrono::Utc>>)>, CloudError> {
        let mut out = Vec::new();
        let mut page = String::new();
        loop {
            let mut url = format!(
                "{}/v1/services/{COMPUTE_SERVICE_ID}/skus?pageSize=5000",
                self.hosts.billing
            );
            if !page.is_empty() {
                url.push_str("&pageToken=");
                url.extend(form_urlencoded::byte_serialize(page.as_bytes()));
            }
            let list: WireSkus = self.get("services.skus.list", &url).await?;
            for sku in list.skus {
                if sku.category.resource_group != "GPU"
                    || sku.category.usage_type != "Preemptible"
                    || !sku
                        .service_regions
                        .iter()
                        .any(|r| r == self.region.as_str())
                {
                    continue;
                }
                let Some(p) = sku.pricing_info.first() else {
                    continue;
                };
                let Some(rate) = p.pricing_expression.tiered_rates.last() else {
                    continue;
                };
                let units: f64 = rate.unit_price.units.parse().unwrap_or(0.0);
                // nanos are billionths of a unit; an i64 of them is exact in f64 below 2^53
                #[allow(clippy::cast_precision_loss)]
                let usd = units + rate.unit_price.nanos as f64 / 1e9;
                let at = rfc3339(p.effective_time.as_deref());
                out.push((sku.description, usd, at));
            }
            if list.next_page_token.is_empty() {
                return Ok(out);
            }
            page = list.next_page_token;
        }
    }
}

/// The Billing Catalog's name of a GPU in SKU descriptions: `Nvidia H100 80GB`.
pub fn gpu_sku_name(model: &str, memory_gib: u32) -> String {
    format!("Nvidia {model} {memory_gib}GB")
}

#[async_trait]
impl CloudAdapter for GcpAdapter {
    fn provider(&self) -> Provider {
        Provider::Gcp
    }

    fn region(&self) -> &Region {
        &self.region
    }

    /// The region's zones; a GCP zone's name is its id.
    async fn zones(&self) -> Result<ZoneMap, CloudError> {
        let zones = self.zone_names().await?;
        Ok(ZoneMap::new(zones.into_iter().filter_map(|z| {
            let id = ZoneId::parse_optional("zone", Provider::Gcp, &self.region, &z)
                .ok()
                .flatten()?;
            Some((z, id))
        })))
    }

    /// `testIamPermissions` on the project for [`LAUNCH_PERMISSIONS`]: `Denied` naming the
    /// missing ones, or when the service account's token is refused.
    async fn check_launch_permission(
        &self,
        _request: &LaunchRequest,
    ) -> Result<Permission, CloudError> {
        let url = format!(
            "{}/v1/projects/{}:testIamPermissions",
            self.hosts.resource_manager, self.project
        );
        let body = serde_json::json!({ "permissions": LAUNCH_PERMISSIONS });
        match self
            .post::<WirePermissions>("projects.testIamPermissions", &url, &body)
            .await
        {
            Ok(held) => {
                let missing: Vec<&str> = LAUNCH_PERMISSIONS
                    .iter()
                    .copied()
                    .filter(|p| !held.permissions.iter().any(|h| h == p))
                    .collect();
                if missing.is_empty() {
                    Ok(Permission::Allowed)
                } else {
                    Ok(Permission::Denied {
                        code: "IAM_PERMISSION_DENIED".into(),
                        message: format!(
                            "{} lacks {} on project {}",
                            self.tokens.account().email(),
                            missing.join(", "),
                            self.project
                        ),
                    })
                }
            }
            Err(e) => Permission::refused(e),
        }
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>, CloudError> {
        if request.count == 0 {
            return Err(CloudError::Invalid("count must be at least 1".into()));
        }
        if request.client_token.is_empty() {
            return Err(CloudError::Invalid("client_token must not be empty".into()));
        }
        if request.market == Market::CapacityBlock {
            return Err(crate::unsupported(
                Provider::Gcp,
                "launch (capacity blocks are AWS only)",
            ));
        }
        let zones = match &request.zone {
            Some(z) => vec![self.zone_name(z)],
            None => self.zone_names().await?,
        };
        let mut last = None;
        for zone in zones {
            match self.launch_in(request, &zone).await {
                Ok(made) => return Ok(made),
                Err(e)
                    if request.zone.is_none()
                        && matches!(e.class(), ErrorClass::Capacity | ErrorClass::NotOffered) =>
                {
                    tracing::info!(%zone, error = %e, "no room in this zone; trying the next");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last
            .unwrap_or_else(|| CloudError::Invalid(format!("region {} has no zones", self.region))))
    }

    async fn describe(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, CloudError> {
        if ids.is_empty() {
            return self.list(None).await;
        }
        let mut out = Vec::new();
        for id in ids {
            let Some((zone, name)) = id.as_str().split_once('/') else {
                return Err(CloudError::Invalid(format!(
                    "{id} is not a GCP instance id (<zone>/<name>)"
                )));
            };
            out.extend(self.find(zone, name).await?);
        }
        Ok(out)
    }

    async fn describe_tagged(&self, tag_key: &str) -> Result<Vec<Instance>, CloudError> {
        let filter = format!("labels.{}:*", label(tag_key, true));
        self.list(Some(&filter)).await
    }

    async fn terminate(&self, ids: &[InstanceId]) -> Result<Vec<StateChange>, CloudError> {
        let mut out = Vec::new();
        for id in ids {
            let Some((zone, name)) = id.as_str().split_once('/') else {
                return Err(CloudError::Invalid(format!(
                    "{id} is not a GCP instance id (<zone>/<name>)"
                )));
            };
            let existed = self.delete(zone, name).await?;
            out.push(StateChange {
                id: id.clone(),
                previous: if existed {
                    InstanceState::Other("unreported".into())
                } else {
                    InstanceState::Terminated
                },
                current: InstanceState::Terminated,
            });
        }
        Ok(out)
    }

    /// The region's quotas and the project's `GPUS_ALL_REGIONS` (value = limit).
    async fn list_quotas(&self) -> Result<Vec<QuotaValue>, CloudError> {
        let mut all = self.region_quotas().await?;
        all.extend(self.project_quotas().await?);
        Ok(all
            .into_iter()
            .map(|q| QuotaValue {
                name: q.metric.clone(),
                code: q.metric,
                value: q.limit,
            })
            .collect())
    }

    /// GPU headroom of the type's regional metric and `GPUS_ALL_REGIONS`, whichever is
    /// smaller (its numbers are reported, in GPUs).
    async fn quota_headroom(
        &self,
        instance_type: &InstanceType,
        market: Market,
    ) -> Result<QuotaHeadroom, CloudError> {
        let gpu = self
            .catalog
            .get(Provider::Gcp, instance_type)
            .ok_or_else(|| {
                CloudError::Invalid(format!("{instance_type} is not in the GPU catalog"))
            })?;
        let metric = gpu.quota_code(market).ok_or_else(|| {
            CloudError::Invalid(format!("{instance_type} has no {market} quota metric"))
        })?;
        let regional = self
            .region_quotas()
            .await?
            .into_iter()
            .find(|q| q.metric == metric)
            .unwrap_or(WireQuota {
                metric: metric.to_owned(),
                limit: 0.0,
                usage: 0.0,
            });
        let global = self
            .project_quotas()
            .await?
            .into_iter()
            .find(|q| q.metric == GLOBAL_GPU_METRIC);
        let room = |q: &WireQuota| gpu.headroom(q.limit, q.usage);
        let binding = match global {
            Some(g) if room(&g) < room(&regional) => g,
            _ => regional,
        };
        Ok(QuotaHeadroom {
            headroom_instances: room(&binding),
            quota_code: binding.metric,
            limit_vcpus: binding.limit,
            used_vcpus: binding.usage,
            vcpus_per_instance: gpu.gpu_count,
        })
    }

    /// Spot prices from the Billing Catalog (see the module contract), one point per zone of
    /// the region and catalog type (of `instance_types`, all when empty) with a Spot metric.
    async fn spot_price_history(
        &self,
        instance_types: &[InstanceType],
        _since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<SpotPricePoint>, CloudError> {
        let skus = self.spot_gpu_skus().await?;
        let zones = self.zone_names().await?;
        let now = chrono::Utc::now();
        let mut out = Vec::new();
        for gpu in self
            .catalog
            .offered_in(Provider::Gcp, &self.region)
            .filter(|g| g.quota.spot.is_some())
            .filter(|g| instance_types.is_empty() || instance_types.contains(&g.instance_type))
        {
            let needle = gpu_sku_name(&gpu.gpu_model, gpu.gpu_memory_gib).to_lowercase();
            let Some((_, per_gpu, at)) = skus
                .iter()
                .find(|(d, _, _)| d.to_lowercase().contains(&needle))
            else {
                continue;
            };
            for zone in &zones {
                out.push(SpotPricePoint {
                    instance_type: gpu.instance_type.as_str().to_owned(),
                    zone_name: zone.clone(),
                    zone: ZoneId::parse_optional("zone", Provider::Gcp, &self.region, zone)
                        .ok()
                        .flatten(),
                    usd_per_hour: per_gpu * f64::from(gpu.gpu_count),
                    at: at.unwrap_or(now),
                });
            }
        }
        Ok(out)
    }

    /// `machineTypes.list` of each zone of the region.
    async fn instance_type_offerings(
        &self,
        instance_types: &[InstanceType],
    ) -> Result<Vec<Offering>, CloudError> {
        let mut out = Vec::new();
        for zone in self.zone_names().await? {
            let Ok(Some(id)) = ZoneId::parse_optional("zone", Provider::Gcp, &self.region, &zone)
            else {
                continue;
            };
            let url = self.compute(&format!("/zones/{zone}/machineTypes"));
            let list: Items<WireMachineType> = self.get("machineTypes.list", &url).await?;
            for t in list.items {
                let wanted = if instance_types.is_empty() {
                    InstanceType::parse("instance_type", Provider::Gcp, &t.name)
                        .is_ok_and(|it| self.catalog.get(Provider::Gcp, &it).is_some())
                } else {
                    instance_types.iter().any(|it| it.as_str() == t.name)
                };
                if wanted {
                    out.push(Offering {
                        instance_type: t.name,
                        zone: id.clone(),
                    });
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The operator's adapters of the regions the collectors watch: none when `gcp.project` is
/// empty; else one per `gcp.regions` (every GCP region of the catalog when empty), sharing one
/// service account (`GOOGLE_APPLICATION_CREDENTIALS`) and its tokens.
pub fn watched_gcp_adapters(
    gcp: &GcpSettings,
    settings: &CloudSettings,
    catalog: &Arc<Catalog>,
) -> Result<Vec<Arc<dyn CloudAdapter>>, CloudError> {
    if gcp.project.is_empty() {
        return Ok(Vec::new());
    }
    let tokens = Tokens::new(ServiceAccount::from_env()?);
    gcp_adapters(gcp, settings, catalog, tokens)
}

/// [`watched_gcp_adapters`] with the given tokens (tests).
pub fn gcp_adapters(
    gcp: &GcpSettings,
    settings: &CloudSettings,
    catalog: &Arc<Catalog>,
    tokens: Tokens,
) -> Result<Vec<Arc<dyn CloudAdapter>>, CloudError> {
    let regions: Vec<Region> = if gcp.regions.is_empty() {
        let mut all: Vec<Region> = catalog
            .iter()
            .filter(|t| t.provider == Provider::Gcp)
            .flat_map(|t| t.regions.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    } else {
        gcp.regions
            .iter()
            .map(|r| Region::parse("gcp.regions", Provider::Gcp, r))
            .collect::<Result<_, _>>()
            .map_err(|e| CloudError::Invalid(e.to_string()))?
    };
    let Some(first) = regions.first() else {
        return Ok(Vec::new());
    };
    let base = GcpAdapter::new(
        gcp.clone(),
        settings.clone(),
        tokens,
        gcp.project.clone(),
        first.clone(),
        Arc::clone(catalog),
    )?;
    Ok(regions
        .into_iter()
        .map(|r| Arc::new(base.in_region(r)) as Arc<dyn CloudAdapter>)
        .collect())
}

#[cfg(test)]
capsight_runtime::documented_defaults_test!("gcp", GcpSettings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_instance_states() {
        assert_eq!(state_of("PROVISIONING"), InstanceState::Pending);
        assert_eq!(state_of("RUNNING"), InstanceState::Running);
        assert_eq!(state_of("TERMINATED"), InstanceState::Stopped);
        assert_eq!(
            state_of("REPAIRING"),
            InstanceState::Other("REPAIRING".into())
        );
    }

    #[test]
    fn names_and_labels_follow_gcp_rules() {
        let job = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b-2";
        assert_eq!(name_base(job), format!("cs-{job}"));
        let odd = name_base("Job_1");
        assert!(odd.starts_with("cs-") && odd.len() == 27, "{odd}");
        assert_ne!(name_base("Job_1"), name_base("job_1"));
        assert_eq!(label("capsight:job", true), "capsight_job");
        assert_eq!(label("1x", true), "t1x");
        assert_eq!(label("Acme Corp", false), "acme_corp");
        assert!(label(&"x".repeat(80), false).len() == 63);
    }

    #[test]
    fn one_endpoint_replaces_every_google_host() {
        let own = GcpSettings {
            endpoint: "http://127.0.0.1:5599/".into(),
            ..GcpSettings::default()
        };
        assert_eq!(
            own.base("https://compute.googleapis.com"),
            "http://127.0.0.1:5599"
        );
        assert_eq!(
            GcpSettings::default().base("https://compute.googleapis.com"),
            "https://compute.googleapis.com"
        );
    }
}
