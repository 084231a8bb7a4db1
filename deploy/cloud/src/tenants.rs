//! Cloud adapters acting in *tenants'* accounts, for the account checks of preflight.
//!
//! Contract: [`TenantClouds::adapter`] returns an adapter for `tenant` in `region` that acts
//! with the tenant's own credentials — the role registered for the tenant
//! (`capsight-admin tenant role`), assumed with its external id from the operator's AWS
//! chain — never with the operator's own permissions. A tenant without a role gets
//! [`AccountError::NoRole`]. Adapters are cached per (tenant, region, role, external id) and
//! refresh their session credentials themselves.
//!
//! Lambda Cloud ([`LambdaClouds`], offered by [`TenantClouds::lambda_clouds`]): the tenant's
//! own API key, read from the environment variable its registration names (never stored in
//! the registry); a tenant without a Lambda registration has no Lambda adapter.
//!
//! RunPod ([`RunPodClouds`], offered by [`TenantClouds::runpod_clouds`]) likewise: the
//! tenant's own API key from the variable its RunPod registration names.
//!
//! [`TenantClouds::adapter_on`] picks by provider (the launcher's entry point): AWS through
//! [`TenantClouds::adapter`], Lambda through [`TenantClouds::lambda_clouds`], RunPod through
//! [`TenantClouds::runpod_clouds`];
//! [`TenantClouds::has_account`] says whether a tenant can act on a provider at all (the
//! launcher never falls back to a provider it cannot).

use std::{collections::HashMap, sync::Arc};

use crate::{
    CloudAdapter, CloudError, CloudSettings, Provider, Region,
    aws::AwsAdapter,
    lambda::{LambdaAdapter, LambdaSettings},
    runpod::{RunPodAdapter, RunPodSettings},
};
use async_trait::async_trait;
use capsight_catalog::Catalog;
use capsight_tenancy::Tenant;
use futures::future::BoxFuture;

/// Why no adapter could be had for a tenant.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The tenant registered no cloud role.
    #[error("no AWS role is registered for tenant {0}")]
    NoRole(String),
    /// The tenant registered no account on `provider`, or these clouds do not include it.
    #[error("tenant {tenant} has no {provider} account usable here")]
    NoAccount {
        /// The tenant.
        tenant: String,
        /// The provider.
        provider: Provider,
    },
    /// Assuming the role (or building the adapter) failed.
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

/// Adapters in tenants' accounts.
#[async_trait]
pub trait TenantClouds: Send + Sync + std::fmt::Debug {
    /// An adapter acting as `tenant` in `region`.
    async fn adapter(
        &self,
        tenant: &Tenant,
        region: &Region,
    ) -> Result<Arc<dyn CloudAdapter>, AccountError>;

    /// Tenants' Lambda Cloud adapters, when these clouds include Lambda.
    fn lambda_clouds(&self) -> Option<&LambdaClouds> {
        None
    }

    /// Tenants' RunPod adapters, when these clouds include RunPod.
    fn runpod_clouds(&self) -> Option<&RunPodClouds> {
        None
    }

    /// An adapter acting as `tenant` in `region` of `provider`: AWS through [`Self::adapter`],
    /// Lambda with the tenant's registered API key; [`AccountError::NoAccount`] otherwise.
    async fn adapter_on(
        &self,
        tenant: &Tenant,
        provider: Provider,
        region: &Region,
    ) -> Result<Arc<dyn CloudAdapter>, AccountError> {
        let none = || AccountError::NoAccount {
            tenant: tenant.id.to_string(),
            provider,
        };
        match provider {
            Provider::Aws => self.adapter(tenant, region).await,
            Provider::Lambda => {
                let lambda = self.lambda_clouds().ok_or_else(none)?;
                match lambda.adapter(tenant, region)? {
                    Some(a) => Ok(Arc::new(a) as Arc<dyn CloudAdapter>),
                    None => Err(none()),
                }
            }
            Provider::RunPod => {
                let runpod = self.runpod_clouds().ok_or_else(none)?;
                match runpod.adapter(tenant, region)? {
                    Some(a) => Ok(Arc::new(a) as Arc<dyn CloudAdapter>),
                    None => Err(none()),
                }
            }
            Provider::Gcp | Provider::Azure => Err(none()),
        }
    }

    /// Whether `tenant` registered an account on `provider` that these clouds can act with
    /// (an AWS role; a Lambda account whose key variable is set here).
    fn has_account(&self, tenant: &Tenant, provider: Provider) -> bool {
        match provider {
            Provider::Aws => tenant.aws_role.is_some(),
            Provider::Lambda => self.lambda_clouds().is_some_and(|l| l.has_key(tenant)),
            Provider::RunPod => self.runpod_clouds().is_some_and(|r| r.has_key(tenant)),
            Provider::Gcp | Provider::Azure => false,
        }
    }
}

/// Looks a tenant's Lambda API key up by the environment variable name its registration gives.
pub type KeyLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Lambda Cloud adapters acting with tenants' own API keys.
pub struct LambdaClouds {
    lambda: LambdaSettings,
    cloud: CloudSettings,
    keys: KeyLookup,
}

impl std::fmt::Debug for LambdaClouds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaClouds")
            .field("endpoint", &self.lambda.endpoint)
            .finish_non_exhaustive()
    }
}

impl LambdaClouds {
    /// Keys from the process environment.
    pub fn from_env(lambda: LambdaSettings, cloud: CloudSettings) -> Self {
        Self::with_keys(
            lambda,
            cloud,
            Arc::new(|name: &str| std::env::var(name).ok()),
        )
    }

    /// Keys from `keys` (tests: no process environment is touched).
    pub fn with_keys(lambda: LambdaSettings, cloud: CloudSettings, keys: KeyLookup) -> Self {
        Self {
            lambda,
            cloud,
            keys,
        }
    }

    /// Whether `tenant` registered a Lambda account whose key variable is set here.
    pub fn has_key(&self, tenant: &Tenant) -> bool {
        tenant
            .lambda
            .as_ref()
            .is_some_and(|a| (self.keys)(&a.api_key_env).is_some_and(|k| !k.trim().is_empty()))
    }

    /// `tenant`'s adapter in `region`; `Ok(None)` when the tenant registered no Lambda account,
    /// [`CloudError::Invalid`] when the variable its registration names is not set.
    pub fn adapter(
        &self,
        tenant: &Tenant,
        region: &Region,
    ) -> Result<Option<LambdaAdapter>, CloudError> {
        let Some(account) = &tenant.lambda else {
            return Ok(None);
        };
        let key = (self.keys)(&account.api_key_env)
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| {
                CloudError::Invalid(format!(
                    "the Lambda API key of tenant {} ({}) is not set on this service",
                    tenant.id, account.api_key_env
                ))
            })?;
        LambdaAdapter::new(self.lambda.clone(), self.cloud.clone(), key, region.clone()).map(Some)
    }
}

/// Other tenant clouds plus Lambda Cloud.
#[derive(Debug)]
pub struct WithLambda {
    inner: Arc<dyn TenantClouds>,
    lambda: LambdaClouds,
}

impl WithLambda {
    /// `inner` for `adapter`, `lambda` for Lambda.
    pub fn new(inner: Arc<dyn TenantClouds>, lambda: LambdaClouds) -> Self {
        Self { inner, lambda }
    }
}

#[async_trait]
impl TenantClouds for WithLambda {
    async fn adapter(
        &self,
        tenant: &Tenant,
        region: &Region,
    ) -> Result<Arc<dyn CloudAdapter>, AccountError> {
        self.inner.adapter(tenant, region).await
    }

    fn lambda_clouds(&self) -> Option<&LambdaClouds> {
        Some(&self.lambda)
    }
}

/// The API key in the variable `env` (`provider`'s registration of `tenant`), when set and
/// not blank; [`CloudError::Invalid`] naming the variable otherwise.
fn registered_key(
    keys: &KeyLookup,
    tenant: &Tenant,
    provider: Provider,
    env: &str,
) -> Result<String, CloudError> {
    keys(env).filter(|k| !k.trim().is_empty()).ok_or_else(|| {
        CloudError::Invalid(format!(
            "the {provider} API key of tenant {} ({env}) is not set on this service",
            tenant.id
        ))
    })
}

/// RunPod adapters acting with tenants' own API keys.
pub struct RunPodClouds {
    runpod: RunPodSettings,
    cloud: CloudSettings,
    catalog: Arc<Catalog>,
    keys: KeyLookup,
}

impl std::fmt::Debug for RunPodClouds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunPodClouds")
            .field("endpoint", &self.runpod.endpoint)
            .finish_non_exhaustive()
    }
}

impl RunPodClouds {
    /// Keys from the process environment.
    pub fn from_env(runpod: RunPodSettings, cloud: CloudSettings, catalog: Arc<Catalog>) -> Self {
        Self::with_keys(
            runpod,
            cloud,
            catalog,
            Arc::new(|name: &str| std::env::var(name).ok()),
        )
    }

    /// Keys from `keys` (tests: no process environment is touched).
    pub fn with_keys(
        runpod: RunPodSettings,
        cloud: CloudSettings,
        catalog: Arc<Catalog>,
        keys: KeyLookup,
    ) -> Self {
        Self {
            runpod,
            cloud,
            catalog,
            keys,
        }
    }

    /// Whether `tenant` registered a RunPod account whose key variable is set here.
    pub fn has_key(&self, tenant: &Tenant) -> bool {
        tenant.runpod.as_ref().is_some_and(|a| {
            registered_key(&self.keys, tenant, Provider::RunPod, &a.api_key_env).is_ok()
        })
    }

    /// `tenant`'s adapter in cloud type `region`; `Ok(None)` when the tenant registered no
    /// RunPod account, [`CloudError::Invalid`] when the variable its registration names is not
    /// set.
    pub fn adapter(
        &self,
        tenant: &Tenant,
        region: &Region,
    ) -> Result<Option<RunPodAdapter>, CloudError> {
        let Some(account) = &tenant.runpod else {
            return Ok(None);
        };
        let key = registered_key(&self.keys, tenant, Provider::RunPod, &account.api_key_env)?;
        RunPodAdapter::new(
            self.runpod.clone(),
            self.cloud.clone(),
            Arc::clone(&self.catalog),
            key,
            region.clone(),
        )
        .map(Some)
    }
}

/// Other tenant clouds plus RunPod.
#[derive(Debug)]
pub struct WithRunPod {
    inner: Arc<dyn TenantClouds>,
    runpod: RunPodClouds,
}

impl WithRunPod {
    /// `inner` for everything else, `runpod` for RunPod.
    pub fn new(inner: Arc<dyn TenantClouds>, runpod: RunPodClouds) -> Self {
        Self { inner, runpod }
    }
}

#[async_trait]
impl TenantClouds for WithRunPod {
    async fn adapter(
        &self,
        tenant: &Tenant,
        region: &Region,
    ) -> Result<Arc<dyn CloudAdapter>, AccountError> {
        self.inner.adapter(tenant, region).await
    }

    fn lambda_clouds(&self) -> Option<&LambdaClouds> {
        self.inner.lambda_clouds()
    }

    fn runpod_clouds(&self) -> Option<&RunPodClouds> {
        Some(&self.runpod)
    }
}

/// Builds the operator's base adapter for a region.
pub type BaseAdapter =
    Arc<dyn Fn(Region) -> BoxFuture<'static, Result<AwsAdapter, CloudError>> + Send + Sync>;

/// (tenant id, region, role ARN, external id).
type TenantAdapterKey = (String, Region, String, String);

/// AWS: assume the tenant's role from the operator's base adapter of the region.
pub struct AwsClouds {
    base: BaseAdapter,
    bases: tokio::sync::Mutex<HashMap<Region, Arc<AwsAdapter>>>,
    tenants: tokio::sync::Mutex<HashMap<TenantAdapterKey, Arc<AwsAdapter>>>,
}

impl std::fmt::Debug for AwsClouds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsClouds").finish_non_exhaustive()
    }
}

impl AwsClouds {
    /// Base adapters from the standard AWS configuration chain (`AWS_ENDPOINT_URL` points it
    /// at cloudsim), one per region.
    pub fn from_env(settings: CloudSettings, catalog: Arc<Catalog>) -> Self {
        Self::with_base(Arc::new(move |region: Region| {
            let settings = CloudSettings {
                region: region.as_str().to_owned(),
                ..settings.clone()
            };
            let catalog = Arc::clone(&catalog);
            Box::pin(async move { AwsAdapter::from_env(settings, catalog).await })
        }))
    }

    /// Base adapters at `endpoint` (a cloudsim) acting as the long-term key `access_key_id`
    /// (static credentials, any secret): the same adapter the services use, pointed at a given
    /// endpoint without touching the process environment (`capsight-eval` runs several
    /// cloudsims in one process).
    pub fn at_endpoint(
        endpoint: &str,
        access_key_id: &str,
        settings: CloudSettings,
        catalog: Arc<Catalog>,
    ) -> Self {
        let endpoint = endpoint.to_owned();
        let access_key_id = access_key_id.to_owned();
        Self::with_base(Arc::new(move |region: Region| {
            let settings = CloudSettings {
                region: region.as_str().to_owned(),
                ..settings.clone()
            };
            let catalog = Arc::clone(&catalog);
            let endpoint = endpoint.clone();
            let credentials = aws_sdk_ec2::config::Credentials::new(
                access_key_id.clone(),
                "cloudsim",
                None,
                None,
                "capsight-static",
            );
            Box::pin(async move {
                let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .endpoint_url(endpoint)
                    .region(aws_config::Region::new(region.as_str().to_owned()))
                    .credentials_provider(credentials)
                    .load()
                    .await;
                AwsAdapter::from_sdk_config(sdk, settings, catalog)
            })
        }))
    }

    /// Base adapters from `base` (tests point it at their cloudsim).
    pub fn with_base(base: BaseAdapter) -> Self {
        Self {
            base,
            bases: tokio::sync::Mutex::default(),
            tenants: tokio::sync::Mutex::default(),
        }
    }
}

#[async_trait]
impl TenantClouds for AwsClouds {
    async fn adapter(
        &self,
        tenant: &Tenant,
        region: &Region,
    ) -> Result<Arc<dyn CloudAdapter>, AccountError> {
        let role = tenant
            .aws_role
            .as_ref()
            .ok_or_else(|| AccountError::NoRole(tenant.id.to_string()))?;
        let cache_key = (
            tenant.id.to_string(),
            region.clone(),
            role.role_arn.clone(),
            role.external_id.clone(),
        );
        let mut tenants = self.tenants.lock().await;
        if let Some(a) = tenants.get(&cache_key) {
            return Ok(Arc::clone(a) as Arc<dyn CloudAdapter>);
        }
        let base = {
            let mut bases = self.bases.lock().await;
            match bases.get(region) {
                Some(b) => Arc::clone(b),
                None => {
                    let b = Arc::new((self.base)(region.clone()).await?);
                    bases.insert(region.clone(), Arc::clone(&b));
                    b
                }
            }
        };
        let adapter = Arc::new(base.for_tenant(&role.role_arn, &role.external_id).await?);
        tenants.insert(cache_key, Arc::clone(&adapter));
        Ok(adapter as Arc<dyn CloudAdapter>)
    }
}
