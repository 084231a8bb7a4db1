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
    scenario::{EventKind, PoolEvent, PoolMarket, Scenario, SimProvider},
};

pub mod azure;
pub mod gcp;
pub mod lambda;
mod reads;
pub mod runpod;
mod step;
mod writes;

/// The embedded GPU catalog's types of `provider` (`aws`, `gcp`, ...), in catalog order; none
/// (logged once) when the catalog is invalid.
pub(crate) fn catalog_types(
    provider: &'static str,
) -> impl Iterator<Item = &'static capsight_catalog::GpuType> {
    use capsight_catalog::Catalog;
    static CATALOG: std::sync::OnceLock<Option<Catalog>> = std::sync::OnceLock::new();
    CATALOG
        .get_or_init(|| match Catalog::embedded() {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "embedded GPU catalog is invalid; no instance types");
                None
            }
        })
        .as_ref()
        .into_iter()
        .flat_map(Catalog::iter)
        .filter(move |g| g.provider.as_str() == provider)
}

/// `provider`'s catalog types by name, as `describe` tells them.
pub(crate) fn catalog_by_name<T>(
    provider: &'static str,
    describe: impl Fn(&capsight_catalog::GpuType) -> T,
) -> BTreeMap<String, T> {
    catalog_types(provider)
        .map(|g| (g.instance_type.as_str().to_owned(), describe(g)))
        .collect()
}

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

impl PoolKey {
    /// A zonal pool's key (AWS, Azure, GCP).
    fn of(p: &crate::scenario::Pool) -> Self {
        Self {
            zone_id: p.zone.clone(),
            instance_type: p.instance_type.clone(),
            market: p.market,
        }
    }
}

impl PoolState {
    /// A scenario pool's state at the start, in `region`.
    pub(crate) fn of(
        p: &crate::scenario::Pool,
        region: String,
        defaults: &crate::scenario::Defaults,
    ) -> Self {
        Self {
            region,
            capacity: p.capacity,
            stock: p.stock,
            refill_per_hour: p.refill_per_hour,
            demand_per_hour: p.demand_per_hour,
            provisioning: p.provisioning.unwrap_or(defaults.provisioning),
            stocked_out: false,
        }
    }

    /// A stockout event: empty, and held at zero until [`PoolState::recover`].
    pub(crate) fn stock_out(&mut self) {
        self.stock = 0;
        self.stocked_out = true;
    }

    /// A recover event: `stock` (at most the capacity), refilling again.
    pub(crate) fn recover(&mut self, stock: u32) {
        self.stocked_out = false;
        self.stock = stock.min(self.capacity);
    }

    /// One market step of a pool that reclaims nothing (Lambda, Azure): other customers'
    /// refill and demand, drawn even when stocked out so no pool shifts another's randomness.
    fn drift(&mut self, rng: &mut ChaCha8Rng, hours: f64) {
        let refill = arrivals(rng, self.refill_per_hour * hours);
        let demand = arrivals(rng, self.demand_per_hour * hours);
        if self.stocked_out {
            self.stock = 0;
            return;
        }
        let stock = i64::from(self.stock) + i64::from(refill) - i64::from(demand);
        self.stock = u32::try_from(stock.clamp(0, i64::from(self.capacity))).unwrap_or(0);
    }
}

/// A pool of any provider under its capacity key: `<provider>/<region>/<zone>/<type>/<market>`
/// (Lambda's and RunPod's with no zone; RunPod's region is its cloud type).
#[derive(Debug, Clone)]
pub struct KeyedPool<'a> {
    /// The capacity key.
    pub key: String,
    /// The pool's cloud.
    pub provider: SimProvider,
    /// The zonal key (AWS, Azure, GCP).
    pub zonal: Option<&'a PoolKey>,
    /// Its state.
    pub state: &'a PoolState,
}

impl<'a> KeyedPool<'a> {
    fn zonal(provider: SimProvider, key: &'a PoolKey, state: &'a PoolState) -> Self {
        Self {
            key: format!(
                "{}/{}/{}/{}/{}",
                provider.as_str(),
                state.region,
                key.zone_id,
                key.instance_type,
                key.market.as_str()
            ),
            provider,
            zonal: Some(key),
            state,
        }
    }

    fn zoneless(provider: SimProvider, key: String, state: &'a PoolState) -> Self {
        Self {
            key,
            provider,
            zonal: None,
            state,
        }
    }
}

/// `provider`'s zonal pools of the scenario (Azure, GCP), each with its key and its state at
/// the start in the region of its zone.
fn zonal_pools(
    scenario: &Scenario,
    provider: SimProvider,
) -> impl Iterator<Item = (&crate::scenario::Pool, PoolKey, PoolState)> {
    scenario
        .pools
        .iter()
        .filter(move |p| p.provider == provider)
        .map(move |p| {
            let region = scenario
                .zones
                .iter()
                .find(|z| z.id == p.zone && z.provider == provider)
                .map(|z| z.region.clone())
                .unwrap_or_default();
            (
                p,
                PoolKey::of(p),
                PoolState::of(p, region, &scenario.defaults),
            )
        })
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
    pub message: Option<String>,
}

#[cfg(test)]
impl Fault {
    /// One fault of `code` on `action`, with the default message.
    fn once(action: &str, code: &str) -> Self {
        Self {
            action: action.into(),
            code: code.into(),
            count: 1,
            message: None,
        }
    }
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
    /// Simulated seconds per second of the timestamps the world writes ([`World::time_at`]):
    /// 1 = simulated wall-clock time; the clock's time scale = timestamps on the real clock.
    stamp_scale: f64,
    steps_done: u64,
    next_event: usize,
    /// Completed repetitions of the timeline (`scenario.repeat`).
    cycle: u32,
    pools: BTreeMap<PoolKey, PoolState>,
    /// Lambda pools by (region, instance type): Lambda has no zones.
    lambda_pools: BTreeMap<(String, String), PoolState>,
    /// Lambda instances by id (terminated ones stay, answering `GET /instances/{id}`).
    lambda_instances: BTreeMap<String, lambda::LambdaInstance>,
    /// Google Cloud: pools, instances, operations, tokens.
    gcp: gcp::GcpWorld,
    /// Azure pools by (zone id, size, market).
    azure_pools: BTreeMap<PoolKey, PoolState>,
    /// Azure VMs by (subscription, resource group, name), the last two lowercased (ARM names
    /// are case-insensitive).
    azure_vms: BTreeMap<(String, String, String), azure::AzureVm>,
    /// Azure long-running operations by id.
    azure_operations: BTreeMap<String, azure::AzureOperation>,
    /// Entra ID access tokens issued.
    azure_tokens: BTreeMap<String, azure::AzureToken>,
    /// RunPod pools by (cloud type, instance type, market): RunPod has no zones.
    runpod_pools: BTreeMap<runpod::RunPodPoolKey, PoolState>,
    /// RunPod pods by id (terminated ones stay, unlisted).
    runpod_pods: BTreeMap<String, runpod::RunPodPod>,
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
        let mut lambda_pools = BTreeMap::new();
        for p in scenario
            .pools
            .iter()
            .filter(|p| p.provider == SimProvider::Lambda)
        {
            lambda_pools.insert(
                (p.region.clone(), p.instance_type.clone()),
                PoolState::of(p, p.region.clone(), &scenario.defaults),
            );
        }
        let mut runpod_pools = BTreeMap::new();
        for p in scenario
            .pools
            .iter()
            .filter(|p| p.provider == SimProvider::RunPod)
        {
            runpod_pools.insert(
                (p.region.clone(), p.instance_type.clone(), p.market),
                PoolState::of(p, p.region.clone(), &scenario.defaults),
            );
        }
        let azure_pools = zonal_pools(&scenario, SimProvider::Azure)
            .map(|(_, key, state)| (key, state))
            .collect();
        for p in scenario
            .pools
            .iter()
            .filter(|p| p.provider == SimProvider::Aws)
        {
            let region = scenario
                .zones
                .iter()
                .find(|z| z.id == p.zone)
                .map(|z| z.region.clone())
                .unwrap_or_default();
            pools.insert(PoolKey::of(p), PoolState::of(p, region, &scenario.defaults));
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
            stamp_scale: 1.0,
            steps_done: 0,
            next_event: 0,
            cycle: 0,
            pools,
            lambda_pools,
            lambda_instances: BTreeMap::new(),
            gcp: gcp::GcpWorld::new(&scenario, seed),
            azure_pools,
            azure_vms: BTreeMap::new(),
            azure_operations: BTreeMap::new(),
            azure_tokens: BTreeMap::new(),
            runpod_pools,
            runpod_pods: BTreeMap::new(),
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

    /// The timestamp of simulated time `elapsed` after the start: `start + elapsed`, or
    /// `start + elapsed / scale` after [`World::stamp_on_real_clock`].
    pub fn time_at(&self, elapsed: Duration) -> DateTime<Utc> {
        let stamped = elapsed.div_f64(self.stamp_scale);
        self.start + chrono::Duration::from_std(stamped).unwrap_or(chrono::Duration::zero())
    }

    /// Simulated time covered by a span `span` of timestamps (the inverse of
    /// [`World::time_at`] for durations).
    pub fn simulated_span(&self, span: Duration) -> Duration {
        span.mul_f64(self.stamp_scale)
    }

    /// Writes timestamps on the real clock of a world whose clock runs `scale` times faster
    /// than real time (`cloudsim.wall_timestamps`): simulated time `e` after the start is
    /// stamped `start + e / scale`, so services that compare the cloud's timestamps with their
    /// own clock see a consistent, compressed world. `scale <= 0` is ignored.
    pub fn stamp_on_real_clock(&mut self, scale: f64) {
        if scale.is_finite() && scale > 0.0 {
            self.stamp_scale = scale;
        }
    }

    fn next_id(&mut self, prefix: &str, width: usize) -> String {
        self.counter += 1;
        // Deterministic, unique, AWS-looking: a mix of seed and counter.
        let mixed = (self.counter ^ self.seed.rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ self.counter;
        let hex = format!("{mixed:016x}{:04x}", self.counter & 0xffff);
        format!("{prefix}-{}", &hex[..width.min(hex.len())])
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

/// An injected fault's code as the HTTP error status it names (`429`, `503`), if it names one.
fn http_status(code: &str) -> Option<u16> {
    code.parse::<u16>().ok().filter(|s| (400..600).contains(s))
}

/// A unit test's world of scenario `body` named `name`: one-minute steps, two minutes of
/// provisioning, seed 1, starting now.
#[cfg(test)]
fn test_world(name: &str, body: &str) -> World {
    let text =
        format!("name = \"{name}\"\nstep = \"1m\"\n[defaults]\nprovisioning = \"2m\"\n{body}");
    let scenario = Scenario::parse(&text).expect("the test scenario parses");
    World::new(scenario, 1, BTreeMap::new(), Utc::now())
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
