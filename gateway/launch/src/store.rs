//! The one store of launches: the gateway records a job (`launch_requests` and its `queued`
//! transition), cancel requests and heartbeats, and reads a tenant's launches; the launcher
//! appends transitions, finds live launches, cancel requests and the latest scores (fallback
//! ranking).
//!
//! Contract:
//! * `launch_events` is append-only with a per-job `seq`: the gateway writes seq 0 (`queued`),
//!   the launcher (and the lifecycle tasks) append `latest seq + 1`. A transition is derived
//!   from the previous row ([`follow_up`]) and carries no randomness, so a worker that replays a
//!   step after a crash writes the same (tenant, job_id, seq) key, which `ReplacingMergeTree`
//!   collapses.
//! * Once a job runs, several tasks of one launcher may write to it (cancel sweep, lifecycle
//!   reaper, warm standby). They append with [`Store::append_next`], which serialises the
//!   writers of a job — inside the process, and across launcher replicas with the job's lease
//!   ([`crate::lease`], when the store has [`Store::with_leases`]) — re-reads the latest row
//!   and never writes after a final state, so two concurrent transitions cannot take the same
//!   seq (and one of them vanish).
//! * Reads de-duplicate by `seq` (unmerged duplicates) and, for one tenant's launches, always
//!   filter on the tenant id in SQL: a tenant never sees another's launches.
//! * Values are bound as parameters, never spliced.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use capsight_clickhouse::rows::{
    LaunchActivityRow, LaunchCancellationRow, LaunchEventRow, LaunchRequestRow, split_time,
};
use capsight_clickhouse::sql;
use capsight_proto::domain::{CapacityKey, Label, LaunchState, Score};
use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;

use crate::locks::KeyedLocks;

/// A launch as stored: the request, its transitions and whether a cancel was asked.
#[derive(Debug, Clone)]
pub struct StoredLaunch {
    /// The accepted request.
    pub request: LaunchRequestRow,
    /// Transitions by seq.
    pub events: Vec<LaunchEventRow>,
    /// A cancel was requested.
    pub cancel_requested: bool,
}

/// ClickHouse failed, or a job's lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// ClickHouse failed.
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    /// The job's lease (another replica writing to it, or RabbitMQ unavailable).
    #[error("job lease: {0}")]
    Lease(String),
}

/// A launch whose latest state is `provisioning` or `running`.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
pub struct LiveLaunch {
    /// The job id.
    pub job_id: String,
    /// Tenant id.
    pub tenant: String,
    /// Seq of the latest transition.
    pub seq: u32,
    /// Latest state.
    #[serde(with = "capsight_proto::domain::launch_state_text")]
    pub state: LaunchState,
    /// Key of the current attempt: provider.
    pub provider: String,
    /// Region.
    pub region: String,
    /// Zone id or empty.
    pub zone_id: String,
    /// Instance type.
    pub instance_type: String,
    /// Market.
    pub market: String,
    /// Instance ids, comma-separated (empty before the cloud answered).
    pub instance_id: String,
    /// Attempt number.
    pub attempt: u32,
    /// When the latest transition was written, seconds.
    pub at: u32,
}

impl LiveLaunch {
    /// The instance ids.
    pub fn instance_ids(&self) -> Vec<String> {
        split_ids(&self.instance_id)
    }
}

/// `tenant/job_id` keys, as the `*_OF_KEYS` statements bind them (a tenant id has no `/`).
pub fn job_keys<'a>(jobs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    jobs.into_iter().map(|(t, j)| format!("{t}/{j}")).collect()
}

/// `[launcher.live]`: the live-launch index (ClickHouse `launch_live`) the sweeps and the GPU
/// quota read instead of the whole history.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LiveSettings {
    /// How often the leading launcher re-writes the latest row of every job not ended.
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
    /// Rows seen within this window are read (keep it well above `refresh`: the index
    /// survives launchers down for half of it; beyond, it is rebuilt from the history).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(600),
            window: Duration::from_secs(86_400),
        }
    }
}

/// Comma-separated instance ids as written in `launch_events.instance_id`.
pub fn split_ids(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The next transition after `prev`: seq + 1, now, the same key, attempt and instances, no
/// error fields.
pub fn follow_up(
    prev: &LaunchEventRow,
    state: LaunchState,
    detail: impl Into<String>,
) -> LaunchEventRow {
    let (at, at_ms) = split_time(Utc::now());
    LaunchEventRow {
        seq: prev.seq.saturating_add(1),
        at,
        at_ms,
        state,
        error_class: String::new(),
        error_code: String::new(),
        detail: detail.into(),
        ..prev.clone()
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct ScoreLatest {
    provider: String,
    region: String,
    zone_id: String,
    instance_type: String,
    market: String,
    updated_at: u32,
    score: u8,
    label: String,
    confidence: f32,
    window_secs: u32,
    signal_count: u64,
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct JobCount {
    job_id: String,
    count: u32,
}

/// The launch store (cheap to clone).
#[derive(Clone)]
pub struct Store {
    client: clickhouse::Client,
    /// Serialises the writers of a running job ([`Store::append_next`]), by tenant and job.
    writers: KeyedLocks,
    /// Serialises them across launcher replicas too, when set.
    leases: Option<crate::lease::Leases>,
    /// The live-launch index's window.
    live: LiveSettings,
    /// The latest transitions this process saw, for the time-in-state metric.
    transitions: std::sync::Arc<crate::metrics::Transitions>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Over a client bound to the capsight database.
    pub fn new(client: clickhouse::Client) -> Self {
        Self {
            client,
            writers: KeyedLocks::default(),
            leases: None,
            live: LiveSettings::default(),
            transitions: std::sync::Arc::default(),
        }
    }

    /// The same store reading the live-launch index with `live`.
    #[must_use]
    pub fn with_live(mut self, live: LiveSettings) -> Self {
        self.live = live;
        self
    }

    /// The same store, serialising a job's writers across processes with `leases`.
    #[must_use]
    pub fn with_leases(mut self, leases: crate::lease::Leases) -> Self {
        self.leases = Some(leases);
        self
    }

    /// The underlying client (for the lifecycle and usage tables).
    pub fn client(&self) -> &clickhouse::Client {
        &self.client
    }

    /// Appends one transition as given (its seq included).
    pub async fn append(&self, event: &LaunchEventRow) -> Result<(), StoreError> {
        self.insert("launch_events", event).await?;
        self.transitions.written(event);
        Ok(())
    }

    /// Appends `row` as the job's next transition on behalf of one of the tasks that write to
    /// running jobs. Under the job's lock (its lease across replicas, with
    /// [`Store::with_leases`]) it re-reads the latest transition: when that is final (another
    /// task ended the job meanwhile) nothing is written and `None` returned; otherwise the row
    /// goes right after it (its seq moved up when another task appended first).
    pub async fn append_next(
        &self,
        row: LaunchEventRow,
    ) -> Result<Option<LaunchEventRow>, StoreError> {
        let key = format!("{}/{}", row.tenant, row.job_id);
        let Some(leases) = &self.leases else {
            let _writer = self.writers.lock(key).await;
            return self.append_after_latest(row).await;
        };
        let lease = leases
            .acquire(crate::lease::LeaseKind::Job, &key)
            .await
            .map_err(|e| StoreError::Lease(e.to_string()))?;
        let appended = self.append_after_latest(row).await;
        lease.release().await;
        appended
    }

    async fn append_after_latest(
        &self,
        mut row: LaunchEventRow,
    ) -> Result<Option<LaunchEventRow>, StoreError> {
        match self.latest(&row.tenant, &row.job_id).await? {
            Some(latest) if latest.state.is_terminal() => Ok(None),
            latest => {
                if let Some(latest) = latest {
                    row.seq = row.seq.max(latest.seq.saturating_add(1));
                }
                self.append(&row).await?;
                Ok(Some(row))
            }
        }
    }

    /// Appends `state` after the job's latest transition ([`follow_up`]) and returns the row;
    /// `None` (nothing written) when the job has no transitions at all.
    pub async fn append_state(
        &self,
        tenant: &str,
        job_id: &str,
        state: LaunchState,
        detail: &str,
    ) -> Result<Option<LaunchEventRow>, StoreError> {
        let Some(prev) = self.latest(tenant, job_id).await? else {
            return Ok(None);
        };
        let row = follow_up(&prev, state, detail);
        self.append(&row).await?;
        Ok(Some(row))
    }

    async fn insert<R>(&self, table: &'static str, row: &R) -> Result<(), StoreError>
    where
        R: clickhouse::RowOwned + clickhouse::RowWrite,
    {
        capsight_clickhouse::insert_rows(&self.client, table, std::slice::from_ref(row)).await?;
        Ok(())
    }

    /// Records an accepted launch and its `queued` transition (seq 0).
    pub async fn record_launch(
        &self,
        request: &LaunchRequestRow,
        queued: &LaunchEventRow,
    ) -> Result<(), StoreError> {
        self.insert("launch_requests", request).await?;
        self.append(queued).await
    }

    /// Records a cancel request.
    pub async fn cancel(&self, row: &LaunchCancellationRow) -> Result<(), StoreError> {
        self.insert("launch_cancellations", row).await
    }

    /// Records an activity heartbeat of a launch (idle TTL).
    pub async fn heartbeat(&self, row: &LaunchActivityRow) -> Result<(), StoreError> {
        self.insert("launch_activity", row).await
    }

    /// The job's transitions with seq > `after` (all when `None`), by seq.
    pub async fn events(
        &self,
        tenant: &str,
        job_id: &str,
        after: Option<u32>,
    ) -> Result<Vec<LaunchEventRow>, StoreError> {
        let rows = sql::LAUNCH_EVENTS
            .query(&self.client)
            .bind(tenant)
            .bind(job_id)
            .bind(after.map_or(0, |a| a.saturating_add(1)))
            .fetch_all::<LaunchEventRow>()
            .await?;
        let by_seq: BTreeMap<u32, LaunchEventRow> = rows.into_iter().map(|r| (r.seq, r)).collect();
        Ok(by_seq.into_values().collect())
    }

    /// The new transitions of many launches in one query: for each `(tenant, job_id, from_seq)`
    /// of `watched`, the job's transitions (of that tenant only) with seq >= `from_seq`, by job
    /// and seq; unmerged duplicates may repeat a seq.
    pub async fn events_of(
        &self,
        watched: &[(String, String, u32)],
    ) -> Result<Vec<LaunchEventRow>, StoreError> {
        if watched.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = watched.iter().map(|(_, j, _)| j.as_str()).collect();
        let tenants: Vec<&str> = watched.iter().map(|(t, _, _)| t.as_str()).collect();
        let from: Vec<u32> = watched.iter().map(|(_, _, s)| *s).collect();
        Ok(sql::LAUNCH_EVENTS_WATCHED
            .query(&self.client)
            .bind(&ids)
            .bind(&tenants)
            .bind(&ids)
            .bind(&from)
            .bind(&ids)
            .fetch_all::<LaunchEventRow>()
            .await?)
    }

    /// One of `tenant`'s launches: request, transitions, cancel requested.
    pub async fn launch(
        &self,
        tenant: &str,
        job_id: &str,
    ) -> Result<Option<StoredLaunch>, StoreError> {
        let Some(request) = self.request(tenant, job_id).await? else {
            return Ok(None);
        };
        let events = self.events(tenant, job_id, None).await?;
        let cancel_requested = self.cancel_requested(tenant, job_id).await?;
        Ok(Some(StoredLaunch {
            request,
            events,
            cancel_requested,
        }))
    }

    /// `tenant`'s newest launches (at most `limit`), with their transitions.
    pub async fn list_launches(
        &self,
        tenant: &str,
        limit: u32,
    ) -> Result<Vec<StoredLaunch>, StoreError> {
        let requests = sql::LAUNCH_LIST
            .query(&self.client)
            .bind(tenant)
            .bind(limit)
            .fetch_all::<LaunchRequestRow>()
            .await?;
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = requests.iter().map(|r| r.job_id.as_str()).collect();
        let events = sql::LAUNCH_EVENTS_OF_JOBS
            .query(&self.client)
            .bind(tenant)
            .bind(&ids)
            .fetch_all::<LaunchEventRow>()
            .await?;
        let cancelled: Vec<String> = sql::LAUNCH_CANCELLED_OF_JOBS
            .query(&self.client)
            .bind(tenant)
            .bind(&ids)
            .fetch_all::<String>()
            .await?;
        let mut by_job: BTreeMap<String, BTreeMap<u32, LaunchEventRow>> = BTreeMap::new();
        for e in events {
            by_job.entry(e.job_id.clone()).or_default().insert(e.seq, e);
        }
        Ok(requests
            .into_iter()
            .map(|request| StoredLaunch {
                events: by_job
                    .remove(&request.job_id)
                    .map(|m| m.into_values().collect())
                    .unwrap_or_default(),
                cancel_requested: cancelled.contains(&request.job_id),
                request,
            })
            .collect())
    }

    /// The job's latest transition (highest seq), if any.
    pub async fn latest(
        &self,
        tenant: &str,
        job_id: &str,
    ) -> Result<Option<LaunchEventRow>, StoreError> {
        let latest = sql::LAUNCH_LATEST
            .query(&self.client)
            .bind(tenant)
            .bind(job_id)
            .fetch_optional::<LaunchEventRow>()
            .await?;
        if let Some(row) = &latest {
            self.transitions.seen(row);
        }
        Ok(latest)
    }

    /// The job as the gateway accepted it.
    pub async fn request(
        &self,
        tenant: &str,
        job_id: &str,
    ) -> Result<Option<LaunchRequestRow>, StoreError> {
        Ok(sql::LAUNCH_REQUEST
            .query(&self.client)
            .bind(tenant)
            .bind(job_id)
            .fetch_optional::<LaunchRequestRow>()
            .await?)
    }

    /// Whether a cancel was requested for the job.
    pub async fn cancel_requested(&self, tenant: &str, job_id: &str) -> Result<bool, StoreError> {
        let n: u64 = sql::LAUNCH_CANCEL_REQUESTED
            .query(&self.client)
            .bind(tenant)
            .bind(job_id)
            .fetch_one()
            .await?;
        Ok(n > 0)
    }

    /// Launches whose latest state is `provisioning` or `running`: of `tenant`, or of every
    /// tenant when `tenant` is `None` (from the live-launch index, [`LiveSettings`]: what it
    /// costs grows with the launches of the window, not with the history).
    pub async fn live_launches(&self, tenant: Option<&str>) -> Result<Vec<LiveLaunch>, StoreError> {
        Ok(sql::LAUNCH_LIVE
            .query(&self.client)
            .bind(self.live_since())
            .bind(tenant.unwrap_or(""))
            .bind(tenant.unwrap_or(""))
            .fetch_all::<LiveLaunch>()
            .await?)
    }

    /// The start of the live-launch index's window, unix seconds.
    fn live_since(&self) -> u32 {
        let window =
            chrono::Duration::from_std(self.live.window).unwrap_or(chrono::Duration::days(1));
        u32::try_from((Utc::now() - window).timestamp().max(0)).unwrap_or(0)
    }

    /// One upkeep of the live-launch index (the leading launcher, every `live.refresh`):
    /// re-writes the latest row of every job not ended so that it stays within the window —
    /// or, when no upkeep happened within half the window (a fresh index, launchers down for
    /// long), rebuilds it from the whole history. Returns whether it rebuilt.
    pub async fn refresh_live(&self) -> Result<bool, StoreError> {
        let since = self.live_since();
        let last: u32 = sql::LIVE_LAST_SEEN
            .query(&self.client)
            .bind(since)
            .fetch_one()
            .await?;
        let half = u32::try_from(self.live.window.as_secs() / 2).unwrap_or(u32::MAX);
        let now = u32::try_from(Utc::now().timestamp().max(0)).unwrap_or(0);
        let stale = now.saturating_sub(last) > half;
        let statement = if stale {
            sql::LIVE_REBUILD
        } else {
            sql::LIVE_REFRESH
        };
        let mut query = self.client.query(statement.sql);
        if !stale {
            query = query.bind(since);
        }
        capsight_clickhouse::observed(statement.name, query.execute()).await?;
        Ok(stale)
    }

    /// Launches of every tenant whose latest state is `running`.
    pub async fn running_launches(&self) -> Result<Vec<LiveLaunch>, StoreError> {
        let mut live = self.live_launches(None).await?;
        live.retain(|l| l.state == LaunchState::Running);
        Ok(live)
    }

    /// Jobs whose latest state is `running` and for which a cancel was requested (two queries
    /// whatever the number of jobs).
    pub async fn running_cancelled(&self) -> Result<Vec<LiveLaunch>, StoreError> {
        let running = self.running_launches().await?;
        if running.is_empty() {
            return Ok(Vec::new());
        }
        let keys = job_keys(
            running
                .iter()
                .map(|l| (l.tenant.as_str(), l.job_id.as_str())),
        );
        let cancelled: std::collections::BTreeSet<(String, String)> = sql::LAUNCH_CANCELLED_OF_KEYS
            .query(&self.client)
            .bind(&keys)
            .fetch_all::<(String, String)>()
            .await?
            .into_iter()
            .collect();
        Ok(running
            .into_iter()
            .filter(|l| cancelled.contains(&(l.tenant.clone(), l.job_id.clone())))
            .collect())
    }

    /// The requests of many jobs `(tenant, job_id)` in one query.
    pub async fn requests_of(
        &self,
        jobs: &[(String, String)],
    ) -> Result<Vec<LaunchRequestRow>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let keys = job_keys(jobs.iter().map(|(t, j)| (t.as_str(), j.as_str())));
        Ok(sql::LAUNCH_REQUESTS_OF_KEYS
            .query(&self.client)
            .bind(&keys)
            .fetch_all::<LaunchRequestRow>()
            .await?)
    }

    /// The transitions of many jobs `(tenant, job_id)` in one query, by job, de-duplicated by
    /// seq.
    pub async fn events_by_job(
        &self,
        jobs: &[(String, String)],
    ) -> Result<BTreeMap<(String, String), Vec<LaunchEventRow>>, StoreError> {
        if jobs.is_empty() {
            return Ok(BTreeMap::new());
        }
        let keys = job_keys(jobs.iter().map(|(t, j)| (t.as_str(), j.as_str())));
        let rows = sql::LAUNCH_EVENTS_OF_KEYS
            .query(&self.client)
            .bind(&keys)
            .fetch_all::<LaunchEventRow>()
            .await?;
        let mut by_job: BTreeMap<(String, String), BTreeMap<u32, LaunchEventRow>> = BTreeMap::new();
        for r in rows {
            by_job
                .entry((r.tenant.clone(), r.job_id.clone()))
                .or_default()
                .insert(r.seq, r);
        }
        Ok(by_job
            .into_iter()
            .map(|(k, v)| (k, v.into_values().collect()))
            .collect())
    }

    /// Instance counts of `tenant`'s jobs (from `launch_requests`).
    pub async fn counts(
        &self,
        tenant: &str,
        job_ids: &[String],
    ) -> Result<BTreeMap<String, u32>, StoreError> {
        if job_ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let rows = sql::LAUNCH_COUNTS
            .query(&self.client)
            .bind(tenant)
            .bind(job_ids)
            .fetch_all::<JobCount>()
            .await?;
        Ok(rows.into_iter().map(|r| (r.job_id, r.count)).collect())
    }

    /// The latest score of every key updated within `max_age`.
    pub async fn latest_scores(&self, max_age: Duration) -> Result<Vec<Arc<Score>>, StoreError> {
        let since =
            Utc::now() - chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::days(1));
        let rows = sql::LATEST_SCORES
            .query(&self.client)
            .bind(u32::try_from(since.timestamp()).unwrap_or(0))
            .fetch_all::<ScoreLatest>()
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(score_of)
            .map(Arc::new)
            .collect())
    }
}

fn score_of(r: ScoreLatest) -> Option<Score> {
    let key: CapacityKey = format!(
        "{}/{}/{}/{}/{}",
        r.provider, r.region, r.zone_id, r.instance_type, r.market
    )
    .parse()
    .ok()?;
    let updated_at: DateTime<Utc> = Utc.timestamp_opt(i64::from(r.updated_at), 0).single()?;
    Some(Score {
        key,
        score: r.score,
        label: Label::parse("label", &r.label).ok()?,
        confidence: f64::from(r.confidence),
        evidence: Vec::new(),
        window: Duration::from_secs(u64::from(r.window_secs)),
        updated_at,
        signal_count: r.signal_count,

        market_usd_per_hour: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u32) -> LaunchEventRow {
        LaunchEventRow {
            job_id: "j".into(),
            seq,
            tenant: "t".into(),
            at: 1,
            at_ms: 2,
            state: LaunchState::Provisioning,
            provider: "aws".into(),
            region: "us-east-1".into(),
            zone_id: "use1-az1".into(),
            instance_type: "p5.48xlarge".into(),
            market: "on_demand".into(),
            instance_id: "i-1,i-2".into(),
            attempt: 2,
            error_class: "capacity".into(),
            error_code: "X".into(),
            detail: "d".into(),
        }
    }

    #[test]
    fn follow_up_keeps_key_and_instances_and_clears_errors() {
        let next = follow_up(&row(3), LaunchState::Running, "up");
        assert_eq!(next.seq, 4);
        assert_eq!(next.state, LaunchState::Running);
        assert_eq!(next.attempt, 2);
        assert_eq!(next.instance_id, "i-1,i-2");
        assert_eq!(next.zone_id, "use1-az1");
        assert!(next.error_class.is_empty() && next.error_code.is_empty());
        assert_eq!(next.detail, "up");
    }

    #[test]
    fn ids_split_and_terminal_states() {
        assert_eq!(split_ids("i-1, i-2,,"), vec!["i-1", "i-2"]);
        assert!(split_ids("").is_empty());
        assert!(LaunchState::Failed.is_terminal() && LaunchState::Cancelled.is_terminal());
        assert!(!LaunchState::Running.is_terminal());
    }
}
