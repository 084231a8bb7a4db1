//! Every row of the classification table (`src/table.rs`), for every provider,
//! with messages in each provider's real shape.

use capsight_classify::{Classified, ErrorClass, Provider, classify, classify_http, table};

fn check(c: &Classified, class: ErrorClass, code: &str) {
    assert_eq!(c.class, class, "{c:?}");
    assert_eq!(c.code, code, "code must be verbatim: {c:?}");
}

// ---------------------------------------------------------------- AWS (Query error code+message)

const AWS_ICE: &str = "We currently do not have sufficient p4d.24xlarge capacity in the \
    Availability Zone you requested (us-east-1a). Our system will be working on provisioning \
    additional capacity. You can currently get p4d.24xlarge capacity by not specifying an \
    Availability Zone in your request or choosing us-east-1b, us-east-1c.";

fn aws_xml(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
         <Message>{message}</Message></Error></Errors>\
         <RequestID>5e1c3b8a-2f0e-4c57-9a0e-0d3b1b0f6a11</RequestID></Response>"
    )
}

#[test]
fn aws_every_row() {
    use ErrorClass as C;
    let rows: &[(&str, &str, ErrorClass)] = &[
        ("InsufficientInstanceCapacity", AWS_ICE, C::Capacity),
        (
            "InsufficientHostCapacity",
            "Insufficient capacity on dedicated hosts for the requested instance type.",
            C::Capacity,
        ),
        (
            "InsufficientReservedInstanceCapacity",
            "Insufficient capacity to satisfy the Reserved Instance request.",
            C::Capacity,
        ),
        (
            "ReservationCapacityExceeded",
            "The targeted Capacity Reservation does not have enough available capacity to \
             fulfill the request.",
            C::Capacity,
        ),
        (
            "UnfulfillableCapacity",
            "There is no Spot capacity available that matches your request.",
            C::Capacity,
        ),
        (
            "InsufficientCapacity",
            "Insufficient capacity.",
            C::Capacity,
        ),
        (
            "InstanceLimitExceeded",
            "Your quota allows for 0 more running instance(s). You requested at least 1.",
            C::Quota,
        ),
        (
            "VcpuLimitExceeded",
            "You have requested more vCPU capacity than your current vCPU limit of 0 allows for \
             the instance bucket that the specified instance type belongs to. Please visit \
             http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit.",
            C::Quota,
        ),
        (
            "MaxSpotInstanceCountExceeded",
            "Max spot instance count exceeded",
            C::Quota,
        ),
        (
            "MaxFleetCountExceeded",
            "You've reached the limit on the number of EC2 Fleets that you can have.",
            C::Quota,
        ),
        (
            "UnauthorizedOperation",
            "You are not authorized to perform this operation. User: \
             arn:aws:iam::123456789012:user/probe is not authorized to perform: \
             ec2:RunInstances on resource: arn:aws:ec2:us-east-1:123456789012:instance/* \
             because no identity-based policy allows the ec2:RunInstances action. Encoded \
             authorization failure message: 3Bq...",
            C::Permission,
        ),
        (
            "AuthFailure",
            "AWS was not able to validate the provided access credentials",
            C::Permission,
        ),
        (
            "Blocked",
            "The account is currently blocked. Contact aws-verification@amazon.com if you have \
             questions.",
            C::Permission,
        ),
        (
            "OptInRequired",
            "You are not subscribed to this service. Please go to http://aws.amazon.com to \
             subscribe.",
            C::Permission,
        ),
        (
            "Unsupported",
            "Your requested instance type (p5.48xlarge) is not supported in your requested \
             Availability Zone (us-east-1e). Please retry your request by not specifying an \
             Availability Zone or choosing us-east-1a, us-east-1b, us-east-1c, us-east-1d, \
             us-east-1f.",
            C::NotOffered,
        ),
        (
            "SpotMaxPriceTooLow",
            "Your Spot request price of 0.5 is lower than the minimum required Spot request \
             fulfillment price of 12.0342.",
            C::Price,
        ),
        (
            "RequestLimitExceeded",
            "Request limit exceeded.",
            C::Throttled,
        ),
        (
            "ServerInternal",
            "An internal error has occurred",
            C::Transient,
        ),
        (
            "InternalError",
            "An internal error has occurred.",
            C::Transient,
        ),
        (
            "ServiceUnavailable",
            "The server is overloaded and can't handle the request.",
            C::Transient,
        ),
        (
            "Unavailable",
            "The server is overloaded and can't handle the request.",
            C::Transient,
        ),
    ];
    for (code, message, class) in rows {
        let c = classify(Provider::Aws, code, message);
        check(&c, *class, code);
        assert_eq!(c.message, *message);
        // The same error as the EC2 Query API returns it over HTTP.
        let status = if *class == C::Transient { 503 } else { 400 };
        let h = classify_http(Provider::Aws, status, &aws_xml(code, message));
        check(&h, *class, code);
        assert_eq!(h.message, *message);
    }
}

#[test]
fn aws_capacity_hints_only_for_capacity() {
    let c = classify(Provider::Aws, "InsufficientInstanceCapacity", AWS_ICE);
    assert_eq!(c.zone_hints, ["us-east-1b", "us-east-1c"]);
    assert!(c.region_hints.is_empty());
    assert!(c.is_capacity() && !c.is_retryable() && !c.is_account_problem());

    let h = classify_http(
        Provider::Aws,
        500,
        &aws_xml("InsufficientInstanceCapacity", AWS_ICE),
    );
    assert_eq!(h.zone_hints, ["us-east-1b", "us-east-1c"]);

    // "Unsupported" also lists zones, but they are offered, not in stock: no capacity hint.
    let u = classify(
        Provider::Aws,
        "Unsupported",
        "Your requested instance type (p5.48xlarge) is not supported in your requested \
         Availability Zone (us-east-1e). Please retry your request by not specifying an \
         Availability Zone or choosing us-east-1a, us-east-1b.",
    );
    assert!(u.zone_hints.is_empty());
}

#[test]
fn aws_variants_and_extras() {
    let c = classify(
        Provider::Aws,
        "Client.InsufficientInstanceCapacity",
        "Client.InsufficientInstanceCapacity: Insufficient capacity.",
    );
    check(
        &c,
        ErrorClass::Capacity,
        "Client.InsufficientInstanceCapacity",
    );
    let d = classify(
        Provider::Aws,
        "DryRunOperation",
        "Request would have succeeded, but DryRun flag is set.",
    );
    assert_eq!(d.class, ErrorClass::None);
    // Service Quotas speaks JSON 1.1.
    let t = classify_http(
        Provider::Aws,
        400,
        r#"{"__type":"com.amazonaws.servicequotas#ThrottlingException","message":"Rate exceeded"}"#,
    );
    check(
        &t,
        ErrorClass::Throttled,
        "com.amazonaws.servicequotas#ThrottlingException",
    );
    assert_eq!(t.message, "Rate exceeded");
    assert!(t.is_retryable());
    let a = classify_http(
        Provider::Aws,
        400,
        r#"{"__type":"AccessDeniedException","Message":"User is not authorized to perform servicequotas:GetServiceQuota"}"#,
    );
    check(&a, ErrorClass::Permission, "AccessDeniedException");
    assert!(a.is_account_problem());
}

// ------------------------------------------------------------------- GCP (JSON error, operation)

fn gcp_error(http: u16, status: &str, reason: &str, message: &str) -> String {
    serde_json::json!({
        "error": {
            "code": http,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": status,
        }
    })
    .to_string()
}

fn gcp_operation(code: &str, message: &str, http: u16) -> String {
    serde_json::json!({
        "kind": "compute#operation",
        "id": "4915873417396341234",
        "name": "operation-1732360000000-62a1b2c3d4e5f-6789abcd-ef012345",
        "zone": "https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-a",
        "operationType": "insert",
        "targetLink": "https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-a/instances/probe-1",
        "status": "DONE",
        "progress": 100,
        "error": {"errors": [{"code": code, "message": message}]},
        "httpErrorStatusCode": http,
        "httpErrorMessage": "SERVICE UNAVAILABLE",
    })
    .to_string()
}

const GCP_EXHAUSTED: &str = "The zone 'projects/p/zones/us-central1-a' does not have enough \
    resources available to fulfill the request.  Try a different zone, or try again later.";

#[test]
fn gcp_every_row() {
    use ErrorClass as C;
    // Operation errors (code + message), classified directly and as the operation body.
    let ops: &[(&str, &str, ErrorClass)] = &[
        ("ZONE_RESOURCE_POOL_EXHAUSTED", GCP_EXHAUSTED, C::Capacity),
        (
            "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
            "The zone 'projects/p/zones/us-central1-a' does not have enough resources \
             available to fulfill the request. '(resource type:compute)'.",
            C::Capacity,
        ),
        (
            "QUOTA_EXCEEDED",
            "Quota 'NVIDIA_H100_GPUS' exceeded.  Limit: 0.0 in region us-central1.",
            C::Quota,
        ),
        (
            "RESOURCE_NOT_FOUND",
            "The resource 'projects/p/zones/us-west1-c/machineTypes/a3-highgpu-8g' was not \
             found",
            C::NotOffered,
        ),
        (
            "RESOURCE_OPERATION_RATE_EXCEEDED",
            "Operation rate exceeded for resource 'projects/p/zones/us-central1-a/instances/x'. \
             Too frequent operations from the source resource.",
            C::Throttled,
        ),
        (
            "IAM_PERMISSION_DENIED",
            "Required 'compute.instances.create' permission for \
             'projects/p/zones/us-central1-a/instances/probe-1'",
            C::Permission,
        ),
    ];
    for (code, message, class) in ops {
        check(&classify(Provider::Gcp, code, message), *class, code);
        let h = classify_http(Provider::Gcp, 200, &gcp_operation(code, message, 503));
        check(&h, *class, code);
        assert_eq!(h.message, *message);
    }

    // REST errors: `errors[].reason` is the most specific code.
    let rest: &[(u16, &str, &str, &str, ErrorClass)] = &[
        (
            503,
            "UNAVAILABLE",
            "insufficientCapacity",
            "Insufficient capacity to create the requested instances in zone us-central1-a.",
            C::Capacity,
        ),
        (
            403,
            "PERMISSION_DENIED",
            "quotaExceeded",
            "Quota 'GPUS_ALL_REGIONS' exceeded.  Limit: 0.0 globally.",
            C::Quota,
        ),
        (
            403,
            "PERMISSION_DENIED",
            "forbidden",
            "Required 'compute.instances.create' permission for 'projects/p/zones/x/instances/y'",
            C::Permission,
        ),
        (
            404,
            "NOT_FOUND",
            "notFound",
            "The resource 'projects/p/zones/us-west1-c/machineTypes/a2-ultragpu-8g' was not \
             found",
            C::NotOffered,
        ),
        (
            403,
            "PERMISSION_DENIED",
            "rateLimitExceeded",
            "Rate Limit Exceeded",
            C::Throttled,
        ),
    ];
    for (http, status, reason, message, class) in rest {
        let h = classify_http(
            Provider::Gcp,
            *http,
            &gcp_error(*http, status, reason, message),
        );
        check(&h, *class, reason);
        assert_eq!(h.message, *message);
    }
}

#[test]
fn gcp_permission_denied_status_and_error_info() {
    // Newer APIs: canonical status plus google.rpc.ErrorInfo in details.
    let body = r#"{"error":{"code":403,"message":"Permission 'compute.instances.create' denied on resource",
        "status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo",
        "reason":"IAM_PERMISSION_DENIED","domain":"compute.googleapis.com",
        "metadata":{"permission":"compute.instances.create"}}]}}"#;
    let h = classify_http(Provider::Gcp, 403, body);
    check(&h, ErrorClass::Permission, "IAM_PERMISSION_DENIED");
    assert_eq!(
        h.message,
        "Permission 'compute.instances.create' denied on resource"
    );
    let s = classify_http(
        Provider::Gcp,
        403,
        r#"{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}"#,
    );
    check(&s, ErrorClass::Permission, "PERMISSION_DENIED");
}

#[test]
fn gcp_global_gpu_quota() {
    let c = classify(
        Provider::Gcp,
        "QUOTA_EXCEEDED",
        "Quota 'GPUS_ALL_REGIONS' exceeded.  Limit: 0.0 globally.",
    );
    assert!(c.is_account_problem());
    assert!(c.is_global_quota());
    assert_eq!(c.quota_metric(), Some("GPUS_ALL_REGIONS"));
    let regional = classify(
        Provider::Gcp,
        "quotaExceeded",
        "Quota 'NVIDIA_A100_GPUS' exceeded.  Limit: 0.0 in region us-central1.",
    );
    assert_eq!(regional.class, ErrorClass::Quota);
    assert!(!regional.is_global_quota());
    assert_eq!(regional.quota_metric(), Some("NVIDIA_A100_GPUS"));
}

#[test]
fn gcp_not_found_for_other_resources_is_unknown() {
    let c = classify(
        Provider::Gcp,
        "RESOURCE_NOT_FOUND",
        "The resource 'projects/p/global/images/my-image' was not found",
    );
    check(&c, ErrorClass::Unknown, "RESOURCE_NOT_FOUND");
}

#[test]
fn gcp_rate_limit_429_without_reason() {
    let body = r#"{"error":{"code":429,"message":"Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'compute.googleapis.com'","status":"RESOURCE_EXHAUSTED"}}"#;
    let h = classify_http(Provider::Gcp, 429, body);
    check(&h, ErrorClass::Throttled, "RESOURCE_EXHAUSTED");
}

// ------------------------------------------------------------- Azure ({"error":{code,message,details}})

fn azure_error(code: &str, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message}}).to_string()
}

const AZURE_ALLOCATION: &str = "Allocation failed. We do not have sufficient capacity for the \
    requested VM size in this region. Read more about improving likelihood of allocation success \
    at http://aka.ms/allocation-guidance";

#[test]
fn azure_every_row() {
    use ErrorClass as C;
    let rows: &[(u16, &str, &str, ErrorClass)] = &[
        (409, "AllocationFailed", AZURE_ALLOCATION, C::Capacity),
        (
            409,
            "ZonalAllocationFailed",
            "Allocation failed. We do not have sufficient capacity for the requested VM size in \
             this zone. Read more about improving likelihood of allocation success at \
             http://aka.ms/allocation-guidance",
            C::Capacity,
        ),
        (
            409,
            "OverconstrainedAllocationRequest",
            "Allocation failed. VM(s) with the following constraints cannot be allocated, \
             because the condition is too restrictive. Please remove some constraints and try \
             again. Constraints applied are: - Networking Constraints (such as Accelerated \
             Networking or IPv6) - VM Size",
            C::Capacity,
        ),
        (
            409,
            "OverconstrainedZonalAllocationRequest",
            "Allocation failed. VM(s) with the following constraints cannot be allocated, \
             because the condition is too restrictive. Please remove some constraints and try \
             again. Constraints applied are: - Availability Zone - VM Size",
            C::Capacity,
        ),
        (
            409,
            "SkuNotAvailable",
            "The requested VM size 'Standard_ND96isr_H100_v5' is currently not available in \
             location 'eastus'. Please try another size or deploy to a different location.",
            C::Capacity,
        ),
        (
            409,
            "SkuNotAvailable",
            "The requested size for resource '/subscriptions/0000/resourceGroups/rg/providers/\
             Microsoft.Compute/virtualMachines/probe' is currently not available in location \
             'westus' zones '3' for subscription '00000000-0000-0000-0000-000000000000'. Please \
             try another size or deploy to a different location or zones. See \
             https://aka.ms/azureskunotavailable for details.",
            C::NotOffered,
        ),
        (
            409,
            "QuotaExceeded",
            "Operation could not be completed as it results in exceeding approved \
             standardNDSH100v5Family Cores quota. Additional details - Deployment Model: \
             Resource Manager, Location: eastus, Current Limit: 0, Current Usage: 0, \
             Additional Required: 96, (Minimum) New Limit Required: 96.",
            C::Quota,
        ),
        (
            409,
            "OperationNotAllowed",
            "Operation could not be completed as it results in exceeding approved \
             standardNCADSA100v4Family Cores quota. Additional details - Deployment Model: \
             Resource Manager, Location: eastus, Current Limit: 0, Current Usage: 0, \
             Additional Required: 24, (Minimum) New Limit Required: 24.",
            C::Quota,
        ),
        (
            403,
            "AuthorizationFailed",
            "The client 'probe@contoso.com' with object id '0000' does not have authorization \
             to perform action 'Microsoft.Compute/virtualMachines/write' over scope \
             '/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/\
             probe' or the scope is invalid. If access was recently granted, please refresh your \
             credentials.",
            C::Permission,
        ),
        (
            409,
            "ReadOnlyDisabledSubscription",
            "The subscription '0000' is disabled and therefore marked as read only. You cannot \
             perform any write actions on this subscription until it is re-enabled.",
            C::Permission,
        ),
        (
            500,
            "RetryableError",
            "A retryable error occurred.",
            C::Transient,
        ),
        (
            429,
            "TooManyRequests",
            "The request is being throttled as the limit has been reached for operation type - \
             Write_ObservationWindow_00:05:00.",
            C::Throttled,
        ),
    ];
    for (status, code, message, class) in rows {
        check(&classify(Provider::Azure, code, message), *class, code);
        let h = classify_http(Provider::Azure, *status, &azure_error(code, message));
        check(&h, *class, code);
        assert_eq!(h.message, *message);
    }
    // The table's "429" row: a throttled response whatever its body.
    let t = classify_http(Provider::Azure, 429, "");
    check(&t, ErrorClass::Throttled, "429");
    check(
        &classify(Provider::Azure, "429", ""),
        ErrorClass::Throttled,
        "429",
    );
}

#[test]
fn azure_async_operation_and_quota_metric() {
    // GET on an Azure-AsyncOperation URL: the status object is not an error code.
    let body = r#"{"startTime":"2026-11-23T12:00:00Z","endTime":"2026-11-23T12:00:05Z","status":"Failed",
        "error":{"code":"AllocationFailed","message":"Allocation failed. We do not have sufficient capacity for the requested VM size in this region."},
        "name":"7a5b2c3d-0000-0000-0000-000000000000"}"#;
    let h = classify_http(Provider::Azure, 200, body);
    check(&h, ErrorClass::Capacity, "AllocationFailed");
    assert!(h.zone_hints.is_empty());

    let q = classify(
        Provider::Azure,
        "OperationNotAllowed",
        "Operation could not be completed as it results in exceeding approved \
         standardNDSH100v5Family Cores quota. Additional details - Deployment Model: Resource \
         Manager, Location: eastus, Current Limit: 0, Current Usage: 0, Additional Required: 96.",
    );
    assert_eq!(q.quota_metric(), Some("standardNDSH100v5Family"));
    assert!(!q.is_global_quota());
    assert_eq!(
        classify(Provider::Aws, "VcpuLimitExceeded", "x").quota_metric(),
        None
    );
    assert_eq!(
        classify(Provider::Aws, "InsufficientInstanceCapacity", "Quota 'X'").quota_metric(),
        None
    );
}

#[test]
fn azure_operation_not_allowed_without_quota_is_unknown() {
    let c = classify(
        Provider::Azure,
        "OperationNotAllowed",
        "Operation 'start' is not allowed since the VM 'probe' is marked for deletion. You can \
         only retry the Delete operation (or wait for an ongoing one to complete).",
    );
    check(&c, ErrorClass::Unknown, "OperationNotAllowed");
}

#[test]
fn azure_nested_details_pick_the_innermost_known_code() {
    let inner = serde_json::json!({
        "status": "Failed",
        "error": {
            "code": "ResourceDeploymentFailure",
            "message": "The resource operation completed with terminal provisioning state 'Failed'.",
            "details": [{"code": "ZonalAllocationFailed", "message": "Allocation failed. We do not have sufficient capacity for the requested VM size in this zone."}]
        }
    })
    .to_string();
    let body = serde_json::json!({
        "error": {
            "code": "DeploymentFailed",
            "message": "At least one resource deployment operation failed. Please list deployment operations for details.",
            "details": [{"code": "Conflict", "message": inner}]
        }
    })
    .to_string();
    let h = classify_http(Provider::Azure, 400, &body);
    check(&h, ErrorClass::Capacity, "ZonalAllocationFailed");
    assert!(h.message.starts_with("Allocation failed."), "{h:?}");

    // Plain nested details (no JSON-in-string).
    let body = r#"{"error":{"code":"InvalidTemplateDeployment","message":"The template deployment failed.",
        "details":[{"code":"SkuNotAvailable","target":"vm","message":"The requested VM size 'Standard_NC24ads_A100_v4' is currently not available in location 'eastus' zones '2' for subscription '1111'. Please try another size or deploy to a different location or zones."}]}}"#;
    let h = classify_http(Provider::Azure, 400, body);
    check(&h, ErrorClass::NotOffered, "SkuNotAvailable");

    // Nothing known inside: the deepest code is kept verbatim as unknown.
    let body = r#"{"error":{"code":"DeploymentFailed","message":"failed","details":[{"code":"BadRequest","message":"nope"}]}}"#;
    let h = classify_http(Provider::Azure, 400, body);
    check(&h, ErrorClass::Unknown, "BadRequest");
    assert_eq!(h.message, "nope");
}

// ---------------------------------------------------------------- Lambda Cloud ({"error":{...}})

fn lambda_error(code: &str, message: &str, suggestion: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message, "suggestion": suggestion}})
        .to_string()
}

#[test]
fn lambda_every_row() {
    let capacity = lambda_error(
        "instance-operations/launch/insufficient-capacity",
        "Not enough capacity to fulfill launch request.",
        "Choose an instance type with more availability, or try again later. Regions with \
         capacity available: us-east-1, europe-central-1.",
    );
    let h = classify_http(Provider::Lambda, 400, &capacity);
    check(
        &h,
        ErrorClass::Capacity,
        "instance-operations/launch/insufficient-capacity",
    );
    assert_eq!(h.message, "Not enough capacity to fulfill launch request.");
    assert_eq!(h.region_hints, ["us-east-1", "europe-central-1"]);
    assert!(h.zone_hints.is_empty());

    let quota = lambda_error(
        "global/quota-exceeded",
        "Quota exceeded",
        "Contact Support to increase your quota.",
    );
    let h = classify_http(Provider::Lambda, 400, &quota);
    check(&h, ErrorClass::Quota, "global/quota-exceeded");
    assert!(h.region_hints.is_empty());

    let unauthorized = lambda_error(
        "global/invalid-api-key",
        "API key was invalid, expired, or deleted.",
        "Check your API key or create a new one, then try again.",
    );
    check(
        &classify_http(Provider::Lambda, 401, &unauthorized),
        ErrorClass::Permission,
        "global/invalid-api-key",
    );
    let forbidden = lambda_error(
        "global/account-inactive",
        "Your account is inactive.",
        "Make sure you have verified your email address and have a valid payment method.",
    );
    check(
        &classify_http(Provider::Lambda, 403, &forbidden),
        ErrorClass::Permission,
        "global/account-inactive",
    );
    // 401/403/429 with a body the table does not know: the status decides, code kept.
    let odd = lambda_error("global/unknown", "Unknown error.", "");
    check(
        &classify_http(Provider::Lambda, 403, &odd),
        ErrorClass::Permission,
        "global/unknown",
    );
    check(
        &classify_http(Provider::Lambda, 429, "Too Many Requests"),
        ErrorClass::Throttled,
        "429",
    );
    check(
        &classify(Provider::Lambda, "401", ""),
        ErrorClass::Permission,
        "401",
    );
    check(
        &classify(Provider::Lambda, "403", ""),
        ErrorClass::Permission,
        "403",
    );
    check(
        &classify(Provider::Lambda, "429", ""),
        ErrorClass::Throttled,
        "429",
    );
}

#[test]
fn lambda_regions_as_data() {
    let body = r#"{"error":{"code":"instance-operations/launch/insufficient-capacity","message":"Not enough capacity to fulfill launch request.",
        "regions_with_capacity_available":[{"name":"us-west-1","description":"California, USA"},{"name":"not a region"}]}}"#;
    let h = classify_http(Provider::Lambda, 400, body);
    assert_eq!(h.region_hints, ["us-west-1"]);
    let c = classify(
        Provider::Lambda,
        "instance-operations/launch/insufficient-capacity",
        "Not enough capacity. Regions with capacity available: us-west-2",
    );
    assert_eq!(c.region_hints, ["us-west-2"]);
}

// ------------------------------------------------------- RunPod (GraphQL errors[].message)

fn runpod_errors(message: &str) -> String {
    serde_json::json!({"errors": [{"message": message, "path": ["podFindAndDeployOnDemand"]}],
                       "data": {"podFindAndDeployOnDemand": null}})
    .to_string()
}

#[test]
fn runpod_every_row() {
    use ErrorClass as C;
    let rows: &[(&str, ErrorClass)] = &[
        (
            "There are no longer any instances available with the requested specifications. \
             Please refresh and try again.",
            C::Capacity,
        ),
        (
            "There are no longer any instances available with enough disk space.",
            C::Capacity,
        ),
        (
            "Your current balance is too low to deploy this pod. Please add funds and try again.",
            C::Quota,
        ),
        (
            "You have reached the maximum number of GPUs your account may rent at once (8). \
             Contact support to raise your GPU limit.",
            C::Quota,
        ),
        ("Unauthorized", C::Permission),
        ("Too many requests: rate limit exceeded.", C::Throttled),
        (
            "Something went wrong. Please try again later or contact support.",
            C::Transient,
        ),
        (
            "Field 'gpuTypeIdd' is not defined by type 'PodFindAndDeployOnDemandInput'.",
            C::Unknown,
        ),
    ];
    for (message, class) in rows {
        // RunPod answers 200 with errors; the code is the status
        let h = classify_http(Provider::RunPod, 200, &runpod_errors(message));
        check(&h, *class, "200");
        assert_eq!(h.message, *message);
        assert!(h.zone_hints.is_empty() && h.region_hints.is_empty());
        check(&classify(Provider::RunPod, "200", message), *class, "200");
    }
    // a code in extensions is kept and decides where the table knows it
    let coded = serde_json::json!({"errors": [{"message": "Unauthorized",
        "extensions": {"code": "UNAUTHENTICATED"}}]})
    .to_string();
    check(
        &classify_http(Provider::RunPod, 200, &coded),
        C::Permission,
        "UNAUTHENTICATED",
    );
    let internal = serde_json::json!({"errors": [{"message": "There are no longer any instances \
        available with the requested specifications. Please refresh and try again.",
        "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]})
    .to_string();
    check(
        &classify_http(Provider::RunPod, 200, &internal),
        C::Capacity,
        "INTERNAL_SERVER_ERROR",
    );
    // statuses: an unknown key is 401, a rate limit 429, a 500 without a known message stays
    // transient
    check(
        &classify_http(Provider::RunPod, 401, &runpod_errors("Unauthorized")),
        C::Permission,
        "401",
    );
    check(
        &classify_http(Provider::RunPod, 429, "Too Many Requests"),
        C::Throttled,
        "429",
    );
    check(
        &classify_http(Provider::RunPod, 500, &runpod_errors("boom")),
        C::Transient,
        "500",
    );
    // a GraphQL answer with data and no errors is a success
    let ok = r#"{"data":{"podTerminate":null}}"#;
    assert_eq!(classify_http(Provider::RunPod, 200, ok).class, C::None);
}

// ------------------------------------------------------------------------ all providers

#[test]
fn unknown_codes_are_kept_verbatim() {
    for provider in Provider::ALL {
        let c = classify(*provider, "SomethingNew_42", "a brand new failure");
        check(&c, ErrorClass::Unknown, "SomethingNew_42");
        assert_eq!(c.message, "a brand new failure");
        assert!(c.zone_hints.is_empty() && !c.is_retryable() && !c.is_account_problem());
    }
    // Codes of one provider mean nothing to another.
    check(
        &classify(Provider::Gcp, "InsufficientInstanceCapacity", ""),
        ErrorClass::Unknown,
        "InsufficientInstanceCapacity",
    );
}

#[test]
fn malformed_bodies_fall_back_to_the_status() {
    for provider in Provider::ALL {
        for body in [
            "",
            "{",
            "{\"error\":",
            "[1,2",
            "null",
            "\"just a string\"",
            "<html><body>502 Bad Gateway</body></html>",
            "<Response><Errors><Error><Code>",
            "{\"error\":{\"code\":42,\"message\":[\"x\"]}}",
        ] {
            let c = classify_http(*provider, 502, body);
            assert_eq!(c.class, ErrorClass::Transient, "{provider} {body:?}: {c:?}");
            let u = classify_http(*provider, 400, body);
            assert_eq!(u.class, ErrorClass::Unknown, "{provider} {body:?}: {u:?}");
        }
    }
    let c = classify_http(Provider::Gcp, 502, "upstream connect error");
    assert_eq!(c.code, "502");
    assert_eq!(c.message, "upstream connect error");
}

#[test]
fn success_bodies_are_not_errors() {
    let c = classify_http(
        Provider::Lambda,
        200,
        r#"{"data":{"instance_ids":["0920582c7ff041399e34823a0be62549"]}}"#,
    );
    assert_eq!(c.class, ErrorClass::None);
    let op = r#"{"kind":"compute#operation","status":"DONE","progress":100}"#;
    assert_eq!(
        classify_http(Provider::Gcp, 200, op).class,
        ErrorClass::None
    );
}

#[test]
fn every_unconditional_table_row_classifies_as_listed() {
    for provider in Provider::ALL {
        for (code, rule) in table::rows(*provider) {
            if let table::Rule::Is(class) = rule {
                assert_eq!(
                    classify(*provider, code, "").class,
                    *class,
                    "{provider} {code}"
                );
            }
        }
    }
}
