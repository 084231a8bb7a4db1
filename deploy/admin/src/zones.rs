//! `capsight-admin tenant zones`: each tenant's AWS AZ name -> AZ ID map, derived from its own
//! account.
//!
//! Contract: for every selected tenant with a registered role (all of them when none is named),
//! assume the role and call `DescribeAvailabilityZones` in each region (`--region`, else every
//! AWS region of the GPU catalog); the names of each region that answered replace that region's
//! names in the registry (other regions' names are kept, so an operator's typed entries for a
//! region the account cannot see survive). AZ names differ per account, so reports and events
//! that name a zone are mapped with this map, and a name it lacks is refused, never counted
//! region-wide. The registry is written once, with what succeeded; the command exits non-zero
//! when any tenant or region failed, naming each. Run it after registering a role and
//! periodically (the Kubernetes CronJob `capsight-zone-maps` runs it every 6 hours).

use std::{collections::BTreeSet, sync::Arc};

use anyhow::Context;
use capsight_catalog::Catalog;
use capsight_cloud::{
    CloudSettings,
    tenants::{AwsClouds, TenantClouds},
};
use capsight_proto::domain::{Provider, Region};
use capsight_tenancy::{Registry, TenancySettings, TenantId};

/// Refreshes the zone maps of `ids` (empty: every tenant with a role) in `regions` (empty:
/// every AWS region of the catalog).
pub async fn refresh(
    tenancy: &TenancySettings,
    cloud: &CloudSettings,
    ids: &[String],
    regions: &[String],
) -> anyhow::Result<()> {
    let catalog = Arc::new(Catalog::embedded().context("GPU catalog")?);
    let regions: Vec<Region> = if regions.is_empty() {
        catalog
            .iter()
            .filter(|g| g.provider == Provider::Aws)
            .flat_map(|g| g.regions.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    } else {
        regions
            .iter()
            .map(|r| Region::parse("--region", Provider::Aws, r))
            .collect::<Result<_, _>>()?
    };
    let path = &tenancy.registry;
    let mut reg = Registry::load(path)?;
    let wanted: Vec<TenantId> = ids
        .iter()
        .map(|id| TenantId::parse(id))
        .collect::<Result<_, _>>()?;
    for id in &wanted {
        anyhow::ensure!(reg.tenant(id).is_some(), "no tenant {id}");
    }
    let mut failures = Vec::new();
    let mut tenants = Vec::new();
    for t in reg
        .tenants
        .iter()
        .filter(|t| wanted.is_empty() || wanted.contains(&t.id))
    {
        if t.aws_role.is_some() {
            tenants.push(t.clone());
        } else if !wanted.is_empty() {
            // asked for by name: say why nothing happened
            eprintln!(
                "{}: no AWS role registered (capsight-admin tenant role)",
                t.id
            );
            failures.push(t.id.to_string());
        }
    }
    let clouds = AwsClouds::from_env(cloud.clone(), catalog);
    for tenant in &tenants {
        for region in &regions {
            let zones = async {
                let adapter = clouds.adapter(tenant, region).await?;
                Ok::<_, anyhow::Error>(adapter.zones().await?)
            }
            .await;
            match zones {
                Ok(zones) => {
                    let names: Vec<(String, String)> = zones
                        .iter()
                        .map(|(name, id)| (name.to_owned(), id.as_str().to_owned()))
                        .collect();
                    let n = names.len();
                    let changed = reg.set_zone_names(&tenant.id, region.as_str(), names)?;
                    println!(
                        "{} {region}: {n} zone(s){}",
                        tenant.id,
                        if changed { ", updated" } else { ", unchanged" }
                    );
                }
                Err(e) => {
                    eprintln!("{} {region}: {e:#}", tenant.id);
                    failures.push(format!("{} {region}", tenant.id));
                }
            }
        }
    }
    reg.save(path)?;
    anyhow::ensure!(
        failures.is_empty(),
        "zone maps not refreshed for: {}",
        failures.join(", ")
    );
    Ok(())
}
