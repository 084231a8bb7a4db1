//! Warm standby for spot work: a stopped on-demand clone that takes over on an interruption.
//!
//! A job with `warm_standby` whose spot instance runs gets a *stopped* on-demand clone (same
//! type, image, subnet and zone, client token `<job_id>-standby`: launched, then stopped once
//! running). On an interruption warning or a rebalance recommendation for the job's serving spot
//! instance — `InstanceEvent` signals on `kafka.topics.signals`, which the reports intake
//! publishes from EventBridge events (or cloudsim's webhook), consumed here in the group
//! `launcher.standby.consumer_group` — the standby is started and serves; a replacement spot
//! instance is launched (client token `<job_id>-r<n>` for the n-th switch), the interrupted one
//! terminated once the replacement runs, and the standby stopped again `launcher.standby.cooldown`
//! after that.
//!
//! Contract:
//! * **State lives in `launch_events`** as `running` transitions whose `detail` starts with a
//!   phase and names the standby (`standby=<ids>`): `standby ready` (armed), `standby active`
//!   (`instance_id` = the standby, market `on_demand`), `replacement running` (`instance_id` =
//!   the replacement), `standby stopped` (armed again). [`phase`] rebuilds the state from the
//!   rows, so a restarted launcher carries on where it stopped; every cloud call is idempotent
//!   (client tokens; start/stop/terminate of an instance already there are harmless).
//! * Only jobs whose request asked for a standby and whose latest state is `running` are acted
//!   on; events for other instances are ignored. A missed event is caught by the sweep: an armed
//!   job whose serving spot instance is gone (shutting down, terminated) switches too
//!   (`event=instance_gone`). A consumed event's offset is stored after it
//!   was handled (or found irrelevant).
//! * When a managed job ends (terminated, failed, cancelled) its standby and replacement are
//!   terminated too (every instance its transitions name, and any live instance tagged
//!   `capsight:job=<job_id>`, e.g. a replacement still booting).
//! * One lock serialises the sweep and event handling inside a process; across replicas the
//!   idempotent calls and `ReplacingMergeTree` (same seq) keep a double action harmless.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use capsight_clickhouse::rows::{LaunchEventRow, LaunchRequestRow};
use capsight_cloud::tenants::TenantClouds;
use capsight_cloud::{
    CloudError, Instance, InstanceId, InstanceState, InstanceType, LaunchRequest, Market, Provider,
    Region, ZoneId,
};
use capsight_kafka::{
    KafkaSettings,
    liveness::{Liveness, Membership, Recovery, Watchdog},
};
use capsight_proto::{
    codec,
    domain::{InstanceEventKind, LaunchState, Payload},
};
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::SharedRegistry;
use chrono::Utc;
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
};
use serde::Deserialize;

use crate::{
    lifecycle::{LifecycleError, adapter_for, terminate_all},
    store::{Store, StoreError, follow_up, split_ids},
};

/// `[launcher.standby]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbySettings {
    /// After a replacement spot instance runs, the standby keeps serving this long, then stops.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// How often managed jobs are advanced (standby creation, replacement, cooldown).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Kafka consumer group reading instance events from the signals topic.
    pub consumer_group: String,
}

impl Default for StandbySettings {
    fn default() -> Self {
        Self {
            cooldown: Duration::from_secs(600),
            interval: Duration::from_secs(5),
            consumer_group: "capsight-launcher-standby".into(),
        }
    }
}

/// Why a standby step failed.
#[derive(Debug, thiserror::Error)]
pub enum StandbyError {
    /// ClickHouse, the cloud or the tenant's account.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// Kafka.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The events consumer stalled and rejoining its group did not help.
    #[error("instance events consumer stalled: {0}")]
    Stalled(String),
}

impl From<StoreError> for StandbyError {
    fn from(e: StoreError) -> Self {
        Self::Lifecycle(e.into())
    }
}

impl From<CloudError> for StandbyError {
    fn from(e: CloudError) -> Self {
        Self::Lifecycle(e.into())
    }
}

impl From<clickhouse::error::Error> for StandbyError {
    fn from(e: clickhouse::error::Error) -> Self {
        Self::Lifecycle(e.into())
    }
}

/// A step of the warm standby, recorded as the prefix of a `running` transition's detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyStep {
    /// The stopped clone exists.
    Ready,
    /// The standby was started and serves.
    Active,
    /// A replacement spot instance runs; the standby stops after the cooldown.
    Replaced,
    /// The standby was stopped again (armed).
    Stopped,
}

impl StandbyStep {
    /// Every step.
    pub const ALL: [Self; 4] = [Self::Ready, Self::Active, Self::Replaced, Self::Stopped];

    /// The detail prefix that records this step.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Ready => "standby ready",
            Self::Active => "standby active",
            Self::Replaced => "replacement running",
            Self::Stopped => "standby stopped",
        }
    }

    /// The step a transition's detail records, if any.
    pub fn of(detail: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| detail.starts_with(s.prefix()))
    }
}

impl std::fmt::Display for StandbyStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.prefix())
    }
}

fn token(detail: &str, name: &str) -> Vec<String> {
    detail
        .split_whitespace()
        .find_map(|w| w.strip_prefix(name))
        .map(split_ids)
        .unwrap_or_default()
}

/// The standby instance ids a transition's detail names (`standby=<ids>`), if it is one of
/// the standby phases.
pub fn detail_standby_ids(detail: &str) -> Vec<String> {
    if StandbyStep::of(detail).is_some() {
        token(detail, "standby=")
    } else {
        Vec::new()
    }
}

/// Where a managed job stands, rebuilt from its transitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not a running spot job with a standby phase (or ended).
    Idle,
    /// The spot instance runs; no standby yet.
    NeedStandby,
    /// A stopped standby waits; `spot` serves.
    Armed {
        /// Standby ids.
        standby: Vec<String>,
        /// Serving spot ids.
        spot: Vec<String>,
    },
    /// The standby serves; a replacement is (being) launched.
    Active {
        /// Standby ids.
        standby: Vec<String>,
        /// The interrupted spot ids.
        interrupted: Vec<String>,
        /// Which switch this is (1, 2, ...): replacement token `<job_id>-r<n>`.
        switch: u32,
    },
    /// A replacement serves; the standby still runs until `since` + cooldown.
    Cooling {
        /// Standby ids.
        standby: Vec<String>,
        /// Serving replacement ids.
        serving: Vec<String>,
        /// When the replacement ran, seconds.
        since: u32,
        /// Switches so far.
        switch: u32,
    },
}

/// The phase of a job from its transitions (by seq); pure.
pub fn phase(events: &[LaunchEventRow]) -> Phase {
    let Some(last) = events.last() else {
        return Phase::Idle;
    };
    if last.state != LaunchState::Running {
        return Phase::Idle;
    }
    let mut phase = None;
    let mut switches = 0;
    for e in events.iter().filter(|e| e.state == LaunchState::Running) {
        let standby = token(&e.detail, "standby=");
        match StandbyStep::of(&e.detail) {
            Some(StandbyStep::Ready | StandbyStep::Stopped) => {
                phase = Some(Phase::Armed {
                    standby,
                    spot: split_ids(&e.instance_id),
                });
            }
            Some(StandbyStep::Active) => {
                switches += 1;
                phase = Some(Phase::Active {
                    standby,
                    interrupted: token(&e.detail, "interrupted="),
                    switch: switches,
                });
            }
            Some(StandbyStep::Replaced) => {
                phase = Some(Phase::Cooling {
                    standby,
                    serving: split_ids(&e.instance_id),
                    since: e.at,
                    switch: switches,
                });
            }
            None => {}
        }
    }
    match phase {
        Some(p) => p,
        None if last.market == Market::Spot.as_str() => Phase::NeedStandby,
        None => Phase::Idle,
    }
}

fn ids(list: &[String]) -> Vec<InstanceId> {
    list.iter().cloned().filter_map(InstanceId::new).collect()
}

fn all_in(instances: &[Instance], want: &InstanceState) -> bool {
    !instances.is_empty() && instances.iter().all(|i| &i.state == want)
}

/// The warm-standby manager.
#[derive(Debug, Clone)]
pub struct Standby {
    store: Store,
    clouds: Arc<dyn TenantClouds>,
    registry: SharedRegistry,
    settings: StandbySettings,
    lock: Arc<tokio::sync::Mutex<()>>,
    cleaned: Arc<Mutex<HashSet<String>>>,
}

/// What handling one instance event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Not the serving spot instance of a managed job (or nothing to do in its phase).
    Ignored,
    /// The standby of `job_id` serves now; starting it took `start_ms`.
    Switched {
        /// The job.
        job_id: String,
        /// StartInstances round trip (0 when the standby was still running).
        start_ms: u64,
    },
}

impl Standby {
    /// A manager over the launcher's store, tenants' clouds and registry.
    pub fn new(
        store: Store,
        clouds: Arc<dyn TenantClouds>,
        registry: SharedRegistry,
        settings: StandbySettings,
    ) -> Self {
        Self {
            store,
            clouds,
            registry,
            settings,
            lock: Arc::default(),
            cleaned: Arc::default(),
        }
    }

    /// Consumes instance events and advances managed jobs every `interval` until `shutdown`.
    /// `liveness` watches the consumer (see [`capsight_kafka::liveness`]): a stalled consumer
    /// rejoins its group with a new client; when that does not help this returns
    /// [`StandbyError::Stalled`].
    pub async fn run(self, kafka: KafkaSettings, shutdown: Shutdown) -> Result<(), StandbyError> {
        let (_, consuming) = self.start(kafka, shutdown)?;
        consuming.await
    }

    /// [`Standby::run`] in two steps: joins the group and starts the watchdog now, and returns
    /// the consumer's liveness (for the health endpoint) with the future that consumes.
    pub fn start(
        self,
        kafka: KafkaSettings,
        shutdown: Shutdown,
    ) -> Result<
        (
            Liveness,
            impl Future<Output = Result<(), StandbyError>> + Send + 'static,
        ),
        StandbyError,
    > {
        let consumer = self.consumer(&kafka)?;
        let stop = shutdown.clone();
        let live = Watchdog::spawn(
            "launcher-standby",
            kafka.topics.signals.clone(),
            Membership::Group(self.settings.consumer_group.clone()),
            &kafka,
            Arc::clone(&consumer) as _,
            async move { stop.wait().await },
        );
        Ok((live.clone(), self.consume(kafka, shutdown, consumer, live)))
    }

    async fn consume(
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
            if let Some(signal) = msg.payload().and_then(|p| codec::decode_signal(p).ok())
                && let Payload::InstanceEvent(ev) = &signal.payload
                && matches!(
                    ev.kind,
                    InstanceEventKind::InterruptionWarning
                        | InstanceEventKind::RebalanceRecommendation
                )
            {
                let mut attempt = 0u32;
                loop {
                    match self.on_interruption(&ev.instance_id, ev.kind).await {
                        Ok(_) => break,
                        Err(e) if attempt < 5 && !shutdown.is_triggered() => {
                            attempt += 1;
                            tracing::warn!(error = %e, instance = ev.instance_id, attempt, "handling an interruption failed; retrying");
                            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt)))
                                .await;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, instance = ev.instance_id, "handling an interruption failed; giving up");
                            break;
                        }
                    }
                }
            }
            match consumer.store_offset_from_message(&msg) {
                Ok(()) => live.processed(msg.partition(), msg.offset() + 1),
                Err(e) => tracing::warn!(error = %e, "storing an offset failed"),
            }
        };
        let _ = sweeps.await;
        outcome
    }

    /// A new member of the standby's consumer group, subscribed to the signals topic.
    fn consumer(&self, kafka: &KafkaSettings) -> Result<Arc<StreamConsumer>, StandbyError> {
        let consumer: StreamConsumer = kafka
            .consumer_config("launcher-standby", &self.settings.consumer_group)
            .create()?;
        consumer.subscribe(&[&kafka.topics.signals])?;
        Ok(Arc::new(consumer))
    }

    /// Running jobs that asked for a standby, with their request and transitions.
    async fn managed(&self) -> Result<Vec<(LaunchRequestRow, Vec<LaunchEventRow>)>, StandbyError> {
        let running: Vec<_> = self
            .store
            .live_launches(None)
            .await?
            .into_iter()
            .filter(|l| l.state == LaunchState::Running)
            .collect();
        let mut out = Vec::new();
        for l in running {
            let Some(req) = self.store.request(&l.tenant, &l.job_id).await? else {
                continue;
            };
            if req.warm_standby == 0 {
                continue;
            }
            let events = self.store.events(&l.tenant, &l.job_id, None).await?;
            out.push((req, events));
        }
        Ok(out)
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

    async fn advance(
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
                let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
                if now.saturating_sub(u64::from(since)) < self.settings.cooldown.as_secs() {
                    return Ok(());
                }
                let adapter = self.adapter(last).await?;
                adapter.stop(&ids(&standby)).await?;
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
        }
    }

    async fn adapter(
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
            .tag("capsight:job", last.job_id.clone());
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
            .request_for(
                req,
                last,
                Some(&last.zone_id),
                format!("{}-standby", req.job_id),
            )?
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
        let mut request = self.request_for(req, last, None, format!("{}-r{switch}", req.job_id))?;
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

    /// Handles an interruption warning or rebalance recommendation for `instance_id`: when it
    /// serves a managed job, the standby is started and the switch recorded.
    pub async fn on_interruption(
        &self,
        instance_id: &str,
        kind: InstanceEventKind,
    ) -> Result<Handled, StandbyError> {
        let received = Instant::now();
        let _guard = self.lock.lock().await;
        for (req, events) in self.managed().await? {
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

    /// When `instance_id` serves the job (armed, or a replacement in its cooldown), lets the
    /// standby serve: starts it if stopped and records `standby active`. Returns the start's
    /// duration since `received` in ms (0 when the standby was still running); `None` when the
    /// instance does not serve the job.
    async fn switch(
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

    /// Armed safety net for a missed event: when a serving spot instance is gone (shutting
    /// down, terminated, unknown), the standby takes over as if warned.
    async fn check_serving(
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
                .is_none_or(|i| {
                    matches!(
                        i.state,
                        InstanceState::ShuttingDown | InstanceState::Terminated
                    )
                })
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
                        && !matches!(
                            i.state,
                            InstanceState::Terminated | InstanceState::ShuttingDown
                        )
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
    async fn clean_up_ended(&self) -> Result<(), StandbyError> {
        #[derive(Debug, clickhouse::Row, Deserialize)]
        struct Ended {
            tenant: String,
            job_id: String,
        }
        let ended = self
            .store
            .client()
            .query(
                "SELECT tenant, job_id FROM launch_events \
                 WHERE at >= now() - 3600 GROUP BY tenant, job_id \
                 HAVING argMax(state, seq) IN ('terminated', 'failed', 'cancelled') \
                 AND countIf(detail LIKE 'standby ready%') > 0",
            )
            .fetch_all::<Ended>()
            .await?;
        for e in ended {
            let done = self.cleaned.lock().is_ok_and(|c| c.contains(&e.job_id));
            if done {
                continue;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u32, state: &str, market: &str, ids: &str, detail: &str) -> LaunchEventRow {
        LaunchEventRow {
            job_id: "j".into(),
            seq,
            tenant: "t".into(),
            at: 100 + seq,
            at_ms: 0,
            state: LaunchState::parse("state", state).unwrap(),
            provider: "aws".into(),
            region: "us-east-1".into(),
            zone_id: "use1-az1".into(),
            instance_type: "g5.xlarge".into(),
            market: market.into(),
            instance_id: ids.into(),
            attempt: 1,
            error_class: String::new(),
            error_code: String::new(),
            detail: detail.into(),
        }
    }

    #[test]
    fn standby_steps_are_read_back_from_their_details() {
        for step in StandbyStep::ALL {
            assert_eq!(StandbyStep::of(&format!("{step}: standby=i-1")), Some(step));
        }
        assert_eq!(StandbyStep::of("running"), None);
        assert_eq!(
            detail_standby_ids("running standby=i-9"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn phases_follow_the_recorded_details() {
        let mut ev = vec![
            row(0, "queued", "spot", "", ""),
            row(1, "running", "spot", "i-spot", "running"),
        ];
        assert_eq!(phase(&ev), Phase::NeedStandby);
        ev.push(row(
            2,
            "running",
            "spot",
            "i-spot",
            "standby ready: standby=i-sb stopped",
        ));
        assert_eq!(
            phase(&ev),
            Phase::Armed {
                standby: vec!["i-sb".into()],
                spot: vec!["i-spot".into()]
            }
        );
        ev.push(row(
            3,
            "running",
            "on_demand",
            "i-sb",
            "standby active: standby=i-sb interrupted=i-spot event=interruption_warning",
        ));
        assert_eq!(
            phase(&ev),
            Phase::Active {
                standby: vec!["i-sb".into()],
                interrupted: vec!["i-spot".into()],
                switch: 1
            }
        );
        ev.push(row(
            4,
            "running",
            "spot",
            "i-r1",
            "replacement running: standby=i-sb replacement=i-r1;",
        ));
        assert_eq!(
            phase(&ev),
            Phase::Cooling {
                standby: vec!["i-sb".into()],
                serving: vec!["i-r1".into()],
                since: 104,
                switch: 1
            }
        );
        ev.push(row(
            5,
            "running",
            "spot",
            "i-r1",
            "standby stopped: standby=i-sb after",
        ));
        assert_eq!(
            phase(&ev),
            Phase::Armed {
                standby: vec!["i-sb".into()],
                spot: vec!["i-r1".into()]
            }
        );
        ev.push(row(
            6,
            "running",
            "on_demand",
            "i-sb",
            "standby active: standby=i-sb interrupted=i-r1",
        ));
        assert!(matches!(phase(&ev), Phase::Active { switch: 2, .. }));
        ev.push(row(7, "terminated", "on_demand", "i-sb", "max lifetime"));
        assert_eq!(phase(&ev), Phase::Idle);
    }

    #[test]
    fn on_demand_jobs_need_no_standby_and_details_name_standbys() {
        let ev = vec![row(1, "running", "on_demand", "i-1", "running")];
        assert_eq!(phase(&ev), Phase::Idle);
        assert_eq!(
            detail_standby_ids("standby ready: standby=i-a,i-b stopped"),
            vec!["i-a", "i-b"]
        );
        assert!(detail_standby_ids("running: standby=i-x").is_empty());
    }
}
