//! A registry shared by a running service, re-read when its file changes.
//!
//! Contract: [`SharedRegistry::authenticate`] sees a key issued or revoked by `capsight-admin
//! tenant ...` within `recheck` (default 5 s) without a restart. A file that becomes unreadable
//! or invalid is logged and the last good registry stays in force.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, Instant, SystemTime},
};

use crate::{Authenticated, Registry, RegistryError, Tenant, TenantId};

#[derive(Debug)]
struct Inner {
    registry: Registry,
    modified: Option<SystemTime>,
    checked: Instant,
}

/// A cheaply cloneable, self-refreshing registry.
#[derive(Debug, Clone)]
pub struct SharedRegistry {
    path: PathBuf,
    recheck: Duration,
    inner: Arc<RwLock<Inner>>,
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl SharedRegistry {
    /// Loads the registry at `path` (a missing file is an empty registry).
    pub fn open(path: PathBuf, recheck: Duration) -> Result<Self, RegistryError> {
        let registry = Registry::load(&path)?;
        Ok(Self {
            inner: Arc::new(RwLock::new(Inner {
                registry,
                modified: modified(&path),
                checked: Instant::now(),
            })),
            path,
            recheck,
        })
    }

    fn refresh(&self) {
        let due = self
            .inner
            .read()
            .map(|i| i.checked.elapsed() >= self.recheck)
            .unwrap_or(true);
        if !due {
            return;
        }
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        inner.checked = Instant::now();
        let now = modified(&self.path);
        if now == inner.modified {
            return;
        }
        match Registry::load(&self.path) {
            Ok(registry) => {
                tracing::info!(path = %self.path.display(), tenants = registry.tenants.len(), "tenant registry reloaded");
                inner.registry = registry;
                inner.modified = now;
            }
            Err(e) => {
                tracing::error!(error = %e, "tenant registry unreadable; keeping the last good one")
            }
        }
    }

    /// Every tenant, as the registry holds them now (the operator's view).
    pub fn tenants(&self) -> Vec<Tenant> {
        self.refresh();
        self.inner
            .read()
            .map(|i| i.registry.tenants.clone())
            .unwrap_or_default()
    }

    /// Checks an API key against the current registry.
    pub fn authenticate(&self, api_key: &str) -> Option<Authenticated> {
        self.refresh();
        self.inner.read().ok()?.registry.authenticate(api_key)
    }

    /// The tenant an API key belongs to, key and tenant read from one registry version; `None`
    /// when the key is unknown or revoked or its tenant is gone.
    pub fn authenticate_tenant(&self, api_key: &str) -> Option<Tenant> {
        self.refresh();
        let inner = self.inner.read().ok()?;
        let auth = inner.registry.authenticate(api_key)?;
        inner.registry.tenant(&auth.tenant).cloned()
    }

    /// A copy of one tenant's entry.
    pub fn tenant(&self, id: &TenantId) -> Option<Tenant> {
        self.refresh();
        self.inner.read().ok()?.registry.tenant(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_issued_after_start_are_seen_and_bad_files_keep_the_last_good_registry() {
        let dir = std::env::temp_dir().join(format!("shared-reg-{}", uuid::Uuid::new_v4()));
        let path = dir.join("tenants.toml");
        let shared = SharedRegistry::open(path.clone(), Duration::ZERO).unwrap();
        let mut reg = Registry::default();
        reg.add_tenant(TenantId::parse("acme").unwrap(), "Acme")
            .unwrap();
        let key = reg.issue_key(&TenantId::parse("acme").unwrap()).unwrap();
        assert!(shared.authenticate(&key.key).is_none());
        reg.save(&path).unwrap();
        assert!(shared.authenticate(&key.key).is_some());
        // a broken file (new mtime) keeps the last good registry
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "not = [toml").unwrap();
        assert!(shared.authenticate(&key.key).is_some());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
