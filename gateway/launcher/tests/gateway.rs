//! End to end through the real gateway: `LaunchService.Launch` -> RabbitMQ -> the launcher ->
//! cloudsim, and the transitions as a tenant sees them through `GetLaunch`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod common;

use std::time::Duration;

use capsight_gateway::GatewayConfig;
use capsight_kafka::{TopicSpec, admin};
use capsight_proto::{
    domain::CapacityKey,
    v1::{self, LaunchState, launch_service_client::LaunchServiceClient},
};
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::{Registry, TenantId};
use common::{ACME, Harness};
use tonic::{Request, transport::Channel};

fn authed<T>(msg: T, key: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn launch_through_the_gateway_runs_and_get_launch_shows_every_transition() {
    let h = Harness::start("60s").await;
    // an API key for acme, and the gateway's scores topic
    let mut reg = Registry::load(&h.config.tenancy.registry).unwrap();
    let key = reg.issue_key(&TenantId::parse(ACME).unwrap()).unwrap().key;
    reg.save(&h.config.tenancy.registry).unwrap();
    let mut gw: GatewayConfig = capsight_runtime::config::load(None).unwrap();
    gw.kafka = h.config.kafka.clone();
    gw.kafka.topics.scores = format!("test.launcher.{}.scores", h.short);
    admin::ensure_topics(
        &gw.kafka,
        &[TopicSpec {
            name: gw.kafka.topics.scores.clone(),
            partitions: 1,
            replication: 1,
            configs: vec![("cleanup.policy".into(), "compact".into())],
        }],
    )
    .await
    .unwrap();
    gw.clickhouse = h.config.clickhouse.clone();
    gw.amqp = h.config.amqp.clone();
    gw.tenancy = h.config.tenancy.clone();
    gw.gateway.listen = "127.0.0.1:0".parse().unwrap();
    let gw_shutdown = Shutdown::new();
    let running = capsight_gateway::start(gw, h.clouds(), gw_shutdown.clone())
        .await
        .unwrap();
    let channel = Channel::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect_lazy();
    let mut client = LaunchServiceClient::new(channel);
    let (stop, task) = h.spawn_launcher();

    let want: CapacityKey = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand"
        .parse()
        .unwrap();
    let resp = client
        .launch(authed(
            v1::LaunchRequest {
                spec: Some(v1::LaunchSpec {
                    key: Some(v1::CapacityKey::from(&want)),
                    count: 1,
                    image_id: "ami-0123456789abcdef0".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.state(), LaunchState::Queued);

    let status = common::eventually(Duration::from_secs(60), "GetLaunch says running", || {
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
    let instances = h.instances_of(&resp.job_id).await;
    assert_eq!(instances.len(), 1);
    assert_eq!(last.instance_id, instances[0].id.as_str());
    assert_eq!(
        CapacityKey::try_from(last.key.clone().unwrap()).unwrap(),
        want
    );

    stop.trigger();
    task.await.unwrap();
    gw_shutdown.trigger();
    drop(running);
    h.cleanup().await;
}
