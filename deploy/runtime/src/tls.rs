//! The process-wide TLS crypto provider.
//!
//! Two rustls providers are compiled into capsight's binaries (ring through tonic, aws-lc-rs
//! through the AWS SDK and the clients' defaults), and rustls refuses to guess between two:
//! anything that builds a TLS config from the process default (`ClientConfig::builder()`,
//! tonic's server and client TLS, lapin's `amqps://` connector) would panic or pick one
//! haphazardly. [`install_crypto_provider`] installs ring once, at the start of every process
//! ([`crate::process::Process::start`], the tools' `main`s, the test kit's sandboxes); the
//! ClickHouse client with a private CA uses the same provider. Kafka's TLS is librdkafka's
//! (OpenSSL) and needs none.

/// Installs ring as the process's rustls provider unless one is installed already (another
/// crate's, or this one's from an earlier call). Idempotent and cheap; returns the provider the
/// process now uses.
pub fn install_crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    if let Some(p) = rustls::crypto::CryptoProvider::get_default() {
        return std::sync::Arc::clone(p);
    }
    // a concurrent caller may win the race: whoever did, a provider is installed afterwards
    let _ = rustls::crypto::ring::default_provider().install_default();
    rustls::crypto::CryptoProvider::get_default()
        .map(std::sync::Arc::clone)
        .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::ring::default_provider()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_is_installed_once_and_client_configs_build_from_it() {
        let first = install_crypto_provider();
        let again = install_crypto_provider();
        assert!(std::sync::Arc::ptr_eq(&first, &again));
        // what panics without a process default when two providers are compiled in
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        assert!(std::sync::Arc::ptr_eq(config.crypto_provider(), &first));
    }
}
