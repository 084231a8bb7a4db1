//! One arm's simulated world: an in-process cloudsim from the run's scenario, seed and time
//! scale, its simulated clock, and reads of its ground truth (`/admin/truth`, `/admin/state`).
//!
//! Contract: every arm gets its own [`World`] from the same scenario and seed, so every arm
//! faces the same truth timeline as long as the arms' own calls do not perturb it (see
//! `docs/evaluation.md`, "Method"). Timestamps are stamped on the real clock compressed by the
//! time scale (`cloudsim.wall_timestamps`), so capsight's services, whose durations the
//! harness divides by the time scale, see a consistent world. Simulated time is measured in
//! seconds since the world's start; [`World::sim_at`] converts a real timestamp (what the
//! services record) into it.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use capsight_cloudsim::{CloudsimSettings, Running, scenario::Scenario};
use capsight_runtime::shutdown::Shutdown;
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Why the world failed.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// cloudsim did not start.
    #[error("cloudsim: {0}")]
    Start(#[from] capsight_cloudsim::CloudsimError),
    /// An admin call failed.
    #[error("cloudsim admin {path}: {message}")]
    Admin {
        /// The endpoint.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// The ground truth (`/admin/truth`).
#[derive(Debug, Clone, Deserialize)]
pub struct Truth {
    /// Step length, seconds.
    pub step_seconds: u64,
    /// Seconds covered.
    pub until_seconds: u64,
    /// Key -> (seconds, stock) at each change.
    pub stock: BTreeMap<String, Vec<(u64, u64)>>,
    /// Events as applied: (seconds, kind, what).
    pub events: Vec<(u64, String, String)>,
}

impl Truth {
    /// Stock of `key` at `t` seconds (0 for an unknown key).
    pub fn stock_at(&self, key: &str, t: u64) -> u64 {
        self.stock
            .get(key)
            .and_then(|s| s.iter().take_while(|(at, _)| *at <= t).last())
            .map_or(0, |(_, n)| *n)
    }
}

#[derive(Debug, Deserialize)]
struct StatePool {
    key: String,
    stock: u64,
}

#[derive(Debug, Deserialize)]
struct State {
    elapsed_seconds: f64,
    pools: Vec<StatePool>,
}

/// One arm's cloudsim and clock.
#[derive(Debug)]
pub struct World {
    running: Running,
    shutdown: Shutdown,
    http: reqwest::Client,
    /// Simulated seconds per real second.
    pub scale: f64,
    /// The scenario.
    pub scenario: Scenario,
    /// Real instant and UTC time at which simulated time was `anchor_sim`.
    anchor: (Instant, DateTime<Utc>, f64),
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Where cloudsim forwards the tenants' EventBridge events: the reports intake, each tenant
/// account with its own tenant's key (one API destination per account).
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    /// The intake's `/v1/events`.
    pub url: String,
    /// Account id -> the key of the tenant whose account it is.
    pub account_keys: std::collections::BTreeMap<String, String>,
}

impl World {
    /// Starts cloudsim for `scenario` with `seed` at `scale`, POSTing events to `webhook`
    /// (url, API key) when given.
    pub async fn start(
        scenario: Scenario,
        seed: u64,
        scale: f64,
        webhook: Option<WebhookTarget>,
    ) -> Result<Self, WorldError> {
        let mut settings = CloudsimSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            time_scale: scale,
            tick: Duration::from_millis(100),
            wall_timestamps: true,
            ..CloudsimSettings::default()
        };
        if let Some(target) = webhook {
            settings.webhook_url = target.url;
            settings.webhook_api_keys = target.account_keys;
        }
        let shutdown = Shutdown::new();
        let running =
            capsight_cloudsim::start(&settings, scenario.clone(), Some(seed), shutdown.clone())
                .await?;
        let mut world = Self {
            running,
            shutdown,
            http: reqwest::Client::new(),
            scale,
            scenario,
            anchor: (Instant::now(), Utc::now(), 0.0),
        };
        let before = (Instant::now(), Utc::now());
        let state = world.state().await?;
        world.anchor = (before.0, before.1, state.elapsed_seconds);
        Ok(world)
    }

    /// `http://addr` of its API.
    pub fn url(&self) -> String {
        self.running.url()
    }

    /// Simulated seconds since the world's start, now.
    pub fn now(&self) -> f64 {
        self.anchor.2 + self.anchor.0.elapsed().as_secs_f64() * self.scale
    }

    /// Simulated seconds since the world's start at the real time `t`.
    pub fn sim_at(&self, t: DateTime<Utc>) -> f64 {
        let real = (t - self.anchor.1).num_milliseconds() as f64 / 1000.0;
        self.anchor.2 + real * self.scale
    }

    /// Real time to wait for `sim` simulated seconds.
    pub fn real(&self, sim: f64) -> Duration {
        Duration::from_secs_f64((sim / self.scale).max(0.0))
    }

    /// Sleeps until simulated time `t` (returns at once when it has passed).
    pub async fn sleep_until(&self, t: f64) {
        let wait = t - self.now();
        if wait > 0.0 {
            tokio::time::sleep(self.real(wait)).await;
        }
    }

    async fn get(&self, path: &str) -> Result<String, WorldError> {
        let err = |message: String| WorldError::Admin {
            path: path.to_owned(),
            message,
        };
        let resp = self
            .http
            .get(format!("{}{path}", self.url()))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| err(e.to_string()))?;
        if !status.is_success() {
            return Err(err(format!("{status}: {body}")));
        }
        Ok(body)
    }

    async fn state(&self) -> Result<State, WorldError> {
        let body = self.get("/admin/state").await?;
        serde_json::from_str(&body).map_err(|e| WorldError::Admin {
            path: "/admin/state".into(),
            message: e.to_string(),
        })
    }

    /// Stock of every pool now, by key.
    pub async fn stock(&self) -> Result<BTreeMap<String, u64>, WorldError> {
        Ok(self
            .state()
            .await?
            .pools
            .into_iter()
            .map(|p| (p.key, p.stock))
            .collect())
    }

    /// The ground truth so far.
    pub async fn truth(&self) -> Result<Truth, WorldError> {
        let body = self.get("/admin/truth").await?;
        serde_json::from_str(&body).map_err(|e| WorldError::Admin {
            path: "/admin/truth".into(),
            message: e.to_string(),
        })
    }
}
