//! The scoring model: observations in a window -> score, label, confidence, evidence.
//!
//! Contract: [`assess`] is a pure function of the observations, their order and `now` (event
//! time, milliseconds); no clock, no I/O, no randomness. Callers pass observations in a fixed
//! order (the window's `(time, id)` order), so the floating-point result is reproducible.
//!
//! # The model
//! Every observation gets a recency weight `w = 0.5 ^ (age / half_life)`. Features, each a
//! "goodness" in 0..=1 with a weight ([`FeatureWeights`], `[scorer.weights]`; the defaults
//! below are the source document's example weights, a feature weighted 0 is left out):
//!
//! | feature | weight | goodness |
//! |---|---|---|
//! | launch success rate | 40 | (successes / capacity-relevant attempts)², decayed counts: 90 % -> 0.81, 75 % -> 0.56 |
//! | capacity error ratio | 20 | 1 - 2 * capacity errors / capacity-relevant attempts, at least 0 |
//! | provisioning latency | 15 | 1 at or below the key's own median, 0 at twice it (>= 3 timed successes) |
//! | spot stability | 15 | mean of price steadiness (1 - cv/0.25), placement score / 10, interruption advisor bucket and interruption events |
//! | reservable supply | 10 | 1 - exp(-offered block instances / 4) |
//! | catalog exposure | 10 | the latest offering signal: offered 1, not offered 0 |
//! | status incidents | 10 | 1 - impact of the worst open incident |
//! | recent outcome | 0 (off) | the newest capacity-relevant first-party attempt: 1 succeeded, 0 capacity error; its weight decays with `recent_half_life` of its age |
//! | listed availability | 40 | the provider's own latest "capacity available now" listing (Lambda Cloud's `regions_with_capacity_available`): available 1, not available 0 |
//! | marketplace stock | 10 | a GPU marketplace's latest stock status (RunPod's `stockStatus`): High 1, Medium 2/3, Low 1/3, none 0 |
//!
//! Listed availability exists only for keys with `availability` signals (Lambda Cloud today):
//! it is a direct statement by the provider, as strong as the launch success rate, and each
//! poll counts as one first-party observation. A key without such signals is scored exactly as
//! without the feature: its weight is in neither the present nor the covered weight of the
//! confidence, bit for bit (AWS keys never have it).
//!
//! Marketplace stock is the same kind of feature for a marketplace (RunPod), but a weak one: a
//! coarse, cached listing of hosts' spare GPUs rather than an allocation the provider stands
//! behind, so it has a low weight (`[scorer.weights] marketplace`) and each poll counts a
//! quarter of a first-party observation. Keys without marketplace signals never see it, bit
//! for bit, like listed availability.
//!
//! The recent outcome is what an unavailable-offerings cache knows: stock changes abruptly, and
//! the newest attempt says more about it than a day of decayed averages. Its weight is
//! `weight * 0.5 ^ (age / recent_half_life)`, so a capacity error a minute ago outweighs hours of
//! successes and fades within a few half lives. Off by default (the first-version weights); the
//! fitted profile (`deploy/config/model-fitted.toml`) turns it on.
//!
//! Capacity-relevant attempts are launches that succeeded or failed for lack of capacity; every
//! other failure (quota, permission, throttled, transient, price too low, not offered, a code
//! nobody classified) says nothing about stock and is ignored entirely, as are quota readings.
//! A latest offering signal that says "not offered" (an instance type withdrawn from a zone) is
//! a *withdrawal*: the key cannot be launched at all and scores at most [`WITHDRAWN_MAX`] until
//! an offering or a success says otherwise. The base score is `100 *
//! sum(weight * goodness) / sum(weight)` over the features that have data: a missing feature is
//! re-weighted away (and lowers the confidence), it does not pull the score. With no feature at
//! all the base is the prior.
//!
//! Thin evidence stays near an honest prior ([`VerdictPolicy::shrink`]): the base is pulled
//! toward `verdict.prior_score` as if `verdict.prior_weight` neutral observations were added to
//! the decayed count of first-party observations behind it (an offering or a spot price counts
//! a quarter: it says a type exists or what it costs, little about stock). One probe success
//! reads about 67, not 100; one open incident about 43, not 0. Evidence contributions are
//! scaled by the same factor, so with the default prior of 50 they still add up to the score.
//!
//! Everything a tenant sends (source `report`: its reports, its own launches and forwarded
//! instance events) is an *opinion*, never first-party evidence, and adjusts the base
//! additively: each tenant's decayed opinion (available or launch success +1, unavailable or
//! capacity error -1, interrupted or interruption warning -0.5, rebalance -0.25) times its
//! strength `1 - exp(-sum w)` times `tenant_cap_points`, clamped to +-`tenant_cap_points`; the
//! sum over tenants (any number of them) is clamped to +-`crowd_max_points`, and scaled by
//! `1 - |v|` when it contradicts the first-party launch verdict `v` (probe and capsight launch
//! success rate mapped to -1..=1, times `1 - exp(-attempts / 2)`). Clamps and scaling by at
//! most 1 are 1-Lipschitz, so removing one tenant's reports moves the unrounded score by at
//! most `tenant_cap_points`.
//!
//! Each tenant's cap is scaled by its [`Trust`] (0..=1, how far its past reports agreed with
//! first-party verdicts on any key; `capsight_tenancy::trust`): its term is clamped to
//! `+-trust * tenant_cap_points`, so a tenant that keeps contradicting probes loses weight on
//! every key, also on keys no probe looks at. Trust 1 for everyone is the model without trust;
//! trust never exceeds 1, so the per-tenant cap and the crowd bound (sybil) hold as before.
//! [`checkable_opinion`] and [`Assessment::first_party`] are what the scorer checks reports
//! against.
//!
//! Confidence = count * recency * diversity * coverage, each in 0..=1: `1 - exp(-n/4)` of the
//! decayed count of capacity-relevant observations (crowd reports, offerings and spot prices
//! count a quarter), the newest one's decay at twice the half life, 0.75 for one source kind
//! and 1 for two or more, and `0.4 + 0.6 * present feature weight / total weight` (the recent
//! outcome left out of both: it restates the launch attempts). No relevant
//! data gives 0. Below `verdict.unknown_below` the label is [`Label::Unknown`], whatever the
//! score.
//!
//! Evidence: each present feature's contribution in points relative to the neutral 50
//! (`100 * weight * (goodness - 0.5) / present weight`, so contributions plus 50 add up to the
//! base), plus the crowd adjustment; the `evidence_items` largest by magnitude.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use capsight_proto::domain::{
    CrowdReportKind, ErrorClass, Evidence, Feature, InstanceEventKind, Label, SignalSource,
    StatusSeverity, StockLevel, VerdictPolicy,
};

use crate::observation::{Fact, Observation};

/// The highest score of a withdrawn key (see the module doc).
pub const WITHDRAWN_MAX: f64 = 5.0;

/// Tunable parameters of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelParams {
    /// Recency decay half life, the prior, the unknown threshold (`[verdict]`).
    pub verdict: VerdictPolicy,
    /// Most points one tenant's crowd reports can move a score.
    pub tenant_cap_points: f64,
    /// Most points all crowd reports together can move a score.
    pub crowd_max_points: f64,
    /// Evidence items kept.
    pub evidence_items: usize,
    /// Feature weights.
    pub weights: FeatureWeights,
    /// Half life of the recent-outcome feature's weight (`[scorer] recent_half_life`).
    pub recent_half_life: std::time::Duration,
}

impl Default for ModelParams {
    fn default() -> Self {
        Self {
            verdict: VerdictPolicy::default(),
            tenant_cap_points: 3.0,
            crowd_max_points: 10.0,
            evidence_items: 4,
            weights: FeatureWeights::default(),
            recent_half_life: DEFAULT_RECENT_HALF_LIFE,
        }
    }
}

/// The default half life of the recent-outcome feature's weight.
pub const DEFAULT_RECENT_HALF_LIFE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// The model's verdict for one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// The unrounded score, 0..=100.
    pub raw: f64,
    /// `raw` rounded.
    pub score: u8,
    /// `verdict.label(score, confidence)`.
    pub label: Label,
    /// 0..=1.
    pub confidence: f64,
    /// Largest contribution first.
    pub evidence: Vec<Evidence>,
    /// The first-party launch verdict (probes and capsight's own launches), -1..=1: the
    /// success rate mapped to -1..=1 times how much evidence backs it; 0 without any.
    pub first_party: f64,
    /// The latest spot price in the window (USD per instance-hour), if any.
    pub market_usd_per_hour: Option<f64>,
}

/// Every tenant's trust, 0..=1 (see the module doc). Tenants it does not name get `default`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trust {
    default: f64,
    tenants: HashMap<String, f64>,
}

impl Trust {
    /// Everyone fully trusted: the model without trust.
    pub fn full() -> Self {
        Self::new(1.0, HashMap::new())
    }

    /// `tenants` (by tenant hash) and `default` for the rest; values are clamped to 0..=1 (NaN
    /// counts as 0).
    pub fn new(default: f64, tenants: HashMap<String, f64>) -> Self {
        let clamp = |t: f64| if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        Self {
            default: clamp(default),
            tenants: tenants.into_iter().map(|(k, v)| (k, clamp(v))).collect(),
        }
    }

    /// The trust of tenant `hash` (`""`: a report without a tenant).
    pub fn of(&self, hash: &str) -> f64 {
        self.tenants.get(hash).copied().unwrap_or(self.default)
    }

    /// Tenants named.
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    /// True when no tenant is named.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }
}

/// A tenant-sourced observation's plain capacity opinion, when it has one: +1 for an
/// available report or a launch that succeeded, -1 for an unavailable report or a capacity
/// error. These are what a tenant is checked on; interruption notices, first-party
/// observations and facts that say nothing about stock give `None`.
pub fn checkable_opinion(o: &Observation) -> Option<f64> {
    if o.source != SignalSource::Report {
        return None;
    }
    match &o.fact {
        Fact::Crowd { kind, class } if capacity_relevant(*class) => match kind {
            CrowdReportKind::Available => Some(1.0),
            CrowdReportKind::Unavailable => Some(-1.0),
            CrowdReportKind::Interrupted => None,
        },
        Fact::Launch {
            succeeded: true, ..
        } => Some(1.0),
        Fact::Launch { class, .. } if *class == ErrorClass::Capacity => Some(-1.0),
        _ => None,
    }
}

/// Feature weights (`[scorer.weights]`): each present feature's share of the base score is its
/// weight over the sum of the present features' weights. The defaults are the source
/// document's first version (points out of 100 when every feature has data); the evaluation
/// harness fits an alternative on the scenario library (`docs/evaluation.md`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureWeights {
    /// Launch success rate.
    pub success: f64,
    /// Capacity error ratio.
    pub capacity_errors: f64,
    /// Provisioning latency.
    pub latency: f64,
    /// Spot stability.
    pub spot: f64,
    /// Reservable supply.
    pub reservable: f64,
    /// Catalog exposure.
    pub catalog: f64,
    /// Status incidents.
    pub status: f64,
    /// The newest capacity-relevant attempt's outcome (0: off, the first version).
    pub recent_outcome: f64,
    /// The provider's own availability listing (keys with `availability` signals only).
    pub availability: f64,
    /// A marketplace's stock status (keys with marketplace `availability` signals only).
    pub marketplace: f64,
}

impl Default for FeatureWeights {
    fn default() -> Self {
        Self {
            success: 40.0,
            capacity_errors: 20.0,
            latency: 15.0,
            spot: 15.0,
            reservable: 10.0,
            catalog: 10.0,
            status: 10.0,
            recent_outcome: 0.0,
            availability: 40.0,
            marketplace: 10.0,
        }
    }
}

impl FeatureWeights {
    /// Every weight with its config name, in table order.
    pub fn named(&self) -> [(&'static str, f64); 10] {
        [
            ("success", self.success),
            ("capacity_errors", self.capacity_errors),
            ("latency", self.latency),
            ("spot", self.spot),
            ("reservable", self.reservable),
            ("catalog", self.catalog),
            ("status", self.status),
            ("recent_outcome", self.recent_outcome),
            ("availability", self.availability),
            ("marketplace", self.marketplace),
        ]
    }

    /// The sum of the weights.
    pub fn total(&self) -> f64 {
        self.named().iter().map(|(_, w)| w).sum()
    }

    /// The sum of the weights every key may have: all but the listed availability and the
    /// marketplace stock, which only keys with `availability` signals have (summed in the same
    /// order as before those features existed, so other keys' confidence is unchanged to the
    /// last bit).
    fn total_without_listed(&self) -> f64 {
        self.named()
            .iter()
            .filter(|(name, _)| !matches!(*name, "availability" | "marketplace"))
            .map(|(_, w)| w)
            .sum()
    }

    /// Checks every weight is finite and >= 0 and one is above 0; the error names the field.
    pub fn validate(&self) -> Result<(), capsight_proto::domain::FieldError> {
        for (name, w) in self.named() {
            if !(w.is_finite() && w >= 0.0) {
                return Err(capsight_proto::domain::FieldError::new(
                    format!("scorer.weights.{name}"),
                    "must be finite and >= 0",
                ));
            }
        }
        if self.total() <= 0.0 {
            return Err(capsight_proto::domain::FieldError::new(
                "scorer.weights",
                "at least one weight must be above 0",
            ));
        }
        Ok(())
    }
}

/// Timed successes needed before latency is judged.
const MIN_LATENCY_SAMPLES: usize = 3;

/// One present feature.
struct Term {
    feature: Feature,
    weight: f64,
    goodness: f64,
    value: f64,
    samples: u32,
}

impl Term {
    /// A term whose goodness is its value.
    fn plain(feature: Feature, weight: f64, value: f64, samples: u32) -> Self {
        Self {
            feature,
            weight,
            goodness: value,
            value,
            samples,
        }
    }

    /// A yes/no term: good (1) when the latest signal said yes, else 0.
    fn flag(feature: Feature, weight: f64, yes: bool, samples: u32) -> Self {
        Self::plain(feature, weight, if yes { 1.0 } else { 0.0 }, samples)
    }
}

/// True when a crowd report's error class may say something about stock (or there is none).
fn capacity_relevant(class: ErrorClass) -> bool {
    !class.is_account_or_transient()
}

/// True when a first-party launch outcome says something about stock: a success or a
/// capacity error (account, transient, price, not-offered and unclassified failures do not).
fn is_attempt(succeeded: bool, class: ErrorClass) -> bool {
    succeeded || class == ErrorClass::Capacity
}

fn severity_impact(s: StatusSeverity) -> f64 {
    match s {
        StatusSeverity::None => 0.0,
        StatusSeverity::Maintenance => 0.1,
        StatusSeverity::Minor => 0.3,
        StatusSeverity::Major => 0.7,
        StatusSeverity::Critical => 1.0,
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Scores the observations as of `now_ms`: tally them ([`Tally::add`]), turn the tallies
/// into feature terms ([`Tally::terms`]), then the base score, the crowd adjustment, the
/// confidence and the evidence.
pub fn assess<'a>(
    observations: impl IntoIterator<Item = &'a Observation>,
    now_ms: i64,
    params: &ModelParams,
    trust: &Trust,
) -> Assessment {
    let half_life_ms = (params.verdict.half_life.as_millis() as f64).max(1.0);
    let mut tally = Tally::default();
    for o in observations {
        let age = (now_ms - o.at_ms).max(0) as f64;
        tally.add(o, 0.5_f64.powf(age / half_life_ms));
    }
    let terms = tally.terms(
        &params.weights,
        now_ms,
        params.recent_half_life.as_millis() as f64,
    );
    let present: f64 = terms.iter().map(|t| t.weight).sum();
    let prior = params.verdict.prior_score;
    let base = params
        .verdict
        .shrink(base_score(&terms, present, prior), tally.first_party_w);
    let kept = if tally.first_party_w + params.verdict.prior_weight > 0.0 {
        tally.first_party_w / (tally.first_party_w + params.verdict.prior_weight)
    } else {
        1.0
    };
    let mut evidence = term_evidence(&terms, present, kept);
    let base = if tally.withdrawn() {
        base.min(WITHDRAWN_MAX)
    } else {
        base
    };
    let first_party = tally.first_party_verdict();
    let (crowd_sum, crowd_adj) = crowd_adjustment(&tally.crowd, first_party, params, trust);
    if !tally.crowd.is_empty() {
        let reports: usize = tally.crowd.values().map(|c| c.reports).sum();
        evidence.push(Evidence {
            feature: Feature::CrowdReports,
            value: crowd_sum,
            contribution: crowd_adj,
            samples: count(reports),
        });
    }
    let raw = (base + crowd_adj).clamp(0.0, 100.0);
    // raw is within 0..=100, so the cast cannot truncate
    let score = raw.round() as u8;
    // the recent outcome restates the launch attempts: it adds no coverage of its own
    let recent: f64 = terms
        .iter()
        .filter(|t| t.feature == Feature::RecentOutcome)
        .map(|t| t.weight)
        .sum();
    // the listed availability and the marketplace stock are covered only where they exist
    // (keys with availability signals)
    let has = |feature: Feature| terms.iter().any(|t| t.feature == feature);
    let mut covered = params.weights.total_without_listed() - params.weights.recent_outcome;
    if has(Feature::ListedAvailability) {
        covered += params.weights.availability;
    }
    if has(Feature::MarketplaceStock) {
        covered += params.weights.marketplace;
    }
    let covered = covered.max(f64::MIN_POSITIVE);
    let confidence = tally.confidence(now_ms, half_life_ms, (present - recent) / covered);
    strongest_first(&mut evidence, params.evidence_items);
    Assessment {
        raw,
        score,
        label: params.verdict.label(score, confidence),
        confidence,
        evidence,
        first_party,
        market_usd_per_hour: tally.last_price,
    }
}

/// One tenant's crowd reports: decayed opinion and weight.
#[derive(Debug, Default)]
struct CrowdTally {
    /// Sum of weight * opinion.
    opinion_w: f64,
    /// Sum of weights.
    w: f64,
    /// Reports.
    reports: usize,
}

/// Decayed sums and counts of a window's observations, per feature.
#[derive(Debug, Default)]
struct Tally<'a> {
    succ_w: f64,
    cap_w: f64,
    attempts_w: f64,
    attempts: usize,
    /// Timed successes: (ms, weight).
    timed: Vec<(f64, f64)>,
    price_w: f64,
    price_sum: f64,
    price_sq: f64,
    prices: usize,
    /// The latest spot price (observations come in time order).
    last_price: Option<f64>,
    place_w: f64,
    place_sum: f64,
    places: usize,
    adv_w: f64,
    adv_sum: f64,
    advs: usize,
    interrupt_w: f64,
    interrupts: usize,
    block_supply: f64,
    blocks: usize,
    /// The latest offering signal (observations come in time order).
    offered: Option<bool>,
    /// The latest availability listing (observations come in time order).
    listed: Option<bool>,
    listings: usize,
    /// The latest marketplace stock status (observations come in time order).
    market_stock: Option<StockLevel>,
    market_listings: usize,
    offerings: usize,
    /// Incident -> its latest (severity, resolved).
    incidents: BTreeMap<&'a str, (StatusSeverity, bool)>,
    status_events: usize,
    /// Tenant -> its reports.
    crowd: BTreeMap<&'a str, CrowdTally>,
    /// Decayed count of capacity-relevant observations (crowd reports, offerings and spot
    /// prices a quarter).
    relevant_w: f64,
    /// The same count over first-party observations only: what the prior is weighed against.
    first_party_w: f64,
    /// The latest offering signal said "not offered" (no successful launch since).
    not_offered: bool,
    newest_relevant: Option<i64>,
    /// The newest capacity-relevant first-party attempt: (time, succeeded).
    latest_attempt: Option<(i64, bool)>,
    sources: BTreeSet<capsight_proto::domain::SignalSource>,
}

impl<'a> Tally<'a> {
    /// Adds one observation of recency weight `w`.
    fn add(&mut self, o: &'a Observation, w: f64) {
        if let Some(relevance) = self.add_fact(o, w) {
            self.relevant_w += relevance * w;
            if o.source != SignalSource::Report {
                self.first_party_w += relevance * w;
            }
            self.newest_relevant = Some(self.newest_relevant.map_or(o.at_ms, |n| n.max(o.at_ms)));
            self.sources.insert(o.source);
        }
    }

    /// Adds `o`'s fact to its feature's sums; its relevance to the confidence (1, or a quarter
    /// for a crowd report, an offering or a spot price), `None` when it says nothing about
    /// stock.
    fn add_fact(&mut self, o: &'a Observation, w: f64) -> Option<f64> {
        if o.source == SignalSource::Report {
            // whatever a tenant sends (reports, forwarded launch and instance events) is an
            // opinion, capped per tenant; never first-party evidence
            return self.add_opinion(o, w);
        }
        match &o.fact {
            Fact::Launch {
                succeeded,
                class,
                provisioning_ms,
            } => {
                if !is_attempt(*succeeded, *class) {
                    return None;
                }
                if *succeeded {
                    // it launched: offered after all
                    self.not_offered = false;
                }
                self.attempts_w += w;
                self.attempts += 1;
                // observations come in time order: the last one is the newest
                self.latest_attempt = Some((o.at_ms, *succeeded));
                if *succeeded {
                    self.succ_w += w;
                    if let Some(ms) = provisioning_ms {
                        self.timed.push((f64::from(*ms), w));
                    }
                } else if *class == ErrorClass::Capacity {
                    self.cap_w += w;
                }
            }
            Fact::Quota { .. } => return None,
            Fact::SpotPrice(p) => {
                self.price_w += w;
                self.price_sum += w * p;
                self.price_sq += w * p * p;
                self.prices += 1;
                if p.is_finite() && *p > 0.0 {
                    self.last_price = Some(*p);
                }
                return Some(0.25);
            }
            Fact::Placement(p) => {
                self.place_w += w;
                self.place_sum += w * f64::from(*p).clamp(0.0, 10.0) / 10.0;
                self.places += 1;
            }
            Fact::Advisory(b) => {
                self.adv_w += w;
                self.adv_sum += w * (1.0 - f64::from(*b).clamp(0.0, 4.0) / 4.0);
                self.advs += 1;
            }
            Fact::Instance(kind) => match kind {
                InstanceEventKind::InterruptionWarning => {
                    self.interrupt_w += w;
                    self.interrupts += 1;
                }
                InstanceEventKind::RebalanceRecommendation => {
                    self.interrupt_w += 0.5 * w;
                    self.interrupts += 1;
                }
                InstanceEventKind::SpotFulfillment | InstanceEventKind::StateChange => {
                    return None;
                }
            },
            Fact::CapacityBlock { instances } => {
                self.block_supply += w * f64::from(*instances);
                self.blocks += 1;
            }
            Fact::Offered(yes) => {
                // observations come in time order: the last one is the latest
                self.offered = Some(*yes);
                self.offerings += 1;
                self.not_offered = !*yes;
                return Some(0.25);
            }
            Fact::Available(yes) => {
                // a direct statement by the provider: one first-party observation per poll
                self.listed = Some(*yes);
                self.listings += 1;
            }
            Fact::Marketplace(level) => {
                // a marketplace's coarse listing: a quarter of an observation per poll
                self.market_stock = Some(*level);
                self.market_listings += 1;
                return Some(0.25);
            }
            Fact::Status {
                incident,
                severity,
                resolved,
            } => {
                self.incidents
                    .insert(incident.as_str(), (*severity, *resolved));
                self.status_events += 1;
            }
            Fact::Crowd { .. } => return self.add_opinion(o, w),
        }
        Some(1.0)
    }

    /// Adds a tenant-sourced observation to its tenant's opinion: a report, a tenant's own
    /// launch (success +1, capacity error -1) or a forwarded interruption notice (-0.5,
    /// rebalance -0.25). Facts that say nothing about stock are ignored; relevance a quarter.
    fn add_opinion(&mut self, o: &'a Observation, w: f64) -> Option<f64> {
        let opinion = match &o.fact {
            Fact::Crowd { kind, class } if capacity_relevant(*class) => match kind {
                CrowdReportKind::Available => 1.0,
                CrowdReportKind::Unavailable => -1.0,
                CrowdReportKind::Interrupted => -0.5,
            },
            Fact::Launch {
                succeeded: true, ..
            } => 1.0,
            Fact::Launch { class, .. } if *class == ErrorClass::Capacity => -1.0,
            Fact::Instance(InstanceEventKind::InterruptionWarning) => -0.5,
            Fact::Instance(InstanceEventKind::RebalanceRecommendation) => -0.25,
            _ => return None,
        };
        let tenant = o.tenant.as_ref().map_or("", |t| t.as_str());
        let e = self.crowd.entry(tenant).or_default();
        e.opinion_w += w * opinion;
        e.w += w;
        e.reports += 1;
        Some(0.25)
    }

    /// True when the type cannot be launched here: the latest offering signal says it is not
    /// offered and no launch succeeded since.
    fn withdrawn(&self) -> bool {
        self.not_offered
    }

    /// The first-party launch verdict (probes and capsight's own launches): success rate mapped
    /// to -1..=1, times how much evidence backs it (`1 - exp(-attempts / 2)`, decayed).
    fn first_party_verdict(&self) -> f64 {
        if self.attempts_w <= 0.0 {
            return 0.0;
        }
        let v = 2.0 * self.succ_w / self.attempts_w - 1.0;
        v * (1.0 - (-self.attempts_w / 2.0).exp())
    }

    /// The features that have data, in table order, as of `now_ms`.
    fn terms(&self, w: &FeatureWeights, now_ms: i64, recent_half_life_ms: f64) -> Vec<Term> {
        let mut terms = self.launch_terms(w);
        terms.extend(self.latency_term(w));
        terms.extend(self.spot_term(w));
        terms.extend(self.reservable_term(w));
        terms.extend(self.catalog_term(w));
        terms.extend(self.status_term(w));
        terms.extend(self.recent_term(w, now_ms, recent_half_life_ms));
        terms.extend(self.listed_term(w));
        terms.extend(self.marketplace_term(w));
        terms.retain(|t| t.weight > 0.0);
        terms
    }

    /// Launch success rate and capacity error ratio.
    fn launch_terms(&self, w: &FeatureWeights) -> Vec<Term> {
        if !(self.attempts > 0 && self.attempts_w > 0.0) {
            return Vec::new();
        }
        let success_rate = self.succ_w / self.attempts_w;
        let capacity_ratio = self.cap_w / self.attempts_w;
        vec![
            Term {
                feature: Feature::LaunchSuccessRate,
                weight: w.success,
                goodness: success_rate * success_rate,
                value: success_rate,
                samples: count(self.attempts),
            },
            Term {
                feature: Feature::CapacityErrorRatio,
                weight: w.capacity_errors,
                goodness: (1.0 - 2.0 * capacity_ratio).max(0.0),
                value: capacity_ratio,
                samples: count(self.attempts),
            },
        ]
    }

    /// Recent provisioning time against the key's own median.
    fn latency_term(&self, w: &FeatureWeights) -> Option<Term> {
        if self.timed.len() < MIN_LATENCY_SAMPLES {
            return None;
        }
        let mut sorted: Vec<f64> = self.timed.iter().map(|(ms, _)| *ms).collect();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2].max(1.0);
        let tw: f64 = self.timed.iter().map(|(_, w)| w).sum();
        (tw > 0.0).then(|| {
            let recent = self.timed.iter().map(|(ms, w)| ms * w).sum::<f64>() / tw;
            Term {
                feature: Feature::ProvisioningLatency,
                weight: w.latency,
                goodness: (2.0 - recent / median).clamp(0.0, 1.0),
                value: recent,
                samples: count(self.timed.len()),
            }
        })
    }

    /// Price steadiness, placement scores, advisor buckets and interruptions, averaged.
    fn spot_term(&self, w: &FeatureWeights) -> Option<Term> {
        let spot_samples = self.prices + self.places + self.advs + self.interrupts;
        if spot_samples == 0 {
            return None;
        }
        let mut parts = Vec::new();
        if self.prices >= 2 && self.price_w > 0.0 {
            let mean = self.price_sum / self.price_w;
            let var = (self.price_sq / self.price_w - mean * mean).max(0.0);
            let cv = if mean > 0.0 { var.sqrt() / mean } else { 0.0 };
            parts.push((1.0 - cv / 0.25).clamp(0.0, 1.0));
        }
        if self.places > 0 && self.place_w > 0.0 {
            parts.push(self.place_sum / self.place_w);
        }
        if self.advs > 0 && self.adv_w > 0.0 {
            parts.push(self.adv_sum / self.adv_w);
        }
        parts.push(1.0 / (1.0 + self.interrupt_w / 2.0));
        let g = parts.iter().sum::<f64>() / parts.len() as f64;
        Some(Term::plain(
            Feature::SpotStability,
            w.spot,
            g,
            count(spot_samples),
        ))
    }

    /// Offered capacity-block instances.
    fn reservable_term(&self, w: &FeatureWeights) -> Option<Term> {
        (self.blocks > 0).then(|| Term {
            feature: Feature::ReservableSupply,
            weight: w.reservable,
            goodness: 1.0 - (-self.block_supply / 4.0).exp(),
            value: self.block_supply,
            samples: count(self.blocks),
        })
    }

    /// The latest offering signal.
    fn catalog_term(&self, w: &FeatureWeights) -> Option<Term> {
        let samples = count(self.offerings);
        self.offered
            .map(|yes| Term::flag(Feature::CatalogExposure, w.catalog, yes, samples))
    }

    /// The provider's latest availability listing.
    fn listed_term(&self, w: &FeatureWeights) -> Option<Term> {
        let samples = count(self.listings);
        self.listed
            .map(|yes| Term::flag(Feature::ListedAvailability, w.availability, yes, samples))
    }

    /// A marketplace's latest stock status.
    fn marketplace_term(&self, w: &FeatureWeights) -> Option<Term> {
        let samples = count(self.market_listings);
        let term = |share| Term::plain(Feature::MarketplaceStock, w.marketplace, share, samples);
        self.market_stock.map(|level| term(level.share()))
    }

    /// The worst open incident.
    fn status_term(&self, w: &FeatureWeights) -> Option<Term> {
        if self.status_events == 0 {
            return None;
        }
        let open: Vec<f64> = self
            .incidents
            .values()
            .filter(|(_, resolved)| !resolved)
            .map(|(s, _)| severity_impact(*s))
            .collect();
        let worst = open.iter().copied().fold(0.0, f64::max);
        Some(Term {
            feature: Feature::StatusIncidents,
            weight: w.status,
            goodness: 1.0 - worst,
            value: open.len() as f64,
            samples: count(self.status_events),
        })
    }

    /// The newest capacity-relevant attempt, its weight decayed by its age.
    fn recent_term(&self, w: &FeatureWeights, now_ms: i64, half_life_ms: f64) -> Option<Term> {
        let (at_ms, succeeded) = self.latest_attempt?;
        let age = (now_ms - at_ms).max(0) as f64;
        let weight = w.recent_outcome * 0.5_f64.powf(age / half_life_ms.max(1.0));
        Some(Term::flag(Feature::RecentOutcome, weight, succeeded, 1))
    }

    /// Count * recency * diversity * coverage, to four decimals; 0 without relevant data.
    /// `coverage` is the present features' share of the total weight.
    fn confidence(&self, now_ms: i64, half_life_ms: f64, coverage: f64) -> f64 {
        match self.newest_relevant {
            Some(newest) if self.relevant_w > 0.0 => {
                let f_count = 1.0 - (-self.relevant_w / 4.0).exp();
                let age = (now_ms - newest).max(0) as f64;
                let f_recency = 0.5_f64.powf(age / (2.0 * half_life_ms));
                let f_diversity = if self.sources.len() >= 2 { 1.0 } else { 0.75 };
                let f_coverage = 0.4 + 0.6 * coverage;
                let c = f_count * f_recency * f_diversity * f_coverage;
                // four decimals: stable across platforms' last-bit differences in exp/powf
                ((c * 10_000.0).round() / 10_000.0).clamp(0.0, 1.0)
            }
            _ => 0.0,
        }
    }
}

/// Each present feature's contribution in points relative to the neutral 50, times `kept`
/// (the share of the score the evidence keeps against the prior).
fn term_evidence(terms: &[Term], present: f64, kept: f64) -> Vec<Evidence> {
    terms
        .iter()
        .map(|t| Evidence {
            feature: t.feature,
            value: t.value,
            contribution: kept * 100.0 * t.weight * (t.goodness - 0.5) / present,
            samples: t.samples,
        })
        .collect()
}

/// The weighted mean goodness of the present features in points; `prior` with none.
fn base_score(terms: &[Term], present: f64, prior: f64) -> f64 {
    if present > 0.0 {
        100.0 * terms.iter().map(|t| t.weight * t.goodness).sum::<f64>() / present
    } else {
        prior
    }
}

/// The crowd's sum of per-tenant capped opinions and that sum capped: (sum, adjustment).
/// Each tenant's cap is `tenant_cap_points` times its trust. A crowd that contradicts the
/// first-party verdict (`-1..=1`, see [`Tally::first_party_verdict`]) is scaled down by
/// `1 - |verdict|`: against strong probe evidence, however many tenants say otherwise count
/// for little. Clamping and scaling by a factor of at most 1 keep the adjustment 1-Lipschitz
/// in every tenant's opinion.
fn crowd_adjustment(
    crowd: &BTreeMap<&str, CrowdTally>,
    first_party: f64,
    params: &ModelParams,
    trust: &Trust,
) -> (f64, f64) {
    let cap = params.tenant_cap_points.max(0.0);
    let crowd_sum: f64 = crowd
        .iter()
        .filter(|(_, c)| c.w > 0.0)
        .map(|(tenant, c)| {
            let cap = cap * trust.of(tenant);
            let opinion = c.opinion_w / c.w;
            let strength = 1.0 - (-c.w).exp();
            (cap * opinion * strength).clamp(-cap, cap)
        })
        .sum();
    let crowd_max = params.crowd_max_points.max(0.0);
    let capped = crowd_sum.clamp(-crowd_max, crowd_max);
    let agreement = if capped * first_party < 0.0 {
        1.0 - first_party.abs().min(1.0)
    } else {
        1.0
    };
    (crowd_sum, capped * agreement)
}

/// Sorts evidence by magnitude (then feature) and keeps the first `keep`.
fn strongest_first(evidence: &mut Vec<Evidence>, keep: usize) {
    evidence.sort_by(|a, b| {
        b.contribution
            .abs()
            .total_cmp(&a.contribution.abs())
            .then(a.feature.cmp(&b.feature))
    });
    evidence.truncate(keep);
}

#[cfg(test)]
mod tests {
    use capsight_proto::domain::TenantHash;
    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 1_795_000_000_000;
    const HOUR: i64 = 3_600_000;

    fn obs(at_ms: i64, fact: Fact) -> Observation {
        Observation {
            at_ms,
            source: SignalSource::Probe,
            tenant: None,
            fact,
        }
    }

    fn launch(at_ms: i64, succeeded: bool, class: ErrorClass, ms: Option<u32>) -> Observation {
        obs(
            at_ms,
            Fact::Launch {
                succeeded,
                class,
                provisioning_ms: ms,
            },
        )
    }

    fn crowd(at_ms: i64, tenant: &str, kind: CrowdReportKind) -> Observation {
        from_tenant(
            at_ms,
            tenant,
            Fact::Crowd {
                kind,
                class: ErrorClass::Capacity,
            },
        )
    }

    /// `fact` as a tenant sent it (a report or a forwarded event).
    fn from_tenant(at_ms: i64, tenant: &str, fact: Fact) -> Observation {
        Observation {
            at_ms,
            source: SignalSource::Report,
            tenant: Some(TenantHash::parse("tenant", tenant).unwrap()),
            fact,
        }
    }

    fn sorted(mut v: Vec<Observation>) -> Vec<Observation> {
        v.sort_by_key(|o| o.at_ms);
        v
    }

    #[test]
    fn the_source_documents_example_reads_as_expected() {
        // 8 successes around 90 s, 2 capacity errors, a stable spot price, offered, no incident
        let mut v = Vec::new();
        for i in 0..10 {
            let at = NOW - i * HOUR;
            if i % 5 == 0 {
                v.push(launch(at, false, ErrorClass::Capacity, None));
            } else {
                v.push(launch(at, true, ErrorClass::None, Some(90_000)));
            }
        }
        v.push(obs(NOW - HOUR, Fact::Offered(true)));
        let a = assess(&sorted(v), NOW, &ModelParams::default(), &Trust::full());
        assert!((50..80).contains(&a.score), "{a:?}");
        assert_eq!(a.label, Label::Limited);
        assert!(
            a.evidence
                .iter()
                .any(|e| e.feature == Feature::CapacityErrorRatio && e.value > 0.2)
        );
        // ten launches and one offering (a quarter of an observation) over ten hours
        assert!(a.confidence > 0.4 && a.confidence < 1.0, "{a:?}");
    }

    #[test]
    fn only_successes_is_available_and_only_capacity_errors_is_unavailable() {
        let ok: Vec<_> = (0..6)
            .map(|i| launch(NOW - i * HOUR, true, ErrorClass::None, Some(60_000)))
            .collect();
        let a = assess(&sorted(ok), NOW, &ModelParams::default(), &Trust::full());
        // six hours of successes: Available, held short of 100 by the prior
        assert_eq!(a.label, Label::Available, "{a:?}");
        assert!((80..100).contains(&a.score), "{a:?}");
        let bad: Vec<_> = (0..6)
            .map(|i| launch(NOW - i * HOUR, false, ErrorClass::Capacity, None))
            .collect();
        let a = assess(&sorted(bad), NOW, &ModelParams::default(), &Trust::full());
        assert_eq!(a.label, Label::Unavailable, "{a:?}");
        assert!(a.score <= 20, "{a:?}");
        assert_eq!(a.evidence[0].feature, Feature::LaunchSuccessRate);
        assert_eq!(a.evidence[1].feature, Feature::CapacityErrorRatio);
        assert!((a.evidence[1].value - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_fresh_capacity_error_outweighs_hours_of_successes_only_with_the_recent_outcome_on() {
        // six hours of hourly successes, then a capacity error a minute ago: the stock just ran out
        let mut obs: Vec<_> = (1..=6)
            .map(|i| launch(NOW - i * HOUR, true, ErrorClass::None, Some(60_000)))
            .collect();
        obs.push(launch(NOW - 60_000, false, ErrorClass::Capacity, None));
        let obs = sorted(obs);
        let off = ModelParams::default();
        let before = assess(&obs, NOW, &off, &Trust::full());
        // the first version averages it away
        assert!(before.score >= 60, "{before:?}");
        assert!(
            !before
                .evidence
                .iter()
                .any(|e| e.feature == Feature::RecentOutcome)
        );
        let on = ModelParams {
            weights: FeatureWeights {
                recent_outcome: 80.0,
                ..FeatureWeights::default()
            },
            ..ModelParams::default()
        };
        let now = assess(&obs, NOW, &on, &Trust::full());
        assert_eq!(now.label, Label::Unavailable, "{now:?}");
        assert!(
            now.evidence
                .iter()
                .any(|e| e.feature == Feature::RecentOutcome && e.contribution < 0.0)
        );
        // the error fades: four half lives later (no new evidence) the averages speak again
        let later = assess(&obs, NOW + 2 * HOUR, &on, &Trust::full());
        assert!(later.score > now.score + 20, "{later:?} vs {now:?}");
        // and a success after the error lifts the key at once
        let mut recovered = obs.clone();
        recovered.push(launch(NOW, true, ErrorClass::None, Some(60_000)));
        let up = assess(&sorted(recovered), NOW, &on, &Trust::full());
        assert!(up.score >= 75 && up.label != Label::Unavailable, "{up:?}");
    }

    #[test]
    fn one_signal_stays_near_the_prior_and_is_labelled_unknown() {
        let p = ModelParams::default();
        let one = |o: Observation| assess(&[o], NOW, &p, &Trust::full());
        // one probe success: not 100
        let a = one(launch(NOW, true, ErrorClass::None, Some(60_000)));
        assert!((55..80).contains(&a.score), "{a:?}");
        assert_eq!(a.label, Label::Unknown, "{a:?}");
        // one offering (on a spot key, say): it exists, nothing more
        let a = one(obs(NOW, Fact::Offered(true)));
        assert!((50..60).contains(&a.score), "{a:?}");
        assert_eq!(a.label, Label::Unknown, "{a:?}");
        // one open incident: not 0
        let a = one(obs(
            NOW,
            Fact::Status {
                incident: "inc-1".into(),
                severity: StatusSeverity::Major,
                resolved: false,
            },
        ));
        assert!((30..50).contains(&a.score), "{a:?}");
        assert_eq!(a.label, Label::Unknown, "{a:?}");
        // one small capacity-block offer: not 22 Unavailable
        let a = one(obs(NOW, Fact::CapacityBlock { instances: 1 }));
        assert!(a.score >= 30, "{a:?}");
        assert_eq!(a.label, Label::Unknown, "{a:?}");
        // without shrinkage the same signal reads 100
        let raw = ModelParams {
            verdict: VerdictPolicy {
                prior_weight: 0.0,
                ..VerdictPolicy::default()
            },
            ..ModelParams::default()
        };
        let a = assess(
            &[launch(NOW, true, ErrorClass::None, Some(60_000))],
            NOW,
            &raw,
            &Trust::full(),
        );
        assert_eq!(a.score, 100);
    }

    #[test]
    fn a_type_not_offered_scores_near_zero_until_offered_again() {
        let p = ModelParams::default();
        let mut v: Vec<_> = (1..6)
            .map(|i| launch(NOW - i * HOUR, true, ErrorClass::None, Some(60_000)))
            .collect();
        v.push(obs(NOW - 5 * HOUR - 1, Fact::Offered(true)));
        v.push(obs(NOW, Fact::Offered(false)));
        let a = assess(&sorted(v.clone()), NOW, &p, &Trust::full());
        assert!(f64::from(a.score) <= WITHDRAWN_MAX, "{a:?}");
        v.push(obs(NOW + 1, Fact::Offered(true)));
        let a = assess(&sorted(v), NOW + 1, &p, &Trust::full());
        assert!(a.score >= 80, "{a:?}");
        let a = assess(&[obs(NOW, Fact::Offered(false))], NOW, &p, &Trust::full());
        assert!(f64::from(a.score) <= WITHDRAWN_MAX, "{a:?}");
    }

    /// A poll every 5 minutes for the hour up to `NOW`, each observing `fact`.
    fn hour_of_polls(fact: Fact) -> Vec<Observation> {
        (0..12)
            .map(|i| obs(NOW - i * 5 * 60_000, fact.clone()))
            .collect()
    }

    #[test]
    fn a_providers_listing_is_strong_evidence_either_way_and_the_latest_decides() {
        let p = ModelParams::default();
        let polls = |available: bool| hour_of_polls(Fact::Available(available));
        let with = assess(&sorted(polls(true)), NOW, &p, &Trust::full());
        let without = assess(&sorted(polls(false)), NOW, &p, &Trust::full());
        assert_eq!(with.label, Label::Available, "{with:?}");
        assert_eq!(without.label, Label::Unavailable, "{without:?}");
        // one source and one feature: known, not certain
        assert!(with.confidence > p.verdict.unknown_below, "{with:?}");
        assert_eq!(with.evidence[0].feature, Feature::ListedAvailability);
        assert!(with.evidence[0].contribution > 0.0 && without.evidence[0].contribution < 0.0);
        // the capacity went: the newest listing says so and the score drops at once
        let mut gone = polls(true);
        gone.push(obs(NOW + 1, Fact::Available(false)));
        let after = assess(&sorted(gone), NOW + 1, &p, &Trust::full());
        assert!(after.score < 50, "{after:?}");
    }

    #[test]
    fn marketplace_stock_is_weak_evidence_that_ranks_high_above_none() {
        let p = ModelParams::default();
        let polls = |level: StockLevel| hour_of_polls(Fact::Marketplace(level));
        let scores: Vec<_> = [
            StockLevel::High,
            StockLevel::Medium,
            StockLevel::Low,
            StockLevel::None,
        ]
        .into_iter()
        .map(|level| assess(&sorted(polls(level)), NOW, &p, &Trust::full()))
        .collect();
        assert!(scores.windows(2).all(|w| w[0].raw > w[1].raw), "{scores:?}");
        assert_eq!(scores[0].evidence[0].feature, Feature::MarketplaceStock);
        // weak: the same polls of a provider's own listing move the score further from the
        // prior, and with more confidence
        let listed = |yes: bool| hour_of_polls(Fact::Available(yes));
        let strong_up = assess(&sorted(listed(true)), NOW, &p, &Trust::full());
        let strong_down = assess(&sorted(listed(false)), NOW, &p, &Trust::full());
        assert!(
            strong_up.raw > scores[0].raw,
            "{strong_up:?} {:?}",
            scores[0]
        );
        assert!(
            strong_down.raw < scores[3].raw,
            "{strong_down:?} {:?}",
            scores[3]
        );
        assert!(strong_up.confidence > scores[0].confidence);
        // next to launch evidence, a marketplace "none" pulls less than a listing "no"
        let mut v: Vec<_> = (0..6)
            .map(|i| launch(NOW - i * HOUR, true, ErrorClass::None, Some(60_000)))
            .collect();
        let mut with_market = v.clone();
        with_market.push(obs(NOW, Fact::Marketplace(StockLevel::None)));
        v.push(obs(NOW, Fact::Available(false)));
        let market = assess(&sorted(with_market), NOW, &p, &Trust::full());
        let listing = assess(&sorted(v), NOW, &p, &Trust::full());
        assert!(market.raw > listing.raw, "{market:?} {listing:?}");
    }

    #[test]
    fn keys_without_listings_score_bit_for_bit_as_before_the_feature() {
        // the listed-availability weight never reaches a key without availability signals:
        // neither its base nor its confidence moves, whatever the weight
        let mut v: Vec<_> = (0..6)
            .map(|i| {
                launch(
                    NOW - i * HOUR,
                    i % 3 != 0,
                    ErrorClass::Capacity,
                    Some(60_000),
                )
            })
            .collect();
        v.push(obs(NOW - HOUR, Fact::Offered(true)));
        v.push(obs(NOW - 2 * HOUR, Fact::SpotPrice(3.2)));
        let v = sorted(v);
        let base = assess(&v, NOW, &ModelParams::default(), &Trust::full());
        for weight in [0.0, 1.0, 40.0, 1e6] {
            let mut p = ModelParams::default();
            p.weights.availability = weight;
            assert_eq!(assess(&v, NOW, &p, &Trust::full()), base, "weight {weight}");
            let mut p = ModelParams::default();
            p.weights.marketplace = weight;
            assert_eq!(assess(&v, NOW, &p, &Trust::full()), base, "weight {weight}");
        }
        // the covered weight is the old total (sum of the eight others, in order)
        let w = FeatureWeights::default();
        let old = w.success
            + w.capacity_errors
            + w.latency
            + w.spot
            + w.reservable
            + w.catalog
            + w.status
            + w.recent_outcome;
        assert_eq!(w.total_without_listed().to_bits(), old.to_bits());
    }

    #[test]
    fn failures_that_say_nothing_about_stock_are_not_attempts() {
        let p = ModelParams::default();
        let ok: Vec<_> = (0..6)
            .map(|i| launch(NOW - i * HOUR, true, ErrorClass::None, Some(60_000)))
            .collect();
        let base = assess(&sorted(ok.clone()), NOW, &p, &Trust::full());
        for class in [
            ErrorClass::Price,
            ErrorClass::NotOffered,
            ErrorClass::Unknown,
            ErrorClass::Quota,
        ] {
            let mut v = ok.clone();
            v.extend((0..6).map(|i| launch(NOW - i * HOUR - 1, false, class, None)));
            let a = assess(&sorted(v), NOW, &p, &Trust::full());
            assert_eq!(a.score, base.score, "{class}: {a:?}");
        }
    }

    #[test]
    fn no_data_is_neutral_with_zero_confidence() {
        let a = assess(&[], NOW, &ModelParams::default(), &Trust::full());
        assert_eq!((a.score, a.confidence), (50, 0.0));
        assert!(a.evidence.is_empty());
    }

    #[test]
    fn slow_provisioning_against_own_history_lowers_the_score() {
        let mut v: Vec<_> = (2..10)
            .map(|i| launch(NOW - i * HOUR, true, ErrorClass::None, Some(60_000)))
            .collect();
        let steady = assess(
            &sorted(v.clone()),
            NOW,
            &ModelParams::default(),
            &Trust::full(),
        );
        v.push(launch(NOW, true, ErrorClass::None, Some(600_000)));
        v.push(launch(
            NOW - HOUR / 2,
            true,
            ErrorClass::None,
            Some(600_000),
        ));
        let slow = assess(&sorted(v), NOW, &ModelParams::default(), &Trust::full());
        assert!(slow.raw < steady.raw, "{slow:?} vs {steady:?}");
        assert!(
            slow.evidence
                .iter()
                .any(|e| e.feature == Feature::ProvisioningLatency && e.contribution < 0.0)
        );
    }

    fn fact_strategy() -> impl Strategy<Value = Fact> {
        let class = prop::sample::select(ErrorClass::ALL.to_vec());
        prop_oneof![
            (
                any::<bool>(),
                class.clone(),
                prop::option::of(1_000u32..900_000)
            )
                .prop_map(|(ok, class, ms)| {
                    if ok {
                        Fact::Launch {
                            succeeded: true,
                            class: ErrorClass::None,
                            provisioning_ms: ms,
                        }
                    } else {
                        let class = if class == ErrorClass::None {
                            ErrorClass::Capacity
                        } else {
                            class
                        };
                        Fact::Launch {
                            succeeded: false,
                            class,
                            provisioning_ms: None,
                        }
                    }
                }),
            (0u32..4).prop_map(|h| Fact::Quota { headroom: h }),
            (1.0f64..50.0).prop_map(Fact::SpotPrice),
            (1u8..=10).prop_map(Fact::Placement),
            (0u8..=4).prop_map(Fact::Advisory),
            prop::sample::select(InstanceEventKind::ALL.to_vec()).prop_map(Fact::Instance),
            (1u32..16).prop_map(|n| Fact::CapacityBlock { instances: n }),
            any::<bool>().prop_map(Fact::Offered),
            (
                0u8..3,
                prop::sample::select(StatusSeverity::ALL.to_vec()),
                any::<bool>()
            )
                .prop_map(|(i, severity, resolved)| Fact::Status {
                    incident: format!("feed/{i}"),
                    severity,
                    resolved,
                }),
            (
                prop::sample::select(CrowdReportKind::ALL.to_vec()),
                prop::sample::select(vec![ErrorClass::Capacity, ErrorClass::None])
            )
                .prop_map(|(kind, class)| Fact::Crowd { kind, class }),
        ]
    }

    fn observation_strategy() -> impl Strategy<Value = Observation> {
        (
            0i64..48 * HOUR,
            fact_strategy(),
            prop::sample::select(SignalSource::ALL.to_vec()),
            prop::option::of(0u8..4),
        )
            .prop_map(|(age, fact, source, tenant)| Observation {
                at_ms: NOW - age,
                source,
                tenant: tenant.map(|t| TenantHash::parse("tenant", &format!("t{t}")).unwrap()),
                fact,
            })
    }

    fn window_strategy() -> impl Strategy<Value = Vec<Observation>> {
        prop::collection::vec(observation_strategy(), 0..60).prop_map(sorted)
    }

    fn params_strategy() -> impl Strategy<Value = ModelParams> {
        (1u64..48, 0.0f64..10.0, 0.0f64..25.0, 0.0f64..8.0).prop_map(|(h, cap, max, k)| {
            ModelParams {
                verdict: VerdictPolicy {
                    half_life: std::time::Duration::from_secs(h * 3600),
                    stale_after: std::time::Duration::from_secs(2 * h * 3600),
                    prior_weight: k,
                    ..VerdictPolicy::default()
                },
                tenant_cap_points: cap,
                crowd_max_points: max,
                evidence_items: 4,
                weights: FeatureWeights::default(),
                recent_half_life: DEFAULT_RECENT_HALF_LIFE,
            }
        })
    }

    /// A key in stock: probes succeeded every hour of the last six, offered.
    fn in_stock() -> Vec<Observation> {
        let mut v: Vec<_> = (0..6)
            .map(|h| launch(NOW - h * HOUR, true, ErrorClass::None, Some(90_000)))
            .collect();
        v.push(obs(NOW - HOUR, Fact::Offered(true)));
        v
    }

    fn false_failures(tenant: &str, n: i64) -> Vec<Observation> {
        (0..n)
            .map(|i| {
                from_tenant(
                    NOW - i * 1_000,
                    tenant,
                    Fact::Launch {
                        succeeded: false,
                        class: ErrorClass::Capacity,
                        provisioning_ms: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn a_tenants_false_launch_failures_count_as_a_capped_opinion_not_as_probes() {
        let params = ModelParams::default();
        let honest = assess(&sorted(in_stock()), NOW, &params, &Trust::full());
        let mut attacked = in_stock();
        attacked.extend(false_failures("liar", 500));
        let attacked = assess(&sorted(attacked), NOW, &params, &Trust::full());
        assert_eq!(honest.label, Label::Available, "{honest:?}");
        assert_eq!(attacked.label, Label::Available, "{attacked:?}");
        let moved = honest.raw - attacked.raw;
        assert!(
            (0.0..=params.tenant_cap_points).contains(&moved),
            "moved {moved}"
        );
        // against six fresh probe successes the contrary opinion counts for almost nothing
        assert!(moved < 0.5, "moved {moved}");
    }

    #[test]
    fn many_tenants_together_move_a_score_at_most_the_crowd_bound() {
        let params = ModelParams::default();
        // no first-party evidence at all: the crowd bound is all that holds
        let quiet = vec![obs(NOW - HOUR, Fact::Offered(true))];
        let before = assess(&quiet, NOW, &params, &Trust::full());
        let mut sybil = quiet.clone();
        for t in 0..50 {
            sybil.extend(false_failures(&format!("sybil{t}"), 20));
        }
        let after = assess(&sorted(sybil), NOW, &params, &Trust::full());
        let moved = before.raw - after.raw;
        assert!(moved > 0.0, "the crowd must still count for something");
        assert!(moved <= params.crowd_max_points + 1e-9, "moved {moved}");
        // against probe evidence the same crowd moves it less
        let before = assess(&sorted(in_stock()), NOW, &params, &Trust::full());
        let mut sybil = in_stock();
        for t in 0..50 {
            sybil.extend(false_failures(&format!("sybil{t}"), 20));
        }
        let after = assess(&sorted(sybil), NOW, &params, &Trust::full());
        let moved = before.raw - after.raw;
        assert!(moved <= 0.15 * params.crowd_max_points, "moved {moved}");
    }

    fn trusting(pairs: &[(&str, f64)]) -> Trust {
        Trust::new(
            1.0,
            pairs
                .iter()
                .map(|(t, v)| {
                    (
                        TenantHash::parse("tenant", t).unwrap().as_str().to_owned(),
                        *v,
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn a_tenants_trust_scales_how_far_its_reports_move_a_score() {
        // only the catalog: nothing first-party to contradict, the crowd term is all there is
        let params = ModelParams::default();
        let quiet = vec![obs(NOW - HOUR, Fact::Offered(true))];
        let before = assess(&quiet, NOW, &params, &Trust::full());
        let mut reported = quiet.clone();
        reported.extend(false_failures("reporter", 20));
        let reported = sorted(reported);
        let moved = |trust: f64| {
            before.raw - assess(&reported, NOW, &params, &trusting(&[("reporter", trust)])).raw
        };
        let full = moved(1.0);
        assert!(full > 0.9 * params.tenant_cap_points, "moved {full}");
        assert!((moved(0.25) - 0.25 * full).abs() < 1e-9, "{}", moved(0.25));
        assert!(moved(0.0).abs() < 1e-12);
        // the same reports from another tenant are not touched by the reporter's trust
        let mut other = quiet;
        other.extend(false_failures("someone-else", 20));
        let other = assess(
            &sorted(other),
            NOW,
            &params,
            &trusting(&[("reporter", 0.0)]),
        );
        assert!((before.raw - other.raw - full).abs() < 1e-9);
    }

    #[test]
    fn only_plain_capacity_opinions_of_tenants_are_checked() {
        let report = |kind| crowd(NOW, "t", kind);
        assert_eq!(
            checkable_opinion(&report(CrowdReportKind::Available)),
            Some(1.0)
        );
        assert_eq!(
            checkable_opinion(&report(CrowdReportKind::Unavailable)),
            Some(-1.0)
        );
        assert_eq!(
            checkable_opinion(&report(CrowdReportKind::Interrupted)),
            None
        );
        assert_eq!(checkable_opinion(&false_failures("t", 1)[0]), Some(-1.0));
        let quota = from_tenant(
            NOW,
            "t",
            Fact::Launch {
                succeeded: false,
                class: ErrorClass::Quota,
                provisioning_ms: None,
            },
        );
        assert_eq!(checkable_opinion(&quota), None);
        // a probe is first-party evidence, not an opinion
        assert_eq!(
            checkable_opinion(&launch(NOW, true, ErrorClass::None, None)),
            None
        );
        // and the assessment exposes the verdict reports are checked against
        let a = assess(
            &sorted(in_stock()),
            NOW,
            &ModelParams::default(),
            &Trust::full(),
        );
        assert!(a.first_party > 0.85, "{a:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// More capacity errors never raise a score.
        #[test]
        fn more_capacity_errors_never_raise_a_score(
            window in window_strategy(),
            extra in prop::collection::vec(0i64..48 * HOUR, 1..10),
            params in params_strategy(),
        ) {
            let before = assess(&window, NOW, &params, &Trust::full());
            let mut more = window.clone();
            more.extend(extra.iter().map(|age| launch(NOW - age, false, ErrorClass::Capacity, None)));
            let after = assess(&sorted(more), NOW, &params, &Trust::full());
            prop_assert!(after.raw <= before.raw + 1e-9, "{} > {}", after.raw, before.raw);
            prop_assert!(after.score <= before.score);
        }

        /// Quota and permission errors (launches and crowd reports) never change a score.
        #[test]
        fn quota_and_permission_errors_never_change_a_score(
            window in window_strategy(),
            extra in prop::collection::vec(
                (0i64..48 * HOUR, prop::sample::select(vec![ErrorClass::Quota, ErrorClass::Permission]), any::<bool>(), 0u32..8),
                1..10),
            params in params_strategy(),
        ) {
            let before = assess(&window, NOW, &params, &Trust::full());
            let mut more = window.clone();
            for (age, class, as_report, headroom) in extra {
                more.push(launch(NOW - age, false, class, None));
                more.push(obs(NOW - age, Fact::Quota { headroom }));
                if as_report {
                    let mut r = crowd(NOW - age, "t9", CrowdReportKind::Unavailable);
                    r.fact = Fact::Crowd { kind: CrowdReportKind::Unavailable, class };
                    more.push(r);
                }
            }
            let after = assess(&sorted(more), NOW, &params, &Trust::full());
            prop_assert_eq!(after, before);
        }

        /// No data (or only data that says nothing about capacity) gives confidence 0.
        #[test]
        fn no_capacity_data_gives_zero_confidence(
            quota in prop::collection::vec((0i64..48 * HOUR, 0u32..8), 0..10),
            params in params_strategy(),
        ) {
            let v: Vec<_> = quota.into_iter().map(|(age, h)| obs(NOW - age, Fact::Quota { headroom: h })).collect();
            let a = assess(&sorted(v), NOW, &params, &Trust::full());
            prop_assert_eq!(a.confidence, 0.0);
        }

        /// One tenant's reports, launches and forwarded instance events cannot move a score by
        /// more than the cap.
        #[test]
        fn one_tenant_cannot_move_a_score_beyond_the_cap(
            window in window_strategy(),
            reports in prop::collection::vec((0i64..48 * HOUR, fact_strategy()), 1..40),
            params in params_strategy(),
        ) {
            let without = assess(&window, NOW, &params, &Trust::full());
            let mut with = window.clone();
            with.extend(reports.into_iter().map(|(age, fact)| from_tenant(NOW - age, "loud-tenant", fact)));
            let with = assess(&sorted(with), NOW, &params, &Trust::full());
            let cap = params.tenant_cap_points;
            prop_assert!((with.raw - without.raw).abs() <= cap + 1e-9,
                "moved {} > cap {}", (with.raw - without.raw).abs(), cap);
            prop_assert!(f64::from(with.score.abs_diff(without.score)) <= cap.ceil());
        }

        /// A tenant of trust t moves a score at most t times the cap; trust 1 for everyone
        /// (named or by default) is exactly the model without trust.
        #[test]
        fn trust_scales_the_cap_and_full_trust_changes_nothing(
            window in window_strategy(),
            reports in prop::collection::vec((0i64..48 * HOUR, fact_strategy()), 1..40),
            params in params_strategy(),
            trust in 0.0f64..=1.0,
        ) {
            let without = assess(&window, NOW, &params, &Trust::full());
            let mut with = window.clone();
            with.extend(reports.into_iter().map(|(age, fact)| from_tenant(NOW - age, "loud-tenant", fact)));
            let with = sorted(with);
            let scaled = assess(&with, NOW, &params, &trusting(&[("loud-tenant", trust)]));
            let bound = trust * params.tenant_cap_points;
            prop_assert!((scaled.raw - without.raw).abs() <= bound + 1e-9,
                "moved {} > {}", (scaled.raw - without.raw).abs(), bound);
            let named = trusting(&[("loud-tenant", 1.0), ("t0", 1.0), ("t1", 1.0)]);
            prop_assert_eq!(
                assess(&with, NOW, &params, &named),
                assess(&with, NOW, &params, &Trust::full())
            );
        }

        /// However many tenants, at whatever trust, the crowd moves a score at most the crowd
        /// bound (sybils gain nothing from being fresh).
        #[test]
        fn many_tenants_at_any_trust_stay_within_the_crowd_bound(
            window in window_strategy(),
            tenants in 1usize..30,
            trust in 0.0f64..=1.0,
            params in params_strategy(),
        ) {
            // the window without any crowd term: the bound is on what the crowd adds
            let window: Vec<Observation> = window
                .into_iter()
                .filter(|o| o.source != SignalSource::Report && !matches!(o.fact, Fact::Crowd { .. }))
                .collect();
            let fresh = Trust::new(trust, HashMap::new());
            let without = assess(&window, NOW, &params, &fresh);
            let mut with = window.clone();
            for t in 0..tenants {
                with.extend(false_failures(&format!("sybil{t}"), 5));
            }
            let with = assess(&sorted(with), NOW, &params, &fresh);
            prop_assert!((with.raw - without.raw).abs() <= params.crowd_max_points + 1e-9);
        }

        /// Whatever the input, the output is well formed.
        #[test]
        fn output_is_always_well_formed(window in window_strategy(), params in params_strategy()) {
            let a = assess(&window, NOW, &params, &Trust::full());
            prop_assert!((0.0..=100.0).contains(&a.raw));
            prop_assert!(a.score <= 100);
            prop_assert_eq!(a.label, params.verdict.label(a.score, a.confidence));
            prop_assert!((0.0..=1.0).contains(&a.confidence));
            prop_assert!(a.evidence.len() <= params.evidence_items);
            for e in &a.evidence {
                prop_assert!(e.value.is_finite() && e.contribution.is_finite());
            }
        }
    }
}
