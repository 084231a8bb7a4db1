//! `LaunchService`: converts and calls the launch core — [`Submit`] for `Launch`, after the
//! same preflight `Preflight` runs (permission, quota with the tenant GPU quota, capacity;
//! logged): a launch it refuses is answered `FAILED_PRECONDITION` and never queued (a capacity
//! shortfall is queued when the request allows fallbacks);
//! [`manage`] for reading, cancelling and heartbeating a launch; `WatchLaunch` reads the
//! gateway's shared launch feed ([`crate::feed`]).

use capsight_clickhouse::rows::LaunchEventRow;
use capsight_launch::{JobId, manage, store::StoredLaunch, submit::Submit};
use capsight_proto::{
    domain::{CapacityKey, Market},
    v1::{self, LaunchState, launch_service_server::LaunchService},
};
use futures::StreamExt;
use tonic::{Request, Response, Status};

use super::{
    Answer, Api, Result, Rpc, Stream_,
    preflight::{Preflighted, preflighted},
    rpcs, secs_ms, ts,
};
use crate::{Core, GatewayError, auth::Caller, feed::Follow, streams::held, validate::bounded};

/// Longest heartbeat note, bytes.
const MAX_HEARTBEAT_NOTE: usize = 256;

/// The request's `job_id`, validated.
fn job_id(text: &str) -> Answer<JobId> {
    Ok(JobId::parse("job_id", text)?)
}

/// The capacity key a stored launch row names, when it still parses.
fn stored_key(
    provider: &str,
    region: &str,
    zone_id: &str,
    instance_type: &str,
    market: &str,
) -> Option<v1::CapacityKey> {
    let market = Market::parse("market", market).ok()?;
    let key = CapacityKey::parse(provider, region, zone_id, instance_type, market).ok()?;
    Some(v1::CapacityKey::from(&key))
}

/// A recorded transition as the client sees it.
fn event_to_wire(e: &LaunchEventRow) -> v1::LaunchEvent {
    let key = stored_key(
        &e.provider,
        &e.region,
        &e.zone_id,
        &e.instance_type,
        &e.market,
    );
    v1::LaunchEvent {
        job_id: e.job_id.clone(),
        seq: e.seq,
        state: LaunchState::from(e.state).into(),
        at: Some(ts(secs_ms(e.at, e.at_ms))),
        key,
        instance_id: e.instance_id.clone(),
        attempt: e.attempt,
        error_class: capsight_proto::domain::ErrorClass::parse("error_class", &e.error_class)
            .map_or(0, i32::from),
        error_code: e.error_code.clone(),
        detail: e.detail.clone(),
    }
}

/// A launch with its transitions as the client sees it.
fn status_to_wire(l: &StoredLaunch) -> v1::LaunchStatus {
    let r = &l.request;
    let key = stored_key(
        &r.provider,
        &r.region,
        &r.zone_id,
        &r.instance_type,
        &r.market,
    );
    let state = LaunchState::from(manage::current_state(l));
    v1::LaunchStatus {
        job_id: r.job_id.clone(),
        state: state.into(),
        spec: Some(v1::LaunchSpec {
            key,
            count: r.count,
            image_id: r.image_id.clone(),
            subnet_id: r.subnet_id.clone(),
            spot_max_price: r.spot_max_price,
        }),
        created_at: Some(ts(secs_ms(r.created_at, r.created_ms))),
        events: l.events.iter().map(event_to_wire).collect(),
        cancel_requested: l.cancel_requested,
    }
}

/// Whether a launch whose preflight decided `checked` is queued: `CAN_LAUNCH` is; a capacity
/// shortfall is when the request allows fallbacks (the launcher tries the key, then the
/// alternatives); anything else is refused with `FAILED_PRECONDITION` saying which check
/// failed, why, and (for capacity) where to launch instead.
fn may_queue(checked: &Preflighted, max_fallbacks: u32) -> Answer<()> {
    let outcome = &checked.outcome;
    let failed = outcome
        .checks
        .iter()
        .find(|c| c.status == v1::CheckStatus::Failed as i32);
    let why = failed.map_or_else(String::new, |c| format!(": {} check: {}", c.name, c.reason));
    match outcome.decision {
        v1::Decision::CanLaunch => Ok(()),
        v1::Decision::RetryWithAlternatives if max_fallbacks > 0 => {
            tracing::info!(
                preflight_id = checked.id,
                "capacity looks short; queued with fallbacks"
            );
            Ok(())
        }
        v1::Decision::RetryWithAlternatives => {
            let keys: Vec<String> = outcome
                .alternatives
                .iter()
                .filter_map(|a| a.key.clone())
                .filter_map(|k| CapacityKey::try_from(k).ok())
                .map(|k| k.to_string())
                .collect();
            Err(GatewayError::FailedPrecondition(format!(
                "preflight {} refused the launch{why}; launch one of the alternatives ({}) or                  allow fallbacks (max_fallbacks)",
                checked.id,
                if keys.is_empty() {
                    "none found".to_owned()
                } else {
                    keys.join(", ")
                }
            )))
        }
        v1::Decision::FixAccountIssue | v1::Decision::Unspecified => {
            Err(GatewayError::FailedPrecondition(format!(
                "preflight {} refused the launch{why}",
                checked.id
            )))
        }
    }
}

rpcs!(LaunchService {
    launch(v1::LaunchRequest) -> v1::LaunchResponse;
    get_launch(v1::GetLaunchRequest) -> v1::LaunchStatus;
    watch_launch(v1::WatchLaunchRequest) -> Stream_<v1::LaunchEvent> as WatchLaunchStream;
    cancel_launch(v1::CancelLaunchRequest) -> v1::LaunchStatus;
    list_launches(v1::ListLaunchesRequest) -> v1::ListLaunchesResponse;
    heartbeat(v1::HeartbeatRequest) -> v1::HeartbeatResponse;
});

impl Rpc for v1::LaunchRequest {
    type Reply = v1::LaunchResponse;
    const READS_VIEW: bool = true;

    async fn answer(self, core: &Core, caller: Caller) -> Answer<Self::Reply> {
        let submit = Submit {
            store: core.store.launches(),
            queue: &core.jobs,
            catalog: &core.catalog,
            max_launch_count: core.settings.max_launch_count,
            crash_after: &core.settings.crash_after,
        };
        let tenant = caller.id().as_str();
        // a retry answers the job it already submitted, whatever a preflight would say now
        let submitted = match submit.existing(tenant, &self.idempotency_key).await? {
            Some(known) => known,
            None => {
                let (spec, constraints) = submit.validate(&self)?;
                let checked = preflighted(core, &caller, &spec, &constraints, false).await?;
                may_queue(&checked, self.max_fallbacks)?;
                submit.submit(tenant, &caller.hash, self).await?
            }
        };
        Ok(v1::LaunchResponse {
            job_id: submitted.job_id.into_string(),
            state: LaunchState::from(submitted.state).into(),
        })
    }
}

impl Rpc for v1::GetLaunchRequest {
    type Reply = v1::LaunchStatus;

    async fn answer(self, core: &Core, caller: Caller) -> Answer<Self::Reply> {
        let id = job_id(&self.job_id)?;
        let launch = manage::launch(core.store.launches(), caller.id().as_str(), &id).await?;
        Ok(status_to_wire(&launch))
    }
}

impl Rpc for v1::WatchLaunchRequest {
    type Reply = Stream_<v1::LaunchEvent>;

    async fn answer(self, core: &Core, caller: Caller) -> Answer<Self::Reply> {
        let id = job_id(&self.job_id)?;
        let slot = core.streams.open(&caller)?;
        let tenant = caller.id().to_string();
        // only the tenant's own launch is watched (NOT_FOUND otherwise)
        let launch = manage::launch(core.store.launches(), &tenant, &id).await?;
        let how = Follow {
            until_running: self.until_running,
            max_duration: core.settings.watch_max_duration,
        };
        let events = core
            .feed
            .follow(tenant, id.into_string(), launch.events, how)
            .map(|e| match e {
                Ok(e) => Ok(event_to_wire(&e)),
                Err(e) => Err(Status::from(e)),
            });
        Ok(Box::pin(held(Box::pin(events), slot)))
    }
}

impl Rpc for v1::CancelLaunchRequest {
    type Reply = v1::LaunchStatus;

    async fn answer(self, core: &Core, caller: Caller) -> Answer<Self::Reply> {
        let id = job_id(&self.job_id)?;
        let launch = manage::cancel(core.store.launches(), caller.id().as_str(), &id).await?;
        Ok(status_to_wire(&launch))
    }
}

impl Rpc for v1::ListLaunchesRequest {
    type Reply = v1::ListLaunchesResponse;

    async fn answer(self, core: &Core, caller: Caller) -> Answer<Self::Reply> {
        let limit = match self.limit {
            0 => 50,
            n @ 1..=500 => n,
            _ => return Err(GatewayError::invalid("limit", "must be 0..=500")),
        };
        let launches = core
            .store
            .launches()
            .list_launches(caller.id().as_str(), limit)
            .await?;
        Ok(v1::ListLaunchesResponse {
            launches: launches.iter().map(status_to_wire).collect(),
        })
    }
}

impl Rpc for v1::HeartbeatRequest {
    type Reply = v1::HeartbeatResponse;

    async fn answer(self, core: &Core, caller: Caller) -> Answer<Self::Reply> {
        let id = job_id(&self.job_id)?;
        bounded("note", &self.note, MAX_HEARTBEAT_NOTE)?;
        let tenant = caller.id().as_str();
        let beat = manage::heartbeat(core.store.launches(), tenant, &id, self.note).await?;
        Ok(v1::HeartbeatResponse {
            at: Some(ts(beat.at)),
            state: LaunchState::from(beat.state).into(),
        })
    }
}
