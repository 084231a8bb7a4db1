//! Tracing initialisation, OTLP span export and W3C trace-context propagation.
//!
//! [`init`] installs logs (text or JSON on stderr; `RUST_LOG` overrides the configured filter)
//! and an OpenTelemetry layer, so every `tracing` span has a trace id that [`inject`] writes
//! into message headers (`traceparent`) and [`extract`] reads back on the consuming side: one
//! trace follows a signal from a collector through Kafka into the scorer, and a launch from the
//! gateway through RabbitMQ into the launcher.
//!
//! Spans are exported over OTLP when the standard OpenTelemetry environment asks for it
//! ([`OtlpExport::from_env`]): `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set (export is off when neither is), protocol from
//! `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` (`http/protobuf`, the default, or `grpc`), plus the
//! exporter's own `OTEL_EXPORTER_OTLP_*` headers/timeout/compression, `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]` and the batch processor's
//! `OTEL_BSP_*`. `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off. Only
//! spans the `[telemetry] trace_filter` admits are exported (the exporter's own HTTP/gRPC
//! clients never are). [`shutdown`] (or [`finish`]) exports what is still buffered at exit.

use std::{collections::HashMap, sync::OnceLock};

use opentelemetry::{KeyValue, global, trace::TracerProvider as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer as _, fmt, layer::SubscriberExt, util::SubscriberInitExt,
};

/// The `[telemetry]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// An `EnvFilter` directive such as `info,capsight=debug`.
    pub log_filter: String,
    /// `text` for people, `json` for log pipelines.
    pub log_format: LogFormat,
    /// An `EnvFilter` directive choosing the spans exported over OTLP (when export is on).
    #[serde(default = "default_trace_filter")]
    pub trace_filter: String,
}

fn default_trace_filter() -> String {
    DEFAULT_TRACE_FILTER.to_owned()
}

/// The spans exported by default: capsight's own at `info`, never those of the HTTP/gRPC
/// stacks (the exporter's own requests would trace themselves).
pub const DEFAULT_TRACE_FILTER: &str = "info,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off";

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_filter: "info".into(),
            log_format: LogFormat::Text,
            trace_filter: default_trace_filter(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter directive does not parse.
    #[error("invalid telemetry.log_filter {filter:?}: {source}")]
    Filter {
        /// The directive.
        filter: String,
        /// The parser's complaint.
        source: tracing_subscriber::filter::ParseError,
    },
    /// The span filter directive does not parse.
    #[error("invalid telemetry.trace_filter {filter:?}: {source}")]
    TraceFilter {
        /// The directive.
        filter: String,
        /// The parser's complaint.
        source: tracing_subscriber::filter::ParseError,
    },
    /// An `OTEL_*` variable asks for something this process cannot do.
    #[error("invalid {variable}={value:?}: {reason}")]
    OtelEnv {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is accepted.
        reason: &'static str,
    },
    /// The OTLP exporter could not be built from the `OTEL_EXPORTER_OTLP_*` variables.
    #[error("OTLP span exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber is already installed.
    #[error("tracing is already initialised: {0}")]
    AlreadySet(#[from] tracing_subscriber::util::TryInitError),
}

/// Whether spans leave the process, as the `OTEL_*` environment says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpExport {
    /// No endpoint configured, or export turned off: trace ids travel, nothing is exported.
    Off,
    /// Export over OTLP (the exporter reads its endpoint, protocol, headers, ... itself).
    On,
}

impl OtlpExport {
    /// Reads the decision from the process environment.
    pub fn from_env() -> Result<Self, TelemetryError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The decision from `var` (a lookup of environment variables): on when an OTLP endpoint
    /// is set, unless `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`; any other
    /// `OTEL_TRACES_EXPORTER` than `otlp` is refused, and so is a protocol other than
    /// `http/protobuf` and `grpc`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, TelemetryError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(Self::Off);
        }
        if let Some(exporter) = set("OTEL_TRACES_EXPORTER") {
            match exporter.trim() {
                "none" => return Ok(Self::Off),
                "otlp" => {}
                _ => {
                    return Err(TelemetryError::OtelEnv {
                        variable: "OTEL_TRACES_EXPORTER",
                        value: exporter,
                        reason: "capsight exports spans with otlp only (or none)",
                    });
                }
            }
        }
        for variable in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = set(variable)
                && !matches!(protocol.trim(), "http/protobuf" | "grpc")
            {
                return Err(TelemetryError::OtelEnv {
                    variable,
                    value: protocol,
                    reason: "supported protocols: http/protobuf, grpc",
                });
            }
        }
        let endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"));
        Ok(if endpoint.is_some() {
            Self::On
        } else {
            Self::Off
        })
    }
}

/// The process's tracer provider, kept for [`shutdown`].
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The resource spans are exported under: the SDK's detectors (`OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`), `service` as the name unless the environment named one.
fn resource(service: &'static str) -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|v| !v.as_str().starts_with("unknown_service"));
    let builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if named {
        builder.build()
    } else {
        builder.with_service_name(service).build()
    }
}

/// Installs the global subscriber (logs to stderr in the configured format, plus the
/// OpenTelemetry layer, exporting over OTLP when the environment asks for it, see the module
/// doc) and the W3C trace-context propagator. `service` names the process in traces
/// (`capsight-scorer`, ...) unless `OTEL_SERVICE_NAME` does. Call inside the tokio runtime
/// (the gRPC exporter's channel lives on it).
pub fn init(service: &'static str, settings: &TelemetrySettings) -> Result<(), TelemetryError> {
    let directive = std::env::var("RUST_LOG").unwrap_or_else(|_| settings.log_filter.clone());
    let filter = EnvFilter::try_new(&directive).map_err(|source| TelemetryError::Filter {
        filter: directive.clone(),
        source,
    })?;
    let export = OtlpExport::from_env()?;
    global::set_text_map_propagator(TraceContextPropagator::new());
    let mut builder = SdkTracerProvider::builder();
    // without export the layer still gives spans their trace ids (propagated, logged) and
    // sees what the log filter lets through; with export, what trace_filter admits
    let trace_filter = match export {
        OtlpExport::Off => {
            EnvFilter::try_new(&directive).map_err(|source| TelemetryError::Filter {
                filter: directive.clone(),
                source,
            })?
        }
        OtlpExport::On => {
            let exporter = opentelemetry_otlp::SpanExporter::builder().build()?;
            builder = builder
                .with_batch_exporter(exporter)
                .with_resource(resource(service));
            EnvFilter::try_new(&settings.trace_filter).map_err(|source| {
                TelemetryError::TraceFilter {
                    filter: settings.trace_filter.clone(),
                    source,
                }
            })?
        }
    };
    let provider = builder.build();
    let tracer = provider.tracer(service);
    let _ = PROVIDER.set(provider.clone());
    global::set_tracer_provider(provider);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(trace_filter);
    let fmt_filter = filter;
    let registry = tracing_subscriber::registry().with(otel);
    match settings.log_format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(fmt_filter),
            )
            .try_init()?,
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(fmt_filter),
            )
            .try_init()?,
    }
    if export == OtlpExport::On {
        tracing::info!(service, "exporting spans over OTLP");
    }
    Ok(())
}

/// Exports the spans still buffered and stops the exporter (a no-op when [`init`] did not
/// run). Blocks: call at the very end of `main`, or through [`finish`] inside the runtime.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(e) = provider.shutdown()
    {
        // export is best effort; say so on stderr, the log subscriber may be gone
        eprintln!("trace export at shutdown: {e}");
    }
}

/// [`shutdown`] on a blocking thread, so the runtime keeps serving the exporter's requests.
pub async fn finish() {
    let _ = tokio::task::spawn_blocking(shutdown).await;
}

/// The current span's trace context as header pairs (`traceparent`, maybe `tracestate`); empty
/// when there is no active trace.
pub fn inject() -> HashMap<String, String> {
    let cx = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    carrier
}

/// Makes `span` a child of the trace context found in `headers` (as written by [`inject`]);
/// does nothing when the headers carry none.
pub fn extract(span: &tracing::Span, headers: &HashMap<String, String>) {
    let cx = global::get_text_map_propagator(|p| p.extract(headers));
    // an invalid/missing parent leaves the span a root: nothing to report
    let _ = span.set_parent(cx);
}

/// [`extract`] from HTTP headers (`traceparent`, `tracestate`): the HTTP servers' and the gRPC
/// server's incoming requests.
pub fn extract_http(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    let carrier: HashMap<String, String> = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|name| {
            let value = headers.get(name)?.to_str().ok()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect();
    extract(span, &carrier);
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn export_is_off_unless_an_endpoint_is_set() {
        assert_eq!(OtlpExport::from_vars(vars(&[])).unwrap(), OtlpExport::Off);
        assert_eq!(
            OtlpExport::from_vars(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])).unwrap(),
            OtlpExport::Off
        );
        for endpoint in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ] {
            assert_eq!(
                OtlpExport::from_vars(vars(&[(endpoint, "http://127.0.0.1:4318")])).unwrap(),
                OtlpExport::On
            );
        }
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert_eq!(
            OtlpExport::from_vars(vars(&[on, ("OTEL_SDK_DISABLED", "TRUE")])).unwrap(),
            OtlpExport::Off
        );
        assert_eq!(
            OtlpExport::from_vars(vars(&[on, ("OTEL_TRACES_EXPORTER", "none")])).unwrap(),
            OtlpExport::Off
        );
        assert_eq!(
            OtlpExport::from_vars(vars(&[
                on,
                ("OTEL_TRACES_EXPORTER", "otlp"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            ]))
            .unwrap(),
            OtlpExport::On
        );
    }

    #[test]
    fn unsupported_exporters_and_protocols_are_named() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        let e = OtlpExport::from_vars(vars(&[on, ("OTEL_TRACES_EXPORTER", "zipkin")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("OTEL_TRACES_EXPORTER") && e.contains("zipkin"),
            "{e}"
        );
        let e = OtlpExport::from_vars(vars(&[
            on,
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), "{e}");
    }

    #[test]
    fn trace_context_round_trips_through_headers() {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let producer = tracing::info_span!("produce");
            let headers = producer.in_scope(inject);
            let traceparent = headers.get("traceparent").expect("a traceparent header");
            let trace_id = producer.context().span().span_context().trace_id();
            assert!(traceparent.contains(&trace_id.to_string()), "{traceparent}");

            let consumer = tracing::info_span!("consume");
            extract(&consumer, &headers);
            assert_eq!(
                consumer.context().span().span_context().trace_id(),
                trace_id
            );
        });
    }
}

#[cfg(test)]
crate::documented_defaults_test!("telemetry", TelemetrySettings);
