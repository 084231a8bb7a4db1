//! The allowed offerings of a request: (instance type or an allowed substitute) x allowed
//! regions x allowed zones, where the scenario has a pool of that type and market — what
//! blind failover knows from the catalog and `DescribeInstanceTypeOfferings`. AWS always; when
//! the request allows other providers, also Lambda Cloud's regions and RunPod's cloud types (no
//! zones) whose pools sell one of the types. Ordered by the catalog's on-demand price per instance, then provider,
//! region and zone id.

use capsight_catalog::Catalog;
use capsight_cloudsim::scenario::{Scenario, SimProvider};
use capsight_proto::domain::{InstanceType, Market, Provider};

use crate::workload::Request;

/// One place a request may launch.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// Provider.
    pub provider: Provider,
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
    /// Its capacity key string (`<provider>/<region>/<zone>/<type>/<market>`), as cloudsim's
    /// truth and capsight's scores name it.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}",
            self.provider, self.region, self.zone, self.instance_type, self.market
        )
    }
}

/// The catalog's price and GPUs of `instance_type` on `provider`.
pub fn catalog_facts(
    catalog: &Catalog,
    provider: Provider,
    instance_type: &str,
) -> Option<(f64, u32)> {
    let t = InstanceType::parse("instance_type", provider, instance_type).ok()?;
    catalog
        .get(provider, &t)
        .map(|g| (g.on_demand_usd_per_hour, g.gpu_count))
}

/// The allowed offerings of `request`, cheapest first.
pub fn allowed(request: &Request, scenario: &Scenario, catalog: &Catalog) -> Vec<Offer> {
    let types: Vec<&String> = std::iter::once(&request.instance_type)
        .chain(&request.substitutes)
        .collect();
    let market = request.market.as_str();
    let mut out = Vec::new();
    let mut offer = |provider: Provider, region: &str, zone: &str, t: &str| {
        if let Some((usd, gpus)) = catalog_facts(catalog, provider, t) {
            out.push(Offer {
                provider,
                region: region.to_owned(),
                zone: zone.to_owned(),
                instance_type: t.to_owned(),
                market: request.market,
                usd_per_hour: usd,
                gpus,
            });
        }
    };
    for zone in scenario
        .zones
        .iter()
        .filter(|z| z.provider == SimProvider::Aws)
    {
        if !request.regions.is_empty() && !request.regions.contains(&zone.region) {
            continue;
        }
        if !request.zones.is_empty() && !request.zones.contains(&zone.id) {
            continue;
        }
        for t in &types {
            let has_pool = scenario.pools.iter().any(|p| {
                p.provider == SimProvider::Aws
                    && p.zone == zone.id
                    && p.instance_type == **t
                    && p.market.as_str() == market
            });
            if has_pool {
                offer(Provider::Aws, &zone.region, &zone.id, t);
            }
        }
    }
    if request.other_providers {
        for p in scenario
            .pools
            .iter()
            .filter(|p| p.market.as_str() == market && types.iter().any(|t| **t == p.instance_type))
        {
            let provider = match p.provider {
                SimProvider::Lambda => Provider::Lambda,
                SimProvider::RunPod => Provider::RunPod,
                _ => continue,
            };
            offer(provider, &p.region, "", &p.instance_type);
        }
    }
    out.sort_by(|a, b| {
        a.usd_per_hour
            .total_cmp(&b.usd_per_hour)
            .then_with(|| a.provider.as_str().cmp(b.provider.as_str()))
            .then_with(|| a.region.cmp(&b.region))
            .then_with(|| a.zone.cmp(&b.zone))
            .then_with(|| a.instance_type.cmp(&b.instance_type))
    });
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::workload::Workload;

    fn pair() -> (Scenario, Workload) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("library/cross-provider");
        (
            Scenario::load(&dir.join("scenario.toml")).unwrap(),
            Workload::load(&dir.join("workload.toml")).unwrap(),
        )
    }

    #[test]
    fn other_providers_add_lambda_and_runpod_pools_only_when_allowed() {
        let (scenario, workload) = pair();
        let catalog = Catalog::embedded().unwrap();
        let requests = workload.expand();
        let acme = requests.iter().find(|r| r.tenant == "acme").unwrap();
        let initech = requests.iter().find(|r| r.tenant == "initech").unwrap();
        let keys = |r: &Request| -> Vec<String> {
            allowed(r, &scenario, &catalog)
                .iter()
                .map(Offer::key)
                .collect()
        };
        let aws = [
            "aws/us-east-1/use1-az1/p5.48xlarge/on_demand",
            "aws/us-east-1/use1-az2/p5.48xlarge/on_demand",
        ];
        assert_eq!(keys(initech), aws);
        let with_lambda = keys(acme);
        assert_eq!(with_lambda.len(), 5, "{with_lambda:?}");
        for k in aws.iter().map(|k| (*k).to_owned()).chain([
            "lambda/us-south-2//gpu_8x_h100_sxm5/on_demand".to_owned(),
            "lambda/us-west-3//gpu_8x_h100_sxm5/on_demand".to_owned(),
            "runpod/secure//8x_h100_sxm/on_demand".to_owned(),
        ]) {
            assert!(with_lambda.contains(&k), "{k} in {with_lambda:?}");
        }
        // cheapest first: the other clouds' 8x H100 list below the p5.48xlarge
        assert!(
            with_lambda[..3].iter().all(|k| !k.starts_with("aws/")),
            "{with_lambda:?}"
        );
    }
}
