//! Every cloud adapter against `cloudsim` started in-process on an ephemeral port, one module a
//! cloud, in one test binary: AWS with the real SDK ([`aws`]), and Azure, GCP, Lambda Cloud and
//! RunPod over HTTP through the same `reqwest` client production uses. Each test starts its own
//! cloudsim from a scenario of `tests/fixtures/scenarios/`; the process environment is never
//! touched (that is `env_chain`'s, a binary of its own).
//!
//! Run one cloud's with a filter: `cargo test -p capsight-cloud --test adapters runpod::`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod aws;
mod azure;
mod gcp;
mod lambda;
mod runpod;

use capsight_cloud::{
    CloudAdapter, CloudError, InstanceId, InstanceType, LaunchRequest, Market, Permission,
    Provider, Region, ZoneId,
};
use capsight_proto::domain::ErrorClass;
use capsight_testkit::{cloud::Sim, fixtures::scenario};

/// cloudsim running `tests/fixtures/scenarios/<name>.toml`.
async fn sim(name: &str) -> Sim {
    Sim::builder(scenario(name)).start().await
}

/// `provider`'s instance type `name`.
fn instance_type(provider: Provider, name: &str) -> InstanceType {
    InstanceType::parse("t", provider, name).unwrap()
}

/// The zone `id` of `provider`'s `region`.
fn zone_of(provider: Provider, region: &str, id: &str) -> ZoneId {
    let region = Region::parse("r", provider, region).unwrap();
    ZoneId::parse_optional("z", provider, &region, id)
        .unwrap()
        .unwrap()
}

/// A launch of one `provider` instance of type `name` in `zone` (none: the region), with the
/// cloud's default image, idempotent by `token`.
fn launch(provider: Provider, name: &str, zone: Option<ZoneId>, token: &str) -> LaunchRequest {
    LaunchRequest::new(instance_type(provider, name), zone, "", token)
}

/// The error of a launch that must fail.
async fn launch_error(adapter: &impl CloudAdapter, request: &LaunchRequest) -> CloudError {
    adapter.launch(request).await.unwrap_err()
}

/// The error's class and the provider's code (empty without one).
fn class_and_code(e: &CloudError) -> (ErrorClass, &str) {
    (e.class(), e.code().unwrap_or(""))
}

/// The code and message of a permission check that must be denied.
#[track_caller]
fn denied(permission: Permission) -> (String, String) {
    match permission {
        Permission::Denied { code, message } => (code, message),
        Permission::Allowed => panic!("expected denied, got allowed"),
    }
}

/// Asserts each error is `provider`'s [`CloudError::Unsupported`], which no retry can help.
#[track_caller]
fn assert_unsupported(provider: Provider, errors: impl IntoIterator<Item = CloudError>) {
    for e in errors {
        assert!(
            matches!(e, CloudError::Unsupported { provider: p, .. } if p == provider),
            "{e}"
        );
        assert!(!e.is_retryable());
    }
}

/// Asserts what a cloud without zones, quotas or warm standbys whose instances are named by
/// the client token refuses: quota headroom, stop, the quota list and zonal offerings are
/// `provider`'s [`CloudError::Unsupported`], and a launch naming a zone or with a token too long
/// to be a name is invalid before any call. `id` is an instance of the account; `request(token)`
/// a launch the cloud would otherwise take.
async fn assert_zoneless_refusals(
    provider: Provider,
    adapter: &impl CloudAdapter,
    id: &InstanceId,
    request: impl Fn(&str) -> LaunchRequest,
) {
    let t = request("t-0").instance_type;
    assert_unsupported(
        provider,
        [
            adapter
                .quota_headroom(&t, Market::OnDemand)
                .await
                .unwrap_err(),
            adapter.stop(std::slice::from_ref(id)).await.unwrap_err(),
            adapter.list_quotas().await.unwrap_err(),
            adapter.instance_type_offerings(&[]).await.unwrap_err(),
        ],
    );
    let zoned = LaunchRequest {
        zone: Some(zone_of(Provider::Aws, "us-east-1", "use1-az1")),
        ..request("z-1")
    };
    for refused in [zoned, request(&"x".repeat(65))] {
        let e = launch_error(adapter, &refused).await;
        assert!(matches!(e, CloudError::Invalid(_)), "{e}");
    }
}
