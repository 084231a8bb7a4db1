//! The baselines' hands in the cloud: adapters acting in each simulated tenant's account through
//! the same adapters capsight uses (`capsight_cloud`'s `AwsClouds`, pointed at the arm's
//! cloudsim with the operator's key, assuming the tenant's role; on Lambda Cloud the tenant's
//! own API key), one launch attempt that waits until the instances run, and the classification
//! of what happened.
//!
//! Contract: [`Hands::attempt`] makes exactly one `RunInstances` call (the adapter's own
//! retries of throttled/transient errors aside) and returns when the instances run, when the
//! launch failed, or when they never ran within the provisioning timeout (then they are
//! terminated and the attempt counts as `other`).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use capsight_catalog::Catalog;
use capsight_cloud::{
    CloudAdapter, CloudError, CloudSettings, InstanceId, InstanceState, LaunchRequest,
    PlacementScoreQuery, Region,
    lambda::LambdaSettings,
    runpod::RunPodSettings,
    tenants::{AwsClouds, LambdaClouds, ProviderClouds, RunPodClouds, TenantClouds},
};
use capsight_proto::domain::{CapacityKey, ErrorClass, InstanceType, Provider};
use capsight_tenancy::{CloudRole, LambdaAccount, RunPodAccount, Tenant, TenantId};

use crate::{offers::Offer, workload::TenantDef, world::World};

/// What one launch attempt came to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Running; the instances.
    Running(Vec<String>),
    /// A capacity error (`InsufficientInstanceCapacity`).
    Capacity,
    /// A quota error.
    Quota,
    /// Anything else (code or message).
    Other(String),
}

impl Outcome {
    /// From a cloud error.
    pub fn of(e: &CloudError) -> Self {
        match e.class() {
            ErrorClass::Capacity => Self::Capacity,
            ErrorClass::Quota => Self::Quota,
            _ => Self::Other(e.code().map_or_else(|| e.to_string(), str::to_owned)),
        }
    }
}

/// Why a cloud adapter could not be had.
#[derive(Debug, thiserror::Error)]
pub enum HandsError {
    /// An id or region is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The adapter could not be built or the role not assumed.
    #[error("{0}")]
    Account(#[from] capsight_cloud::tenants::AccountError),
}

/// Adapters in the tenants' accounts of one world.
#[derive(Debug)]
pub struct Hands {
    clouds: ProviderClouds,
    tenants: BTreeMap<String, Tenant>,
    image_id: String,
}

/// Cloud settings of the harness's own calls: like capsight's, with short backoffs.
pub fn settings() -> CloudSettings {
    CloudSettings {
        max_attempts: 3,
        retry_min_delay: Duration::from_millis(20),
        retry_max_delay: Duration::from_millis(200),
        ..CloudSettings::default()
    }
}

impl Hands {
    /// Adapters on `world` as `operator`, assuming each tenant's role.
    pub fn new(
        world: &World,
        operator: &str,
        tenants: &[TenantDef],
        catalog: Arc<Catalog>,
        image_id: &str,
    ) -> Result<Self, HandsError> {
        let aws = Arc::new(AwsClouds::at_endpoint(
            &world.url(),
            operator,
            settings(),
            Arc::clone(&catalog),
        ));
        let keys: BTreeMap<String, String> = tenants
            .iter()
            .flat_map(|t| {
                t.keyed_accounts()
                    .map(|(p, a)| (key_env(p, &t.id), a.api_key.clone()))
            })
            .collect();
        let keys = Arc::new(keys);
        let lookup = || -> capsight_cloud::tenants::KeyLookup {
            let keys = Arc::clone(&keys);
            Arc::new(move |name: &str| keys.get(name).cloned())
        };
        let clouds = ProviderClouds::new(aws)
            .with_lambda(LambdaClouds::with_keys(
                LambdaSettings {
                    endpoint: world.url(),
                    ..LambdaSettings::default()
                },
                settings(),
                lookup(),
            ))
            .with_runpod(RunPodClouds::with_keys(
                RunPodSettings {
                    endpoint: world.url(),
                    ..RunPodSettings::default()
                },
                settings(),
                catalog,
                lookup(),
            ));
        let mut map = BTreeMap::new();
        for t in tenants {
            let id = TenantId::parse(&t.id).map_err(|e| HandsError::Invalid(e.to_string()))?;
            map.insert(
                t.id.clone(),
                Tenant {
                    id,
                    name: t.id.clone(),
                    rate_per_minute: None,
                    zone_map: BTreeMap::new(),
                    aws_role: Some(CloudRole {
                        role_arn: t.role.clone(),
                        external_id: t.external_id.clone().unwrap_or_default(),
                    }),
                    lambda: t.lambda.as_ref().map(|l| LambdaAccount {
                        api_key_env: key_env(Provider::Lambda, &t.id),
                        instance_limit: l.limit,
                    }),
                    gcp: None,
                    azure: None,
                    runpod: t.runpod.as_ref().map(|r| RunPodAccount {
                        api_key_env: key_env(Provider::RunPod, &t.id),
                        gpu_limit: r.limit,
                    }),
                    gpu_quota: t.gpu_quota,
                    max_open_streams: None,
                    keys: Vec::new(),
                },
            );
        }
        Ok(Self {
            clouds,
            tenants: map,
            image_id: image_id.to_owned(),
        })
    }

    /// The adapter of `tenant` in `region` of `provider`.
    pub async fn adapter(
        &self,
        tenant: &str,
        provider: Provider,
        region: &str,
    ) -> Result<Arc<dyn CloudAdapter>, HandsError> {
        let t = self
            .tenants
            .get(tenant)
            .ok_or_else(|| HandsError::Invalid(format!("unknown tenant {tenant}")))?;
        let region = Region::parse("region", provider, region)
            .map_err(|e| HandsError::Invalid(e.to_string()))?;
        Ok(self.clouds.adapter_on(t, provider, &region).await?)
    }

    /// The adapter of `tenant` where the capacity key `key` is.
    async fn adapter_of(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Arc<dyn CloudAdapter>, HandsError> {
        let k: CapacityKey = key
            .parse()
            .map_err(|e: capsight_proto::domain::FieldError| HandsError::Invalid(e.to_string()))?;
        self.adapter(tenant, k.provider, k.region.as_str()).await
    }

    /// One launch of `count` instances of `offer` as `tenant`; waits until they run.
    pub async fn attempt(
        &self,
        world: &World,
        tenant: &str,
        offer: &Offer,
        count: u32,
        token: &str,
    ) -> Outcome {
        let adapter = match self.adapter(tenant, offer.provider, &offer.region).await {
            Ok(a) => a,
            Err(e) => return Outcome::Other(e.to_string()),
        };
        let Ok(key) = offer.key().parse::<CapacityKey>() else {
            return Outcome::Other("invalid offer".into());
        };
        let request = LaunchRequest::new(key.instance_type, key.zone, self.image_id.clone(), token)
            .market(offer.market)
            .count(count)
            .tag("capsight-eval", token);
        let instances = match adapter.launch(&request).await {
            Ok(i) => i,
            Err(e) => return Outcome::of(&e),
        };
        let ids: Vec<InstanceId> = instances.iter().map(|i| i.id.clone()).collect();
        // provisioning takes simulated minutes; give it 30 simulated minutes
        let give_up = world.now() + 1800.0;
        loop {
            match adapter.describe(&ids).await {
                Ok(described) => {
                    let running = described
                        .iter()
                        .filter(|i| i.state == InstanceState::Running)
                        .count();
                    let gone = described.iter().any(|i| !i.state.is_live());
                    if running == ids.len() {
                        return Outcome::Running(
                            ids.iter().map(|i| i.as_str().to_owned()).collect(),
                        );
                    }
                    if gone {
                        let _ = adapter.terminate(&ids).await;
                        return Outcome::Other("interrupted while pending".into());
                    }
                }
                Err(e) if !e.is_retryable() => return Outcome::Other(e.to_string()),
                Err(_) => {}
            }
            if world.now() > give_up {
                let _ = adapter.terminate(&ids).await;
                return Outcome::Other("never running".into());
            }
            tokio::time::sleep(world.real(10.0).max(Duration::from_millis(100))).await;
        }
    }

    /// Whether all of `ids` (at capacity key `key`) still run (false after an interruption).
    pub async fn still_running(&self, tenant: &str, key: &str, ids: &[String]) -> bool {
        let Ok(adapter) = self.adapter_of(tenant, key).await else {
            return false;
        };
        let ids: Vec<InstanceId> = ids
            .iter()
            .filter_map(|i| InstanceId::new(i.clone()))
            .collect();
        adapter.describe(&ids).await.is_ok_and(|d| {
            d.len() == ids.len() && d.iter().all(|i| i.state == InstanceState::Running)
        })
    }

    /// Terminates `ids` at capacity key `key` (the end of a hold).
    pub async fn release(&self, tenant: &str, key: &str, ids: &[String]) {
        if let Ok(adapter) = self.adapter_of(tenant, key).await {
            let ids: Vec<InstanceId> = ids
                .iter()
                .filter_map(|i| InstanceId::new(i.clone()))
                .collect();
            if let Err(e) = adapter.terminate(&ids).await {
                tracing::warn!(error = %e, "terminating a held instance failed");
            }
        }
    }

    /// Spot placement scores per zone id (1..=10) of `types` for `count` instances in
    /// `regions`, as `tenant`.
    pub async fn placement_scores(
        &self,
        tenant: &str,
        types: &[String],
        count: u32,
        regions: &[String],
    ) -> BTreeMap<String, u8> {
        let mut out = BTreeMap::new();
        let Some(first) = regions.first() else {
            return out;
        };
        let Ok(adapter) = self.adapter(tenant, Provider::Aws, first).await else {
            return out;
        };
        let query = PlacementScoreQuery {
            instance_types: types
                .iter()
                .filter_map(|t| InstanceType::parse("instance_type", Provider::Aws, t).ok())
                .collect(),
            target_capacity: count,
            single_zone: true,
            regions: regions
                .iter()
                .filter_map(|r| Region::parse("region", Provider::Aws, r).ok())
                .collect(),
        };
        match adapter.spot_placement_scores(&query).await {
            Ok(scores) => {
                for s in scores {
                    if let Some(z) = s.zone {
                        out.insert(z.as_str().to_owned(), s.score);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "placement scores failed"),
        }
        out
    }
}

/// The variable name under which the harness holds `tenant`'s API key on `provider` (Lambda
/// Cloud, RunPod): its registration names it, the capsight arms' processes get it set.
pub fn key_env(provider: Provider, tenant: &str) -> String {
    format!(
        "EVAL_{}_KEY_{}",
        provider.as_str().to_ascii_uppercase(),
        tenant.to_ascii_uppercase().replace('-', "_")
    )
}
