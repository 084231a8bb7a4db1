//! Lambda Cloud implementation of [`CloudAdapter`] over its public REST API (`/api/v1`) with
//! `reqwest`, and the availability listing (`GET /api/v1/instance-types`: per type, the regions
//! with capacity available right now).
//!
//! Contract:
//! * One adapter = one API key (one Lambda account) in one region. Lambda has no zones: keys
//!   are region-wide, [`CloudAdapter::zones`] is empty and a launch naming a zone is refused.
//! * Endpoint `lambda.endpoint` (default `https://cloud.lambdalabs.com`; cloudsim's URL in
//!   tests and the demo); API key from `LAMBDA_API_KEY` ([`LambdaAdapter::from_env`]), sent as
//!   `Authorization: Bearer`.
//! * Errors are classified with Lambda's table (`capsight_classify::classify_http`): the body's
//!   `error.code`, else the HTTP status; capacity errors carry the regions Lambda suggests.
//!   Throttled and transient failures are retried like the AWS adapter's (`[cloud]`
//!   `max_attempts`, backoff with jitter); nothing else is.
//! * Operations Lambda's API does not have (DryRun, stop/start, reservations, quotas, spot
//!   markets, capacity blocks, zonal offerings) fail with [`CloudError::Unsupported`].
//! * Idempotent creation: Lambda has no client token, so the instance `name` carries the
//!   request's client token and every launch attempt first lists the account's instances for
//!   one of that name (same region and type) and returns it instead of launching. The window
//!   this leaves: two callers with the same token that both list before either launches both
//!   launch (capsight's job leases keep one launcher per job), and an instance whose launch
//!   Lambda accepted but does not list yet is launched again by a retry. Not covered yet: the
//!   launcher's orphan sweep finds instances no job owns by their `capsight:job` tag, which
//!   Lambda does not have, so such a second instance is not terminated by capsight
//!   (docs/reliability.md, "Limits").

use std::collections::BTreeMap;

use async_trait::async_trait;
use capsight_proto::domain::{Market, Provider, Region};
use serde::{Deserialize, de::DeserializeOwned};

use crate::{
    CloudAdapter, CloudError, CloudSettings,
    http::{Api, ApiKey, http_url},
    types::{Instance, InstanceId, InstanceState, LaunchRequest, Permission, StateChange},
};

/// The environment variable holding the Lambda API key.
pub const API_KEY_ENV: &str = "LAMBDA_API_KEY";

/// Longest instance name Lambda accepts (the client token must fit).
pub const MAX_NAME: usize = 64;

/// The `[lambda]` config section. The API key is never here: it comes from `LAMBDA_API_KEY`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaSettings {
    /// API base URL (without `/api/v1`).
    pub endpoint: String,
    /// The SSH key (registered in the Lambda account) launches install; Lambda requires one.
    pub ssh_key_name: String,
}

impl Default for LambdaSettings {
    fn default() -> Self {
        Self {
            endpoint: "https://cloud.lambdalabs.com".into(),
            ssh_key_name: "capsight".into(),
        }
    }
}

/// One instance type in Lambda's availability listing.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeAvailability {
    /// Lambda's type name, e.g. `gpu_8x_h100_sxm5`.
    pub instance_type: String,
    /// Lambda's description.
    pub description: String,
    /// List price, USD per instance-hour.
    pub usd_per_hour: f64,
    /// GPUs per instance.
    pub gpus: u32,
    /// Regions with capacity available right now, as Lambda lists them.
    pub regions_with_capacity: Vec<String>,
}

/// The Lambda Cloud adapter for one API key and region (`Debug` never shows the key).
#[derive(Debug, Clone)]
pub struct LambdaAdapter {
    api: Api,
    base: String,
    api_key: ApiKey,
    region: Region,
    lambda: LambdaSettings,
}

// ------------------------------------------------------------------ wire shapes

#[derive(Debug, Deserialize)]
struct Data<T> {
    data: T,
}

#[derive(Debug, Deserialize)]
struct TypeEntry {
    instance_type: TypeInfo,
    #[serde(default)]
    regions_with_capacity_available: Vec<Named>,
}

#[derive(Debug, Deserialize)]
struct TypeInfo {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    price_cents_per_hour: f64,
    #[serde(default)]
    specs: Specs,
}

#[derive(Debug, Default, Deserialize)]
struct Specs {
    #[serde(default)]
    gpus: u32,
}

#[derive(Debug, Deserialize)]
struct Named {
    name: String,
}

#[derive(Debug, Deserialize)]
struct WireInstance {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: String,
    #[serde(default)]
    region: Option<Named>,
    #[serde(default)]
    instance_type: Option<Named>,
}

#[derive(Debug, Deserialize)]
struct Launched {
    instance_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Terminated {
    terminated_instances: Vec<WireInstance>,
}

/// The request's client token, checked as an instance name (clouds without client tokens
/// carry it in the name): 1-`max` characters `[A-Za-z0-9-_.:]`; `what` names the resource.
fn name_token<'a>(
    request: &'a LaunchRequest,
    max: usize,
    what: &str,
) -> Result<&'a str, CloudError> {
    let token = request.client_token.as_str();
    if token.is_empty()
        || token.len() > max
        || !token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(CloudError::Invalid(format!(
            "client_token {token:?} must be 1-{max} characters [A-Za-z0-9-_.:] (it is the {what} name)"
        )));
    }
    Ok(token)
}

/// The checks of a launch on a cloud without zones, whose instances are named by the client
/// token: no zone (`no_zones` says what a launch names instead), a valid name, at least one
/// instance. Returns the name.
pub(crate) fn zoneless_launch<'a>(
    request: &'a LaunchRequest,
    max: usize,
    what: &str,
    no_zones: &str,
) -> Result<&'a str, CloudError> {
    if request.zone.is_some() {
        return Err(CloudError::Invalid(no_zones.to_owned()));
    }
    let token = name_token(request, max, what)?;
    if request.count == 0 {
        return Err(CloudError::Invalid("count must be at least 1".into()));
    }
    Ok(token)
}

fn state_of(status: &str) -> InstanceState {
    match status {
        "booting" => InstanceState::Pending,
        "active" => InstanceState::Running,
        "terminating" => InstanceState::ShuttingDown,
        "terminated" => InstanceState::Terminated,
        other => InstanceState::Other(other.to_owned()),
    }
}

impl LambdaAdapter {
    /// An adapter for `api_key` in `region` against `lambda.endpoint`.
    pub fn new(
        lambda: LambdaSettings,
        settings: CloudSettings,
        api_key: impl Into<String>,
        region: Region,
    ) -> Result<Self, CloudError> {
        Ok(Self {
            api_key: ApiKey::new(api_key.into(), "Lambda", API_KEY_ENV)?,
            base: http_url("lambda.endpoint", &lambda.endpoint)?,
            api: Api::new(Provider::Lambda, "lambda-api", settings)?,
            region,
            lambda,
        })
    }

    /// An adapter whose API key is `LAMBDA_API_KEY`.
    pub fn from_env(
        lambda: LambdaSettings,
        settings: CloudSettings,
        region: Region,
    ) -> Result<Self, CloudError> {
        let key = std::env::var(API_KEY_ENV).unwrap_or_default();
        Self::new(lambda, settings, key, region)
    }

    /// The same account in another region.
    pub fn in_region(&self, region: Region) -> Self {
        Self {
            region,
            ..self.clone()
        }
    }

    /// Every instance type with the regions that have capacity for it right now
    /// (`GET /api/v1/instance-types`), in type-name order.
    pub async fn availability(&self) -> Result<Vec<TypeAvailability>, CloudError> {
        let listing: BTreeMap<String, TypeEntry> =
            self.get("instance-types", "/api/v1/instance-types").await?;
        Ok(listing
            .into_values()
            .map(|e| TypeAvailability {
                instance_type: e.instance_type.name,
                description: e.instance_type.description,
                usd_per_hour: e.instance_type.price_cents_per_hour / 100.0,
                gpus: e.instance_type.specs.gpus,
                regions_with_capacity: e
                    .regions_with_capacity_available
                    .into_iter()
                    .map(|r| r.name)
                    .collect(),
            })
            .collect())
    }

    /// How many instances the account holds (booting, active or unhealthy), in every region:
    /// what counts against its instance limit.
    pub async fn instances_in_use(&self) -> Result<u32, CloudError> {
        let n = self
            .list()
            .await?
            .iter()
            .filter(|w| w.status != "terminated")
            .count();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The account's instances (not terminated), in every region.
    async fn list(&self) -> Result<Vec<WireInstance>, CloudError> {
        self.get("instances", "/api/v1/instances").await
    }

    fn instance(&self, w: WireInstance) -> Option<Instance> {
        Some(Instance {
            id: InstanceId::new(w.id)?,
            instance_type: w.instance_type.map(|t| t.name).unwrap_or_default(),
            zone_name: String::new(),
            zone: None,
            state: state_of(&w.status),
            market: Market::OnDemand,
            launch_time: None,
            tags: BTreeMap::new(),
            client_token: w.name,
            state_reason: None,
        })
    }

    fn in_my_region(&self, w: &WireInstance) -> bool {
        w.region
            .as_ref()
            .is_some_and(|r| r.name == self.region.as_str())
    }

    async fn get<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
    ) -> Result<T, CloudError> {
        self.api
            .retrying(operation, || {
                self.send(operation, self.api.client().get(self.url(path)))
            })
            .await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, CloudError> {
        self.send(operation, self.api.client().post(self.url(path)).json(body))
            .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends one request; a non-2xx answer is classified with Lambda's table.
    async fn send<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CloudError> {
        self.api
            .send(operation, self.api_key.bearer(request))
            .await?
            .json::<Data<T>>(operation)
            .map(|d| d.data)
    }

    /// One launch attempt: the instances already named `token` (same region and type), or a
    /// new launch named `token`.
    async fn launch_once(
        &self,
        request: &LaunchRequest,
        token: &str,
    ) -> Result<Vec<Instance>, CloudError> {
        let existing: Vec<Instance> = self
            .list()
            .await?
            .into_iter()
            .filter(|w| {
                self.in_my_region(w)
                    && w.name.as_deref() == Some(token)
                    && w.instance_type.as_ref().map(|t| t.name.as_str())
                        == Some(request.instance_type.as_str())
            })
            .filter_map(|w| self.instance(w))
            .collect();
        if !existing.is_empty() {
            tracing::info!(
                token,
                found = existing.len(),
                "lambda launch already made; not launching again"
            );
            return Ok(existing);
        }
        let body = serde_json::json!({
            "region_name": self.region.as_str(),
            "instance_type_name": request.instance_type.as_str(),
            "ssh_key_names": [self.lambda.ssh_key_name],
            "quantity": request.count,
            "name": token,
        });
        let launched: Launched = self
            .post(
                "instance-operations/launch",
                "/api/v1/instance-operations/launch",
                &body,
            )
            .await?;
        Ok(launched
            .instance_ids
            .into_iter()
            .filter_map(InstanceId::new)
            .map(|id| Instance {
                id,
                instance_type: request.instance_type.as_str().to_owned(),
                zone_name: String::new(),
                zone: None,
                state: InstanceState::Pending,
                market: Market::OnDemand,
                launch_time: Some(chrono::Utc::now()),
                tags: BTreeMap::new(),
                client_token: Some(token.to_owned()),
                state_reason: None,
            })
            .collect())
    }
}

#[async_trait]
impl CloudAdapter for LambdaAdapter {
    fn provider(&self) -> Provider {
        Provider::Lambda
    }

    fn region(&self) -> &Region {
        &self.region
    }

    /// Lambda has no DryRun and no per-operation permissions: a valid key of an active account
    /// may launch. Checked by listing the account's instances; `Denied` for a permission error
    /// (invalid key, inactive account), other failures are errors.
    async fn check_launch_permission(
        &self,
        _request: &LaunchRequest,
    ) -> Result<Permission, CloudError> {
        Permission::of_read(self.list().await)
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>, CloudError> {
        if request.market != Market::OnDemand {
            return Err(crate::unsupported(
                Provider::Lambda,
                "launch (Lambda sells on-demand only)",
            ));
        }
        let token = zoneless_launch(
            request,
            MAX_NAME,
            "Lambda instance",
            "Lambda has no zones: a launch names a region only",
        )?;
        // list-then-launch inside every attempt: a retry after a lost answer finds the launch
        self.api
            .retrying("instance-operations/launch", || {
                self.launch_once(request, token)
            })
            .await
    }

    async fn describe(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, CloudError> {
        if ids.is_empty() {
            return Ok(self
                .list()
                .await?
                .into_iter()
                .filter(|w| self.in_my_region(w))
                .filter_map(|w| self.instance(w))
                .collect());
        }
        let mut out = Vec::new();
        for id in ids {
            let path = format!("/api/v1/instances/{}", id.as_str());
            match self.get::<WireInstance>("instances", &path).await {
                Ok(w) => out.extend(self.instance(w)),
                // an instance Lambda no longer knows is gone, as AWS drops terminated ones
                Err(e) if e.code() == Some("global/object-does-not-exist") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn terminate(&self, ids: &[InstanceId]) -> Result<Vec<StateChange>, CloudError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let body = serde_json::json!({
            "instance_ids": ids.iter().map(InstanceId::as_str).collect::<Vec<_>>(),
        });
        let done: Terminated = self
            .api
            .retrying("instance-operations/terminate", || {
                self.post(
                    "instance-operations/terminate",
                    "/api/v1/instance-operations/terminate",
                    &body,
                )
            })
            .await?;
        Ok(done
            .terminated_instances
            .into_iter()
            .filter_map(|w| {
                Some(StateChange {
                    id: InstanceId::new(w.id)?,
                    // Lambda does not report the state before termination
                    previous: InstanceState::Other("unreported".into()),
                    current: state_of(&w.status),
                })
            })
            .collect())
    }
}

#[cfg(test)]
capsight_runtime::documented_defaults_test!("lambda", LambdaSettings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_statuses_map_to_instance_states() {
        assert_eq!(state_of("booting"), InstanceState::Pending);
        assert_eq!(state_of("active"), InstanceState::Running);
        assert_eq!(state_of("terminated"), InstanceState::Terminated);
        assert_eq!(
            state_of("unhealthy"),
            InstanceState::Other("unhealthy".into())
        );
    }

    #[test]
    fn a_key_and_an_http_endpoint_are_required_and_the_key_is_never_printed() {
        let region = Region::parse("r", Provider::Lambda, "us-south-2").unwrap();
        let settings = CloudSettings::default();
        assert!(matches!(
            LambdaAdapter::new(
                LambdaSettings::default(),
                settings.clone(),
                " ",
                region.clone()
            ),
            Err(CloudError::Invalid(_))
        ));
        let ftp = LambdaSettings {
            endpoint: "ftp://x".into(),
            ..LambdaSettings::default()
        };
        assert!(LambdaAdapter::new(ftp, settings.clone(), "k", region.clone()).is_err());
        let a =
            LambdaAdapter::new(LambdaSettings::default(), settings, "secret_xyz", region).unwrap();
        assert!(!format!("{a:?}").contains("secret_xyz"));
    }
}
