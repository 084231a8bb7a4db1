//! Prometheus metrics: the `[metrics]` section, the catalog type every crate declares its
//! metrics with, and the process's `GET /metrics` endpoint.
//!
//! Crates record through the `metrics` facade (`metrics::counter!(M.name, ...)`), which is a
//! no-op until a recorder is installed: libraries and tests record nothing unless a process
//! installed one. [`serve`] (called once by [`crate::process::Process::start`]) installs the
//! Prometheus text-format recorder and serves it on the binary's own loopback address from
//! `[metrics.listen]`.
//!
//! Names follow Prometheus conventions: `capsight_<component>_<what>_<unit>`, counters end in
//! `_total`, durations are `_seconds` histograms, sizes `_rows` histograms; the bucket set is
//! chosen by that suffix ([`LATENCY_BUCKETS`], [`SIZE_BUCKETS`]). Label values come from
//! bounded sets (enums, configured names, error classes), never a tenant id, an API key or a
//! capacity key. Each crate declares its metrics with [`declare_metrics!`](crate::declare_metrics)
//! ([`Metric`] constants and the one `METRICS` table listing them); the operations guide
//! documents every one (a test compares the two).

use std::{
    net::{SocketAddr, TcpListener},
    time::Duration,
};

use axum::{Router, routing::get};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Deserialize;
use tracing::Instrument;

use crate::shutdown::Shutdown;

/// Histogram buckets (seconds) of every `*_seconds` metric: call latencies from a millisecond
/// to the ages of served evidence (hours).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0, 21600.0, 86400.0,
];

/// Histogram buckets of every `*_rows` metric (batch sizes).
pub const SIZE_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0,
];

/// What kind of series a [`Metric`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic count; the name ends in `_total`.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution; the name ends in its unit (`_seconds`, `_rows`).
    Histogram,
}

impl Kind {
    /// `counter`, `gauge` or `histogram`, as in the documentation table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// Declares a crate's metrics: one `pub const` [`Metric`] per entry (its doc comment kept) and
/// the crate's `METRICS` table listing them all, in order, so a metric cannot be declared and
/// left out of the table the operations guide is checked against.
///
/// ```
/// capsight_runtime::declare_metrics! {
///     /// Things done.
///     DONE_TOTAL = Counter("capsight_example_done_total", ["outcome"], "Things done, by outcome");
/// }
/// assert_eq!(METRICS, &[DONE_TOTAL]);
/// ```
#[macro_export]
macro_rules! declare_metrics {
    ($($(#[$doc:meta])* $name:ident = $kind:ident($metric:literal, [$($label:literal),*], $help:literal);)*) => {
        $(
            $(#[$doc])*
            pub const $name: $crate::metrics::Metric = $crate::metrics::Metric::new(
                $crate::metrics::Kind::$kind,
                $metric,
                &[$($label),*],
                $help,
            );
        )*
        /// The metrics of this crate.
        pub const METRICS: &[$crate::metrics::Metric] = &[$($name),*];
    };
}

/// One metric a crate emits: its name, kind, label names and meaning. Declared as a `const`
/// next to the code that records it and listed in the crate's `METRICS` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The series name.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Label names (each with a bounded set of values).
    pub labels: &'static [&'static str],
    /// What it counts or measures.
    pub help: &'static str,
}

impl Metric {
    /// A metric of `kind` (see [`declare_metrics!`], which declares them).
    pub const fn new(
        kind: Kind,
        name: &'static str,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Self {
            name,
            kind,
            labels,
            help,
        }
    }

    /// Why this metric breaks the naming conventions, if it does.
    pub fn convention_error(&self) -> Option<String> {
        let n = self.name;
        let ok_chars = n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !n.starts_with("capsight_") || !ok_chars {
            return Some(format!("{n}: not capsight_[a-z0-9_]+"));
        }
        let suffix_ok = match self.kind {
            Kind::Counter => n.ends_with("_total"),
            Kind::Histogram => n.ends_with("_seconds") || n.ends_with("_rows"),
            Kind::Gauge => !n.ends_with("_total"),
        };
        (!suffix_ok).then(|| format!("{n}: a {} with the wrong suffix", self.kind.as_str()))
    }
}

/// Registers the `# HELP` text of `metrics` with the installed recorder (no-op without one).
pub fn describe(metrics: &[Metric]) {
    for m in metrics {
        match m.kind {
            Kind::Counter => ::metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => ::metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => ::metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// The seconds since `start`, for a `*_seconds` histogram.
pub fn seconds_since(start: std::time::Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// Records one outbound call of `dependency` (`kafka`, `clickhouse`, `rabbitmq`, `cloud`):
/// its latency under `operation` and, when it failed, an error counted under `error` (a
/// bounded class, never a message).
pub fn dependency_call(
    dependency: &'static str,
    operation: &'static str,
    start: std::time::Instant,
    error: Option<&'static str>,
) {
    ::metrics::histogram!(
        DEPENDENCY_CALL_SECONDS.name,
        "dependency" => dependency,
        "operation" => operation,
    )
    .record(seconds_since(start));
    if let Some(error) = error {
        ::metrics::counter!(
            DEPENDENCY_ERRORS_TOTAL.name,
            "dependency" => dependency,
            "operation" => operation,
            "error" => error,
        )
        .increment(1);
    }
}

crate::declare_metrics! {
    /// Latency of outbound calls, by dependency and operation.
    DEPENDENCY_CALL_SECONDS = Histogram("capsight_dependency_call_seconds", ["dependency", "operation"], "Latency of calls to Kafka, ClickHouse, RabbitMQ and the cloud APIs");
    /// Failed outbound calls.
    DEPENDENCY_ERRORS_TOTAL = Counter("capsight_dependency_errors_total", ["dependency", "operation", "error"], "Failed calls to Kafka, ClickHouse, RabbitMQ and the cloud APIs, by error class");
    /// Set to 1 by every process serving metrics, labelled with its binary: a scrape target's
    /// identity, and `absent()` alerts.
    PROCESS_UP = Gauge("capsight_process_up", ["binary"], "1 while the process runs (labelled with its binary)");
    /// HTTP requests served, by route and status.
    HTTP_REQUESTS_TOTAL = Counter("capsight_http_requests_total", ["route", "status"], "HTTP requests served (reports intake, cloudsim, the gateway's web dashboard), by route pattern and status code");
    /// HTTP request latency, by route.
    HTTP_REQUEST_SECONDS = Histogram("capsight_http_request_seconds", ["route"], "Time to answer an HTTP request, by route pattern");
}

/// An axum middleware (`axum::middleware::from_fn(track_http)`, as a router's `layer`)
/// recording [`HTTP_REQUESTS_TOTAL`] and [`HTTP_REQUEST_SECONDS`], each request in an
/// `http.request` trace span named by method and route. The `route` label is the
/// matched route pattern (`/v1/reports`), `unmatched` for anything else: clients cannot grow
/// the label set.
pub async fn track_http(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // one span per request, a child of the caller's trace when it sends a `traceparent`
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format_args!("{} {route}", request.method()),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %request.method(),
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    crate::telemetry::extract_http(&span, request.headers());
    let start = std::time::Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    ::metrics::histogram!(HTTP_REQUEST_SECONDS.name, "route" => route.clone())
        .record(start.elapsed());
    ::metrics::counter!(
        HTTP_REQUESTS_TOTAL.name,
        "route" => route,
        "status" => response.status().as_str().to_owned(),
    )
    .increment(1);
    response
}

/// The `[metrics]` config section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Serve `GET /metrics`; `false` records nothing.
    pub enabled: bool,
    /// Each binary's listen address.
    pub listen: MetricsListen,
}

/// `[metrics.listen]`: one address per binary, so the processes of one host do not collide.
/// Port 0 = any free port (logged at start).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs, reason = "one field per binary, named after it")]
pub struct MetricsListen {
    pub scorer: SocketAddr,
    pub gateway: SocketAddr,
    pub launcher: SocketAddr,
    pub reports: SocketAddr,
    pub probe: SocketAddr,
    pub quota: SocketAddr,
    pub spot: SocketAddr,
    pub status: SocketAddr,
    pub cloudsim: SocketAddr,
    pub notifier: SocketAddr,
    pub gpuclouds: SocketAddr,
}

impl MetricsListen {
    /// The address of the binary named `binary` (`capsight-scorer`, `cloudsim`, ...); `None`
    /// for a binary without an entry.
    pub fn of(&self, binary: &str) -> Option<SocketAddr> {
        Some(match binary.strip_prefix("capsight-").unwrap_or(binary) {
            "scorer" => self.scorer,
            "gateway" => self.gateway,
            "launcher" => self.launcher,
            "reports" => self.reports,
            "probe" => self.probe,
            "quota" => self.quota,
            "spot" => self.spot,
            "status" => self.status,
            "cloudsim" => self.cloudsim,
            "notifier" => self.notifier,
            "gpuclouds" => self.gpuclouds,
            _ => return None,
        })
    }
}

impl Default for MetricsSettings {
    fn default() -> Self {
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Self {
            enabled: true,
            listen: MetricsListen {
                scorer: at(9481),
                gateway: at(9482),
                launcher: at(9483),
                reports: at(9484),
                probe: at(9485),
                quota: at(9486),
                spot: at(9487),
                status: at(9488),
                cloudsim: at(9489),
                notifier: at(9490),
                gpuclouds: at(9491),
            },
        }
    }
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Another recorder is installed already.
    #[error("installing the Prometheus recorder: {0}")]
    Install(#[from] metrics_exporter_prometheus::BuildError),
    /// The listen address is taken or invalid.
    #[error("metrics endpoint {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
}

/// How often histograms' expired samples are dropped.
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder (bucket sets by unit suffix, `binary` as
/// [`PROCESS_UP`]'s label) without serving it; [`serve`] is the usual entry.
pub fn install(binary: &'static str) -> Result<PrometheusHandle, MetricsError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_rows".into()), SIZE_BUCKETS)?
        .install_recorder()?;
    describe(METRICS);
    ::metrics::gauge!(PROCESS_UP.name, "binary" => binary).set(1.0);
    Ok(handle)
}

/// When enabled and `binary` has an address: installs the recorder and serves `GET /metrics`
/// there until `shutdown` fires. Binds synchronously (a taken port fails the start); call
/// inside the tokio runtime. Returns the bound address.
pub fn serve(
    binary: &'static str,
    settings: &MetricsSettings,
    shutdown: Shutdown,
) -> Result<Option<SocketAddr>, MetricsError> {
    let Some(addr) = settings.listen.of(binary).filter(|_| settings.enabled) else {
        return Ok(None);
    };
    let bind = |source| MetricsError::Bind { addr, source };
    let listener = TcpListener::bind(addr).map_err(bind)?;
    listener.set_nonblocking(true).map_err(bind)?;
    let bound = listener.local_addr().map_err(bind)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(bind)?;
    let handle = install(binary)?;
    let upkeep = handle.clone();
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let h = handle.clone();
            async move { h.render() }
        }),
    );
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let mut tick = tokio::time::interval(UPKEEP);
            loop {
                tokio::select! {
                    _ = tick.tick() => upkeep.run_upkeep(),
                    () = shutdown.wait() => break,
                }
            }
        }
    });
    crate::health::spawn_server(listener, app, shutdown, "metrics");
    tracing::info!(addr = %bound, "metrics endpoint: GET /metrics");
    Ok(Some(bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::documented_defaults_test!("metrics", MetricsSettings);

    #[test]
    fn every_binary_has_its_own_port() {
        let s = MetricsSettings::default();
        let names = [
            "capsight-scorer",
            "capsight-gateway",
            "capsight-launcher",
            "capsight-reports",
            "capsight-probe",
            "capsight-quota",
            "capsight-spot",
            "capsight-status",
            "cloudsim",
        ];
        let mut ports: Vec<u16> = names
            .iter()
            .map(|n| s.listen.of(n).map_or(0, |a| a.port()))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), names.len());
        assert!(!ports.contains(&0));
        assert_eq!(s.listen.of("capsight-admin"), None);
    }

    /// The one test of this binary that installs the process-wide recorder.
    #[tokio::test]
    async fn the_endpoint_serves_what_was_recorded() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let mut settings = MetricsSettings::default();
        settings.listen.scorer = SocketAddr::from(([127, 0, 0, 1], 0));
        let shutdown = Shutdown::new();
        let addr = serve("capsight-scorer", &settings, shutdown.clone())
            .unwrap()
            .unwrap();
        dependency_call(
            "kafka",
            "produce",
            std::time::Instant::now(),
            Some("timed_out"),
        );
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        assert!(
            body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
            "{body}"
        );
        assert!(
            body.contains("capsight_process_up{binary=\"capsight-scorer\"} 1"),
            "{body}"
        );
        assert!(
            body.contains(
                "capsight_dependency_errors_total{dependency=\"kafka\",operation=\"produce\",error=\"timed_out\"} 1"
            ),
            "{body}"
        );
        // a histogram with the latency buckets, not a summary
        assert!(
            body.contains("capsight_dependency_call_seconds_bucket{dependency=\"kafka\",operation=\"produce\",le=\"0.001\"}"),
            "{body}"
        );
        // disabled, or a binary without an address: no endpoint
        let off = MetricsSettings {
            enabled: false,
            ..MetricsSettings::default()
        };
        assert_eq!(
            serve("capsight-scorer", &off, shutdown.clone()).unwrap(),
            None
        );
        assert_eq!(
            serve("capsight-admin", &settings, shutdown.clone()).unwrap(),
            None
        );
        shutdown.trigger();
    }

    #[test]
    fn conventions_are_checked() {
        assert_eq!(PROCESS_UP.convention_error(), None);
        for m in METRICS {
            assert_eq!(m.convention_error(), None);
        }
        let bad = Metric::new(Kind::Counter, "capsight_things", &[], "");
        assert!(bad.convention_error().is_some());
        let bad = Metric::new(Kind::Histogram, "capsight_call_ms", &[], "");
        assert!(bad.convention_error().is_some());
    }
}
