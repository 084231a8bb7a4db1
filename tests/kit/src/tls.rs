//! TLS in front of the real local services, with a certificate authority made for one test.
//!
//! * [`PrivateCa`]: a CA and a server certificate it signed (`localhost` and `127.0.0.1`),
//!   generated with the `openssl` command line (Debian package `openssl`) into a directory of
//!   the test's own; a second, unrelated CA gives the "wrong CA" case.
//! * [`TlsForwarder`]: a TLS-terminating TCP forwarder (rustls) in front of a plain service
//!   (the stack's ClickHouse, RabbitMQ, or a private tansu advertising the forwarder's
//!   address): a client speaks TLS to it, it speaks plain TCP to the service. It counts
//!   completed and failed handshakes and the bytes it forwarded each way, so a test can show
//!   that data really went through TLS and that a client trusting another CA was refused.
//!
//! The local services have no usable TLS listener of their own (tansu 0.6 accepts `--cert` but
//! serves plaintext; ClickHouse 18.16 and RabbitMQ would need the shared servers reconfigured
//! and restarted), hence the forwarder.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::process::unique;

/// A certificate authority and a server certificate it signed, in a directory of their own
/// (removed on drop).
#[derive(Debug)]
pub struct PrivateCa {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
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

impl PrivateCa {
    /// A new CA (`ca.pem`) and a server certificate for `localhost` / `127.0.0.1`
    /// (`server.pem`, `server.key`) signed by it, valid for a day.
    pub fn generate() -> Self {
        let dir = std::env::temp_dir().join(unique("capsight-ca"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let subject = format!("/CN={}", unique("capsight-test-ca"));
        for args in [
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
                "ca.pem", "-days", "1", "-subj", &subject,
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
        Self { dir }
    }

    /// The CA certificate (PEM): what a client trusts.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A forwarder serving this CA's server certificate in front of `upstream`.
    pub async fn forward(&self, upstream: SocketAddr) -> TlsForwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.forward_on(listener, upstream)
    }

    /// [`PrivateCa::forward`] on a listener bound before (e.g. whose address a broker
    /// advertises).
    pub fn forward_on(&self, listener: TcpListener, upstream: SocketAddr) -> TlsForwarder {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.dir.join("server.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key = PrivateKeyDer::from_pem_file(self.dir.join("server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        TlsForwarder::serve(listener, upstream, TlsAcceptor::from(Arc::new(config)))
    }
}

impl Drop for PrivateCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug, Default)]
struct Counters {
    handshakes: AtomicU64,
    refused: AtomicU64,
    to_service: AtomicU64,
    to_client: AtomicU64,
}

/// What a [`TlsForwarder`] has seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlsStats {
    /// TLS handshakes completed.
    pub handshakes: u64,
    /// TLS handshakes that failed (e.g. the client did not trust the certificate).
    pub refused: u64,
    /// Bytes decrypted from clients and forwarded to the service.
    pub to_service: u64,
    /// Bytes from the service sent encrypted to clients.
    pub to_client: u64,
}

/// A TLS-terminating forwarder (see the module doc); stops on drop.
#[derive(Debug)]
pub struct TlsForwarder {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsForwarder {
    fn serve(listener: TcpListener, upstream: SocketAddr, acceptor: TlsAcceptor) -> Self {
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let shared = Arc::clone(&counters);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counters = Arc::clone(&shared);
                tokio::spawn(async move {
                    let tls = match acceptor.accept(client).await {
                        Ok(tls) => tls,
                        Err(_) => {
                            counters.refused.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                    counters.handshakes.fetch_add(1, Ordering::SeqCst);
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = server.set_nodelay(true);
                    let (mut cr, mut cw) = tokio::io::split(tls);
                    let (mut sr, mut sw) = server.into_split();
                    let up = Arc::clone(&counters);
                    let upward = async move {
                        copy_counting(&mut cr, &mut sw, &up.to_service).await;
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut sw).await;
                    };
                    let down = Arc::clone(&counters);
                    let downward = async move {
                        copy_counting(&mut sr, &mut cw, &down.to_client).await;
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut cw).await;
                    };
                    tokio::join!(upward, downward);
                });
            }
        });
        Self {
            addr,
            counters,
            task,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it has seen so far.
    pub fn stats(&self) -> TlsStats {
        let c = &self.counters;
        TlsStats {
            handshakes: c.handshakes.load(Ordering::SeqCst),
            refused: c.refused.load(Ordering::SeqCst),
            to_service: c.to_service.load(Ordering::SeqCst),
            to_client: c.to_client.load(Ordering::SeqCst),
        }
    }
}

/// Copies `from` to `to` until either ends, adding to `counter` as it goes (a long-lived
/// connection's bytes count before it closes).
async fn copy_counting<R, W>(from: &mut R, to: &mut W, counter: &AtomicU64)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() || to.flush().await.is_err() {
            return;
        }
        counter.fetch_add(n as u64, Ordering::SeqCst);
    }
}

impl Drop for TlsForwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
