//! The report of a run: per arm the time-to-GPU figures, and for capsight arms the verdict
//! quality, detection delays, staleness and the cost of knowing; written as `report.json`,
//! `report.md` and SVG plots (hand-written: a CDF of time-to-running per arm and a reliability
//! diagram).
//!
//! Contract: [`summarize`] is a pure function of one arm's replay, its truth and its probe
//! audit; [`Report::write`] writes every file and the Markdown always holds every section
//! ([`SECTIONS`]), saying "none" where an arm has nothing to show.

use std::{fmt::Write as _, path::Path};

use serde::Serialize;

use crate::{
    metrics::{self, Bin, ChangeKind},
    replay::{Replayed, Strategy},
    world::Truth,
};

/// The sections every `report.md` has, in order.
pub const SECTIONS: &[&str] = &[
    "## Run",
    "## Time to GPU",
    "## Verdict quality",
    "## Preflight",
    "## Detection",
    "## Cost of knowing",
    "## Noise",
    "## Plots",
];

/// Probes of a capsight arm (from its `probe_audit`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProbeSpend {
    /// Probes done.
    pub probes: u64,
    /// Distinct keys probed.
    pub keys: u64,
    /// Spend as recorded (holds are real time, so divided by the time scale).
    pub usd_recorded: f64,
    /// Recorded spend x time scale: what the probes would have cost at simulated pace.
    pub usd: f64,
    /// `usd` per probed key per simulated day.
    pub usd_per_key_day: Option<f64>,
}

/// Verdicts vs outcomes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Calibration {
    /// Pairs.
    pub n: usize,
    /// Success rate per label.
    pub by_label: Vec<Bin>,
    /// Success rate per score decile.
    pub by_decile: Vec<Bin>,
    /// Brier score of score/100.
    pub brier: Option<f64>,
    /// ROC AUC of score -> success.
    pub auc: Option<f64>,
}

fn calibrate(rows: &[(String, u32, bool)]) -> Calibration {
    let probs: Vec<(f64, bool)> = rows
        .iter()
        .map(|(_, s, y)| (f64::from(*s) / 100.0, *y))
        .collect();
    let scores: Vec<(u32, bool)> = rows.iter().map(|(_, s, y)| (*s, *y)).collect();
    Calibration {
        n: rows.len(),
        by_label: metrics::by_group(rows, &["available", "limited", "unknown", "unavailable"]),
        by_decile: metrics::by_decile(&scores),
        brier: metrics::brier(&probs),
        auc: metrics::roc_auc(&probs),
    }
}

/// Preflight decisions vs what followed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PreflightConfusion {
    /// Preflights.
    pub total: usize,
    /// `CAN_LAUNCH`.
    pub can_launch: usize,
    /// `CAN_LAUNCH` followed by a capacity error on that key.
    pub can_launch_then_capacity_error: usize,
    /// `RETRY_WITH_ALTERNATIVES`.
    pub retry_with_alternatives: usize,
    /// `RETRY_WITH_ALTERNATIVES` while the key truly had the stock asked for.
    pub retry_while_stock: usize,
    /// `FIX_ACCOUNT_ISSUE`.
    pub fix_account_issue: usize,
}

/// One detected (or missed) change of the truth.
#[derive(Debug, Clone, Serialize)]
pub struct DetectionEvent {
    /// Key.
    pub key: String,
    /// Simulated minutes since the start.
    pub at_minutes: f64,
    /// Stockout or recovery.
    pub kind: ChangeKind,
    /// Minutes until the served label reflected it; `None` = not before the next change.
    pub delay_minutes: Option<f64>,
}

/// Detection of stockouts and recoveries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Detection {
    /// Every change of a sampled key.
    pub events: Vec<DetectionEvent>,
    /// Stockouts, detected, median delay (minutes).
    pub stockouts: (usize, usize, Option<f64>),
    /// Recoveries, detected, median delay (minutes).
    pub recoveries: (usize, usize, Option<f64>),
    /// Age of the newest evidence of served scores, minutes: p50, p90, max.
    pub staleness_minutes: (Option<f64>, Option<f64>, Option<f64>),
}

/// One arm's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ArmSummary {
    /// Arm name.
    pub arm: String,
    /// Strategy.
    pub strategy: Strategy,
    /// Requests.
    pub requests: usize,
    /// Satisfied before their deadline.
    pub satisfied: usize,
    /// Never satisfied.
    pub unsatisfied: usize,
    /// Failed launch attempts.
    pub failed_attempts: usize,
    /// Failed attempts per satisfied request.
    pub failed_per_success: Option<f64>,
    /// Time from arrival to running, simulated minutes: p50, p90, p99.
    pub minutes_to_running: (Option<f64>, Option<f64>, Option<f64>),
    /// Failed attempts x catalog price x one billed minute.
    pub usd_failed_attempts: f64,
    /// Satisfied requests whose instances were interrupted during the hold.
    pub interrupted: usize,
    /// Requests ended by a harness-side error.
    pub errors: Vec<String>,
    /// Crowd reports submitted.
    pub reports: u64,
    /// Probes (capsight arms).
    pub probes: Option<ProbeSpend>,
    /// Served score of each attempted key vs the attempt's outcome (capsight).
    pub verdicts: Option<Calibration>,
    /// Sampled served scores vs true stock > 0 at that moment (capsight).
    pub sampled: Option<Calibration>,
    /// Preflight (capsight).
    pub preflight: Option<PreflightConfusion>,
    /// Detection (capsight).
    pub detection: Option<Detection>,
    /// Minutes to running of each satisfied request (for the CDF).
    pub times: Vec<f64>,
}

/// One arm's summary.
pub fn summarize(
    arm: &str,
    strategy: Strategy,
    replayed: &Replayed,
    truth: Option<&Truth>,
    probes: Option<ProbeSpend>,
    end_seconds: f64,
) -> ArmSummary {
    let r = &replayed.requests;
    let satisfied = r.iter().filter(|x| x.satisfied).count();
    let failed: usize = r
        .iter()
        .map(crate::replay::RequestResult::failed_attempts)
        .sum();
    let mut times: Vec<f64> = r.iter().filter_map(|x| x.minutes_to_running).collect();
    times.sort_by(f64::total_cmp);
    let usd_failed = r
        .iter()
        .flat_map(|x| &x.attempts)
        .filter(|a| a.outcome != "running")
        .map(|a| a.usd_per_hour * f64::from(a.count) / 60.0)
        .sum::<f64>()
        + 0.0; // an empty sum is -0.0
    let capsight = strategy == Strategy::Capsight;
    let verdicts = capsight.then(|| {
        let rows: Vec<(String, u32, bool)> = r
            .iter()
            .flat_map(|x| &x.attempts)
            .filter(|a| a.outcome == "running" || a.outcome == "capacity")
            .filter_map(|a| {
                a.served
                    .as_ref()
                    .map(|(s, l)| (l.clone(), *s, a.outcome == "running"))
            })
            .collect();
        calibrate(&rows)
    });
    let sampled = capsight.then(|| {
        let rows: Vec<(String, u32, bool)> = replayed
            .samples
            .iter()
            .map(|s| (s.label.clone(), s.score, s.stock > 0))
            .collect();
        calibrate(&rows)
    });
    let preflight = capsight.then(|| {
        let p: Vec<_> = r.iter().flat_map(|x| &x.preflights).collect();
        PreflightConfusion {
            total: p.len(),
            can_launch: p.iter().filter(|x| x.decision == "can_launch").count(),
            can_launch_then_capacity_error: p
                .iter()
                .filter(|x| x.decision == "can_launch" && x.then_capacity_error)
                .count(),
            retry_with_alternatives: p
                .iter()
                .filter(|x| x.decision == "retry_with_alternatives")
                .count(),
            retry_while_stock: p
                .iter()
                .filter(|x| {
                    x.decision == "retry_with_alternatives" && x.stock >= u64::from(x.count)
                })
                .count(),
            fix_account_issue: p
                .iter()
                .filter(|x| x.decision == "fix_account_issue")
                .count(),
        }
    });
    let detection = (capsight && truth.is_some()).then(|| detect(replayed, truth, end_seconds));
    ArmSummary {
        arm: arm.to_owned(),
        strategy,
        requests: r.len(),
        satisfied,
        unsatisfied: r.len() - satisfied,
        failed_attempts: failed,
        failed_per_success: (satisfied > 0).then(|| failed as f64 / satisfied as f64),
        minutes_to_running: (
            metrics::quantile(&times, 0.5),
            metrics::quantile(&times, 0.9),
            metrics::quantile(&times, 0.99),
        ),
        usd_failed_attempts: usd_failed,
        interrupted: r.iter().filter(|x| x.interrupted).count(),
        errors: r.iter().filter_map(|x| x.error.clone()).collect(),
        reports: replayed.reports,
        probes,
        verdicts,
        sampled,
        preflight,
        detection,
        times,
    }
}

fn detect(replayed: &Replayed, truth: Option<&Truth>, end: f64) -> Detection {
    let mut d = Detection::default();
    let Some(truth) = truth else { return d };
    let mut keys: Vec<&String> = replayed.samples.iter().map(|s| &s.key).collect();
    keys.sort();
    keys.dedup();
    let first_sample = replayed.samples.first().map_or(0.0, |s| s.t);
    for key in keys {
        let Some(series) = truth.stock.get(key) else {
            continue;
        };
        let served: Vec<(u64, bool)> = replayed
            .samples
            .iter()
            .filter(|s| &s.key == key)
            .map(|s| (s.t as u64, s.label != "unavailable"))
            .collect();
        let changes = metrics::changes(series, first_sample as u64);
        for (i, (at, kind)) in changes.iter().enumerate() {
            let until = changes.get(i + 1).map_or(end as u64, |(t, _)| *t);
            let delay = metrics::detection_delay(*at, *kind, &served, until);
            d.events.push(DetectionEvent {
                key: key.clone(),
                at_minutes: *at as f64 / 60.0,
                kind: *kind,
                delay_minutes: delay.map(|s| s as f64 / 60.0),
            });
        }
    }
    let tally = |kind: ChangeKind| {
        let ev: Vec<&DetectionEvent> = d.events.iter().filter(|e| e.kind == kind).collect();
        let delays: Vec<f64> = ev.iter().filter_map(|e| e.delay_minutes).collect();
        (ev.len(), delays.len(), metrics::quantile(&delays, 0.5))
    };
    d.stockouts = tally(ChangeKind::Stockout);
    d.recoveries = tally(ChangeKind::Recovery);
    let ages: Vec<f64> = replayed
        .samples
        .iter()
        .map(|s| s.age / 60.0)
        .filter(|a| a.is_finite())
        .collect();
    d.staleness_minutes = (
        metrics::quantile(&ages, 0.5),
        metrics::quantile(&ages, 0.9),
        metrics::quantile(&ages, 1.0),
    );
    d
}

/// The machine a run ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cores: usize,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// `uname -sr`.
    pub os: String,
}

impl Machine {
    /// This machine.
    pub fn here() -> Self {
        let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0);
        let os = std::process::Command::new("uname")
            .arg("-sr")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Self {
            cores,
            memory_gib,
            os,
        }
    }
}

/// Spread of one arm's figures over repeats of the same seed.
#[derive(Debug, Clone, Serialize)]
pub struct Noise {
    /// Arm.
    pub arm: String,
    /// (min, max) satisfied.
    pub satisfied: (usize, usize),
    /// (min, max) failed attempts.
    pub failed_attempts: (usize, usize),
    /// (min, max) p50 minutes to running.
    pub p50_minutes: (Option<f64>, Option<f64>),
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Workload name.
    pub name: String,
    /// The command line.
    pub command: String,
    /// Scenario file.
    pub scenario: String,
    /// Workload file.
    pub workload: String,
    /// Seed.
    pub seed: u64,
    /// Time scale.
    pub time_scale: f64,
    /// Git commit of the harness's checkout.
    pub commit: String,
    /// Machine.
    pub machine: Machine,
    /// Start, UTC.
    pub started: String,
    /// Real seconds the run took.
    pub real_seconds: f64,
    /// Simulated warm-up, minutes.
    pub warmup_minutes: f64,
    /// Per repeat, per arm.
    pub repeats: Vec<Vec<ArmSummary>>,
    /// Spread over repeats.
    pub noise: Vec<Noise>,
}

/// What a capsight-only section says when the run has no capsight arm.
const NO_CAPSIGHT: &str = "none (no capsight arm)";

/// The cells of one table row, each as it displays.
macro_rules! cells {
    ($($cell:expr),* $(,)?) => {
        vec![$($cell.to_string()),*]
    };
}

/// A Markdown table: the header (its columns separated by ` | `), the separator and one line
/// per row.
fn table(s: &mut String, header: &str, rows: impl IntoIterator<Item = Vec<String>>) {
    let _ = writeln!(s, "| {header} |");
    let _ = writeln!(s, "|{}", "---|".repeat(header.split(" | ").count()));
    for row in rows {
        let _ = writeln!(s, "| {} |", row.join(" | "));
    }
}

/// A section only capsight arms fill: "none" without one, else `intro` and a table with a
/// row for each capsight arm that has one.
fn capsight_table(
    s: &mut String,
    caps: &[&ArmSummary],
    intro: Option<&str>,
    header: &str,
    row: impl Fn(&ArmSummary) -> Option<Vec<String>>,
) {
    if caps.is_empty() {
        let _ = writeln!(s, "{NO_CAPSIGHT}");
        return;
    }
    if let Some(intro) = intro {
        let _ = writeln!(s, "{intro}");
    }
    table(s, header, caps.iter().filter_map(|a| row(a)));
}

fn f(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn f2(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
}

impl Report {
    /// The spread of each arm over the repeats.
    pub fn compute_noise(&mut self) {
        let Some(first) = self.repeats.first() else {
            return;
        };
        self.noise = first
            .iter()
            .map(|a| {
                let runs: Vec<&ArmSummary> = self
                    .repeats
                    .iter()
                    .filter_map(|rep| rep.iter().find(|x| x.arm == a.arm))
                    .collect();
                let sat: Vec<usize> = runs.iter().map(|x| x.satisfied).collect();
                let fail: Vec<usize> = runs.iter().map(|x| x.failed_attempts).collect();
                let p50: Vec<f64> = runs.iter().filter_map(|x| x.minutes_to_running.0).collect();
                Noise {
                    arm: a.arm.clone(),
                    satisfied: (
                        sat.iter().copied().min().unwrap_or(0),
                        sat.iter().copied().max().unwrap_or(0),
                    ),
                    failed_attempts: (
                        fail.iter().copied().min().unwrap_or(0),
                        fail.iter().copied().max().unwrap_or(0),
                    ),
                    p50_minutes: (metrics::quantile(&p50, 0.0), metrics::quantile(&p50, 1.0)),
                }
            })
            .collect();
    }

    /// The Markdown report.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Evaluation: {}\n", self.name);
        let _ = writeln!(s, "## Run\n");
        let _ = writeln!(s, "- command: `{}`", self.command);
        let _ = writeln!(
            s,
            "- scenario: `{}`, workload: `{}`",
            self.scenario, self.workload
        );
        let _ = writeln!(
            s,
            "- seed {}, time scale {}x, warm-up {:.0} simulated minutes, {} repeat(s), {:.0} s real",
            self.seed,
            self.time_scale,
            self.warmup_minutes,
            self.repeats.len(),
            self.real_seconds
        );
        let _ = writeln!(
            s,
            "- commit `{}`, machine: {} cores, {} GiB, {}; started {}\n",
            self.commit, self.machine.cores, self.machine.memory_gib, self.machine.os, self.started
        );
        let arms = self.repeats.first().cloned().unwrap_or_default();
        let _ = writeln!(s, "## Time to GPU\n");
        let _ = writeln!(
            s,
            "First repeat. Minutes are simulated; failed attempts are billed one minute at the \
             catalog price.\n"
        );
        table(
            &mut s,
            "arm | requests | satisfied | never satisfied | failed attempts | failed / success | p50 min | p90 min | p99 min | USD on failed attempts | interrupted",
            arms.iter().map(|a| {
                cells![
                    a.arm,
                    a.requests,
                    a.satisfied,
                    a.unsatisfied,
                    a.failed_attempts,
                    f2(a.failed_per_success),
                    f(a.minutes_to_running.0),
                    f(a.minutes_to_running.1),
                    f(a.minutes_to_running.2),
                    format!("{:.2}", a.usd_failed_attempts),
                    a.interrupted,
                ]
            }),
        );
        let errors: Vec<String> = arms
            .iter()
            .flat_map(|a| a.errors.iter().map(move |e| format!("{}: {e}", a.arm)))
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(s, "\nHarness-side errors (counted as never satisfied):\n");
            for e in errors.iter().take(20) {
                let _ = writeln!(s, "- {e}");
            }
        }
        let caps: Vec<&ArmSummary> = arms
            .iter()
            .filter(|a| a.strategy == Strategy::Capsight)
            .collect();
        let _ = writeln!(s, "\n## Verdict quality\n");
        if caps.is_empty() {
            let _ = writeln!(s, "{NO_CAPSIGHT}");
        }
        for a in &caps {
            for (title, c) in [
                (
                    "served score of each attempted key vs the attempt's outcome",
                    &a.verdicts,
                ),
                (
                    "sampled served scores vs true stock > 0 at that moment",
                    &a.sampled,
                ),
            ] {
                let Some(c) = c else { continue };
                let _ = writeln!(
                    s,
                    "**{}**, {title}: n = {}, Brier {}, ROC AUC {}\n",
                    a.arm,
                    c.n,
                    f2(c.brier),
                    f2(c.auc)
                );
                table(
                    &mut s,
                    "group | n | mean score/100 | success rate",
                    c.by_label.iter().chain(&c.by_decile).map(|b| {
                        cells![
                            b.name,
                            b.n,
                            format!("{:.2}", b.mean_predicted),
                            format!("{:.2}", b.success_rate),
                        ]
                    }),
                );
                let _ = writeln!(s);
            }
        }
        let _ = writeln!(s, "## Preflight\n");
        capsight_table(
            &mut s,
            &caps,
            None,
            "arm | preflights | CAN_LAUNCH | ... then capacity error | RETRY_WITH_ALTERNATIVES | ... while stock existed | FIX_ACCOUNT_ISSUE",
            |a| {
                let p = a.preflight.as_ref()?;
                Some(cells![
                    a.arm,
                    p.total,
                    p.can_launch,
                    p.can_launch_then_capacity_error,
                    p.retry_with_alternatives,
                    p.retry_while_stock,
                    p.fix_account_issue,
                ])
            },
        );
        let _ = writeln!(s, "\n## Detection\n");
        capsight_table(
            &mut s,
            &caps,
            Some(
                "A stockout is detected when the served label turns `unavailable`, a recovery when \
                 it leaves `unavailable` (scores sampled every 2 simulated minutes).\n",
            ),
            "arm | stockouts | detected | median delay min | recoveries | detected | median delay min | staleness p50 / p90 / max min",
            |a| {
                let d = a.detection.as_ref()?;
                let (p50, p90, max) = d.staleness_minutes;
                Some(cells![
                    a.arm,
                    d.stockouts.0,
                    d.stockouts.1,
                    f(d.stockouts.2),
                    d.recoveries.0,
                    d.recoveries.1,
                    f(d.recoveries.2),
                    format!("{} / {} / {}", f(p50), f(p90), f(max)),
                ])
            },
        );
        let _ = writeln!(s, "\n## Cost of knowing\n");
        capsight_table(
            &mut s,
            &caps,
            None,
            "arm | probes | keys probed | probe USD (x time scale) | USD per key-day | crowd reports | median stockout detection min",
            |a| {
                let p = a.probes.clone().unwrap_or_default();
                Some(cells![
                    a.arm,
                    p.probes,
                    p.keys,
                    format!("{:.2}", p.usd),
                    f2(p.usd_per_key_day),
                    a.reports,
                    f(a.detection.as_ref().and_then(|d| d.stockouts.2)),
                ])
            },
        );
        let _ = writeln!(s, "\n## Noise\n");
        if self.repeats.len() < 2 {
            let _ = writeln!(
                s,
                "one repeat: no spread measured (run with `--repeats 2` or more)"
            );
        } else {
            let _ = writeln!(
                s,
                "Spread (min-max) over {} repeats of the same seed:\n",
                self.repeats.len()
            );
            table(
                &mut s,
                "arm | satisfied | failed attempts | p50 min",
                self.noise.iter().map(|n| {
                    cells![
                        n.arm,
                        format!("{}-{}", n.satisfied.0, n.satisfied.1),
                        format!("{}-{}", n.failed_attempts.0, n.failed_attempts.1),
                        format!("{}-{}", f(n.p50_minutes.0), f(n.p50_minutes.1)),
                    ]
                }),
            );
        }
        let _ = writeln!(s, "\n## Plots\n");
        let _ = writeln!(s, "![time to running](time_to_running.svg)\n");
        let _ = writeln!(s, "![reliability](reliability.svg)");
        s
    }

    /// Writes `report.json`, `report.md`, `time_to_running.svg` and `reliability.svg` to
    /// `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("report.json"), json)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        let arms = self.repeats.first().cloned().unwrap_or_default();
        std::fs::write(dir.join("time_to_running.svg"), cdf_svg(&arms))?;
        std::fs::write(dir.join("reliability.svg"), reliability_svg(&arms))?;
        Ok(())
    }
}

const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf",
];

fn frame(title: &str, x_label: &str, y_label: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="640" height="420" font-family="sans-serif" font-size="12">
<rect width="640" height="420" fill="white"/>
<text x="320" y="20" text-anchor="middle" font-size="14">{title}</text>
<line x1="60" y1="360" x2="600" y2="360" stroke="black"/>
<line x1="60" y1="360" x2="60" y2="40" stroke="black"/>
<text x="330" y="395" text-anchor="middle">{x_label}</text>
<text x="18" y="200" text-anchor="middle" transform="rotate(-90 18 200)">{y_label}</text>
<text x="55" y="364" text-anchor="end">0</text><text x="55" y="44" text-anchor="end">1</text>
"##
    )
}

/// CDF of minutes to running per arm (fraction of all requests, so a curve ends at the
/// satisfied share).
fn cdf_svg(arms: &[ArmSummary]) -> String {
    let max_t = arms
        .iter()
        .flat_map(|a| a.times.iter().copied())
        .fold(1.0_f64, f64::max);
    let mut s = frame(
        "time from request to running (CDF over all requests)",
        &format!("simulated minutes (0 - {max_t:.0})"),
        "share of requests running",
    );
    for (i, a) in arms.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let n = a.requests.max(1) as f64;
        let mut pts = vec![(60.0, 360.0)];
        for (k, t) in a.times.iter().enumerate() {
            let x = 60.0 + t / max_t * 540.0;
            let y_before = 360.0 - k as f64 / n * 320.0;
            let y_after = 360.0 - (k + 1) as f64 / n * 320.0;
            pts.push((x, y_before));
            pts.push((x, y_after));
        }
        if let Some(&(_, y)) = pts.last() {
            pts.push((600.0, y));
        }
        let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let _ = writeln!(
            s,
            r#"<text x="70" y="{}" fill="{color}">{}</text>"#,
            60 + i * 16,
            a.arm
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Reliability diagram: success rate vs mean predicted probability per score decile, for each
/// capsight arm's attempted keys; the diagonal is perfect calibration.
fn reliability_svg(arms: &[ArmSummary]) -> String {
    let mut s = frame(
        "reliability: served score vs launch success (per score decile)",
        "score / 100",
        "success rate",
    );
    s.push_str(
        r#"<line x1="60" y1="360" x2="600" y2="40" stroke="gray" stroke-dasharray="4 4"/>
"#,
    );
    for (i, a) in arms
        .iter()
        .filter(|a| a.strategy == Strategy::Capsight)
        .enumerate()
    {
        let color = COLORS[i % COLORS.len()];
        let Some(c) = a
            .verdicts
            .as_ref()
            .filter(|c| c.n > 0)
            .or(a.sampled.as_ref())
        else {
            continue;
        };
        let pts: Vec<(f64, f64, usize)> = c
            .by_decile
            .iter()
            .map(|b| {
                (
                    60.0 + b.mean_predicted * 540.0,
                    360.0 - b.success_rate * 320.0,
                    b.n,
                )
            })
            .collect();
        let path: Vec<String> = pts
            .iter()
            .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for (x, y, n) in &pts {
            let r = (2.0 + (*n as f64).sqrt()).min(10.0);
            let _ = writeln!(
                s,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r:.1}" fill="{color}"/>"#
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="70" y="{}" fill="{color}">{} (n = {})</text>"#,
            60 + i * 16,
            a.arm,
            c.n
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(name: &str, strategy: Strategy) -> ArmSummary {
        let bin = |name: &str| Bin {
            name: name.to_owned(),
            n: 4,
            mean_predicted: 0.625,
            success_rate: 0.5,
        };
        let capsight = strategy == Strategy::Capsight;
        let calibration = Calibration {
            n: 8,
            by_label: vec![bin("available")],
            by_decile: vec![bin("60-69")],
            brier: Some(0.1234),
            auc: None,
        };
        ArmSummary {
            arm: name.to_owned(),
            strategy,
            requests: 10,
            satisfied: 7,
            unsatisfied: 3,
            failed_attempts: 5,
            failed_per_success: Some(5.0 / 7.0),
            minutes_to_running: (Some(1.25), Some(9.0), None),
            usd_failed_attempts: 12.345,
            interrupted: 1,
            errors: vec!["boom".to_owned()],
            reports: 6,
            probes: capsight.then_some(ProbeSpend {
                probes: 3,
                keys: 2,
                usd_recorded: 0.5,
                usd: 1.5,
                usd_per_key_day: Some(0.75),
            }),
            verdicts: capsight.then(|| calibration.clone()),
            sampled: None,
            preflight: capsight.then_some(PreflightConfusion {
                total: 9,
                can_launch: 4,
                can_launch_then_capacity_error: 1,
                retry_with_alternatives: 3,
                retry_while_stock: 1,
                fix_account_issue: 2,
            }),
            detection: capsight.then(|| Detection {
                events: vec![],
                stockouts: (4, 3, Some(6.0)),
                recoveries: (2, 1, None),
                staleness_minutes: (Some(1.0), Some(2.5), Some(8.0)),
            }),
            times: vec![1.25, 9.0],
        }
    }

    fn report(repeats: usize) -> Report {
        let arms = vec![
            arm("capsight", Strategy::Capsight),
            arm("blind", Strategy::BlindFailover),
        ];
        let mut r = Report {
            name: "steady".to_owned(),
            command: "capsight-eval run".to_owned(),
            scenario: "s.toml".to_owned(),
            workload: "w.toml".to_owned(),
            seed: 7,
            time_scale: 60.0,
            commit: "abc".to_owned(),
            machine: Machine {
                cores: 2,
                memory_gib: 3.5,
                os: "Linux".to_owned(),
            },
            started: "now".to_owned(),
            real_seconds: 12.0,
            warmup_minutes: 30.0,
            repeats: vec![arms; repeats],
            noise: vec![],
        };
        r.compute_noise();
        r
    }

    fn lines_after<'a>(md: &'a str, heading: &str) -> Vec<&'a str> {
        md.lines()
            .skip_while(|l| *l != heading)
            .skip(1)
            .take_while(|l| !l.starts_with("## "))
            .filter(|l| l.starts_with('|'))
            .collect()
    }

    #[test]
    fn markdown_tables_hold_every_arm_figure() {
        let md = report(2).markdown();
        for section in SECTIONS {
            assert_eq!(md.lines().filter(|l| l == section).count(), 1, "{section}");
        }
        let tables: [(&str, &[&str]); 6] = [
            (
                "## Time to GPU",
                &[
                    "| arm | requests | satisfied | never satisfied | failed attempts | failed / success | p50 min | p90 min | p99 min | USD on failed attempts | interrupted |",
                    "|---|---|---|---|---|---|---|---|---|---|---|",
                    "| capsight | 10 | 7 | 3 | 5 | 0.714 | 1.2 | 9.0 | - | 12.35 | 1 |",
                    "| blind | 10 | 7 | 3 | 5 | 0.714 | 1.2 | 9.0 | - | 12.35 | 1 |",
                ],
            ),
            (
                "## Verdict quality",
                &[
                    "| group | n | mean score/100 | success rate |",
                    "|---|---|---|---|",
                    "| available | 4 | 0.62 | 0.50 |",
                    "| 60-69 | 4 | 0.62 | 0.50 |",
                ],
            ),
            (
                "## Preflight",
                &[
                    "| arm | preflights | CAN_LAUNCH | ... then capacity error | RETRY_WITH_ALTERNATIVES | ... while stock existed | FIX_ACCOUNT_ISSUE |",
                    "|---|---|---|---|---|---|---|",
                    "| capsight | 9 | 4 | 1 | 3 | 1 | 2 |",
                ],
            ),
            (
                "## Detection",
                &[
                    "| arm | stockouts | detected | median delay min | recoveries | detected | median delay min | staleness p50 / p90 / max min |",
                    "|---|---|---|---|---|---|---|---|",
                    "| capsight | 4 | 3 | 6.0 | 2 | 1 | - | 1.0 / 2.5 / 8.0 |",
                ],
            ),
            (
                "## Cost of knowing",
                &[
                    "| arm | probes | keys probed | probe USD (x time scale) | USD per key-day | crowd reports | median stockout detection min |",
                    "|---|---|---|---|---|---|---|",
                    "| capsight | 3 | 2 | 1.50 | 0.750 | 6 | 6.0 |",
                ],
            ),
            (
                "## Noise",
                &[
                    "| arm | satisfied | failed attempts | p50 min |",
                    "|---|---|---|---|",
                    "| capsight | 7-7 | 5-5 | 1.2-1.2 |",
                    "| blind | 7-7 | 5-5 | 1.2-1.2 |",
                ],
            ),
        ];
        for (heading, lines) in tables {
            assert_eq!(lines_after(&md, heading), lines, "{heading}");
        }
        assert!(md.contains("- capsight: boom\n- blind: boom\n"), "{md}");
        assert!(
            md.contains(
                "**capsight**, served score of each attempted key vs the attempt's outcome: \
                 n = 8, Brier 0.123, ROC AUC -\n"
            ),
            "{md}"
        );
    }

    #[test]
    fn markdown_says_none_without_a_capsight_arm_or_a_second_repeat() {
        let mut r = report(1);
        for rep in &mut r.repeats {
            rep.retain(|a| a.strategy != Strategy::Capsight);
        }
        let md = r.markdown();
        assert_eq!(md.matches("none (no capsight arm)").count(), 4, "{md}");
        assert!(md.contains("one repeat: no spread measured"), "{md}");
        assert!(lines_after(&md, "## Preflight").is_empty(), "{md}");
    }
}
