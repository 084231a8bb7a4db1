//! Tenant trust: how far a tenant's reports agree with capsight's own evidence.
//!
//! The scorer checks a tenant's report against the first-party launch verdict of its key
//! (probes and capsight's own launches) when that verdict is clear, and records one
//! agreement or contradiction per report (ClickHouse `tenant_checks`). A tenant's trust is the
//! posterior mean of its agreement rate under a Beta prior:
//!
//! `trust = (prior_agreements + agreements) / (prior_agreements + prior_contradictions + checks)`
//!
//! so a tenant without checks starts at `prior_agreements / (prior_agreements +
//! prior_contradictions)` (0.8 with the defaults 4 and 1), a few contradictions lower it gently
//! (3 of 3: 0.5) and a tenant that keeps contradicting probes tends to 0 (0 of 40: 0.09).
//! The scorer scales the tenant's cap by it; `capsight-admin tenant trust` shows it. Both
//! use [`TrustSettings::trust`], so operators see the figure the scorer applies; the admin
//! command and the dashboard's operator view build their table with [`TrustSettings::table`].

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Tenant, TenantHasher};

/// The `[trust]` config section (documented with its defaults in `deploy/config/capsight.toml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSettings {
    /// Pseudo-agreements of the prior (> 0).
    pub prior_agreements: f64,
    /// Pseudo-contradictions of the prior (> 0).
    pub prior_contradictions: f64,
    /// A report is checked only against a first-party verdict at least this strong (0..=1;
    /// the verdict is the launch success rate mapped to -1..=1, times how much evidence backs
    /// it).
    pub min_verdict: f64,
    /// Checks older than this (their report's time) no longer count.
    #[serde(with = "humantime_serde")]
    pub horizon: Duration,
    /// How often every scorer instance reloads all tenants' trust.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
}

impl Default for TrustSettings {
    fn default() -> Self {
        Self {
            prior_agreements: 4.0,
            prior_contradictions: 1.0,
            min_verdict: 0.5,
            horizon: Duration::from_secs(30 * 24 * 3600),
            refresh_interval: Duration::from_secs(60),
        }
    }
}

/// A `[trust]` value is out of range.
#[derive(Debug, thiserror::Error)]
#[error("invalid trust.{field}: {reason}")]
pub struct TrustSettingsError {
    /// The key.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl TrustSettings {
    /// Checks the ranges the formula relies on.
    pub fn validate(&self) -> Result<(), TrustSettingsError> {
        let bad = |field: &'static str, reason: String| Err(TrustSettingsError { field, reason });
        for (field, v) in [
            ("prior_agreements", self.prior_agreements),
            ("prior_contradictions", self.prior_contradictions),
        ] {
            if !v.is_finite() || v <= 0.0 {
                return bad(field, format!("{v} must be finite and > 0"));
            }
        }
        if !(0.0..=1.0).contains(&self.min_verdict) {
            return bad(
                "min_verdict",
                format!("{} must be within 0..=1", self.min_verdict),
            );
        }
        if self.refresh_interval.is_zero() {
            return bad("refresh_interval", "must be > 0".into());
        }
        Ok(())
    }

    /// The trust of a tenant without checks.
    pub fn fresh(&self) -> f64 {
        self.trust(0, 0)
    }

    /// The posterior mean agreement rate after `agreements` and `contradictions`, in 0..=1.
    pub fn trust(&self, agreements: u64, contradictions: u64) -> f64 {
        let a = self.prior_agreements.max(f64::MIN_POSITIVE);
        let b = self.prior_contradictions.max(0.0);
        // u64 -> f64 loses precision only beyond 2^53 checks
        let (agree, contra) = (agreements as f64, contradictions as f64);
        ((a + agree) / (a + b + agree + contra)).clamp(0.0, 1.0)
    }
}

/// One tenant's checks, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrustRecord {
    /// Reports that agreed with the first-party verdict.
    pub agreements: u64,
    /// Reports that contradicted it.
    pub contradictions: u64,
}

impl TrustRecord {
    /// Checks in all.
    pub fn checks(&self) -> u64 {
        self.agreements.saturating_add(self.contradictions)
    }
}

/// One tenant hash's checked reports, as `sql::TENANT_TRUST` returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashChecks {
    /// The tenant hash its signals carry.
    pub hash: String,
    /// Reports that agreed.
    pub agreements: u64,
    /// Reports that contradicted.
    pub contradictions: u64,
    /// The newest checked report's time, seconds.
    pub last_at: u32,
}

/// One tenant's line of the trust table (`capsight-admin tenant trust`, the operator view).
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

impl TrustSettings {
    /// The start of the horizon at `now`, unix seconds (the `TENANT_TRUST` query's bound).
    pub fn since(&self, now: DateTime<Utc>) -> u32 {
        let horizon = chrono::Duration::from_std(self.horizon).unwrap_or(chrono::Duration::MAX);
        let since = now.checked_sub_signed(horizon).unwrap_or_default();
        u32::try_from(since.timestamp().max(0)).unwrap_or(0)
    }

    /// Every tenant's trust, least trusted first: the hashes with checks, named from
    /// `tenants` (`-` for a hash no registered tenant has), and the registered tenants without
    /// checks at the fresh tenant's trust.
    pub fn table(
        &self,
        checks: impl IntoIterator<Item = HashChecks>,
        tenants: &[Tenant],
        hasher: &TenantHasher,
    ) -> Vec<TenantTrust> {
        let named: BTreeMap<String, String> = tenants
            .iter()
            .map(|t| (hasher.hash(&t.id).as_str().to_owned(), t.id.to_string()))
            .collect();
        let mut out: Vec<TenantTrust> = Vec::new();
        let mut seen = BTreeSet::new();
        for r in checks {
            seen.insert(r.hash.clone());
            out.push(TenantTrust {
                tenant: named.get(&r.hash).cloned().unwrap_or_else(|| "-".into()),
                checks: r.agreements.saturating_add(r.contradictions),
                agreements: r.agreements,
                contradictions: r.contradictions,
                trust: self.trust(r.agreements, r.contradictions),
                last_check: DateTime::<Utc>::from_timestamp(i64::from(r.last_at), 0)
                    .map(|t| t.to_rfc3339()),
                hash: r.hash,
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
                    trust: self.fresh(),
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
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_tenants_start_at_the_prior_and_liars_fall_towards_zero() {
        let s = TrustSettings::default();
        s.validate().unwrap();
        assert!((s.fresh() - 0.8).abs() < 1e-12);
        // a few contradictions are not punished hard
        assert!((s.trust(0, 3) - 0.5).abs() < 1e-12);
        // an honest tenant tends to 1, a liar to 0
        assert!(s.trust(100, 0) > 0.99);
        assert!(s.trust(0, 40) < 0.1);
        // more agreements never lower trust, more contradictions never raise it
        for n in 0..50 {
            assert!(s.trust(n + 1, 5) >= s.trust(n, 5));
            assert!(s.trust(5, n + 1) <= s.trust(5, n));
        }
    }

    #[test]
    fn out_of_range_settings_are_refused_by_name() {
        let s = TrustSettings {
            prior_agreements: 0.0,
            ..TrustSettings::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "prior_agreements");
        let s = TrustSettings {
            min_verdict: 1.5,
            ..TrustSettings::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "min_verdict");
    }
}
