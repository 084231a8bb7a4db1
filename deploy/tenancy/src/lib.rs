//! Tenants: who may call capsight, with which API keys, under which limits.
//!
//! * **Registry** ([`Registry`]): a TOML file (path in `[tenancy] registry`) listing tenants, their
//!   per-tenant settings and their API keys, stored only as SHA-256 hashes. It is edited with
//!   `capsight-admin tenant ...` (atomic rewrite) and re-read by services when it changes.
//! * **API keys** look like `csk_<key id>_<secret>`: the key id finds the entry, the secret's
//!   hash is compared in constant time. A key is shown once, when created.
//! * **Tenant hash** ([`TenantHasher`]): the opaque id that stands for a tenant on the bus and in
//!   shared ClickHouse tables: HMAC-SHA256 of the tenant id under a secret (`[tenancy]
//!   hash_secret`), so contributions can be grouped and capped per tenant without revealing who
//!   contributed.
//! * **Admission** ([`admission::Admission`]): API key -> tenant -> rate limit, the one
//!   implementation every door (gRPC, the reports intake) calls.
//! * **Trust** ([`trust`]): how far a tenant's reports agree with capsight's own probes; the
//!   scorer scales the tenant's weight by it, `capsight-admin tenant trust` shows it.

pub mod admission;
mod registry;
mod shared;
pub mod trust;

pub use registry::{
    ApiKeyRecord, Authenticated, AzureAccount, CloudAccount, CloudRole, GcpAccount, IssuedKey,
    LambdaAccount, Registry, RegistryError, RunPodAccount, Tenant, TenantId,
};
pub use shared::SharedRegistry;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;

use capsight_proto::domain::TenantHash;

/// The `[tenancy]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenancySettings {
    /// Path of the tenant registry file (relative paths are relative to the working directory).
    pub registry: std::path::PathBuf,
    /// Secret keying the tenant hash. Change it and every tenant's hash changes: set it once per
    /// deployment (environment: `CAPSIGHT_TENANCY__HASH_SECRET`).
    pub hash_secret: SecretString,
    /// Default requests per minute per tenant, when the tenant sets none.
    pub default_rate_per_minute: u32,
    /// Accept [`DEV_HASH_SECRET`]: only for a local demo (`deploy/local/stack demo` sets it).
    /// Anywhere else a service refuses to start with the shipped secret, since anyone who knows
    /// it can link tenant hashes on the bus to tenant ids.
    pub allow_dev_secret: bool,
    /// GPUs a tenant's live launches may hold together when the registry gives it no
    /// `gpu_quota`; 0 = no default quota ([`Tenant::gpu_quota_or`]). Preflight, Launch and the
    /// launcher all apply it.
    #[serde(default = "default_gpu_quota")]
    pub default_gpu_quota: u32,
}

/// 256 GPUs = 32 p5.48xlarge.
const fn default_gpu_quota() -> u32 {
    256
}

/// The tenant-hash secret cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HashSecretError {
    /// The shipped development default outside a demo.
    #[error(
        "tenancy.hash_secret is the development default: set a secret of your own in \
         CAPSIGHT_TENANCY__HASH_SECRET (tenancy.allow_dev_secret = true is for a local demo only)"
    )]
    DevDefault,
    /// Empty.
    #[error("tenancy.hash_secret is empty: set CAPSIGHT_TENANCY__HASH_SECRET")]
    Empty,
}

impl TenancySettings {
    /// The tenant hasher these settings key; refuses the development default unless
    /// `allow_dev_secret`, and an empty secret always.
    pub fn hasher(&self) -> Result<TenantHasher, HashSecretError> {
        let secret = self.hash_secret.expose_secret();
        if secret.is_empty() {
            return Err(HashSecretError::Empty);
        }
        if secret == DEV_HASH_SECRET && !self.allow_dev_secret {
            return Err(HashSecretError::DevDefault);
        }
        Ok(TenantHasher::new(&self.hash_secret))
    }
}

/// The hash secret shipped in the defaults; services warn when it is still in use.
pub const DEV_HASH_SECRET: &str = "capsight-local-dev-only";

impl Default for TenancySettings {
    fn default() -> Self {
        Self {
            registry: ".capsight/tenants.toml".into(),
            hash_secret: SecretString::from(DEV_HASH_SECRET.to_owned()),
            default_rate_per_minute: 600,
            allow_dev_secret: false,
            default_gpu_quota: default_gpu_quota(),
        }
    }
}

/// Turns tenant ids into [`TenantHash`]es.
#[derive(Clone)]
pub struct TenantHasher {
    key: Vec<u8>,
}

impl std::fmt::Debug for TenantHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantHasher(<secret>)")
    }
}

impl TenantHasher {
    /// A hasher keyed by `secret`; logs a warning when it is the development default.
    pub fn new(secret: &SecretString) -> Self {
        if secret.expose_secret() == DEV_HASH_SECRET {
            tracing::warn!(
                "tenancy.hash_secret is the development default; set CAPSIGHT_TENANCY__HASH_SECRET"
            );
        }
        Self {
            key: secret.expose_secret().as_bytes().to_vec(),
        }
    }

    /// The tenant's opaque hash: the first 128 bits of HMAC-SHA256, hex.
    pub fn hash(&self, tenant: &TenantId) -> TenantHash {
        // HMAC accepts keys of any length
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable_hmac());
        mac.update(tenant.as_str().as_bytes());
        let digest = mac.finalize().into_bytes();
        let text = format!("t-{}", hex::encode(&digest[..16]));
        // the text is 34 bytes of [a-z0-9-]: always a valid hash
        TenantHash::parse("tenant", &text).unwrap_or_else(|_| unreachable_hmac())
    }
}

impl TenantHasher {
    /// The signing secret of a tenant's webhook subscription: HMAC-SHA256 of the hash secret
    /// over a domain-separated label and the subscription's tenant and id, hex. Nothing stores
    /// it: the gateway returns it once when the subscription is created and the notifier
    /// derives it again to sign each delivery (rotating `tenancy.hash_secret` rotates it).
    pub fn webhook_secret(&self, tenant: &TenantId, subscription_id: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable_hmac());
        mac.update(b"capsight/webhook-secret/v1\0");
        mac.update(tenant.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(subscription_id.as_bytes());
        format!("whsec_{}", hex::encode(mac.finalize().into_bytes()))
    }
}

#[cold]
fn unreachable_hmac() -> ! {
    // HMAC-SHA256 takes keys of any length and the hex text is always valid; this cannot run
    panic!("HMAC invariant broken")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_secret_is_refused_unless_allowed_and_an_empty_one_always() {
        let mut s = TenancySettings::default();
        assert!(matches!(s.hasher(), Err(HashSecretError::DevDefault)));
        s.allow_dev_secret = true;
        assert!(s.hasher().is_ok());
        s.hash_secret = SecretString::from(String::new());
        assert!(matches!(s.hasher(), Err(HashSecretError::Empty)));
        let own = TenancySettings {
            hash_secret: SecretString::from("a deployment's own".to_owned()),
            ..TenancySettings::default()
        };
        assert!(own.hasher().is_ok());
    }

    #[test]
    fn hashes_are_stable_keyed_and_opaque() {
        let a = TenantHasher::new(&SecretString::from("s1".to_owned()));
        let b = TenantHasher::new(&SecretString::from("s2".to_owned()));
        let acme = TenantId::parse("acme").unwrap();
        assert_eq!(a.hash(&acme), a.hash(&acme));
        assert_ne!(a.hash(&acme), b.hash(&acme));
        assert_ne!(a.hash(&acme), a.hash(&TenantId::parse("globex").unwrap()));
        let globex = TenantId::parse("globex").unwrap();
        assert_eq!(
            a.webhook_secret(&acme, "s-1"),
            a.webhook_secret(&acme, "s-1")
        );
        assert_ne!(
            a.webhook_secret(&acme, "s-1"),
            b.webhook_secret(&acme, "s-1")
        );
        assert_ne!(
            a.webhook_secret(&acme, "s-1"),
            a.webhook_secret(&globex, "s-1")
        );
        assert_ne!(
            a.webhook_secret(&acme, "s-1"),
            a.webhook_secret(&acme, "s-2")
        );
        assert!(!a.hash(&acme).as_str().contains("acme"));
    }
}
