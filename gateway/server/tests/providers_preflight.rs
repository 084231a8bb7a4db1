//! Preflight of the other providers' keys through the gateway (in-process, real broker,
//! ClickHouse, RabbitMQ), each with tenants' own credentials against cloudsim's API of that
//! provider (scenario = the provider's name); capacity is always the key's latest score:
//! * GCP, service accounts: permission = `testIamPermissions` on the tenant's project, quota =
//!   the type's GPU metric from `regions.get` in GPUs;
//! * Lambda Cloud, API keys: permission = the key is valid and the account active, quota = the
//!   registered instance limit against the instances held;
//! * RunPod, API keys: permission = the key is valid, quota = the registered GPU limit against
//!   the GPUs the account's running pods hold;
//! * Azure, app registrations: permission = the app's actions on its resource group include
//!   creating VMs, quota = the VM family's vCPU usages in the region; a tenant without a
//!   registration, or whose secret variable is not set here, fails the permission step.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod gateway;

use capsight_cloud::{
    CloudAdapter, InstanceType, LaunchRequest, Provider, tenants::ProviderClouds,
};
use capsight_proto::{
    domain::Score,
    v1::{self, CheckStatus, Decision},
};
use capsight_testkit::{
    Sandbox,
    cloud::{
        AZURE_DIRECTORY, AZURE_OPS_APP, AZURE_OPS_SUBSCRIPTION, AZURE_READER_APP, AZURE_SMALL_APP,
        AZURE_SMALL_SUBSCRIPTION, quick_retries,
    },
    signals::score,
    tenants::{TenantSpec, tenant},
};
use gateway::{
    Gateway, assert_account_issue, assert_can_launch, assert_no_capacity,
    assert_permission_refused, statuses,
};

const PASSED: i32 = CheckStatus::Passed as i32;
const FAILED: i32 = CheckStatus::Failed as i32;
const SKIPPED: i32 = CheckStatus::Skipped as i32;

/// A ready gateway on `provider`'s scenario (sandbox `gw<provider>`) with `tenants`, `scores`
/// published and that provider's clouds from `with`, whose preflights launch `image`.
struct Preflights {
    g: Gateway,
    image: &'static str,
}

impl Preflights {
    async fn start(
        provider: &str,
        image: &'static str,
        tenants: impl IntoIterator<Item = TenantSpec>,
        scores: &[Score],
        with: impl FnOnce(&Sandbox, ProviderClouds) -> ProviderClouds,
    ) -> Self {
        let name = format!("gw{provider}");
        let g = Gateway::on_provider(&name, provider, tenants, scores, with).await;
        Self { g, image }
    }

    /// `tenant`'s preflight of `count` x `key`.
    async fn of(&self, key: &str, count: u32, tenant: &str) -> v1::PreflightResponse {
        self.g.preflight_of(tenant, key, count, self.image).await
    }

    /// Asserts that more than the account's quota (`count` x `key`) is the account's issue,
    /// the quota check failed; its response.
    async fn assert_over_quota(&self, key: &str, count: u32) -> v1::PreflightResponse {
        let over = self.of(key, count, "acme").await;
        assert_eq!(over.decision, Decision::FixAccountIssue as i32, "{over:#?}");
        assert_eq!(over.checks[1].status, FAILED);
        over
    }

    /// Asserts the account issues of tenant `unset`, whose credential variable `unset_var` is
    /// not set here, and of tenant `none`, not registered with the provider (saying `none_text`).
    async fn assert_unregistered(&self, key: &str, unset_var: &str, none: &str, none_text: &str) {
        let unset = self.of(key, 1, "unset").await;
        assert_account_issue(&unset, unset_var);
        let none = self.of(key, 1, none).await;
        assert_account_issue(&none, none_text);
    }

    async fn cleanup(self) {
        self.g.sandbox.cleanup().await;
    }
}

/// An account issue whose permission, quota and capacity checks ended `expected`.
fn assert_account_statuses(r: &v1::PreflightResponse, [permission, quota, capacity]: [i32; 3]) {
    assert_eq!(r.decision, Decision::FixAccountIssue as i32, "{r:#?}");
    assert_eq!(
        statuses(r),
        [
            ("permission", permission),
            ("quota", quota),
            ("capacity", capacity)
        ]
    );
}

/// Launches one `instance_type` of `provider` through `account`'s adapter, so that it holds
/// that instance.
async fn hold(account: &impl CloudAdapter, provider: Provider, instance_type: &str) {
    let it = InstanceType::parse("t", provider, instance_type).unwrap();
    account
        .launch(&LaunchRequest::new(it, None, "", "held-1"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn gcp_preflight_checks_iam_the_gpu_quota_and_the_score() {
    const STOCKED: &str = "gcp/us-central1/us-central1-a/a3-highgpu-8g/on_demand";
    const EMPTY: &str = "gcp/us-central1/us-central1-b/a3-highgpu-8g/on_demand";
    let p = Preflights::start(
        "gcp",
        "projects/debian-cloud/global/images/family/debian-12",
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

    // the service account may launch, 16 H100 GPUs of quota, the zone scores available
    let ok = p.of(STOCKED, 1, "acme").await;
    assert_can_launch(&ok);
    assert_eq!(ok.quota_headroom, 2);
    assert!(
        ok.checks[0].reason.contains("testIamPermissions"),
        "{ok:#?}"
    );
    assert!(ok.checks[1].reason.contains("NVIDIA_H100_GPUS"), "{ok:#?}");
    assert!(ok.checks[1].reason.contains("GPUs"), "{ok:#?}");

    // three 8-GPU machines are over the 16-GPU metric: the account's issue
    p.assert_over_quota(STOCKED, 3).await;

    // little capacity in us-central1-b: alternatives
    assert_no_capacity(&p.of(EMPTY, 1, "acme").await);

    // a service account that may not create instances
    let viewer = p.of(STOCKED, 1, "viewer").await;
    assert_permission_refused(&viewer, "IAM_PERMISSION_DENIED");

    // a key file the gateway does not have, no GCP project at all
    p.assert_unregistered(STOCKED, "GCP_KEY_UNSET", "nogcp", "no Google Cloud project")
        .await;

    p.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lambda_preflight_checks_the_key_the_instance_limit_and_the_listing_score() {
    const STOCKED: &str = "lambda/us-south-2//gpu_8x_h100_sxm5/on_demand";
    const EMPTY: &str = "lambda/us-west-3//gpu_8x_h100_sxm5/on_demand";
    const A100: &str = "lambda/us-east-1//gpu_1x_a100_sxm4/on_demand";
    let p = Preflights::start(
        "lambda",
        "lambda-stack",
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

    // a valid key, room for 3, the listing says available
    let ok = p.of(STOCKED, 1, "acme").await;
    assert_can_launch(&ok);
    assert_eq!(ok.quota_headroom, 3);

    // no capacity listed there: alternatives
    assert_no_capacity(&p.of(EMPTY, 1, "acme").await);

    // more than the instance limit: the account's issue
    let over = p.assert_over_quota(STOCKED, 4).await;
    assert!(over.checks[1].reason.contains("limit 3"), "{over:#?}");

    // the small account holds its one instance: no room left
    let small =
        p.g.sandbox
            .sim()
            .lambda_adapter("secret_small_0123456789", "us-east-1", quick_retries(1));
    hold(&small, Provider::Lambda, "gpu_1x_a100_sxm4").await;
    let full = p.of(A100, 1, "small").await;
    assert_eq!(full.decision, Decision::FixAccountIssue as i32, "{full:#?}");
    assert_eq!(full.quota_headroom, 0);
    assert!(
        full.checks[1].reason.contains("1 instance(s) held"),
        "{full:#?}"
    );

    // an inactive account, a key the gateway does not have, no Lambda registration at all
    let closed = p.of(STOCKED, 1, "closed").await;
    assert_permission_refused(&closed, "global/account-inactive");
    p.assert_unregistered(
        STOCKED,
        "LAMBDA_KEY_UNSET",
        "nolambda",
        "no Lambda Cloud account",
    )
    .await;

    p.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runpod_preflight_checks_the_key_the_gpu_limit_and_the_stock_score() {
    const HIGH: &str = "runpod/secure//1x_h100_sxm/on_demand";
    const NONE: &str = "runpod/community//1x_h100_sxm/on_demand";
    const EIGHT: &str = "runpod/secure//8x_h100_sxm/on_demand";
    let p = Preflights::start(
        "runpod",
        "runpod/base",
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

    // a valid key, room for 8 GPUs, the stock score says available
    let ok = p.of(HIGH, 1, "acme").await;
    assert_can_launch(&ok);
    assert_eq!(ok.quota_headroom, 8);

    // no stock there: alternatives
    assert_no_capacity(&p.of(NONE, 1, "acme").await);

    // two 8-GPU pods are 16 GPUs, over the limit of 8: the account's issue
    let over = p.assert_over_quota(EIGHT, 2).await;
    assert!(over.checks[1].reason.contains("GPU limit 8"), "{over:#?}");
    assert!(over.checks[1].reason.contains("16 requested"), "{over:#?}");

    // the small account's pod holds its one GPU: no room left
    let small =
        p.g.sandbox
            .sim()
            .runpod_adapter("rpa_SMALL0123456789", "secure", quick_retries(1));
    hold(&small, Provider::RunPod, "1x_h100_sxm").await;
    let full = p.of(HIGH, 1, "small").await;
    assert_eq!(full.decision, Decision::FixAccountIssue as i32, "{full:#?}");
    assert_eq!(full.quota_headroom, 0);
    assert!(full.checks[1].reason.contains("1 GPU(s) held"), "{full:#?}");

    // a key RunPod does not know, a key the gateway does not have, no RunPod registration
    let forged = p.of(HIGH, 1, "forged").await;
    assert_permission_refused(&forged, "401");
    p.assert_unregistered(HIGH, "RUNPOD_KEY_UNSET", "norunpod", "no RunPod account")
        .await;

    p.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_preflight_checks_the_app_registration_the_family_quota_and_the_score() {
    const STOCKED: &str = "azure/eastus/eastus-1/Standard_ND96isr_H100_v5/on_demand";
    const EMPTY: &str = "azure/eastus/eastus-2/Standard_ND96isr_H100_v5/on_demand";
    // the tenant `name` as the app `app` in `subscription`, its secret in the variable `secret`
    let app = |name, app, subscription, secret| {
        tenant(name)
            .with_key()
            .azure(AZURE_DIRECTORY, app, subscription, secret)
    };
    let p = Preflights::start(
        "azure",
        "Canonical:ubuntu-24_04-lts:server:latest",
        [
            app(
                "acme",
                AZURE_OPS_APP.0,
                AZURE_OPS_SUBSCRIPTION,
                "AZURE_SECRET_ACME",
            ),
            app(
                "reader",
                AZURE_READER_APP.0,
                AZURE_OPS_SUBSCRIPTION,
                "AZURE_SECRET_READER",
            ),
            app(
                "small",
                AZURE_SMALL_APP.0,
                AZURE_SMALL_SUBSCRIPTION,
                "AZURE_SECRET_SMALL",
            ),
            app(
                "unset",
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
                    ("AZURE_SECRET_READER", AZURE_READER_APP.1),
                    ("AZURE_SECRET_SMALL", AZURE_SMALL_APP.1),
                ],
                quick_retries(1),
            ))
        },
    )
    .await;

    // may create VMs, 192 H100 vCPUs of quota = room for 2, the score says available
    let ok = p.of(STOCKED, 1, "acme").await;
    assert_can_launch(&ok);
    assert_eq!(ok.quota_headroom, 2);

    // no capacity there: alternatives
    assert_no_capacity(&p.of(EMPTY, 1, "acme").await);

    // three VMs need 288 vCPUs of the family: the account's issue
    p.assert_over_quota(STOCKED, 3).await;

    // an app that may only read; a subscription without H100 quota
    let reader = p.of(STOCKED, 1, "reader").await;
    assert_account_statuses(&reader, [FAILED, SKIPPED, SKIPPED]);
    assert_eq!(reader.checks[0].error_code, "AuthorizationFailed");
    let small = p.of(STOCKED, 1, "small").await;
    assert_account_statuses(&small, [PASSED, FAILED, SKIPPED]);

    // no secret here, no registration: permission fails saying why
    for (tenant, why) in [
        ("unset", "AZURE_SECRET_UNSET"),
        ("noazure", "capsight-admin tenant azure"),
    ] {
        let r = p.of(STOCKED, 1, tenant).await;
        assert_eq!(r.checks[0].status, FAILED);
        assert!(r.checks[0].reason.contains(why), "{r:#?}");
    }

    p.cleanup().await;
}
