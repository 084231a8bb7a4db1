//! The status collector (`capsight-status`): polls provider status feeds and publishes a
//! `StatusEvent` signal per affected capacity key whenever an incident appears, changes or ends.
//!
//! Contract:
//! * feeds are configured in `[[status.feeds]]` ([`feeds::FeedConfig`]) and polled every
//!   `status.poll_interval`; only changes are published ([`tracker`]);
//! * a feed that is down, slow or malformed is logged and skipped; the others carry on, and its
//!   last known state is kept;
//! * a region-wide incident fans out to every key of the region ([`KeyUniverse`]: each offered
//!   GPU instance type x each configured market), so every scorer partition sees it;
//! * signal ids derive from (feed, incident, severity, resolved, key, observation time): a
//!   restart forgets the feeds' state and announces their open incidents again as new
//!   observations, never one id at two observation times (which `signals` and the scorer's
//!   window, keyed by time and id, would keep and count twice);
//! * if publishing fails, the feed's state is forgotten so the next poll publishes it again.

pub mod feeds;
pub mod tracker;

use std::{sync::Arc, time::Duration};

use capsight_proto::domain::{
    CapacityKey, Market, Payload, Provider, Region, Signal, SignalId, SignalSource, StatusEvent,
};
use capsight_publisher::Publisher;
use capsight_runtime::shutdown::Shutdown;
use serde::Deserialize;

use crate::{
    feeds::{Feed, FeedConfig, FeedError, Incident},
    tracker::Tracker,
};

/// Largest feed body read, in bytes.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// Titles are cut to this many bytes in signals.
const MAX_TITLE: usize = 1024;

/// The `[status]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusSettings {
    /// How often every feed is polled.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Per-request timeout.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Markets a region-wide incident applies to.
    pub markets: Vec<Market>,
    /// The feeds.
    #[serde(default)]
    pub feeds: Vec<FeedConfig>,
}

/// Which capacity keys exist in a region: what a region-wide incident fans out to.
pub trait KeyUniverse: Send + Sync {
    /// Every key of `provider`/`region` in `markets` (region-wide: no zone).
    fn keys(&self, provider: Provider, region: &Region, markets: &[Market]) -> Vec<CapacityKey>;
}

/// The GPU catalog as the key universe: every catalog type offered in the region, in each
/// market (capacity blocks only for types that have them).
#[derive(Debug)]
pub struct CatalogKeys(pub capsight_catalog::Catalog);

impl KeyUniverse for CatalogKeys {
    fn keys(&self, provider: Provider, region: &Region, markets: &[Market]) -> Vec<CapacityKey> {
        self.0
            .offered_in(provider, region)
            .flat_map(|t| {
                markets
                    .iter()
                    .filter(|m| **m != Market::CapacityBlock || t.capacity_blocks)
                    .map(|m| CapacityKey {
                        provider,
                        region: region.clone(),
                        zone: None,
                        instance_type: t.instance_type.clone(),
                        market: *m,
                    })
            })
            .collect()
    }
}

/// Errors that stop the collector from starting.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// A feed is misconfigured.
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// Two feeds share a name.
    #[error("two status feeds are named {0}")]
    DuplicateFeed(String),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Feeds fetched and parsed.
    pub feeds_ok: usize,
    /// Feeds down or malformed.
    pub feeds_failed: usize,
    /// Incidents new, changed or ended.
    pub changes: usize,
    /// Signals published.
    pub signals: usize,
}

/// The collector's state.
pub struct Collector {
    feeds: Vec<Feed>,
    markets: Vec<Market>,
    http: reqwest::Client,
    tracker: Tracker,
    publisher: Publisher,
    universe: Arc<dyn KeyUniverse>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("feeds", &self.feeds.len())
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// Validates the feeds and builds the HTTP client.
    pub fn new(
        settings: &StatusSettings,
        publisher: Publisher,
        universe: Arc<dyn KeyUniverse>,
    ) -> Result<Self, StatusError> {
        let feeds = settings
            .feeds
            .iter()
            .map(Feed::new)
            .collect::<Result<Vec<_>, _>>()?;
        let mut names: Vec<&str> = feeds.iter().map(|f| f.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(StatusError::DuplicateFeed(w[0].to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .user_agent(concat!("capsight-status/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            feeds,
            markets: settings.markets.clone(),
            http,
            tracker: Tracker::default(),
            publisher,
            universe,
        })
    }

    async fn fetch(&self, feed: &Feed) -> Result<Vec<Incident>, String> {
        let resp = self
            .http
            .get(&feed.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(format!("body larger than {MAX_BODY} bytes"));
        }
        let body = resp.text().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_BODY {
            return Err(format!("body larger than {MAX_BODY} bytes"));
        }
        feeds::parse(feed, &body).map_err(|e| e.to_string())
    }

    /// Polls every feed once and publishes the changes.
    pub async fn poll_once(&mut self) -> PollReport {
        let mut report = PollReport::default();
        for i in 0..self.feeds.len() {
            let feed = self.feeds[i].clone();
            let incidents = match self.fetch(&feed).await {
                Ok(incidents) => incidents,
                Err(reason) => {
                    report.feeds_failed += 1;
                    tracing::warn!(feed = %feed.name, url = %feed.url, %reason, "status feed unavailable; keeping its last state");
                    continue;
                }
            };
            report.feeds_ok += 1;
            let changes = self.tracker.update(&feed.name, incidents);
            report.changes += changes.len();
            match self.publish(&feed, &changes).await {
                Ok(n) => report.signals += n,
                Err(e) => {
                    tracing::error!(feed = %feed.name, error = %e, "publishing status signals failed; will republish next poll");
                    self.tracker.forget(&feed.name);
                }
            }
        }
        report
    }

    async fn publish(
        &self,
        feed: &Feed,
        changes: &[Incident],
    ) -> Result<usize, capsight_publisher::PublishError> {
        let now = chrono::Utc::now();
        let mut n = 0;
        for inc in changes {
            tracing::info!(feed = %feed.name, incident = %inc.id, severity = %inc.severity, resolved = inc.resolved, regions = inc.regions.len(), "status change");
            for region in &inc.regions {
                for key in self.universe.keys(feed.provider, region, &self.markets) {
                    let key_text = key.to_string();
                    let signal = Signal {
                        id: SignalId::derived(
                            SignalSource::Status,
                            &[
                                &feed.name,
                                &inc.id,
                                inc.severity.as_str(),
                                if inc.resolved { "resolved" } else { "open" },
                                &key_text,
                                &now.timestamp_millis().to_string(),
                            ],
                        ),
                        observed_at: now,
                        source: SignalSource::Status,
                        tenant: None,
                        key,
                        payload: Payload::Status(StatusEvent {
                            feed: feed.name.clone(),
                            incident_id: truncate(&inc.id, 200),
                            severity: inc.severity,
                            title: truncate(&inc.title, MAX_TITLE),
                            resolved: inc.resolved,
                            url: truncate(&inc.url, MAX_TITLE),
                        }),
                    };
                    self.publisher.publish(&signal).await?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The sections the status collector reads besides the kit's.
#[derive(Debug, Deserialize)]
pub struct StatusConfig {
    /// `[status]`.
    pub status: StatusSettings,
}

/// The process: polls every feed every `status.poll_interval` (or once) until the shutdown
/// fires.
pub async fn run(
    c: &capsight_collector_kit::Collector<StatusConfig>,
    once: bool,
) -> Result<(), capsight_collector_kit::CollectorError> {
    let status = &c.config.status;
    let keys = Arc::new(CatalogKeys((*c.catalog).clone()));
    let collector = Collector::new(status, c.publisher.clone(), keys)
        .map_err(|e| capsight_collector_kit::CollectorError::setup("status feeds", e))?;
    tracing::info!(feeds = status.feeds.len(), interval = ?status.poll_interval, "status collector starting");
    let total = poll_until(collector, status.poll_interval, once, c.shutdown.clone()).await;
    tracing::info!(?total, "status collector stopped");
    Ok(())
}

/// Polls until `shutdown` fires (or once), then flushes the publisher.
pub async fn poll_until(
    mut collector: Collector,
    interval: Duration,
    once: bool,
    shutdown: Shutdown,
) -> PollReport {
    let mut total = PollReport::default();
    let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tick.tick() => {
                let r = collector.poll_once().await;
                tracing::info!(feeds_ok = r.feeds_ok, feeds_failed = r.feeds_failed, changes = r.changes, signals = r.signals, "status poll done");
                total.feeds_ok += r.feeds_ok;
                total.feeds_failed += r.feeds_failed;
                total.changes += r.changes;
                total.signals += r.signals;
                if once { break; }
            }
        }
    }
    if let Err(e) = collector.publisher.flush(Duration::from_secs(30)).await {
        tracing::error!(error = %e, "flush at shutdown");
    }
    total
}
