-- Activity heartbeats of running launches (LaunchService.Heartbeat, `capsight heartbeat`).
-- The launcher's reaper terminates a launch with an idle TTL when its latest heartbeat (or its
-- running time, when later) is older than the TTL. One row per heartbeat; only the latest per
-- job matters; old partitions can be dropped by month (no table TTL on ClickHouse 18.16).
CREATE TABLE IF NOT EXISTS launch_activity
(
    job_id String,
    tenant String,
    at DateTime,
    at_ms UInt16,
    note String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (tenant, job_id, at);
