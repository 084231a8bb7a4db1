//! ClickHouse access of the gateway: score history, the preflight log, launch records and
//! their state transitions, cancellations, activity heartbeats.
//!
//! Contract: every read that concerns a tenant filters on the tenant id in SQL (`tenant = ?`),
//! so one tenant never sees another's launches or preflights. `ReplacingMergeTree` tables may
//! hold not-yet-merged duplicates; reads de-duplicate (launch events by `seq`, requests by
//! `job_id`). Values are bound as parameters, never spliced.

use std::collections::BTreeMap;

use capsight_clickhouse::rows::{
    LaunchActivityRow, LaunchCancellationRow, LaunchEventRow, LaunchRequestRow, PreflightLogRow,
};
use capsight_proto::domain::CapacityKey;
use serde::Deserialize;

use crate::GatewayError;

/// One history bucket.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
pub struct HistoryRow {
    /// Bucket start, seconds.
    pub t: u32,
    /// Highest score in the bucket.
    pub score: u8,
    /// Mean confidence.
    pub confidence: f64,
    /// Largest signal count.
    pub signal_count: u64,
}

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

/// The gateway's ClickHouse client.
#[derive(Clone)]
pub struct Store {
    client: clickhouse::Client,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Over a client bound to the capsight database.
    pub fn new(client: clickhouse::Client) -> Self {
        Self { client }
    }

    async fn insert<R>(&self, table: &str, rows: &[R]) -> Result<(), GatewayError>
    where
        R: clickhouse::RowOwned + clickhouse::RowWrite,
    {
        let mut insert = self.client.insert::<R>(table).await?;
        for r in rows {
            insert.write(r).await?;
        }
        insert.end().await?;
        Ok(())
    }

    /// Score history of `key` in `[from, to)`, bucketed by `step` seconds.
    pub async fn history(
        &self,
        key: &CapacityKey,
        from: u32,
        to: u32,
        step: u32,
    ) -> Result<Vec<HistoryRow>, GatewayError> {
        Ok(self
            .client
            .query(
                "SELECT toUInt32(intDiv(toUInt32(updated_at), ?) * ?) AS t, max(score), \
                 avg(confidence), max(signal_count) FROM scores \
                 WHERE provider = ? AND region = ? AND zone_id = ? AND instance_type = ? \
                 AND market = ? AND updated_at >= toDateTime(?) AND updated_at < toDateTime(?) \
                 GROUP BY t ORDER BY t",
            )
            .bind(step)
            .bind(step)
            .bind(key.provider.as_str())
            .bind(key.region.as_str())
            .bind(key.zone_str())
            .bind(key.instance_type.as_str())
            .bind(key.market.as_str())
            .bind(from)
            .bind(to)
            .fetch_all::<HistoryRow>()
            .await?)
    }

    /// Appends a preflight to the log.
    pub async fn log_preflight(&self, row: &PreflightLogRow) -> Result<(), GatewayError> {
        self.insert("preflight_log", std::slice::from_ref(row))
            .await
    }

    /// Records an accepted launch and its `queued` transition (seq 0).
    pub async fn record_launch(
        &self,
        request: &LaunchRequestRow,
        queued: &LaunchEventRow,
    ) -> Result<(), GatewayError> {
        self.insert("launch_requests", std::slice::from_ref(request))
            .await?;
        self.append_event(queued).await
    }

    /// Appends one transition.
    pub async fn append_event(&self, event: &LaunchEventRow) -> Result<(), GatewayError> {
        self.insert("launch_events", std::slice::from_ref(event))
            .await
    }

    /// Records a cancel request.
    pub async fn cancel(&self, row: &LaunchCancellationRow) -> Result<(), GatewayError> {
        self.insert("launch_cancellations", std::slice::from_ref(row))
            .await
    }

    /// Records an activity heartbeat of a launch (idle TTL).
    pub async fn heartbeat(&self, row: &LaunchActivityRow) -> Result<(), GatewayError> {
        self.insert("launch_activity", std::slice::from_ref(row))
            .await
    }

    /// Transitions of `tenant`'s job with seq > `after` (all when `None`), by seq.
    pub async fn events(
        &self,
        tenant: &str,
        job_id: &str,
        after: Option<u32>,
    ) -> Result<Vec<LaunchEventRow>, GatewayError> {
        let rows = self
            .client
            .query(
                "SELECT ?fields FROM launch_events WHERE tenant = ? AND job_id = ? \
                 AND seq >= ? ORDER BY seq",
            )
            .bind(tenant)
            .bind(job_id)
            .bind(after.map_or(0, |a| a.saturating_add(1)))
            .fetch_all::<LaunchEventRow>()
            .await?;
        let mut by_seq = BTreeMap::new();
        for r in rows {
            by_seq.insert(r.seq, r);
        }
        Ok(by_seq.into_values().collect())
    }

    /// One of `tenant`'s launches.
    pub async fn launch(
        &self,
        tenant: &str,
        job_id: &str,
    ) -> Result<Option<StoredLaunch>, GatewayError> {
        let request = self
            .client
            .query("SELECT ?fields FROM launch_requests WHERE tenant = ? AND job_id = ? LIMIT 1")
            .bind(tenant)
            .bind(job_id)
            .fetch_optional::<LaunchRequestRow>()
            .await?;
        let Some(request) = request else {
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

    /// Whether a cancel was requested for the job.
    pub async fn cancel_requested(&self, tenant: &str, job_id: &str) -> Result<bool, GatewayError> {
        let n: u64 = self
            .client
            .query("SELECT count() FROM launch_cancellations WHERE tenant = ? AND job_id = ?")
            .bind(tenant)
            .bind(job_id)
            .fetch_one()
            .await?;
        Ok(n > 0)
    }

    /// `tenant`'s newest launches (at most `limit`), with their transitions.
    pub async fn list_launches(
        &self,
        tenant: &str,
        limit: u32,
    ) -> Result<Vec<StoredLaunch>, GatewayError> {
        let requests = self
            .client
            .query(
                "SELECT ?fields FROM launch_requests WHERE tenant = ? \
                 ORDER BY created_at DESC, created_ms DESC, job_id LIMIT 1 BY job_id LIMIT ?",
            )
            .bind(tenant)
            .bind(limit)
            .fetch_all::<LaunchRequestRow>()
            .await?;
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = requests.iter().map(|r| r.job_id.as_str()).collect();
        let events = self
            .client
            .query("SELECT ?fields FROM launch_events WHERE tenant = ? AND has(?, job_id) ORDER BY seq")
            .bind(tenant)
            .bind(&ids)
            .fetch_all::<LaunchEventRow>()
            .await?;
        let cancelled: Vec<String> = self
            .client
            .query("SELECT job_id FROM launch_cancellations WHERE tenant = ? AND has(?, job_id)")
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
}
