//! A real OTLP trace receiver on loopback, for tests of span export.
//!
//! [`Receiver::start`] serves both OTLP transports the processes may be configured with:
//! OTLP/HTTP (`POST /v1/traces`, `application/x-protobuf`) and OTLP/gRPC
//! (`opentelemetry.proto.collector.trace.v1.TraceService/Export`), each on a port of its own.
//! Payloads are decoded with the `opentelemetry-proto` types the exporters encode them with;
//! every span received is kept as a [`ReceivedSpan`] (its resource's `service.name`, ids as
//! lowercase hex, attributes as strings) for the test to inspect.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
};
use prost::Message;

/// One span as a process exported it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The exporting process's `service.name` resource attribute.
    pub service: String,
    /// The span name.
    pub name: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; empty for a root span.
    pub parent_span_id: String,
    /// The span's attributes, values rendered as strings.
    pub attributes: BTreeMap<String, String>,
    /// How it arrived: `http` or `grpc`.
    pub transport: &'static str,
}

impl ReceivedSpan {
    /// The attribute `key`, if the span has it.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

/// The receiver; stops serving when dropped.
#[derive(Debug)]
pub struct Receiver {
    http: SocketAddr,
    grpc: SocketAddr,
    spans: Spans,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn render(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), render(kv.value.as_ref())))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Keeps every span of `request`.
fn keep(spans: &Spans, request: &ExportTraceServiceRequest, transport: &'static str) {
    let mut out = Vec::new();
    for rs in &request.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                out.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: attributes(&span.attributes),
                    transport,
                });
            }
        }
    }
    spans.lock().unwrap().extend(out);
}

async fn http_export(State(spans): State<Spans>, body: Bytes) -> (StatusCode, Vec<u8>) {
    match ExportTraceServiceRequest::decode(body) {
        Ok(request) => {
            keep(&spans, &request, "http");
            (
                StatusCode::OK,
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
    }
}

#[derive(Debug)]
struct Grpc(Spans);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        keep(&self.0, request.get_ref(), "grpc");
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Receiver {
    /// Binds both endpoints on free loopback ports and serves them until dropped.
    pub async fn start() -> Self {
        let spans: Spans = Arc::default();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap();
        let app = Router::new()
            .route("/v1/traces", post(http_export))
            .with_state(Arc::clone(&spans));
        let http_task = tokio::spawn(async move {
            let _ = axum::serve(http, app).await;
        });
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = grpc.local_addr().unwrap();
        let service = TraceServiceServer::new(Grpc(Arc::clone(&spans)));
        let grpc_task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(grpc))
                .await;
        });
        Self {
            http: http_addr,
            grpc: grpc_addr,
            spans,
            tasks: vec![http_task, grpc_task],
        }
    }

    /// `OTEL_*` variables pointing a process at the OTLP/HTTP endpoint (a short batch delay,
    /// so spans arrive within a test's patience).
    pub fn http_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}", self.http),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
        ]
    }

    /// `OTEL_*` variables pointing a process at the OTLP/gRPC endpoint.
    pub fn grpc_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://{}", self.grpc),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
        ]
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until `found` picks something out of the spans received; panics with what was
    /// received after `limit`.
    pub async fn wait_for<T>(
        &self,
        limit: Duration,
        what: &str,
        found: impl Fn(&[ReceivedSpan]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            let spans = self.spans();
            if let Some(t) = found(&spans) {
                return t;
            }
            if Instant::now() >= deadline {
                let seen: Vec<String> = spans
                    .iter()
                    .map(|s| format!("{}:{} trace {}", s.service, s.name, s.trace_id))
                    .collect();
                panic!("{what}: not found after {limit:?}; received {seen:#?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
