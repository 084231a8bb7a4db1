//! One adapter per region, for collectors that watch several regions with one account: AWS
//! from the standard chain, Azure from `[azure]` when it names a subscription, GCP from `[gcp]`
//! when it names a project.

use std::sync::Arc;

use aws_config::BehaviorVersion;
use capsight_catalog::Catalog;
use serde::Deserialize;

use crate::{
    CloudAdapter, CloudError, CloudSettings, Region,
    aws::AwsAdapter,
    azure::{AzureAdapter, AzureSettings},
};

/// Why the adapters of the watched regions could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// A configured region is not an AWS region.
    #[error(transparent)]
    Regions(#[from] capsight_proto::domain::FieldError),
    /// An adapter could not be built.
    #[error("cloud adapters: {0}")]
    Adapters(#[from] CloudError),
}

/// The sections a collector watching the operator's regions reads, flattened into its
/// configuration: `[cloud]` (AWS, and the retry settings every provider's calls share),
/// `[azure]` (off unless it names a subscription) and `[gcp]` (off unless it names a project).
#[derive(Debug, Clone, Deserialize)]
pub struct WatchedClouds {
    /// `[cloud]`.
    pub cloud: CloudSettings,
    /// `[azure]`.
    #[serde(default)]
    pub azure: AzureSettings,
    /// `[gcp]`.
    #[serde(default)]
    pub gcp: crate::gcp::GcpSettings,
}

impl WatchedClouds {
    /// Every adapter a collector watches with: AWS for `aws_regions` ([`watched_aws_adapters`])
    /// followed by Azure's ([`watched_azure_adapters`], none unless `[azure]` is configured) and
    /// GCP's ([`crate::gcp::watched_gcp_adapters`], none unless `[gcp]` names a project).
    pub async fn adapters(
        &self,
        catalog: &Arc<Catalog>,
        aws_regions: &[String],
    ) -> Result<Vec<Arc<dyn CloudAdapter>>, WatchError> {
        let cloud = &self.cloud;
        let mut adapters = watched_aws_adapters(cloud, catalog, aws_regions).await?;
        adapters.extend(watched_azure_adapters(&self.azure, cloud, catalog)?);
        adapters.extend(crate::gcp::watched_gcp_adapters(&self.gcp, cloud, catalog)?);
        Ok(adapters)
    }
}

/// One adapter per watched region ([`watched_aws_regions`] of the `regions` setting).
pub async fn watched_aws_adapters(
    settings: &CloudSettings,
    catalog: &Arc<Catalog>,
    configured: &[String],
) -> Result<Vec<Arc<dyn CloudAdapter>>, WatchError> {
    let regions = watched_aws_regions(configured, catalog)?;
    Ok(aws_adapters(settings, Arc::clone(catalog), &regions).await?)
}

/// Loads the AWS configuration chain once and builds an adapter for each of `regions`.
pub async fn aws_adapters(
    settings: &CloudSettings,
    catalog: Arc<Catalog>,
    regions: &[Region],
) -> Result<Vec<Arc<dyn CloudAdapter>>, CloudError> {
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    regions
        .iter()
        .map(|r| {
            let settings = CloudSettings {
                region: r.as_str().to_owned(),
                ..settings.clone()
            };
            AwsAdapter::from_sdk_config(sdk.clone(), settings, Arc::clone(&catalog))
                .map(|a| Arc::new(a) as Arc<dyn CloudAdapter>)
        })
        .collect()
}

/// The operator's Azure adapters, one per watched region (`azure.regions`, else every Azure
/// region of the catalog), sharing one token; none when `[azure]` names no subscription.
pub fn watched_azure_adapters(
    azure: &AzureSettings,
    settings: &CloudSettings,
    catalog: &Arc<Catalog>,
) -> Result<Vec<Arc<dyn CloudAdapter>>, WatchError> {
    if !azure.is_configured() {
        return Ok(Vec::new());
    }
    let regions = watched_regions(
        capsight_proto::domain::Provider::Azure,
        &azure.regions,
        catalog,
    )?;
    let Some(first) = regions.first() else {
        return Ok(Vec::new());
    };
    let base = AzureAdapter::from_env(
        azure.clone(),
        settings.clone(),
        first.clone(),
        Arc::clone(catalog),
    )?;
    Ok(regions
        .iter()
        .map(|r| Arc::new(base.in_region(r.clone())) as Arc<dyn CloudAdapter>)
        .collect())
}

/// The regions to watch: `configured` (validated), or every AWS region the catalog lists.
pub fn watched_aws_regions(
    configured: &[String],
    catalog: &Catalog,
) -> Result<Vec<Region>, capsight_proto::domain::FieldError> {
    watched_regions(capsight_proto::domain::Provider::Aws, configured, catalog)
}

/// The regions of `provider` to watch: `configured` (validated), or every region of the
/// provider the catalog lists.
pub fn watched_regions(
    provider: capsight_proto::domain::Provider,
    configured: &[String],
    catalog: &Catalog,
) -> Result<Vec<Region>, capsight_proto::domain::FieldError> {
    if configured.is_empty() {
        let mut all: Vec<Region> = catalog
            .iter()
            .filter(|t| t.provider == provider)
            .flat_map(|t| t.regions.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        return Ok(all);
    }
    configured
        .iter()
        .map(|r| Region::parse("regions", provider, r))
        .collect()
}
