//! Ranked alternatives to a launch request, from the scores view and the GPU catalog.
//!
//! Contract ([`rank`], pure): candidates are scored keys other than the request's own key that
//! * use the same instance type, or — with `allow_other_providers` — another provider's type
//!   of the same GPU model and count (AWS `p5.48xlarge` -> Lambda `gpu_8x_h100_sxm5`), or —
//!   with `allow_substitutes` — a catalog substitute with a
//!   same-or-better GPU (class and memory per GPU) and at least as many GPUs per instance,
//!   never a smaller GPU;
//! * are of the same provider unless `allow_other_providers`; in an allowed region; in an
//!   allowed market (spot only for interruptible work: it can be taken back at two minutes'
//!   notice); offered in that region per the catalog; labelled at least `min_label`
//!   ([`Label::meets`]: an unknown key passes a Limited minimum, not an Available one); within
//!   the price cap in $/GPU-hour at the market's price ([`usd_per_gpu_hour`]: the latest spot
//!   price the scorer saw for a spot key, else the catalog's on-demand price).
//!
//! Order, by expected success first: known launchable keys (Available, Limited) before unknown
//! ones, unknown before Unavailable ones; within a tier the expected success
//! ([`expected_success`]: the score pulled toward 50 by the lack of confidence) less
//! [`MISMATCH_POINTS`] for each way the candidate differs from the request (another GPU model,
//! provider, instance type, market or region), so among near-equal candidates the same GPU
//! model, then the same provider, then the closer match wins; then the expected success
//! itself, lower $/GPU-hour, key. Each candidate carries the reason it is proposed and
//! purchase-option advice for its market.

use std::sync::Arc;

use capsight_catalog::Catalog;
use capsight_proto::{
    domain::{CapacityKey, Label, Market, Score},
    v1,
};

use crate::spec::{Constraints, Spec};

/// Purchase-option advice per market.
pub fn advice(market: Market, interruptible: bool) -> &'static str {
    match market {
        Market::OnDemand => {
            "on-demand: never interrupted, highest list price; right for latency-critical or \
             non-restartable work"
        }
        Market::Spot if interruptible => {
            "spot: typically 60-90% cheaper, reclaimed with 2 minutes' notice; checkpoint, and \
             consider a warm on-demand standby (launch --warm-standby)"
        }
        Market::Spot => "spot: only for interruptible work (checkpointed training, batch, CI)",
        Market::CapacityBlock => {
            "capacity block: GPUs reserved for a fixed future window, paid upfront, cannot be \
             cancelled; book ahead for planned training runs"
        }
    }
}

fn reason(want: &CapacityKey, got: &CapacityKey, catalog: &Catalog) -> String {
    let mut parts = Vec::new();
    if got.instance_type != want.instance_type {
        let model = |k: &CapacityKey| {
            catalog
                .get(k.provider, &k.instance_type)
                .map(|g| format!("{}x {} {}GB", g.gpu_count, g.gpu_model, g.gpu_memory_gib))
                .unwrap_or_default()
        };
        parts.push(format!(
            "{} ({}) instead of {} ({}): same-or-better GPU",
            got.instance_type,
            model(got),
            want.instance_type,
            model(want)
        ));
    } else {
        parts.push(format!("same type {}", got.instance_type));
    }
    if got.provider != want.provider {
        parts.push(format!("on {}", got.provider));
    }
    if got.region != want.region {
        parts.push(format!("in {}", got.region));
    } else if got.zone != want.zone {
        match &got.zone {
            Some(z) => parts.push(format!("other zone {z}")),
            None => parts.push("anywhere in the region".into()),
        }
    }
    if got.market != want.market {
        parts.push(format!("{} instead of {}", got.market, want.market));
    }
    parts.join(", ")
}

/// Expected-success points a candidate gives up for each way it differs from the request.
pub const MISMATCH_POINTS: f64 = 5.0;

/// The points a launch on `s` is expected to score: its score where its confidence is full,
/// the neutral 50 where it is nil.
pub fn expected_success(s: &Score) -> f64 {
    let c = s.confidence.clamp(0.0, 1.0);
    c * f64::from(s.score) + (1.0 - c) * 50.0
}

/// The price of one GPU-hour on `s`'s key: its market's latest observed price when the scorer
/// saw one (spot), else the catalog's on-demand price.
pub fn usd_per_gpu_hour(s: &Score, gpu: &capsight_catalog::GpuType) -> f64 {
    match s.market_usd_per_hour {
        Some(p) if s.key.market == Market::Spot && gpu.gpu_count > 0 => {
            p / f64::from(gpu.gpu_count)
        }
        _ => gpu.usd_per_gpu_hour(),
    }
}

/// The tier of a label: launchable known (0), unknown (1), unavailable (2).
fn tier(label: Label) -> u8 {
    match label {
        Label::Available | Label::Limited => 0,
        Label::Unknown => 1,
        Label::Unavailable => 2,
    }
}

/// Ranked alternatives for `spec` under `constraints` among `scores`.
pub fn rank(
    spec: &Spec,
    constraints: &Constraints,
    scores: &[Arc<Score>],
    catalog: &Catalog,
) -> Vec<v1::Alternative> {
    let want = &spec.key;
    let substitutes: Vec<(capsight_proto::domain::Provider, String)> =
        if constraints.allow_substitutes {
            catalog
                .substitutes(&spec.gpu, spec.gpu.gpu_count)
                .map(|g| (g.provider, g.instance_type.as_str().to_owned()))
                .collect()
        } else {
            Vec::new()
        };
    let mut found: Vec<(Arc<Score>, f64, String)> = scores
        .iter()
        .filter(|s| s.key != *want)
        .filter_map(|s| {
            let k = &s.key;
            if k.provider != want.provider && !constraints.allow_other_providers {
                return None;
            }
            let same_type = k.provider == want.provider && k.instance_type == want.instance_type;
            // another provider's type of the same GPU model and count (AWS p5.48xlarge ->
            // Lambda gpu_8x_h100_sxm5), only when other providers are allowed
            let same_gpu_elsewhere = k.provider != want.provider
                && catalog.get(k.provider, &k.instance_type).is_some_and(|g| {
                    g.gpu_model == spec.gpu.gpu_model && g.gpu_count == spec.gpu.gpu_count
                });
            if !same_type
                && !same_gpu_elsewhere
                && !substitutes
                    .iter()
                    .any(|(p, t)| *p == k.provider && t == k.instance_type.as_str())
            {
                return None;
            }
            if !constraints.allowed_regions.is_empty()
                && !constraints.allowed_regions.contains(&k.region)
            {
                return None;
            }
            if !constraints.markets.contains(&k.market) {
                return None;
            }
            if !s.label.meets(constraints.min_label) {
                return None;
            }
            let gpu = catalog.get(k.provider, &k.instance_type)?;
            if !gpu.offered_in(&k.region) {
                return None;
            }
            if k.market == Market::CapacityBlock && !gpu.capacity_blocks {
                return None;
            }
            let price = usd_per_gpu_hour(s, gpu);
            if constraints
                .max_usd_per_gpu_hour
                .is_some_and(|max| price > max)
            {
                return None;
            }
            Some((Arc::clone(s), price, gpu.gpu_model.clone()))
        })
        .collect();
    found.sort_by(|(a, pa, ma), (b, pb, mb)| {
        let utility = |s: &Score, model: &str| {
            let mismatches = [
                model != spec.gpu.gpu_model,
                s.key.provider != want.provider,
                s.key.instance_type != want.instance_type,
                s.key.market != want.market,
                s.key.region != want.region,
            ]
            .into_iter()
            .filter(|m| *m)
            .count();
            expected_success(s) - MISMATCH_POINTS * mismatches as f64
        };
        tier(a.label)
            .cmp(&tier(b.label))
            .then_with(|| utility(b, mb).total_cmp(&utility(a, ma)))
            .then_with(|| expected_success(b).total_cmp(&expected_success(a)))
            .then_with(|| pa.total_cmp(pb))
            .then_with(|| a.key.cmp(&b.key))
    });
    found
        .into_iter()
        .take(constraints.limit)
        .enumerate()
        .map(|(i, (s, price, model))| {
            let gpu_count = catalog
                .get(s.key.provider, &s.key.instance_type)
                .map_or(0, |g| g.gpu_count);
            v1::Alternative {
                key: Some(v1::CapacityKey::from(&s.key)),
                score: u32::from(s.score),
                label: s.label.into(),
                confidence: s.confidence,
                usd_per_gpu_hour: (price * 100.0).round() / 100.0,
                gpu_model: model,
                gpu_count,
                reason: reason(want, &s.key, catalog),
                advice: advice(s.key.market, constraints.interruptible).to_owned(),
                rank: u32::try_from(i + 1).unwrap_or(u32::MAX),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use capsight_proto::domain::Label;
    use chrono::Utc;

    use super::*;
    use crate::spec as validate;

    fn score(key: &str, value: u8) -> Arc<Score> {
        Arc::new(Score {
            key: key.parse().unwrap(),
            score: value,
            label: Label::for_score(value),
            confidence: 0.8,
            evidence: vec![],
            window: std::time::Duration::from_secs(3600),
            updated_at: Utc::now(),
            signal_count: 10,

            market_usd_per_hour: None,
        })
    }

    fn spec(key: &str, catalog: &Catalog) -> Spec {
        let k: CapacityKey = key.parse().unwrap();
        validate::spec(
            "spec",
            Some(v1::LaunchSpec {
                key: Some(v1::CapacityKey::from(&k)),
                count: 1,
                image_id: "ami-12345678".into(),
                ..Default::default()
            }),
            catalog,
            32,
            true,
        )
        .unwrap()
    }

    #[test]
    fn same_type_other_zone_ranks_first_and_unavailable_or_spot_are_excluded() {
        let catalog = Catalog::embedded().unwrap();
        let s = spec("aws/us-east-1/use1-az1/p5.48xlarge/on_demand", &catalog);
        let c = validate::constraints("c", None, &s).unwrap();
        let scores = vec![
            score("aws/us-east-1/use1-az1/p5.48xlarge/on_demand", 10),
            score("aws/us-east-1/use1-az4/p5.48xlarge/on_demand", 85),
            score("aws/us-east-1/use1-az6/p5.48xlarge/on_demand", 20),
            score("aws/us-west-2/usw2-az1/p5.48xlarge/on_demand", 90),
            score("aws/us-east-1/use1-az4/p5.48xlarge/spot", 95),
        ];
        let alts = rank(&s, &c, &scores, &catalog);
        assert_eq!(
            keys(&alts),
            vec![
                "aws/us-east-1/use1-az4/p5.48xlarge/on_demand",
                "aws/us-west-2/usw2-az1/p5.48xlarge/on_demand"
            ]
        );
        assert!(
            alts[0].reason.contains("other zone use1-az4"),
            "{}",
            alts[0].reason
        );
        assert_eq!(alts[0].rank, 1);
        assert!(alts[0].usd_per_gpu_hour > 0.0);
    }

    #[test]
    fn allowed_regions_and_interruptible_spot() {
        let catalog = Catalog::embedded().unwrap();
        let s = spec("aws/us-east-1/use1-az1/p5.48xlarge/on_demand", &catalog);
        let c = validate::constraints(
            "c",
            Some(v1::Constraints {
                allowed_regions: vec!["us-east-1".into()],
                interruptible: true,
                ..Default::default()
            }),
            &s,
        )
        .unwrap();
        let scores = vec![
            score("aws/us-west-2/usw2-az1/p5.48xlarge/on_demand", 90),
            score("aws/us-east-1/use1-az4/p5.48xlarge/spot", 95),
        ];
        let alts = rank(&s, &c, &scores, &catalog);
        assert_eq!(alts.len(), 1);
        assert!(alts[0].advice.starts_with("spot"), "{}", alts[0].advice);
    }

    fn scored(key: &str, value: u8, confidence: f64, label: Label) -> Arc<Score> {
        let mut s = (*score(key, value)).clone();
        s.confidence = confidence;
        s.label = label;
        Arc::new(s)
    }

    fn keys(alts: &[v1::Alternative]) -> Vec<String> {
        alts.iter()
            .map(|a| {
                CapacityKey::try_from(a.key.clone().unwrap())
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn another_providers_same_gpu_is_an_alternative_only_when_other_providers_are_allowed() {
        let catalog = Catalog::embedded().unwrap();
        let s = spec("aws/us-east-1/use1-az1/p5.48xlarge/on_demand", &catalog);
        let scores = vec![
            score("aws/us-east-1/use1-az4/p5.48xlarge/on_demand", 60),
            score("lambda/us-south-2//gpu_8x_h100_sxm5/on_demand", 95),
            // another GPU model on the other provider: never without substitutes
            score("lambda/us-east-1//gpu_1x_a100_sxm4/on_demand", 99),
        ];
        let default = validate::constraints("c", None, &s).unwrap();
        assert!(!default.allow_other_providers);
        assert_eq!(
            keys(&rank(&s, &default, &scores, &catalog)),
            vec!["aws/us-east-1/use1-az4/p5.48xlarge/on_demand"]
        );
        let mut allowed = default.clone();
        allowed.allow_other_providers = true;
        let alts = keys(&rank(&s, &allowed, &scores, &catalog));
        assert_eq!(alts.len(), 2, "{alts:?}");
        assert!(alts.contains(&"lambda/us-south-2//gpu_8x_h100_sxm5/on_demand".to_owned()));
    }

    #[test]
    fn expected_success_orders_candidates_and_unknown_never_outranks_a_known_good_key() {
        let catalog = Catalog::embedded().unwrap();
        let s = spec("aws/us-east-1/use1-az1/p5.48xlarge/on_demand", &catalog);
        let c = validate::constraints("c", None, &s).unwrap();
        let thin_available = "aws/us-east-1/use1-az2/p5.48xlarge/on_demand";
        let solid_limited = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";
        let unknown_perfect = "aws/us-east-1/use1-az6/p5.48xlarge/on_demand";
        let scores = vec![
            scored(thin_available, 85, 0.25, Label::Available),
            scored(solid_limited, 75, 0.9, Label::Limited),
            scored(unknown_perfect, 100, 0.1, Label::Unknown),
        ];
        // 75 at confidence 0.9 is likelier (72.5) than 85 at 0.25 (58.75); the unknown key
        // comes last however high its score
        assert_eq!(
            keys(&rank(&s, &c, &scores, &catalog)),
            vec![solid_limited, thin_available, unknown_perfect]
        );
        // a minimum of Available admits only known Available keys
        let strict = validate::constraints(
            "c",
            Some(v1::Constraints {
                min_label: v1::Label::Available.into(),
                ..Default::default()
            }),
            &s,
        )
        .unwrap();
        assert_eq!(
            keys(&rank(&s, &strict, &scores, &catalog)),
            vec![thin_available]
        );
    }

    #[test]
    fn spot_candidates_are_priced_at_the_observed_spot_price() {
        let catalog = Catalog::embedded().unwrap();
        let s = spec("aws/us-east-1/use1-az1/p5.48xlarge/on_demand", &catalog);
        let c = validate::constraints(
            "c",
            Some(v1::Constraints {
                interruptible: true,
                markets: vec![v1::Market::OnDemand.into(), v1::Market::Spot.into()],
                ..Default::default()
            }),
            &s,
        )
        .unwrap();
        let spot = "aws/us-east-1/use1-az4/p5.48xlarge/spot";
        let mut seen = (*score(spot, 90)).clone();
        seen.market_usd_per_hour = Some(20.0);
        let unseen = score("aws/us-east-1/use1-az6/p5.48xlarge/spot", 90);
        let alts = rank(&s, &c, &[Arc::new(seen), unseen], &catalog);
        let on_demand = catalog
            .get(s.key.provider, &s.key.instance_type)
            .unwrap()
            .usd_per_gpu_hour();
        let price = |k: &str| {
            alts.iter()
                .find(|a| keys(std::slice::from_ref(a))[0] == k)
                .unwrap()
                .usd_per_gpu_hour
        };
        // 8 GPUs at $20 an hour: $2.50 per GPU-hour, not the on-demand list price
        assert!((price(spot) - 2.5).abs() < 1e-9, "{alts:#?}");
        let list = (on_demand * 100.0).round() / 100.0;
        assert!(
            (price("aws/us-east-1/use1-az6/p5.48xlarge/spot") - list).abs() < 1e-9,
            "{alts:#?}"
        );
        // equal expected success: the cheaper one first
        assert_eq!(keys(&alts)[0], spot);
        // and a price cap between the two keeps only the observed spot price
        let capped = validate::constraints(
            "c",
            Some(v1::Constraints {
                interruptible: true,
                markets: vec![v1::Market::OnDemand.into(), v1::Market::Spot.into()],
                max_usd_per_gpu_hour: 3.0,
                ..Default::default()
            }),
            &s,
        )
        .unwrap();
        let mut seen = (*score(spot, 90)).clone();
        seen.market_usd_per_hour = Some(20.0);
        let only = rank(
            &s,
            &capped,
            &[
                Arc::new(seen),
                score("aws/us-east-1/use1-az6/p5.48xlarge/spot", 90),
            ],
            &catalog,
        );
        assert_eq!(keys(&only), vec![spot]);
    }
}
