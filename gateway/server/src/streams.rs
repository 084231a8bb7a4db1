//! Open server streams per tenant: the cap on how many `WatchScores` and `WatchLaunch` streams
//! one tenant holds at once.
//!
//! Contract: [`OpenStreams::open`] takes a slot for the caller's tenant or refuses with
//! [`GatewayError::TooManyStreams`] (`RESOURCE_EXHAUSTED` naming the limit) when the tenant
//! already holds its limit (the registry's `max_open_streams`, else
//! `gateway.max_open_streams_per_tenant`). The slot is a guard moved into the response stream
//! ([`held`]): it is freed when the stream ends or the client goes away (the server drops the
//! stream), never earlier. The rate limit counts opens; this counts streams open now.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use capsight_tenancy::TenantId;
use futures::Stream;

use crate::{GatewayError, auth::Caller};

/// Streams open now, per tenant.
#[derive(Debug)]
pub struct OpenStreams {
    default_limit: u32,
    open: Mutex<HashMap<TenantId, u32>>,
}

impl OpenStreams {
    /// With `default_limit` streams per tenant whose registry entry sets none.
    pub fn new(default_limit: u32) -> Arc<Self> {
        Arc::new(Self {
            default_limit,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `caller`'s tenant, or `TooManyStreams` when it holds its limit already.
    pub fn open(self: &Arc<Self>, caller: &Caller) -> Result<StreamSlot, GatewayError> {
        let limit = caller.tenant.max_open_streams.unwrap_or(self.default_limit);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(caller.id().clone()).or_insert(0);
        if *n >= limit {
            return Err(GatewayError::TooManyStreams { limit });
        }
        *n += 1;
        Ok(StreamSlot {
            owner: Arc::clone(self),
            tenant: caller.id().clone(),
        })
    }

    /// How many streams `tenant` holds open now.
    pub fn held(&self, tenant: &TenantId) -> u32 {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            .copied()
            .unwrap_or(0)
    }
}

/// One open stream of a tenant; freed on drop.
#[derive(Debug)]
pub struct StreamSlot {
    owner: Arc<OpenStreams>,
    tenant: TenantId,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .owner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

/// `stream`, holding `slot` for as long as it lives.
pub fn held<S: Stream + Unpin>(stream: S, slot: StreamSlot) -> Held<S> {
    Held {
        stream,
        _slot: slot,
    }
}

/// A stream with its tenant's slot.
#[derive(Debug)]
pub struct Held<S> {
    stream: S,
    _slot: StreamSlot,
}

impl<S: Stream + Unpin> Stream for Held<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.stream).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use capsight_proto::domain::TenantHash;
    use capsight_tenancy::Registry;

    use super::*;

    fn caller(id: &str, max: Option<u32>) -> Caller {
        let id = TenantId::parse(id).unwrap_or_else(|e| panic!("{e}"));
        let mut registry = Registry::default();
        registry
            .add_tenant(id.clone(), "")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut tenant = registry
            .tenant(&id)
            .cloned()
            .unwrap_or_else(|| panic!("added"));
        tenant.max_open_streams = max;
        Caller {
            tenant,
            hash: TenantHash::parse("tenant", "t-0123456789abcdef0123456789abcdef")
                .unwrap_or_else(|e| panic!("{e}")),
        }
    }

    #[test]
    fn a_tenant_holds_at_most_its_limit_and_a_dropped_slot_frees_one() {
        let open = OpenStreams::new(2);
        let (acme, globex) = (caller("acme", None), caller("globex", Some(3)));
        let a1 = open.open(&acme).unwrap_or_else(|e| panic!("{e}"));
        let _a2 = open.open(&acme).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            open.open(&acme),
            Err(GatewayError::TooManyStreams { limit: 2 })
        ));
        // another tenant, with its own limit from the registry
        let g: Vec<_> = (0..3).filter_map(|_| open.open(&globex).ok()).collect();
        assert_eq!(g.len(), 3);
        assert!(open.open(&globex).is_err());
        drop(a1);
        assert_eq!(open.held(acme.id()), 1);
        assert!(open.open(&acme).is_ok(), "a freed slot can be taken again");
    }
}
