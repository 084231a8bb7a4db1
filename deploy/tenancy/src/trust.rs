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
//! use [`TrustSettings::trust`], so operators see the figure the scorer applies.

use std::time::Duration;

use serde::Deserialize;

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
