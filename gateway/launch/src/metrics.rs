//! The launch core's metrics (Prometheus, see `capsight_runtime::metrics`), recorded where
//! every transition is written ([`crate::store::Store::append`]) by whichever process writes
//! it: transitions by state, the time a job spent in the state it leaves, fallback attempts;
//! and the launch jobs published to RabbitMQ (as the `rabbitmq` dependency).
//!
//! Time in a state is measured from the job's previous transition as this process saw it
//! (read with `latest` or written here): the launcher sees a job's `queued` row when it takes
//! the job, so the queue wait is measured too. The transitions a process remembers are
//! bounded ([`REMEMBERED`]) and forgotten at a final state.

use std::{collections::HashMap, sync::Mutex};

use capsight_clickhouse::rows::LaunchEventRow;
use capsight_proto::domain::LaunchState;

capsight_runtime::declare_metrics! {
    /// Transitions written, by state.
    TRANSITIONS_TOTAL = Counter("capsight_launch_transitions_total", ["state"], "Launch transitions written, by the state entered");
    /// Time in a state.
    STATE_SECONDS = Histogram("capsight_launch_state_seconds", ["state"], "Time a launch spent in a state, observed when it leaves it");
    /// Fallback attempts.
    FALLBACKS_TOTAL = Counter("capsight_launch_fallbacks_total", [], "Provisioning attempts on an alternative key after a capacity error (attempt > 1)");
    /// Jobs published by the outbox sweep.
    OUTBOX_PUBLISHED_TOTAL = Counter("capsight_launch_outbox_published_total", [], "Accepted launch jobs the outbox sweep published because the gateway never dispatched them");
}

/// Counts a job the outbox sweep published.
pub fn outbox_published() {
    metrics::counter!(OUTBOX_PUBLISHED_TOTAL.name).increment(1);
}

/// Most jobs whose latest transition a process remembers (beyond it, it forgets them all:
/// their next time in state is not observed).
pub const REMEMBERED: usize = 10_000;

fn millis(row: &LaunchEventRow) -> i64 {
    i64::from(row.at) * 1000 + i64::from(row.at_ms)
}

fn job_of(row: &LaunchEventRow) -> String {
    format!("{}/{}", row.tenant, row.job_id)
}

/// The latest transition of each job seen by this process: its state and time (ms).
#[derive(Debug, Default)]
pub struct Transitions {
    latest: Mutex<HashMap<String, (LaunchState, i64)>>,
}

impl Transitions {
    /// Remembers `row` as its job's latest transition (read from the store), unless a later
    /// one is known.
    pub fn seen(&self, row: &LaunchEventRow) {
        if row.state.is_terminal() {
            return;
        }
        let Ok(mut latest) = self.latest.lock() else {
            return;
        };
        if latest.len() >= REMEMBERED {
            latest.clear();
        }
        let at = millis(row);
        latest
            .entry(job_of(row))
            .and_modify(|e| {
                if e.1 < at {
                    *e = (row.state, at);
                }
            })
            .or_insert((row.state, at));
    }

    /// Records the written `row`: its state, the time spent in the job's previous state, a
    /// fallback attempt; then remembers it (or forgets the job at a final state).
    pub fn written(&self, row: &LaunchEventRow) {
        metrics::counter!(TRANSITIONS_TOTAL.name, "state" => row.state.as_str()).increment(1);
        if row.state == LaunchState::Provisioning && row.attempt > 1 {
            metrics::counter!(FALLBACKS_TOTAL.name).increment(1);
        }
        let Ok(mut latest) = self.latest.lock() else {
            return;
        };
        let job = job_of(row);
        let at = millis(row);
        if let Some((state, since)) = latest.get(&job).copied()
            && since <= at
        {
            #[allow(clippy::cast_precision_loss, reason = "durations in ms fit an f64")]
            let seconds = (at - since) as f64 / 1000.0;
            metrics::histogram!(STATE_SECONDS.name, "state" => state.as_str()).record(seconds);
        }
        if row.state.is_terminal() {
            latest.remove(&job);
        } else {
            if latest.len() >= REMEMBERED {
                latest.clear();
            }
            latest.insert(job, (row.state, at));
        }
    }
}
