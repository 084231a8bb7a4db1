//! RunPod in the world: API keys, account balances and GPU limits, pools per (cloud type,
//! type, market) — RunPod has no zones — and pods, with the messages RunPod's GraphQL API
//! answers (`There are no longer any instances available ...`, a balance too low, the GPU
//! limit reached, `Unauthorized`).
//!
//! Contract: a deploy takes one pod of stock from its pool and counts its GPUs against the
//! account's GPU limit (`runpod-account-gpus`, else `defaults.runpod_gpu_limit`) while it
//! runs; it needs a balance of at least one hour of its price (balances are not debited).
//! Terminating gives the stock back. A pod gets its `runtime` (is up) after its pool's
//! provisioning delay. A spot stockout with `interrupt` stops (EXITED) the pool's
//! interruptible pods. RunPod pools draw from the market RNG after every AWS and Lambda draw,
//! so scenarios without them keep their randomness; requests never draw.

use super::*;
use crate::scenario::{RUNPOD_GPU_QUOTA, SimProvider};

/// RunPod's answer when no machine can take the pod (its stock error).
pub const NO_CAPACITY: &str = "There are no longer any instances available with the requested \
                               specifications. Please refresh and try again.";

/// A RunPod-shaped error: a GraphQL `errors[].message` with the HTTP status it comes with
/// (200 for the API's own errors, 401 for an unknown key, 429 for a rate limit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {message}")]
pub struct RunPodError {
    /// HTTP status.
    pub status: u16,
    /// The message.
    pub message: String,
}

impl RunPodError {
    /// An error RunPod answers with HTTP 200 (GraphQL `errors`).
    pub fn graphql(message: impl Into<String>) -> Self {
        Self {
            status: 200,
            message: message.into(),
        }
    }

    /// A request error (HTTP 400: syntax, unknown fields, bad arguments).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }
}

/// A pod's `desiredStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodStatus {
    /// Running (up once `runtime` is set).
    Running,
    /// Stopped (an interrupted spot pod).
    Exited,
    /// Terminated (no longer listed).
    Terminated,
}

impl PodStatus {
    /// RunPod's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Exited => "EXITED",
            Self::Terminated => "TERMINATED",
        }
    }
}

/// A simulated pod.
#[derive(Debug, Clone)]
pub struct RunPodPod {
    /// 14 lowercase letters and digits.
    pub id: String,
    /// Owner account.
    pub account: String,
    /// The name given at deploy.
    pub name: String,
    /// Cloud type (`secure`, `community`).
    pub cloud: String,
    /// capsight's instance type (`1x_h100_sxm`).
    pub instance_type: String,
    /// RunPod's GPU type id.
    pub gpu_type_id: String,
    /// GPUs.
    pub gpu_count: u32,
    /// On demand or spot (interruptible).
    pub market: PoolMarket,
    /// USD per pod-hour.
    pub cost_per_hr: f64,
    /// Container image.
    pub image_name: String,
    /// Status.
    pub status: PodStatus,
    /// When the pod is up; `None` once it is.
    pub up_at: Option<Duration>,
    /// Deploy time.
    pub created: DateTime<Utc>,
}

impl RunPodPod {
    /// Running and up (RunPod reports a `runtime`).
    pub fn is_up(&self) -> bool {
        self.status == PodStatus::Running && self.up_at.is_none()
    }
}

/// What a deploy mutation asks for, resolved against the GPU catalog.
#[derive(Debug, Clone)]
pub struct RunPodDeploy {
    /// `SECURE` / `COMMUNITY` as `secure` / `community`; `None` = `ALL` (secure first).
    pub cloud: Option<String>,
    /// capsight's instance type of (GPU type id, count).
    pub instance_type: String,
    /// RunPod's GPU type id.
    pub gpu_type_id: String,
    /// GPUs.
    pub gpu_count: u32,
    /// Pod name.
    pub name: String,
    /// Container image.
    pub image_name: String,
    /// `podFindAndDeployOnDemand` or `podRentInterruptable` (with its bid per GPU).
    pub market: PoolMarket,
    /// Spot bid, USD per GPU-hour.
    pub bid_per_gpu: Option<f64>,
    /// The type's on-demand price per GPU-hour.
    pub usd_per_gpu_hour: f64,
}

/// RunPod's stock status of a pool: `High`, `Medium`, `Low`, or none when it has no stock.
/// Thresholds on the share of the pool's capacity in stock: at least half High, at least a
/// fifth Medium, anything else Low.
pub fn stock_status(pool: &PoolState) -> Option<&'static str> {
    if pool.stock == 0 {
        return None;
    }
    let share = f64::from(pool.stock) / f64::from(pool.capacity.max(1));
    Some(if share >= 0.5 {
        "High"
    } else if share >= 0.2 {
        "Medium"
    } else {
        "Low"
    })
}

/// (cloud type, instance type, market).
pub type RunPodPoolKey = (String, String, PoolMarket);

impl World {
    /// The account behind a RunPod API key: 401 `Unauthorized` for an unknown key.
    pub fn runpod_account(&self, api_key: &str) -> Result<String, RunPodError> {
        self.scenario
            .principals
            .iter()
            .find(|p| {
                p.provider == SimProvider::RunPod && !api_key.is_empty() && p.api_key == api_key
            })
            .map(|p| p.account.clone())
            .ok_or(RunPodError {
                status: 401,
                message: "Unauthorized".into(),
            })
    }

    /// The account's API rate limit (shared token buckets by account id): 429 when exhausted.
    pub fn runpod_throttle(&mut self, account: &str) -> Result<(), RunPodError> {
        self.throttle(account, std::time::Instant::now())
            .map_err(|_| RunPodError {
                status: 429,
                message: "Too many requests: rate limit exceeded.".into(),
            })
    }

    /// Consumes one injected fault for the RunPod operation `op` (the top-level field:
    /// `gpuTypes`, `myself`, `podFindAndDeployOnDemand`, `podRentInterruptable`,
    /// `podTerminate`): faults whose action is `runpod/<op>` or `runpod/*`. A numeric code is
    /// the HTTP status; any other code answers HTTP 200 with the fault's message (RunPod's
    /// generic "Something went wrong" when it has none).
    pub fn runpod_fault(&mut self, op: &str) -> Option<RunPodError> {
        let (code, message) = self.take_provider_fault(
            "runpod",
            op,
            Some("Something went wrong. Please try again later or contact support."),
        )?;
        let status = http_status(&code).unwrap_or(200);
        Some(RunPodError { status, message })
    }

    /// RunPod pools by (cloud type, instance type, market).
    pub fn runpod_pools(&self) -> &BTreeMap<RunPodPoolKey, PoolState> {
        &self.runpod_pools
    }

    /// The account's balance, USD.
    pub fn runpod_balance(&self, account: &str) -> f64 {
        self.scenario
            .accounts
            .iter()
            .find(|a| a.id == account)
            .and_then(|a| a.balance_usd)
            .unwrap_or(self.scenario.defaults.runpod_balance_usd)
    }

    /// The account's GPU limit.
    pub fn runpod_gpu_limit(&self, account: &str) -> u32 {
        self.quotas
            .get(&(account.to_owned(), RUNPOD_GPU_QUOTA.to_owned()))
            .map_or(self.scenario.defaults.runpod_gpu_limit, |v| {
                // saturating float-to-int conversion of a quota value
                v.max(0.0) as u32
            })
    }

    /// GPUs the account's running pods hold.
    pub fn runpod_gpus_in_use(&self, account: &str) -> u32 {
        self.runpod_pods
            .values()
            .filter(|p| p.account == account && p.status == PodStatus::Running)
            .map(|p| p.gpu_count)
            .sum()
    }

    /// Deploys one pod (`podFindAndDeployOnDemand` / `podRentInterruptable`). Checks, in
    /// order: the cloud's pool (none in the asked cloud: no capacity), the spot bid against
    /// the minimum bid `min_bid_per_gpu`, the GPU limit, the balance (one hour of the pod's
    /// price), then stock (RunPod's "no longer any instances available").
    pub fn runpod_deploy(
        &mut self,
        account: &str,
        spec: &RunPodDeploy,
        min_bid_per_gpu: f64,
        elapsed: Duration,
    ) -> Result<RunPodPod, RunPodError> {
        let clouds: Vec<String> = match &spec.cloud {
            Some(c) => vec![c.clone()],
            None => crate::scenario::RUNPOD_CLOUDS
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
        };
        let keys: Vec<RunPodPoolKey> = clouds
            .into_iter()
            .map(|c| (c, spec.instance_type.clone(), spec.market))
            .filter(|k| self.runpod_pools.contains_key(k))
            .collect();
        let chosen = keys
            .iter()
            .find(|k| self.runpod_pools.get(*k).is_some_and(|p| p.stock > 0))
            .or(keys.first())
            .cloned()
            .ok_or_else(|| RunPodError::graphql(NO_CAPACITY))?;
        let gpus = f64::from(spec.gpu_count);
        let per_gpu = match (spec.market, spec.bid_per_gpu) {
            (PoolMarket::Spot, Some(bid)) if bid + 1e-9 >= min_bid_per_gpu => bid,
            (PoolMarket::Spot, Some(_)) => {
                return Err(RunPodError::graphql(format!(
                    "Your bid is below the minimum bid price of ${min_bid_per_gpu:.3}/GPU/hr."
                )));
            }
            (PoolMarket::Spot, None) => {
                return Err(RunPodError::bad_request(
                    "bidPerGpu is required for an interruptable pod",
                ));
            }
            (PoolMarket::OnDemand, _) => spec.usd_per_gpu_hour,
        };
        let cost_per_hr = (per_gpu * gpus * 1000.0).round() / 1000.0;
        let limit = self.runpod_gpu_limit(account);
        if self
            .runpod_gpus_in_use(account)
            .saturating_add(spec.gpu_count)
            > limit
        {
            return Err(RunPodError::graphql(format!(
                "You have reached the maximum number of GPUs your account may rent at once \
                 ({limit}). Contact support to raise your GPU limit."
            )));
        }
        if self.runpod_balance(account) < cost_per_hr {
            return Err(RunPodError::graphql(
                "Your current balance is too low to deploy this pod. Please add funds and try \
                 again.",
            ));
        }
        let Some(pool) = self.runpod_pools.get_mut(&chosen).filter(|p| p.stock > 0) else {
            return Err(RunPodError::graphql(NO_CAPACITY));
        };
        pool.stock -= 1;
        let up_at = elapsed + pool.provisioning;
        let created = self.time_at(elapsed);
        let id = self.runpod_id();
        let pod = RunPodPod {
            id: id.clone(),
            account: account.to_owned(),
            name: spec.name.clone(),
            cloud: chosen.0,
            instance_type: spec.instance_type.clone(),
            gpu_type_id: spec.gpu_type_id.clone(),
            gpu_count: spec.gpu_count,
            market: spec.market,
            cost_per_hr,
            image_name: spec.image_name.clone(),
            status: PodStatus::Running,
            up_at: Some(up_at),
            created,
        };
        self.runpod_pods.insert(id, pod.clone());
        Ok(pod)
    }

    /// Terminates the account's pod `id` and gives its stock back (`podTerminate`); an
    /// unknown or already terminated pod is RunPod's "pod not found".
    pub fn runpod_terminate(&mut self, account: &str, id: &str) -> Result<(), RunPodError> {
        let Some(pod) = self
            .runpod_pods
            .get_mut(id)
            .filter(|p| p.account == account && p.status != PodStatus::Terminated)
        else {
            return Err(RunPodError::graphql(format!("pod not found: {id}")));
        };
        let held = pod.status == PodStatus::Running;
        pod.status = PodStatus::Terminated;
        pod.up_at = None;
        let key = (pod.cloud.clone(), pod.instance_type.clone(), pod.market);
        if held
            && let Some(pool) = self.runpod_pools.get_mut(&key)
            && !pool.stocked_out
        {
            pool.stock = (pool.stock + 1).min(pool.capacity);
        }
        Ok(())
    }

    /// The account's pods that are not terminated, by id (`myself { pods }`).
    pub fn runpod_pods(&self, account: &str) -> impl Iterator<Item = &RunPodPod> {
        self.runpod_pods
            .values()
            .filter(move |p| p.account == account && p.status != PodStatus::Terminated)
    }

    /// A spot stockout with `interrupt`: the pool's running interruptible pods stop.
    pub(super) fn interrupt_runpod(&mut self, cloud: &str, instance_type: &str) {
        for p in self.runpod_pods.values_mut().filter(|p| {
            p.cloud == cloud
                && p.instance_type == instance_type
                && p.market == PoolMarket::Spot
                && p.status == PodStatus::Running
        }) {
            p.status = PodStatus::Exited;
            p.up_at = None;
        }
    }

    /// Pods whose time has come are up.
    pub(super) fn settle_runpod(&mut self, elapsed: Duration) {
        for p in self.runpod_pods.values_mut() {
            if p.up_at.is_some_and(|at| at <= elapsed) {
                p.up_at = None;
            }
        }
    }

    /// A new pod id: 14 lowercase letters and digits, deterministic per (seed, counter).
    fn runpod_id(&mut self) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        self.counter += 1;
        let mut mixed =
            (self.counter ^ self.seed.rotate_left(41)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (0..14)
            .map(|_| {
                let c = ALPHABET[(mixed % 36) as usize];
                mixed = mixed / 36 + self.counter;
                char::from(c)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = r#"
        [[accounts]]
        id = "acme"
        provider = "runpod"
        balance_usd = 20.0
        [accounts.quotas]
        "runpod-account-gpus" = 9
        [[principals]]
        provider = "runpod"
        api_key = "rp-acme"
        account = "acme"
        user = "acme"
        [[pools]]
        provider = "runpod"
        region = "secure"
        instance_type = "1x_h100_sxm"
        market = "on_demand"
        capacity = 10
        stock = 1
        [[pools]]
        provider = "runpod"
        region = "community"
        instance_type = "1x_h100_sxm"
        market = "on_demand"
        capacity = 4
        stock = 4
        [[pools]]
        provider = "runpod"
        region = "secure"
        instance_type = "8x_h100_sxm"
        market = "on_demand"
        capacity = 2
        stock = 2
        [[pools]]
        provider = "runpod"
        region = "community"
        instance_type = "1x_h100_sxm"
        market = "spot"
        capacity = 4
        stock = 4
        [[events]]
        at = "10m"
        kind = "stockout"
        provider = "runpod"
        region = "community"
        instance_type = "1x_h100_sxm"
        market = "spot"
        interrupt = true
    "#;

    fn world() -> World {
        test_world("runpod-unit", SCENARIO)
    }

    fn deploy(cloud: Option<&str>, instance_type: &str, gpus: u32) -> RunPodDeploy {
        RunPodDeploy {
            cloud: cloud.map(str::to_owned),
            instance_type: instance_type.into(),
            gpu_type_id: "NVIDIA H100 80GB HBM3".into(),
            gpu_count: gpus,
            name: "job-1".into(),
            image_name: "runpod/base".into(),
            market: PoolMarket::OnDemand,
            bid_per_gpu: None,
            usd_per_gpu_hour: 2.69,
        }
    }

    #[test]
    fn keys_stock_status_balance_limits_and_interruptions() {
        let mut w = world();
        assert_eq!(w.runpod_account("nope").unwrap_err().status, 401);
        let acme = w.runpod_account("rp-acme").unwrap();
        let t0 = Duration::ZERO;
        let pool = |w: &World, cloud: &str| {
            w.runpod_pools()[&(
                cloud.to_owned(),
                "1x_h100_sxm".to_owned(),
                PoolMarket::OnDemand,
            )]
                .clone()
        };
        assert_eq!(stock_status(&pool(&w, "secure")), Some("Low"));
        assert_eq!(stock_status(&pool(&w, "community")), Some("High"));
        // ALL takes secure first while it has stock, then community
        let first = w
            .runpod_deploy(&acme, &deploy(None, "1x_h100_sxm", 1), 0.0, t0)
            .unwrap();
        assert_eq!(first.cloud, "secure");
        assert_eq!(stock_status(&pool(&w, "secure")), None);
        let e = w
            .runpod_deploy(&acme, &deploy(Some("secure"), "1x_h100_sxm", 1), 0.0, t0)
            .unwrap_err();
        assert_eq!((e.status, e.message.as_str()), (200, NO_CAPACITY));
        let second = w
            .runpod_deploy(&acme, &deploy(None, "1x_h100_sxm", 1), 0.0, t0)
            .unwrap();
        assert_eq!(second.cloud, "community");
        // a type without a pool in the asked cloud is out of stock too
        let e = w
            .runpod_deploy(&acme, &deploy(Some("community"), "8x_h100_sxm", 8), 0.0, t0)
            .unwrap_err();
        assert_eq!(e.message, NO_CAPACITY);
        // 2 + 8 GPUs over the limit of 9
        let e = w
            .runpod_deploy(&acme, &deploy(Some("secure"), "8x_h100_sxm", 8), 0.0, t0)
            .unwrap_err();
        assert!(e.message.contains("maximum number of GPUs"), "{e}");
        // a balance of 20 USD does not cover an hour of 8 GPUs at 2.69 * 8 once the limit
        // allows it
        w.runpod_terminate(&acme, &first.id).unwrap();
        w.runpod_terminate(&acme, &second.id).unwrap();
        let e = w
            .runpod_deploy(&acme, &deploy(Some("secure"), "8x_h100_sxm", 8), 0.0, t0)
            .unwrap_err();
        assert!(e.message.contains("balance is too low"), "{e}");
        assert_eq!(stock_status(&pool(&w, "secure")), Some("Low"));
        assert!(w.runpod_terminate(&acme, &first.id).is_err());
        // spot: bids below the minimum are refused; pods come up, then a stockout with
        // interrupt stops them
        let mut spot = deploy(Some("community"), "1x_h100_sxm", 1);
        spot.market = PoolMarket::Spot;
        spot.bid_per_gpu = Some(0.5);
        assert!(w.runpod_deploy(&acme, &spot, 1.0, t0).is_err());
        spot.bid_per_gpu = Some(1.2);
        let p = w.runpod_deploy(&acme, &spot, 1.0, t0).unwrap();
        assert_eq!(p.cost_per_hr, 1.2);
        assert!(!w.runpod_pods(&acme).next().unwrap().is_up());
        w.advance(Duration::from_secs(180));
        assert!(w.runpod_pods(&acme).all(RunPodPod::is_up));
        w.advance(Duration::from_secs(600));
        let stopped: Vec<_> = w.runpod_pods(&acme).map(|p| p.status).collect();
        assert_eq!(stopped, [PodStatus::Exited]);
        assert_eq!(w.runpod_gpus_in_use(&acme), 0);
        let truth = w.truth();
        assert_eq!(
            truth.stock["runpod/community//1x_h100_sxm/spot"],
            [(0, 4), (60, 3), (600, 0)]
        );
    }

    #[test]
    fn runpod_faults_never_hit_aws_or_lambda() {
        let mut w = world();
        w.add_fault(Fault::once("runpod/podTerminate", "429"));
        assert!(w.lambda_fault("terminate").is_none());
        assert!(w.runpod_fault("gpuTypes").is_none());
        assert_eq!(w.runpod_fault("podTerminate").unwrap().status, 429);
        assert!(w.runpod_fault("podTerminate").is_none());
        w.add_fault(Fault::once("*", "InternalError"));
        assert!(w.runpod_fault("gpuTypes").is_none());
        w.add_fault(Fault::once("runpod/*", "boom"));
        let e = w.runpod_fault("myself").unwrap();
        assert_eq!(e.status, 200);
        assert!(e.message.starts_with("Something went wrong"));
    }
}
