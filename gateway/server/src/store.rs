//! ClickHouse access of the gateway: score history and the preflight log; launch records,
//! transitions, cancellations and heartbeats go through the launch core's store
//! ([`capsight_launch::store`]).
//!
//! Contract: every read that concerns a tenant filters on the tenant id in SQL (`tenant = ?`),
//! so one tenant never sees another's launches or preflights. `ReplacingMergeTree` tables may
//! hold not-yet-merged duplicates; reads de-duplicate (launch events by `seq`, requests by
//! `job_id`). Values are bound as parameters, never spliced.

use capsight_clickhouse::rows::PreflightLogRow;
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

/// The gateway's ClickHouse client: score history and the preflight log here, launches in the
/// launch core's store ([`Store::launches`]).
#[derive(Debug, Clone)]
pub struct Store {
    launches: capsight_launch::store::Store,
}

impl Store {
    /// Over a client bound to the capsight database.
    pub fn new(client: clickhouse::Client) -> Self {
        Self {
            launches: capsight_launch::store::Store::new(client),
        }
    }

    /// Launch records and transitions (the store the launcher writes too).
    pub fn launches(&self) -> &capsight_launch::store::Store {
        &self.launches
    }

    async fn insert<R>(&self, table: &'static str, rows: &[R]) -> Result<(), GatewayError>
    where
        R: clickhouse::RowOwned + clickhouse::RowWrite,
    {
        capsight_clickhouse::observed(table, async {
            let mut insert = self.launches.client().insert::<R>(table).await?;
            for r in rows {
                insert.write(r).await?;
            }
            insert.end().await
        })
        .await?;
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
        Ok(capsight_clickhouse::observed(
            capsight_clickhouse::sql::SCORE_HISTORY.name,
            self.launches
                .client()
                .query(capsight_clickhouse::sql::SCORE_HISTORY.sql)
                .bind(step)
                .bind(step)
                .bind(key.provider.as_str())
                .bind(key.region.as_str())
                .bind(key.zone_str())
                .bind(key.instance_type.as_str())
                .bind(key.market.as_str())
                .bind(from)
                .bind(to)
                .fetch_all::<HistoryRow>(),
        )
        .await?)
    }

    /// Appends a preflight to the log.
    pub async fn log_preflight(&self, row: &PreflightLogRow) -> Result<(), GatewayError> {
        self.insert("preflight_log", std::slice::from_ref(row))
            .await
    }
}

pub use capsight_launch::store::StoredLaunch;
