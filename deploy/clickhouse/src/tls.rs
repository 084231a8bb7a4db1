//! The HTTP(S) client of every ClickHouse client: client-side timeouts (`clickhouse.
//! connect_timeout`; `clickhouse.io_timeout`, the longest a request may wait for the server to
//! read or send a byte), so a hung or unreachable server fails a call instead of blocking it
//! forever; and, for a server whose certificate a private CA signed (`clickhouse.tls_ca`),
//! trust in exactly the CA certificates of the configured PEM file, else the web PKI roots.
//! TLS uses the process's rustls provider (`capsight_runtime::tls`, installed at every process
//! start; ring when none is installed); the connection settings are the `clickhouse` crate's
//! own (TCP keepalive, short pool idle timeout).

use std::{path::Path, sync::Arc, time::Duration};

use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rustls::pki_types::{CertificateDer, pem::PemObject};

use crate::ClickHouseError;

/// The same as the `clickhouse` crate's defaults.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// The rustls client config trusting the CAs in `ca` (PEM).
pub(crate) fn client_config(ca: &Path) -> Result<rustls::ClientConfig, ClickHouseError> {
    let err = |reason: String| ClickHouseError::TlsCa {
        path: ca.to_owned(),
        reason,
    };
    let pem = std::fs::read(ca).map_err(|e| err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    let provider = rustls::crypto::CryptoProvider::get_default()
        .map(Arc::clone)
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The rustls client config trusting the web PKI roots.
fn public_config() -> rustls::ClientConfig {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .map(Arc::clone)
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| rustls::ClientConfig::builder())
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A ClickHouse client (no URL yet) whose calls time out after `connect` (connecting) and `io`
/// (waiting to read or write a byte), and whose HTTPS trusts the CAs in `ca` (the web PKI
/// roots when `None`).
pub(crate) fn client(
    ca: Option<&Path>,
    connect: Duration,
    io: Duration,
) -> Result<clickhouse::Client, ClickHouseError> {
    let config = match ca {
        Some(ca) => client_config(ca)?,
        None => public_config(),
    };
    let mut http = HttpConnector::new();
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.set_connect_timeout(Some(connect));
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let mut timed = hyper_timeout::TimeoutConnector::new(https);
    timed.set_connect_timeout(Some(connect));
    timed.set_read_timeout(Some(io));
    timed.set_write_timeout(Some(io));
    let http = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(timed);
    Ok(clickhouse::Client::with_http_client(http))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unusable_ca_file_is_refused_naming_it() {
        let missing = Path::new("/nonexistent/ca.pem");
        let e = client_config(missing).unwrap_err().to_string();
        assert!(e.contains("clickhouse.tls_ca /nonexistent/ca.pem"), "{e}");
        let empty = std::env::temp_dir().join(format!("capsight-empty-ca-{}", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(&empty).unwrap_err().to_string();
        std::fs::remove_file(&empty).unwrap();
        assert!(e.contains("no certificate"), "{e}");
    }
}
