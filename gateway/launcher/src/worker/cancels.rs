//! The cancel sweep: running jobs whose cancel was requested are terminated and recorded.

use super::*;

impl Launcher {
    /// Every `cancel_sweep_interval`, on the replica that leads: running launches with a
    /// cancel request are terminated and recorded `cancelled`.
    pub(super) async fn sweep_cancels(&self, shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(self.settings.cancel_sweep_interval) => {}
            }
            if !self.leader.is_leader() {
                continue;
            }
            if let Err(e) = self.sweep_once().await {
                tracing::warn!(error = %e, "cancel sweep failed");
            }
            match self.store.live_launches(None).await {
                Ok(live) => crate::metrics::live(&live, chrono::Utc::now().timestamp()),
                Err(e) => tracing::debug!(error = %e, "live launches not read for metrics"),
            }
        }
    }

    /// One cancel sweep; returns how many launches were cancelled.
    pub async fn sweep_once(&self) -> Result<usize, String> {
        let mut done = 0;
        for live in self
            .store
            .running_cancelled()
            .await
            .map_err(|e| e.to_string())?
        {
            let Ok(tid) = TenantId::parse(&live.tenant) else {
                continue;
            };
            let Some(tenant) = self.registry.tenant(&tid) else {
                continue;
            };
            let Some(prev) = self
                .store
                .latest(&live.tenant, &live.job_id)
                .await
                .map_err(|e| e.to_string())?
            else {
                continue;
            };
            let Some(key) = key_of(&prev) else { continue };
            let adapter = tokio::time::timeout(
                self.settings.cloud_timeout,
                self.clouds.adapter_on(&tenant, key.provider, &key.region),
            )
            .await
            .map_err(|_| "assume role timed out".to_owned())?
            .map_err(|e| e.to_string())?;
            let ids: Vec<InstanceId> = split_ids(&prev.instance_id)
                .into_iter()
                .filter_map(InstanceId::new)
                .collect();
            self.cancel(&prev, Some(&adapter), &ids)
                .await
                .map_err(|f| format!("{f:?}"))?;
            tracing::info!(job_id = %live.job_id, tenant = %live.tenant, "running launch cancelled");
            done += 1;
        }
        Ok(done)
    }
}
