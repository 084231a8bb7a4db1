//! OpenTelemetry traces across the processes, exported over OTLP to a real receiver: the
//! gateway, the launcher, the scorer and the prober run as binaries in one kit sandbox
//! (cloudsim in-process with the `dashboard` scenario), each with the standard `OTEL_*`
//! variables pointing at the test kit's receiver ([`capsight_testkit::otlp`]) — the gateway and
//! the launcher over OTLP/HTTP, the scorer and the prober over OTLP/gRPC.
//!
//! * A launch: `LaunchService/Launch` on the gateway -> `amqp.publish` (trace context in the
//!   AMQP headers) -> the launcher's `launch_job` -> its `RunInstances` cloud call and the
//!   launch-attempt signal's `kafka.produce` (trace context in the Kafka headers) -> the
//!   scorer's `scorer.signal` and the `scorer.score` it moved: one trace id, each span the
//!   child of the one before it across the process boundaries.
//! * A probe: the prober's `probe` span -> its cloud calls -> `kafka.produce` -> the scorer's
//!   `scorer.signal` and `scorer.score`: one trace id.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{net::SocketAddr, time::Duration};

use capsight_e2e::bin;
use capsight_proto::v1::{LaunchState, launch_service_client::LaunchServiceClient};
use capsight_testkit::{
    cloud::{OPERATOR, ROLE_ACME, Sim},
    fixtures::{pipeline_world, scenario},
    grpc::{authed, channel},
    launches,
    otlp::{ReceivedSpan, Receiver},
    process::free_port,
    tenants::tenant,
    wait::eventually,
};

const LAUNCHED: &str = "aws/us-east-1/use1-az1/p5.48xlarge/on_demand";

/// The span of `service` named `name` in `trace`, if it arrived.
fn find<'a>(
    spans: &'a [ReceivedSpan],
    trace: &str,
    service: &str,
    name: &str,
) -> Option<&'a ReceivedSpan> {
    spans
        .iter()
        .find(|s| s.trace_id == trace && s.service == service && s.name == name)
}

/// Asserts `child` is a direct child of `parent` (same trace, parent span id).
fn child_of(child: &ReceivedSpan, parent: &ReceivedSpan) {
    assert_eq!(child.trace_id, parent.trace_id, "{child:#?}\n{parent:#?}");
    assert_eq!(
        child.parent_span_id, parent.span_id,
        "{} ({}) is not a child of {} ({})",
        child.name, child.service, parent.name, parent.service
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_launch_and_a_probe_are_each_one_trace_across_the_processes() {
    let otlp = Receiver::start().await;
    let sandbox = pipeline_world("traces")
        .tenants([tenant("acme").role(ROLE_ACME, "ext-acme").with_key()])
        .cloudsim(Sim::builder(scenario("dashboard")).time_scale(60.0))
        .start()
        .await;
    let aws = sandbox.sim().aws_env(OPERATOR);
    let gateway = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _scorer = sandbox.spawn(
        "capsight-scorer",
        sandbox
            .command(bin("capsight-scorer"))
            .envs(otlp.grpc_env()),
    );
    let _gateway = sandbox.spawn(
        "capsight-gateway",
        sandbox
            .command(bin("capsight-gateway"))
            .envs(otlp.http_env())
            .envs(aws.clone())
            .env("CAPSIGHT_GATEWAY__LISTEN", gateway.to_string()),
    );
    let _launcher = sandbox.spawn(
        "capsight-launcher",
        sandbox
            .command(bin("capsight-launcher"))
            .envs(otlp.http_env())
            .envs(aws.clone()),
    );
    let _probe = sandbox.spawn(
        "capsight-probe",
        sandbox
            .command(bin("capsight-probe"))
            .envs(otlp.grpc_env())
            .envs(aws)
            .env("CAPSIGHT_CLOUD__MAX_ATTEMPTS", "1")
            .env("CAPSIGHT_PROBE__INSTANCE", "probe-traces")
            .env("CAPSIGHT_PROBE__REGIONS", "[\"us-east-1\"]")
            .env("CAPSIGHT_PROBE__INSTANCE_TYPES", "[\"g5.xlarge\"]")
            .env("CAPSIGHT_PROBE__TICK", "1s")
            .env("CAPSIGHT_PROBE__MAX_PER_PASS", "2")
            .env("CAPSIGHT_PROBE__MAX_CONCURRENT", "2")
            .env("CAPSIGHT_PROBE__CADENCE__MIN_INTERVAL", "30s")
            .env("CAPSIGHT_PROBE__CADENCE__MAX_INTERVAL", "60s")
            .env("CAPSIGHT_PROBE__LIMITS__PER_API_PER_MINUTE", "0")
            .env("CAPSIGHT_PROBE__LIMITS__PER_ACCOUNT_PER_MINUTE", "0"),
    );

    // a launch through the gateway, as soon as it answers
    let key = sandbox.key("acme");
    let request = launches::launch_request(LAUNCHED, "");
    let job = eventually(
        Duration::from_secs(60),
        "the gateway takes a launch",
        || {
            let request = request.clone();
            let key = key.clone();
            async move {
                let mut client = LaunchServiceClient::new(channel(gateway));
                client
                    .launch(authed(request, &key))
                    .await
                    .ok()
                    .map(tonic::Response::into_inner)
            }
        },
    )
    .await;
    assert_eq!(job.state(), LaunchState::Queued);

    // the launch's trace: gateway -> RabbitMQ -> launcher -> cloud, Kafka -> scorer
    let rpc = otlp
        .wait_for(
            Duration::from_secs(60),
            "the gateway's Launch span",
            |spans| {
                spans
                    .iter()
                    .find(|s| {
                        s.service == "capsight-gateway"
                            && s.name == "capsight.v1.LaunchService/Launch"
                            && s.attr("rpc.grpc.status_code") == Some("0")
                    })
                    .cloned()
            },
        )
        .await;
    assert_eq!(rpc.transport, "http");
    let trace = rpc.trace_id.clone();
    let (publish, job_span, run, produce, signal, score) = otlp
        .wait_for(
            Duration::from_secs(120),
            "the launch's spans in every process",
            |spans| {
                let publish = find(spans, &trace, "capsight-gateway", "amqp.publish")?;
                let job_span = find(spans, &trace, "capsight-launcher", "launch_job")?;
                let run = find(spans, &trace, "capsight-launcher", "RunInstances")?;
                let produce = find(spans, &trace, "capsight-launcher", "kafka.produce")?;
                let signal = find(spans, &trace, "capsight-scorer", "scorer.signal")?;
                let score = find(spans, &trace, "capsight-scorer", "scorer.score")?;
                Some((
                    publish.clone(),
                    job_span.clone(),
                    run.clone(),
                    produce.clone(),
                    signal.clone(),
                    score.clone(),
                ))
            },
        )
        .await;
    child_of(&publish, &rpc);
    assert_eq!(
        publish.attr("messaging.message.id"),
        Some(job.job_id.as_str())
    );
    child_of(&job_span, &publish);
    assert_eq!(job_span.attr("job_id"), Some(job.job_id.as_str()));
    child_of(&run, &job_span);
    assert_eq!(run.attr("rpc.system"), Some("aws-api"));
    child_of(&produce, &job_span);
    assert_eq!(produce.attr("source"), Some("launch"));
    child_of(&signal, &produce);
    assert_eq!(signal.attr("source"), Some("launch"));
    assert_eq!(signal.attr("key"), Some(LAUNCHED));
    assert_eq!(signal.transport, "grpc");
    child_of(&score, &signal);
    assert_eq!(score.attr("key"), Some(LAUNCHED));
    assert!(score.attr("label").is_some(), "{score:#?}");

    // a probe's trace: the prober's cloud calls -> Kafka -> the score it moved
    let (probe, calls, produce, signal, score) = otlp
        .wait_for(
            Duration::from_secs(120),
            "a probe traced to the score it moved",
            |spans| {
                spans
                    .iter()
                    .filter(|s| s.service == "capsight-probe" && s.name == "probe")
                    .find_map(|probe| {
                        let trace = &probe.trace_id;
                        let calls: Vec<ReceivedSpan> = spans
                            .iter()
                            .filter(|s| {
                                &s.trace_id == trace
                                    && s.service == "capsight-probe"
                                    && s.attr("rpc.system") == Some("aws-api")
                            })
                            .cloned()
                            .collect();
                        let produce = find(spans, trace, "capsight-probe", "kafka.produce")?;
                        let signal = find(spans, trace, "capsight-scorer", "scorer.signal")?;
                        let score = find(spans, trace, "capsight-scorer", "scorer.score")?;
                        (!calls.is_empty()).then(|| {
                            (
                                probe.clone(),
                                calls,
                                produce.clone(),
                                signal.clone(),
                                score.clone(),
                            )
                        })
                    })
            },
        )
        .await;
    assert!(probe.parent_span_id.is_empty(), "a probe starts its trace");
    assert_eq!(probe.transport, "grpc");
    for call in &calls {
        child_of(call, &probe);
    }
    child_of(&produce, &probe);
    assert_eq!(produce.attr("source"), Some("probe"));
    child_of(&signal, &produce);
    assert_eq!(signal.attr("source"), Some("probe"));
    assert_eq!(signal.attr("key"), probe.attr("key"));
    child_of(&score, &signal);
    assert_eq!(score.attr("key"), probe.attr("key"));

    // the trace ids are the ones the processes logged and propagated: nothing else shares them
    let spans = otlp.spans();
    let services: std::collections::BTreeSet<&str> = spans
        .iter()
        .filter(|s| s.trace_id == trace)
        .map(|s| s.service.as_str())
        .collect();
    assert_eq!(
        services.into_iter().collect::<Vec<_>>(),
        vec!["capsight-gateway", "capsight-launcher", "capsight-scorer"]
    );

    drop((_probe, _launcher, _gateway, _scorer));
    sandbox.cleanup().await;
}
