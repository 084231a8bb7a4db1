//! The job consumer and the launch state machine.
//!
//! Contract:
//! * Fair share: one tenant holds at most `launcher.tenant_share` of this process's workers; a
//!   job of a tenant at its share goes through the retry queue (not counted as a retry).
//! * [`Launcher::run`] consumes `amqp.launch.jobs_queue` with manual acks and a prefetch of
//!   `launcher.prefetch` (jobs handled concurrently), reconnecting after broker failures until
//!   the shutdown fires; in-flight jobs get 10 s to finish, then are abandoned unacknowledged
//!   (redelivered, and resumed by the next worker). A lost connection abandons in-flight jobs
//!   the same way at once.
//! * A job is acknowledged only after its outcome is recorded in `launch_events` (`running`,
//!   `failed`, `cancelled`), after it was re-published to the retry queue (confirmed), or after
//!   it was dead-lettered (confirmed). Anything else (crash, lost connection) leaves it unacked,
//!   so the broker redelivers it and [`Launcher::process`] resumes from the latest recorded
//!   state.
//! * Steps: `queued` -> `preflight` (tenant GPU quota) -> `provisioning` (attempt n on key k,
//!   client token `job_id` or `<job_id>-<n>`) -> wait until the instances run -> `running`.
//!   A cancel request is checked before each transition and while waiting; it ends the job in
//!   `cancelled`, terminating what was launched. Running launches are swept for cancel requests
//!   every `launcher.cancel_sweep_interval`.
//! * Capacity errors fall back to the next alternative (gateway ranking over the latest scores,
//!   keys not yet tried, never capacity blocks) up to `max_fallbacks`; throttled and transient
//!   errors are retried through the retry queue, at most `launcher.max_retries` times; other
//!   cloud errors (quota, permission, ...) fail the job with the cloud's class and code.
//! * ClickHouse (the launch store) unavailable: the job goes through the retry queue without
//!   counting a retry (header `capsight-store-waits`), however long the outage lasts.
//! * Poison (undecodable or invalid job) is published to the dead-letter exchange with the
//!   reason in the `capsight-dead-reason` header, then acknowledged.

use std::{sync::Arc, time::Instant};

use capsight_amqp::AmqpSettings;
use capsight_catalog::Catalog;
use capsight_clickhouse::rows::{LaunchEventRow, split_time};
use capsight_cloud::tenants::{AccountError, TenantClouds};
use capsight_cloud::{
    CloudAdapter, CloudError, Instance, InstanceId, InstanceState, LaunchRequest,
};
use capsight_launch::{
    alternatives,
    spec::{self as validate, Constraints, Spec},
};
use capsight_proto::{
    domain::{
        CapacityKey, ErrorClass, LaunchAttempt, LaunchOutcome, LaunchState, Market, Payload,
        ProbeMethod, Signal, SignalId, SignalSource, TenantHash,
    },
    v1,
};
use capsight_publisher::Publisher;
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::{SharedRegistry, Tenant, TenantId};
use chrono::Utc;
use futures::StreamExt;
use lapin::{
    BasicProperties, Channel,
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions,
        BasicQosOptions, ConfirmSelectOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
};
use prost::Message;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::{
    locks::KeyedLocks,
    quota,
    settings::LauncherSettings,
    store::{Store, StoreError, follow_up, split_ids},
};

mod cancels;
mod machine;

/// Header carrying why a job was dead-lettered by the launcher.
pub const DEAD_REASON_HEADER: &str = "capsight-dead-reason";
/// How long in-flight jobs may take to finish after the shutdown fired.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// Header counting the delayed retries of a job.
pub const RETRIES_HEADER: &str = "capsight-retries";
/// Header counting how often a job waited because its tenant was at its share.
pub const DEFERRALS_HEADER: &str = "capsight-deferrals";
/// Header counting how often a job waited because ClickHouse was unavailable.
pub const STORE_WAITS_HEADER: &str = "capsight-store-waits";

/// Why a job could not be finished now.
#[derive(Debug)]
enum Fail {
    /// Try again later (retry queue), counted against `launcher.max_retries`.
    Retry(String),
    /// capsight's own store is unavailable: try again later (retry queue) without counting a
    /// retry, so a ClickHouse outage of any length never fails (or loses) a job.
    Unavailable(String),
    /// Never processable: dead-letter with this reason.
    Dead(String),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// What the worker's consumer loop ended with.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// RabbitMQ failed; the loop reconnects.
    #[error(transparent)]
    Amqp(#[from] capsight_amqp::AmqpError),
    /// A lapin call failed.
    #[error("amqp: {0}")]
    Lapin(#[from] lapin::Error),
    /// The consumer was cancelled by the broker.
    #[error("the broker closed the consumer")]
    ConsumerClosed,
}

/// A validated job.
#[derive(Debug)]
struct Job {
    wire: v1::LaunchJob,
    spec: Spec,
    constraints: Constraints,
    tenant: Tenant,
    tenant_hash: Option<TenantHash>,
}

/// Everything a worker shares.
pub struct Launcher {
    settings: LauncherSettings,
    /// How stored scores are served (aged) before a fallback is ranked.
    verdict: capsight_proto::domain::VerdictPolicy,
    amqp: AmqpSettings,
    store: Store,
    catalog: Arc<Catalog>,
    registry: SharedRegistry,
    clouds: Arc<dyn TenantClouds>,
    signals: Publisher,
    /// One GPU-quota decision per tenant at a time (in this process without leases).
    quota_gate: KeyedLocks,
    /// Cross-replica leases: a job's, a tenant's quota decision (`None`: one process).
    leases: Option<capsight_launch::lease::Leases>,
    /// Whether this replica runs the cancel sweep.
    leader: capsight_launch::lease::Leader,
    /// `tenancy.default_gpu_quota`: the quota of a tenant without one of its own (0 = none).
    default_gpu_quota: u32,
    /// Jobs in progress here, per tenant (`launcher.tenant_share`).
    shares: Arc<TenantShares>,
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launcher")
            .field("queue", &self.amqp.launch.jobs_queue)
            .finish_non_exhaustive()
    }
}

fn key_of(row: &LaunchEventRow) -> Option<CapacityKey> {
    let market = Market::parse("market", &row.market).ok()?;
    CapacityKey::parse(
        &row.provider,
        &row.region,
        &row.zone_id,
        &row.instance_type,
        market,
    )
    .ok()
}

fn set_key(row: &mut LaunchEventRow, key: &CapacityKey) {
    row.provider = key.provider.as_str().to_owned();
    row.region = key.region.as_str().to_owned();
    row.zone_id = key.zone_str().to_owned();
    row.instance_type = key.instance_type.as_str().to_owned();
    row.market = key.market.as_str().to_owned();
}

/// The client token of attempt `n` of `job_id`.
pub fn client_token(job_id: &str, attempt: u32) -> String {
    capsight_launch::ids::attempt_token(job_id, attempt)
}

fn header_u32(props: &BasicProperties, name: &str) -> u32 {
    let Some(headers) = props.headers() else {
        return 0;
    };
    match headers.inner().get(name) {
        Some(AMQPValue::LongLongInt(v)) => u32::try_from(*v).unwrap_or(0),
        Some(AMQPValue::LongInt(v)) => u32::try_from(*v).unwrap_or(0),
        Some(AMQPValue::LongUInt(v)) => *v,
        Some(AMQPValue::ShortInt(v)) => u32::try_from(*v).unwrap_or(0),
        Some(AMQPValue::ShortUInt(v)) => u32::from(*v),
        _ => 0,
    }
}

/// The W3C trace context (`traceparent`, `tracestate`) a job's headers carry.
fn trace_headers(props: &BasicProperties) -> std::collections::HashMap<String, String> {
    let Some(headers) = props.headers() else {
        return std::collections::HashMap::new();
    };
    ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|name| {
            let value = match headers.inner().get(name)? {
                AMQPValue::LongString(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
                AMQPValue::ShortString(v) => v.as_str().to_owned(),
                _ => return None,
            };
            Some((name.to_owned(), value))
        })
        .collect()
}

fn with_header(props: &BasicProperties, name: &str, value: AMQPValue) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    headers.insert(ShortString::from(name), value);
    props.clone().with_headers(headers)
}

fn cloud_failure(e: &AccountError) -> (String, String, String, bool) {
    match e {
        AccountError::NoRole(_) => ("permission".into(), "NoRole".into(), e.to_string(), false),
        AccountError::NoAccount { .. } => (
            "permission".into(),
            "NoAccount".into(),
            e.to_string(),
            false,
        ),
        AccountError::Cloud(c) => (
            c.class().as_str().to_owned(),
            c.code().unwrap_or_default().to_owned(),
            c.to_string(),
            c.is_retryable(),
        ),
    }
}

impl Launcher {
    /// A launcher over its collaborators.
    pub fn new(
        settings: LauncherSettings,
        amqp: AmqpSettings,
        store: Store,
        catalog: Arc<Catalog>,
        registry: SharedRegistry,
        clouds: Arc<dyn TenantClouds>,
        signals: Publisher,
    ) -> Self {
        Self {
            settings,
            verdict: capsight_proto::domain::VerdictPolicy::default(),
            amqp,
            store,
            catalog,
            registry,
            clouds,
            signals,
            quota_gate: KeyedLocks::default(),
            leases: None,
            leader: capsight_launch::lease::Leader::always(),
            default_gpu_quota: capsight_tenancy::TenancySettings::default().default_gpu_quota,
            shares: Arc::default(),
        }
    }

    /// Gives tenants without a GPU quota of their own `quota` GPUs (0 = no quota; default:
    /// the `[tenancy]` default).
    #[must_use]
    pub fn with_default_gpu_quota(mut self, quota: u32) -> Self {
        self.default_gpu_quota = quota;
        self
    }

    /// Serialises a job's handling and a tenant's quota decision across launcher replicas with
    /// `leases`; the cancel sweep runs only while `leader` leads.
    #[must_use]
    pub fn with_leases(
        mut self,
        leases: capsight_launch::lease::Leases,
        leader: capsight_launch::lease::Leader,
    ) -> Self {
        self.leases = Some(leases);
        self.leader = leader;
        self
    }

    /// Ages stored scores under `verdict` (default: the `[verdict]` defaults).
    #[must_use]
    pub fn with_verdict(mut self, verdict: capsight_proto::domain::VerdictPolicy) -> Self {
        self.verdict = verdict;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Consumes jobs until `shutdown` fires, reconnecting after broker failures; runs the
    /// cancel sweep alongside.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        let sweeper = {
            let me = Arc::clone(&self);
            let shutdown = shutdown.clone();
            tokio::spawn(async move { me.sweep_cancels(shutdown).await })
        };
        while !shutdown.is_triggered() {
            match Arc::clone(&self).consume(&shutdown).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, delay = ?self.settings.reconnect_delay, "job consumer stopped; reconnecting");
                    tokio::select! {
                        () = shutdown.wait() => break,
                        () = tokio::time::sleep(self.settings.reconnect_delay) => {}
                    }
                }
            }
        }
        sweeper.abort();
        let _ = sweeper.await;
        tracing::info!("launcher stopped");
    }

    async fn consume(self: Arc<Self>, shutdown: &Shutdown) -> Result<(), WorkerError> {
        let topology = &self.amqp.launch;
        // connecting, declaring and subscribing: the `consume` call of the rabbitmq dependency
        let start = std::time::Instant::now();
        let subscribed = async {
            let conn = self.amqp.connect().await?;
            let channel = conn.create_channel().await?;
            topology.declare(&channel).await?;
            channel
                .basic_qos(self.settings.prefetch, BasicQosOptions::default())
                .await?;
            let publish = conn.create_channel().await?;
            publish
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            let consumer = channel
                .basic_consume(
                    topology.jobs_queue.as_str().into(),
                    "capsight-launcher".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, WorkerError>((conn, publish, consumer))
        }
        .await;
        capsight_runtime::metrics::dependency_call(
            "rabbitmq",
            "consume",
            start,
            subscribed.is_err().then_some("consume"),
        );
        let (conn, publish, mut consumer) = subscribed?;
        let publish = Arc::new(publish);
        tracing::info!(queue = %topology.jobs_queue, prefetch = self.settings.prefetch, "consuming launch jobs");
        let mut tasks = JoinSet::new();
        let result = loop {
            tokio::select! {
                () = shutdown.wait() => {
                    // jobs still in flight after the grace period are abandoned unacked: the
                    // broker redelivers them and the next worker resumes from their state
                    let grace = tokio::time::sleep(SHUTDOWN_GRACE);
                    tokio::pin!(grace);
                    loop {
                        tokio::select! {
                            () = &mut grace => {
                                tracing::warn!(jobs = tasks.len(), "abandoning in-flight jobs at shutdown; they will be redelivered");
                                tasks.abort_all();
                                break;
                            }
                            next = tasks.join_next() => if next.is_none() { break },
                        }
                    }
                    break Ok(());
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        let me = Arc::clone(&self);
                        let publish = Arc::clone(&publish);
                        tasks.spawn(async move { me.handle(delivery, &publish).await });
                    }
                    Some(Err(e)) => break Err(WorkerError::Lapin(e)),
                    None => break Err(WorkerError::ConsumerClosed),
                },
            }
        };
        if result.is_err() && !tasks.is_empty() {
            // their deliveries died with the channel: the broker redelivers them, and the next
            // consumer resumes each from its recorded state (finishing them here could not ack)
            tracing::warn!(
                jobs = tasks.len(),
                "connection lost; in-flight jobs resume after reconnecting"
            );
            tasks.abort_all();
        }
        while tasks.join_next().await.is_some() {}
        let _ = conn.close(200, "bye".into()).await;
        result
    }

    async fn handle(&self, delivery: Delivery, publish: &Channel) {
        let retries = header_u32(&delivery.properties, RETRIES_HEADER);
        let outcome = match self.decode(&delivery.data) {
            Ok(job) => {
                let Some(_slot) =
                    TenantShares::take(&self.shares, &job.wire.tenant, self.settings.tenant_share)
                else {
                    self.defer(&delivery, publish, &job).await;
                    return;
                };
                // one replica at a time handles a job (a job published twice, by the outbox
                // sweep and a late gateway, may be delivered to two replicas at once)
                let lease = match self.job_lease(&job).await {
                    Ok(lease) => lease,
                    Err(e) => {
                        tracing::info!(job_id = %job.wire.job_id, error = %e, "job lease not taken; the job waits in the retry queue");
                        self.defer(&delivery, publish, &job).await;
                        return;
                    }
                };
                let fence = lease.as_ref().map(capsight_launch::lease::Lease::fence);
                let span = tracing::info_span!(
                    "launch_job",
                    otel.kind = "consumer",
                    messaging.system = "rabbitmq",
                    job_id = %job.wire.job_id,
                    tenant = %job.wire.tenant,
                );
                // the gateway's trace continues here (its amqp.publish span is the parent)
                capsight_runtime::telemetry::extract(&span, &trace_headers(&delivery.properties));
                let ids = (job.wire.tenant.clone(), job.wire.job_id.clone());
                let processed = FENCE
                    .scope(fence, self.process(&job).instrument(span))
                    .await
                    .map_err(|f| (f, Some(ids)));
                (processed, lease)
            }
            Err((reason, ids)) => (Err((Fail::Dead(reason), ids)), None),
        };
        // the lease is held until the job is settled (failure recorded, acked or forwarded)
        let (outcome, lease) = outcome;
        let acked = match outcome {
            Ok(()) => timed_ack(delivery.acker.ack(BasicAckOptions::default())).await,
            Err((Fail::Retry(reason), job)) => {
                if retries >= self.settings.max_retries {
                    let reason = format!("gave up after {retries} retries: {reason}");
                    if let Some((tenant, job_id)) = &job {
                        self.record_failed(
                            tenant,
                            job_id,
                            "transient",
                            "RetriesExhausted",
                            &reason,
                        )
                        .await;
                    }
                    self.dead_letter(&delivery, publish, &reason).await
                } else {
                    tracing::warn!(retries, %reason, "launch job will be retried");
                    self.via_retry_queue(&delivery, publish, RETRIES_HEADER, retries)
                        .await
                }
            }
            Err((Fail::Unavailable(reason), _)) => {
                let waits = header_u32(&delivery.properties, STORE_WAITS_HEADER);
                tracing::warn!(waits, %reason, "the launch store is unavailable; the job waits in the retry queue");
                self.via_retry_queue(&delivery, publish, STORE_WAITS_HEADER, waits)
                    .await
            }
            Err((Fail::Dead(reason), job)) => {
                if let Some((tenant, job_id)) = &job {
                    self.record_failed(tenant, job_id, "unknown", "InvalidJob", &reason)
                        .await;
                }
                self.dead_letter(&delivery, publish, &reason).await
            }
        };
        if let Err(e) = acked {
            tracing::warn!(error = %e, "could not settle a launch job; the broker will redeliver it");
        }
        if let Some(lease) = lease {
            lease.release().await;
        }
    }

    /// The job's lease across replicas (`None` without leases).
    async fn job_lease(
        &self,
        job: &Job,
    ) -> Result<Option<capsight_launch::lease::Lease>, capsight_launch::lease::LeaseError> {
        let Some(leases) = &self.leases else {
            return Ok(None);
        };
        let key = format!("{}/{}", job.wire.tenant, job.wire.job_id);
        leases
            .acquire(capsight_launch::lease::LeaseKind::Job, &key)
            .await
            .map(Some)
    }

    /// The tenant's GPU quota decision gate: its lease across replicas, else an in-process
    /// lock. Held until the decision is recorded (the next job of the tenant, on any replica,
    /// then counts this one).
    async fn quota_gate(&self, tenant: &str) -> Result<QuotaGate, Fail> {
        match &self.leases {
            None => Ok(QuotaGate::Local(
                self.quota_gate.lock(tenant.to_owned()).await,
            )),
            Some(leases) => leases
                .acquire(capsight_launch::lease::LeaseKind::Quota, tenant)
                .await
                .map(QuotaGate::Lease)
                .map_err(|e| Fail::Unavailable(e.to_string())),
        }
    }

    /// Sends a job of a tenant already at its share of this launcher through the retry queue
    /// (back after `retry_delay`), without counting a retry.
    async fn defer(&self, delivery: &Delivery, publish: &Channel, job: &Job) {
        let deferrals = header_u32(&delivery.properties, DEFERRALS_HEADER);
        tracing::info!(
            job_id = %job.wire.job_id,
            tenant = %job.wire.tenant,
            deferrals,
            share = self.settings.tenant_share,
            "tenant at its share of this launcher; the job waits in the retry queue"
        );
        let deferred = self
            .via_retry_queue(delivery, publish, DEFERRALS_HEADER, deferrals)
            .await;
        if let Err(e) = deferred {
            tracing::warn!(error = %e, "could not defer a launch job; the broker will redeliver it");
        }
    }

    /// Settles `delivery` by sending it through the retry queue (back after `retry_delay`),
    /// its counter `header` (now `count`) incremented.
    async fn via_retry_queue(
        &self,
        delivery: &Delivery,
        publish: &Channel,
        header: &str,
        count: u32,
    ) -> Result<bool, lapin::Error> {
        let props = with_header(
            &delivery.properties,
            header,
            AMQPValue::LongLongInt(i64::from(count) + 1),
        );
        let topology = &self.amqp.launch;
        let to = (&topology.exchange[..], &topology.retry_routing_key[..]);
        settle_by_forwarding(delivery, publish, to, props, true).await
    }

    async fn dead_letter(
        &self,
        delivery: &Delivery,
        publish: &Channel,
        reason: &str,
    ) -> Result<bool, lapin::Error> {
        tracing::error!(%reason, "dead-lettering a launch job");
        let props = with_header(
            &delivery.properties,
            DEAD_REASON_HEADER,
            AMQPValue::LongString(reason.into()),
        );
        let to = (&self.amqp.launch.dead_letter_exchange[..], "");
        settle_by_forwarding(delivery, publish, to, props, false).await
    }

    /// Records `failed` after the job's latest transition (when it has one and is not settled).
    async fn record_failed(
        &self,
        tenant: &str,
        job_id: &str,
        class: &str,
        code: &str,
        reason: &str,
    ) {
        let result = async {
            let Some(prev) = self.store.latest(tenant, job_id).await? else {
                return Ok(());
            };
            if prev.state.is_terminal() {
                return Ok(());
            }
            let mut row = follow_up(&prev, LaunchState::Failed, reason);
            row.error_class = class.to_owned();
            row.error_code = code.to_owned();
            self.store.append(&row).await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, job_id, "cannot record the job's failure");
        }
    }

    /// Decodes and validates a job; `Err` is the dead-letter reason, with the job's (tenant,
    /// job id) when they could be read.
    fn decode(&self, body: &[u8]) -> Result<Job, (String, Option<(String, String)>)> {
        let wire = v1::LaunchJob::decode(body)
            .map_err(|e| (format!("undecodable LaunchJob: {e}"), None))?;
        if uuid::Uuid::parse_str(&wire.job_id).is_err() {
            return Err((format!("job_id {:?} is not a UUID", wire.job_id), None));
        }
        let ids = Some((wire.tenant.clone(), wire.job_id.clone()));
        self.validate(wire).map_err(|reason| (reason, ids))
    }

    fn validate(&self, wire: v1::LaunchJob) -> Result<Job, String> {
        let tenant_id = TenantId::parse(&wire.tenant)
            .map_err(|e| format!("tenant {:?} is invalid: {e}", wire.tenant))?;
        let mut tenant = self
            .registry
            .tenant(&tenant_id)
            .ok_or_else(|| format!("tenant {tenant_id} is not in the registry"))?;
        // a tenant without a quota of its own gets the default one
        tenant.gpu_quota = tenant.gpu_quota_or(self.default_gpu_quota);
        let spec = validate::spec("spec", wire.spec.clone(), &self.catalog, 1000, true)
            .map_err(|e| format!("invalid job: {e}"))?;
        let constraints = validate::constraints("constraints", wire.constraints.clone(), &spec)
            .map_err(|e| format!("invalid job: {e}"))?;
        let tenant_hash = TenantHash::parse("tenant_hash", &wire.tenant_hash).ok();
        Ok(Job {
            wire,
            spec,
            constraints,
            tenant,
            tenant_hash,
        })
    }
}

tokio::task_local! {
    /// The lease of the job the current task handles; writes stop once it is lost.
    static FENCE: Option<capsight_launch::lease::Fence>;
}

/// Whether the current task may still write its job (true outside a leased job).
fn fence_held() -> bool {
    FENCE
        .try_with(|f| f.as_ref().is_none_or(capsight_launch::lease::Fence::held))
        .unwrap_or(true)
}

/// A held tenant quota gate (dropping it releases it).
#[derive(Debug)]
#[allow(dead_code, reason = "held for its drop")]
enum QuotaGate {
    /// In-process lock.
    Local(capsight_launch::locks::KeyedGuard),
    /// Cross-replica lease.
    Lease(capsight_launch::lease::Lease),
}

/// Jobs in progress in this process per tenant: a tenant gets at most its share of the
/// workers (`launcher.tenant_share`).
#[derive(Debug, Default)]
struct TenantShares(std::sync::Mutex<std::collections::HashMap<String, u16>>);

/// One of a tenant's slots, given back when dropped.
struct ShareSlot {
    shares: Arc<TenantShares>,
    tenant: String,
}

impl TenantShares {
    /// A slot for `tenant` when it holds fewer than `share` (0 = no limit).
    fn take(shares: &Arc<Self>, tenant: &str, share: u16) -> Option<ShareSlot> {
        let mut held = shares
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = held.entry(tenant.to_owned()).or_default();
        if share > 0 && *n >= share {
            return None;
        }
        *n += 1;
        Some(ShareSlot {
            shares: Arc::clone(shares),
            tenant: tenant.to_owned(),
        })
    }
}

impl Drop for ShareSlot {
    fn drop(&mut self) {
        let mut held = self
            .shares
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.tenant);
            }
        }
    }
}

/// Settles `delivery` by publishing a copy with `props` to `(exchange, routing key)`: acked
/// once the broker confirmed the copy, else nacked — requeued (`requeue`, a retry) or
/// rejected to the broker's dead-letter exchange.
async fn settle_by_forwarding(
    delivery: &Delivery,
    publish: &Channel,
    (exchange, routing_key): (&str, &str),
    props: BasicProperties,
    requeue: bool,
) -> Result<bool, lapin::Error> {
    let start = std::time::Instant::now();
    let forwarded = confirm_publish(publish, exchange, routing_key, &delivery.data, props).await;
    let failed = forwarded.is_err().then_some("publish");
    capsight_runtime::metrics::dependency_call("rabbitmq", "publish", start, failed);
    match forwarded {
        Ok(()) => timed_ack(delivery.acker.ack(BasicAckOptions::default())).await,
        Err(e) => {
            if requeue {
                tracing::warn!(error = %e, "retry publish failed; requeueing the job");
            } else {
                tracing::warn!(error = %e, "dead-letter publish failed; rejecting to the broker's dead-letter exchange");
            }
            timed_ack(delivery.acker.nack(BasicNackOptions {
                requeue,
                ..BasicNackOptions::default()
            }))
            .await
        }
    }
}

/// Settles a delivery (ack or nack), timed as the `ack` call of the rabbitmq dependency.
async fn timed_ack(
    settle: impl std::future::Future<Output = Result<bool, lapin::Error>>,
) -> Result<bool, lapin::Error> {
    let start = std::time::Instant::now();
    let settled = settle.await;
    let failed = settled.is_err().then_some("ack");
    capsight_runtime::metrics::dependency_call("rabbitmq", "ack", start, failed);
    settled
}

async fn confirm_publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    props: BasicProperties,
) -> Result<(), String> {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            body,
            props,
        )
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    if !confirm.is_ack() {
        return Err("the broker nacked the message".into());
    }
    if confirm.take_message().is_some() {
        return Err(format!(
            "no queue is bound to {exchange:?} for {routing_key:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_holds_at_most_its_share_and_dropped_slots_return() {
        let shares = Arc::new(TenantShares::default());
        let a1 = TenantShares::take(&shares, "a", 2).unwrap();
        let _a2 = TenantShares::take(&shares, "a", 2).unwrap();
        assert!(TenantShares::take(&shares, "a", 2).is_none());
        let _b = TenantShares::take(&shares, "b", 2).unwrap();
        drop(a1);
        assert!(TenantShares::take(&shares, "a", 2).is_some());
        // 0: no limit
        let held: Vec<_> = (0..10)
            .filter_map(|_| TenantShares::take(&shares, "c", 0))
            .collect();
        assert_eq!(held.len(), 10);
    }

    #[test]
    fn client_tokens_per_attempt() {
        assert_eq!(client_token("j", 0), "j");
        assert_eq!(client_token("j", 1), "j");
        assert_eq!(client_token("j", 3), "j-3");
    }

    #[test]
    fn retry_header_round_trip() {
        let props = BasicProperties::default();
        assert_eq!(header_u32(&props, RETRIES_HEADER), 0);
        let props = with_header(&props, RETRIES_HEADER, AMQPValue::LongLongInt(3));
        assert_eq!(header_u32(&props, RETRIES_HEADER), 3);
    }
}
