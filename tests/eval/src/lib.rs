//! `capsight-eval`: the evaluation harness (issue 12, `docs/evaluation.md`).
//!
//! It replays a workload file against a cloudsim scenario under several strategies — capsight
//! through its real pipeline, and the strategies users run today — each against its own cloudsim
//! with the same scenario and seed, and measures time-to-GPU and, for capsight, the quality of
//! its verdicts against the ground truth.
//!
//! Module map: [`workload`] (the workload format), [`fit`] (fitting the model on the library), [`metrics`] (pure statistics), [`world`]
//! (one arm's cloudsim and simulated clock), [`offers`] (a request's allowed offerings),
//! [`cloud`] (launches in the tenants' accounts through capsight's AWS adapter), [`pipeline`]
//! (capsight's services for one arm), [`replay`] (the strategies), [`report`] (figures and
//! files), [`run`] (one scenario + workload), [`suite`] (the library).

pub mod cloud;
pub mod fit;
pub mod metrics;
pub mod offers;
pub mod pipeline;
pub mod replay;
pub mod report;
pub mod run;
pub mod suite;
pub mod workload;
pub mod world;
