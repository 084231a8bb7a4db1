//! Preflight of RunPod keys through the gateway (in-process, real broker, ClickHouse,
//! RabbitMQ) with tenants' own RunPod API keys against cloudsim's RunPod API (scenario
//! `runpod`): permission = the key is valid, quota = the registered GPU limit against the GPUs
//! the account's running pods hold, capacity = the key's latest score.

#![allow(
    clippy::unwrap_used,
    reason = "a panic in a test is a failed assertion"
)]

mod gateway;

use capsight_cloud::{CloudAdapter, InstanceType, LaunchRequest, Provider};
use capsight_proto::v1::{CheckStatus, Decision};
use capsight_testkit::{cloud::quick_retries, signals::score, tenants::tenant};
use gateway::{
    Gateway, assert_account_issue, assert_can_launch, assert_no_capacity, assert_permission_refused,
};

const HIGH: &str = "runpod/secure//1x_h100_sxm/on_demand";
const NONE: &str = "runpod/community//1x_h100_sxm/on_demand";
const EIGHT: &str = "runpod/secure//8x_h100_sxm/on_demand";

#[tokio::test(flavor = "multi_thread")]
async fn runpod_preflight_checks_the_key_the_gpu_limit_and_the_stock_score() {
    let g = Gateway::on_provider(
        "gwrunpod",
        "runpod",
        [
            tenant("acme").with_key().runpod("RUNPOD_KEY_ACME", 8),
            tenant("small").with_key().runpod("RUNPOD_KEY_SMALL", 1),
            tenant("forged").with_key().runpod("RUNPOD_KEY_FORGED", 8),
            tenant("unset").with_key().runpod("RUNPOD_KEY_UNSET", 8),
            tenant("norunpod").with_key(),
        ],
        &[
            score(HIGH, 88, 0.4),
            score(NONE, 20, 0.4),
            score(EIGHT, 70, 0.4),
        ],
        |sandbox, clouds| {
            clouds.with_runpod(sandbox.sim().runpod_clouds(
                &[
                    ("RUNPOD_KEY_ACME", "rpa_OPS0123456789"),
                    ("RUNPOD_KEY_SMALL", "rpa_SMALL0123456789"),
                    ("RUNPOD_KEY_FORGED", "rpa_NOBODY"),
                ],
                quick_retries(1),
            ))
        },
    )
    .await;
    let preflight = |k: &'static str, count: u32, tenant: &'static str| {
        g.preflight_of(tenant, k, count, "runpod/base")
    };
    let failed = CheckStatus::Failed as i32;

    // a valid key, room for 8 GPUs, the stock score says available
    let ok = preflight(HIGH, 1, "acme").await;
    assert_can_launch(&ok);
    assert_eq!(ok.quota_headroom, 8);

    // no stock there: alternatives
    let short = preflight(NONE, 1, "acme").await;
    assert_no_capacity(&short);

    // two 8-GPU pods are 16 GPUs, over the limit of 8: the account's issue
    let over = preflight(EIGHT, 2, "acme").await;
    assert_eq!(over.decision, Decision::FixAccountIssue as i32, "{over:#?}");
    assert_eq!(over.checks[1].status, failed);
    assert!(over.checks[1].reason.contains("GPU limit 8"), "{over:#?}");
    assert!(over.checks[1].reason.contains("16 requested"), "{over:#?}");

    // the small account's pod holds its one GPU: no room left
    let small = g
        .sandbox
        .sim()
        .runpod_adapter("rpa_SMALL0123456789", "secure", quick_retries(1));
    let h100 = InstanceType::parse("t", Provider::RunPod, "1x_h100_sxm").unwrap();
    small
        .launch(&LaunchRequest::new(h100, None, "", "held-1"))
        .await
        .unwrap();
    let full = preflight(HIGH, 1, "small").await;
    assert_eq!(full.decision, Decision::FixAccountIssue as i32, "{full:#?}");
    assert_eq!(full.quota_headroom, 0);
    assert!(full.checks[1].reason.contains("1 GPU(s) held"), "{full:#?}");

    // a key RunPod does not know, a key the gateway does not have, no RunPod registration
    let forged = preflight(HIGH, 1, "forged").await;
    assert_permission_refused(&forged, "401");
    let unset = preflight(HIGH, 1, "unset").await;
    assert_account_issue(&unset, "RUNPOD_KEY_UNSET");
    let none = preflight(HIGH, 1, "norunpod").await;
    assert_account_issue(&none, "no RunPod account");

    g.sandbox.cleanup().await;
}
