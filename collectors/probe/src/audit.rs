//! The audit trail in ClickHouse (`probe_audit`, migration 0030) and the spend recovered from it.
//!
//! Contract: a probe writes its `reserved` row (estimated cost) before any cloud call, and no
//! probe runs when that write fails; its `done` row (outcome, actual cost, resources) follows.
//! [`Audit::spent_on`] is what a restarted prober has spent on a day: per probe, the actual cost
//! when it is done, else the estimate it had set aside (it may have been killed mid-probe).

use capsight_clickhouse::{ClickHouseError, ClickHouseSettings, rows::ProbeAuditRow};
use chrono::NaiveDate;

/// `reserved`: budget set aside, before the cloud call.
pub const PHASE_RESERVED: &str = "reserved";
/// `done`: the probe's outcome.
pub const PHASE_DONE: &str = "done";
/// A done probe whose signal was never acknowledged by the broker.
#[derive(Debug, Clone, clickhouse::Row, serde::Deserialize)]
pub struct Unpublished {
    /// The probe id.
    pub probe_id: String,
    /// Its launch-attempt signal, protobuf, hex.
    pub signal: String,
}

/// Phase of the row written once the broker acknowledged the probe's signal.
pub const PHASE_PUBLISHED: &str = "published";

/// An audit failure.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Bad settings.
    #[error(transparent)]
    Settings(#[from] ClickHouseError),
    /// The server refused or could not be reached.
    #[error("probe audit {op}: {source}")]
    Query {
        /// What was being done.
        op: &'static str,
        /// The client's error.
        source: clickhouse::error::Error,
    },
}

impl AuditError {
    /// The error of a failed `op` (for `map_err`).
    pub(crate) fn query(op: &'static str) -> impl FnOnce(clickhouse::error::Error) -> Self {
        move |source| Self::Query { op, source }
    }
}

/// Days since the epoch, as ClickHouse stores a `Date`.
pub fn day_number(day: NaiveDate) -> u16 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    u16::try_from((day - epoch).num_days().max(0)).unwrap_or(u16::MAX)
}

/// Writes and reads `probe_audit`.
#[derive(Clone)]
pub struct Audit {
    client: clickhouse::Client,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").finish_non_exhaustive()
    }
}

impl Audit {
    /// An audit over the configured database.
    pub fn new(settings: &ClickHouseSettings) -> Result<Self, AuditError> {
        Ok(Self {
            client: settings.client()?,
        })
    }

    /// The client (demand is read with it too).
    pub fn client(&self) -> &clickhouse::Client {
        &self.client
    }

    /// Appends one row; resolves once ClickHouse has it.
    pub async fn write(&self, row: &ProbeAuditRow) -> Result<(), AuditError> {
        capsight_clickhouse::insert_rows(&self.client, "probe_audit", std::slice::from_ref(row))
            .await
            .map_err(AuditError::query("insert"))
    }

    /// The outbox: signals (protobuf, hex) of `prober`'s done probes of the last two days
    /// without a `published` row, oldest first.
    pub async fn unpublished(&self, prober: &str) -> Result<Vec<Unpublished>, AuditError> {
        let statement = capsight_clickhouse::sql::PROBE_UNPUBLISHED;
        statement
            .query(&self.client)
            .bind(prober)
            .fetch_all::<Unpublished>()
            .await
            .map_err(AuditError::query("read the outbox"))
    }

    /// What `prober` has spent (or has set aside for probes that never finished) on `day`.
    pub async fn spent_on(&self, prober: &str, day: NaiveDate) -> Result<f64, AuditError> {
        let statement = capsight_clickhouse::sql::PROBE_SPENT;
        statement
            .query(&self.client)
            .bind(prober)
            .bind(day.format("%Y-%m-%d").to_string())
            .fetch_one::<f64>()
            .await
            .map_err(AuditError::query("recover spend"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_count_from_the_epoch() {
        assert_eq!(day_number(NaiveDate::from_ymd_opt(1970, 1, 2).unwrap()), 1);
        assert_eq!(
            day_number(NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()),
            20_780
        );
    }
}
