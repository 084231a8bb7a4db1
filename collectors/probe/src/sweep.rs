//! The sweeper: removes what probes left behind (a prober killed between create and cleanup, a
//! failed cancel or terminate, a gateway preflight probe that could not cancel).
//!
//! Contract: in every region, instances tagged `capsight:probe` that are pending, running,
//! stopping or stopped and older than `probe.sweep_after` are terminated, and active
//! reservations with that tag older than `sweep_after` are cancelled. The age comes from the
//! `capsight:probe-at` tag (the prober's clock) or else the cloud's launch/creation time. Runs at
//! start-up and every `probe.sweep_interval`; a failing region is logged and the others carry on.

use capsight_cloud::{CloudAdapter, InstanceState};
use chrono::{DateTime, Utc};

use crate::prober::{PROBE_TAG, Prober, probe_age};

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Instances terminated.
    pub instances: Vec<String>,
    /// Reservations cancelled.
    pub reservations: Vec<String>,
    /// Calls that failed.
    pub errors: usize,
}

/// Sweeps every region of `prober`.
pub async fn sweep(prober: &Prober, now: DateTime<Utc>) -> SweepReport {
    let mut report = SweepReport::default();
    let after = prober.settings().sweep_after;
    let adapters: Vec<_> = prober.adapters().cloned().collect();
    for adapter in adapters {
        sweep_region(prober, &*adapter, after, now, &mut report).await;
    }
    if !report.instances.is_empty() || !report.reservations.is_empty() || report.errors > 0 {
        tracing::warn!(instances = ?report.instances, reservations = ?report.reservations,
            errors = report.errors, "sweeper removed probe leftovers");
    }
    report
}

async fn sweep_region(
    prober: &Prober,
    adapter: &dyn CloudAdapter,
    after: std::time::Duration,
    now: DateTime<Utc>,
    report: &mut SweepReport,
) {
    let provider = adapter.provider().as_str();
    prober.limit(provider, "DescribeInstances").await;
    match adapter.describe_tagged(PROBE_TAG).await {
        Ok(instances) => {
            let stale: Vec<_> = instances
                .into_iter()
                .filter(|i| {
                    matches!(
                        i.state,
                        InstanceState::Pending
                            | InstanceState::Running
                            | InstanceState::Stopping
                            | InstanceState::Stopped
                    ) && probe_age(&i.tags, i.launch_time, now).is_some_and(|a| a >= after)
                })
                .map(|i| i.id)
                .collect();
            if !stale.is_empty() {
                prober.limit(provider, "TerminateInstances").await;
                match adapter.terminate(&stale).await {
                    Ok(_) => report
                        .instances
                        .extend(stale.iter().map(ToString::to_string)),
                    Err(e) => {
                        report.errors += 1;
                        tracing::error!(region = %adapter.region(), error = %e, "sweeper: terminate failed");
                    }
                }
            }
        }
        Err(e) => {
            report.errors += 1;
            tracing::error!(region = %adapter.region(), error = %e, "sweeper: describe instances failed");
        }
    }
    prober.limit(provider, "DescribeCapacityReservations").await;
    match adapter.describe_tagged_reservations(PROBE_TAG).await {
        Ok(reservations) => {
            for r in reservations {
                let stale = r.state == "active"
                    && probe_age(&r.tags, r.created_at, now).is_some_and(|a| a >= after);
                if !stale {
                    continue;
                }
                prober.limit(provider, "CancelCapacityReservation").await;
                match adapter.cancel_capacity_reservation(&r.id).await {
                    Ok(()) => report.reservations.push(r.id),
                    Err(e) => {
                        report.errors += 1;
                        tracing::error!(reservation = %r.id, error = %e, "sweeper: cancel failed");
                    }
                }
            }
        }
        Err(e) => {
            report.errors += 1;
            tracing::error!(region = %adapter.region(), error = %e, "sweeper: describe reservations failed");
        }
    }
}
