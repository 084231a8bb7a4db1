//! The HTTPS client for a ClickHouse whose certificate a private CA signed (`clickhouse.tls_ca`).
//!
//! The `clickhouse` crate's own client trusts the web PKI roots only; this one trusts exactly
//! the CA certificates of the configured PEM file, with the process's rustls provider
//! (`capsight_runtime::tls`, installed at every process start; ring when none is installed) and
//! the crate's own connection settings (TCP keepalive, short pool idle timeout).

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

/// A ClickHouse client (no URL yet) whose HTTPS trusts the CAs in `ca`.
pub(crate) fn client(ca: &Path) -> Result<clickhouse::Client, ClickHouseError> {
    let config = client_config(ca)?;
    let mut http = HttpConnector::new();
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let http = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(https);
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
