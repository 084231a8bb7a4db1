//! RunPod in the GPU clouds collector: RunPod's stock status per GPU type, GPU count and cloud
//! type (`gpuTypes { lowestPrice(input: {gpuCount, secureCloud}) { stockStatus } }`), polled
//! with the others every `gpuclouds.interval`.
//!
//! * **availability**: for every catalog RunPod type in both cloud types, one `Availability`
//!   signal on `runpod/<secure|community>//<type>/on_demand` with RunPod's stock level (High,
//!   Medium, Low, or none: available unless none) and the on-demand price per pod-hour. A
//!   marketplace's stock is a weak signal; the scorer weighs it with `[scorer.weights]
//!   marketplace`. Spot keys get none: RunPod's status is about on-demand stock. A failed poll
//!   publishes nothing.
//! * **offerings**: `Offering { offered: true }` for the same keys.
//!
//! Ids derive from the key, what was observed and the observation time, as for Lambda.

use std::sync::Arc;

use capsight_catalog::Catalog;
use capsight_cloud::{
    CloudError, CloudSettings,
    runpod::{RunPodAdapter, RunPodSettings},
};
use capsight_proto::domain::{
    Availability, CapacityKey, Market, OfferingExposure, Payload, Provider, RUNPOD_CLOUDS, Region,
};
use capsight_publisher::Publisher;
use chrono::{DateTime, Utc};

use crate::{PassReport, publish};

/// RunPod's half of the collector: one adapter (the operator's key) and the publisher.
pub struct RunPodCollector {
    adapter: RunPodAdapter,
    catalog: Arc<Catalog>,
    publisher: Publisher,
}

impl std::fmt::Debug for RunPodCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunPodCollector")
            .field("adapter", &self.adapter)
            .finish_non_exhaustive()
    }
}

impl RunPodCollector {
    /// A collector over `adapter`.
    pub fn new(adapter: RunPodAdapter, catalog: Arc<Catalog>, publisher: Publisher) -> Self {
        Self {
            adapter,
            catalog,
            publisher,
        }
    }

    /// A collector whose adapter's API key is `RUNPOD_API_KEY`.
    pub fn from_env(
        runpod: RunPodSettings,
        cloud: CloudSettings,
        catalog: Arc<Catalog>,
        publisher: Publisher,
    ) -> Result<Self, CloudError> {
        // the stock listing covers both cloud types; the adapter's only scopes launches
        let secure = Region::parse("region", Provider::RunPod, RUNPOD_CLOUDS[0])
            .map_err(|e| CloudError::Invalid(e.to_string()))?;
        let adapter = RunPodAdapter::from_env(runpod, cloud, Arc::clone(&catalog), secure)?;
        Ok(Self::new(adapter, catalog, publisher))
    }

    fn key(region: Region, instance_type: capsight_proto::domain::InstanceType) -> CapacityKey {
        CapacityKey {
            provider: Provider::RunPod,
            region,
            zone: None,
            instance_type,
            market: Market::OnDemand,
        }
    }

    /// One stock poll observed at `now`.
    pub async fn availability(&self, now: DateTime<Utc>) -> PassReport {
        let mut report = PassReport::default();
        let stock = match self.adapter.stock().await {
            Ok(s) => s,
            Err(e) => {
                // an error says nothing about capacity: publish nothing
                report.errors += 1;
                tracing::warn!(error = %e, "RunPod gpuTypes failed");
                return report;
            }
        };
        for s in stock {
            let available = s.stock.is_available();
            let ok = publish(
                &self.publisher,
                Self::key(s.cloud, s.instance_type),
                now,
                &["stock", s.stock.as_str()],
                Payload::Availability(Availability {
                    available,
                    listed_usd_per_hour: s.usd_per_hour.filter(|p| p.is_finite() && *p > 0.0),
                    stock: Some(s.stock),
                }),
            )
            .await;
            report.count(ok, available);
        }
        report
    }

    /// Offering signals for every catalog RunPod type in both cloud types, observed at `now`.
    pub async fn offerings(&self, now: DateTime<Utc>) -> PassReport {
        let mut report = PassReport::default();
        for g in self
            .catalog
            .iter()
            .filter(|g| g.provider == Provider::RunPod)
        {
            for region in &g.regions {
                let ok = publish(
                    &self.publisher,
                    Self::key(region.clone(), g.instance_type.clone()),
                    now,
                    &["offering"],
                    Payload::Offering(OfferingExposure { offered: true }),
                )
                .await;
                report.count(ok, false);
            }
        }
        report
    }
}
