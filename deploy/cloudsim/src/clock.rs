//! The simulation clock: simulated time runs `time_scale` times faster than real time, from a
//! start instant, and can be moved forward by the admin API.
//!
//! Contract: [`Clock::elapsed`] never goes backwards; simulated timestamps are
//! `start + elapsed`.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};

/// Simulated time.
#[derive(Debug)]
pub struct Clock {
    real_start: Instant,
    sim_start: DateTime<Utc>,
    scale: f64,
    /// Extra simulated time added by [`Clock::advance`], in milliseconds.
    skipped_ms: AtomicU64,
}

impl Clock {
    /// A clock starting now at `sim_start`, running `scale` times real time (0 = frozen; only
    /// [`Clock::advance`] moves it).
    pub fn new(sim_start: DateTime<Utc>, scale: f64) -> Self {
        Self {
            real_start: Instant::now(),
            sim_start,
            scale: if scale.is_finite() && scale >= 0.0 {
                scale
            } else {
                1.0
            },
            skipped_ms: AtomicU64::new(0),
        }
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        let real = self.real_start.elapsed().as_secs_f64() * self.scale;
        Duration::from_secs_f64(real)
            + Duration::from_millis(self.skipped_ms.load(Ordering::SeqCst))
    }

    /// The simulated wall-clock time.
    pub fn now(&self) -> DateTime<Utc> {
        self.at(self.elapsed())
    }

    /// The simulated wall-clock time at `elapsed` after the start.
    pub fn at(&self, elapsed: Duration) -> DateTime<Utc> {
        self.sim_start + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero())
    }

    /// The start instant.
    pub fn start(&self) -> DateTime<Utc> {
        self.sim_start
    }

    /// The speed-up over real time.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Jumps simulated time forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.skipped_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_clock_moves_only_when_advanced() {
        let c = Clock::new(Utc::now(), 0.0);
        assert_eq!(c.elapsed(), Duration::ZERO);
        c.advance(Duration::from_secs(90));
        assert_eq!(c.elapsed(), Duration::from_secs(90));
        assert_eq!(c.now() - c.start(), chrono::Duration::seconds(90));
    }
}
