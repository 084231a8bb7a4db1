//! Azure's API subset on cloudsim's port, in Azure's JSON shapes:
//!
//! * Entra ID: `POST /{tenant}/oauth2/v2.0/token` (client-credentials grant, form body) ->
//!   `{"token_type": "Bearer", "expires_in", "access_token"}`; errors are Entra's
//!   `{"error", "error_description"}` (`invalid_client`, `unauthorized_client`, ...).
//! * Resource Manager (`Authorization: Bearer <token>`, `api-version` required), under
//!   `/subscriptions/{s}`: `locations` (with `availabilityZoneMappings`),
//!   `providers/Microsoft.Compute/skus` (`locationInfo` zones, `restrictions`),
//!   `providers/Microsoft.Compute/locations/{loc}/usages`, `.../operations/{id}`,
//!   `resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines[/{name}]` (list, GET,
//!   PUT — long-running, `Azure-AsyncOperation` — and DELETE), and
//!   `resourceGroups/{rg}/providers/Microsoft.Authorization/permissions` (the caller's actions).
//!   Errors are `{"error": {"code", "message"}}` ([`AzureError`]).
//! * The Retail Prices API `GET /api/retail/prices?$filter=...` (no auth): Linux and Windows
//!   on-demand and Linux Spot items of every catalog size in every Azure region of the scenario.
//! * The Azure status RSS `GET /azure/status/feed`: one item per open incident of a component
//!   whose name starts with `Azure`.
//!
//! Check order of a Resource Manager call: `api-version`, token, rate limit (per subscription),
//! injected fault (`azure/<operation>`), permission (`AuthorizationFailed`), then the
//! operation's own checks.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    Sim,
    scenario::PoolMarket,
    world::{
        Identity, World,
        azure::{AzureCreate, AzureError, AzureVm, Provisioning, sizes},
    },
};

/// The query string's parameters (`api-version`, `$filter`, `$expand`).
fn query(raw: Option<&str>) -> BTreeMap<String, String> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn error_response(e: &AzureError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (
        status,
        Json(json!({ "error": { "code": e.code, "message": e.message } })),
    )
        .into_response();
    if e.status == 429 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?.trim();
    value
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// `http://<host>` of the request, for the URLs cloudsim hands out.
fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

#[derive(Debug)]
struct TokenForm {
    grant_type: String,
    client_id: String,
    client_secret: String,
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) async fn token(
    State(sim): State<Arc<Sim>>,
    Path(directory): Path<String>,
    body: Bytes,
) -> Response {
    let mut form = query(std::str::from_utf8(&body).ok());
    let mut field = |name: &str| form.remove(name).unwrap_or_default();
    let form = TokenForm {
        grant_type: field("grant_type"),
        client_id: field("client_id"),
        client_secret: field("client_secret"),
    };
    let entra_error = |status: u16, error: &str, description: String| {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        (
            status,
            Json(json!({
                "error": error,
                "error_description": description,
                "error_codes": [],
                "timestamp": chrono::Utc::now().to_rfc3339(),
            })),
        )
            .into_response()
    };
    if form.grant_type != "client_credentials" {
        return entra_error(
            400,
            "unsupported_grant_type",
            format!(
                "AADSTS70003: The app requested an unsupported grant type '{}'.",
                form.grant_type
            ),
        );
    }
    let issued = sim.with_world(|w, _| {
        w.azure_token(
            &directory,
            &form.client_id,
            &form.client_secret,
            std::time::Instant::now(),
        )
    });
    match issued {
        Ok((token, lifetime)) => Json(json!({
            "token_type": "Bearer",
            "expires_in": lifetime.as_secs(),
            "ext_expires_in": lifetime.as_secs(),
            "access_token": token,
        }))
        .into_response(),
        Err((status, error, description)) => entra_error(status, error, description),
    }
}

/// A Resource Manager operation, routed from its method and path under `/subscriptions/{s}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'p> {
    /// `GET locations`.
    Locations,
    /// `GET providers/Microsoft.Compute/skus`.
    Skus,
    /// `GET providers/Microsoft.Compute/locations/{loc}/usages`.
    Usages(&'p str),
    /// `GET providers/Microsoft.Compute/locations/{loc}/operations/{id}`.
    Operation(&'p str),
    /// `GET resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines`.
    ListVms(&'p str),
    /// `GET .../virtualMachines/{name}`.
    GetVm(&'p str, &'p str),
    /// `PUT .../virtualMachines/{name}`.
    PutVm(&'p str, &'p str),
    /// `DELETE .../virtualMachines/{name}`.
    DeleteVm(&'p str, &'p str),
    /// `GET resourceGroups/{rg}/providers/Microsoft.Authorization/permissions`.
    Permissions(&'p str),
}

impl<'p> Route<'p> {
    /// The route of `method` on the path segments after the subscription.
    fn of(method: &Method, rest: &[&'p str]) -> Option<Self> {
        const COMPUTE: &str = "Microsoft.Compute";
        let get = *method == Method::GET;
        Some(match rest {
            ["locations"] if get => Self::Locations,
            ["providers", COMPUTE, "skus"] if get => Self::Skus,
            ["providers", COMPUTE, "locations", loc, "usages"] if get => Self::Usages(loc),
            ["providers", COMPUTE, "locations", _, "operations", id] if get => Self::Operation(id),
            [
                "resourceGroups",
                rg,
                "providers",
                COMPUTE,
                "virtualMachines",
            ] if get => Self::ListVms(rg),
            [
                "resourceGroups",
                rg,
                "providers",
                COMPUTE,
                "virtualMachines",
                name,
            ] => match *method {
                Method::GET => Self::GetVm(rg, name),
                Method::PUT => Self::PutVm(rg, name),
                Method::DELETE => Self::DeleteVm(rg, name),
                _ => return None,
            },
            [
                "resourceGroups",
                rg,
                "providers",
                "Microsoft.Authorization",
                "permissions",
            ] if get => Self::Permissions(rg),
            _ => return None,
        })
    }

    /// Its name in injected faults (`azure/<operation>`).
    fn operation(self) -> &'static str {
        match self {
            Self::Locations => "locations",
            Self::Skus => "skus",
            Self::Usages(_) => "usages",
            Self::Operation(_) => "operations",
            Self::ListVms(_) => "virtualMachines/list",
            Self::GetVm(..) => "virtualMachines/get",
            Self::PutVm(..) => "virtualMachines/put",
            Self::DeleteVm(..) => "virtualMachines/delete",
            Self::Permissions(_) => "permissions",
        }
    }

    /// The action it needs (`None`: any caller may read its own permissions).
    fn action(self) -> Option<&'static str> {
        Some(match self {
            Self::Locations => "Microsoft.Resources/subscriptions/locations/read",
            Self::Skus => "Microsoft.Compute/skus/read",
            Self::Usages(_) => "Microsoft.Compute/locations/usages/read",
            Self::Operation(_) => "Microsoft.Compute/locations/operations/read",
            Self::ListVms(_) | Self::GetVm(..) => "Microsoft.Compute/virtualMachines/read",
            Self::PutVm(..) => "Microsoft.Compute/virtualMachines/write",
            Self::DeleteVm(..) => "Microsoft.Compute/virtualMachines/delete",
            Self::Permissions(_) => return None,
        })
    }

    /// The scope named in authorization errors.
    fn scope(self, s: &str) -> String {
        match self {
            Self::ListVms(rg) | Self::Permissions(rg) => {
                format!("/subscriptions/{s}/resourceGroups/{rg}")
            }
            Self::GetVm(rg, name) | Self::PutVm(rg, name) | Self::DeleteVm(rg, name) => {
                vm_scope(s, rg, name)
            }
            _ => format!("/subscriptions/{s}"),
        }
    }
}

/// What an operation gets besides the world.
struct Request<'r> {
    /// The subscription of the path.
    subscription: &'r str,
    /// The caller.
    who: &'r Identity,
    /// The query string.
    query: &'r BTreeMap<String, String>,
    /// `http://<host>`, for the URLs handed out.
    base: &'r str,
    /// The body.
    body: &'r [u8],
    /// Simulated time.
    elapsed: std::time::Duration,
}

/// `/subscriptions/{*path}`: `api-version`, the route, then in the world the token, the
/// subscription's rate limit, an injected fault, the action, and the operation.
pub(crate) async fn resource_manager(
    State(sim): State<Arc<Sim>>,
    method: Method,
    headers: HeaderMap,
    Path(path): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let q = query(raw.as_deref());
    if q.get("api-version").is_none_or(|v| v.is_empty()) {
        return error_response(&AzureError::new(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    }
    let segments: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let Some((s, rest)) = segments.split_first() else {
        return error_response(&AzureError::new(
            404,
            "NotFound",
            "No subscription in the path.",
        ));
    };
    let Some(route) = Route::of(&method, rest) else {
        return error_response(&AzureError::new(
            404,
            "InvalidResourceType",
            format!("The resource type could not be found for {method} /subscriptions/{path}."),
        ));
    };
    let token = bearer(&headers);
    let base = base(&headers);
    let result = sim.with_world(|world, elapsed| {
        let who = world.azure_caller(token.as_deref(), std::time::Instant::now())?;
        world.azure_throttle(s)?;
        if let Some(fault) = world.azure_fault(route.operation()) {
            return Err(fault);
        }
        if let Some(action) = route.action() {
            world.azure_authorize(&who, s, action, &route.scope(s))?;
        }
        let request = Request {
            subscription: s,
            who: &who,
            query: &q,
            base: &base,
            body: &body,
            elapsed,
        };
        run(world, route, &request)
    });
    result.unwrap_or_else(|e| {
        tracing::debug!(code = %e.code, message = %e.message, "azure request failed");
        error_response(&e)
    })
}

/// Runs a routed operation.
fn run(w: &mut World, route: Route<'_>, r: &Request<'_>) -> Result<Response, AzureError> {
    let s = r.subscription;
    match route {
        Route::Locations => Ok(locations(w, s)),
        Route::Skus => Ok(skus(w, s, location_filter(r.query.get("$filter")))),
        Route::Usages(location) => usages(w, s, location),
        Route::Operation(id) => operation(w, s, id),
        Route::ListVms(rg) => {
            let view = r
                .query
                .get("statusOnly")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let value: Vec<Value> = w.azure_vms_in(s, rg).map(|v| vm_json(w, v, view)).collect();
            Ok(Json(json!({ "value": value })).into_response())
        }
        Route::GetVm(rg, name) => {
            let view = r
                .query
                .get("$expand")
                .is_some_and(|v| v.eq_ignore_ascii_case("instanceView"));
            let vm = w
                .azure_vm(s, rg, name)
                .ok_or_else(|| AzureError::vm_not_found(rg, name))?;
            Ok(Json(vm_json(w, vm, view)).into_response())
        }
        Route::PutVm(rg, name) => put_vm(w, r, rg, name),
        Route::DeleteVm(rg, name) => Ok(if w.azure_delete(s, rg, name) {
            StatusCode::ACCEPTED.into_response()
        } else {
            StatusCode::NO_CONTENT.into_response()
        }),
        Route::Permissions(_) => {
            // anyone may read their own permissions; in another subscription they have none
            let actions = if r.who.account == s {
                r.who.allow.clone()
            } else {
                Vec::new()
            };
            Ok(Json(json!({ "value": [{ "actions": actions, "notActions": [], "dataActions": [], "notDataActions": [] }] })).into_response())
        }
    }
}

/// `locations`: the scenario's Azure regions with the subscription's zone mappings.
fn locations(w: &World, s: &str) -> Response {
    let value: Vec<Value> = w
        .azure_regions()
        .into_iter()
        .map(|region| {
            let mappings: Vec<Value> = w
                .zones(s, &region)
                .into_iter()
                .map(|(logical, id)| {
                    json!({ "logicalZone": logical, "physicalZone": physical_zone(&id) })
                })
                .collect();
            json!({
                "id": format!("/subscriptions/{s}/locations/{region}"),
                "name": region,
                "displayName": region,
                "regionalDisplayName": region,
                "metadata": { "regionType": "Physical", "regionCategory": "Recommended" },
                "availabilityZoneMappings": mappings,
            })
        })
        .collect();
    Json(json!({ "value": value })).into_response()
}

/// Azure's physical zone name of a capsight zone id: `eastus-1` -> `eastus-az1`.
fn physical_zone(zone_id: &str) -> String {
    match zone_id.rsplit_once('-') {
        Some((region, n)) => format!("{region}-az{n}"),
        None => zone_id.to_owned(),
    }
}

/// `location eq 'x'` of a SKU `$filter`.
fn location_filter(filter: Option<&String>) -> Option<String> {
    let f = filter?;
    let (_, rest) = f.split_once("eq")?;
    Some(rest.trim().trim_matches('\'').to_owned())
}

/// `skus`: every catalog size with a pool in a region (`only`: one location), its zones and
/// the subscription's restrictions.
fn skus(w: &World, s: &str, only: Option<String>) -> Response {
    let mut value = Vec::new();
    for (name, size) in sizes() {
        for region in w.azure_regions() {
            if only
                .as_ref()
                .is_some_and(|l| !l.eq_ignore_ascii_case(&region))
            {
                continue;
            }
            let offered = w.azure_sku_zones(&region, name);
            if offered.is_empty() {
                continue;
            }
            let logical = |ids: &[String]| -> Vec<String> {
                let mut out: Vec<String> = ids.iter().filter_map(|z| w.zone_name(s, z)).collect();
                out.sort();
                out
            };
            let offered: Vec<String> = offered.into_iter().collect();
            let restrictions = match w.azure_restriction(s, &region, name) {
                None => vec![],
                Some(zones) if zones.is_empty() => vec![json!({
                    "type": "Location",
                    "values": [region],
                    "restrictionInfo": { "locations": [region] },
                    "reasonCode": "NotAvailableForSubscription",
                })],
                Some(zones) => vec![json!({
                    "type": "Zone",
                    "values": [region],
                    "restrictionInfo": { "locations": [region], "zones": logical(&zones) },
                    "reasonCode": "NotAvailableForSubscription",
                })],
            };
            value.push(json!({
            "resourceType": "virtualMachines",
            "name": name,
            "tier": "Standard",
            "size": name.strip_prefix("Standard_").unwrap_or(name),
            "family": size.family,
            "locations": [region],
            "locationInfo": [{ "location": region, "zones": logical(&offered), "zoneDetails": [] }],
            "capabilities": [
                { "name": "vCPUs", "value": size.vcpus.to_string() },
                { "name": "GPUs", "value": size.gpus.to_string() },
                { "name": "MemoryGB", "value": size.memory_gib.to_string() },
                { "name": "LowPriorityCapable", "value": "True" },
            ],
            "restrictions": restrictions,
        }));
        }
    }
    Json(json!({ "value": value })).into_response()
}

/// `locations/{loc}/usages`: per usage name the subscription's vCPUs there and its limit.
fn usages(w: &World, s: &str, location: &str) -> Result<Response, AzureError> {
    if !w.azure_regions().contains(location) {
        return Err(AzureError::new(
            404,
            "NoRegisteredProviderFound",
            format!("No registered resource provider found for location '{location}'."),
        ));
    }
    let value: Vec<Value> = w
        .azure_usage_names()
        .into_iter()
        .map(|name| {
            let localized = match name.as_str() {
                "cores" => "Total Regional vCPUs".to_owned(),
                "lowPriorityCores" => "Total Regional Low-priority vCPUs".to_owned(),
                family => format!("Standard {} Family vCPUs", family_series(family)),
            };
            json!({
                "unit": "Count",
                // Azure reports whole vCPUs
                "currentValue": w.azure_usage(s, location, &name).round() as i64,
                "limit": w.azure_limit(s, &name).round() as i64,
                "name": { "value": name, "localizedValue": localized },
            })
        })
        .collect();
    Ok(Json(json!({ "value": value })).into_response())
}

/// `locations/{loc}/operations/{id}`: a create's status.
fn operation(w: &World, s: &str, id: &str) -> Result<Response, AzureError> {
    let op = w.azure_operation(s, id).ok_or_else(|| {
        AzureError::new(
            404,
            "NotFound",
            format!("The operation '{id}' was not found."),
        )
    })?;
    let mut body = json!({
        "name": op.id,
        "status": op.status,
        "startTime": op.started.to_rfc3339(),
    });
    if op.status != "InProgress" {
        body["endTime"] = json!(op.started.to_rfc3339());
    }
    if let Some(e) = &op.error {
        body["error"] = json!({ "code": e.code, "message": e.message });
    }
    Ok(Json(body).into_response())
}

/// `standardNDSH100v5Family` -> `NDSH100v5`.
fn family_series(family: &str) -> &str {
    let f = family.strip_prefix("standard").unwrap_or(family);
    f.strip_suffix("Family").unwrap_or(f)
}

fn vm_scope(s: &str, rg: &str, name: &str) -> String {
    format!(
        "/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}"
    )
}

fn vm_json(w: &World, vm: &AzureVm, instance_view: bool) -> Value {
    let mut properties = json!({
        "vmId": vm.vm_id,
        "hardwareProfile": { "vmSize": vm.vm_size },
        "priority": if vm.market == PoolMarket::Spot { "Spot" } else { "Regular" },
        "provisioningState": vm.provisioning.as_str(),
        "timeCreated": vm.created.to_rfc3339(),
    });
    if vm.market == PoolMarket::Spot {
        properties["evictionPolicy"] = json!("Delete");
    }
    if instance_view {
        let mut statuses = vec![json!({
            "code": format!("ProvisioningState/{}", vm.provisioning.as_str().to_lowercase()),
            "level": if vm.provisioning == Provisioning::Failed { "Error" } else { "Info" },
        })];
        match vm.provisioning {
            Provisioning::Creating => statuses.push(json!({ "code": "PowerState/starting" })),
            Provisioning::Succeeded => statuses.push(json!({ "code": "PowerState/running" })),
            Provisioning::Failed => {
                if let Some(e) = w
                    .azure_operation(&vm.subscription, &vm.operation)
                    .and_then(|o| o.error)
                {
                    statuses[0]["code"] = json!(format!("ProvisioningState/failed/{}", e.code));
                    statuses[0]["message"] = json!(e.message);
                }
            }
        }
        properties["instanceView"] = json!({ "statuses": statuses });
    }
    let mut body = json!({
        "id": vm_scope(&vm.subscription, &vm.resource_group, &vm.name),
        "name": vm.name,
        "type": "Microsoft.Compute/virtualMachines",
        "location": vm.location,
        "tags": vm.tags,
        "properties": properties,
    });
    if let Some(z) = &vm.zone {
        body["zones"] = json!([z]);
    }
    body
}

#[derive(Debug, Deserialize)]
struct VmBody {
    location: String,
    #[serde(default)]
    zones: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    properties: VmProperties,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VmProperties {
    hardware_profile: HardwareProfile,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    billing_profile: Option<BillingProfile>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HardwareProfile {
    vm_size: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BillingProfile {
    #[serde(default)]
    max_price: Option<f64>,
}

/// `virtualMachines/{name}` PUT: 201 (created) or 200 (existing), with `Azure-AsyncOperation`
/// pointing at the create's operation.
fn put_vm(w: &mut World, r: &Request<'_>, rg: &str, name: &str) -> Result<Response, AzureError> {
    let s = r.subscription;
    let base = r.base;
    let api_version = r.query.get("api-version").map_or("", String::as_str);
    let b: VmBody = serde_json::from_slice(r.body).map_err(|e| {
        AzureError::new(
            400,
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'."),
        )
    })?;
    if name.is_empty() || name.len() > 64 {
        return Err(AzureError::new(
            400,
            "InvalidParameter",
            "The VM name must be 1 to 64 characters long.",
        ));
    }
    let market = match b.properties.priority.as_deref() {
        None | Some("Regular") => PoolMarket::OnDemand,
        Some("Spot") | Some("Low") => PoolMarket::Spot,
        Some(other) => {
            return Err(AzureError::invalid(format!(
                "The value '{other}' of parameter 'priority' is not allowed."
            )));
        }
    };
    let spec = AzureCreate {
        location: b.location,
        zones: b.zones,
        vm_size: b.properties.hardware_profile.vm_size,
        market,
        max_price: b.properties.billing_profile.and_then(|p| p.max_price),
        tags: b.tags,
    };
    let (vm, created) = w.azure_create(s, rg, name, &spec, r.elapsed)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let operation = format!(
        "{base}/subscriptions/{s}/providers/Microsoft.Compute/locations/{}/operations/{}?api-version={api_version}",
        vm.location, vm.operation
    );
    let mut response = (status, Json(vm_json(w, &vm, false))).into_response();
    if let Ok(v) = HeaderValue::from_str(&operation) {
        response.headers_mut().insert("azure-asyncoperation", v);
    }
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    Ok(response)
}

/// `GET /api/retail/prices?$filter=...` (no auth).
pub(crate) async fn retail_prices(
    State(sim): State<Arc<Sim>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = query(raw.as_deref());
    let clauses = match parse_filter(q.get("$filter").map_or("", String::as_str)) {
        Ok(c) => c,
        Err(why) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "Error": { "Code": "BadRequest", "Message": why } })),
            )
                .into_response();
        }
    };
    let items: Vec<Value> = sim.with_world(|w, _| {
        let since = w.time_at(std::time::Duration::ZERO).to_rfc3339();
        let mut items = Vec::new();
        for region in w.azure_regions() {
            for (name, size) in sizes() {
                let sku = name
                    .strip_prefix("Standard_")
                    .unwrap_or(name)
                    .replace('_', " ");
                let series = family_series(&size.family);
                let od = size.on_demand_usd_per_hour;
                let spot = w.azure_spot_price(&region, name).unwrap_or(od);
                for (sku_name, product, price) in [
                    (sku.clone(), format!("Virtual Machines {series} Series"), od),
                    (
                        format!("{sku} Spot"),
                        format!("Virtual Machines {series} Series"),
                        spot,
                    ),
                    (
                        sku.clone(),
                        format!("Virtual Machines {series} Series Windows"),
                        od * 1.2,
                    ),
                ] {
                    items.push(json!({
                        "currencyCode": "USD",
                        "tierMinimumUnits": 0.0,
                        "retailPrice": price,
                        "unitPrice": price,
                        "armRegionName": region,
                        "location": region,
                        "effectiveStartDate": since,
                        "meterName": sku_name,
                        "productName": product,
                        "skuName": sku_name,
                        "serviceName": "Virtual Machines",
                        "serviceFamily": "Compute",
                        "unitOfMeasure": "1 Hour",
                        "type": "Consumption",
                        "isPrimaryMeterRegion": true,
                        "armSkuName": name,
                    }));
                }
            }
        }
        items
    });
    let items: Vec<Value> = items
        .into_iter()
        .filter(|i| {
            clauses.iter().all(|(field, value)| {
                i.get(field)
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.eq_ignore_ascii_case(value))
            })
        })
        .collect();
    Json(json!({
        "BillingCurrency": "USD",
        "CustomerEntityId": "Default",
        "CustomerEntityType": "Retail",
        "Count": items.len(),
        "NextPageLink": null,
        "Items": items,
    }))
    .into_response()
}

/// `field eq 'value' and ...` -> (field, value) pairs; other OData is refused.
fn parse_filter(filter: &str) -> Result<Vec<(String, String)>, String> {
    const FIELDS: &[&str] = &[
        "armRegionName",
        "armSkuName",
        "serviceName",
        "serviceFamily",
        "skuName",
        "productName",
        "priceType",
        "type",
        "location",
        "meterName",
    ];
    if filter.trim().is_empty() {
        return Ok(Vec::new());
    }
    filter
        .split(" and ")
        .map(|clause| {
            let (field, value) = clause
                .trim()
                .split_once(" eq ")
                .ok_or_else(|| format!("Invalid OData filter clause: {clause}"))?;
            let field = field.trim();
            let field = FIELDS
                .iter()
                .find(|f| f.eq_ignore_ascii_case(field))
                .ok_or_else(|| format!("Invalid OData filter field: {field}"))?;
            // priceType is what the API calls the items' `type`
            let field = if *field == "priceType" { "type" } else { field };
            let value = value.trim();
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .ok_or_else(|| format!("Invalid OData filter value: {value}"))?;
            Ok((field.to_owned(), value.to_owned()))
        })
        .collect()
}

/// `GET /azure/status/feed`: Azure's status RSS, one item per open incident of an `Azure...`
/// component.
pub(crate) async fn status_feed(State(sim): State<Arc<Sim>>) -> Response {
    let body = sim.with_world(|w, _| {
        let mut out = String::from(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<rss version=\"2.0\">\n<channel>\n<title>Azure Status</title>\n<link>https://azure.status.microsoft/en-us/status/</link>\n<description>Azure Status</description>\n<language>en-US</language>\n",
        );
        for i in w.incidents().iter().filter(|i| {
            i.resolved_at.is_none() && i.component.to_lowercase().starts_with("azure")
        }) {
            let body = i.updates.last().map_or("", |(_, _, b)| b.as_str());
            out.push_str(&format!(
                "<item>\n<title><![CDATA[{}]]></title>\n<link>https://azure.status.microsoft/en-us/status/</link>\n<guid isPermaLink=\"false\">{}</guid>\n<pubDate>{}</pubDate>\n<description><![CDATA[{}]]></description>\n</item>\n",
                i.title.replace("]]>", "]]&gt;"),
                crate::xml::escape(&i.id),
                i.started_at.format("%a, %d %b %Y %H:%M:%S Z"),
                body.replace("]]>", "]]&gt;"),
            ));
        }
        out.push_str("</channel>\n</rss>\n");
        out
    });
    (
        [(header::CONTENT_TYPE, "application/rss+xml; charset=utf-8")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retail_filters_are_eq_clauses_joined_by_and() {
        let c = parse_filter(
            "serviceName eq 'Virtual Machines' and armRegionName eq 'eastus' and priceType eq 'Consumption'",
        )
        .unwrap();
        assert_eq!(
            c,
            vec![
                ("serviceName".into(), "Virtual Machines".into()),
                ("armRegionName".into(), "eastus".into()),
                ("type".into(), "Consumption".into()),
            ]
        );
        assert!(parse_filter("contains(skuName, 'Spot')").is_err());
        assert!(parse_filter("color eq 'red'").is_err());
        assert!(parse_filter("").unwrap().is_empty());
    }

    #[test]
    fn physical_zones_and_series() {
        assert_eq!(physical_zone("eastus-2"), "eastus-az2");
        assert_eq!(family_series("standardNDSH100v5Family"), "NDSH100v5");
    }
}
