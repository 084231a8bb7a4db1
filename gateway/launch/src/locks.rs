//! Keyed async locks: serialise the tasks of one launcher process that act on the same job or
//! tenant, without holding a lock per key forever (an entry lives while someone holds or waits
//! for it).
//!
//! In-process only: several launcher processes are serialised by [`crate::lease`], which
//! takes one of these locks before its broker-side lease.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

type Table = Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>;

/// A set of async locks by key.
#[derive(Debug, Clone, Default)]
pub struct KeyedLocks {
    table: Table,
}

/// Holds the lock of one key until dropped.
#[derive(Debug)]
pub struct KeyedGuard {
    key: String,
    table: Table,
    lock: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    /// Waits for the lock of `key`.
    pub async fn lock(&self, key: String) -> KeyedGuard {
        let lock = self
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = lock.lock_owned().await;
        KeyedGuard {
            key,
            table: Arc::clone(&self.table),
            lock: Some(guard),
        }
    }

    /// Keys with a holder or a waiter.
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyedGuard {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        self.lock = None;
        // only the table's own reference left: nobody holds or waits for this key
        if table
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            table.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_and_entries_are_released() {
        let locks = KeyedLocks::default();
        let a = locks.lock("a".into()).await;
        let _b = locks.lock("b".into()).await; // another key is not blocked
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move { locks.lock("a".into()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a second holder of key a");
        drop(a);
        let a2 = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(locks.len(), 2);
        drop(a2);
        drop(_b);
        assert!(locks.is_empty(), "entries kept after release");
    }
}
