//! The HTTP intake: authentication, per-tenant rate limits, size bounds, de-duplication and
//! publication, in that order.
//!
//! Contract: a `202` means every resulting signal was acknowledged by Kafka. `400`/`422` name
//! the problem (field and reason) and are not worth retrying; `401` is a missing or bad key;
//! `413` a body over `reports.max_body_bytes`; `429` carries `Retry-After`; `503` means
//! publishing failed and the sender should retry (EventBridge API destinations do).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    body::Bytes,
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

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.settings.max_body_bytes;
    Router::new()
        .route("/v1/reports", post(reports))
        .route("/v1/events", post(events))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(limit))
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
    let reporter = Reporter {
        hash: admitted.hash,
        zone_map: admitted.tenant.zone_map,
        catalog: Arc::clone(&state.catalog),
    };
    Ok((admitted.tenant.id, reporter))
}

async fn publish_all(
    state: &AppState,
    signals: &[capsight_proto::domain::Signal],
) -> Result<(), ApiError> {
    for s in signals {
        state.publisher.publish(s).await.map_err(|e| {
            tracing::error!(error = %e, "publishing a report failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "-",
                "could not publish; retry later",
            )
        })?;
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

async fn reports(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Answer {
    let (tenant, reporter) = admit(&state, &headers)?;
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
        let dedup = report.id.as_ref().map(|id| format!("{tenant}/report/{id}"));
        if dedup.as_deref().is_some_and(|k| seen(&state, k)) {
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
    publish_all(&state, &signals).await?;
    keys.into_iter().for_each(|k| remember(&state, k));
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": signals.len(), "duplicates": duplicates })),
    ))
}

async fn events(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Answer {
    let (tenant, reporter) = admit(&state, &headers)?;
    let value = parse_json(&body)?;
    let Some(event_id) = value.get("id").and_then(Value::as_str) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "id",
            "an EventBridge event has a string id",
        ));
    };
    let dedup = format!("{tenant}/event/{event_id}");
    if seen(&state, &dedup) {
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
    publish_all(&state, &normalized.signals).await?;
    if let Ok(mut m) = state.instances.lock() {
        for (instance, info) in normalized.learned {
            m.insert(format!("{tenant}/{instance}"), info);
        }
    }
    remember(&state, dedup);
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
