-- Score history: a row when a key's score changes materially or on a heartbeat.
-- evidence is the structured evidence list as JSON.
CREATE TABLE IF NOT EXISTS scores
(
    provider String,
    region String,
    zone_id String,
    instance_type String,
    market String,
    updated_at DateTime,
    updated_ms UInt16,
    score UInt8,
    label String,
    confidence Float32,
    evidence String,
    window_secs UInt32,
    signal_count UInt64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(updated_at)
ORDER BY (provider, region, instance_type, market, zone_id, updated_at);
