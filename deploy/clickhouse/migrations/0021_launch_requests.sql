-- Launch jobs as the gateway accepted them (one row per job; a client retry with the same
-- idempotency key writes the same row again, collapsed by merges). tenant is the tenant id.
-- The launch's progress is in launch_events (seq 0 = queued, written by the gateway).
CREATE TABLE IF NOT EXISTS launch_requests
(
    job_id String,
    tenant String,
    created_at DateTime,
    created_ms UInt16,
    provider String,
    region String,
    zone_id String,
    instance_type String,
    market String,
    count UInt32,
    image_id String,
    subnet_id String,
    spot_max_price Float64,
    warm_standby UInt8,
    max_lifetime_secs UInt64,
    idle_ttl_secs UInt64,
    max_fallbacks UInt32
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(created_at)
ORDER BY (tenant, job_id);

-- Cancellation requests (CancelLaunch). The launcher checks for a row before each transition
-- of a job and, when one exists, stops the job and records `cancelled` in launch_events.
CREATE TABLE IF NOT EXISTS launch_cancellations
(
    job_id String,
    tenant String,
    at DateTime
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (tenant, job_id);
