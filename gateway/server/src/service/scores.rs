//! `ScoreService`: latest scores from the view, label transitions, history from ClickHouse.

use std::sync::Arc;

use capsight_proto::{
    domain::Label,
    v1::{self, score_service_server::ScoreService},
};
use chrono::{DateTime, Utc};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response};

use super::{Api, Result, Stream_, from_ts, secs_ms, ts};
use crate::{
    GatewayError,
    streams::held,
    validate::{self, bounded},
    view::TRANSITIONS_BUFFER,
};

#[tonic::async_trait]
impl ScoreService for Api {
    async fn get_score(
        &self,
        request: Request<v1::GetScoreRequest>,
    ) -> Result<Response<v1::Score>> {
        let (_, req) = self.admit_ready(request)?;
        let key = validate::key("key", req.key).map_err(GatewayError::from)?;
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
        let (_, req) = self.admit_ready(request)?;
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
        let (caller, req) = self.admit(request)?;
        let filter = validate::score_filter("filter", req.filter).map_err(GatewayError::from)?;
        let slot = self.core.streams.open(&caller)?;
        let mut rx = self.core.view.subscribe();
        let (tx, out) = mpsc::channel(256);
        let core = Arc::clone(&self.core);
        let deadline = tokio::time::Instant::now() + core.settings.watch_scores_max_duration;
        tokio::spawn(async move {
            loop {
                let t = tokio::select! {
                    () = tx.closed() => break,
                    // the stream's lifetime is over: end it cleanly, the client subscribes again
                    () = tokio::time::sleep_until(deadline) => break,
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
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "a WatchScores client lags; its stream ends");
                        let lagged = GatewayError::Lagged {
                            missed,
                            buffer: TRANSITIONS_BUFFER,
                        };
                        let _ = tx.send(Err(lagged.into())).await;
                        break;
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
        Ok(Response::new(Box::pin(held(
            ReceiverStream::new(out),
            slot,
        ))))
    }

    async fn get_history(
        &self,
        request: Request<v1::GetHistoryRequest>,
    ) -> Result<Response<v1::GetHistoryResponse>> {
        let (_, req) = self.admit(request)?;
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
