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
//! * **Several replicas**: a job is handled under its lease, a tenant's GPU quota decided
//!   under the tenant's, both RabbitMQ exclusive queues released when the holder's connection
//!   dies ([`capsight_launch::lease`]); the sweeps (reaper, reconciler, outbox, cancel,
//!   standby) run on one replica, the holder of the leadership lease.
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
    let clouds = capsight_cloud::tenants::every_provider_from_env(&config.providers, &catalog);
    run(config, catalog, clouds, shutdown).await
}

/// Publishes, every `settings.interval` until `shutdown` while this replica leads, the accepted jobs the gateway never
/// dispatched ([`capsight_launch::outbox`]).
async fn sweep_outbox(
    store: store::Store,
    amqp: capsight_amqp::AmqpSettings,
    settings: capsight_launch::outbox::OutboxSettings,
    leader: capsight_launch::lease::Leader,
    shutdown: Shutdown,
) {
    let queue = capsight_launch::queue::JobPublisher::new(amqp, settings.publish_timeout);
    let outbox = capsight_launch::outbox::Outbox {
        store: &store,
        queue: &queue,
    };
    capsight_runtime::periodic::every(settings.interval, false, &shutdown, || async {
        if !leader.is_leader() {
            return;
        }
        match outbox.sweep(chrono::Utc::now(), &settings).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "outbox sweep published undispatched jobs"),
            Err(e) => tracing::warn!(error = %e, "outbox sweep failed; retrying next time"),
        }
    })
    .await;
}

/// Keeps the live-launch index ([`store::LiveSettings`]) within its window: every `refresh`
/// (and at once when this replica becomes the leader) while this replica leads.
async fn keep_live_index(
    store: store::Store,
    refresh: Duration,
    leader: capsight_launch::lease::Leader,
    shutdown: Shutdown,
) {
    let mut last: Option<tokio::time::Instant> = None;
    let mut led = false;
    // checked every second so that a new leader refreshes (or rebuilds) at once
    let tick = refresh.min(Duration::from_secs(1));
    loop {
        let leads = leader.is_leader();
        let due = leads && (!led || last.is_none_or(|t| t.elapsed() >= refresh));
        led = leads;
        if due {
            match store.refresh_live().await {
                Ok(rebuilt) => {
                    if rebuilt {
                        tracing::info!("live-launch index rebuilt from the launch history");
                    }
                    last = Some(tokio::time::Instant::now());
                }
                Err(e) => tracing::warn!(error = %e, "live-launch index upkeep failed; retrying"),
            }
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(tick) => {}
        }
    }
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
    // several replicas: a job's writers and a tenant's quota decision are serialised by
    // leases on RabbitMQ, and one replica (the leader) runs the sweeps
    let leases =
        capsight_launch::lease::Leases::new(config.amqp.clone(), config.launcher.leases.clone());
    let (leader, campaign) =
        capsight_launch::lease::Leader::campaign(leases.clone(), shutdown.clone());
    let store = store::Store::new(config.clickhouse.client()?)
        .with_leases(leases.clone())
        .with_live(config.launcher.live.clone());
    let live_upkeep = tokio::spawn(keep_live_index(
        store.clone(),
        config.launcher.live.refresh,
        leader.clone(),
        shutdown.clone(),
    ));
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
    )
    .with_leader(leader.clone());
    let reaper = tokio::spawn(reaper.run(false, shutdown.clone()));
    let reconciler = reconcile::Reconciler::new(
        store.clone(),
        Arc::clone(&clouds),
        registry.clone(),
        config.launcher.reconcile.clone(),
        config.launcher.crash_after.clone(),
    )
    .with_leader(leader.clone());
    let reconciler = tokio::spawn(reconciler.run(shutdown.clone()));
    let outbox = tokio::spawn(sweep_outbox(
        store.clone(),
        config.amqp.clone(),
        config.launcher.outbox.clone(),
        leader.clone(),
        shutdown.clone(),
    ));
    let standby = standby::Standby::new(
        store.clone(),
        Arc::clone(&clouds),
        registry.clone(),
        config.launcher.standby.clone(),
        hasher,
    )
    .with_leader(leader.clone());
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
        .with_default_gpu_quota(config.tenancy.default_gpu_quota)
        .with_leases(leases, leader),
    );
    tracing::info!(queue = %config.amqp.launch.jobs_queue, "launcher starting");
    launcher.run(shutdown).await;
    let _ = reaper.await;
    let _ = reconciler.await;
    let _ = outbox.await;
    let _ = campaign.await;
    let _ = live_upkeep.await;
    let standby = standby.await;
    signals.flush(Duration::from_secs(30)).await?;
    if let Ok(Err(e)) = standby {
        tracing::error!(error = %e, "warm standby stopped with an error");
        return Err(e.into());
    }
    Ok(())
}
