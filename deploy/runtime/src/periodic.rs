//! Periodic work that stops with the process: run now, then every interval, until shutdown.

use std::{future::Future, time::Duration};

use crate::shutdown::Shutdown;

/// Runs `tick` at once and then every `interval` (missed ticks are delayed, not bunched) until
/// `shutdown` fires; with `once`, exactly one run. A tick in progress finishes before shutdown
/// is noticed.
pub async fn every<F, Fut>(interval: Duration, once: bool, shutdown: &Shutdown, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut timer = tokio::time::interval(interval.max(Duration::from_millis(10)));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait() => return,
            _ = timer.tick() => {
                tick().await;
                if once {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn runs_at_once_then_on_interval_until_shutdown() {
        let n = Arc::new(AtomicU32::new(0));
        let shutdown = Shutdown::new();
        let task = tokio::spawn({
            let (n, shutdown) = (n.clone(), shutdown.clone());
            async move {
                every(Duration::from_secs(60), false, &shutdown, || {
                    n.fetch_add(1, Ordering::SeqCst);
                    async {}
                })
                .await;
            }
        });
        tokio::time::sleep(Duration::from_secs(150)).await;
        assert_eq!(n.load(Ordering::SeqCst), 3, "t=0, 60, 120");
        shutdown.trigger();
        task.await.unwrap();
        let once = AtomicU32::new(0);
        every(Duration::from_secs(60), true, &Shutdown::new(), || {
            once.fetch_add(1, Ordering::SeqCst);
            async {}
        })
        .await;
        assert_eq!(once.load(Ordering::SeqCst), 1);
    }
}
