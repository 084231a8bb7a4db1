//! Liveness of a long-running consumer: its lag, its progress, and what to do when it stalls.
//!
//! A consumer that lost its group membership looks alive: the client keeps polling, nothing
//! fails, nothing arrives. A [`Watchdog`] task looks at it from outside every
//! `kafka.consumer.check_interval`:
//! * it reads the topic's high watermarks, the consumer's assignment and (for a group) the
//!   group's committed offsets, and combines them with the offsets the owner marked processed
//!   ([`Liveness::processed`]);
//! * the consumer's *own* partitions are those assigned to it (or, while a group member holds
//!   none, every partition of the topic); their lag is `high watermark - max(processed,
//!   committed)` and is what it reports as its lag;
//! * the *watched* partitions are its own, and for a group member every partition of the topic:
//!   somebody in the group should be consuming each, so the group's committed offsets on the
//!   partitions it does not hold count too. A member that holds part of the topic while a
//!   departed member still holds the rest (a rebalance that left them with a member that no
//!   longer consumes) sees its own partitions caught up and the rest standing still;
//! * **stalled** = lag > 0 on the watched partitions and no watched offset moved for
//!   `kafka.consumer.stall_after`, or
//!   the broker could not be asked for that long. [`Health`] turns [`Health::Stalled`] (logged
//!   once at ERROR) and the owner is asked to rejoin with a new client
//!   ([`Liveness::recover_requested`]); a group member's rejoin is helped by re-committing the
//!   group's committed offsets from a side client (see [`nudge`]: it unwedges a coordinator
//!   that kept a departed leader). The first progress turns it healthy again (logged once at
//!   WARN). After `max_recoveries` rejoins without progress in between the request becomes
//!   [`Recovery::GiveUp`]: the owner returns an
//!   error and its process exits non-zero for its supervisor, rather than hanging. A broker
//!   that does not answer at all makes the consumer unhealthy but asks nothing of the owner (a
//!   new client would not help; the client reconnects by itself when the broker is back).
//!
//! The decision is the pure [`StallDetector`]; the broker calls are in [`observe`], run on a
//! blocking thread.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer},
};
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};

use crate::KafkaSettings;

/// How the consumer gets its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// A member of this consumer group (`subscribe`): committed offsets count as progress, and
    /// every member watches the whole topic (see the module contract).
    Group(String),
    /// Partitions assigned by the owner (`assign`), no group offsets.
    Assigned,
}

impl Membership {
    fn is_group(&self) -> bool {
        matches!(self, Self::Group(_))
    }
}

/// A consumer's health, as its process reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Not yet observed.
    Starting,
    /// Caught up, or making progress.
    Healthy {
        /// Messages behind the high watermarks at the last check.
        lag: i64,
    },
    /// Lag and no progress (or no broker answer) for longer than `stall_after`.
    Stalled {
        /// Why, for health endpoints and logs.
        reason: String,
    },
}

impl Health {
    /// True unless stalled.
    pub fn is_healthy(&self) -> bool {
        !matches!(self, Self::Stalled { .. })
    }
}

/// What the watchdog asks of the consumer's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Drop the client and consume with a new one (a new group member).
    Rejoin,
    /// Rejoining did not help: stop with an error.
    GiveUp(String),
}

/// One look at a topic from a consumer's point of view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// High watermark per partition of the topic.
    pub high: BTreeMap<i32, i64>,
    /// Low watermark per partition (older messages are gone: nobody has to process them).
    pub low: BTreeMap<i32, i64>,
    /// The partitions assigned to this consumer.
    pub assigned: BTreeSet<i32>,
    /// The group's committed offset per partition (group members only; absent = none).
    pub committed: BTreeMap<i32, i64>,
}

/// Reads an [`Observation`] of `topic` through `consumer` (blocking broker calls).
pub fn observe<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    topic: &str,
    membership: &Membership,
    timeout: Duration,
) -> Result<Observation, rdkafka::error::KafkaError> {
    let meta = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = meta
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut obs = Observation::default();
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, timeout)?;
        obs.low.insert(*p, low);
        obs.high.insert(*p, high);
    }
    obs.assigned = consumer
        .assignment()?
        .elements_for_topic(topic)
        .iter()
        .map(|e| e.partition())
        .collect();
    if membership.is_group() && !partitions.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition(topic, *p);
        }
        for e in consumer.committed_offsets(tpl, timeout)?.elements() {
            if let Offset::Offset(o) = e.offset() {
                obs.committed.insert(e.partition(), o);
            }
        }
    }
    Ok(obs)
}

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No lag, or progress since the last check.
    Healthy {
        /// Messages behind.
        lag: i64,
    },
    /// Lag and no progress yet, for less than `stall_after`.
    Waiting {
        /// Messages behind.
        lag: i64,
    },
    /// Lag and no progress for `stall_after`.
    Stalled {
        /// Messages behind.
        lag: i64,
        /// The relevant partitions with lag.
        partitions: BTreeSet<i32>,
        /// Time since the last progress.
        idle: Duration,
    },
    /// The broker could not be asked for `stall_after`.
    Unobservable {
        /// The last error.
        error: String,
        /// Time since the last successful observation.
        idle: Duration,
    },
}

/// Decides, from successive observations, whether a consumer is stalled (pure; see the module
/// contract).
#[derive(Debug, Clone)]
pub struct StallDetector {
    stall_after: Duration,
    group: bool,
    marks: BTreeMap<i32, i64>,
    last_change: Instant,
    last_observed: Instant,
}

impl StallDetector {
    /// A detector that starts counting at `now`.
    pub fn new(stall_after: Duration, membership: &Membership, now: Instant) -> Self {
        Self {
            stall_after,
            group: membership.is_group(),
            marks: BTreeMap::new(),
            last_change: now,
            last_observed: now,
        }
    }

    /// Restarts the clock (after a rejoin: the new member gets a full `stall_after`).
    pub fn reset(&mut self, now: Instant) {
        self.last_change = now;
        self.last_observed = now;
    }

    /// Judges one observation, given the offsets the owner processed (next offset per
    /// partition).
    pub fn judge(
        &mut self,
        now: Instant,
        obs: &Observation,
        processed: &BTreeMap<i32, i64>,
    ) -> Verdict {
        self.last_observed = now;
        let mut lag = 0;
        let mut lagging = BTreeSet::new();
        let mut marks = BTreeMap::new();
        for (p, (high, done)) in watched(obs, processed, self.group) {
            if high > done {
                lag += high - done;
                lagging.insert(p);
            }
            marks.insert(p, done);
        }
        // progress: a relevant offset moved forward (a new partition counts as movement)
        let moved = marks
            .iter()
            .any(|(p, done)| self.marks.get(p).is_none_or(|before| done > before));
        self.marks = marks;
        if moved || lag == 0 {
            self.last_change = now;
            return Verdict::Healthy { lag };
        }
        let idle = now.saturating_duration_since(self.last_change);
        if idle >= self.stall_after {
            Verdict::Stalled {
                lag,
                partitions: lagging,
                idle,
            }
        } else {
            Verdict::Waiting { lag }
        }
    }

    /// Judges a failed observation.
    pub fn failed(&mut self, now: Instant, error: String) -> Option<Verdict> {
        let idle = now.saturating_duration_since(self.last_observed);
        (idle >= self.stall_after).then_some(Verdict::Unobservable { error, idle })
    }
}

/// The relevant partitions' (high watermark, next offset done) — done being the furthest of
/// processed, committed and the low watermark (see the module contract). A group member with no
/// partitions watches them all.
pub fn positions(
    obs: &Observation,
    processed: &BTreeMap<i32, i64>,
    group: bool,
) -> BTreeMap<i32, (i64, i64)> {
    let relevant: Vec<i32> = if obs.assigned.is_empty() && group {
        obs.high.keys().copied().collect()
    } else {
        obs.assigned.iter().copied().collect()
    };
    relevant
        .into_iter()
        .map(|p| {
            let high = obs.high.get(&p).copied().unwrap_or(0);
            let done = processed
                .get(&p)
                .copied()
                .max(obs.committed.get(&p).copied())
                .max(obs.low.get(&p).copied())
                .unwrap_or(0);
            (p, (high, done))
        })
        .collect()
}

/// The watched partitions' (high watermark, next offset done): the consumer's own
/// ([`positions`]) and, for a group member, every other partition of the topic, done there
/// being the furthest of the group's committed offset and the low watermark (see the module
/// contract).
pub fn watched(
    obs: &Observation,
    processed: &BTreeMap<i32, i64>,
    group: bool,
) -> BTreeMap<i32, (i64, i64)> {
    let mut watched = positions(obs, processed, group);
    if group {
        for (p, high) in &obs.high {
            watched.entry(*p).or_insert_with(|| {
                let done = obs
                    .committed
                    .get(p)
                    .copied()
                    .max(obs.low.get(p).copied())
                    .unwrap_or(0);
                (*high, done)
            });
        }
    }
    watched
}

/// A consumer group's backlog on a topic, seen from outside the group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Messages the group has yet to process: high watermark less the furthest of its
    /// committed offset and the low watermark, summed over partitions ([`positions`], as the
    /// group's own watchdog reckons it).
    pub lag: i64,
    /// Messages the topic holds now (high less low watermark, summed).
    pub held: i64,
    /// Partitions of the topic.
    pub partitions: usize,
}

/// The [`Backlog`] of `group` on `topic`, through a short-lived client that carries the
/// group's id but never joins it (blocking broker calls; run it on a blocking thread).
pub fn backlog(
    settings: &KafkaSettings,
    role: &str,
    topic: &str,
    group: &str,
    timeout: Duration,
) -> Result<Backlog, rdkafka::error::KafkaError> {
    let consumer: StreamConsumer = settings.consumer_config(role, group).create()?;
    let obs = observe(
        &consumer,
        topic,
        &Membership::Group(group.to_owned()),
        timeout,
    )?;
    let lag = positions(&obs, &BTreeMap::new(), true)
        .values()
        .map(|(high, done)| (high - done).max(0))
        .sum();
    let held = obs
        .high
        .iter()
        .map(|(p, high)| (high - obs.low.get(p).copied().unwrap_or(0)).max(0))
        .sum();
    Ok(Backlog {
        lag,
        held,
        partitions: obs.high.len(),
    })
}

capsight_runtime::declare_metrics! {
    /// Messages behind per partition, by consumer (its watchdog's name) and partition.
    CONSUMER_LAG = Gauge("capsight_consumer_lag_messages", ["consumer", "partition"], "Messages behind the high watermark per partition the consumer is responsible for");
    /// 1 while the watchdog judges the consumer stalled.
    CONSUMER_STALLED = Gauge("capsight_consumer_stalled", ["consumer"], "1 while the consumer is stalled (lag and no progress for kafka.consumer.stall_after)");
}

/// Sets [`CONSUMER_LAG`] for the partitions in `lags` and 0 for those `reported` before that
/// are no longer the consumer's; returns the partitions reported now.
fn report_lag(
    name: &'static str,
    lags: &BTreeMap<i32, (i64, i64)>,
    reported: &BTreeSet<i32>,
) -> BTreeSet<i32> {
    for p in reported.iter().filter(|p| !lags.contains_key(p)) {
        metrics::gauge!(CONSUMER_LAG.name, "consumer" => name, "partition" => p.to_string())
            .set(0.0);
    }
    for (p, (high, done)) in lags {
        #[allow(
            clippy::cast_precision_loss,
            reason = "a gauge; lags are far below 2^52"
        )]
        let lag = (high - done).max(0) as f64;
        metrics::gauge!(CONSUMER_LAG.name, "consumer" => name, "partition" => p.to_string())
            .set(lag);
    }
    lags.keys().copied().collect()
}

/// Something the watchdog can observe: the owner's current client.
pub trait Observe: Send + Sync {
    /// See [`observe`].
    fn observe(
        &self,
        topic: &str,
        membership: &Membership,
        timeout: Duration,
    ) -> Result<Observation, rdkafka::error::KafkaError>;
}

impl<C: ConsumerContext> Observe for StreamConsumer<C> {
    fn observe(
        &self,
        topic: &str,
        membership: &Membership,
        timeout: Duration,
    ) -> Result<Observation, rdkafka::error::KafkaError> {
        observe(self, topic, membership, timeout)
    }
}

/// The owner's side of a watchdog: report progress, swap clients, hear recovery requests.
#[derive(Clone)]
pub struct Liveness {
    name: &'static str,
    processed: Arc<Mutex<BTreeMap<i32, i64>>>,
    blocked: Arc<std::sync::atomic::AtomicBool>,
    client: Arc<watch::Sender<Arc<dyn Observe>>>,
    health: watch::Receiver<Health>,
    recovery: Arc<Mutex<Option<Recovery>>>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Liveness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Liveness")
            .field("name", &self.name)
            .field("health", &*self.health.borrow())
            .finish_non_exhaustive()
    }
}

impl Liveness {
    /// Records that every message of `partition` before `next_offset` is processed.
    pub fn processed(&self, partition: i32, next_offset: i64) {
        if let Ok(mut p) = self.processed.lock() {
            let e = p.entry(partition).or_insert(next_offset);
            *e = (*e).max(next_offset);
        }
    }

    /// Tells the watchdog that the owner is retrying a write to a sink (ClickHouse, a topic):
    /// no progress then is not the consumer's fault, so a stall is reported but no rejoin is
    /// asked for (a new client would not help, and giving up would make an outage a crash loop).
    pub fn set_blocked(&self, blocked: bool) {
        self.blocked
            .store(blocked, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_blocked(&self) -> bool {
        self.blocked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Hands the watchdog the owner's new client (after a rejoin).
    pub fn replace(&self, client: Arc<dyn Observe>) {
        self.client.send_replace(client);
    }

    /// The current health.
    pub fn health(&self) -> Health {
        self.health.borrow().clone()
    }

    /// The health as a health-endpoint check: the reason when stalled.
    pub fn check(&self) -> Result<(), String> {
        match self.health() {
            Health::Stalled { reason } => Err(reason),
            Health::Starting | Health::Healthy { .. } => Ok(()),
        }
    }

    /// Health changes, for health endpoints.
    pub fn watch_health(&self) -> watch::Receiver<Health> {
        self.health.clone()
    }

    /// Resolves when the watchdog asks the owner to act.
    pub async fn recover_requested(&self) -> Recovery {
        loop {
            let notified = self.wake.notified();
            if let Some(r) = self.recovery.lock().ok().and_then(|mut r| r.take()) {
                return r;
            }
            notified.await;
        }
    }
}

/// The task that checks a consumer (see the module contract).
#[derive(Debug)]
pub struct Watchdog;

/// Rejoin nudges: how many, how far apart.
const NUDGES: u32 = 15;
const NUDGE_EVERY: Duration = Duration::from_secs(1);

impl Watchdog {
    /// Starts watching `topic` through `client` until `stop` resolves; returns the owner's
    /// handle. `name` names the consumer in logs; `kafka` gives the timeouts
    /// (`[kafka.consumer]`, `request_timeout`) and, for a group, the nudge client's config.
    pub fn spawn(
        name: &'static str,
        topic: String,
        membership: Membership,
        kafka: &KafkaSettings,
        client: Arc<dyn Observe>,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Liveness {
        let (client_tx, mut client_rx) = watch::channel(client);
        let (health_tx, health_rx) = watch::channel(Health::Starting);
        let live = Liveness {
            name,
            processed: Arc::default(),
            blocked: Arc::default(),
            client: Arc::new(client_tx),
            health: health_rx,
            recovery: Arc::default(),
            wake: Arc::new(Notify::new()),
        };
        let owner = live.clone();
        let settings = kafka.consumer.clone();
        let request_timeout = kafka.request_timeout;
        let nudger = match &membership {
            Membership::Group(group) => {
                Some(kafka.consumer_config(&format!("{name}-nudge"), group))
            }
            Membership::Assigned => None,
        };
        tokio::spawn(async move {
            let mut detector =
                StallDetector::new(settings.stall_after, &membership, Instant::now());
            let mut rejoins = 0u32;
            let mut committed = BTreeMap::new();
            let mut reported = BTreeSet::new();
            let stalled = metrics::gauge!(CONSUMER_STALLED.name, "consumer" => name);
            let mut timer = tokio::time::interval(settings.check_interval);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => return,
                    _ = timer.tick() => {}
                }
                if client_rx.has_changed().unwrap_or(false) {
                    detector.reset(Instant::now());
                }
                let current = Arc::clone(&*client_rx.borrow_and_update());
                let (t, m) = (topic.clone(), membership.clone());
                let observed =
                    tokio::task::spawn_blocking(move || current.observe(&t, &m, request_timeout))
                        .await;
                let processed = owner.processed_offsets();
                let now = Instant::now();
                let verdict = match observed {
                    Ok(Ok(obs)) => {
                        committed.clone_from(&obs.committed);
                        let lags = positions(&obs, &processed, membership.is_group());
                        reported = report_lag(name, &lags, &reported);
                        Some(detector.judge(now, &obs, &processed))
                    }
                    Ok(Err(e)) => detector.failed(now, e.to_string()),
                    Err(e) => detector.failed(now, e.to_string()),
                };
                let was_healthy = health_tx.borrow().is_healthy();
                match verdict {
                    // no progress yet: a stalled consumer stays stalled until it moves
                    Some(Verdict::Waiting { lag }) if was_healthy => {
                        health_tx.send_replace(Health::Healthy { lag });
                    }
                    None | Some(Verdict::Waiting { .. }) => {}
                    Some(Verdict::Healthy { lag }) => {
                        if !was_healthy {
                            tracing::warn!(
                                consumer = name,
                                lag,
                                "consumer recovered: progressing again"
                            );
                        }
                        rejoins = 0;
                        health_tx.send_replace(Health::Healthy { lag });
                    }
                    Some(Verdict::Stalled {
                        lag,
                        partitions,
                        idle,
                    }) if owner.is_blocked() => {
                        if was_healthy {
                            tracing::error!(
                                consumer = name,
                                lag,
                                idle_s = idle.as_secs(),
                                "consumer stalled: its writes keep failing"
                            );
                        }
                        health_tx.send_replace(Health::Stalled {
                            reason: format!(
                                "{lag} messages behind on partitions {partitions:?} of {topic}: writes failing for {}s",
                                idle.as_secs()
                            ),
                        });
                    }
                    Some(Verdict::Stalled {
                        lag,
                        partitions,
                        idle,
                    }) => {
                        let reason = format!(
                            "{lag} messages behind on partitions {partitions:?} of {topic} and no progress for {}s",
                            idle.as_secs()
                        );
                        let ask = if rejoins < settings.max_recoveries {
                            rejoins += 1;
                            tracing::error!(
                                consumer = name,
                                lag,
                                ?partitions,
                                idle_s = idle.as_secs(),
                                rejoin = rejoins,
                                "consumer stalled: rejoining with a new client"
                            );
                            if let Some(config) = &nudger {
                                nudge(
                                    config.clone(),
                                    topic.clone(),
                                    committed.clone(),
                                    owner.clone(),
                                    processed,
                                );
                            }
                            Recovery::Rejoin
                        } else {
                            tracing::error!(
                                consumer = name,
                                lag,
                                ?partitions,
                                idle_s = idle.as_secs(),
                                "consumer stalled after {rejoins} rejoins: giving up"
                            );
                            Recovery::GiveUp(reason.clone())
                        };
                        health_tx.send_replace(Health::Stalled { reason });
                        owner.request(ask);
                        detector.reset(now);
                    }
                    Some(Verdict::Unobservable { error, idle }) => {
                        if was_healthy {
                            tracing::error!(consumer = name, %error, idle_s = idle.as_secs(), "consumer stalled: the broker does not answer");
                        }
                        health_tx.send_replace(Health::Stalled {
                            reason: format!(
                                "the broker has not answered for {}s: {error}",
                                idle.as_secs()
                            ),
                        });
                    }
                }
                stalled.set(if health_tx.borrow().is_healthy() {
                    0.0
                } else {
                    1.0
                });
            }
        });
        live
    }
}

/// While a stalled group member rejoins, re-commits the group's committed offsets (a no-op for
/// the group's position) from a separate client, once a second, until the owner processes
/// something or [`NUDGES`] were sent. A group coordinator that kept a departed member as the
/// group's leader makes every joiner wait for it forever; tansu 0.6.0 does so after a session
/// timeout, and only a write to the group from another connection while a joiner waits makes
/// it reload the group without that leader (`docs/adr/0004-consumer-liveness.md`). Kafka
/// refuses or ignores such a commit while the group has members; either way nothing moves.
fn nudge(
    config: ClientConfig,
    topic: String,
    committed: BTreeMap<i32, i64>,
    owner: Liveness,
    processed_before: BTreeMap<i32, i64>,
) {
    if committed.is_empty() {
        return;
    }
    tokio::task::spawn_blocking(move || {
        let Ok(client) = config.create::<BaseConsumer>() else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &committed {
            if tpl
                .add_partition_offset(&topic, *p, Offset::Offset(*o))
                .is_err()
            {
                return;
            }
        }
        for _ in 0..NUDGES {
            if owner.processed_offsets() != processed_before {
                break;
            }
            if let Err(e) = client.commit(&tpl, CommitMode::Sync) {
                tracing::debug!(error = %e, "group nudge refused");
            }
            std::thread::sleep(NUDGE_EVERY);
        }
        // leaves nothing behind: the client never joined the group
        drop(client);
    });
}

impl Liveness {
    fn processed_offsets(&self) -> BTreeMap<i32, i64> {
        self.processed.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn request(&self, r: Recovery) {
        if let Ok(mut slot) = self.recovery.lock() {
            *slot = Some(r);
        }
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(high: &[(i32, i64)], assigned: &[i32], committed: &[(i32, i64)]) -> Observation {
        Observation {
            high: high.iter().copied().collect(),
            low: BTreeMap::new(),
            assigned: assigned.iter().copied().collect(),
            committed: committed.iter().copied().collect(),
        }
    }

    const STALL: Duration = Duration::from_secs(120);

    #[test]
    fn lag_without_progress_for_stall_after_is_a_stall() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(STALL, &Membership::Group("g".into()), t0);
        let o = obs(&[(0, 100), (1, 50)], &[0, 1], &[(0, 40)]);
        let done = BTreeMap::from([(0, 60), (1, 50)]);
        assert_eq!(d.judge(t0, &o, &done), Verdict::Healthy { lag: 40 });
        assert_eq!(
            d.judge(t0 + Duration::from_secs(60), &o, &done),
            Verdict::Waiting { lag: 40 }
        );
        let v = d.judge(t0 + Duration::from_secs(121), &o, &done);
        assert!(
            matches!(&v, Verdict::Stalled { lag: 40, partitions, .. } if partitions == &BTreeSet::from([0])),
            "{v:?}"
        );
    }

    #[test]
    fn progress_or_no_lag_keeps_it_healthy() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(STALL, &Membership::Group("g".into()), t0);
        let o = obs(&[(0, 100)], &[0], &[]);
        for step in 1..10 {
            let done = BTreeMap::from([(0, step * 5)]);
            let v = d.judge(t0 + STALL * step as u32, &o, &done);
            assert!(matches!(v, Verdict::Healthy { .. }), "{v:?}");
        }
        // caught up: no stall however long nothing arrives
        let caught_up = BTreeMap::from([(0, 100)]);
        for step in 10..15 {
            assert_eq!(
                d.judge(t0 + STALL * step, &o, &caught_up),
                Verdict::Healthy { lag: 0 }
            );
        }
    }

    #[test]
    fn a_member_without_partitions_watches_the_group() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(STALL, &Membership::Group("g".into()), t0);
        // revoked and never reassigned while the group's committed offsets stand still
        let o = obs(&[(0, 100), (1, 100)], &[], &[(0, 90), (1, 100)]);
        let none = BTreeMap::new();
        assert_eq!(d.judge(t0, &o, &none), Verdict::Healthy { lag: 10 });
        assert!(matches!(
            d.judge(t0 + STALL, &o, &none),
            Verdict::Stalled { lag: 10, .. }
        ));
        // another member consumes (committed moves): the group progresses, no stall
        let mut d = StallDetector::new(STALL, &Membership::Group("g".into()), t0);
        for step in 0..5 {
            let o = obs(&[(0, 100)], &[], &[(0, 50 + step)]);
            let v = d.judge(t0 + STALL * step as u32, &o, &none);
            assert!(matches!(v, Verdict::Healthy { .. }), "{v:?}");
        }
    }

    #[test]
    fn a_member_watches_the_partitions_a_departed_member_kept() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(STALL, &Membership::Group("g".into()), t0);
        // it holds 0 and 1, caught up; 2 and 3 are held by a member that no longer consumes
        let o = obs(
            &[(0, 10), (1, 10), (2, 50), (3, 40)],
            &[0, 1],
            &[(0, 10), (1, 10), (2, 20), (3, 40)],
        );
        let done = BTreeMap::from([(0, 10), (1, 10)]);
        assert_eq!(d.judge(t0, &o, &done), Verdict::Healthy { lag: 30 });
        let v = d.judge(t0 + STALL, &o, &done);
        assert!(
            matches!(&v, Verdict::Stalled { lag: 30, partitions, .. } if partitions == &BTreeSet::from([2])),
            "{v:?}"
        );
        // its own lag (what it reports) stays its own partitions'
        assert!(positions(&o, &done, true).keys().eq([0, 1].iter()));
        // the other member consumes partition 2: the group progresses, no stall
        let mut d = StallDetector::new(STALL, &Membership::Group("g".into()), t0);
        for step in 0..5 {
            let o = obs(&[(0, 10), (2, 50)], &[0], &[(0, 10), (2, 20 + step)]);
            let v = d.judge(t0 + STALL * step as u32, &o, &done);
            assert!(matches!(v, Verdict::Healthy { .. }), "{v:?}");
        }
        // an assigned reader never watches partitions it was not given
        let mut d = StallDetector::new(STALL, &Membership::Assigned, t0);
        assert_eq!(d.judge(t0 + STALL, &o, &done), Verdict::Healthy { lag: 0 });
    }

    #[test]
    fn messages_gone_by_retention_are_not_lag() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(STALL, &Membership::Group("g".into()), t0);
        let mut o = obs(&[(0, 100)], &[0], &[]);
        o.low.insert(0, 100);
        assert_eq!(
            d.judge(t0 + STALL * 3, &o, &BTreeMap::new()),
            Verdict::Healthy { lag: 0 }
        );
    }

    #[test]
    fn an_assigned_reader_only_counts_its_own_partitions() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(STALL, &Membership::Assigned, t0);
        // nothing assigned yet: nothing to be behind on
        let o = obs(&[(0, 100)], &[], &[]);
        assert_eq!(
            d.judge(t0 + STALL * 2, &o, &BTreeMap::new()),
            Verdict::Healthy { lag: 0 }
        );
    }

    /// A client whose observation the test sets.
    struct Fixed(Mutex<Observation>);

    impl Observe for Fixed {
        fn observe(
            &self,
            _: &str,
            _: &Membership,
            _: Duration,
        ) -> Result<Observation, rdkafka::error::KafkaError> {
            Ok(self.0.lock().unwrap().clone())
        }
    }

    #[tokio::test]
    async fn the_watchdog_asks_for_rejoins_then_gives_up_and_progress_heals() {
        let mut kafka = KafkaSettings::default();
        kafka.consumer.stall_after = Duration::from_millis(300);
        kafka.consumer.check_interval = Duration::from_millis(20);
        kafka.consumer.max_recoveries = 1;
        let client = Arc::new(Fixed(Mutex::new(obs(&[(0, 100)], &[0], &[]))));
        let stop = never();
        let live = Watchdog::spawn(
            "test",
            "t".into(),
            Membership::Assigned,
            &kafka,
            Arc::clone(&client) as _,
            stop,
        );
        live.processed(0, 10);
        // lag 90 and no progress: unhealthy, then a rejoin is asked for
        let asked = tokio::time::timeout(Duration::from_secs(5), live.recover_requested())
            .await
            .unwrap();
        assert_eq!(asked, Recovery::Rejoin);
        assert!(!live.health().is_healthy(), "{:?}", live.health());
        // progress after the rejoin heals
        live.replace(Arc::clone(&client) as _);
        live.processed(0, 50);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !live.health().is_healthy() {
            assert!(Instant::now() < deadline, "still {:?}", live.health());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // stuck again: one rejoin allowed, then give up
        let asked = tokio::time::timeout(Duration::from_secs(5), live.recover_requested())
            .await
            .unwrap();
        assert_eq!(asked, Recovery::Rejoin);
        let asked = tokio::time::timeout(Duration::from_secs(5), live.recover_requested())
            .await
            .unwrap();
        assert!(
            matches!(asked, Recovery::GiveUp(ref r) if r.contains("50 messages behind")),
            "{asked:?}"
        );
    }

    #[tokio::test]
    async fn a_consumer_blocked_on_its_sink_is_unhealthy_but_not_rejoined() {
        let mut kafka = KafkaSettings::default();
        kafka.consumer.stall_after = Duration::from_millis(200);
        kafka.consumer.check_interval = Duration::from_millis(20);
        let client = Arc::new(Fixed(Mutex::new(obs(&[(0, 100)], &[0], &[]))));
        let live = Watchdog::spawn(
            "test",
            "t".into(),
            Membership::Assigned,
            &kafka,
            client as _,
            never(),
        );
        live.processed(0, 10);
        live.set_blocked(true);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!live.health().is_healthy(), "{:?}", live.health());
        assert!(
            live.check().unwrap_err().contains("writes failing"),
            "{:?}",
            live.health()
        );
        let asked =
            tokio::time::timeout(Duration::from_millis(300), live.recover_requested()).await;
        assert!(
            asked.is_err(),
            "asked for {asked:?} while the sink was down"
        );
    }

    fn never() -> impl std::future::Future<Output = ()> + Send + 'static {
        std::future::pending()
    }

    #[test]
    fn a_silent_broker_is_a_stall_after_stall_after() {
        let t0 = Instant::now();
        let mut d = StallDetector::new(STALL, &Membership::Group("g".into()), t0);
        assert_eq!(d.failed(t0 + Duration::from_secs(10), "down".into()), None);
        assert!(matches!(
            d.failed(t0 + STALL, "down".into()),
            Some(Verdict::Unobservable { .. })
        ));
        d.reset(t0 + STALL);
        assert_eq!(
            d.failed(t0 + STALL + Duration::from_secs(1), "down".into()),
            None
        );
    }
}
