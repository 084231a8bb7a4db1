//! The standby world several end-to-end tests share: the tenants, the reports intake
//! in-process (finding capsight's own launches in ClickHouse) and cloudsim's standby scenario
//! feeding the intake through its webhook.

use std::{sync::Arc, time::Duration};

use capsight_launcher::LauncherConfig;
use capsight_publisher::{Publisher, PublisherSettings};
use capsight_reports::{ReportsSettings, launched::LaunchedInstances, server::AppState};
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::{SharedRegistry, TenantHasher};
use capsight_testkit::{
    Sandbox,
    cloud::{ROLE_ACME, Sim},
    fixtures::{launcher_world, scenario},
    tenants::tenant,
};

/// Simulated seconds per real second in the standby scenario: provisioning 10 s -> 1 s, stop
/// 20 s -> 2 s, rebalance lead 30 s -> 3 s.
pub const TIME_SCALE: f64 = 10.0;

/// The sandbox's tenant registry, re-read every second.
pub fn registry(sandbox: &Sandbox) -> SharedRegistry {
    SharedRegistry::open(sandbox.registry().path().to_owned(), Duration::from_secs(1)).unwrap()
}

/// A sandbox named `prefix` (signals and compacted scores topics, database, launch topology,
/// the launcher, gateway and `profiles` config fragments, tenants `acme` with a role and a key
/// and `globex` with a key) with the reports intake in-process, fed by the sandbox's cloudsim
/// (the standby scenario at [`TIME_SCALE`]) through its webhook with acme's key. Returns the
/// sandbox, the shutdown that stops the intake, and the intake's events URL.
pub async fn world(prefix: &str, profiles: &[&str]) -> (Sandbox, Shutdown, String) {
    let mut builder = launcher_world(prefix).scores(1).profile("gateway");
    for p in profiles {
        builder = builder.profile(p);
    }
    let mut sandbox = builder
        .tenants([
            tenant("acme")
                .name("Acme")
                .role(ROLE_ACME, "ext-acme")
                .with_key(),
            tenant("globex").name("Globex").with_key(),
        ])
        .start()
        .await;
    let shutdown = Shutdown::new();
    let config: LauncherConfig = sandbox.config();
    let publisher = Publisher::new(&config.kafka, &PublisherSettings::default(), "test").unwrap();
    #[derive(serde::Deserialize)]
    struct Reports {
        reports: ReportsSettings,
    }
    let mut reports = sandbox.config::<Reports>().reports;
    reports.listen = "127.0.0.1:0".parse().unwrap();
    let state = Arc::new(
        AppState::new(
            publisher.clone(),
            registry(&sandbox),
            TenantHasher::new(&config.tenancy.hash_secret),
            reports,
            100_000,
            capsight_testkit::cloud::catalog(),
        )
        .with_launched(LaunchedInstances::new(sandbox.client())),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let intake = format!("http://{}/v1/events", listener.local_addr().unwrap());
    tokio::spawn(capsight_reports::run(
        state,
        listener,
        publisher,
        shutdown.clone(),
    ));
    let acme_key = sandbox.key("acme");
    sandbox
        .start_cloudsim(
            Sim::builder(scenario("standby"))
                .time_scale(TIME_SCALE)
                .webhook(&intake, &acme_key),
        )
        .await;
    (sandbox, shutdown, intake)
}
