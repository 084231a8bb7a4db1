//! The operator's and analysts' routes of the dashboard, behind the operator credential.
//!
//! Contract: the operator credential is a bearer key whose SHA-256 (hex) is
//! `gateway.web_operator_key_sha256` — a key of its own, never a tenant key, compared in
//! constant time. Without a bearer key: 401; a tenant's key (admitted as a tenant): 403; any
//! other key: 401; no operator key configured: 403 for everyone. Routes:
//! * `GET /api/operator/overview`: the scores view (ready, healthy, keys), the tenants (rate
//!   limit, GPU quota, stream limit and streams open now, active keys, cloud role) and GPU-hours
//!   of this month per tenant and market (`tenant_gpu_hours_monthly`);
//!   and each tenant's report trust (`trust`: the scorer's `TENANT_TRUST` query over
//!   `trust.horizon` and its formula, [`TrustSettings::table`] as `capsight-admin tenant trust`);
//! * `GET /api/operator/pipeline`: the pipeline's health — collector freshness (the newest
//!   signal per source in ClickHouse over the last day), the scorer (its consumer group's lag on
//!   the signals topic, reckoned as its own watchdog does, and the newest score row written),
//!   the dead-letter topic's messages, and probe spend of this UTC day per prober
//!   (`probe_audit`, each probe's settled cost or else its reservation, as the prober recovers
//!   its budget) against `probe.daily_budget_usd`. A part that cannot be read answers with its
//!   `error`, the others still answer;
//! * `GET /api/operator/queries`: the documented analyst queries of `docs/analytics.md`
//!   (compiled in), `GET /api/operator/queries/{n}`: query `n` run on ClickHouse as CSV with a
//!   header row, as a download.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::Utc;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::Status;

use super::{api::Web, error::WebError};
use crate::{GatewayConfig, GatewayError};
use capsight_kafka::{KafkaSettings, liveness};
use capsight_tenancy::trust::{HashChecks, TrustSettings};

/// Where the operator view reads the pipeline's health: the sections of the shared
/// configuration the other services run with.
#[derive(Debug, Clone)]
pub struct OperatorSources {
    /// The broker and its topic names.
    pub kafka: KafkaSettings,
    /// `[trust]`.
    pub trust: TrustSettings,
    /// `probe.daily_budget_usd`.
    pub probe_budget_usd: f64,
    /// `scorer.group_id`.
    pub scorer_group: String,
}

impl OperatorSources {
    /// From the gateway's configuration.
    pub fn of(config: &GatewayConfig) -> Self {
        Self {
            kafka: config.kafka.clone(),
            trust: config.trust.clone(),
            probe_budget_usd: config.probe.daily_budget_usd,
            scorer_group: config.scorer.group_id.clone(),
        }
    }
}

/// The analysts' page, whose `sql` blocks are the documented queries.
const ANALYTICS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/analytics.md"
));

/// A documented query: the heading above it and its SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct Documented {
    /// The `## ` heading it stands under.
    pub title: String,
    /// The SQL, verbatim.
    pub sql: String,
}

/// The `sql` blocks of a markdown text with their headings, in order.
pub fn documented(markdown: &str) -> Vec<Documented> {
    let (mut out, mut title, mut block) = (Vec::new(), String::new(), None::<String>);
    for line in markdown.lines() {
        match (&mut block, line.trim()) {
            (None, "```sql") => block = Some(String::new()),
            (Some(sql), "```") => {
                out.push(Documented {
                    title: title.clone(),
                    sql: std::mem::take(sql),
                });
                block = None;
            }
            (Some(sql), _) => {
                sql.push_str(line);
                sql.push('\n');
            }
            (None, l) => {
                if let Some(h) = l.strip_prefix("## ") {
                    h.clone_into(&mut title);
                }
            }
        }
    }
    out
}

/// The operator routes.
pub fn router(web: Web) -> Router {
    Router::new()
        .route("/api/operator/overview", get(overview))
        .route("/api/operator/pipeline", get(pipeline))
        .route("/api/operator/queries", get(queries))
        .route("/api/operator/queries/{n}", get(run_query))
        .with_state(web)
}

/// Admits the operator: the bearer key's SHA-256 matches the configured one.
fn operator(web: &Web, headers: &HeaderMap) -> Result<(), WebError> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(capsight_tenancy::admission::bearer)
        .ok_or_else(|| WebError(Status::unauthenticated("an operator key is required")))?;
    let want = web.core().settings.web_operator_key_sha256.trim();
    let got = hex::encode(Sha256::digest(key.as_bytes()));
    if !want.is_empty() && bool::from(got.as_bytes().ct_eq(want.as_bytes())) {
        return Ok(());
    }
    let req = super::api::grpc(headers, ());
    match web.core().tenancy.admit(&req) {
        Ok(_) => Err(WebError(Status::permission_denied(
            "a tenant key cannot open the operator view; sign in with the operator key",
        ))),
        Err(GatewayError::RateLimited { .. }) => Err(WebError(Status::permission_denied(
            "a tenant key cannot open the operator view",
        ))),
        Err(_) if want.is_empty() => Err(WebError(Status::permission_denied(
            "the operator view is off (gateway.web_operator_key_sha256 is empty)",
        ))),
        Err(_) => Err(WebError(Status::unauthenticated("unknown operator key"))),
    }
}

async fn overview(State(web): State<Web>, headers: HeaderMap) -> Result<Json<Value>, WebError> {
    operator(&web, &headers)?;
    let core = web.core();
    let (month, usage) = core.store.gpu_hours_this_month("").await?;
    let sources = web.sources();
    let checks = core
        .store
        .tenant_trust(sources.trust.since(Utc::now()))
        .await?;
    let registered = core.tenancy.registry().tenants();
    let trust = sources.trust.table(
        checks.into_iter().map(|r| HashChecks {
            hash: r.tenant,
            agreements: r.agreements,
            contradictions: r.contradictions,
            last_at: r.last_at,
        }),
        &registered,
        core.tenancy.hasher(),
    );
    let healthy = core.view.watch_health().borrow().is_healthy();
    let default_rate = core.tenancy.default_rate();
    let tenants: Vec<Value> = registered
        .iter()
        .map(|t| {
            let trusted = trust.iter().find(|r| r.tenant == t.id.as_str());
            json!({
                "trust": trusted.map(|r| r.trust),
                "checks": trusted.map_or(0, |r| r.checks),
                "contradictions": trusted.map_or(0, |r| r.contradictions),
                "id": t.id.as_str(),
                "name": t.name,
                "rate_per_minute": t.rate_per_minute.unwrap_or(default_rate),
                "gpu_quota": t.gpu_quota,
                "max_open_streams": t.max_open_streams.unwrap_or(core.settings.max_open_streams_per_tenant),
                "open_streams": core.streams.held(&t.id),
                "active_keys": t.keys.iter().filter(|k| !k.revoked).count(),
                "cloud_role": t.aws_role.is_some(),
            })
        })
        .collect();
    Ok(Json(json!({
        "scores_view": {
            "ready": core.view.is_ready(),
            "healthy": healthy,
            "keys": core.view.len(),
        },
        "tenants": tenants,
        "trust": trust,
        "trust_fresh": sources.trust.fresh(),
        "month": month.format("%Y-%m").to_string(),
        "usage": usage.iter().filter(|u| u.month == month).map(|u| json!({
            "tenant": u.tenant,
            "market": u.market,
            "gpu_hours": u.gpu_hours,
            "launches": u.launches,
            "still_running": u.any_still_running == 1,
        })).collect::<Vec<_>>(),
    })))
}

/// A part of the pipeline view, or its error (the other parts still answer).
fn part(result: Result<Value, String>) -> Value {
    result.unwrap_or_else(|error| json!({ "error": error }))
}

/// A consumer group's backlog on a topic, asked of the broker on a blocking thread.
async fn backlog(
    kafka: &KafkaSettings,
    topic: &str,
    group: &str,
) -> Result<liveness::Backlog, String> {
    let (kafka, topic, group) = (kafka.clone(), topic.to_owned(), group.to_owned());
    tokio::task::spawn_blocking(move || {
        let timeout = kafka.request_timeout;
        liveness::backlog(&kafka, "gateway-operator", &topic, &group, timeout)
    })
    .await
    .map_err(|e| format!("broker check: {e}"))?
    .map_err(|e| format!("broker: {e}"))
}

async fn pipeline(State(web): State<Web>, headers: HeaderMap) -> Result<Json<Value>, WebError> {
    operator(&web, &headers)?;
    let core = web.core();
    let sources = web.sources();
    let now = Utc::now();
    let now_s = u32::try_from(now.timestamp().max(0)).unwrap_or(u32::MAX);
    let day_ago = now_s.saturating_sub(86_400);
    let today = now.date_naive().format("%Y-%m-%d").to_string();
    let topics = &sources.kafka.topics;
    let (freshness, last_score, spend, scorer_lag, dlq) = tokio::join!(
        core.store.freshness(day_ago),
        core.store.scores_last_written(day_ago),
        core.store.probe_spend(&today),
        backlog(&sources.kafka, &topics.signals, &sources.scorer_group),
        backlog(&sources.kafka, &topics.signals_dlq, &sources.scorer_group),
    );
    let age = |t: u32| (t > 0).then(|| now_s.saturating_sub(t));
    let collectors = freshness.map_err(|e| e.to_string()).map(|rows| {
        json!(
            rows.iter()
                .map(|r| json!({
                    "source": r.source,
                    "last_observed": u64::from(r.last_observed) * 1000,
                    "age_secs": age(r.last_observed),
                    "signals_24h": r.signals,
                }))
                .collect::<Vec<_>>()
        )
    });
    let scorer = match (scorer_lag, last_score) {
        (Err(e), _) => Err(e),
        (_, Err(e)) => Err(e.to_string()),
        (Ok(b), Ok(last)) => Ok(json!({
            "group": sources.scorer_group,
            "topic": topics.signals,
            "lag": b.lag,
            "last_score_written": (last > 0).then(|| u64::from(last) * 1000),
            "last_score_age_secs": age(last),
        })),
    };
    let dlq = dlq.map(|b| json!({ "topic": topics.signals_dlq, "messages": b.held }));
    let probes = spend.map_err(|e| e.to_string()).map(|rows| {
        json!({
            "day": today,
            "budget_usd_per_prober": sources.probe_budget_usd,
            "spent_usd": rows.iter().map(|r| r.spent_usd).sum::<f64>(),
            "probers": rows.iter().map(|r| json!({
                "prober": r.prober,
                "spent_usd": r.spent_usd,
                "budget_usd": sources.probe_budget_usd,
                "share": if sources.probe_budget_usd > 0.0 { r.spent_usd / sources.probe_budget_usd } else { 0.0 },
                "probes": r.probes,
                "failed": r.failed,
                "last_at": u64::from(r.last_at) * 1000,
            })).collect::<Vec<_>>(),
        })
    });
    Ok(Json(json!({
        "at": now.timestamp_millis(),
        "collectors": part(collectors),
        "scorer": part(scorer),
        "dlq": part(dlq),
        "probes": part(probes),
    })))
}

async fn queries(State(web): State<Web>, headers: HeaderMap) -> Result<Json<Value>, WebError> {
    operator(&web, &headers)?;
    Ok(Json(json!({
        "queries": documented(ANALYTICS).iter().enumerate().map(|(n, q)| json!({
            "id": n,
            "title": q.title,
            "sql": q.sql,
        })).collect::<Vec<_>>(),
    })))
}

async fn run_query(
    State(web): State<Web>,
    headers: HeaderMap,
    Path(n): Path<usize>,
) -> Result<Response, WebError> {
    operator(&web, &headers)?;
    let q = documented(ANALYTICS)
        .into_iter()
        .nth(n)
        .ok_or_else(|| WebError(Status::not_found(format!("query {n}"))))?;
    let csv = capsight_clickhouse::observed("analytics.documented", async {
        web.core()
            .store
            .launches()
            .client()
            .query(q.sql.trim().trim_end_matches(';'))
            .fetch_bytes("CSVWithNames")?
            .collect()
            .await
    })
    .await
    .map_err(|e| GatewayError::unavailable("clickhouse", e))?;
    let mut resp = csv.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) =
        HeaderValue::from_str(&format!("attachment; filename=\"capsight-query-{n}.csv\""))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_query_is_found_with_its_heading() {
        let qs = documented(ANALYTICS);
        assert!(qs.len() >= 10, "{}", qs.len());
        assert_eq!(qs[0].title, "The current score of every key");
        assert!(
            qs.iter()
                .all(|q| q.sql.to_ascii_uppercase().contains("SELECT"))
        );
    }
}
