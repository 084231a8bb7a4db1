//! ListScores / WatchScores filters to validated values, once, where they enter; the launch
//! request checks are the launch core's ([`capsight_launch::spec`], re-exported here). Every
//! rejection is a [`FieldError`] naming the request field (`filter.min_confidence`), answered as
//! `INVALID_ARGUMENT`.

use capsight_catalog::Catalog;
pub use capsight_launch::spec::*;
use capsight_proto::{
    domain::{FieldError, Label, Market, Provider, Region},
    v1,
};

/// ListScores / WatchScores filters.
#[derive(Debug, Clone, Default)]
pub struct ScoreFilter {
    provider: Option<Provider>,
    region: Option<String>,
    zone_id: Option<String>,
    instance_type: Option<String>,
    gpu_model: Option<String>,
    min_gpus: u32,
    market: Option<Market>,
    min_label: Option<Label>,
    min_confidence: f64,
}

/// Score filters.
pub fn score_filter(field: &str, wire: Option<v1::ScoreFilter>) -> Result<ScoreFilter, FieldError> {
    let wire = wire.unwrap_or_default();
    let f = |name: &str| format!("{field}.{name}");
    let provider = match wire.provider.as_str() {
        "" => None,
        p => Some(Provider::parse(&f("provider"), p)?),
    };
    let region = match wire.region.as_str() {
        "" => None,
        r => {
            let ok = match provider {
                Some(p) => Region::parse(&f("region"), p, r).map(|_| ()),
                None => Provider::ALL
                    .iter()
                    .find_map(|p| Region::parse(&f("region"), *p, r).ok())
                    .map(|_| ())
                    .ok_or_else(|| {
                        FieldError::new(
                            f("region"),
                            format!("{r:?} is not a region of any provider"),
                        )
                    }),
            };
            ok?;
            Some(r.to_owned())
        }
    };
    for (name, v) in [
        ("zone_id", &wire.zone_id),
        ("instance_type", &wire.instance_type),
        ("gpu_model", &wire.gpu_model),
    ] {
        bounded(&f(name), v, 64)?;
    }
    if wire.min_gpus > 64 {
        return Err(FieldError::new(f("min_gpus"), "must be 0..=64"));
    }
    if !wire.min_confidence.is_finite() || !(0.0..=1.0).contains(&wire.min_confidence) {
        return Err(FieldError::new(f("min_confidence"), "must be 0..=1"));
    }
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    Ok(ScoreFilter {
        provider,
        region,
        zone_id: non_empty(wire.zone_id),
        instance_type: non_empty(wire.instance_type),
        gpu_model: non_empty(wire.gpu_model),
        min_gpus: wire.min_gpus,
        market: optional_enum(&f("market"), wire.market, Market::from_wire)?,
        min_label: optional_enum(&f("min_label"), wire.min_label, Label::from_wire)?,
        min_confidence: wire.min_confidence,
    })
}

impl ScoreFilter {
    /// True when the filter lets every score through.
    pub fn is_everything(&self) -> bool {
        self.provider.is_none()
            && self.region.is_none()
            && self.zone_id.is_none()
            && self.instance_type.is_none()
            && self.gpu_model.is_none()
            && self.min_gpus == 0
            && self.market.is_none()
            && self.min_label.is_none()
            && self.min_confidence <= 0.0
    }

    /// The start every matching key's string form (`provider/region/zone/type/market`) shares:
    /// the provider, region and zone as far as the filter fixes them, `""` when it fixes no
    /// provider. Keys outside it never match.
    pub fn key_prefix(&self) -> String {
        let Some(provider) = self.provider else {
            return String::new();
        };
        let mut prefix = format!("{provider}/");
        if let Some(region) = &self.region {
            prefix.push_str(region);
            prefix.push('/');
            if let Some(zone) = &self.zone_id {
                prefix.push_str(zone);
                prefix.push('/');
            }
        }
        prefix
    }

    /// Whether `score` passes every set filter.
    pub fn matches(&self, score: &capsight_proto::domain::Score, catalog: &Catalog) -> bool {
        let k = &score.key;
        if self.provider.is_some_and(|p| p != k.provider)
            || self
                .region
                .as_deref()
                .is_some_and(|r| r != k.region.as_str())
            || self.zone_id.as_deref().is_some_and(|z| z != k.zone_str())
            || self
                .instance_type
                .as_deref()
                .is_some_and(|t| t != k.instance_type.as_str())
            || self.market.is_some_and(|m| m != k.market)
            || self.min_label.is_some_and(|m| !score.label.meets(m))
            || score.confidence < self.min_confidence
        {
            return false;
        }
        if self.gpu_model.is_some() || self.min_gpus > 0 {
            let Some(gpu) = catalog.get(k.provider, &k.instance_type) else {
                return false;
            };
            if self
                .gpu_model
                .as_deref()
                .is_some_and(|m| !gpu.gpu_model.eq_ignore_ascii_case(m))
                || gpu.gpu_count < self.min_gpus
            {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_prefix_is_what_the_filter_fixes_from_the_provider_on() {
        let prefix = |provider: &str, region: &str, zone: &str| {
            let wire = v1::ScoreFilter {
                provider: provider.into(),
                region: region.into(),
                zone_id: zone.into(),
                ..Default::default()
            };
            score_filter("filter", Some(wire)).unwrap().key_prefix()
        };
        assert_eq!(prefix("", "", ""), "");
        assert_eq!(
            prefix("", "us-east-1", "use1-az4"),
            "",
            "no provider, no prefix"
        );
        assert_eq!(
            prefix("aws", "", "use1-az4"),
            "aws/",
            "no region, no zone in it"
        );
        assert_eq!(prefix("aws", "us-east-1", ""), "aws/us-east-1/");
        assert_eq!(
            prefix("aws", "us-east-1", "use1-az4"),
            "aws/us-east-1/use1-az4/"
        );
        assert!(score_filter("filter", None).unwrap().is_everything());
        let some = v1::ScoreFilter {
            min_confidence: 0.5,
            ..Default::default()
        };
        assert!(!score_filter("filter", Some(some)).unwrap().is_everything());
    }

    #[test]
    fn filters_reject_out_of_range_values() {
        let bad = v1::ScoreFilter {
            min_confidence: 1.5,
            ..Default::default()
        };
        assert_eq!(
            score_filter("filter", Some(bad)).unwrap_err().field(),
            "filter.min_confidence"
        );
        let bad = v1::ScoreFilter {
            provider: "oracle".into(),
            ..Default::default()
        };
        assert_eq!(
            score_filter("filter", Some(bad)).unwrap_err().field(),
            "filter.provider"
        );
    }
}
