//! The reconciler: no instance outlives its job, and no job runs without an instance.
//!
//! Every `launcher.reconcile.interval` it compares, per tenant account and region that launches
//! touched within `launcher.reconcile.lookback` (plus the regions of running launches), the
//! cloud's instances tagged `capsight:job` with the jobs' recorded states, and fixes what
//! differs:
//! * **Leaked instances**: a live instance (pending, running, stopping, stopped) tagged with this
//!   tenant (`capsight:tenant`) whose job is `failed`, `cancelled` or `terminated` — or that no
//!   job of the tenant knows, once older than `orphan_grace` — is terminated (e.g. retries ran
//!   out after `RunInstances` succeeded). Instances tagged with another tenant (an account two
//!   tenants share) are left to that tenant's pass; `provisioning` and `running` jobs own theirs.
//! * **Vanished instances**: a `running` job none of whose tagged instances is live any more
//!   (a spot interruption with no warm standby, an instance terminated outside capsight), whose
//!   latest transition is older than `gone_grace` (so a warm standby switching over is never
//!   overtaken), ends `terminated` with the reason, so its GPU-hours stop counting. Anything the
//!   job still names is terminated first.
//!
//! * **Clouds without tags** (Lambda Cloud, GCP, Azure, RunPod): the same sweep by *name*. Every
//!   instance capsight launches there is named after the attempt's client token (the job id, a
//!   UUID, or `<job id>-<attempt>`), so the tenant's live instances whose token names a job are
//!   judged like tagged ones — the job ended, or no tenant has it once older than
//!   `orphan_grace` (age from the cloud's launch time, or from when this process first saw it
//!   when that is longer: some clouds report none, a simulated clock may run ahead) —
//!   plus one case tags rule out: an instance of a running job that the job did not record (a
//!   launch the cloud accepted but did not list yet when a retry looked for its name) is an
//!   extra once older than `orphan_grace`. Instances whose name is not a capsight token are never
//!   touched. The job's state is looked up whichever tenant it belongs to (two tenants may share
//!   an account): another tenant's live job keeps its instance.
//!
//! Crash and replica safety: the cloud call comes first and is idempotent (terminating a gone
//! instance is harmless), the transition is appended with [`Store::append_next`] (nothing after
//! a final state; two replicas writing the same next seq collapse in `ReplacingMergeTree`), so a
//! crash at any point, or several launchers reconciling at once, converges to the same result.
//!
//! Cost: one `DescribeInstances` (tag filter) per (tenant, region) in scope and one
//! `launch_events` read bound to the job ids found, per sweep; the running launches come from
//! the same query the lifecycle reaper uses.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use capsight_clickhouse::sql;
use capsight_cloud::{Instance, InstanceId, tenants::TenantClouds};
use capsight_proto::domain::LaunchState;
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::SharedRegistry;
use chrono::Utc;
use serde::Deserialize;

use crate::{
    lifecycle::{LifecycleError, adapter_for},
    store::{LiveLaunch, Store},
};

/// The tag naming an instance's job.
pub const JOB_TAG: &str = "capsight:job";
/// The tag naming an instance's tenant.
pub const TENANT_TAG: &str = "capsight:tenant";

/// `[launcher.reconcile]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileSettings {
    /// How often the cloud's tagged instances are compared with the jobs.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How far back launches count to choose the (tenant, region) pairs looked at.
    #[serde(with = "humantime_serde")]
    pub lookback: Duration,
    /// How long a running job's latest transition must be old before its vanished instances
    /// end it (longer than a warm standby takes to switch over).
    #[serde(with = "humantime_serde")]
    pub gone_grace: Duration,
    /// How old an instance tagged with a job no one knows must be before it is terminated.
    #[serde(with = "humantime_serde")]
    pub orphan_grace: Duration,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            lookback: Duration::from_secs(7 * 86_400),
            gone_grace: Duration::from_secs(300),
            orphan_grace: Duration::from_secs(900),
        }
    }
}

/// What one sweep fixed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Leaked instances terminated, with their job.
    pub leaked: Vec<(String, String)>,
    /// Running jobs ended because their instances vanished.
    pub vanished: Vec<String>,
}

/// What the reconciler does about one tagged, live instance of the tenant (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its job owns it (queued .. running, or unknown but young).
    Keep,
    /// Terminate it: its job ended, or no job knows it.
    Terminate,
}

/// The verdict on a live instance of a job whose latest state is `state` (`None`: the tenant
/// has no such job), launched `age` ago.
pub fn verdict(state: Option<LaunchState>, age: Duration, orphan_grace: Duration) -> Verdict {
    match state {
        Some(s) if s.is_terminal() => Verdict::Terminate,
        Some(_) => Verdict::Keep,
        None if age >= orphan_grace => Verdict::Terminate,
        None => Verdict::Keep,
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Scope {
    tenant: String,
    provider: String,
    region: String,
}

/// The job an instance's client token names: the token is the job id (a UUID) or
/// `<job id>-<attempt>`; `None` for any other name (not capsight's instance).
pub fn job_of_token(token: &str) -> Option<String> {
    let id = token.get(..36)?;
    let rest = &token[36..];
    let attempt_ok = rest.is_empty()
        || rest
            .strip_prefix('-')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !attempt_ok {
        return None;
    }
    uuid::Uuid::parse_str(id)
        .ok()
        .filter(|u| u.hyphenated().to_string() == id)
        .map(|u| u.hyphenated().to_string())
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Latest {
    job_id: String,
    #[serde(with = "capsight_proto::domain::launch_state_text")]
    state: LaunchState,
}

/// Terminates `leaked` instances of `job` (whose latest state is `state`, `None` when no one
/// has it) and records them in `done`; a failed call is logged and left to the next sweep.
async fn terminate_leaked(
    adapter: &dyn capsight_cloud::CloudAdapter,
    (tenant, provider, job): (&str, &str, &str),
    state: Option<LaunchState>,
    leaked: &[InstanceId],
    done: &mut Reconciled,
) {
    if leaked.is_empty() {
        return;
    }
    match adapter.terminate(leaked).await {
        Ok(_) => {
            let what = state.map_or("unknown", |s| s.as_str());
            for id in leaked {
                tracing::warn!(job_id = job, tenant, provider, instance = %id, job_state = what, "terminated an instance that no live job owns");
                crate::metrics::reconciled("leaked");
                done.leaked.push((job.to_owned(), id.as_str().to_owned()));
            }
        }
        Err(e) => {
            tracing::warn!(job_id = job, tenant, provider, error = %e, "cannot terminate leaked instances; next sweep");
        }
    }
}

/// The reconciler.
#[derive(Debug, Clone)]
pub struct Reconciler {
    store: Store,
    clouds: Arc<dyn TenantClouds>,
    registry: SharedRegistry,
    settings: ReconcileSettings,
    /// `launcher.crash_after`: `reconciled` kills the process after the cloud call, before the
    /// transition is recorded (tests).
    crash_after: String,
    /// Sweeps run only while this replica leads.
    leader: capsight_launch::lease::Leader,
    /// When this process first saw each live instance of a cloud without tags.
    first_seen: Arc<std::sync::Mutex<BTreeMap<String, std::time::Instant>>>,
}

impl Reconciler {
    /// A reconciler over the launcher's store, tenants' clouds and registry.
    pub fn new(
        store: Store,
        clouds: Arc<dyn TenantClouds>,
        registry: SharedRegistry,
        settings: ReconcileSettings,
        crash_after: String,
    ) -> Self {
        Self {
            store,
            clouds,
            registry,
            settings,
            crash_after,
            leader: capsight_launch::lease::Leader::always(),
            first_seen: Arc::default(),
        }
    }

    /// Sweeps (in [`Reconciler::run`]) only while `leader` leads.
    #[must_use]
    pub fn with_leader(mut self, leader: capsight_launch::lease::Leader) -> Self {
        self.leader = leader;
        self
    }

    /// Sweeps every `interval` until `shutdown`, while this replica leads.
    pub async fn run(self, shutdown: Shutdown) {
        capsight_runtime::periodic::every(self.settings.interval, false, &shutdown, || async {
            if !self.leader.is_leader() {
                return;
            }
            match self.sweep().await {
                Ok(r) if r != Reconciled::default() => {
                    tracing::info!(
                        leaked = r.leaked.len(),
                        vanished = r.vanished.len(),
                        "reconciled launches with the cloud"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reconcile sweep failed; retrying next time"),
            }
        })
        .await;
    }

    /// One sweep over every (tenant, region) in scope; a scope that fails is logged and skipped.
    pub async fn sweep(&self) -> Result<Reconciled, LifecycleError> {
        let since = Utc::now()
            - chrono::Duration::from_std(self.settings.lookback)
                .unwrap_or(chrono::Duration::days(7));
        let aws = |p: &str| {
            if p.is_empty() {
                "aws".to_owned()
            } else {
                p.to_owned()
            }
        };
        let mut scopes: BTreeMap<(String, String, String), Vec<LiveLaunch>> = sql::RECONCILE_SCOPES
            .query(self.store.client())
            .bind(u32::try_from(since.timestamp().max(0)).unwrap_or(0))
            .fetch_all::<Scope>()
            .await?
            .into_iter()
            .map(|s| ((s.tenant, aws(&s.provider), s.region), Vec::new()))
            .collect();
        let mut untagged = Vec::new();
        for l in self.store.running_launches().await? {
            let scope = scopes
                .entry((l.tenant.clone(), aws(&l.provider), l.region.clone()))
                .or_default();
            if !matches!(l.provider.as_str(), "" | "aws") {
                // no tags on these clouds: vanished by the ids the job recorded
                untagged.push(l.clone());
            }
            scope.push(l);
        }
        let mut done = Reconciled::default();
        for ((tenant, provider, region), running) in scopes {
            let swept = if provider == "aws" {
                self.scope(&tenant, &region, &running, &mut done).await
            } else {
                self.named_scope((&tenant, &provider, &region), &running, &mut done)
                    .await
            };
            if let Err(e) = swept {
                tracing::warn!(tenant, provider, region, error = %e, "cannot reconcile a tenant's region; next sweep");
            }
        }
        for l in &untagged {
            if let Err(e) = self.untagged(l, &mut done).await {
                tracing::warn!(job_id = l.job_id, tenant = l.tenant, provider = l.provider, error = %e, "cannot reconcile a launch; next sweep");
            }
        }
        Ok(done)
    }

    /// A running launch on a cloud without tags (Lambda): vanished when none of the instances
    /// it recorded is live any more.
    async fn untagged(&self, l: &LiveLaunch, done: &mut Reconciled) -> Result<(), LifecycleError> {
        let quiet = Utc::now().timestamp() - i64::from(l.at)
            >= i64::try_from(self.settings.gone_grace.as_secs()).unwrap_or(i64::MAX);
        if !quiet {
            return Ok(());
        }
        let adapter = crate::lifecycle::adapter_on(
            &self.registry,
            self.clouds.as_ref(),
            (&l.tenant, &l.provider, &l.region),
            &l.job_id,
        )
        .await?;
        let ids: Vec<InstanceId> = l
            .instance_ids()
            .into_iter()
            .filter_map(InstanceId::new)
            .collect();
        let live = adapter
            .describe(&ids)
            .await?
            .iter()
            .any(|i| i.state.is_live());
        if !live
            && self
                .end_vanished(&l.tenant, &l.job_id, "no longer listed by the cloud")
                .await?
        {
            done.vanished.push(l.job_id.clone());
        }
        Ok(())
    }

    /// A (tenant, provider, region) of a cloud without tags: its live instances by the job
    /// their name carries (module docs).
    async fn named_scope(
        &self,
        (tenant, provider, region): (&str, &str, &str),
        running: &[LiveLaunch],
        done: &mut Reconciled,
    ) -> Result<(), LifecycleError> {
        let adapter = crate::lifecycle::adapter_on(
            &self.registry,
            self.clouds.as_ref(),
            (tenant, provider, region),
            "",
        )
        .await?;
        let listed = adapter.describe(&[]).await?;
        let mut by_job: BTreeMap<String, Vec<&Instance>> = BTreeMap::new();
        for i in listed.iter().filter(|i| i.state.is_live()) {
            if let Some(job) = i.client_token.as_deref().and_then(job_of_token) {
                by_job.entry(job).or_default().push(i);
            }
        }
        if by_job.is_empty() {
            return Ok(());
        }
        let jobs: Vec<&String> = by_job.keys().collect();
        let states: BTreeMap<String, LaunchState> = sql::LAUNCH_LATEST_OF_ANY_TENANT
            .query(self.store.client())
            .bind(&jobs)
            .fetch_all::<Latest>()
            .await?
            .into_iter()
            .map(|l| (l.job_id, l.state))
            .collect();
        let now = Utc::now();
        let ages = {
            let mut seen = self
                .first_seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let listed_ids: BTreeSet<&str> = listed.iter().map(|i| i.id.as_str()).collect();
            seen.retain(|id, _| listed_ids.contains(id.as_str()));
            by_job
                .values()
                .flatten()
                .map(|i| {
                    // the cloud's launch time, or (none, or a clock ahead of ours) how long this
                    // sweep has seen it
                    let seen_for = seen
                        .entry(i.id.as_str().to_owned())
                        .or_insert_with(std::time::Instant::now)
                        .elapsed();
                    let launched = i
                        .launch_time
                        .and_then(|t| (now - t).to_std().ok())
                        .unwrap_or_default();
                    (i.id.as_str().to_owned(), launched.max(seen_for))
                })
                .collect::<BTreeMap<String, Duration>>()
        };
        for (job, instances) in &by_job {
            let state = states.get(job).copied();
            let recorded: Option<Vec<String>> = running
                .iter()
                .find(|l| &l.job_id == job)
                .map(LiveLaunch::instance_ids);
            let leaked: Vec<InstanceId> = instances
                .iter()
                .filter(|i| {
                    let age = ages.get(i.id.as_str()).copied().unwrap_or_default();
                    match (&recorded, verdict(state, age, self.settings.orphan_grace)) {
                        (_, Verdict::Terminate) => true,
                        // a running job's extra instance: launched twice, recorded once
                        (Some(ids), Verdict::Keep) => {
                            state == Some(LaunchState::Running)
                                && !ids.iter().any(|id| id == i.id.as_str())
                                && age >= self.settings.orphan_grace
                        }
                        (None, Verdict::Keep) => false,
                    }
                })
                .map(|i| i.id.clone())
                .collect();
            terminate_leaked(
                adapter.as_ref(),
                (tenant, provider, job),
                state,
                &leaked,
                done,
            )
            .await;
        }
        Ok(())
    }

    async fn scope(
        &self,
        tenant: &str,
        region: &str,
        running: &[LiveLaunch],
        done: &mut Reconciled,
    ) -> Result<(), LifecycleError> {
        let adapter = adapter_for(&self.registry, self.clouds.as_ref(), tenant, region, "").await?;
        let tagged = adapter.describe_tagged(JOB_TAG).await?;
        let mut by_job: BTreeMap<String, Vec<&Instance>> = BTreeMap::new();
        for i in &tagged {
            if let Some(job) = i.tags.get(JOB_TAG) {
                by_job.entry(job.clone()).or_default().push(i);
            }
        }
        // leaked: live instances of this tenant whose job ended or is unknown
        let mine: Vec<String> = by_job
            .iter()
            .filter(|(_, is)| {
                is.iter().any(|i| {
                    i.state.is_live() && i.tags.get(TENANT_TAG).map(String::as_str) == Some(tenant)
                })
            })
            .map(|(j, _)| j.clone())
            .collect();
        let states: BTreeMap<String, Latest> = if mine.is_empty() {
            BTreeMap::new()
        } else {
            sql::LAUNCH_LATEST_OF_JOBS
                .query(self.store.client())
                .bind(tenant)
                .bind(&mine)
                .fetch_all::<Latest>()
                .await?
                .into_iter()
                .map(|l| (l.job_id.clone(), l))
                .collect()
        };
        let now = Utc::now();
        for job in &mine {
            let state = states.get(job).map(|l| l.state);
            let leaked: Vec<InstanceId> = by_job[job]
                .iter()
                .filter(|i| {
                    i.state.is_live() && i.tags.get(TENANT_TAG).map(String::as_str) == Some(tenant)
                })
                .filter(|i| {
                    let age = i
                        .launch_time
                        .map_or(Duration::MAX, |t| (now - t).to_std().unwrap_or_default());
                    verdict(state, age, self.settings.orphan_grace) == Verdict::Terminate
                })
                .map(|i| i.id.clone())
                .collect();
            terminate_leaked(adapter.as_ref(), (tenant, "aws", job), state, &leaked, done).await;
        }
        // vanished: running jobs none of whose tagged instances is live
        for l in running {
            let live = by_job
                .get(&l.job_id)
                .is_some_and(|is| is.iter().any(|i| i.state.is_live()));
            let quiet = now.timestamp() - i64::from(l.at)
                >= i64::try_from(self.settings.gone_grace.as_secs()).unwrap_or(i64::MAX);
            if live || !quiet {
                continue;
            }
            let why = by_job
                .get(&l.job_id)
                .and_then(|is| is.iter().find_map(|i| i.state_reason.clone()))
                .unwrap_or_else(|| "no longer listed by the cloud".to_owned());
            match self.end_vanished(tenant, &l.job_id, &why).await {
                Ok(true) => done.vanished.push(l.job_id.clone()),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(job_id = l.job_id, tenant, error = %e, "cannot end a launch whose instances vanished; next sweep");
                }
            }
        }
        Ok(())
    }

    /// Terminates what the job still names, then records `terminated`; false when the job is
    /// no longer running.
    async fn end_vanished(
        &self,
        tenant: &str,
        job_id: &str,
        why: &str,
    ) -> Result<bool, LifecycleError> {
        let crash = self.crash_after == "reconciled";
        let ended = crate::lifecycle::terminate_running(
            (&self.store, &self.registry, self.clouds.as_ref()),
            (tenant, job_id),
            || {
                if crash {
                    capsight_runtime::failpoint::kill_self("launcher.crash_after", "reconciled");
                }
            },
            |events| {
                let ids: BTreeSet<String> = crate::lifecycle::instances_by_region(events)
                    .into_values()
                    .flatten()
                    .collect();
                format!(
                    "instances gone in the cloud ({}): {why}",
                    ids.into_iter().collect::<Vec<_>>().join(",")
                )
            },
        )
        .await?;
        if !ended {
            return Ok(false);
        }
        crate::metrics::reconciled("vanished");
        tracing::warn!(
            job_id,
            tenant,
            why,
            "running launch ended: its instances are gone"
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capsight_cloud::InstanceState;

    #[test]
    fn only_tokens_naming_a_job_are_capsights() {
        let job = "0192f0c1-8a4e-7cc3-9b1a-3f5d2e6a7b8c";
        assert_eq!(job_of_token(job).as_deref(), Some(job));
        assert_eq!(job_of_token(&format!("{job}-2")).as_deref(), Some(job));
        assert_eq!(job_of_token(&format!("{job}-12")).as_deref(), Some(job));
        for other in [
            "",
            "my-training-box",
            &format!("{job}-"),
            &format!("{job}-x"),
            &format!("{job}x"),
            &job.to_uppercase(),
            "0192f0c18a4e7cc39b1a3f5d2e6a7b8c0000",
            "ééééééééééééééééééééééééééééééééééééé",
        ] {
            assert_eq!(job_of_token(other), None, "{other:?}");
        }
    }

    #[test]
    fn ended_jobs_lose_their_instances_and_unknown_ones_after_the_grace() {
        let grace = Duration::from_secs(600);
        let young = Duration::from_secs(10);
        let old = Duration::from_secs(601);
        for s in [
            LaunchState::Failed,
            LaunchState::Cancelled,
            LaunchState::Terminated,
        ] {
            assert_eq!(verdict(Some(s), young, grace), Verdict::Terminate, "{s}");
        }
        for s in [
            LaunchState::Queued,
            LaunchState::Preflight,
            LaunchState::Provisioning,
            LaunchState::Running,
        ] {
            assert_eq!(verdict(Some(s), old, grace), Verdict::Keep, "{s}");
        }
        assert_eq!(verdict(None, young, grace), Verdict::Keep);
        assert_eq!(verdict(None, old, grace), Verdict::Terminate);
    }

    #[test]
    fn only_shutting_down_and_terminated_are_gone() {
        assert!(InstanceState::Pending.is_live());
        assert!(InstanceState::Stopped.is_live());
        assert!(!InstanceState::ShuttingDown.is_live());
        assert!(!InstanceState::Terminated.is_live());
    }
}
