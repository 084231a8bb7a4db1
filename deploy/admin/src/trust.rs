//! `capsight-admin tenant trust`: every tenant's checks against first-party verdicts and the
//! trust the scorer weights its reports by, least trusted first.
//!
//! Reads ClickHouse `tenant_checks` with the scorer's own query (`sql::TENANT_TRUST`, over
//! `trust.horizon`) and formula (`TrustSettings::trust`); tenant hashes are named from the
//! registry (a hash no registered tenant has is shown as `-`). Registered tenants without checks
//! are listed at the fresh tenant's trust.

use std::collections::BTreeMap;

use anyhow::Context;
use capsight_clickhouse::{ClickHouseSettings, rows::TenantTrustRow, sql};
use capsight_tenancy::{Registry, TenancySettings, TenantHasher, trust::TrustSettings};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// How to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    /// One JSON array for machines.
    Json,
}

/// One tenant's line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantTrust {
    /// Tenant id, `-` for a hash no registered tenant has.
    pub tenant: String,
    /// The tenant hash its signals carry.
    pub hash: String,
    /// Reports checked.
    pub checks: u64,
    /// Reports that agreed with the first-party verdict.
    pub agreements: u64,
    /// Reports that contradicted it.
    pub contradictions: u64,
    /// 0..=1: the scale of the tenant's cap.
    pub trust: f64,
    /// The newest checked report's time (RFC 3339), absent without checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_check: Option<String>,
}

/// Every tenant's trust, least trusted first.
pub async fn collect(
    clickhouse: &ClickHouseSettings,
    tenancy: &TenancySettings,
    settings: &TrustSettings,
) -> anyhow::Result<Vec<TenantTrust>> {
    let registry = Registry::load(&tenancy.registry)?;
    let hasher = TenantHasher::new(&tenancy.hash_secret);
    let named: BTreeMap<String, String> = registry
        .tenants
        .iter()
        .map(|t| (hasher.hash(&t.id).as_str().to_owned(), t.id.to_string()))
        .collect();
    let horizon = chrono::Duration::from_std(settings.horizon).unwrap_or(chrono::Duration::MAX);
    let since = Utc::now().checked_sub_signed(horizon).unwrap_or_default();
    let rows: Vec<TenantTrustRow> = clickhouse
        .client()?
        .query(sql::TENANT_TRUST.sql)
        .bind(u32::try_from(since.timestamp().max(0)).unwrap_or(0))
        .fetch_all()
        .await
        .with_context(|| format!("reading tenant_checks at {}", clickhouse.url))?;
    let mut out: Vec<TenantTrust> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in rows {
        seen.insert(r.tenant.clone());
        out.push(TenantTrust {
            tenant: named.get(&r.tenant).cloned().unwrap_or_else(|| "-".into()),
            checks: r.agreements.saturating_add(r.contradictions),
            agreements: r.agreements,
            contradictions: r.contradictions,
            trust: settings.trust(r.agreements, r.contradictions),
            last_check: DateTime::<Utc>::from_timestamp(i64::from(r.last_at), 0)
                .map(|t| t.to_rfc3339()),
            hash: r.tenant,
        });
    }
    for (hash, tenant) in named {
        if !seen.contains(&hash) {
            out.push(TenantTrust {
                tenant,
                hash,
                checks: 0,
                agreements: 0,
                contradictions: 0,
                trust: settings.fresh(),
                last_check: None,
            });
        }
    }
    out.sort_by(|a, b| {
        a.trust
            .total_cmp(&b.trust)
            .then_with(|| a.tenant.cmp(&b.tenant))
            .then_with(|| a.hash.cmp(&b.hash))
    });
    Ok(out)
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
