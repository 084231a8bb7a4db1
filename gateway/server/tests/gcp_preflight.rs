//! Preflight of GCP keys through the gateway (in-process, real broker, ClickHouse, RabbitMQ)
//! with tenants' own service accounts against cloudsim's Google APIs (scenario `gcp`):
//! permission = `testIamPermissions` on the tenant's project, quota = the type's GPU metric
//! from `regions.get` in GPUs, capacity = the key's latest score.

#![allow(
    clippy::unwrap_used,
    reason = "a panic in a test is a failed assertion"
)]

mod gateway;

use capsight_proto::v1::{CheckStatus, Decision};
use capsight_testkit::{cloud::quick_retries, signals::score, tenants::tenant};
use gateway::{
    Gateway, assert_account_issue, assert_can_launch, assert_no_capacity, assert_permission_refused,
};

const STOCKED: &str = "gcp/us-central1/us-central1-a/a3-highgpu-8g/on_demand";
const EMPTY: &str = "gcp/us-central1/us-central1-b/a3-highgpu-8g/on_demand";

const IMAGE: &str = "projects/debian-cloud/global/images/family/debian-12";

#[tokio::test(flavor = "multi_thread")]
async fn gcp_preflight_checks_iam_the_gpu_quota_and_the_score() {
    let g = Gateway::on_provider(
        "gwgcp",
        "gcp",
        [
            tenant("acme").with_key().gcp("acme-ml", "GCP_KEY_ACME"),
            tenant("viewer").with_key().gcp("acme-ml", "GCP_KEY_VIEWER"),
            tenant("unset").with_key().gcp("acme-ml", "GCP_KEY_UNSET"),
            tenant("nogcp").with_key(),
        ],
        &[score(STOCKED, 91, 0.4), score(EMPTY, 25, 0.4)],
        |sandbox, clouds| {
            clouds.with_gcp(sandbox.sim().gcp_clouds(
                &[("GCP_KEY_ACME", "acme"), ("GCP_KEY_VIEWER", "viewer")],
                quick_retries(1),
            ))
        },
    )
    .await;
    let preflight =
        |k: &'static str, count: u32, tenant: &'static str| g.preflight_of(tenant, k, count, IMAGE);
    let failed = CheckStatus::Failed as i32;

    // the service account may launch, 16 H100 GPUs of quota, the zone scores available
    let ok = preflight(STOCKED, 1, "acme").await;
    assert_can_launch(&ok);
    assert_eq!(ok.quota_headroom, 2);
    assert!(
        ok.checks[0].reason.contains("testIamPermissions"),
        "{ok:#?}"
    );
    assert!(ok.checks[1].reason.contains("NVIDIA_H100_GPUS"), "{ok:#?}");
    assert!(ok.checks[1].reason.contains("GPUs"), "{ok:#?}");

    // three 8-GPU machines are over the 16-GPU metric: the account's issue
    let over = preflight(STOCKED, 3, "acme").await;
    assert_eq!(over.decision, Decision::FixAccountIssue as i32, "{over:#?}");
    assert_eq!(over.checks[1].status, failed);

    // little capacity in us-central1-b: alternatives
    let short = preflight(EMPTY, 1, "acme").await;
    assert_no_capacity(&short);

    // a service account that may not create instances
    let viewer = preflight(STOCKED, 1, "viewer").await;
    assert_permission_refused(&viewer, "IAM_PERMISSION_DENIED");

    // a key file the gateway does not have, no GCP project at all
    let unset = preflight(STOCKED, 1, "unset").await;
    assert_account_issue(&unset, "GCP_KEY_UNSET");
    let none = preflight(STOCKED, 1, "nogcp").await;
    assert_account_issue(&none, "no Google Cloud project");

    g.sandbox.cleanup().await;
}
