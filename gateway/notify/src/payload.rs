//! What goes on the wire (pure): the body per [`Format`] and the signature header.
//!
//! Signature: `capsight-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! — the timestamp is signed with the body, so a receiver can refuse replays older than it
//! tolerates. Every format is signed (Slack and Discord ignore the header).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{events::Event, model::Format};

/// Discord refuses longer `content`.
const DISCORD_MAX: usize = 2000;

/// The body of `event` in `format`.
pub fn body(event: &Event, format: Format) -> Vec<u8> {
    let value = match format {
        Format::Json => return serde_json::to_vec(event).unwrap_or_default(),
        Format::Slack => serde_json::json!({ "text": format!("capsight: {}", event.summary) }),
        Format::Discord => {
            let text: String = format!("capsight: {}", event.summary)
                .chars()
                .take(DISCORD_MAX)
                .collect();
            serde_json::json!({ "content": text })
        }
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The `capsight-signature` header value of `body` sent at `t` (unix seconds).
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret, t, body)))
}

fn mac(secret: &str, t: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Checks a `capsight-signature` header (what a receiver does; the tests use it).
pub fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.verify_slice(&v1).is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a panic in a test is a failed assertion"
    )]

    use super::*;
    use crate::model::EventKind;

    fn event() -> Event {
        Event {
            id: "n-1".into(),
            kind: EventKind::StandbyStarted,
            subscription_id: "s-1".into(),
            occurred_at: "2026-01-01T00:00:00.000Z".into(),
            summary: "launch j: warm standby i-1 serves now".into(),
            launch: None,
            label_change: None,
        }
    }

    #[test]
    fn signatures_verify_only_with_the_secret_time_and_body() {
        let b = body(&event(), Format::Json);
        let h = signature("whsec_a", 1_700_000_000, &b);
        assert!(verify("whsec_a", &h, &b));
        assert!(!verify("whsec_b", &h, &b));
        assert!(!verify(
            "whsec_a",
            &h.replace("t=1700000000", "t=1700000001"),
            &b
        ));
        let mut tampered = b.clone();
        tampered.push(b' ');
        assert!(!verify("whsec_a", &h, &tampered));
        assert!(!verify("whsec_a", "garbage", &b));
    }

    #[test]
    fn formats_shape_the_body() {
        let json: serde_json::Value =
            serde_json::from_slice(&body(&event(), Format::Json)).unwrap();
        assert_eq!(json["type"], "standby_started");
        assert_eq!(json["id"], "n-1");
        let slack: serde_json::Value =
            serde_json::from_slice(&body(&event(), Format::Slack)).unwrap();
        assert!(slack["text"].as_str().unwrap().contains("warm standby"));
        let mut long = event();
        long.summary = "x".repeat(5000);
        let discord: serde_json::Value =
            serde_json::from_slice(&body(&long, Format::Discord)).unwrap();
        assert_eq!(
            discord["content"].as_str().unwrap().chars().count(),
            DISCORD_MAX
        );
    }
}
