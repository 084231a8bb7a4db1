//! ClickHouse side of the scorer: batched, idempotent inserts and window rebuilds.
//!
//! Contract:
//! * [`Store::write`] inserts a batch's signals, score-history rows and alert rows, one insert
//!   per table, and returns only when ClickHouse acknowledged all of them (durable). Every table
//!   is a `ReplacingMergeTree` whose sorting key holds the row's identity, so writing the same
//!   batch twice (a replay after a crash) collapses in merges; exact reads use `FINAL` or
//!   `uniqExact(id)`.
//! * [`Store::load_windows`] reads back, for each key, every stored signal observed at or after
//!   one window before the given time: enough to rebuild the key's window exactly (rows may be
//!   repeated; the window de-duplicates by signal id).

use std::collections::BTreeMap;
use std::time::Duration;

use capsight_clickhouse::{
    ClickHouseSettings,
    rows::{AlertRow, ScoreRow, SignalRow, split_time},
};
use capsight_proto::domain::{CapacityKey, Signal, SignalId};
use chrono::{DateTime, Utc};

use crate::ScorerError;
use crate::engine::Outputs;
use crate::observation::Observation;

/// The scorer's ClickHouse tables.
#[derive(Clone)]
pub struct Store {
    client: clickhouse::Client,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn query_err(op: &'static str) -> impl FnOnce(clickhouse::error::Error) -> ScorerError {
    move |source| ScorerError::ClickHouse { op, source }
}

impl Store {
    /// A store on the configured database.
    pub fn new(settings: &ClickHouseSettings) -> Result<Self, ScorerError> {
        Ok(Self {
            client: settings.client()?,
        })
    }

    async fn insert<R>(&self, table: &'static str, rows: &[R]) -> Result<(), ScorerError>
    where
        R: clickhouse::RowOwned + clickhouse::RowWrite,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .client
            .insert::<R>(table)
            .await
            .map_err(query_err(table))?;
        for row in rows {
            insert.write(row).await.map_err(query_err(table))?;
        }
        insert.end().await.map_err(query_err(table))
    }

    /// Inserts a batch's rows; durable when it returns `Ok`.
    pub async fn write(&self, signals: &[SignalRow], outputs: &Outputs) -> Result<(), ScorerError> {
        self.insert("signals", signals).await?;
        let history: Vec<ScoreRow> = outputs.history.iter().map(ScoreRow::new).collect();
        self.insert("scores", &history).await?;
        let alerts: Vec<AlertRow> = outputs
            .alerts
            .iter()
            .map(|a| AlertRow::new(&a.score, a.from, a.low_confidence))
            .collect();
        self.insert("alerts", &alerts).await
    }

    /// Stored signals of `keys`, each from one `window` before its time on.
    pub async fn load_windows(
        &self,
        keys: &BTreeMap<CapacityKey, DateTime<Utc>>,
        window: Duration,
    ) -> Result<Vec<(CapacityKey, SignalId, Observation)>, ScorerError> {
        let Some(oldest) = keys.values().min() else {
            return Ok(Vec::new());
        };
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let since = split_time(*oldest - window).0.saturating_sub(1);
        let names: Vec<String> = keys.keys().map(ToString::to_string).collect();
        let by_name: BTreeMap<&str, &CapacityKey> =
            names.iter().map(String::as_str).zip(keys.keys()).collect();
        let rows: Vec<SignalRow> = self
            .client
            .query(
                "SELECT ?fields FROM signals \
                 WHERE observed_at >= ? \
                 AND has(?, concat(provider, '/', region, '/', zone_id, '/', instance_type, '/', market))",
            )
            .bind(since)
            .bind(&names)
            .fetch_all()
            .await
            .map_err(query_err("rebuild windows from signals"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let name = format!(
                "{}/{}/{}/{}/{}",
                row.provider, row.region, row.zone_id, row.instance_type, row.market
            );
            let Some(key) = by_name.get(name.as_str()) else {
                continue;
            };
            let id = SignalId::parse("id", &row.id).map_err(|e| ScorerError::Rebuild {
                reason: format!("signals row with id {:?}: {e}", row.id),
            })?;
            let obs = Observation::from_row(&row).map_err(|e| ScorerError::Rebuild {
                reason: e.to_string(),
            })?;
            out.push(((*key).clone(), id, obs));
        }
        Ok(out)
    }
}

/// The `signals` rows of a batch.
pub fn signal_rows<'a>(
    signals: impl IntoIterator<Item = &'a Signal>,
    ingested_at: DateTime<Utc>,
) -> Vec<SignalRow> {
    signals
        .into_iter()
        .map(|s| SignalRow::new(s, ingested_at))
        .collect()
}
