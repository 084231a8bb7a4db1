//! The state machine steps: one sweep over managed jobs advances each by its [`Phase`] —
//! create the stopped standby, launch the replacement, stop the standby after the cooldown.

use std::sync::Arc;

use capsight_clickhouse::rows::{LaunchEventRow, LaunchRequestRow};
use capsight_cloud::{
    Instance, InstanceId, InstanceState, InstanceType, LaunchRequest, Market, Provider, Region,
    ZoneId,
};
use capsight_proto::domain::LaunchState;
use chrono::Utc;

use super::{
    Standby, StandbyError,
    phase::{Phase, StandbyStep, phase},
};
use capsight_launch::ids::{replacement_token, standby_token};

use crate::{
    lifecycle::{LifecycleError, adapter_for},
    store::follow_up,
};

/// Parsed instance ids (invalid ones are skipped).
pub(super) fn ids(list: &[String]) -> Vec<InstanceId> {
    list.iter().cloned().filter_map(InstanceId::new).collect()
}

/// Whether every instance (at least one) is in `want`.
fn all_in(instances: &[Instance], want: &InstanceState) -> bool {
    !instances.is_empty() && instances.iter().all(|i| &i.state == want)
}

impl Standby {
    /// Running jobs that asked for a standby, with their request and transitions: three
    /// queries, whatever the number of running jobs (an interruption warning is acted on in
    /// the same time with a long history).
    pub(super) async fn managed(
        &self,
    ) -> Result<Vec<(LaunchRequestRow, Vec<LaunchEventRow>)>, StandbyError> {
        let running: Vec<(String, String)> = self
            .store
            .running_launches()
            .await?
            .into_iter()
            .map(|l| (l.tenant, l.job_id))
            .collect();
        let mut requests: Vec<LaunchRequestRow> = self
            .store
            .requests_of(&running)
            .await?
            .into_iter()
            .filter(|r| r.warm_standby != 0)
            .collect();
        requests.sort_by(|a, b| (&a.tenant, &a.job_id).cmp(&(&b.tenant, &b.job_id)));
        requests.dedup_by(|a, b| a.tenant == b.tenant && a.job_id == b.job_id);
        let managed: Vec<(String, String)> = requests
            .iter()
            .map(|r| (r.tenant.clone(), r.job_id.clone()))
            .collect();
        let mut events = self.store.events_by_job(&managed).await?;
        Ok(requests
            .into_iter()
            .map(|r| {
                let e = events
                    .remove(&(r.tenant.clone(), r.job_id.clone()))
                    .unwrap_or_default();
                (r, e)
            })
            .collect())
    }

    /// One pass over managed jobs: create standbys, finish replacements, stop standbys after
    /// the cooldown, clean up after ended jobs.
    pub async fn sweep(&self) -> Result<(), StandbyError> {
        let _guard = self.lock.lock().await;
        for (req, events) in self.managed().await? {
            if let Err(e) = self.advance(&req, &events).await {
                tracing::warn!(job_id = req.job_id, error = %e, "standby step failed; retrying next sweep");
            }
        }
        self.clean_up_ended().await
    }

    /// Advances one managed job by its phase.
    pub(super) async fn advance(
        &self,
        req: &LaunchRequestRow,
        events: &[LaunchEventRow],
    ) -> Result<(), StandbyError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        match phase(events) {
            Phase::Idle => Ok(()),
            Phase::Armed { spot, .. } => self.check_serving(req, events, &spot).await,
            Phase::NeedStandby => self.create_standby(req, last).await,
            Phase::Active {
                standby,
                interrupted,
                switch,
            } => {
                self.replace(req, last, &standby, &interrupted, switch)
                    .await
            }
            Phase::Cooling { standby, since, .. } => {
                self.stop_after_cooldown(req, last, &standby, since).await
            }
        }
    }

    /// Stops the standby once the cooldown since the replacement ran is over and records
    /// `standby stopped` (armed again).
    async fn stop_after_cooldown(
        &self,
        req: &LaunchRequestRow,
        last: &LaunchEventRow,
        standby: &[String],
        since: u32,
    ) -> Result<(), StandbyError> {
        let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
        if now.saturating_sub(u64::from(since)) < self.settings.cooldown.as_secs() {
            return Ok(());
        }
        let adapter = self.adapter(last).await?;
        adapter.stop(&ids(standby)).await?;
        let row = follow_up(
            last,
            LaunchState::Running,
            format!(
                "{}: standby={} after the {}s cooldown",
                StandbyStep::Stopped,
                standby.join(","),
                self.settings.cooldown.as_secs()
            ),
        );
        self.store.append_next(row).await?;
        tracing::info!(job_id = req.job_id, standby = ?standby, "warm standby stopped after the cooldown");
        Ok(())
    }

    pub(super) async fn adapter(
        &self,
        row: &LaunchEventRow,
    ) -> Result<Arc<dyn capsight_cloud::CloudAdapter>, StandbyError> {
        Ok(adapter_for(
            &self.registry,
            self.clouds.as_ref(),
            &row.tenant,
            &row.region,
            &row.job_id,
        )
        .await?)
    }

    fn request_for(
        &self,
        req: &LaunchRequestRow,
        last: &LaunchEventRow,
        zone: Option<&str>,
        token: String,
    ) -> Result<LaunchRequest, StandbyError> {
        let bad = |reason: String| {
            StandbyError::Lifecycle(LifecycleError::BadRow {
                job_id: last.job_id.clone(),
                reason,
            })
        };
        let region =
            Region::parse("region", Provider::Aws, &last.region).map_err(|e| bad(e.to_string()))?;
        let itype = InstanceType::parse("instance_type", Provider::Aws, &last.instance_type)
            .map_err(|e| bad(e.to_string()))?;
        let zone = match zone {
            Some(z) => ZoneId::parse_optional("zone_id", Provider::Aws, &region, z)
                .map_err(|e| bad(e.to_string()))?,
            None => None,
        };
        let mut r = LaunchRequest::new(itype, zone, req.image_id.clone(), token)
            .count(req.count.max(1))
            .tag("capsight:job", last.job_id.clone())
            .tag("capsight:tenant", last.tenant.clone());
        if !req.subnet_id.is_empty() {
            r.subnet_id = Some(req.subnet_id.clone());
        }
        Ok(r)
    }

    /// Launches the on-demand clone (idempotent token) and stops it once running; records
    /// `standby ready` when it is stopped or stopping.
    async fn create_standby(
        &self,
        req: &LaunchRequestRow,
        last: &LaunchEventRow,
    ) -> Result<(), StandbyError> {
        let adapter = self.adapter(last).await?;
        let request = self
            .request_for(req, last, Some(&last.zone_id), standby_token(&req.job_id))?
            .tag("capsight:role", "standby");
        let instances = adapter.launch(&request).await?;
        let standby: Vec<String> = instances.iter().map(|i| i.id.as_str().to_owned()).collect();
        let parked = instances
            .iter()
            .all(|i| matches!(i.state, InstanceState::Stopped | InstanceState::Stopping));
        if !parked {
            if !all_in(&instances, &InstanceState::Running) {
                return Ok(()); // still booting: next sweep
            }
            adapter.stop(&ids(&standby)).await?;
        }
        let row = follow_up(
            last,
            LaunchState::Running,
            format!(
                "{}: standby={} stopped on-demand clone (client token {}-standby)",
                StandbyStep::Ready,
                standby.join(","),
                req.job_id
            ),
        );
        self.store.append_next(row).await?;
        tracing::info!(job_id = req.job_id, standby = ?standby, "warm standby ready (stopped)");
        Ok(())
    }

    /// Launches replacement `<job_id>-r<switch>`; once it runs, terminates the interrupted
    /// instances and records `replacement running`.
    async fn replace(
        &self,
        req: &LaunchRequestRow,
        last: &LaunchEventRow,
        standby: &[String],
        interrupted: &[String],
        switch: u32,
    ) -> Result<(), StandbyError> {
        let adapter = self.adapter(last).await?;
        let mut request =
            self.request_for(req, last, None, replacement_token(&req.job_id, switch))?;
        request = request
            .market(Market::Spot)
            .tag("capsight:role", "replacement");
        if req.spot_max_price > 0.0 {
            request = request.spot_max_price(req.spot_max_price);
        }
        let instances = match adapter.launch(&request).await {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(job_id = req.job_id, error = %e, "replacement spot launch failed; the standby keeps serving");
                return Ok(());
            }
        };
        if !all_in(&instances, &InstanceState::Running) {
            return Ok(());
        }
        if !interrupted.is_empty()
            && let Err(e) = adapter.terminate(&ids(interrupted)).await
        {
            tracing::warn!(job_id = req.job_id, error = %e, "terminating the interrupted spot instance failed");
        }
        let serving: Vec<String> = instances.iter().map(|i| i.id.as_str().to_owned()).collect();
        let mut row = follow_up(
            last,
            LaunchState::Running,
            format!(
                "{}: standby={} replacement={}; the standby stops after the {}s cooldown",
                StandbyStep::Replaced,
                standby.join(","),
                serving.join(","),
                self.settings.cooldown.as_secs()
            ),
        );
        row.instance_id = serving.join(",");
        row.market = Market::Spot.as_str().to_owned();
        row.zone_id = instances
            .first()
            .and_then(|i| i.zone.as_ref())
            .map_or_else(String::new, |z| z.as_str().to_owned());
        self.store.append_next(row).await?;
        tracing::info!(job_id = req.job_id, replacement = ?serving, "replacement spot instance running");
        Ok(())
    }
}
