//! Google Cloud's API subset on cloudsim's port, in Google's JSON shapes:
//!
//! * OAuth2 `POST /token` (service-account JWT-bearer grant): the assertion's `iss` must be a
//!   registered service account and its RS256 signature must verify with the registered
//!   public key; the answer is `{"access_token", "expires_in", "token_type"}`;
//! * Compute Engine `compute/v1`: `projects.get` (`GPUS_ALL_REGIONS`), `zones.list`,
//!   `regions.get` (with `quotas`), `machineTypes.list`, `acceleratorTypes.list`,
//!   `instances.insert` (`requestId`), `.get`, `.list` (`filter` on `name` and labels),
//!   `.delete`, `zoneOperations.get`;
//! * Resource Manager `POST /v1/projects/{project}:testIamPermissions`;
//! * Cloud Billing Catalog `GET /v1/services/6F81-5844-456A/skus`: one Spot VM GPU SKU per
//!   (region, machine type with a Spot pool), priced per GPU-hour;
//! * the Google Cloud status page's `GET /incidents.json` (incidents of components naming a
//!   GCP region).
//!
//! Errors are `{"error": {"code", "message", "errors": [{"message", "domain", "reason"}],
//! "status", "details"}}` ([`GcpError`]); insert failures (quota, capacity) are the operation's
//! `error.errors[]`, as Compute Engine reports them. Check order: token, project and IAM
//! permission, rate limit, injected fault (`gcp/<operation>`), parameters, the operation's own
//! checks.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    Ctx, Sim,
    world::{
        World,
        gcp::{GcpError, GcpInsert, GcpInstance, GcpOperation, GcpType, OpError, gcp_types},
    },
};

/// The Cloud Billing Catalog's service id of Compute Engine.
pub const COMPUTE_SERVICE_ID: &str = "6F81-5844-456A";

/// The JWT-bearer grant type.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

const SELF_LINK: &str = "https://compute.googleapis.com/compute/v1";

fn error_response(e: &GcpError) -> Response {
    let mut error = json!({
        "code": e.code,
        "message": e.message,
        "errors": [{ "message": e.message, "domain": e.domain, "reason": e.reason }],
        "status": e.status,
    });
    if !e.details.is_empty() {
        error["details"] = json!(e.details);
    }
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(json!({ "error": error }))).into_response()
}

fn respond(result: Result<Value, GcpError>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => {
            tracing::debug!(code = e.code, reason = %e.reason, message = %e.message, "gcp request failed");
            error_response(&e)
        }
    }
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .unwrap_or_default()
}

/// The Compute API methods served, each with the IAM permission it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    ProjectsGet,
    ZonesList,
    RegionsGet,
    MachineTypesList,
    AcceleratorTypesList,
    Insert,
    List,
    Get,
    Delete,
    OperationsGet,
}

impl Method {
    /// (the IAM permission, the operation its injected faults name: `gcp/<operation>`).
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Self::ProjectsGet => ("compute.projects.get", "projects.get"),
            Self::ZonesList => ("compute.zones.list", "zones.list"),
            Self::RegionsGet => ("compute.regions.get", "regions.get"),
            Self::MachineTypesList => ("compute.machineTypes.list", "machineTypes.list"),
            Self::AcceleratorTypesList => {
                ("compute.acceleratorTypes.list", "acceleratorTypes.list")
            }
            Self::Insert => ("compute.instances.create", "insert"),
            Self::List => ("compute.instances.list", "list"),
            Self::Get => ("compute.instances.get", "get"),
            Self::Delete => ("compute.instances.delete", "delete"),
            Self::OperationsGet => ("compute.zoneOperations.get", "operations.get"),
        }
    }
}

/// `{project}/zones/{zone}` of a zonal path.
#[derive(Debug, Deserialize)]
pub(crate) struct Zonal {
    project: String,
    zone: String,
}

/// `{project}/zones/{zone}/<collection>/{name}` of a path naming one zonal resource.
#[derive(Debug, Deserialize)]
pub(crate) struct Named {
    project: String,
    zone: String,
    name: String,
}

/// What a call acts on: a project, and the resource its permission is checked on.
#[derive(Debug)]
struct Target<'a> {
    project: &'a str,
    resource: String,
}

impl<'a> Target<'a> {
    /// `projects/P`.
    fn project(project: &'a str) -> Self {
        Self {
            project,
            resource: format!("projects/{project}"),
        }
    }
}

impl Zonal {
    /// `projects/P/zones/Z`, then `suffix`.
    fn target(&self, suffix: &str) -> Target<'_> {
        Target {
            project: &self.project,
            resource: format!("projects/{}/zones/{}{suffix}", self.project, self.zone),
        }
    }
}

impl Named {
    /// `projects/P/zones/Z/<collection>/N`.
    fn target(&self, collection: &str) -> Target<'_> {
        Target {
            project: &self.project,
            resource: format!(
                "projects/{}/zones/{}/{collection}/{}",
                self.project, self.zone, self.name
            ),
        }
    }
}

/// Runs `op` for the caller after the common checks: a valid token, `method`'s permission in
/// the target's project on its resource, the rate limit, an injected fault for `method` (an
/// HTTP one answers; an operation error is handed to `op`, which only an insert reports).
fn call(
    cx: &Ctx,
    method: Method,
    Target { project, resource }: &Target<'_>,
    op: impl FnOnce(&mut World, Option<OpError>, std::time::Duration) -> Result<Value, GcpError>,
) -> Response {
    let token = bearer(&cx.headers);
    let (permission, operation) = method.names();
    respond(cx.sim.with_world(|world, elapsed| {
        let caller = world.gcp_caller(&token)?;
        world.gcp_authorize(&caller, project, permission, resource)?;
        world.gcp_throttle(project)?;
        let injected = match world.gcp_fault(operation) {
            Some(Ok(http)) => return Err(http),
            Some(Err(e)) if method != Method::Insert => {
                return Err(GcpError::invalid(format!("{}: {}", e.code, e.message)));
            }
            Some(Err(e)) => Some(e),
            None => None,
        };
        op(world, injected, elapsed)
    }))
}

/// The operation `name` as it stands, without reading it as a caller would.
fn peeked(w: &World, name: &str) -> Result<Value, GcpError> {
    w.gcp_operation_peek(name)
        .map(|op| operation_json(&op))
        .ok_or_else(|| GcpError::not_found(name))
}

// ------------------------------------------------------------------------ OAuth2

#[derive(Debug, Deserialize)]
struct JwtHeader {
    alg: String,
}

#[derive(Debug, Deserialize)]
struct JwtClaims {
    iss: String,
    aud: String,
    exp: i64,
    iat: i64,
}

fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// The DER inside a PEM block.
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// The JSON of a JWT segment (base64url without padding).
fn segment<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Checks a JWT-bearer assertion against the registered service accounts: the email it is
/// from, or why not.
fn verify_assertion(world: &World, assertion: &str, now: i64) -> Result<String, &'static str> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = assertion.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("Invalid JWT: not three segments.");
    };
    let header: JwtHeader = segment(h).ok_or("Invalid JWT header.")?;
    if header.alg != "RS256" {
        return Err("Invalid JWT: alg must be RS256.");
    }
    let claims: JwtClaims = segment(c).ok_or("Invalid JWT claims.")?;
    let key = world
        .gcp_public_key(&claims.iss)
        .ok_or("Invalid JWT: the issuer is not a registered service account.")?;
    let der = pem_der(key).ok_or("The registered public key is not PEM.")?;
    let signature = b64.decode(s).map_err(|_| "Invalid JWT Signature.")?;
    let signed = format!("{h}.{c}");
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, der)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| "Invalid JWT Signature.")?;
    if !claims.aud.ends_with("/token") {
        return Err("Invalid JWT: aud must be the token URI.");
    }
    // five minutes of clock skew, and at most an hour of validity, as Google accepts
    if claims.exp < now - 300 || claims.iat > now + 300 || claims.exp - claims.iat > 3600 {
        return Err(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
        );
    }
    Ok(claims.iss)
}

/// `POST /token`.
pub(crate) async fn token(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let form: BTreeMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER) {
        return oauth_error("unsupported_grant_type", "Invalid grant_type.");
    }
    let Some(assertion) = form.get("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    // the assertion's times are the caller's real clock, whatever the simulated one says
    let now = chrono::Utc::now().timestamp();
    let issued = sim.with_world(|world, _| {
        verify_assertion(world, assertion, now).map(|email| world.gcp_issue_token(&email))
    });
    match issued {
        Ok(token) => Json(json!({
            "access_token": token,
            "expires_in": 3599,
            "token_type": "Bearer",
        }))
        .into_response(),
        Err(why) => oauth_error("invalid_grant", why),
    }
}

// ------------------------------------------------------------------------ compute

fn zone_url(project: &str, zone: &str) -> String {
    format!("{SELF_LINK}/projects/{project}/zones/{zone}")
}

fn instance_json(i: &GcpInstance) -> Value {
    let base = zone_url(&i.project, &i.zone);
    json!({
        "kind": "compute#instance",
        "id": i.id.to_string(),
        "name": i.name,
        "zone": base,
        "machineType": format!("{base}/machineTypes/{}", i.machine_type),
        "status": i.status.as_str(),
        "creationTimestamp": i.created.to_rfc3339(),
        "labels": i.labels,
        "metadata": {
            "items": i.metadata.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect::<Vec<_>>(),
        },
        "scheduling": {
            "provisioningModel": if i.spot { "SPOT" } else { "STANDARD" },
        },
        "selfLink": format!("{base}/instances/{}", i.name),
    })
}

fn operation_json(o: &GcpOperation) -> Value {
    let base = zone_url(&o.project, &o.zone);
    let mut v = json!({
        "kind": "compute#operation",
        "id": o.id.to_string(),
        "name": o.name,
        "zone": base,
        "operationType": o.kind,
        "targetLink": format!("{base}/instances/{}", o.target),
        "status": if o.done { "DONE" } else { "RUNNING" },
        "progress": if o.done { 100 } else { 0 },
        "insertTime": o.inserted.to_rfc3339(),
        "selfLink": format!("{base}/operations/{}", o.name),
    });
    if let Some(e) = o.error.as_ref().filter(|_| o.done) {
        v["error"] = json!({
            "errors": [{ "code": e.code, "message": e.message, "errorDetails": e.details }],
        });
        v["httpErrorStatusCode"] = json!(e.http_status);
    }
    v
}

/// A `compute#...List` answer of `items`.
fn item_list(kind: &str, items: impl Iterator<Item = Value>) -> Value {
    json!({ "kind": kind, "items": items.collect::<Vec<_>>() })
}

fn quotas_json(quotas: &[(String, f64, f64)]) -> Vec<Value> {
    quotas
        .iter()
        .map(|(m, l, u)| json!({ "metric": m, "limit": l, "usage": u }))
        .collect()
}

/// `GET /compute/v1/projects/{project}`.
pub(crate) async fn project(cx: Ctx, Path(project): Path<String>) -> Response {
    let at = Target::project(&project);
    call(&cx, Method::ProjectsGet, &at, |w, _, _| {
        Ok(json!({
            "kind": "compute#project",
            "name": project,
            "quotas": quotas_json(&w.gcp_project_quotas(&project)),
        }))
    })
}

/// `GET /compute/v1/projects/{project}/zones`.
pub(crate) async fn zones(cx: Ctx, Path(project): Path<String>) -> Response {
    let at = Target::project(&project);
    call(&cx, Method::ZonesList, &at, |w, _, _| {
        let items = w.gcp_zones().into_iter().map(|(z, r)| {
            json!({
                "kind": "compute#zone",
                "name": z,
                "region": format!("{SELF_LINK}/projects/{project}/regions/{r}"),
                "status": "UP",
            })
        });
        Ok(item_list("compute#zoneList", items))
    })
}

/// `GET /compute/v1/projects/{project}/regions/{region}`.
pub(crate) async fn region(cx: Ctx, Path((project, region)): Path<(String, String)>) -> Response {
    let at = Target {
        project: &project,
        resource: format!("projects/{project}/regions/{region}"),
    };
    call(&cx, Method::RegionsGet, &at, |w, _, _| {
        let zones: Vec<String> = w
            .gcp_zones()
            .into_iter()
            .filter(|(_, r)| *r == region)
            .map(|(z, _)| zone_url(&project, &z))
            .collect();
        if zones.is_empty() {
            return Err(GcpError::not_found(&at.resource));
        }
        Ok(json!({
            "kind": "compute#region",
            "name": region,
            "status": "UP",
            "zones": zones,
            "quotas": quotas_json(&w.gcp_region_quotas(&project, &region)),
        }))
    })
}

fn known_zone(w: &World, project: &str, zone: &str) -> Result<(), GcpError> {
    w.gcp_region_of(zone)
        .map(|_| ())
        .ok_or_else(|| GcpError::not_found(&format!("projects/{project}/zones/{zone}")))
}

/// `GET /compute/v1/projects/{project}/zones/{zone}/machineTypes`.
pub(crate) async fn machine_types(cx: Ctx, Path(z): Path<Zonal>) -> Response {
    let at = z.target("");
    call(&cx, Method::MachineTypesList, &at, |w, _, _| {
        known_zone(w, &z.project, &z.zone)?;
        let machine_type = |(name, t): (String, GcpType)| {
            json!({
                "kind": "compute#machineType",
                "name": name,
                "zone": z.zone,
                "guestCpus": t.vcpus,
                "memoryMb": t.memory_gib.saturating_mul(1024),
                "accelerators": [{
                    "guestAcceleratorType": t.accelerator(),
                    "guestAcceleratorCount": t.gpus,
                }],
                "selfLink": format!("{}/machineTypes/{name}", zone_url(&z.project, &z.zone)),
            })
        };
        let items = w.gcp_machine_types(&z.zone).into_iter().map(machine_type);
        Ok(item_list("compute#machineTypeList", items))
    })
}

/// `GET /compute/v1/projects/{project}/zones/{zone}/acceleratorTypes`.
pub(crate) async fn accelerator_types(cx: Ctx, Path(z): Path<Zonal>) -> Response {
    let at = z.target("");
    call(&cx, Method::AcceleratorTypesList, &at, |w, _, _| {
        known_zone(w, &z.project, &z.zone)?;
        // the most cards of any machine type carrying the accelerator
        let mut by_name: BTreeMap<String, (String, u32)> = BTreeMap::new();
        for (_, t) in w.gcp_machine_types(&z.zone) {
            let entry = by_name
                .entry(t.accelerator())
                .or_insert_with(|| (format!("NVIDIA {} {}GB", t.gpu_model, t.gpu_memory_gib), 0));
            entry.1 = entry.1.max(t.gpus);
        }
        let items = by_name.into_iter().map(|(name, (description, max))| {
            json!({
                "kind": "compute#acceleratorType",
                "name": name,
                "description": description,
                "zone": z.zone,
                "maximumCardsPerInstance": max,
            })
        });
        Ok(item_list("compute#acceleratorTypeList", items))
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct InsertQuery {
    #[serde(rename = "requestId")]
    request_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InsertBody {
    name: String,
    machine_type: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    metadata: Option<MetadataBody>,
    #[serde(default)]
    scheduling: Option<SchedulingBody>,
}

#[derive(Debug, Deserialize)]
struct MetadataBody {
    #[serde(default)]
    items: Vec<MetadataItem>,
}

#[derive(Debug, Deserialize)]
struct MetadataItem {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchedulingBody {
    #[serde(default)]
    provisioning_model: Option<String>,
}

/// A resource name: lowercase letters, digits and hyphens, starting with a letter, at most 63.
fn valid_name(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A label key or value: lowercase letters, digits, `_` and `-`, at most 63.
fn valid_label(text: &str) -> bool {
    text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// `POST /compute/v1/projects/{project}/zones/{zone}/instances`.
pub(crate) async fn insert(
    cx: Ctx,
    Path(z): Path<Zonal>,
    Query(q): Query<InsertQuery>,
    bytes: Bytes,
) -> Response {
    let at = z.target("/instances");
    call(&cx, Method::Insert, &at, |w, injected, elapsed| {
        let b: InsertBody = serde_json::from_slice(&bytes)
            .map_err(|e| GcpError::invalid(format!("Invalid JSON payload received. {e}")))?;
        if !valid_name(&b.name) {
            return Err(GcpError::invalid(format!(
                "Invalid value for field 'resource.name': '{}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'",
                b.name
            )));
        }
        if let Some((k, v)) = b
            .labels
            .iter()
            .find(|(k, v)| !valid_label(k) || k.is_empty() || !valid_label(v))
        {
            return Err(GcpError::invalid(format!(
                "Invalid value for field 'resource.labels': '{k}={v}'"
            )));
        }
        if let Some(rid) = &q.request_id
            && uuid::Uuid::parse_str(rid).is_err()
        {
            return Err(GcpError::invalid(format!(
                "Invalid value for field 'requestId': '{rid}'. Must be a UUID."
            )));
        }
        // `zones/<zone>/machineTypes/<type>`, or a full URL ending so
        let machine_type = b
            .machine_type
            .rsplit_once("/machineTypes/")
            .map_or(b.machine_type.as_str(), |(_, t)| t)
            .to_owned();
        let spot = b
            .scheduling
            .and_then(|s| s.provisioning_model)
            .is_some_and(|m| m == "SPOT");
        let spec = GcpInsert {
            name: b.name,
            machine_type,
            spot,
            labels: b.labels,
            metadata: b
                .metadata
                .map(|m| m.items.into_iter().map(|i| (i.key, i.value)).collect())
                .unwrap_or_default(),
        };
        let op = w.gcp_insert(
            &z.project,
            &z.zone,
            q.request_id.as_deref(),
            &spec,
            injected,
            elapsed,
        )?;
        peeked(w, &op)
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ListQuery {
    filter: Option<String>,
}

/// One `instances.list` filter term: `name=N`, `labels.K=V` or `labels.K:*`.
#[derive(Debug, PartialEq, Eq)]
enum Filter {
    Name(String),
    Label(String, String),
    HasLabel(String),
}

fn parse_filter(text: &str) -> Result<Filter, GcpError> {
    let bad = || GcpError::invalid(format!("Invalid list filter expression '{text}'."));
    let t = text.trim();
    let unquote = |v: &str| v.trim().trim_matches('"').to_owned();
    if let Some(key) = t.strip_prefix("labels.").and_then(|r| r.strip_suffix(":*")) {
        return Ok(Filter::HasLabel(key.trim().to_owned()));
    }
    let (lhs, rhs) = t.split_once('=').ok_or_else(bad)?;
    let lhs = lhs.trim();
    match lhs.strip_prefix("labels.") {
        Some(key) => Ok(Filter::Label(key.to_owned(), unquote(rhs))),
        None if lhs == "name" => Ok(Filter::Name(unquote(rhs))),
        None => Err(bad()),
    }
}

fn matches(i: &GcpInstance, f: &Filter) -> bool {
    match f {
        Filter::Name(n) => i.name == *n,
        Filter::Label(k, v) => i.labels.get(k) == Some(v),
        Filter::HasLabel(k) => i.labels.contains_key(k),
    }
}

/// `GET /compute/v1/projects/{project}/zones/{zone}/instances`.
pub(crate) async fn list(cx: Ctx, Path(z): Path<Zonal>, Query(q): Query<ListQuery>) -> Response {
    let at = z.target("");
    call(&cx, Method::List, &at, |w, _, _| {
        known_zone(w, &z.project, &z.zone)?;
        let filter = q
            .filter
            .as_deref()
            .filter(|f| !f.trim().is_empty())
            .map(parse_filter)
            .transpose()?;
        let items = w
            .gcp_instances(&z.project, &z.zone)
            .filter(|i| filter.as_ref().is_none_or(|f| matches(i, f)))
            .map(instance_json);
        Ok(item_list("compute#instanceList", items))
    })
}

/// `GET /compute/v1/projects/{project}/zones/{zone}/instances/{name}`.
pub(crate) async fn get(cx: Ctx, Path(n): Path<Named>) -> Response {
    let at = n.target("instances");
    call(&cx, Method::Get, &at, |w, _, _| {
        w.gcp_instance(&n.project, &n.zone, &n.name)
            .map(instance_json)
            .ok_or_else(|| GcpError::not_found(&at.resource))
    })
}

/// `DELETE /compute/v1/projects/{project}/zones/{zone}/instances/{name}`.
pub(crate) async fn delete(cx: Ctx, Path(n): Path<Named>) -> Response {
    let at = n.target("instances");
    call(&cx, Method::Delete, &at, |w, _, elapsed| {
        let op = w.gcp_delete(&n.project, &n.zone, &n.name, elapsed)?;
        peeked(w, &op)
    })
}

/// `GET /compute/v1/projects/{project}/zones/{zone}/operations/{name}`.
pub(crate) async fn operation(cx: Ctx, Path(n): Path<Named>) -> Response {
    let at = n.target("operations");
    call(&cx, Method::OperationsGet, &at, |w, _, _| {
        let mut op = w.gcp_operation(&n.project, &n.zone, &n.name)?;
        op.done = true;
        Ok(operation_json(&op))
    })
}

// ------------------------------------------------------------------------ IAM, billing, status

#[derive(Debug, Deserialize)]
struct TestPermissions {
    #[serde(default)]
    permissions: Vec<String>,
}

/// `POST /v1/projects/{project}:testIamPermissions` (Resource Manager): the asked permissions
/// the caller holds on its own project; none on another.
pub(crate) async fn test_permissions(
    cx: Ctx,
    Path(resource): Path<String>,
    bytes: Bytes,
) -> Response {
    let Some(project) = resource
        .strip_suffix(":testIamPermissions")
        .map(str::to_owned)
    else {
        return error_response(&GcpError::not_found(&format!("projects/{resource}")));
    };
    let token = bearer(&cx.headers);
    respond(cx.sim.with_world(|w, _| {
        let caller = w.gcp_caller(&token)?;
        w.gcp_throttle(&project)?;
        if let Some(fault) = w.gcp_fault("testIamPermissions") {
            return Err(fault.unwrap_or_else(|e| GcpError::invalid(e.message)));
        }
        let asked: TestPermissions = serde_json::from_slice(&bytes)
            .map_err(|e| GcpError::invalid(format!("Invalid JSON payload received. {e}")))?;
        let held: Vec<&String> = asked
            .permissions
            .iter()
            .filter(|p| caller.account == project && caller.may(p))
            .collect();
        // Google leaves the field out when the caller holds none
        Ok(if held.is_empty() {
            json!({})
        } else {
            json!({ "permissions": held })
        })
    }))
}

/// The Billing Catalog's description of a GPU: `Nvidia H100 80GB`.
pub fn gpu_sku_name(model: &str, memory_gib: u32) -> String {
    format!("Nvidia {model} {memory_gib}GB")
}

/// `GET /v1/services/{service}/skus` (Cloud Billing Catalog): Compute Engine's Spot VM GPU
/// SKUs, one per (region, machine type with a Spot pool), priced per GPU-hour.
pub(crate) async fn skus(cx: Ctx, Path(service): Path<String>) -> Response {
    let token = bearer(&cx.headers);
    respond(cx.sim.with_world(|w, elapsed| {
        w.gcp_caller(&token)?;
        if let Some(fault) = w.gcp_fault("skus") {
            return Err(fault.unwrap_or_else(|e| GcpError::invalid(e.message)));
        }
        if service != COMPUTE_SERVICE_ID {
            return Ok(json!({ "skus": [], "nextPageToken": "" }));
        }
        let effective = w.time_at(elapsed).to_rfc3339();
        let skus: Vec<Value> = w
            .gcp_spot_prices()
            .into_iter()
            .filter_map(|(region, itype, usd)| {
                let t = gcp_types().get(&itype)?;
                let per_gpu = usd / f64::from(t.gpus.max(1));
                let units = per_gpu.trunc();
                // nanos of a unit price: the fractional dollars, rounded to whole nanos
                #[allow(clippy::cast_possible_truncation)]
                let nanos = ((per_gpu - units) * 1e9).round() as i64;
                let id = format!("{:04X}-{:04X}-{:04X}", region.len() * 7919 % 65536, t.gpus * 31 + t.gpu_memory_gib, itype.len() * 131);
                Some(json!({
                    "name": format!("services/{COMPUTE_SERVICE_ID}/skus/{id}"),
                    "skuId": id,
                    "description": format!("Spot Preemptible {} GPU running in {region} ({itype})", gpu_sku_name(&t.gpu_model, t.gpu_memory_gib)),
                    "category": {
                        "serviceDisplayName": "Compute Engine",
                        "resourceFamily": "Compute",
                        "resourceGroup": "GPU",
                        "usageType": "Preemptible",
                    },
                    "serviceRegions": [region],
                    "pricingInfo": [{
                        "effectiveTime": effective,
                        "pricingExpression": {
                            "usageUnit": "h",
                            "usageUnitDescription": "hour",
                            "displayQuantity": 1,
                            "tieredRates": [{
                                "startUsageAmount": 0,
                                "unitPrice": {
                                    "currencyCode": "USD",
                                    "units": format!("{units:.0}"),
                                    "nanos": nanos,
                                },
                            }],
                        },
                    }],
                    "serviceProviderName": "Google",
                    "geoTaxonomy": { "type": "REGIONAL", "regions": [region] },
                }))
            })
            .collect();
        Ok(json!({ "skus": skus, "nextPageToken": "" }))
    }))
}

/// `GET /incidents.json`: the status page's incidents whose component names a GCP region of
/// the scenario, as Google's status page lists them (Compute Engine).
pub(crate) fn incidents(world: &World) -> Value {
    let mut regions: Vec<String> = world.gcp_zones().into_iter().map(|(_, r)| r).collect();
    regions.dedup();
    let list: Vec<Value> = world
        .incidents()
        .iter()
        .rev()
        .filter_map(|i| {
            let at: Vec<Value> = regions
                .iter()
                .filter(|r| i.component.contains(r.as_str()))
                .map(|r| json!({ "title": r, "id": r }))
                .collect();
            if at.is_empty() {
                return None;
            }
            let resolved = i.resolved_at.is_some();
            let severity = match i.status.as_str() {
                "major_outage" => "high",
                "partial_outage" => "medium",
                _ => "low",
            };
            let (current, previous) = if resolved { (vec![], at) } else { (at, vec![]) };
            Some(json!({
                "id": i.id,
                "number": i.id,
                "begin": i.started_at.to_rfc3339(),
                "end": i.resolved_at.map(|t| t.to_rfc3339()),
                "severity": severity,
                "external_desc": i.title,
                "uri": format!("incidents/{}", i.id),
                "service_name": "Google Compute Engine",
                "affected_products": [{ "title": "Google Compute Engine", "id": "L3MkI8LrS4NaKMFhQ9pn" }],
                "currently_affected_locations": current,
                "previously_affected_locations": previous,
                "most_recent_update": {
                    "text": i.updates.last().map(|u| u.2.clone()).unwrap_or_default(),
                },
            }))
        })
        .collect();
    Value::Array(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_filters_parse() {
        assert_eq!(
            parse_filter("labels.capsight_job:*").unwrap(),
            Filter::HasLabel("capsight_job".into())
        );
        assert_eq!(
            parse_filter("labels.capsight_job = \"j-1\"").unwrap(),
            Filter::Label("capsight_job".into(), "j-1".into())
        );
        assert_eq!(parse_filter("name=a").unwrap(), Filter::Name("a".into()));
        assert_eq!(parse_filter("status=RUNNING").unwrap_err().code, 400);
    }

    #[test]
    fn names_and_labels_follow_gcp_rules() {
        assert!(valid_name("cs-abc-0"));
        assert!(!valid_name("Cs-abc") && !valid_name("0abc") && !valid_name("a-"));
        assert!(valid_label("capsight_job") && !valid_label("capsight:job"));
    }
}
