//! The HTTP intake: authentication, per-tenant rate limits, size bounds, de-duplication and
//! publication, in that order.
//!
//! Contract: a `202` means every resulting signal was acknowledged by Kafka. `400`/`422` name
//! the problem (field and reason) and are not worth retrying; `401` is a missing or bad key;
//! `413` a body over `reports.max_body_bytes`; `429` carries `Retry-After`; `503` (with
//! `Retry-After`) means publishing failed or did not finish within `reports.publish_timeout`
//! (the broker is away), or the whole request exceeded `reports.request_timeout`, and the sender
//! should retry (EventBridge API destinations do).
//!
//! Events of a tenant with a registered AWS role must come from that role's account (`403`
//! naming `account` otherwise).
//!
//! Bounds against memory and time exhaustion: the key is checked *before* the body is read (an
//! unauthenticated sender cannot make the intake buffer anything); every request, body read
//! included, has a deadline; ids that end up in the de-duplication and instance memories are
//! bounded in length ([`MAX_ID_LEN`], [`MAX_INSTANCE_ID_LEN`]), so those memories are bounded
//! in bytes, not only in entries.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use capsight_catalog::Catalog;
use capsight_publisher::Publisher;
use capsight_tenancy::{
    SharedRegistry, TenantHasher, TenantId,
    admission::{Admission, Denied, bearer},
};
use serde_json::{Value, json};

use crate::{
    ReportsSettings,
    launched::LaunchedInstances,
    normalize::{self, InstanceInfo, Rejection, Report, Reporter},
};

/// A bounded insertion-ordered map: the oldest entries go first.
#[derive(Debug)]
struct Bounded<V> {
    map: HashMap<String, V>,
    order: VecDeque<String>,
    cap: usize,
}

impl<V> Bounded<V> {
    fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    fn insert(&mut self, k: String, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

/// Shared server state.
pub struct AppState {
    publisher: Publisher,
    admission: Admission,
    settings: ReportsSettings,
    seen: Mutex<Bounded<()>>,
    instances: Mutex<Bounded<InstanceInfo>>,
    launched: Option<LaunchedInstances>,
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// State for the intake.
    pub fn new(
        publisher: Publisher,
        registry: SharedRegistry,
        hasher: TenantHasher,
        settings: ReportsSettings,
        default_rate: u32,
        catalog: Arc<Catalog>,
    ) -> Self {
        Self {
            catalog,
            seen: Mutex::new(Bounded::new(settings.dedup_capacity)),
            instances: Mutex::new(Bounded::new(settings.instance_memory)),
            publisher,
            admission: Admission::new(registry, hasher, default_rate),
            settings,
            launched: None,
        }
    }

    /// Also keys instance events of instances capsight launched for the tenant (found in
    /// ClickHouse `launch_events`), not only of those whose `RunInstances` event was seen.
    #[must_use]
    pub fn with_launched(mut self, launched: LaunchedInstances) -> Self {
        self.launched = Some(launched);
        self
    }
}

/// Longest accepted report or event id (bytes).
pub const MAX_ID_LEN: usize = 128;
/// Longest accepted instance id (bytes; AWS ids are 19).
pub const MAX_INSTANCE_ID_LEN: usize = 64;

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.settings.max_body_bytes;
    Router::new()
        .route("/v1/reports", post(reports))
        .route("/v1/events", post(events))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(
            capsight_runtime::metrics::track_http,
        ))
        .with_state(state)
}

/// Every error answer of the intake, mapped to a response in one place.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    field: String,
    reason: String,
    retry_after: Option<u64>,
}

fn error(status: StatusCode, field: &str, reason: &str) -> ApiError {
    ApiError {
        status,
        field: field.to_owned(),
        reason: reason.to_owned(),
        retry_after: None,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({ "error": self.reason, "field": self.field })),
        )
            .into_response();
        if let Some(v) = self.retry_after.and_then(|s| s.to_string().parse().ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

fn reject(r: &Rejection) -> ApiError {
    let status = if r.unsupported {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::BAD_REQUEST
    };
    error(status, &r.field, &r.reason)
}

/// Who is calling, if the key is good and the tenant within its rate: the HTTP door of the one
/// admission (`Authorization: Bearer <key>`, or `x-api-key: <key>` as EventBridge API
/// destinations send it).
fn admit(state: &AppState, headers: &HeaderMap) -> Result<(TenantId, Reporter), ApiError> {
    admit_with_account(state, headers).map(|(tenant, reporter, _)| (tenant, reporter))
}

/// [`admit`], also returning the AWS account of the tenant's registered role, if any.
fn admit_with_account(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(TenantId, Reporter, Option<String>), ApiError> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    let admitted = state.admission.admit(key).map_err(|denied| match denied {
        Denied::MissingKey => error(
            StatusCode::UNAUTHORIZED,
            "authorization",
            "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
        ),
        Denied::BadKey => error(
            StatusCode::UNAUTHORIZED,
            "authorization",
            "unknown or revoked API key",
        ),
        Denied::RateLimited {
            retry_after_secs, ..
        } => {
            let mut err = error(StatusCode::TOO_MANY_REQUESTS, "-", &denied.to_string());
            err.retry_after = Some(retry_after_secs);
            err
        }
        Denied::Internal(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "-", &e),
    })?;
    let account = admitted
        .tenant
        .aws_role
        .as_ref()
        .and_then(|r| r.role_arn.split(':').nth(4))
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    let reporter = Reporter {
        hash: admitted.hash,
        zone_map: admitted.tenant.zone_map,
        catalog: Arc::clone(&state.catalog),
    };
    Ok((admitted.tenant.id, reporter, account))
}

/// A `503` the sender should retry after `secs`.
fn unavailable(reason: &str, secs: u64) -> ApiError {
    let mut err = error(StatusCode::SERVICE_UNAVAILABLE, "-", reason);
    err.retry_after = Some(secs.max(1));
    err
}

async fn publish_all(
    state: &AppState,
    signals: &[capsight_proto::domain::Signal],
) -> Result<(), ApiError> {
    let limit = state.settings.publish_timeout;
    for s in signals {
        match tokio::time::timeout(limit, state.publisher.publish(s)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "publishing a report failed");
                return Err(unavailable("could not publish; retry later", 5));
            }
            Err(_) => {
                tracing::error!(timeout = ?limit, "publishing a report timed out; is the broker away?");
                return Err(unavailable(
                    "the signal bus did not acknowledge in time; retry later",
                    limit.as_secs(),
                ));
            }
        }
    }
    Ok(())
}

/// Reads the body (after admission) within `reports.max_body_bytes`.
async fn read_body(state: &AppState, body: Body) -> Result<Bytes, ApiError> {
    let limit = state.settings.max_body_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "$",
            &format!("the body is larger than {limit} bytes (or was cut off)"),
        )
    })
}

/// Runs a handler within `reports.request_timeout` (body read included).
async fn within_deadline(state: &AppState, answer: impl Future<Output = Answer>) -> Answer {
    let limit = state.settings.request_timeout;
    tokio::time::timeout(limit, answer)
        .await
        .unwrap_or_else(|_| {
            tracing::warn!(timeout = ?limit, "a request exceeded its deadline");
            Err(unavailable("the request took too long; retry later", 1))
        })
}

/// Refuses an id longer than `max` bytes, naming the field.
fn bounded_id(field: &str, id: &str, max: usize) -> Result<(), ApiError> {
    if id.len() > max {
        return Err(error(
            StatusCode::BAD_REQUEST,
            field,
            &format!("is {} bytes long; at most {max}", id.len()),
        ));
    }
    Ok(())
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "$",
            &format!("malformed JSON: {e}"),
        )
    })
}

fn seen(state: &AppState, key: &str) -> bool {
    state.seen.lock().is_ok_and(|s| s.map.contains_key(key))
}

fn remember(state: &AppState, key: String) {
    if let Ok(mut s) = state.seen.lock() {
        s.insert(key, ());
    }
}

type Answer = Result<(StatusCode, Json<Value>), ApiError>;

async fn reports(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Answer {
    within_deadline(&state, accept_reports(&state, &headers, body)).await
}

async fn accept_reports(state: &AppState, headers: &HeaderMap, body: Body) -> Answer {
    let (tenant, reporter) = admit(state, headers)?;
    let body = read_body(state, body).await?;
    let value = parse_json(&body)?;
    let items = match value {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "$",
                "expected a report object or an array of them",
            ));
        }
    };
    if items.is_empty() || items.len() > state.settings.max_reports_per_request {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "$",
            &format!(
                "send 1..={} reports per request",
                state.settings.max_reports_per_request
            ),
        ));
    }
    let now = chrono::Utc::now();
    let mut signals = Vec::new();
    let mut keys = Vec::new();
    let mut duplicates = 0;
    for (i, item) in items.into_iter().enumerate() {
        let report: Report = match serde_json::from_value(item) {
            Ok(r) => r,
            Err(e) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    &format!("[{i}]"),
                    &e.to_string(),
                ));
            }
        };
        if let Some(id) = &report.id {
            bounded_id(&format!("[{i}].id"), id, MAX_ID_LEN)?;
        }
        let dedup = report.id.as_ref().map(|id| format!("{tenant}/report/{id}"));
        if dedup.as_deref().is_some_and(|k| seen(state, k)) {
            duplicates += 1;
            continue;
        }
        match report.normalize(&reporter, i, now) {
            Ok(s) => signals.push(s),
            Err(mut r) => {
                r.field = format!("[{i}].{}", r.field);
                return Err(reject(&r));
            }
        }
        keys.extend(dedup);
    }
    publish_all(state, &signals).await?;
    keys.into_iter().for_each(|k| remember(state, k));
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": signals.len(), "duplicates": duplicates })),
    ))
}

async fn events(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Answer {
    within_deadline(&state, accept_event(&state, &headers, body)).await
}

async fn accept_event(state: &AppState, headers: &HeaderMap, body: Body) -> Answer {
    let (tenant, reporter, account) = admit_with_account(state, headers)?;
    let body = read_body(state, body).await?;
    let value = parse_json(&body)?;
    // a tenant with a registered role forwards events of that account only
    if let (Some(own), Some(sent)) = (&account, value.get("account").and_then(Value::as_str))
        && own != sent
    {
        tracing::warn!(%tenant, account = sent, "refused: an event of another AWS account");
        return Err(error(
            StatusCode::FORBIDDEN,
            "account",
            &format!("{sent:?} is not the AWS account of this tenant's registered role"),
        ));
    }
    let Some(event_id) = value.get("id").and_then(Value::as_str) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "id",
            "an EventBridge event has a string id",
        ));
    };
    bounded_id("id", event_id, MAX_ID_LEN)?;
    if let Some(instance) = value.pointer("/detail/instance-id").and_then(Value::as_str) {
        bounded_id("detail.instance-id", instance, MAX_INSTANCE_ID_LEN)?;
    }
    let dedup = format!("{tenant}/event/{event_id}");
    if seen(state, &dedup) {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "accepted": 0, "duplicate": true })),
        ));
    }
    // an instance event for an instance not learned from RunInstances: was it launched by
    // capsight for this tenant?
    if let (Some(launched), Some(instance)) = (
        &state.launched,
        value.pointer("/detail/instance-id").and_then(Value::as_str),
    ) {
        let memo = format!("{tenant}/{instance}");
        let known = state
            .instances
            .lock()
            .is_ok_and(|m| m.map.contains_key(&memo));
        if !known {
            match launched.lookup(tenant.as_str(), instance).await {
                Ok(Some(info)) => {
                    if let Ok(mut m) = state.instances.lock() {
                        m.insert(memo, info);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "looking up a launched instance failed");
                    return Err(error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "-",
                        "could not look up the instance; retry later",
                    ));
                }
            }
        }
    }
    let lookup = |instance: &str| {
        state
            .instances
            .lock()
            .ok()
            .and_then(|m| m.map.get(&format!("{tenant}/{instance}")).cloned())
    };
    let normalized = normalize::eventbridge(&value, &reporter, chrono::Utc::now(), &lookup)
        .map_err(|r| reject(&r))?;
    publish_all(state, &normalized.signals).await?;
    if let Ok(mut m) = state.instances.lock() {
        for (instance, info) in normalized.learned {
            m.insert(format!("{tenant}/{instance}"), info);
        }
    }
    remember(state, dedup);
    if !normalized.unkeyed.is_empty() {
        tracing::info!(%tenant, instances = ?normalized.unkeyed, "instance event for an instance whose launch was never reported");
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "accepted": normalized.signals.len(),
            "duplicate": false,
            "unkeyed": normalized.unkeyed,
        })),
    ))
}
