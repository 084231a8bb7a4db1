//! Admission: who is calling, and whether they may call now — one implementation for every
//! door (the gRPC gateway, the reports intake, the dashboard).
//!
//! Contract: [`Admission::admit`] takes the API key a door extracted (see [`bearer`]), checks it
//! against the hot-reloading registry ([`SharedRegistry`]: keys issued or revoked with
//! `capsight-admin tenant ...` take effect within the registry's recheck interval), requires
//! the key's tenant to still exist, then spends one token of the tenant's governor limiter
//! (`rate_per_minute` from the registry, else the default; burst = one minute's worth). When
//! the registry changes a tenant's rate, its limiter is replaced at the next call. The key and
//! the tenant are read from one version of the registry.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
};

use capsight_proto::domain::TenantHash;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter, clock::Clock};

use crate::{SharedRegistry, Tenant, TenantHasher, TenantId};

/// An admitted caller.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The tenant's registry entry (role, zone map, limits).
    pub tenant: Tenant,
    /// The tenant's opaque bus hash.
    pub hash: TenantHash,
}

impl Admitted {
    /// The tenant id.
    pub fn id(&self) -> &TenantId {
        &self.tenant.id
    }
}

/// Why a caller was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No key was sent.
    #[error("missing API key")]
    MissingKey,
    /// The key is unknown or revoked, or its tenant is gone.
    #[error("unknown or revoked API key")]
    BadKey,
    /// The tenant's rate is spent.
    #[error("rate limit of {per_minute}/min exceeded; retry in {retry_after_secs}s")]
    RateLimited {
        /// The tenant's rate.
        per_minute: u32,
        /// When a token is available again (at least 1 s).
        retry_after_secs: u64,
    },
    /// The limiter table is unusable (a panic while it was held).
    #[error("admission: {0}")]
    Internal(String),
}

/// API keys and per-tenant rate limits.
pub struct Admission {
    registry: SharedRegistry,
    hasher: TenantHasher,
    default_rate: u32,
    limiters: Mutex<HashMap<TenantId, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("default_rate", &self.default_rate)
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// Over a registry, a hasher and the default per-minute rate.
    pub fn new(registry: SharedRegistry, hasher: TenantHasher, default_rate: u32) -> Self {
        Self {
            registry,
            hasher,
            default_rate,
            limiters: Mutex::default(),
        }
    }

    /// Requests per minute of a tenant whose registry entry sets none.
    pub fn default_rate(&self) -> u32 {
        self.default_rate
    }

    /// The tenant hasher (signals and checks carry tenant hashes, never ids).
    pub fn hasher(&self) -> &TenantHasher {
        &self.hasher
    }

    /// The registry (doors look up more than the caller, e.g. zone maps).
    pub fn registry(&self) -> &SharedRegistry {
        &self.registry
    }

    /// Authenticates `key` and spends one token of its tenant's rate.
    pub fn admit(&self, key: Option<&str>) -> Result<Admitted, Denied> {
        let key = key.map(str::trim).filter(|k| !k.is_empty());
        let key = key.ok_or(Denied::MissingKey)?;
        let tenant = self
            .registry
            .authenticate_tenant(key)
            .ok_or(Denied::BadKey)?;
        let rate = tenant.rate_per_minute.unwrap_or(self.default_rate);
        let limiter = {
            let mut limiters = self
                .limiters
                .lock()
                .map_err(|_| Denied::Internal("rate limiter lock poisoned".into()))?;
            let entry = limiters
                .entry(tenant.id.clone())
                .or_insert_with(|| (rate, limiter(rate)));
            // the registry changed the tenant's rate: start a fresh limiter
            if entry.0 != rate {
                *entry = (rate, limiter(rate));
            }
            Arc::clone(&entry.1)
        };
        if let Err(not_until) = limiter.check() {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            return Err(Denied::RateLimited {
                per_minute: rate,
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        let hash = self.hasher.hash(&tenant.id);
        Ok(Admitted { tenant, hash })
    }
}

/// The key of an `Authorization: Bearer <key>` value (scheme case-insensitive, trimmed).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, key) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|k| !k.is_empty())
}

fn limiter(per_minute: u32) -> Arc<DefaultDirectRateLimiter> {
    let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(Quota::per_minute(per_minute)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use secrecy::SecretString;

    use super::*;
    use crate::Registry;

    #[test]
    fn a_changed_rate_applies_at_once_and_a_removed_tenant_is_refused() {
        let dir = std::env::temp_dir().join(format!("admission-{}", uuid::Uuid::new_v4()));
        let path = dir.join("tenants.toml");
        let acme = TenantId::parse("acme").unwrap();
        let mut reg = Registry::default();
        reg.add_tenant(acme.clone(), "Acme").unwrap();
        reg.tenants[0].rate_per_minute = Some(2);
        let key = reg.issue_key(&acme).unwrap().key;
        reg.save(&path).unwrap();
        let admission = Admission::new(
            SharedRegistry::open(path.clone(), Duration::ZERO).unwrap(),
            TenantHasher::new(&SecretString::from("test-secret".to_owned())),
            600,
        );
        assert_eq!(admission.admit(None).unwrap_err(), Denied::MissingKey);
        assert_eq!(
            admission.admit(Some("csk_nope_x")).unwrap_err(),
            Denied::BadKey
        );
        for _ in 0..2 {
            assert_eq!(admission.admit(Some(&key)).unwrap().id(), &acme);
        }
        assert!(matches!(
            admission.admit(Some(&key)),
            Err(Denied::RateLimited { per_minute: 2, .. })
        ));
        // the operator raises the rate: the next call gets a fresh limiter
        std::thread::sleep(Duration::from_millis(20));
        reg.tenants[0].rate_per_minute = Some(100);
        reg.save(&path).unwrap();
        assert!(admission.admit(Some(&key)).is_ok());
        // the tenant is removed: its key admits nobody, not a default tenant
        std::thread::sleep(Duration::from_millis(20));
        reg.tenants.clear();
        reg.save(&path).unwrap();
        assert_eq!(admission.admit(Some(&key)).unwrap_err(), Denied::BadKey);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bearer_keys_are_read_case_insensitively_and_trimmed() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("  bearer   abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }
}
