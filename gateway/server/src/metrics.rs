//! The gateway's metrics (Prometheus, see `capsight_runtime::metrics`): every gRPC call through
//! [`GrpcMetricsLayer`] (a tower layer on the server: requests by method and code, latency),
//! and the scores served (by label, with the age of what was served).
//!
//! The `method` label is the gRPC path (`/capsight.v1.ScoreService/GetScore`) of a served
//! method; a call the server does not implement is counted as `unknown`, so a client cannot
//! grow the label set. For a server stream the latency is the time to its first response
//! headers, and its code the one known then (`OK` for a stream that started).
//!
//! The same layer opens each call's trace span (`grpc.request`, named by the method), a child
//! of the caller's `traceparent` metadata when it sends one: what the handler does (a launch
//! job published to RabbitMQ, a signal to Kafka) carries that trace on.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use capsight_proto::domain::Score;
use tonic::{
    Code,
    codegen::http::{Request, Response},
};
use tracing::Instrument;

capsight_runtime::declare_metrics! {
    /// gRPC calls, by method and status code.
    GRPC_REQUESTS_TOTAL = Counter("capsight_grpc_requests_total", ["method", "code"], "gRPC calls the gateway answered, by method and status code");
    /// gRPC call latency, by method.
    GRPC_REQUEST_SECONDS = Histogram("capsight_grpc_request_seconds", ["method"], "Time to answer a gRPC call (to the first response headers for a stream)");
    /// Scores served, by label.
    SCORES_SERVED_TOTAL = Counter("capsight_gateway_scores_served_total", ["label"], "Scores served by GetScore and ListScores, by label");
    /// Age of the scores served.
    SCORE_AGE_SECONDS = Histogram("capsight_gateway_score_age_seconds", [], "Age of each score served (now - the time the scorer computed it from its evidence)");
}

/// Counts one score served.
pub fn served(score: &Score) {
    metrics::counter!(SCORES_SERVED_TOTAL.name, "label" => score.label.as_str()).increment(1);
    let age = chrono::Utc::now()
        .signed_duration_since(score.updated_at)
        .to_std()
        .unwrap_or_default();
    metrics::histogram!(SCORE_AGE_SECONDS.name).record(age);
}

/// The canonical name of a gRPC status code (as in the gRPC spec: `OK`, `NOT_FOUND`, ...).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The status a response carries in its headers (a trailers-only error answer); `OK` when it
/// carries none (the status follows in the trailers of a started answer).
fn response_code<B>(response: &Response<B>) -> Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(Code::Ok, Code::from)
}

/// Records [`GRPC_REQUESTS_TOTAL`] and [`GRPC_REQUEST_SECONDS`] for every call (see the
/// module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around the server's routes.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, RB> tower_service::Service<Request<B>> for GrpcMetrics<S>
where
    S: tower_service::Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let start = Instant::now();
        let span = request_span(&request);
        let answer = span.in_scope(|| self.inner.call(request));
        let recorded = span.clone();
        Box::pin(
            async move {
                let result = answer.await;
                let code = match &result {
                    Ok(response) => response_code(response),
                    Err(_) => Code::Internal,
                };
                recorded.record("rpc.grpc.status_code", i32::from(code));
                if code != Code::Ok {
                    recorded.record("otel.status_code", "ERROR");
                }
                record(method, code, start);
                result
            }
            .instrument(span),
        )
    }
}

/// The span of one call: a child of the caller's trace when its metadata carries a
/// `traceparent`, else a new trace. Named by the method when the server implements it (a
/// bounded set), `grpc.request` otherwise.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let path = request.uri().path();
    let span = tracing::info_span!(
        "grpc.request",
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.method = path,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    if path.starts_with("/capsight.v1.") && path.len() <= 96 {
        span.record("otel.name", path.trim_start_matches('/'));
    }
    capsight_runtime::telemetry::extract_http(&span, request.headers());
    span
}

/// Counts one answered call.
fn record(method: String, code: Code, start: Instant) {
    let method = if code == Code::Unimplemented {
        "unknown".to_owned()
    } else {
        method
    };
    metrics::histogram!(GRPC_REQUEST_SECONDS.name, "method" => method.clone())
        .record(start.elapsed());
    metrics::counter!(
        GRPC_REQUESTS_TOTAL.name,
        "method" => method,
        "code" => code_name(code),
    )
    .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailers_only_error_is_read_from_the_headers() {
        let error = Response::builder()
            .header("grpc-status", "5")
            .body(())
            .unwrap_or_default();
        assert_eq!(response_code(&error), Code::NotFound);
        assert_eq!(
            response_code(&Response::new(())),
            Code::Ok,
            "a started answer"
        );
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
    }

    #[test]
    fn the_gateway_metrics_follow_the_conventions() {
        for m in METRICS {
            assert_eq!(m.convention_error(), None);
        }
    }
}
