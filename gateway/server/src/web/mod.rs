//! The web dashboard's HTTP surface: a second listener of the gateway (`gateway.web_listen`,
//! loopback by default) serving the embedded single-page app and its JSON + Server-Sent Events
//! API.
//!
//! Contract — one implementation of each decision: every API route is mapped onto the gRPC
//! service methods of [`Api`] in-process ([`api`]): the browser's `Authorization: Bearer <key>`
//! header becomes the `authorization` metadata of a `tonic::Request`, so admission (key, the
//! tenant's rate limit), request validation, tenancy filters, open-stream slots and error codes
//! are exactly gRPC's; a `tonic::Status` becomes an HTTP status and a JSON `{code, message}` body
//! ([`error`]). Live views are SSE streams over `WatchScores` and `WatchLaunch`, holding their
//! tenant's stream slot until the browser goes away or the gateway shuts down. The one read that
//! has no RPC (GPU-hours of this month) is admitted by the same [`crate::auth::Tenancy`] and
//! filtered on the admitted tenant in SQL. The key is never read from a URL.
//!
//! The operator's and analysts' routes ([`operator`]) need the operator credential, never a
//! tenant key; they read the pipeline's health from ClickHouse and the broker with the
//! statements and the lag reckoning the services themselves use.
//!
//! Assets ([`assets`]) are compiled into the binary from `gateway/server/web/`: no CDN, no build
//! step, the dashboard works offline.

mod api;
mod assets;
mod error;
mod json;
mod operator;

use std::{net::SocketAddr, sync::Arc};

use capsight_runtime::shutdown::Shutdown;
use serde::{Deserialize, Deserializer};

use crate::{Core, GatewayError, service::Api};

pub use operator::OperatorSources;

/// Binds `listen` and serves the dashboard until `shutdown` fires; the bound address.
pub async fn serve(
    api: Api,
    core: Arc<Core>,
    sources: OperatorSources,
    listen: SocketAddr,
    shutdown: Shutdown,
) -> Result<SocketAddr, GatewayError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| GatewayError::Internal(format!("bind web dashboard {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| GatewayError::Internal(format!("web dashboard address: {e}")))?;
    let web = api::Web::new(api, core, sources, shutdown.clone());
    let router = api::router(web.clone())
        .merge(operator::router(web))
        .merge(assets::router())
        .layer(axum::middleware::from_fn(
            capsight_runtime::metrics::track_http,
        ));
    tracing::info!(%addr, "capsight web dashboard listening");
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "web dashboard server failed");
        }
    });
    Ok(addr)
}

/// `gateway.web_listen`: a socket address, or `""` for none.
pub fn optional_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.trim()
        .parse()
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("web_listen {text:?}: {e}")))
}
