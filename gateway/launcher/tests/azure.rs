//! Launches on Azure and falling back to it, with the real `capsight-launcher` binary on the
//! local stack and cloudsim (scenario `cross-provider-azure`): an AWS H100 job and a Lambda
//! H100 job that fail for capacity fall back to Azure's H100 (same GPU model and count) when
//! the tenant allows other providers, and run there as the tenant's own app registration, one
//! VM named by the attempt's client token. Needs `cargo build -p capsight-launcher --bins`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod launcher;

use std::time::Duration;

use capsight_cloud::Instance;
use capsight_proto::v1;
use capsight_testkit::{
    cloud::{AZURE_DIRECTORY, ROLE_ACME, instances_of, quick_retries},
    fixtures, launches,
    signals::score,
    tenants::tenant,
};
use launcher::{ACME, Harness, P5_AZ1, states};

const LIMIT: Duration = Duration::from_secs(90);
const ACME_KEY: &str = "secret_acme_0123456789";
const ACME_KEY_ENV: &str = "LAMBDA_KEY_ACME";
/// acme's Azure app registration and subscription (the scenario's principal), and the variable
/// holding its client secret.
const ACME_APP: (&str, &str) = (
    "cccccccc-0000-0000-0000-000000000001",
    "secret-acme-azure-0123456789",
);
const ACME_SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000c3";
const ACME_SECRET_ENV: &str = "AZURE_SECRET_ACME";
/// None in stock.
const LAMBDA_H100: &str = "lambda/us-south-2//gpu_8x_h100_sxm5/on_demand";
/// Two in stock.
const AZURE_H100: &str = "azure/eastus/eastus-1/Standard_ND96isr_H100_v5/on_demand";
/// None in stock.
const AZURE_H100_EMPTY: &str = "azure/eastus/eastus-2/Standard_ND96isr_H100_v5/on_demand";

async fn harness() -> Harness {
    Harness::start_with_tenants(
        fixtures::scenario("cross-provider-azure"),
        [tenant(ACME)
            .role(ROLE_ACME, "ext-acme")
            .lambda(ACME_KEY_ENV, 4)
            .azure(
                AZURE_DIRECTORY,
                ACME_APP.0,
                ACME_SUBSCRIPTION,
                ACME_SECRET_ENV,
            )],
    )
    .await
}

/// The launcher binary with Lambda's and Azure's endpoints (cloudsim) and acme's Lambda key
/// and Azure client secret in its environment.
fn spawn(h: &Harness, log: &str) -> capsight_testkit::process::ChildGuard {
    let sim = h.sandbox.sim();
    let url = sim.url();
    let azure = sim.azure_endpoint_env();
    let mut all: Vec<(&str, &str)> = vec![
        ("CAPSIGHT_LAMBDA__ENDPOINT", url.as_str()),
        (ACME_KEY_ENV, ACME_KEY),
        (ACME_SECRET_ENV, ACME_APP.1),
    ];
    all.extend(azure.iter().map(|(k, v)| (*k, v.as_str())));
    h.spawn_binary(&all, log)
}

/// A job of `tenant` on `key` that may fall back to other providers, in any region.
fn job(key: &str) -> v1::LaunchJob {
    let mut job = launches::job(ACME, key, 1, 2);
    job.constraints = Some(v1::Constraints {
        allow_other_providers: true,
        ..Default::default()
    });
    job
}

/// The job's live VMs in acme's subscription (eastus), found by their job tag.
async fn azure_vms(h: &Harness, job_id: &str) -> Vec<Instance> {
    let acme =
        h.sandbox
            .sim()
            .azure_adapter(ACME_APP, ACME_SUBSCRIPTION, "eastus", quick_retries(1));
    instances_of(&acme, job_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_and_lambda_capacity_failures_fall_back_to_azure_and_run() {
    let h = harness().await;
    h.put_scores(&[
        score(P5_AZ1, 20, 0.8),
        score(LAMBDA_H100, 25, 0.8),
        score(AZURE_H100_EMPTY, 15, 0.8),
        score(AZURE_H100, 90, 0.8),
    ])
    .await;
    let worker = spawn(&h, "launcher");

    for (from, provider) in [(P5_AZ1, "aws"), (LAMBDA_H100, "lambda")] {
        let j = job(from);
        h.submit(&j).await;
        let events = h.wait_state(ACME, &j.job_id, "running", LIMIT).await;
        assert_eq!(
            states(&events),
            "queued preflight provisioning provisioning running",
            "{events:?}"
        );
        assert_eq!(events[2].provider, provider);
        assert_eq!(events[3].provider, "azure");
        assert_eq!(events[3].region, "eastus");
        assert_eq!(events[3].instance_type, "Standard_ND96isr_H100_v5");
        let vms = azure_vms(&h, &j.job_id).await;
        assert_eq!(vms.len(), 1, "{vms:?}");
        // attempt 2's client token is the VM's name
        assert_eq!(vms[0].id.as_str(), format!("{}-2", j.job_id));
        assert_eq!(
            vms[0].zone.as_ref().map(ToString::to_string).as_deref(),
            Some("eastus-1")
        );
        assert_eq!(events[4].instance_id, vms[0].id.as_str());
    }
    // both H100s of eastus-1 are taken by the two jobs
    assert_eq!(h.sandbox.sim().stock(AZURE_H100).await, 0);
    worker.kill();
    h.sandbox.cleanup().await;
}
