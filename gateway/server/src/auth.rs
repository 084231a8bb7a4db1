//! Who is calling, and whether they may call now: the gRPC door of the one admission
//! ([`capsight_tenancy::admission`]).
//!
//! Contract: [`Tenancy::admit`] reads `authorization: Bearer <key>` metadata and hands the key to
//! [`Admission::admit`] (registry check with hot reload within `gateway.registry_recheck`, the
//! tenant's governor limit). Every RPC of every capsight service is admitted this way; health
//! and reflection are not.

use capsight_tenancy::{
    SharedRegistry, TenantHasher,
    admission::{Admission, Denied, bearer},
};

use crate::GatewayError;

/// An admitted caller.
pub use capsight_tenancy::admission::Admitted as Caller;

/// API keys and per-tenant rate limits, for gRPC requests.
#[derive(Debug)]
pub struct Tenancy {
    admission: Admission,
    /// `tenancy.default_gpu_quota` (0 = none).
    default_gpu_quota: u32,
}

impl Tenancy {
    /// Over a registry, a hasher and the default per-minute rate.
    pub fn new(registry: SharedRegistry, hasher: TenantHasher, default_rate: u32) -> Self {
        Self {
            admission: Admission::new(registry, hasher, default_rate),
            default_gpu_quota: 0,
        }
    }

    /// Gives tenants without a GPU quota of their own `quota` GPUs (0 = no quota).
    #[must_use]
    pub fn with_default_gpu_quota(mut self, quota: u32) -> Self {
        self.default_gpu_quota = quota;
        self
    }

    /// The GPU quota of an admitted caller: its own, else the default (`None` = no quota).
    pub fn gpu_quota(&self, caller: &Caller) -> Option<u32> {
        caller.tenant.gpu_quota_or(self.default_gpu_quota)
    }

    /// The tenant registry (the operator's view lists it).
    pub fn registry(&self) -> &SharedRegistry {
        self.admission.registry()
    }

    /// The tenant hasher (the operator's trust table names hashes with it).
    pub fn hasher(&self) -> &TenantHasher {
        self.admission.hasher()
    }

    /// Requests per minute of a tenant whose registry entry sets none.
    pub fn default_rate(&self) -> u32 {
        self.admission.default_rate()
    }

    /// Authenticates and rate-limits a request.
    pub fn admit<T>(&self, request: &tonic::Request<T>) -> Result<Caller, GatewayError> {
        let key = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(bearer);
        self.admission.admit(key).map_err(|denied| match denied {
            Denied::MissingKey | Denied::BadKey => GatewayError::Unauthenticated,
            Denied::RateLimited {
                per_minute,
                retry_after_secs,
            } => GatewayError::RateLimited {
                per_minute,
                retry_after_secs,
            },
            Denied::Internal(e) => GatewayError::Internal(e),
        })
    }
}
