//! The GPU catalog: for each instance type capsight knows, its GPUs (model, count, memory,
//! capability class), vCPUs, host memory, quota codes for on-demand and spot, the regions it is
//! offered in, its approximate on-demand list price with the date it was taken, and whether it
//! can be booked as an EC2 Capacity Block.
//!
//! Contract:
//! * The data lives in `proto/catalog/gpus.toml` (embedded: [`Catalog::embedded`]) or a file
//!   given at run time ([`Catalog::load`]). A catalog is validated completely when it is built;
//!   a [`Catalog`] in hand holds only checked entries, and a bad file is a [`CatalogError`]
//!   naming the entry and field.
//! * Prices are approximate list prices for estimates and ranking, never billing.
//! * The `[[zones]]` table lists each provider's zones per region: [`Catalog::check_key`]
//!   accepts only keys of a catalog type, offered in its region, in a listed zone — what every
//!   door that takes keys from tenants checks, so nobody invents keys.
//! * Used by quota headroom ([`GpuType::headroom_instances`]), probe cost estimates
//!   ([`GpuType::on_demand_usd_per_hour`]) and alternatives ([`Catalog::substitutes`], which
//!   never offers a smaller GPU).
//!
//! ```
//! use capsight_catalog::Catalog;
//! use capsight_proto::domain::{InstanceType, Market, Provider};
//!
//! let catalog = Catalog::embedded()?;
//! let p5 = InstanceType::parse("instance_type", Provider::Aws, "p5.48xlarge")?;
//! let p5 = catalog.get(Provider::Aws, &p5).expect("in the catalog");
//! assert_eq!(p5.quota_code(Market::Spot), Some("L-C4BD4855"));
//! assert_eq!(p5.headroom_instances(384.0, 192.0), 1);
//! assert!(catalog.substitutes(p5, 8).all(|s| s.gpu_class >= p5.gpu_class));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod load;
mod quota;

use std::collections::HashMap;
use std::path::Path;

use capsight_proto::domain::{CapacityKey, InstanceType, Market, Provider, Region, ZoneId};
use chrono::NaiveDate;

pub use error::{CatalogError, UnknownKey};
pub use quota::{QuotaCodes, QuotaUnit, aws_quota_codes};

/// The catalog file shipped with the code.
pub const EMBEDDED_TOML: &str = include_str!("../gpus.toml");

/// One instance type of one provider.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GpuType {
    /// The cloud.
    pub provider: Provider,
    /// The provider's instance type name.
    pub instance_type: InstanceType,
    /// GPU model, e.g. `H100`.
    pub gpu_model: String,
    /// Memory per GPU, GiB.
    pub gpu_memory_gib: u32,
    /// GPUs per instance (> 0).
    pub gpu_count: u32,
    /// vCPUs per instance (> 0); what AWS and Azure quotas count.
    pub vcpus: u32,
    /// Host memory, GiB.
    pub memory_gib: u32,
    /// Quota codes for on-demand and spot.
    pub quota: QuotaCodes,
    /// Regions it is offered in (at least one, no duplicates).
    pub regions: Vec<Region>,
    /// Approximate on-demand list price, USD per instance-hour (finite, > 0).
    pub on_demand_usd_per_hour: f64,
    /// When that price was taken.
    pub price_date: NaiveDate,
    /// Bookable as an EC2 Capacity Block for ML.
    pub capacity_blocks: bool,
    /// GPU capability rank: higher = more capable (T4 < A10G < L4 < L40S < A100-40 < A100-80 <
    /// H100 < H200), from the catalog's `[[model]]` table.
    pub gpu_class: u32,
    /// The provider's own id of the hardware when the instance type is capsight's spelling:
    /// RunPod's GPU type id (`NVIDIA H100 80GB HBM3`; the count is the type's `gpu_count`).
    pub provider_id: Option<String>,
}

impl GpuType {
    /// The quota code `market` counts against: on-demand, spot (if known), none for capacity
    /// blocks.
    pub fn quota_code(&self, market: Market) -> Option<&str> {
        self.quota.for_market(market)
    }

    /// Instances of this type that fit in a vCPU quota: `floor((limit - used) / vcpus)`, 0 when
    /// that is negative or not a number, saturating at `u32::MAX`.
    pub fn headroom_instances(&self, limit_vcpus: f64, used_vcpus: f64) -> u32 {
        fits(limit_vcpus - used_vcpus, self.vcpus)
    }

    /// What this provider's quota counts (vCPUs, GPUs or instances).
    pub fn quota_unit(&self) -> QuotaUnit {
        QuotaUnit::of(self.provider)
    }

    /// Instances that fit in a quota given in the provider's own [`QuotaUnit`]: per vCPU for AWS
    /// and Azure, per GPU for GCP, per instance for Lambda. Same rounding as
    /// [`GpuType::headroom_instances`].
    pub fn headroom(&self, limit: f64, used: f64) -> u32 {
        let per_instance = match self.quota_unit() {
            QuotaUnit::Vcpus => self.vcpus,
            QuotaUnit::Gpus => self.gpu_count,
            QuotaUnit::Instances => 1,
        };
        fits(limit - used, per_instance)
    }

    /// On-demand price per GPU-hour.
    pub fn usd_per_gpu_hour(&self) -> f64 {
        self.on_demand_usd_per_hour / f64::from(self.gpu_count)
    }

    /// Total GPU memory of one instance, GiB.
    pub fn total_gpu_memory_gib(&self) -> u32 {
        self.gpu_memory_gib.saturating_mul(self.gpu_count)
    }

    /// Whether it is offered in `region`.
    pub fn offered_in(&self, region: &Region) -> bool {
        self.regions.contains(region)
    }
}

/// How many units of `per_instance` fit in `free`.
fn fits(free: f64, per_instance: u32) -> u32 {
    if per_instance == 0 || free.is_nan() || free <= 0.0 {
        return 0;
    }
    let n = (free / f64::from(per_instance)).floor();
    if n >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        // In range and non-negative: the conversion is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = n as u32;
        n
    }
}

/// The validated catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    types: Vec<GpuType>,
    index: HashMap<(Provider, InstanceType), usize>,
    zones: load::Zones,
}

impl Catalog {
    /// The catalog shipped with the code (`proto/catalog/gpus.toml`).
    pub fn embedded() -> Result<Catalog, CatalogError> {
        Self::parse(EMBEDDED_TOML)
    }

    /// The catalog file at `path` when given (a `--catalog` flag), else the embedded one.
    pub fn load_or_embedded(path: Option<&Path>) -> Result<Catalog, CatalogError> {
        path.map_or_else(Self::embedded, Self::load)
    }

    /// Reads and validates a catalog file.
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Validates catalog text.
    pub fn parse(toml: &str) -> Result<Catalog, CatalogError> {
        let (types, zones) = load::parse(toml)?;
        let index = types
            .iter()
            .enumerate()
            .map(|(i, t)| ((t.provider, t.instance_type.clone()), i))
            .collect();
        Ok(Self {
            types,
            index,
            zones,
        })
    }

    /// The provider's known zones in `region` (empty when the catalog lists none).
    pub fn zones(&self, provider: Provider, region: &Region) -> &[ZoneId] {
        self.zones
            .get(&(provider, region.clone()))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether `zone` is a known zone of `provider` in `region`.
    pub fn knows_zone(&self, provider: Provider, region: &Region, zone: &ZoneId) -> bool {
        self.zones(provider, region).contains(zone)
    }

    /// Accepts a key only when its type is in the catalog, offered in its region, and its zone
    /// (if any) is a known zone of that region. The error names the offending field
    /// (`instance_type`, `region`, `zone_id`).
    pub fn check_key(&self, key: &CapacityKey) -> Result<(), UnknownKey> {
        let Some(t) = self.get(key.provider, &key.instance_type) else {
            return Err(UnknownKey::new(
                "instance_type",
                format!(
                    "{} is not a {} GPU instance type of the catalog",
                    key.instance_type, key.provider
                ),
            ));
        };
        if !t.offered_in(&key.region) {
            return Err(UnknownKey::new(
                "region",
                format!(
                    "{} is not offered in {} per the catalog",
                    key.instance_type, key.region
                ),
            ));
        }
        if let Some(zone) = &key.zone
            && !self.knows_zone(key.provider, &key.region, zone)
        {
            return Err(UnknownKey::new(
                "zone_id",
                format!(
                    "{} is not a known zone of {} {}",
                    zone.as_str(),
                    key.provider,
                    key.region
                ),
            ));
        }
        Ok(())
    }

    /// The entry for a provider's instance type.
    pub fn get(&self, provider: Provider, instance_type: &InstanceType) -> Option<&GpuType> {
        self.index
            .get(&(provider, instance_type.clone()))
            .and_then(|i| self.types.get(*i))
    }

    /// The catalog type of `provider` whose provider id is `id` with `gpu_count` GPUs (RunPod:
    /// a GPU type id and a pod's GPU count).
    pub fn by_provider_id(&self, provider: Provider, id: &str, gpu_count: u32) -> Option<&GpuType> {
        self.types.iter().find(|t| {
            t.provider == provider
                && t.gpu_count == gpu_count
                && t.provider_id.as_deref() == Some(id)
        })
    }

    /// Every entry, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &GpuType> {
        self.types.iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Never true for a validated catalog; here for completeness.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The provider's entries offered in `region`, in file order. The iterator borrows only the
    /// catalog.
    pub fn offered_in<'a>(
        &'a self,
        provider: Provider,
        region: &Region,
    ) -> impl Iterator<Item = &'a GpuType> + use<'a> {
        let region = region.clone();
        self.types
            .iter()
            .filter(move |t| t.provider == provider && t.offered_in(&region))
    }

    /// Same-or-better substitutes for `t` for a workload that needs `min_gpus` GPUs on one
    /// instance (0 counts as 1): every other entry, of any provider, with `gpu_class >=`,
    /// `gpu_memory_gib >=` (per GPU) and `gpu_count >= min_gpus`. Never a smaller GPU. Cheapest
    /// first (on-demand price), ties by provider and type. The iterator borrows only the
    /// catalog, not `t`.
    pub fn substitutes<'a>(
        &'a self,
        t: &GpuType,
        min_gpus: u32,
    ) -> impl Iterator<Item = &'a GpuType> + use<'a> {
        let need = min_gpus.max(1);
        let mut found: Vec<&GpuType> = self
            .types
            .iter()
            .filter(|c| !(c.provider == t.provider && c.instance_type == t.instance_type))
            .filter(|c| {
                c.gpu_class >= t.gpu_class
                    && c.gpu_memory_gib >= t.gpu_memory_gib
                    && c.gpu_count >= need
            })
            .collect();
        found.sort_by(|a, b| {
            a.on_demand_usd_per_hour
                .total_cmp(&b.on_demand_usd_per_hour)
                .then_with(|| a.provider.cmp(&b.provider))
                .then_with(|| a.instance_type.cmp(&b.instance_type))
        });
        found.into_iter()
    }
}

impl<'a> IntoIterator for &'a Catalog {
    type Item = &'a GpuType;
    type IntoIter = std::slice::Iter<'a, GpuType>;

    fn into_iter(self) -> Self::IntoIter {
        self.types.iter()
    }
}
