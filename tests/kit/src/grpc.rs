//! gRPC for tests: a channel to a server in the test, requests with a tenant's API key, and a
//! plain preflight ([`preflight`], [`statuses`]).

use std::net::SocketAddr;

use capsight_proto::v1;
use tonic::{Request, transport::Channel};

/// A lazily connecting plaintext channel to `addr`.
pub fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

/// `msg` with `authorization: Bearer <key>`.
pub fn authed<T>(msg: T, key: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

/// The preflight of `count` of the key `key` (string form) from image `image_id`, by the
/// tenant whose API key is `api_key`: no constraints, no live probe.
pub async fn preflight(
    ch: &Channel,
    key: &str,
    count: u32,
    image_id: &str,
    api_key: &str,
) -> v1::PreflightResponse {
    let key: capsight_proto::domain::CapacityKey = key.parse().unwrap();
    let spec = v1::LaunchSpec {
        key: Some(v1::CapacityKey::from(&key)),
        count,
        image_id: image_id.into(),
        ..Default::default()
    };
    let request = v1::PreflightRequest {
        spec: Some(spec),
        constraints: None,
        live_probe: false,
    };
    v1::preflight_service_client::PreflightServiceClient::new(ch.clone())
        .preflight(authed(request, api_key))
        .await
        .unwrap()
        .into_inner()
}

/// Each check of a preflight answer as (name, status).
pub fn statuses(r: &v1::PreflightResponse) -> Vec<(&str, i32)> {
    r.checks
        .iter()
        .map(|c| (c.name.as_str(), c.status))
        .collect()
}
