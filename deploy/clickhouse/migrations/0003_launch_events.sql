-- Launch job state transitions, appended by launcher workers; (tenant, job_id, seq) is unique,
-- so a worker that replays a transition after a crash does not duplicate it after merges.
CREATE TABLE IF NOT EXISTS launch_events
(
    job_id String,
    seq UInt32,
    tenant String,
    at DateTime,
    at_ms UInt16,
    state String,
    provider String,
    region String,
    zone_id String,
    instance_type String,
    market String,
    instance_id String,
    attempt UInt32,
    error_class String,
    error_code String,
    detail String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (tenant, job_id, seq);
