//! Replaying a workload under one strategy against one arm's world.
//!
//! Strategies: `capsight` (GetScore + Preflight + `Launch` through the gateway with
//! alternatives allowed, then GetLaunch until running or failed), `blind-failover` (cheapest
//! allowed offering first, the next on each capacity error), `ice-cache` (blind failover that
//! skips offerings with a capacity error in the last 3 simulated minutes, shared by all requests
//! of the arm), `placement-score` (spot: best Spot Placement Score first; on-demand: catalog
//! order) and `oracle` (the first allowed offering whose true stock, read from `/admin/state`
//! at the start of the round, covers the request).
//!
//! Contract: every request of the workload yields exactly one [`RequestResult`]. A request
//! arrives at warm-up + `at`, is tried in rounds until it runs or its deadline passes (a new
//! round starts only before the deadline; between rounds it waits `retry_after`); a satisfied
//! request holds its instances for `hold`, then releases them (CancelLaunch for capsight,
//! TerminateInstances otherwise). Capsight arms also sample the served scores every two
//! simulated minutes with the truth of that moment, and run the workload's reporters.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use capsight_catalog::Catalog;
use capsight_proto::v1::{
    self, CancelLaunchRequest, Constraints, Decision, GetLaunchRequest, GetScoreRequest,
    LaunchSpec, LaunchState, ListScoresRequest, PreflightRequest, ReportOutcome, ScoreFilter,
    SubmitReportRequest, launch_service_client::LaunchServiceClient,
    preflight_service_client::PreflightServiceClient, report_service_client::ReportServiceClient,
    score_service_client::ScoreServiceClient,
};
use serde::Serialize;
use tonic::{Request as GrpcRequest, transport::Channel};

use crate::{
    cloud::{Hands, Outcome},
    offers::{self, Offer},
    pipeline::Ablation,
    workload::{ReporterDef, Request, Workload},
    world::World,
};

/// `msg` with `authorization: Bearer <key>`.
pub fn authed<T>(msg: T, key: &str) -> GrpcRequest<T> {
    let mut r = GrpcRequest::new(msg);
    if let Ok(v) = format!("Bearer {key}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

/// An authenticated `GetLaunch` for `job`.
fn get_launch_req(job: &str, key: &str) -> GrpcRequest<GetLaunchRequest> {
    authed(
        GetLaunchRequest {
            job_id: job.to_owned(),
        },
        key,
    )
}

/// An authenticated `CancelLaunch` for `job`.
fn cancel_launch_req(job: &str, key: &str) -> GrpcRequest<CancelLaunchRequest> {
    authed(
        CancelLaunchRequest {
            job_id: job.to_owned(),
        },
        key,
    )
}

/// How an arm picks where to launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// capsight's gateway and launcher.
    Capsight,
    /// Cheapest first, next on each capacity error.
    BlindFailover,
    /// Blind failover skipping recent capacity failures.
    IceCache,
    /// Spot placement scores.
    PlacementScore,
    /// The ground truth.
    Oracle,
}

/// One arm: a strategy, and for capsight what it leaves out.
#[derive(Debug, Clone, Serialize)]
pub struct Arm {
    /// Its name (`capsight-no-probes`, `oracle`, ...).
    pub name: String,
    /// Strategy.
    pub strategy: Strategy,
    /// Ablation (capsight arms).
    pub ablation: Ablation,
}

/// Every arm name [`Arm::parse`] knows, in report order.
pub const ARMS: &[&str] = &[
    "capsight",
    "capsight-no-reports",
    "capsight-no-probes",
    "blind-failover",
    "ice-cache",
    "placement-score",
    "oracle",
];

impl Arm {
    /// The arm called `name` (one of [`ARMS`]).
    pub fn parse(name: &str) -> Option<Self> {
        let (strategy, ablation) = match name {
            "capsight" => (Strategy::Capsight, Ablation::default()),
            "capsight-no-reports" => (
                Strategy::Capsight,
                Ablation {
                    no_reports: true,
                    no_probes: false,
                },
            ),
            "capsight-no-probes" => (
                Strategy::Capsight,
                Ablation {
                    no_reports: false,
                    no_probes: true,
                },
            ),
            "blind-failover" => (Strategy::BlindFailover, Ablation::default()),
            "ice-cache" => (Strategy::IceCache, Ablation::default()),
            "placement-score" => (Strategy::PlacementScore, Ablation::default()),
            "oracle" => (Strategy::Oracle, Ablation::default()),
            _ => return None,
        };
        Some(Self {
            name: name.to_owned(),
            strategy,
            ablation,
        })
    }
}

/// One launch attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// Capacity key.
    pub key: String,
    /// Simulated seconds since the world's start.
    pub at: f64,
    /// `running`, `capacity`, `quota` or `other`.
    pub outcome: String,
    /// Catalog price per instance-hour.
    pub usd_per_hour: f64,
    /// Instances.
    pub count: u32,
    /// The score and label capsight served for the key when the round started (capsight).
    pub served: Option<(u32, String)>,
    /// True stock of the key when the round started.
    pub stock: Option<u64>,
}

/// One `Preflight` answer and what followed.
#[derive(Debug, Clone, Serialize)]
pub struct PreflightRecord {
    /// Simulated seconds.
    pub at: f64,
    /// The key asked about.
    pub key: String,
    /// `can_launch`, `retry_with_alternatives`, `fix_account_issue`.
    pub decision: String,
    /// True stock of the key then.
    pub stock: u64,
    /// Instances asked for.
    pub count: u32,
    /// The launch's first attempt on that key failed with a capacity error.
    pub then_capacity_error: bool,
}

/// What happened to one request.
#[derive(Debug, Clone, Serialize)]
pub struct RequestResult {
    /// Request id (arrival order).
    pub id: usize,
    /// Tenant.
    pub tenant: String,
    /// Arrival, simulated seconds since the world's start.
    pub arrival: f64,
    /// It ran before its deadline.
    pub satisfied: bool,
    /// Simulated minutes from arrival to running.
    pub minutes_to_running: Option<f64>,
    /// Rounds tried.
    pub rounds: u32,
    /// Every attempt.
    pub attempts: Vec<Attempt>,
    /// Preflight answers (capsight).
    pub preflights: Vec<PreflightRecord>,
    /// Where it ran.
    pub landed: Option<String>,
    /// Its instances were gone (interrupted) before the hold ended.
    pub interrupted: bool,
    /// A harness-side error that ended the request early (counted as unsatisfied).
    pub error: Option<String>,
}

impl RequestResult {
    /// A request that arrived at `arrival` and has not got anywhere yet.
    pub fn unserved(id: usize, tenant: String, arrival: f64) -> Self {
        Self {
            id,
            tenant,
            arrival,
            satisfied: false,
            minutes_to_running: None,
            rounds: 0,
            attempts: Vec::new(),
            preflights: Vec::new(),
            landed: None,
            interrupted: false,
            error: None,
        }
    }

    /// A request that never got served, with the reason.
    pub fn failed(id: usize, tenant: String, arrival: f64, why: String) -> Self {
        Self {
            error: Some(why),
            ..Self::unserved(id, tenant, arrival)
        }
    }

    /// Attempts that did not run.
    pub fn failed_attempts(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.outcome != "running")
            .count()
    }
}

/// A served score and the truth at that moment.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Sample {
    /// Simulated seconds.
    pub t: f64,
    /// Key.
    pub key: String,
    /// Score 0..=100.
    pub score: u32,
    /// Label.
    pub label: String,
    /// Simulated seconds since the newest evidence (`updated_at`).
    pub age: f64,
    /// True stock.
    pub stock: u64,
}

/// Shared state of one arm's replay.
struct Ctx {
    arm: Arm,
    world: Arc<World>,
    hands: Hands,
    catalog: Arc<Catalog>,
    image_id: String,
    warmup: f64,
    /// Offering key -> simulated time of its last capacity error (ice-cache).
    ice: Mutex<HashMap<String, f64>>,
    gateway: Option<Gateway>,
    done: Arc<AtomicUsize>,
    /// (tenant, key, succeeded) of every attempt, for honest reporters.
    outcomes: Mutex<Vec<(String, String, bool)>>,
}

#[derive(Clone)]
struct Gateway {
    channel: Channel,
    keys: BTreeMap<String, String>,
}

impl Gateway {
    fn key(&self, tenant: &str) -> String {
        self.keys.get(tenant).cloned().unwrap_or_default()
    }
}

/// What one arm's replay produced.
#[derive(Debug, Default)]
pub struct Replayed {
    /// One result per request.
    pub requests: Vec<RequestResult>,
    /// Served scores with the truth (capsight).
    pub samples: Vec<Sample>,
    /// Crowd reports submitted.
    pub reports: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn label_name(l: i32) -> String {
    match v1::Label::try_from(l) {
        Ok(v1::Label::Available) => "available",
        Ok(v1::Label::Limited) => "limited",
        Ok(v1::Label::Unavailable) => "unavailable",
        Ok(v1::Label::Unknown) => "unknown",
        _ => "none",
    }
    .to_owned()
}

fn key_string(k: &v1::CapacityKey) -> String {
    capsight_proto::domain::CapacityKey::try_from(k.clone())
        .map(|k| k.to_string())
        .unwrap_or_default()
}

/// Every score the gateway serves, by key.
async fn all_scores(gw: &Gateway, key: &str) -> BTreeMap<String, v1::Score> {
    let mut client = ScoreServiceClient::new(gw.channel.clone());
    let mut out = BTreeMap::new();
    let mut token = String::new();
    for _ in 0..100 {
        let req = ListScoresRequest {
            filter: Some(ScoreFilter::default()),
            page_size: 1000,
            page_token: token.clone(),
        };
        match client.list_scores(authed(req, key)).await {
            Ok(r) => {
                let r = r.into_inner();
                for s in r.scores {
                    if let Some(k) = &s.key {
                        out.insert(key_string(k), s);
                    }
                }
                if r.next_page_token.is_empty() {
                    break;
                }
                token = r.next_page_token;
            }
            Err(e) => {
                tracing::warn!(error = %e, "ListScores failed");
                break;
            }
        }
    }
    out
}

impl Ctx {
    fn attempt_record(
        &self,
        offer: &Offer,
        at: f64,
        outcome: &str,
        count: u32,
        served: Option<(u32, String)>,
        stock: Option<u64>,
    ) -> Attempt {
        Attempt {
            key: offer.key(),
            at,
            outcome: outcome.to_owned(),
            usd_per_hour: offer.usd_per_hour,
            count,
            served,
            stock,
        }
    }

    async fn serve(&self, r: &Request) -> RequestResult {
        let arrival = self.warmup + r.at.as_secs_f64();
        self.world.sleep_until(arrival).await;
        let offers = offers::allowed(r, &self.world.scenario, &self.catalog);
        let mut result = RequestResult::unserved(r.id, r.tenant.clone(), arrival);
        if offers.is_empty() {
            result.error = Some("no allowed offering in the scenario".into());
            return result;
        }
        let deadline = arrival + r.deadline.as_secs_f64();
        let mut held: Option<Held> = None;
        while self.world.now() < deadline {
            result.rounds += 1;
            let round = result.rounds;
            let got = match self.arm.strategy {
                crate::replay::Strategy::Capsight => {
                    self.capsight_round(r, &offers, round, deadline, &mut result)
                        .await
                }
                _ => self.baseline_round(r, &offers, round, &mut result).await,
            };
            if let Some((h, at)) = got {
                result.satisfied = true;
                result.error = None;
                result.minutes_to_running = Some((at - arrival).max(0.0) / 60.0);
                result.landed = Some(h.key.clone());
                held = Some(h);
                break;
            }
            let next = self.world.now() + r.retry_after.as_secs_f64();
            if next >= deadline {
                break;
            }
            self.world.sleep_until(next).await;
        }
        if let Some(h) = held {
            self.world
                .sleep_until(self.world.now() + r.hold.as_secs_f64())
                .await;
            result.interrupted = !self.release(r, &h).await;
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        result
    }

    /// Ends a hold; false when the instances were already gone.
    async fn release(&self, r: &Request, h: &Held) -> bool {
        match (&h.job, &self.gateway) {
            (Some(job), Some(gw)) => {
                let key = gw.key(&r.tenant);
                let mut client = LaunchServiceClient::new(gw.channel.clone());
                let state = client
                    .get_launch(get_launch_req(job, &key))
                    .await
                    .map(|s| s.into_inner().state());
                let alive = matches!(state, Ok(LaunchState::Running));
                if let Err(e) = client.cancel_launch(cancel_launch_req(job, &key)).await {
                    tracing::debug!(error = %e, "CancelLaunch");
                }
                alive
            }
            _ => {
                let alive = self
                    .hands
                    .still_running(&r.tenant, &h.key, &h.instances)
                    .await;
                self.hands.release(&r.tenant, &h.key, &h.instances).await;
                alive
            }
        }
    }

    async fn baseline_round(
        &self,
        r: &Request,
        offers: &[Offer],
        round: u32,
        result: &mut RequestResult,
    ) -> Option<(Held, f64)> {
        let stock = self.world.stock().await.unwrap_or_default();
        let now = self.world.now();
        let candidates: Vec<Offer> = match self.arm.strategy {
            Strategy::BlindFailover | Strategy::Capsight => offers.to_vec(),
            Strategy::IceCache => {
                let ice = lock(&self.ice);
                offers
                    .iter()
                    .filter(|o| ice.get(&o.key()).is_none_or(|t| now - t > 180.0))
                    .cloned()
                    .collect()
            }
            Strategy::PlacementScore => {
                if r.market == capsight_proto::domain::Market::Spot {
                    let mut types: Vec<String> =
                        offers.iter().map(|o| o.instance_type.clone()).collect();
                    types.sort();
                    types.dedup();
                    let mut regions: Vec<String> =
                        offers.iter().map(|o| o.region.clone()).collect();
                    regions.sort();
                    regions.dedup();
                    let scores = self
                        .hands
                        .placement_scores(&r.tenant, &types, r.count, &regions)
                        .await;
                    let mut ranked = offers.to_vec();
                    ranked.sort_by_key(|o| {
                        std::cmp::Reverse(scores.get(&o.zone).copied().unwrap_or(0))
                    });
                    ranked
                } else {
                    offers.to_vec()
                }
            }
            Strategy::Oracle => offers
                .iter()
                .find(|o| stock.get(&o.key()).copied().unwrap_or(0) >= u64::from(r.count))
                .cloned()
                .into_iter()
                .collect(),
        };
        for (n, offer) in candidates.iter().enumerate() {
            let at = self.world.now();
            let token = format!("eval-{}-{}-{round}-{n}", self.arm.name, r.id);
            let outcome = self
                .hands
                .attempt(&self.world, &r.tenant, offer, r.count, &token)
                .await;
            let key_stock = stock.get(&offer.key()).copied();
            let (name, ok) = match &outcome {
                Outcome::Running(_) => ("running", true),
                Outcome::Capacity => ("capacity", false),
                Outcome::Quota => ("quota", false),
                Outcome::Other(_) => ("other", false),
            };
            result
                .attempts
                .push(self.attempt_record(offer, at, name, r.count, None, key_stock));
            lock(&self.outcomes).push((r.tenant.clone(), offer.key(), ok));
            match outcome {
                Outcome::Running(instances) => {
                    let running_at = self.world.now();
                    return Some((
                        Held {
                            key: offer.key(),
                            instances,
                            job: None,
                        },
                        running_at,
                    ));
                }
                Outcome::Capacity => {
                    lock(&self.ice).insert(offer.key(), self.world.now());
                }
                Outcome::Quota | Outcome::Other(_) => {}
            }
        }
        None
    }

    async fn capsight_round(
        &self,
        r: &Request,
        offers: &[Offer],
        round: u32,
        deadline: f64,
        result: &mut RequestResult,
    ) -> Option<(Held, f64)> {
        let gw = self.gateway.clone()?;
        let key = gw.key(&r.tenant);
        let scores = all_scores(&gw, &key).await;
        let served = |k: &str| scores.get(k).map(|s| (s.score, label_name(s.label)));
        let mut ranked: Vec<&Offer> = offers.iter().collect();
        ranked.sort_by_key(|o| std::cmp::Reverse(served(&o.key()).map_or(50, |s| s.0)));
        let mut primary = ranked.first().map(|o| (*o).clone())?;
        let stock = self.world.stock().await.unwrap_or_default();
        let round_start = self.world.now();

        let to_wire = |o: &Offer| -> Option<v1::CapacityKey> {
            o.key()
                .parse::<capsight_proto::domain::CapacityKey>()
                .ok()
                .map(|k| v1::CapacityKey::from(&k))
        };
        let constraints = Constraints {
            allowed_regions: r.regions.clone(),
            markets: vec![v1::Market::from(r.market) as i32],
            interruptible: r.interruptible,
            allow_substitutes: !r.substitutes.is_empty(),
            allow_other_providers: r.other_providers,
            ..Default::default()
        };
        let spec = |o: &Offer| LaunchSpec {
            key: to_wire(o),
            count: r.count,
            image_id: self.image_id.clone(),
            ..Default::default()
        };
        // the served verdict of the key the tenant would ask about
        let mut scores_client = ScoreServiceClient::new(gw.channel.clone());
        let _ = scores_client
            .get_score(authed(
                GetScoreRequest {
                    key: to_wire(&primary),
                },
                &key,
            ))
            .await;
        let mut preflight_client = PreflightServiceClient::new(gw.channel.clone());
        let pf = preflight_client
            .preflight(authed(
                PreflightRequest {
                    spec: Some(spec(&primary)),
                    constraints: Some(constraints.clone()),
                    live_probe: false,
                },
                &key,
            ))
            .await;
        let mut record = None;
        match pf {
            Ok(p) => {
                let p = p.into_inner();
                let decision = p.decision();
                record = Some(PreflightRecord {
                    at: round_start,
                    key: primary.key(),
                    decision: match decision {
                        Decision::CanLaunch => "can_launch",
                        Decision::RetryWithAlternatives => "retry_with_alternatives",
                        Decision::FixAccountIssue => "fix_account_issue",
                        Decision::Unspecified => "unspecified",
                    }
                    .to_owned(),
                    stock: stock.get(&primary.key()).copied().unwrap_or(0),
                    count: r.count,
                    then_capacity_error: false,
                });
                match decision {
                    Decision::RetryWithAlternatives => {
                        let alt = p.alternatives.iter().find_map(|a| {
                            let k = key_string(a.key.as_ref()?);
                            offers.iter().find(|o| o.key() == k).cloned()
                        });
                        match alt {
                            Some(alt) => primary = alt,
                            // no allowed offering can launch now and the asked-about one is
                            // known to be out: a tenant following the verdict waits a round
                            None if served(&primary.key())
                                .is_some_and(|(_, label)| label == "unavailable") =>
                            {
                                if let Some(rec) = record {
                                    result.preflights.push(rec);
                                }
                                return None;
                            }
                            None => {}
                        }
                    }
                    Decision::FixAccountIssue => {
                        if let Some(rec) = record {
                            result.preflights.push(rec);
                        }
                        return None;
                    }
                    _ => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Preflight failed");
                result.error = Some(format!("Preflight: {}", e.message()));
            }
        }
        let mut launch_client = LaunchServiceClient::new(gw.channel.clone());
        let launched = launch_client
            .launch(authed(
                v1::LaunchRequest {
                    spec: Some(spec(&primary)),
                    constraints: Some(constraints.clone()),
                    max_fallbacks: u32::try_from(offers.len().saturating_sub(1).min(10))
                        .unwrap_or(10),
                    idempotency_key: format!("r{}-{round}", r.id),
                    ..Default::default()
                },
                &key,
            ))
            .await;
        let job = match launched {
            Ok(l) => l.into_inner().job_id,
            Err(e) => {
                tracing::warn!(error = %e, "Launch failed");
                result.error = Some(format!("Launch: {}", e.message()));
                if let Some(rec) = record {
                    result.preflights.push(rec);
                }
                return None;
            }
        };
        // watch it
        let status = loop {
            let s = launch_client.get_launch(get_launch_req(&job, &key)).await;
            if let Ok(s) = s {
                let s = s.into_inner();
                if matches!(
                    s.state(),
                    LaunchState::Running
                        | LaunchState::Failed
                        | LaunchState::Cancelled
                        | LaunchState::Terminated
                ) {
                    break Some(s);
                }
            }
            if self.world.now() > deadline + 600.0 {
                let _ = launch_client
                    .cancel_launch(cancel_launch_req(&job, &key))
                    .await;
                break None;
            }
            tokio::time::sleep(self.world.real(5.0).max(Duration::from_millis(200))).await;
        };
        let Some(status) = status else {
            if let Some(rec) = record {
                result.preflights.push(rec);
            }
            return None;
        };
        // attempts from the transitions: each provisioning event opens one
        let events = &status.events;
        let mut running_at = None;
        let mut first = true;
        for (i, e) in events.iter().enumerate() {
            if e.state() != LaunchState::Provisioning {
                continue;
            }
            let Some(k) = e.key.as_ref().map(key_string) else {
                continue;
            };
            let next = events[i + 1..].iter().find(|n| {
                matches!(
                    n.state(),
                    LaunchState::Provisioning | LaunchState::Running | LaunchState::Failed
                )
            });
            let (outcome, ok) = match next.map(v1::LaunchEvent::state) {
                Some(LaunchState::Running) => ("running", true),
                // the launcher falls back only after a capacity error
                Some(LaunchState::Provisioning) => ("capacity", false),
                Some(LaunchState::Failed) => {
                    let class = next.map(v1::LaunchEvent::error_class);
                    match class {
                        Some(v1::ErrorClass::Capacity) => ("capacity", false),
                        Some(v1::ErrorClass::Quota) => ("quota", false),
                        _ => ("other", false),
                    }
                }
                _ => ("other", false),
            };
            if first {
                if let Some(rec) = record.as_mut()
                    && rec.key == k
                {
                    rec.then_capacity_error = outcome == "capacity";
                }
                first = false;
            }
            if ok {
                running_at = next
                    .and_then(|n| n.at.as_ref())
                    .and_then(|t| {
                        chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
                    })
                    .map(|t| self.world.sim_at(t));
            }
            let offer = offers
                .iter()
                .find(|o| o.key() == k)
                .cloned()
                .unwrap_or_else(|| {
                    let parts: Vec<&str> = k.split('/').collect();
                    let provider = capsight_proto::domain::Provider::parse(
                        "provider",
                        parts.first().copied().unwrap_or("aws"),
                    )
                    .unwrap_or(capsight_proto::domain::Provider::Aws);
                    let (usd, gpus) = offers::catalog_facts(
                        &self.catalog,
                        provider,
                        parts.get(3).copied().unwrap_or(""),
                    )
                    .unwrap_or((0.0, 0));
                    Offer {
                        provider,
                        region: parts.get(1).copied().unwrap_or_default().to_owned(),
                        zone: parts.get(2).copied().unwrap_or_default().to_owned(),
                        instance_type: parts.get(3).copied().unwrap_or_default().to_owned(),
                        market: r.market,
                        usd_per_hour: usd,
                        gpus,
                    }
                });
            let at = e
                .at
                .as_ref()
                .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
                .map_or(round_start, |t| self.world.sim_at(t));
            result.attempts.push(self.attempt_record(
                &offer,
                at,
                outcome,
                r.count,
                served(&k),
                stock.get(&k).copied(),
            ));
            lock(&self.outcomes).push((r.tenant.clone(), k.clone(), ok));
        }
        if let Some(rec) = record {
            result.preflights.push(rec);
        }
        if status.state() == LaunchState::Running {
            let last = events
                .iter()
                .rev()
                .find(|e| e.state() == LaunchState::Running);
            let landed = last
                .and_then(|e| e.key.as_ref().map(key_string))
                .unwrap_or_else(|| primary.key());
            return Some((
                Held {
                    key: landed,
                    instances: Vec::new(),
                    job: Some(job),
                },
                running_at.unwrap_or_else(|| self.world.now()),
            ));
        }
        None
    }
}

/// A satisfied request's instances.
#[derive(Debug)]
struct Held {
    key: String,
    instances: Vec<String>,
    /// capsight's launch job.
    job: Option<String>,
}

/// Samples the served scores every 2 simulated minutes until `stop`.
async fn sample(ctx: Arc<Ctx>, stop: tokio::sync::watch::Receiver<bool>) -> Vec<Sample> {
    let mut out = Vec::new();
    let Some(gw) = ctx.gateway.clone() else {
        return out;
    };
    let key = gw.keys.values().next().cloned().unwrap_or_default();
    loop {
        if *stop.borrow() {
            break;
        }
        let t = ctx.world.now();
        let stock = ctx.world.stock().await.unwrap_or_default();
        let scores = all_scores(&gw, &key).await;
        for (k, s) in scores {
            let Some(n) = stock.get(&k) else { continue };
            let age = s
                .updated_at
                .as_ref()
                .and_then(|u| chrono::DateTime::from_timestamp(u.seconds, u.nanos.max(0) as u32))
                .map_or(f64::NAN, |u| (t - ctx.world.sim_at(u)).max(0.0));
            out.push(Sample {
                t,
                key: k,
                score: s.score,
                label: label_name(s.label),
                age,
                stock: *n,
            });
        }
        let mut stop2 = stop.clone();
        tokio::select! {
            () = ctx.world.sleep_until(t + 120.0) => {}
            _ = stop2.changed() => {}
        }
    }
    out
}

/// Runs one reporter until `stop`; returns the reports it submitted.
async fn report(ctx: Arc<Ctx>, def: ReporterDef, stop: tokio::sync::watch::Receiver<bool>) -> u64 {
    let Some(gw) = ctx.gateway.clone() else {
        return 0;
    };
    let key = gw.key(&def.tenant);
    let mut client = ReportServiceClient::new(gw.channel.clone());
    let mut seen = 0;
    let mut sent = 0;
    let every = def.every.as_secs_f64();
    loop {
        if *stop.borrow() {
            break;
        }
        let t = ctx.world.now();
        let mut reports: Vec<(String, bool)> = Vec::new();
        if def.honest {
            let outcomes = lock(&ctx.outcomes);
            for (tenant, k, ok) in outcomes.iter().skip(seen) {
                if *tenant == def.tenant && (def.keys.is_empty() || def.keys.contains(k)) {
                    reports.push((k.clone(), *ok));
                }
            }
            seen = outcomes.len();
        } else {
            let stock = ctx.world.stock().await.unwrap_or_default();
            for (k, n) in stock {
                if n > 0 && (def.keys.is_empty() || def.keys.contains(&k)) {
                    reports.push((k, false));
                }
            }
        }
        for (k, ok) in reports {
            let parts: Vec<&str> = k.split('/').collect();
            let [provider, region, zone, itype, market] = parts[..] else {
                continue;
            };
            let market = capsight_proto::domain::Market::parse("market", market)
                .map(|m| v1::Market::from(m) as i32)
                .unwrap_or_default();
            let req = SubmitReportRequest {
                provider: provider.to_owned(),
                region: region.to_owned(),
                zone_id: zone.to_owned(),
                instance_type: itype.to_owned(),
                market,
                outcome: if ok {
                    ReportOutcome::LaunchSucceeded as i32
                } else {
                    ReportOutcome::LaunchFailed as i32
                },
                error_code: if ok {
                    String::new()
                } else {
                    "InsufficientInstanceCapacity".into()
                },
                count: 1,
                ..Default::default()
            };
            match client.submit_report(authed(req, &key)).await {
                Ok(_) => sent += 1,
                Err(e) => tracing::debug!(error = %e, "SubmitReport"),
            }
        }
        let mut stop2 = stop.clone();
        tokio::select! {
            () = ctx.world.sleep_until(t + every) => {}
            _ = stop2.changed() => {}
        }
    }
    sent
}

/// Everything one arm's replay needs.
#[derive(Debug)]
pub struct ArmSetup {
    /// The arm.
    pub arm: Arm,
    /// Its world.
    pub world: Arc<World>,
    /// Its hands in the tenants' accounts.
    pub hands: Hands,
    /// The catalog.
    pub catalog: Arc<Catalog>,
    /// The gateway channel and tenants' keys (capsight arms).
    pub gateway: Option<(Channel, BTreeMap<String, String>)>,
    /// Requests finished so far (progress).
    pub done: Arc<AtomicUsize>,
}

/// Replays `workload` under the arm's strategy; returns when every request is finished.
pub async fn replay(setup: ArmSetup, workload: &Workload) -> Replayed {
    let capsight = setup.arm.strategy == Strategy::Capsight;
    let no_reports = setup.arm.ablation.no_reports;
    let ctx = Arc::new(Ctx {
        arm: setup.arm,
        world: setup.world,
        hands: setup.hands,
        catalog: setup.catalog,
        image_id: workload.image_id.clone(),
        warmup: workload.warmup.as_secs_f64(),
        ice: Mutex::new(HashMap::new()),
        gateway: setup
            .gateway
            .map(|(channel, keys)| Gateway { channel, keys }),
        done: setup.done,
        outcomes: Mutex::new(Vec::new()),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = capsight.then(|| tokio::spawn(sample(Arc::clone(&ctx), stop_rx.clone())));
    let reporters: Vec<_> = if capsight && !no_reports {
        workload
            .reporters
            .iter()
            .map(|d| tokio::spawn(report(Arc::clone(&ctx), d.clone(), stop_rx.clone())))
            .collect()
    } else {
        Vec::new()
    };
    let tasks: Vec<_> = workload
        .expand()
        .into_iter()
        .map(|r| {
            let ctx = Arc::clone(&ctx);
            tokio::spawn(async move { ctx.serve(&r).await })
        })
        .collect();
    let expanded = workload.expand();
    let mut requests = Vec::new();
    for (task, r) in tasks.into_iter().zip(expanded) {
        match task.await {
            Ok(res) => requests.push(res),
            Err(e) => requests.push(RequestResult::failed(
                r.id,
                r.tenant.clone(),
                workload.warmup.as_secs_f64() + r.at.as_secs_f64(),
                format!("request task failed: {e}"),
            )),
        }
    }
    let _ = stop_tx.send(true);
    let samples = match sampler {
        Some(s) => s.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let mut reports = 0;
    for r in reporters {
        reports += r.await.unwrap_or(0);
    }
    Replayed {
        requests,
        samples,
        reports,
    }
}
