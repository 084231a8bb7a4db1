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
//! * One lock serialises the sweep and event handling inside a process. Across replicas the
//!   sweep runs on the leader only, an event on the replica that owns its partition, and a
//!   job's writes go through its lease (`Store::append_next`); the cloud calls are idempotent.
//!
//! Modules: [`phase`] (the typed phase rebuilt from the transitions), [`events`] (matching
//! cloud events to jobs), [`machine`] (the sweep's steps), [`safety`] (missed events and ended
//! jobs).

mod events;
mod machine;
pub mod phase;
mod safety;

pub use phase::{Phase, StandbyStep, detail_standby_ids, phase};

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use capsight_cloud::CloudError;
use capsight_cloud::tenants::TenantClouds;
use capsight_kafka::{
    KafkaSettings,
    liveness::{Liveness, Membership, Watchdog},
};
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::{SharedRegistry, TenantHasher};
use serde::Deserialize;

use crate::{
    lifecycle::LifecycleError,
    store::{Store, StoreError},
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

/// The warm-standby manager.
#[derive(Debug, Clone)]
pub struct Standby {
    store: Store,
    clouds: Arc<dyn TenantClouds>,
    registry: SharedRegistry,
    settings: StandbySettings,
    /// Hashes a job's tenant to compare it with the sender of an instance event.
    hasher: TenantHasher,
    lock: Arc<tokio::sync::Mutex<()>>,
    cleaned: Arc<Mutex<HashSet<String>>>,
    /// The periodic sweep runs only while this replica leads (events are handled by the
    /// replica the consumer group gives their partition to).
    leader: capsight_launch::lease::Leader,
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
    /// A manager over the launcher's store, tenants' clouds and registry; `hasher` (keyed with
    /// `tenancy.hash_secret`, as the intake's) tells which tenant sent an instance event.
    pub fn new(
        store: Store,
        clouds: Arc<dyn TenantClouds>,
        registry: SharedRegistry,
        settings: StandbySettings,
        hasher: TenantHasher,
    ) -> Self {
        Self {
            store,
            clouds,
            registry,
            settings,
            hasher,
            lock: Arc::default(),
            cleaned: Arc::default(),
            leader: capsight_launch::lease::Leader::always(),
        }
    }

    /// Sweeps only while `leader` leads.
    #[must_use]
    pub fn with_leader(mut self, leader: capsight_launch::lease::Leader) -> Self {
        self.leader = leader;
        self
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
}
