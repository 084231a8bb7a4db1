//! Probe cost estimates from the catalog's on-demand price.
//!
//! A capacity-reservation probe is billed at the on-demand rate while the reservation exists
//! (created and cancelled within `reservation_hold`); a launch probe is billed for at least the
//! minimum billing unit (60 s for per-second billed Linux instances) plus the time to reach
//! `running` and terminate.

use std::time::Duration;

use capsight_catalog::GpuType;

/// How a probe is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// CreateCapacityReservation, then cancel.
    CapacityReservation,
    /// RunInstances count 1, then terminate.
    Launch,
}

/// Minimum billed time of a launched instance.
pub const MIN_BILLED: Duration = Duration::from_secs(60);

/// Estimated cost in USD of probing `t` with `method`, holding a reservation for
/// `reservation_hold` or an instance for `launch_hold` (at least [`MIN_BILLED`]).
pub fn estimate_usd(
    t: &GpuType,
    method: Method,
    reservation_hold: Duration,
    launch_hold: Duration,
) -> f64 {
    let billed = match method {
        Method::CapacityReservation => reservation_hold,
        Method::Launch => launch_hold.max(MIN_BILLED),
    };
    t.on_demand_usd_per_hour * billed.as_secs_f64() / 3600.0
}

#[cfg(test)]
mod tests {
    use capsight_catalog::Catalog;
    use capsight_proto::domain::{InstanceType, Provider};

    use super::*;

    #[test]
    fn launch_probes_cost_at_least_a_minute() {
        let catalog = Catalog::embedded().unwrap();
        let p5 = catalog
            .get(
                Provider::Aws,
                &InstanceType::parse("t", Provider::Aws, "p5.48xlarge").unwrap(),
            )
            .unwrap();
        let quick = estimate_usd(p5, Method::Launch, Duration::ZERO, Duration::from_secs(5));
        let minute = p5.on_demand_usd_per_hour / 60.0;
        assert!((quick - minute).abs() < 1e-9);
        let reservation = estimate_usd(
            p5,
            Method::CapacityReservation,
            Duration::from_secs(10),
            Duration::ZERO,
        );
        assert!(
            reservation < quick,
            "a 10 s reservation is cheaper than a launch"
        );
    }
}
