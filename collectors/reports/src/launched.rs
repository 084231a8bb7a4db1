//! Instances capsight launched for a tenant, found in ClickHouse `launch_events`, to key the
//! instance events (interruption warnings, rebalance recommendations...) of instances whose
//! CloudTrail `RunInstances` the intake never saw.
//!
//! Contract: a lookup is scoped to the authenticated tenant (`launch_events.tenant` = tenant
//! id), so a tenant's event can only be keyed with its own launches. The key is that of the
//! newest transition naming the instance (after a fallback it may differ from the request).
//! `Ok(None)` = not one of capsight's launches for this tenant; `Err` = ClickHouse failed (the
//! intake answers 503 so the sender retries).

use capsight_proto::domain::{CapacityKey, Market};
use serde::Deserialize;

use crate::normalize::InstanceInfo;

#[derive(Debug, clickhouse::Row, Deserialize)]
struct KeyRow {
    provider: String,
    region: String,
    zone_id: String,
    instance_type: String,
    market: String,
}

/// Lookups of capsight-launched instances.
#[derive(Clone)]
pub struct LaunchedInstances {
    client: clickhouse::Client,
}

impl std::fmt::Debug for LaunchedInstances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LaunchedInstances")
    }
}

impl LaunchedInstances {
    /// Over a client bound to the capsight database.
    pub fn new(client: clickhouse::Client) -> Self {
        Self { client }
    }

    /// The key of `instance_id` if capsight launched it for `tenant`.
    pub async fn lookup(
        &self,
        tenant: &str,
        instance_id: &str,
    ) -> Result<Option<InstanceInfo>, clickhouse::error::Error> {
        let statement = capsight_clickhouse::sql::LAUNCHED_INSTANCE;
        let row = statement
            .query(&self.client)
            .bind(tenant)
            .bind(instance_id)
            .fetch_optional::<KeyRow>()
            .await?;
        Ok(row.and_then(|r| {
            let market = Market::parse("market", &r.market).ok()?;
            CapacityKey::parse(&r.provider, &r.region, &r.zone_id, &r.instance_type, market)
                .ok()
                .map(|key| InstanceInfo { key })
        }))
    }
}
