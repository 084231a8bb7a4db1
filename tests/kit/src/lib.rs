//! `capsight-testkit`: what capsight's integration and end-to-end tests share.
//!
//! * [`process`]: guards that stop every process a test spawns — on drop, so also when the
//!   test panics — and helpers to find binaries and free ports;
//! * [`broker`]: a private Kafka-protocol broker (tansu) a test may pause (`SIGSTOP`), kill and
//!   restart without disturbing other tests, optionally behind a [`broker::KafkaProxy`] that
//!   sees every request's API key (to inject a fault at an exact protocol step, e.g. during an
//!   offset commit);
//! * [`signals`]: signal fixtures; [`fixtures`]: cloudsim scenario files
//!   (`tests/fixtures/scenarios/`).
//!
//! Tests that need a service fail loudly when it is missing; nothing here skips a test.

#![allow(
    clippy::unwrap_used,
    reason = "test support: a failed set-up is a failed test, with the panic as its message"
)]

pub mod broker;
pub mod fixtures;
pub mod process;
pub mod signals;
