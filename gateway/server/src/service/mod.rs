//! The tonic services. Each RPC: admit the caller (API key + rate limit), validate the request
//! into domain values, call the use case, convert back. Errors are [`GatewayError`]s, turned
//! into a `Status` by `From` in `error.rs` (the only mapping).
//!
//! The admission and the mapping are [`Api::serve`]'s, once for every RPC: an RPC's own logic
//! is the [`Rpc`] impl of its request message, and `rpcs!` declares a service's tonic trait
//! impl as the list of its RPCs (method, request, response).
//!
//! One file per service: `scores.rs` (`ScoreService`), `preflight.rs` (`PreflightService`),
//! `launches.rs` (`LaunchService`, over the launch core's `submit` and `manage`), `reports.rs`
//! (`ReportService`), `notifications.rs` (`NotificationService`, over `capsight_notify::manage`).

mod launches;
mod notifications;
mod preflight;
mod reports;
mod scores;

use std::{pin::Pin, sync::Arc};

use capsight_proto::domain::FieldError;
use chrono::{DateTime, Utc};
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::{Core, GatewayError, auth::Caller};

type Result<T> = std::result::Result<T, Status>;
type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send + 'static>>;

/// Every capsight gRPC service over one shared core.
#[derive(Debug, Clone)]
pub struct Api {
    core: Arc<Core>,
}

impl Api {
    /// Over `core`.
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// Admits the caller of `request` (API key, rate limit; `UNAVAILABLE` until the scores
    /// view is ready for an RPC that reads it) and answers with the request's [`Rpc::answer`].
    pub(crate) async fn serve<R: Rpc>(&self, request: Request<R>) -> Result<Response<R::Reply>> {
        let caller = self.core.tenancy.admit(&request)?;
        if R::READS_VIEW && !self.core.view.is_ready() {
            return Err(GatewayError::NotReady.into());
        }
        let reply = request.into_inner().answer(&self.core, caller).await?;
        Ok(Response::new(reply))
    }
}

/// What an RPC answers, or why not.
pub(crate) type Answer<T> = std::result::Result<T, GatewayError>;

/// An RPC, implemented on its request message: what it answers an admitted caller.
pub(crate) trait Rpc: Send + Sized + 'static {
    /// The response message, or the stream of them.
    type Reply: Send;

    /// Whether it reads the scores view, so that it waits until the view is ready.
    const READS_VIEW: bool = false;

    /// The answer to this request of `caller`.
    fn answer(
        self,
        core: &Core,
        caller: Caller,
    ) -> impl Future<Output = Answer<Self::Reply>> + Send;
}

/// `impl $service for Api`: each RPC (its method, request and response message, or stream
/// type named after `as`) served by [`Api::serve`] with its request's [`Rpc`] impl.
macro_rules! rpcs {
    ($service:ident { $($rpc:ident($req:ty) -> $reply:ty $(as $stream:ident)?;)* }) => {
        #[tonic::async_trait]
        impl $service for Api {
            $($(type $stream = $reply;)?)*
            $(
                async fn $rpc(&self, request: Request<$req>) -> Result<Response<$reply>> {
                    self.serve(request).await
                }
            )*
        }
    };
}
use rpcs;

/// Seconds/nanos to a protobuf timestamp.
pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn from_ts(
    field: &str,
    t: &prost_types::Timestamp,
) -> std::result::Result<DateTime<Utc>, FieldError> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|n| DateTime::from_timestamp(t.seconds, n))
        .ok_or_else(|| FieldError::new(field, "is not a valid timestamp"))
}

fn secs_ms(secs: u32, ms: u16) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(secs), u32::from(ms) * 1_000_000).unwrap_or_default()
}
