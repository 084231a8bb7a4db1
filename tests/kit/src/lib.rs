//! `capsight-testkit`: what capsight's integration and end-to-end tests share.
//!
//! * [`sandbox`]: one test's isolated corner of the shared local stack — its own topics,
//!   migrated ClickHouse database, RabbitMQ names, tenant registry, cloudsim and a config file
//!   every service (in-process or as a binary) reads;
//! * [`cloud`]: cloudsim in-process from a scenario, its admin API, AWS adapters and tenant
//!   clouds pointed at it;
//! * [`tenants`]: tenant registries; [`fixtures`]: scenario files, config fragments and
//!   documented queries (`tests/fixtures/`), the gateway's world;
//! * [`signals`], [`launches`]: signal, score, launch-job and launch-row fixtures;
//! * [`kafka`], [`clickhouse`], [`amqp`]: reading back what services wrote; [`reports`]:
//!   tenant reports posted to the intake;
//! * [`wait`]: `eventually` and `poll`; [`grpc`]: channels and authenticated requests;
//! * [`process`]: guards that stop every process a test spawns — on drop, so also when the
//!   test panics — and helpers to find binaries and free ports;
//! * [`broker`]: a private Kafka-protocol broker (tansu) a test may pause (`SIGSTOP`), kill and
//!   restart without disturbing other tests, optionally behind a [`broker::KafkaProxy`] that
//!   sees every request's API key (to inject a fault at an exact protocol step, e.g. during an
//!   offset commit); [`rabbit`]: a private RabbitMQ node to restart; [`private_clickhouse`]: a
//!   private ClickHouse server to stop (kill) and restart; [`outage`]: one way to take any of
//!   them down and back, repeatedly;
//! * [`tls`]: a CA made for one test and a TLS-terminating forwarder in front of a real service;
//! * [`otlp`]: an OTLP trace receiver (HTTP and gRPC) that keeps the spans processes export;
//! * [`webhook`]: a webhook receiver on loopback that keeps what the notifier sends.
//!
//! Tests that need a service fail loudly when it is missing; nothing here skips a test.

#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    reason = "test support: a failed set-up is a failed test, with the panic as its message"
)]

pub mod amqp;
pub mod broker;
pub mod clickhouse;
pub mod cloud;
pub mod fixtures;
pub mod grpc;
pub mod kafka;
pub mod launches;
pub mod otlp;
pub mod outage;
pub mod private_clickhouse;
pub mod process;
pub mod rabbit;
pub mod reports;
pub mod sandbox;
pub mod signals;
pub mod tenants;
pub mod tls;
pub mod wait;
pub mod webhook;

pub use sandbox::Sandbox;
