//! Zone maps derived from the tenant's own account: `capsight-admin tenant zones` assumes the
//! tenant's registered role in cloudsim, reads DescribeAvailabilityZones (acme's account names
//! its AZs two places off), and writes the names into the registry, replacing a stale typed
//! entry; the gateway then maps a report's AZ name to the right zone id and refuses a name the
//! map lacks instead of counting it region-wide.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{collections::BTreeMap, time::Duration};

use capsight_cloud::tenants::TenantClouds;
use capsight_e2e::admin_bin;
use capsight_gateway::GatewayConfig;
use capsight_proto::{
    domain::Region,
    v1::{self, report_service_client::ReportServiceClient},
};
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::{Registry, TenantId};
use capsight_testkit::{
    cloud::{OPERATOR, ROLE_ACME},
    fixtures::gateway_sandbox,
    grpc::{self, authed},
    kafka::Reader,
    tenants::tenant,
};
use tonic::Code;

/// acme's zone map in the registry file.
fn zone_map(path: &std::path::Path) -> BTreeMap<String, String> {
    Registry::load(path)
        .unwrap()
        .tenant(&TenantId::parse("acme").unwrap())
        .unwrap()
        .zone_map
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn zone_maps_come_from_the_tenants_account_and_unmapped_names_are_refused() {
    let sandbox = gateway_sandbox("zones")
        .scores(1)
        .tenants([
            // a stale hand-typed entry that the account contradicts
            tenant("acme")
                .role(ROLE_ACME, "ext-acme")
                .zone("us-east-1a", "use1-az1")
                .with_key(),
            tenant("globex").with_key(),
        ])
        .scenario("zone-maps")
        .start()
        .await;
    let registry = sandbox.registry().path().to_owned();

    let out = sandbox
        .command(admin_bin())
        .args(["tenant", "zones", "--region", "us-east-1"])
        .envs(sandbox.sim().aws_env(OPERATOR))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "capsight-admin tenant zones: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // exactly what acme's own account says, the stale entry replaced
    let acme = Registry::load(&registry)
        .unwrap()
        .tenant(&TenantId::parse("acme").unwrap())
        .unwrap()
        .clone();
    let region =
        Region::parse("region", capsight_proto::domain::Provider::Aws, "us-east-1").unwrap();
    let account = sandbox.clouds().adapter(&acme, &region).await.unwrap();
    let expected: BTreeMap<String, String> = account
        .zones()
        .await
        .unwrap()
        .iter()
        .map(|(n, z)| (n.to_owned(), z.as_str().to_owned()))
        .collect();
    assert_eq!(expected.len(), 3, "{expected:?}");
    assert_eq!(zone_map(&registry), expected);
    assert_eq!(
        expected["us-east-1a"], "use1-az6",
        "shifted in acme's account"
    );
    // a tenant named explicitly without a role is an error, and changes nothing
    let out = sandbox
        .command(admin_bin())
        .args(["tenant", "zones", "globex", "--region", "us-east-1"])
        .envs(sandbox.sim().aws_env(OPERATOR))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no AWS role"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(zone_map(&registry), expected);

    // the gateway maps acme's AZ name with the derived map
    let shutdown = Shutdown::new();
    let config: GatewayConfig = sandbox.config();
    let running = capsight_gateway::start(config, sandbox.clouds(), shutdown.clone())
        .await
        .unwrap();
    let mut reports = ReportServiceClient::new(grpc::channel(running.addr));
    let report = |id: &str, zone_name: &str| v1::SubmitReportRequest {
        id: id.into(),
        provider: "aws".into(),
        region: "us-east-1".into(),
        zone_name: zone_name.into(),
        instance_type: "p5.48xlarge".into(),
        outcome: v1::ReportOutcome::LaunchFailed as i32,
        error_code: "InsufficientInstanceCapacity".into(),
        error_message: "We currently do not have sufficient p5.48xlarge capacity".into(),
        ..Default::default()
    };
    let key = sandbox.key("acme");
    reports
        .submit_report(authed(report("r-1", "us-east-1a"), &key))
        .await
        .unwrap();
    let kafka = &sandbox.kafka;
    let signal = Reader::subscribe(kafka, &kafka.topics.signals)
        .take(1, Duration::from_secs(20))
        .await[0]
        .signal();
    assert_eq!(
        signal.key.to_string(),
        "aws/us-east-1/use1-az6/p5.48xlarge/on_demand"
    );
    // a name the map lacks is refused, naming the field, never counted region-wide
    let err = reports
        .submit_report(authed(report("r-2", "us-east-1z"), &key))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().starts_with("zone_name:"), "{}", err.message());
    shutdown.trigger();
    sandbox.cleanup().await;
}
