//! The Kafka side of the scorer: consume, batch, rebuild, score, write, then store offsets.
//!
//! Contract (at-least-once, after rust-rdkafka's `examples/at_least_once.rs`):
//! * the consumer never stores offsets by itself (`enable.auto.offset.store=false`); a batch's
//!   offsets are stored only after every write it caused is durable: ClickHouse inserts
//!   returned, scores and dead letters acknowledged by the broker (`acks=all`). librdkafka
//!   commits stored offsets periodically, on rebalance and at shutdown;
//! * a batch is flushed when it holds `batch_max_rows` messages or `batch_max_interval` after
//!   its first message, whichever comes first: about one insert per table per interval;
//! * a write that fails is retried with `retry_backoff` until it succeeds or shutdown fires; an
//!   abandoned batch's offsets are not stored, so it is replayed by whoever consumes next;
//! * on revocation, the open batch's messages from revoked partitions are dropped (the next
//!   owner replays them) and so is the window state of their keys; on assignment, the assigned
//!   partitions' keys are forgotten too, so each is rebuilt from ClickHouse before its first
//!   score is published again;
//! * idle keys: every `evict_interval`, keys whose newest observation is older than
//!   `evict_after` are dropped from memory and a tombstone (the key with no payload) is produced
//!   on the compacted scores topic, so compaction and every gateway's view forget them; a
//!   tombstone that was not acknowledged is retried at the next sweep. A key seen again is
//!   rebuilt from ClickHouse like any other;
//! * tenant trust: at start and every `trust.refresh_interval`, all tenants' trust is reloaded
//!   from ClickHouse (every instance sees every tenant's checks, whichever instance made them);
//!   when that fails the previous trust stays and the next tick tries again;
//! * the librdkafka calls that block (commit, flush, close) run on blocking threads;
//! * liveness ([`capsight_kafka::liveness`]): a watchdog compares the topic's high watermarks
//!   with the offsets stored here and the group's committed offsets. When the scorer has lag
//!   and no progress for `kafka.consumer.stall_after` (e.g. its session timed out and the group
//!   never gave its partitions back), its health turns unhealthy and it rejoins with a new
//!   client: everything in flight is dropped as on a full revocation (replayed from the
//!   committed offsets, idempotently). When rejoining does not help, [`Pipeline::run`] returns
//!   [`ScorerError::Stalled`] and the process exits non-zero for its supervisor.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use capsight_kafka::liveness::{Liveness, Membership, Recovery, Watchdog};
use capsight_kafka::{DLQ_REASON_HEADER, KafkaSettings, TRACEPARENT_HEADER, TopicNames};
use capsight_proto::codec;
use capsight_proto::domain::{CapacityKey, Signal};
use capsight_runtime::shutdown::Shutdown;
use chrono::{DateTime, Utc};
use rdkafka::{
    ClientContext, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
    util::Timeout,
};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use capsight_tenancy::trust::TrustSettings;

use crate::ScorerError;
use crate::config::{ScorerConfig, ScorerSettings};
use crate::engine::{Engine, Outputs};
use crate::store::{Store, signal_rows};

/// How often the counters are logged (when they moved).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// The header naming where a dead letter came from: `topic/partition/offset`.
pub const DLQ_SOURCE_HEADER: &str = "capsight-dlq-source";

/// A partition-set change seen by the rebalance callbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RebalanceEvent {
    Revoked(BTreeSet<i32>),
    Assigned(BTreeSet<i32>),
}

/// Records rebalances for the consuming task; the callbacks run inside `recv`.
#[derive(Debug)]
pub struct ScorerContext {
    topic: String,
    events: Arc<Mutex<Vec<RebalanceEvent>>>,
}

impl ScorerContext {
    fn record(&self, tpl: &TopicPartitionList, event: fn(BTreeSet<i32>) -> RebalanceEvent) {
        let parts: BTreeSet<i32> = tpl
            .elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        if let Ok(mut events) = self.events.lock() {
            events.push(event(parts));
        }
    }
}

impl ClientContext for ScorerContext {}

impl ConsumerContext for ScorerContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.record(tpl, RebalanceEvent::Revoked);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.record(tpl, RebalanceEvent::Assigned),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
        }
    }
}

/// One consumed message.
#[derive(Debug)]
enum Body {
    Valid(Signal),
    Invalid {
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
        reason: String,
    },
}

#[derive(Debug)]
struct Item {
    partition: i32,
    offset: i64,
    body: Body,
    /// The producer's trace context (`traceparent`), empty when the message carries none.
    trace: HashMap<String, String>,
}

impl Item {
    /// Decodes a message; a signal observed more than `max_skew` after `now` is invalid too (a
    /// producer with a wrong clock would otherwise push its key's window into the future).
    fn from_message(m: &impl Message, now: DateTime<Utc>, max_skew: std::time::Duration) -> Self {
        let payload = m.payload().unwrap_or_default();
        let invalid = |reason: String| Body::Invalid {
            key: m.key().map(<[u8]>::to_vec),
            payload: payload.to_vec(),
            reason,
        };
        let skew = chrono::Duration::from_std(max_skew).unwrap_or(chrono::Duration::MAX);
        let body = match codec::decode_signal(payload) {
            Ok(s)
                if now
                    .checked_add_signed(skew)
                    .is_some_and(|limit| s.observed_at > limit) =>
            {
                invalid(format!(
                    "invalid: observed_at: {} is more than {} ahead of the scorer's clock ({now})",
                    s.observed_at,
                    humantime_serde::re::humantime::format_duration(max_skew)
                ))
            }
            Ok(s) => Body::Valid(s),
            Err(e) => invalid(e.reason()),
        };
        let trace = m
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .filter(|h| h.key == TRACEPARENT_HEADER)
                    .filter_map(|h| {
                        let value = std::str::from_utf8(h.value?).ok()?;
                        Some((h.key.to_owned(), value.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            partition: m.partition(),
            offset: m.offset(),
            body,
            trace,
        }
    }

    /// The span of a traced valid signal in the batch being scored: a child of the producer's
    /// `kafka.produce` span (so a probe's or a launch's trace reaches the scorer); `None` for
    /// a message without trace context.
    fn span(&self) -> Option<(CapacityKey, tracing::Span)> {
        let Body::Valid(signal) = &self.body else {
            return None;
        };
        if self.trace.is_empty() {
            return None;
        }
        let span = tracing::info_span!(
            parent: None,
            "scorer.signal",
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.kafka.partition = self.partition,
            messaging.kafka.offset = self.offset,
            signal_id = %signal.id,
            source = signal.source.as_str(),
            key = %signal.key,
        );
        capsight_runtime::telemetry::extract(&span, &self.trace);
        Some((signal.key.clone(), span))
    }
}

/// An invalid message on its way to the dead-letter topic.
#[derive(Debug)]
struct DeadLetter<'a> {
    partition: i32,
    offset: i64,
    key: Option<&'a [u8]>,
    payload: &'a [u8],
    reason: &'a str,
}

/// Counters since start, logged at shutdown.
#[derive(Debug, Default)]
struct Stats {
    messages: u64,
    dead_letters: u64,
    scores: u64,
    rebuilt_keys: u64,
    batches: u64,
}

/// The running scorer.
pub struct Pipeline {
    settings: ScorerSettings,
    trust: TrustSettings,
    kafka: KafkaSettings,
    topics: TopicNames,
    consumer: Arc<StreamConsumer<ScorerContext>>,
    producer: FutureProducer,
    store: Store,
    engine: Engine,
    events: Arc<Mutex<Vec<RebalanceEvent>>>,
    stats: Stats,
    logged_messages: Option<u64>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("settings", &self.settings)
            .field("topics", &self.topics)
            .field("keys", &self.engine.key_count())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn kafka_err(op: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> ScorerError {
    move |source| ScorerError::Kafka { op, source }
}

/// Evaluates the future expression `$op` until it succeeds; `None` when shutdown fired while it
/// kept failing. While it fails, `$liveness` is told the consumer is blocked on a sink. (A macro
/// rather than a function taking an async closure: those futures are not provably `Send`.)
macro_rules! retry {
    ($what:expr, $stage:expr, $backoff:expr, $shutdown:expr, $liveness:expr, $op:expr) => {{
        let mut attempt: u32 = 0;
        let outcome = loop {
            match $op.await {
                Ok(v) => break Some(v),
                Err(e) => {
                    $liveness.set_blocked(true);
                    attempt += 1;
                    metrics::counter!(crate::metrics::RETRIES_TOTAL.name, "stage" => $stage)
                        .increment(1);
                    warn!(error = %e, attempt, "{} failed; retrying", $what);
                    if $shutdown.is_triggered() {
                        break None;
                    }
                    let pause = $backoff.saturating_mul(attempt.min(30));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = $shutdown.wait() => break None,
                    }
                }
            }
        };
        $liveness.set_blocked(false);
        outcome
    }};
}

impl Pipeline {
    /// Creates the clients (nothing is contacted yet).
    pub fn new(config: &ScorerConfig) -> Result<Self, ScorerError> {
        let settings = config.scorer.clone();
        let events = Arc::new(Mutex::new(Vec::new()));
        let consumer = consumer(&config.kafka, &settings, &events)?;
        let producer = producer(&config.kafka, &settings)?;
        Ok(Self {
            engine: Engine::with_trust_settings(settings.clone(), &config.verdict, &config.trust),
            trust: config.trust.clone(),
            settings,
            kafka: config.kafka.clone(),
            topics: config.kafka.topics.clone(),
            consumer,
            producer,
            store: Store::new(&config.clickhouse)?,
            events,
            stats: Stats::default(),
            logged_messages: None,
        })
    }

    /// Starts the watchdog of this scorer's consumer (see the module contract); its health is
    /// what the scorer's health endpoint reports.
    pub fn watch(&self, shutdown: &Shutdown) -> Liveness {
        let stop = shutdown.clone();
        Watchdog::spawn(
            "scorer",
            self.topics.signals.clone(),
            Membership::Group(self.settings.group_id.clone()),
            &self.kafka,
            Arc::clone(&self.consumer) as _,
            async move { stop.wait().await },
        )
    }

    /// Drops the client and everything in flight (as on a full revocation: the committed
    /// offsets are replayed) and subscribes with a new client, a new group member.
    fn rejoin(&mut self, batch: &mut Vec<Item>, liveness: &Liveness) -> Result<(), ScorerError> {
        let dropped_messages = batch.len();
        batch.clear();
        self.apply_rebalances(batch);
        let dropped_keys = self.engine.clear();
        // the old client's callbacks (a revocation while it closes) must not reach the new one's
        // state: it keeps the old event list, the new client gets a fresh one
        self.events = Arc::new(Mutex::new(Vec::new()));
        let fresh = consumer(&self.kafka, &self.settings, &self.events)?;
        fresh
            .subscribe(&[&self.topics.signals])
            .map_err(kafka_err("subscribe"))?;
        let old = std::mem::replace(&mut self.consumer, Arc::clone(&fresh));
        liveness.replace(fresh);
        // closing may wait for a coordinator that does not answer: never on this task
        std::thread::spawn(move || drop(old));
        warn!(
            dropped_messages,
            dropped_keys, "scorer rejoined its group with a new consumer"
        );
        Ok(())
    }

    /// Consumes until `shutdown` fires, then drains (see the module contract).
    pub async fn run(mut self, shutdown: Shutdown, liveness: Liveness) -> Result<(), ScorerError> {
        self.consumer
            .subscribe(&[&self.topics.signals])
            .map_err(kafka_err("subscribe"))?;
        info!(
            topic = %self.topics.signals,
            group = %self.settings.group_id,
            window = ?self.settings.window,
            "scorer consuming"
        );
        let mut consumer = Arc::clone(&self.consumer);
        let mut batch: Vec<Item> = Vec::new();
        let mut started: Option<Instant> = None;
        let mut progress = tokio::time::interval(PROGRESS_EVERY);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut evictions = tokio::time::interval(
            self.settings
                .evict_interval
                .max(std::time::Duration::from_millis(100)),
        );
        evictions.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // the first tick is immediate: trust is loaded before the first batch is scored
        let mut trust_reloads = tokio::time::interval(self.trust.refresh_interval);
        trust_reloads.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tombstones: Vec<CapacityKey> = Vec::new();
        loop {
            let deadline = started.map(|s| s + self.settings.batch_max_interval);
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                _ = trust_reloads.tick() => self.reload_trust().await,
                _ = evictions.tick(), if !self.settings.evict_after.is_zero() => {
                    tombstones.extend(self.engine.evict_idle(Utc::now(), self.settings.evict_after));
                    tombstones = self.tombstone(tombstones).await;
                }
                _ = progress.tick() => {
                    if self.logged_messages != Some(self.stats.messages) {
                        self.logged_messages = Some(self.stats.messages);
                        self.log_progress("scorer progress");
                    }
                }
                recovery = liveness.recover_requested() => match recovery {
                    Recovery::Rejoin => {
                        self.rejoin(&mut batch, &liveness)?;
                        consumer = Arc::clone(&self.consumer);
                    }
                    Recovery::GiveUp(reason) => {
                        self.log_progress("scorer stalled");
                        return Err(ScorerError::Stalled(reason));
                    }
                },
                () = sleep_until(deadline) => {
                    self.flush(&mut batch, &shutdown, &liveness).await;
                }
                msg = consumer.recv() => {
                    self.apply_rebalances(&mut batch);
                    match msg {
                        Ok(m) => {
                            batch.push(Item::from_message(
                                &m,
                                Utc::now(),
                                self.settings.max_clock_skew,
                            ));
                            if batch.len() >= self.settings.batch_max_rows {
                                self.flush(&mut batch, &shutdown, &liveness).await;
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "consume failed; retrying");
                            tokio::time::sleep(self.settings.retry_backoff).await;
                        }
                    }
                }
            }
            if batch.is_empty() {
                started = None;
            } else if started.is_none() {
                started = Some(Instant::now());
            }
        }

        // drain: flush what is open, commit what is stored, deliver what is queued
        info!(
            open = batch.len(),
            "scorer stopping: flushing the open batch"
        );
        self.apply_rebalances(&mut batch);
        self.flush(&mut batch, &shutdown, &liveness).await;
        let c = Arc::clone(&self.consumer);
        match tokio::task::spawn_blocking(move || c.commit_consumer_state(CommitMode::Sync)).await?
        {
            Ok(()) => debug!("offsets committed"),
            Err(e) => debug!(error = %e, "final commit (nothing new to commit?)"),
        }
        let p = self.producer.clone();
        let timeout = self.settings.produce_timeout;
        if let Err(e) = tokio::task::spawn_blocking(move || p.flush(timeout)).await? {
            warn!(error = %e, "producer flush at shutdown");
        }
        self.log_progress("scorer stopped");
        // closing the consumer leaves the group: a blocking call
        drop(consumer);
        let Self { consumer, .. } = self;
        tokio::task::spawn_blocking(move || drop(consumer)).await?;
        Ok(())
    }

    /// Reloads every tenant's trust; keeps the previous one when ClickHouse does not answer.
    async fn reload_trust(&mut self) {
        match self.store.load_trust(&self.trust, Utc::now()).await {
            Ok(trust) => {
                debug!(tenants = trust.len(), "tenant trust reloaded");
                self.engine.set_trust(trust);
            }
            Err(e) => warn!(error = %e, "reloading tenant trust failed; keeping the previous"),
        }
    }

    /// One line with the counters since start.
    fn log_progress(&self, what: &'static str) {
        let s = &self.stats;
        info!(
            messages = s.messages,
            dead_letters = s.dead_letters,
            scores = s.scores,
            rebuilt_keys = s.rebuilt_keys,
            batches = s.batches,
            keys = self.engine.key_count(),
            observations = self.engine.observation_count(),
            "{what}"
        );
    }

    /// Applies rebalances recorded since the last call.
    fn apply_rebalances(&mut self, batch: &mut Vec<Item>) {
        let events: Vec<RebalanceEvent> = match self.events.lock() {
            Ok(mut e) => std::mem::take(&mut *e),
            Err(_) => return,
        };
        for event in events {
            let (RebalanceEvent::Revoked(parts) | RebalanceEvent::Assigned(parts)) = &event;
            let before = batch.len();
            if matches!(event, RebalanceEvent::Revoked(_)) {
                batch.retain(|i| !parts.contains(&i.partition));
            }
            let keys = self.engine.drop_partitions(parts);
            info!(
                ?event,
                dropped_keys = keys,
                dropped_messages = before - batch.len(),
                "rebalance"
            );
        }
    }

    /// Processes and writes a batch, then stores its offsets.
    async fn flush(&mut self, batch: &mut Vec<Item>, shutdown: &Shutdown, liveness: &Liveness) {
        // a revocation seen during the last poll may have taken some of these messages away
        self.apply_rebalances(batch);
        if batch.is_empty() {
            return;
        }
        let items = std::mem::take(batch);
        // traced signals get a span each, open until the batch is durable
        let traced: Vec<(CapacityKey, tracing::Span)> =
            items.iter().filter_map(Item::span).collect();
        let backoff = self.settings.retry_backoff;
        let valid: Vec<(i32, &Signal)> = items
            .iter()
            .filter_map(|i| match &i.body {
                Body::Valid(s) => Some((i.partition, s)),
                Body::Invalid { .. } => None,
            })
            .collect();

        // 1. rebuild the windows of keys seen for the first time since start/assignment
        let unseeded = self.engine.unseeded(valid.iter().map(|(_, s)| *s));
        if !unseeded.is_empty() {
            let store = self.store.clone();
            let window = self.settings.window;
            let loaded = retry!(
                "window rebuild",
                "window_rebuild",
                backoff,
                shutdown,
                liveness,
                async {
                    tokio::try_join!(
                        store.load_windows(&unseeded, window),
                        store.load_resume(&unseeded)
                    )
                }
            );
            let Some((loaded, mut resume)) = loaded else {
                warn!("shutdown during window rebuild: batch left for replay");
                return;
            };
            let partition_of: BTreeMap<&CapacityKey, i32> =
                valid.iter().map(|(p, s)| (&s.key, *p)).collect();
            let mut by_key: BTreeMap<CapacityKey, Vec<_>> =
                unseeded.keys().map(|k| (k.clone(), Vec::new())).collect();
            let rows = loaded.len();
            for (key, id, obs) in loaded {
                if let Some(v) = by_key.get_mut(&key) {
                    v.push((id, obs));
                }
            }
            for (key, stored) in by_key {
                let partition = partition_of.get(&key).copied().unwrap_or_default();
                let resume = resume.remove(&key).unwrap_or_default();
                self.engine.seed(key, partition, stored, resume);
            }
            self.stats.rebuilt_keys += unseeded.len() as u64;
            debug!(
                keys = unseeded.len(),
                rows, "windows rebuilt from ClickHouse"
            );
        }

        // 2. score
        let outputs = self.engine.apply(valid.iter().copied());
        // the score each traced signal moved, as a child span covering its durable write
        let moved: Vec<tracing::Span> = traced
            .iter()
            .filter_map(|(key, parent)| {
                let score = outputs.scores.iter().find(|s| &s.key == key)?;
                Some(tracing::info_span!(
                    parent: parent,
                    "scorer.score",
                    key = %key,
                    score = score.score,
                    label = score.label.as_str(),
                    confidence = score.confidence,
                ))
            })
            .collect();
        let rows = signal_rows(valid.iter().map(|(_, s)| *s), chrono::Utc::now());
        let dead: Vec<DeadLetter<'_>> = items
            .iter()
            .filter_map(|i| match &i.body {
                Body::Invalid {
                    key,
                    payload,
                    reason,
                } => Some(DeadLetter {
                    partition: i.partition,
                    offset: i.offset,
                    key: key.as_deref(),
                    payload,
                    reason,
                }),
                Body::Valid(_) => None,
            })
            .collect();

        // 3. write (idempotent), retried until durable; a stall meanwhile is the sink's, not
        // the consumer's
        let write_start = std::time::Instant::now();
        let written: Option<()> = retry!(
            "batch write",
            "batch_write",
            backoff,
            shutdown,
            liveness,
            self.write(&rows, &outputs, &dead)
        );
        if written.is_none() {
            warn!(
                messages = items.len(),
                "shutdown while writes were failing: batch left for replay"
            );
            return;
        }

        // 4. only now: store the offsets the batch covers
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for i in &items {
            let e = next.entry(i.partition).or_insert(i.offset + 1);
            *e = (*e).max(i.offset + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in &next {
            if let Err(e) =
                tpl.add_partition_offset(&self.topics.signals, *partition, Offset::Offset(*offset))
            {
                warn!(error = %e, partition, "cannot record an offset");
            }
        }
        if let Err(e) = self.consumer.store_offsets(&tpl) {
            // a partition was revoked meanwhile: its next owner replays it (idempotently)
            warn!(error = %e, "storing offsets failed");
        } else {
            for (partition, offset) in &next {
                liveness.processed(*partition, *offset);
            }
        }

        drop(moved);
        drop(traced);
        {
            use crate::metrics as m;
            metrics::histogram!(m::BATCH_WRITE_SECONDS.name).record(write_start.elapsed());
            #[allow(clippy::cast_precision_loss, reason = "batch sizes are small")]
            metrics::histogram!(m::BATCH_ROWS.name).record(items.len() as f64);
            metrics::counter!(m::MESSAGES_TOTAL.name, "outcome" => "valid")
                .increment(valid.len() as u64);
            metrics::counter!(m::MESSAGES_TOTAL.name, "outcome" => "dead_letter")
                .increment(dead.len() as u64);
            metrics::counter!(m::SCORES_PUBLISHED_TOTAL.name)
                .increment(outputs.scores.len() as u64);
            metrics::counter!(m::ALERTS_TOTAL.name).increment(outputs.alerts.len() as u64);
            #[allow(clippy::cast_precision_loss, reason = "a gauge")]
            metrics::gauge!(m::KEYS.name).set(self.engine.key_count() as f64);
            #[allow(clippy::cast_precision_loss, reason = "a timestamp gauge")]
            metrics::gauge!(m::LAST_BATCH_TIMESTAMP.name)
                .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        }
        self.stats.batches += 1;
        self.stats.messages += items.len() as u64;
        self.stats.dead_letters += dead.len() as u64;
        self.stats.scores += outputs.scores.len() as u64;
        debug!(
            messages = items.len(),
            dead_letters = dead.len(),
            scores = outputs.scores.len(),
            history = outputs.history.len(),
            alerts = outputs.alerts.len(),
            checks = outputs.checks.len(),
            keys = self.engine.key_count(),
            "batch written"
        );
    }

    /// Writes a batch to ClickHouse and Kafka concurrently; durable when it returns `Ok`.
    async fn write(
        &self,
        rows: &[capsight_clickhouse::rows::SignalRow],
        outputs: &Outputs,
        dead: &[DeadLetter<'_>],
    ) -> Result<(), ScorerError> {
        tokio::try_join!(self.store.write(rows, outputs), self.produce(outputs, dead)).map(|_| ())
    }

    /// Produces a tombstone for each evicted key; returns the keys whose tombstone the broker
    /// did not acknowledge (retried at the next sweep).
    async fn tombstone(&self, keys: Vec<CapacityKey>) -> Vec<CapacityKey> {
        if keys.is_empty() {
            return keys;
        }
        let timeout = Timeout::After(self.settings.produce_timeout);
        let names: Vec<String> = keys.iter().map(ToString::to_string).collect();
        let sent = futures::future::join_all(names.iter().map(|k| {
            self.producer.send(
                FutureRecord::<str, [u8]>::to(&self.topics.scores).key(k.as_str()),
                timeout,
            )
        }))
        .await;
        let mut failed = Vec::new();
        for (key, r) in keys.into_iter().zip(sent) {
            if let Err((e, _)) = r {
                warn!(%key, error = %e, "tombstoning an idle key failed; retrying next sweep");
                failed.push(key);
            }
        }
        info!(
            evicted = names.len() - failed.len(),
            keys = self.engine.key_count(),
            "idle keys evicted and tombstoned"
        );
        failed
    }

    /// Publishes the batch's scores and dead letters; returns when the broker acknowledged all.
    async fn produce(&self, outputs: &Outputs, dead: &[DeadLetter<'_>]) -> Result<(), ScorerError> {
        let timeout = Timeout::After(self.settings.produce_timeout);
        let scores: Vec<(String, Vec<u8>)> = outputs
            .scores
            .iter()
            .map(|s| (s.key.to_string(), codec::encode_score(s)))
            .collect();
        let score_sends = scores.iter().map(|(key, value)| {
            self.producer.send(
                FutureRecord::to(&self.topics.scores)
                    .key(key)
                    .payload(value),
                timeout,
            )
        });
        let sources: Vec<String> = dead
            .iter()
            .map(|d| format!("{}/{}/{}", self.topics.signals, d.partition, d.offset))
            .collect();
        let dead_sends = dead.iter().zip(&sources).map(|(d, source)| {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: DLQ_REASON_HEADER,
                    value: Some(d.reason),
                })
                .insert(Header {
                    key: DLQ_SOURCE_HEADER,
                    value: Some(source.as_str()),
                });
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topics.signals_dlq)
                    .payload(d.payload)
                    .headers(headers);
            if let Some(k) = d.key {
                record = record.key(k);
            }
            self.producer.send(record, timeout)
        });
        let start = std::time::Instant::now();
        let (scores_sent, dead_sent) = tokio::join!(
            futures::future::join_all(score_sends),
            futures::future::join_all(dead_sends)
        );
        let failed = scores_sent.iter().chain(&dead_sent).any(Result::is_err);
        capsight_runtime::metrics::dependency_call(
            "kafka",
            "produce",
            start,
            failed.then_some("produce"),
        );
        for r in scores_sent {
            r.map_err(|(source, _)| ScorerError::Produce {
                topic: self.topics.scores.clone(),
                source,
            })?;
        }
        for r in dead_sent {
            r.map_err(|(source, _)| ScorerError::Produce {
                topic: self.topics.signals_dlq.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// A consumer of the signals topic in the scorer's group, recording rebalances in `events`.
fn consumer(
    kafka: &KafkaSettings,
    settings: &ScorerSettings,
    events: &Arc<Mutex<Vec<RebalanceEvent>>>,
) -> Result<Arc<StreamConsumer<ScorerContext>>, ScorerError> {
    let context = ScorerContext {
        topic: kafka.topics.signals.clone(),
        events: Arc::clone(events),
    };
    kafka
        .consumer_config("scorer", &settings.group_id)
        .create_with_context(context)
        .map(Arc::new)
        .map_err(kafka_err("create consumer"))
}

/// The scores and dead-letter producer: idempotent, `acks=all`, deliveries bounded by
/// `produce_timeout`.
fn producer(
    kafka: &KafkaSettings,
    settings: &ScorerSettings,
) -> Result<FutureProducer, ScorerError> {
    let mut config = kafka.producer_config("scorer");
    let timeout_ms = settings.produce_timeout.as_millis().max(1).to_string();
    // the configured properties win, as everywhere
    if !kafka.properties.contains_key("message_timeout_ms")
        && !kafka.properties.contains_key("message.timeout.ms")
    {
        config.set("message.timeout.ms", timeout_ms);
    }
    config.create().map_err(kafka_err("create producer"))
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
