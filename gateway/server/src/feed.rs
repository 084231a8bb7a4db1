//! The gateway's one feed of launch transitions, shared by every `WatchLaunch` stream.
//!
//! Contract: one task per gateway reads ClickHouse every `gateway.watch_poll_interval` while
//! anything is watched, with **one** query for all watched launches (each from the seq after
//! the newest it knows), and publishes each launch's transitions to its watchers through a
//! `watch` channel; the poll cost depends on the number of watched launches, never on the number
//! of watchers. A launch is keyed by (tenant, job id) and read with `tenant = ?` in SQL, so a
//! watcher only ever sees transitions of its own tenant's launch (the handler also checks that
//! the launch is the caller's before watching). A launch no stream watches any more, or that
//! reached a final state, is no longer read. A failed read ends every current watcher with the
//! error (the client watches again). [`LaunchFeed::polls`] counts the queries.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use capsight_clickhouse::rows::LaunchEventRow;
use capsight_launch::store::Store;
use capsight_proto::domain::LaunchState;
use futures::Stream;
use tokio::sync::{Notify, watch};

use crate::GatewayError;

/// How often an idle feed's task checks that the feed still exists.
const IDLE_CHECK: Duration = Duration::from_secs(10);

/// A launch as the feed keys it: (tenant, job id).
type Launch = (String, String);

/// What the feed knows of one launch.
#[derive(Debug, Default)]
struct Known {
    /// Its transitions so far, by seq without gaps or repeats.
    events: Vec<LaunchEventRow>,
    /// Set when the feed's read failed: every watcher ends with it.
    failed: Option<String>,
}

impl Known {
    /// The seq the next read starts from.
    fn next_seq(&self) -> u32 {
        self.events.last().map_or(0, |e| e.seq.saturating_add(1))
    }

    /// Appends the rows newer than the newest known (in seq order); true when any was new.
    fn extend(&mut self, rows: impl IntoIterator<Item = LaunchEventRow>) -> bool {
        let mut grew = false;
        for row in rows {
            if row.seq >= self.next_seq() {
                self.events.push(row);
                grew = true;
            }
        }
        grew
    }

    fn ended(&self) -> bool {
        self.events.last().is_some_and(|e| e.state.is_terminal())
    }
}

#[derive(Debug)]
struct Inner {
    store: Store,
    launches: Mutex<HashMap<Launch, watch::Sender<Arc<Known>>>>,
    polls: AtomicU64,
}

/// The shared launch feed (cheap to clone).
#[derive(Debug, Clone)]
pub struct LaunchFeed {
    inner: Arc<Inner>,
    wake: Arc<Notify>,
}

/// How long a watcher follows a launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Follow {
    /// Stop once the launch runs (as well as at a final state).
    pub until_running: bool,
    /// Stop after this long in any case.
    pub max_duration: Duration,
}

impl LaunchFeed {
    /// Starts the feed's task, reading `store` every `interval` while anything is watched; the
    /// task ends when the last clone of the feed is dropped.
    pub fn start(store: Store, interval: Duration) -> Self {
        let feed = Self {
            inner: Arc::new(Inner {
                store,
                launches: Mutex::new(HashMap::new()),
                polls: AtomicU64::new(0),
            }),
            wake: Arc::new(Notify::new()),
        };
        tokio::spawn(poll(
            Arc::downgrade(&feed.inner),
            Arc::clone(&feed.wake),
            interval,
        ));
        feed
    }

    /// How many reads of ClickHouse the feed has made.
    pub fn polls(&self) -> u64 {
        self.inner.polls.load(Ordering::Relaxed)
    }

    /// How many launches are watched now.
    pub fn watched(&self) -> usize {
        self.inner.launches.lock().map_or(0, |l| l.len())
    }

    /// The transitions of `tenant`'s launch `job_id` from the first on — `known` (read by the
    /// caller when it checked the launch is the tenant's), then as the feed reads them — until
    /// a final state (or `running` with `until_running`), `how.max_duration`, or a failed read
    /// (sent last).
    pub fn follow(
        &self,
        tenant: String,
        job_id: String,
        known: Vec<LaunchEventRow>,
        how: Follow,
    ) -> impl Stream<Item = Result<LaunchEventRow, GatewayError>> + Send + 'static {
        let rx = {
            let mut launches = self
                .inner
                .launches
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let sender = launches
                .entry((tenant, job_id))
                .or_insert_with(|| watch::channel(Arc::new(Known::default())).0);
            publish(sender, known);
            sender.subscribe()
        };
        self.wake.notify_one();
        let deadline = tokio::time::Instant::now() + how.max_duration;
        let state = Watcher {
            rx,
            sent: 0,
            done: false,
        };
        futures::stream::unfold(state, move |mut w| async move {
            let item = w.next(deadline, how.until_running).await?;
            Some((item, w))
        })
    }
}

/// One watcher's position in its launch's transitions.
struct Watcher {
    rx: watch::Receiver<Arc<Known>>,
    /// How many transitions it has sent.
    sent: usize,
    done: bool,
}

impl Watcher {
    async fn next(
        &mut self,
        deadline: tokio::time::Instant,
        until_running: bool,
    ) -> Option<Result<LaunchEventRow, GatewayError>> {
        if self.done {
            return None;
        }
        loop {
            let known = Arc::clone(&self.rx.borrow_and_update());
            if let Some(e) = known.events.get(self.sent) {
                self.sent += 1;
                self.done =
                    e.state.is_terminal() || (until_running && e.state == LaunchState::Running);
                return Some(Ok(e.clone()));
            }
            if let Some(why) = &known.failed {
                self.done = true;
                return Some(Err(GatewayError::unavailable("clickhouse", why)));
            }
            tokio::select! {
                changed = self.rx.changed() => {
                    if changed.is_err() {
                        // the feed forgot the launch (gateway stopping)
                        return None;
                    }
                }
                () = tokio::time::sleep_until(deadline) => return None,
            }
        }
    }
}

/// Adds `rows` newer than what `sender`'s watchers know, waking them when any was new.
fn publish(sender: &watch::Sender<Arc<Known>>, rows: Vec<LaunchEventRow>) {
    sender.send_if_modified(|k| {
        let mut next = Known {
            events: k.events.clone(),
            failed: None,
        };
        let grew = next.extend(rows);
        if grew {
            *k = Arc::new(next);
        }
        grew
    });
}

/// The feed's task: every `interval` while anything is watched, one read for all launches.
async fn poll(inner: Weak<Inner>, wake: Arc<Notify>, interval: Duration) {
    loop {
        let Some(feed) = inner.upgrade() else { return };
        let watched = {
            let mut launches = feed
                .launches
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // nobody watches it any more, or nothing more will happen to it
            launches.retain(|_, s| s.receiver_count() > 0 && !s.borrow().ended());
            launches
                .iter()
                .map(|((t, j), s)| (t.clone(), j.clone(), s.borrow().next_seq()))
                .collect::<Vec<_>>()
        };
        if watched.is_empty() {
            drop(feed);
            // woken by a new watcher; now and then to notice that the feed was dropped
            tokio::select! {
                () = wake.notified() => tokio::time::sleep(interval).await,
                () = tokio::time::sleep(IDLE_CHECK) => {}
            }
            continue;
        }
        feed.polls.fetch_add(1, Ordering::Relaxed);
        let read = feed.store.events_of(&watched).await;
        {
            let mut launches = feed
                .launches
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match read {
                Ok(rows) => {
                    let mut by_launch: HashMap<Launch, Vec<LaunchEventRow>> = HashMap::new();
                    for r in rows {
                        by_launch
                            .entry((r.tenant.clone(), r.job_id.clone()))
                            .or_default()
                            .push(r);
                    }
                    for (launch, rows) in by_launch {
                        if let Some(sender) = launches.get(&launch) {
                            publish(sender, rows);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "launch feed read failed; ending its watchers");
                    for (_, sender) in launches.drain() {
                        sender.send_modify(|k| {
                            *k = Arc::new(Known {
                                events: k.events.clone(),
                                failed: Some(e.to_string()),
                            });
                        });
                    }
                }
            }
        }
        drop(feed);
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use capsight_testkit::launches;

    use super::*;

    fn row(seq: u32, state: LaunchState) -> LaunchEventRow {
        let key = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let request = launches::request("j", "acme", &key, 1, chrono::Utc::now());
        launches::event(&request, seq, state)
    }

    #[test]
    fn known_keeps_each_seq_once_in_order() {
        let mut k = Known::default();
        assert_eq!(k.next_seq(), 0);
        assert!(k.extend([row(0, LaunchState::Queued), row(0, LaunchState::Queued)]));
        assert!(!k.extend([row(0, LaunchState::Queued)]));
        assert!(k.extend([
            row(1, LaunchState::Provisioning),
            row(2, LaunchState::Running)
        ]));
        assert_eq!(
            k.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(k.next_seq(), 3);
        assert!(!k.ended());
        assert!(k.extend([row(3, LaunchState::Terminated)]));
        assert!(k.ended());
    }
}
