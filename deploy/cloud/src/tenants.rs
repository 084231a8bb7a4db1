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
//! Google Cloud ([`GcpClouds`], offered by [`TenantClouds::gcp_clouds`]): the tenant's own
//! project and service account, whose key file's path is the value of the environment variable
//! its registration names (neither key nor path is in the registry).
//!
//! Azure ([`AzureClouds`], offered by [`TenantClouds::azure_clouds`]): the tenant's own app
//! registration in its own subscription, its client secret read from the environment variable
//! its registration names (never stored in the registry).
//!
//! RunPod ([`RunPodClouds`], offered by [`TenantClouds::runpod_clouds`]) likewise: the
//! tenant's own API key from the variable its RunPod registration names.
//!
//! [`TenantClouds::adapter_on`] picks by provider (the launcher's entry point): AWS through
//! [`TenantClouds::adapter`], Lambda through [`TenantClouds::lambda_clouds`], GCP through
//! [`TenantClouds::gcp_clouds`], Azure through [`TenantClouds::azure_clouds`],
//! RunPod through [`TenantClouds::runpod_clouds`];
//! [`TenantClouds::has_account`] says whether a tenant can act on a provider at all (the
//! launcher never falls back to a provider it cannot).

use std::{collections::HashMap, sync::Arc};

use crate::{
    CloudAdapter, CloudError, CloudSettings, Provider, Region,
    aws::AwsAdapter,
    azure::{AzureAdapter, AzureCredentials, AzureScope, AzureSettings},
    gcp::{GcpAdapter, GcpSettings, ServiceAccount, Tokens},
    lambda::{LambdaAdapter, LambdaSettings},
    runpod::{RunPodAdapter, RunPodSettings},
};
use async_trait::async_trait;
use capsight_catalog::Catalog;
use capsight_tenancy::Tenant;
use futures::future::BoxFuture;
use serde::Deserialize;

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

    /// Tenants' Google Cloud adapters, when these clouds include GCP.
    fn gcp_clouds(&self) -> Option<&GcpClouds> {
        None
    }

    /// Tenants' Azure adapters, when these clouds include Azure.
    fn azure_clouds(&self) -> Option<&AzureClouds> {
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
            Provider::Gcp => {
                let gcp = self.gcp_clouds().ok_or_else(none)?;
                match gcp.adapter(tenant, region).await? {
                    Some(a) => Ok(Arc::new(a) as Arc<dyn CloudAdapter>),
                    None => Err(none()),
                }
            }
            Provider::Azure => {
                let azure = self.azure_clouds().ok_or_else(none)?;
                match azure.adapter(tenant, region)? {
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
        }
    }

    /// Whether `tenant` registered an account on `provider` that these clouds can act with
    /// (an AWS role; a Lambda account whose key variable is set here).
    fn has_account(&self, tenant: &Tenant, provider: Provider) -> bool {
        match provider {
            Provider::Aws => tenant.aws_role.is_some(),
            Provider::Lambda => self.lambda_clouds().is_some_and(|l| l.has_key(tenant)),
            Provider::Gcp => self.gcp_clouds().is_some_and(|g| g.has_credentials(tenant)),
            Provider::Azure => self.azure_clouds().is_some_and(|a| a.has_secret(tenant)),
            Provider::RunPod => self.runpod_clouds().is_some_and(|r| r.has_key(tenant)),
        }
    }
}

/// Looks a tenant's secret (a Lambda API key, a GCP key file's path, an Azure client secret) up
/// by the environment variable name its registration gives.
pub type KeyLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Secrets from the process environment.
fn from_process_env() -> KeyLookup {
    Arc::new(|name: &str| std::env::var(name).ok())
}

/// The non-blank secret in the variable `name`.
fn secret(keys: &KeyLookup, name: &str) -> Option<String> {
    keys(name).filter(|k| !k.trim().is_empty())
}

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
        Self::with_keys(lambda, cloud, from_process_env())
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
            .is_some_and(|a| secret(&self.keys, &a.api_key_env).is_some())
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
        let key = secret(&self.keys, &account.api_key_env).ok_or_else(|| {
            CloudError::Invalid(format!(
                "the Lambda API key of tenant {} ({}) is not set on this service",
                tenant.id, account.api_key_env
            ))
        })?;
        LambdaAdapter::new(self.lambda.clone(), self.cloud.clone(), key, region.clone()).map(Some)
    }
}

/// Azure adapters acting as tenants' own app registrations in their own subscriptions.
pub struct AzureClouds {
    azure: AzureSettings,
    cloud: CloudSettings,
    catalog: Arc<Catalog>,
    secrets: KeyLookup,
    /// One adapter per (tenant, registration): the token is shared by its regions.
    adapters: std::sync::Mutex<HashMap<(String, capsight_tenancy::AzureAccount), AzureAdapter>>,
}

impl std::fmt::Debug for AzureClouds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureClouds")
            .field("endpoint", &self.azure.endpoint)
            .finish_non_exhaustive()
    }
}

impl AzureClouds {
    /// Secrets from the process environment.
    pub fn from_env(azure: AzureSettings, cloud: CloudSettings, catalog: Arc<Catalog>) -> Self {
        Self::with_secrets(azure, cloud, catalog, from_process_env())
    }

    /// Secrets from `secrets` (tests: no process environment is touched).
    pub fn with_secrets(
        azure: AzureSettings,
        cloud: CloudSettings,
        catalog: Arc<Catalog>,
        secrets: KeyLookup,
    ) -> Self {
        Self {
            azure,
            cloud,
            catalog,
            secrets,
            adapters: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Whether `tenant` registered an Azure subscription whose secret variable is set here.
    pub fn has_secret(&self, tenant: &Tenant) -> bool {
        tenant
            .azure
            .as_ref()
            .is_some_and(|a| secret(&self.secrets, &a.client_secret_env).is_some())
    }

    /// `tenant`'s adapter in `region`; `Ok(None)` when the tenant registered no Azure
    /// subscription, [`CloudError::Invalid`] when the variable its registration names is not
    /// set.
    pub fn adapter(
        &self,
        tenant: &Tenant,
        region: &Region,
    ) -> Result<Option<AzureAdapter>, CloudError> {
        let Some(account) = &tenant.azure else {
            return Ok(None);
        };
        let cache_key = (tenant.id.to_string(), account.clone());
        if let Ok(cache) = self.adapters.lock()
            && let Some(a) = cache.get(&cache_key)
        {
            return Ok(Some(a.in_region(region.clone())));
        }
        let client_secret = secret(&self.secrets, &account.client_secret_env).ok_or_else(|| {
            CloudError::Invalid(format!(
                "the Azure client secret of tenant {} ({}) is not set on this service",
                tenant.id, account.client_secret_env
            ))
        })?;
        let adapter = AzureAdapter::new(
            self.azure.clone(),
            self.cloud.clone(),
            AzureCredentials {
                tenant_id: account.tenant_id.clone(),
                client_id: account.client_id.clone(),
                client_secret,
            },
            AzureScope {
                subscription_id: account.subscription_id.clone(),
                resource_group: account.resource_group.clone(),
            },
            region.clone(),
            Arc::clone(&self.catalog),
        )?;
        if let Ok(mut cache) = self.adapters.lock() {
            cache.insert(cache_key, adapter.clone());
        }
        Ok(Some(adapter))
    }
}

/// Google Cloud adapters acting as tenants' own service accounts in their projects.
pub struct GcpClouds {
    gcp: GcpSettings,
    cloud: CloudSettings,
    catalog: Arc<Catalog>,
    paths: KeyLookup,
    /// (tenant, project, key file path) -> the adapter whose token cache is shared.
    adapters: tokio::sync::Mutex<HashMap<(String, String, String), GcpAdapter>>,
}

impl std::fmt::Debug for GcpClouds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpClouds")
            .field("endpoint", &self.gcp.endpoint)
            .finish_non_exhaustive()
    }
}

impl GcpClouds {
    /// Key file paths from the process environment.
    pub fn from_env(gcp: GcpSettings, cloud: CloudSettings, catalog: Arc<Catalog>) -> Self {
        Self::with_paths(gcp, cloud, catalog, from_process_env())
    }

    /// Key file paths from `paths` (tests: no process environment is touched).
    pub fn with_paths(
        gcp: GcpSettings,
        cloud: CloudSettings,
        catalog: Arc<Catalog>,
        paths: KeyLookup,
    ) -> Self {
        Self {
            gcp,
            cloud,
            catalog,
            paths,
            adapters: tokio::sync::Mutex::default(),
        }
    }

    fn path_of(&self, tenant: &Tenant) -> Option<String> {
        let account = tenant.gcp.as_ref()?;
        (self.paths)(&account.credentials_env).filter(|p| !p.trim().is_empty())
    }

    /// Whether `tenant` registered a GCP project whose credentials variable is set here.
    pub fn has_credentials(&self, tenant: &Tenant) -> bool {
        self.path_of(tenant).is_some()
    }

    /// `tenant`'s adapter in `region`; `Ok(None)` when the tenant registered no GCP project,
    /// [`CloudError::Invalid`] when the variable its registration names is not set or the key
    /// file is unusable.
    pub async fn adapter(
        &self,
        tenant: &Tenant,
        region: &Region,
    ) -> Result<Option<GcpAdapter>, CloudError> {
        let Some(account) = &tenant.gcp else {
            return Ok(None);
        };
        let path = self.path_of(tenant).ok_or_else(|| {
            CloudError::Invalid(format!(
                "the GCP service-account key of tenant {} ({}) is not set on this service",
                tenant.id, account.credentials_env
            ))
        })?;
        let key = (
            tenant.id.to_string(),
            account.project_id.clone(),
            path.clone(),
        );
        let mut adapters = self.adapters.lock().await;
        if let Some(a) = adapters.get(&key) {
            return Ok(Some(a.in_region(region.clone())));
        }
        let tokens = Tokens::new(ServiceAccount::from_file(std::path::Path::new(&path))?);
        let adapter = GcpAdapter::new(
            self.gcp.clone(),
            self.cloud.clone(),
            tokens,
            account.project_id.clone(),
            region.clone(),
            Arc::clone(&self.catalog),
        )?;
        adapters.insert(key, adapter.clone());
        Ok(Some(adapter))
    }
}

/// Tenants' clouds on every provider capsight launches on: AWS through `aws`, and each other
/// provider whose clouds were added (a provider left out has no tenant adapters here).
#[derive(Debug)]
pub struct ProviderClouds {
    aws: Arc<dyn TenantClouds>,
    lambda: Option<LambdaClouds>,
    gcp: Option<GcpClouds>,
    azure: Option<AzureClouds>,
    runpod: Option<RunPodClouds>,
}

impl ProviderClouds {
    /// `aws` for AWS (tenants' roles), no other provider yet.
    pub fn new(aws: Arc<dyn TenantClouds>) -> Self {
        Self {
            aws,
            lambda: None,
            gcp: None,
            azure: None,
            runpod: None,
        }
    }

    /// Plus Lambda Cloud.
    #[must_use]
    pub fn with_lambda(self, lambda: LambdaClouds) -> Self {
        Self {
            lambda: Some(lambda),
            ..self
        }
    }

    /// Plus Google Cloud.
    #[must_use]
    pub fn with_gcp(self, gcp: GcpClouds) -> Self {
        Self {
            gcp: Some(gcp),
            ..self
        }
    }

    /// Plus Azure.
    #[must_use]
    pub fn with_azure(self, azure: AzureClouds) -> Self {
        Self {
            azure: Some(azure),
            ..self
        }
    }

    /// Plus RunPod.
    #[must_use]
    pub fn with_runpod(self, runpod: RunPodClouds) -> Self {
        Self {
            runpod: Some(runpod),
            ..self
        }
    }
}

#[async_trait]
impl TenantClouds for ProviderClouds {
    async fn adapter(
        &self,
        tenant: &Tenant,
        region: &Region,
    ) -> Result<Arc<dyn CloudAdapter>, AccountError> {
        self.aws.adapter(tenant, region).await
    }

    fn lambda_clouds(&self) -> Option<&LambdaClouds> {
        self.lambda.as_ref()
    }

    fn gcp_clouds(&self) -> Option<&GcpClouds> {
        self.gcp.as_ref()
    }

    fn azure_clouds(&self) -> Option<&AzureClouds> {
        self.azure.as_ref()
    }

    fn runpod_clouds(&self) -> Option<&RunPodClouds> {
        self.runpod.as_ref()
    }
}

/// The provider sections the gateway and the launcher read for tenants' clouds, flattened into
/// their configuration: `[cloud]` and `[lambda]`, `[gcp]`, `[azure]`, `[runpod]`.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderSettings {
    /// `[cloud]`: AWS (tenants' roles are assumed from the operator's chain) and the retry
    /// settings every provider's calls share.
    pub cloud: CloudSettings,
    /// `[lambda]`: Lambda Cloud's endpoint (tenants' API keys come from the variables their
    /// registrations name).
    #[serde(default)]
    pub lambda: LambdaSettings,
    /// `[gcp]`: Google APIs' endpoint (tenants' service-account key files are at the paths the
    /// variables their registrations name hold).
    #[serde(default)]
    pub gcp: GcpSettings,
    /// `[azure]`: endpoints and launch settings for tenants' Azure adapters (their client
    /// secrets by variable name).
    #[serde(default)]
    pub azure: AzureSettings,
    /// `[runpod]`: RunPod's endpoint and pod image (tenants' API keys come from the variables
    /// their registrations name).
    #[serde(default)]
    pub runpod: RunPodSettings,
}

/// Tenants' clouds on every provider, as the gateway and the launcher run them: AWS (the
/// operator's chain, tenants' roles assumed from it), and Lambda, GCP, Azure and RunPod with
/// the tenants' own credentials from the environment variables their registrations name.
pub fn every_provider_from_env(
    settings: &ProviderSettings,
    catalog: &Arc<Catalog>,
) -> Arc<dyn TenantClouds> {
    let cloud = &settings.cloud;
    let aws = Arc::new(AwsClouds::from_env(cloud.clone(), Arc::clone(catalog)));
    Arc::new(
        ProviderClouds::new(aws)
            .with_lambda(LambdaClouds::from_env(
                settings.lambda.clone(),
                cloud.clone(),
            ))
            .with_gcp(GcpClouds::from_env(
                settings.gcp.clone(),
                cloud.clone(),
                Arc::clone(catalog),
            ))
            .with_azure(AzureClouds::from_env(
                settings.azure.clone(),
                cloud.clone(),
                Arc::clone(catalog),
            ))
            .with_runpod(RunPodClouds::from_env(
                settings.runpod.clone(),
                cloud.clone(),
                Arc::clone(catalog),
            )),
    )
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
