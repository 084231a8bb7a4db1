//! `capsight-admin tenant trust`: every tenant's checks against first-party verdicts and the
//! trust the scorer weights its reports by, least trusted first.
//!
//! Reads ClickHouse `tenant_checks` with the scorer's own query (`sql::TENANT_TRUST`, over
//! `trust.horizon`) and formula (`TrustSettings::trust`); tenant hashes are named from the
//! registry (a hash no registered tenant has is shown as `-`). Registered tenants without checks
//! are listed at the fresh tenant's trust.

use anyhow::Context;
use capsight_clickhouse::{ClickHouseSettings, rows::TenantTrustRow, sql};
use capsight_tenancy::{
    Registry, TenancySettings, TenantHasher,
    trust::{HashChecks, TrustSettings},
};
use chrono::Utc;

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    /// One JSON array for machines.
    Json,
}

pub use capsight_tenancy::trust::TenantTrust;

/// Every tenant's trust, least trusted first ([`TrustSettings::table`], as the operator view).
pub async fn collect(
    clickhouse: &ClickHouseSettings,
    tenancy: &TenancySettings,
    settings: &TrustSettings,
) -> anyhow::Result<Vec<TenantTrust>> {
    let registry = Registry::load(&tenancy.registry)?;
    let hasher = TenantHasher::new(&tenancy.hash_secret);
    let rows: Vec<TenantTrustRow> = clickhouse
        .client()?
        .query(sql::TENANT_TRUST.sql)
        .bind(settings.since(Utc::now()))
        .fetch_all()
        .await
        .with_context(|| format!("reading tenant_checks at {}", clickhouse.url))?;
    Ok(settings.table(
        rows.into_iter().map(|r| HashChecks {
            hash: r.tenant,
            agreements: r.agreements,
            contradictions: r.contradictions,
            last_at: r.last_at,
        }),
        &registry.tenants,
        &hasher,
    ))
}

/// Prints every tenant's trust.
pub async fn run(
    clickhouse: &ClickHouseSettings,
    tenancy: &TenancySettings,
    settings: &TrustSettings,
    format: Format,
) -> anyhow::Result<()> {
    let all = collect(clickhouse, tenancy, settings).await?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&all)?),
        Format::Table => {
            println!(
                "{:<20} {:<34} {:>7} {:>7} {:>14} {:>6}  last check",
                "tenant", "hash", "checks", "agreed", "contradictions", "trust"
            );
            for t in &all {
                println!(
                    "{:<20} {:<34} {:>7} {:>7} {:>14} {:>6.3}  {}",
                    t.tenant,
                    t.hash,
                    t.checks,
                    t.agreements,
                    t.contradictions,
                    t.trust,
                    t.last_check.as_deref().unwrap_or("-")
                );
            }
            println!(
                "{} tenants; a fresh tenant's trust is {:.3}; reports of the last {} count",
                all.len(),
                settings.fresh(),
                humantime_serde::re::humantime::format_duration(settings.horizon)
            );
        }
    }
    Ok(())
}
