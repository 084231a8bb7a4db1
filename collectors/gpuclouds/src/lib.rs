//! The GPU clouds collector (`capsight-gpuclouds`): the GPU clouds' own "capacity available
//! right now" listings, polled every `gpuclouds.interval` for the clouds `gpuclouds.providers`
//! names: Lambda Cloud's (`GET /api/v1/instance-types`, `regions_with_capacity_available` per
//! type, below) and RunPod's stock status ([`runpod`]).
//!
//! * **availability** (every `gpuclouds.interval`, a few minutes): for every watched
//!   (region, Lambda type) — the catalog's regions of the type plus every region Lambda ever
//!   listed for it, limited to `gpuclouds.regions` when set — one `Availability` signal on the
//!   key `lambda/<region>//<type>/on_demand`: available when the listing names the region,
//!   with the listed price. A failed poll publishes nothing (never "unavailable" for an
//!   error).
//! * **offerings** (every `gpuclouds.offerings_interval`): `Offering { offered: true }` for the
//!   same keys (Lambda sells each type in those regions; its API has no "not offered").
//!
//! Signals have source `availability`; a signal id derives from the key, what was observed and
//! the observation time, so a retried publish keeps its id and one id is never published at two
//! observation times (a restart polls again: a new observation with new ids).

pub mod runpod;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use capsight_catalog::Catalog;
use capsight_cloud::lambda::{LambdaAdapter, TypeAvailability};
use capsight_collector_kit::{Collector, CollectorError};
use capsight_proto::domain::{
    Availability, CapacityKey, InstanceType, Market, OfferingExposure, Payload, Provider, Region,
    SignalSource,
};
use capsight_publisher::Publisher;
use capsight_runtime::periodic::every;
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// The `[gpuclouds]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuCloudsSettings {
    /// Availability poll cadence.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Offering signal cadence.
    #[serde(with = "humantime_serde")]
    pub offerings_interval: Duration,
    /// Lambda regions to publish; empty = every region the catalog or the listing names.
    #[serde(default)]
    pub regions: Vec<String>,
    /// The clouds to poll (`lambda`, `runpod`), each with its operator API key in the
    /// environment (`LAMBDA_API_KEY`, `RUNPOD_API_KEY`).
    pub providers: Vec<GpuCloud>,
}

/// A GPU cloud the collector polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuCloud {
    /// Lambda Cloud's availability listing.
    Lambda,
    /// RunPod's stock status.
    #[serde(rename = "runpod")]
    RunPod,
}

impl Default for GpuCloudsSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(180),
            offerings_interval: Duration::from_secs(3600),
            regions: Vec::new(),
            providers: vec![GpuCloud::Lambda],
        }
    }
}

/// What a pass published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Signals published.
    pub published: usize,
    /// Calls or publishes that failed.
    pub errors: usize,
    /// Keys published as available.
    pub available: usize,
}

/// The collector's state: the adapter, and the regions Lambda has listed per type so far.
pub struct GpuCloudsCollector {
    lambda: LambdaAdapter,
    catalog: Arc<Catalog>,
    settings: GpuCloudsSettings,
    publisher: Publisher,
    /// Type -> regions the listing named at least once (kept: a region that runs out stays
    /// watched and is published unavailable).
    seen: BTreeMap<String, BTreeSet<String>>,
}

impl std::fmt::Debug for GpuCloudsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuCloudsCollector")
            .field("lambda", &self.lambda)
            .finish_non_exhaustive()
    }
}

impl GpuCloudsCollector {
    /// A collector over one Lambda adapter.
    pub fn new(
        lambda: LambdaAdapter,
        catalog: Arc<Catalog>,
        settings: GpuCloudsSettings,
        publisher: Publisher,
    ) -> Self {
        Self {
            lambda,
            catalog,
            settings,
            publisher,
            seen: BTreeMap::new(),
        }
    }

    fn watched_region(&self, region: &str) -> bool {
        self.settings.regions.is_empty() || self.settings.regions.iter().any(|r| r == region)
    }

    /// Every watched (type, region) key of the catalog's Lambda types, with the listing's
    /// entry for the type when it has one.
    fn keys(
        &mut self,
        listing: &[TypeAvailability],
    ) -> Vec<(CapacityKey, Option<TypeAvailability>)> {
        for t in listing {
            self.seen
                .entry(t.instance_type.clone())
                .or_default()
                .extend(t.regions_with_capacity.iter().cloned());
        }
        let mut keys = Vec::new();
        for g in self
            .catalog
            .iter()
            .filter(|g| g.provider == Provider::Lambda)
        {
            let name = g.instance_type.as_str();
            let entry = listing.iter().find(|t| t.instance_type == name).cloned();
            let mut regions: BTreeSet<String> =
                g.regions.iter().map(|r| r.as_str().to_owned()).collect();
            if let Some(seen) = self.seen.get(name) {
                regions.extend(seen.iter().cloned());
            }
            for r in regions.into_iter().filter(|r| self.watched_region(r)) {
                let Ok(region) = Region::parse("region", Provider::Lambda, &r) else {
                    tracing::debug!(region = %r, "Lambda listed a region capsight cannot key; skipped");
                    continue;
                };
                keys.push((
                    CapacityKey {
                        provider: Provider::Lambda,
                        region,
                        zone: None,
                        instance_type: g.instance_type.clone(),
                        market: Market::OnDemand,
                    },
                    entry.clone(),
                ));
            }
        }
        for t in listing {
            if InstanceType::parse("instance_type", Provider::Lambda, &t.instance_type)
                .ok()
                .and_then(|it| self.catalog.get(Provider::Lambda, &it))
                .is_none()
            {
                tracing::debug!(instance_type = %t.instance_type, "Lambda type not in the GPU catalog; skipped");
            }
        }
        keys
    }

    /// One availability poll observed at `now`.
    pub async fn availability(&mut self, now: DateTime<Utc>) -> PassReport {
        let mut report = PassReport::default();
        let listing = match self.lambda.availability().await {
            Ok(l) => l,
            Err(e) => {
                // an error says nothing about capacity: publish nothing
                report.errors += 1;
                tracing::warn!(error = %e, "Lambda instance-types failed");
                return report;
            }
        };
        for (key, entry) in self.keys(&listing) {
            let available = entry.as_ref().is_some_and(|t| {
                t.regions_with_capacity
                    .iter()
                    .any(|r| r == key.region.as_str())
            });
            let price = entry
                .as_ref()
                .map(|t| t.usd_per_hour)
                .filter(|p| p.is_finite() && *p > 0.0);
            let what = if available {
                "available"
            } else {
                "unavailable"
            };
            let ok = publish(
                &self.publisher,
                key,
                now,
                &["availability", what],
                Payload::Availability(Availability {
                    available,
                    listed_usd_per_hour: price,
                    stock: None,
                }),
            )
            .await;
            report.count(ok, available);
        }
        report
    }

    /// Offering signals for every watched key, observed at `now`.
    pub async fn offerings(&mut self, now: DateTime<Utc>) -> PassReport {
        let mut report = PassReport::default();
        for (key, _) in self.keys(&[]) {
            let ok = publish(
                &self.publisher,
                key,
                now,
                &["offering"],
                Payload::Offering(OfferingExposure { offered: true }),
            )
            .await;
            report.count(ok, false);
        }
        report
    }
}

/// Publishes an availability-source signal (see
/// [`capsight_collector_kit::observation::publish`]).
pub(crate) async fn publish(
    publisher: &Publisher,
    key: CapacityKey,
    at: DateTime<Utc>,
    what: &[&str],
    payload: Payload,
) -> bool {
    let source = SignalSource::Availability;
    capsight_collector_kit::observation::publish(publisher, source, key, at, what, payload).await
}

impl PassReport {
    /// Counts one publish outcome (`available` when it said so).
    fn count(&mut self, published: bool, available: bool) {
        if published {
            self.published += 1;
            self.available += usize::from(available);
        } else {
            self.errors += 1;
        }
    }

    /// Adds another pass's counts.
    fn add(&mut self, other: &Self) {
        self.published += other.published;
        self.errors += other.errors;
        self.available += other.available;
    }
}

/// The sections the collector reads besides the kit's.
#[derive(Debug, Deserialize)]
pub struct GpuCloudsConfig {
    /// `[cloud]` (retries, timeouts).
    pub cloud: capsight_cloud::CloudSettings,
    /// `[lambda]` (endpoint, SSH key name).
    pub lambda: capsight_cloud::lambda::LambdaSettings,
    /// `[runpod]` (endpoint).
    pub runpod: capsight_cloud::runpod::RunPodSettings,
    /// `[gpuclouds]`.
    pub gpuclouds: GpuCloudsSettings,
}

/// The process: availability and offerings of every configured cloud on their cadences (or
/// both once) until shutdown.
pub async fn run(c: &Collector<GpuCloudsConfig>, once: bool) -> Result<(), CollectorError> {
    let config = &c.config;
    let providers = &config.gpuclouds.providers;
    let lambda = if providers.contains(&GpuCloud::Lambda) {
        // the listing is account-wide; the adapter's region only scopes launches, not used here
        let region = c
            .catalog
            .iter()
            .filter(|g| g.provider == Provider::Lambda)
            .find_map(|g| g.regions.first().cloned())
            .ok_or_else(|| {
                CollectorError::setup("gpuclouds", "the GPU catalog has no Lambda types")
            })?;
        let lambda = LambdaAdapter::from_env(config.lambda.clone(), config.cloud.clone(), region)
            .map_err(|e| CollectorError::setup("lambda adapter", e))?;
        tracing::info!(endpoint = %config.lambda.endpoint, "polling Lambda Cloud");
        Some(tokio::sync::Mutex::new(GpuCloudsCollector::new(
            lambda,
            Arc::clone(&c.catalog),
            config.gpuclouds.clone(),
            c.publisher.clone(),
        )))
    } else {
        None
    };
    let runpod = if providers.contains(&GpuCloud::RunPod) {
        let collector = runpod::RunPodCollector::from_env(
            config.runpod.clone(),
            config.cloud.clone(),
            Arc::clone(&c.catalog),
            c.publisher.clone(),
        )
        .map_err(|e| CollectorError::setup("runpod adapter", e))?;
        tracing::info!(endpoint = %config.runpod.endpoint, "polling RunPod");
        Some(collector)
    } else {
        None
    };
    let (s, sd) = (&config.gpuclouds, &c.shutdown);
    let (lambda, runpod) = (lambda.as_ref(), runpod.as_ref());
    tokio::join!(
        every(s.interval, once, sd, || async move {
            let r = pass(lambda, runpod, Pass::Availability).await;
            tracing::info!(
                published = r.published,
                available = r.available,
                errors = r.errors,
                "gpu clouds availability"
            );
        }),
        every(s.offerings_interval, once, sd, || async move {
            let r = pass(lambda, runpod, Pass::Offerings).await;
            tracing::info!(
                published = r.published,
                errors = r.errors,
                "gpu clouds offerings"
            );
        }),
    );
    Ok(())
}

/// One of the passes every configured cloud makes.
#[derive(Debug, Clone, Copy)]
enum Pass {
    /// [`GpuCloudsCollector::availability`], [`runpod::RunPodCollector::availability`].
    Availability,
    /// [`GpuCloudsCollector::offerings`], [`runpod::RunPodCollector::offerings`].
    Offerings,
}

/// Runs `which` pass of each configured cloud, each observed when it starts, and adds up
/// their reports.
async fn pass(
    lambda: Option<&tokio::sync::Mutex<GpuCloudsCollector>>,
    runpod: Option<&runpod::RunPodCollector>,
    which: Pass,
) -> PassReport {
    let mut r = PassReport::default();
    if let Some(l) = lambda {
        let mut l = l.lock().await;
        r.add(&match which {
            Pass::Availability => l.availability(Utc::now()).await,
            Pass::Offerings => l.offerings(Utc::now()).await,
        });
    }
    if let Some(rp) = runpod {
        r.add(&match which {
            Pass::Availability => rp.availability(Utc::now()).await,
            Pass::Offerings => rp.offerings(Utc::now()).await,
        });
    }
    r
}

#[cfg(test)]
capsight_runtime::documented_defaults_test!("gpuclouds", GpuCloudsSettings);
