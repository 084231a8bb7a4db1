//! The scores view: the latest score per key, read from the compacted scores topic.
//!
//! Contract:
//! * [`follow`] assigns every partition of `kafka.topics.scores` from the beginning (no consumer
//!   group offsets: each gateway builds its own full view), reads up to the high watermarks it
//!   found at start, then marks the view ready ([`ScoresView::is_ready`]) and keeps applying new
//!   records as they arrive. Partitions added after start are not followed until a restart.
//! * The view key is the decoded score's key string form; a record with an empty value (a
//!   compaction tombstone) removes the Kafka key. Undecodable or invalid records are logged and
//!   skipped.
//! * Scores are served as they age ([`VerdictPolicy::served`]): the view keeps each key's
//!   published score and the score it serves, whose confidence falls with the wall-clock age
//!   of its evidence (and whose value returns toward its market's prior, when
//!   `verdict.revert_half_life` is set) and whose label turns `UNKNOWN` when that confidence is
//!   too low or the evidence older than `verdict.stale_after`. Every read (get, select, page) returns the
//!   served score; [`ScoresView::age`] (run every `gateway.ageing_interval` by the gateway)
//!   re-serves every key, so a served score is at most one interval behind the clock.
//! * Every record or ageing step whose served label differs from the key's previous served
//!   label (or whose key is new) becomes a [`Transition`] on a broadcast channel of [`TRANSITIONS_BUFFER`]; a watcher that
//!   falls further behind loses the oldest (and is told how many) rather than slowing the view.
//! * Liveness: a watchdog ([`capsight_kafka::liveness`], `[kafka.consumer]`) compares the
//!   records read with the high watermarks; a view that lags and does not progress for
//!   `stall_after` turns unhealthy ([`ScoresView::watch_health`], the gateway's gRPC health
//!   goes `NOT_SERVING`) and re-reads the topic with a new reader; when that does not help,
//!   [`follow`] returns an error and the gateway stops.

use std::{
    collections::{BTreeMap, HashMap},
    ops::Bound,
    sync::{Arc, RwLock},
    time::Duration,
};

use capsight_kafka::{
    KafkaSettings,
    liveness::{Health, Membership, Recovery, Watchdog},
};
use capsight_proto::{
    codec,
    domain::{Label, Score, Served, VerdictPolicy},
};
use capsight_runtime::shutdown::Shutdown;
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
};
use tokio::sync::{broadcast, watch};

use crate::GatewayError;

/// Label transitions kept for slow watchers; one that falls further behind is ended.
pub const TRANSITIONS_BUFFER: usize = 4096;

/// A label change of one key.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The new score.
    pub score: Arc<Score>,
    /// The label before; `None` for a key seen for the first time.
    pub previous: Option<Label>,
}

/// One page of [`ScoresView::page`].
#[derive(Debug, Default)]
pub struct Page {
    /// At most the page size scores, in key order.
    pub scores: Vec<Arc<Score>>,
    /// True when more matching scores follow the page.
    pub more: bool,
    /// Matching scores across all pages.
    pub total: usize,
}

/// Served confidence moves smaller than this do not replace a served score.
const CONFIDENCE_STEP: f64 = 0.005;

/// One key: the score as published and as served now.
#[derive(Debug)]
struct Entry {
    published: Arc<Score>,
    served: Arc<Score>,
}

/// The latest score per key.
#[derive(Debug)]
pub struct ScoresView {
    policy: VerdictPolicy,
    scores: RwLock<BTreeMap<String, Entry>>,
    ready: watch::Sender<bool>,
    health: watch::Sender<Health>,
    transitions: broadcast::Sender<Transition>,
}

impl ScoresView {
    /// An empty, not-ready view serving under the default `[verdict]` policy.
    pub fn new() -> Arc<Self> {
        Self::with_policy(VerdictPolicy::default())
    }

    /// An empty, not-ready view serving scores under `policy`.
    pub fn with_policy(policy: VerdictPolicy) -> Arc<Self> {
        Arc::new(Self {
            policy,
            scores: RwLock::default(),
            ready: watch::channel(false).0,
            health: watch::channel(Health::Starting).0,
            transitions: broadcast::channel(TRANSITIONS_BUFFER).0,
        })
    }

    /// Applies one record: `Some(score)` upserts, `None` removes `kafka_key`.
    pub fn apply(&self, kafka_key: &str, score: Option<Score>) {
        let Ok(mut scores) = self.scores.write() else {
            return;
        };
        match score {
            None => {
                scores.remove(kafka_key);
            }
            Some(score) => {
                let key = score.key.to_string();
                let published = Arc::new(score);
                let served = self.serve(&published, chrono::Utc::now());
                let entry = Entry {
                    published,
                    served: Arc::clone(&served),
                };
                let previous = scores.insert(key, entry).map(|e| e.served.label);
                drop(scores);
                if previous != Some(served.label) {
                    // no receivers is fine
                    let _ = self.transitions.send(Transition {
                        score: served,
                        previous,
                    });
                }
            }
        }
    }

    /// `published` as served at `now` (the same allocation when ageing changes nothing).
    fn serve(&self, published: &Arc<Score>, now: chrono::DateTime<chrono::Utc>) -> Arc<Score> {
        Self::as_served(published, self.policy.served_verdict(published, now))
    }

    /// `published` as `s` says (the same allocation when that changes nothing).
    fn as_served(published: &Arc<Score>, s: Served) -> Arc<Score> {
        if s.is_as(published) {
            Arc::clone(published)
        } else {
            Arc::new(s.on(published))
        }
    }

    /// Re-serves every key as of `now`: a key whose served label changes is announced as a
    /// [`Transition`]; one whose value moved or whose confidence moved by at least half a
    /// hundredth is replaced.
    /// Returns how many labels changed.
    pub fn age(&self, now: chrono::DateTime<chrono::Utc>) -> usize {
        let mut changed = Vec::new();
        {
            let Ok(mut scores) = self.scores.write() else {
                return 0;
            };
            for entry in scores.values_mut() {
                let s = self.policy.served_verdict(&entry.published, now);
                let before = &entry.served;
                if s.label == before.label
                    && s.score == before.score
                    && (s.confidence - before.confidence).abs() < CONFIDENCE_STEP
                {
                    continue;
                }
                let previous = before.label;
                entry.served = Self::as_served(&entry.published, s);
                if previous != s.label {
                    changed.push(Transition {
                        score: Arc::clone(&entry.served),
                        previous: Some(previous),
                    });
                }
            }
        }
        let n = changed.len();
        for t in changed {
            // no receivers is fine
            let _ = self.transitions.send(t);
        }
        n
    }

    /// The `[verdict]` policy scores are served under.
    pub fn policy(&self) -> &VerdictPolicy {
        &self.policy
    }

    /// The score of `key` (string form), as served.
    pub fn get(&self, key: &str) -> Option<Arc<Score>> {
        self.scores
            .read()
            .ok()?
            .get(key)
            .map(|e| Arc::clone(&e.served))
    }

    /// Every score with `keep(score)`, in key order, starting after `after` (exclusive).
    pub fn select(&self, after: Option<&str>, keep: impl Fn(&Score) -> bool) -> Vec<Arc<Score>> {
        let Ok(scores) = self.scores.read() else {
            return Vec::new();
        };
        let start = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_owned()));
        scores
            .range((start, Bound::Unbounded))
            .filter(|(_, e)| keep(&e.served))
            .map(|(_, e)| Arc::clone(&e.served))
            .collect()
    }

    /// One page of the scores whose key (string form) starts with `prefix` and, when `keep` is
    /// given, pass it: at most `size` of them in key order after `after` (exclusive), whether
    /// more follow, and how many match in all. One pass over the keys under `prefix`, cloning
    /// only the page; with no `prefix` and no `keep` it reads only the page (the total is the
    /// view's size).
    pub fn page(
        &self,
        prefix: &str,
        after: Option<&str>,
        size: usize,
        keep: Option<&dyn Fn(&Score) -> bool>,
    ) -> Page {
        let Ok(scores) = self.scores.read() else {
            return Page::default();
        };
        let mut page = Page::default();
        if prefix.is_empty() && keep.is_none() {
            let start = after.map_or(Bound::Unbounded, Bound::Excluded);
            let mut rest = scores.range::<str, _>((start, Bound::Unbounded));
            page.scores = rest
                .by_ref()
                .take(size)
                .map(|(_, e)| Arc::clone(&e.served))
                .collect();
            page.more = rest.next().is_some();
            page.total = scores.len();
            return page;
        }
        for (key, entry) in scores.range::<str, _>((Bound::Included(prefix), Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            let score = &entry.served;
            if keep.is_some_and(|keep| !keep(score)) {
                continue;
            }
            page.total += 1;
            if after.is_none_or(|a| key.as_str() > a) {
                if page.scores.len() < size {
                    page.scores.push(Arc::clone(score));
                } else {
                    page.more = true;
                }
            }
        }
        page
    }

    /// Keys in the view.
    pub fn len(&self) -> usize {
        self.scores.read().map(|s| s.len()).unwrap_or(0)
    }

    /// True when the view holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once the topic was read to the end found at start.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Marks the view ready.
    pub fn mark_ready(&self) {
        self.ready.send_replace(true);
    }

    /// Resolves once the view is ready.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        // the sender lives as long as self
        let _ = rx.wait_for(|r| *r).await;
    }

    /// The reader's liveness: [`Health::Stalled`] while the view lags behind the topic and
    /// does not progress (see [`capsight_kafka::liveness`]).
    pub fn watch_health(&self) -> watch::Receiver<Health> {
        self.health.subscribe()
    }

    /// Label transitions from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.transitions.subscribe()
    }
}

/// Reads the scores topic into `view` until `shutdown` fires (see the module contract).
/// Returns an error when the reader stalled for good (the gateway then stops, for its
/// supervisor to restart it).
pub async fn follow(
    view: Arc<ScoresView>,
    kafka: KafkaSettings,
    shutdown: Shutdown,
) -> Result<(), GatewayError> {
    let topic = kafka.topics.scores.clone();
    let Some((mut consumer, mut pending)) = connect(&kafka, &shutdown).await? else {
        return Ok(());
    };
    let stop = shutdown.clone();
    let liveness = Watchdog::spawn(
        "gateway-view",
        topic.clone(),
        Membership::Assigned,
        &kafka,
        Arc::clone(&consumer) as _,
        async move { stop.wait().await },
    );
    let mut health = liveness.watch_health();
    view.health.send_replace(health.borrow_and_update().clone());
    if pending.is_empty() {
        view.mark_ready();
        tracing::info!(%topic, "scores view ready (topic empty)");
    }
    loop {
        let msg = tokio::select! {
            () = shutdown.wait() => return Ok(()),
            Ok(()) = health.changed() => {
                view.health.send_replace(health.borrow_and_update().clone());
                continue;
            }
            recovery = liveness.recover_requested() => match recovery {
                Recovery::Rejoin => {
                    // a new client re-reads the topic from the beginning: applying a record
                    // twice changes nothing (same score, no transition)
                    let Some((fresh, highs)) = connect(&kafka, &shutdown).await? else {
                        return Ok(());
                    };
                    let old = std::mem::replace(&mut consumer, fresh);
                    liveness.replace(Arc::clone(&consumer) as _);
                    std::thread::spawn(move || drop(old));
                    if !view.is_ready() {
                        pending = highs;
                    }
                    tracing::warn!(%topic, "scores view re-reading with a new consumer");
                    continue;
                }
                Recovery::GiveUp(reason) => {
                    return Err(GatewayError::unavailable("kafka", format!("scores view stalled: {reason}")));
                }
            },
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "scores topic read failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        liveness.processed(msg.partition(), msg.offset() + 1);
        let kafka_key = msg
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default();
        match msg.payload() {
            None | Some([]) => view.apply(&kafka_key, None),
            Some(bytes) => match codec::decode_score(bytes) {
                Ok(score) => view.apply(&kafka_key, Some(score)),
                Err(e) => tracing::warn!(
                    key = %kafka_key, offset = msg.offset(), reason = %e.reason(),
                    "skipping invalid score record"
                ),
            },
        }
        if !pending.is_empty() {
            let partition = msg.partition();
            if pending
                .get(&partition)
                .is_some_and(|high| msg.offset() + 1 >= *high)
            {
                pending.remove(&partition);
                if pending.is_empty() {
                    view.mark_ready();
                    tracing::info!(%topic, keys = view.len(), "scores view ready");
                }
            }
        }
    }
}

/// A new reader with every partition of the scores topic assigned from the beginning (waiting
/// for the topic to exist), and the non-empty partitions' high watermarks; `None` when
/// `shutdown` fired first.
async fn connect(
    kafka: &KafkaSettings,
    shutdown: &Shutdown,
) -> Result<Option<(Arc<StreamConsumer>, HashMap<i32, i64>)>, GatewayError> {
    let group = format!("capsight-gateway-view-{}", uuid::Uuid::new_v4().simple());
    let consumer: StreamConsumer = kafka
        .consumer_config("gateway-view", &group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| GatewayError::unavailable("kafka", e))?;
    let consumer = Arc::new(consumer);
    let topic = &kafka.topics.scores;
    let timeout = kafka.request_timeout;
    loop {
        let c = Arc::clone(&consumer);
        let t = topic.clone();
        let found = tokio::task::spawn_blocking(move || assign_all(&c, &t, timeout))
            .await
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        match found {
            Ok(Some(highs)) => return Ok(Some((consumer, highs))),
            Ok(None) => tracing::warn!(%topic, "scores topic has no partitions yet; waiting"),
            Err(e) => tracing::warn!(%topic, error = %e, "cannot read scores topic metadata"),
        }
        tokio::select! {
            () = shutdown.wait() => return Ok(None),
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Assigns every partition of `topic` from the beginning; returns the non-empty partitions'
/// high watermarks, or `None` when the topic has no partitions (yet).
fn assign_all(
    consumer: &StreamConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Option<HashMap<i32, i64>>, rdkafka::error::KafkaError> {
    let meta = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Ok(None);
    }
    let mut highs = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        if high > low {
            highs.insert(p, high);
        }
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    Ok(Some(highs))
}

#[cfg(test)]
mod tests {
    use capsight_testkit::signals::score;

    use super::*;

    /// Walks every page of `prefix`/`keep` with page size `size`.
    fn walk(
        view: &ScoresView,
        prefix: &str,
        size: usize,
        keep: Option<&dyn Fn(&Score) -> bool>,
    ) -> (Vec<String>, Vec<usize>) {
        let (mut keys, mut totals) = (Vec::new(), Vec::new());
        let mut after: Option<String> = None;
        loop {
            let page = view.page(prefix, after.as_deref(), size, keep);
            assert!(page.scores.len() <= size);
            totals.push(page.total);
            keys.extend(page.scores.iter().map(|s| s.key.to_string()));
            if !page.more {
                return (keys, totals);
            }
            after = page.scores.last().map(|s| s.key.to_string());
        }
    }

    #[test]
    fn pages_hold_every_match_once_in_key_order_with_the_total_on_each() {
        let view = ScoresView::new();
        let mut n = 0u8;
        for region in [("us-east-1", "use1"), ("us-east-2", "use2")] {
            for zone in ["", "-az1", "-az4"] {
                let zone = if zone.is_empty() {
                    String::new()
                } else {
                    format!("{}{zone}", region.1)
                };
                for it in ["g5.xlarge", "p5.48xlarge"] {
                    for market in ["on_demand", "spot"] {
                        let key = format!("aws/{}/{zone}/{it}/{market}", region.0);
                        view.apply(&key, Some(score(&key, n * 4 % 101, 0.5)));
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(view.len(), 24);
        let good = |s: &Score| s.label != Label::Unavailable;
        for prefix in [
            "",
            "aws/",
            "aws/us-east-1/",
            "aws/us-east-1/use1-az4/",
            "gcp/",
        ] {
            for keep in [None, Some(&good as &dyn Fn(&Score) -> bool)] {
                let expected: Vec<String> = view
                    .select(None, |s| {
                        s.key.to_string().starts_with(prefix) && keep.is_none_or(|k| k(s))
                    })
                    .iter()
                    .map(|s| s.key.to_string())
                    .collect();
                for size in [1, 3, 5, 100] {
                    let (keys, totals) = walk(&view, prefix, size, keep);
                    assert_eq!(keys, expected, "prefix {prefix:?}, size {size}");
                    assert!(totals.iter().all(|t| *t == expected.len()), "{totals:?}");
                }
            }
        }
        // a page after the last key is empty and says so
        let last = view
            .select(None, |_| true)
            .last()
            .map(|s| s.key.to_string());
        let page = view.page("", last.as_deref(), 10, None);
        assert!(page.scores.is_empty() && !page.more);
        assert_eq!(page.total, 24);
    }

    #[test]
    fn scores_are_served_aged_and_go_unknown_when_their_evidence_is_too_old() {
        let view = ScoresView::new();
        let mut transitions = view.subscribe();
        let now = chrono::Utc::now();
        let fresh = "aws/us-east-1/use1-az1/p5.48xlarge/on_demand";
        let old = "aws/us-east-1/use1-az2/p5.48xlarge/on_demand";
        let ancient = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";
        view.apply(fresh, Some(score(fresh, 95, 0.9)));
        let mut s = score(old, 95, 0.9);
        s.updated_at = now - chrono::Duration::hours(11);
        view.apply(old, Some(s));
        let mut s = score(ancient, 95, 0.9);
        s.updated_at = now - chrono::Duration::hours(30);
        view.apply(ancient, Some(s));

        let served = |k: &str| view.get(k).unwrap();
        assert_eq!(served(fresh).label, Label::Available);
        assert!(served(fresh).confidence > 0.89);
        // eleven hours old: still Available, but the confidence has aged
        assert_eq!(served(old).label, Label::Available);
        assert!(served(old).confidence < 0.5, "{:?}", served(old));
        assert_eq!(served(old).score, 95, "the score itself is kept");
        // past the horizon: unknown, whatever it said
        assert_eq!(
            (served(ancient).label, served(ancient).confidence),
            (Label::Unknown, 0.0)
        );
        // pages and selections serve the same
        let unknown = view.select(None, |s| !s.label.is_known());
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].key.to_string(), ancient);
        let page = view.page("", None, 10, None);
        assert_eq!(page.scores[1].label, Label::Available);
        assert!(page.scores[1].confidence < 0.5);
        for _ in 0..3 {
            transitions.try_recv().unwrap();
        }

        // two hours on: the eleven-hour-old key crosses the horizon and is announced once
        assert_eq!(view.age(now + chrono::Duration::hours(2)), 1);
        assert_eq!(served(old).label, Label::Unknown);
        let t = transitions.try_recv().unwrap();
        assert_eq!(
            (t.score.key.to_string().as_str(), t.previous, t.score.label),
            (old, Some(Label::Available), Label::Unknown)
        );
        assert_eq!(view.age(now + chrono::Duration::hours(2)), 0);
        assert!(transitions.try_recv().is_err());
        // fresh evidence brings it back at once
        view.apply(old, Some(score(old, 95, 0.9)));
        assert_eq!(served(old).label, Label::Available);
    }

    #[test]
    fn with_reversion_ageing_returns_an_unavailable_key_toward_its_prior_and_announces_it() {
        let view = ScoresView::with_policy(VerdictPolicy {
            revert_half_life: std::time::Duration::from_secs(600),
            market_prior: [(capsight_proto::domain::Market::OnDemand, 75.0)]
                .into_iter()
                .collect(),
            ..VerdictPolicy::default()
        });
        let mut transitions = view.subscribe();
        let key = "aws/us-east-1/use1-az1/p5.48xlarge/on_demand";
        let now = chrono::Utc::now();
        let mut s = score(key, 10, 0.9);
        s.updated_at = now;
        view.apply(key, Some(s));
        let served = || view.get(key).unwrap();
        assert_eq!((served().score, served().label), (10, Label::Unavailable));
        transitions.try_recv().unwrap();
        // ten minutes: half way back, still unavailable, the value replaced
        assert_eq!(view.age(now + chrono::Duration::minutes(10)), 0);
        assert_eq!((served().score, served().label), (43, Label::Unavailable));
        // twenty: limited, announced
        assert_eq!(view.age(now + chrono::Duration::minutes(20)), 1);
        assert_eq!((served().score, served().label), (59, Label::Limited));
        let t = transitions.try_recv().unwrap();
        assert_eq!(
            (t.previous, t.score.label),
            (Some(Label::Unavailable), Label::Limited)
        );
    }
}
