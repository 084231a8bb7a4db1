//! The active prober's decision logic (`capsight-probe`): which key to probe next, whether the
//! day's budget allows it, and what it will cost. Pure and deterministic given its inputs (time
//! and a seeded RNG are passed in), so the policies are tested without a cloud; the binary that
//! executes probes through the cloud adapter builds on these.
//!
//! * [`plan`]: per-key cadence between `min_interval` and `max_interval` weighted by tenant
//!   demand, jittered, backed off x2-x4 after consecutive failures;
//! * [`budget`]: a hard daily spend cap, reserved atomically before each probe and settled
//!   after it;
//! * [`cost`]: the cost of a probe estimated from the GPU catalog's on-demand price.

pub mod budget;
pub mod cost;
pub mod plan;
