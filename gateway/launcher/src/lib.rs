//! `capsight-launcher`: the launch worker. It consumes launch jobs (`capsight.v1.LaunchJob`, see
//! `proto/capsight/v1/launch_job.proto`) from the RabbitMQ queue `capsight.launch.jobs` and
//! drives each one queued -> preflight -> provisioning -> running, or to failed / cancelled,
//! appending every transition to ClickHouse `launch_events`, where the gateway's
//! GetLaunch/WatchLaunch read it.
//!
//! Contracts:
//! * **At-least-once, idempotent**: a job is acknowledged only after its outcome is durably
//!   recorded. A redelivered job resumes from its latest recorded state, and the cloud launch
//!   of attempt n uses the client token `job_id` (n = 1) or `<job_id>-<n>`, so a replay never
//!   creates a second instance.
//! * **Fallback**: on a capacity error the worker walks the alternatives the job's constraints
//!   allow, ranked at that moment by the gateway's ranking ([`capsight_gateway::alternatives`])
//!   over the latest scores, up to `max_fallbacks`. Every attempt is published as a
//!   launch-attempt signal (source `launch`).
//! * **Errors**: transient failures go to the delayed-retry queue (bounded by
//!   `launcher.max_retries`); undecodable or invalid jobs are dead-lettered with the reason in
//!   the `capsight-dead-reason` header; the worker carries on.

pub mod quota;
pub mod settings;
pub mod store;
pub mod worker;

pub use settings::{LauncherConfig, LauncherSettings};
