//! Parsing and validating the catalog file. The raw serde shapes live here and nowhere else: what
//! leaves this module is a checked [`GpuType`].

use std::collections::HashMap;

use capsight_proto::domain::{FieldError, InstanceType, Provider, Region, ZoneId};
use chrono::NaiveDate;
use serde::Deserialize;

use crate::quota::{QuotaCodes, aws_quota_codes, is_aws_quota_code};
use crate::{CatalogError, GpuType};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    model: Vec<RawModel>,
    #[serde(default)]
    instance: Vec<RawInstance>,
    #[serde(default)]
    zones: Vec<RawZones>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZones {
    provider: String,
    region: String,
    ids: Vec<String>,
}

/// A provider's zones per region.
pub(crate) type Zones = HashMap<(Provider, Region), Vec<ZoneId>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    memory_gib: u32,
    class: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    provider: String,
    instance_type: String,
    gpu_model: String,
    gpu_memory_gib: u32,
    gpu_count: u32,
    vcpus: u32,
    memory_gib: u32,
    quota: RawQuota,
    regions: Vec<String>,
    on_demand_usd_per_hour: f64,
    /// A TOML local date (`2025-07-01`) or the same as a string.
    price_date: toml::Value,
    capacity_blocks: bool,
    /// The provider's own id of the hardware when the instance type is capsight's spelling
    /// (RunPod's GPU type id); required for RunPod.
    #[serde(default)]
    provider_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    on_demand: String,
    spot: Option<String>,
}

/// Builds the error for one entry.
struct Entry(String);

impl Entry {
    fn err(&self, field: &str, reason: impl Into<String>) -> CatalogError {
        CatalogError::Invalid {
            entry: self.0.clone(),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    fn field_error(&self, e: &FieldError) -> CatalogError {
        self.err(e.field(), e.reason())
    }
}

/// Parses and validates catalog text into its entries, in file order, and its zones.
pub(crate) fn parse(text: &str) -> Result<(Vec<GpuType>, Zones), CatalogError> {
    let raw: RawFile = toml::from_str(text)?;
    let zones = zones(raw.zones)?;
    let classes = models(&raw.model)?;
    if raw.instance.is_empty() {
        return Err(Entry("catalog".into()).err("instance", "has no entries"));
    }
    let mut seen: HashMap<(Provider, InstanceType), usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.instance.len());
    for (i, r) in raw.instance.into_iter().enumerate() {
        let entry = Entry(format!(
            "instance[{i}] ({} {})",
            r.provider, r.instance_type
        ));
        let gpu = instance(&entry, r, &classes)?;
        let key = (gpu.provider, gpu.instance_type.clone());
        if let Some(first) = seen.get(&key) {
            return Err(entry.err(
                "instance_type",
                format!("duplicates instance[{first}]: each provider's type is listed once"),
            ));
        }
        seen.insert(key, i);
        out.push(gpu);
    }
    Ok((out, zones))
}

/// The `[[zones]]` table: each (provider, region) once, every id a valid zone of its region.
fn zones(raw: Vec<RawZones>) -> Result<Zones, CatalogError> {
    let mut out = Zones::new();
    for (i, z) in raw.into_iter().enumerate() {
        let entry = Entry(format!("zones[{i}] ({} {})", z.provider, z.region));
        let provider =
            Provider::parse("provider", &z.provider).map_err(|e| entry.field_error(&e))?;
        let region =
            Region::parse("region", provider, &z.region).map_err(|e| entry.field_error(&e))?;
        if z.ids.is_empty() {
            return Err(entry.err("ids", "must list at least one zone"));
        }
        let mut ids = Vec::with_capacity(z.ids.len());
        for (j, text) in z.ids.iter().enumerate() {
            let field = format!("ids[{j}]");
            let id = ZoneId::parse_optional(&field, provider, &region, text)
                .map_err(|e| entry.field_error(&e))?
                .ok_or_else(|| entry.err(&field, "is empty"))?;
            if ids.contains(&id) {
                return Err(entry.err(&field, format!("{text:?} is listed twice")));
            }
            ids.push(id);
        }
        if out.insert((provider, region), ids).is_some() {
            return Err(entry.err("region", "is listed twice for this provider"));
        }
    }
    Ok(out)
}

/// The `[[model]]` table: (name, memory per GPU) -> class.
fn models(raw: &[RawModel]) -> Result<HashMap<(String, u32), u32>, CatalogError> {
    let mut classes = HashMap::new();
    for (i, m) in raw.iter().enumerate() {
        let entry = Entry(format!("model[{i}] ({} {} GiB)", m.name, m.memory_gib));
        if m.name.trim().is_empty() {
            return Err(entry.err("name", "is required"));
        }
        if m.memory_gib == 0 {
            return Err(entry.err("memory_gib", "must be greater than 0"));
        }
        if m.class == 0 {
            return Err(entry.err("class", "must be greater than 0"));
        }
        if classes
            .insert((m.name.clone(), m.memory_gib), m.class)
            .is_some()
        {
            return Err(entry.err("name", "duplicates an earlier model with the same memory"));
        }
    }
    Ok(classes)
}

fn positive(entry: &Entry, field: &str, v: u32) -> Result<u32, CatalogError> {
    if v == 0 {
        Err(entry.err(field, "must be greater than 0"))
    } else {
        Ok(v)
    }
}

fn instance(
    entry: &Entry,
    r: RawInstance,
    classes: &HashMap<(String, u32), u32>,
) -> Result<GpuType, CatalogError> {
    let provider = Provider::parse("provider", &r.provider).map_err(|e| entry.field_error(&e))?;
    let instance_type = InstanceType::parse("instance_type", provider, &r.instance_type)
        .map_err(|e| entry.field_error(&e))?;
    let gpu_memory_gib = positive(entry, "gpu_memory_gib", r.gpu_memory_gib)?;
    let gpu_class = *classes
        .get(&(r.gpu_model.clone(), gpu_memory_gib))
        .ok_or_else(|| {
            entry.err(
                "gpu_model",
                format!(
                    "{:?} with {gpu_memory_gib} GiB is not a [[model]] of the catalog",
                    r.gpu_model
                ),
            )
        })?;

    if r.regions.is_empty() {
        return Err(entry.err("regions", "must list at least one region"));
    }
    let mut regions = Vec::with_capacity(r.regions.len());
    for (j, text) in r.regions.iter().enumerate() {
        let field = format!("regions[{j}]");
        let region = Region::parse(&field, provider, text).map_err(|e| entry.field_error(&e))?;
        if regions.contains(&region) {
            return Err(entry.err(&field, format!("{text:?} is listed twice")));
        }
        regions.push(region);
    }

    let price = r.on_demand_usd_per_hour;
    if !(price.is_finite() && price > 0.0) {
        return Err(entry.err(
            "on_demand_usd_per_hour",
            format!("must be a finite number greater than 0, not {price}"),
        ));
    }

    let date_text = match &r.price_date {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => other.to_string(),
    };
    let price_date = NaiveDate::parse_from_str(&date_text, "%Y-%m-%d").map_err(|_| {
        entry.err(
            "price_date",
            format!("{date_text} is not a date like 2025-07-01"),
        )
    })?;

    let quota = quota(entry, provider, &instance_type, r.quota)?;
    let provider_id = match (provider, r.provider_id) {
        (_, Some(id)) if id.trim().is_empty() || id.len() > 64 => {
            return Err(entry.err("provider_id", "must be 1-64 characters"));
        }
        (Provider::RunPod, None) => {
            return Err(entry.err(
                "provider_id",
                "is required for RunPod (its GPU type id, e.g. \"NVIDIA H100 80GB HBM3\")",
            ));
        }
        (_, id) => id,
    };
    if provider == Provider::RunPod
        && !instance_type
            .as_str()
            .starts_with(&format!("{}x_", r.gpu_count))
    {
        return Err(entry.err(
            "instance_type",
            format!(
                "a RunPod type starts with its gpu_count ({}x_)",
                r.gpu_count
            ),
        ));
    }

    Ok(GpuType {
        provider,
        instance_type,
        gpu_model: r.gpu_model,
        gpu_memory_gib,
        gpu_count: positive(entry, "gpu_count", r.gpu_count)?,
        vcpus: positive(entry, "vcpus", r.vcpus)?,
        memory_gib: positive(entry, "memory_gib", r.memory_gib)?,
        quota,
        regions,
        on_demand_usd_per_hour: price,
        price_date,
        capacity_blocks: r.capacity_blocks,
        gpu_class,
        provider_id,
    })
}

fn quota(
    entry: &Entry,
    provider: Provider,
    instance_type: &InstanceType,
    raw: RawQuota,
) -> Result<QuotaCodes, CatalogError> {
    let check = |field: &str, code: &str| -> Result<(), CatalogError> {
        let (ok, shape) = match provider {
            Provider::Aws => (is_aws_quota_code(code), "an AWS quota code like L-417A185B"),
            Provider::Gcp => (
                !code.is_empty()
                    && code
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "a GCP quota metric like NVIDIA_H100_GPUS",
            ),
            Provider::Azure => (
                // standardNDSH100v5Family, standardNDASv4_A100Family
                !code.is_empty() && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "an Azure quota name like standardNDSH100v5Family",
            ),
            Provider::Lambda | Provider::RunPod => (
                !code.is_empty() && code.chars().all(|c| c.is_ascii_graphic()),
                "a non-empty name without spaces",
            ),
        };
        if code.is_empty() {
            Err(entry.err(field, "is required"))
        } else if ok {
            Ok(())
        } else {
            Err(entry.err(field, format!("{code:?} is not {shape}")))
        }
    };
    check("quota.on_demand", &raw.on_demand)?;
    if let Some(spot) = &raw.spot {
        check("quota.spot", spot)?;
    }
    let expected = match provider {
        Provider::Aws => aws_quota_codes(instance_type),
        _ => None,
    };
    if let Some((family, expected)) = expected {
        if raw.on_demand != expected.on_demand {
            return Err(entry.err(
                "quota.on_demand",
                format!(
                    "is {} but the {family} family's on-demand quota is {}",
                    raw.on_demand, expected.on_demand
                ),
            ));
        }
        if let (Some(spot), Some(want)) = (&raw.spot, &expected.spot)
            && spot != want
        {
            return Err(entry.err(
                "quota.spot",
                format!("is {spot} but {instance_type}'s spot quota is {want}"),
            ));
        }
    }
    Ok(QuotaCodes {
        on_demand: raw.on_demand,
        spot: raw.spot,
    })
}
