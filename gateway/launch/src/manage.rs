//! Managing a submitted launch: the use cases behind `LaunchService.GetLaunch`, `CancelLaunch`
//! and `Heartbeat` (and the ownership check of `WatchLaunch`, whose transitions come from the
//! gateway's shared feed).
//!
//! Contract: every call reads only the caller's own launch (tenant-scoped); a job id is a UUID
//! in its hyphenated form ([`JobId`]). A cancel of a launch in a final state is refused;
//! otherwise the request is recorded in `launch_cancellations`, which the launcher honours before
//! its next transition or, once running, by its sweep. A heartbeat is accepted only while the
//! launch is `running` and is recorded in `launch_activity` (the reaper's idle TTL).

use capsight_clickhouse::rows::{LaunchActivityRow, LaunchCancellationRow, split_time};
use capsight_proto::{domain::LaunchState, v1};
use chrono::{DateTime, Utc};

use crate::{
    JobId,
    store::{Store, StoreError, StoredLaunch},
};

/// Why a launch could not be read or managed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The tenant has no launch with this id.
    #[error("launch {0} not found")]
    NotFound(String),
    /// The launch's state forbids the call.
    #[error("{0}")]
    Refused(String),
    /// ClickHouse failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The state a launch is in: its latest transition's (`queued` before any).
pub fn current_state(launch: &StoredLaunch) -> LaunchState {
    launch
        .events
        .last()
        .map_or(LaunchState::Queued, |e| e.state)
}

/// The name a client sees for `state` (`LAUNCH_STATE_RUNNING`).
fn wire_name(state: LaunchState) -> &'static str {
    v1::LaunchState::from(state).as_str_name()
}

/// The tenant's launch `job_id`.
pub async fn launch(
    store: &Store,
    tenant: &str,
    job_id: &JobId,
) -> Result<StoredLaunch, ManageError> {
    store
        .launch(tenant, job_id.as_str())
        .await?
        .ok_or_else(|| ManageError::NotFound(job_id.to_string()))
}

/// Records a cancel request for the tenant's launch `job_id` unless it already ended; returns
/// the launch with `cancel_requested` set.
pub async fn cancel(
    store: &Store,
    tenant: &str,
    job_id: &JobId,
) -> Result<StoredLaunch, ManageError> {
    let mut launch = launch(store, tenant, job_id).await?;
    let state = current_state(&launch);
    if state.is_terminal() {
        return Err(ManageError::Refused(format!(
            "launch {job_id} is already {}",
            wire_name(state)
        )));
    }
    store
        .cancel(&LaunchCancellationRow {
            job_id: job_id.to_string(),
            tenant: tenant.to_owned(),
            at: split_time(Utc::now()).0,
        })
        .await?;
    tracing::info!(%job_id, tenant, "launch cancel requested");
    launch.cancel_requested = true;
    Ok(launch)
}

/// A heartbeat recorded at `at` for a launch in `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// The launch's state (`running`).
    pub state: LaunchState,
}

/// Records a heartbeat with `note` for the tenant's running launch `job_id`.
pub async fn heartbeat(
    store: &Store,
    tenant: &str,
    job_id: &JobId,
    note: String,
) -> Result<Beat, ManageError> {
    let events = store.events(tenant, job_id.as_str(), None).await?;
    let Some(last) = events.last() else {
        return Err(ManageError::NotFound(job_id.to_string()));
    };
    if last.state != LaunchState::Running {
        return Err(ManageError::Refused(format!(
            "launch {job_id} is {}, not running",
            wire_name(last.state)
        )));
    }
    let now = Utc::now();
    let (at, at_ms) = split_time(now);
    store
        .heartbeat(&LaunchActivityRow {
            job_id: job_id.to_string(),
            tenant: tenant.to_owned(),
            at,
            at_ms,
            note,
        })
        .await?;
    tracing::debug!(%job_id, tenant, "launch heartbeat");
    Ok(Beat {
        at: now,
        state: last.state,
    })
}
