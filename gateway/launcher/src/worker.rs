//! The job consumer and the launch state machine.
//!
//! Contract:
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

/// Header carrying why a job was dead-lettered by the launcher.
pub const DEAD_REASON_HEADER: &str = "capsight-dead-reason";
/// How long in-flight jobs may take to finish after the shutdown fired.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// Header counting the delayed retries of a job.
pub const RETRIES_HEADER: &str = "capsight-retries";

/// Why a job could not be finished now.
#[derive(Debug)]
enum Fail {
    /// Try again later (retry queue).
    Retry(String),
    /// Never processable: dead-letter with this reason.
    Dead(String),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Self::Retry(e.to_string())
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
    amqp: AmqpSettings,
    store: Store,
    catalog: Arc<Catalog>,
    registry: SharedRegistry,
    clouds: Arc<dyn TenantClouds>,
    signals: Publisher,
    /// One GPU-quota decision per tenant at a time.
    quota_gate: KeyedLocks,
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
    if attempt <= 1 {
        job_id.to_owned()
    } else {
        format!("{job_id}-{attempt}")
    }
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

fn with_header(props: &BasicProperties, name: &str, value: AMQPValue) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    headers.insert(ShortString::from(name), value);
    props.clone().with_headers(headers)
}

fn cloud_failure(e: &AccountError) -> (String, String, String, bool) {
    match e {
        AccountError::NoRole(_) => ("permission".into(), "NoRole".into(), e.to_string(), false),
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
            amqp,
            store,
            catalog,
            registry,
            clouds,
            signals,
            quota_gate: KeyedLocks::default(),
        }
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
        let publish = Arc::new(publish);
        let mut consumer = channel
            .basic_consume(
                topology.jobs_queue.as_str().into(),
                "capsight-launcher".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
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
                let span = tracing::info_span!("launch_job", job_id = %job.wire.job_id, tenant = %job.wire.tenant);
                let ids = (job.wire.tenant.clone(), job.wire.job_id.clone());
                self.process(&job)
                    .instrument(span)
                    .await
                    .map_err(|f| (f, Some(ids)))
            }
            Err((reason, ids)) => Err((Fail::Dead(reason), ids)),
        };
        let acked = match outcome {
            Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
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
                    let props = with_header(
                        &delivery.properties,
                        RETRIES_HEADER,
                        AMQPValue::LongLongInt(i64::from(retries) + 1),
                    );
                    let topology = &self.amqp.launch;
                    match confirm_publish(
                        publish,
                        &topology.exchange,
                        &topology.retry_routing_key,
                        &delivery.data,
                        props,
                    )
                    .await
                    {
                        Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "retry publish failed; requeueing the job");
                            delivery
                                .acker
                                .nack(BasicNackOptions {
                                    requeue: true,
                                    ..BasicNackOptions::default()
                                })
                                .await
                        }
                    }
                }
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
        match confirm_publish(
            publish,
            &self.amqp.launch.dead_letter_exchange,
            "",
            &delivery.data,
            props,
        )
        .await
        {
            Ok(()) => delivery.acker.ack(BasicAckOptions::default()).await,
            Err(e) => {
                tracing::warn!(error = %e, "dead-letter publish failed; rejecting to the broker's dead-letter exchange");
                delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: false,
                        ..BasicNackOptions::default()
                    })
                    .await
            }
        }
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
        let tenant = self
            .registry
            .tenant(&tenant_id)
            .ok_or_else(|| format!("tenant {tenant_id} is not in the registry"))?;
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

    /// The latest recorded transition, or a synthesized `queued` row (seq 0, not written) when
    /// the job has none yet.
    async fn latest_or_queued(&self, job: &Job) -> Result<Option<LaunchEventRow>, StoreError> {
        if let Some(row) = self
            .store
            .latest(&job.wire.tenant, &job.wire.job_id)
            .await?
        {
            return Ok(Some(row));
        }
        let (at, at_ms) = split_time(Utc::now());
        let mut row = LaunchEventRow {
            job_id: job.wire.job_id.clone(),
            seq: 0,
            tenant: job.wire.tenant.clone(),
            at,
            at_ms,
            state: LaunchState::Queued,
            provider: String::new(),
            region: String::new(),
            zone_id: String::new(),
            instance_type: String::new(),
            market: String::new(),
            instance_id: String::new(),
            attempt: 0,
            error_class: String::new(),
            error_code: String::new(),
            detail: String::new(),
        };
        set_key(&mut row, &job.spec.key);
        Ok(Some(row))
    }

    fn crash_point(&self, step: &str) {
        if !self.settings.crash_after.is_empty() && self.settings.crash_after == step {
            tracing::warn!(
                step,
                "crash_after failpoint: killing this process with SIGKILL"
            );
            let _ = std::process::Command::new("kill")
                .args(["-9", &std::process::id().to_string()])
                .status();
            std::process::abort();
        }
    }

    async fn append(&self, row: &LaunchEventRow) -> Result<(), Fail> {
        self.store.append(row).await?;
        tracing::info!(seq = row.seq, state = %row.state, attempt = row.attempt, detail = %row.detail, "launch transition");
        Ok(())
    }

    async fn adapter(
        &self,
        job: &Job,
        key: &CapacityKey,
    ) -> Result<Arc<dyn CloudAdapter>, AccountError> {
        match tokio::time::timeout(
            self.settings.cloud_timeout,
            self.clouds.adapter(&job.tenant, &key.region),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(AccountError::Cloud(CloudError::Transport {
                operation: "AssumeRole",
                message: format!("no answer within {:?}", self.settings.cloud_timeout),
            })),
        }
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, CloudError>>,
    ) -> Result<T, CloudError> {
        tokio::time::timeout(self.settings.cloud_timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(CloudError::Transport {
                    operation,
                    message: format!("no answer within {:?}", self.settings.cloud_timeout),
                })
            })
    }

    /// Ends the job in `cancelled` after terminating `instances`.
    async fn cancel(
        &self,
        prev: &LaunchEventRow,
        adapter: Option<&Arc<dyn CloudAdapter>>,
        instances: &[InstanceId],
    ) -> Result<(), Fail> {
        let mut detail = "cancelled on request".to_owned();
        if !instances.is_empty() {
            if let Some(adapter) = adapter {
                self.timed("TerminateInstances", adapter.terminate(instances))
                    .await
                    .map_err(|e| Fail::Retry(format!("terminating after cancel: {e}")))?;
            }
            let ids: Vec<&str> = instances.iter().map(InstanceId::as_str).collect();
            detail = format!("cancelled on request; terminated {}", ids.join(","));
        }
        let mut row = follow_up(prev, LaunchState::Cancelled, detail);
        if !instances.is_empty() {
            row.instance_id = instances
                .iter()
                .map(InstanceId::as_str)
                .collect::<Vec<_>>()
                .join(",");
        }
        if prev.state == LaunchState::Running {
            // the lifecycle and standby tasks write to running jobs too
            self.store.append_next(row).await?;
            return Ok(());
        }
        self.append(&row).await
    }

    /// Drives `job` from its latest recorded state to an outcome.
    async fn process(&self, job: &Job) -> Result<(), Fail> {
        let tenant = job.wire.tenant.as_str();
        let job_id = job.wire.job_id.as_str();
        let Some(mut prev) = self.latest_or_queued(job).await? else {
            return Ok(());
        };
        loop {
            if prev.state.is_terminal() || prev.state == LaunchState::Running {
                tracing::info!(state = %prev.state, "launch job already settled");
                return Ok(());
            }
            let cancelled = self.store.cancel_requested(tenant, job_id).await?;
            match prev.state {
                LaunchState::Queued => {
                    if cancelled {
                        return self.cancel(&prev, None, &[]).await;
                    }
                    let row = follow_up(
                        &prev,
                        LaunchState::Preflight,
                        "checking the tenant's GPU quota",
                    );
                    self.append(&row).await?;
                    self.crash_point("preflight");
                    prev = row;
                }
                LaunchState::Preflight => {
                    if cancelled {
                        return self.cancel(&prev, None, &[]).await;
                    }
                    // one quota decision per tenant at a time in this process: the next job
                    // of the tenant sees this one as live (provisioning) once it passes
                    let _quota_gate = self.quota_gate.lock(tenant.to_owned()).await;
                    let requested = quota::gpus(
                        &self.catalog,
                        job.spec.key.provider.as_str(),
                        job.spec.key.instance_type.as_str(),
                        job.spec.count,
                    );
                    let in_use = quota::in_use(&self.store, &self.catalog, tenant, job_id).await?;
                    if let Some(reason) = quota::exceeded(job.tenant.gpu_quota, in_use, requested) {
                        let mut row = follow_up(&prev, LaunchState::Failed, reason);
                        row.error_class = "quota".into();
                        row.error_code = "TenantGpuQuotaExceeded".into();
                        return self.append(&row).await;
                    }
                    let mut row = follow_up(
                        &prev,
                        LaunchState::Provisioning,
                        format!(
                            "launching {} x {} (attempt 1)",
                            job.spec.count, job.spec.key
                        ),
                    );
                    set_key(&mut row, &job.spec.key);
                    row.attempt = 1;
                    self.append(&row).await?;
                    self.crash_point("provisioning");
                    prev = row;
                }
                LaunchState::Provisioning => match self.provision(job, &prev, cancelled).await? {
                    Some(next) => prev = next,
                    None => return Ok(()),
                },
                // settled: returned above
                LaunchState::Running
                | LaunchState::Terminated
                | LaunchState::Failed
                | LaunchState::Cancelled => return Ok(()),
            }
        }
    }

    /// One provisioning attempt (the one `prev` records). `Ok(Some(row))` = a fallback attempt
    /// was recorded, go on; `Ok(None)` = the job is settled.
    async fn provision(
        &self,
        job: &Job,
        prev: &LaunchEventRow,
        cancelled: bool,
    ) -> Result<Option<LaunchEventRow>, Fail> {
        let attempt = prev.attempt.max(1);
        let key = key_of(prev).ok_or_else(|| {
            Fail::Dead(format!(
                "launch_events holds an invalid key for attempt {attempt}"
            ))
        })?;
        let token = client_token(&job.wire.job_id, attempt);
        let adapter = match self.adapter(job, &key).await {
            Ok(a) => a,
            Err(e) => {
                let (class, code, message, retryable) = cloud_failure(&e);
                if retryable {
                    return Err(Fail::Retry(message));
                }
                let mut row = follow_up(prev, LaunchState::Failed, message);
                row.error_class = class;
                row.error_code = code;
                self.append(&row).await?;
                return Ok(None);
            }
        };
        if cancelled {
            // anything this attempt may have launched before a crash
            let mine = self
                .timed("DescribeInstances", adapter.describe(&[]))
                .await
                .map_err(|e| Fail::Retry(e.to_string()))?
                .into_iter()
                .filter(|i| i.client_token.as_deref() == Some(token.as_str()))
                .filter(|i| {
                    !matches!(
                        i.state,
                        InstanceState::Terminated | InstanceState::ShuttingDown
                    )
                })
                .map(|i| i.id)
                .collect::<Vec<_>>();
            self.cancel(prev, Some(&adapter), &mine).await?;
            return Ok(None);
        }
        let mut request = LaunchRequest::new(
            key.instance_type.clone(),
            key.zone.clone(),
            job.spec.image_id.clone(),
            token.clone(),
        )
        .market(key.market)
        .count(job.spec.count)
        .tag("capsight:job", job.wire.job_id.clone())
        .tag("capsight:tenant", job.wire.tenant.clone());
        if key.zone == job.spec.key.zone {
            request.subnet_id = job.spec.subnet_id.clone();
        }
        if key.market == Market::Spot && job.spec.key.market == Market::Spot {
            request.spot_max_price = job.spec.spot_max_price;
        }
        let started = Instant::now();
        match self.timed("RunInstances", adapter.launch(&request)).await {
            Ok(instances) => {
                self.crash_point("launched");
                self.wait_running(job, prev, &key, &adapter, instances, started)
                    .await
            }
            Err(e) if e.class() == ErrorClass::Capacity => {
                self.signal(job, &key, attempt, Err(&e), None).await;
                self.fall_back(job, prev, &key, &e).await
            }
            Err(e) if e.is_retryable() => Err(Fail::Retry(e.to_string())),
            Err(e) => {
                self.signal(job, &key, attempt, Err(&e), None).await;
                let mut row = follow_up(
                    prev,
                    LaunchState::Failed,
                    format!("attempt {attempt} on {key}: {e}"),
                );
                row.error_class = e.class().as_str().to_owned();
                row.error_code = e.code().unwrap_or_default().to_owned();
                self.append(&row).await?;
                Ok(None)
            }
        }
    }

    async fn wait_running(
        &self,
        job: &Job,
        prev: &LaunchEventRow,
        key: &CapacityKey,
        adapter: &Arc<dyn CloudAdapter>,
        mut instances: Vec<Instance>,
        started: Instant,
    ) -> Result<Option<LaunchEventRow>, Fail> {
        let ids: Vec<InstanceId> = instances.iter().map(|i| i.id.clone()).collect();
        let deadline = Instant::now() + self.settings.provisioning_timeout;
        loop {
            if instances.iter().all(|i| i.state == InstanceState::Running) && !instances.is_empty()
            {
                break;
            }
            if let Some(gone) = instances.iter().find(|i| {
                matches!(
                    i.state,
                    InstanceState::Terminated | InstanceState::ShuttingDown
                )
            }) {
                let mut row = follow_up(
                    prev,
                    LaunchState::Failed,
                    format!(
                        "instance {} ended while provisioning: {}",
                        gone.id,
                        gone.state_reason.clone().unwrap_or_default()
                    ),
                );
                row.error_class = "unknown".into();
                row.error_code = "InstanceTerminated".into();
                self.append(&row).await?;
                return Ok(None);
            }
            if self
                .store
                .cancel_requested(&job.wire.tenant, &job.wire.job_id)
                .await?
            {
                self.cancel(prev, Some(adapter), &ids).await?;
                return Ok(None);
            }
            if Instant::now() >= deadline {
                return Err(Fail::Retry(format!(
                    "instances not running after {:?}",
                    self.settings.provisioning_timeout
                )));
            }
            tokio::time::sleep(self.settings.poll_interval).await;
            instances = self
                .timed("DescribeInstances", adapter.describe(&ids))
                .await
                .map_err(|e| Fail::Retry(e.to_string()))?;
        }
        let ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        self.signal(job, key, prev.attempt.max(1), Ok(()), Some(ms))
            .await;
        let mut joined: Vec<&str> = ids.iter().map(InstanceId::as_str).collect();
        joined.sort_unstable();
        let zone = instances
            .first()
            .and_then(|i| i.zone.as_ref().map(|z| z.as_str().to_owned()))
            .unwrap_or_default();
        let mut row = follow_up(
            prev,
            LaunchState::Running,
            format!(
                "{} instance(s) running in {}",
                ids.len(),
                if zone.is_empty() {
                    key.region.as_str()
                } else {
                    zone.as_str()
                }
            ),
        );
        row.instance_id = joined.join(",");
        if key.zone.is_none() && !zone.is_empty() {
            row.zone_id = zone;
        }
        self.append(&row).await?;
        self.crash_point("running");
        Ok(None)
    }

    async fn fall_back(
        &self,
        job: &Job,
        prev: &LaunchEventRow,
        key: &CapacityKey,
        error: &CloudError,
    ) -> Result<Option<LaunchEventRow>, Fail> {
        let attempt = prev.attempt.max(1);
        let failure = format!(
            "attempt {attempt} on {key}: {} {}",
            error.code().unwrap_or("capacity"),
            error
                .classified()
                .map(|c| c.message.as_str())
                .unwrap_or_default()
        );
        let fallbacks_used = attempt - 1;
        // the alternative is checked against the tenant's GPU quota like the first attempt
        let _quota_gate = self.quota_gate.lock(job.wire.tenant.clone()).await;
        let next = if fallbacks_used < job.wire.max_fallbacks {
            self.next_alternative(job).await?
        } else {
            None
        };
        match next {
            Some((alt, reason)) => {
                let mut row = follow_up(
                    prev,
                    LaunchState::Provisioning,
                    format!(
                        "{failure}; falling back to {alt} ({reason}) (attempt {})",
                        attempt + 1
                    ),
                );
                set_key(&mut row, &alt);
                row.attempt = attempt + 1;
                row.instance_id.clear();
                self.append(&row).await?;
                self.crash_point("provisioning");
                Ok(Some(row))
            }
            None => {
                let why = if job.wire.max_fallbacks == 0 {
                    "no fallbacks allowed".to_owned()
                } else if fallbacks_used >= job.wire.max_fallbacks {
                    format!("all {} fallbacks used", job.wire.max_fallbacks)
                } else {
                    "no alternative left within the job's constraints".to_owned()
                };
                let mut row = follow_up(prev, LaunchState::Failed, format!("{failure}; {why}"));
                row.error_class = ErrorClass::Capacity.as_str().to_owned();
                row.error_code = error.code().unwrap_or_default().to_owned();
                self.append(&row).await?;
                Ok(None)
            }
        }
    }

    /// The best-ranked alternative not tried yet that fits the tenant's GPU quota, with its
    /// reason.
    async fn next_alternative(&self, job: &Job) -> Result<Option<(CapacityKey, String)>, Fail> {
        let room = match job.tenant.gpu_quota {
            Some(quota) => Some(
                quota.saturating_sub(
                    quota::in_use(
                        &self.store,
                        &self.catalog,
                        &job.wire.tenant,
                        &job.wire.job_id,
                    )
                    .await?,
                ),
            ),
            None => None,
        };
        let tried: Vec<CapacityKey> = self
            .store
            .events(&job.wire.tenant, &job.wire.job_id, None)
            .await?
            .iter()
            .filter(|r| r.state == LaunchState::Provisioning)
            .filter_map(key_of)
            .collect();
        let scores = self
            .store
            .latest_scores(self.settings.scores_max_age)
            .await?;
        let mut constraints = job.constraints.clone();
        constraints.limit = usize::MAX;
        let ranked = alternatives::rank(&job.spec, &constraints, &scores, &self.catalog);
        Ok(ranked.into_iter().find_map(|a| {
            let key = CapacityKey::try_from(a.key?).ok()?;
            let gpus = quota::gpus(
                &self.catalog,
                key.provider.as_str(),
                key.instance_type.as_str(),
                job.spec.count,
            );
            (key.market != Market::CapacityBlock
                && !tried.contains(&key)
                && room.is_none_or(|room| gpus <= room))
            .then_some((key, a.reason))
        }))
    }

    /// Publishes the launch-attempt signal of `attempt` (failures are logged: the signal is
    /// evidence, the launch goes on without it).
    async fn signal(
        &self,
        job: &Job,
        key: &CapacityKey,
        attempt: u32,
        result: Result<(), &CloudError>,
        provisioning_ms: Option<u32>,
    ) {
        let (outcome, payload) = match result {
            Ok(()) => (
                "succeeded",
                LaunchAttempt {
                    outcome: LaunchOutcome::Succeeded,
                    error_class: ErrorClass::None,
                    error_code: String::new(),
                    error_message: String::new(),
                    provisioning_ms,
                    hinted_zones: Vec::new(),
                    hinted_regions: Vec::new(),
                    method: ProbeMethod::Launch,
                    count: job.spec.count,
                },
            ),
            Err(e) => (
                "failed",
                LaunchAttempt {
                    outcome: LaunchOutcome::Failed,
                    error_class: match e.class() {
                        ErrorClass::None => ErrorClass::Unknown,
                        c => c,
                    },
                    error_code: e.code().unwrap_or("Unknown").to_owned(),
                    error_message: e
                        .classified()
                        .map(|c| c.message.clone())
                        .unwrap_or_else(|| e.to_string()),
                    provisioning_ms: None,
                    hinted_zones: e.zone_id_hints().to_vec(),
                    hinted_regions: Vec::new(),
                    method: ProbeMethod::Launch,
                    count: job.spec.count,
                },
            ),
        };
        let signal = Signal {
            id: SignalId::derived(
                SignalSource::Launch,
                &[&job.wire.job_id, &attempt.to_string(), outcome],
            ),
            observed_at: Utc::now(),
            source: SignalSource::Launch,
            tenant: job.tenant_hash.clone(),
            key: key.clone(),
            payload: Payload::LaunchAttempt(payload),
        };
        match tokio::time::timeout(self.settings.cloud_timeout, self.signals.publish(&signal)).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "launch-attempt signal not published"),
            Err(_) => {
                tracing::warn!("launch-attempt signal not acknowledged in time; it stays buffered")
            }
        }
    }

    /// Every `cancel_sweep_interval`: running launches with a cancel request are terminated and
    /// recorded `cancelled`.
    async fn sweep_cancels(&self, shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(self.settings.cancel_sweep_interval) => {}
            }
            if let Err(e) = self.sweep_once().await {
                tracing::warn!(error = %e, "cancel sweep failed");
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
                self.clouds.adapter(&tenant, &key.region),
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
