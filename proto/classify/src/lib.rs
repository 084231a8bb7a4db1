//! Error classification for AWS, GCP, Azure, Lambda Cloud and RunPod.
//!
//! Contract:
//! * [`classify`] maps a provider's error code (and, for a few codes, its message) to an
//!   [`ErrorClass`] through one static table per provider ([`table`]), built from the
//!   providers' documented error codes. The raw code and message are kept verbatim. A code the
//!   table does not know is [`ErrorClass::Unknown`], never guessed.
//! * [`classify_http`] does the same for errors that arrive as an HTTP status and a body (GCP,
//!   Azure with nested `error.details`, Lambda Cloud, and AWS XML/JSON bodies), picking the most
//!   specific code inside ([`http`]).
//! * Positive hints ("...or choosing us-east-1b, us-east-1c.", Lambda's "Regions with capacity
//!   available") are attached to *capacity* errors only, because downstream they become
//!   positive capacity evidence for the named keys. [`zone_hints`] and [`region_hints`] extract
//!   them from any message.
//! * Only [`ErrorClass::Capacity`] says anything about stock. Quota and permission are the
//!   tenant's own account problem; throttled and transient errors are retried with backoff.
//! * Nothing here panics, whatever the input.
//!
//! ```
//! use capsight_classify::{ErrorClass, Provider, classify};
//!
//! let c = classify(
//!     Provider::Aws,
//!     "InsufficientInstanceCapacity",
//!     "We currently do not have sufficient p4d.24xlarge capacity in the Availability Zone you \
//!      requested (us-east-1a). Our system will be working on provisioning additional capacity. \
//!      You can currently get p4d.24xlarge capacity by not specifying an Availability Zone in \
//!      your request or choosing us-east-1b, us-east-1c.",
//! );
//! assert_eq!(c.class, ErrorClass::Capacity);
//! assert_eq!(c.zone_hints, ["us-east-1b", "us-east-1c"]);
//! assert!(!c.is_retryable() && !c.is_account_problem());
//! ```

pub mod hints;
pub mod http;
pub mod table;

pub use capsight_proto::domain::{ErrorClass, Provider};
pub use hints::{region_hints, zone_hints};

/// A classified provider error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Classified {
    /// What the error says about capacity.
    pub class: ErrorClass,
    /// The provider's code, verbatim (for HTTP errors: the code found in the body, or the
    /// status as text when the body had none).
    pub code: String,
    /// The provider's message, verbatim.
    pub message: String,
    /// Zones named as having capacity, as written in the message: AWS AZ *names*
    /// (`us-east-1b`, to be mapped to AZ IDs per account) or zone ids. Capacity errors only.
    pub zone_hints: Vec<String>,
    /// Regions named as having capacity (Lambda's "Regions with capacity available"), valid
    /// regions of the provider only. Capacity errors only.
    pub region_hints: Vec<String>,
}

impl Classified {
    /// A classification without hints.
    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class,
            code: code.into(),
            message: message.into(),
            zone_hints: Vec::new(),
            region_hints: Vec::new(),
        }
    }

    /// Worth retrying with backoff: throttled or transient. Says nothing about capacity.
    pub fn is_retryable(&self) -> bool {
        matches!(self.class, ErrorClass::Throttled | ErrorClass::Transient)
    }

    /// The provider is out of stock for the request: the only class that lowers a capacity
    /// score and that calls for alternatives.
    pub fn is_capacity(&self) -> bool {
        self.class == ErrorClass::Capacity
    }

    /// The caller's own account is the problem (quota or permission): fix the account, do not
    /// retry elsewhere.
    pub fn is_account_problem(&self) -> bool {
        matches!(self.class, ErrorClass::Quota | ErrorClass::Permission)
    }

    /// For quota errors, the quota named in the message: GCP's `Quota 'NVIDIA_A100_GPUS'
    /// exceeded` gives `NVIDIA_A100_GPUS`, Azure's `exceeding approved standardNDSH100v5Family
    /// Cores quota` gives `standardNDSH100v5Family`.
    pub fn quota_metric(&self) -> Option<&str> {
        if self.class != ErrorClass::Quota {
            return None;
        }
        let quoted = self
            .message
            .split_once("Quota '")
            .and_then(|(_, rest)| rest.split_once('\''))
            .map(|(name, _)| name);
        let approved = || {
            self.message
                .split_once("exceeding approved ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
        };
        quoted
            .or_else(approved)
            .filter(|name| !name.is_empty() && !name.contains(char::is_whitespace))
    }

    /// A quota error about a provider-wide quota rather than a regional one (GCP's
    /// `GPUS_ALL_REGIONS`): switching region will not help.
    pub fn is_global_quota(&self) -> bool {
        self.class == ErrorClass::Quota
            && (self.message.contains("GPUS_ALL_REGIONS") || self.message.contains(" globally"))
    }

    /// Adds the hints found in the message, when the class is capacity.
    fn with_message_hints(mut self, provider: Provider) -> Self {
        if self.is_capacity() {
            self.zone_hints = zone_hints(provider, &self.message);
            self.region_hints = region_hints(provider, &self.message);
        }
        self
    }
}

/// Classifies a provider error from its code and message (AWS `<Code>`/`<Message>`, GCP operation
/// `errors[].code`, Azure `error.code`, Lambda `error.code`). Unknown codes are
/// [`ErrorClass::Unknown`] with the code kept verbatim.
pub fn classify(provider: Provider, code: &str, message: &str) -> Classified {
    let class =
        table::lookup(provider, code).map_or(ErrorClass::Unknown, |rule| rule.apply(message));
    Classified::new(class, code, message).with_message_hints(provider)
}

/// For providers whose errors arrive as an HTTP status + JSON body (GCP, Azure incl. nested
/// `error.details`, Lambda Cloud; AWS XML and JSON bodies work too); finds the most specific code
/// inside. See [`http`] for the rules.
pub fn classify_http(provider: Provider, status: u16, body: &str) -> Classified {
    http::classify_http(provider, status, body)
}
