//! Domain enums mirroring the protobuf enums without their `UNSPECIFIED` zero value: a domain
//! value always means something. Each converts from the wire `i32` with a [`FieldError`] and back.

use super::FieldError;
use crate::v1;

/// Declares a domain enum over a prost enum, dropping `Unspecified`, with the string names used
/// in keys, config files, ClickHouse rows and logs.
macro_rules! domain_enum {
    ($(#[$meta:meta])* $name:ident => $wire:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The lowercase name (`on_demand`, `capacity`, ...).
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// Converts a wire enum value; `field` names the field in the error.
            pub fn from_wire(field: &str, value: i32) -> Result<Self, FieldError> {
                match v1::$wire::try_from(value) {
                    $(Ok(v1::$wire::$variant) => Ok(Self::$variant),)+
                    #[allow(unreachable_patterns)]
                    Ok(_) => Err(FieldError::new(field, "must be set")),
                    Err(_) => Err(FieldError::new(field, format!("unknown enum value {value}"))),
                }
            }

            /// Parses the lowercase name.
            pub fn parse(field: &str, text: &str) -> Result<Self, FieldError> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(FieldError::new(field, format!(
                        "{text:?} is not one of {}", [$($text),+].join(", ")))),
                }
            }
        }

        impl From<$name> for v1::$wire {
            fn from(v: $name) -> Self {
                match v { $($name::$variant => v1::$wire::$variant),+ }
            }
        }

        impl From<$name> for i32 {
            fn from(v: $name) -> Self {
                v1::$wire::from(v) as i32
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

domain_enum!(
    /// How the capacity is bought.
    Market => Market {
        OnDemand = "on_demand",
        Spot = "spot",
        CapacityBlock = "capacity_block",
    }
);

domain_enum!(
    /// A GPU marketplace's coarse stock status (RunPod's `stockStatus`; `None` = none listed).
    StockLevel => StockLevel {
        High = "high",
        Medium = "medium",
        Low = "low",
        None = "none",
    }
);

impl StockLevel {
    /// How much stock the level says, in 0..=1: high 1, medium 2/3, low 1/3, none 0.
    pub fn share(self) -> f64 {
        match self {
            Self::High => 1.0,
            Self::Medium => 2.0 / 3.0,
            Self::Low => 1.0 / 3.0,
            Self::None => 0.0,
        }
    }

    /// Whether any stock is listed.
    pub fn is_available(self) -> bool {
        self != Self::None
    }
}

domain_enum!(
    /// What a cloud error says about capacity. Only `Capacity` moves a capacity score; `None` is
    /// a success.
    ErrorClass => ErrorClass {
        /// No error.
        None = "none",
        Capacity = "capacity",
        Quota = "quota",
        Permission = "permission",
        NotOffered = "not_offered",
        Price = "price",
        Throttled = "throttled",
        Transient = "transient",
        /// A code the classification table does not know; the raw code is kept.
        Unknown = "unknown",
    }
);

domain_enum!(
    /// Who produced a signal.
    SignalSource => SignalSource {
        Probe = "probe",
        Quota = "quota",
        Spot = "spot",
        Status = "status",
        Report = "report",
        Launch = "launch",
        /// A provider's own availability listing.
        Availability = "availability",
    }
);

domain_enum!(
    /// Whether a launch attempt got capacity.
    LaunchOutcome => LaunchOutcome {
        Succeeded = "succeeded",
        Failed = "failed",
    }
);

domain_enum!(
    /// How a launch attempt was made.
    ProbeMethod => ProbeMethod {
        CapacityReservation = "capacity_reservation",
        Launch = "launch",
        TenantLaunch = "tenant_launch",
    }
);

domain_enum!(
    /// An EC2 instance event kind.
    InstanceEventKind => InstanceEventKind {
        InterruptionWarning = "interruption_warning",
        RebalanceRecommendation = "rebalance_recommendation",
        SpotFulfillment = "spot_fulfillment",
        StateChange = "state_change",
    }
);

domain_enum!(
    /// Severity of a status-feed incident.
    StatusSeverity => StatusSeverity {
        None = "none",
        Maintenance = "maintenance",
        Minor = "minor",
        Major = "major",
        Critical = "critical",
    }
);

domain_enum!(
    /// What a tenant's own report says.
    CrowdReportKind => CrowdReportKind {
        Available = "available",
        Unavailable = "unavailable",
        Interrupted = "interrupted",
    }
);

domain_enum!(
    /// A score's label.
    Label => Label {
        /// score >= 80
        Available = "available",
        /// 50 <= score < 80
        Limited = "limited",
        /// score < 50
        Unavailable = "unavailable",
        /// Not enough data: confidence too low or evidence too old to say (see
        /// [`crate::domain::VerdictPolicy`]).
        Unknown = "unknown",
    }
);

domain_enum!(
    /// A scoring feature named in evidence.
    Feature => Feature {
        LaunchSuccessRate = "launch_success_rate",
        ProvisioningLatency = "provisioning_latency",
        CapacityErrorRatio = "capacity_error_ratio",
        SpotStability = "spot_stability",
        ReservableSupply = "reservable_supply",
        CatalogExposure = "catalog_exposure",
        StatusIncidents = "status_incidents",
        CrowdReports = "crowd_reports",
        RecentOutcome = "recent_outcome",
        ListedAvailability = "listed_availability",
        MarketplaceStock = "marketplace_stock",
    }
);

impl Label {
    /// The label for a 0-100 score: Available >= 80, Limited 50-79, Unavailable < 50.
    pub fn for_score(score: u8) -> Self {
        match score {
            80.. => Self::Available,
            50..=79 => Self::Limited,
            _ => Self::Unavailable,
        }
    }

    /// False for [`Label::Unknown`]: the label says something about stock.
    pub fn is_known(self) -> bool {
        self != Self::Unknown
    }

    /// Rank for ordering, 0 best: Available, Limited, Unknown, Unavailable. An unknown key is
    /// never ranked above a known Available or Limited one, and never below a known
    /// Unavailable one.
    pub fn rank(self) -> u8 {
        match self {
            Self::Available => 0,
            Self::Limited => 1,
            Self::Unknown => 2,
            Self::Unavailable => 3,
        }
    }

    /// True when a key labelled `self` passes a "labelled at least `min`" filter. Unknown
    /// passes a Limited (or looser) minimum, not an Available one: it may be launchable, but
    /// nobody can say it is.
    pub fn meets(self, min: Label) -> bool {
        matches!(
            (self, min),
            (_, Self::Unavailable)
                | (Self::Available, _)
                | (Self::Limited | Self::Unknown, Self::Limited | Self::Unknown)
        )
    }
}

impl ErrorClass {
    /// True for classes that say nothing about stock: the caller's own account or a retryable
    /// hiccup. Only [`ErrorClass::Capacity`] (and a success) is capacity evidence.
    pub fn is_account_or_transient(self) -> bool {
        matches!(
            self,
            Self::Quota | Self::Permission | Self::Throttled | Self::Transient
        )
    }
}

domain_enum!(
    /// Where a launch job is, as recorded in ClickHouse `launch_events.state` and served by
    /// `LaunchService`. Adding a state is a compiler-guided change: every `match` on it is
    /// exhaustive.
    LaunchState => LaunchState {
        /// Accepted by the gateway (seq 0).
        Queued = "queued",
        /// The launcher picked the job up and checks the tenant's quota.
        Preflight = "preflight",
        /// A cloud launch (attempt n, key in the row) is under way.
        Provisioning = "provisioning",
        /// The instance(s) run; the row holds their ids.
        Running = "running",
        /// Ended by the lifecycle (max lifetime, idle TTL) or the owner.
        Terminated = "terminated",
        /// Gave up; the row's error class, code and detail say why.
        Failed = "failed",
        /// A cancel request was honoured.
        Cancelled = "cancelled",
    }
);

impl LaunchState {
    /// Whether nothing follows this state.
    pub fn is_terminal(self) -> bool {
        match self {
            Self::Terminated | Self::Failed | Self::Cancelled => true,
            Self::Queued | Self::Preflight | Self::Provisioning | Self::Running => false,
        }
    }
}

/// `#[serde(with = "launch_state_text")]`: a [`LaunchState`] stored as its lowercase name (a
/// ClickHouse `String` column), rejecting unknown names with the field named.
pub mod launch_state_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use super::LaunchState;

    /// Writes the name.
    pub fn serialize<S: Serializer>(state: &LaunchState, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(state.as_str())
    }

    /// Reads the name.
    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<LaunchState, D::Error> {
        let text = String::deserialize(de)?;
        LaunchState::parse("state", &text).map_err(D::Error::custom)
    }
}
