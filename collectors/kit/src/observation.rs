//! Observations as signals: the signal of what a collector observed on a key at a time, its id
//! derived from the key and what was observed (so a retried publish keeps it), and its
//! publication.

use capsight_proto::domain::{CapacityKey, Payload, Signal, SignalId, SignalSource};
use capsight_publisher::Publisher;
use chrono::{DateTime, Utc};

/// The signal of `source` on `key` observed `at`, whose id derives from the key and `id_parts`
/// (what was observed, and when: one id must never be seen at two observation times, which
/// downstream stores would keep and count twice).
pub fn signal(
    source: SignalSource,
    key: &CapacityKey,
    at: DateTime<Utc>,
    id_parts: &[&str],
    payload: Payload,
) -> Signal {
    let key_text = key.to_string();
    let mut parts = vec![key_text.as_str()];
    parts.extend_from_slice(id_parts);
    Signal {
        id: SignalId::derived(source, &parts),
        observed_at: at,
        source,
        tenant: None,
        key: key.clone(),
        payload,
    }
}

/// Publishes the [`signal`] whose id derives from the key, `what` was observed and the
/// observation time `at` (RFC 3339); false when publishing failed (logged).
pub async fn publish(
    publisher: &Publisher,
    source: SignalSource,
    key: CapacityKey,
    at: DateTime<Utc>,
    what: &[&str],
    payload: Payload,
) -> bool {
    let at_text = at.to_rfc3339();
    let mut parts = what.to_vec();
    parts.push(at_text.as_str());
    match publisher
        .publish(&signal(source, &key, at, &parts, payload))
        .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(source = source.as_str(), error = %e, "publishing a signal failed");
            false
        }
    }
}
