-- The analytics views of 0005_analytics.sql and 0032_gpu_hours.sql again, with an alias on
-- every joined subquery: current ClickHouse releases reject a JOIN of subqueries without
-- aliases (joined_subquery_requires_alias), 18.16 accepts both. Same columns and results;
-- the provisioning percentiles are whole milliseconds (UInt32, as 18.16 returns them) and 0 for
-- an hour without a successful launch on every server (current releases return nan for an empty
-- quantile and Float64 otherwise).
-- The replaced statements are not run wherever this file runs (a fresh database gets only
-- these); an existing database gets its views dropped and recreated (CREATE OR REPLACE VIEW
-- does not exist on 18.16, nor DROP VIEW: DROP TABLE drops a view). Dependent views go first.
-- capsight:replaces 0005_analytics.sql 5 6
-- capsight:replaces 0032_gpu_hours.sql 2 3
DROP TABLE IF EXISTS tenant_gpu_hours_monthly;
DROP TABLE IF EXISTS launch_gpu_segments;
DROP TABLE IF EXISTS region_gpu_daily;
DROP TABLE IF EXISTS key_hourly;

CREATE VIEW key_hourly AS
SELECT
    hour,
    provider,
    region,
    zone_id,
    instance_type,
    market,
    signals,
    attempts,
    successes,
    capacity_errors,
    if(attempts = 0, 0, successes / attempts) AS success_rate,
    if(attempts = 0, 0, capacity_errors / attempts) AS capacity_error_ratio,
    p50_provisioning_ms,
    p95_provisioning_ms,
    mean_score,
    min_score,
    max_score
FROM
(
    SELECT
        hour,
        provider,
        region,
        zone_id,
        instance_type,
        market,
        uniqExactMerge(signals) AS signals,
        uniqExactMerge(attempts) AS attempts,
        uniqExactMerge(successes) AS successes,
        uniqExactMerge(capacity_errors) AS capacity_errors,
        quantilesMerge(0.5, 0.95)(provisioning_ms) AS q,
        toUInt32(if(isNaN(q[1]), 0, q[1])) AS p50_provisioning_ms,
        toUInt32(if(isNaN(q[2]), 0, q[2])) AS p95_provisioning_ms
    FROM signals_hourly
    GROUP BY hour, provider, region, zone_id, instance_type, market
) AS rollup
ANY LEFT JOIN
(
    SELECT
        hour,
        provider,
        region,
        zone_id,
        instance_type,
        market,
        avgMerge(mean_score) AS mean_score,
        minMerge(min_score) AS min_score,
        maxMerge(max_score) AS max_score
    FROM scores_hourly
    GROUP BY hour, provider, region, zone_id, instance_type, market
) AS score_rollup
USING (hour, provider, region, zone_id, instance_type, market);

CREATE VIEW region_gpu_daily AS
SELECT
    day,
    provider,
    region,
    gpu_model,
    attempts,
    capacity_errors,
    if(attempts = 0, 0, successes / attempts) AS success_rate,
    p50_provisioning_ms,
    p95_provisioning_ms,
    mean_score
FROM
(
    SELECT
        toDate(hour) AS day,
        provider,
        region,
        transform(splitByChar('.', instance_type)[1],
            ['p5', 'p5e', 'p5en', 'p4d', 'p4de', 'p3', 'p3dn', 'g6e', 'g6', 'g5', 'g5g', 'g4dn', 'g4ad'],
            ['H100', 'H200', 'H200', 'A100', 'A100', 'V100', 'V100', 'L40S', 'L4', 'A10G', 'T4G', 'T4', 'V520'],
            'other') AS gpu_model,
        uniqExactMerge(attempts) AS attempts,
        uniqExactMerge(successes) AS successes,
        uniqExactMerge(capacity_errors) AS capacity_errors,
        quantilesMerge(0.5, 0.95)(provisioning_ms) AS q,
        toUInt32(if(isNaN(q[1]), 0, q[1])) AS p50_provisioning_ms,
        toUInt32(if(isNaN(q[2]), 0, q[2])) AS p95_provisioning_ms
    FROM signals_hourly
    GROUP BY day, provider, region, gpu_model
) AS rollup
ANY LEFT JOIN
(
    SELECT
        toDate(hour) AS day,
        provider,
        region,
        transform(splitByChar('.', instance_type)[1],
            ['p5', 'p5e', 'p5en', 'p4d', 'p4de', 'p3', 'p3dn', 'g6e', 'g6', 'g5', 'g5g', 'g4dn', 'g4ad'],
            ['H100', 'H200', 'H200', 'A100', 'A100', 'V100', 'V100', 'L40S', 'L4', 'A10G', 'T4G', 'T4', 'V520'],
            'other') AS gpu_model,
        avgMerge(mean_score) AS mean_score
    FROM scores_hourly
    GROUP BY day, provider, region, gpu_model
) AS score_rollup
USING (day, provider, region, gpu_model);

CREATE VIEW launch_gpu_segments AS
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
        ) AS transitions
        GROUP BY tenant, job_id
    ) AS jobs
    ARRAY JOIN arrayEnumerate(ev) AS i
    WHERE state = 'running'
) AS running
ANY LEFT JOIN
(
    SELECT tenant, job_id, toUInt32(any(count)) AS instances
    FROM launch_requests
    GROUP BY tenant, job_id
) AS requests USING (tenant, job_id)
) AS segments
ANY LEFT JOIN
(
    SELECT provider, instance_type, toUInt32(argMax(gpus, updated_at)) AS gpus_per_instance
    FROM instance_gpus
    GROUP BY provider, instance_type
) AS catalog USING (provider, instance_type);

CREATE VIEW tenant_gpu_hours_monthly AS
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
) AS month_segments
GROUP BY month, tenant, market;
