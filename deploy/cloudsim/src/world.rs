//! The simulated world: accounts, principals, capacity pools, spot prices, instances,
//! reservations, quotas, the status page and the ground truth.
//!
//! Contract:
//! * Time moves in fixed simulated steps ([`Scenario::step`]). [`World::advance`] applies, for
//!   each step due, first the scenario events whose time has come, then delayed actions
//!   (interruption warnings, terminations), then the seeded random market (refill, other
//!   customers' demand, spot prices), then records the ground truth. The RNG is consumed only
//!   by steps and storms, never by requests, so a run with the same seed, scenario and requests
//!   has the same ground truth; with no requests it is a pure function of (scenario, seed).
//! * Launches, reservations and starts take stock from their pool; terminations, stops,
//!   interruptions and cancellations give it back.
//! * Every method that changes what tenants could observe pushes the EventBridge events it
//!   causes to the outbox ([`World::take_outbox`]); the server delivers them.
//! * Errors are AWS-shaped [`ApiError`]s with the codes and message formats of EC2.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    time::Duration,
};

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::{
    error::ApiError,
    scenario::{EventKind, PoolMarket, Scenario},
};

/// What the world needs to know about an instance type (from the GPU catalog).
#[derive(Debug, Clone, PartialEq)]
pub struct TypeInfo {
    /// vCPUs per instance.
    pub vcpus: u32,
    /// Service Quotas code of the on-demand family.
    pub quota_on_demand: String,
    /// Service Quotas code of the spot family, when spot is sold.
    pub quota_spot: Option<String>,
    /// On-demand price, USD/hour.
    pub on_demand_usd_per_hour: f64,
}

/// A pool's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolKey {
    /// AZ ID.
    pub zone_id: String,
    /// Instance type.
    pub instance_type: String,
    /// Market.
    pub market: PoolMarket,
}

/// A pool's live state.
#[derive(Debug, Clone)]
pub struct PoolState {
    /// Region of the zone.
    pub region: String,
    /// Most instances.
    pub capacity: u32,
    /// Instances available now.
    pub stock: u32,
    /// Refill per hour.
    pub refill_per_hour: f64,
    /// Demand per hour.
    pub demand_per_hour: f64,
    /// pending -> running.
    pub provisioning: Duration,
    /// Held at zero by a stockout event until a recover event.
    pub stocked_out: bool,
}

/// Spot price state of one (zone, type).
#[derive(Debug, Clone)]
struct SpotPrice {
    base: f64,
    volatility: f64,
    level: f64,
    spike: Option<(f64, Duration)>,
    current: f64,
    history: VecDeque<(DateTime<Utc>, f64)>,
}

const PRICE_HISTORY_CAP: usize = 2000;

/// Instance lifecycle states with the EC2 codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// 0
    Pending,
    /// 16
    Running,
    /// 32
    ShuttingDown,
    /// 48
    Terminated,
    /// 64
    Stopping,
    /// 80
    Stopped,
}

impl State {
    /// EC2 state code.
    pub fn code(self) -> u32 {
        match self {
            Self::Pending => 0,
            Self::Running => 16,
            Self::ShuttingDown => 32,
            Self::Terminated => 48,
            Self::Stopping => 64,
            Self::Stopped => 80,
        }
    }

    /// EC2 state name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::ShuttingDown => "shutting-down",
            Self::Terminated => "terminated",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }

    fn holds_capacity(self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }
}

/// A simulated instance.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `i-...`
    pub id: String,
    /// Owner account.
    pub account: String,
    /// Region.
    pub region: String,
    /// Reservation (`r-...`).
    pub reservation_id: String,
    /// Instance type.
    pub instance_type: String,
    /// AZ ID.
    pub zone_id: String,
    /// Market.
    pub market: PoolMarket,
    /// Image.
    pub image_id: String,
    /// Current state; transitional states end at `transition_at`.
    pub state: State,
    /// When the current transitional state ends.
    pub transition_at: Option<Duration>,
    /// Launch (or last start) time.
    pub launch_time: DateTime<Utc>,
    /// Tags.
    pub tags: Vec<(String, String)>,
    /// Idempotency token.
    pub client_token: Option<String>,
    /// `sir-...` for spot.
    pub spot_request_id: Option<String>,
    /// State reason when stopped/terminated by the system.
    pub state_reason: Option<(String, String)>,
}

/// A capacity reservation.
#[derive(Debug, Clone)]
pub struct Reservation {
    /// `cr-...`
    pub id: String,
    /// Owner.
    pub account: String,
    /// Region.
    pub region: String,
    /// Instance type.
    pub instance_type: String,
    /// AZ ID.
    pub zone_id: String,
    /// Count.
    pub count: u32,
    /// active | cancelled
    pub state: &'static str,
    /// Created.
    pub created: DateTime<Utc>,
    /// When it expires (`EndDateType=limited`), as simulated time since start.
    pub ends: Option<Duration>,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

/// Requested capacity reservation.
#[derive(Debug, Clone)]
pub struct ReservationSpec {
    /// Instance type.
    pub instance_type: String,
    /// AZ name as the caller knows it.
    pub zone_name: Option<String>,
    /// AZ ID.
    pub zone_id: Option<String>,
    /// Instances.
    pub count: u32,
    /// Tags.
    pub tags: Vec<(String, String)>,
    /// ClientToken.
    pub client_token: Option<String>,
    /// `EndDate` with `EndDateType=limited`.
    pub end_date: Option<DateTime<Utc>>,
}

/// An injected failure.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Fault {
    /// Action name or `*`.
    pub action: String,
    /// Error code.
    pub code: String,
    /// Calls left.
    pub count: u32,
    /// Message.
    #[serde(default)]
    pub message: Option<String>,
}

/// A status-page incident.
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    /// Id.
    pub id: String,
    /// Component.
    pub component: String,
    /// Title.
    pub title: String,
    /// Component status while open.
    pub status: String,
    /// Updates, oldest first: (time, status, body).
    pub updates: Vec<(DateTime<Utc>, String, String)>,
    /// Opened.
    pub started_at: DateTime<Utc>,
    /// Resolved.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Who is calling, resolved from the access key.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Account id.
    pub account: String,
    /// `arn:aws:iam::acct:user/x` or `arn:aws:sts::acct:assumed-role/r/s`.
    pub arn: String,
    /// Unique id for GetCallerIdentity.
    pub user_id: String,
    /// Allowed action patterns.
    pub allow: Vec<String>,
}

impl Identity {
    /// Whether `action` (`ec2:RunInstances`) is allowed.
    pub fn may(&self, action: &str) -> bool {
        self.allow.iter().any(|p| {
            p == "*"
                || p == action
                || p.strip_suffix('*')
                    .is_some_and(|prefix| action.starts_with(prefix))
        })
    }
}

/// A ground-truth time series: (simulated seconds since start, stock) at each change.
pub type Series = Vec<(u64, u32)>;

/// Requested launch.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Instance type.
    pub instance_type: String,
    /// AZ name as the caller knows it, if any.
    pub zone_name: Option<String>,
    /// AZ ID, if given instead.
    pub zone_id: Option<String>,
    /// Market.
    pub market: PoolMarket,
    /// Spot max price.
    pub max_price: Option<f64>,
    /// MinCount.
    pub min_count: u32,
    /// MaxCount.
    pub max_count: u32,
    /// Image.
    pub image_id: String,
    /// Tags.
    pub tags: Vec<(String, String)>,
    /// ClientToken.
    pub client_token: Option<String>,
}

/// The world.
#[derive(Debug)]
pub struct World {
    scenario: Scenario,
    seed: u64,
    types: BTreeMap<String, TypeInfo>,
    rng: ChaCha8Rng,
    start: DateTime<Utc>,
    steps_done: u64,
    next_event: usize,
    /// Completed repetitions of the timeline (`scenario.repeat`).
    cycle: u32,
    pools: BTreeMap<PoolKey, PoolState>,
    prices: BTreeMap<(String, String), SpotPrice>,
    quotas: BTreeMap<(String, String), f64>,
    instances: BTreeMap<String, Instance>,
    reservations: BTreeMap<String, Reservation>,
    tokens: BTreeMap<(String, String), Vec<String>>,
    reservation_tokens: BTreeMap<(String, String), String>,
    sessions: BTreeMap<String, Identity>,
    faults: Vec<Fault>,
    /// Per-account API token buckets: (tokens, last refill), in real time.
    buckets: BTreeMap<String, (f64, std::time::Instant)>,
    incidents: Vec<Incident>,
    component_status: BTreeMap<String, String>,
    /// (when, instance id, what): delayed interruption steps.
    delayed: Vec<(Duration, String, Delayed)>,
    truth: BTreeMap<String, Series>,
    applied: Vec<(u64, String, String)>,
    outbox: Vec<serde_json::Value>,
    counter: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delayed {
    Warning,
    Terminate,
}

/// The ground truth and what produced it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Truth {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Simulated start.
    pub start: DateTime<Utc>,
    /// Step length in seconds.
    pub step_seconds: u64,
    /// Simulated seconds covered.
    pub until_seconds: u64,
    /// Capacity key (`aws/<region>/<zone id>/<type>/<market>`) -> stock at each change.
    pub stock: BTreeMap<String, Series>,
    /// Scenario events as applied: (simulated seconds, event kind, what).
    pub events: Vec<(u64, String, String)>,
}

impl Truth {
    /// Only keys starting with `prefix` and points at or after `since` seconds (plus the point
    /// in force at `since`, so every series still says what the stock was then).
    pub fn filtered(mut self, prefix: &str, since: u64) -> Self {
        self.stock.retain(|k, _| k.starts_with(prefix));
        for series in self.stock.values_mut() {
            let first = series.iter().rposition(|(t, _)| *t <= since).unwrap_or(0);
            series.drain(..first);
        }
        self.events.retain(|(t, _, _)| *t >= since);
        self
    }
}

impl World {
    /// A world at simulated time zero.
    pub fn new(
        scenario: Scenario,
        seed: u64,
        types: BTreeMap<String, TypeInfo>,
        start: DateTime<Utc>,
    ) -> Self {
        let mut pools = BTreeMap::new();
        let mut prices = BTreeMap::new();
        for p in &scenario.pools {
            let region = scenario
                .zones
                .iter()
                .find(|z| z.id == p.zone)
                .map(|z| z.region.clone())
                .unwrap_or_default();
            pools.insert(
                PoolKey {
                    zone_id: p.zone.clone(),
                    instance_type: p.instance_type.clone(),
                    market: p.market,
                },
                PoolState {
                    region,
                    capacity: p.capacity,
                    stock: p.stock,
                    refill_per_hour: p.refill_per_hour,
                    demand_per_hour: p.demand_per_hour,
                    provisioning: p.provisioning.unwrap_or(scenario.defaults.provisioning),
                    stocked_out: false,
                },
            );
            if p.market == PoolMarket::Spot {
                let od = types
                    .get(&p.instance_type)
                    .map_or(1.0, |t| t.on_demand_usd_per_hour);
                let base = p.spot_price.unwrap_or(od * scenario.defaults.spot_discount);
                let mut history = VecDeque::new();
                history.push_back((start, round4(base)));
                prices.insert(
                    (p.zone.clone(), p.instance_type.clone()),
                    SpotPrice {
                        base,
                        volatility: p.volatility,
                        level: 0.0,
                        spike: None,
                        current: round4(base),
                        history,
                    },
                );
            }
        }
        let mut quotas = BTreeMap::new();
        for a in &scenario.accounts {
            for (code, v) in &a.quotas {
                quotas.insert((a.id.clone(), code.clone()), *v);
            }
        }
        let component_status = scenario
            .status
            .components
            .iter()
            .map(|c| (c.clone(), "operational".to_owned()))
            .collect();
        let mut world = Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            types,
            start,
            steps_done: 0,
            next_event: 0,
            cycle: 0,
            pools,
            prices,
            quotas,
            instances: BTreeMap::new(),
            reservations: BTreeMap::new(),
            tokens: BTreeMap::new(),
            reservation_tokens: BTreeMap::new(),
            sessions: BTreeMap::new(),
            faults: Vec::new(),
            buckets: BTreeMap::new(),
            incidents: Vec::new(),
            component_status,
            delayed: Vec::new(),
            truth: BTreeMap::new(),
            applied: Vec::new(),
            outbox: Vec::new(),
            counter: 0,
            scenario,
        };
        world.scenario.events.sort_by_key(|e| e.at);
        world.apply_events(Duration::ZERO);
        world.record(0);
        world
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Simulated time covered by completed steps.
    pub fn simulated(&self) -> Duration {
        self.scenario.step * u32::try_from(self.steps_done).unwrap_or(u32::MAX)
    }

    /// The simulated wall-clock time `elapsed` after the start.
    pub fn time_at(&self, elapsed: Duration) -> DateTime<Utc> {
        self.start + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero())
    }

    fn next_id(&mut self, prefix: &str, width: usize) -> String {
        self.counter += 1;
        // Deterministic, unique, AWS-looking: a mix of seed and counter.
        let mixed = (self.counter ^ self.seed.rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ self.counter;
        let hex = format!("{mixed:016x}{:04x}", self.counter & 0xffff);
        format!("{prefix}-{}", &hex[..width.min(hex.len())])
    }

    // ---------------------------------------------------------------- time

    /// Runs every step due by `elapsed` (simulated time since the start).
    pub fn advance(&mut self, elapsed: Duration) {
        let step = self.scenario.step;
        loop {
            let next = step * u32::try_from(self.steps_done + 1).unwrap_or(u32::MAX);
            if next > elapsed {
                break;
            }
            self.steps_done += 1;
            self.apply_events(next);
            self.apply_delayed(next);
            self.random_step(next);
            self.record(next.as_secs());
        }
        self.settle_instances(elapsed);
    }

    fn apply_events(&mut self, now: Duration) {
        while let Some(event) = self.scenario.events.get(self.next_event) {
            let offset = self
                .scenario
                .repeat
                .map_or(Duration::ZERO, |r| r * self.cycle);
            if event.at + offset > now {
                break;
            }
            let kind = event.kind.clone();
            self.next_event += 1;
            if self.next_event == self.scenario.events.len() && self.scenario.repeat.is_some() {
                self.next_event = 0;
                self.cycle += 1;
            }
            tracing::info!(at = ?now, event = ?kind, "scenario event");
            let label = format!("{kind:?}");
            let name = label
                .split([' ', '{'])
                .next()
                .unwrap_or_default()
                .to_owned();
            self.applied.push((now.as_secs(), name, label));
            self.apply_event(kind, now);
        }
    }

    fn apply_event(&mut self, kind: EventKind, now: Duration) {
        match kind {
            EventKind::Stockout {
                zone,
                instance_type,
                market,
                interrupt,
            } => {
                let key = PoolKey {
                    zone_id: zone.clone(),
                    instance_type: instance_type.clone(),
                    market,
                };
                if let Some(pool) = self.pools.get_mut(&key) {
                    pool.stock = 0;
                    pool.stocked_out = true;
                }
                if interrupt && market == PoolMarket::Spot {
                    let victims: Vec<String> = self
                        .instances
                        .values()
                        .filter(|i| {
                            i.market == PoolMarket::Spot
                                && i.zone_id == zone
                                && i.instance_type == instance_type
                                && i.state.holds_capacity()
                        })
                        .map(|i| i.id.clone())
                        .collect();
                    self.schedule_interruptions(&victims, now);
                }
            }
            EventKind::Recover {
                zone,
                instance_type,
                market,
                stock,
            } => {
                let key = PoolKey {
                    zone_id: zone,
                    instance_type,
                    market,
                };
                if let Some(pool) = self.pools.get_mut(&key) {
                    pool.stocked_out = false;
                    pool.stock = stock.min(pool.capacity);
                }
            }
            EventKind::PriceSpike {
                zone,
                instance_type,
                factor,
                duration,
            } => {
                for ((z, t), price) in &mut self.prices {
                    if *t == instance_type && zone.as_ref().is_none_or(|zz| zz == z) {
                        price.spike = Some((factor, now + duration));
                    }
                }
            }
            EventKind::InterruptionStorm {
                zone,
                instance_type,
                fraction,
            } => {
                let candidates: Vec<String> = self
                    .instances
                    .values()
                    .filter(|i| {
                        i.market == PoolMarket::Spot
                            && i.state.holds_capacity()
                            && zone.as_ref().is_none_or(|z| *z == i.zone_id)
                            && instance_type.as_ref().is_none_or(|t| *t == i.instance_type)
                    })
                    .map(|i| i.id.clone())
                    .collect();
                let victims: Vec<String> = candidates
                    .into_iter()
                    .filter(|_| self.rng.random::<f64>() < fraction)
                    .collect();
                self.schedule_interruptions(&victims, now);
            }
            EventKind::Quota {
                account,
                code,
                value,
            } => {
                self.quotas.insert((account, code), value);
            }
            EventKind::Status {
                component,
                status,
                title,
                body,
            } => self.status_change(now, component, status, title, body),
            EventKind::Fault {
                action,
                code,
                count,
                message,
            } => self.faults.push(Fault {
                action,
                code,
                count,
                message,
            }),
        }
    }

    fn schedule_interruptions(&mut self, victims: &[String], now: Duration) {
        let lead = self.scenario.defaults.rebalance_lead;
        let notice = self.scenario.defaults.interruption_notice;
        for id in victims {
            // An instance already on its way out is not interrupted twice.
            if self.delayed.iter().any(|(_, d, _)| d == id) {
                continue;
            }
            if let Some(i) = self.instances.get(id).cloned() {
                self.emit(
                    &i,
                    "EC2 Instance Rebalance Recommendation",
                    serde_json::json!({
                        "instance-id": i.id,
                    }),
                    now,
                );
                self.delayed
                    .push((now + lead, id.clone(), Delayed::Warning));
                self.delayed
                    .push((now + lead + notice, id.clone(), Delayed::Terminate));
            }
        }
    }

    fn apply_delayed(&mut self, now: Duration) {
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|(t, _, _)| *t <= now);
        self.delayed = rest;
        for (_, id, what) in due {
            let Some(instance) = self.instances.get(&id).cloned() else {
                continue;
            };
            if !instance.state.holds_capacity() {
                continue;
            }
            match what {
                Delayed::Warning => self.emit(
                    &instance,
                    "EC2 Spot Instance Interruption Warning",
                    serde_json::json!({"instance-id": id, "instance-action": "terminate"}),
                    now,
                ),
                Delayed::Terminate => {
                    self.set_state(&id, State::Terminated, None);
                    if let Some(i) = self.instances.get_mut(&id) {
                        i.state_reason = Some((
                            "Server.SpotInstanceTermination".into(),
                            "Server.SpotInstanceTermination: Spot instance termination".into(),
                        ));
                    }
                    self.emit(
                        &instance,
                        "EC2 Instance State-change Notification",
                        serde_json::json!({"instance-id": id, "state": "terminated"}),
                        now,
                    );
                }
            }
        }
    }

    fn random_step(&mut self, now: Duration) {
        let hours = self.scenario.step.as_secs_f64() / 3600.0;
        let mut reclaim: Vec<(PoolKey, u32)> = Vec::new();
        for (key, pool) in &mut self.pools {
            // Always draw, so a pool's state never shifts another pool's randomness.
            let refill = arrivals(&mut self.rng, pool.refill_per_hour * hours);
            let demand = arrivals(&mut self.rng, pool.demand_per_hour * hours);
            if pool.stocked_out {
                pool.stock = 0;
                continue;
            }
            let stock = i64::from(pool.stock) + i64::from(refill) - i64::from(demand);
            if stock < 0 && key.market == PoolMarket::Spot {
                // Demand the pool cannot meet reclaims running spot instances.
                reclaim.push((key.clone(), u32::try_from(-stock).unwrap_or(u32::MAX)));
            }
            pool.stock = u32::try_from(stock.clamp(0, i64::from(pool.capacity))).unwrap_or(0);
        }
        for (key, shortfall) in reclaim {
            let victims: Vec<String> = self
                .instances
                .values()
                .filter(|i| {
                    i.market == PoolMarket::Spot
                        && i.state.holds_capacity()
                        && i.zone_id == key.zone_id
                        && i.instance_type == key.instance_type
                        && !self.delayed.iter().any(|(_, d, _)| *d == i.id)
                })
                .map(|i| i.id.clone())
                .take(usize::try_from(shortfall).unwrap_or(usize::MAX))
                .collect();
            self.schedule_interruptions(&victims, now);
        }
        let time = self.time_at(now);
        for ((zone, itype), price) in &mut self.prices {
            let noise = normal(&mut self.rng);
            price.level += 0.1 * (0.0 - price.level) + price.volatility * noise;
            if price.spike.is_some_and(|(_, until)| until <= now) {
                price.spike = None;
            }
            let scarcity = self
                .pools
                .get(&PoolKey {
                    zone_id: zone.clone(),
                    instance_type: itype.clone(),
                    market: PoolMarket::Spot,
                })
                .map_or(1.0, |p| {
                    1.0 + 0.6 * (1.0 - f64::from(p.stock) / f64::from(p.capacity.max(1)))
                });
            let spike = price.spike.map_or(1.0, |(f, _)| f);
            let value =
                round4((price.base * (1.0 + price.level) * scarcity * spike).max(price.base * 0.1));
            if value != price.current {
                price.current = value;
                price.history.push_back((time, value));
                if price.history.len() > PRICE_HISTORY_CAP {
                    price.history.pop_front();
                }
            }
        }
    }

    fn record(&mut self, secs: u64) {
        for (key, pool) in &self.pools {
            let name = format!(
                "aws/{}/{}/{}/{}",
                pool.region,
                key.zone_id,
                key.instance_type,
                key.market.as_str()
            );
            let series = self.truth.entry(name).or_default();
            if series.last().is_none_or(|(_, s)| *s != pool.stock) {
                series.push((secs, pool.stock));
            }
        }
    }

    /// Moves transitional states whose time has come and expires limited reservations.
    fn settle_instances(&mut self, elapsed: Duration) {
        let expired: Vec<String> = self
            .reservations
            .values()
            .filter(|r| r.state == "active" && r.ends.is_some_and(|e| e <= elapsed))
            .map(|r| r.id.clone())
            .collect();
        for id in expired {
            self.release_reservation(&id, "expired");
        }
        for i in self.instances.values_mut() {
            if let Some(at) = i.transition_at
                && at <= elapsed
            {
                i.state = match i.state {
                    State::Pending => State::Running,
                    State::ShuttingDown => State::Terminated,
                    State::Stopping => State::Stopped,
                    s => s,
                };
                i.transition_at = None;
            }
        }
    }

    fn set_state(&mut self, id: &str, to: State, transition: Option<Duration>) {
        let Some(i) = self.instances.get_mut(id) else {
            return;
        };
        let held = i.state.holds_capacity();
        let holds = to.holds_capacity();
        i.state = to;
        i.transition_at = transition;
        let key = PoolKey {
            zone_id: i.zone_id.clone(),
            instance_type: i.instance_type.clone(),
            market: i.market,
        };
        if held
            && !holds
            && let Some(pool) = self.pools.get_mut(&key)
            && !pool.stocked_out
        {
            pool.stock = (pool.stock + 1).min(pool.capacity);
        }
    }

    fn emit(&mut self, i: &Instance, detail_type: &str, detail: serde_json::Value, now: Duration) {
        let zone_name = self.zone_name(&i.account, &i.zone_id).unwrap_or_default();
        self.outbox.push(serde_json::json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": detail_type,
            "source": "aws.ec2",
            "account": i.account,
            "time": self.time_at(now).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "region": i.region,
            "resources": [format!("arn:aws:ec2:{zone_name}:{}:instance/{}", i.account, i.id)],
            "detail": detail,
        }));
    }

    /// EventBridge events produced since the last call.
    pub fn take_outbox(&mut self) -> Vec<serde_json::Value> {
        std::mem::take(&mut self.outbox)
    }

    fn status_change(
        &mut self,
        now: Duration,
        component: String,
        status: String,
        title: String,
        body: String,
    ) {
        let time = self.time_at(now);
        self.component_status
            .insert(component.clone(), status.clone());
        let open = self
            .incidents
            .iter_mut()
            .find(|i| i.component == component && i.resolved_at.is_none());
        match (open, status == "operational") {
            (Some(incident), true) => {
                incident.resolved_at = Some(time);
                incident.updates.push((
                    time,
                    "resolved".into(),
                    if body.is_empty() {
                        "This incident has been resolved.".into()
                    } else {
                        body
                    },
                ));
            }
            (Some(incident), false) => {
                incident.status = status;
                incident.updates.push((time, "identified".into(), body));
            }
            (None, true) => {}
            (None, false) => {
                let id = self.next_id("inc", 12);
                self.incidents.push(Incident {
                    id,
                    component,
                    title: if title.is_empty() {
                        "Service disruption".into()
                    } else {
                        title
                    },
                    status,
                    updates: vec![(time, "investigating".into(), body)],
                    started_at: time,
                    resolved_at: None,
                });
            }
        }
    }

    // ---------------------------------------------------------------- reads

    /// The ground truth so far.
    pub fn truth(&self) -> Truth {
        Truth {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            start: self.start,
            step_seconds: self.scenario.step.as_secs(),
            until_seconds: self.simulated().as_secs(),
            stock: self.truth.clone(),
            events: self.applied.clone(),
        }
    }

    /// Current pools.
    pub fn pools(&self) -> &BTreeMap<PoolKey, PoolState> {
        &self.pools
    }

    /// Status-page components and their status.
    pub fn components(&self) -> &BTreeMap<String, String> {
        &self.component_status
    }

    /// Status incidents, oldest first.
    pub fn incidents(&self) -> &[Incident] {
        &self.incidents
    }
    /// Starts the interruption of one running spot instance now (`POST /admin/interrupt`):
    /// rebalance recommendation, then the warning after `rebalance_lead`, then termination
    /// after `interruption_notice`, exactly as a reclaim. `Err` with the reason when the id is
    /// unknown or not a pending/running spot instance.
    pub fn interrupt(&mut self, id: &str, elapsed: Duration) -> Result<(), String> {
        let Some(i) = self.instances.get(id) else {
            return Err(format!("no instance {id}"));
        };
        if i.market != PoolMarket::Spot || !i.state.holds_capacity() {
            return Err(format!("{id} is not a pending or running spot instance"));
        }
        self.schedule_interruptions(&[id.to_owned()], elapsed);
        Ok(())
    }

    /// Adds injected faults.
    pub fn add_fault(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    /// Drops every pending injected fault.
    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// Takes one API request token of `account` at real time `now`; `RequestLimitExceeded` when
    /// its bucket is empty (`defaults.api_requests_per_second`, 0 = unlimited). Real time, not
    /// simulated: throttling is about how fast callers call.
    pub fn throttle(&mut self, account: &str, now: std::time::Instant) -> Result<(), ApiError> {
        let rate = self.scenario.defaults.api_requests_per_second;
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = f64::from(self.scenario.defaults.api_burst.max(1));
        let (tokens, last) = self
            .buckets
            .entry(account.to_owned())
            .or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens < 1.0 {
            return Err(ApiError::coded(
                "RequestLimitExceeded",
                "Request limit exceeded.",
            ));
        }
        *tokens -= 1.0;
        Ok(())
    }

    /// Consumes one matching fault, if any.
    pub fn take_fault(&mut self, action: &str) -> Option<ApiError> {
        let f = self
            .faults
            .iter_mut()
            .find(|f| f.count > 0 && (f.action == action || f.action == "*"))?;
        f.count -= 1;
        let message = f.message.clone().unwrap_or_else(|| match f.code.as_str() {
            "RequestLimitExceeded" => "Request limit exceeded.".into(),
            "InternalError" => "An internal error has occurred".into(),
            other => format!("Simulated {other} fault"),
        });
        let err = ApiError::coded(f.code.clone(), message);
        self.faults.retain(|f| f.count > 0);
        Some(err)
    }

    /// Resolves an access key.
    pub fn identity(&self, access_key_id: &str) -> Option<Identity> {
        if let Some(s) = self.sessions.get(access_key_id) {
            return Some(s.clone());
        }
        let p = self
            .scenario
            .principals
            .iter()
            .find(|p| p.access_key_id == access_key_id)?;
        Some(Identity {
            account: p.account.clone(),
            arn: format!("arn:aws:iam::{}:user/{}", p.account, p.user),
            user_id: format!(
                "AIDA{}",
                p.access_key_id
                    .chars()
                    .rev()
                    .take(16)
                    .collect::<String>()
                    .to_uppercase()
            ),
            allow: p.allow.clone(),
        })
    }

    /// The zones of `region` as (name for `account`, id), in name order.
    pub fn zones(&self, account: &str, region: &str) -> Vec<(String, String)> {
        let zones: Vec<_> = self
            .scenario
            .zones
            .iter()
            .filter(|z| z.region == region)
            .collect();
        let shift = self
            .scenario
            .accounts
            .iter()
            .find(|a| a.id == account)
            .map_or(0, |a| a.zone_shift);
        let n = zones.len();
        let mut out: Vec<(String, String)> = zones
            .iter()
            .enumerate()
            .filter_map(|(i, z)| {
                Some((
                    z.name.clone(),
                    zones.get((i + shift) % n.max(1))?.id.clone(),
                ))
            })
            .collect();
        out.sort();
        out
    }

    /// AZ name of `zone_id` for `account`.
    pub fn zone_name(&self, account: &str, zone_id: &str) -> Option<String> {
        let region = self
            .scenario
            .zones
            .iter()
            .find(|z| z.id == zone_id)?
            .region
            .clone();
        self.zones(account, &region)
            .into_iter()
            .find(|(_, id)| id == zone_id)
            .map(|(name, _)| name)
    }

    /// AZ ID of `name` for `account`.
    pub fn zone_id(&self, account: &str, region: &str, name: &str) -> Option<String> {
        self.zones(account, region)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id)
    }

    /// The region's regions list, for placement scores.
    pub fn regions(&self) -> BTreeSet<String> {
        self.scenario
            .zones
            .iter()
            .map(|z| z.region.clone())
            .collect()
    }

    /// Type info.
    pub fn type_info(&self, instance_type: &str) -> Option<&TypeInfo> {
        self.types.get(instance_type)
    }

    /// The caller's instances.
    pub fn instances(&self, account: &str) -> impl Iterator<Item = &Instance> {
        self.instances
            .values()
            .filter(move |i| i.account == account)
    }

    /// One instance of the caller.
    pub fn instance(&self, account: &str, id: &str) -> Option<&Instance> {
        self.instances.get(id).filter(|i| i.account == account)
    }

    /// Current spot price.
    pub fn spot_price(&self, zone_id: &str, instance_type: &str) -> Option<f64> {
        self.prices
            .get(&(zone_id.to_owned(), instance_type.to_owned()))
            .map(|p| p.current)
    }

    /// Spot price history: (zone id, type, time, price), newest first.
    pub fn spot_history(
        &self,
        region: &str,
        types: &[String],
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Vec<(String, String, DateTime<Utc>, f64)> {
        let mut out = Vec::new();
        for ((zone, itype), price) in &self.prices {
            let in_region = self
                .scenario
                .zones
                .iter()
                .any(|z| z.id == *zone && z.region == region);
            if !in_region || (!types.is_empty() && !types.contains(itype)) {
                continue;
            }
            for (i, (t, p)) in price.history.iter().enumerate() {
                // A point is in range if it was in force at any time of the range.
                let next = price.history.get(i + 1).map(|(t, _)| *t);
                let after_from = from.is_none_or(|f| next.is_none_or(|n| n > f));
                let before_to = to.is_none_or(|e| *t <= e);
                if after_from && before_to {
                    out.push((zone.clone(), itype.clone(), *t, *p));
                }
            }
        }
        out.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Stock of a pool (0 when there is no pool).
    pub fn stock(&self, zone_id: &str, instance_type: &str, market: PoolMarket) -> u32 {
        self.pools
            .get(&PoolKey {
                zone_id: zone_id.to_owned(),
                instance_type: instance_type.to_owned(),
                market,
            })
            .map_or(0, |p| p.stock)
    }

    /// Quota value of `code` for `account`.
    pub fn quota(&self, account: &str, code: &str) -> f64 {
        self.quotas
            .get(&(account.to_owned(), code.to_owned()))
            .copied()
            .unwrap_or(self.scenario.defaults.quota_vcpus)
    }

    /// Quota codes known for `account`: the catalog's plus any the account sets.
    pub fn quota_codes(&self, account: &str) -> BTreeSet<String> {
        let mut codes: BTreeSet<String> = self
            .types
            .values()
            .flat_map(|t| std::iter::once(t.quota_on_demand.clone()).chain(t.quota_spot.clone()))
            .collect();
        codes.extend(
            self.quotas
                .keys()
                .filter(|(a, _)| a == account)
                .map(|(_, c)| c.clone()),
        );
        codes
    }

    /// vCPUs used by `account` in `region` against quota `code`.
    pub fn quota_usage(&self, account: &str, region: &str, code: &str) -> f64 {
        self.instances(account)
            .filter(|i| i.region == region && i.state.holds_capacity())
            .filter_map(|i| {
                let t = self.types.get(&i.instance_type)?;
                let c = match i.market {
                    PoolMarket::OnDemand => Some(&t.quota_on_demand),
                    PoolMarket::Spot => t.quota_spot.as_ref(),
                }?;
                (c == code).then_some(f64::from(t.vcpus))
            })
            .sum()
    }

    /// Reservations of the caller.
    pub fn reservation(&self, account: &str, id: &str) -> Option<&Reservation> {
        self.reservations.get(id).filter(|r| r.account == account)
    }

    /// Every reservation of the caller (any state).
    pub fn reservations(&self, account: &str) -> impl Iterator<Item = &Reservation> {
        self.reservations
            .values()
            .filter(move |r| r.account == account)
    }

    // ---------------------------------------------------------------- writes

    fn unknown_type(instance_type: &str) -> ApiError {
        ApiError::bad_request(
            "InvalidParameterValue",
            format!("Invalid value '{instance_type}' for InstanceType."),
        )
    }

    /// Zones of the region whose pool has at least `count` stock, by name for `account`.
    fn zones_with_stock(
        &self,
        account: &str,
        region: &str,
        itype: &str,
        market: PoolMarket,
        count: u32,
    ) -> Vec<String> {
        self.zones(account, region)
            .into_iter()
            .filter(|(_, id)| self.stock(id, itype, market) >= count.max(1))
            .map(|(name, _)| name)
            .collect()
    }

    fn capacity_error(
        &self,
        account: &str,
        region: &str,
        itype: &str,
        market: PoolMarket,
        zone_name: Option<&str>,
        count: u32,
    ) -> ApiError {
        let others: Vec<String> = self
            .zones_with_stock(account, region, itype, market, count)
            .into_iter()
            .filter(|z| Some(z.as_str()) != zone_name)
            .collect();
        let mut message = match zone_name {
            Some(z) => format!(
                "We currently do not have sufficient {itype} capacity in the Availability Zone you requested ({z}). Our system will be working on provisioning additional capacity."
            ),
            None => format!(
                "We currently do not have sufficient {itype} capacity in the Availability Zones you can use. Our system will be working on provisioning additional capacity."
            ),
        };
        if !others.is_empty() {
            message.push_str(&format!(
                " You can currently get {itype} capacity by not specifying an Availability Zone in your request or choosing {}.",
                others.join(", ")
            ));
        }
        ApiError::coded("InsufficientInstanceCapacity", message)
    }

    /// Resolves the zone of a request to (AZ ID, AZ name), or picks the zone with most stock.
    #[allow(clippy::too_many_arguments)]
    fn resolve_zone(
        &self,
        account: &str,
        region: &str,
        spec_name: Option<&str>,
        spec_id: Option<&str>,
        itype: &str,
        market: PoolMarket,
        count: u32,
    ) -> Result<(String, String), ApiError> {
        if let Some(name) = spec_name {
            let id = self.zone_id(account, region, name).ok_or_else(|| {
                ApiError::bad_request(
                    "InvalidParameterValue",
                    format!("Invalid availability zone: [{name}]"),
                )
            })?;
            return Ok((id, name.to_owned()));
        }
        if let Some(id) = spec_id {
            let name = self
                .zones(account, region)
                .into_iter()
                .find(|(_, i)| i == id)
                .map(|(n, _)| n)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "InvalidParameterValue",
                        format!("Invalid availability zone ID: [{id}]"),
                    )
                })?;
            return Ok((id.to_owned(), name));
        }
        let best = self
            .zones(account, region)
            .into_iter()
            .filter(|(_, id)| {
                self.pools.contains_key(&PoolKey {
                    zone_id: id.clone(),
                    instance_type: itype.to_owned(),
                    market,
                })
            })
            .max_by_key(|(_, id)| self.stock(id, itype, market));
        match best {
            Some((name, id)) => Ok((id, name)),
            None => Err(self.not_offered(account, region, itype, market, None)),
        }
        .and_then(|(id, name)| {
            if self.stock(&id, itype, market) >= count {
                Ok((id, name))
            } else {
                Err(self.capacity_error(account, region, itype, market, None, count))
            }
        })
    }

    /// The error for a zone without a pool of `market`: as on AWS, a type the zone offers (a
    /// pool in the other market) is only out of capacity there (spot and on-demand draw on the
    /// same hardware); a type the zone does not offer at all is `Unsupported`.
    fn no_pool(
        &self,
        account: &str,
        region: &str,
        itype: &str,
        market: PoolMarket,
        (zone_id, zone_name): (&str, &str),
        count: u32,
    ) -> ApiError {
        let other = match market {
            PoolMarket::OnDemand => PoolMarket::Spot,
            PoolMarket::Spot => PoolMarket::OnDemand,
        };
        let offered = self.pools.contains_key(&PoolKey {
            zone_id: zone_id.to_owned(),
            instance_type: itype.to_owned(),
            market: other,
        });
        if offered {
            self.capacity_error(account, region, itype, market, Some(zone_name), count)
        } else {
            self.not_offered(account, region, itype, market, Some(zone_name))
        }
    }

    fn not_offered(
        &self,
        account: &str,
        region: &str,
        itype: &str,
        market: PoolMarket,
        zone_name: Option<&str>,
    ) -> ApiError {
        let offered: Vec<String> = self
            .zones(account, region)
            .into_iter()
            .filter(|(_, id)| {
                self.pools.contains_key(&PoolKey {
                    zone_id: id.clone(),
                    instance_type: itype.to_owned(),
                    market,
                })
            })
            .map(|(n, _)| n)
            .collect();
        let mut message = match zone_name {
            Some(z) => format!(
                "Your requested instance type ({itype}) is not supported in your requested Availability Zone ({z})."
            ),
            None => {
                format!("Your requested instance type ({itype}) is not supported in this region.")
            }
        };
        if !offered.is_empty() {
            message.push_str(&format!(
                " Please retry your request by not specifying an Availability Zone or choosing {}.",
                offered.join(", ")
            ));
        }
        ApiError::bad_request("Unsupported", message)
    }

    fn check_quota(
        &self,
        account: &str,
        region: &str,
        itype: &str,
        market: PoolMarket,
        count: u32,
    ) -> Result<(), ApiError> {
        let info = self
            .types
            .get(itype)
            .ok_or_else(|| Self::unknown_type(itype))?;
        let code = match market {
            PoolMarket::OnDemand => info.quota_on_demand.clone(),
            PoolMarket::Spot => info
                .quota_spot
                .clone()
                .unwrap_or_else(|| info.quota_on_demand.clone()),
        };
        let limit = self.quota(account, &code);
        let used = self.quota_usage(account, region, &code);
        if used + f64::from(info.vcpus) * f64::from(count) > limit {
            return Err(match market {
                PoolMarket::OnDemand => ApiError::bad_request(
                    "VcpuLimitExceeded",
                    format!(
                        "You have requested more vCPU capacity than your current vCPU limit of {limit} allows for the instance bucket that the specified instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit."
                    ),
                ),
                PoolMarket::Spot => ApiError::bad_request(
                    "MaxSpotInstanceCountExceeded",
                    format!(
                        "Max spot instance count exceeded: your current Spot vCPU limit of {limit} for the instance bucket of {itype} would be exceeded."
                    ),
                ),
            });
        }
        Ok(())
    }

    /// RunInstances.
    pub fn run_instances(
        &mut self,
        who: &Identity,
        region: &str,
        spec: LaunchSpec,
        elapsed: Duration,
    ) -> Result<Vec<String>, ApiError> {
        if let Some(token) = &spec.client_token
            && let Some(ids) = self.tokens.get(&(who.account.clone(), token.clone()))
        {
            return Ok(ids.clone());
        }
        let itype = spec.instance_type.clone();
        if !self.types.contains_key(&itype) {
            return Err(Self::unknown_type(&itype));
        }
        if spec.min_count == 0 || spec.max_count < spec.min_count {
            return Err(ApiError::bad_request(
                "InvalidParameterValue",
                "MinCount must be at least 1 and at most MaxCount",
            ));
        }
        let market = spec.market;
        let (zone_id, zone_name) = self.resolve_zone(
            &who.account,
            region,
            spec.zone_name.as_deref(),
            spec.zone_id.as_deref(),
            &itype,
            market,
            spec.min_count,
        )?;
        let key = PoolKey {
            zone_id: zone_id.clone(),
            instance_type: itype.clone(),
            market,
        };
        let Some(pool) = self.pools.get(&key).cloned() else {
            return Err(self.no_pool(
                &who.account,
                region,
                &itype,
                market,
                (&zone_id, &zone_name),
                spec.min_count,
            ));
        };
        if market == PoolMarket::Spot
            && let (Some(max), Some(price)) = (spec.max_price, self.spot_price(&zone_id, &itype))
            && max < price
        {
            return Err(ApiError::bad_request(
                "SpotMaxPriceTooLow",
                format!(
                    "Your Spot request price of {max} is lower than the minimum required Spot request fulfillment price of {price}."
                ),
            ));
        }
        if pool.stock < spec.min_count {
            return Err(self.capacity_error(
                &who.account,
                region,
                &itype,
                market,
                Some(&zone_name),
                spec.min_count,
            ));
        }
        let count = spec.max_count.min(pool.stock);
        self.check_quota(&who.account, region, &itype, market, spec.min_count)?;
        // Launch as many as quota allows between MinCount and the stock.
        let mut count = count;
        while count > spec.min_count
            && self
                .check_quota(&who.account, region, &itype, market, count)
                .is_err()
        {
            count -= 1;
        }
        let reservation_id = self.next_id("r", 17);
        let now = self.time_at(elapsed);
        let mut ids = Vec::new();
        for _ in 0..count {
            let id = self.next_id("i", 17);
            let spot_request_id = (market == PoolMarket::Spot).then(|| self.next_id("sir", 12));
            self.instances.insert(
                id.clone(),
                Instance {
                    id: id.clone(),
                    account: who.account.clone(),
                    region: region.to_owned(),
                    reservation_id: reservation_id.clone(),
                    instance_type: itype.clone(),
                    zone_id: zone_id.clone(),
                    market,
                    image_id: spec.image_id.clone(),
                    state: State::Pending,
                    transition_at: Some(elapsed + pool.provisioning),
                    launch_time: now,
                    tags: spec.tags.clone(),
                    client_token: spec.client_token.clone(),
                    spot_request_id,
                    state_reason: None,
                },
            );
            ids.push(id);
        }
        if let Some(p) = self.pools.get_mut(&key) {
            p.stock -= count;
        }
        if market == PoolMarket::Spot {
            for id in &ids {
                if let Some(i) = self.instances.get(id).cloned() {
                    let detail = serde_json::json!({
                        "instance-id": i.id,
                        "spot-instance-request-id": i.spot_request_id,
                    });
                    self.emit(&i, "EC2 Spot Instance Request Fulfillment", detail, elapsed);
                }
            }
        }
        if let Some(token) = spec.client_token {
            self.tokens
                .insert((who.account.clone(), token), ids.clone());
        }
        Ok(ids)
    }

    /// Terminate/stop/start: returns (id, previous, current) per instance.
    pub fn change_state(
        &mut self,
        who: &Identity,
        ids: &[String],
        action: StateAction,
        elapsed: Duration,
    ) -> Result<Vec<(String, State, State)>, ApiError> {
        for id in ids {
            if self.instance(&who.account, id).is_none() {
                return Err(ApiError::bad_request(
                    "InvalidInstanceID.NotFound",
                    format!("The instance ID '{id}' does not exist"),
                ));
            }
        }
        // Validate every instance before changing any, as EC2 does.
        for id in ids {
            let Some(i) = self.instances.get(id) else {
                continue;
            };
            let bad_state = |verb: &str| {
                ApiError::bad_request(
                    "IncorrectInstanceState",
                    format!("The instance '{id}' is not in a state from which it can be {verb}."),
                )
            };
            match action {
                StateAction::Stop if i.market == PoolMarket::Spot => {
                    return Err(ApiError::bad_request(
                        "UnsupportedOperation",
                        format!(
                            "The instance '{id}' is a Spot Instance launched as one-time request and cannot be stopped."
                        ),
                    ));
                }
                StateAction::Stop if matches!(i.state, State::ShuttingDown | State::Terminated) => {
                    return Err(bad_state("stopped"));
                }
                StateAction::Start
                    if matches!(
                        i.state,
                        State::ShuttingDown | State::Terminated | State::Stopping
                    ) =>
                {
                    return Err(bad_state("started"));
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        for id in ids {
            let Some(i) = self.instances.get(id).cloned() else {
                continue;
            };
            let prev = i.state;
            match action {
                StateAction::Terminate => {
                    if !matches!(prev, State::Terminated | State::ShuttingDown) {
                        self.set_state(
                            id,
                            State::ShuttingDown,
                            Some(elapsed + Duration::from_secs(15)),
                        );
                    }
                }
                StateAction::Stop => match prev {
                    State::Pending | State::Running => {
                        if i.market == PoolMarket::Spot {
                            return Err(ApiError::bad_request(
                                "UnsupportedOperation",
                                format!(
                                    "The instance '{id}' is a Spot Instance launched as one-time request and cannot be stopped."
                                ),
                            ));
                        }
                        self.set_state(
                            id,
                            State::Stopping,
                            Some(elapsed + Duration::from_secs(20)),
                        );
                    }
                    State::Stopping | State::Stopped => {}
                    _ => {
                        return Err(ApiError::bad_request(
                            "IncorrectInstanceState",
                            format!(
                                "The instance '{id}' is not in a state from which it can be stopped."
                            ),
                        ));
                    }
                },
                StateAction::Start => match prev {
                    State::Stopped => {
                        let key = PoolKey {
                            zone_id: i.zone_id.clone(),
                            instance_type: i.instance_type.clone(),
                            market: i.market,
                        };
                        let stock = self.pools.get(&key).map_or(0, |p| p.stock);
                        if stock == 0 {
                            let zone = self.zone_name(&who.account, &i.zone_id);
                            return Err(self.capacity_error(
                                &who.account,
                                &i.region,
                                &i.instance_type,
                                i.market,
                                zone.as_deref(),
                                1,
                            ));
                        }
                        self.check_quota(&who.account, &i.region, &i.instance_type, i.market, 1)?;
                        if let Some(p) = self.pools.get_mut(&key) {
                            p.stock -= 1;
                        }
                        let provisioning = self
                            .pools
                            .get(&key)
                            .map_or(Duration::from_secs(30), |p| p.provisioning);
                        let now = self.time_at(elapsed);
                        if let Some(inst) = self.instances.get_mut(id) {
                            inst.state = State::Pending;
                            inst.transition_at = Some(elapsed + provisioning);
                            inst.launch_time = now;
                        }
                    }
                    State::Pending | State::Running => {}
                    _ => {
                        return Err(ApiError::bad_request(
                            "IncorrectInstanceState",
                            format!(
                                "The instance '{id}' is not in a state from which it can be started."
                            ),
                        ));
                    }
                },
            }
            let cur = self.instances.get(id).map_or(prev, |i| i.state);
            out.push((id.clone(), prev, cur));
        }
        Ok(out)
    }

    /// CreateCapacityReservation.
    pub fn create_reservation(
        &mut self,
        who: &Identity,
        region: &str,
        spec: ReservationSpec,
        elapsed: Duration,
    ) -> Result<String, ApiError> {
        let ReservationSpec {
            instance_type,
            zone_name,
            zone_id,
            count,
            tags,
            client_token: token,
            end_date,
        } = spec;
        let itype = instance_type.as_str();
        let (zone_name, zone_id) = (zone_name.as_deref(), zone_id.as_deref());
        let now = self.time_at(elapsed);
        let ends = match end_date {
            Some(end) if end <= now => {
                return Err(ApiError::bad_request(
                    "InvalidParameterValue",
                    "The end date must be in the future.",
                ));
            }
            Some(end) => Some(elapsed + (end - now).to_std().unwrap_or_default()),
            None => None,
        };
        if let Some(t) = &token
            && let Some(id) = self
                .reservation_tokens
                .get(&(who.account.clone(), t.clone()))
        {
            return Ok(id.clone());
        }
        if !self.types.contains_key(itype) {
            return Err(Self::unknown_type(itype));
        }
        if zone_name.is_none() && zone_id.is_none() {
            return Err(ApiError::bad_request(
                "MissingParameter",
                "The request must contain the parameter AvailabilityZone or AvailabilityZoneId",
            ));
        }
        let market = PoolMarket::OnDemand;
        let (zid, zname) = self.resolve_zone(
            &who.account,
            region,
            zone_name,
            zone_id,
            itype,
            market,
            count,
        )?;
        let key = PoolKey {
            zone_id: zid.clone(),
            instance_type: itype.to_owned(),
            market,
        };
        let Some(stock) = self.pools.get(&key).map(|p| p.stock) else {
            return Err(self.no_pool(&who.account, region, itype, market, (&zid, &zname), count));
        };
        if stock < count {
            return Err(self.capacity_error(
                &who.account,
                region,
                itype,
                market,
                Some(&zname),
                count,
            ));
        }
        self.check_quota(&who.account, region, itype, market, count)?;
        if let Some(p) = self.pools.get_mut(&key) {
            p.stock -= count;
        }
        let id = self.next_id("cr", 17);
        self.reservations.insert(
            id.clone(),
            Reservation {
                id: id.clone(),
                account: who.account.clone(),
                region: region.to_owned(),
                instance_type: itype.to_owned(),
                zone_id: zid,
                count,
                state: "active",
                created: self.time_at(elapsed),
                ends,
                tags,
            },
        );
        if let Some(t) = token {
            self.reservation_tokens
                .insert((who.account.clone(), t), id.clone());
        }
        Ok(id)
    }

    /// CancelCapacityReservation.
    pub fn cancel_reservation(&mut self, who: &Identity, id: &str) -> Result<(), ApiError> {
        if self.reservation(&who.account, id).is_none() {
            return Err(ApiError::bad_request(
                "InvalidCapacityReservationId.NotFound",
                format!("The capacity reservation ID '{id}' does not exist"),
            ));
        }
        self.release_reservation(id, "cancelled");
        Ok(())
    }

    /// Ends an active reservation (`cancelled` or `expired`) and returns its stock.
    fn release_reservation(&mut self, id: &str, state: &'static str) {
        let Some(r) = self.reservations.get_mut(id) else {
            return;
        };
        if r.state != "active" {
            return;
        }
        r.state = state;
        let key = PoolKey {
            zone_id: r.zone_id.clone(),
            instance_type: r.instance_type.clone(),
            market: PoolMarket::OnDemand,
        };
        let count = r.count;
        if let Some(p) = self.pools.get_mut(&key)
            && !p.stocked_out
        {
            p.stock = p.stock.saturating_add(count).min(p.capacity);
        }
    }

    /// AssumeRole: returns the session's (access key, secret, token).
    pub fn assume_role(
        &mut self,
        who: &Identity,
        role_arn: &str,
        session_name: &str,
        external_id: Option<&str>,
    ) -> Result<(String, String, String, Identity), ApiError> {
        let denied = || {
            ApiError::new(
                403,
                "AccessDenied",
                format!(
                    "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                    who.arn
                ),
            )
        };
        if !who.may("sts:AssumeRole") {
            return Err(denied());
        }
        let role = self
            .scenario
            .roles
            .iter()
            .find(|r| r.arn == role_arn)
            .cloned()
            .ok_or_else(denied)?;
        let external_id_ok = match role.external_id.as_deref() {
            None => true,
            Some(required) => external_id == Some(required),
        };
        if !role.trusted_accounts.contains(&who.account) || !external_id_ok {
            return Err(denied());
        }
        let account = role.account().unwrap_or_default().to_owned();
        let key = self.next_id("ASIA", 16).replace('-', "").to_uppercase();
        let secret = format!("{:040x}", self.counter.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let token = format!("FQoGZXIvYXdzE{}", key);
        let identity = Identity {
            account: account.clone(),
            arn: format!(
                "arn:aws:sts::{account}:assumed-role/{}/{session_name}",
                role.name()
            ),
            user_id: format!("AROA{}:{session_name}", key.get(4..).unwrap_or("")),
            allow: role.allow.clone(),
        };
        self.sessions.insert(key.clone(), identity.clone());
        Ok((key, secret, token, identity))
    }
}

/// What TerminateInstances/StopInstances/StartInstances do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateAction {
    /// Terminate.
    Terminate,
    /// Stop.
    Stop,
    /// Start.
    Start,
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// Poisson-like count with mean `mean`: the integer part plus one more with the fractional
/// part's probability.
fn arrivals(rng: &mut ChaCha8Rng, mean: f64) -> u32 {
    let mean = mean.max(0.0);
    let whole = mean.floor();
    let extra = u32::from(rng.random::<f64>() < mean - whole);
    // Saturating float-to-int conversion.
    (whole as u32).saturating_add(extra)
}

/// Standard normal via Box-Muller.
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
