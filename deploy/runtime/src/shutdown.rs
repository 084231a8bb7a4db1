//! One shutdown signal per process.
//!
//! [`Shutdown`] is cheap to clone; every long-running task holds one and stops taking new work
//! when it fires, then drains in the order its component documents (stop intake, drain, flush
//! sinks, commit offsets, stop servers, flush telemetry). It fires on SIGINT or SIGTERM once
//! [`Shutdown::listen_for_signals`] is running, or when code calls [`Shutdown::trigger`].

use tokio_util::sync::CancellationToken;

/// A process-wide shutdown signal.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns a task that fires this signal on SIGINT or SIGTERM.
    pub fn listen_for_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let reason = wait_for_signal().await;
            tracing::info!(signal = reason, "shutdown requested");
            this.trigger();
        });
    }

    /// Fires the signal.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// True once fired.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves when the signal fires.
    pub async fn wait(&self) {
        self.token.cancelled().await;
    }

    /// The underlying token, for APIs that take one (e.g. `serve_with_shutdown`).
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "ctrl-c"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn clones_share_the_signal() {
        let a = Shutdown::new();
        let b = a.clone();
        assert!(!b.is_triggered());
        let waiter = tokio::spawn(async move { b.wait().await });
        a.trigger();
        waiter.await.unwrap();
        assert!(a.is_triggered());
    }
}
