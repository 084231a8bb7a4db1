//! Fitting the scoring model's prior and feature weights on the library (`capsight-eval fit`).
//!
//! Every capsight arm of a run exports the signals its pipeline stored ([`SIGNALS_FILE`], times
//! in simulated seconds) and the served-score samples with the true stock ([`SAMPLES_FILE`]).
//! [`Dataset::load`] reads every such arm under the given run directories; [`evaluate`] replays
//! the signals through the scorer's own model ([`capsight_scorer::model::assess`], the key's
//! window as the scorer keeps it, event time) for a [`Candidate`], serves each sample point as
//! the gateway would ([`VerdictPolicy::served_verdict`]: aged confidence, unknown past the
//! horizon) and compares score / 100 with whether the key truly had stock (Brier score).
//!
//! [`fit`] is a deterministic coordinate descent over fixed grids (each pair weighs the same, so
//! no pair dominates the objective); [`cross_validate`] fits on every pair but one and measures
//! on the one left out, which is what says whether a fit generalizes or is tuned to a scenario.
//! Contract: the same files give the same fit, bit for bit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use capsight_clickhouse::rows::SignalRow;
use capsight_proto::domain::{CapacityKey, Label, Market, Score, VerdictPolicy};
use capsight_scorer::config::ScorerSettings;
use capsight_scorer::model::{self, FeatureWeights, ModelParams, Trust};
use capsight_scorer::observation::Observation;
use capsight_tenancy::trust::TrustSettings;
use chrono::DateTime;
use serde::{Deserialize, Serialize};

use crate::replay::Sample;

/// The exported signals of one arm, one JSON [`FitSignal`] per line.
pub const SIGNALS_FILE: &str = "signals.jsonl";
/// The served-score samples of one arm (JSON array of [`Sample`]).
pub const SAMPLES_FILE: &str = "samples.json";

/// One stored signal with its observation time in simulated seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitSignal {
    /// Simulated seconds since the world's start.
    pub t: f64,
    /// The row as stored.
    pub row: SignalRow,
}

/// Why the fitting data cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A file does not parse.
    #[error("{path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// No arm with exported signals under the given directories.
    #[error("no arm with {SIGNALS_FILE} and {SAMPLES_FILE} under {0}")]
    Empty(String),
    /// Cross-validation needs at least two pairs.
    #[error("cross-validation needs at least two pairs, found {0}")]
    TooFewPairs(usize),
}

/// One key's observations in time order.
#[derive(Debug)]
struct Series {
    key: CapacityKey,
    obs: Vec<Observation>,
}

/// A sample point: a key at a time, and whether it truly had stock then.
#[derive(Debug)]
struct Point {
    series: usize,
    t_ms: i64,
    /// Observations of the series at or before `t_ms`.
    upto: usize,
    stocked: bool,
}

/// One arm's replayable data.
#[derive(Debug)]
struct Arm {
    series: Vec<Series>,
    points: Vec<Point>,
}

/// One library pair: every arm found for it (repeats, ablations).
#[derive(Debug)]
pub struct Pair {
    /// The pair's name (its directory in the suite output).
    pub name: String,
    arms: Vec<Arm>,
}

impl Pair {
    /// Sample points over all arms.
    pub fn points(&self) -> usize {
        self.arms.iter().map(|a| a.points.len()).sum()
    }
}

/// Every pair found, in name order.
#[derive(Debug)]
pub struct Dataset {
    /// Pairs.
    pub pairs: Vec<Pair>,
    /// Signals that did not convert to an observation (skipped).
    pub skipped_rows: usize,
}

impl Dataset {
    /// Loads every arm directory holding both files under `roots` (a suite's output: the pair
    /// is the directory above `repeat-N`; a single run's output: the root's own name).
    pub fn load(roots: &[PathBuf]) -> Result<Self, FitError> {
        let mut dirs = Vec::new();
        for root in roots {
            find_arms(root, &mut dirs)?;
        }
        dirs.sort();
        let mut pairs: BTreeMap<String, Vec<Arm>> = BTreeMap::new();
        let mut skipped_rows = 0;
        for dir in dirs {
            let (arm, skipped) = load_arm(&dir)?;
            skipped_rows += skipped;
            pairs.entry(pair_name(&dir)).or_default().push(arm);
        }
        if pairs.is_empty() {
            let names: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
            return Err(FitError::Empty(names.join(", ")));
        }
        Ok(Self {
            pairs: pairs
                .into_iter()
                .map(|(name, arms)| Pair { name, arms })
                .collect(),
            skipped_rows,
        })
    }
}

fn find_arms(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), FitError> {
    if dir.join(SIGNALS_FILE).is_file() && dir.join(SAMPLES_FILE).is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|source| FitError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            find_arms(&entry.path(), out)?;
        }
    }
    Ok(())
}

/// `<pair>/repeat-N/<arm>` -> `<pair>`.
fn pair_name(arm_dir: &Path) -> String {
    let repeat = arm_dir.parent();
    let pair = repeat.and_then(Path::parent);
    pair.and_then(Path::file_name).map_or_else(
        || arm_dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

fn load_arm(dir: &Path) -> Result<(Arm, usize), FitError> {
    let path = dir.join(SIGNALS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| FitError::Io {
        path: path.clone(),
        source,
    })?;
    let mut by_key: BTreeMap<String, Vec<Observation>> = BTreeMap::new();
    let mut skipped = 0;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let s: FitSignal = serde_json::from_str(line).map_err(|e| FitError::Parse {
            path: path.clone(),
            message: format!("line {}: {e}", i + 1),
        })?;
        let Ok(mut obs) = Observation::from_row(&s.row) else {
            skipped += 1;
            continue;
        };
        obs.at_ms = sim_ms(s.t);
        let r = &s.row;
        let key = format!(
            "{}/{}/{}/{}/{}",
            r.provider, r.region, r.zone_id, r.instance_type, r.market
        );
        by_key.entry(key).or_default().push(obs);
    }
    let mut series = Vec::new();
    let mut index = BTreeMap::new();
    for (name, mut obs) in by_key {
        let Ok(key) = name.parse::<CapacityKey>() else {
            skipped += obs.len();
            continue;
        };
        obs.sort_by_key(|o| o.at_ms);
        index.insert(name, series.len());
        series.push(Series { key, obs });
    }
    let path = dir.join(SAMPLES_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| FitError::Io {
        path: path.clone(),
        source,
    })?;
    let samples: Vec<Sample> = serde_json::from_str(&text).map_err(|e| FitError::Parse {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let points = samples
        .iter()
        .filter_map(|s| {
            let i = *index.get(&s.key)?;
            let t_ms = sim_ms(s.t);
            let upto = series[i].obs.partition_point(|o| o.at_ms <= t_ms);
            (upto > 0).then_some(Point {
                series: i,
                t_ms,
                upto,
                stocked: s.stock > 0,
            })
        })
        .collect();
    Ok((Arm { series, points }, skipped))
}

fn sim_ms(t: f64) -> i64 {
    // simulated seconds of a run of a few hours: far inside i64
    (t * 1000.0).round() as i64
}

/// The parameters a fit chooses: a prior per market, the prior's weight, the feature weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Prior score of on-demand keys.
    pub prior_on_demand: f64,
    /// Prior score of spot keys.
    pub prior_spot: f64,
    /// How many first-party observations the prior is worth.
    pub prior_weight: f64,
    /// Feature weights.
    pub weights: FeatureWeights,
    /// Half life of the recent-outcome feature's weight (simulated time).
    pub recent_half_life: Duration,
    /// How fast a served score returns to its market's prior as its evidence ages (simulated
    /// time; 0 = off).
    pub revert_half_life: Duration,
}

impl Default for Candidate {
    /// The shipped defaults: one prior for every market, the first-version weights.
    fn default() -> Self {
        let v = VerdictPolicy::default();
        Self {
            prior_on_demand: v.prior_score,
            prior_spot: v.prior_score,
            prior_weight: v.prior_weight,
            weights: FeatureWeights::default(),
            recent_half_life: model::DEFAULT_RECENT_HALF_LIFE,
            revert_half_life: v.revert_half_life,
        }
    }
}

impl Candidate {
    /// The verdict policy this candidate implies (every other field at its default).
    pub fn verdict(&self) -> VerdictPolicy {
        VerdictPolicy {
            prior_weight: self.prior_weight,
            market_prior: [
                (Market::OnDemand, self.prior_on_demand),
                (Market::Spot, self.prior_spot),
            ]
            .into_iter()
            .collect(),
            revert_half_life: self.revert_half_life,
            ..VerdictPolicy::default()
        }
    }

    /// The candidate as a config file layered over the defaults (durations are production
    /// time: the harness divides them by its time scale).
    pub fn to_toml(&self) -> String {
        let mut out = format!(
            "[verdict]\nprior_weight = {}\nrevert_half_life = \"{}\"\n\n[verdict.market_prior]\non_demand = {}\nspot = {}\n\n[scorer]\nrecent_half_life = \"{}\"\n\n[scorer.weights]\n",
            self.prior_weight,
            humantime_serde::re::humantime::format_duration(self.revert_half_life),
            self.prior_on_demand,
            self.prior_spot,
            humantime_serde::re::humantime::format_duration(self.recent_half_life)
        );
        for (name, w) in self.weights.named() {
            out.push_str(&format!("{name} = {w}\n"));
        }
        out
    }

    fn params(&self) -> BTreeMap<Market, ModelParams> {
        let settings = ScorerSettings {
            weights: self.weights,
            recent_half_life: self.recent_half_life,
            ..ScorerSettings::default()
        };
        let verdict = self.verdict();
        Market::ALL
            .iter()
            .map(|m| (*m, settings.model_params(&verdict.for_market(*m))))
            .collect()
    }
}

/// How well one candidate's served verdicts match the truth on a set of points.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fitness {
    /// Points.
    pub n: usize,
    /// Mean (score / 100 - stocked)².
    pub brier: f64,
    /// Share of points whose key had stock.
    pub base_rate: f64,
    /// Per served label: (points, points whose key had stock).
    pub by_label: BTreeMap<Label, (usize, usize)>,
}

impl Fitness {
    /// The Brier score of always predicting the base rate, `p (1 - p)`.
    pub fn base_brier(&self) -> f64 {
        self.base_rate * (1.0 - self.base_rate)
    }

    /// How far below the base-rate Brier score this one is (1 = perfect, 0 = no better).
    pub fn skill(&self) -> f64 {
        let base = self.base_brier();
        if base > 0.0 {
            1.0 - self.brier / base
        } else {
            0.0
        }
    }

    /// The share of `label`'s points whose key had stock, if any point had that label.
    pub fn stocked_share(&self, label: Label) -> Option<f64> {
        let (n, ok) = *self.by_label.get(&label)?;
        (n > 0).then(|| ok as f64 / n as f64)
    }
}

/// Replays `pair` under `c` and measures its served verdicts.
pub fn evaluate(c: &Candidate, pair: &Pair) -> Fitness {
    let params = c.params();
    let trust = Trust::new(TrustSettings::default().fresh(), Default::default());
    let window_ms = i64::try_from(ScorerSettings::default().window.as_millis()).unwrap_or(i64::MAX);
    let mut f = Fitness::default();
    let (mut sq, mut stocked) = (0.0, 0usize);
    for arm in &pair.arms {
        for p in &arm.points {
            let series = &arm.series[p.series];
            let Some(params) = params.get(&series.key.market) else {
                continue;
            };
            let obs = &series.obs[..p.upto];
            let Some(newest) = obs.last().map(|o| o.at_ms) else {
                continue;
            };
            let from = obs.partition_point(|o| o.at_ms < newest.saturating_sub(window_ms));
            let a = model::assess(&obs[from..], newest, params, &trust);
            let score = Score {
                key: series.key.clone(),
                score: a.score,
                label: a.label,
                confidence: a.confidence,
                evidence: Vec::new(),
                window: Duration::ZERO,
                updated_at: DateTime::from_timestamp_millis(newest).unwrap_or_default(),
                signal_count: 0,
                market_usd_per_hour: None,
            };
            let now = DateTime::from_timestamp_millis(p.t_ms).unwrap_or_default();
            let served = params.verdict.served_verdict(&score, now);
            let label = served.label;
            let y = if p.stocked { 1.0 } else { 0.0 };
            sq += (f64::from(served.score) / 100.0 - y).powi(2);
            stocked += usize::from(p.stocked);
            f.n += 1;
            let e = f.by_label.entry(label).or_default();
            e.0 += 1;
            e.1 += usize::from(p.stocked);
        }
    }
    if f.n > 0 {
        f.brier = sq / f.n as f64;
        f.base_rate = stocked as f64 / f.n as f64;
    }
    f
}

/// The objective: the mean Brier score over `pairs`, each pair weighing the same.
pub fn objective(c: &Candidate, pairs: &[&Pair]) -> f64 {
    let scores: Vec<f64> = pairs
        .iter()
        .map(|p| evaluate(c, p))
        .filter(|f| f.n > 0)
        .map(|f| f.brier)
        .collect();
    if scores.is_empty() {
        return f64::INFINITY;
    }
    scores.iter().sum::<f64>() / scores.len() as f64
}

/// One coordinate of the search and its grid.
#[derive(Debug, Clone, Copy)]
enum Coord {
    PriorOnDemand,
    PriorSpot,
    PriorWeight,
    RecentHalfLife,
    RevertHalfLife,
    Weight(usize),
}

const PRIOR_GRID: &[f64] = &[
    20.0, 30.0, 40.0, 50.0, 55.0, 60.0, 65.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0,
];
const PRIOR_WEIGHT_GRID: &[f64] = &[0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0];
const WEIGHT_GRID: &[f64] = &[
    0.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0, 80.0, 120.0, 160.0,
];
/// Recent-outcome half lives, in simulated minutes.
const RECENT_HALF_LIFE_GRID: &[f64] = &[5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 240.0];
/// Served-score reversion half lives, in simulated minutes (0 = off).
const REVERT_HALF_LIFE_GRID: &[f64] = &[0.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 240.0];
/// Most passes over every coordinate.
const MAX_PASSES: usize = 4;

impl Coord {
    fn all() -> Vec<Self> {
        let mut v = vec![Self::PriorOnDemand, Self::PriorSpot, Self::PriorWeight];
        v.extend((0..8).map(Self::Weight));
        v.push(Self::RecentHalfLife);
        v.push(Self::RevertHalfLife);
        v
    }

    fn grid(self) -> &'static [f64] {
        match self {
            Self::PriorOnDemand | Self::PriorSpot => PRIOR_GRID,
            Self::PriorWeight => PRIOR_WEIGHT_GRID,
            Self::RecentHalfLife => RECENT_HALF_LIFE_GRID,
            Self::RevertHalfLife => REVERT_HALF_LIFE_GRID,
            Self::Weight(_) => WEIGHT_GRID,
        }
    }

    fn set(self, c: &Candidate, v: f64) -> Candidate {
        let mut c = c.clone();
        match self {
            Self::PriorOnDemand => c.prior_on_demand = v,
            Self::PriorSpot => c.prior_spot = v,
            Self::PriorWeight => c.prior_weight = v,
            Self::RecentHalfLife => c.recent_half_life = Duration::from_secs_f64(v * 60.0),
            Self::RevertHalfLife => c.revert_half_life = Duration::from_secs_f64(v * 60.0),
            Self::Weight(i) => {
                let w = &mut c.weights;
                let slot = match i {
                    0 => &mut w.success,
                    1 => &mut w.capacity_errors,
                    2 => &mut w.latency,
                    3 => &mut w.spot,
                    4 => &mut w.reservable,
                    5 => &mut w.catalog,
                    6 => &mut w.status,
                    _ => &mut w.recent_outcome,
                };
                *slot = v;
            }
        }
        c
    }
}

/// The candidate with the lowest [`objective`] on `pairs` found by coordinate descent from the
/// defaults, and its objective. Ties keep the earlier value (the defaults first).
pub fn fit(pairs: &[&Pair]) -> (Candidate, f64) {
    let mut best = Candidate::default();
    let mut best_obj = objective(&best, pairs);
    for _ in 0..MAX_PASSES {
        let before = best_obj;
        for coord in Coord::all() {
            for v in coord.grid() {
                let c = coord.set(&best, *v);
                if c.weights.total() <= 0.0 || c == best {
                    continue;
                }
                let obj = objective(&c, pairs);
                if obj < best_obj - 1e-9 {
                    best = c;
                    best_obj = obj;
                }
            }
        }
        if before - best_obj < 1e-6 {
            break;
        }
    }
    (best, best_obj)
}

/// One held-out pair: the defaults and the candidate fitted without it, measured on it.
#[derive(Debug, Clone)]
pub struct Fold {
    /// The pair left out.
    pub pair: String,
    /// The defaults on it.
    pub default: Fitness,
    /// The candidate fitted on the other pairs.
    pub fitted: Candidate,
    /// That candidate on it.
    pub held_out: Fitness,
}

/// Leave-one-pair-out cross-validation.
pub fn cross_validate(data: &Dataset) -> Result<Vec<Fold>, FitError> {
    if data.pairs.len() < 2 {
        return Err(FitError::TooFewPairs(data.pairs.len()));
    }
    let default = Candidate::default();
    Ok(data
        .pairs
        .iter()
        .enumerate()
        .map(|(i, held)| {
            let rest: Vec<&Pair> = data
                .pairs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| p)
                .collect();
            let (fitted, _) = fit(&rest);
            Fold {
                pair: held.name.clone(),
                default: evaluate(&default, held),
                held_out: evaluate(&fitted, held),
                fitted,
            }
        })
        .collect())
}

fn share(f: &Fitness, label: Label) -> String {
    match (f.stocked_share(label), f.by_label.get(&label)) {
        (Some(s), Some((n, _))) => format!("{:.0} % of {n}", 100.0 * s),
        _ => "-".to_owned(),
    }
}

/// The fit report: the fitted candidate, the cross-validation table and each pair's figures
/// under the defaults and the candidate fitted on every pair.
pub fn report(data: &Dataset, folds: &[Fold], fitted: &Candidate) -> String {
    let default = Candidate::default();
    let mut out = String::from("# capsight-eval fit\n\n");
    out.push_str(&format!(
        "{} pairs, {} sample points, {} signals skipped (not convertible).\n\n",
        data.pairs.len(),
        data.pairs.iter().map(Pair::points).sum::<usize>(),
        data.skipped_rows
    ));
    out.push_str("## Fitted on every pair\n\n```toml\n");
    out.push_str(&fitted.to_toml());
    out.push_str("```\n\n## Leave one pair out\n\n");
    out.push_str("Fitted on the other pairs, measured on the pair left out.\n\n");
    out.push_str("| held-out pair | n | base rate | base-rate Brier | default Brier | held-out fitted Brier | default skill | fitted skill |\n|---|---|---|---|---|---|---|---|\n");
    for f in folds {
        out.push_str(&format!(
            "| {} | {} | {:.2} | {:.3} | {:.3} | {:.3} | {:.0} % | {:.0} % |\n",
            f.pair,
            f.default.n,
            f.default.base_rate,
            f.default.base_brier(),
            f.default.brier,
            f.held_out.brier,
            100.0 * f.default.skill(),
            100.0 * f.held_out.skill()
        ));
    }
    out.push_str("\n## Served labels against the truth (share of points whose key had stock)\n\n");
    out.push_str("| pair | model | Brier | available | limited | unavailable | unknown |\n|---|---|---|---|---|---|---|\n");
    for p in &data.pairs {
        for (name, c) in [("default", &default), ("fitted", fitted)] {
            let f = evaluate(c, p);
            out.push_str(&format!(
                "| {} | {name} | {:.3} | {} | {} | {} | {} |\n",
                p.name,
                f.brier,
                share(&f, Label::Available),
                share(&f, Label::Limited),
                share(&f, Label::Unavailable),
                share(&f, Label::Unknown)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_toml_is_a_config_the_scorer_accepts() {
        let c = Candidate {
            prior_on_demand: 80.0,
            prior_spot: 65.0,
            prior_weight: 3.0,
            weights: FeatureWeights {
                latency: 0.0,
                recent_outcome: 40.0,
                ..FeatureWeights::default()
            },
            recent_half_life: Duration::from_secs(600),
            revert_half_life: Duration::from_secs(1200),
        };
        let table: toml::Table = c.to_toml().parse().expect("toml");
        let verdict: VerdictPolicy = table["verdict"].clone().try_into().expect("verdict");
        assert_eq!(verdict.for_market(Market::Spot).prior_score, 65.0);
        assert_eq!(verdict.prior_weight, 3.0);
        assert_eq!(verdict.revert_half_life, c.revert_half_life);
        let weights: FeatureWeights = table["scorer"]["weights"]
            .clone()
            .try_into()
            .expect("weights");
        assert_eq!(weights, c.weights);
        let half_life = table["scorer"]["recent_half_life"]
            .as_str()
            .expect("recent_half_life");
        assert_eq!(
            humantime_serde::re::humantime::parse_duration(half_life).expect("duration"),
            c.recent_half_life
        );
    }

    #[test]
    fn the_shipped_fitted_profile_is_a_valid_config() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config/model-fitted.toml");
        let text = std::fs::read_to_string(&path).expect("deploy/config/model-fitted.toml");
        let table: toml::Table = text.parse().expect("toml");
        let verdict: VerdictPolicy = table["verdict"].clone().try_into().expect("[verdict]");
        verdict.validate().expect("verdict");
        assert!(!verdict.revert_half_life.is_zero(), "{verdict:?}");
        let weights: FeatureWeights = table["scorer"]["weights"]
            .clone()
            .try_into()
            .expect("[scorer.weights]");
        weights.validate().expect("weights");
        assert!(weights.recent_outcome > 0.0, "{weights:?}");
        let half_life = table["scorer"]["recent_half_life"]
            .as_str()
            .expect("half life");
        humantime_serde::re::humantime::parse_duration(half_life).expect("duration");
    }

    /// Keys with nothing but an "offered" signal that always had stock: the fit must raise
    /// the on-demand prior above the default's even chance and lower the Brier score.
    #[test]
    fn fitting_moves_the_prior_toward_the_base_rate() {
        use capsight_proto::domain::SignalSource;
        use capsight_scorer::observation::Fact;
        let arm = |zone: &str| Arm {
            series: vec![Series {
                key: format!("aws/us-east-1/{zone}/p5.48xlarge/on_demand")
                    .parse()
                    .expect("key"),
                obs: vec![Observation {
                    at_ms: 0,
                    source: SignalSource::Probe,
                    tenant: None,
                    fact: Fact::Offered(true),
                }],
            }],
            points: (1..10)
                .map(|i| Point {
                    series: 0,
                    t_ms: i * 60_000,
                    upto: 1,
                    stocked: true,
                })
                .collect(),
        };
        let pairs = [
            Pair {
                name: "a".into(),
                arms: vec![arm("use1-az1")],
            },
            Pair {
                name: "b".into(),
                arms: vec![arm("use1-az2")],
            },
        ];
        let refs: Vec<&Pair> = pairs.iter().collect();
        let default = objective(&Candidate::default(), &refs);
        let (fitted, obj) = fit(&refs);
        assert!(fitted.prior_on_demand > 50.0, "{fitted:?}");
        assert!(obj < default, "{obj} vs {default}");
        let data = Dataset {
            pairs: Vec::from(pairs),
            skipped_rows: 0,
        };
        let folds = cross_validate(&data).expect("two pairs");
        assert_eq!(folds.len(), 2);
        assert!(folds.iter().all(|f| f.held_out.brier < f.default.brier));
    }

    #[test]
    fn fitness_skill_is_measured_against_the_base_rate() {
        let f = Fitness {
            n: 10,
            brier: 0.08,
            base_rate: 0.8,
            by_label: BTreeMap::new(),
        };
        assert!((f.base_brier() - 0.16).abs() < 1e-12);
        assert!((f.skill() - 0.5).abs() < 1e-12);
    }
}
