//! The safety net: a serving spot instance found gone without an event switches as if warned,
//! and the standby and replacements of jobs that ended are terminated.

use std::{collections::HashSet, time::Instant};

use capsight_clickhouse::rows::{LaunchEventRow, LaunchRequestRow};
use capsight_cloud::InstanceId;
use serde::Deserialize;

use super::{Standby, StandbyError, machine::ids};
use crate::lifecycle::{adapter_for, terminate_all};

impl Standby {
    /// Armed safety net for a missed event: when a serving spot instance is gone (shutting
    /// down, terminated, unknown), the standby takes over as if warned.
    pub(super) async fn check_serving(
        &self,
        req: &LaunchRequestRow,
        events: &[LaunchEventRow],
        spot: &[String],
    ) -> Result<(), StandbyError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let adapter = self.adapter(last).await?;
        let described = match adapter.describe(&ids(spot)).await {
            Ok(d) => d,
            Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let gone = spot.iter().find(|id| {
            described
                .iter()
                .find(|i| i.id.as_str() == id.as_str())
                .is_none_or(|i| !i.state.is_live())
        });
        if let Some(id) = gone {
            self.switch(req, events, id, "instance_gone", Instant::now())
                .await?;
        }
        Ok(())
    }

    /// Terminates every instance the job's transitions name, then any other live instance
    /// tagged `capsight:job=<job_id>` in those regions (e.g. a replacement still booting when
    /// the job ended).
    async fn terminate_everything(&self, events: &[LaunchEventRow]) -> Result<(), StandbyError> {
        terminate_all(&self.registry, self.clouds.as_ref(), events).await?;
        let Some(first) = events.first() else {
            return Ok(());
        };
        let regions: HashSet<&str> = events.iter().map(|e| e.region.as_str()).collect();
        for region in regions {
            let adapter = adapter_for(
                &self.registry,
                self.clouds.as_ref(),
                &first.tenant,
                region,
                &first.job_id,
            )
            .await?;
            let leftovers: Vec<InstanceId> = adapter
                .describe(&[])
                .await?
                .into_iter()
                .filter(|i| {
                    i.tags.get("capsight:job").map(String::as_str) == Some(first.job_id.as_str())
                        && i.state.is_live()
                })
                .map(|i| i.id)
                .collect();
            if !leftovers.is_empty() {
                adapter.terminate(&leftovers).await?;
            }
        }
        Ok(())
    }

    /// Terminates the standby and replacement instances of managed jobs that ended in the
    /// last hour (once per process per job).
    pub(super) async fn clean_up_ended(&self) -> Result<(), StandbyError> {
        #[derive(Debug, clickhouse::Row, Deserialize)]
        struct Ended {
            tenant: String,
            job_id: String,
        }
        let ended = capsight_clickhouse::sql::ENDED_WITH_STANDBY
            .query(self.store.client())
            .fetch_all::<Ended>()
            .await?;
        let fresh: Vec<(String, String)> = ended
            .into_iter()
            .filter(|e| !self.cleaned.lock().is_ok_and(|c| c.contains(&e.job_id)))
            .map(|e| (e.tenant, e.job_id))
            .collect();
        let with_standby = self
            .store
            .requests_of(&fresh)
            .await?
            .into_iter()
            .filter(|r| r.warm_standby != 0)
            .map(|r| (r.tenant, r.job_id));
        let ended: std::collections::BTreeSet<(String, String)> = with_standby.collect();
        for (tenant, job_id) in ended {
            let e = Ended { tenant, job_id };
            let events = self.store.events(&e.tenant, &e.job_id, None).await?;
            match self.terminate_everything(&events).await {
                Ok(()) => {
                    if let Ok(mut c) = self.cleaned.lock() {
                        c.insert(e.job_id.clone());
                    }
                    tracing::info!(
                        job_id = e.job_id,
                        "ended job: standby and replacements terminated"
                    );
                }
                Err(err) => {
                    tracing::warn!(job_id = e.job_id, error = %err, "cannot clean up an ended job's standby");
                }
            }
        }
        Ok(())
    }
}
