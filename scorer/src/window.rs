//! One key's sliding window of observations.
//!
//! Contract: the window holds every observation whose time is within `window` of the newest
//! observation it has seen (event time, never the wall clock), each signal id once. Its content
//! after a set of inserts depends only on that set, not on the order of the inserts or on
//! repeats: an insert older than the current cutoff is dropped, which it would also have been
//! had it arrived in order. Iteration is in `(time, id)` order, so the model's floating-point
//! sums are reproducible.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use capsight_proto::domain::SignalId;

use crate::observation::Observation;

/// A key's window.
#[derive(Debug, Clone)]
pub struct KeyWindow {
    span_ms: i64,
    newest_ms: Option<i64>,
    entries: BTreeMap<(i64, SignalId), Observation>,
}

impl KeyWindow {
    /// An empty window spanning `span`.
    pub fn new(span: Duration) -> Self {
        Self {
            span_ms: i64::try_from(span.as_millis()).unwrap_or(i64::MAX),
            newest_ms: None,
            entries: BTreeMap::new(),
        }
    }

    /// The oldest time still inside the window.
    fn cutoff(&self) -> Option<i64> {
        self.newest_ms.map(|n| n.saturating_sub(self.span_ms))
    }

    /// Adds an observation; false when it was a repeat or too old to matter.
    pub fn insert(&mut self, id: SignalId, obs: Observation) -> bool {
        let at = obs.at_ms;
        if self.cutoff().is_some_and(|c| at < c) {
            return false;
        }
        let key = (at, id);
        if self.entries.contains_key(&key) {
            return false;
        }
        self.entries.insert(key, obs);
        if self.newest_ms.is_none_or(|n| at > n) {
            self.newest_ms = Some(at);
            if let Some(cutoff) = self.cutoff() {
                // keep everything at or after the cutoff
                self.entries = self.entries.split_off(&(cutoff, MIN_ID.clone()));
            }
        }
        true
    }

    /// The newest observation time: the key's "now".
    pub fn newest_ms(&self) -> Option<i64> {
        self.newest_ms
    }

    /// Observations in `(time, id)` order.
    pub fn observations(&self) -> impl Iterator<Item = &Observation> {
        self.entries.values()
    }

    /// Observations held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The smallest valid id, for range bounds: ids are printable ASCII without spaces, and `!` is
/// the smallest such character.
static MIN_ID: LazyLock<SignalId> =
    LazyLock::new(|| SignalId::parse("id", "!").unwrap_or_else(|_| SignalId::random()));

#[cfg(test)]
mod tests {
    use capsight_proto::domain::SignalSource;
    use proptest::prelude::*;

    use super::*;
    use crate::observation::Fact;

    const HOUR: i64 = 3_600_000;

    fn obs(at_ms: i64) -> Observation {
        Observation {
            at_ms,
            source: SignalSource::Spot,
            tenant: None,
            fact: Fact::SpotPrice(at_ms as f64),
        }
    }

    fn id(i: usize) -> SignalId {
        SignalId::parse("id", &format!("s{i}")).unwrap()
    }

    #[test]
    fn old_observations_leave_and_repeats_are_ignored() {
        let mut w = KeyWindow::new(Duration::from_secs(24 * 3600));
        assert!(w.insert(id(1), obs(0)));
        assert!(!w.insert(id(1), obs(0)));
        assert!(w.insert(id(2), obs(10 * HOUR)));
        assert_eq!(w.len(), 2);
        assert!(w.insert(id(3), obs(24 * HOUR)));
        assert_eq!(w.len(), 3, "exactly 24 h old is still inside");
        assert!(w.insert(id(4), obs(30 * HOUR)));
        assert_eq!(w.len(), 3);
        assert!(!w.insert(id(5), obs(HOUR)), "older than the cutoff");
        assert_eq!(w.newest_ms(), Some(30 * HOUR));
    }

    proptest! {
        /// Any order, any repeats: the same final content.
        #[test]
        fn content_is_independent_of_order_and_repeats(
            times in prop::collection::vec(0i64..72 * HOUR, 1..80),
            seed in any::<u64>(),
        ) {
            let items: Vec<(SignalId, i64)> = times.iter().enumerate().map(|(i, t)| (id(i), *t)).collect();
            let mut in_order = KeyWindow::new(Duration::from_secs(24 * 3600));
            let mut sorted = items.clone();
            sorted.sort_by_key(|(_, t)| *t);
            for (i, t) in &sorted {
                in_order.insert(i.clone(), obs(*t));
            }
            // a shuffled order with every item repeated
            let mut shuffled: Vec<_> = items.iter().chain(items.iter()).cloned().collect();
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut any_order = KeyWindow::new(Duration::from_secs(24 * 3600));
            for (i, t) in shuffled {
                any_order.insert(i, obs(t));
            }
            let a: Vec<_> = in_order.observations().cloned().collect();
            let b: Vec<_> = any_order.observations().cloned().collect();
            prop_assert_eq!(a, b);
            prop_assert_eq!(in_order.newest_ms(), any_order.newest_ms());
        }
    }
}
