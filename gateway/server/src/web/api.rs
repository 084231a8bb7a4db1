//! The dashboard's API routes, each mapped onto one gRPC method of [`Api`] (called in-process
//! with the browser's bearer key as metadata), and the two SSE streams.
//!
//! | route | gRPC |
//! |---|---|
//! | `GET /api/whoami` | admission only ([`crate::auth::Tenancy::admit`]) |
//! | `GET /api/scores?region=&market=&gpu_model=&min_gpus=&min_confidence=&page_token=` | `ListScores` (scores without evidence) |
//! | `GET /api/scores/watch?<same filters>` (SSE `transition`) | `WatchScores` |
//! | `GET /api/score?key=` | `GetScore` |
//! | `GET /api/history?key=&range=1h\|24h\|7d` | `GetHistory` |
//! | `POST /api/preflight` | `Preflight` |
//! | `POST /api/launches`, `GET /api/launches` | `Launch`, `ListLaunches` |
//! | `GET /api/launches/{id}`, `POST /api/launches/{id}/cancel` | `GetLaunch`, `CancelLaunch` |
//! | `GET /api/launches/{id}/watch` (SSE `launch`) | `WatchLaunch` |
//! | `GET /api/usage` | admission, then `tenant_gpu_hours_monthly` for the admitted tenant |
//! | `GET /api/notifications` | `ListSubscriptions` and `ListDeadLetters` |
//! | `POST /api/notifications`, `POST /api/notifications/{id}/delete` | `CreateSubscription`, `DeleteSubscription` |

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{
        HeaderMap,
        header::{AUTHORIZATION, CONTENT_TYPE},
    },
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use capsight_launch::usage::MonthlyUsage;
use capsight_proto::v1;
use capsight_runtime::shutdown::Shutdown;
use chrono::Utc;
use futures::{Stream, StreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use tonic::metadata::MetadataValue;

use super::{
    OperatorSources,
    error::{self, WebError},
    json::{self as wire, SpecBody},
};
use crate::{
    Core, GatewayError,
    service::{Api, Rpc},
};

type ApiResult = Result<Json<Value>, WebError>;

/// What every route shares: the gRPC services and the core they run over.
#[derive(Debug, Clone)]
pub struct Web {
    api: Api,
    core: Arc<Core>,
    sources: Arc<OperatorSources>,
    shutdown: Shutdown,
}

impl Web {
    /// Over the gateway's services.
    pub fn new(api: Api, core: Arc<Core>, sources: OperatorSources, shutdown: Shutdown) -> Self {
        Self {
            api,
            core,
            sources: Arc::new(sources),
            shutdown,
        }
    }

    /// The core the services run over.
    pub(super) fn core(&self) -> &Core {
        &self.core
    }

    /// Where the operator view reads the pipeline's health.
    pub(super) fn sources(&self) -> &OperatorSources {
        &self.sources
    }

    /// The reply of the gRPC method whose request is `req`, called in-process
    /// ([`Api::serve`]) with the browser's `Authorization` header as its metadata.
    async fn call<R: Rpc>(&self, headers: &HeaderMap, req: R) -> Result<R::Reply, WebError> {
        Ok(self.api.serve(grpc(headers, req)).await?.into_inner())
    }
}

/// The API routes.
pub fn router(web: Web) -> Router {
    Router::new()
        .route("/api/whoami", get(whoami))
        .route("/api/scores", get(list_scores))
        .route("/api/scores/watch", get(watch_scores))
        .route("/api/score", get(get_score))
        .route("/api/history", get(history))
        .route("/api/preflight", post(preflight))
        .route("/api/launches", get(list_launches).post(launch))
        .route("/api/launches/{id}", get(get_launch))
        .route("/api/launches/{id}/cancel", post(cancel_launch))
        .route("/api/launches/{id}/watch", get(watch_launch))
        .route("/api/usage", get(usage))
        .route(
            "/api/notifications",
            get(list_notifications).post(create_subscription),
        )
        .route("/api/notifications/{id}/delete", post(delete_subscription))
        .with_state(web)
}

/// A gRPC request carrying the browser's `Authorization` header as its metadata.
pub(super) fn grpc<T>(headers: &HeaderMap, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(v) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| MetadataValue::try_from(v).ok())
    {
        req.metadata_mut().insert("authorization", v);
    }
    req
}

fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, WebError> {
    serde_json::from_slice(bytes).map_err(|e| WebError::bad_request(format!("body: {e}")))
}

fn key(text: &str) -> Result<v1::CapacityKey, WebError> {
    wire::parse_key(text).ok_or_else(|| {
        WebError::bad_request("key: must be provider/region/zone/instance_type/market")
    })
}

async fn whoami(State(web): State<Web>, headers: HeaderMap) -> ApiResult {
    let caller = web.core.tenancy.admit(&grpc(&headers, ()))?;
    Ok(Json(json!({
        "tenant": caller.id().as_str(),
        "name": caller.tenant.name,
    })))
}

/// The filters of the scores views (`ScoreFilter`), all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FilterQuery {
    provider: String,
    region: String,
    zone_id: String,
    instance_type: String,
    gpu_model: String,
    min_gpus: u32,
    market: String,
    min_label: String,
    min_confidence: f64,
    page_size: u32,
    page_token: String,
}

impl FilterQuery {
    fn filter(&self) -> v1::ScoreFilter {
        v1::ScoreFilter {
            provider: self.provider.clone(),
            region: self.region.clone(),
            zone_id: self.zone_id.clone(),
            gpu_model: self.gpu_model.clone(),
            min_gpus: self.min_gpus,
            market: if self.market.is_empty() {
                0
            } else {
                wire::market_value(&self.market)
            },
            min_label: wire::label_value(&self.min_label),
            min_confidence: self.min_confidence,
            instance_type: self.instance_type.clone(),
        }
    }
}

async fn list_scores(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(q): Query<FilterQuery>,
) -> Result<Response, WebError> {
    let req = v1::ListScoresRequest {
        filter: Some(q.filter()),
        page_size: q.page_size,
        page_token: q.page_token.clone(),
    };
    let resp = web.call(&headers, req).await?;
    let catalog = &web.core.catalog;
    let page = ScoresPage {
        scores: resp
            .scores
            .iter()
            .map(|s| wire::ScoreJson::of(s, catalog, false))
            .collect(),
        next_page_token: &resp.next_page_token,
        total: resp.total,
    };
    // straight to bytes: the map's list is the dashboard's largest answer
    let body = serde_json::to_vec(&page)
        .map_err(|e| GatewayError::Internal(format!("encode scores: {e}")))?;
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

/// A page of the capacity map's list: scores without their evidence (the explanation reads
/// the key's own score).
#[derive(Debug, serde::Serialize)]
struct ScoresPage<'a> {
    scores: Vec<wire::ScoreJson<'a>>,
    next_page_token: &'a str,
    total: u32,
}

/// An SSE response over `events`, opened by an `open` event, ended by the gateway's shutdown.
fn sse(
    shutdown: Shutdown,
    events: impl Stream<Item = Event> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let opened = stream::once(async { Event::default().event("open").data("{}") });
    let events = opened
        .chain(events)
        .take_until(Box::pin(async move { shutdown.wait().await }))
        .map(Ok);
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// A stream's error as its last event.
fn error_event(status: &tonic::Status) -> Event {
    Event::default()
        .event("error")
        .data(error::body(status).to_string())
}

/// Items of a gRPC stream as events, ending after the first error (sent as an `error` event).
fn events<T, S>(
    items: S,
    name: &'static str,
    to_json: impl Fn(&T) -> Value + Send + 'static,
) -> impl Stream<Item = Event> + Send + 'static
where
    S: Stream<Item = Result<T, tonic::Status>> + Send + 'static,
{
    items
        .scan(false, move |failed, item| {
            let out = if *failed {
                None
            } else {
                Some(match item {
                    Ok(t) => Event::default().event(name).data(to_json(&t).to_string()),
                    Err(s) => {
                        *failed = true;
                        error_event(&s)
                    }
                })
            };
            std::future::ready(out)
        })
        .boxed()
}

async fn watch_scores(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(q): Query<FilterQuery>,
) -> Result<Response, WebError> {
    let req = v1::WatchScoresRequest {
        filter: Some(q.filter()),
    };
    let transitions = web.call(&headers, req).await?;
    let catalog = Arc::clone(&web.core.catalog);
    let events = events(transitions, "transition", move |t: &v1::ScoreTransition| {
        json!({
            "score": t.score.as_ref().map(|s| wire::score(s, &catalog)),
            "previous": wire::label(t.previous),
        })
    });
    Ok(sse(web.shutdown.clone(), events).into_response())
}

#[derive(Debug, Deserialize)]
struct KeyQuery {
    key: String,
    #[serde(default)]
    range: String,
}

async fn get_score(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(q): Query<KeyQuery>,
) -> ApiResult {
    let req = v1::GetScoreRequest {
        key: Some(key(&q.key)?),
    };
    let s = web.call(&headers, req).await?;
    Ok(Json(wire::score(&s, &web.core.catalog)))
}

/// The span and bucket width of a history range (`1h`, `24h`, `7d`).
fn range(text: &str) -> Result<(i64, u32), WebError> {
    match text {
        "1h" => Ok((3600, 60)),
        "" | "24h" => Ok((86_400, 900)),
        "7d" => Ok((7 * 86_400, 3600)),
        _ => Err(WebError::bad_request("range: must be 1h, 24h or 7d")),
    }
}

async fn history(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(q): Query<KeyQuery>,
) -> ApiResult {
    let (span, step) = range(&q.range)?;
    let now = Utc::now();
    let req = v1::GetHistoryRequest {
        key: Some(key(&q.key)?),
        from: Some(crate::service::ts(now - chrono::TimeDelta::seconds(span))),
        to: Some(crate::service::ts(now)),
        step_seconds: step,
    };
    let resp = web.call(&headers, req).await?;
    Ok(Json(json!({
        "from": (now.timestamp() - span) * 1000,
        "to": now.timestamp() * 1000,
        "step_secs": step,
        "points": resp.points.iter().map(wire::history_point).collect::<Vec<_>>(),
        "marks": resp.marks.iter().map(wire::history_mark).collect::<Vec<_>>(),
    })))
}

/// The request `make` builds from a JSON spec body; a key it cannot read is a 400 naming `key`.
fn spec_request<T>(raw: &Bytes, make: impl FnOnce(&SpecBody) -> Option<T>) -> Result<T, WebError> {
    let spec: SpecBody = body(raw)?;
    make(&spec).ok_or_else(|| {
        WebError::bad_request("key: must be provider/region/zone/instance_type/market")
    })
}

async fn preflight(State(web): State<Web>, headers: HeaderMap, raw: Bytes) -> ApiResult {
    let req = spec_request(&raw, SpecBody::preflight)?;
    let resp = web.call(&headers, req).await?;
    Ok(Json(wire::preflight(&resp, &web.core.catalog)))
}

async fn launch(State(web): State<Web>, headers: HeaderMap, raw: Bytes) -> ApiResult {
    let req = spec_request(&raw, SpecBody::launch)?;
    let resp = web.call(&headers, req).await?;
    Ok(Json(json!({
        "job_id": resp.job_id,
        "state": wire::state(resp.state),
    })))
}

async fn list_launches(State(web): State<Web>, headers: HeaderMap) -> ApiResult {
    let req = v1::ListLaunchesRequest { limit: 50 };
    let resp = web.call(&headers, req).await?;
    Ok(Json(json!({
        "launches": resp.launches.iter().map(wire::launch_status).collect::<Vec<_>>(),
    })))
}

async fn get_launch(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(job_id): Path<String>,
) -> ApiResult {
    let req = v1::GetLaunchRequest { job_id };
    let resp = web.call(&headers, req).await?;
    Ok(Json(wire::launch_status(&resp)))
}

async fn cancel_launch(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(job_id): Path<String>,
) -> ApiResult {
    let req = v1::CancelLaunchRequest { job_id };
    let resp = web.call(&headers, req).await?;
    Ok(Json(wire::launch_status(&resp)))
}

async fn watch_launch(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(job_id): Path<String>,
) -> Result<Response, WebError> {
    let req = v1::WatchLaunchRequest {
        job_id,
        until_running: false,
    };
    let transitions = web.call(&headers, req).await?;
    let events = events(transitions, "launch", wire::launch_event);
    Ok(sse(web.shutdown.clone(), events).into_response())
}

async fn usage(State(web): State<Web>, headers: HeaderMap) -> ApiResult {
    let caller = web.core.tenancy.admit(&grpc(&headers, ()))?;
    let tenant = caller.id().as_str();
    let (month, rows) = web.core.store.gpu_hours_this_month(tenant).await?;
    let rows: Vec<&MonthlyUsage> = rows
        .iter()
        .filter(|r| r.month == month && r.tenant == tenant)
        .collect();
    Ok(Json(json!({
        "month": month.format("%Y-%m").to_string(),
        "gpu_hours": rows.iter().map(|r| r.gpu_hours).sum::<f64>(),
        "by_market": rows.iter().map(|r| json!({
            "market": r.market,
            "gpu_hours": r.gpu_hours,
            "launches": r.launches,
            "still_running": r.any_still_running == 1,
        })).collect::<Vec<_>>(),
    })))
}

// ---------------------------------------------------------------------------- notifications

fn event_name(e: i32) -> String {
    v1::NotificationEvent::try_from(e).map_or_else(
        |_| String::new(),
        |e| {
            e.as_str_name()
                .trim_start_matches("NOTIFICATION_EVENT_")
                .to_ascii_lowercase()
        },
    )
}

fn subscription_json(s: &v1::Subscription) -> Value {
    json!({
        "id": s.id,
        "url": s.url,
        "format": v1::WebhookFormat::try_from(s.format).map_or_else(
            |_| String::new(),
            |f| f.as_str_name().trim_start_matches("WEBHOOK_FORMAT_").to_ascii_lowercase(),
        ),
        "events": s.events.iter().map(|e| event_name(*e)).collect::<Vec<_>>(),
        "keys": s.keys.iter().map(|k| json!({
            "provider": k.provider,
            "region": k.region,
            "instance_type": k.instance_type,
            "gpu_model": k.gpu_model,
        })).collect::<Vec<_>>(),
        "cooldown_seconds": s.cooldown_seconds,
        "created_at": s.created_at.as_ref().map_or(0, |t| t.seconds.saturating_mul(1000)),
    })
}

async fn list_notifications(State(web): State<Web>, headers: HeaderMap) -> ApiResult {
    let subs = web.call(&headers, v1::ListSubscriptionsRequest {}).await?;
    let dead = web
        .call(&headers, v1::ListDeadLettersRequest { limit: 20 })
        .await?;
    Ok(Json(json!({
        "subscriptions": subs.subscriptions.iter().map(subscription_json).collect::<Vec<_>>(),
        "dead_letters": dead.dead_letters.iter().map(|d| json!({
            "id": d.id,
            "subscription_id": d.subscription_id,
            "event": event_name(d.event),
            "attempts": d.attempts,
            "last_status": d.last_status,
            "last_error": d.last_error,
            "failed_at": d.failed_at.as_ref().map_or(0, |t| t.seconds.saturating_mul(1000)),
        })).collect::<Vec<_>>(),
    })))
}

/// The dashboard's subscription form: events by name, one optional GPU-model selector.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SubscriptionBody {
    url: String,
    format: String,
    events: Vec<String>,
    gpu_model: String,
    region: String,
    cooldown_seconds: u32,
}

async fn create_subscription(
    State(web): State<Web>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let b: SubscriptionBody = body(&bytes)?;
    let format = match b.format.as_str() {
        "" | "json" => v1::WebhookFormat::Json,
        "slack" => v1::WebhookFormat::Slack,
        "discord" => v1::WebhookFormat::Discord,
        other => {
            return Err(WebError::bad_request(format!(
                "format: {other:?} is not json, slack or discord"
            )));
        }
    };
    let events = b
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            v1::NotificationEvent::from_str_name(&format!(
                "NOTIFICATION_EVENT_{}",
                e.to_ascii_uppercase()
            ))
            .map(|e| e as i32)
            .ok_or_else(|| WebError::bad_request(format!("events[{i}]: {e:?} is not an event")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let keys = if b.gpu_model.is_empty() && b.region.is_empty() {
        Vec::new()
    } else {
        vec![v1::KeySelector {
            gpu_model: b.gpu_model,
            region: b.region,
            ..v1::KeySelector::default()
        }]
    };
    let req = v1::CreateSubscriptionRequest {
        url: b.url,
        format: format as i32,
        events,
        keys,
        cooldown_seconds: b.cooldown_seconds,
        include_low_confidence: false,
    };
    let resp = web.call(&headers, req).await?;
    Ok(Json(json!({
        "subscription": resp.subscription.as_ref().map(subscription_json),
        "secret": resp.secret,
    })))
}

async fn delete_subscription(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    web.call(&headers, v1::DeleteSubscriptionRequest { id: id.clone() })
        .await?;
    Ok(Json(json!({ "deleted": id })))
}
