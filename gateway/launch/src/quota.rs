//! Tenant GPU quota: the one decision the gateway's Preflight and Launch and the launcher's
//! preflight step all make.
//!
//! Contract: a tenant with a `gpu_quota` in the registry (`capsight-admin tenant quota`), or
//! else `tenancy.default_gpu_quota` (unless 0; `Tenant::gpu_quota_or` in the tenancy crate),
//! may hold at most that many GPUs in live launches (latest state `provisioning` or `running` in
//! `launch_events`, GPUs = instance count x GPUs per instance of the attempt's instance type per
//! the catalog). A launch whose GPUs, added to those in use by the tenant's *other* live
//! launches, exceed the quota is refused with a reason starting `tenant GPU quota exceeded:`
//! ([`check`] computes both numbers and the verdict).
//!
//! The gateway's answer is advisory (a launch may end before the job runs); the launcher's is
//! binding. The worker serialises the check per tenant inside one process (the `provisioning`
//! row of a job that passed is written before the tenant's next job is checked). Limit: several
//! launcher processes are not serialised, so two jobs of one tenant in preflight at the same
//! moment on two launchers may both pass and together exceed the quota by one launch. Fallback
//! alternatives are checked the same way (an alternative type with more GPUs than the tenant has
//! room for is skipped).

use capsight_catalog::Catalog;
use capsight_proto::domain::{CapacityKey, InstanceType, Provider};

use crate::store::{Store, StoreError};

/// GPUs of `count` instances of `instance_type` (0 when the catalog does not know the type).
pub fn gpus(catalog: &Catalog, provider: &str, instance_type: &str, count: u32) -> u32 {
    let Ok(provider) = Provider::parse("provider", provider) else {
        return 0;
    };
    let Ok(t) = InstanceType::parse("instance_type", provider, instance_type) else {
        return 0;
    };
    catalog
        .get(provider, &t)
        .map_or(0, |g| g.gpu_count.saturating_mul(count))
}

/// The refusal reason when `in_use + requested > quota`; `None` when it fits or there is no
/// quota.
pub fn exceeded(quota: Option<u32>, in_use: u32, requested: u32) -> Option<String> {
    let quota = quota?;
    let total = in_use.saturating_add(requested);
    (total > quota).then(|| {
        format!(
            "tenant GPU quota exceeded: {in_use} GPUs in use + {requested} requested = {total} > \
             quota {quota}"
        )
    })
}

/// A tenant GPU quota decision: what is asked, what is held, and the refusal if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// GPUs the launch asks for.
    pub requested: u32,
    /// GPUs the tenant's other live launches hold.
    pub in_use: u32,
    /// The quota (`None` = no quota).
    pub quota: Option<u32>,
    /// Why the launch is refused; `None` = it fits.
    pub refused: Option<String>,
}

/// The error code recorded when the tenant GPU quota refuses a launch.
pub const EXCEEDED_CODE: &str = "TenantGpuQuotaExceeded";

/// The tenant GPU quota decision for `count` instances at `key` of `tenant` under `quota`, not
/// counting the launch `except_job` (the job being decided, when it is already recorded).
pub async fn check(
    store: &Store,
    catalog: &Catalog,
    tenant: &str,
    except_job: &str,
    quota: Option<u32>,
    key: &CapacityKey,
    count: u32,
) -> Result<Decision, StoreError> {
    let requested = gpus(
        catalog,
        key.provider.as_str(),
        key.instance_type.as_str(),
        count,
    );
    let in_use = match quota {
        Some(_) => in_use(store, catalog, tenant, except_job).await?,
        None => 0,
    };
    Ok(Decision {
        requested,
        in_use,
        quota,
        refused: exceeded(quota, in_use, requested),
    })
}

/// GPUs held by `tenant`'s live launches other than `except_job`.
pub async fn in_use(
    store: &Store,
    catalog: &Catalog,
    tenant: &str,
    except_job: &str,
) -> Result<u32, StoreError> {
    let live: Vec<_> = store
        .live_launches(Some(tenant))
        .await?
        .into_iter()
        .filter(|l| l.job_id != except_job)
        .collect();
    let ids: Vec<String> = live.iter().map(|l| l.job_id.clone()).collect();
    let counts = store.counts(tenant, &ids).await?;
    Ok(live
        .iter()
        .map(|l| {
            let count = counts
                .get(&l.job_id)
                .copied()
                .unwrap_or_else(|| u32::try_from(l.instance_ids().len()).unwrap_or(1).max(1));
            gpus(catalog, &l.provider, &l.instance_type, count)
        })
        .fold(0u32, u32::saturating_add))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn quota_arithmetic() {
        assert_eq!(exceeded(None, 1000, 1000), None);
        assert_eq!(exceeded(Some(16), 8, 8), None);
        let reason = exceeded(Some(16), 8, 16).unwrap();
        assert!(reason.starts_with("tenant GPU quota exceeded:"), "{reason}");
        assert!(
            reason.contains("8 GPUs in use + 16 requested = 24 > quota 16"),
            "{reason}"
        );
        assert!(exceeded(Some(0), 0, 1).is_some());
    }

    #[test]
    fn gpus_from_the_catalog() {
        let catalog = Catalog::embedded().unwrap();
        assert_eq!(gpus(&catalog, "aws", "p5.48xlarge", 2), 16);
        assert_eq!(gpus(&catalog, "aws", "not-a-type", 2), 0);
        assert_eq!(gpus(&catalog, "nope", "p5.48xlarge", 2), 0);
    }
}
