//! Tracing initialisation and W3C trace-context propagation.
//!
//! [`init`] installs logs (text or JSON on stderr; `RUST_LOG` overrides the configured filter)
//! and an OpenTelemetry layer, so every `tracing` span has a trace id that [`inject`] writes
//! into message headers (`traceparent`) and [`extract`] reads back on the consuming side: one
//! trace follows a signal from a collector through Kafka into the scorer, and a launch from the
//! gateway through RabbitMQ into the launcher. No span exporter is configured yet; the trace
//! ids still travel and appear in logs.

use std::collections::HashMap;

use opentelemetry::{global, trace::TracerProvider as _};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

/// The `[telemetry]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// An `EnvFilter` directive such as `info,capsight=debug`.
    pub log_filter: String,
    /// `text` for people, `json` for log pipelines.
    pub log_format: LogFormat,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_filter: "info".into(),
            log_format: LogFormat::Text,
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
    /// A global subscriber is already installed.
    #[error("tracing is already initialised: {0}")]
    AlreadySet(#[from] tracing_subscriber::util::TryInitError),
}

/// Installs the global subscriber (logs to stderr in the configured format, plus the
/// OpenTelemetry layer) and the W3C trace-context propagator. `service` names the process in
/// traces (`capsight-scorer`, ...).
pub fn init(service: &'static str, settings: &TelemetrySettings) -> Result<(), TelemetryError> {
    let directive = std::env::var("RUST_LOG").unwrap_or_else(|_| settings.log_filter.clone());
    let filter = EnvFilter::try_new(&directive).map_err(|source| TelemetryError::Filter {
        filter: directive.clone(),
        source,
    })?;
    global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = SdkTracerProvider::builder().build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));
    global::set_tracer_provider(provider);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    match settings.log_format {
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init()?,
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()?,
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt;

    use super::*;

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
