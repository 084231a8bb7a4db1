//! The launcher's metrics (Prometheus, see `capsight_runtime::metrics`): live launches by
//! state and the oldest one provisioning (from the cancel sweep's look at the store), warm
//! standby switches and their latency, reaper terminations. Transitions, time in state and
//! fallbacks are the launch core's (`capsight_launch::metrics`), cloud calls the `cloud`
//! dependency's.

use std::time::Instant;

use capsight_launch::store::LiveLaunch;
use capsight_proto::domain::LaunchState;

capsight_runtime::declare_metrics! {
    /// Live launches by state.
    JOBS = Gauge("capsight_launcher_jobs", ["state"], "Launches whose latest state is provisioning or running (all tenants)");
    /// How long the oldest provisioning launch has been provisioning.
    OLDEST_PROVISIONING_SECONDS = Gauge("capsight_launcher_oldest_provisioning_seconds", [], "Age of the oldest launch still provisioning (0 when none)");
    /// Standby switches.
    STANDBY_SWITCHES_TOTAL = Counter("capsight_launcher_standby_switches_total", ["cause", "outcome"], "Warm standby switches, by cause (interruption_warning, rebalance_recommendation, instance_gone) and outcome (switched, failed)");
    /// Time from the event to the standby serving.
    STANDBY_SWITCH_SECONDS = Histogram("capsight_launcher_standby_switch_seconds", [], "Time from an interruption event to the standby recorded as serving");
    /// Launches the reaper ended.
    REAPER_TERMINATIONS_TOTAL = Counter("capsight_launcher_reaper_terminations_total", ["reason"], "Launches the lifecycle reaper terminated, by reason (max_lifetime, idle)");
    /// What the reconciler fixed.
    RECONCILED_TOTAL = Counter("capsight_launcher_reconciled_total", ["kind"], "Differences the reconciler fixed: leaked (an instance terminated because its job ended or is unknown), vanished (a running launch ended because its instances are gone)");
}

/// Counts a difference the reconciler fixed (`leaked`, `vanished`).
pub fn reconciled(kind: &'static str) {
    metrics::counter!(RECONCILED_TOTAL.name, "kind" => kind).increment(1);
}

/// Sets [`JOBS`] and [`OLDEST_PROVISIONING_SECONDS`] from the live launches at `now` (unix
/// seconds).
pub fn live(launches: &[LiveLaunch], now: i64) {
    for state in [LaunchState::Provisioning, LaunchState::Running] {
        let n = launches.iter().filter(|l| l.state == state).count();
        #[allow(clippy::cast_precision_loss, reason = "a gauge")]
        metrics::gauge!(JOBS.name, "state" => state.as_str()).set(n as f64);
    }
    let oldest = launches
        .iter()
        .filter(|l| l.state == LaunchState::Provisioning)
        .map(|l| (now - i64::from(l.at)).max(0))
        .max()
        .unwrap_or(0);
    #[allow(clippy::cast_precision_loss, reason = "a gauge")]
    metrics::gauge!(OLDEST_PROVISIONING_SECONDS.name).set(oldest as f64);
}

/// Records a standby switch attempt for `cause`: `Ok(true)` switched, `Ok(false)` not this
/// job's instance (nothing recorded), `Err` failed.
pub fn standby_switch(cause: &str, outcome: Result<bool, ()>, received: Instant) {
    let cause = match cause {
        "interruption_warning" | "rebalance_recommendation" | "instance_gone" => cause.to_owned(),
        _ => "other".to_owned(),
    };
    match outcome {
        Ok(false) => {}
        Ok(true) => {
            metrics::counter!(STANDBY_SWITCHES_TOTAL.name, "cause" => cause, "outcome" => "switched")
                .increment(1);
            metrics::histogram!(STANDBY_SWITCH_SECONDS.name).record(received.elapsed());
        }
        Err(()) => {
            metrics::counter!(STANDBY_SWITCHES_TOTAL.name, "cause" => cause, "outcome" => "failed")
                .increment(1);
        }
    }
}

/// Records a launch the reaper terminated.
pub fn reaped(reason: &'static str) {
    metrics::counter!(REAPER_TERMINATIONS_TOTAL.name, "reason" => reason).increment(1);
}
