//! Preflight of Azure keys through the gateway (in-process, real broker, ClickHouse, RabbitMQ)
//! as tenants' own app registrations against cloudsim's Azure API (scenario `azure`):
//! permission = the app's actions on its resource group include creating VMs, quota = the VM
//! family's vCPU usages in the region, capacity = the key's latest score; a tenant without a
//! registration, or whose secret variable is not set here, fails the permission step.

#![allow(
    clippy::unwrap_used,
    reason = "a panic in a test is a failed assertion"
)]

mod gateway;

use capsight_proto::v1::{CheckStatus, Decision};
use capsight_testkit::{
    cloud::{AZURE_DIRECTORY, AZURE_OPS_APP, AZURE_OPS_SUBSCRIPTION, quick_retries},
    signals::score,
    tenants::tenant,
};
use gateway::{Gateway, assert_can_launch, assert_no_capacity, statuses};

const STOCKED: &str = "azure/eastus/eastus-1/Standard_ND96isr_H100_v5/on_demand";
const EMPTY: &str = "azure/eastus/eastus-2/Standard_ND96isr_H100_v5/on_demand";
const READER_APP: (&str, &str) = (
    "aaaaaaaa-0000-0000-0000-000000000002",
    "secret-reader-0123456789",
);
const SMALL_APP: (&str, &str) = (
    "aaaaaaaa-0000-0000-0000-000000000003",
    "secret-small-0123456789",
);
const SMALL_SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000b2";

const IMAGE: &str = "Canonical:ubuntu-24_04-lts:server:latest";

#[tokio::test(flavor = "multi_thread")]
async fn azure_preflight_checks_the_app_registration_the_family_quota_and_the_score() {
    let g = Gateway::on_provider(
        "gwazure",
        "azure",
        [
            tenant("acme").with_key().azure(
                AZURE_DIRECTORY,
                AZURE_OPS_APP.0,
                AZURE_OPS_SUBSCRIPTION,
                "AZURE_SECRET_ACME",
            ),
            tenant("reader").with_key().azure(
                AZURE_DIRECTORY,
                READER_APP.0,
                AZURE_OPS_SUBSCRIPTION,
                "AZURE_SECRET_READER",
            ),
            tenant("small").with_key().azure(
                AZURE_DIRECTORY,
                SMALL_APP.0,
                SMALL_SUBSCRIPTION,
                "AZURE_SECRET_SMALL",
            ),
            tenant("unset").with_key().azure(
                AZURE_DIRECTORY,
                AZURE_OPS_APP.0,
                AZURE_OPS_SUBSCRIPTION,
                "AZURE_SECRET_UNSET",
            ),
            tenant("noazure").with_key(),
        ],
        &[score(STOCKED, 91, 0.4), score(EMPTY, 25, 0.4)],
        |sandbox, clouds| {
            clouds.with_azure(sandbox.sim().azure_clouds(
                &[
                    ("AZURE_SECRET_ACME", AZURE_OPS_APP.1),
                    ("AZURE_SECRET_READER", READER_APP.1),
                    ("AZURE_SECRET_SMALL", SMALL_APP.1),
                ],
                quick_retries(1),
            ))
        },
    )
    .await;
    let preflight =
        |k: &'static str, count: u32, tenant: &'static str| g.preflight_of(tenant, k, count, IMAGE);
    let passed = CheckStatus::Passed as i32;
    let failed = CheckStatus::Failed as i32;
    let skipped = CheckStatus::Skipped as i32;

    // may create VMs, 192 H100 vCPUs of quota = room for 2, the score says available
    let ok = preflight(STOCKED, 1, "acme").await;
    assert_can_launch(&ok);
    assert_eq!(ok.quota_headroom, 2);

    // no capacity there: alternatives
    let short = preflight(EMPTY, 1, "acme").await;
    assert_no_capacity(&short);

    // three VMs need 288 vCPUs of the family: the account's issue
    let over = preflight(STOCKED, 3, "acme").await;
    assert_eq!(over.decision, Decision::FixAccountIssue as i32, "{over:#?}");
    assert_eq!(over.checks[1].status, failed);

    // an app that may only read; a subscription without H100 quota
    let reader = preflight(STOCKED, 1, "reader").await;
    assert_eq!(
        reader.decision,
        Decision::FixAccountIssue as i32,
        "{reader:#?}"
    );
    assert_eq!(
        statuses(&reader),
        [
            ("permission", failed),
            ("quota", skipped),
            ("capacity", skipped)
        ]
    );
    assert_eq!(reader.checks[0].error_code, "AuthorizationFailed");
    let small = preflight(STOCKED, 1, "small").await;
    assert_eq!(
        small.decision,
        Decision::FixAccountIssue as i32,
        "{small:#?}"
    );
    assert_eq!(
        statuses(&small),
        [
            ("permission", passed),
            ("quota", failed),
            ("capacity", skipped)
        ]
    );

    // no secret here, no registration: permission fails saying why
    let unset = preflight(STOCKED, 1, "unset").await;
    assert_eq!(unset.checks[0].status, failed);
    assert!(
        unset.checks[0].reason.contains("AZURE_SECRET_UNSET"),
        "{unset:#?}"
    );
    let none = preflight(STOCKED, 1, "noazure").await;
    assert_eq!(none.checks[0].status, failed);
    assert!(
        none.checks[0]
            .reason
            .contains("capsight-admin tenant azure"),
        "{none:#?}"
    );
    g.sandbox.cleanup().await;
}
