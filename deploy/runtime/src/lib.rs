//! What every capsight process does at start and stop, and nothing else:
//!
//! * [`config`]: layered configuration (embedded defaults < file < `CAPSIGHT_` environment);
//! * [`telemetry`]: tracing initialisation from config, OTLP span export from the `OTEL_*`
//!   environment, trace context in message headers;
//! * [`failpoint`]: test failpoints, refused by release builds;
//! * [`health`]: the `GET /healthz` endpoint supervisors probe;
//! * [`metrics`]: Prometheus metrics (`GET /metrics`), the catalog type every crate declares
//!   its metrics with;
//! * [`periodic`]: run work now and then every interval until shutdown;
//! * [`process`]: the start every binary shares (config, tracing, shutdown signal);
//! * [`shutdown`]: one cancellation signal, fired by SIGINT/SIGTERM or by code, that every task
//!   of a process watches;
//! * [`tls`]: the process's rustls crypto provider, installed once at start.
//!
//! Connection settings for the infrastructure live with their clients (`capsight-kafka`,
//! `capsight-clickhouse`, `capsight-amqp`); a binary's config struct composes them.

pub mod config;
pub mod failpoint;
pub mod health;
pub mod metrics;
pub mod periodic;
pub mod process;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
