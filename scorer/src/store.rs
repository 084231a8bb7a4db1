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
//! * [`Store::load_trust`] reads every tenant's agreements and contradictions (one per checked
//!   report) within the trust horizon and turns them into the model's [`Trust`].

use std::collections::BTreeMap;
use std::time::Duration;

use capsight_clickhouse::{
    ClickHouseSettings,
    rows::{AlertRow, ScoreRow, SignalRow, TenantCheckRow, TenantTrustRow, split_time},
    sql,
};
use capsight_proto::domain::{CapacityKey, Label, Signal, SignalId};
use capsight_tenancy::trust::TrustSettings;
use chrono::{DateTime, Utc};

use crate::ScorerError;
use crate::engine::{Outputs, Resume, TrustCheck};
use crate::model::Trust;
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
        capsight_clickhouse::insert_rows(&self.client, table, rows)
            .await
            .map_err(query_err(table))
    }

    /// Inserts a batch's rows; durable when it returns `Ok`. Checks go first: a report whose
    /// signal is stored is never checked again (a rebuilt window holds it already), while a
    /// check written twice collapses.
    pub async fn write(&self, signals: &[SignalRow], outputs: &Outputs) -> Result<(), ScorerError> {
        let checked_at = split_time(Utc::now()).0;
        let checks: Vec<TenantCheckRow> = outputs
            .checks
            .iter()
            .map(|c| check_row(c, checked_at))
            .collect();
        self.insert("tenant_checks", &checks).await?;
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

    /// Stored signals of `keys`, each from one `window` before its time on. Keys are looked up
    /// [`REBUILD_KEYS_PER_QUERY`] at a time (the key list travels in the query text, which
    /// ClickHouse bounds by `max_query_size`).
    pub async fn load_windows(
        &self,
        keys: &BTreeMap<CapacityKey, DateTime<Utc>>,
        window: Duration,
    ) -> Result<Vec<(CapacityKey, SignalId, Observation)>, ScorerError> {
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let all: Vec<(&CapacityKey, &DateTime<Utc>)> = keys.iter().collect();
        let mut out = Vec::new();
        for chunk in all.chunks(REBUILD_KEYS_PER_QUERY) {
            let Some(oldest) = chunk.iter().map(|(_, t)| **t).min() else {
                continue;
            };
            let since = split_time(oldest - window).0.saturating_sub(1);
            let by_name: BTreeMap<String, &CapacityKey> =
                chunk.iter().map(|(k, _)| (k.to_string(), *k)).collect();
            let names: Vec<&str> = by_name.keys().map(String::as_str).collect();
            let rows: Vec<SignalRow> = sql::SIGNAL_WINDOWS
                .query(&self.client)
                .bind(since)
                .bind(&names)
                .fetch_all()
                .await
                .map_err(query_err("rebuild windows from signals"))?;
            for row in rows {
                let name = format!(
                    "{}/{}/{}/{}/{}",
                    row.provider, row.region, row.zone_id, row.instance_type, row.market
                );
                let Some(key) = by_name.get(&name) else {
                    continue;
                };
                // a row this version cannot read is skipped, not fatal: it was valid when
                // written, so this only happens across incompatible schema changes
                let parsed = SignalId::parse("id", &row.id)
                    .map_err(|e| e.to_string())
                    .and_then(|id| {
                        Observation::from_row(&row)
                            .map(|obs| (id, obs))
                            .map_err(|e| e.to_string())
                    });
                match parsed {
                    Ok((id, obs)) => out.push(((*key).clone(), id, obs)),
                    Err(reason) => tracing::warn!(%reason, "unreadable signals row skipped"),
                }
            }
        }
        Ok(out)
    }
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct LastScore {
    key: String,
    score: u8,
    label: String,
    confidence: f32,
    at_ms: u64,
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct LastAlert {
    key: String,
    label: String,
    at_ms: u64,
}

impl Store {
    /// The rows `statement` selects for the keys named `names` (its one bound value).
    async fn of_keys<R>(
        &self,
        statement: sql::Statement,
        names: &[&str],
        op: &'static str,
    ) -> Result<Vec<R>, ScorerError>
    where
        R: clickhouse::RowOwned + clickhouse::RowRead,
    {
        statement
            .query(&self.client)
            .bind(names)
            .fetch_all()
            .await
            .map_err(query_err(op))
    }

    /// What the last run wrote for `keys`: the newest history row and the newest alert of each.
    pub async fn load_resume(
        &self,
        keys: &BTreeMap<CapacityKey, DateTime<Utc>>,
    ) -> Result<BTreeMap<CapacityKey, Resume>, ScorerError> {
        let all: Vec<&CapacityKey> = keys.keys().collect();
        let mut out: BTreeMap<CapacityKey, Resume> = BTreeMap::new();
        for chunk in all.chunks(REBUILD_KEYS_PER_QUERY) {
            let by_name: BTreeMap<String, &CapacityKey> =
                chunk.iter().map(|k| (k.to_string(), *k)).collect();
            let names: Vec<&str> = by_name.keys().map(String::as_str).collect();
            let scores: Vec<LastScore> = self
                .of_keys(sql::RESUME_SCORES, &names, "resume from scores")
                .await?;
            let alerts: Vec<LastAlert> = self
                .of_keys(sql::RESUME_ALERTS, &names, "resume from alerts")
                .await?;
            let ms = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
            for s in scores {
                if let (Some(key), Ok(label)) =
                    (by_name.get(&s.key), Label::parse("label", &s.label))
                {
                    out.entry((*key).clone()).or_default().last_written =
                        Some((s.score, label, f64::from(s.confidence), ms(s.at_ms)));
                }
            }
            for a in alerts {
                if let (Some(key), Ok(label)) =
                    (by_name.get(&a.key), Label::parse("label", &a.label))
                {
                    out.entry((*key).clone()).or_default().last_alert = Some((label, ms(a.at_ms)));
                }
            }
        }
        Ok(out)
    }
}

impl Store {
    /// Every tenant's trust from its checks of reports observed within `settings.horizon`
    /// before `now`; tenants without checks get the fresh tenant's trust.
    pub async fn load_trust(
        &self,
        settings: &TrustSettings,
        now: DateTime<Utc>,
    ) -> Result<Trust, ScorerError> {
        let horizon = chrono::Duration::from_std(settings.horizon).unwrap_or(chrono::Duration::MAX);
        let since = now.checked_sub_signed(horizon).unwrap_or_default();
        let rows: Vec<TenantTrustRow> = sql::TENANT_TRUST
            .query(&self.client)
            .bind(split_time(since).0)
            .fetch_all()
            .await
            .map_err(query_err("load tenant trust"))?;
        Ok(Trust::new(
            settings.fresh(),
            rows.into_iter()
                .map(|r| (r.tenant, settings.trust(r.agreements, r.contradictions)))
                .collect(),
        ))
    }
}

/// The `tenant_checks` row of a check made at `checked_at` (unix seconds).
fn check_row(c: &TrustCheck, checked_at: u32) -> TenantCheckRow {
    let at = DateTime::from_timestamp_millis(c.at_ms).unwrap_or_default();
    let (at, at_ms) = split_time(at);
    TenantCheckRow {
        tenant: c.tenant.as_str().to_owned(),
        report_id: c.report.as_str().to_owned(),
        provider: c.key.provider.as_str().to_owned(),
        region: c.key.region.as_str().to_owned(),
        zone_id: c.key.zone_str().to_owned(),
        instance_type: c.key.instance_type.as_str().to_owned(),
        market: c.key.market.as_str().to_owned(),
        at,
        at_ms,
        opinion: if c.opinion > 0.0 { 1 } else { -1 },
        verdict: c.verdict,
        agrees: u8::from(c.agrees()),
        checked_at,
    }
}

/// Keys per window-rebuild query.
pub const REBUILD_KEYS_PER_QUERY: usize = 500;

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
