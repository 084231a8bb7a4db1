//! The active prober (`capsight-probe`): asks the cloud directly whether a GPU type can be had
//! in a zone, as cheaply and safely as possible, and publishes the answer as a `launch_attempt`
//! signal (source `probe`).
//!
//! * [`plan`]: per-key cadence between `min_interval` and `max_interval` weighted by tenant
//!   demand, jittered, backed off x2-x4 after consecutive failures (pure);
//! * [`budget`]: a hard daily spend cap, reserved atomically before each probe and settled
//!   after it; recovered from the audit trail at start-up (pure);
//! * [`cost`]: the cost of a probe estimated from the GPU catalog's on-demand price (pure);
//! * [`limits`]: rate limits per provider API and per account in front of every cloud call;
//! * [`demand`]: tenant demand per key from the gateway's `preflight_log`;
//! * [`audit`]: the `probe_audit` table (who, what, why, cost, outcome, resources);
//! * [`prober`]: one probe: quota pre-check, budget, reservation (launch as fallback),
//!   cleanup, classification, signal, audit;
//! * [`sweep`]: removes probe-tagged instances and reservations left behind;
//! * [`schedule`]: the loop tying them together (`--once`, graceful shutdown).

pub mod audit;
pub mod budget;
pub mod cost;
pub mod demand;
pub mod limits;
pub mod plan;
pub mod prober;
pub mod schedule;
pub mod settings;
pub mod sweep;

pub use prober::{PROBE_AT_TAG, PROBE_TAG, Planned, ProbeReport, Prober};
pub use schedule::Scheduler;
pub use settings::{LimitSettings, ProbeSettings};
