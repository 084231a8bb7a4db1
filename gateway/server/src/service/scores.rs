//! `ScoreService`: latest scores from the view, label transitions, history from ClickHouse.

use std::sync::Arc;

use capsight_catalog::Catalog;
use capsight_proto::v1::{self, score_service_server::ScoreService};
use chrono::{DateTime, Utc};
use tokio::sync::{
    broadcast::{self, error::RecvError},
    mpsc,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response};

use super::{Answer, Api, Result, Rpc, Stream_, from_ts, rpcs, secs_ms, ts};
use crate::{
    Core, GatewayError,
    auth::Caller,
    store::{Buckets, MarkRow},
    streams::held,
    validate::{self, ScoreFilter, bounded},
    view::{TRANSITIONS_BUFFER, Transition},
};

rpcs!(ScoreService {
    get_score(v1::GetScoreRequest) -> v1::Score;
    list_scores(v1::ListScoresRequest) -> v1::ListScoresResponse;
    watch_scores(v1::WatchScoresRequest) -> Stream_<v1::ScoreTransition> as WatchScoresStream;
    get_history(v1::GetHistoryRequest) -> v1::GetHistoryResponse;
});

impl Rpc for v1::GetScoreRequest {
    type Reply = v1::Score;
    const READS_VIEW: bool = true;

    async fn answer(self, core: &Core, _: Caller) -> Answer<Self::Reply> {
        let key = validate::key("key", self.key)?;
        let score = core
            .view
            .get(&key.to_string())
            .ok_or_else(|| GatewayError::NotFound(format!("score of {key}")))?;
        crate::metrics::served(&score);
        Ok(v1::Score::from(score.as_ref()))
    }
}

impl Rpc for v1::ListScoresRequest {
    type Reply = v1::ListScoresResponse;
    const READS_VIEW: bool = true;

    async fn answer(self, core: &Core, _: Caller) -> Answer<Self::Reply> {
        let filter = validate::score_filter("filter", self.filter)?;
        let page_size = match self.page_size {
            0 => 100,
            n @ 1..=1000 => n as usize,
            _ => return Err(GatewayError::invalid("page_size", "must be 0..=1000")),
        };
        bounded("page_token", &self.page_token, 300)?;
        let after = (!self.page_token.is_empty()).then_some(self.page_token.as_str());
        let catalog = &core.catalog;
        // one pass over the keys the filter's prefix allows; none at all without a filter
        let keep = |s: &capsight_proto::domain::Score| filter.matches(s, catalog);
        let keep: Option<&dyn Fn(&capsight_proto::domain::Score) -> bool> =
            (!filter.is_everything()).then_some(&keep);
        let page = core.view.page(&filter.key_prefix(), after, page_size, keep);
        let next_page_token = match page.scores.last() {
            Some(last) if page.more => last.key.to_string(),
            _ => String::new(),
        };
        let total = page.total;
        let page: Vec<v1::Score> = page
            .scores
            .iter()
            .map(|s| {
                crate::metrics::served(s);
                v1::Score::from(s.as_ref())
            })
            .collect();
        Ok(v1::ListScoresResponse {
            scores: page,
            next_page_token,
            total: u32::try_from(total).unwrap_or(u32::MAX),
        })
    }
}

impl Rpc for v1::WatchScoresRequest {
    type Reply = Stream_<v1::ScoreTransition>;

    async fn answer(self, core: &Core, caller: Caller) -> Answer<Self::Reply> {
        let filter = validate::score_filter("filter", self.filter)?;
        let slot = core.streams.open(&caller)?;
        let rx = core.view.subscribe();
        let (tx, out) = mpsc::channel(256);
        let deadline = tokio::time::Instant::now() + core.settings.watch_scores_max_duration;
        let catalog = Arc::clone(&core.catalog);
        tokio::spawn(forward(rx, tx, filter, catalog, deadline));
        Ok(Box::pin(held(ReceiverStream::new(out), slot)))
    }
}

impl Rpc for v1::GetHistoryRequest {
    type Reply = v1::GetHistoryResponse;

    async fn answer(self, core: &Core, _: Caller) -> Answer<Self::Reply> {
        let key = validate::key("key", self.key)?;
        let to = match &self.to {
            Some(t) => from_ts("to", t)?,
            None => Utc::now(),
        };
        let from = match &self.from {
            Some(t) => from_ts("from", t)?,
            None => to - chrono::TimeDelta::hours(24),
        };
        if from >= to {
            return Err(GatewayError::invalid("from", "must be before `to`"));
        }
        let step = match self.step_seconds {
            0 => 300,
            s @ 60..=86_400 => s,
            _ => return Err(GatewayError::invalid("step_seconds", "must be 60..=86400")),
        };
        let secs = |t: DateTime<Utc>| u32::try_from(t.timestamp().max(0)).unwrap_or(u32::MAX);
        let (from_s, to_s) = (secs(from), secs(to));
        if (to_s - from_s) / step > 2000 {
            return Err(GatewayError::invalid(
                "step_seconds",
                "the range holds more than 2000 steps; widen the step",
            ));
        }
        let buckets = Buckets {
            from: from_s,
            to: to_s,
            step,
        };
        let (rows, marks) = tokio::try_join!(
            core.store.history(&key, buckets),
            core.store.marks(&key, buckets),
        )?;
        let policy = core.view.policy();
        Ok(v1::GetHistoryResponse {
            marks: history_marks(&marks),
            points: rows
                .into_iter()
                .map(|r| v1::HistoryPoint {
                    at: Some(ts(secs_ms(r.t, 0))),
                    score: u32::from(r.score),
                    label: policy.label(r.score.min(100), r.confidence).into(),
                    confidence: r.confidence,
                    signal_count: r.signal_count,
                })
                .collect(),
        })
    }
}

/// The history marks of the signal rows of a key (`sql::SIGNAL_MARKS`), summed per bucket
/// and mark kind, oldest first; signal kinds that are none of the marked ones are left out.
/// * `probe`: capsight's probes (negative: failed);
/// * `capacity error`: other launch attempts that failed on capacity (all negative);
/// * `price`: spot prices (`max_value`: the highest);
/// * `status incident`: status events (negative: open incidents of some severity);
/// * `crowd report`: tenants' reports, counted only (negative: unavailable or interrupted).
pub fn history_marks(rows: &[MarkRow]) -> Vec<v1::HistoryMark> {
    use v1::HistoryMarkKind as K;
    let mut out: std::collections::BTreeMap<(u32, i32), v1::HistoryMark> = Default::default();
    for r in rows {
        let (kind, negative) = match (r.kind.as_str(), r.source.as_str()) {
            ("crowd_report", _) | (_, "report") => (
                K::CrowdReport,
                matches!(r.outcome.as_str(), "unavailable" | "interrupted"),
            ),
            ("launch_attempt", "probe") => (K::Probe, r.outcome == "failed"),
            ("launch_attempt", _) if r.error_class == "capacity" => (K::CapacityError, true),
            ("spot_price", _) => (K::Price, false),
            ("status", _) => (K::StatusIncident, false),
            _ => continue,
        };
        let negative = if kind == K::StatusIncident {
            if r.outcome == "none" { 0 } else { r.valued }
        } else if negative {
            r.n
        } else {
            0
        };
        let m = out
            .entry((r.t, i32::from(kind)))
            .or_insert_with(|| v1::HistoryMark {
                at: Some(ts(secs_ms(r.t, 0))),
                kind: kind.into(),
                ..Default::default()
            });
        m.count += r.n;
        m.negative += negative;
        if kind == K::Price {
            m.max_value = m.max_value.max(r.max_value);
        }
    }
    out.into_values().collect()
}

/// Sends the transitions of `rx` that match `filter` to `tx` until the client goes away, the
/// stream's `deadline` (a clean end) or the reader falls behind the view's buffer (`ABORTED`,
/// sent last).
async fn forward(
    mut rx: broadcast::Receiver<Transition>,
    tx: mpsc::Sender<Result<v1::ScoreTransition>>,
    filter: ScoreFilter,
    catalog: Arc<Catalog>,
    deadline: tokio::time::Instant,
) {
    loop {
        let t = tokio::select! {
            () = tx.closed() => break,
            // the stream's lifetime is over: end it cleanly, the client subscribes again
            () = tokio::time::sleep_until(deadline) => break,
            t = rx.recv() => t,
        };
        match t {
            Ok(t) => {
                if !filter.matches(&t.score, &catalog) {
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use capsight_testkit::signals::score;
    use tonic::Code;

    use super::*;

    fn all() -> (ScoreFilter, Arc<Catalog>) {
        let filter = validate::score_filter("filter", None).unwrap_or_else(|e| panic!("{e}"));
        let catalog = Catalog::embedded().unwrap_or_else(|e| panic!("{e}"));
        (filter, Arc::new(catalog))
    }

    fn row(t: u32, source: &str, kind: &str, outcome: &str, class: &str, n: u64) -> MarkRow {
        MarkRow {
            t,
            source: source.into(),
            kind: kind.into(),
            outcome: outcome.into(),
            error_class: class.into(),
            n,
            valued: n,
            max_value: 4.5,
        }
    }

    #[test]
    fn signals_become_marks_by_kind_and_bucket() {
        use v1::HistoryMarkKind as K;
        let marks = history_marks(&[
            row(60, "probe", "launch_attempt", "succeeded", "none", 2),
            row(60, "probe", "launch_attempt", "failed", "capacity", 1),
            row(60, "launch", "launch_attempt", "failed", "capacity", 3),
            row(60, "launch", "launch_attempt", "succeeded", "none", 5),
            row(120, "spot", "spot_price", "", "", 4),
            row(120, "status", "status", "major", "", 1),
            row(120, "status", "status", "none", "", 1),
            row(120, "report", "crowd_report", "unavailable", "capacity", 2),
            row(120, "report", "crowd_report", "available", "", 1),
            row(120, "quota", "quota", "", "", 9),
        ]);
        let got: Vec<(i64, K, u64, u64)> = marks
            .iter()
            .map(|m| {
                (
                    m.at.as_ref().map_or(0, |t| t.seconds),
                    m.kind(),
                    m.count,
                    m.negative,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (60, K::Probe, 3, 1),
                (60, K::CapacityError, 3, 3),
                (120, K::Price, 4, 0),
                (120, K::StatusIncident, 2, 1),
                (120, K::CrowdReport, 3, 2),
            ]
        );
        assert!((marks[2].max_value - 4.5).abs() < 1e-9);
    }

    #[tokio::test]
    async fn a_reader_behind_the_buffer_gets_aborted_after_what_it_was_sent() {
        let (view, rx) = broadcast::channel(2);
        let (tx, mut out) = mpsc::channel(1);
        let (filter, catalog) = all();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        // 5 transitions while the reader does not read: the view's buffer holds 2 of them
        for v in 0..5u8 {
            let t = Transition {
                score: Arc::new(score(
                    "aws/us-east-1/use1-az4/p5.48xlarge/on_demand",
                    v,
                    0.5,
                )),
                previous: None,
            };
            view.send(t).unwrap_or_else(|e| panic!("{e}"));
        }
        let task = tokio::spawn(forward(rx, tx, filter, catalog, deadline));
        let lagged = out.recv().await.unwrap_or_else(|| panic!("the status"));
        let status = lagged
            .err()
            .unwrap_or_else(|| panic!("a status, not a transition"));
        assert_eq!(status.code(), Code::Aborted);
        assert!(
            status.message().contains("3 transitions behind"),
            "{}",
            status.message()
        );
        assert!(out.recv().await.is_none(), "the stream ended");
        task.await.unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn the_stream_ends_cleanly_at_its_deadline() {
        let (_view, rx) = broadcast::channel::<Transition>(2);
        let (tx, mut out) = mpsc::channel(1);
        let (filter, catalog) = all();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        tokio::spawn(forward(rx, tx, filter, catalog, deadline));
        let end = tokio::time::timeout(Duration::from_secs(5), out.recv()).await;
        assert!(matches!(end, Ok(None)), "ended cleanly: {end:?}");
    }
}
