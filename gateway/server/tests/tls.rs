//! With `gateway.tls_cert`/`tls_key` set the gateway speaks TLS only: a client trusting the
//! issuing CA is served, a plaintext client is not.

#![allow(
    clippy::unwrap_used,
    reason = "a panic in a test is a failed assertion"
)]

mod gateway;

use std::process::Command;

use capsight_proto::v1;
use capsight_testkit::grpc::authed;
use gateway::Gateway;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl on PATH (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_when_configured() {
    let mut h = Gateway::prepare(true).await;
    let dir = h.sandbox.dir.clone();
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    for args in [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=capsight-test-ca",
        ][..],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ][..],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ][..],
    ] {
        openssl(&dir, args);
    }
    h.config.gateway.tls_cert = dir.join("server.pem");
    h.config.gateway.tls_key = dir.join("server.key");
    let h = h.launch_gateway().await;
    h.wait_ready().await;
    let addr = h.running.as_ref().unwrap().addr;

    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
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
