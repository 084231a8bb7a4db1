//! A webhook receiver on loopback for notification tests: a real HTTP server (axum) that keeps
//! every request it gets (headers and body) and answers with a status the test sets (200 by
//! default; 500 to make the notifier retry and dead-letter).

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, Ordering},
    },
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl Received {
    /// A header as text (empty when missing).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Debug, Default)]
struct Inner {
    got: Mutex<Vec<Received>>,
    status: AtomicU16,
}

/// A running receiver (stops with the test's runtime).
#[derive(Debug, Clone)]
pub struct Receiver {
    addr: SocketAddr,
    inner: Arc<Inner>,
}

impl Receiver {
    /// Starts one on 127.0.0.1 answering `status`.
    pub async fn start(status: u16) -> Self {
        let inner = Arc::new(Inner {
            got: Mutex::default(),
            status: AtomicU16::new(status),
        });
        let app = Router::new()
            .route("/{*path}", post(receive))
            .route("/", post(receive))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, inner }
    }

    /// Its URL (`http://127.0.0.1:<port>/hook`).
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// What it answers from now on.
    pub fn answer(&self, status: u16) {
        self.inner.status.store(status, Ordering::SeqCst);
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.inner.got.lock().unwrap().clone()
    }
}

async fn receive(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    inner.got.lock().unwrap().push(Received { headers, body });
    StatusCode::from_u16(inner.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK)
}
