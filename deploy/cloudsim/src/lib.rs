//! `cloudsim`: a simulated cloud on loopback that the real AWS SDK talks to unchanged.
//!
//! It answers, on one HTTP port:
//! * the EC2 Query API subset capsight uses ([`ec2`]), form-encoded `Action=...` POSTs with XML
//!   responses and `<Response><Errors>` errors;
//! * Service Quotas JSON 1.1 ([`quotas`]) and STS `AssumeRole`/`GetCallerIdentity` ([`sts`]);
//! * a Statuspage `summary.json` and AWS-style RSS feeds ([`status`]);
//! * Lambda Cloud's REST API subset under `/api/v1` ([`lambda`]), API keys as callers;
//! * Google Cloud's Compute Engine subset under `/compute/v1`, its OAuth2 token endpoint for
//!   service accounts, Resource Manager's `testIamPermissions`, the Billing Catalog's Spot GPU
//!   SKUs and the status page's `incidents.json` ([`gcp`]);
//! * Azure's subset ([`azure`]): Entra ID client-credentials tokens, Resource Manager
//!   (`/subscriptions/...`: SKUs, usages, VMs, operations, permissions), the Retail Prices
//!   API and the Azure status RSS;
//! * RunPod's GraphQL API subset at `/graphql` ([`runpod`]), API keys as callers;
//! * admin endpoints with the ground truth and test controls (`/admin/*`, see `docs/cloudsim.md`).
//!
//! Callers are identified by the access key id in the SigV4 `Authorization` header (signatures
//! are not checked); what they may do, their accounts and quotas come from the scenario
//! ([`scenario`]). The market ([`world`]) advances in fixed simulated steps on a clock that may
//! run faster than real time ([`clock`]); spot interruptions and rebalance recommendations are
//! POSTed as EventBridge-shaped JSON to `cloudsim.webhook_url`.
//!
//! Contract: a malformed request gets an AWS-shaped 4xx error, never a panic; the world lock is
//! never held across an `.await`.

pub mod auth;
pub mod azure;
pub mod clock;
pub mod ec2;
pub mod error;
pub mod gcp;
pub mod lambda;
pub mod params;
pub mod quotas;
pub mod runpod;
pub mod scenario;
pub mod status;
pub mod sts;
mod webhook;
pub mod world;
pub mod xml;

use std::{
    collections::{BTreeMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use capsight_runtime::shutdown::Shutdown;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::{
    clock::Clock,
    error::ApiError,
    params::Params,
    scenario::{Scenario, SimProvider},
    world::{Fault, TypeInfo, World},
};

/// The scenario used when none is configured: `deploy/cloudsim/scenarios/demo.toml`.
pub const DEFAULT_SCENARIO: &str = include_str!("../scenarios/demo.toml");

/// The `[cloudsim]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudsimSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Scenario file; empty = the built-in default scenario.
    pub scenario: String,
    /// Simulated seconds per real second.
    pub time_scale: f64,
    /// Where EventBridge-shaped events are POSTed; empty = nowhere (still listed by
    /// `/admin/events`).
    pub webhook_url: String,
    /// Sent as the `x-api-key` header of every delivery when not empty, like an EventBridge
    /// API destination's API-key connection (e.g. a tenant key of the reports intake).
    pub webhook_api_key: String,
    /// Account id -> the `x-api-key` of that account's deliveries (each tenant account has its
    /// own API destination with its own tenant key); other accounts use `webhook_api_key`.
    #[serde(default)]
    pub webhook_api_keys: std::collections::BTreeMap<String, String>,
    /// Per-delivery timeout.
    #[serde(with = "humantime_serde")]
    pub webhook_timeout: Duration,
    /// Real time between background market advances.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// Stamp the cloud's timestamps (spot prices, events, launch times, status) on the real
    /// clock, compressed by `time_scale` (simulated time `e` after the start is stamped
    /// `start + e / time_scale`), instead of simulated wall-clock time. For running capsight
    /// against a fast clock with its durations divided by the time scale (`capsight-eval`).
    pub wall_timestamps: bool,
}

impl Default for CloudsimSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5599)),
            scenario: String::new(),
            time_scale: 1.0,
            webhook_url: String::new(),
            webhook_api_key: String::new(),
            webhook_api_keys: std::collections::BTreeMap::new(),
            webhook_timeout: Duration::from_secs(5),
            tick: Duration::from_millis(250),
            wall_timestamps: false,
        }
    }
}

/// Why cloudsim cannot start.
#[derive(Debug, thiserror::Error)]
pub enum CloudsimError {
    /// The scenario is unusable.
    #[error(transparent)]
    Scenario(#[from] scenario::ScenarioError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("serving: {source}")]
    Serve {
        /// Cause.
        source: std::io::Error,
    },
    /// The webhook URL is not a valid http:// URI.
    #[error("invalid cloudsim.webhook_url {0:?}: only http:// URLs are supported")]
    Webhook(String),
}

/// Shared server state.
#[derive(Debug)]
struct Sim {
    world: Mutex<World>,
    clock: Clock,
    events: mpsc::Sender<serde_json::Value>,
    delivered: Arc<Mutex<VecDeque<webhook::Delivery>>>,
}

impl Sim {
    fn lock(&self) -> MutexGuard<'_, World> {
        // A panic elsewhere must not wedge the simulator: keep serving the last state.
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks, advances the market to now, runs `f`, forwards the events it produced.
    fn with_world<T>(&self, f: impl FnOnce(&mut World, Duration) -> T) -> T {
        let (out, events) = {
            let mut world = self.lock();
            let elapsed = self.clock.elapsed();
            world.advance(elapsed);
            let out = f(&mut world, elapsed);
            (out, world.take_outbox())
        };
        for e in events {
            if self.events.try_send(e).is_err() {
                tracing::warn!("event queue full; dropping an event");
            }
        }
        out
    }
}

/// What a provider API handler starts from: the shared state and the request's headers (for
/// the caller's credentials).
#[derive(Debug)]
struct Ctx {
    sim: Arc<Sim>,
    headers: HeaderMap,
}

impl axum::extract::FromRequestParts<Arc<Sim>> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        sim: &Arc<Sim>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self {
            sim: sim.clone(),
            headers: parts.headers.clone(),
        })
    }
}

/// A running cloudsim.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits for the server to stop (after the shutdown signal).
    pub async fn join(self) -> std::io::Result<()> {
        self.server
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// The instance-type facts the market needs, from the GPU catalog (AWS types only).
pub fn type_table() -> BTreeMap<String, TypeInfo> {
    catalog_types()
}

/// The process: the scenario at `scenario`, else the one `cloudsim.scenario` names, else the
/// built-in demo scenario; then [`start`] and [`Running::join`].
pub async fn run(
    settings: &CloudsimSettings,
    scenario: Option<&std::path::Path>,
    seed: Option<u64>,
    shutdown: Shutdown,
) -> Result<(), CloudsimError> {
    let named = (!settings.scenario.is_empty()).then(|| std::path::Path::new(&settings.scenario));
    let scenario = match scenario.or(named) {
        Some(p) => Scenario::load(p)?,
        None => Scenario::parse(DEFAULT_SCENARIO)?,
    };
    let running = start(settings, scenario, seed, shutdown).await?;
    running
        .join()
        .await
        .map_err(|source| CloudsimError::Serve { source })
}

/// Loads the scenario named by settings (or the default), starts the server, the market ticker
/// and the webhook sender, and returns once listening. Everything stops on `shutdown`.
pub async fn start(
    settings: &CloudsimSettings,
    scenario: Scenario,
    seed: Option<u64>,
    shutdown: Shutdown,
) -> Result<Running, CloudsimError> {
    let webhook = webhook::Webhook::new(
        &settings.webhook_url,
        &settings.webhook_api_key,
        &settings.webhook_api_keys,
        settings.webhook_timeout,
    )
    .map_err(|_| CloudsimError::Webhook(settings.webhook_url.clone()))?;
    let seed = seed.unwrap_or(scenario.seed);
    let start = chrono::Utc::now().with_nanosecond_zero();
    let name = scenario.name.clone();
    let mut world = World::new(scenario, seed, type_table(), start);
    if settings.wall_timestamps {
        world.stamp_on_real_clock(settings.time_scale);
    }
    let (tx, rx) = mpsc::channel(4096);
    let delivered = Arc::new(Mutex::new(VecDeque::new()));
    let sim = Arc::new(Sim {
        world: Mutex::new(world),
        clock: Clock::new(start, settings.time_scale),
        events: tx,
        delivered: delivered.clone(),
    });
    tokio::spawn(webhook.run(rx, delivered, shutdown.clone()));
    let ticker = sim.clone();
    let tick = settings.tick.max(Duration::from_millis(10));
    let tick_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        loop {
            tokio::select! {
                _ = tick_shutdown.wait() => break,
                _ = interval.tick() => ticker.with_world(|_, _| ()),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| CloudsimError::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| CloudsimError::Bind {
            addr: settings.listen,
            source,
        })?;
    tracing::info!(%addr, scenario = %name, seed, time_scale = settings.time_scale, "cloudsim listening");
    let app = router(sim);
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await
    });
    Ok(Running { addr, server })
}

trait NanoZero {
    fn with_nanosecond_zero(self) -> Self;
}

impl NanoZero for chrono::DateTime<chrono::Utc> {
    fn with_nanosecond_zero(self) -> Self {
        use chrono::Timelike;
        self.with_nanosecond(0).unwrap_or(self)
    }
}

fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/", post(aws_entry))
        .route("/api/v2/summary.json", get(summary))
        .route("/api/v1/instance-types", get(lambda::instance_types))
        .route("/api/v1/instance-operations/launch", post(lambda::launch))
        .route(
            "/api/v1/instance-operations/terminate",
            post(lambda::terminate),
        )
        .route("/api/v1/instances", get(lambda::instances))
        .route("/api/v1/instances/{id}", get(lambda::instance))
        .route("/graphql", post(runpod::graphql))
        .route("/rss/{feed}", get(rss))
        .route("/token", post(gcp::token))
        .route("/compute/v1/projects/{project}", get(gcp::project))
        .route("/compute/v1/projects/{project}/zones", get(gcp::zones))
        .route(
            "/compute/v1/projects/{project}/regions/{region}",
            get(gcp::region),
        )
        .route(
            "/compute/v1/projects/{project}/zones/{zone}/machineTypes",
            get(gcp::machine_types),
        )
        .route(
            "/compute/v1/projects/{project}/zones/{zone}/acceleratorTypes",
            get(gcp::accelerator_types),
        )
        .route(
            "/compute/v1/projects/{project}/zones/{zone}/instances",
            get(gcp::list).post(gcp::insert),
        )
        .route(
            "/compute/v1/projects/{project}/zones/{zone}/instances/{name}",
            get(gcp::get).delete(gcp::delete),
        )
        .route(
            "/compute/v1/projects/{project}/zones/{zone}/operations/{name}",
            get(gcp::operation),
        )
        .route("/v1/projects/{resource}", post(gcp::test_permissions))
        .route("/v1/services/{service}/skus", get(gcp::skus))
        .route("/incidents.json", get(gcp_incidents))
        .route("/{tenant}/oauth2/v2.0/token", post(azure::token))
        .route(
            "/subscriptions/{*path}",
            get(azure::resource_manager)
                .put(azure::resource_manager)
                .delete(azure::resource_manager),
        )
        .route("/api/retail/prices", get(azure::retail_prices))
        .route("/azure/status/feed", get(azure::status_feed))
        .route("/admin/truth", get(admin_truth))
        .route("/admin/state", get(admin_state))
        .route("/admin/advance", post(admin_advance))
        .route(
            "/admin/faults",
            post(admin_faults).delete(admin_clear_faults),
        )
        .route("/admin/interrupt", post(admin_interrupt))
        .route("/admin/events", get(admin_events))
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn(
            capsight_runtime::metrics::track_http,
        ))
        .with_state(sim)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Ec2,
    Sts,
    Quotas,
}

async fn aws_entry(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let params = if target.is_some() {
        Params::default()
    } else {
        Params::parse(&body)
    };
    let protocol = match (&target, params.get("Version")) {
        (Some(_), _) => Protocol::Quotas,
        (None, Some("2011-06-15")) => Protocol::Sts,
        _ => Protocol::Ec2,
    };
    let action = target
        .as_deref()
        .and_then(|t| t.strip_prefix("ServiceQuotasV20190624."))
        .or(params.get("Action"))
        .unwrap_or("")
        .to_owned();
    let result = dispatch(
        &sim,
        protocol,
        &action,
        &headers,
        &params,
        &body,
        &request_id,
    );
    match result {
        Ok(text) => match protocol {
            Protocol::Quotas => error::json_response(StatusCode::OK, text, &request_id),
            _ => error::xml_response(StatusCode::OK, text, &request_id),
        },
        Err(e) => {
            tracing::debug!(action, code = %e.code, message = %e.message, "request failed");
            match protocol {
                Protocol::Ec2 => e.ec2(&request_id),
                Protocol::Sts => e.aws_query(&request_id),
                Protocol::Quotas => e.json(&request_id),
            }
        }
    }
}

fn dispatch(
    sim: &Sim,
    protocol: Protocol,
    action: &str,
    headers: &HeaderMap,
    params: &Params,
    body: &[u8],
    request_id: &str,
) -> Result<String, ApiError> {
    let Some(caller) = auth::caller(headers) else {
        return Err(ApiError::new(
            401,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        ));
    };
    sim.with_world(|world, elapsed| {
        let Some(who) = world.identity(&caller.access_key_id) else {
            return Err(match protocol {
                Protocol::Ec2 => ApiError::coded(
                    "AuthFailure",
                    "AWS was not able to validate the provided access credentials",
                ),
                Protocol::Sts => ApiError::new(
                    403,
                    "InvalidClientTokenId",
                    "The security token included in the request is invalid.",
                ),
                Protocol::Quotas => ApiError::bad_request(
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.",
                ),
            });
        };
        match protocol {
            Protocol::Ec2 => {
                world.throttle(&who.account, std::time::Instant::now())?;
                let call = ec2::Call {
                    who: &who,
                    region: &caller.region,
                    params,
                    elapsed,
                    request_id,
                };
                ec2::handle(world, action, &call)
            }
            Protocol::Sts => sts::handle(world, &who, params, request_id),
            Protocol::Quotas => quotas::handle(world, &who, &caller.region, action, body),
        }
    })
}

async fn summary(State(sim): State<Arc<Sim>>) -> Response {
    let body = sim.with_world(|w, elapsed| status::summary(w, w.time_at(elapsed)));
    Json(body).into_response()
}

async fn gcp_incidents(State(sim): State<Arc<Sim>>) -> Response {
    Json(sim.with_world(|w, _| gcp::incidents(w))).into_response()
}

async fn rss(State(sim): State<Arc<Sim>>, Path(feed): Path<String>) -> Response {
    let body = sim.with_world(|w, _| status::rss(w, &feed));
    (
        [(header::CONTENT_TYPE, "application/rss+xml; charset=UTF-8")],
        body,
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TruthQuery {
    /// Key prefix, e.g. `aws/us-east-1/use1-az4/`.
    key: String,
    /// Simulated seconds since start.
    since: u64,
}

async fn admin_truth(State(sim): State<Arc<Sim>>, Query(q): Query<TruthQuery>) -> Response {
    Json(sim.with_world(|w, _| w.truth()).filtered(&q.key, q.since)).into_response()
}

async fn admin_state(State(sim): State<Arc<Sim>>) -> Response {
    let now = sim.clock.now();
    let body = sim.with_world(|w, elapsed| {
        let pools: Vec<serde_json::Value> = w
            .keyed_pools()
            .map(|p| {
                let spot_price = match (p.provider, p.zonal) {
                    (_, Some(k)) if k.market != scenario::PoolMarket::Spot => None,
                    (SimProvider::Aws, Some(k)) => w.spot_price(&k.zone_id, &k.instance_type),
                    (SimProvider::Azure, Some(k)) => {
                        w.azure_spot_price(&p.state.region, &k.instance_type)
                    }
                    _ => None,
                };
                serde_json::json!({
                    "key": p.key,
                    "stock": p.state.stock,
                    "capacity": p.state.capacity,
                    "stocked_out": p.state.stocked_out,
                    "spot_price": spot_price,
                })
            })
            .collect();
        serde_json::json!({
            "scenario": w.scenario().name,
            "now": now,
            "elapsed_seconds": elapsed.as_secs_f64(),
            "time_scale": sim.clock.scale(),
            "pools": pools,
        })
    });
    Json(body).into_response()
}

#[derive(Debug, Deserialize)]
struct Advance {
    seconds: f64,
}

/// An admin request body, or `400` with the shape it should have had.
fn admin_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    expected: &'static str,
) -> Result<T, (StatusCode, String)> {
    serde_json::from_slice(body)
        .map_err(|_| (StatusCode::BAD_REQUEST, format!("expected {expected}")))
}

async fn admin_advance(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let req: Advance = match admin_body(&body, "{\"seconds\": N}") {
        Ok(req) => req,
        Err(bad) => return bad.into_response(),
    };
    // At most ~30 years at a time: keeps every simulated timestamp representable.
    if !(req.seconds.is_finite() && (0.0..=1e9).contains(&req.seconds)) {
        return (StatusCode::BAD_REQUEST, "seconds must be within 0..=1e9").into_response();
    }
    sim.clock.advance(Duration::from_secs_f64(req.seconds));
    let elapsed = sim.with_world(|_, elapsed| elapsed);
    Json(serde_json::json!({ "elapsed_seconds": elapsed.as_secs_f64() })).into_response()
}

async fn admin_faults(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let fault: Fault = match admin_body(
        &body,
        "{\"action\": A, \"code\": C, \"count\": N, \"message\"?: M}",
    ) {
        Ok(fault) => fault,
        Err(bad) => return bad.into_response(),
    };
    sim.with_world(|w, _| w.add_fault(fault));
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Deserialize)]
struct InterruptBody {
    instance_id: String,
}

async fn admin_interrupt(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let req: InterruptBody = match admin_body(&body, "{\"instance_id\": \"i-...\"}") {
        Ok(req) => req,
        Err(bad) => return bad.into_response(),
    };
    match sim.with_world(|w, elapsed| w.interrupt(&req.instance_id, elapsed)) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(reason) => (StatusCode::NOT_FOUND, reason).into_response(),
    }
}

async fn admin_clear_faults(State(sim): State<Arc<Sim>>) -> Response {
    sim.with_world(|w, _| w.clear_faults());
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_events(State(sim): State<Arc<Sim>>) -> Response {
    let list: Vec<webhook::Delivery> = sim
        .delivered
        .lock()
        .map(|d| d.iter().cloned().collect())
        .unwrap_or_default();
    Json(list).into_response()
}

/// AWS instance types of the embedded GPU catalog (vCPUs, quota families, on-demand prices).
fn catalog_types() -> BTreeMap<String, TypeInfo> {
    world::catalog_by_name("aws", |g| TypeInfo {
        vcpus: g.vcpus,
        quota_on_demand: g.quota.on_demand.clone(),
        quota_spot: g.quota.spot.clone(),
        on_demand_usd_per_hour: g.on_demand_usd_per_hour,
    })
}

#[cfg(test)]
capsight_runtime::documented_defaults_test!("cloudsim", CloudsimSettings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_scenario_parses() {
        assert!(Scenario::parse(DEFAULT_SCENARIO).is_ok());
    }
}
