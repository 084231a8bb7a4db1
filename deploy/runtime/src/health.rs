//! A process's HTTP health endpoint, for supervisors (Kubernetes liveness probes, systemd
//! watchdogs, load balancers).
//!
//! `GET /healthz` answers `200 ok` while every registered check passes and `503` with one line
//! per failing check otherwise. Checks are closures the owning components provide (e.g. a
//! consumer's liveness); the endpoint holds no state of its own. It serves until the shutdown
//! signal fires.

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, extract::State, http::StatusCode, routing::get};

use crate::shutdown::Shutdown;

/// One named check: `Ok(())` when healthy, `Err(reason)` otherwise.
pub type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Runs every check; the failures as `name: reason` lines.
pub fn failures(checks: &[(&'static str, Check)]) -> Vec<String> {
    checks
        .iter()
        .filter_map(|(name, check)| check().err().map(|reason| format!("{name}: {reason}")))
        .collect()
}

/// Serves `app` on `listener` in a background task until `shutdown` fires; a server error is
/// logged as `"{what} endpoint stopped"`.
pub(crate) fn spawn_server(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: Shutdown,
    what: &'static str,
) {
    tokio::spawn(async move {
        let stop = async move { shutdown.wait().await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!(error = %e, "{what} endpoint stopped");
        }
    });
}

async fn healthz(State(checks): State<Arc<Vec<(&'static str, Check)>>>) -> (StatusCode, String) {
    let failed = failures(&checks);
    if failed.is_empty() {
        (StatusCode::OK, "ok\n".into())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, failed.join("\n") + "\n")
    }
}

/// Binds `listen` (port 0 = any free port) and serves `/healthz` in a background task until
/// `shutdown` fires; returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    checks: Vec<(&'static str, Check)>,
    shutdown: Shutdown,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .with_state(Arc::new(checks));
    spawn_server(listener, app, shutdown, "health");
    tracing::info!(%addr, "health endpoint: GET /healthz");
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_checks_are_named() {
        let ok: Check = Arc::new(|| Ok(()));
        let bad: Check = Arc::new(|| Err("stalled".into()));
        assert!(failures(&[("a", ok.clone())]).is_empty());
        assert_eq!(failures(&[("a", ok), ("b", bad)]), vec!["b: stalled"]);
    }
}
