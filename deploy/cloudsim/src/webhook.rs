//! Delivery of EventBridge-shaped events to the configured webhook.
//!
//! Contract: events are POSTed one by one, in the order the world produced them, as
//! `application/json`, with the `x-api-key` of the event's account (each tenant account has its
//! own API destination, as in EventBridge) or the default key; a failed delivery is retried with exponential backoff (3 tries) and then
//! dropped with a warning. The last 1000 events and their outcome are kept for `/admin/events`.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::Serialize;
use tokio::sync::mpsc;

use capsight_runtime::shutdown::Shutdown;

const KEEP: usize = 1000;

/// One event and what happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// The event.
    pub event: serde_json::Value,
    /// `delivered`, `failed: <why>` or `no webhook`.
    pub outcome: String,
}

/// The sender.
#[derive(Debug)]
pub struct Webhook {
    uri: Option<hyper::Uri>,
    api_key: String,
    /// Account id -> its own key.
    account_keys: BTreeMap<String, String>,
    timeout: Duration,
}

impl Webhook {
    /// `url` empty = no webhook; the event's account's key in `account_keys`, else `api_key`
    /// when non-empty, is sent as `x-api-key`.
    pub fn new(
        url: &str,
        api_key: &str,
        account_keys: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<Self, ()> {
        let uri = if url.is_empty() {
            None
        } else {
            let uri: hyper::Uri = url.parse().map_err(|_| ())?;
            if uri.scheme_str() != Some("http") {
                return Err(());
            }
            Some(uri)
        };
        Ok(Self {
            uri,
            api_key: api_key.to_owned(),
            account_keys: account_keys.clone(),
            timeout,
        })
    }

    /// The key for `event`: its account's own, else the default.
    fn key_for(&self, event: &serde_json::Value) -> &str {
        event
            .get("account")
            .and_then(serde_json::Value::as_str)
            .and_then(|a| self.account_keys.get(a))
            .map_or(self.api_key.as_str(), String::as_str)
    }

    /// Delivers until shutdown.
    pub async fn run(
        self,
        mut rx: mpsc::Receiver<serde_json::Value>,
        log: Arc<Mutex<VecDeque<Delivery>>>,
        shutdown: Shutdown,
    ) {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        loop {
            let event = tokio::select! {
                _ = shutdown.wait() => break,
                e = rx.recv() => match e { Some(e) => e, None => break },
            };
            let outcome = match &self.uri {
                None => "no webhook".to_owned(),
                Some(uri) => match self.send(&client, uri, &event).await {
                    Ok(()) => "delivered".to_owned(),
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook delivery failed; event dropped");
                        format!("failed: {e}")
                    }
                },
            };
            if let Ok(mut log) = log.lock() {
                log.push_back(Delivery { event, outcome });
                while log.len() > KEEP {
                    log.pop_front();
                }
            }
        }
    }

    async fn send(
        &self,
        client: &Client<HttpConnector, Full<Bytes>>,
        uri: &hyper::Uri,
        event: &serde_json::Value,
    ) -> Result<(), String> {
        let body = Bytes::from(event.to_string());
        let key = self.key_for(event);
        let attempt = || async {
            let mut req =
                hyper::Request::post(uri.clone()).header("content-type", "application/json");
            if !key.is_empty() {
                req = req.header("x-api-key", key);
            }
            let req = req
                .body(Full::new(body.clone()))
                .map_err(|e| e.to_string())?;
            let resp = tokio::time::timeout(self.timeout, client.request(req))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(format!("HTTP {}", resp.status()))
            }
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_times(2),
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_account_gets_its_own_key_and_others_the_default() {
        let keys = BTreeMap::from([("111111111111".to_owned(), "k-acme".to_owned())]);
        let w = Webhook::new(
            "http://127.0.0.1:1/v1/events",
            "k-default",
            &keys,
            Duration::from_secs(1),
        )
        .unwrap();
        let event = |account: &str| serde_json::json!({"account": account});
        assert_eq!(w.key_for(&event("111111111111")), "k-acme");
        assert_eq!(w.key_for(&event("222222222222")), "k-default");
        assert_eq!(w.key_for(&serde_json::json!({})), "k-default");
    }
}
