//! One adapter per region, for collectors that watch several regions with one account.

use std::sync::Arc;

use aws_config::BehaviorVersion;
use capsight_catalog::Catalog;

use crate::{CloudAdapter, CloudError, CloudSettings, Region, aws::AwsAdapter};

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
