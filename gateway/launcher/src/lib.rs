//! `capsight-launcher`: the launch worker. It consumes launch jobs (`capsight.v1.LaunchJob`, see
//! `proto/capsight/v1/launch_job.proto`) from the RabbitMQ queue `capsight.launch.jobs` and
//! drives each one queued -> preflight -> provisioning -> running, or to failed / cancelled,
//! appending every transition to ClickHouse `launch_events`, where the gateway's
//! GetLaunch/WatchLaunch read it.
//!
//! Contracts:
//! * **At-least-once, idempotent**: a job is acknowledged only after its outcome is durably
//!   recorded. A redelivered job resumes from its latest recorded state, and the cloud launch
//!   of attempt n uses the client token `job_id` (n = 1) or `<job_id>-<n>`, so a replay never
//!   creates a second instance.
//! * **Fallback**: on a capacity error the worker walks the alternatives the job's constraints
//!   allow, ranked at that moment by the gateway's ranking ([`capsight_launch::alternatives`])
//!   over the latest scores, up to `max_fallbacks`. Every attempt is published as a
//!   launch-attempt signal (source `launch`).
//! * **Errors**: transient failures go to the delayed-retry queue (bounded by
//!   `launcher.max_retries`); undecodable or invalid jobs are dead-lettered with the reason in
//!   the `capsight-dead-reason` header; the worker carries on.

pub mod lifecycle;
pub mod metrics;
pub use capsight_launch::locks;
pub mod reconcile;
pub mod settings;
pub mod standby;
pub use capsight_launch::{quota, store};
pub mod usage;
pub mod worker;

pub use settings::{LauncherConfig, LauncherSettings};

use std::{sync::Arc, time::Duration};

use capsight_catalog::Catalog;
use capsight_cloud::tenants::TenantClouds;
use capsight_publisher::Publisher;
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::SharedRegistry;

/// Why the launcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// ClickHouse settings.
    #[error(transparent)]
    ClickHouse(#[from] capsight_clickhouse::ClickHouseError),
    /// The tenant registry.
    #[error(transparent)]
    Registry(#[from] capsight_tenancy::RegistryError),
    /// The tenant-hash secret.
    #[error(transparent)]
    HashSecret(#[from] capsight_tenancy::HashSecretError),
    /// A test failpoint in a release build.
    #[error(transparent)]
    Failpoint(#[from] capsight_runtime::failpoint::FailpointRefused),
    /// The signal publisher.
    #[error(transparent)]
    Publisher(#[from] capsight_publisher::PublishError),
    /// The warm standby's events consumer (could not start, or stalled for good).
    #[error(transparent)]
    Standby(#[from] standby::StandbyError),
    /// The GPU catalog (`--catalog`).
    #[error(transparent)]
    Catalog(#[from] capsight_catalog::CatalogError),
    /// A `[verdict]` value is out of range.
    #[error("invalid {0}")]
    Verdict(#[source] capsight_proto::domain::FieldError),
    /// The health endpoint could not be bound.
    #[error("health endpoint {addr}: {source}")]
    Health {
        /// `launcher.health_listen`.
        addr: std::net::SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
}

/// The process: the GPU catalog (the file at `catalog`, else the embedded one) and the tenants'
/// clouds on AWS (operator credentials from the AWS chain), then [`run`].
pub async fn run_on_aws(
    config: LauncherConfig,
    catalog: Option<&std::path::Path>,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let catalog = Arc::new(Catalog::load_or_embedded(catalog)?);
    let clouds = Arc::new(capsight_cloud::tenants::AwsClouds::from_env(
        config.cloud.clone(),
        Arc::clone(&catalog),
    ));
    run(config, catalog, clouds, shutdown).await
}

/// Publishes, every `settings.interval` until `shutdown`, the accepted jobs the gateway never
/// dispatched ([`capsight_launch::outbox`]).
async fn sweep_outbox(
    store: store::Store,
    amqp: capsight_amqp::AmqpSettings,
    settings: capsight_launch::outbox::OutboxSettings,
    shutdown: Shutdown,
) {
    let queue = capsight_launch::queue::JobPublisher::new(amqp, settings.publish_timeout);
    let outbox = capsight_launch::outbox::Outbox {
        store: &store,
        queue: &queue,
    };
    capsight_runtime::periodic::every(settings.interval, false, &shutdown, || async {
        match outbox.sweep(chrono::Utc::now(), &settings).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "outbox sweep published undispatched jobs"),
            Err(e) => tracing::warn!(error = %e, "outbox sweep failed; retrying next time"),
        }
    })
    .await;
}

/// Builds the worker from `config` and runs it until `shutdown` fires; then flushes the
/// launch-attempt signals.
pub async fn run(
    config: LauncherConfig,
    catalog: Arc<Catalog>,
    clouds: Arc<dyn TenantClouds>,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    capsight_runtime::failpoint::check("launcher.crash_after", &config.launcher.crash_after)?;
    config.verdict.validate().map_err(StartError::Verdict)?;
    let hasher = config.tenancy.hasher()?;
    let store = store::Store::new(config.clickhouse.client()?);
    let registry = SharedRegistry::open(config.tenancy.registry.clone(), Duration::from_secs(5))?;
    let signals = Publisher::new(&config.kafka, &config.publisher, "launcher")?;
    signals.spawn_report(config.publisher.report_interval, shutdown.clone());
    // GPUs per instance type for the GPU-hours views (usage)
    if let Err(e) = usage::sync_catalog(store.client(), &catalog).await {
        tracing::warn!(error = %e, "cannot write instance_gpus; GPU-hours lack new types until the next start");
    }
    let reaper = lifecycle::Reaper::new(
        store.clone(),
        Arc::clone(&clouds),
        registry.clone(),
        config.launcher.lifecycle.clone(),
    );
    let reaper = tokio::spawn(reaper.run(false, shutdown.clone()));
    let reconciler = reconcile::Reconciler::new(
        store.clone(),
        Arc::clone(&clouds),
        registry.clone(),
        config.launcher.reconcile.clone(),
        config.launcher.crash_after.clone(),
    );
    let reconciler = tokio::spawn(reconciler.run(shutdown.clone()));
    let outbox = tokio::spawn(sweep_outbox(
        store.clone(),
        config.amqp.clone(),
        config.launcher.outbox.clone(),
        shutdown.clone(),
    ));
    let standby = standby::Standby::new(
        store.clone(),
        Arc::clone(&clouds),
        registry.clone(),
        config.launcher.standby.clone(),
        hasher,
    );
    let (standby_live, consuming) = standby.start(config.kafka.clone(), shutdown.clone())?;
    let standby = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let consumed = consuming.await;
            if consumed.is_err() {
                // a launcher deaf to interruption warnings must not look healthy: stop it so
                // that its supervisor restarts it (jobs in flight are redelivered)
                shutdown.trigger();
            }
            consumed
        }
    });
    let check: capsight_runtime::health::Check = Arc::new(move || standby_live.check());
    let addr = config.launcher.health_listen;
    capsight_runtime::health::serve(addr, vec![("standby-events", check)], shutdown.clone())
        .await
        .map_err(|source| StartError::Health { addr, source })?;
    let launcher = Arc::new(
        worker::Launcher::new(
            config.launcher.clone(),
            config.amqp.clone(),
            store,
            catalog,
            registry,
            clouds,
            signals.clone(),
        )
        .with_verdict(config.verdict.clone())
        .with_default_gpu_quota(config.tenancy.default_gpu_quota),
    );
    tracing::info!(queue = %config.amqp.launch.jobs_queue, "launcher starting");
    launcher.run(shutdown).await;
    let _ = reaper.await;
    let _ = reconciler.await;
    let _ = outbox.await;
    let standby = standby.await;
    signals.flush(Duration::from_secs(30)).await?;
    if let Ok(Err(e)) = standby {
        tracing::error!(error = %e, "warm standby stopped with an error");
        return Err(e.into());
    }
    Ok(())
}
