-- Raw signals, one row per signal id. Replays of the same signal (same id, same key, same
-- observed_at) collapse in ReplacingMergeTree merges; exact counts use FINAL or uniqExact(id).
-- observed_ms is the millisecond part of observed_at (DateTime64 does not exist on 18.16).
-- value holds the payload's main number (price, headroom, placement score...); payload holds
-- the whole payload as JSON for analysts.
CREATE TABLE IF NOT EXISTS signals
(
    id String,
    observed_at DateTime,
    observed_ms UInt16,
    ingested_at DateTime,
    source String,
    tenant String,
    provider String,
    region String,
    zone_id String,
    instance_type String,
    market String,
    kind String,
    outcome String,
    error_class String,
    error_code String,
    error_message String,
    provisioning_ms UInt32,
    value Float64,
    payload String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(observed_at)
ORDER BY (provider, region, instance_type, market, zone_id, observed_at, id);
