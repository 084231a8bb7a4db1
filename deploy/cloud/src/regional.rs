//! One adapter per region, for collectors that watch several regions with one account.

use std::sync::Arc;

use aws_config::BehaviorVersion;
use capsight_catalog::Catalog;

use crate::{CloudAdapter, CloudError, CloudSettings, Region, aws::AwsAdapter};

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

/// The regions to watch: `configured` (validated), or every AWS region the catalog lists.
pub fn watched_aws_regions(
    configured: &[String],
    catalog: &Catalog,
) -> Result<Vec<Region>, capsight_proto::domain::FieldError> {
    use capsight_proto::domain::Provider;
    if configured.is_empty() {
        let mut all: Vec<Region> = catalog
            .iter()
            .filter(|t| t.provider == Provider::Aws)
            .flat_map(|t| t.regions.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        return Ok(all);
    }
    configured
        .iter()
        .map(|r| Region::parse("regions", Provider::Aws, r))
        .collect()
}
