//! Tenant reports posted to the reports intake over HTTP, as a customer's client does.

use std::time::Duration;

/// Posts `batch` to the intake at `addr` (`host:port`) with the API key `key`, retrying for up
/// to a minute while the intake is still starting (connection refused); the intake's answer.
pub async fn post(
    http: &reqwest::Client,
    addr: &str,
    key: &str,
    batch: &[serde_json::Value],
) -> reqwest::Response {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match http
            .post(format!("http://{addr}/v1/reports"))
            .bearer_auth(key)
            .json(batch)
            .send()
            .await
        {
            Ok(resp) => return resp,
            Err(e) if tokio::time::Instant::now() < deadline && e.is_connect() => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the intake at {addr} did not answer: {e}"),
        }
    }
}
