//! Lifecycle of running launches (no GPU is held idle): a periodic reaper that terminates launches past
//! their maximum lifetime or idle TTL.
//!
//! Contract:
//! * A launch is considered from its first `running` transition (`launch_events`). Its maximum
//!   lifetime is the job's `max_lifetime_secs` (`launch_requests`), else
//!   `launcher.lifecycle.default_max_lifetime` (0 = none). Its idle TTL is the job's
//!   `idle_ttl_secs` (0 = never idle-terminated): it is idle when no activity heartbeat
//!   (`launch_activity`, written by `LaunchService.Heartbeat`) arrived for that long since the
//!   later of its running time and its latest heartbeat.
//! * Reaping terminates every instance the job ever recorded (the serving instance, an
//!   interrupted spot, a warm standby, a replacement), then appends `terminated` with the reason
//!   in `detail`. The cloud call comes first: if it fails, nothing is recorded and the next sweep
//!   retries; terminating an instance twice is harmless, so a crash between the two steps is too.
//! * With several replicas only the leader (the holder of the leadership lease,
//!   [`capsight_launch::lease::Leader`]) sweeps; should two ever overlap (a leader cut off from
//!   the broker finishing its sweep), they terminate the same instances and the job's lease in
//!   `append_next` lets only the first `terminated` through (nothing after a final state).
//! * Heartbeats capsight failed to record never make a launch idle: idleness also counts from
//!   the moment this reaper could last have missed one — its start (it does not know what
//!   happened before) and the end of the latest ClickHouse outage it saw (a sweep failed, then
//!   one succeeded) — so after an outage every launch gets a whole idle TTL to heartbeat again.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use capsight_clickhouse::{rows::LaunchEventRow, sql};
use capsight_cloud::tenants::{AccountError, TenantClouds};
use capsight_cloud::{CloudAdapter, CloudError, InstanceId, Provider, Region};
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::{SharedRegistry, TenantId};
use chrono::Utc;
use serde::Deserialize;

use crate::store::{LiveLaunch, Store, StoreError, follow_up, split_ids};
use capsight_proto::domain::{LaunchState, ReapCause};

/// `[launcher.lifecycle]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleSettings {
    /// How often running launches are checked.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Maximum lifetime of a launch whose job sets none; zero = unlimited.
    #[serde(with = "humantime_serde")]
    pub default_max_lifetime: Duration,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            default_max_lifetime: Duration::from_secs(72 * 3600),
        }
    }
}

/// Why a lifecycle step failed.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// ClickHouse.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No adapter for the tenant's account.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The cloud refused or failed.
    #[error(transparent)]
    Cloud(#[from] CloudError),
    /// The tenant is not (or no longer) in the registry.
    #[error("tenant {0:?} is not in the registry")]
    UnknownTenant(String),
    /// A stored row cannot be used.
    #[error("launch {job_id}: {reason}")]
    BadRow {
        /// Job.
        job_id: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<clickhouse::error::Error> for LifecycleError {
    fn from(e: clickhouse::error::Error) -> Self {
        Self::Store(StoreError::from(e))
    }
}

/// An adapter acting in `tenant`'s account in `region` (AWS).
pub async fn adapter_for(
    registry: &SharedRegistry,
    clouds: &dyn TenantClouds,
    tenant: &str,
    region: &str,
    job_id: &str,
) -> Result<Arc<dyn CloudAdapter>, LifecycleError> {
    adapter_on(registry, clouds, (tenant, "aws", region), job_id).await
}

/// An adapter acting in `tenant`'s account on `provider` (a recorded provider name; empty =
/// AWS, as rows before other providers) in `region`.
pub async fn adapter_on(
    registry: &SharedRegistry,
    clouds: &dyn TenantClouds,
    (tenant, provider, region): (&str, &str, &str),
    job_id: &str,
) -> Result<Arc<dyn CloudAdapter>, LifecycleError> {
    let id = TenantId::parse(tenant).map_err(|_| LifecycleError::UnknownTenant(tenant.into()))?;
    let t = registry
        .tenant(&id)
        .ok_or_else(|| LifecycleError::UnknownTenant(tenant.into()))?;
    let bad = |e: capsight_proto::domain::FieldError| LifecycleError::BadRow {
        job_id: job_id.into(),
        reason: e.to_string(),
    };
    let provider = if provider.is_empty() {
        Provider::Aws
    } else {
        Provider::parse("provider", provider).map_err(bad)?
    };
    let region = Region::parse("region", provider, region).map_err(bad)?;
    Ok(clouds.adapter_on(&t, provider, &region).await?)
}

/// Why a launch is reaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Ran for its whole maximum lifetime.
    MaxLifetime {
        /// The limit, seconds.
        limit_secs: u64,
    },
    /// No heartbeat for its idle TTL.
    Idle {
        /// The TTL, seconds.
        ttl_secs: u64,
        /// Seconds since the last activity (running time or heartbeat).
        idle_secs: u64,
    },
}

impl Reason {
    /// `max_lifetime` or `idle`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::MaxLifetime { .. } => "max_lifetime",
            Self::Idle { .. } => "idle",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // the prefixes are the proto's ReapCause: the notifier classifies by them
            Self::MaxLifetime { limit_secs } => {
                write!(f, "{} ({limit_secs}s)", ReapCause::MaxLifetime.prefix())
            }
            Self::Idle {
                ttl_secs,
                idle_secs,
            } => write!(
                f,
                "{}: no activity heartbeat for {idle_secs}s (idle TTL {ttl_secs}s)",
                ReapCause::Idle.prefix()
            ),
        }
    }
}

/// The facts about one running launch the verdict needs (seconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// First `running` transition.
    pub running_since: u64,
    /// Latest heartbeat, if any.
    pub last_heartbeat: Option<u64>,
    /// Maximum lifetime, seconds; 0 = unlimited.
    pub max_lifetime_secs: u64,
    /// Idle TTL, seconds; 0 = never.
    pub idle_ttl_secs: u64,
    /// Since when capsight could record every heartbeat (see the module contract).
    pub heard_since: u64,
}

/// Whether a launch with `facts` must end at `now` (pure). The lifetime wins over idleness
/// when both apply.
pub fn verdict(now: u64, facts: &Facts) -> Option<Reason> {
    let age = now.saturating_sub(facts.running_since);
    if facts.max_lifetime_secs > 0 && age >= facts.max_lifetime_secs {
        return Some(Reason::MaxLifetime {
            limit_secs: facts.max_lifetime_secs,
        });
    }
    if facts.idle_ttl_secs > 0 {
        let active = facts
            .last_heartbeat
            .map_or(facts.running_since, |h| h.max(facts.running_since))
            .max(facts.heard_since);
        let idle = now.saturating_sub(active);
        if idle >= facts.idle_ttl_secs {
            return Some(Reason::Idle {
                ttl_secs: facts.idle_ttl_secs,
                idle_secs: idle,
            });
        }
    }
    None
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct JobTime {
    tenant: String,
    job_id: String,
    t: u32,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct JobLimits {
    tenant: String,
    job_id: String,
    max_lifetime_secs: u64,
    idle_ttl_secs: u64,
}

type JobKey = (String, String);

/// Running launches, their running times, latest heartbeats and (lifetime, idle TTL).
type Read = (
    Vec<LiveLaunch>,
    BTreeMap<JobKey, u32>,
    BTreeMap<JobKey, u32>,
    BTreeMap<JobKey, (u64, u64)>,
);

/// One time per job of `ids` (`tenant/job_id` keys) from `statement` (selecting `tenant,
/// job_id, t`, one `?` for the keys).
async fn job_times(
    client: &clickhouse::Client,
    statement: sql::Statement,
    ids: &[String],
) -> Result<BTreeMap<JobKey, u32>, clickhouse::error::Error> {
    Ok(statement
        .query(client)
        .bind(ids)
        .fetch_all::<JobTime>()
        .await?
        .into_iter()
        .map(|r| ((r.tenant, r.job_id), r.t))
        .collect())
}

/// Whether the store could be read, as the reaper saw it.
#[derive(Debug)]
struct Hearing {
    /// Since when (unix seconds) no outage was seen.
    since: u64,
    /// The latest sweep failed.
    failing: bool,
}

/// The reaper.
#[derive(Debug, Clone)]
pub struct Reaper {
    store: Store,
    clouds: Arc<dyn TenantClouds>,
    registry: SharedRegistry,
    settings: LifecycleSettings,
    hearing: Arc<std::sync::Mutex<Hearing>>,
    /// Sweeps run only while this replica leads.
    leader: capsight_launch::lease::Leader,
}

fn unix_now() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

impl Reaper {
    /// A reaper over the launcher's store, tenants' clouds and registry.
    pub fn new(
        store: Store,
        clouds: Arc<dyn TenantClouds>,
        registry: SharedRegistry,
        settings: LifecycleSettings,
    ) -> Self {
        Self {
            store,
            clouds,
            registry,
            settings,
            hearing: Arc::new(std::sync::Mutex::new(Hearing {
                since: unix_now(),
                failing: false,
            })),
            leader: capsight_launch::lease::Leader::always(),
        }
    }

    /// Sweeps (in [`Reaper::run`]) only while `leader` leads.
    #[must_use]
    pub fn with_leader(mut self, leader: capsight_launch::lease::Leader) -> Self {
        self.leader = leader;
        self
    }

    /// Notes the outcome of reading the store at `now`; returns since when no outage was seen.
    fn heard(&self, ok: bool, now: u64) -> u64 {
        let mut h = self
            .hearing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !ok {
            h.failing = true;
        } else if h.failing {
            h.failing = false;
            h.since = now;
            tracing::info!(
                "ClickHouse readable again: idle launches get a whole idle TTL from now"
            );
        }
        h.since
    }

    /// Sweeps every `interval` until `shutdown` (one sweep with `once`), while this replica
    /// leads.
    pub async fn run(self, once: bool, shutdown: Shutdown) {
        let interval = self.settings.interval;
        capsight_runtime::periodic::every(interval, once, &shutdown, || async {
            if !self.leader.is_leader() {
                return;
            }
            match self.sweep().await {
                Ok(reaped) if !reaped.is_empty() => {
                    tracing::info!(count = reaped.len(), "lifecycle sweep terminated launches");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "lifecycle sweep failed; retrying next time"),
            }
        })
        .await;
    }

    /// One sweep: the launches it terminated, with the reason.
    pub async fn sweep(&self) -> Result<Vec<(String, Reason)>, LifecycleError> {
        let now = unix_now();
        let read = self.read().await;
        let heard_since = self.heard(read.is_ok(), now);
        let Some((running, since, beats, limits)) = read? else {
            return Ok(Vec::new());
        };
        let mut reaped = Vec::new();
        for l in running {
            let key = (l.tenant.clone(), l.job_id.clone());
            let Some(running_since) = since.get(&key) else {
                continue;
            };
            let (job_lifetime, idle_ttl) = limits.get(&key).copied().unwrap_or((0, 0));
            let facts = Facts {
                running_since: u64::from(*running_since),
                last_heartbeat: beats.get(&key).map(|t| u64::from(*t)),
                max_lifetime_secs: if job_lifetime > 0 {
                    job_lifetime
                } else {
                    self.settings.default_max_lifetime.as_secs()
                },
                idle_ttl_secs: idle_ttl,
                heard_since,
            };
            let Some(reason) = verdict(now, &facts) else {
                continue;
            };
            match self.reap(&l.tenant, &l.job_id, &reason).await {
                Ok(true) => {
                    crate::metrics::reaped(reason.metric_label());
                    reaped.push((l.job_id.clone(), reason));
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(job_id = l.job_id, tenant = l.tenant, error = %e, "cannot terminate an expired launch; retrying next sweep");
                }
            }
        }
        Ok(reaped)
    }

    /// The running launches with their running times, latest heartbeats and limits; `None`
    /// when none runs.
    async fn read(&self) -> Result<Option<Read>, LifecycleError> {
        let running: Vec<LiveLaunch> = self.store.running_launches().await?;
        if running.is_empty() {
            return Ok(None);
        }
        let ids = crate::store::job_keys(
            running
                .iter()
                .map(|l| (l.tenant.as_str(), l.job_id.as_str())),
        );
        let client = self.store.client();
        let since = job_times(client, sql::RUNNING_SINCE, &ids).await?;
        let beats = job_times(client, sql::LAST_HEARTBEATS, &ids).await?;
        let limits: BTreeMap<JobKey, (u64, u64)> = sql::JOB_LIMITS
            .query(client)
            .bind(&ids)
            .fetch_all::<JobLimits>()
            .await?
            .into_iter()
            .map(|r| ((r.tenant, r.job_id), (r.max_lifetime_secs, r.idle_ttl_secs)))
            .collect();
        Ok(Some((running, since, beats, limits)))
    }

    /// Terminates every instance of the job and records `terminated`; false when the job is
    /// no longer running.
    async fn reap(
        &self,
        tenant: &str,
        job_id: &str,
        reason: &Reason,
    ) -> Result<bool, LifecycleError> {
        let ended = terminate_running(
            (&self.store, &self.registry, self.clouds.as_ref()),
            (tenant, job_id),
            || {},
            |_| reason.to_string(),
        )
        .await?;
        if ended {
            tracing::info!(job_id, tenant, reason = %reason, "launch terminated by its lifecycle");
        }
        Ok(ended)
    }
}

/// Terminates every instance a `running` job names, runs `terminated` (a test failpoint), then
/// records `terminated` with the detail `detail` makes of the job's transitions. False when the
/// job is not running, or ended meanwhile by another task (a cancel).
pub(crate) async fn terminate_running(
    (store, registry, clouds): (&Store, &SharedRegistry, &dyn TenantClouds),
    (tenant, job_id): (&str, &str),
    terminated: impl FnOnce(),
    detail: impl FnOnce(&[LaunchEventRow]) -> String,
) -> Result<bool, LifecycleError> {
    let events = store.events(tenant, job_id, None).await?;
    let Some(last) = events.last() else {
        return Ok(false);
    };
    if last.state != LaunchState::Running {
        return Ok(false);
    }
    terminate_all(registry, clouds, &events).await?;
    terminated();
    let row = follow_up(last, LaunchState::Terminated, detail(&events));
    Ok(store.append_next(row).await?.is_some())
}

/// Every instance id the job's transitions name (instance ids and `standby=` ids in
/// details), by region.
pub fn instances_by_region(
    events: &[LaunchEventRow],
) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for e in events {
        let ids = out
            .entry((e.provider.clone(), e.region.clone()))
            .or_default();
        ids.extend(split_ids(&e.instance_id));
        ids.extend(crate::standby::detail_standby_ids(&e.detail));
    }
    out.retain(|_, ids| !ids.is_empty());
    out
}

/// Terminates every instance the job's transitions name.
pub async fn terminate_all(
    registry: &SharedRegistry,
    clouds: &dyn TenantClouds,
    events: &[LaunchEventRow],
) -> Result<(), LifecycleError> {
    let Some(first) = events.first() else {
        return Ok(());
    };
    for ((provider, region), ids) in instances_by_region(events) {
        let adapter = adapter_on(
            registry,
            clouds,
            (&first.tenant, &provider, &region),
            &first.job_id,
        )
        .await?;
        let ids: Vec<InstanceId> = ids.into_iter().filter_map(InstanceId::new).collect();
        match adapter.terminate(&ids).await {
            Ok(_) => {}
            // an instance gone long ago (the cloud forgets terminated instances after a
            // while) must not keep the others alive: one by one, skipping the unknown
            Err(e) if ids.len() > 1 && e.code() == Some(NOT_FOUND) => {
                for id in &ids {
                    match adapter.terminate(std::slice::from_ref(id)).await {
                        Err(e) if e.code() != Some(NOT_FOUND) => return Err(e.into()),
                        _ => {}
                    }
                }
            }
            Err(e) if e.code() == Some(NOT_FOUND) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// EC2's error code for an instance id it does not know (any more).
const NOT_FOUND: &str = "InvalidInstanceID.NotFound";

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(max: u64, idle: u64, beat: Option<u64>) -> Facts {
        Facts {
            running_since: 1_000,
            last_heartbeat: beat,
            max_lifetime_secs: max,
            idle_ttl_secs: idle,
            heard_since: 0,
        }
    }

    #[test]
    fn lifetime_counts_from_running() {
        assert_eq!(verdict(1_599, &facts(600, 0, None)), None);
        assert_eq!(
            verdict(1_600, &facts(600, 0, None)),
            Some(Reason::MaxLifetime { limit_secs: 600 })
        );
        // unlimited
        assert_eq!(verdict(1_000_000, &facts(0, 0, None)), None);
    }

    #[test]
    fn idleness_counts_from_the_later_of_running_and_the_last_heartbeat() {
        // no heartbeat: idle since running
        assert!(matches!(
            verdict(1_300, &facts(0, 300, None)),
            Some(Reason::Idle { idle_secs: 300, .. })
        ));
        // a heartbeat resets it
        assert_eq!(verdict(1_300, &facts(0, 300, Some(1_200))), None);
        assert!(matches!(
            verdict(1_500, &facts(0, 300, Some(1_200))),
            Some(Reason::Idle { idle_secs: 300, .. })
        ));
        // a heartbeat from before running (a previous life) does not count
        assert!(verdict(1_300, &facts(0, 300, Some(10))).is_some());
        // lifetime wins when both apply
        assert!(matches!(
            verdict(2_000, &facts(500, 300, None)),
            Some(Reason::MaxLifetime { .. })
        ));
    }

    #[test]
    fn an_outage_on_capsight_side_restarts_the_idle_clock() {
        // no heartbeat since 1_200, TTL 300: idle at 1_500 ...
        assert!(verdict(1_500, &facts(0, 300, Some(1_200))).is_some());
        // ... unless capsight could not record heartbeats until 1_400
        let after_outage = Facts {
            heard_since: 1_400,
            ..facts(0, 300, Some(1_200))
        };
        assert_eq!(verdict(1_500, &after_outage), None);
        assert!(verdict(1_700, &after_outage).is_some());
        // the lifetime is not extended
        let capped = Facts {
            heard_since: 1_400,
            ..facts(500, 300, Some(1_200))
        };
        assert!(matches!(
            verdict(1_500, &capped),
            Some(Reason::MaxLifetime { .. })
        ));
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(
            Reason::MaxLifetime { limit_secs: 60 }.to_string(),
            "max lifetime reached (60s)"
        );
        assert!(
            Reason::Idle {
                ttl_secs: 60,
                idle_secs: 75
            }
            .to_string()
            .contains("idle TTL 60s")
        );
    }
}
