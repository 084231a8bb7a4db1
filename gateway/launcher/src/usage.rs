//! GPU-hours per tenant split by market (usage and chargeback).
//!
//! Contract: the numbers come from ClickHouse alone — the `launch_gpu_segments` and
//! `tenant_gpu_hours_monthly` views of migration `0032_gpu_hours.sql` over `launch_events`
//! (every `running` transition starts a segment on its market that lasts until the job's next
//! transition, or until now while it still runs), multiplied by the job's instance count and the
//! catalog's GPUs per instance. The catalog part lives in the `instance_gpus` table, which
//! [`sync_catalog`] fills at launcher start (idempotent). [`monthly`] runs the summary query that
//! `docs/analytics.md` documents.

use capsight_catalog::Catalog;
use chrono::Utc;

use crate::store::StoreError;

pub use capsight_clickhouse::rows::InstanceGpusRow;
pub use capsight_launch::usage::{MonthlyUsage, monthly};

/// Writes GPUs per instance type from `catalog` to `instance_gpus`; returns the rows written.
pub async fn sync_catalog(
    client: &clickhouse::Client,
    catalog: &Catalog,
) -> Result<usize, StoreError> {
    let now = capsight_clickhouse::rows::split_time(Utc::now()).0;
    let n = capsight_clickhouse::observed("instance_gpus", async {
        let mut insert = client.insert::<InstanceGpusRow>("instance_gpus").await?;
        let mut n = 0;
        for t in catalog.iter() {
            insert
                .write(&InstanceGpusRow {
                    provider: t.provider.as_str().to_owned(),
                    instance_type: t.instance_type.as_str().to_owned(),
                    gpus: t.gpu_count,
                    gpu_model: t.gpu_model.clone(),
                    updated_at: now,
                })
                .await?;
            n += 1;
        }
        insert.end().await?;
        Ok(n)
    })
    .await?;
    Ok(n)
}
