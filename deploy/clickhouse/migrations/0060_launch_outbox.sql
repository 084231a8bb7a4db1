-- The launch outbox: every job the gateway accepts, encoded as the `capsight.v1.LaunchJob` it
-- publishes (hex), written before the job is recorded in launch_requests and marked
-- dispatched (a second row, dispatched = 1, replacing the first on merge) once RabbitMQ
-- confirmed it. The launcher's outbox sweep re-publishes jobs that are recorded, still queued
-- (no launch_events row past seq 0) and not dispatched after a grace period, so a gateway
-- crash or a RabbitMQ outage between recording and publishing loses no job. Only recent
-- partitions are read; old ones can be dropped by month.
CREATE TABLE IF NOT EXISTS launch_outbox
(
    job_id String,
    tenant String,
    created_at DateTime,
    job String,
    dispatched UInt8
)
ENGINE = ReplacingMergeTree(dispatched)
PARTITION BY toYYYYMM(created_at)
ORDER BY (tenant, job_id);
