//! `AwsAdapter::from_env` takes endpoint, region and credentials from the standard AWS chain
//! only: with `AWS_ENDPOINT_URL` pointing at cloudsim the same code talks to the simulator.
//!
//! The process environment is never mutated here: the test re-runs its own binary as a child
//! with the variables set, and the child does the AWS calls.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use capsight_cloud::{CloudAdapter, CloudSettings, aws::AwsAdapter};
use capsight_cloudsim::{DEFAULT_SCENARIO, scenario::Scenario};
use capsight_testkit::cloud::{Sim, catalog};

const CHILD: &str = "CAPSIGHT_CLOUD_ENV_CHAIN_CHILD";

#[tokio::test]
async fn from_env_follows_aws_endpoint_url() {
    if std::env::var_os(CHILD).is_some() {
        // Child: everything from the environment.
        let adapter = AwsAdapter::from_env(CloudSettings::default(), catalog())
            .await
            .unwrap();
        assert_eq!(adapter.region().as_str(), "us-east-1");
        let zones = adapter.zones().await.unwrap();
        assert_eq!(
            zones.id_of("us-east-1c").map(|z| z.as_str()),
            Some("use1-az4")
        );
        let (account, _) = adapter.caller_identity().await.unwrap();
        assert_eq!(account, "111111111111");
        return;
    }
    let sim = Sim::builder(Scenario::parse(DEFAULT_SCENARIO).unwrap())
        .start()
        .await;
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "from_env_follows_aws_endpoint_url",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("AWS_ENDPOINT_URL", sim.url())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIDCAPSIGHTDEMO")
        .env("AWS_SECRET_ACCESS_KEY", "cloudsim")
        .env("AWS_CONFIG_FILE", "/nonexistent/capsight-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/capsight-test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .await
        .unwrap();
    drop(sim);
    assert!(
        out.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}
