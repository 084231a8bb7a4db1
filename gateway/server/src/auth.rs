//! Who is calling, and whether they may call now.
//!
//! Contract: [`Tenancy::admit`] reads `authorization: Bearer <key>` metadata, checks the key
//! against the hot-reloading tenant registry ([`SharedRegistry`]: keys issued or revoked with
//! `capsight-admin tenant ...` take effect within `gateway.registry_recheck`), then spends one
//! token of the tenant's governor limiter (`rate_per_minute` from the registry, else
//! `tenancy.default_rate_per_minute`; burst = one minute's worth). Every RPC of every capsight
//! service is admitted this way; health and reflection are not.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{Arc, Mutex},
};

use capsight_proto::domain::TenantHash;
use capsight_tenancy::{SharedRegistry, Tenant, TenantHasher, TenantId};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter, clock::Clock};

use crate::GatewayError;

/// An admitted caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The tenant's registry entry (role, zone map, limits).
    pub tenant: Tenant,
    /// The tenant's opaque bus hash.
    pub hash: TenantHash,
}

impl Caller {
    /// The tenant id.
    pub fn id(&self) -> &TenantId {
        &self.tenant.id
    }
}

/// API keys and per-tenant rate limits.
pub struct Tenancy {
    registry: SharedRegistry,
    hasher: TenantHasher,
    default_rate: u32,
    limiters: Mutex<HashMap<TenantId, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

impl std::fmt::Debug for Tenancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenancy")
            .field("default_rate", &self.default_rate)
            .finish_non_exhaustive()
    }
}

impl Tenancy {
    /// Over a registry, a hasher and the default per-minute rate.
    pub fn new(registry: SharedRegistry, hasher: TenantHasher, default_rate: u32) -> Self {
        Self {
            registry,
            hasher,
            default_rate,
            limiters: Mutex::default(),
        }
    }

    /// Authenticates and rate-limits a request.
    pub fn admit<T>(&self, request: &tonic::Request<T>) -> Result<Caller, GatewayError> {
        let key = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, key) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            })
            .ok_or(GatewayError::Unauthenticated)?;
        let auth = self
            .registry
            .authenticate(key)
            .ok_or(GatewayError::Unauthenticated)?;
        let tenant = self
            .registry
            .tenant(&auth.tenant)
            .ok_or(GatewayError::Unauthenticated)?;
        let rate = tenant.rate_per_minute.unwrap_or(self.default_rate);
        let limiter = {
            let mut limiters = self
                .limiters
                .lock()
                .map_err(|_| GatewayError::Internal("rate limiter lock poisoned".into()))?;
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
            return Err(GatewayError::RateLimited {
                per_minute: rate,
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        let hash = self.hasher.hash(&tenant.id);
        Ok(Caller { tenant, hash })
    }
}

fn limiter(per_minute: u32) -> Arc<DefaultDirectRateLimiter> {
    let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(Quota::per_minute(per_minute)))
}
