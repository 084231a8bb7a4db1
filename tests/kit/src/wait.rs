//! Waiting for the stack to reach a state: [`eventually`] (a test's expectation, panics when it
//! is not met in time) and [`poll`] (a question, answered `None` when time runs out).
//!
//! A check answers with an [`Attempt`]: `Some(value)` / `Ok(value)` ends the wait, `None` /
//! `Err(why)` tries again; the last `why` is part of the panic message.

use std::{fmt::Debug, future::Future, time::Duration};

use tokio::time::Instant;

/// The interval of [`eventually`].
pub const EVERY: Duration = Duration::from_millis(200);

/// One try of a wait: done with a value, or not yet (and why).
pub trait Attempt {
    /// What a successful try yields.
    type Value;
    /// The value, or why not yet.
    fn settle(self) -> Result<Self::Value, String>;
}

impl<T> Attempt for Option<T> {
    type Value = T;
    fn settle(self) -> Result<T, String> {
        self.ok_or_else(|| "not yet".to_owned())
    }
}

impl<T, E: Debug> Attempt for Result<T, E> {
    type Value = T;
    fn settle(self) -> Result<T, String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

/// Tries `check` every 200 ms until it succeeds; panics naming `what` after `limit`.
pub async fn eventually<A, F, Fut>(limit: Duration, what: &str, check: F) -> A::Value
where
    A: Attempt,
    F: FnMut() -> Fut,
    Fut: Future<Output = A>,
{
    eventually_every(EVERY, limit, what, check).await
}

/// [`eventually`], trying every `every`.
pub async fn eventually_every<A, F, Fut>(
    every: Duration,
    limit: Duration,
    what: &str,
    check: F,
) -> A::Value
where
    A: Attempt,
    F: FnMut() -> Fut,
    Fut: Future<Output = A>,
{
    retry(every, limit, check)
        .await
        .unwrap_or_else(|why| panic!("timed out after {limit:?} waiting for {what}; last: {why}"))
}

/// Tries `check` every 100 ms until it succeeds or `limit` passes.
pub async fn poll<A, F, Fut>(limit: Duration, check: F) -> Option<A::Value>
where
    A: Attempt,
    F: FnMut() -> Fut,
    Fut: Future<Output = A>,
{
    retry(Duration::from_millis(100), limit, check).await.ok()
}

/// Tries `check` every `every` until it succeeds (its value) or `limit` passed after a try
/// (why the last try failed). A try that is still pending when `limit` has passed is abandoned
/// (a connection attempt to a service that accepts but never answers must not hang the test).
async fn retry<A, F, Fut>(
    every: Duration,
    limit: Duration,
    mut check: F,
) -> Result<A::Value, String>
where
    A: Attempt,
    F: FnMut() -> Fut,
    Fut: Future<Output = A>,
{
    let deadline = Instant::now() + limit;
    loop {
        // a try gets at least a second, even when it starts just before the deadline
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let why = match tokio::time::timeout(budget, check()).await {
            Ok(attempt) => match attempt.settle() {
                Ok(v) => return Ok(v),
                Err(why) => why,
            },
            Err(_) => format!("a try still pending after {budget:?}"),
        };
        if Instant::now() >= deadline {
            return Err(why);
        }
        tokio::time::sleep(every).await;
    }
}
