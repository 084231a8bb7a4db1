//! GPU-hours per tenant split by market, read from ClickHouse's `tenant_gpu_hours_monthly`
//! view (migration `0032_gpu_hours.sql`): the launcher's usage and chargeback, the dashboard's
//! usage panel and the operator view read it here.

use chrono::NaiveDate;
use serde::Deserialize;

use crate::store::StoreError;

/// GPU-hours of one tenant on one market in one month.
#[derive(Debug, Clone, PartialEq, clickhouse::Row, Deserialize)]
pub struct MonthlyUsage {
    /// First day of the month (server time zone).
    #[serde(with = "clickhouse::serde::chrono::date")]
    pub month: NaiveDate,
    /// Tenant id.
    pub tenant: String,
    /// `on_demand`, `spot`, `capacity_block`.
    pub market: String,
    /// GPU-hours in the month.
    pub gpu_hours: f64,
    /// Distinct launches that ran on the market in the month.
    pub launches: u64,
    /// 1 when one of them is still running (its hours grow until it ends).
    pub any_still_running: u8,
}

/// GPU-hours per tenant and market for months starting at or after `from` (first day of a
/// month), newest month first; `tenant` restricts to one tenant.
pub async fn monthly(
    client: &clickhouse::Client,
    from: NaiveDate,
    tenant: Option<&str>,
) -> Result<Vec<MonthlyUsage>, StoreError> {
    Ok(capsight_clickhouse::sql::GPU_HOURS_MONTHLY
        .query(client)
        .bind(from.format("%Y-%m-%d").to_string())
        .bind(tenant.unwrap_or(""))
        .bind(tenant.unwrap_or(""))
        .fetch_all::<MonthlyUsage>()
        .await?)
}
