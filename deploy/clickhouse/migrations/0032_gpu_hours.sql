-- GPU-hours per tenant split by market (seed 001: usage and chargeback), from launch_events.
--
-- instance_gpus: GPUs per instance type, written from the GPU catalog by capsight-launcher at
-- start (idempotent; ReplacingMergeTree collapses repeats).
CREATE TABLE IF NOT EXISTS instance_gpus
(
    provider String,
    instance_type String,
    gpus UInt32,
    gpu_model String,
    updated_at DateTime
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (provider, instance_type);

-- One row per `running` transition of a launch: the launch ran on `market`/`instance_type`
-- from that transition until the job's next transition (any state; a standby switch or a
-- replacement is a new `running` row) or, when it is the latest, until now. Rows of a job are
-- de-duplicated by seq first (a replayed transition may be stored twice). GPUs = catalog GPUs
-- per instance x the job's instance count. ClickHouse 18.16 dialect (no window functions).
CREATE VIEW IF NOT EXISTS launch_gpu_segments AS
SELECT
    tenant,
    job_id,
    provider,
    region,
    instance_type,
    market,
    seg_start,
    seg_end,
    still_running,
    instances,
    gpus_per_instance,
    instances * gpus_per_instance AS gpus,
    (seg_end - seg_start) * instances * gpus_per_instance / 3600 AS gpu_hours
FROM
(
SELECT *
FROM
(
    SELECT
        tenant,
        job_id,
        tupleElement(ev[i], 3) AS state,
        tupleElement(ev[i], 4) AS provider,
        tupleElement(ev[i], 5) AS region,
        tupleElement(ev[i], 6) AS instance_type,
        tupleElement(ev[i], 7) AS market,
        tupleElement(ev[i], 2) AS seg_start,
        if(i < length(ev), tupleElement(ev[i + 1], 2), toUInt32(now())) AS seg_end,
        i = length(ev) AS still_running
    FROM
    (
        SELECT
            tenant,
            job_id,
            arraySort(groupArray((seq, at_s, state, provider, region, instance_type, market))) AS ev
        FROM
        (
            SELECT
                tenant,
                job_id,
                seq,
                toUInt32(min(at)) AS at_s,
                any(state) AS state,
                any(provider) AS provider,
                any(region) AS region,
                any(instance_type) AS instance_type,
                any(market) AS market
            FROM launch_events
            GROUP BY tenant, job_id, seq
        )
        GROUP BY tenant, job_id
    )
    ARRAY JOIN arrayEnumerate(ev) AS i
    WHERE state = 'running'
)
ANY LEFT JOIN
(
    SELECT tenant, job_id, toUInt32(any(count)) AS instances
    FROM launch_requests
    GROUP BY tenant, job_id
) USING (tenant, job_id)
)
ANY LEFT JOIN
(
    SELECT provider, instance_type, toUInt32(argMax(gpus, updated_at)) AS gpus_per_instance
    FROM instance_gpus
    GROUP BY provider, instance_type
) USING (provider, instance_type);

-- GPU-hours per tenant, market and calendar month (server time zone): every segment is split
-- at month boundaries, so a launch running across the 1st counts in both months.
CREATE VIEW IF NOT EXISTS tenant_gpu_hours_monthly AS
SELECT
    month,
    tenant,
    market,
    sum(gpu_seconds) / 3600 AS gpu_hours,
    uniqExact(job_id) AS launches,
    max(still_running) AS any_still_running
FROM
(
    SELECT
        tenant,
        job_id,
        market,
        still_running,
        toDateTime(month) AS m_start,
        toDateTime(addMonths(month, 1)) AS m_end,
        month,
        greatest(toInt64(least(toUInt32(m_end), seg_end)) - toInt64(greatest(toUInt32(m_start), seg_start)), 0)
            * gpus AS gpu_seconds
    FROM launch_gpu_segments
    ARRAY JOIN arrayMap(k -> addMonths(toStartOfMonth(toDate(toDateTime(seg_start))), k),
        range(toUInt32((toYear(toDate(toDateTime(seg_end))) * 12 + toMonth(toDate(toDateTime(seg_end))))
            - (toYear(toDate(toDateTime(seg_start))) * 12 + toMonth(toDate(toDateTime(seg_start)))) + 1))) AS month
)
GROUP BY month, tenant, market;
