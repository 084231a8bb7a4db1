//! The statistics of a report, pure and unit-tested: quantiles, Brier score, ROC AUC (ties
//! count half), reliability tables by score decile, and change detection on a truth series
//! with the delay until a served series reflects each change.
//!
//! Contract: every function takes plain numbers and returns `None` (or an empty table) when
//! there is nothing to measure; nothing here panics on empty or odd input.

use serde::Serialize;

/// The `q` quantile (0..=1) of `values` by nearest rank; `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let q = q.clamp(0.0, 1.0);
    // nearest rank: ceil(q * n), 1-based
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Mean of `values`; `None` when empty.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Brier score of (predicted probability, outcome) pairs: mean squared error; lower is better.
pub fn brier(pairs: &[(f64, bool)]) -> Option<f64> {
    let sq: Vec<f64> = pairs
        .iter()
        .map(|(p, y)| (p - if *y { 1.0 } else { 0.0 }).powi(2))
        .collect();
    mean(&sq)
}

/// ROC AUC of (score, outcome) pairs: the probability that a random success has a higher score
/// than a random failure, ties counting half (Mann-Whitney with average ranks). `None` without
/// both a success and a failure.
pub fn roc_auc(pairs: &[(f64, bool)]) -> Option<f64> {
    let pos = pairs.iter().filter(|(_, y)| *y).count();
    let neg = pairs.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut sorted: Vec<(f64, bool)> = pairs.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // average ranks over ties
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1].0 == sorted[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += avg_rank * sorted[i..=j].iter().filter(|(_, y)| *y).count() as f64;
        i = j + 1;
    }
    let (p, n) = (pos as f64, neg as f64);
    Some((rank_sum_pos - p * (p + 1.0) / 2.0) / (p * n))
}

/// One row of a reliability table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    /// What the row groups (`0-9`, `available`, ...).
    pub name: String,
    /// Pairs in it.
    pub n: usize,
    /// Mean predicted probability.
    pub mean_predicted: f64,
    /// Share of successes.
    pub success_rate: f64,
}

fn bin(name: String, pairs: &[(f64, bool)]) -> Bin {
    let n = pairs.len();
    Bin {
        name,
        n,
        mean_predicted: mean(&pairs.iter().map(|(p, _)| *p).collect::<Vec<_>>()).unwrap_or(0.0),
        success_rate: pairs.iter().filter(|(_, y)| *y).count() as f64 / n.max(1) as f64,
    }
}

/// Reliability by score decile: scores 0..=100, probability = score / 100; rows `0-9`, ...,
/// `90-100`, empty deciles left out.
pub fn by_decile(pairs: &[(u32, bool)]) -> Vec<Bin> {
    (0..10)
        .filter_map(|d| {
            let rows: Vec<(f64, bool)> = pairs
                .iter()
                .filter(|(s, _)| (s / 10).min(9) == d)
                .map(|(s, y)| (f64::from(*s) / 100.0, *y))
                .collect();
            let hi = if d == 9 { 100 } else { d * 10 + 9 };
            (!rows.is_empty()).then(|| bin(format!("{}-{hi}", d * 10), &rows))
        })
        .collect()
}

/// Reliability by group (a label): rows in the order groups first appear in `names`.
pub fn by_group(rows: &[(String, u32, bool)], names: &[&str]) -> Vec<Bin> {
    names
        .iter()
        .filter_map(|name| {
            let pairs: Vec<(f64, bool)> = rows
                .iter()
                .filter(|(g, _, _)| g == name)
                .map(|(_, s, y)| (f64::from(*s) / 100.0, *y))
                .collect();
            (!pairs.is_empty()).then(|| bin((*name).to_owned(), &pairs))
        })
        .collect()
}

/// A change of a truth series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Stock went from at least one to zero.
    Stockout,
    /// Stock went from zero to at least one.
    Recovery,
}

/// Stockouts and recoveries of a stock series ((seconds, stock) in time order), after `from`
/// seconds (earlier changes are the warm-up's).
pub fn changes(series: &[(u64, u64)], from: u64) -> Vec<(u64, ChangeKind)> {
    let mut out = Vec::new();
    let mut prev: Option<bool> = None;
    for &(t, stock) in series {
        let has = stock > 0;
        if let Some(p) = prev
            && p != has
            && t >= from
        {
            out.push((
                t,
                if has {
                    ChangeKind::Recovery
                } else {
                    ChangeKind::Stockout
                },
            ));
        }
        prev = Some(has);
    }
    out
}

/// Seconds from a change at `at` until the served series ((seconds, reflects stock?) in time
/// order) first says what the change made true — `false` (no stock) for a stockout, `true` for
/// a recovery — before `until` (the next change or the end); `None` when it never did.
pub fn detection_delay(
    at: u64,
    kind: ChangeKind,
    served: &[(u64, bool)],
    until: u64,
) -> Option<u64> {
    let want = kind == ChangeKind::Recovery;
    served
        .iter()
        .find(|(t, says)| *t >= at && *t < until && *says == want)
        .map(|(t, _)| t - at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&v, 0.5), Some(3.0));
        assert_eq!(quantile(&v, 0.9), Some(5.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn brier_of_perfect_and_wrong_forecasts() {
        assert_eq!(brier(&[(1.0, true), (0.0, false)]), Some(0.0));
        assert_eq!(brier(&[(0.0, true), (1.0, false)]), Some(1.0));
        assert_eq!(brier(&[]), None);
    }

    #[test]
    fn auc_separates_orders_and_counts_ties_half() {
        let perfect = [(0.9, true), (0.8, true), (0.2, false), (0.1, false)];
        assert_eq!(roc_auc(&perfect), Some(1.0));
        let inverted = [(0.1, true), (0.9, false)];
        assert_eq!(roc_auc(&inverted), Some(0.0));
        let tied = [(0.5, true), (0.5, false)];
        assert_eq!(roc_auc(&tied), Some(0.5));
        // one success above two failures, one tied with one of them: (2 + 0.5) / 4
        let mixed = [(0.7, true), (0.3, true), (0.3, false), (0.1, false)];
        assert_eq!(roc_auc(&mixed), Some(0.875));
        assert_eq!(roc_auc(&[(0.4, true)]), None);
    }

    #[test]
    fn deciles_and_groups() {
        let t = by_decile(&[(5, false), (95, true), (100, true), (91, false)]);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "0-9");
        assert_eq!(t[1].name, "90-100");
        assert_eq!(t[1].n, 3);
        assert!((t[1].success_rate - 2.0 / 3.0).abs() < 1e-9);
        let g = by_group(
            &[
                ("available".into(), 90, true),
                ("unavailable".into(), 10, false),
            ],
            &["available", "limited", "unavailable"],
        );
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].name, "unavailable");
    }

    #[test]
    fn changes_and_detection() {
        let series = [(0, 3), (60, 0), (120, 0), (300, 2), (360, 1)];
        let c = changes(&series, 0);
        assert_eq!(
            c,
            vec![(60, ChangeKind::Stockout), (300, ChangeKind::Recovery)]
        );
        assert!(changes(&series, 100).len() == 1);
        let served = [
            (0, true),
            (90, true),
            (150, false),
            (310, false),
            (420, true),
        ];
        assert_eq!(
            detection_delay(60, ChangeKind::Stockout, &served, 300),
            Some(90)
        );
        assert_eq!(
            detection_delay(300, ChangeKind::Recovery, &served, 1000),
            Some(120)
        );
        assert_eq!(
            detection_delay(300, ChangeKind::Recovery, &served, 400),
            None
        );
    }
}
