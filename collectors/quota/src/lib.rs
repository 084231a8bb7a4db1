//! The quota collector (`capsight-quota`): reads the account's GPU family quotas in each watched
//! region and publishes them as headroom in instances of each catalog GPU type.
//!
//! Contract:
//! * every `quota.interval` (1-6 h in production) each (region, catalog type offered there,
//!   market) is read through the cloud adapter (`quota_headroom`: Service Quotas limit minus
//!   the vCPUs of running instances of the family; on GCP, with a `[gcp]` project, the GPU
//!   metric's limit minus its usage, or `GPUS_ALL_REGIONS` when that leaves less room);
//! * a reading is published when it differs from the last one published for its key, and again
//!   every `quota.heartbeat` even when unchanged, so the scorer knows it is still current;
//! * signal ids derive from (key, reading, observation time): every reading is one observation
//!   with an id of its own (a retried publish keeps it); a restart reads again and publishes new
//!   observations, never one id at two observation times (which `signals` and the scorer's
//!   window, keyed by time and id, would keep and count twice);
//! * a region whose quotas cannot be read (permission, outage) is logged and skipped; the others
//!   carry on. Quota says nothing about stock: the scorer uses it to tell "no quota" from "no
//!   capacity", never to lower a capacity score.

use std::{collections::HashMap, sync::Arc, time::Duration};

use capsight_catalog::Catalog;
use capsight_cloud::CloudAdapter;
use capsight_collector_kit::{Collector, CollectorError, observation};
use capsight_proto::domain::{CapacityKey, Market, Payload, QuotaReading, SignalSource};
use capsight_publisher::Publisher;
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// The `[quota]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSettings {
    /// How often quotas are read.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Unchanged readings are republished this often.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// AWS regions to watch; empty = every region the catalog lists for AWS.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Markets whose quotas are read (spot quotas are separate families).
    pub markets: Vec<Market>,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaReport {
    /// Readings published (changed or heartbeat).
    pub published: usize,
    /// Readings unchanged since the last publication.
    pub unchanged: usize,
    /// Reads that failed.
    pub errors: usize,
}

#[derive(Debug, Clone, PartialEq)]
struct Last {
    reading: QuotaReading,
    published_at: DateTime<Utc>,
}

/// The collector's state.
pub struct QuotaCollector {
    adapters: Vec<Arc<dyn CloudAdapter>>,
    catalog: Arc<Catalog>,
    settings: QuotaSettings,
    publisher: Publisher,
    last: HashMap<CapacityKey, Last>,
}

impl std::fmt::Debug for QuotaCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaCollector")
            .field("regions", &self.adapters.len())
            .finish_non_exhaustive()
    }
}

impl QuotaCollector {
    /// A collector over one adapter per watched region.
    pub fn new(
        adapters: Vec<Arc<dyn CloudAdapter>>,
        catalog: Arc<Catalog>,
        settings: QuotaSettings,
        publisher: Publisher,
    ) -> Self {
        Self {
            adapters,
            catalog,
            settings,
            publisher,
            last: HashMap::new(),
        }
    }

    /// Reads every quota once and publishes what changed or is due for a heartbeat.
    pub async fn poll_once(&mut self, now: DateTime<Utc>) -> QuotaReport {
        let mut report = QuotaReport::default();
        let heartbeat =
            chrono::TimeDelta::from_std(self.settings.heartbeat).unwrap_or(chrono::TimeDelta::MAX);
        for adapter in self.adapters.clone() {
            let region = adapter.region().clone();
            let types: Vec<_> = self
                .catalog
                .offered_in(adapter.provider(), &region)
                .map(|t| t.instance_type.clone())
                .collect();
            for instance_type in types {
                for market in self.settings.markets.clone() {
                    let key = CapacityKey {
                        provider: adapter.provider(),
                        region: region.clone(),
                        zone: None,
                        instance_type: instance_type.clone(),
                        market,
                    };
                    let h = match adapter.quota_headroom(&instance_type, market).await {
                        Ok(h) => h,
                        Err(e) => {
                            report.errors += 1;
                            tracing::warn!(%key, error = %e, "quota read failed");
                            continue;
                        }
                    };
                    let reading = QuotaReading {
                        quota_code: h.quota_code,
                        limit: h.limit_vcpus,
                        used: h.used_vcpus,
                        headroom_instances: h.headroom_instances,
                    };
                    let due = self
                        .last
                        .get(&key)
                        .is_none_or(|l| l.reading != reading || now - l.published_at >= heartbeat);
                    if !due {
                        report.unchanged += 1;
                        continue;
                    }
                    let signal = observation::signal(
                        SignalSource::Quota,
                        &key,
                        now,
                        &[
                            &reading.quota_code,
                            &reading.limit.to_string(),
                            &reading.used.to_string(),
                            &now.timestamp_millis().to_string(),
                        ],
                        Payload::Quota(reading.clone()),
                    );
                    match self.publisher.publish(&signal).await {
                        Ok(()) => {
                            report.published += 1;
                            self.last.insert(
                                key,
                                Last {
                                    reading,
                                    published_at: now,
                                },
                            );
                        }
                        Err(e) => {
                            report.errors += 1;
                            tracing::error!(error = %e, "publishing a quota reading failed; retried next pass");
                        }
                    }
                }
            }
        }
        report
    }
}

/// The sections the quota collector reads besides the kit's.
#[derive(Debug, Deserialize)]
pub struct QuotaConfig {
    /// `[cloud]`, `[azure]` (the operator's subscription; off when it names none) and `[gcp]`
    /// (with a project, its regions are watched too).
    #[serde(flatten)]
    pub clouds: capsight_cloud::regional::WatchedClouds,
    /// `[quota]`.
    pub quota: QuotaSettings,
}

/// The process: polls every watched region's family quotas every `quota.interval` (or once)
/// until the shutdown fires.
pub async fn run(c: &Collector<QuotaConfig>, once: bool) -> Result<(), CollectorError> {
    let config = &c.config;
    let adapters = c
        .adapters(&config.clouds, &config.quota.regions, "quota")
        .await?;
    tracing::info!(regions = adapters.len(), interval = ?config.quota.interval, "quota collector starting");
    let collector = Arc::new(tokio::sync::Mutex::new(QuotaCollector::new(
        adapters,
        Arc::clone(&c.catalog),
        config.quota.clone(),
        c.publisher.clone(),
    )));
    capsight_runtime::periodic::every(config.quota.interval, once, &c.shutdown, || {
        let collector = Arc::clone(&collector);
        async move {
            let r = collector.lock().await.poll_once(chrono::Utc::now()).await;
            tracing::info!(
                published = r.published,
                unchanged = r.unchanged,
                errors = r.errors,
                "quota pass done"
            );
        }
    })
    .await;
    Ok(())
}
