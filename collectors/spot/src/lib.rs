//! The spot collector (`capsight-spot`): market signals for every watched region, each on its
//! own cadence.
//!
//! * **prices** (`spot.price_interval`, 5-15 min): spot price history since the last pass; one
//!   `SpotPrice` signal per new (zone, type) price point, observed at the point's own time
//!   (on GCP, with a `[gcp]` project: the Billing Catalog's Spot GPU price, one point per zone;
//!   Azure's list prices are region-wide: keys without a zone, observed at each pass);
//! * **placement scores** (`spot.placement_interval`): AWS caps distinct requests per account
//!   per day, so calls are budgeted (`spot.placement_calls_per_day`, reset at UTC midnight) and
//!   spread round-robin over types; each call's per-zone scores become `PlacementScore`
//!   signals (a provider without placement scores, Azure, is left out after its first answer);
//! * **offerings** (`spot.offerings_interval`): instance-type offerings per zone
//!   (`OfferingExposure`), and capacity-block offers for types that have them
//!   (`CapacityBlockOffer`);
//! * **Spot Advisor** (`spot.advisor_source`, a URL or a file; off when empty): interruption
//!   buckets and savings per region and type (`SpotAdvisory`).
//!
//! A signal id derives from what was observed and when (key, what — price point, placement
//! bucket, offering, block offer, advisor entry — and the observation time), so a retried
//! publish keeps its id and one id is never seen with two times: every poll, also the first
//! after a restart, is an observation of its own, stored and counted once. A region or source that fails is logged and
//! skipped; the others carry on.

pub mod advisor;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use capsight_catalog::Catalog;
use capsight_cloud::{CapacityBlockQuery, CloudAdapter, CloudError, PlacementScoreQuery, ZoneId};
use capsight_collector_kit::{Collector, CollectorError, observation};
use capsight_proto::domain::{
    CapacityBlockOffer, CapacityKey, InstanceType, Market, OfferingExposure, Payload,
    PlacementScore, SignalSource, SpotAdvisory, SpotPrice,
};
use capsight_publisher::Publisher;
use capsight_runtime::periodic::every;
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// The `[spot]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpotSettings {
    /// Spot price history cadence.
    #[serde(with = "humantime_serde")]
    pub price_interval: Duration,
    /// Placement score cadence.
    #[serde(with = "humantime_serde")]
    pub placement_interval: Duration,
    /// Placement score calls per UTC day, across all regions.
    pub placement_calls_per_day: u32,
    /// Instances asked for in placement score requests.
    pub placement_target_capacity: u32,
    /// Offerings and capacity-block cadence.
    #[serde(with = "humantime_serde")]
    pub offerings_interval: Duration,
    /// Spot Advisor cadence.
    #[serde(with = "humantime_serde")]
    pub advisor_interval: Duration,
    /// `spot-advisor-data.json` location: an http(s) URL or a file path; empty = off.
    #[serde(default)]
    pub advisor_source: String,
    /// AWS regions to watch; empty = every region the GPU catalog lists for AWS.
    #[serde(default)]
    pub regions: Vec<String>,
}

/// What a pass published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpotReport {
    /// Signals published.
    pub published: usize,
    /// Calls or sources that failed.
    pub errors: usize,
}

impl SpotReport {
    /// Counts one publish attempt: a success as published, a failure as an error.
    fn count(&mut self, published: bool) {
        if published {
            self.published += 1;
        } else {
            self.errors += 1;
        }
    }

    fn add(&mut self, other: SpotReport) {
        self.published += other.published;
        self.errors += other.errors;
    }
}

/// The collector's state.
pub struct SpotCollector {
    adapters: Vec<Arc<dyn CloudAdapter>>,
    catalog: Arc<Catalog>,
    settings: SpotSettings,
    publisher: Publisher,
    http: reqwest::Client,
    last_price_at: HashMap<String, DateTime<Utc>>,
    placement_day: Option<chrono::NaiveDate>,
    placement_calls: u32,
    placement_cursor: usize,
    /// Providers whose adapters have no placement scores.
    no_placement: std::collections::HashSet<capsight_proto::domain::Provider>,
    advice: BTreeMap<(String, String), advisor::Advice>,
}

impl std::fmt::Debug for SpotCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpotCollector")
            .field("regions", &self.adapters.len())
            .finish_non_exhaustive()
    }
}

impl SpotCollector {
    /// A collector over one adapter per watched region.
    pub fn new(
        adapters: Vec<Arc<dyn CloudAdapter>>,
        catalog: Arc<Catalog>,
        settings: SpotSettings,
        publisher: Publisher,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            adapters,
            catalog,
            settings,
            publisher,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            last_price_at: HashMap::new(),
            placement_day: None,
            placement_calls: 0,
            placement_cursor: 0,
            no_placement: std::collections::HashSet::new(),
            advice: BTreeMap::new(),
        })
    }

    fn types_in(&self, adapter: &dyn CloudAdapter) -> Vec<InstanceType> {
        self.catalog
            .offered_in(adapter.provider(), adapter.region())
            .map(|t| t.instance_type.clone())
            .collect()
    }

    /// Publishes a spot signal (see [`capsight_collector_kit::observation::publish`]).
    async fn publish(
        &self,
        key: CapacityKey,
        at: DateTime<Utc>,
        what: &[&str],
        payload: Payload,
    ) -> bool {
        observation::publish(&self.publisher, SignalSource::Spot, key, at, what, payload).await
    }

    fn key(
        adapter: &dyn CloudAdapter,
        zone: Option<ZoneId>,
        t: InstanceType,
        market: Market,
    ) -> CapacityKey {
        CapacityKey {
            provider: adapter.provider(),
            region: adapter.region().clone(),
            zone,
            instance_type: t,
            market,
        }
    }

    /// New spot price points since the last pass.
    pub async fn prices(&mut self, now: DateTime<Utc>) -> SpotReport {
        let mut report = SpotReport::default();
        let lookback = chrono::TimeDelta::from_std(self.settings.price_interval * 2)
            .unwrap_or(chrono::TimeDelta::hours(1));
        for adapter in self.adapters.clone() {
            let types = self.types_in(adapter.as_ref());
            let points = match adapter.spot_price_history(&types, now - lookback).await {
                Ok(p) => p,
                Err(e) => {
                    report.errors += 1;
                    tracing::warn!(region = %adapter.region(), error = %e, "spot price history failed");
                    continue;
                }
            };
            for p in points {
                let Ok(t) =
                    InstanceType::parse("instance_type", adapter.provider(), &p.instance_type)
                else {
                    continue;
                };
                // a zone the adapter could not map is skipped; no zone at all is a region-wide
                // price (Azure's list prices)
                if p.zone.is_none() && !p.zone_name.is_empty() {
                    continue;
                }
                let key = Self::key(adapter.as_ref(), p.zone.clone(), t, Market::Spot);
                let key_text = key.to_string();
                if self
                    .last_price_at
                    .get(&key_text)
                    .is_some_and(|last| p.at <= *last)
                {
                    continue;
                }
                let at = p.at.min(now);
                if self
                    .publish(
                        key,
                        at,
                        &["price", &p.at.to_rfc3339()],
                        Payload::SpotPrice(SpotPrice {
                            price_per_hour: p.usd_per_hour,
                            currency: "USD".into(),
                        }),
                    )
                    .await
                {
                    report.published += 1;
                    self.last_price_at.insert(key_text, p.at);
                } else {
                    report.errors += 1;
                }
            }
        }
        report
    }

    /// Placement scores for as many types as today's call budget allows, round-robin.
    pub async fn placement(&mut self, now: DateTime<Utc>) -> SpotReport {
        let mut report = SpotReport::default();
        if self.placement_day != Some(now.date_naive()) {
            self.placement_day = Some(now.date_naive());
            self.placement_calls = 0;
        }
        // every (region, type) pair, in a stable order, visited round-robin across passes
        let mut pairs = Vec::new();
        for adapter in self
            .adapters
            .iter()
            .filter(|a| !self.no_placement.contains(&a.provider()))
        {
            for t in self.types_in(adapter.as_ref()) {
                pairs.push((Arc::clone(adapter), t));
            }
        }
        if pairs.is_empty() {
            return report;
        }
        // spread the day's budget evenly over the passes of a day
        let passes_per_day = (86_400 / self.settings.placement_interval.as_secs().max(1)).max(1);
        let per_pass = u32::try_from(
            u64::from(self.settings.placement_calls_per_day).div_ceil(passes_per_day),
        )
        .unwrap_or(u32::MAX);
        let mut calls = 0;
        while calls < per_pass
            && self.placement_calls < self.settings.placement_calls_per_day
            && calls < u32::try_from(pairs.len()).unwrap_or(u32::MAX)
        {
            let (adapter, t) = pairs[self.placement_cursor % pairs.len()].clone();
            self.placement_cursor = self.placement_cursor.wrapping_add(1);
            calls += 1;
            self.placement_calls += 1;
            let query = PlacementScoreQuery {
                instance_types: vec![t.clone()],
                target_capacity: self.settings.placement_target_capacity.max(1),
                single_zone: true,
                regions: vec![adapter.region().clone()],
            };
            match adapter.spot_placement_scores(&query).await {
                Ok(entries) => {
                    for e in entries {
                        let Some(zone) = e.zone else { continue };
                        let key = Self::key(adapter.as_ref(), Some(zone), t.clone(), Market::Spot);
                        let bucket = now.timestamp()
                            / i64::try_from(self.settings.placement_interval.as_secs().max(1))
                                .unwrap_or(1);
                        report.count(
                            self.publish(
                                key,
                                now,
                                &["placement", &bucket.to_string()],
                                Payload::PlacementScore(PlacementScore {
                                    score: e.score.clamp(1, 10),
                                    target_capacity: query.target_capacity,
                                }),
                            )
                            .await,
                        );
                    }
                }
                Err(CloudError::Unsupported { provider, .. }) => {
                    // the provider has no placement scores: not an error, and not asked again
                    tracing::debug!(%provider, "no placement scores from this provider");
                    self.placement_calls = self.placement_calls.saturating_sub(1);
                    self.no_placement.insert(provider);
                }
                Err(e) => {
                    report.errors += 1;
                    tracing::warn!(region = %adapter.region(), %t, error = %e, "placement score failed");
                }
            }
        }
        report
    }

    /// Instance-type offerings per zone and capacity-block offers.
    pub async fn offerings(&mut self, now: DateTime<Utc>) -> SpotReport {
        let mut report = SpotReport::default();
        let day = now.date_naive().to_string();
        for adapter in self.adapters.clone() {
            let types = self.types_in(adapter.as_ref());
            match adapter.instance_type_offerings(&types).await {
                Ok(offers) => {
                    for o in offers {
                        let Ok(t) = InstanceType::parse(
                            "instance_type",
                            adapter.provider(),
                            &o.instance_type,
                        ) else {
                            continue;
                        };
                        for market in [Market::OnDemand, Market::Spot] {
                            let key = Self::key(
                                adapter.as_ref(),
                                Some(o.zone.clone()),
                                t.clone(),
                                market,
                            );
                            report.count(
                                self.publish(
                                    key,
                                    now,
                                    &["offering", &day],
                                    Payload::Offering(OfferingExposure { offered: true }),
                                )
                                .await,
                            );
                        }
                    }
                }
                Err(e) => {
                    report.errors += 1;
                    tracing::warn!(region = %adapter.region(), error = %e, "instance-type offerings failed");
                }
            }
            let block_types: Vec<InstanceType> = self
                .catalog
                .offered_in(adapter.provider(), adapter.region())
                .filter(|t| t.capacity_blocks)
                .map(|t| t.instance_type.clone())
                .collect();
            for t in block_types {
                let query = CapacityBlockQuery {
                    instance_type: t.clone(),
                    count: 1,
                    duration_hours: 24,
                    start_after: None,
                    end_before: None,
                };
                match adapter.capacity_block_offerings(&query).await {
                    Ok(blocks) => {
                        for b in blocks {
                            let (Some(start), Some(end)) = (b.start, b.end) else {
                                continue;
                            };
                            let key = Self::key(
                                adapter.as_ref(),
                                b.zone.clone(),
                                t.clone(),
                                Market::CapacityBlock,
                            );
                            let offer = CapacityBlockOffer {
                                offering_id: b.id.clone(),
                                instance_count: b.count.max(1),
                                start,
                                end,
                                duration_hours: b.duration_hours,
                                upfront_fee: b.upfront_fee,
                                currency: if b.currency.len() == 3 {
                                    b.currency.clone()
                                } else {
                                    "USD".into()
                                },
                            };
                            if end <= start || b.id.is_empty() {
                                continue;
                            }
                            report.count(
                                self.publish(
                                    key,
                                    now,
                                    &["block", &b.id],
                                    Payload::CapacityBlockOffer(offer),
                                )
                                .await,
                            );
                        }
                    }
                    Err(e) => {
                        report.errors += 1;
                        tracing::warn!(region = %adapter.region(), %t, error = %e, "capacity block offerings failed");
                    }
                }
            }
        }
        report
    }

    async fn fetch_advisor(&self) -> Result<String, String> {
        let src = &self.settings.advisor_source;
        if src.starts_with("http://") || src.starts_with("https://") {
            let resp = self.http.get(src).send().await.map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("HTTP {}", resp.status()));
            }
            resp.text().await.map_err(|e| e.to_string())
        } else {
            tokio::fs::read_to_string(src)
                .await
                .map_err(|e| format!("{src}: {e}"))
        }
    }

    /// Spot Advisor buckets that changed since the last pass.
    pub async fn advisor(&mut self, now: DateTime<Utc>) -> SpotReport {
        let mut report = SpotReport::default();
        if self.settings.advisor_source.is_empty() {
            return report;
        }
        let advice = match self
            .fetch_advisor()
            .await
            .and_then(|b| advisor::parse(&b).map_err(|e| e.to_string()))
        {
            Ok(a) => a,
            Err(e) => {
                report.errors += 1;
                tracing::warn!(source = %self.settings.advisor_source, error = %e, "spot advisor data unavailable");
                return report;
            }
        };
        for adapter in self.adapters.clone() {
            for t in self.types_in(adapter.as_ref()) {
                let id = (adapter.region().as_str().to_owned(), t.as_str().to_owned());
                let Some(a) = advice.get(&id).copied() else {
                    continue;
                };
                if self.advice.get(&id) == Some(&a) {
                    continue;
                }
                let key = Self::key(adapter.as_ref(), None, t, Market::Spot);
                let parts = [a.bucket.to_string(), a.savings_percent.to_string()];
                if self
                    .publish(
                        key,
                        now,
                        &["advisor", &parts[0], &parts[1]],
                        Payload::SpotAdvisory(SpotAdvisory {
                            interruption_bucket: a.bucket,
                            savings_percent: a.savings_percent,
                        }),
                    )
                    .await
                {
                    report.published += 1;
                    self.advice.insert(id, a);
                } else {
                    report.errors += 1;
                }
            }
        }
        report
    }

    /// Runs every source once (for `--once` and tests).
    pub async fn all_once(&mut self, now: DateTime<Utc>) -> SpotReport {
        let mut r = self.prices(now).await;
        r.add(self.placement(now).await);
        r.add(self.offerings(now).await);
        r.add(self.advisor(now).await);
        r
    }
}

/// The sections the spot collector reads besides the kit's.
#[derive(Debug, Deserialize)]
pub struct SpotConfig {
    /// `[cloud]`, `[azure]` (the operator's subscription; off when it names none) and `[gcp]`
    /// (with a project, its regions are watched too).
    #[serde(flatten)]
    pub clouds: capsight_cloud::regional::WatchedClouds,
    /// `[spot]`.
    pub spot: SpotSettings,
}

/// The process: every signal family on its own cadence (or all once) until the shutdown fires.
pub async fn run(c: &Collector<SpotConfig>, once: bool) -> Result<(), CollectorError> {
    let config = &c.config;
    let adapters = c
        .adapters(&config.clouds, &config.spot.regions, "spot")
        .await?;
    let regions = adapters.len();
    let collector = tokio::sync::Mutex::new(
        SpotCollector::new(
            adapters,
            Arc::clone(&c.catalog),
            config.spot.clone(),
            c.publisher.clone(),
        )
        .map_err(|e| CollectorError::setup("spot collector", e))?,
    );
    tracing::info!(regions, "spot collector starting");
    if once {
        let r = collector.lock().await.all_once(Utc::now()).await;
        tracing::info!(published = r.published, errors = r.errors, "spot pass done");
        return Ok(());
    }
    let (s, col, sd) = (&config.spot, &collector, &c.shutdown);
    // Each signal family: its pass on its own cadence, logged under `what`.
    macro_rules! every_pass {
        ($interval:ident, $pass:ident, $what:literal) => {
            every(s.$interval, false, sd, || async move {
                let r = col.lock().await.$pass(Utc::now()).await;
                tracing::info!(published = r.published, errors = r.errors, $what);
            })
        };
    }
    tokio::join!(
        every_pass!(price_interval, prices, "spot prices"),
        every_pass!(placement_interval, placement, "placement scores"),
        every_pass!(
            offerings_interval,
            offerings,
            "offerings and capacity blocks"
        ),
        every_pass!(advisor_interval, advisor, "spot advisor"),
    );
    Ok(())
}
