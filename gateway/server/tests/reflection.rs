//! What grpcurl does, from Rust: list the services over server reflection, fetch a service's
//! descriptor, find a method in it, and call that method by its reflected path with a generic
//! codec — no generated client involved in the call.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod gateway;

use capsight_proto::v1;
use capsight_testkit::signals::score;
use gateway::Gateway;
use prost::Message;
use tonic::{codegen::http::uri::PathAndQuery, metadata::MetadataValue};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

async fn ask(h: &Gateway, req: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(h.channel.clone());
    let mut stream = client
        .server_reflection_info(futures::stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(req),
        }]))
        .await
        .unwrap()
        .into_inner();
    stream
        .message()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reflection_client_lists_describes_and_calls_the_services() {
    let h = Gateway::start(&[score(
        "aws/us-east-1/use1-az4/p5.48xlarge/on_demand",
        88,
        0.8,
    )])
    .await;
    h.wait_ready().await;

    // list
    let MessageResponse::ListServicesResponse(list) =
        ask(&h, MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a service list")
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for s in [
        "capsight.v1.ScoreService",
        "capsight.v1.PreflightService",
        "capsight.v1.LaunchService",
        "capsight.v1.ReportService",
        "capsight.v1.NotificationService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&s), "{s} missing from {names:?}");
    }

    // describe: the file defining ScoreService, and its ListScores method
    let MessageResponse::FileDescriptorResponse(files) = ask(
        &h,
        MessageRequest::FileContainingSymbol("capsight.v1.ScoreService".into()),
    )
    .await
    else {
        panic!("not a file descriptor")
    };
    let (service, method) = files
        .file_descriptor_proto
        .iter()
        .map(|b| prost_types::FileDescriptorProto::decode(b.as_slice()).unwrap())
        .find_map(|f| {
            let pkg = f.package().to_owned();
            f.service
                .iter()
                .find(|s| s.name() == "ScoreService")
                .map(|s| {
                    let m = s
                        .method
                        .iter()
                        .find(|m| m.name() == "ListScores")
                        .unwrap()
                        .clone();
                    (format!("{pkg}.{}", s.name()), m)
                })
        })
        .expect("ScoreService described");
    assert_eq!(method.input_type(), ".capsight.v1.ListScoresRequest");
    assert_eq!(method.output_type(), ".capsight.v1.ListScoresResponse");

    // call it by the reflected path: an empty message is a default ListScoresRequest
    let path: PathAndQuery = format!("/{service}/{}", method.name()).parse().unwrap();
    let mut grpc = tonic::client::Grpc::new(h.channel.clone());
    grpc.ready().await.unwrap();
    let mut req = tonic::Request::new(());
    let auth: MetadataValue<_> = format!("Bearer {}", h.key("acme")).parse().unwrap();
    req.metadata_mut().insert("authorization", auth);
    let codec = tonic_prost::ProstCodec::<(), v1::ListScoresResponse>::default();
    let resp = grpc.unary(req, path, codec).await.unwrap().into_inner();
    assert_eq!(resp.total, 1);
    assert_eq!(resp.scores[0].score, 88);
    h.sandbox.cleanup().await;
}
