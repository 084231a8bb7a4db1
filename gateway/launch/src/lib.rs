//! `capsight-launch`: the launch core both the gateway (Preflight, Alternatives, Launch) and the
//! launcher (fallbacks) stand on, with no gRPC server and no worker in it.
//!
//! * [`ids`]: typed job ids and the client tokens derived from them;
//! * [`spec`]: a launch request (`LaunchSpec`, `Constraints`) to validated values, checked
//!   against the GPU catalog, every rejection naming the field;
//! * [`alternatives`]: the ranking of where else to launch (same or better GPU, allowed
//!   markets and regions, label and price), pure;
//! * [`store`]: the one store of launches in ClickHouse (`launch_requests`, `launch_events`,
//!   `launch_cancellations`, `launch_activity`) the gateway records and reads them with and the
//!   launcher drives them with ([`locks`] serialises one job's writers in a process,
//!   [`lease`] across launcher replicas);
//! * [`queue`]: the confirm-mode publisher of launch jobs to RabbitMQ;
//! * [`quota`]: the tenant GPU quota, decided the same way by Preflight, Launch and the
//!   launcher;
//! * [`submit`]: the use case behind `LaunchService.Launch` (validate, idempotency, record,
//!   enqueue);
//! * [`outbox`]: accepted jobs reach the queue exactly once in effect (the gateway's dispatch,
//!   the launchers' sweep of undispatched jobs);
//! * [`manage`]: the use cases behind reading, cancelling and heartbeating a launch;
//! * [`usage`]: GPU-hours per tenant and market by month;
//! * [`metrics`]: transitions, time in state and fallbacks, recorded by the store.
//!
//! The launch state itself is a domain type ([`capsight_proto::domain::LaunchState`]), stored
//! by name in ClickHouse `launch_events`.

pub mod alternatives;
pub mod ids;
pub mod lease;
pub mod locks;
pub mod manage;
pub mod metrics;
pub mod outbox;
pub mod queue;
pub mod quota;
pub mod spec;
pub mod store;
pub mod submit;
pub mod usage;

pub use ids::JobId;
