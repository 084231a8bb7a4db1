//! Validated domain types. Every value here has passed the checks of its `TryFrom` conversion
//! from the wire type, so code that holds one never re-validates it.

mod enums;
mod error;
mod key;
mod redact;
mod score;
mod signal;
mod time;

pub use enums::{
    CrowdReportKind, ErrorClass, Feature, InstanceEventKind, Label, LaunchOutcome, LaunchState,
    Market, ProbeMethod, SignalSource, StatusSeverity, launch_state_text,
};
pub use error::FieldError;
pub use key::{CapacityKey, InstanceType, Provider, Region, ZoneId};
pub use redact::redact;
pub use score::{Evidence, Score};
pub use signal::{
    CapacityBlockOffer, CrowdReport, InstanceEvent, LaunchAttempt, OfferingExposure, Payload,
    PlacementScore, QuotaReading, Signal, SignalId, SpotAdvisory, SpotPrice, StatusEvent,
    TenantHash,
};
