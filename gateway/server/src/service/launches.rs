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
    Api, Result, Stream_,
    preflight::{Preflighted, preflighted},
    secs_ms, ts,
};
use crate::{GatewayError, feed::Follow, streams::held, validate::bounded};

/// Longest heartbeat note, bytes.
const MAX_HEARTBEAT_NOTE: usize = 256;

/// The request's `job_id`, validated.
fn job_id(text: &str) -> std::result::Result<JobId, GatewayError> {
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
fn may_queue(checked: &Preflighted, max_fallbacks: u32) -> std::result::Result<(), GatewayError> {
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

#[tonic::async_trait]
impl LaunchService for Api {
    async fn launch(
        &self,
        request: Request<v1::LaunchRequest>,
    ) -> Result<Response<v1::LaunchResponse>> {
        let (caller, req) = self.admit_ready(request)?;
        let core = &self.core;
        let submit = Submit {
            store: core.store.launches(),
            queue: &core.jobs,
            catalog: &core.catalog,
            max_launch_count: core.settings.max_launch_count,
            crash_after: &core.settings.crash_after,
        };
        let tenant = caller.id().as_str();
        // a retry answers the job it already submitted, whatever a preflight would say now
        let known = submit
            .existing(tenant, &req.idempotency_key)
            .await
            .map_err(GatewayError::from)?;
        let submitted = match known {
            Some(known) => known,
            None => {
                let (spec, constraints) = submit.validate(&req).map_err(GatewayError::from)?;
                let checked = preflighted(&self.core, &caller, &spec, &constraints, false).await?;
                may_queue(&checked, req.max_fallbacks)?;
                submit
                    .submit(tenant, &caller.hash, req)
                    .await
                    .map_err(GatewayError::from)?
            }
        };
        Ok(Response::new(v1::LaunchResponse {
            job_id: submitted.job_id.into_string(),
            state: LaunchState::from(submitted.state).into(),
        }))
    }

    async fn get_launch(
        &self,
        request: Request<v1::GetLaunchRequest>,
    ) -> Result<Response<v1::LaunchStatus>> {
        let (caller, req) = self.admit(request)?;
        let id = job_id(&req.job_id)?;
        let launch = manage::launch(self.core.store.launches(), caller.id().as_str(), &id)
            .await
            .map_err(GatewayError::from)?;
        Ok(Response::new(status_to_wire(&launch)))
    }

    type WatchLaunchStream = Stream_<v1::LaunchEvent>;

    async fn watch_launch(
        &self,
        request: Request<v1::WatchLaunchRequest>,
    ) -> Result<Response<Self::WatchLaunchStream>> {
        let (caller, req) = self.admit(request)?;
        let id = job_id(&req.job_id)?;
        let slot = self.core.streams.open(&caller)?;
        let tenant = caller.id().to_string();
        // only the tenant's own launch is watched (NOT_FOUND otherwise)
        let launch = manage::launch(self.core.store.launches(), &tenant, &id)
            .await
            .map_err(GatewayError::from)?;
        let how = Follow {
            until_running: req.until_running,
            max_duration: self.core.settings.watch_max_duration,
        };
        let events = self
            .core
            .feed
            .follow(tenant, id.into_string(), launch.events, how)
            .map(|e| match e {
                Ok(e) => Ok(event_to_wire(&e)),
                Err(e) => Err(Status::from(e)),
            });
        Ok(Response::new(Box::pin(held(Box::pin(events), slot))))
    }

    async fn cancel_launch(
        &self,
        request: Request<v1::CancelLaunchRequest>,
    ) -> Result<Response<v1::LaunchStatus>> {
        let (caller, req) = self.admit(request)?;
        let id = job_id(&req.job_id)?;
        let launch = manage::cancel(self.core.store.launches(), caller.id().as_str(), &id)
            .await
            .map_err(GatewayError::from)?;
        Ok(Response::new(status_to_wire(&launch)))
    }

    async fn list_launches(
        &self,
        request: Request<v1::ListLaunchesRequest>,
    ) -> Result<Response<v1::ListLaunchesResponse>> {
        let (caller, req) = self.admit(request)?;
        let limit = match req.limit {
            0 => 50,
            n @ 1..=500 => n,
            _ => return Err(GatewayError::invalid("limit", "must be 0..=500").into()),
        };
        let launches = self
            .core
            .store
            .launches()
            .list_launches(caller.id().as_str(), limit)
            .await
            .map_err(GatewayError::from)?;
        Ok(Response::new(v1::ListLaunchesResponse {
            launches: launches.iter().map(status_to_wire).collect(),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>> {
        let (caller, req) = self.admit(request)?;
        let id = job_id(&req.job_id)?;
        bounded("note", &req.note, MAX_HEARTBEAT_NOTE).map_err(GatewayError::from)?;
        let beat = manage::heartbeat(
            self.core.store.launches(),
            caller.id().as_str(),
            &id,
            req.note,
        )
        .await
        .map_err(GatewayError::from)?;
        Ok(Response::new(v1::HeartbeatResponse {
            at: Some(ts(beat.at)),
            state: LaunchState::from(beat.state).into(),
        }))
    }
}
