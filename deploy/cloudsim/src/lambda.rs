//! Lambda Cloud's public API subset (`/api/v1/...`) on cloudsim's port, in Lambda's JSON shapes:
//!
//! * `GET /api/v1/instance-types`: every Lambda type of the GPU catalog with its price, specs
//!   and `regions_with_capacity_available` (regions whose pool has stock now);
//! * `POST /api/v1/instance-operations/launch` (`region_name`, `instance_type_name`,
//!   `ssh_key_names`, `quantity`, `name`) -> `{"data": {"instance_ids": [...]}}`;
//! * `POST /api/v1/instance-operations/terminate` (`instance_ids`) ->
//!   `{"data": {"terminated_instances": [...]}}`;
//! * `GET /api/v1/instances`, `GET /api/v1/instances/{id}`.
//!
//! The caller is the API key in `Authorization: Bearer <key>` or basic auth with the key as
//! the user name. Errors are `{"error": {"code", "message", "suggestion"}}` with Lambda's codes
//! and statuses ([`LambdaError`]). Check order: key, account active, rate limit, injected fault
//! (`lambda/<operation>`), parameters, then the operation's own checks.

use std::{collections::BTreeMap, sync::OnceLock};

use axum::{
    Json,
    body::Bytes,
    extract::Path,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    Ctx,
    world::lambda::{LambdaError, LambdaInstance, LambdaLaunch},
};

/// What `/instance-types` says about a type (from the GPU catalog).
#[derive(Debug, Clone)]
struct LambdaType {
    description: String,
    gpu_description: String,
    price_cents_per_hour: u64,
    vcpus: u32,
    memory_gib: u32,
    gpus: u32,
}

/// The Lambda types of the embedded GPU catalog, by name.
fn types() -> &'static BTreeMap<String, LambdaType> {
    static TYPES: OnceLock<BTreeMap<String, LambdaType>> = OnceLock::new();
    TYPES.get_or_init(|| {
        crate::world::catalog_by_name("lambda", |g| {
            let gpu = format!("{} ({} GB)", g.gpu_model, g.gpu_memory_gib);
            LambdaType {
                description: format!("{}x {gpu}", g.gpu_count),
                gpu_description: gpu,
                // whole cents; the catalog's prices are small positive numbers
                price_cents_per_hour: (g.on_demand_usd_per_hour * 100.0).round() as u64,
                vcpus: g.vcpus,
                memory_gib: g.memory_gib,
                gpus: g.gpu_count,
            }
        })
    })
}

/// The Lambda instance types cloudsim serves (the GPU catalog's), in name order.
pub fn type_names() -> Vec<String> {
    types().keys().cloned().collect()
}

/// The API key of a request: `Bearer <key>`, or basic auth whose user is the key.
fn api_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?.trim();
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.trim().to_owned()).filter(|t| !t.is_empty());
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let user = decoded.split_once(':').map_or(decoded.as_str(), |(u, _)| u);
    Some(user.to_owned()).filter(|u| !u.is_empty())
}

/// Standard base64 (with or without padding); `None` on any other character.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

fn error_response(e: &LambdaError) -> Response {
    let mut error = json!({ "code": e.code, "message": e.message });
    if let Some(s) = &e.suggestion {
        error["suggestion"] = json!(s);
    }
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(json!({ "error": error }))).into_response()
}

fn respond(result: Result<Value, LambdaError>) -> Response {
    match result {
        Ok(data) => Json(json!({ "data": data })).into_response(),
        Err(e) => {
            tracing::debug!(code = %e.code, message = %e.message, "lambda request failed");
            error_response(&e)
        }
    }
}

fn instance_json(i: &LambdaInstance) -> Value {
    let t = types().get(&i.instance_type);
    json!({
        "id": i.id,
        "name": i.name,
        "status": i.status.as_str(),
        "region": { "name": i.region, "description": region_description(&i.region) },
        "instance_type": {
            "name": i.instance_type,
            "description": t.map(|t| t.description.clone()).unwrap_or_default(),
            "gpu_description": t.map(|t| t.gpu_description.clone()).unwrap_or_default(),
            "price_cents_per_hour": t.map_or(0, |t| t.price_cents_per_hour),
        },
        "ssh_key_names": i.ssh_key_names,
        "file_system_names": [],
        "hostname": null,
        "ip": null,
        "jupyter_url": null,
        "is_reserved": false,
    })
}

fn region_description(region: &str) -> String {
    format!("cloudsim {region}")
}

/// Runs `op` for the caller of `headers` after the common checks (key, account, rate limit,
/// injected fault for `operation`).
fn call(
    cx: &Ctx,
    operation: &str,
    op: impl FnOnce(&mut crate::world::World, &str, std::time::Duration) -> Result<Value, LambdaError>,
) -> Response {
    let key = api_key(&cx.headers);
    respond(cx.sim.with_world(|world, elapsed| {
        let account = world.lambda_account(key.as_deref().unwrap_or(""))?;
        world.lambda_throttle(&account)?;
        if let Some(fault) = world.lambda_fault(operation) {
            return Err(fault);
        }
        op(world, &account, elapsed)
    }))
}

/// `GET /api/v1/instance-types`.
pub(crate) async fn instance_types(cx: Ctx) -> Response {
    call(&cx, "instance-types", |world, _, _| {
        let mut data = serde_json::Map::new();
        for (name, t) in types() {
            let regions: Vec<Value> = world
                .lambda_regions_with_capacity(name)
                .iter()
                .map(|r| json!({ "name": r, "description": region_description(r) }))
                .collect();
            data.insert(
                name.clone(),
                json!({
                    "instance_type": {
                        "name": name,
                        "description": t.description,
                        "gpu_description": t.gpu_description,
                        "price_cents_per_hour": t.price_cents_per_hour,
                        "specs": {
                            "vcpus": t.vcpus,
                            "memory_gib": t.memory_gib,
                            // the GPU catalog does not carry local storage
                            "storage_gib": 0,
                            "gpus": t.gpus,
                        },
                    },
                    "regions_with_capacity_available": regions,
                }),
            );
        }
        Ok(Value::Object(data))
    })
}

#[derive(Debug, Deserialize)]
struct LaunchBody {
    region_name: String,
    instance_type_name: String,
    #[serde(default)]
    ssh_key_names: Vec<String>,
    #[serde(default = "one")]
    quantity: u32,
    #[serde(default)]
    name: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
struct TerminateBody {
    instance_ids: Vec<String>,
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, LambdaError> {
    serde_json::from_slice(bytes)
        .map_err(|e| LambdaError::invalid(format!("Invalid request body: {e}")))
}

/// `POST /api/v1/instance-operations/launch`.
pub(crate) async fn launch(cx: Ctx, bytes: Bytes) -> Response {
    call(&cx, "launch", |world, account, elapsed| {
        let b: LaunchBody = body(&bytes)?;
        if b.name.as_ref().is_some_and(|n| n.len() > 64) {
            return Err(LambdaError::invalid("name must be at most 64 characters"));
        }
        let spec = LambdaLaunch {
            region: b.region_name,
            instance_type: b.instance_type_name,
            quantity: b.quantity,
            name: b.name,
            ssh_key_names: b.ssh_key_names,
        };
        let known = types().contains_key(&spec.instance_type);
        let ids = world.lambda_launch(account, &spec, known, elapsed)?;
        Ok(json!({ "instance_ids": ids }))
    })
}

/// `POST /api/v1/instance-operations/terminate`.
pub(crate) async fn terminate(cx: Ctx, bytes: Bytes) -> Response {
    call(&cx, "terminate", |world, account, _| {
        let b: TerminateBody = body(&bytes)?;
        let done = world.lambda_terminate(account, &b.instance_ids)?;
        Ok(json!({ "terminated_instances": done.iter().map(instance_json).collect::<Vec<_>>() }))
    })
}

/// `GET /api/v1/instances`.
pub(crate) async fn instances(cx: Ctx) -> Response {
    call(&cx, "instances", |world, account, _| {
        Ok(Value::Array(
            world.lambda_instances(account).map(instance_json).collect(),
        ))
    })
}

/// `GET /api/v1/instances/{id}`.
pub(crate) async fn instance(cx: Ctx, Path(id): Path<String>) -> Response {
    call(&cx, "instances", |world, account, _| {
        world
            .lambda_instance(account, &id)
            .map(instance_json)
            .ok_or_else(|| {
                LambdaError::new(
                    404,
                    "global/object-does-not-exist",
                    format!("Specified instance does not exist: {id}"),
                )
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_come_from_bearer_or_basic_auth() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer secret_abc".parse().unwrap());
        assert_eq!(api_key(&h).as_deref(), Some("secret_abc"));
        // base64("secret_abc:")
        h.insert("authorization", "Basic c2VjcmV0X2FiYzo=".parse().unwrap());
        assert_eq!(api_key(&h).as_deref(), Some("secret_abc"));
        h.insert("authorization", "Basic !!!".parse().unwrap());
        assert_eq!(api_key(&h), None);
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(api_key(&h), None);
    }

    #[test]
    fn the_catalog_lambda_types_are_listed() {
        let t = &types()["gpu_8x_h100_sxm5"];
        assert_eq!(t.gpus, 8);
        assert_eq!(t.price_cents_per_hour, 2392);
    }
}
