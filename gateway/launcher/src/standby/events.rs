//! Matching cloud events to jobs: the consumer of `InstanceEvent` signals and the switch to
//! the standby when an interruption warning or rebalance recommendation names a job's serving
//! spot instance.
//!
//! Tenant boundary: an event acts only on a launch of the tenant that sent it — the signal's
//! tenant hash (set by the intake from the authenticated key) must equal the hash of the
//! job's tenant. An event without a sender, or naming another tenant's instance, is refused
//! and logged; knowing another tenant's instance id is not enough to move its instances.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use capsight_clickhouse::rows::{LaunchEventRow, LaunchRequestRow};
use capsight_cloud::Market;
use capsight_kafka::{
    KafkaSettings,
    liveness::{Liveness, Recovery},
};
use capsight_proto::{
    codec,
    domain::{InstanceEventKind, LaunchState, Payload, TenantHash},
};
use capsight_runtime::shutdown::Shutdown;
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
};

use super::{
    Handled, Standby, StandbyError,
    machine::ids,
    phase::{Phase, StandbyStep, phase},
};
use crate::store::{follow_up, split_ids};

impl Standby {
    /// The consuming loop of [`Standby::start`]: sweeps every `interval` next to it, rejoins
    /// when the watchdog asks, stores each offset once its event was handled.
    pub(super) async fn consume(
        self,
        kafka: KafkaSettings,
        shutdown: Shutdown,
        mut consumer: Arc<StreamConsumer>,
        live: Liveness,
    ) -> Result<(), StandbyError> {
        tracing::info!(topic = %kafka.topics.signals, group = %self.settings.consumer_group, "warm standby consuming instance events");
        let sweeper = self.clone();
        let sweep_shutdown = shutdown.clone();
        let sweeps = tokio::spawn(async move {
            capsight_runtime::periodic::every(
                sweeper.settings.interval,
                false,
                &sweep_shutdown,
                || async {
                    if !sweeper.leader.is_leader() {
                        return;
                    }
                    if let Err(e) = sweeper.sweep().await {
                        tracing::warn!(error = %e, "standby sweep failed; retrying next time");
                    }
                },
            )
            .await;
        });
        let outcome = loop {
            let msg = tokio::select! {
                () = shutdown.wait() => break Ok(()),
                recovery = live.recover_requested() => match recovery {
                    Recovery::Rejoin => {
                        let fresh = self.consumer(&kafka)?;
                        let old = std::mem::replace(&mut consumer, fresh);
                        live.replace(Arc::clone(&consumer) as _);
                        // closing may wait for a coordinator that does not answer
                        std::thread::spawn(move || drop(old));
                        tracing::warn!("warm standby rejoined its group with a new consumer");
                        continue;
                    }
                    Recovery::GiveUp(reason) => break Err(StandbyError::Stalled(reason)),
                },
                m = consumer.recv() => m,
            };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "kafka receive failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Some(payload) = msg.payload() {
                self.handle(payload, &shutdown).await;
            }
            match consumer.store_offset_from_message(&msg) {
                Ok(()) => live.processed(msg.partition(), msg.offset() + 1),
                Err(e) => tracing::warn!(error = %e, "storing an offset failed"),
            }
        };
        let _ = sweeps.await;
        outcome
    }

    /// Handles one record of the signals topic: an interruption warning or a rebalance
    /// recommendation goes to [`Standby::on_interruption`], retried a few times; anything else
    /// is irrelevant here.
    async fn handle(&self, payload: &[u8], shutdown: &Shutdown) {
        let Ok(signal) = codec::decode_signal(payload) else {
            return;
        };
        let Payload::InstanceEvent(ev) = &signal.payload else {
            return;
        };
        if !matches!(
            ev.kind,
            InstanceEventKind::InterruptionWarning | InstanceEventKind::RebalanceRecommendation
        ) {
            return;
        }
        let Some(sender) = &signal.tenant else {
            tracing::warn!(instance = ev.instance_id, signal = %signal.id, "instance event without a sending tenant refused");
            return;
        };
        let mut attempt = 0u32;
        loop {
            match self.on_interruption(&ev.instance_id, ev.kind, sender).await {
                Ok(_) => break,
                Err(e) if attempt < 5 && !shutdown.is_triggered() => {
                    attempt += 1;
                    tracing::warn!(error = %e, instance = ev.instance_id, attempt, "handling an interruption failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, instance = ev.instance_id, "handling an interruption failed; giving up");
                    break;
                }
            }
        }
    }

    /// A new member of the standby's consumer group, subscribed to the signals topic.
    pub(super) fn consumer(
        &self,
        kafka: &KafkaSettings,
    ) -> Result<Arc<StreamConsumer>, StandbyError> {
        let consumer: StreamConsumer = kafka
            .consumer_config("launcher-standby", &self.settings.consumer_group)
            .create()?;
        consumer.subscribe(&[&kafka.topics.signals])?;
        Ok(Arc::new(consumer))
    }

    /// Handles an interruption warning or rebalance recommendation for `instance_id` sent by
    /// the tenant whose hash is `sender`: when it serves a managed job *of that tenant*, the
    /// standby is started and the switch recorded. Jobs of other tenants are never touched.
    pub async fn on_interruption(
        &self,
        instance_id: &str,
        kind: InstanceEventKind,
        sender: &TenantHash,
    ) -> Result<Handled, StandbyError> {
        let received = Instant::now();
        let _guard = self.lock.lock().await;
        for (req, events) in self.managed().await? {
            if !self.sent_by_owner(&req, sender) {
                if events
                    .last()
                    .is_some_and(|e| split_ids(&e.instance_id).iter().any(|s| s == instance_id))
                {
                    tracing::warn!(
                        job_id = req.job_id,
                        instance_id,
                        sender = sender.as_str(),
                        "refused: an instance event about this job's instance was sent by another tenant"
                    );
                }
                continue;
            }
            let Some(start_ms) = self
                .switch(&req, &events, instance_id, kind.as_str(), received)
                .await?
            else {
                continue;
            };
            // start the replacement at once (it finishes in later sweeps)
            let events = self.store.events(&req.tenant, &req.job_id, None).await?;
            if let Err(e) = self.advance(&req, &events).await {
                tracing::warn!(job_id = req.job_id, error = %e, "replacement launch failed; retrying next sweep");
            }
            return Ok(Handled::Switched {
                job_id: req.job_id.clone(),
                start_ms,
            });
        }
        Ok(Handled::Ignored)
    }

    /// Whether `sender` is the hash of the job's tenant.
    fn sent_by_owner(&self, req: &LaunchRequestRow, sender: &TenantHash) -> bool {
        capsight_tenancy::TenantId::parse(&req.tenant)
            .is_ok_and(|t| self.hasher.hash(&t) == *sender)
    }

    /// When `instance_id` serves the job (armed, or a replacement in its cooldown), lets the
    /// standby serve: starts it if stopped and records `standby active`. Returns the start's
    /// duration since `received` in ms (0 when the standby was still running); `None` when the
    /// instance does not serve the job.
    pub(super) async fn switch(
        &self,
        req: &LaunchRequestRow,
        events: &[LaunchEventRow],
        instance_id: &str,
        cause: &str,
        received: Instant,
    ) -> Result<Option<u64>, StandbyError> {
        let switched = self
            .switch_now(req, events, instance_id, cause, received)
            .await;
        let outcome = switched.as_ref().map(Option::is_some).map_err(|_| ());
        crate::metrics::standby_switch(cause, outcome, received);
        switched
    }

    async fn switch_now(
        &self,
        req: &LaunchRequestRow,
        events: &[LaunchEventRow],
        instance_id: &str,
        cause: &str,
        received: Instant,
    ) -> Result<Option<u64>, StandbyError> {
        let Some(last) = events.last() else {
            return Ok(None);
        };
        let (standby, start) = match phase(events) {
            Phase::Armed { standby, spot } if spot.iter().any(|s| s == instance_id) => {
                (standby, true)
            }
            // the replacement is interrupted during the cooldown: the standby still runs
            Phase::Cooling {
                standby, serving, ..
            } if serving.iter().any(|s| s == instance_id) => (standby, false),
            Phase::NeedStandby
                if split_ids(&last.instance_id)
                    .iter()
                    .any(|s| s == instance_id) =>
            {
                tracing::warn!(
                    job_id = req.job_id,
                    instance_id,
                    "interruption before the warm standby was ready"
                );
                return Ok(None);
            }
            _ => return Ok(None),
        };
        if start {
            let adapter = self.adapter(last).await?;
            adapter.start(&ids(&standby)).await?;
        }
        let start_ms = if start {
            u64::try_from(received.elapsed().as_millis()).unwrap_or(u64::MAX)
        } else {
            0
        };
        let mut row = follow_up(
            last,
            LaunchState::Running,
            format!(
                "{}: standby={} interrupted={instance_id} event={cause} started_in_ms={start_ms}",
                StandbyStep::Active,
                standby.join(","),
            ),
        );
        row.instance_id = standby.join(",");
        row.market = Market::OnDemand.as_str().to_owned();
        self.store.append_next(row).await?;
        tracing::info!(job_id = req.job_id, instance_id, standby = ?standby, start_ms, event = cause, "spot interrupted: warm standby serves");
        Ok(Some(start_ms))
    }
}
