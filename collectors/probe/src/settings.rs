//! The `[probe]` config section (documented with its defaults in `deploy/config/capsight.toml`).

use std::time::Duration;

use capsight_proto::domain::Market;
use serde::Deserialize;

use crate::plan::Cadence;

/// `[probe]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSettings {
    /// Who this prober is in the audit; its spend is recovered by this name at start-up.
    pub instance: String,
    /// AWS regions to probe; empty = every AWS region of the catalog.
    pub regions: Vec<String>,
    /// Catalog instance types to probe; empty = every catalog type offered in the region.
    pub instance_types: Vec<String>,
    /// Markets of the discovered keys (`on_demand`: reservation probe first; `spot`: launch).
    pub markets: Vec<Market>,
    /// Extra keys to probe (`aws/us-east-1/use1-az1/p5.48xlarge/on_demand`), besides those
    /// discovered from the catalog and the cloud's instance-type offerings.
    pub keys: Vec<String>,
    /// Planning passes: how often due keys are looked for.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// Most probes started by one planning pass (the highest-priority due keys).
    pub max_per_pass: usize,
    /// Most probes in flight at once.
    pub max_concurrent: usize,
    /// Hard cap on probe spend per UTC day, USD, for this prober.
    pub daily_budget_usd: f64,
    /// Longest a probe reservation is held before it is cancelled (its cost estimate).
    #[serde(with = "humantime_serde")]
    pub reservation_hold: Duration,
    /// `EndDate` of probe reservations, from now: the cloud ends them by itself even if
    /// everything else fails.
    #[serde(with = "humantime_serde")]
    pub reservation_expiry: Duration,
    /// Longest a probe instance lives (its cost estimate; at least the 60 s minimum billing).
    #[serde(with = "humantime_serde")]
    pub launch_hold: Duration,
    /// Machine image of launch probes.
    pub image_id: String,
    /// Tenant demand = preflight requests per key over this window (`preflight_log`).
    #[serde(with = "humantime_serde")]
    pub demand_window: Duration,
    /// How often demand is re-read and keys re-discovered.
    #[serde(with = "humantime_serde")]
    pub demand_refresh: Duration,
    /// How often the sweeper runs (also once at start-up).
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Probe-tagged resources older than this are removed by the sweeper.
    #[serde(with = "humantime_serde")]
    pub sweep_after: Duration,
    /// How long a graceful shutdown waits for probes in flight to clean up.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// TESTING ONLY (empty in production): `done` kills the process with SIGKILL after a probe's
    /// outcome is in the audit table and before its signal is published.
    pub crash_after: String,
    /// Cadence and backoff.
    pub cadence: Cadence,
    /// Rate limits on the cloud APIs.
    pub limits: LimitSettings,
}

/// `[probe.limits]`: token buckets in front of every cloud call the prober and its sweeper
/// make. `0` = no limit.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Calls per minute to each provider API operation (RunInstances, CreateCapacityReservation,
    /// GetServiceQuota, ...), per account.
    pub per_api_per_minute: u32,
    /// Calls per minute per account, all operations together.
    pub per_account_per_minute: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Conf {
        probe: ProbeSettings,
    }

    #[test]
    fn reference_config_loads_with_the_documented_defaults() {
        let c: Conf = capsight_runtime::config::load_defaults().unwrap();
        assert_eq!(c.probe.cadence, Cadence::default());
        assert!(c.probe.daily_budget_usd > 0.0);
        assert!(c.probe.sweep_after > c.probe.reservation_hold);
        assert!(c.probe.sweep_after > c.probe.launch_hold);
        assert_eq!(c.probe.markets, vec![Market::OnDemand]);
        assert!(c.probe.crash_after.is_empty());
    }
}
