//! `capsight-notify`: tenant notifications by webhook — the subscription use cases the gateway
//! serves ([`manage`]) and the `capsight-notifier` process that delivers ([`start`]).
//!
//! Contract (docs/notifications.md):
//! * **Sources**: launch transitions (`launch_events`: fallback, standby switch = interruption
//!   warning + standby started, standby stopped, reaper termination) and label transitions
//!   (`alerts`, written by the scorer with its alert cooldown). Each is read by event time
//!   from a cursor per source (`notify_cursors`), going back `notify.lookback` behind it so a
//!   late write is still seen; what was already queued is recognised by its id.
//! * **Fan-out**: an event becomes one outbox row (`notify_outbox`) per subscription that
//!   wants it ([`events::wants`]: a launch's events only for its own tenant), with an id stable
//!   across replays (the `idempotency-key` header), unless the subscription's cooldown
//!   suppresses it. The cursor moves only after the rows are written, so a crash re-reads and
//!   never loses an event.
//! * **Delivery**: pending rows (no outcome in `notify_deliveries`) go out in event order per
//!   subscription, signed, retried with exponential backoff; after `notify.max_attempts` the
//!   outcome is `dead` (the dead-letter store tenants list). At least once: a crash between a
//!   receiver's answer and the outcome's write sends it again with the same id.
//! * **One notifier**: run a single replica (Kubernetes: `replicas: 1`, `Recreate`). Two
//!   replicas queue the same ids (the outbox collapses them) but may each deliver a
//!   notification once; receivers de-duplicate by the idempotency id.
//! * **Bounds**: a tenant's oldest `notify.max_subscriptions_per_tenant` subscriptions are
//!   served, deliveries to one subscription are sequential and at most
//!   `notify.max_concurrent_deliveries` subscriptions are served at once.

pub mod deliver;
pub mod events;
pub mod manage;
pub mod metrics;
pub mod model;
pub mod payload;
pub mod settings;
pub mod store;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
};

use capsight_catalog::Catalog;
use capsight_clickhouse::rows::{NotifyDeliveryRow, NotifyOutboxRow};
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::{TenantHasher, TenantId};
use chrono::Utc;
use tokio::{sync::Semaphore, task::JoinSet};

use crate::{
    deliver::{Deliverer, Outcome},
    events::{Decision, Event, Memory},
    model::{NetworkPolicy, Subscription},
    store::{NotifyStore, SourceTable, StoreError},
};
pub use settings::{NotifierConfig, NotifySettings};

/// Why the notifier could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Bad configuration or a dependency that does not build.
    #[error("{0}")]
    Startup(String),
    /// ClickHouse.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the notifier runs on.
#[derive(Debug, Clone)]
pub struct Deps {
    /// The notification tables.
    pub store: NotifyStore,
    /// The GPU catalog (GPU-model selectors).
    pub catalog: Arc<Catalog>,
    /// Derives the webhook secrets.
    pub hasher: TenantHasher,
}

impl Deps {
    /// From the configuration: ClickHouse client, embedded catalog, tenant hasher.
    pub fn from_config(config: &NotifierConfig) -> Result<Self, NotifyError> {
        let startup =
            |what: &str, e: &dyn std::fmt::Display| NotifyError::Startup(format!("{what}: {e}"));
        Ok(Self {
            store: NotifyStore::new(
                config
                    .clickhouse
                    .client()
                    .map_err(|e| startup("clickhouse", &e))?,
            ),
            catalog: Arc::new(Catalog::embedded().map_err(|e| startup("catalog", &e))?),
            hasher: config
                .tenancy
                .hasher()
                .map_err(|e| startup("tenancy", &e))?,
        })
    }
}

/// A started notifier.
#[derive(Debug)]
pub struct Running {
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Waits until it stopped (after the shutdown signal and the in-flight attempts).
    pub async fn join(self) -> Result<(), NotifyError> {
        self.task
            .await
            .map_err(|e| NotifyError::Startup(format!("notifier task: {e}")))
    }
}

/// The process: [`start`] with [`Deps::from_config`], then [`Running::join`].
pub async fn run(config: NotifierConfig, shutdown: Shutdown) -> Result<(), NotifyError> {
    let deps = Deps::from_config(&config)?;
    start(config, deps, shutdown).await?.join().await
}

/// Starts the notifier: reads its cursors and memory, then fans out and delivers every
/// `notify.interval` until `shutdown`.
pub async fn start(
    config: NotifierConfig,
    deps: Deps,
    shutdown: Shutdown,
) -> Result<Running, NotifyError> {
    capsight_runtime::metrics::describe(metrics::METRICS);
    let s = config.notify;
    if s.interval.is_zero() || s.max_attempts == 0 || s.max_concurrent_deliveries == 0 {
        return Err(NotifyError::Startup(
            "notify.interval, notify.max_attempts and notify.max_concurrent_deliveries must be > 0"
                .into(),
        ));
    }
    let policy =
        NetworkPolicy::from_settings(&s).map_err(|e| NotifyError::Startup(e.to_string()))?;
    let deliverer = Deliverer {
        policy,
        timeout: s.request_timeout,
        max_attempts: s.max_attempts,
        backoff_initial: s.backoff_initial,
        backoff_max: s.backoff_max,
        max_url_length: s.max_url_length,
    };
    let mut n = Notifier {
        semaphore: Arc::new(Semaphore::new(
            usize::try_from(s.max_concurrent_deliveries).unwrap_or(1),
        )),
        settings: s,
        deps,
        deliverer,
        memory: Memory::default(),
        cursors: HashMap::new(),
        busy: Arc::default(),
        tasks: JoinSet::new(),
        shutdown: shutdown.clone(),
    };
    n.resume().await?;
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(n.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = n.tick().await {
                tracing::warn!(error = %e, "notifier tick failed; retrying next tick");
            }
            while n.tasks.try_join_next().is_some() {}
        }
        // in-flight attempts finish and record; waiting ones stay pending
        while n.tasks.join_next().await.is_some() {}
        tracing::info!("notifier stopped");
    });
    tracing::info!("capsight-notifier running");
    Ok(Running { task })
}

struct Notifier {
    settings: NotifySettings,
    deps: Deps,
    deliverer: Deliverer,
    memory: Memory,
    cursors: HashMap<&'static str, u64>,
    busy: Arc<Mutex<HashSet<String>>>,
    semaphore: Arc<Semaphore>,
    tasks: JoinSet<()>,
    shutdown: Shutdown,
}

fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Notifier {
    /// Reads the cursors (a source never read starts now) and remembers what was queued
    /// within the look-back and the longest cooldown before them.
    async fn resume(&mut self) -> Result<(), NotifyError> {
        let start = now_ms().saturating_sub(ms(self.settings.settle));
        for src in SourceTable::ALL {
            let at = self.deps.store.cursor(src).await?.unwrap_or(start);
            self.cursors.insert(src.as_str(), at);
        }
        let since = self.horizon() / 1000;
        for r in self
            .deps
            .store
            .recent(u32::try_from(since).unwrap_or(0))
            .await?
        {
            self.memory.remember(&r);
        }
        tracing::info!(cursors = ?self.cursors, remembered = self.memory.len(), "notifier resumed");
        Ok(())
    }

    /// Event time before which nothing needs remembering, ms.
    fn horizon(&self) -> u64 {
        let oldest = self.cursors.values().copied().min().unwrap_or_else(now_ms);
        oldest
            .saturating_sub(ms(self.settings.lookback))
            .saturating_sub(ms(self.settings.max_cooldown))
    }

    /// The subscriptions served: each tenant's oldest `max_subscriptions_per_tenant`.
    async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        let all = self.deps.store.subscriptions().await?;
        let mut per: HashMap<String, u32> = HashMap::new();
        Ok(all
            .into_iter()
            .filter(|s| {
                let n = per.entry(s.tenant.clone()).or_default();
                *n += 1;
                *n <= self.settings.max_subscriptions_per_tenant
            })
            .collect())
    }

    async fn tick(&mut self) -> Result<(), NotifyError> {
        let subs = self.subscriptions().await?;
        self.fan_out(&subs).await?;
        self.memory.forget_before(self.horizon());
        self.deliver(&subs).await
    }

    /// Reads each source from its cursor (minus the look-back), queues what subscriptions
    /// want, then moves the cursor.
    async fn fan_out(&mut self, subs: &[Subscription]) -> Result<(), NotifyError> {
        let upper = now_ms().saturating_sub(ms(self.settings.settle));
        for src in SourceTable::ALL {
            let cursor = self.cursors.get(src.as_str()).copied().unwrap_or(upper);
            let from = cursor.saturating_sub(ms(self.settings.lookback));
            let to = upper.min(cursor.saturating_add(ms(self.settings.max_step)));
            if to <= cursor {
                continue;
            }
            let mut happenings = Vec::new();
            match src {
                SourceTable::LaunchEvents => {
                    for e in self.deps.store.launch_events(from, to).await? {
                        happenings
                            .extend(events::launch_happenings(&e).into_iter().map(|h| (h, None)));
                    }
                }
                SourceTable::Alerts => {
                    for a in self.deps.store.alerts(from, to).await? {
                        happenings.push((events::alert_happening(&a), Some(a)));
                    }
                }
            }
            let now = u32::try_from(Utc::now().timestamp()).unwrap_or(0);
            let mut rows: Vec<NotifyOutboxRow> = Vec::new();
            for (h, alert) in &happenings {
                for sub in subs {
                    if !events::wants(sub, h, alert.as_ref(), &self.deps.catalog) {
                        continue;
                    }
                    match self.memory.decide(sub, h) {
                        Decision::Seen => {}
                        Decision::Cooldown => metrics::decided(h.kind, "cooldown"),
                        Decision::Queue => {
                            let row = events::outbox_row(sub, h, now);
                            // later happenings of this read see it (cooldown)
                            self.memory.remember(&row);
                            metrics::decided(h.kind, "queued");
                            rows.push(row);
                        }
                    }
                }
            }
            if !rows.is_empty() {
                self.deps.store.enqueue(&rows).await?;
                tracing::info!(
                    source = src.as_str(),
                    queued = rows.len(),
                    "notifications queued"
                );
            }
            self.deps.store.save_cursor(src, to).await?;
            self.cursors.insert(src.as_str(), to);
        }
        Ok(())
    }

    /// Starts a delivery task for every subscription with pending notifications that has none
    /// running; drops the pending notifications of subscriptions no longer served.
    async fn deliver(&mut self, subs: &[Subscription]) -> Result<(), NotifyError> {
        let since = Utc::now().timestamp()
            - i64::try_from(self.settings.pending_window.as_secs()).unwrap_or(i64::MAX / 2);
        let pending = self
            .deps
            .store
            .pending(
                u32::try_from(since.max(0)).unwrap_or(0),
                self.settings.batch,
            )
            .await?;
        metrics::pending(pending.len());
        let mut by_sub: BTreeMap<String, Vec<(NotifyOutboxRow, Option<Event>)>> = BTreeMap::new();
        for r in pending {
            let event = serde_json::from_str::<Event>(&r.event).ok();
            by_sub
                .entry(r.subscription_id.clone())
                .or_default()
                .push((r, event));
        }
        let served: HashMap<&str, &Subscription> =
            subs.iter().map(|s| (s.id.as_str(), s)).collect();
        for (sub_id, mut queue) in by_sub {
            if self.busy_now(&sub_id) {
                continue;
            }
            let Some(sub) = served.get(sub_id.as_str()).map(|s| (*s).clone()) else {
                // deleted (or beyond the tenant's limit): nothing will be sent
                let now = u32::try_from(Utc::now().timestamp()).unwrap_or(0);
                let rows: Vec<NotifyDeliveryRow> = queue
                    .iter()
                    .map(|(r, _)| outcome_row(r, now, "dropped", 0, 0, "subscription deleted"))
                    .collect();
                self.deps.store.record(&rows).await?;
                for _ in &rows {
                    metrics::outcome(model::Format::Json, "dropped");
                }
                continue;
            };
            queue.sort_by_key(|(r, e)| {
                (
                    r.at,
                    r.at_ms,
                    r.subject.clone(),
                    e.as_ref()
                        .and_then(|e| e.launch.as_ref())
                        .map_or(0, |l| l.seq),
                    e.as_ref().map_or(0, |e| e.kind.rank()),
                )
            });
            let Ok(tenant) = TenantId::parse(&sub.tenant) else {
                tracing::warn!(
                    tenant = sub.tenant,
                    "subscription of an invalid tenant id; skipped"
                );
                continue;
            };
            let secret = self.deps.hasher.webhook_secret(&tenant, &sub.id);
            if let Ok(mut busy) = self.busy.lock() {
                busy.insert(sub_id.clone());
            }
            let job = Delivery {
                sub,
                secret,
                queue,
                store: self.deps.store.clone(),
                deliverer: self.deliverer.clone(),
                busy: Arc::clone(&self.busy),
                semaphore: Arc::clone(&self.semaphore),
                shutdown: self.shutdown.clone(),
            };
            self.tasks.spawn(job.run());
        }
        Ok(())
    }

    fn busy_now(&self, sub_id: &str) -> bool {
        self.busy.lock().map(|b| b.contains(sub_id)).unwrap_or(true)
    }
}

fn outcome_row(
    r: &NotifyOutboxRow,
    at: u32,
    outcome: &str,
    attempts: u32,
    status: u16,
    error: &str,
) -> NotifyDeliveryRow {
    NotifyDeliveryRow {
        id: r.id.clone(),
        tenant: r.tenant.clone(),
        subscription_id: r.subscription_id.clone(),
        kind: r.kind.clone(),
        at,
        outcome: outcome.to_owned(),
        attempts,
        status,
        error: error.to_owned(),
        event: r.event.clone(),
    }
}

/// One subscription's pending notifications, delivered in order by one task.
struct Delivery {
    sub: Subscription,
    secret: String,
    queue: Vec<(NotifyOutboxRow, Option<Event>)>,
    store: NotifyStore,
    deliverer: Deliverer,
    busy: Arc<Mutex<HashSet<String>>>,
    semaphore: Arc<Semaphore>,
    shutdown: Shutdown,
}

impl Delivery {
    async fn run(self) {
        let permit = self.semaphore.clone().acquire_owned().await;
        for (row, event) in &self.queue {
            if self.shutdown.is_triggered() {
                break;
            }
            let format = self.sub.format;
            let now = || u32::try_from(Utc::now().timestamp()).unwrap_or(0);
            let record = match event {
                None => outcome_row(row, now(), "dead", 0, 0, "the stored event does not decode"),
                Some(event) => match self
                    .deliverer
                    .deliver(&self.sub.url, format, &self.secret, event, &self.shutdown)
                    .await
                {
                    Outcome::Delivered { attempts, status } => {
                        outcome_row(row, now(), "delivered", attempts, status, "")
                    }
                    Outcome::Dead {
                        attempts,
                        status,
                        error,
                    } => {
                        tracing::warn!(
                            id = row.id,
                            subscription = row.subscription_id,
                            attempts,
                            error,
                            "notification dead-lettered"
                        );
                        outcome_row(row, now(), "dead", attempts, status, &error)
                    }
                    Outcome::Interrupted => break,
                },
            };
            if let Err(e) = self.store.record(std::slice::from_ref(&record)).await {
                // stays pending: sent again later with the same id (at least once)
                tracing::warn!(id = row.id, error = %e, "recording a notification's outcome failed");
                break;
            }
            let outcome = if record.outcome == "delivered" {
                "delivered"
            } else {
                "dead"
            };
            metrics::outcome(format, outcome);
        }
        drop(permit);
        if let Ok(mut busy) = self.busy.lock() {
            busy.remove(&self.sub.id);
        }
    }
}
