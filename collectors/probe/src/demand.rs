//! Tenant demand per key: how often tenants asked about it, from the gateway's `preflight_log`
//! (migration 0020) over `probe.demand_window`, in requests per day.
//!
//! A zonal key counts the preflights of its zone and the region-level ones (zone empty) of its
//! (provider, region, instance type, market); a region-level key counts every preflight of its
//! region, type and market. [`refused`] is when each key was last asked about and refused for
//! capacity (decision `retry_with_alternatives`): a tenant waiting on it now.

use std::{collections::HashMap, time::Duration};

use capsight_proto::domain::CapacityKey;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::audit::AuditError;

/// Preflights of one key over the window.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Deserialize)]
pub struct DemandRow {
    /// Provider.
    pub provider: String,
    /// Region.
    pub region: String,
    /// Zone id or empty.
    pub zone_id: String,
    /// Instance type.
    pub instance_type: String,
    /// Market.
    pub market: String,
    /// Requests in the window.
    pub n: u64,
    /// The newest of them refused for capacity, unix seconds; 0 = none.
    pub refused_at: u32,
}

/// Reads the preflight counts of the last `window`.
pub async fn read(
    client: &clickhouse::Client,
    window: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<DemandRow>, AuditError> {
    let since = now - chrono::TimeDelta::from_std(window).unwrap_or(chrono::TimeDelta::days(1));
    let since = u32::try_from(since.timestamp().max(0)).unwrap_or(0);
    let statement = capsight_clickhouse::sql::PROBE_DEMAND;
    statement
        .query(client)
        .bind(since)
        .fetch_all::<DemandRow>()
        .await
        .map_err(AuditError::query("read demand"))
}

/// Whether the preflights of `r` count for key `k`.
fn asks(r: &DemandRow, k: &CapacityKey) -> bool {
    r.provider == k.provider.as_str()
        && r.region == k.region.as_str()
        && r.instance_type == k.instance_type.as_str()
        && r.market == k.market.as_str()
        && (k.zone.is_none() || r.zone_id.is_empty() || r.zone_id == k.zone_str())
}

/// Requests per day for each of `keys`.
pub fn per_key(
    rows: &[DemandRow],
    keys: &[CapacityKey],
    window: Duration,
) -> HashMap<CapacityKey, f64> {
    let per_day = 86_400.0 / window.as_secs_f64().max(1.0);
    keys.iter()
        .map(|k| {
            let n: u64 = rows.iter().filter(|r| asks(r, k)).map(|r| r.n).sum();
            (k.clone(), n as f64 * per_day)
        })
        .collect()
}

/// When each of `keys` that was refused for capacity in the window was last refused.
pub fn refused(rows: &[DemandRow], keys: &[CapacityKey]) -> HashMap<CapacityKey, DateTime<Utc>> {
    keys.iter()
        .filter_map(|k| {
            let newest = rows
                .iter()
                .filter(|r| r.refused_at > 0 && asks(r, k))
                .map(|r| r.refused_at)
                .max()?;
            Some((k.clone(), DateTime::from_timestamp(i64::from(newest), 0)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(zone: &str, n: u64) -> DemandRow {
        DemandRow {
            provider: "aws".into(),
            region: "us-east-1".into(),
            zone_id: zone.into(),
            instance_type: "p5.48xlarge".into(),
            market: "on_demand".into(),
            n,
            refused_at: 0,
        }
    }

    /// The p5 on-demand key of `zone` in us-east-1 (region-level when empty).
    fn p5(zone: &str) -> CapacityKey {
        format!("aws/us-east-1/{zone}/p5.48xlarge/on_demand")
            .parse()
            .unwrap()
    }

    #[test]
    fn zonal_keys_count_their_zone_and_region_level_asks() {
        let (az1, az4, region) = (p5("use1-az1"), p5("use1-az4"), p5(""));
        let spot: CapacityKey = "aws/us-east-1/use1-az1/p5.48xlarge/spot".parse().unwrap();
        let rows = [row("use1-az1", 6), row("", 2), row("use1-az4", 1)];
        let d = per_key(
            &rows,
            &[az1.clone(), az4.clone(), region.clone(), spot.clone()],
            Duration::from_secs(12 * 3600),
        );
        assert_eq!(d[&az1], 16.0, "(6 + 2) per 12 h");
        assert_eq!(d[&az4], 6.0);
        assert_eq!(d[&region], 18.0);
        assert_eq!(d[&spot], 0.0);
    }

    #[test]
    fn a_key_is_refused_when_its_zone_or_its_region_was() {
        let (az1, az4, az6) = (p5("use1-az1"), p5("use1-az4"), p5("use1-az6"));
        let refused_row = |zone: &str, at: u32| DemandRow {
            refused_at: at,
            ..row(zone, 1)
        };
        let rows = [
            refused_row("use1-az1", 1_000),
            refused_row("", 900),
            refused_row("use1-az4", 0),
        ];
        let r = refused(&rows, &[az1.clone(), az4.clone()]);
        assert_eq!(
            r[&az1].timestamp(),
            1_000,
            "the newer of its zone's and its region's"
        );
        assert_eq!(
            r[&az4].timestamp(),
            900,
            "its region's, its own was never refused"
        );
        assert!(refused(&rows[2..], &[az4, az6]).is_empty());
    }
}
