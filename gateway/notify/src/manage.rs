//! The subscription use cases the gateway's `NotificationService` calls: create (bounded per
//! tenant, secret derived and returned once), list, delete, list dead letters — each scoped to
//! the calling tenant.

use std::sync::Arc;

use capsight_catalog::Catalog;
use capsight_clickhouse::rows::NotifyDeliveryRow;
use capsight_proto::{domain::FieldError, v1};
use capsight_tenancy::{TenantHasher, TenantId};
use chrono::Utc;

use crate::{
    events::Event,
    model::{EventKind, NetworkPolicy, Spec, Subscription, prost_ts},
    settings::NotifySettings,
    store::{NotifyStore, StoreError},
};

/// Why a subscription call failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// A request field is invalid.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The tenant holds its limit of subscriptions.
    #[error("this tenant already holds {limit} subscriptions, its limit; delete one first")]
    TooMany {
        /// The limit.
        limit: u32,
    },
    /// No such subscription of this tenant.
    #[error("subscription {0} not found")]
    NotFound(String),
    /// ClickHouse.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Most dead letters one call lists.
pub const MAX_DEAD_LETTERS: u32 = 500;

/// The subscription use cases.
#[derive(Debug, Clone)]
pub struct Subscriptions {
    store: NotifyStore,
    settings: NotifySettings,
    policy: NetworkPolicy,
    hasher: TenantHasher,
    catalog: Arc<Catalog>,
    /// Serialises creates per process, so one gateway never exceeds the limit; across
    /// gateways the notifier serves only the oldest `max_subscriptions_per_tenant`.
    creating: Arc<tokio::sync::Mutex<()>>,
}

impl Subscriptions {
    /// Over the store, `[notify]`, the tenant hasher (webhook secrets) and the catalog (GPU
    /// models).
    pub fn new(
        store: NotifyStore,
        settings: NotifySettings,
        hasher: TenantHasher,
        catalog: Arc<Catalog>,
    ) -> Result<Self, FieldError> {
        let policy = NetworkPolicy::from_settings(&settings)?;
        Ok(Self {
            store,
            settings,
            policy,
            hasher,
            catalog,
            creating: Arc::default(),
        })
    }

    /// Creates a subscription of `tenant`: the stored subscription and its secret.
    pub async fn create(
        &self,
        tenant: &TenantId,
        r: &v1::CreateSubscriptionRequest,
    ) -> Result<(Subscription, String), ManageError> {
        let spec = Spec::from_wire(r, &self.settings, &self.policy, &self.catalog)?;
        let _one = self.creating.lock().await;
        let held = self.store.subscriptions_of(tenant.as_str()).await?;
        let limit = self.settings.max_subscriptions_per_tenant;
        if held.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
            return Err(ManageError::TooMany { limit });
        }
        let now = Utc::now();
        let sub = Subscription {
            tenant: tenant.as_str().to_owned(),
            id: uuid::Uuid::new_v4().hyphenated().to_string(),
            created_at: u32::try_from(now.timestamp()).unwrap_or(0),
            url: spec.url.as_str().to_owned(),
            format: spec.format,
            kinds: spec.kinds,
            keys: spec.keys,
            cooldown: spec.cooldown,
            low_confidence: spec.low_confidence,
        };
        let version = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        self.store.put_subscription(&sub.row(version)).await?;
        let secret = self.hasher.webhook_secret(tenant, &sub.id);
        tracing::info!(
            tenant = tenant.as_str(),
            id = sub.id,
            "subscription created"
        );
        Ok((sub, secret))
    }

    /// The tenant's subscriptions.
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<Subscription>, ManageError> {
        Ok(self.store.subscriptions_of(tenant.as_str()).await?)
    }

    /// Deletes one of the tenant's subscriptions (another tenant's is not found).
    pub async fn delete(&self, tenant: &TenantId, id: &str) -> Result<(), ManageError> {
        if id.is_empty() {
            return Err(FieldError::missing("id").into());
        }
        if id.len() > 64 {
            return Err(FieldError::new("id", "is longer than 64 characters").into());
        }
        let held = self.store.subscriptions_of(tenant.as_str()).await?;
        let Some(sub) = held.into_iter().find(|s| s.id == id) else {
            return Err(ManageError::NotFound(id.to_owned()));
        };
        let version = u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0);
        let mut row = sub.row(version);
        row.deleted = 1;
        self.store.put_subscription(&row).await?;
        tracing::info!(tenant = tenant.as_str(), id, "subscription deleted");
        Ok(())
    }

    /// The tenant's dead letters, newest first (`limit` 0 = 50, at most [`MAX_DEAD_LETTERS`]).
    pub async fn dead_letters(
        &self,
        tenant: &TenantId,
        limit: u32,
    ) -> Result<Vec<v1::DeadLetter>, ManageError> {
        let limit = match limit {
            0 => 50,
            n if n > MAX_DEAD_LETTERS => {
                return Err(FieldError::new("limit", format!("at most {MAX_DEAD_LETTERS}")).into());
            }
            n => n,
        };
        let rows = self.store.dead_letters(tenant.as_str(), limit).await?;
        Ok(rows.into_iter().map(dead_letter).collect())
    }
}

fn dead_letter(r: NotifyDeliveryRow) -> v1::DeadLetter {
    let event = EventKind::parse("kind", &r.kind)
        .map(|k| k.to_wire() as i32)
        .unwrap_or(0);
    // the stored event is the generic JSON body
    let payload = serde_json::from_str::<Event>(&r.event)
        .ok()
        .and_then(|e| serde_json::to_string(&e).ok())
        .unwrap_or(r.event);
    v1::DeadLetter {
        id: r.id,
        subscription_id: r.subscription_id,
        event,
        attempts: r.attempts,
        last_status: u32::from(r.status),
        last_error: r.error,
        failed_at: Some(prost_ts(r.at)),
        payload,
    }
}
