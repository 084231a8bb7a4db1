//! The prober's metrics (Prometheus, see `capsight_runtime::metrics`): probes by outcome and
//! the day's spend against the budget. Its cloud calls are timed as the `cloud` dependency and
//! its signals counted by the publisher.

use crate::plan::Outcome;

capsight_runtime::declare_metrics! {
    /// Probes, by outcome.
    PROBES_TOTAL = Counter("capsight_probe_probes_total", ["outcome"], "Probes run, by outcome: success (capacity granted), failure (refused), skipped (not run)");
    /// The day's spend.
    SPENT_USD = Gauge("capsight_probe_spent_usd", [], "Probe spend of the current UTC day (reservations included), USD");
    /// The daily budget.
    BUDGET_USD = Gauge("capsight_probe_budget_usd", [], "The prober's daily budget (probe.daily_budget_usd), USD");
}

/// Records one probe's outcome and the budget after it.
pub fn probed(outcome: Outcome, spent_usd: f64, budget_usd: f64) {
    metrics::counter!(PROBES_TOTAL.name, "outcome" => outcome.as_str()).increment(1);
    metrics::gauge!(SPENT_USD.name).set(spent_usd);
    metrics::gauge!(BUDGET_USD.name).set(budget_usd);
}
