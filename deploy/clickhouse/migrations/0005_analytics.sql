-- Analyst rollups (see docs/analytics.md). Common subset of ClickHouse 18.16 and current
-- releases: AggregatingMergeTree targets fed by materialized views, read through plain views
-- that merge the states. Counts are uniqExact(id) states, so signals replayed after a scorer
-- crash are not double-counted; the provisioning quantiles and mean scores may count a replayed
-- row twice (rare, and within the quantile sketch's own error).
-- The views only see rows inserted after this migration ran.

-- hourly per key: distinct signals, capacity-relevant attempts (account and transient errors
-- excluded, as in the scoring model), successes, capacity errors, provisioning quantiles
CREATE TABLE IF NOT EXISTS signals_hourly
(
    hour DateTime,
    provider String,
    region String,
    zone_id String,
    instance_type String,
    market String,
    signals AggregateFunction(uniqExact, String),
    attempts AggregateFunction(uniqExact, String),
    successes AggregateFunction(uniqExact, String),
    capacity_errors AggregateFunction(uniqExact, String),
    provisioning_ms AggregateFunction(quantiles(0.5, 0.95), UInt32)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (provider, region, instance_type, market, zone_id, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS signals_hourly_mv TO signals_hourly AS
SELECT
    toStartOfHour(observed_at) AS hour,
    provider,
    region,
    zone_id,
    instance_type,
    market,
    uniqExactState(id) AS signals,
    uniqExactStateIf(id, kind = 'launch_attempt' AND error_class NOT IN ('quota', 'permission', 'throttled', 'transient')) AS attempts,
    uniqExactStateIf(id, kind = 'launch_attempt' AND outcome = 'succeeded') AS successes,
    uniqExactStateIf(id, kind = 'launch_attempt' AND error_class = 'capacity') AS capacity_errors,
    quantilesStateIf(0.5, 0.95)(provisioning_ms, kind = 'launch_attempt' AND outcome = 'succeeded' AND provisioning_ms > 0) AS provisioning_ms
FROM signals
GROUP BY hour, provider, region, zone_id, instance_type, market;

-- hourly per key: mean, min and max of the score history rows
CREATE TABLE IF NOT EXISTS scores_hourly
(
    hour DateTime,
    provider String,
    region String,
    zone_id String,
    instance_type String,
    market String,
    mean_score AggregateFunction(avg, UInt8),
    min_score AggregateFunction(min, UInt8),
    max_score AggregateFunction(max, UInt8),
    mean_confidence AggregateFunction(avg, Float32)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (provider, region, instance_type, market, zone_id, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS scores_hourly_mv TO scores_hourly AS
SELECT
    toStartOfHour(updated_at) AS hour,
    provider,
    region,
    zone_id,
    instance_type,
    market,
    avgState(score) AS mean_score,
    minState(score) AS min_score,
    maxState(score) AS max_score,
    avgState(confidence) AS mean_confidence
FROM scores
GROUP BY hour, provider, region, zone_id, instance_type, market;

-- the hourly rollup per key, ready to read
CREATE VIEW IF NOT EXISTS key_hourly AS
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
        q[1] AS p50_provisioning_ms,
        q[2] AS p95_provisioning_ms
    FROM signals_hourly
    GROUP BY hour, provider, region, zone_id, instance_type, market
)
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
)
USING (hour, provider, region, zone_id, instance_type, market);

-- GPU model of an AWS instance family ('other' when unknown)
CREATE VIEW IF NOT EXISTS region_gpu_daily AS
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
        q[1] AS p50_provisioning_ms,
        q[2] AS p95_provisioning_ms
    FROM signals_hourly
    GROUP BY day, provider, region, gpu_model
)
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
)
USING (day, provider, region, gpu_model);
