//! Cross-process leases on RabbitMQ exclusive queues: what serialises several launcher
//! replicas (a job's writers, a tenant's GPU quota decision, the one replica that runs the
//! sweeps).
//!
//! Contract:
//! * A lease is an exclusive, non-durable queue `<amqp.launch.jobs_queue>.lease.<kind>.<key>`
//!   declared on this process's lease connection. The broker lets one connection own it: a
//!   second declaration from another connection fails with `RESOURCE_LOCKED` (405). Releasing
//!   deletes the queue; a holder that dies (`kill -9`, lost network) loses its connection and
//!   the broker deletes its exclusive queues at once (TCP reset) or after the AMQP heartbeat
//!   timeout, so no lease outlives its holder and none needs a TTL.
//! * Inside one process the same key is serialised by [`KeyedLocks`] first (a connection may
//!   re-declare its own exclusive queue, so the broker alone would not exclude two tasks of one
//!   process).
//! * Fencing: [`Lease::held`] is false once the lease connection is gone; holders check it
//!   before each write, so a replica cut off from the broker stops writing (a write already in
//!   flight when the connection drops can still land; it is the one a successor re-reads).
//! * RabbitMQ is already on the launch path: when it is down, no job is delivered either, so
//!   leases add no new dependency.

use std::{sync::Arc, time::Duration};

use capsight_amqp::{AmqpError, AmqpSettings};
use lapin::{
    Channel, Connection,
    options::{QueueDeclareOptions, QueueDeleteOptions},
    protocol::{AMQPErrorKind, AMQPSoftError},
    types::FieldTable,
};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::locks::{KeyedGuard, KeyedLocks};

/// `[launcher.leases]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LeaseSettings {
    /// How long a task waits for a lease another replica holds (a job's or a tenant's) before
    /// it gives up (the job then waits in the retry queue, not counted as a retry).
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
    /// Pause between two attempts at a lease another replica holds.
    #[serde(with = "humantime_serde")]
    pub retry: Duration,
    /// How often a replica that does not run the sweeps tries to take them over (the
    /// leadership lease), and how often the leader checks it still holds it.
    #[serde(with = "humantime_serde")]
    pub leader_retry: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        Self {
            wait: Duration::from_secs(30),
            retry: Duration::from_millis(200),
            leader_retry: Duration::from_secs(2),
        }
    }
}

/// What a lease protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    /// The writers of one job (key `<tenant>/<job_id>`).
    Job,
    /// One tenant's GPU quota decision (key: the tenant id).
    Quota,
    /// The replica that runs the background sweeps (key `sweeps`).
    Leader,
}

impl LeaseKind {
    /// The name part.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Job => "job",
            Self::Quota => "quota",
            Self::Leader => "leader",
        }
    }
}

/// Why a lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// RabbitMQ unreachable or failing.
    #[error(transparent)]
    Amqp(#[from] AmqpError),
    /// A broker call failed.
    #[error("lease {name}: {source}")]
    Broker {
        /// The lease queue.
        name: String,
        /// The broker error.
        source: lapin::Error,
    },
    /// Another replica held the lease for the whole wait.
    #[error("lease {name} still held by another replica after {waited:?}")]
    Busy {
        /// The lease queue.
        name: String,
        /// How long it was tried.
        waited: Duration,
    },
}

/// The leases of one process (cheap to clone; one AMQP connection, opened on first use and
/// re-opened after it died).
#[derive(Clone)]
pub struct Leases {
    amqp: AmqpSettings,
    settings: LeaseSettings,
    namespace: String,
    connection: Arc<Mutex<Option<Arc<Connection>>>>,
    local: KeyedLocks,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// A held lease; released by [`Lease::release`] or when dropped.
pub struct Lease {
    name: String,
    channel: Option<Channel>,
    connection: Arc<Connection>,
    local: Option<KeyedGuard>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("name", &self.name).finish()
    }
}

impl Leases {
    /// Leases in the namespace of `amqp`'s launch topology.
    pub fn new(amqp: AmqpSettings, settings: LeaseSettings) -> Self {
        Self {
            namespace: format!("{}.lease", amqp.launch.jobs_queue),
            amqp,
            settings,
            connection: Arc::default(),
            local: KeyedLocks::default(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    /// The queue name of the lease `kind`/`key`.
    pub fn name(&self, kind: LeaseKind, key: &str) -> String {
        format!("{}.{}.{key}", self.namespace, kind.as_str())
    }

    async fn connection(&self) -> Result<Arc<Connection>, AmqpError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(self.amqp.connect().await?);
        *slot = Some(Arc::clone(&c));
        Ok(c)
    }

    /// Takes the lease `kind`/`key`, waiting up to `settings.wait` for another replica (or
    /// task) holding it.
    pub async fn acquire(&self, kind: LeaseKind, key: &str) -> Result<Lease, LeaseError> {
        self.acquire_within(kind, key, self.settings.wait).await
    }

    /// [`Leases::acquire`] with its own wait.
    pub async fn acquire_within(
        &self,
        kind: LeaseKind,
        key: &str,
        wait: Duration,
    ) -> Result<Lease, LeaseError> {
        let name = self.name(kind, key);
        let start = tokio::time::Instant::now();
        let deadline = start + wait;
        let busy = |name: String| LeaseError::Busy {
            name,
            waited: start.elapsed(),
        };
        let local = tokio::time::timeout_at(deadline, self.local.lock(name.clone()))
            .await
            .map_err(|_| busy(name.clone()))?;
        let mut local = Some(local);
        loop {
            if let Some(lease) = self.try_declare(&name, &mut local).await? {
                return Ok(lease);
            }
            if tokio::time::Instant::now() + self.settings.retry >= deadline {
                return Err(busy(name));
            }
            tokio::time::sleep(self.settings.retry).await;
        }
    }

    /// Takes the lease `kind`/`key` when nobody holds it; `None` when another replica does.
    pub async fn try_acquire(
        &self,
        kind: LeaseKind,
        key: &str,
    ) -> Result<Option<Lease>, LeaseError> {
        let name = self.name(kind, key);
        let mut local = Some(self.local.lock(name.clone()).await);
        self.try_declare(&name, &mut local).await
    }

    /// One declaration of the exclusive queue `name`; `local` moves into the lease on success.
    async fn try_declare(
        &self,
        name: &str,
        local: &mut Option<KeyedGuard>,
    ) -> Result<Option<Lease>, LeaseError> {
        let broker = |source| LeaseError::Broker {
            name: name.to_owned(),
            source,
        };
        let timeout = self.amqp.connect_timeout;
        let start = std::time::Instant::now();
        let attempt = async {
            let connection = self.connection().await?;
            let channel = connection.create_channel().await.map_err(broker)?;
            let declared = channel
                .queue_declare(
                    name.into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: false,
                        durable: false,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await;
            match declared {
                Ok(_) => Ok(Some(Lease {
                    name: name.to_owned(),
                    channel: Some(channel),
                    connection,
                    local: None,
                })),
                Err(e) if is_locked(&e) => Ok(None),
                Err(e) => Err(broker(e)),
            }
        };
        let result = tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(LeaseError::Amqp(AmqpError::Timeout {
                    op: format!("lease {name}"),
                    timeout,
                }))
            });
        let failed = result.is_err().then_some("lease");
        capsight_runtime::metrics::dependency_call("rabbitmq", "lease", start, failed);
        Ok(result?.map(|mut lease| {
            lease.local = local.take();
            lease
        }))
    }
}

/// Whether the broker refused a declaration because another connection owns the queue.
fn is_locked(e: &lapin::Error) -> bool {
    matches!(
        e.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED))
    )
}

/// A view of a lease that tells whether it is still held (cheap to clone, for the writers).
#[derive(Clone)]
pub struct Fence(Arc<Connection>);

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Fence").field(&self.held()).finish()
    }
}

impl Fence {
    /// Whether the lease is still held.
    pub fn held(&self) -> bool {
        self.0.status().connected()
    }
}

impl Lease {
    /// Whether this process still holds the lease (its connection to the broker is up).
    pub fn held(&self) -> bool {
        self.connection.status().connected()
    }

    /// The fence of this lease.
    pub fn fence(&self) -> Fence {
        Fence(Arc::clone(&self.connection))
    }

    /// The lease's queue name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Releases the lease (deletes its queue) and waits for the broker.
    pub async fn release(mut self) {
        if let Some(channel) = self.channel.take() {
            delete(&self.name, channel).await;
        }
        self.local = None;
    }
}

async fn delete(name: &str, channel: Channel) {
    let deleted = tokio::time::timeout(
        Duration::from_secs(10),
        channel.queue_delete(name.into(), QueueDeleteOptions::default()),
    )
    .await;
    if !matches!(deleted, Ok(Ok(_))) {
        // the queue stays until the connection closes; nobody else can take it meanwhile
        tracing::warn!(
            lease = name,
            "could not release a lease; it ends with the connection"
        );
    }
    let _ = channel.close(200, "released".into()).await;
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(channel) = self.channel.take() else {
            return;
        };
        // released in the background; the local guard goes with it so that no task of this
        // process takes the key before the queue is gone
        let name = std::mem::take(&mut self.name);
        let local = self.local.take();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                delete(&name, channel).await;
                drop(local);
            });
        }
    }
}

/// Whether this replica runs the background sweeps (reaper, reconciler, outbox, cancel and
/// standby sweeps): the holder of the leadership lease. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Leader {
    is: Arc<std::sync::atomic::AtomicBool>,
}

impl Leader {
    /// Always the leader (one process, tests).
    pub fn always() -> Self {
        Self {
            is: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    /// Whether this replica runs the sweeps now.
    pub fn is_leader(&self) -> bool {
        self.is.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Competes for the leadership lease until `shutdown`: every `leader_retry` a follower
    /// tries to take it, the leader checks it still holds it. Released at shutdown.
    pub fn campaign(
        leases: Leases,
        shutdown: capsight_runtime::shutdown::Shutdown,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let me = Self {
            is: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        };
        let flag = Arc::clone(&me.is);
        let task = tokio::spawn(async move {
            let mut held: Option<Lease> = None;
            let every = leases.settings.leader_retry;
            loop {
                if held.as_ref().is_some_and(|l| !l.held()) {
                    tracing::warn!("leadership lost with the broker connection; sweeps pause");
                    held = None;
                }
                if held.is_none() {
                    match leases.try_acquire(LeaseKind::Leader, "sweeps").await {
                        Ok(Some(lease)) => {
                            tracing::info!(lease = lease.name(), "this replica runs the sweeps");
                            held = Some(lease);
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot compete for leadership"),
                    }
                }
                flag.store(held.is_some(), std::sync::atomic::Ordering::SeqCst);
                tokio::select! {
                    () = shutdown.wait() => break,
                    () = tokio::time::sleep(every) => {}
                }
            }
            flag.store(false, std::sync::atomic::Ordering::SeqCst);
            if let Some(lease) = held {
                lease.release().await;
            }
        });
        (me, task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_namespaced_by_the_topology() {
        let mut amqp = AmqpSettings::default();
        amqp.launch = amqp.launch.prefixed("t1");
        let leases = Leases::new(amqp, LeaseSettings::default());
        assert_eq!(
            leases.name(LeaseKind::Job, "acme/j1"),
            "t1.capsight.launch.jobs.lease.job.acme/j1"
        );
        assert_eq!(
            leases.name(LeaseKind::Leader, "sweeps"),
            "t1.capsight.launch.jobs.lease.leader.sweeps"
        );
    }

    #[test]
    fn a_leader_for_tests_always_leads() {
        assert!(Leader::always().is_leader());
    }
}
