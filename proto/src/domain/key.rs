//! The capacity key and its parts. Each part is a newtype whose only constructor validates it
//! for its provider, so a [`CapacityKey`] in hand is always well formed.
//!
//! String form: `provider/region/zone_id/instance_type/market`, zone empty when region-wide,
//! e.g. `aws/us-east-1/use1-az4/p5.48xlarge/spot` or `aws/us-east-1//p5.48xlarge/on_demand`.

use std::{fmt, str::FromStr};

use super::{FieldError, Market};
use crate::v1;

/// A cloud provider capsight knows how to key.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Amazon Web Services.
    Aws,
    /// Google Cloud.
    Gcp,
    /// Microsoft Azure.
    Azure,
    /// Lambda Cloud.
    Lambda,
    /// RunPod, a GPU marketplace cloud. Its "region" is its cloud type (`secure` or
    /// `community`, [`RUNPOD_CLOUDS`]); it has no zones.
    #[serde(rename = "runpod")]
    RunPod,
}

/// RunPod's cloud types, which capsight keys as its regions: Secure Cloud (RunPod's own data
/// centers) and Community Cloud (vetted hosts' machines). RunPod reports stock and prices per
/// cloud type; its data-center ids are not part of the key.
pub const RUNPOD_CLOUDS: &[&str] = &["secure", "community"];

impl Provider {
    /// Every provider.
    pub const ALL: &'static [Self] = &[
        Self::Aws,
        Self::Gcp,
        Self::Azure,
        Self::Lambda,
        Self::RunPod,
    ];

    /// The lowercase name used in keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Gcp => "gcp",
            Self::Azure => "azure",
            Self::Lambda => "lambda",
            Self::RunPod => "runpod",
        }
    }

    /// Parses a provider name; `field` names the field in the error.
    pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
        Self::ALL
            .iter()
            .copied()
            .find(|p| p.as_str() == text)
            .ok_or_else(|| {
                FieldError::new(
                    field,
                    format!("{text:?} is not a known provider (aws, gcp, azure, lambda, runpod)"),
                )
            })
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `a-b-1` style: lowercase letters/digits in hyphen-separated non-empty segments.
fn hyphen_segments(text: &str) -> Option<Vec<&str>> {
    let segments: Vec<&str> = text.split('-').collect();
    segments
        .iter()
        .all(|s| !s.is_empty() && s.chars().all(is_lower_alnum))
        .then_some(segments)
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

fn all_letters(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase())
}

text_newtype!(
    /// A provider region such as `us-east-1`, `europe-west4` or `eastus`.
    Region
);

impl Region {
    /// Validates `text` as a region of `provider`.
    pub fn parse(field: &str, provider: Provider, text: &str) -> Result<Self, FieldError> {
        let bad = |why: &str| Err(FieldError::new(field, format!("{text:?} {why}")));
        if text.is_empty() {
            return Err(FieldError::missing(field));
        }
        if text.len() > 40 {
            return bad("is longer than 40 characters");
        }
        let ok = match provider {
            // us-east-1, us-gov-west-1, ap-southeast-2; Lambda uses the same shape
            // (us-east-1, europe-central-1).
            Provider::Aws | Provider::Lambda => hyphen_segments(text).is_some_and(|s| {
                s.len() >= 3
                    && s[..s.len() - 1].iter().all(|p| all_letters(p))
                    && s.last().is_some_and(|l| all_digits(l))
            }),
            // us-central1, europe-west4
            Provider::Gcp => hyphen_segments(text).is_some_and(|s| {
                s.len() == 2
                    && all_letters(s[0])
                    && s[1].starts_with(|c: char| c.is_ascii_lowercase())
                    && s[1].ends_with(|c: char| c.is_ascii_digit())
            }),
            // eastus, westeurope, eastus2
            Provider::Azure => {
                text.starts_with(|c: char| c.is_ascii_lowercase())
                    && text.chars().all(is_lower_alnum)
            }
            // secure, community
            Provider::RunPod => RUNPOD_CLOUDS.contains(&text),
        };
        if !ok {
            let example = match provider {
                Provider::Aws => "us-east-1",
                Provider::Lambda => "us-west-1",
                Provider::Gcp => "us-central1",
                Provider::Azure => "eastus",
                Provider::RunPod => "secure or community",
            };
            return bad(&format!(
                "is not a valid {provider} region (e.g. {example})"
            ));
        }
        Ok(Self(text.to_owned()))
    }
}

text_newtype!(
    /// A zone *ID*: the same physical zone for every account (AWS `use1-az4`, GCP `us-central1-a`,
    /// Azure `eastus-1`). AWS AZ *names* (`us-east-1a`) are rejected: they differ per account.
    ZoneId
);

impl ZoneId {
    /// Validates `text` as a zone id of `provider` in `region`; empty text means region-wide.
    pub fn parse_optional(
        field: &str,
        provider: Provider,
        region: &Region,
        text: &str,
    ) -> Result<Option<Self>, FieldError> {
        if text.is_empty() {
            return Ok(None);
        }
        let bad = |why: String| Err(FieldError::new(field, format!("{text:?} {why}")));
        if text.len() > 40 {
            return bad("is longer than 40 characters".into());
        }
        match provider {
            Provider::Aws => {
                if text.starts_with(region.as_str()) {
                    return bad(
                        "looks like an AZ name; capsight keys zones by AZ ID (e.g. use1-az4), \
                         which DescribeAvailabilityZones maps from names"
                            .into(),
                    );
                }
                // use1-az4, apne1-az1, usw2-lax1-az1 (local zone)
                let ok = hyphen_segments(text).is_some_and(|s| {
                    (2..=3).contains(&s.len())
                        && s.last()
                            .is_some_and(|l| l.strip_prefix("az").is_some_and(all_digits))
                        && s[..s.len() - 1].iter().all(|p| {
                            let letters = p.trim_end_matches(|c: char| c.is_ascii_digit());
                            all_letters(letters) && letters.len() < p.len()
                        })
                });
                if !ok {
                    return bad("is not an AWS AZ ID (e.g. use1-az4)".into());
                }
            }
            // `<region>-<one letter>` (GCP) or `<region>-<one digit>` (Azure)
            Provider::Gcp | Provider::Azure => {
                let (suffix_ok, example): (fn(&str) -> bool, _) = if provider == Provider::Gcp {
                    (all_letters, "a")
                } else {
                    (all_digits, "1")
                };
                let ok = text
                    .strip_prefix(region.as_str())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|z| z.len() == 1 && suffix_ok(z));
                if !ok {
                    return bad(format!(
                        "is not a zone of {region} (e.g. {region}-{example})"
                    ));
                }
            }
            Provider::Lambda => return bad(": lambda has no zones; leave zone_id empty".into()),
            Provider::RunPod => return bad(": runpod has no zones; leave zone_id empty".into()),
        }
        Ok(Some(Self(text.to_owned())))
    }
}

text_newtype!(
    /// A provider instance type such as `p5.48xlarge`, `a3-highgpu-8g`, `Standard_ND96isr_H100_v5`
    /// or `gpu_8x_h100_sxm5`. Well formed for its provider; whether it exists is the catalog's call.
    InstanceType
);

impl InstanceType {
    /// Validates `text` as an instance type name of `provider`.
    pub fn parse(field: &str, provider: Provider, text: &str) -> Result<Self, FieldError> {
        if text.is_empty() {
            return Err(FieldError::missing(field));
        }
        let lower_dash = |s: &str| {
            !s.is_empty()
                && s.chars().all(|c| is_lower_alnum(c) || c == '-')
                && !s.starts_with('-')
                && !s.ends_with('-')
        };
        let (ok, example) = match provider {
            Provider::Aws => (
                text.len() <= 32
                    && text.split_once('.').is_some_and(|(family, size)| {
                        family.starts_with(|c: char| c.is_ascii_lowercase())
                            && lower_dash(family)
                            && lower_dash(size)
                    }),
                "p5.48xlarge",
            ),
            Provider::Gcp => (
                text.len() <= 40
                    && text.starts_with(|c: char| c.is_ascii_lowercase())
                    && text.contains('-')
                    && hyphen_segments(text).is_some(),
                "a3-highgpu-8g",
            ),
            Provider::Azure => (
                text.len() <= 64
                    && text.strip_prefix("Standard_").is_some_and(|rest| {
                        !rest.is_empty()
                            && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    }),
                "Standard_ND96isr_H100_v5",
            ),
            Provider::Lambda => (
                text.len() <= 40
                    && text.strip_prefix("gpu_").is_some_and(|rest| {
                        !rest.is_empty() && rest.chars().all(|c| is_lower_alnum(c) || c == '_')
                    }),
                "gpu_8x_h100_sxm5",
            ),
            // `<gpus>x_<gpu>`: GPUs per pod and capsight's name of a RunPod GPU type
            Provider::RunPod => (
                text.len() <= 40
                    && text.split_once("x_").is_some_and(|(count, gpu)| {
                        all_digits(count)
                            && !count.starts_with('0')
                            && gpu.starts_with(|c: char| c.is_ascii_lowercase())
                            && gpu.chars().all(|c| is_lower_alnum(c) || c == '_')
                            && !gpu.ends_with('_')
                    }),
                "1x_h100_sxm",
            ),
        };
        if !ok {
            return Err(FieldError::new(
                field,
                format!("{text:?} is not a valid {provider} instance type (e.g. {example})"),
            ));
        }
        Ok(Self(text.to_owned()))
    }
}

/// One scored unit: provider, region, zone (None = region-wide), instance type, market.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CapacityKey {
    /// The cloud.
    pub provider: Provider,
    /// The region.
    pub region: Region,
    /// The zone id; `None` = region-wide.
    pub zone: Option<ZoneId>,
    /// The instance type.
    pub instance_type: InstanceType,
    /// The market.
    pub market: Market,
}

impl CapacityKey {
    /// Validates every part; errors name `provider`, `region`, `zone_id`, `instance_type` or
    /// `market` (callers prefix the parent with [`FieldError::within`]).
    pub fn parse(
        provider: &str,
        region: &str,
        zone_id: &str,
        instance_type: &str,
        market: Market,
    ) -> Result<Self, FieldError> {
        let provider = Provider::parse("provider", provider)?;
        let region = Region::parse("region", provider, region)?;
        let zone = ZoneId::parse_optional("zone_id", provider, &region, zone_id)?;
        let instance_type = InstanceType::parse("instance_type", provider, instance_type)?;
        Ok(Self {
            provider,
            region,
            zone,
            instance_type,
            market,
        })
    }

    /// The Kafka message key for signals: `provider/region/instance_type`, so one key's signals
    /// stay ordered on one partition whatever their zone or market.
    pub fn partition_key(&self) -> String {
        format!("{}/{}/{}", self.provider, self.region, self.instance_type)
    }

    /// The zone id, or `""` when region-wide.
    pub fn zone_str(&self) -> &str {
        self.zone.as_ref().map_or("", ZoneId::as_str)
    }
}

impl fmt::Display for CapacityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}/{}",
            self.provider,
            self.region,
            self.zone_str(),
            self.instance_type,
            self.market
        )
    }
}

impl FromStr for CapacityKey {
    type Err = FieldError;

    /// Parses the string form `provider/region/zone_id/instance_type/market`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let [provider, region, zone, instance_type, market] = parts[..] else {
            return Err(FieldError::new(
                "key",
                format!("{s:?} is not provider/region/zone_id/instance_type/market"),
            ));
        };
        let market = Market::parse("market", market)?;
        Self::parse(provider, region, zone, instance_type, market)
    }
}

impl TryFrom<v1::CapacityKey> for CapacityKey {
    type Error = FieldError;

    fn try_from(wire: v1::CapacityKey) -> Result<Self, Self::Error> {
        let market = Market::from_wire("market", wire.market)?;
        Self::parse(
            &wire.provider,
            &wire.region,
            &wire.zone_id,
            &wire.instance_type,
            market,
        )
    }
}

impl From<&CapacityKey> for v1::CapacityKey {
    fn from(key: &CapacityKey) -> Self {
        Self {
            provider: key.provider.as_str().to_owned(),
            region: key.region.as_str().to_owned(),
            zone_id: key.zone_str().to_owned(),
            instance_type: key.instance_type.as_str().to_owned(),
            market: key.market.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Result<CapacityKey, FieldError> {
        s.parse()
    }

    #[test]
    fn string_form_round_trips() {
        for s in [
            "aws/us-east-1/use1-az4/p5.48xlarge/spot",
            "aws/us-gov-west-1//g6e.xlarge/on_demand",
            "aws/us-west-2/usw2-lax1-az1/c7i.metal-24xl/on_demand",
            "aws/us-east-1/use1-az2/u7i-12tb.224xlarge/capacity_block",
            "gcp/us-central1/us-central1-a/a3-highgpu-8g/spot",
            "azure/eastus/eastus-1/Standard_ND96isr_H100_v5/on_demand",
            "lambda/us-east-1//gpu_8x_h100_sxm5/on_demand",
            "runpod/secure//1x_h100_sxm/on_demand",
            "runpod/community//8x_rtx_4090/spot",
        ] {
            let k = key(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(k.to_string(), s);
        }
    }

    #[test]
    fn bad_parts_name_their_field() {
        for (s, field) in [
            ("oracle/us-east-1//p5.48xlarge/spot", "provider"),
            ("aws/US-EAST-1//p5.48xlarge/spot", "region"),
            ("aws/us-east//p5.48xlarge/spot", "region"),
            ("aws/us-east-1/us-east-1a/p5.48xlarge/spot", "zone_id"),
            ("aws/us-east-1/az4/p5.48xlarge/spot", "zone_id"),
            ("aws/us-east-1//p5/spot", "instance_type"),
            ("aws/us-east-1//P5.48XLARGE/spot", "instance_type"),
            ("aws/us-east-1//p5.48xlarge/reserved", "market"),
            ("gcp/us-central1/us-east1-a/a3-highgpu-8g/spot", "zone_id"),
            ("azure/east-us//Standard_NC24/on_demand", "region"),
            ("lambda/us-east-1/use1-az1/gpu_1x_a10/on_demand", "zone_id"),
            ("runpod/us-ks-2//1x_h100_sxm/on_demand", "region"),
            ("runpod/secure/secure-1/1x_h100_sxm/on_demand", "zone_id"),
            ("runpod/secure//h100_sxm/on_demand", "instance_type"),
            ("runpod/secure//0x_h100_sxm/on_demand", "instance_type"),
            ("runpod/secure//1x_H100/on_demand", "instance_type"),
            ("aws/us-east-1/p5.48xlarge/spot", "key"),
        ] {
            let err = key(s).expect_err(s);
            assert_eq!(err.field(), field, "{s}: {err}");
        }
    }

    #[test]
    fn providers_parse_their_names() {
        for p in Provider::ALL {
            assert_eq!(Provider::parse("p", p.as_str()).unwrap(), *p);
        }
        assert_eq!(Provider::RunPod.to_string(), "runpod");
    }

    #[test]
    fn az_names_get_a_helpful_reason() {
        let err = key("aws/us-east-1/us-east-1b/p5.48xlarge/spot").unwrap_err();
        assert!(err.reason().contains("AZ ID"), "{err}");
    }

    #[test]
    fn wire_conversion_round_trips_and_rejects_unspecified_market() {
        let k = key("aws/eu-west-1/euw1-az2/p4d.24xlarge/on_demand").unwrap();
        let wire = v1::CapacityKey::from(&k);
        assert_eq!(CapacityKey::try_from(wire.clone()).unwrap(), k);
        let unspecified = v1::CapacityKey { market: 0, ..wire };
        assert_eq!(
            CapacityKey::try_from(unspecified).unwrap_err().field(),
            "market"
        );
    }

    #[test]
    fn partition_key_ignores_zone_and_market() {
        let a = key("aws/us-east-1/use1-az4/p5.48xlarge/spot").unwrap();
        let b = key("aws/us-east-1//p5.48xlarge/on_demand").unwrap();
        assert_eq!(a.partition_key(), "aws/us-east-1/p5.48xlarge");
        assert_eq!(a.partition_key(), b.partition_key());
    }
}
