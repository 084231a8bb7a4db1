//! With `gateway.tls_cert`/`tls_key` set the gateway speaks TLS only: a client trusting the
//! issuing CA is served, a plaintext client is not.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod gateway;

use capsight_proto::v1;
use capsight_testkit::{grpc::authed, tls::PrivateCa};
use gateway::Gateway;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

#[tokio::test(flavor = "multi_thread")]
async fn tls_when_configured() {
    let mut h = Gateway::prepare(true).await;
    // a CA of this test's own and the `localhost` server certificate it signed, beside its
    // `ca.pem` as `server.pem` / `server.key`
    let authority = PrivateCa::generate();
    let ca_pem = authority.ca_pem();
    h.config.gateway.tls_cert = ca_pem.with_file_name("server.pem");
    h.config.gateway.tls_key = ca_pem.with_file_name("server.key");
    let h = h.launch_gateway().await;
    h.wait_ready().await;
    let addr = h.running.as_ref().unwrap().addr;

    let ca = std::fs::read(&ca_pem).unwrap();
    let tls = Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let resp = v1::score_service_client::ScoreServiceClient::new(tls)
        .list_scores(authed(v1::ListScoresRequest::default(), &h.key("acme")))
        .await
        .unwrap();
    assert_eq!(resp.get_ref().total, 0);

    // plaintext is refused
    let err = h
        .scores()
        .list_scores(authed(v1::ListScoresRequest::default(), &h.key("acme")))
        .await
        .unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    h.sandbox.cleanup().await;
}
