//! The launch outbox: every accepted launch reaches the launchers' queue, exactly once in
//! effect.
//!
//! Contract:
//! * [`crate::submit::Submit`] writes the job as it will be published (`launch_outbox`,
//!   `dispatched = 0`) *before* recording it in `launch_requests`, publishes it, and marks it
//!   dispatched once RabbitMQ confirmed it. A job is accepted (a job id returned) once it is
//!   recorded; a publish that fails or times out after that is not an error for the client —
//!   the job is in the outbox, and nothing is ever written into its `launch_events` sequence
//!   by the gateway after seq 0 (the launcher may be writing seq 1 already).
//! * [`Outbox::sweep`] (run by the leading launcher every `launcher.outbox.interval`)
//!   re-publishes the jobs accepted within the look-back that are still undispatched after
//!   the grace, are recorded in `launch_requests` and that no launcher picked up (no
//!   transition past seq 0), then marks them dispatched. A job whose outbox row exists but
//!   whose request does not (the gateway died in between, the client got no job id) is never
//!   published.
//! * Publishing twice is safe: the launcher resumes a job from its recorded state and launches
//!   with the job's client token, so a duplicate delivery changes nothing. Several launchers
//!   sweeping at once may each publish a stuck job once.
//! * Cost: one query over the outbox's recent partitions per sweep, bounded by `limit`.

use std::time::Duration;

use capsight_clickhouse::rows::LaunchOutboxRow;
use capsight_proto::v1;
use chrono::{DateTime, Utc};
use prost::Message;
use serde::Deserialize;

use crate::{
    queue::{JobPublisher, QueueError},
    store::{Store, StoreError},
};

/// Why a sweep failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// ClickHouse failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// RabbitMQ refused or did not confirm.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// `[launcher.outbox]`: the outbox sweep.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSettings {
    /// How often undispatched jobs are looked for.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long after acceptance a job may still be on its way from the gateway (longer than
    /// the gateway's `publish_timeout`) before a sweep publishes it.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// How far back sweeps look (jobs accepted earlier are never re-published).
    #[serde(with = "humantime_serde")]
    pub lookback: Duration,
    /// Most jobs published per sweep.
    pub batch: u32,
    /// Longest wait for the broker to confirm one job.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            grace: Duration::from_secs(30),
            lookback: Duration::from_secs(7 * 86_400),
            batch: 500,
            publish_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Pending {
    job_id: String,
    tenant: String,
    created_at: u32,
    job: String,
    dispatched: u8,
}

/// The outbox row of `job` (accepted at `created_at`), dispatched or not.
pub fn row(job: &v1::LaunchJob, created_at: DateTime<Utc>, dispatched: bool) -> LaunchOutboxRow {
    LaunchOutboxRow {
        job_id: job.job_id.clone(),
        tenant: job.tenant.clone(),
        created_at: u32::try_from(created_at.timestamp().max(0)).unwrap_or(u32::MAX),
        job: hex::encode(job.encode_to_vec()),
        dispatched: u8::from(dispatched),
    }
}

/// The job an outbox row holds; `None` when it cannot be decoded.
pub fn decode(row: &LaunchOutboxRow) -> Option<v1::LaunchJob> {
    v1::LaunchJob::decode(hex::decode(&row.job).ok()?.as_slice()).ok()
}

/// The outbox over the launch store and the job publisher.
#[derive(Debug, Clone, Copy)]
pub struct Outbox<'a> {
    /// Where launches are recorded.
    pub store: &'a Store,
    /// Where jobs go to the launchers.
    pub queue: &'a JobPublisher,
}

impl Outbox<'_> {
    /// Publishes `job` (its outbox row `row`) and marks it dispatched; the mark failing is only
    /// logged (the job would be published once more).
    pub async fn dispatch(
        &self,
        job: &v1::LaunchJob,
        row: &LaunchOutboxRow,
    ) -> Result<(), QueueError> {
        self.queue.publish(job).await?;
        let done = LaunchOutboxRow {
            dispatched: 1,
            ..row.clone()
        };
        if let Err(e) = self.store.record_outbox(&done).await {
            tracing::warn!(error = %e, job_id = %job.job_id, "job published but not marked dispatched; a sweep may publish it again");
        }
        Ok(())
    }

    /// Publishes `tenant`'s job `job_id` again when it is accepted but was never dispatched;
    /// true when it was published now.
    pub async fn redispatch(&self, tenant: &str, job_id: &str) -> Result<bool, OutboxError> {
        let Some(row) = self.store.outbox_job(tenant, job_id).await? else {
            return Ok(false);
        };
        if row.dispatched != 0 {
            return Ok(false);
        }
        let Some(job) = decode(&row) else {
            tracing::error!(job_id, tenant, "undecodable outbox row; not re-published");
            return Ok(false);
        };
        self.dispatch(&job, &row).await?;
        tracing::info!(job_id, tenant, "stuck queued job re-published");
        Ok(true)
    }

    /// One sweep at `now` (see the module contract): how many jobs were published. Stops at
    /// the first publish failure (the broker is likely down; the next sweep goes on).
    pub async fn sweep(
        &self,
        now: DateTime<Utc>,
        settings: &OutboxSettings,
    ) -> Result<usize, OutboxError> {
        let secs = |d: Duration| {
            let t = now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
            u32::try_from(t.timestamp().max(0)).unwrap_or(0)
        };
        let pending = self
            .store
            .outbox_pending(
                secs(settings.lookback),
                secs(settings.grace),
                settings.batch,
            )
            .await?;
        let mut published = 0;
        for p in pending {
            let row = LaunchOutboxRow {
                job_id: p.job_id,
                tenant: p.tenant,
                created_at: p.created_at,
                job: p.job,
                dispatched: p.dispatched,
            };
            let Some(job) = decode(&row) else {
                tracing::error!(job_id = %row.job_id, tenant = %row.tenant, "undecodable outbox row; not re-published");
                continue;
            };
            self.dispatch(&job, &row).await?;
            tracing::warn!(job_id = %row.job_id, tenant = %row.tenant, "accepted job never dispatched; published by the outbox sweep");
            crate::metrics::outbox_published();
            published += 1;
        }
        Ok(published)
    }
}

impl Store {
    /// Writes an outbox row.
    pub async fn record_outbox(&self, row: &LaunchOutboxRow) -> Result<(), StoreError> {
        capsight_clickhouse::insert_rows(self.client(), "launch_outbox", std::slice::from_ref(row))
            .await?;
        Ok(())
    }

    /// The outbox row of one job (dispatched when any of its rows is).
    pub async fn outbox_job(
        &self,
        tenant: &str,
        job_id: &str,
    ) -> Result<Option<LaunchOutboxRow>, StoreError> {
        #[derive(Debug, clickhouse::Row, Deserialize)]
        struct One {
            job: String,
            dispatched: u8,
        }
        let one = capsight_clickhouse::sql::LAUNCH_OUTBOX_JOB
            .query(self.client())
            .bind(tenant)
            .bind(job_id)
            .fetch_optional::<One>()
            .await?;
        Ok(one.map(|o| LaunchOutboxRow {
            job_id: job_id.to_owned(),
            tenant: tenant.to_owned(),
            created_at: 0,
            job: o.job,
            dispatched: o.dispatched,
        }))
    }

    async fn outbox_pending(
        &self,
        since: u32,
        until: u32,
        limit: u32,
    ) -> Result<Vec<Pending>, StoreError> {
        Ok(capsight_clickhouse::sql::LAUNCH_OUTBOX_PENDING
            .query(self.client())
            .bind(since)
            .bind(until)
            .bind(since)
            .bind(since)
            .bind(limit)
            .fetch_all::<Pending>()
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_carry_the_job() {
        let job = v1::LaunchJob {
            job_id: "j".into(),
            tenant: "acme".into(),
            max_fallbacks: 3,
            ..v1::LaunchJob::default()
        };
        let r = row(&job, DateTime::from_timestamp(1_000, 0).unwrap(), false);
        assert_eq!((r.created_at, r.dispatched), (1_000, 0));
        assert_eq!(decode(&r).unwrap(), job);
        assert!(
            decode(&LaunchOutboxRow {
                job: "zz".into(),
                ..r
            })
            .is_none()
        );
    }
}
