//! The notification tables in ClickHouse (`notify_*`, migration `0090_notifications.sql`):
//! subscriptions (the gateway writes, both read), the outbox, outcomes (the dead-letter store)
//! and the notifier's cursors; and the event sources it reads (`launch_events`, `alerts`).
//!
//! Every read of a tenant's data filters on its tenant id in SQL; values are bound, never
//! spliced.

use capsight_clickhouse::{
    rows::{
        AlertRow, LaunchEventRow, NotifyCursorRow, NotifyDeliveryRow, NotifyOutboxRow,
        NotifySubscriptionRow,
    },
    sql,
};
use chrono::Utc;

use crate::model::Subscription;

/// ClickHouse failed.
#[derive(Debug, thiserror::Error)]
#[error("clickhouse: {0}")]
pub struct StoreError(#[from] clickhouse::error::Error);

/// The notification store (cheap to clone).
#[derive(Clone)]
pub struct NotifyStore {
    client: clickhouse::Client,
}

impl std::fmt::Debug for NotifyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NotifyStore")
    }
}

/// The two event sources the notifier follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceTable {
    /// Launch transitions.
    LaunchEvents,
    /// Label transitions.
    Alerts,
}

impl SourceTable {
    /// Both.
    pub const ALL: [Self; 2] = [Self::LaunchEvents, Self::Alerts];

    /// The table name (the cursor's key).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LaunchEvents => "launch_events",
            Self::Alerts => "alerts",
        }
    }
}

impl NotifyStore {
    /// Over a client bound to the capsight database.
    pub fn new(client: clickhouse::Client) -> Self {
        Self { client }
    }

    async fn insert<R>(&self, table: &'static str, rows: &[R]) -> Result<(), StoreError>
    where
        R: clickhouse::RowOwned + clickhouse::RowWrite,
    {
        capsight_clickhouse::insert_rows(&self.client, table, rows).await?;
        Ok(())
    }

    /// Records a subscription (created or deleted).
    pub async fn put_subscription(&self, row: &NotifySubscriptionRow) -> Result<(), StoreError> {
        self.insert("notify_subscriptions", std::slice::from_ref(row))
            .await
    }

    /// A tenant's live subscriptions, oldest first (rows that do not decode are logged and
    /// left out).
    pub async fn subscriptions_of(&self, tenant: &str) -> Result<Vec<Subscription>, StoreError> {
        let rows = capsight_clickhouse::observed(
            "notify_subscriptions",
            self.client
                .query(sql::NOTIFY_SUBSCRIPTIONS_OF_TENANT.sql)
                .bind(tenant)
                .fetch_all::<NotifySubscriptionRow>(),
        )
        .await?;
        Ok(decode(rows))
    }

    /// Every tenant's live subscriptions, by tenant, oldest first.
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        let rows = capsight_clickhouse::observed(
            "notify_subscriptions",
            self.client
                .query(sql::NOTIFY_SUBSCRIPTIONS_ALL.sql)
                .fetch_all::<NotifySubscriptionRow>(),
        )
        .await?;
        Ok(decode(rows))
    }

    /// Where the notifier stopped reading `source` (ms), if it ever read it.
    pub async fn cursor(&self, source: SourceTable) -> Result<Option<u64>, StoreError> {
        let at = capsight_clickhouse::observed(
            "notify_cursors",
            self.client
                .query(sql::NOTIFY_CURSOR.sql)
                .bind(source.as_str())
                .fetch_one::<u64>(),
        )
        .await?;
        Ok((at > 0).then_some(at))
    }

    /// Records that `source` was read up to `position` (ms).
    pub async fn save_cursor(&self, source: SourceTable, position: u64) -> Result<(), StoreError> {
        let at = u32::try_from(Utc::now().timestamp()).unwrap_or(0);
        self.insert(
            "notify_cursors",
            &[NotifyCursorRow {
                source: source.as_str().to_owned(),
                position,
                at,
            }],
        )
        .await
    }

    /// Launch transitions with event time in `[from_ms, to_ms]` (second granularity below).
    pub async fn launch_events(
        &self,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<LaunchEventRow>, StoreError> {
        Ok(capsight_clickhouse::observed(
            "launch_events",
            self.client
                .query(sql::NOTIFY_LAUNCH_EVENTS.sql)
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all::<LaunchEventRow>(),
        )
        .await?)
    }

    /// Label transitions with event time in `[from_ms, to_ms]`.
    pub async fn alerts(&self, from_ms: u64, to_ms: u64) -> Result<Vec<AlertRow>, StoreError> {
        Ok(capsight_clickhouse::observed(
            "alerts",
            self.client
                .query(sql::NOTIFY_ALERTS.sql)
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all::<AlertRow>(),
        )
        .await?)
    }

    /// Queues notifications.
    pub async fn enqueue(&self, rows: &[NotifyOutboxRow]) -> Result<(), StoreError> {
        self.insert("notify_outbox", rows).await
    }

    /// Notifications written since `since` (unix seconds).
    pub async fn recent(&self, since: u32) -> Result<Vec<NotifyOutboxRow>, StoreError> {
        Ok(capsight_clickhouse::observed(
            "notify_outbox",
            self.client
                .query(sql::NOTIFY_OUTBOX_RECENT.sql)
                .bind(since)
                .fetch_all::<NotifyOutboxRow>(),
        )
        .await?)
    }

    /// Notifications written since `since` (unix seconds) without an outcome, at most `limit`.
    pub async fn pending(
        &self,
        since: u32,
        limit: u32,
    ) -> Result<Vec<NotifyOutboxRow>, StoreError> {
        Ok(capsight_clickhouse::observed(
            "notify_outbox",
            self.client
                .query(sql::NOTIFY_PENDING.sql)
                .bind(since)
                .bind(since)
                .bind(limit)
                .fetch_all::<NotifyOutboxRow>(),
        )
        .await?)
    }

    /// Records final outcomes.
    pub async fn record(&self, rows: &[NotifyDeliveryRow]) -> Result<(), StoreError> {
        self.insert("notify_deliveries", rows).await
    }

    /// A tenant's dead letters, newest first.
    pub async fn dead_letters(
        &self,
        tenant: &str,
        limit: u32,
    ) -> Result<Vec<NotifyDeliveryRow>, StoreError> {
        Ok(capsight_clickhouse::observed(
            "notify_deliveries",
            self.client
                .query(sql::NOTIFY_DEAD_LETTERS.sql)
                .bind(tenant)
                .bind(limit)
                .fetch_all::<NotifyDeliveryRow>(),
        )
        .await?)
    }
}

fn decode(rows: Vec<NotifySubscriptionRow>) -> Vec<Subscription> {
    rows.into_iter()
        .filter_map(|r| match Subscription::from_row(r) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "a stored subscription does not decode; ignored");
                None
            }
        })
        .collect()
}
