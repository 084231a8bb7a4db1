//! Launch fixtures: jobs as the gateway builds them, and the `launch_requests` /
//! `launch_events` rows the gateway and the launcher write (for tests that set up a launch's
//! history directly).

use capsight_clickhouse::rows::{LaunchEventRow, LaunchRequestRow, split_time};
use capsight_proto::{
    domain::{CapacityKey, LaunchState},
    v1,
};
use chrono::{DateTime, Utc};

/// The machine image of test launches.
pub const IMAGE: &str = "ami-0123456789abcdef0";

/// A `Launch` request for one instance of `key` (string form) with [`IMAGE`] and
/// `idempotency_key` (empty: none), as a client sends it.
pub fn launch_request(key: &str, idempotency_key: &str) -> v1::LaunchRequest {
    let key: CapacityKey = key.parse().unwrap();
    v1::LaunchRequest {
        spec: Some(v1::LaunchSpec {
            key: Some(v1::CapacityKey::from(&key)),
            count: 1,
            image_id: IMAGE.into(),
            ..Default::default()
        }),
        idempotency_key: idempotency_key.into(),
        ..Default::default()
    }
}

/// A job as the gateway builds it: `count` instances of `key` (string form) for `tenant`
/// (hash `hash-<tenant>`), allowed in us-east-1 only, with up to `max_fallbacks` alternatives.
pub fn job(tenant: &str, key: &str, count: u32, max_fallbacks: u32) -> v1::LaunchJob {
    let key: CapacityKey = key.parse().unwrap();
    v1::LaunchJob {
        job_id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.into(),
        tenant_hash: format!("hash-{tenant}"),
        created_at: None,
        spec: Some(v1::LaunchSpec {
            key: Some(v1::CapacityKey::from(&key)),
            count,
            image_id: IMAGE.into(),
            subnet_id: String::new(),
            spot_max_price: 0.0,
        }),
        constraints: Some(v1::Constraints {
            allowed_regions: vec!["us-east-1".into()],
            ..Default::default()
        }),
        max_fallbacks,
        warm_standby: false,
        max_lifetime_seconds: 0,
        idle_ttl_seconds: 0,
        preflight_decision: 0,
    }
}

/// A request of `count` instances of `key` by `tenant`, accepted at `at`, with no options.
pub fn request(
    job_id: &str,
    tenant: &str,
    key: &CapacityKey,
    count: u32,
    at: DateTime<Utc>,
) -> LaunchRequestRow {
    let (created_at, created_ms) = split_time(at);
    LaunchRequestRow {
        job_id: job_id.into(),
        tenant: tenant.into(),
        created_at,
        created_ms,
        provider: key.provider.as_str().into(),
        region: key.region.as_str().into(),
        zone_id: key.zone_str().into(),
        instance_type: key.instance_type.as_str().into(),
        market: key.market.as_str().into(),
        count,
        image_id: IMAGE.into(),
        subnet_id: String::new(),
        spot_max_price: 0.0,
        warm_standby: 0,
        max_lifetime_secs: 0,
        idle_ttl_secs: 0,
        max_fallbacks: 0,
    }
}

/// The request row of `job`, accepted at `at`.
pub fn job_request(job: &v1::LaunchJob, at: DateTime<Utc>) -> LaunchRequestRow {
    let spec = job.spec.clone().unwrap();
    let key = CapacityKey::try_from(spec.key.clone().unwrap()).unwrap();
    LaunchRequestRow {
        image_id: spec.image_id,
        subnet_id: spec.subnet_id,
        spot_max_price: spec.spot_max_price,
        warm_standby: u8::from(job.warm_standby),
        max_lifetime_secs: job.max_lifetime_seconds,
        idle_ttl_secs: job.idle_ttl_seconds,
        max_fallbacks: job.max_fallbacks,
        ..request(&job.job_id, &job.tenant, &key, spec.count, at)
    }
}

/// Transition `seq` of `request` to `state` at the request's time, on its key, without an
/// instance, attempt or error.
pub fn event(request: &LaunchRequestRow, seq: u32, state: LaunchState) -> LaunchEventRow {
    LaunchEventRow {
        job_id: request.job_id.clone(),
        seq,
        tenant: request.tenant.clone(),
        at: request.created_at,
        at_ms: request.created_ms,
        state,
        provider: request.provider.clone(),
        region: request.region.clone(),
        zone_id: request.zone_id.clone(),
        instance_type: request.instance_type.clone(),
        market: request.market.clone(),
        instance_id: String::new(),
        attempt: 0,
        error_class: String::new(),
        error_code: String::new(),
        detail: String::new(),
    }
}

/// A job that got as far as running in its first attempt: `queued`, `provisioning` and
/// `running` (seq 0, 1, 2) at the times `at`, the last two on `instance` (ids, comma-separated);
/// each event's detail is its state's name.
pub fn ran(
    request: &LaunchRequestRow,
    at: [DateTime<Utc>; 3],
    instance: &str,
) -> Vec<LaunchEventRow> {
    let states = [
        (LaunchState::Queued, ""),
        (LaunchState::Provisioning, instance),
        (LaunchState::Running, instance),
    ];
    (0u32..)
        .zip(states.into_iter().zip(at))
        .map(|(seq, ((state, ids), at))| {
            let (at, at_ms) = split_time(at);
            LaunchEventRow {
                at,
                at_ms,
                instance_id: ids.into(),
                attempt: 1,
                detail: state.as_str().into(),
                ..event(request, seq, state)
            }
        })
        .collect()
}

/// `queued` (seq 0) as the gateway records it with `request`.
pub fn queued(request: &LaunchRequestRow) -> LaunchEventRow {
    LaunchEventRow {
        detail: "accepted by the gateway".into(),
        ..event(request, 0, LaunchState::Queued)
    }
}
