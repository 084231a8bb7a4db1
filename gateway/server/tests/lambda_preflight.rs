//! Preflight of Lambda Cloud keys through the gateway (in-process, real broker, ClickHouse,
//! RabbitMQ) with tenants' own Lambda API keys against cloudsim's Lambda API (scenario
//! `lambda`): permission = the key is valid and the account active, quota = the registered
//! instance limit against the instances held, capacity = the key's latest score.

#![allow(
    clippy::unwrap_used,
    reason = "a panic in a test is a failed assertion"
)]

mod gateway;

use capsight_cloud::{InstanceType, LaunchRequest, Provider};
use capsight_proto::v1::{CheckStatus, Decision};
use capsight_testkit::{cloud::quick_retries, signals::score, tenants::tenant};
use gateway::{
    Gateway, assert_account_issue, assert_can_launch, assert_no_capacity, assert_permission_refused,
};

const STOCKED: &str = "lambda/us-south-2//gpu_8x_h100_sxm5/on_demand";
const EMPTY: &str = "lambda/us-west-3//gpu_8x_h100_sxm5/on_demand";
const A100: &str = "lambda/us-east-1//gpu_1x_a100_sxm4/on_demand";

const IMAGE: &str = "lambda-stack";

#[tokio::test(flavor = "multi_thread")]
async fn lambda_preflight_checks_the_key_the_instance_limit_and_the_listing_score() {
    let g = Gateway::on_provider(
        "gwlambda",
        "lambda",
        [
            tenant("acme").with_key().lambda("LAMBDA_KEY_ACME", 3),
            tenant("small").with_key().lambda("LAMBDA_KEY_SMALL", 1),
            tenant("closed").with_key().lambda("LAMBDA_KEY_CLOSED", 3),
            tenant("unset").with_key().lambda("LAMBDA_KEY_UNSET", 3),
            tenant("nolambda").with_key(),
        ],
        &[
            score(STOCKED, 91, 0.4),
            score(EMPTY, 25, 0.4),
            score(A100, 90, 0.4),
        ],
        |sandbox, clouds| {
            clouds.with_lambda(sandbox.sim().lambda_clouds(
                &[
                    ("LAMBDA_KEY_ACME", "secret_ops_0123456789"),
                    ("LAMBDA_KEY_SMALL", "secret_small_0123456789"),
                    ("LAMBDA_KEY_CLOSED", "secret_closed_0123456789"),
                ],
                quick_retries(1),
            ))
        },
    )
    .await;
    let preflight =
        |k: &'static str, count: u32, tenant: &'static str| g.preflight_of(tenant, k, count, IMAGE);
    let failed = CheckStatus::Failed as i32;

    // a valid key, room for 3, the listing says available
    let ok = preflight(STOCKED, 1, "acme").await;
    assert_can_launch(&ok);
    assert_eq!(ok.quota_headroom, 3);

    // no capacity listed there: alternatives
    let short = preflight(EMPTY, 1, "acme").await;
    assert_no_capacity(&short);

    // more than the instance limit: the account's issue
    let over = preflight(STOCKED, 4, "acme").await;
    assert_eq!(over.decision, Decision::FixAccountIssue as i32, "{over:#?}");
    assert_eq!(over.checks[1].status, failed);
    assert!(over.checks[1].reason.contains("limit 3"), "{over:#?}");

    // the small account holds its one instance: no room left
    let small =
        g.sandbox
            .sim()
            .lambda_adapter("secret_small_0123456789", "us-east-1", quick_retries(1));
    let a100 = InstanceType::parse("t", Provider::Lambda, "gpu_1x_a100_sxm4").unwrap();
    capsight_cloud::CloudAdapter::launch(&small, &LaunchRequest::new(a100, None, "", "held-1"))
        .await
        .unwrap();
    let full = preflight(A100, 1, "small").await;
    assert_eq!(full.decision, Decision::FixAccountIssue as i32, "{full:#?}");
    assert_eq!(full.quota_headroom, 0);
    assert!(
        full.checks[1].reason.contains("1 instance(s) held"),
        "{full:#?}"
    );

    // an inactive account, a key the gateway does not have, no Lambda registration at all
    let closed = preflight(STOCKED, 1, "closed").await;
    assert_permission_refused(&closed, "global/account-inactive");
    let unset = preflight(STOCKED, 1, "unset").await;
    assert_account_issue(&unset, "LAMBDA_KEY_UNSET");
    let none = preflight(STOCKED, 1, "nolambda").await;
    assert_account_issue(&none, "no Lambda Cloud account");

    g.sandbox.cleanup().await;
}
