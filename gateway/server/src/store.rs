//! ClickHouse access of the gateway: score history with the signals that moved it, the
//! preflight log and the operator view's pipeline reads; launch records,
//! transitions, cancellations and heartbeats go through the launch core's store
//! ([`capsight_launch::store`]).
//!
//! Contract: every read that concerns a tenant filters on the tenant id in SQL (`tenant = ?`),
//! so one tenant never sees another's launches or preflights. `ReplacingMergeTree` tables may
//! hold not-yet-merged duplicates; reads de-duplicate (launch events by `seq`, requests by
//! `job_id`). Values are bound as parameters, never spliced.

use capsight_clickhouse::rows::PreflightLogRow;
use capsight_launch::usage::MonthlyUsage;
use capsight_proto::domain::CapacityKey;
use chrono::{Datelike, NaiveDate, Utc};
use serde::Deserialize;

use crate::GatewayError;

/// `[from, to)` in unix seconds, cut into buckets of `step` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    /// First second.
    pub from: u32,
    /// End, exclusive.
    pub to: u32,
    /// Bucket width, seconds.
    pub step: u32,
}

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

/// The signals of one (source, kind, outcome, error class) in one history bucket
/// (`sql::SIGNAL_MARKS`).
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
pub struct MarkRow {
    /// Bucket start, seconds.
    pub t: u32,
    /// `probe`, `launch`, `report`, ...
    pub source: String,
    /// `launch_attempt`, `spot_price`, `status`, `crowd_report`.
    pub kind: String,
    /// Launch outcome, report kind or status severity.
    pub outcome: String,
    /// Error class or empty.
    pub error_class: String,
    /// Distinct signals.
    pub n: u64,
    /// Of those, the ones whose value is above 0 (an open status incident).
    pub valued: u64,
    /// Highest value (a price).
    pub max_value: f64,
}

/// The newest signal of one source (`sql::COLLECTOR_FRESHNESS`).
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
pub struct FreshnessRow {
    /// `probe`, `quota`, `spot`, ...
    pub source: String,
    /// Newest observation, seconds.
    pub last_observed: u32,
    /// Newest write, seconds.
    pub last_ingested: u32,
    /// Signals since the query's start.
    pub signals: u64,
}

/// What one prober spent today (`sql::PROBE_SPEND_BY_PROBER`).
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
pub struct ProbeSpendRow {
    /// The prober instance.
    pub prober: String,
    /// USD spent (settled) or set aside (not settled yet).
    pub spent_usd: f64,
    /// Probes run (not skipped).
    pub probes: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Newest audit row, seconds.
    pub last_at: u32,
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
        capsight_clickhouse::insert_rows(self.launches.client(), table, rows).await?;
        Ok(())
    }

    /// The rows of `statement` for `key` in `buckets` (its binds: step, step, the key's five
    /// columns, from, to).
    async fn bucketed<R>(
        &self,
        statement: capsight_clickhouse::sql::Statement,
        key: &CapacityKey,
        Buckets { from, to, step }: Buckets,
    ) -> Result<Vec<R>, GatewayError>
    where
        R: clickhouse::RowOwned + clickhouse::RowRead,
    {
        Ok(statement
            .query(self.launches.client())
            .bind(step)
            .bind(step)
            .bind(key.provider.as_str())
            .bind(key.region.as_str())
            .bind(key.zone_str())
            .bind(key.instance_type.as_str())
            .bind(key.market.as_str())
            .bind(from)
            .bind(to)
            .fetch_all::<R>()
            .await?)
    }

    /// The rows of `statement`, its one `?` bound to `value`.
    async fn rows_of<R>(
        &self,
        statement: capsight_clickhouse::sql::Statement,
        value: impl clickhouse::sql::Bind,
    ) -> Result<Vec<R>, GatewayError>
    where
        R: clickhouse::RowOwned + clickhouse::RowRead,
    {
        Ok(self
            .launches
            .client()
            .query(statement.sql)
            .bind(value)
            .fetch_all::<R>()
            .await?)
    }

    /// Score history of `key`, one row per bucket.
    pub async fn history(
        &self,
        key: &CapacityKey,
        b: Buckets,
    ) -> Result<Vec<HistoryRow>, GatewayError> {
        self.bucketed(capsight_clickhouse::sql::SCORE_HISTORY, key, b)
            .await
    }

    /// The signals that moved `key`'s score, per bucket.
    pub async fn marks(&self, key: &CapacityKey, b: Buckets) -> Result<Vec<MarkRow>, GatewayError> {
        self.bucketed(capsight_clickhouse::sql::SIGNAL_MARKS, key, b)
            .await
    }

    /// The newest signal per source observed since `since` (unix seconds).
    pub async fn freshness(&self, since: u32) -> Result<Vec<FreshnessRow>, GatewayError> {
        self.rows_of(capsight_clickhouse::sql::COLLECTOR_FRESHNESS, since)
            .await
    }

    /// The newest score row written since `since` (unix seconds); 0 when none.
    pub async fn scores_last_written(&self, since: u32) -> Result<u32, GatewayError> {
        Ok(self
            .launches
            .client()
            .query(capsight_clickhouse::sql::SCORES_LAST_WRITTEN.sql)
            .bind(since)
            .fetch_one::<u32>()
            .await?)
    }

    /// What every prober spent on `day` (`YYYY-MM-DD`).
    pub async fn probe_spend(&self, day: &str) -> Result<Vec<ProbeSpendRow>, GatewayError> {
        self.rows_of(capsight_clickhouse::sql::PROBE_SPEND_BY_PROBER, day)
            .await
    }

    /// Every tenant's checked reports over `horizon` (`sql::TENANT_TRUST`, the scorer's own
    /// query).
    pub async fn tenant_trust(
        &self,
        since: u32,
    ) -> Result<Vec<capsight_clickhouse::rows::TenantTrustRow>, GatewayError> {
        self.rows_of(capsight_clickhouse::sql::TENANT_TRUST, since)
            .await
    }

    /// The first day of this month (UTC) and the GPU-hours from it on, of `tenant`, or of every
    /// tenant when `tenant` is empty; a failure is the `clickhouse` dependency unavailable.
    pub async fn gpu_hours_this_month(
        &self,
        tenant: &str,
    ) -> Result<(NaiveDate, Vec<MonthlyUsage>), GatewayError> {
        let today = Utc::now().date_naive();
        let month = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap_or(today);
        let tenant = (!tenant.is_empty()).then_some(tenant);
        let rows = capsight_launch::usage::monthly(self.launches.client(), month, tenant).await?;
        Ok((month, rows))
    }

    /// Appends a preflight to the log.
    pub async fn log_preflight(&self, row: &PreflightLogRow) -> Result<(), GatewayError> {
        self.insert("preflight_log", std::slice::from_ref(row))
            .await
    }
}

pub use capsight_launch::store::StoredLaunch;
