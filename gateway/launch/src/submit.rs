//! Submitting a launch: the use case behind `LaunchService.Launch`.
//!
//! Contract: [`Submit::validate`] checks a request without side effects and
//! [`Submit::existing`] finds the job of an idempotency key, so that a caller (the gateway, which
//! runs the preflight first) can answer retries and refuse bad requests before deciding;
//! [`Submit::submit`] validates the request (spec against the catalog, constraints,
//! standby, lifetimes, fallbacks: every rejection names its field), derives the job id (a new
//! UUIDv7, or, with an idempotency key, a UUIDv5 of (tenant, key)), writes the job to the
//! outbox ([`crate::outbox`]), records the request and its `queued` transition (seq 0), then
//! publishes the job with publisher confirms and marks it dispatched. Once recorded the job is
//! accepted: a publish that fails or times out is logged, not returned — the launchers' outbox
//! sweep publishes it — and the gateway never writes past seq 0 (the launcher may be writing
//! seq 1 already), so the client is never told to submit again and nothing launches twice.
//! A retry with the same idempotency key submits nothing: it answers the job's recorded state
//! and, when the job is still queued and was never dispatched, publishes it now.

use capsight_catalog::Catalog;
use capsight_clickhouse::rows::{LaunchEventRow, LaunchRequestRow, split_time};
use capsight_proto::{
    domain::{CapacityKey, FieldError, LaunchState, Market, TenantHash},
    v1,
};
use chrono::{DateTime, Utc};

use crate::{
    JobId,
    outbox::{self, Outbox},
    queue::JobPublisher,
    spec::{self, Constraints, Spec},
    store::{Store, StoreError},
};

/// The longest `max_lifetime_seconds` / `idle_ttl_seconds` (30 days).
pub const MAX_TTL_SECS: u64 = 30 * 86_400;
/// The most fallbacks a job may ask for.
pub const MAX_FALLBACKS: u32 = 10;

/// Why a launch was not submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// A request field is invalid (named).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// ClickHouse failed before the job was recorded (nothing accepted; safe to retry).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An accepted (or, with an idempotency key, already known) launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The job id.
    pub job_id: JobId,
    /// Its state now.
    pub state: LaunchState,
}

/// What submitting needs.
#[derive(Debug)]
pub struct Submit<'a> {
    /// Where launches are recorded.
    pub store: &'a Store,
    /// Where jobs go to the launchers.
    pub queue: &'a JobPublisher,
    /// The GPU catalog.
    pub catalog: &'a Catalog,
    /// The most instances one launch may ask for.
    pub max_launch_count: u32,
    /// TESTING ONLY (empty in production; release builds refuse it at start): `recorded` kills
    /// the process with SIGKILL once a job is recorded (outbox, request, `queued`), before it is
    /// published and answered — a gateway crash at the worst point.
    pub crash_after: &'a str,
}

impl Submit<'_> {
    /// The job `tenant` already submitted with `idempotency_key`, with its state now; `None`
    /// when there is none (or the key is empty). Callers that check a request before submitting
    /// it (the gateway's preflight) answer a retry with this first.
    pub async fn existing(
        &self,
        tenant: &str,
        idempotency_key: &str,
    ) -> Result<Option<Submitted>, SubmitError> {
        if idempotency_key.is_empty() {
            return Ok(None);
        }
        let id = idempotent_job_id(tenant, idempotency_key)?;
        let Some(known) = self.store.launch(tenant, id.as_str()).await? else {
            return Ok(None);
        };
        let state = known.events.last().map_or(LaunchState::Queued, |e| e.state);
        if known.events.iter().all(|e| e.seq == 0) {
            // accepted, never picked up: publish it unless it was dispatched
            let outbox = Outbox {
                store: self.store,
                queue: self.queue,
            };
            if let Err(e) = outbox.redispatch(tenant, id.as_str()).await {
                tracing::warn!(error = %e, job_id = %id, "retried job not re-published now; the outbox sweep will");
            }
        }
        Ok(Some(Submitted { job_id: id, state }))
    }

    /// The request's spec and constraints, validated with every other field (each rejection
    /// names its field); [`Submit::submit`] runs this first.
    pub fn validate(&self, req: &v1::LaunchRequest) -> Result<(Spec, Constraints), FieldError> {
        let spec = spec::spec(
            "spec",
            req.spec.clone(),
            self.catalog,
            self.max_launch_count,
            true,
        )?;
        let constraints = spec::constraints("constraints", req.constraints.clone(), &spec)?;
        if req.warm_standby && spec.key.market != Market::Spot {
            return Err(FieldError::new(
                "warm_standby",
                "applies to spot launches only",
            ));
        }
        for (field, v) in [
            ("max_lifetime_seconds", req.max_lifetime_seconds),
            ("idle_ttl_seconds", req.idle_ttl_seconds),
        ] {
            if v > MAX_TTL_SECS {
                return Err(FieldError::new(
                    field,
                    format!("must be 0..={MAX_TTL_SECS} (30 days)"),
                ));
            }
        }
        if req.max_fallbacks > MAX_FALLBACKS {
            return Err(FieldError::new(
                "max_fallbacks",
                format!("must be 0..={MAX_FALLBACKS}"),
            ));
        }
        Ok((spec, constraints))
    }

    /// Submits `req` for `tenant` (see the module contract).
    pub async fn submit(
        &self,
        tenant: &str,
        tenant_hash: &TenantHash,
        req: v1::LaunchRequest,
    ) -> Result<Submitted, SubmitError> {
        let (spec, _) = self.validate(&req)?;
        let constraints_wire = req.constraints.clone().unwrap_or_default();
        let job_id = if req.idempotency_key.is_empty() {
            JobId::generate()
        } else {
            if let Some(known) = self.existing(tenant, &req.idempotency_key).await? {
                return Ok(known);
            }
            idempotent_job_id(tenant, &req.idempotency_key)?
        };
        let now = Utc::now();
        let (created_at, created_ms) = split_time(now);
        let request_row = LaunchRequestRow {
            job_id: job_id.to_string(),
            tenant: tenant.to_owned(),
            created_at,
            created_ms,
            provider: spec.key.provider.as_str().to_owned(),
            region: spec.key.region.as_str().to_owned(),
            zone_id: spec.key.zone_str().to_owned(),
            instance_type: spec.key.instance_type.as_str().to_owned(),
            market: spec.key.market.as_str().to_owned(),
            count: spec.count,
            image_id: spec.image_id.clone(),
            subnet_id: spec.subnet_id.clone().unwrap_or_default(),
            spot_max_price: spec.spot_max_price.unwrap_or(0.0),
            warm_standby: u8::from(req.warm_standby),
            max_lifetime_secs: req.max_lifetime_seconds,
            idle_ttl_secs: req.idle_ttl_seconds,
            max_fallbacks: req.max_fallbacks,
        };
        let job = v1::LaunchJob {
            job_id: job_id.to_string(),
            tenant: tenant.to_owned(),
            tenant_hash: tenant_hash.as_str().to_owned(),
            created_at: Some(timestamp(now)),
            spec: Some(spec.to_wire()),
            constraints: Some(constraints_wire),
            max_fallbacks: req.max_fallbacks,
            warm_standby: req.warm_standby,
            max_lifetime_seconds: req.max_lifetime_seconds,
            idle_ttl_seconds: req.idle_ttl_seconds,
            preflight_decision: 0,
        };
        // the outbox row first: a recorded request always has its job to publish
        let pending = outbox::row(&job, now, false);
        self.store.record_outbox(&pending).await?;
        self.store
            .record_launch(
                &request_row,
                &transition(
                    job_id.as_str(),
                    tenant,
                    &spec.key,
                    0,
                    LaunchState::Queued,
                    "accepted by the gateway",
                ),
            )
            .await?;
        if self.crash_after == "recorded" {
            capsight_runtime::failpoint::kill_self("gateway.crash_after", "recorded");
        }
        let outbox = Outbox {
            store: self.store,
            queue: self.queue,
        };
        if let Err(e) = outbox.dispatch(&job, &pending).await {
            // accepted all the same: the launchers' outbox sweep publishes it
            tracing::warn!(error = %e, %job_id, tenant, "launch job recorded but not published; the outbox sweep will publish it");
            return Ok(Submitted {
                job_id,
                state: LaunchState::Queued,
            });
        }
        tracing::info!(%job_id, tenant, key = %spec.key, count = spec.count, "launch job queued");
        Ok(Submitted {
            job_id,
            state: LaunchState::Queued,
        })
    }
}

/// The job id of an idempotency key ([`JobId::idempotent`]).
pub fn idempotent_job_id(tenant: &str, key: &str) -> Result<JobId, FieldError> {
    JobId::idempotent(tenant, key)
}

/// A transition of a job at `key` written now, with no instance and no error.
fn transition(
    job_id: &str,
    tenant: &str,
    key: &CapacityKey,
    seq: u32,
    state: LaunchState,
    detail: &str,
) -> LaunchEventRow {
    let (at, at_ms) = split_time(Utc::now());
    LaunchEventRow {
        job_id: job_id.to_owned(),
        seq,
        tenant: tenant.to_owned(),
        at,
        at_ms,
        state,
        provider: key.provider.as_str().to_owned(),
        region: key.region.as_str().to_owned(),
        zone_id: key.zone_str().to_owned(),
        instance_type: key.instance_type.as_str().to_owned(),
        market: key.market.as_str().to_owned(),
        instance_id: String::new(),
        attempt: 0,
        error_class: String::new(),
        error_code: String::new(),
        detail: detail.into(),
    }
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_scoped_to_the_tenant_and_bounded() {
        let a = idempotent_job_id("acme", "k-1").unwrap();
        assert_eq!(a, idempotent_job_id("acme", "k-1").unwrap());
        assert_ne!(a, idempotent_job_id("globex", "k-1").unwrap());
        assert_eq!(
            idempotent_job_id("acme", "bad key").unwrap_err().field(),
            "idempotency_key"
        );
        assert!(idempotent_job_id("acme", &"x".repeat(65)).is_err());
    }
}
