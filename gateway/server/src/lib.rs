//! `capsight-gateway`: the gRPC API of capsight (`capsight.v1`, see
//! `proto/capsight/v1/gateway.proto`).
//!
//! Services: `ScoreService` (latest scores from the in-memory [`view`], history from
//! ClickHouse), `PreflightService` (permission -> quota -> capacity -> decision, and
//! alternatives), `LaunchService` (jobs to RabbitMQ, state from ClickHouse `launch_events`),
//! `ReportService` (tenant reports as signals), `NotificationService` (webhook subscriptions
//! and dead letters, `capsight_notify`), plus `grpc.health.v1` and server reflection.
//!
//! Contracts:
//! * **Ready**: health is `NOT_SERVING` (overall and per service) until the scores view has read
//!   the compacted scores topic to the end found at start, and again while the view's reader is
//!   stalled (lag and no progress, see [`view`]); score-reading RPCs answer `UNAVAILABLE` until
//!   the view is ready. A view that stays stalled after re-reading stops the gateway (non-zero
//!   exit for the supervisor).
//! * **Tenancy**: every capsight RPC is admitted by [`auth::Tenancy`] (API key, per-tenant
//!   governor limit -> `RESOURCE_EXHAUSTED`). Tenants see global scores and only their own
//!   launches (every launch read filters on the tenant id).
//! * **Errors**: one [`GatewayError`] type, mapped to `tonic::Status` in `error.rs` only.
//! * **Stateless**: apart from the rebuildable scores view, all state is in Kafka, ClickHouse and
//!   RabbitMQ; any number of gateways can run behind a load balancer.
//! * **Streams**: one connection has at most `gateway.max_concurrent_streams` calls in flight
//!   (HTTP/2 setting; the client queues the rest), idle connections are pinged
//!   (`http2_keepalive_*`, TCP keepalive); a tenant holds at most its limit of open
//!   `WatchScores` + `WatchLaunch` streams ([`streams`]); `WatchScores` ends after
//!   `watch_scores_max_duration` (and with `ABORTED` when its reader falls behind the view's
//!   buffer); every `WatchLaunch` reads the gateway's one launch [`feed`] (one ClickHouse query
//!   per tick for all watched launches).
//! * **Shutdown**: when the [`Shutdown`] fires the server stops accepting, finishes in-flight
//!   calls (streams end), the view stops, and the signal publisher is flushed.

pub use capsight_launch::alternatives;
pub mod auth;
pub use capsight_cloud::tenants as clouds;
mod error;
pub mod feed;
pub mod metrics;
pub use capsight_launch::queue as jobs;
pub mod preflight;
pub mod service;
pub mod settings;
pub mod store;
pub mod streams;
pub mod validate;
pub mod view;
pub mod web;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use capsight_catalog::Catalog;
use capsight_proto::v1::{
    launch_service_server::LaunchServiceServer,
    notification_service_server::NotificationServiceServer,
    preflight_service_server::PreflightServiceServer, report_service_server::ReportServiceServer,
    score_service_server::ScoreServiceServer,
};
use capsight_publisher::Publisher;
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::SharedRegistry;
pub use error::GatewayError;
pub use settings::{GatewayConfig, GatewaySettings};
use tokio::task::JoinHandle;
use tonic::transport::{Identity, Server, ServerTlsConfig, server::TcpIncoming};
use tonic_health::ServingStatus;

use crate::{
    auth::Tenancy, clouds::TenantClouds, feed::LaunchFeed, jobs::JobPublisher, service::Api,
    store::Store, streams::OpenStreams, view::ScoresView,
};

/// What every RPC shares.
#[derive(Debug)]
pub struct Core {
    /// `[gateway]`.
    pub settings: GatewaySettings,
    /// Keys and limits.
    pub tenancy: Tenancy,
    /// Latest scores.
    pub view: Arc<ScoresView>,
    /// GPU catalog.
    pub catalog: Arc<Catalog>,
    /// ClickHouse.
    pub store: Store,
    /// Launch jobs out.
    pub jobs: JobPublisher,
    /// Report signals out.
    pub signals: Publisher,
    /// Tenants' cloud accounts.
    pub clouds: Arc<dyn TenantClouds>,
    /// Open server streams per tenant.
    pub streams: Arc<OpenStreams>,
    /// The launch transitions every WatchLaunch reads.
    pub feed: LaunchFeed,
    /// Tenants' notification subscriptions.
    pub notify: capsight_notify::manage::Subscriptions,
}

/// A started gateway.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The scores view (tests wait on it).
    pub view: Arc<ScoresView>,
    /// The shared launch feed (tests count its reads).
    pub feed: LaunchFeed,
    /// Open server streams per tenant.
    pub streams: Arc<OpenStreams>,
    /// The bound address of the web dashboard, when `gateway.web_listen` is set.
    pub web_addr: Option<SocketAddr>,
    server: JoinHandle<Result<(), GatewayError>>,
    view_task: JoinHandle<Result<(), GatewayError>>,
}

impl Running {
    /// Waits for the server to stop (after the shutdown signal); an error when the server
    /// failed or the scores view stalled for good (the process should exit non-zero).
    pub async fn join(self) -> Result<(), GatewayError> {
        let join = |e: tokio::task::JoinError| GatewayError::Internal(e.to_string());
        self.server.await.map_err(join)??;
        self.view_task.await.map_err(join)?
    }
}

const SERVICES: [&str; 5] = [
    "capsight.v1.ScoreService",
    "capsight.v1.PreflightService",
    "capsight.v1.LaunchService",
    "capsight.v1.ReportService",
    "capsight.v1.NotificationService",
];

/// The process: [`start`] with the tenants' clouds on AWS (operator credentials from the AWS
/// chain, tenants' roles assumed from there), Lambda Cloud and RunPod (tenants' API keys from
/// the environment variables their registrations name), Google Cloud (tenants' service-account
/// key files at the paths their variables hold) and Azure (tenants' app registrations, their
/// client secrets by variable name), then [`Running::join`].
pub async fn run(config: GatewayConfig, shutdown: Shutdown) -> Result<(), GatewayError> {
    let catalog = Arc::new(
        Catalog::embedded().map_err(|e| GatewayError::Internal(format!("GPU catalog: {e}")))?,
    );
    let clouds = clouds::every_provider_from_env(&config.providers, &catalog);
    start(config, clouds, shutdown).await?.join().await
}

/// Binds `config.gateway.listen`, starts the scores view and serves until `shutdown` fires.
pub async fn start(
    config: GatewayConfig,
    clouds: Arc<dyn TenantClouds>,
    shutdown: Shutdown,
) -> Result<Running, GatewayError> {
    let startup =
        |what: &str, e: &dyn std::fmt::Display| GatewayError::Internal(format!("{what}: {e}"));
    let catalog = Arc::new(Catalog::embedded().map_err(|e| startup("catalog", &e))?);
    let registry = SharedRegistry::open(
        config.tenancy.registry.clone(),
        config.gateway.registry_recheck,
    )
    .map_err(|e| startup("tenant registry", &e))?;
    let tenancy = Tenancy::new(
        registry,
        config
            .tenancy
            .hasher()
            .map_err(|e| startup("tenancy", &e))?,
        config.tenancy.default_rate_per_minute,
    )
    .with_default_gpu_quota(config.tenancy.default_gpu_quota);
    let store = Store::new(
        config
            .clickhouse
            .client()
            .map_err(|e| startup("clickhouse", &e))?,
    );
    let jobs = JobPublisher::new(config.amqp.clone(), config.gateway.publish_timeout);
    if let Err(e) = jobs.connect().await {
        tracing::warn!(error = %e, "RabbitMQ not reachable at start; Launch will retry per call");
    }
    let signals = Publisher::new(&config.kafka, &config.publisher, "gateway")
        .map_err(|e| startup("kafka publisher", &e))?;
    signals.spawn_report(config.publisher.report_interval, shutdown.clone());
    config
        .verdict
        .validate()
        .map_err(|e| startup("configuration", &e))?;
    capsight_runtime::failpoint::check("gateway.crash_after", &config.gateway.crash_after)
        .map_err(|e| startup("configuration", &e))?;
    if config.gateway.ageing_interval.is_zero() {
        return Err(startup(
            "configuration",
            &"gateway.ageing_interval must be > 0",
        ));
    }
    let view = ScoresView::with_policy(config.verdict.clone());
    {
        // served scores age with the clock, also when no record arrives
        let view = Arc::clone(&view);
        let every = config.gateway.ageing_interval;
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.wait() => return,
                    _ = tick.tick() => {}
                }
                let changed = view.age(chrono::Utc::now());
                if changed > 0 {
                    tracing::debug!(changed, "served labels changed with age");
                }
            }
        });
    }
    let feed = LaunchFeed::start(store.launches().clone(), config.gateway.watch_poll_interval);
    let notify = capsight_notify::manage::Subscriptions::new(
        capsight_notify::store::NotifyStore::new(
            config
                .clickhouse
                .client()
                .map_err(|e| startup("clickhouse", &e))?,
        ),
        config.notify.clone(),
        tenancy.hasher().clone(),
        Arc::clone(&catalog),
    )
    .map_err(|e| startup("configuration", &e))?;
    let streams = OpenStreams::new(config.gateway.max_open_streams_per_tenant);
    let core = Arc::new(Core {
        settings: config.gateway.clone(),
        tenancy,
        view: Arc::clone(&view),
        catalog,
        store,
        jobs,
        signals,
        clouds,
        streams: Arc::clone(&streams),
        feed: feed.clone(),
        notify,
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
    for s in SERVICES {
        health
            .set_service_status(s, ServingStatus::NotServing)
            .await;
    }
    {
        // SERVING once the view is ready, NOT_SERVING while its reader is stalled
        let view = Arc::clone(&view);
        let health = health.clone();
        tokio::spawn(async move {
            view.wait_ready().await;
            let mut liveness = view.watch_health();
            loop {
                let status = if liveness.borrow_and_update().is_healthy() {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                health.set_service_status("", status).await;
                for s in SERVICES {
                    health.set_service_status(s, status).await;
                }
                if liveness.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    let view_task = {
        let view = Arc::clone(&view);
        let kafka = config.kafka.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let followed = view::follow(view, kafka, shutdown.clone()).await;
            if let Err(e) = &followed {
                // a gateway whose scores stopped moving must not go on serving them
                tracing::error!(error = %e, "scores view stopped: shutting the gateway down");
                shutdown.trigger();
            }
            followed
        })
    };

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(capsight_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| startup("reflection", &e))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(capsight_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| startup("reflection", &e))?;

    let gw = &config.gateway;
    let mut builder = Server::builder()
        .max_concurrent_streams(gw.max_concurrent_streams)
        .http2_keepalive_interval(Some(gw.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(gw.http2_keepalive_timeout));
    if !gw.tls_cert.as_os_str().is_empty() || !gw.tls_key.as_os_str().is_empty() {
        // installed at process start; again here for callers that start the library directly
        capsight_runtime::tls::install_crypto_provider();
        let cert = std::fs::read(&gw.tls_cert).map_err(|e| startup("gateway.tls_cert", &e))?;
        let key = std::fs::read(&gw.tls_key).map_err(|e| startup("gateway.tls_key", &e))?;
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            .map_err(|e| startup("tls", &e))?;
    }
    let api = Api::new(Arc::clone(&core));
    let web_addr = match config.gateway.web_listen {
        Some(listen) => Some(
            web::serve(
                api.clone(),
                Arc::clone(&core),
                web::OperatorSources::of(&config),
                listen,
                shutdown.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.gateway.listen)
        .await
        .map_err(|e| startup(&format!("bind {}", config.gateway.listen), &e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| startup("local address", &e))?;
    let router = builder
        .layer(metrics::GrpcMetricsLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ScoreServiceServer::new(api.clone()))
        .add_service(PreflightServiceServer::new(api.clone()))
        .add_service(LaunchServiceServer::new(api.clone()))
        .add_service(NotificationServiceServer::new(api.clone()))
        .add_service(ReportServiceServer::new(api));
    let tcp_keepalive = config.gateway.tcp_keepalive;
    tracing::info!(%addr, "capsight-gateway listening");
    let server = tokio::spawn(async move {
        let wait = shutdown.clone();
        let served = router
            // nodelay on accepted sockets (the builder's tcp_nodelay applies only when tonic
            // binds itself): without it, multi-segment answers such as a ListScores page wait
            // for the client's delayed ACK (~40 ms)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener)
                    .with_nodelay(Some(true))
                    .with_keepalive(Some(tcp_keepalive)),
                async move {
                    wait.wait().await;
                },
            )
            .await
            .map_err(|e| GatewayError::Internal(format!("server: {e}")));
        if let Err(e) = core.signals.flush(Duration::from_secs(10)).await {
            tracing::error!(error = %e, "report signals not flushed at shutdown");
        }
        served
    });
    Ok(Running {
        addr,
        view,
        feed,
        streams,
        web_addr,
        server,
        view_task,
    })
}
