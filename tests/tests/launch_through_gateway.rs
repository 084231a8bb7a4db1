//! End to end through the real gateway: `LaunchService.Launch` -> RabbitMQ -> the launcher ->
//! cloudsim, and the transitions as a tenant sees them through `GetLaunch`. Gateway and launcher
//! run in-process in one kit sandbox (the launcher's scenario at 60 simulated seconds a second).

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::time::Duration;

use capsight_gateway::GatewayConfig;
use capsight_launcher::LauncherConfig;
use capsight_proto::{
    domain::CapacityKey,
    v1::{self, LaunchState, launch_service_client::LaunchServiceClient},
};
use capsight_runtime::shutdown::Shutdown;
use capsight_testkit::{
    cloud::{catalog, instances_of},
    fixtures::gateway_launcher_world,
    grpc::{self, authed},
    launches,
    wait::eventually,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn launch_through_the_gateway_runs_and_get_launch_shows_every_transition() {
    let sandbox = gateway_launcher_world("launch_gw").start().await;
    let key = sandbox.key("acme");
    let shutdown = Shutdown::new();
    let gateway: GatewayConfig = sandbox.config();
    let running = capsight_gateway::start(gateway, sandbox.clouds(), shutdown.clone())
        .await
        .unwrap();
    let mut client = LaunchServiceClient::new(grpc::channel(running.addr));
    let launcher: LauncherConfig = sandbox.config();
    let task = tokio::spawn(capsight_launcher::run(
        launcher,
        catalog(),
        sandbox.clouds(),
        shutdown.clone(),
    ));

    // Launch decides with the scores view (its preflight): it answers UNAVAILABLE until built
    tokio::time::timeout(Duration::from_secs(30), running.view.wait_ready())
        .await
        .expect("scores view ready within 30 s");
    let want = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";
    let resp = client
        .launch(authed(launches::launch_request(want, ""), &key))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.state(), LaunchState::Queued);

    let status = eventually(Duration::from_secs(60), "GetLaunch says running", || {
        let mut client = client.clone();
        let key = key.clone();
        let job_id = resp.job_id.clone();
        async move {
            let s = client
                .get_launch(authed(v1::GetLaunchRequest { job_id }, &key))
                .await
                .unwrap()
                .into_inner();
            (s.state() == LaunchState::Running).then_some(s)
        }
    })
    .await;
    let states: Vec<LaunchState> = status.events.iter().map(v1::LaunchEvent::state).collect();
    assert_eq!(
        states,
        vec![
            LaunchState::Queued,
            LaunchState::Preflight,
            LaunchState::Provisioning,
            LaunchState::Running
        ]
    );
    let seqs: Vec<u32> = status.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3]);
    let last = status.events.last().unwrap();
    let adapter = sandbox.tenant_adapter("acme").await;
    let instances = instances_of(&*adapter, &resp.job_id).await;
    assert_eq!(instances.len(), 1);
    assert_eq!(last.instance_id, instances[0].id.as_str());
    assert_eq!(
        CapacityKey::try_from(last.key.clone().unwrap()).unwrap(),
        want.parse().unwrap()
    );

    shutdown.trigger();
    task.await.unwrap().unwrap();
    drop(running);
    sandbox.cleanup().await;
}
