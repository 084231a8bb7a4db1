//! The scheduling loop: which keys exist, which are due, how many probes run at once.
//!
//! Contract:
//! * keys = for each probed region, every (zone offering the type, catalog type, market) the
//!   cloud's instance-type offerings report (types filtered by `probe.instance_types`), plus the
//!   explicit `probe.keys`; re-discovered every `probe.demand_refresh` together with demand;
//! * every `probe.tick` a planning pass takes the due keys (the [`Planner`]: demand first, then
//!   the most overdue) that are not already being probed, at most `probe.max_per_pass`, and
//!   starts a probe for each, at most `probe.max_concurrent` in flight; each outcome goes back to
//!   the planner (cadence, backoff);
//! * at start-up the outbox is re-published (signals of done probes the broker never
//!   acknowledged, see `Prober::republish`);
//! * the sweeper runs at start-up and every `probe.sweep_interval`;
//! * `--once`: the start-up sweep, one planning pass, wait for its probes, exit;
//! * shutdown: no new probes; probes in flight finish their cleanup (up to
//!   `probe.shutdown_grace`).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, MutexGuard},
};

use capsight_proto::domain::{CapacityKey, InstanceType};
use capsight_runtime::shutdown::Shutdown;
use chrono::Utc;
use rand::{SeedableRng, rngs::StdRng};
use tokio::{sync::Semaphore, task::JoinSet};

use crate::{
    demand,
    plan::Planner,
    prober::{Planned, ProbeReport, Prober},
    sweep,
};

/// A configuration the scheduler cannot run with.
#[derive(Debug, thiserror::Error)]
#[error("probe.{field}: {reason}")]
pub struct ConfigError {
    field: &'static str,
    reason: String,
}

/// The prober's scheduler.
#[derive(Debug)]
pub struct Scheduler {
    prober: Arc<Prober>,
    configured: Vec<CapacityKey>,
    types: Vec<InstanceType>,
    planner: Mutex<Planner>,
    keys: Mutex<Vec<CapacityKey>>,
    in_flight: Mutex<HashSet<CapacityKey>>,
    semaphore: Arc<Semaphore>,
    rng: Mutex<StdRng>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // a poisoned lock only means a task panicked mid-update; the plan stays usable
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Scheduler {
    /// A scheduler over `prober` (validates `probe.keys` and `probe.instance_types`).
    pub fn new(prober: Arc<Prober>) -> Result<Self, ConfigError> {
        let s = prober.settings();
        let configured = s
            .keys
            .iter()
            .map(|k| {
                k.parse::<CapacityKey>().map_err(|e| ConfigError {
                    field: "keys",
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let types = s
            .instance_types
            .iter()
            .map(|t| {
                use capsight_proto::domain::Provider;
                // a type of any provider (p5.48xlarge, Standard_ND96isr_H100_v5)
                Provider::ALL
                    .iter()
                    .find_map(|p| InstanceType::parse("probe.instance_types", *p, t).ok())
                    .ok_or_else(|| ConfigError {
                        field: "instance_types",
                        reason: format!("{t:?} is not an instance type of any provider"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if s.max_concurrent == 0 || s.max_per_pass == 0 {
            return Err(ConfigError {
                field: "max_concurrent",
                reason: "max_concurrent and max_per_pass must be at least 1".into(),
            });
        }
        Ok(Self {
            semaphore: Arc::new(Semaphore::new(s.max_concurrent)),
            planner: Mutex::new(Planner::new(s.cadence.clone())),
            prober,
            configured,
            types,
            keys: Mutex::new(Vec::new()),
            in_flight: Mutex::new(HashSet::new()),
            rng: Mutex::new(StdRng::from_os_rng()),
        })
    }

    /// The prober.
    pub fn prober(&self) -> &Arc<Prober> {
        &self.prober
    }

    /// The keys being planned.
    pub fn keys(&self) -> Vec<CapacityKey> {
        lock(&self.keys).clone()
    }

    /// Discovers the keys (catalog x offerings x markets, plus `probe.keys`) and tracks new ones.
    pub async fn discover(&self) -> usize {
        let s = self.prober.settings();
        let mut keys: Vec<CapacityKey> = self.configured.clone();
        for adapter in self.prober.adapters() {
            let region = adapter.region().clone();
            let types: Vec<InstanceType> = self
                .prober
                .catalog()
                .offered_in(adapter.provider(), &region)
                .map(|t| t.instance_type.clone())
                .filter(|t| self.types.is_empty() || self.types.contains(t))
                .collect();
            if types.is_empty() {
                continue;
            }
            self.prober
                .limit(adapter.provider().as_str(), "DescribeInstanceTypeOfferings")
                .await;
            match adapter.instance_type_offerings(&types).await {
                Ok(offerings) => {
                    for o in offerings {
                        let Some(t) = types.iter().find(|t| t.as_str() == o.instance_type) else {
                            continue;
                        };
                        for market in &s.markets {
                            keys.push(CapacityKey {
                                provider: adapter.provider(),
                                region: region.clone(),
                                zone: Some(o.zone.clone()),
                                instance_type: t.clone(),
                                market: *market,
                            });
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(%region, error = %e, "offerings unavailable; probing region-level keys");
                    for t in &types {
                        for market in &s.markets {
                            keys.push(CapacityKey {
                                provider: adapter.provider(),
                                region: region.clone(),
                                zone: None,
                                instance_type: t.clone(),
                                market: *market,
                            });
                        }
                    }
                }
            }
        }
        keys.sort();
        keys.dedup();
        let now = Utc::now();
        {
            let mut planner = lock(&self.planner);
            for k in &keys {
                planner.track(k.clone(), now);
            }
        }
        let n = keys.len();
        *lock(&self.keys) = keys;
        n
    }

    /// Re-reads tenant demand and refusals from `preflight_log`; keeps the previous ones when it
    /// fails.
    pub async fn refresh_demand(&self) {
        let s = self.prober.settings();
        match demand::read(self.prober.audit().client(), s.demand_window, Utc::now()).await {
            Ok(rows) => {
                let keys = self.keys();
                let weights = demand::per_key(&rows, &keys, s.demand_window);
                let refused = demand::refused(&rows, &keys);
                let mut planner = lock(&self.planner);
                planner.set_demand(&weights);
                planner.set_refused(&refused);
                drop(planner);
                tracing::debug!(keys = keys.len(), asked = rows.len(), "demand refreshed");
            }
            Err(e) => {
                tracing::warn!(error = %e, "demand unavailable; keeping the previous weights")
            }
        }
    }

    /// The due keys a pass would start now, in priority order.
    pub fn plan(&self) -> Vec<Planned> {
        let now = Utc::now();
        let planner = lock(&self.planner);
        let in_flight = lock(&self.in_flight);
        planner
            .due(now)
            .into_iter()
            .filter(|k| !in_flight.contains(k))
            .take(self.prober.settings().max_per_pass)
            .enumerate()
            .map(|(i, key)| Planned {
                demand: planner.demand(&key),
                priority: u32::try_from(i).unwrap_or(u32::MAX),
                key,
            })
            .collect()
    }

    /// Starts one planning pass's probes on `tasks`; returns how many.
    pub fn spawn_pass(self: &Arc<Self>, tasks: &mut JoinSet<ProbeReport>) -> usize {
        let planned = self.plan();
        let n = planned.len();
        for p in planned {
            lock(&self.in_flight).insert(p.key.clone());
            let this = Arc::clone(self);
            tasks.spawn(async move {
                let permit = Arc::clone(&this.semaphore).acquire_owned().await;
                let report = this.prober.probe(&p).await;
                drop(permit);
                {
                    let mut rng = lock(&this.rng);
                    lock(&this.planner).record(&p.key, report.outcome, Utc::now(), &mut *rng);
                }
                lock(&this.in_flight).remove(&p.key);
                report
            });
        }
        n
    }

    /// Runs until `shutdown` (or one pass with `once`); with `once`, returns the reports of the
    /// probes run (a long run keeps none).
    pub async fn run(self: Arc<Self>, once: bool, shutdown: Shutdown) -> Vec<ProbeReport> {
        let s = self.prober.settings().clone();
        if let Err(e) = self.prober.republish().await {
            tracing::error!(error = %e, "probe outbox not read; its signals wait for the next start");
        }
        sweep::sweep(&self.prober, Utc::now()).await;
        let keys = self.discover().await;
        self.refresh_demand().await;
        tracing::info!(keys, once, "prober planning");
        let mut tasks = JoinSet::new();
        if once {
            let mut reports = Vec::new();
            self.spawn_pass(&mut tasks);
            while let Some(r) = tasks.join_next().await {
                collect(&mut reports, r);
            }
            self.prober.drain(s.shutdown_grace).await;
            return reports;
        }
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(s.tick.max(std::time::Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweeps = tokio::time::interval_at(
            start + s.sweep_interval,
            s.sweep_interval.max(std::time::Duration::from_secs(1)),
        );
        let mut refresh = tokio::time::interval_at(
            start + s.demand_refresh,
            s.demand_refresh.max(std::time::Duration::from_secs(1)),
        );
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                Some(r) = tasks.join_next(), if !tasks.is_empty() => { collect(&mut Vec::new(), r); }
                _ = tick.tick() => { self.spawn_pass(&mut tasks); }
                _ = sweeps.tick() => { sweep::sweep(&self.prober, Utc::now()).await; }
                _ = refresh.tick() => {
                    self.discover().await;
                    self.refresh_demand().await;
                }
            }
        }
        tracing::info!(
            in_flight = tasks.len(),
            "prober stopping; letting probes in flight clean up"
        );
        let drained = tokio::time::timeout(s.shutdown_grace, async {
            while let Some(r) = tasks.join_next().await {
                collect(&mut Vec::new(), r);
            }
        })
        .await;
        if drained.is_err() {
            tracing::error!(
                left = tasks.len(),
                "probes still in flight at the end of the grace period; the sweeper removes what they leave"
            );
            tasks.abort_all();
        }
        self.prober.drain(s.shutdown_grace).await;
        Vec::new()
    }
}

fn collect(reports: &mut Vec<ProbeReport>, r: Result<ProbeReport, tokio::task::JoinError>) {
    match r {
        Ok(r) => reports.push(r),
        Err(e) => tracing::error!(error = %e, "probe task failed"),
    }
}
