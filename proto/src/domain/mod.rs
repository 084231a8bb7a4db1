//! Validated domain types. Every value here has passed the checks of its `TryFrom` conversion
//! from the wire type, so code that holds one never re-validates it.

/// Declares a validated text newtype (serialized as its text) with `as_str` and `Display`;
/// values are made only by the type's own checks (`parse`, ...).
macro_rules! text_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        pub struct $name(String);

        impl $name {
            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

mod enums;
mod error;
mod key;
mod redact;
mod score;
mod signal;
mod step;
mod time;
mod verdict;

pub use enums::{
    CrowdReportKind, ErrorClass, Feature, InstanceEventKind, Label, LaunchOutcome, LaunchState,
    Market, ProbeMethod, SignalSource, StatusSeverity, StockLevel, launch_state_text,
};
pub use error::FieldError;
pub use key::{CapacityKey, InstanceType, Provider, RUNPOD_CLOUDS, Region, ZoneId};
pub use redact::redact;
pub use score::{Evidence, Score};
pub use signal::{
    Availability, CapacityBlockOffer, CrowdReport, InstanceEvent, LaunchAttempt, OfferingExposure,
    Payload, PlacementScore, QuotaReading, Signal, SignalId, SpotAdvisory, SpotPrice, StatusEvent,
    TenantHash,
};
pub use step::{LaunchStep, ReapCause, StandbyStep};
pub use verdict::{Served, VerdictPolicy};
