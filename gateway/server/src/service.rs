//! The tonic services. Each RPC: admit the caller (API key + rate limit), validate the request
//! into domain values, do the work, convert back. Errors are [`GatewayError`]s, turned into a
//! `Status` by `From` in `error.rs` (the only mapping).

use std::{pin::Pin, sync::Arc};

use capsight_clickhouse::rows::{
    LaunchActivityRow, LaunchCancellationRow, LaunchEventRow, PreflightLogRow, split_time,
};
use capsight_proto::{
    domain::{CapacityKey, FieldError, Label, Market},
    v1::{
        self, CheckStatus, LaunchState, launch_service_server::LaunchService,
        preflight_service_server::PreflightService, report_service_server::ReportService,
        score_service_server::ScoreService,
    },
};
use capsight_report_schema::{Report, ReportOutcome, Reporter};
use chrono::{DateTime, Utc};
use futures::Stream;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use capsight_launch::submit::Submit;

use crate::{
    Core, GatewayError, alternatives, preflight,
    store::StoredLaunch,
    validate::{self, bounded},
};

type Result<T> = std::result::Result<T, Status>;

/// Longest heartbeat note, bytes.
const MAX_HEARTBEAT_NOTE: usize = 256;
type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send + 'static>>;

/// Every capsight gRPC service over one shared core.
#[derive(Debug, Clone)]
pub struct Api {
    core: Arc<Core>,
}

impl Api {
    /// Over `core`.
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    fn ready(&self) -> std::result::Result<(), GatewayError> {
        if self.core.view.is_ready() {
            Ok(())
        } else {
            Err(GatewayError::NotReady)
        }
    }
}

/// The launch spec and constraints of a preflight or alternatives request, validated.
fn validated(
    core: &Core,
    spec: Option<v1::LaunchSpec>,
    constraints: Option<v1::Constraints>,
    need_image: bool,
) -> std::result::Result<(validate::Spec, validate::Constraints), GatewayError> {
    let spec = validate::spec(
        "spec",
        spec,
        &core.catalog,
        core.settings.max_launch_count,
        need_image,
    )?;
    let constraints = validate::constraints("constraints", constraints, &spec)?;
    Ok((spec, constraints))
}

/// Seconds/nanos to a protobuf timestamp.
pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn from_ts(
    field: &str,
    t: &prost_types::Timestamp,
) -> std::result::Result<DateTime<Utc>, FieldError> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(t.seconds, n))
        .ok_or_else(|| FieldError::new(field, "is not a valid timestamp"))
}

fn secs_ms(secs: u32, ms: u16) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(secs), u32::from(ms) * 1_000_000).unwrap_or_default()
}

fn job_id(field: &str, text: &str) -> std::result::Result<String, FieldError> {
    if text.is_empty() {
        return Err(FieldError::missing(field));
    }
    uuid::Uuid::parse_str(text)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| FieldError::new(field, "is not a launch job id (a UUID)"))
}

fn terminal(state: LaunchState) -> bool {
    matches!(
        state,
        LaunchState::Terminated | LaunchState::Failed | LaunchState::Cancelled
    )
}

fn event_to_wire(e: &LaunchEventRow) -> v1::LaunchEvent {
    let key = Market::parse("market", &e.market).ok().and_then(|m| {
        CapacityKey::parse(&e.provider, &e.region, &e.zone_id, &e.instance_type, m).ok()
    });
    v1::LaunchEvent {
        job_id: e.job_id.clone(),
        seq: e.seq,
        state: LaunchState::from(e.state).into(),
        at: Some(ts(secs_ms(e.at, e.at_ms))),
        key: key.as_ref().map(v1::CapacityKey::from),
        instance_id: e.instance_id.clone(),
        attempt: e.attempt,
        error_class: capsight_proto::domain::ErrorClass::parse("error_class", &e.error_class)
            .map_or(0, i32::from),
        error_code: e.error_code.clone(),
        detail: e.detail.clone(),
    }
}

fn status_to_wire(l: &StoredLaunch) -> v1::LaunchStatus {
    let r = &l.request;
    let key = Market::parse("market", &r.market).ok().and_then(|m| {
        CapacityKey::parse(&r.provider, &r.region, &r.zone_id, &r.instance_type, m).ok()
    });
    let state = l
        .events
        .last()
        .map_or(LaunchState::Queued, |e| LaunchState::from(e.state));
    v1::LaunchStatus {
        job_id: r.job_id.clone(),
        state: state.into(),
        spec: Some(v1::LaunchSpec {
            key: key.as_ref().map(v1::CapacityKey::from),
            count: r.count,
            image_id: r.image_id.clone(),
            subnet_id: r.subnet_id.clone(),
            spot_max_price: r.spot_max_price,
        }),
        created_at: Some(ts(secs_ms(r.created_at, r.created_ms))),
        events: l.events.iter().map(event_to_wire).collect(),
        cancel_requested: l.cancel_requested,
    }
}

fn key_row_parts(k: &CapacityKey) -> (String, String, String, String, String) {
    (
        k.provider.as_str().to_owned(),
        k.region.as_str().to_owned(),
        k.zone_str().to_owned(),
        k.instance_type.as_str().to_owned(),
        k.market.as_str().to_owned(),
    )
}

fn check_status_text(checks: &[v1::PreflightCheck], name: &str) -> String {
    checks
        .iter()
        .find(|c| c.name == name)
        .map(|c| match CheckStatus::try_from(c.status) {
            Ok(CheckStatus::Passed) => "passed",
            Ok(CheckStatus::Failed) => "failed",
            Ok(CheckStatus::Warning) => "warning",
            Ok(CheckStatus::Skipped) => "skipped",
            _ => "",
        })
        .unwrap_or("")
        .to_owned()
}

#[tonic::async_trait]
impl ScoreService for Api {
    async fn get_score(
        &self,
        request: Request<v1::GetScoreRequest>,
    ) -> Result<Response<v1::Score>> {
        self.core.tenancy.admit(&request)?;
        self.ready()?;
        let key = validate::key("key", request.into_inner().key).map_err(GatewayError::from)?;
        let score = self
            .core
            .view
            .get(&key.to_string())
            .ok_or_else(|| GatewayError::NotFound(format!("score of {key}")))?;
        Ok(Response::new(v1::Score::from(score.as_ref())))
    }

    async fn list_scores(
        &self,
        request: Request<v1::ListScoresRequest>,
    ) -> Result<Response<v1::ListScoresResponse>> {
        self.core.tenancy.admit(&request)?;
        self.ready()?;
        let req = request.into_inner();
        let filter = validate::score_filter("filter", req.filter).map_err(GatewayError::from)?;
        let page_size = match req.page_size {
            0 => 100,
            n @ 1..=1000 => n as usize,
            _ => return Err(GatewayError::invalid("page_size", "must be 0..=1000").into()),
        };
        bounded("page_token", &req.page_token, 300).map_err(GatewayError::from)?;
        let after = (!req.page_token.is_empty()).then_some(req.page_token.as_str());
        let catalog = &self.core.catalog;
        let matches = self.core.view.select(after, |s| filter.matches(s, catalog));
        let total_after = matches.len();
        let page: Vec<v1::Score> = matches
            .iter()
            .take(page_size)
            .map(|s| v1::Score::from(s.as_ref()))
            .collect();
        let next_page_token = if total_after > page_size {
            matches
                .get(page_size - 1)
                .map(|s| s.key.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let total = if after.is_none() {
            total_after
        } else {
            self.core
                .view
                .select(None, |s| filter.matches(s, catalog))
                .len()
        };
        Ok(Response::new(v1::ListScoresResponse {
            scores: page,
            next_page_token,
            total: u32::try_from(total).unwrap_or(u32::MAX),
        }))
    }

    type WatchScoresStream = Stream_<v1::ScoreTransition>;

    async fn watch_scores(
        &self,
        request: Request<v1::WatchScoresRequest>,
    ) -> Result<Response<Self::WatchScoresStream>> {
        self.core.tenancy.admit(&request)?;
        let filter = validate::score_filter("filter", request.into_inner().filter)
            .map_err(GatewayError::from)?;
        let mut rx = self.core.view.subscribe();
        let (tx, out) = mpsc::channel(256);
        let core = Arc::clone(&self.core);
        tokio::spawn(async move {
            loop {
                let t = tokio::select! {
                    () = tx.closed() => break,
                    t = rx.recv() => t,
                };
                match t {
                    Ok(t) => {
                        if !filter.matches(&t.score, &core.catalog) {
                            continue;
                        }
                        let msg = v1::ScoreTransition {
                            score: Some(v1::Score::from(t.score.as_ref())),
                            previous: t.previous.map_or(0, i32::from),
                        };
                        if tx.send(Ok(msg)).await.is_err() {
                            break;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "a WatchScores client lags; transitions dropped"
                        );
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    async fn get_history(
        &self,
        request: Request<v1::GetHistoryRequest>,
    ) -> Result<Response<v1::GetHistoryResponse>> {
        self.core.tenancy.admit(&request)?;
        let req = request.into_inner();
        let key = validate::key("key", req.key).map_err(GatewayError::from)?;
        let to = match &req.to {
            Some(t) => from_ts("to", t).map_err(GatewayError::from)?,
            None => Utc::now(),
        };
        let from = match &req.from {
            Some(t) => from_ts("from", t).map_err(GatewayError::from)?,
            None => to - chrono::TimeDelta::hours(24),
        };
        if from >= to {
            return Err(GatewayError::invalid("from", "must be before `to`").into());
        }
        let step = match req.step_seconds {
            0 => 300,
            s @ 60..=86_400 => s,
            _ => return Err(GatewayError::invalid("step_seconds", "must be 60..=86400").into()),
        };
        let secs = |t: DateTime<Utc>| u32::try_from(t.timestamp().max(0)).unwrap_or(u32::MAX);
        let (from_s, to_s) = (secs(from), secs(to));
        if (to_s - from_s) / step > 2000 {
            return Err(GatewayError::invalid(
                "step_seconds",
                "the range holds more than 2000 steps; widen the step",
            )
            .into());
        }
        let rows = self.core.store.history(&key, from_s, to_s, step).await?;
        Ok(Response::new(v1::GetHistoryResponse {
            points: rows
                .into_iter()
                .map(|r| v1::HistoryPoint {
                    at: Some(ts(secs_ms(r.t, 0))),
                    score: u32::from(r.score),
                    label: Label::for_score(r.score.min(100)).into(),
                    confidence: r.confidence,
                    signal_count: r.signal_count,
                })
                .collect(),
        }))
    }
}

#[tonic::async_trait]
impl PreflightService for Api {
    async fn preflight(
        &self,
        request: Request<v1::PreflightRequest>,
    ) -> Result<Response<v1::PreflightResponse>> {
        let caller = self.core.tenancy.admit(&request)?;
        self.ready()?;
        let req = request.into_inner();
        let core = &self.core;
        let (spec, constraints) = validated(core, req.spec, req.constraints, true)?;
        let outcome = preflight::run(
            &caller,
            &spec,
            &constraints,
            req.live_probe,
            preflight::Sources {
                clouds: core.clouds.as_ref(),
                view: &core.view,
                catalog: &core.catalog,
                timeout: core.settings.cloud_timeout,
            },
        )
        .await?;
        let preflight_id = uuid::Uuid::now_v7().to_string();
        let decision_text = match outcome.decision {
            v1::Decision::CanLaunch => "can_launch",
            v1::Decision::RetryWithAlternatives => "retry_with_alternatives",
            v1::Decision::FixAccountIssue => "fix_account_issue",
            v1::Decision::Unspecified => "unspecified",
        };
        let (at, at_ms) = split_time(Utc::now());
        let (provider, region, zone_id, instance_type, market) = key_row_parts(&spec.key);
        let row = PreflightLogRow {
            preflight_id: preflight_id.clone(),
            tenant: caller.id().to_string(),
            at,
            at_ms,
            provider,
            region,
            zone_id,
            instance_type,
            market,
            count: spec.count,
            decision: decision_text.into(),
            permission: check_status_text(&outcome.checks, "permission"),
            quota: check_status_text(&outcome.checks, "quota"),
            capacity: check_status_text(&outcome.checks, "capacity"),
            quota_headroom: outcome.quota_headroom.unwrap_or(0),
            score: outcome.score.as_ref().map_or(-1, |s| i16::from(s.score)),
            alternatives: u32::try_from(outcome.alternatives.len()).unwrap_or(0),
            checks: serde_json::to_string(
                &outcome
                    .checks
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "name": c.name, "status": check_status_text(std::slice::from_ref(c), &c.name),
                            "reason": c.reason, "error_code": c.error_code,
                        })
                    })
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default(),
        };
        core.store.log_preflight(&row).await?;
        let summary = match outcome.decision {
            v1::Decision::CanLaunch => format!("can launch {} x{}", spec.key, spec.count),
            v1::Decision::RetryWithAlternatives => format!(
                "{} looks short of capacity; {} alternative(s) below",
                spec.key,
                outcome.alternatives.len()
            ),
            _ => {
                let failed = outcome
                    .checks
                    .iter()
                    .find(|c| c.status == CheckStatus::Failed as i32)
                    .map_or("", |c| c.name.as_str());
                format!(
                    "fix your account first ({failed} check failed); alternatives would not help"
                )
            }
        };
        tracing::info!(preflight_id, tenant = %caller.id(), key = %spec.key, decision = decision_text, "preflight");
        Ok(Response::new(v1::PreflightResponse {
            preflight_id,
            decision: outcome.decision.into(),
            checks: outcome.checks,
            summary,
            alternatives: outcome.alternatives,
            score: outcome.score.as_ref().map(|s| v1::Score::from(s.as_ref())),
            quota_headroom: outcome.quota_headroom.unwrap_or(0),
        }))
    }

    async fn alternatives(
        &self,
        request: Request<v1::AlternativesRequest>,
    ) -> Result<Response<v1::AlternativesResponse>> {
        self.core.tenancy.admit(&request)?;
        self.ready()?;
        let req = request.into_inner();
        let core = &self.core;
        let (spec, constraints) = validated(core, req.spec, req.constraints, false)?;
        let all = core.view.select(None, |_| true);
        Ok(Response::new(v1::AlternativesResponse {
            alternatives: alternatives::rank(&spec, &constraints, &all, &core.catalog),
        }))
    }
}

#[tonic::async_trait]
impl LaunchService for Api {
    async fn launch(
        &self,
        request: Request<v1::LaunchRequest>,
    ) -> Result<Response<v1::LaunchResponse>> {
        let caller = self.core.tenancy.admit(&request)?;
        let core = &self.core;
        let submitted = Submit {
            store: core.store.launches(),
            queue: &core.jobs,
            catalog: &core.catalog,
            max_launch_count: core.settings.max_launch_count,
        }
        .submit(caller.id().as_str(), &caller.hash, request.into_inner())
        .await
        .map_err(GatewayError::from)?;
        Ok(Response::new(v1::LaunchResponse {
            job_id: submitted.job_id,
            state: LaunchState::from(submitted.state).into(),
        }))
    }

    async fn get_launch(
        &self,
        request: Request<v1::GetLaunchRequest>,
    ) -> Result<Response<v1::LaunchStatus>> {
        let caller = self.core.tenancy.admit(&request)?;
        let id = job_id("job_id", &request.into_inner().job_id).map_err(GatewayError::from)?;
        let launch = self
            .core
            .store
            .launches()
            .launch(caller.id().as_str(), &id)
            .await
            .map_err(GatewayError::from)?
            .ok_or_else(|| GatewayError::NotFound(format!("launch {id}")))?;
        Ok(Response::new(status_to_wire(&launch)))
    }

    type WatchLaunchStream = Stream_<v1::LaunchEvent>;

    async fn watch_launch(
        &self,
        request: Request<v1::WatchLaunchRequest>,
    ) -> Result<Response<Self::WatchLaunchStream>> {
        let caller = self.core.tenancy.admit(&request)?;
        let req = request.into_inner();
        let id = job_id("job_id", &req.job_id).map_err(GatewayError::from)?;
        let tenant = caller.id().to_string();
        if self
            .core
            .store
            .launches()
            .launch(&tenant, &id)
            .await
            .map_err(GatewayError::from)?
            .is_none()
        {
            return Err(GatewayError::NotFound(format!("launch {id}")).into());
        }
        let (tx, out) = mpsc::channel(64);
        let core = Arc::clone(&self.core);
        let until_running = req.until_running;
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + core.settings.watch_max_duration;
            let mut last: Option<u32> = None;
            loop {
                match core.store.launches().events(&tenant, &id, last).await {
                    Ok(events) => {
                        for e in &events {
                            last = Some(e.seq);
                            let state = LaunchState::from(e.state);
                            if tx.send(Ok(event_to_wire(e))).await.is_err() {
                                return;
                            }
                            if terminal(state) || (until_running && state == LaunchState::Running) {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(GatewayError::from(e)))).await;
                        return;
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    return;
                }
                tokio::select! {
                    () = tx.closed() => return,
                    () = tokio::time::sleep(core.settings.watch_poll_interval) => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    async fn cancel_launch(
        &self,
        request: Request<v1::CancelLaunchRequest>,
    ) -> Result<Response<v1::LaunchStatus>> {
        let caller = self.core.tenancy.admit(&request)?;
        let id = job_id("job_id", &request.into_inner().job_id).map_err(GatewayError::from)?;
        let tenant = caller.id().to_string();
        let mut launch = self
            .core
            .store
            .launches()
            .launch(&tenant, &id)
            .await
            .map_err(GatewayError::from)?
            .ok_or_else(|| GatewayError::NotFound(format!("launch {id}")))?;
        let state = launch
            .events
            .last()
            .map_or(LaunchState::Queued, |e| LaunchState::from(e.state));
        if terminal(state) {
            return Err(GatewayError::FailedPrecondition(format!(
                "launch {id} is already {}",
                state.as_str_name()
            ))
            .into());
        }
        self.core
            .store
            .launches()
            .cancel(&LaunchCancellationRow {
                job_id: id.clone(),
                tenant: tenant.clone(),
                at: split_time(Utc::now()).0,
            })
            .await
            .map_err(GatewayError::from)?;
        tracing::info!(job_id = id, tenant, "launch cancel requested");
        launch.cancel_requested = true;
        Ok(Response::new(status_to_wire(&launch)))
    }

    async fn list_launches(
        &self,
        request: Request<v1::ListLaunchesRequest>,
    ) -> Result<Response<v1::ListLaunchesResponse>> {
        let caller = self.core.tenancy.admit(&request)?;
        let limit = match request.into_inner().limit {
            0 => 50,
            n @ 1..=500 => n,
            _ => return Err(GatewayError::invalid("limit", "must be 0..=500").into()),
        };
        let launches = self
            .core
            .store
            .launches()
            .list_launches(caller.id().as_str(), limit)
            .await
            .map_err(GatewayError::from)?;
        Ok(Response::new(v1::ListLaunchesResponse {
            launches: launches.iter().map(status_to_wire).collect(),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>> {
        let caller = self.core.tenancy.admit(&request)?;
        let req = request.into_inner();
        let id = job_id("job_id", &req.job_id).map_err(GatewayError::from)?;
        bounded("note", &req.note, MAX_HEARTBEAT_NOTE).map_err(GatewayError::from)?;
        let tenant = caller.id().to_string();
        let events = self
            .core
            .store
            .launches()
            .events(&tenant, &id, None)
            .await
            .map_err(GatewayError::from)?;
        let Some(last) = events.last() else {
            return Err(GatewayError::NotFound(format!("launch {id}")).into());
        };
        let state = LaunchState::from(last.state);
        if state != LaunchState::Running {
            return Err(GatewayError::FailedPrecondition(format!(
                "launch {id} is {}, not running",
                state.as_str_name()
            ))
            .into());
        }
        let now = Utc::now();
        let (at, at_ms) = split_time(now);
        self.core
            .store
            .launches()
            .heartbeat(&LaunchActivityRow {
                job_id: id.clone(),
                tenant: tenant.clone(),
                at,
                at_ms,
                note: req.note,
            })
            .await
            .map_err(GatewayError::from)?;
        tracing::debug!(job_id = id, tenant, "launch heartbeat");
        Ok(Response::new(v1::HeartbeatResponse {
            at: Some(ts(now)),
            state: state.into(),
        }))
    }
}

#[tonic::async_trait]
impl ReportService for Api {
    async fn submit_report(
        &self,
        request: Request<v1::SubmitReportRequest>,
    ) -> Result<Response<v1::SubmitReportResponse>> {
        let caller = self.core.tenancy.admit(&request)?;
        let r = request.into_inner();
        let outcome = match v1::ReportOutcome::try_from(r.outcome) {
            Ok(v1::ReportOutcome::LaunchFailed) => ReportOutcome::LaunchFailed,
            Ok(v1::ReportOutcome::LaunchSucceeded) => ReportOutcome::LaunchSucceeded,
            Ok(v1::ReportOutcome::Available) => ReportOutcome::Available,
            Ok(v1::ReportOutcome::Unavailable) => ReportOutcome::Unavailable,
            Ok(v1::ReportOutcome::Interrupted) => ReportOutcome::Interrupted,
            Ok(v1::ReportOutcome::Unspecified) => {
                return Err(GatewayError::invalid("outcome", "must be set").into());
            }
            Err(_) => return Err(GatewayError::invalid("outcome", "unknown enum value").into()),
        };
        let market = match r.market {
            0 => None,
            m => Some(
                Market::from_wire("market", m)
                    .map_err(GatewayError::from)?
                    .as_str()
                    .to_owned(),
            ),
        };
        let observed_at = match &r.observed_at {
            Some(t) => Some(from_ts("observed_at", t).map_err(GatewayError::from)?),
            None => None,
        };
        for (field, v, max) in [
            ("id", &r.id, 128),
            ("zone_name", &r.zone_name, 64),
            ("error_code", &r.error_code, 256),
            ("error_message", &r.error_message, 4096),
            ("note", &r.note, 1024),
        ] {
            bounded(field, v, max).map_err(GatewayError::from)?;
        }
        let some = |s: String| (!s.is_empty()).then_some(s);
        let report = Report {
            id: some(r.id),
            observed_at,
            provider: r.provider,
            region: r.region,
            zone_id: some(r.zone_id),
            zone_name: some(r.zone_name),
            instance_type: r.instance_type,
            market,
            outcome,
            error_code: some(r.error_code),
            error_message: some(r.error_message),
            provisioning_ms: (r.provisioning_ms > 0).then_some(r.provisioning_ms),
            count: (r.count > 0).then_some(r.count),
            note: some(r.note),
        };
        let reporter = Reporter {
            hash: caller.hash.clone(),
            zone_map: caller.tenant.zone_map.clone(),
            catalog: Arc::clone(&self.core.catalog),
        };
        let signal = report
            .normalize(&reporter, 0, Utc::now())
            .map_err(|e| GatewayError::invalid(e.field, e.reason))?;
        match tokio::time::timeout(
            self.core.settings.publish_timeout,
            self.core.signals.publish(&signal),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GatewayError::unavailable("kafka", e).into()),
            Err(_) => return Err(GatewayError::unavailable("kafka", "publish timed out").into()),
        }
        Ok(Response::new(v1::SubmitReportResponse {
            signal_id: signal.id.as_str().to_owned(),
            source: v1::SignalSource::Report.into(),
        }))
    }
}
