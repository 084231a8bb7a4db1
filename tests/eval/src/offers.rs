//! The allowed offerings of a request: (instance type or an allowed substitute) x allowed
//! regions x allowed zones, where the scenario has a pool of that type and market — what
//! blind failover knows from the catalog and `DescribeInstanceTypeOfferings`. Ordered by the
//! catalog's on-demand price per instance, then region, then zone id.

use capsight_catalog::Catalog;
use capsight_cloudsim::scenario::Scenario;
use capsight_proto::domain::{InstanceType, Market, Provider};

use crate::workload::Request;

/// One place a request may launch.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// Region.
    pub region: String,
    /// Zone id.
    pub zone: String,
    /// Instance type.
    pub instance_type: String,
    /// Market.
    pub market: Market,
    /// Catalog on-demand price per instance-hour, USD.
    pub usd_per_hour: f64,
    /// GPUs per instance.
    pub gpus: u32,
}

impl Offer {
    /// Its capacity key string (`aws/<region>/<zone>/<type>/<market>`), as cloudsim's truth and
    /// capsight's scores name it.
    pub fn key(&self) -> String {
        format!(
            "aws/{}/{}/{}/{}",
            self.region, self.zone, self.instance_type, self.market
        )
    }
}

/// The catalog's price and GPUs of `instance_type`.
pub fn catalog_facts(catalog: &Catalog, instance_type: &str) -> Option<(f64, u32)> {
    let t = InstanceType::parse("instance_type", Provider::Aws, instance_type).ok()?;
    catalog
        .get(Provider::Aws, &t)
        .map(|g| (g.on_demand_usd_per_hour, g.gpu_count))
}

/// The allowed offerings of `request`, cheapest first.
pub fn allowed(request: &Request, scenario: &Scenario, catalog: &Catalog) -> Vec<Offer> {
    let types: Vec<&String> = std::iter::once(&request.instance_type)
        .chain(&request.substitutes)
        .collect();
    let mut out = Vec::new();
    for zone in &scenario.zones {
        if !request.regions.is_empty() && !request.regions.contains(&zone.region) {
            continue;
        }
        if !request.zones.is_empty() && !request.zones.contains(&zone.id) {
            continue;
        }
        for t in &types {
            let has_pool = scenario.pools.iter().any(|p| {
                p.zone == zone.id
                    && p.instance_type == **t
                    && p.market.as_str() == request.market.as_str()
            });
            let Some((usd, gpus)) = catalog_facts(catalog, t) else {
                continue;
            };
            if has_pool {
                out.push(Offer {
                    region: zone.region.clone(),
                    zone: zone.id.clone(),
                    instance_type: (*t).clone(),
                    market: request.market,
                    usd_per_hour: usd,
                    gpus,
                });
            }
        }
    }
    out.sort_by(|a, b| {
        a.usd_per_hour
            .total_cmp(&b.usd_per_hour)
            .then_with(|| a.region.cmp(&b.region))
            .then_with(|| a.zone.cmp(&b.zone))
            .then_with(|| a.instance_type.cmp(&b.instance_type))
    });
    out.dedup();
    out
}
