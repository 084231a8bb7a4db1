//! `PreflightService`: a preflight (checks, decision, logged in `preflight_log`) and the
//! ranking of alternatives, both over the scores view. [`preflighted`] is the one decision
//! path: `Preflight` answers with it and `Launch` runs it before a job is queued.

use capsight_clickhouse::rows::{PreflightLogRow, split_time};
use capsight_proto::{
    domain::CapacityKey,
    v1::{self, CheckStatus, preflight_service_server::PreflightService},
};
use chrono::Utc;
use tonic::{Request, Response};

use super::{Answer, Api, Result, Rpc, rpcs};
use crate::{Core, alternatives, auth::Caller, preflight, validate};

/// The launch spec and constraints of a preflight, launch or alternatives request, validated.
pub(super) fn validated(
    core: &Core,
    spec: Option<v1::LaunchSpec>,
    constraints: Option<v1::Constraints>,
    need_image: bool,
) -> Answer<(validate::Spec, validate::Constraints)> {
    let spec = validate::spec(
        "spec",
        spec,
        &core.catalog,
        core.settings.max_launch_count,
        need_image,
    )?;
    let constraints = validate::constraints("constraints", constraints, &spec)?;
    Ok((spec, constraints))
}

/// A key as the five string columns of a row.
fn key_row_parts(k: &CapacityKey) -> (String, String, String, String, String) {
    (
        k.provider.as_str().to_owned(),
        k.region.as_str().to_owned(),
        k.zone_str().to_owned(),
        k.instance_type.as_str().to_owned(),
        k.market.as_str().to_owned(),
    )
}

/// The status of the check `name` as stored (`passed`, `failed`, ...), empty if absent.
fn check_status_text(checks: &[v1::PreflightCheck], name: &str) -> String {
    checks
        .iter()
        .find(|c| c.name == name)
        .map(|c| match CheckStatus::try_from(c.status) {
            Ok(CheckStatus::Passed) => "passed",
            Ok(CheckStatus::Failed) => "failed",
            Ok(CheckStatus::Warning) => "warning",
            Ok(CheckStatus::Skipped) => "skipped",
            _ => "",
        })
        .unwrap_or("")
        .to_owned()
}

/// The decision as stored in `preflight_log.decision`.
fn decision_text(decision: v1::Decision) -> &'static str {
    match decision {
        v1::Decision::CanLaunch => "can_launch",
        v1::Decision::RetryWithAlternatives => "retry_with_alternatives",
        v1::Decision::FixAccountIssue => "fix_account_issue",
        v1::Decision::Unspecified => "unspecified",
    }
}

/// The `preflight_log` row of one preflight.
fn log_row(
    preflight_id: &str,
    tenant: &str,
    spec: &validate::Spec,
    outcome: &preflight::Outcome,
) -> PreflightLogRow {
    let (at, at_ms) = split_time(Utc::now());
    let (provider, region, zone_id, instance_type, market) = key_row_parts(&spec.key);
    PreflightLogRow {
        preflight_id: preflight_id.to_owned(),
        tenant: tenant.to_owned(),
        at,
        at_ms,
        provider,
        region,
        zone_id,
        instance_type,
        market,
        count: spec.count,
        decision: decision_text(outcome.decision).into(),
        permission: check_status_text(&outcome.checks, "permission"),
        quota: check_status_text(&outcome.checks, "quota"),
        capacity: check_status_text(&outcome.checks, "capacity"),
        quota_headroom: outcome.quota_headroom.unwrap_or(0),
        score: outcome.score.as_ref().map_or(-1, |s| i16::from(s.score)),
        alternatives: u32::try_from(outcome.alternatives.len()).unwrap_or(0),
        checks: serde_json::to_string(
            &outcome
                .checks
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "name": c.name, "status": check_status_text(std::slice::from_ref(c), &c.name),
                        "reason": c.reason, "error_code": c.error_code,
                    })
                })
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default(),
    }
}

/// The one-line summary of a preflight's decision.
fn summary(spec: &validate::Spec, outcome: &preflight::Outcome) -> String {
    match outcome.decision {
        v1::Decision::CanLaunch => format!("can launch {} x{}", spec.key, spec.count),
        v1::Decision::RetryWithAlternatives => format!(
            "{} looks short of capacity; {} alternative(s) below",
            spec.key,
            outcome.alternatives.len()
        ),
        _ => {
            let failed = outcome
                .checks
                .iter()
                .find(|c| c.status == CheckStatus::Failed as i32)
                .map_or("", |c| c.name.as_str());
            format!("fix your account first ({failed} check failed); alternatives would not help")
        }
    }
}

/// A preflight that ran and was logged.
#[derive(Debug)]
pub(super) struct Preflighted {
    /// Its id in `preflight_log`.
    pub id: String,
    /// The decision, checks and alternatives.
    pub outcome: preflight::Outcome,
    /// The one-line summary.
    pub summary: String,
}

/// Runs the preflight of `spec` for `caller` and logs it in `preflight_log`: the one decision
/// path of `Preflight` and `Launch`.
pub(super) async fn preflighted(
    core: &Core,
    caller: &Caller,
    spec: &validate::Spec,
    constraints: &validate::Constraints,
    live_probe: bool,
) -> Answer<Preflighted> {
    let outcome = preflight::run(
        caller,
        spec,
        constraints,
        live_probe,
        preflight::Sources {
            clouds: core.clouds.as_ref(),
            view: &core.view,
            catalog: &core.catalog,
            timeout: core.settings.cloud_timeout,
            launches: core.store.launches(),
            gpu_quota: core.tenancy.gpu_quota(caller),
        },
    )
    .await?;
    let id = uuid::Uuid::now_v7().to_string();
    let row = log_row(&id, caller.id().as_str(), spec, &outcome);
    core.store.log_preflight(&row).await?;
    let summary = summary(spec, &outcome);
    tracing::info!(preflight_id = id, tenant = %caller.id(), key = %spec.key, decision = decision_text(outcome.decision), "preflight");
    Ok(Preflighted {
        id,
        outcome,
        summary,
    })
}

rpcs!(PreflightService {
    preflight(v1::PreflightRequest) -> v1::PreflightResponse;
    alternatives(v1::AlternativesRequest) -> v1::AlternativesResponse;
});

impl Rpc for v1::PreflightRequest {
    type Reply = v1::PreflightResponse;
    const READS_VIEW: bool = true;

    async fn answer(self, core: &Core, caller: Caller) -> Answer<Self::Reply> {
        let (spec, constraints) = validated(core, self.spec, self.constraints, true)?;
        let Preflighted {
            id: preflight_id,
            outcome,
            summary,
        } = preflighted(core, &caller, &spec, &constraints, self.live_probe).await?;
        Ok(v1::PreflightResponse {
            preflight_id,
            decision: outcome.decision.into(),
            checks: outcome.checks,
            summary,
            alternatives: outcome.alternatives,
            score: outcome.score.as_ref().map(|s| v1::Score::from(s.as_ref())),
            quota_headroom: outcome.quota_headroom.unwrap_or(0),
        })
    }
}

impl Rpc for v1::AlternativesRequest {
    type Reply = v1::AlternativesResponse;
    const READS_VIEW: bool = true;

    async fn answer(self, core: &Core, _: Caller) -> Answer<Self::Reply> {
        let (spec, constraints) = validated(core, self.spec, self.constraints, false)?;
        let all = core.view.select(None, |_| true);
        Ok(v1::AlternativesResponse {
            alternatives: alternatives::rank(&spec, &constraints, &all, &core.catalog),
        })
    }
}
