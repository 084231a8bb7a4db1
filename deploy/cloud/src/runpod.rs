//! RunPod implementation of [`CloudAdapter`] over its GraphQL API (`POST <endpoint>/graphql`)
//! with `reqwest`, and its stock listing (`gpuTypes { lowestPrice(input: {gpuCount,
//! secureCloud}) { stockStatus minimumBidPrice uninterruptablePrice } }`).
//!
//! Contract:
//! * One adapter = one API key (one RunPod account) in one of RunPod's cloud types, which
//!   capsight keys as regions (`secure`, `community`). RunPod has no zones: keys are
//!   region-wide, [`CloudAdapter::zones`] is empty and a launch naming a zone is refused.
//! * A capsight RunPod type (`8x_h100_sxm`) is a pod of `gpu_count` GPUs of the GPU catalog
//!   entry's RunPod GPU type id (`provider_id`); the adapter maps both ways with the catalog.
//! * Endpoint `runpod.endpoint` (default `https://api.runpod.io`; cloudsim's URL in tests);
//!   API key from `RUNPOD_API_KEY` ([`RunPodAdapter::from_env`]), sent as `Authorization:
//!   Bearer` (RunPod also accepts `?api_key=`, which would put the key in URLs and logs).
//! * Errors: RunPod answers its own errors as GraphQL `errors[].message` (HTTP 200, no codes);
//!   they are classified with RunPod's table (`capsight_classify::classify_http`: no stock is
//!   capacity, a balance too low or the GPU limit reached is quota, `Unauthorized` is
//!   permission). Throttled and transient failures are retried like every adapter's
//!   ([`crate::retry`]); nothing else is.
//! * Markets: on demand (`podFindAndDeployOnDemand`) and spot (`podRentInterruptable`, bidding
//!   the type's current minimum bid, or the on-demand price when RunPod lists none, so a pool
//!   without spot stock answers with RunPod's own no-stock error).
//! * Operations RunPod's API does not have (DryRun, reservations, quotas, spot history and
//!   placement scores, capacity blocks, zonal offerings, tags) fail with
//!   [`CloudError::Unsupported`]; so do stop and start (RunPod can stop pods; capsight's
//!   warm standbys are AWS-only).
//! * Idempotent creation: RunPod has no client token, so the pod `name` carries the request's
//!   client token and every launch attempt first lists the account's pods for ones of that
//!   name and type, deploying only the missing ones. A launch of `count` pods deploys them one
//!   by one and terminates the ones it made when a later one fails (all or nothing). The
//!   window this leaves is the Lambda adapter's: two callers with one token that both list
//!   before either deploys both deploy, and a pod RunPod made but did not answer for is made
//!   again by a retry.

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use capsight_catalog::{Catalog, GpuType};
use capsight_proto::domain::{InstanceType, Market, Provider, Region, StockLevel};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::{
    CloudAdapter, CloudError, CloudSettings,
    http::{Api, ApiKey, exchange, http_url, rfc3339},
    lambda::zoneless_launch,
    types::{Instance, InstanceId, InstanceState, LaunchRequest, Permission, StateChange},
};

/// The environment variable holding the RunPod API key.
pub const API_KEY_ENV: &str = "RUNPOD_API_KEY";

/// Longest pod name capsight gives (the client token must fit).
pub const MAX_NAME: usize = 64;

/// The `[runpod]` config section. The API key is never here: it comes from `RUNPOD_API_KEY`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPodSettings {
    /// API base URL (without `/graphql`).
    pub endpoint: String,
    /// The container image pods run.
    pub image_name: String,
    /// Container disk per pod, GB.
    pub container_disk_gb: u32,
}

impl Default for RunPodSettings {
    fn default() -> Self {
        Self {
            endpoint: "https://api.runpod.io".into(),
            image_name: "runpod/base:0.6.2-cuda12.2.0".into(),
            container_disk_gb: 20,
        }
    }
}

/// One catalog type's stock in one RunPod cloud type, as RunPod lists it now.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeStock {
    /// capsight's RunPod type.
    pub instance_type: InstanceType,
    /// The cloud type (`secure`, `community`) as a region.
    pub cloud: Region,
    /// RunPod's `stockStatus` for a pod of the type's GPUs (`None` when it lists none).
    pub stock: StockLevel,
    /// The on-demand price, USD per pod-hour, when RunPod gave one.
    pub usd_per_hour: Option<f64>,
    /// The minimum spot bid, USD per pod-hour, when RunPod gave one (spot stock exists).
    pub min_bid_per_hour: Option<f64>,
}

/// The RunPod adapter for one API key and cloud type.
#[derive(Clone)]
pub struct RunPodAdapter {
    api: Api,
    url: String,
    api_key: ApiKey,
    region: Region,
    runpod: RunPodSettings,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for RunPodAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // not the catalog
        f.debug_struct("RunPodAdapter")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("region", &self.region)
            .field("runpod", &self.runpod)
            .finish_non_exhaustive()
    }
}

// ------------------------------------------------------------------ wire shapes

const POD_FIELDS: &str = "id name desiredStatus gpuCount costPerHr podType lastStartedAt machine { gpuTypeId } \
     runtime { uptimeInSeconds }";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePod {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    desired_status: String,
    #[serde(default)]
    gpu_count: u32,
    #[serde(default)]
    pod_type: Option<String>,
    #[serde(default)]
    last_started_at: Option<String>,
    #[serde(default)]
    machine: Option<WireMachine>,
    #[serde(default)]
    runtime: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMachine {
    #[serde(default)]
    gpu_type_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Myself {
    #[serde(default)]
    client_balance: f64,
    #[serde(default)]
    pods: Vec<WirePod>,
}

#[derive(Debug, Deserialize)]
struct MyselfData {
    myself: Myself,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LowestPrice {
    #[serde(default)]
    minimum_bid_price: Option<f64>,
    #[serde(default)]
    uninterruptable_price: Option<f64>,
    #[serde(default)]
    stock_status: Option<String>,
}

fn state_of(pod: &WirePod) -> InstanceState {
    match pod.desired_status.as_str() {
        "RUNNING" if pod.runtime.as_ref().is_some_and(|r| !r.is_null()) => InstanceState::Running,
        "RUNNING" | "CREATED" => InstanceState::Pending,
        "EXITED" => InstanceState::Stopped,
        "TERMINATED" => InstanceState::Terminated,
        other => InstanceState::Other(other.to_owned()),
    }
}

/// RunPod's `stockStatus`: `High`, `Medium`, `Low`; anything else (null) is none.
fn stock_of(status: Option<&str>) -> StockLevel {
    match status {
        Some(s) if s.eq_ignore_ascii_case("high") => StockLevel::High,
        Some(s) if s.eq_ignore_ascii_case("medium") => StockLevel::Medium,
        Some(s) if s.eq_ignore_ascii_case("low") => StockLevel::Low,
        _ => StockLevel::None,
    }
}

fn cloud_type(region: &Region) -> &'static str {
    if region.as_str() == "community" {
        "COMMUNITY"
    } else {
        "SECURE"
    }
}

impl RunPodAdapter {
    /// An adapter for `api_key` in cloud type `region` against `runpod.endpoint`.
    pub fn new(
        runpod: RunPodSettings,
        settings: CloudSettings,
        catalog: Arc<Catalog>,
        api_key: impl Into<String>,
        region: Region,
    ) -> Result<Self, CloudError> {
        let api_key = ApiKey::new(api_key.into(), "RunPod", API_KEY_ENV)?;
        let base = http_url("runpod.endpoint", &runpod.endpoint)?;
        if Region::parse("region", Provider::RunPod, region.as_str()).is_err() {
            return Err(CloudError::Invalid(format!(
                "{region} is not a RunPod cloud type (secure, community)"
            )));
        }
        Ok(Self {
            api: Api::new(Provider::RunPod, "runpod-api", settings)?,
            url: format!("{base}/graphql"),
            api_key,
            region,
            runpod,
            catalog,
        })
    }

    /// An adapter whose API key is `RUNPOD_API_KEY`.
    pub fn from_env(
        runpod: RunPodSettings,
        settings: CloudSettings,
        catalog: Arc<Catalog>,
        region: Region,
    ) -> Result<Self, CloudError> {
        let key = std::env::var(API_KEY_ENV).unwrap_or_default();
        Self::new(runpod, settings, catalog, key, region)
    }

    /// The same account in another cloud type.
    pub fn in_region(&self, region: Region) -> Self {
        Self {
            region,
            ..self.clone()
        }
    }

    fn runpod_types(&self) -> impl Iterator<Item = &GpuType> {
        self.catalog
            .iter()
            .filter(|g| g.provider == Provider::RunPod)
    }

    /// The catalog entry of a capsight RunPod type, with its GPU type id.
    fn gpu_type(&self, instance_type: &InstanceType) -> Result<(&GpuType, &str), CloudError> {
        self.catalog
            .get(Provider::RunPod, instance_type)
            .and_then(|g| g.provider_id.as_deref().map(|id| (g, id)))
            .ok_or_else(|| {
                CloudError::Invalid(format!(
                    "{instance_type} is not a RunPod type of the GPU catalog"
                ))
            })
    }

    /// Stock of every catalog RunPod type in both cloud types (one `gpuTypes` query, one
    /// aliased `lowestPrice` per cloud type and GPU count), in catalog order.
    pub async fn stock(&self) -> Result<Vec<TypeStock>, CloudError> {
        let mut counts: Vec<u32> = self.runpod_types().map(|g| g.gpu_count).collect();
        counts.sort_unstable();
        counts.dedup();
        let prices: Vec<String> = counts
            .iter()
            .flat_map(|n| {
                [("s", true), ("c", false)].map(|(prefix, secure)| {
                    format!(
                        "{prefix}{n}: lowestPrice(input: {{gpuCount: {n}, secureCloud: {secure}}}) \
                         {{ minimumBidPrice uninterruptablePrice stockStatus }}"
                    )
                })
            })
            .collect();
        let query = format!(
            "query GpuStock {{ gpuTypes {{ id {} }} }}",
            prices.join(" ")
        );
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Types {
            gpu_types: Vec<BTreeMap<String, Value>>,
        }
        let listed: Types = self
            .api
            .retrying("gpuTypes", || self.graphql("gpuTypes", &query, json!({})))
            .await?;
        let mut out = Vec::new();
        for g in self.runpod_types() {
            let Some(entry) = listed
                .gpu_types
                .iter()
                .find(|t| t.get("id").and_then(Value::as_str) == g.provider_id.as_deref())
            else {
                continue;
            };
            for (prefix, cloud) in [("s", "secure"), ("c", "community")] {
                let price: Option<LowestPrice> = entry
                    .get(&format!("{prefix}{}", g.gpu_count))
                    .and_then(|v| serde_json::from_value(v.clone()).ok());
                let Ok(region) = Region::parse("region", Provider::RunPod, cloud) else {
                    continue;
                };
                let gpus = f64::from(g.gpu_count);
                out.push(TypeStock {
                    instance_type: g.instance_type.clone(),
                    cloud: region,
                    stock: stock_of(price.as_ref().and_then(|p| p.stock_status.as_deref())),
                    usd_per_hour: price
                        .as_ref()
                        .and_then(|p| p.uninterruptable_price)
                        .map(|p| p * gpus),
                    min_bid_per_hour: price
                        .as_ref()
                        .and_then(|p| p.minimum_bid_price)
                        .map(|p| p * gpus),
                });
            }
        }
        Ok(out)
    }

    /// GPUs the account's running pods hold (what counts against its GPU limit), in every
    /// cloud type.
    pub async fn gpus_in_use(&self) -> Result<u32, CloudError> {
        Ok(self
            .myself()
            .await?
            .pods
            .iter()
            .filter(|p| p.desired_status == "RUNNING")
            .map(|p| p.gpu_count)
            .sum())
    }

    /// The account's balance, USD.
    pub async fn balance(&self) -> Result<f64, CloudError> {
        Ok(self.myself().await?.client_balance)
    }

    async fn myself(&self) -> Result<Myself, CloudError> {
        let query =
            format!("query Myself {{ myself {{ id clientBalance pods {{ {POD_FIELDS} }} }} }}");
        let data: MyselfData = self
            .api
            .retrying("myself", || self.graphql("myself", &query, json!({})))
            .await?;
        Ok(data.myself)
    }

    fn instance(&self, pod: WirePod) -> Option<Instance> {
        let state = state_of(&pod);
        let instance_type = pod
            .machine
            .as_ref()
            .and_then(|m| m.gpu_type_id.as_deref())
            .and_then(|id| {
                self.catalog
                    .by_provider_id(Provider::RunPod, id, pod.gpu_count)
            })
            .map(|g| g.instance_type.as_str().to_owned())
            .unwrap_or_default();
        Some(Instance {
            id: InstanceId::new(pod.id)?,
            instance_type,
            zone_name: String::new(),
            zone: None,
            state,
            market: if pod.pod_type.as_deref() == Some("INTERRUPTABLE") {
                Market::Spot
            } else {
                Market::OnDemand
            },
            launch_time: rfc3339(pod.last_started_at.as_deref()),
            tags: BTreeMap::new(),
            client_token: pod.name,
            state_reason: None,
        })
    }

    /// Sends one GraphQL request; an HTTP error or a body with `errors` is classified with
    /// RunPod's table, otherwise `data` is read as `T`.
    async fn graphql<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        query: &str,
        variables: Value,
    ) -> Result<T, CloudError> {
        let request = self.api.client().post(&self.url);
        let body = json!({ "query": query, "variables": variables });
        let answer = exchange(operation, self.api_key.bearer(request).json(&body)).await?;
        #[derive(Deserialize)]
        struct Answer<T> {
            data: Option<T>,
            #[serde(default)]
            errors: Vec<Value>,
        }
        match serde_json::from_str::<Answer<T>>(&answer.body) {
            Ok(Answer {
                data: Some(data),
                errors,
            }) if answer.is_success() && errors.is_empty() => Ok(data),
            _ if !answer.is_success() || answer.body.contains("\"errors\"") => {
                Err(answer.refusal(Provider::RunPod, operation))
            }
            Ok(_) => Err(CloudError::Response {
                operation,
                message: "a GraphQL answer without data or errors".into(),
            }),
            Err(e) => Err(CloudError::Response {
                operation,
                message: e.to_string(),
            }),
        }
    }

    /// The bid per GPU-hour for a spot pod of `gpu_type_id` x `gpus` in this cloud type:
    /// RunPod's minimum bid now, else the on-demand price per GPU.
    async fn bid_per_gpu(&self, g: &GpuType, gpu_type_id: &str) -> Result<f64, CloudError> {
        let query = "query Bid($id: String, $n: Int, $secure: Boolean) { gpuTypes(input: {id: $id}) \
                     { lowestPrice(input: {gpuCount: $n, secureCloud: $secure}) { minimumBidPrice } } }";
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Priced {
            lowest_price: Option<LowestPrice>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Types {
            gpu_types: Vec<Priced>,
        }
        let variables = json!({ "id": gpu_type_id, "n": g.gpu_count,
                                "secure": self.region.as_str() == "secure" });
        let listed: Types = self
            .api
            .retrying("gpuTypes", || {
                self.graphql("gpuTypes", query, variables.clone())
            })
            .await?;
        Ok(listed
            .gpu_types
            .into_iter()
            .find_map(|t| t.lowest_price.and_then(|p| p.minimum_bid_price))
            .unwrap_or_else(|| g.usd_per_gpu_hour()))
    }

    /// Deploys one pod named `token`.
    async fn deploy(&self, request: &LaunchRequest, token: &str) -> Result<Instance, CloudError> {
        let (g, gpu_type_id) = self.gpu_type(&request.instance_type)?;
        let mut input = json!({
            "cloudType": cloud_type(&self.region),
            "gpuCount": g.gpu_count,
            "gpuTypeId": gpu_type_id,
            "name": token,
            "imageName": self.runpod.image_name,
            "containerDiskInGb": self.runpod.container_disk_gb,
        });
        let (operation, query): (&'static str, String) = match request.market {
            Market::OnDemand => (
                "podFindAndDeployOnDemand",
                format!(
                    "mutation Deploy($input: PodFindAndDeployOnDemandInput!) {{ \
                     podFindAndDeployOnDemand(input: $input) {{ {POD_FIELDS} }} }}"
                ),
            ),
            Market::Spot => {
                let bid = self.bid_per_gpu(g, gpu_type_id).await?;
                let bid = request
                    .spot_max_price
                    .map_or(bid, |max| bid.min(max / f64::from(g.gpu_count)));
                input["bidPerGpu"] = json!(bid);
                (
                    "podRentInterruptable",
                    format!(
                        "mutation Rent($input: PodRentInterruptableInput!) {{ \
                         podRentInterruptable(input: $input) {{ {POD_FIELDS} }} }}"
                    ),
                )
            }
            Market::CapacityBlock => {
                return Err(crate::unsupported(
                    Provider::RunPod,
                    "launch (RunPod has no capacity blocks)",
                ));
            }
        };
        let mut data: BTreeMap<String, WirePod> = self
            .graphql(operation, &query, json!({ "input": input }))
            .await?;
        data.remove(operation)
            .and_then(|pod| self.instance(pod))
            .ok_or_else(|| CloudError::Response {
                operation,
                message: "the deploy answered no pod".into(),
            })
    }

    /// One launch attempt: the pods already named `token` (same type), and new ones named
    /// `token` up to `request.count`; the new ones are terminated again when one fails.
    async fn launch_once(
        &self,
        request: &LaunchRequest,
        token: &str,
    ) -> Result<Vec<Instance>, CloudError> {
        let mut pods: Vec<Instance> = self
            .myself()
            .await?
            .pods
            .into_iter()
            .filter_map(|p| self.instance(p))
            .filter(|i| {
                i.client_token.as_deref() == Some(token)
                    && i.instance_type == request.instance_type.as_str()
                    && i.state != InstanceState::Terminated
            })
            .collect();
        if !pods.is_empty() {
            tracing::info!(token, found = pods.len(), "runpod pods already deployed");
        }
        let mut made = Vec::new();
        while u32::try_from(pods.len()).unwrap_or(u32::MAX) < request.count {
            match self.deploy(request, token).await {
                Ok(pod) => {
                    made.push(pod.id.clone());
                    pods.push(pod);
                }
                Err(e) => {
                    if !made.is_empty()
                        && let Err(undo) = self.terminate(&made).await
                    {
                        tracing::warn!(error = %undo, "terminating the pods of a failed launch failed");
                    }
                    return Err(e);
                }
            }
        }
        Ok(pods)
    }

    async fn terminate_one(&self, id: &InstanceId) -> Result<StateChange, CloudError> {
        let query =
            "mutation Terminate($input: PodTerminateInput!) { podTerminate(input: $input) }";
        let variables = json!({ "input": { "podId": id.as_str() } });
        let done: Result<Value, CloudError> = self
            .api
            .retrying("podTerminate", || {
                self.graphql("podTerminate", query, variables.clone())
            })
            .await;
        match done {
            Ok(_) => {}
            // a pod RunPod no longer knows is gone, as AWS drops terminated instances
            Err(e)
                if e.classified()
                    .is_some_and(|c| c.message.contains("not found")) => {}
            Err(e) => return Err(e),
        }
        Ok(StateChange {
            id: id.clone(),
            // RunPod does not report the state before termination
            previous: InstanceState::Other("unreported".into()),
            current: InstanceState::Terminated,
        })
    }
}

#[async_trait]
impl CloudAdapter for RunPodAdapter {
    fn provider(&self) -> Provider {
        Provider::RunPod
    }

    fn region(&self) -> &Region {
        &self.region
    }

    /// RunPod has no DryRun and no per-operation permissions: a valid key may deploy. Checked
    /// by reading the account (`myself`).
    async fn check_launch_permission(
        &self,
        _request: &LaunchRequest,
    ) -> Result<Permission, CloudError> {
        Permission::of_read(self.myself().await)
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>, CloudError> {
        let token = zoneless_launch(
            request,
            MAX_NAME,
            "RunPod pod",
            "RunPod has no zones: a launch names a cloud type only",
        )?;
        self.gpu_type(&request.instance_type)?;
        // list-then-deploy inside every attempt: a retry after a lost answer finds the pods
        self.api
            .retrying("podFindAndDeployOnDemand", || {
                self.launch_once(request, token)
            })
            .await
    }

    /// The account's pods (every cloud type: a pod's cloud type is not listed), or those of
    /// `ids`; a pod RunPod no longer lists is gone and not returned.
    async fn describe(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, CloudError> {
        Ok(self
            .myself()
            .await?
            .pods
            .into_iter()
            .filter_map(|p| self.instance(p))
            .filter(|i| ids.is_empty() || ids.contains(&i.id))
            .collect())
    }

    async fn terminate(&self, ids: &[InstanceId]) -> Result<Vec<StateChange>, CloudError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.terminate_one(id).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
capsight_runtime::documented_defaults_test!("runpod", RunPodSettings);

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: &str, runtime: Option<Value>) -> WirePod {
        WirePod {
            id: "abc".into(),
            name: None,
            desired_status: status.into(),
            gpu_count: 1,
            pod_type: None,
            last_started_at: None,
            machine: None,
            runtime,
        }
    }

    #[test]
    fn runpod_statuses_map_to_instance_states() {
        assert_eq!(state_of(&pod("RUNNING", None)), InstanceState::Pending);
        assert_eq!(
            state_of(&pod("RUNNING", Some(json!({"uptimeInSeconds": 3})))),
            InstanceState::Running
        );
        assert_eq!(state_of(&pod("EXITED", None)), InstanceState::Stopped);
        assert_eq!(
            state_of(&pod("PAUSED", None)),
            InstanceState::Other("PAUSED".into())
        );
        assert_eq!(stock_of(Some("High")), StockLevel::High);
        assert_eq!(stock_of(Some("Low")), StockLevel::Low);
        assert_eq!(stock_of(None), StockLevel::None);
    }

    #[test]
    fn a_key_an_http_endpoint_and_a_cloud_type_are_required_and_the_key_is_never_printed() {
        let catalog = Arc::new(Catalog::embedded().unwrap());
        let secure = Region::parse("r", Provider::RunPod, "secure").unwrap();
        let settings = CloudSettings::default();
        let new = |runpod: RunPodSettings, key: &str, region: Region| {
            RunPodAdapter::new(runpod, settings.clone(), Arc::clone(&catalog), key, region)
        };
        assert!(matches!(
            new(RunPodSettings::default(), " ", secure.clone()),
            Err(CloudError::Invalid(_))
        ));
        let ftp = RunPodSettings {
            endpoint: "ftp://x".into(),
            ..RunPodSettings::default()
        };
        assert!(new(ftp, "k", secure.clone()).is_err());
        let aws = Region::parse("r", Provider::Aws, "us-east-1").unwrap();
        assert!(new(RunPodSettings::default(), "k", aws).is_err());
        let a = new(RunPodSettings::default(), "rpa_secret_xyz", secure).unwrap();
        assert!(!format!("{a:?}").contains("rpa_secret_xyz"));
        assert_eq!(a.url, "https://api.runpod.io/graphql");
    }
}
