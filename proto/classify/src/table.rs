//! The classification tables: one static table per provider whose rows are the rows of
//! the providers' documented error codes, plus a few clearly marked extras seen in
//! the same APIs. A code not in its provider's table is `Unknown` and kept verbatim, so the table
//! can grow from real data.
//!
//! Codes match case-insensitively and ignoring `_`, so GCP's `QUOTA_EXCEEDED` (operation
//! errors) and `quotaExceeded` (REST `errors[].reason`) are one row. AWS `Client.`/`Server.`
//! prefixes (Spot Fleet, Auto Scaling) and AWS JSON `__type` namespaces
//! (`com.amazonaws.servicequotas#ThrottlingException`) are ignored too.

use capsight_proto::domain::{ErrorClass as C, Provider};

/// How a row decides its class.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// Always this class.
    Is(C),
    /// Decided by the message text (the careful cases).
    ByMessage(fn(&str) -> C),
}

impl Rule {
    /// The class for `message`.
    pub fn apply(self, message: &str) -> C {
        match self {
            Self::Is(class) => class,
            Self::ByMessage(decide) => decide(message),
        }
    }
}

/// One table row: the provider's code as documented, and how it classifies.
pub type Row = (&'static str, Rule);

const fn is(code: &'static str, class: C) -> Row {
    (code, Rule::Is(class))
}

const fn by_message(code: &'static str, decide: fn(&str) -> C) -> Row {
    (code, Rule::ByMessage(decide))
}

/// AWS EC2 (Query API `<Code>`), plus the STS/Service Quotas codes the adapter meets.
pub static AWS: &[Row] = &[
    // capacity
    is("InsufficientInstanceCapacity", C::Capacity),
    is("InsufficientHostCapacity", C::Capacity),
    is("InsufficientReservedInstanceCapacity", C::Capacity),
    is("ReservationCapacityExceeded", C::Capacity),
    is("UnfulfillableCapacity", C::Capacity),
    is("InsufficientCapacity", C::Capacity),
    // quota
    is("InstanceLimitExceeded", C::Quota),
    is("VcpuLimitExceeded", C::Quota),
    is("MaxSpotInstanceCountExceeded", C::Quota),
    is("MaxFleetCountExceeded", C::Quota),
    // permission
    is("UnauthorizedOperation", C::Permission),
    is("AuthFailure", C::Permission),
    is("Blocked", C::Permission),
    is("OptInRequired", C::Permission),
    // not offered
    is("Unsupported", C::NotOffered),
    // price
    is("SpotMaxPriceTooLow", C::Price),
    // throttled / transient
    is("RequestLimitExceeded", C::Throttled),
    is("ServerInternal", C::Transient),
    is("InternalError", C::Transient),
    is("ServiceUnavailable", C::Transient),
    is("Unavailable", C::Transient),
    // extras beyond the documented tables: a DryRun that would have succeeded is no error at all
    is("DryRunOperation", C::None),
    // extras: credentials and the JSON APIs (STS, Service Quotas) the adapter also calls
    is("PendingVerification", C::Permission),
    is("AccessDenied", C::Permission),
    is("AccessDeniedException", C::Permission),
    is("InvalidClientTokenId", C::Permission),
    is("ExpiredToken", C::Permission),
    is("SignatureDoesNotMatch", C::Permission),
    is("Throttling", C::Throttled),
    is("ThrottlingException", C::Throttled),
    is("TooManyRequestsException", C::Throttled),
    is("ServiceException", C::Transient),
    is("InternalFailure", C::Transient),
];

/// GCP Compute Engine: operation `error.errors[].code`, REST `errors[].reason`, `error.status`.
pub static GCP: &[Row] = &[
    // capacity
    is("ZONE_RESOURCE_POOL_EXHAUSTED", C::Capacity),
    is("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", C::Capacity),
    // HTTP 503 on bulk insert
    is("insufficientCapacity", C::Capacity),
    // quota; also `quotaExceeded`. `GPUS_ALL_REGIONS` in the message is the global GPU quota
    // (see `Classified::is_global_quota`).
    is("QUOTA_EXCEEDED", C::Quota),
    // permission
    is("IAM_PERMISSION_DENIED", C::Permission),
    is("PERMISSION_DENIED", C::Permission),
    // not offered: only when the missing resource is the machine (or accelerator) type
    by_message("RESOURCE_NOT_FOUND", gcp_not_found),
    // throttled
    is("rateLimitExceeded", C::Throttled),
    is("RESOURCE_OPERATION_RATE_EXCEEDED", C::Throttled),
    // extras: REST reasons and canonical statuses of the same meaning
    by_message("notFound", gcp_not_found),
    is("forbidden", C::Permission),
    is("UNAUTHENTICATED", C::Permission),
    is("userRateLimitExceeded", C::Throttled),
    is("backendError", C::Transient),
    is("internalError", C::Transient),
];

/// Azure Resource Manager / Compute: `error.code` and nested `error.details[].code`.
pub static AZURE: &[Row] = &[
    // capacity
    is("AllocationFailed", C::Capacity),
    is("ZonalAllocationFailed", C::Capacity),
    is("OverconstrainedAllocationRequest", C::Capacity),
    is("OverconstrainedZonalAllocationRequest", C::Capacity),
    // capacity, unless the message shows a location/zone restriction (then not offered)
    by_message("SkuNotAvailable", azure_sku_not_available),
    // quota
    is("QuotaExceeded", C::Quota),
    // quota only when the message is about a quota ("...exceeding approved ... Cores quota")
    by_message("OperationNotAllowed", azure_operation_not_allowed),
    // permission
    is("AuthorizationFailed", C::Permission),
    is("ReadOnlyDisabledSubscription", C::Permission),
    // throttled / transient
    is("429", C::Throttled),
    is("RetryableError", C::Transient),
    // extras: ARM's names for the same things
    is("AuthenticationFailed", C::Permission),
    is("InvalidAuthenticationToken", C::Permission),
    is("ExpiredAuthenticationToken", C::Permission),
    // Entra ID token endpoint (`error`): the app registration or its secret is not valid
    is("invalid_client", C::Permission),
    is("unauthorized_client", C::Permission),
    is("LinkedAuthorizationFailed", C::Permission),
    is("TooManyRequests", C::Throttled),
    is("SubscriptionRequestsThrottled", C::Throttled),
    is("InternalServerError", C::Transient),
    is("InternalExecutionError", C::Transient),
    is("ServiceUnavailable", C::Transient),
];

/// Lambda Cloud: `error.code`, or the HTTP status where the table names one.
pub static LAMBDA: &[Row] = &[
    is(
        "instance-operations/launch/insufficient-capacity",
        C::Capacity,
    ),
    is("global/quota-exceeded", C::Quota),
    is("401", C::Permission),
    is("403", C::Permission),
    is("429", C::Throttled),
    // extras: the codes Lambda returns with 401/403
    is("global/invalid-api-key", C::Permission),
    is("global/account-inactive", C::Permission),
];

/// RunPod: its GraphQL API answers errors as `errors[].message` without codes (the code is
/// `extensions.code` when RunPod sends one, else the HTTP status as text, usually `200`), so
/// most rows decide by the message ([`runpod_message`]).
pub static RUNPOD: &[Row] = &[
    by_message("200", runpod_message),
    by_message("400", runpod_message),
    by_message("500", runpod_message),
    by_message("INTERNAL_SERVER_ERROR", runpod_message),
    by_message("BAD_USER_INPUT", runpod_message),
    is("UNAUTHENTICATED", C::Permission),
    is("FORBIDDEN", C::Permission),
    is("401", C::Permission),
    is("403", C::Permission),
    is("429", C::Throttled),
];

/// A RunPod error message's class: stock (`There are no longer any instances available with
/// the requested specifications. Please refresh and try again.`), the account's balance or
/// pod/GPU limit, the API key, rate limits and RunPod's generic `Something went wrong`.
/// Anything else is unknown; a 500 without a known message stays transient by its status.
fn runpod_message(message: &str) -> C {
    if mentions(
        message,
        &[
            "no longer any instances available",
            "no instances available",
            "not enough free gpus",
            "no gpus available",
        ],
    ) {
        C::Capacity
    } else if mentions(
        message,
        &[
            "balance is too low",
            "insufficient balance",
            "insufficient funds",
            "not enough funds",
            "maximum number of",
            "gpu limit",
            "pod limit",
        ],
    ) {
        C::Quota
    } else if mentions(
        message,
        &[
            "unauthorized",
            "invalid api key",
            "api key is invalid",
            "forbidden",
        ],
    ) {
        C::Permission
    } else if mentions(message, &["too many requests", "rate limit"]) {
        C::Throttled
    } else if mentions(message, &["something went wrong", "try again later"]) {
        C::Transient
    } else {
        C::Unknown
    }
}

/// The table for `provider`.
pub fn rows(provider: Provider) -> &'static [Row] {
    match provider {
        Provider::Aws => AWS,
        Provider::Gcp => GCP,
        Provider::Azure => AZURE,
        Provider::Lambda => LAMBDA,
        Provider::RunPod => RUNPOD,
    }
}

/// The row for `code`, if the provider's table has one.
pub fn lookup(provider: Provider, code: &str) -> Option<Rule> {
    let code = significant(code);
    rows(provider)
        .iter()
        .find(|(row, _)| same_code(row, code))
        .map(|(_, rule)| *rule)
}

/// The part of a raw code that identifies it: without surrounding whitespace, an AWS JSON
/// namespace (`...#Code`) or an AWS `Client.`/`Server.` prefix.
fn significant(code: &str) -> &str {
    let code = code.trim();
    let code = code.rsplit_once('#').map_or(code, |(_, c)| c);
    code.strip_prefix("Client.")
        .or_else(|| code.strip_prefix("Server."))
        .unwrap_or(code)
}

/// Case-insensitive equality ignoring `_`.
fn same_code(a: &str, b: &str) -> bool {
    let key = |s: &str| {
        s.bytes()
            .filter(|c| *c != b'_')
            .map(|c| c.to_ascii_lowercase())
            .collect::<Vec<u8>>()
    };
    key(a) == key(b)
}

/// Case-insensitive substring test.
fn mentions(message: &str, needles: &[&str]) -> bool {
    let lower = message.to_ascii_lowercase();
    needles.iter().any(|n| lower.contains(n))
}

/// Azure `SkuNotAvailable`: a restriction (location/zone not offered to the subscription) is
/// `NotOffered`; "currently not available" without one is a stockout.
fn azure_sku_not_available(message: &str) -> C {
    if mentions(
        message,
        &[
            "restrict",
            "notavailableforsubscription",
            "for subscription",
            "not supported",
            "not offered",
        ],
    ) {
        C::NotOffered
    } else {
        C::Capacity
    }
}

/// Azure `OperationNotAllowed` is a quota error only when it talks about a quota or cores;
/// otherwise (e.g. an operation on a VM in the wrong state) it is unknown.
fn azure_operation_not_allowed(message: &str) -> C {
    if mentions(message, &["quota", "cores"]) {
        C::Quota
    } else {
        C::Unknown
    }
}

/// GCP not-found is "not offered" only when the missing resource is the machine or
/// accelerator type; a missing image or network is something else.
fn gcp_not_found(message: &str) -> C {
    if mentions(
        message,
        &[
            "machinetype",
            "machine type",
            "acceleratortype",
            "accelerator type",
        ],
    ) {
        C::NotOffered
    } else {
        C::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_ignores_case_underscores_and_aws_prefixes() {
        assert!(lookup(Provider::Gcp, "quotaExceeded").is_some());
        assert!(lookup(Provider::Gcp, "QUOTA_EXCEEDED").is_some());
        assert!(lookup(Provider::Aws, "Client.InsufficientInstanceCapacity").is_some());
        assert!(lookup(Provider::Aws, "Server.InternalError").is_some());
        assert!(
            lookup(
                Provider::Aws,
                "com.amazonaws.servicequotas#ThrottlingException"
            )
            .is_some()
        );
        assert!(lookup(Provider::Aws, " VcpuLimitExceeded\n").is_some());
        assert!(lookup(Provider::Aws, "InsufficientInstance").is_none());
        assert!(lookup(Provider::Aws, "").is_none());
    }

    #[test]
    fn tables_have_no_duplicate_codes() {
        for provider in Provider::ALL {
            let rows = rows(*provider);
            for (i, (a, _)) in rows.iter().enumerate() {
                for (b, _) in &rows[i + 1..] {
                    assert!(!same_code(a, b), "{provider}: {a} and {b} collide");
                }
            }
        }
    }
}
