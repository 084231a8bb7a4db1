//! The hard daily spend cap.
//!
//! Contract: [`Budget::reserve`] atomically checks that the estimate fits in what is left of
//! the current UTC day's limit and sets it aside; nothing is probed without a reservation.
//! [`Budget::settle`] replaces the estimate with the actual cost (or refunds it when the probe
//! was skipped). The day rolls over at UTC midnight. The limit is per prober process: with
//! several probers, give each its share of the total (`probe.daily_budget_usd`).

use std::sync::Mutex;

use chrono::{DateTime, NaiveDate, Utc};

/// The budget refused a probe.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("daily probe budget exhausted: {spent:.2} of {limit:.2} USD spent, {wanted:.2} wanted")]
pub struct Exhausted {
    /// Spent (incl. reservations) today.
    pub spent: f64,
    /// The limit.
    pub limit: f64,
    /// The estimate that did not fit.
    pub wanted: f64,
}

/// Money set aside for one probe.
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a reservation must be settled"]
pub struct Reservation {
    day: NaiveDate,
    amount: f64,
}

impl Reservation {
    /// The amount set aside.
    pub fn amount(&self) -> f64 {
        self.amount
    }
}

#[derive(Debug)]
struct State {
    day: NaiveDate,
    spent: f64,
}

/// A daily spend cap shared by the prober's tasks.
#[derive(Debug)]
pub struct Budget {
    limit: f64,
    state: Mutex<State>,
}

impl Budget {
    /// A budget of `limit_usd` per UTC day, starting at `now`.
    pub fn new(limit_usd: f64, now: DateTime<Utc>) -> Self {
        Self {
            limit: if limit_usd.is_finite() {
                limit_usd.max(0.0)
            } else {
                0.0
            },
            state: Mutex::new(State {
                day: now.date_naive(),
                spent: 0.0,
            }),
        }
    }

    /// A budget of `limit_usd` per UTC day of which `spent_usd` is already spent today (the
    /// spend a restarted prober recovers from its audit trail).
    pub fn with_spent(limit_usd: f64, spent_usd: f64, now: DateTime<Utc>) -> Self {
        let b = Self::new(limit_usd, now);
        let spent = if spent_usd.is_finite() {
            spent_usd.max(0.0)
        } else {
            f64::INFINITY
        };
        b.with_state(now, |s| s.spent = spent);
        b
    }

    /// The daily limit.
    pub fn limit(&self) -> f64 {
        self.limit
    }

    fn with_state<T>(&self, now: DateTime<Utc>, f: impl FnOnce(&mut State) -> T) -> T {
        // a poisoned lock only means another task panicked mid-update; the numbers stay usable
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.day != now.date_naive() {
            state.day = now.date_naive();
            state.spent = 0.0;
        }
        f(&mut state)
    }

    /// Sets `estimate_usd` aside if it fits in today's remaining budget.
    pub fn reserve(&self, estimate_usd: f64, now: DateTime<Utc>) -> Result<Reservation, Exhausted> {
        let wanted = if estimate_usd.is_finite() {
            estimate_usd.max(0.0)
        } else {
            f64::INFINITY
        };
        self.with_state(now, |s| {
            if s.spent + wanted > self.limit {
                return Err(Exhausted {
                    spent: s.spent,
                    limit: self.limit,
                    wanted,
                });
            }
            s.spent += wanted;
            Ok(Reservation {
                day: s.day,
                amount: wanted,
            })
        })
    }

    /// Replaces a reservation by the actual cost (0 for a probe that did not run).
    pub fn settle(&self, reservation: Reservation, actual_usd: f64, now: DateTime<Utc>) {
        let actual = if actual_usd.is_finite() {
            actual_usd.max(0.0)
        } else {
            reservation.amount
        };
        self.with_state(now, |s| {
            // a reservation from a previous day was already forgotten with that day
            if s.day == reservation.day {
                s.spent = (s.spent - reservation.amount + actual).max(0.0);
            }
        });
    }

    /// Spent (incl. open reservations) today.
    pub fn spent(&self, now: DateTime<Utc>) -> f64 {
        self.with_state(now, |s| s.spent)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, 0, 0).unwrap()
    }

    #[test]
    fn reservations_never_exceed_the_limit_and_settle_to_actuals() {
        let b = Budget::new(10.0, at(1));
        let r1 = b.reserve(6.0, at(1)).unwrap();
        assert!(b.reserve(5.0, at(1)).is_err(), "6 + 5 > 10");
        b.settle(r1, 1.0, at(2));
        assert!((b.spent(at(2)) - 1.0).abs() < 1e-9);
        let _r2 = b.reserve(9.0, at(3)).unwrap();
        assert!(b.reserve(0.5, at(3)).is_err());
        // next UTC day: a fresh budget
        let tomorrow = at(3) + chrono::TimeDelta::days(1);
        assert!(b.reserve(9.5, tomorrow).is_ok());
    }

    #[test]
    fn recovered_spend_counts_against_today_only() {
        let b = Budget::with_spent(10.0, 9.0, at(1));
        assert!(b.reserve(1.5, at(1)).is_err());
        assert!(b.reserve(1.0, at(1)).is_ok());
        assert!(b.reserve(10.0, at(1) + chrono::TimeDelta::days(1)).is_ok());
        assert!(
            Budget::with_spent(10.0, f64::NAN, at(1))
                .reserve(0.01, at(1))
                .is_err()
        );
    }

    #[test]
    fn nonsense_estimates_are_refused() {
        let b = Budget::new(10.0, at(1));
        assert!(b.reserve(f64::NAN, at(1)).is_err());
        assert!(b.reserve(f64::INFINITY, at(1)).is_err());
        assert!(Budget::new(f64::NAN, at(1)).reserve(0.01, at(1)).is_err());
    }

    proptest::proptest! {
        /// Whatever the sequence of reservations and settlements, spend never passes the limit
        /// while reservations are open.
        #[test]
        fn spend_stays_under_the_limit(costs in proptest::collection::vec(0.0f64..5.0, 1..60)) {
            let b = Budget::new(20.0, at(1));
            let mut open = Vec::new();
            for (i, c) in costs.iter().enumerate() {
                if let Ok(r) = b.reserve(*c, at(1)) {
                    open.push(r);
                }
                proptest::prop_assert!(b.spent(at(1)) <= 20.0 + 1e-9);
                if i % 3 == 0
                    && let Some(r) = open.pop()
                {
                    let half = r.amount() / 2.0;
                    b.settle(r, half, at(1));
                }
            }
        }
    }
}
