//! RunPod's GraphQL API subset (`POST /graphql`, as `https://api.runpod.io/graphql`) on
//! cloudsim's port. Requests are parsed as GraphQL documents (`graphql-parser`): the operation,
//! its top-level fields with aliases and arguments (literals or `$variables`), and the
//! selection sets, which shape every answer. Served:
//!
//! * `query { gpuTypes(input: {id}) { id displayName memoryInGb secureCloud communityCloud
//!   securePrice communityPrice secureSpotPrice communitySpotPrice lowestPrice(input:
//!   {gpuCount, secureCloud}) { minimumBidPrice uninterruptablePrice stockStatus } } }`: the
//!   GPU catalog's RunPod GPU types; `stockStatus` (`High`, `Medium`, `Low`, or null) comes
//!   from the stock of the on-demand pool of that GPU count in the asked cloud type (both when
//!   `secureCloud` is absent), `minimumBidPrice` from the spot pool (null without stock);
//! * `query { myself { id clientBalance currentSpendPerHr pods { ... } } }`;
//! * `mutation { podFindAndDeployOnDemand(input: {...}) { ... } }`,
//!   `podRentInterruptable(input: {..., bidPerGpu})` and `podTerminate(input: {podId})`.
//!
//! The caller is the API key in `Authorization: Bearer <key>` or the `api_key` query
//! parameter. Errors come as GraphQL `{"errors": [{"message", "path"}], "data": ...}`: the
//! API's own (no stock, balance, GPU limit, unknown pod) with HTTP 200 and the field null;
//! an unknown key 401 `Unauthorized`; a rate limit 429; a malformed document, an unknown field
//! or input field 400. Check order: key, rate limit, then per top-level field its injected
//! fault (`runpod/<field>`) and its own checks.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Json,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use capsight_catalog::GpuType;
use graphql_parser::query::{
    Definition, Document, Field, OperationDefinition, Selection, SelectionSet, Value as GqlValue,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    Sim,
    scenario::PoolMarket,
    world::{
        World,
        runpod::{PodStatus, RunPodDeploy, RunPodError, RunPodPod, stock_status},
    },
};

/// The catalog's RunPod types.
fn runpod_types() -> impl Iterator<Item = &'static GpuType> {
    crate::world::catalog_types("runpod")
}

/// The RunPod instance types cloudsim serves (the GPU catalog's), in catalog order.
pub fn type_names() -> Vec<String> {
    runpod_types()
        .map(|g| g.instance_type.as_str().to_owned())
        .collect()
}

/// The catalog type of (GPU type id, count).
fn type_of(gpu_type_id: &str, gpu_count: u32) -> Option<&'static GpuType> {
    runpod_types()
        .find(|g| g.gpu_count == gpu_count && g.provider_id.as_deref() == Some(gpu_type_id))
}

/// RunPod's display name of a type: `1x_h100_sxm` -> `H100 SXM`.
fn display_name(g: &GpuType) -> String {
    let slug = g
        .instance_type
        .as_str()
        .split_once("x_")
        .map_or(g.instance_type.as_str(), |(_, gpu)| gpu);
    slug.split('_')
        .map(str::to_ascii_uppercase)
        .collect::<Vec<_>>()
        .join(" ")
}

// ------------------------------------------------------------------ the request

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    query: String,
    #[serde(default)]
    variables: Option<Map<String, Value>>,
    #[serde(default)]
    operation_name: Option<String>,
}

/// Query or mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OperationKind {
    Query,
    Mutation,
}

impl OperationKind {
    fn type_name(self) -> &'static str {
        match self {
            Self::Query => "Query",
            Self::Mutation => "Mutation",
        }
    }
}

/// The operation to run: its kind, top-level selection and variables (with defaults).
struct Operation<'a> {
    kind: OperationKind,
    selection: &'a SelectionSet<'a, String>,
    variables: Map<String, Value>,
}

fn operation<'a>(
    document: &'a Document<'a, String>,
    name: Option<&str>,
    mut variables: Map<String, Value>,
) -> Result<Operation<'a>, RunPodError> {
    let mut found = Vec::new();
    for d in &document.definitions {
        match d {
            Definition::Fragment(_) => {
                return Err(RunPodError::bad_request(
                    "fragments are not supported by this API subset",
                ));
            }
            Definition::Operation(op) => found.push(op),
        }
    }
    let named = |op: &&OperationDefinition<'a, String>| match op {
        OperationDefinition::Query(q) => q.name.as_deref() == name,
        OperationDefinition::Mutation(m) => m.name.as_deref() == name,
        _ => false,
    };
    let op: &OperationDefinition<'a, String> =
        match (name, found.as_slice()) {
            (None, [one]) => one,
            (None, _) => {
                return Err(RunPodError::bad_request(
                    "Must provide operation name if query contains multiple operations.",
                ));
            }
            (Some(n), _) => found.iter().copied().find(|op| named(op)).ok_or_else(|| {
                RunPodError::bad_request(format!("Unknown operation named \"{n}\"."))
            })?,
        };
    let (kind, selection, definitions) = match op {
        OperationDefinition::SelectionSet(s) => (OperationKind::Query, s, &[][..]),
        OperationDefinition::Query(q) => (
            OperationKind::Query,
            &q.selection_set,
            q.variable_definitions.as_slice(),
        ),
        OperationDefinition::Mutation(m) => (
            OperationKind::Mutation,
            &m.selection_set,
            m.variable_definitions.as_slice(),
        ),
        OperationDefinition::Subscription(_) => {
            return Err(RunPodError::bad_request("subscriptions are not supported"));
        }
    };
    for d in definitions {
        if !variables.contains_key(&d.name)
            && let Some(default) = &d.default_value
        {
            let value = to_json(default, &Map::new())?;
            variables.insert(d.name.clone(), value);
        }
    }
    Ok(Operation {
        kind,
        selection,
        variables,
    })
}

/// A GraphQL value as JSON, `$variables` substituted (enums become their names).
fn to_json(
    value: &GqlValue<'_, String>,
    variables: &Map<String, Value>,
) -> Result<Value, RunPodError> {
    Ok(match value {
        GqlValue::Variable(name) => variables.get(name).cloned().ok_or_else(|| {
            RunPodError::bad_request(format!("Variable \"${name}\" was not provided."))
        })?,
        GqlValue::Int(n) => n.as_i64().map_or(Value::Null, Value::from),
        GqlValue::Float(f) => json!(f),
        GqlValue::String(s) => Value::String(s.clone()),
        GqlValue::Boolean(b) => Value::Bool(*b),
        GqlValue::Null => Value::Null,
        GqlValue::Enum(e) => Value::String(e.clone()),
        GqlValue::List(items) => Value::Array(
            items
                .iter()
                .map(|v| to_json(v, variables))
                .collect::<Result<_, _>>()?,
        ),
        GqlValue::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), to_json(v, variables)?)))
                .collect::<Result<_, RunPodError>>()?,
        ),
    })
}

/// The field's argument `name` deserialized as `T` (`input_type` names it in errors);
/// `None` when absent.
fn argument<T: serde::de::DeserializeOwned>(
    field: &Field<'_, String>,
    name: &str,
    input_type: &str,
    variables: &Map<String, Value>,
) -> Result<Option<T>, RunPodError> {
    for (arg, _) in &field.arguments {
        if arg != name {
            return Err(RunPodError::bad_request(format!(
                "Unknown argument \"{arg}\" on field \"{}\".",
                field.name
            )));
        }
    }
    let Some((_, value)) = field.arguments.iter().find(|(arg, _)| arg == name) else {
        return Ok(None);
    };
    let value = to_json(value, variables)?;
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| RunPodError::bad_request(format!("Invalid value for {input_type}: {e}")))
}

/// The name a field answers under: its alias, else its name.
fn response_key(field: &Field<'_, String>) -> String {
    field.alias.clone().unwrap_or_else(|| field.name.clone())
}

/// The fields of a selection set (fragments are refused when the document is read; inline
/// fragments too).
fn fields<'s, 'a>(
    set: &'s SelectionSet<'a, String>,
) -> Result<Vec<&'s Field<'a, String>>, RunPodError> {
    set.items
        .iter()
        .map(|s| match s {
            Selection::Field(f) => Ok(f),
            _ => Err(RunPodError::bad_request(
                "fragments are not supported by this API subset",
            )),
        })
        .collect()
}

/// Answers a field with arguments (`lowestPrice`), or `None` for a plain field.
type Computed<'c> = &'c dyn Fn(&Field<'_, String>) -> Option<Result<Value, RunPodError>>;

/// Shapes `full` (every field of a `type_name` object) by `set`; `computed` answers the
/// fields with arguments (`lowestPrice`).
fn project(
    full: &Value,
    type_name: &str,
    set: &SelectionSet<'_, String>,
    computed: Computed<'_>,
) -> Result<Value, RunPodError> {
    match full {
        Value::Array(items) => Ok(Value::Array(
            items
                .iter()
                .map(|i| project(i, type_name, set, computed))
                .collect::<Result<_, _>>()?,
        )),
        Value::Object(_) if set.items.is_empty() => Err(RunPodError::bad_request(format!(
            "Field of type \"{type_name}\" must have a selection of subfields."
        ))),
        Value::Object(object) => {
            let mut out = Map::new();
            for f in fields(set)? {
                let value = if let Some(v) = computed(f) {
                    v?
                } else if f.name == "__typename" {
                    Value::String(type_name.to_owned())
                } else {
                    let v = object.get(&f.name).ok_or_else(|| {
                        RunPodError::bad_request(format!(
                            "Cannot query field \"{}\" on type \"{type_name}\".",
                            f.name
                        ))
                    })?;
                    match (v, f.selection_set.items.is_empty()) {
                        (Value::Object(_) | Value::Array(_), true) if !is_scalar_list(v) => {
                            return Err(RunPodError::bad_request(format!(
                                "Field \"{}\" of type \"{type_name}\" must have a selection of \
                                 subfields.",
                                f.name
                            )));
                        }
                        (_, true) | (Value::Null, false) => v.clone(),
                        (_, false) => project(v, &f.name, &f.selection_set, &|_| None)?,
                    }
                };
                out.insert(response_key(f), value);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

fn is_scalar_list(v: &Value) -> bool {
    matches!(v, Value::Array(items) if items.iter().all(|i| !i.is_object()))
}

// ------------------------------------------------------------------ resolvers

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GpuTypeFilter {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LowestPriceInput {
    #[serde(default = "one")]
    gpu_count: u32,
    #[serde(default)]
    secure_cloud: Option<bool>,
}

fn one() -> u32 {
    1
}

/// `SECURE`, `COMMUNITY`, `ALL`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum CloudType {
    Secure,
    Community,
    #[default]
    All,
}

impl CloudType {
    fn cloud(self) -> Option<String> {
        match self {
            Self::Secure => Some("secure".into()),
            Self::Community => Some("community".into()),
            Self::All => None,
        }
    }
}

/// `PodFindAndDeployOnDemandInput` / `PodRentInterruptableInput`: the fields capsight sends
/// and the common others (accepted, not simulated).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(
    dead_code,
    reason = "accepted for the API's shape; the simulation does not read them"
)]
struct DeployInput {
    gpu_type_id: String,
    #[serde(default = "one")]
    gpu_count: u32,
    #[serde(default)]
    cloud_type: CloudType,
    #[serde(default)]
    name: String,
    #[serde(default)]
    image_name: Option<String>,
    #[serde(default)]
    template_id: Option<String>,
    #[serde(default)]
    bid_per_gpu: Option<f64>,
    #[serde(default)]
    volume_in_gb: Option<f64>,
    #[serde(default)]
    container_disk_in_gb: Option<f64>,
    #[serde(default)]
    min_vcpu_count: Option<u32>,
    #[serde(default)]
    min_memory_in_gb: Option<u32>,
    #[serde(default)]
    docker_args: Option<String>,
    #[serde(default)]
    ports: Option<String>,
    #[serde(default)]
    volume_mount_path: Option<String>,
    #[serde(default)]
    env: Option<Vec<Value>>,
    #[serde(default)]
    support_public_ip: Option<bool>,
    #[serde(default)]
    start_ssh: Option<bool>,
    #[serde(default)]
    data_center_id: Option<String>,
    #[serde(default)]
    network_volume_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PodTerminateInput {
    pod_id: String,
}

/// Minimum spot bid per GPU-hour of `g` in `cloud`: the spot pool's `spot_price` per GPU, else
/// the catalog price times `defaults.spot_discount`.
fn min_bid(world: &World, cloud: &str, g: &GpuType) -> f64 {
    let per_gpu = g.usd_per_gpu_hour();
    let price = world
        .scenario()
        .pools
        .iter()
        .find(|p| {
            p.provider == crate::scenario::SimProvider::RunPod
                && p.region == cloud
                && p.instance_type == g.instance_type.as_str()
                && p.market == PoolMarket::Spot
        })
        .and_then(|p| p.spot_price)
        .map_or(per_gpu * world.scenario().defaults.spot_discount, |p| {
            p / f64::from(g.gpu_count)
        });
    round3(price)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `lowestPrice(input: {gpuCount, secureCloud})` of GPU type `id`.
fn lowest_price(world: &World, id: &str, input: &LowestPriceInput) -> Value {
    let clouds: Vec<&str> = match input.secure_cloud {
        Some(true) => vec!["secure"],
        Some(false) => vec!["community"],
        None => vec!["secure", "community"],
    };
    let Some(g) = type_of(id, input.gpu_count) else {
        return json!({ "gpuCount": input.gpu_count, "minimumBidPrice": null,
                       "uninterruptablePrice": null, "stockStatus": null });
    };
    let pool = |cloud: &str, market: PoolMarket| {
        world.runpod_pools().get(&(
            cloud.to_owned(),
            g.instance_type.as_str().to_owned(),
            market,
        ))
    };
    let rank = |s: Option<&str>| match s {
        Some("High") => 3,
        Some("Medium") => 2,
        Some("Low") => 1,
        _ => 0,
    };
    let on_demand: Vec<_> = clouds
        .iter()
        .filter_map(|c| pool(c, PoolMarket::OnDemand))
        .collect();
    let status = on_demand
        .iter()
        .map(|p| stock_status(p))
        .max_by_key(|s| rank(*s))
        .flatten();
    let bid = clouds
        .iter()
        .filter(|c| pool(c, PoolMarket::Spot).is_some_and(|p| p.stock > 0))
        .map(|c| min_bid(world, c, g))
        .min_by(f64::total_cmp);
    json!({
        "gpuCount": input.gpu_count,
        "minimumBidPrice": bid,
        "uninterruptablePrice": (!on_demand.is_empty()).then(|| round3(g.usd_per_gpu_hour())),
        "stockStatus": status,
    })
}

/// Every field of a GPU type but `lowestPrice`.
fn gpu_type_json(world: &World, id: &str, g: &GpuType) -> Value {
    let in_cloud = |cloud: &str, market: PoolMarket| {
        runpod_types()
            .filter(|t| t.provider_id.as_deref() == Some(id))
            .any(|t| {
                world.runpod_pools().contains_key(&(
                    cloud.to_owned(),
                    t.instance_type.as_str().to_owned(),
                    market,
                ))
            })
    };
    let price = |cloud: &str, market: PoolMarket| match market {
        PoolMarket::OnDemand => in_cloud(cloud, market).then(|| round3(g.usd_per_gpu_hour())),
        PoolMarket::Spot => in_cloud(cloud, market).then(|| {
            runpod_types()
                .filter(|t| t.provider_id.as_deref() == Some(id))
                .map(|t| min_bid(world, cloud, t))
                .fold(f64::INFINITY, f64::min)
        }),
    };
    let max_gpus = runpod_types()
        .filter(|t| t.provider_id.as_deref() == Some(id))
        .map(|t| t.gpu_count)
        .max()
        .unwrap_or(1);
    json!({
        "id": id,
        "displayName": display_name(g),
        "manufacturer": "Nvidia",
        "memoryInGb": g.gpu_memory_gib,
        "maxGpuCount": max_gpus,
        "secureCloud": in_cloud("secure", PoolMarket::OnDemand) || in_cloud("secure", PoolMarket::Spot),
        "communityCloud": in_cloud("community", PoolMarket::OnDemand)
            || in_cloud("community", PoolMarket::Spot),
        "securePrice": price("secure", PoolMarket::OnDemand),
        "communityPrice": price("community", PoolMarket::OnDemand),
        "secureSpotPrice": price("secure", PoolMarket::Spot),
        "communitySpotPrice": price("community", PoolMarket::Spot),
    })
}

fn gpu_types(
    world: &World,
    field: &Field<'_, String>,
    variables: &Map<String, Value>,
) -> Result<Value, RunPodError> {
    let filter: GpuTypeFilter =
        argument(field, "input", "GpuTypeFilter", variables)?.unwrap_or_default();
    // one entry per GPU type id (the catalog's first type of each id carries its facts)
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for g in runpod_types() {
        let Some(id) = g.provider_id.as_deref() else {
            continue;
        };
        if seen.contains(&id) || filter.id.as_deref().is_some_and(|f| f != id) {
            continue;
        }
        seen.push(id);
        let full = gpu_type_json(world, id, g);
        let projected = project(&full, "GpuType", &field.selection_set, &|f| {
            (f.name == "lowestPrice").then(|| {
                let input: LowestPriceInput = argument(f, "input", "LowestPriceInput", variables)?
                    .ok_or_else(|| {
                        RunPodError::bad_request(
                            "Field \"lowestPrice\" argument \"input\" is required.",
                        )
                    })?;
                project(
                    &lowest_price(world, id, &input),
                    "LowestPrice",
                    &f.selection_set,
                    &|_| None,
                )
            })
        })?;
        out.push(projected);
    }
    Ok(Value::Array(out))
}

fn pod_json(p: &RunPodPod, now: chrono::DateTime<chrono::Utc>) -> Value {
    let display = type_of(&p.gpu_type_id, p.gpu_count).map(display_name);
    json!({
        "id": p.id,
        "name": p.name,
        "desiredStatus": p.status.as_str(),
        "imageName": p.image_name,
        "gpuCount": p.gpu_count,
        "costPerHr": p.cost_per_hr,
        "podType": if p.market == PoolMarket::Spot { "INTERRUPTABLE" } else { "RESERVED" },
        "machineId": format!("m-{}", &p.id[..8.min(p.id.len())]),
        "lastStartedAt": p.created.to_rfc3339(),
        "machine": {
            "gpuTypeId": p.gpu_type_id,
            "gpuDisplayName": display,
            "podHostId": format!("{}-{}", p.id, p.cloud),
        },
        "runtime": if p.is_up() {
            let up = (now - p.created).num_seconds().max(0);
            json!({ "uptimeInSeconds": up, "gpus": [], "ports": [] })
        } else {
            Value::Null
        },
    })
}

fn myself(world: &World, account: &str, elapsed: std::time::Duration) -> Value {
    let now = world.time_at(elapsed);
    let pods: Vec<Value> = world
        .runpod_pods(account)
        .map(|p| pod_json(p, now))
        .collect();
    let spend: f64 = world
        .runpod_pods(account)
        .filter(|p| p.status == PodStatus::Running)
        .map(|p| p.cost_per_hr)
        .sum();
    json!({
        "id": account,
        "clientBalance": world.runpod_balance(account),
        "currentSpendPerHr": round3(spend),
        "pods": pods,
    })
}

fn deploy(
    world: &mut World,
    account: &str,
    field: &Field<'_, String>,
    variables: &Map<String, Value>,
    market: PoolMarket,
    elapsed: std::time::Duration,
) -> Result<Value, RunPodError> {
    let input_type = match market {
        PoolMarket::OnDemand => "PodFindAndDeployOnDemandInput",
        PoolMarket::Spot => "PodRentInterruptableInput",
    };
    let input: DeployInput = argument(field, "input", input_type, variables)?.ok_or_else(|| {
        RunPodError::bad_request(format!(
            "Field \"{}\" argument \"input\" of type \"{input_type}!\" is required.",
            field.name
        ))
    })?;
    if input.image_name.is_none() && input.template_id.is_none() {
        return Err(RunPodError::graphql("imageName or templateId is required"));
    }
    if market == PoolMarket::OnDemand && input.bid_per_gpu.is_some() {
        return Err(RunPodError::bad_request(format!(
            "Field \"bidPerGpu\" is not defined by type \"{input_type}\"."
        )));
    }
    // a GPU type or count RunPod cannot place is answered as no stock
    let g = type_of(&input.gpu_type_id, input.gpu_count)
        .ok_or_else(|| RunPodError::graphql(crate::world::runpod::NO_CAPACITY))?;
    let cloud = input.cloud_type.cloud();
    let bid_floor = cloud
        .as_deref()
        .map_or_else(|| min_bid(world, "secure", g), |c| min_bid(world, c, g));
    let spec = RunPodDeploy {
        cloud,
        instance_type: g.instance_type.as_str().to_owned(),
        gpu_type_id: input.gpu_type_id,
        gpu_count: input.gpu_count,
        name: input.name,
        image_name: input.image_name.unwrap_or_default(),
        market,
        bid_per_gpu: input.bid_per_gpu,
        usd_per_gpu_hour: g.usd_per_gpu_hour(),
    };
    let pod = world.runpod_deploy(account, &spec, bid_floor, elapsed)?;
    project(
        &pod_json(&pod, world.time_at(elapsed)),
        "Pod",
        &field.selection_set,
        &|_| None,
    )
}

/// Resolves one top-level field for `account`.
fn resolve(
    world: &mut World,
    account: &str,
    kind: OperationKind,
    field: &Field<'_, String>,
    variables: &Map<String, Value>,
    elapsed: std::time::Duration,
) -> Result<Value, RunPodError> {
    match (kind, field.name.as_str()) {
        (OperationKind::Query, "gpuTypes") => gpu_types(world, field, variables),
        (OperationKind::Query, "myself") => {
            let full = myself(world, account, elapsed);
            project(&full, "User", &field.selection_set, &|_| None)
        }
        (OperationKind::Mutation, "podFindAndDeployOnDemand") => deploy(
            world,
            account,
            field,
            variables,
            PoolMarket::OnDemand,
            elapsed,
        ),
        (OperationKind::Mutation, "podRentInterruptable") => {
            deploy(world, account, field, variables, PoolMarket::Spot, elapsed)
        }
        (OperationKind::Mutation, "podTerminate") => {
            let input: PodTerminateInput =
                argument(field, "input", "PodTerminateInput", variables)?.ok_or_else(|| {
                    RunPodError::bad_request(
                        "Field \"podTerminate\" argument \"input\" is required.",
                    )
                })?;
            world.runpod_terminate(account, &input.pod_id)?;
            Ok(Value::Null)
        }
        (kind, name) => Err(RunPodError::bad_request(format!(
            "Cannot query field \"{name}\" on type \"{}\".",
            kind.type_name()
        ))),
    }
}

// ------------------------------------------------------------------ HTTP

fn errors_response(status: u16, errors: Vec<Value>, data: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut body = json!({ "errors": errors });
    if !data.is_null() {
        body["data"] = data;
    }
    (status, Json(body)).into_response()
}

fn fail(e: &RunPodError) -> Response {
    tracing::debug!(status = e.status, message = %e.message, "runpod request failed");
    errors_response(e.status, vec![json!({ "message": e.message })], Value::Null)
}

/// The API key of a request: `Authorization: Bearer <key>` or `?api_key=<key>`.
fn api_key(headers: &HeaderMap, params: &BTreeMap<String, String>) -> Option<String> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    bearer
        .or_else(|| params.get("api_key").cloned())
        .filter(|k| !k.is_empty())
}

/// `POST /graphql`.
pub(crate) async fn graphql(
    State(sim): State<Arc<Sim>>,
    Query(params): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let request: Request = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => return fail(&RunPodError::bad_request(format!("Invalid JSON body: {e}"))),
    };
    let document = match graphql_parser::parse_query::<String>(&request.query) {
        Ok(d) => d,
        Err(e) => return fail(&RunPodError::bad_request(format!("Syntax Error: {e}"))),
    };
    let op = match operation(
        &document,
        request.operation_name.as_deref(),
        request.variables.unwrap_or_default(),
    ) {
        Ok(op) => op,
        Err(e) => return fail(&e),
    };
    let top = match fields(op.selection) {
        Ok(f) => f,
        Err(e) => return fail(&e),
    };
    let key = api_key(&headers, &params).unwrap_or_default();
    sim.with_world(|world, elapsed| {
        let account = match world.runpod_account(&key) {
            Ok(a) => a,
            Err(e) => return fail(&e),
        };
        if let Err(e) = world.runpod_throttle(&account) {
            return fail(&e);
        }
        let mut data = Map::new();
        let mut errors = Vec::new();
        for field in top {
            let name = response_key(field);
            let result = match world.runpod_fault(&field.name) {
                Some(fault) => Err(fault),
                None => resolve(world, &account, op.kind, field, &op.variables, elapsed),
            };
            match result {
                Ok(v) => {
                    data.insert(name, v);
                }
                // a malformed request or an HTTP-level failure answers as a whole
                Err(e) if e.status != 200 => return fail(&e),
                Err(e) => {
                    tracing::debug!(field = %field.name, message = %e.message, "runpod field failed");
                    errors.push(json!({ "message": e.message, "path": [name.clone()] }));
                    data.insert(name, Value::Null);
                }
            }
        }
        if errors.is_empty() {
            Json(json!({ "data": data })).into_response()
        } else {
            errors_response(200, errors, Value::Object(data))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_runpod_types_have_display_names_and_ids() {
        let g = type_of("NVIDIA H100 80GB HBM3", 8).unwrap();
        assert_eq!(g.instance_type.as_str(), "8x_h100_sxm");
        assert_eq!(display_name(g), "H100 SXM");
        assert!(type_of("NVIDIA H100 80GB HBM3", 3).is_none());
        assert!(type_names().contains(&"1x_rtx_4090".to_owned()));
    }

    #[test]
    fn api_keys_come_from_bearer_or_the_query_string() {
        let mut h = HeaderMap::new();
        let mut q = BTreeMap::new();
        assert_eq!(api_key(&h, &q), None);
        q.insert("api_key".to_owned(), "rp-1".to_owned());
        assert_eq!(api_key(&h, &q).as_deref(), Some("rp-1"));
        h.insert("authorization", "Bearer rp-2".parse().unwrap());
        assert_eq!(api_key(&h, &q).as_deref(), Some("rp-2"));
    }

    #[test]
    fn documents_resolve_variables_aliases_and_refuse_what_they_cannot_serve() {
        let doc = graphql_parser::parse_query::<String>(
            "query Q($n: Int = 2) { a: gpuTypes { id lowestPrice(input: {gpuCount: $n}) { stockStatus } } }",
        )
        .unwrap();
        let op = operation(&doc, None, Map::new()).unwrap();
        assert_eq!(op.kind, OperationKind::Query);
        assert_eq!(op.variables["n"], json!(2));
        let f = fields(op.selection).unwrap();
        assert_eq!(response_key(f[0]), "a");
        let spread = graphql_parser::parse_query::<String>(
            "query { myself { ...F } } fragment F on User { id }",
        )
        .unwrap();
        assert!(operation(&spread, None, Map::new()).is_err());
        let two = graphql_parser::parse_query::<String>(
            "query A { myself { id } } query B { myself { id } }",
        )
        .unwrap();
        assert!(operation(&two, None, Map::new()).is_err());
        assert!(operation(&two, Some("B"), Map::new()).is_ok());
        let missing = GqlValue::Variable("x".to_owned());
        assert_eq!(to_json(&missing, &Map::new()).unwrap_err().status, 400);
    }
}
