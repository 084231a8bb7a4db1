//! Preflight: permission -> quota -> capacity -> decision.
//!
//! Contract: permission is a DryRun `RunInstances` with the tenant's own
//! credentials (it checks neither capacity nor quota); quota is the tenant's headroom in
//! instances for the type's quota family and market vs the requested count, and the tenant's
//! capsight GPU quota ([`capsight_launch::quota`], the same decision the launcher makes) vs the
//! GPUs its live launches hold (both must have room); capacity is the
//! latest score of the key as served (aged: see [`crate::view`]) — the zonal key, or for a
//! region-wide request the best zone of the region the tenant may use, named in the answer, with
//! the region-wide key's evidence when it is worse ([`capacity_score`]). Decision:
//! * permission or quota failed -> `FIX_ACCOUNT_ISSUE` (never alternatives: another zone will
//!   not fix the tenant's account);
//! * only capacity failed (label Unavailable) -> `RETRY_WITH_ALTERNATIVES`, alternatives inline;
//! * `UNKNOWN` (confidence too low or evidence too old) whose score still leans to no capacity
//!   (below 50) -> `RETRY_WITH_ALTERNATIVES` as well, the reason saying the evidence is thin;
//! * otherwise `CAN_LAUNCH`; Limited, other `UNKNOWN` keys and "no data" pass with a warning
//!   that says so and suggests `live_probe` where it applies.
//!
//! With `live_probe` (on-demand, zonal requests) the capacity step also reserves one instance
//! with the tenant's credentials and cancels the reservation at once: a capacity error fails the
//! step (-> alternatives) whatever the score says; a success passes it.
//!
//! After a failed step the later steps are `SKIPPED`. A throttled/transient cloud failure is
//! not an answer about the account: the call fails with `UNAVAILABLE` instead. On Lambda Cloud
//! the account steps use the tenant's own API key (registered as the name of an environment
//! variable of the gateway): permission = the key is valid and the account active, quota = the
//! registered instance limit against the instances held in every region; capacity is the
//! key's score, made of Lambda's own availability listing. RunPod likewise with the tenant's
//! registered key: permission = the key is valid, quota = the registered GPU limit against the
//! GPUs its running pods hold; capacity is the key's score (RunPod's stock status, a weak
//! signal). On Google Cloud and Azure the
//! account steps act as the tenant's own identity there: on GCP its service account in its
//! registered project (permission = `testIamPermissions` for what a launch needs, quota = the
//! type's GPU metric from `regions.get` and the project's `GPUS_ALL_REGIONS`, in GPUs); on Azure
//! its app registration (client secret by environment variable name; permission = its actions
//! on its resource group include `Microsoft.Compute/virtualMachines/write`, quota = the VM
//! family's vCPU usages in the region). Capacity is the key's score.

use std::sync::Arc;

use capsight_cloud::{CloudAdapter, CloudError, LaunchRequest, Permission, ReservationRequest};
use capsight_proto::{
    domain::{Label, Market, Provider, Score},
    v1::{self, CheckStatus, Decision},
};

use capsight_launch::quota;

use crate::{
    GatewayError, alternatives,
    auth::Caller,
    clouds::{AccountError, TenantClouds},
    validate::{Constraints, Spec},
    view::ScoresView,
};

/// The outcome of a preflight, before it is logged.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The decision.
    pub decision: Decision,
    /// The steps.
    pub checks: Vec<v1::PreflightCheck>,
    /// The score used.
    pub score: Option<Arc<Score>>,
    /// Quota headroom when the quota step ran.
    pub quota_headroom: Option<u32>,
    /// Alternatives on a capacity failure.
    pub alternatives: Vec<v1::Alternative>,
}

fn check(
    name: &str,
    status: CheckStatus,
    reason: impl Into<String>,
    code: &str,
) -> v1::PreflightCheck {
    v1::PreflightCheck {
        name: name.to_owned(),
        status: status.into(),
        reason: reason.into(),
        error_code: code.to_owned(),
    }
}

fn skipped(name: &str, why: &str) -> v1::PreflightCheck {
    check(name, CheckStatus::Skipped, why, "")
}

/// A cloud failure in an account step: an account answer (`Ok(check)`) or an outage (`Err`).
fn account_failure(
    step: &str,
    what: &str,
    e: &CloudError,
) -> Result<v1::PreflightCheck, GatewayError> {
    if e.is_retryable() {
        return Err(GatewayError::unavailable("cloud", e));
    }
    let code = e.code().unwrap_or_default();
    let message = e
        .classified()
        .map_or_else(|| e.to_string(), |c| c.message.clone());
    Ok(check(
        step,
        CheckStatus::Failed,
        format!("{what}: {} ({code}): {message}", e.class()),
        code,
    ))
}

/// What the capacity step decides on.
#[derive(Debug, Clone)]
pub struct Capacity {
    /// The score of the decision.
    pub score: Arc<Score>,
    /// A region-wide request's best zone (its score), when one is known: the zone to use.
    pub zone: Option<Arc<Score>>,
}

/// The served score for the spec's key (see the module contract). A zonal request reads its
/// key. A region-wide request reads the region's zones of the same type and market (the zones
/// in the tenant's zone map when it has one): the best (known labels first, then
/// [`alternatives::expected_success`]) is the zone to use and decides, unless the region-wide
/// key's own evidence is known and worse (a regional incident, region-wide capacity errors),
/// which then decides; with no zone evidence the region-wide key decides alone.
pub fn capacity_score(
    view: &ScoresView,
    spec: &Spec,
    tenant_zones: &std::collections::BTreeMap<String, String>,
) -> Option<Capacity> {
    let own = view.get(&spec.key.to_string());
    if spec.key.zone.is_some() {
        return own.map(|score| Capacity { score, zone: None });
    }
    let k = &spec.key;
    let allowed = |zone: &str| tenant_zones.is_empty() || tenant_zones.values().any(|z| z == zone);
    let best = view
        .select(None, |s| {
            s.key.provider == k.provider
                && s.key.region == k.region
                && s.key.instance_type == k.instance_type
                && s.key.market == k.market
                && s.key.zone.as_ref().is_some_and(|z| allowed(z.as_str()))
        })
        .into_iter()
        .max_by(|a, b| {
            b.label
                .rank()
                .min(2)
                .cmp(&a.label.rank().min(2))
                .then_with(|| {
                    alternatives::expected_success(a).total_cmp(&alternatives::expected_success(b))
                })
        });
    match (best, own) {
        (Some(zone), Some(region))
            if region.label.is_known() && region.label.rank() > zone.label.rank() =>
        {
            Some(Capacity {
                score: region,
                zone: Some(zone),
            })
        }
        (Some(zone), _) => Some(Capacity {
            score: Arc::clone(&zone),
            zone: Some(zone),
        }),
        (None, region) => region.map(|score| Capacity { score, zone: None }),
    }
}

/// What a preflight consults besides the request.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// The tenants' cloud accounts.
    pub clouds: &'a dyn TenantClouds,
    /// Latest scores.
    pub view: &'a ScoresView,
    /// The GPU catalog.
    pub catalog: &'a capsight_catalog::Catalog,
    /// Deadline of each cloud call.
    pub timeout: std::time::Duration,
    /// The launches (GPUs the caller's live launches hold).
    pub launches: &'a capsight_launch::store::Store,
    /// The caller's GPU quota (`None` = none).
    pub gpu_quota: Option<u32>,
}

/// Runs the preflight of `spec` for `caller`: the account steps (permission, quota), then,
/// when the account is fine, the capacity step and the decision.
pub async fn run(
    caller: &Caller,
    spec: &Spec,
    constraints: &Constraints,
    live_probe: bool,
    sources: Sources<'_>,
) -> Result<Outcome, GatewayError> {
    let Account {
        mut checks,
        quota_headroom,
        ok,
        adapter,
    } = match (spec.key.provider, sources.clouds.lambda_clouds()) {
        (Provider::Aws, _) => account_checks(caller, spec, sources.clouds, sources.timeout).await?,
        (Provider::Lambda, Some(lambda)) => {
            lambda_account_checks(caller, spec, lambda, sources.timeout).await?
        }
        (Provider::Gcp, _) if sources.clouds.gcp_clouds().is_some() => {
            registered_account_checks(caller, spec, sources.clouds, sources.timeout).await?
        }
        (Provider::Azure, _) if sources.clouds.azure_clouds().is_some() => {
            registered_account_checks(caller, spec, sources.clouds, sources.timeout).await?
        }
        (Provider::RunPod, _) => match sources.clouds.runpod_clouds() {
            Some(runpod) => runpod_account_checks(caller, spec, runpod, &sources).await?,
            None => Account::unchecked(spec),
        },
        _ => Account::unchecked(spec),
    };
    let ok = ok && gpu_quota_check(caller, spec, &sources, &mut checks).await?;
    if !ok {
        checks.push(skipped("capacity", "skipped: fix the account issue first"));
        return Ok(Outcome {
            decision: Decision::FixAccountIssue,
            checks,
            score: None,
            quota_headroom,
            alternatives: Vec::new(),
        });
    }
    let capacity = capacity_score(sources.view, spec, &caller.tenant.zone_map);
    let probed = if live_probe {
        probe(spec, adapter.as_deref(), sources.timeout).await?
    } else {
        None
    };
    let rank = || {
        let all = sources.view.select(None, |_| true);
        alternatives::rank(spec, constraints, &all, sources.catalog)
    };
    let (decision, check, alternatives) = capacity_check(spec, probed, capacity.as_ref(), rank);
    checks.push(check);
    let score = capacity.map(|c| c.score);
    Ok(Outcome {
        decision,
        checks,
        score,
        quota_headroom,
        alternatives,
    })
}

/// The account steps' result.
struct Account {
    /// The permission and quota checks.
    checks: Vec<v1::PreflightCheck>,
    /// Quota headroom when the quota step ran.
    quota_headroom: Option<u32>,
    /// Whether the account may launch (no failed step).
    ok: bool,
    /// The tenant's adapter (for the live probe).
    adapter: Option<Arc<dyn CloudAdapter>>,
}

impl Account {
    /// A provider without an account adapter: both steps are warnings.
    fn unchecked(spec: &Spec) -> Self {
        let provider = spec.key.provider;
        Self {
            checks: vec![
                check(
                    "permission",
                    CheckStatus::Warning,
                    format!("no account adapter for {provider} yet: permission not checked"),
                    "",
                ),
                check(
                    "quota",
                    CheckStatus::Warning,
                    format!("no account adapter for {provider} yet: quota not checked"),
                    "",
                ),
            ],
            quota_headroom: None,
            ok: true,
            adapter: None,
        }
    }
}

/// Permission (with the tenant's role) then quota, on AWS.
async fn account_checks(
    caller: &Caller,
    spec: &Spec,
    clouds: &dyn TenantClouds,
    timeout: std::time::Duration,
) -> Result<Account, GatewayError> {
    let (adapter, role_check) = assume_role(caller, spec, clouds, timeout).await?;
    let Some(adapter) = adapter else {
        return Ok(Account {
            checks: role_check
                .into_iter()
                .chain([skipped("quota", "skipped: permission failed")])
                .collect(),
            quota_headroom: None,
            ok: false,
            adapter: None,
        });
    };
    account_steps(spec, adapter, timeout).await
}

/// Permission then quota with the tenant's own adapter (AWS, GCP, Azure).
async fn account_steps(
    spec: &Spec,
    adapter: Arc<dyn CloudAdapter>,
    timeout: std::time::Duration,
) -> Result<Account, GatewayError> {
    let permission = permission_check(spec, adapter.as_ref(), timeout).await?;
    let mut account = Account {
        ok: permission.status != CheckStatus::Failed as i32,
        checks: vec![permission],
        quota_headroom: None,
        adapter: Some(Arc::clone(&adapter)),
    };
    if !account.ok {
        account
            .checks
            .push(skipped("quota", "skipped: permission failed"));
    } else if spec.key.market == Market::CapacityBlock {
        account.checks.push(skipped(
            "quota",
            "capacity blocks are purchased reservations; the on-demand/spot vCPU quota does not apply",
        ));
    } else {
        let (quota, headroom) = quota_check(spec, adapter.as_ref(), timeout).await?;
        account.ok = quota.status != CheckStatus::Failed as i32;
        account.quota_headroom = headroom;
        account.checks.push(quota);
    }
    Ok(account)
}

/// Google Cloud or Azure, as the tenant's own identity there: on GCP its service account in its
/// registered project (permission = `testIamPermissions`, quota = `regions.get`, in GPUs); on
/// Azure its app registration in its own subscription (permission = its actions on its
/// resource group include creating VMs, quota = the VM family's or Spot's vCPU usage against
/// its limit in the region).
async fn registered_account_checks(
    caller: &Caller,
    spec: &Spec,
    clouds: &dyn TenantClouds,
    timeout: std::time::Duration,
) -> Result<Account, GatewayError> {
    let failed = |permission: v1::PreflightCheck| Account {
        checks: vec![permission, skipped("quota", "skipped: permission failed")],
        quota_headroom: None,
        ok: false,
        adapter: None,
    };
    let provider = spec.key.provider;
    let (identity, registration, command) = match provider {
        Provider::Azure => ("Azure app registration", "Azure subscription", "azure"),
        _ => ("GCP service account", "Google Cloud project", "gcp"),
    };
    let found = tokio::time::timeout(
        timeout,
        clouds.adapter_on(&caller.tenant, provider, &spec.key.region),
    )
    .await
    .map_err(|_| GatewayError::unavailable("cloud", "tenant credentials timed out"))?;
    let adapter = match found {
        Ok(a) => a,
        Err(AccountError::Cloud(e)) => {
            return Ok(failed(account_failure(
                "permission",
                &format!("your {identity} is not usable"),
                &e,
            )?));
        }
        Err(_) => {
            return Ok(failed(check(
                "permission",
                CheckStatus::Failed,
                format!(
                    "no {registration} is registered for tenant {}: capsight checks \
                     permission and quota as your own {identity}; register it \
                     (capsight-admin tenant {command})",
                    caller.tenant.id
                ),
                "",
            )));
        }
    };
    account_steps(spec, adapter, timeout).await
}

/// How an API-key cloud (Lambda Cloud, RunPod) names itself and its limit in the account
/// steps.
struct KeyedCloud {
    /// The cloud's name in a registration message (`Lambda Cloud`).
    account: &'static str,
    /// The cloud's short name for keys and accounts (`Lambda`).
    short: &'static str,
    /// `capsight-admin tenant <admin>` registers the account.
    admin: &'static str,
    /// The registered limit's name (`instance limit`).
    limit_name: &'static str,
    /// What the limit counts (`instance(s)`).
    unit: &'static str,
    /// Where what counts is held (`in every region`).
    held: &'static str,
    /// What the quota step lists (`your Lambda instances`).
    listing: &'static str,
    /// How to make room.
    remedy: &'static str,
    /// The cloud's own error code for the limit, if it has one.
    over_code: &'static str,
}

const LAMBDA: KeyedCloud = KeyedCloud {
    account: "Lambda Cloud",
    short: "Lambda",
    admin: "lambda",
    limit_name: "instance limit",
    unit: "instance(s)",
    held: "in every region",
    listing: "your Lambda instances",
    remedy: "terminate instances or ask Lambda support to raise the limit",
    over_code: "global/quota-exceeded",
};

const RUNPOD: KeyedCloud = KeyedCloud {
    account: "RunPod",
    short: "RunPod",
    admin: "runpod",
    limit_name: "GPU limit",
    unit: "GPU(s)",
    held: "by running pods in every cloud type",
    listing: "your RunPod pods",
    remedy: "terminate pods or ask RunPod support to raise the limit",
    over_code: "",
};

/// Lambda Cloud, with the tenant's own API key: permission = the key is valid and the account
/// active; quota = the account's registered instance limit against the instances it holds in
/// every region. Lambda has no DryRun and no quota API.
async fn lambda_account_checks(
    caller: &Caller,
    spec: &Spec,
    lambda: &crate::clouds::LambdaClouds,
    timeout: std::time::Duration,
) -> Result<Account, GatewayError> {
    let limit = caller.tenant.lambda.as_ref().map(|a| a.instance_limit);
    keyed_account_checks(
        (caller, spec, timeout),
        &LAMBDA,
        lambda.adapter(&caller.tenant, &spec.key.region),
        limit,
        spec.count,
        |a: capsight_cloud::lambda::LambdaAdapter| async move { a.instances_in_use().await },
    )
    .await
}

/// RunPod, with the tenant's own API key: permission = the key is valid; quota = the account's
/// registered GPU limit against the GPUs its running pods hold. RunPod has no DryRun and no
/// quota API (its balance is checked by RunPod at deploy, a quota error then).
async fn runpod_account_checks(
    caller: &Caller,
    spec: &Spec,
    runpod: &crate::clouds::RunPodClouds,
    sources: &Sources<'_>,
) -> Result<Account, GatewayError> {
    let limit = caller.tenant.runpod.as_ref().map(|a| a.gpu_limit);
    let gpus = sources
        .catalog
        .get(Provider::RunPod, &spec.key.instance_type)
        .map_or(1, |g| g.gpu_count);
    keyed_account_checks(
        (caller, spec, sources.timeout),
        &RUNPOD,
        runpod.adapter(&caller.tenant, &spec.key.region),
        limit,
        spec.count.saturating_mul(gpus),
        |a: capsight_cloud::runpod::RunPodAdapter| async move { a.gpus_in_use().await },
    )
    .await
}

/// The account steps of an API-key cloud: the tenant's adapter (`None`: no registration),
/// permission by a read with its key, then quota = the registered `limit` against what
/// `used` reads, for `requested` more. No live probe follows (no reservations): capacity is
/// the latest listing's score.
async fn keyed_account_checks<A, F, Fut>(
    (caller, spec, timeout): (&Caller, &Spec, std::time::Duration),
    cloud: &KeyedCloud,
    adapter: Result<Option<A>, CloudError>,
    limit: Option<u32>,
    requested: u32,
    used: F,
) -> Result<Account, GatewayError>
where
    A: CloudAdapter + Clone,
    F: FnOnce(A) -> Fut,
    Fut: std::future::Future<Output = Result<u32, CloudError>>,
{
    let failed = |checks: Vec<v1::PreflightCheck>| Account {
        checks,
        quota_headroom: None,
        ok: false,
        adapter: None,
    };
    let short = cloud.short;
    let adapter = match adapter {
        Ok(Some(a)) => a,
        Ok(None) => {
            return Ok(failed(vec![
                check(
                    "permission",
                    CheckStatus::Failed,
                    format!(
                        "no {} account is registered for tenant {}: capsight checks permission \
                         and quota with your own API key; register it (capsight-admin tenant {})",
                        cloud.account, caller.tenant.id, cloud.admin
                    ),
                    "",
                ),
                skipped("quota", "skipped: permission failed"),
            ]));
        }
        Err(e) => {
            return Ok(failed(vec![
                account_failure(
                    "permission",
                    &format!("your {short} API key is not usable"),
                    &e,
                )?,
                skipped("quota", "skipped: permission failed"),
            ]));
        }
    };
    let request = LaunchRequest::new(
        spec.key.instance_type.clone(),
        None,
        String::new(),
        format!("preflight-{}", uuid::Uuid::new_v4().simple()),
    );
    let timed_out = |what: &str| {
        GatewayError::unavailable(
            "cloud",
            format!("{} {what} timed out", short.to_lowercase()),
        )
    };
    let permission = match tokio::time::timeout(timeout, adapter.check_launch_permission(&request))
        .await
    {
        Err(_) => return Err(timed_out("key check")),
        Ok(Ok(Permission::Allowed)) => check(
            "permission",
            CheckStatus::Passed,
            format!(
                "your {short} API key is valid and its account active ({short} keys are not \
                     scoped)"
            ),
            "",
        ),
        Ok(Ok(Permission::Denied { code, message })) => check(
            "permission",
            CheckStatus::Failed,
            format!(
                "your {short} account may not launch {}: {message}",
                spec.key.instance_type
            ),
            &code,
        ),
        Ok(Err(e)) => account_failure("permission", &format!("the {short} key check failed"), &e)?,
    };
    if permission.status == CheckStatus::Failed as i32 {
        return Ok(failed(vec![
            permission,
            skipped("quota", "skipped: permission failed"),
        ]));
    }
    let limit = limit.unwrap_or(0);
    let used = match tokio::time::timeout(timeout, used(adapter.clone())).await {
        Err(_) => return Err(timed_out("account listing")),
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            let quota = account_failure("quota", &format!("listing {} failed", cloud.listing), &e)?;
            return Ok(failed(vec![permission, quota]));
        }
    };
    let headroom = limit.saturating_sub(used);
    let (limit_name, unit, held) = (cloud.limit_name, cloud.unit, cloud.held);
    let detail = format!(
        "{short} account {limit_name} {limit} (as registered), {used} {unit} held {held} -> \
         room for {headroom}, {requested} requested"
    );
    let quota = if headroom >= requested {
        check("quota", CheckStatus::Passed, detail, "")
    } else {
        check(
            "quota",
            CheckStatus::Failed,
            format!("{detail}; {}", cloud.remedy),
            cloud.over_code,
        )
    };
    Ok(Account {
        ok: quota.status != CheckStatus::Failed as i32,
        checks: vec![permission, quota],
        quota_headroom: Some(headroom),
        adapter: None,
    })
}

/// The tenant's adapter in the key's region, or the failed permission check saying why not.
async fn assume_role(
    caller: &Caller,
    spec: &Spec,
    clouds: &dyn TenantClouds,
    timeout: std::time::Duration,
) -> Result<(Option<Arc<dyn CloudAdapter>>, Option<v1::PreflightCheck>), GatewayError> {
    match tokio::time::timeout(timeout, clouds.adapter(&caller.tenant, &spec.key.region)).await {
        Err(_) => Err(GatewayError::unavailable("cloud", "assume role timed out")),
        Ok(Ok(a)) => Ok((Some(a), None)),
        Ok(Err(AccountError::NoRole(t))) => Ok((
            None,
            Some(check(
                "permission",
                CheckStatus::Failed,
                format!(
                    "no AWS role is registered for tenant {t}: capsight checks permission and \
                     quota with your own account; register a role (capsight-admin tenant role)"
                ),
                "",
            )),
        )),
        Ok(Err(e @ AccountError::NoAccount { .. })) => Ok((
            None,
            Some(check("permission", CheckStatus::Failed, e.to_string(), "")),
        )),
        Ok(Err(AccountError::Cloud(e))) => Ok((
            None,
            Some(account_failure(
                "permission",
                "cannot assume your role",
                &e,
            )?),
        )),
    }
}

/// A DryRun `RunInstances` of the spec with the tenant's credentials.
async fn permission_check(
    spec: &Spec,
    adapter: &dyn CloudAdapter,
    timeout: std::time::Duration,
) -> Result<v1::PreflightCheck, GatewayError> {
    let mut request = LaunchRequest::new(
        spec.key.instance_type.clone(),
        spec.key.zone.clone(),
        spec.image_id.clone(),
        format!("preflight-{}", uuid::Uuid::new_v4().simple()),
    )
    .market(if spec.key.market == Market::Spot {
        Market::Spot
    } else {
        Market::OnDemand
    })
    .count(spec.count);
    request.subnet_id.clone_from(&spec.subnet_id);
    request.spot_max_price = spec.spot_max_price;
    match tokio::time::timeout(timeout, adapter.check_launch_permission(&request)).await {
        Err(_) => Err(GatewayError::unavailable("cloud", "dry run timed out")),
        Ok(Ok(Permission::Allowed)) => Ok(check(
            "permission",
            CheckStatus::Passed,
            if spec.key.provider == Provider::Gcp {
                format!(
                    "testIamPermissions: your service account may create and delete {} \
                     instances in your project",
                    spec.key.instance_type
                )
            } else if spec.key.provider == Provider::Azure {
                format!(
                    "your app registration may create virtual machines ({} x{}) in its resource group",
                    spec.key.instance_type, spec.count
                )
            } else {
                format!(
                    "DryRun RunInstances of {} x{} is allowed for your account",
                    spec.key.instance_type, spec.count
                )
            },
            "",
        )),
        Ok(Ok(Permission::Denied { code, message })) => Ok(check(
            "permission",
            CheckStatus::Failed,
            format!(
                "your account may not launch {}: {message}",
                spec.key.instance_type
            ),
            &code,
        )),
        Ok(Err(e)) => account_failure("permission", "the dry run failed", &e),
    }
}

/// The tenant's quota headroom against the requested count, with the headroom when known.
async fn quota_check(
    spec: &Spec,
    adapter: &dyn CloudAdapter,
    timeout: std::time::Duration,
) -> Result<(v1::PreflightCheck, Option<u32>), GatewayError> {
    let looked_up = tokio::time::timeout(
        timeout,
        adapter.quota_headroom(&spec.key.instance_type, spec.key.market),
    )
    .await
    .map_err(|_| GatewayError::unavailable("cloud", "quota lookup timed out"))?;
    let q = match looked_up {
        Ok(q) => q,
        Err(e) => {
            return Ok((
                account_failure("quota", "the quota lookup failed", &e)?,
                None,
            ));
        }
    };
    // what the provider's quotas count: vCPUs (AWS), GPUs (GCP)
    let unit = match capsight_catalog::QuotaUnit::of(spec.key.provider) {
        capsight_catalog::QuotaUnit::Gpus => "GPUs",
        capsight_catalog::QuotaUnit::Instances => "instances",
        capsight_catalog::QuotaUnit::Vcpus => "vCPUs",
    };
    let detail = format!(
        "quota {} in {}: limit {} {unit}, {} in use, {} {unit} per {} -> room \
         for {} instance(s), {} requested",
        q.quota_code,
        spec.key.region,
        q.limit_vcpus,
        q.used_vcpus,
        q.vcpus_per_instance,
        spec.key.instance_type,
        q.headroom_instances,
        spec.count
    );
    let console = if spec.key.provider == Provider::Gcp {
        "IAM & Admin > Quotas"
    } else {
        "Service Quotas"
    };
    let quota = if q.headroom_instances >= spec.count {
        check("quota", CheckStatus::Passed, detail, "")
    } else {
        check(
            "quota",
            CheckStatus::Failed,
            format!(
                "{detail}; request a quota increase for {} in {} ({console}) — other \
                 zones share the same regional quota",
                q.quota_code, spec.key.region
            ),
            "",
        )
    };
    Ok((quota, Some(q.headroom_instances)))
}

/// The tenant's capsight GPU quota, folded into the quota check (appended when there is none):
/// `false` when it refuses the launch.
async fn gpu_quota_check(
    caller: &Caller,
    spec: &Spec,
    sources: &Sources<'_>,
    checks: &mut Vec<v1::PreflightCheck>,
) -> Result<bool, GatewayError> {
    let decided = quota::check(
        sources.launches,
        sources.catalog,
        caller.id().as_str(),
        "",
        sources.gpu_quota,
        &spec.key,
        spec.count,
    )
    .await?;
    let Some(limit) = decided.quota else {
        return Ok(true);
    };
    let at = checks.iter().position(|c| c.name == "quota");
    let (status, text, code) = match &decided.refused {
        Some(refused) => (
            CheckStatus::Failed,
            format!(
                "{refused}: wait for your live launches to end or ask the operator to raise                  it (capsight-admin tenant quota)"
            ),
            quota::EXCEEDED_CODE,
        ),
        None => (
            CheckStatus::Passed,
            format!(
                "capsight GPU quota {limit}: {} GPUs in use + {} requested",
                decided.in_use, decided.requested
            ),
            "",
        ),
    };
    match at.map(|i| &mut checks[i]) {
        Some(c) => {
            c.reason = format!("{}; {text}", c.reason);
            if status == CheckStatus::Failed {
                c.status = status.into();
                c.error_code = code.to_owned();
            }
        }
        None => checks.push(check("quota", status, text, code)),
    }
    Ok(decided.refused.is_none())
}

/// The capacity step from the live probe (when it ran) or the key's score, with the decision
/// and, when capacity is short, the ranked alternatives (`rank`).
fn capacity_check(
    spec: &Spec,
    probed: Option<(bool, String)>,
    capacity: Option<&Capacity>,
    rank: impl FnOnce() -> Vec<v1::Alternative>,
) -> (Decision, v1::PreflightCheck, Vec<v1::Alternative>) {
    let short = |reason: String, code: &str| {
        let alts = rank();
        let reason = format!("{reason}; {} alternative(s) proposed", alts.len());
        (
            Decision::RetryWithAlternatives,
            check("capacity", CheckStatus::Failed, reason, code),
            alts,
        )
    };
    let can = |status, reason: String| {
        (
            Decision::CanLaunch,
            check("capacity", status, reason, ""),
            Vec::new(),
        )
    };
    match (probed, capacity) {
        (Some((true, reason)), _) => can(CheckStatus::Passed, reason),
        (Some((false, reason)), _) => short(reason, "InsufficientInstanceCapacity"),
        (None, None) => can(
            CheckStatus::Warning,
            format!(
                "no recent evidence for {}: capacity unknown{}",
                spec.key,
                probe_hint(spec)
            ),
        ),
        (None, Some(Capacity { score: s, zone })) => {
            let mut what = format!(
                "{} scores {} ({}, confidence {:.2}, {} signals)",
                s.key, s.score, s.label, s.confidence, s.signal_count
            );
            match zone {
                Some(z) if z.key == s.key => {
                    what = format!(
                        "{what}; the best zone of the region: use {}",
                        z.key.zone_str()
                    );
                }
                Some(z) => {
                    what = format!(
                        "{what}: the region-wide evidence is worse than its best zone {} ({} {})",
                        z.key.zone_str(),
                        z.score,
                        z.label
                    );
                }
                None => {}
            }
            match s.label {
                Label::Available => can(CheckStatus::Passed, what),
                Label::Limited => can(
                    CheckStatus::Warning,
                    format!("{what}: capacity is limited; a launch may fail"),
                ),
                Label::Unavailable => short(format!("{what}: little or no capacity"), ""),
                // thin or old evidence that still leans to no capacity: a launch there is
                // less likely to succeed than not, so the known alternatives come first
                Label::Unknown if s.score < 50 => short(
                    format!(
                        "{what}: low confidence, but what evidence there is leans to no \
                         capacity{}",
                        probe_hint(spec)
                    ),
                    "",
                ),
                Label::Unknown => can(
                    CheckStatus::Warning,
                    format!(
                        "{what}: low confidence, not enough recent evidence to say; a launch \
                         may fail{}",
                        probe_hint(spec)
                    ),
                ),
            }
        }
    }
}

/// How the caller can get a decided answer when the score cannot give one.
fn probe_hint(spec: &Spec) -> &'static str {
    if spec.key.zone.is_some() && spec.key.market == Market::OnDemand {
        "; ask again with live_probe to let a reservation decide"
    } else {
        ""
    }
}

/// The live capacity probe: `Some((has_capacity, reason))`, or `None` when it does not apply.
async fn probe(
    spec: &Spec,
    adapter: Option<&dyn CloudAdapter>,
    timeout: std::time::Duration,
) -> Result<Option<(bool, String)>, GatewayError> {
    let (Some(adapter), Some(zone), Market::OnDemand) =
        (adapter, spec.key.zone.as_ref(), spec.key.market)
    else {
        return Ok(None);
    };
    let request = ReservationRequest {
        instance_type: spec.key.instance_type.clone(),
        zone: zone.clone(),
        count: 1,
        client_token: format!("preflight-probe-{}", uuid::Uuid::new_v4().simple()),
        tags: [("capsight:probe".to_owned(), "preflight".to_owned())].into(),
        // cancelled at once below; should that fail, the cloud ends it by itself
        expires_at: Some(chrono::Utc::now() + chrono::TimeDelta::minutes(10)),
    };
    let created = tokio::time::timeout(timeout, adapter.create_capacity_reservation(&request))
        .await
        .map_err(|_| GatewayError::unavailable("cloud", "live probe timed out"))?;
    match created {
        Ok(r) => {
            if let Err(e) = adapter.cancel_capacity_reservation(&r.id).await {
                // tagged `capsight:probe`: the probe sweeper removes what is left behind
                tracing::error!(reservation = %r.id, error = %e, "cannot cancel the preflight probe reservation");
            }
            Ok(Some((
                true,
                format!(
                    "live probe: reserved 1 {} in {zone} and released it at once",
                    spec.key.instance_type
                ),
            )))
        }
        Err(e) if e.class() == capsight_proto::domain::ErrorClass::Capacity => Ok(Some((
            false,
            format!(
                "live probe: no {} capacity in {zone} right now ({})",
                spec.key.instance_type,
                e.code().unwrap_or("capacity")
            ),
        ))),
        Err(e) if e.is_retryable() => Err(GatewayError::unavailable("cloud", e)),
        Err(e) => {
            tracing::warn!(error = %e, "live probe inconclusive");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use std::collections::BTreeMap;

    use capsight_testkit::signals::score;

    use super::*;

    const REGION: &str = "aws/us-east-1//p5.48xlarge/on_demand";

    fn spec_of(key: &str) -> Spec {
        let catalog = capsight_catalog::Catalog::embedded().unwrap();
        let wire = v1::LaunchSpec {
            key: Some((&key.parse::<capsight_proto::domain::CapacityKey>().unwrap()).into()),
            count: 1,
            ..Default::default()
        };
        crate::validate::spec("spec", Some(wire), &catalog, 32, false).unwrap()
    }

    fn view_of(scores: &[(&str, u8, f64)]) -> Arc<ScoresView> {
        let view = ScoresView::new();
        for (k, v, c) in scores {
            view.apply(k, Some(score(k, *v, *c)));
        }
        view
    }

    fn zone(c: &Capacity) -> Option<String> {
        c.zone.as_ref().map(|z| z.key.zone_str().to_owned())
    }

    #[test]
    fn a_region_wide_request_is_answered_from_its_best_zone_and_names_it() {
        // the region-wide key has only thin evidence (a quota reading): the zones decide
        let view = view_of(&[
            ("aws/us-east-1/use1-az1/p5.48xlarge/on_demand", 15, 0.9),
            ("aws/us-east-1/use1-az4/p5.48xlarge/on_demand", 88, 0.8),
            ("aws/us-east-1/use1-az6/p5.48xlarge/on_demand", 62, 0.6),
            ("aws/us-east-1/use1-az4/p5.48xlarge/spot", 99, 0.9),
            (REGION, 50, 0.05),
        ]);
        let c = capacity_score(&view, &spec_of(REGION), &BTreeMap::new()).unwrap();
        assert_eq!(c.score.key.zone_str(), "use1-az4");
        assert_eq!(zone(&c).as_deref(), Some("use1-az4"));
        let (decision, check, _) = capacity_check(&spec_of(REGION), None, Some(&c), Vec::new);
        assert_eq!(decision, Decision::CanLaunch);
        assert!(check.reason.contains("use use1-az4"), "{}", check.reason);
    }

    #[test]
    fn known_bad_region_wide_evidence_outweighs_a_good_zone() {
        let view = view_of(&[
            ("aws/us-east-1/use1-az4/p5.48xlarge/on_demand", 88, 0.8),
            (REGION, 10, 0.9),
        ]);
        let c = capacity_score(&view, &spec_of(REGION), &BTreeMap::new()).unwrap();
        assert_eq!(c.score.key.to_string(), REGION);
        assert_eq!(zone(&c).as_deref(), Some("use1-az4"));
        let (decision, check, _) = capacity_check(&spec_of(REGION), None, Some(&c), Vec::new);
        assert_eq!(decision, Decision::RetryWithAlternatives);
        assert!(
            check.reason.contains("region-wide evidence"),
            "{}",
            check.reason
        );
    }

    #[test]
    fn only_zones_in_the_tenants_zone_map_are_recommended_and_zonal_requests_read_their_key() {
        let view = view_of(&[
            ("aws/us-east-1/use1-az4/p5.48xlarge/on_demand", 88, 0.8),
            ("aws/us-east-1/use1-az6/p5.48xlarge/on_demand", 62, 0.6),
        ]);
        let map = BTreeMap::from([("us-east-1a".to_owned(), "use1-az6".to_owned())]);
        let c = capacity_score(&view, &spec_of(REGION), &map).unwrap();
        assert_eq!(zone(&c).as_deref(), Some("use1-az6"));
        // no zone and no region-wide evidence: nothing to decide on
        let map = BTreeMap::from([("us-east-1b".to_owned(), "use1-az2".to_owned())]);
        assert!(capacity_score(&view, &spec_of(REGION), &map).is_none());
        // a zonal request reads its own key, whatever the zones around it say
        let az6 = "aws/us-east-1/use1-az6/p5.48xlarge/on_demand";
        let c = capacity_score(&view, &spec_of(az6), &BTreeMap::new()).unwrap();
        assert_eq!(c.score.key.to_string(), az6);
        assert!(c.zone.is_none());
    }
}
