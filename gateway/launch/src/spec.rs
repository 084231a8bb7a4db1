//! Launch requests to validated values, once, where they enter (the gateway's Preflight,
//! Alternatives and Launch, and the launcher re-checking a job). Every rejection is a
//! [`FieldError`] whose path names the request field (`spec.key.region`, `spec.count`,
//! `constraints.markets[1]`).
//!
//! Beyond the shape checks of the domain types: the instance type must be in the GPU catalog
//! and offered in the region, counts are bounded (launch count 1..=`gateway.max_launch_count`),
//! texts are bounded, enums must be known values.

use capsight_catalog::{Catalog, GpuType};
use capsight_proto::{
    domain::{CapacityKey, FieldError, Label, Market, Provider, Region},
    v1,
};

/// What the caller wants to launch, validated against the catalog.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Where.
    pub key: CapacityKey,
    /// Instances, 1..=max.
    pub count: u32,
    /// Machine image (`ami-...`).
    pub image_id: String,
    /// Subnet, if any.
    pub subnet_id: Option<String>,
    /// Spot max price per instance-hour.
    pub spot_max_price: Option<f64>,
    /// The catalog entry of the instance type.
    pub gpu: GpuType,
}

impl Spec {
    /// Back to the wire form (for the job message and GetLaunch).
    pub fn to_wire(&self) -> v1::LaunchSpec {
        v1::LaunchSpec {
            key: Some(v1::CapacityKey::from(&self.key)),
            count: self.count,
            image_id: self.image_id.clone(),
            subnet_id: self.subnet_id.clone().unwrap_or_default(),
            spot_max_price: self.spot_max_price.unwrap_or(0.0),
        }
    }
}

/// What a tenant accepts instead of the exact request.
#[derive(Debug, Clone)]
pub struct Constraints {
    /// Empty = any region.
    pub allowed_regions: Vec<Region>,
    /// Price cap per GPU-hour.
    pub max_usd_per_gpu_hour: Option<f64>,
    /// Markets allowed (resolved: never empty; spot only when interruptible).
    pub markets: Vec<Market>,
    /// Work survives interruption.
    pub interruptible: bool,
    /// Other instance types with a same-or-better GPU.
    pub allow_substitutes: bool,
    /// Other providers.
    pub allow_other_providers: bool,
    /// Minimum label of a candidate.
    pub min_label: Label,
    /// Most candidates.
    pub limit: usize,
}

/// Checks `text` is at most `max` bytes.
pub fn bounded(field: &str, text: &str, max: usize) -> Result<(), FieldError> {
    if text.len() > max {
        return Err(FieldError::new(
            field,
            format!("is longer than {max} bytes"),
        ));
    }
    Ok(())
}

/// 0 best (Available), 3 worst (Unavailable); unknown ranks between Limited and Unavailable.
pub fn label_rank(label: Label) -> u8 {
    label.rank()
}

/// A required capacity key.
pub fn key(field: &str, wire: Option<v1::CapacityKey>) -> Result<CapacityKey, FieldError> {
    let wire = wire.ok_or_else(|| FieldError::missing(field))?;
    CapacityKey::try_from(wire).map_err(|e| e.within(field))
}

pub fn optional_enum<T>(
    field: &str,
    value: i32,
    parse: impl Fn(&str, i32) -> Result<T, FieldError>,
) -> Result<Option<T>, FieldError> {
    if value == 0 {
        Ok(None)
    } else {
        parse(field, value).map(Some)
    }
}

fn finite_non_negative(field: &str, v: f64, max: f64) -> Result<Option<f64>, FieldError> {
    if !v.is_finite() || v < 0.0 || v > max {
        return Err(FieldError::new(field, format!("must be 0..={max}")));
    }
    Ok((v > 0.0).then_some(v))
}

/// A launch spec: key, count within `1..=max_count`, catalog membership, image and subnet.
pub fn spec(
    field: &str,
    wire: Option<v1::LaunchSpec>,
    catalog: &Catalog,
    max_count: u32,
    need_image: bool,
) -> Result<Spec, FieldError> {
    let wire = wire.ok_or_else(|| FieldError::missing(field))?;
    let f = |name: &str| format!("{field}.{name}");
    let key = key(&f("key"), wire.key)?;
    let gpu = catalog
        .get(key.provider, &key.instance_type)
        .ok_or_else(|| {
            FieldError::new(
                f("key.instance_type"),
                format!(
                    "{} is not a {} GPU instance type in the catalog",
                    key.instance_type, key.provider
                ),
            )
        })?
        .clone();
    if !gpu.offered_in(&key.region) {
        return Err(FieldError::new(
            f("key.region"),
            format!("{} is not offered in {}", key.instance_type, key.region),
        ));
    }
    if !(1..=max_count).contains(&wire.count) {
        return Err(FieldError::new(
            f("count"),
            format!("must be 1..={max_count}, got {}", wire.count),
        ));
    }
    let image_id = wire.image_id.trim().to_owned();
    if image_id.is_empty() && need_image {
        return Err(FieldError::missing(f("image_id")));
    }
    let image_ok = match key.provider {
        Provider::Aws => image_id.strip_prefix("ami-").is_some_and(|h| {
            (8..=17).contains(&h.len()) && h.chars().all(|c| c.is_ascii_hexdigit())
        }),
        _ => image_id.len() <= 256 && image_id.chars().all(|c| c.is_ascii_graphic()),
    };
    if !image_ok && !image_id.is_empty() {
        return Err(FieldError::new(
            f("image_id"),
            format!("{image_id:?} is not a machine image id (e.g. ami-0123456789abcdef0)"),
        ));
    }
    let subnet_id = match wire.subnet_id.trim() {
        "" => None,
        s => {
            let ok = s.strip_prefix("subnet-").is_some_and(|h| {
                (8..=17).contains(&h.len()) && h.chars().all(|c| c.is_ascii_hexdigit())
            });
            if !ok {
                return Err(FieldError::new(
                    f("subnet_id"),
                    format!("{s:?} is not a subnet id (e.g. subnet-0123abcd)"),
                ));
            }
            Some(s.to_owned())
        }
    };
    let spot_max_price = finite_non_negative(&f("spot_max_price"), wire.spot_max_price, 10_000.0)?;
    if spot_max_price.is_some() && key.market != Market::Spot {
        return Err(FieldError::new(
            f("spot_max_price"),
            "applies to the spot market only",
        ));
    }
    Ok(Spec {
        key,
        count: wire.count,
        image_id,
        subnet_id,
        spot_max_price,
        gpu,
    })
}

/// Constraints for `spec`; defaults as documented in `gateway.proto`.
pub fn constraints(
    field: &str,
    wire: Option<v1::Constraints>,
    spec: &Spec,
) -> Result<Constraints, FieldError> {
    let wire = wire.unwrap_or_default();
    let f = |name: &str| format!("{field}.{name}");
    if wire.allowed_regions.len() > 50 {
        return Err(FieldError::new(f("allowed_regions"), "at most 50 regions"));
    }
    let allowed_regions = wire
        .allowed_regions
        .iter()
        .enumerate()
        .map(|(i, r)| Region::parse(&f(&format!("allowed_regions[{i}]")), spec.key.provider, r))
        .collect::<Result<Vec<_>, _>>()?;
    let max_usd_per_gpu_hour =
        finite_non_negative(&f("max_usd_per_gpu_hour"), wire.max_usd_per_gpu_hour, 1.0e6)?;
    let mut markets = Vec::new();
    for (i, m) in wire.markets.iter().enumerate() {
        let field = f(&format!("markets[{i}]"));
        let m = Market::from_wire(&field, *m)?;
        if m == Market::Spot && !wire.interruptible {
            return Err(FieldError::new(
                field,
                "spot needs interruptible = true: spot capacity can be reclaimed with 2 minutes' notice",
            ));
        }
        if !markets.contains(&m) {
            markets.push(m);
        }
    }
    if markets.is_empty() {
        markets.push(spec.key.market);
        for m in [Market::OnDemand, Market::CapacityBlock] {
            if !markets.contains(&m) {
                markets.push(m);
            }
        }
        if wire.interruptible && !markets.contains(&Market::Spot) {
            markets.push(Market::Spot);
        }
    }
    let min_label =
        optional_enum(&f("min_label"), wire.min_label, Label::from_wire)?.unwrap_or(Label::Limited);
    if wire.limit > 20 {
        return Err(FieldError::new(f("limit"), "must be 0..=20"));
    }
    let limit = if wire.limit == 0 {
        3
    } else {
        wire.limit as usize
    };
    Ok(Constraints {
        allowed_regions,
        max_usd_per_gpu_hour,
        markets,
        interruptible: wire.interruptible,
        allow_substitutes: wire.allow_substitutes,
        allow_other_providers: wire.allow_other_providers,
        min_label,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::embedded().unwrap()
    }

    fn wire_spec(count: u32) -> v1::LaunchSpec {
        v1::LaunchSpec {
            key: Some(v1::CapacityKey {
                provider: "aws".into(),
                region: "us-east-1".into(),
                zone_id: "use1-az4".into(),
                instance_type: "p5.48xlarge".into(),
                market: v1::Market::OnDemand as i32,
            }),
            count,
            image_id: "ami-0123456789abcdef0".into(),
            ..Default::default()
        }
    }

    #[test]
    fn counts_are_bounded_and_named() {
        let c = catalog();
        assert!(spec("spec", Some(wire_spec(1)), &c, 32, true).is_ok());
        assert!(spec("spec", Some(wire_spec(32)), &c, 32, true).is_ok());
        for bad in [0, 33, 1000] {
            let e = spec("spec", Some(wire_spec(bad)), &c, 32, true).unwrap_err();
            assert_eq!(e.field(), "spec.count");
        }
    }

    #[test]
    fn unknown_types_regions_images_are_named() {
        let c = catalog();
        let mut w = wire_spec(1);
        w.key.as_mut().unwrap().instance_type = "m5.large".into();
        assert_eq!(
            spec("spec", Some(w), &c, 32, true).unwrap_err().field(),
            "spec.key.instance_type"
        );
        let mut w = wire_spec(1);
        w.key.as_mut().unwrap().region = "mars-north-1".into();
        w.key.as_mut().unwrap().zone_id.clear();
        assert_eq!(
            spec("spec", Some(w), &c, 32, true).unwrap_err().field(),
            "spec.key.region"
        );
        let mut w = wire_spec(1);
        w.image_id = "ubuntu".into();
        assert_eq!(
            spec("spec", Some(w), &c, 32, true).unwrap_err().field(),
            "spec.image_id"
        );
        assert_eq!(
            spec("spec", None, &c, 32, true).unwrap_err().field(),
            "spec"
        );
    }

    #[test]
    fn constraints_default_markets_and_spot_needs_interruptible() {
        let c = catalog();
        let s = spec("spec", Some(wire_spec(1)), &c, 32, true).unwrap();
        let k = constraints("constraints", None, &s).unwrap();
        assert_eq!(k.markets, vec![Market::OnDemand, Market::CapacityBlock]);
        assert_eq!(k.limit, 3);
        let bad = v1::Constraints {
            markets: vec![v1::Market::Spot as i32],
            ..Default::default()
        };
        assert_eq!(
            constraints("constraints", Some(bad), &s)
                .unwrap_err()
                .field(),
            "constraints.markets[0]"
        );
        let ok = v1::Constraints {
            interruptible: true,
            ..Default::default()
        };
        assert!(
            constraints("constraints", Some(ok), &s)
                .unwrap()
                .markets
                .contains(&Market::Spot)
        );
    }
}
