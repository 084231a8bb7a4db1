-- Label transitions of a key's score (written by the scorer, at most one per key per
-- scorer.alert_cooldown). low_confidence = 1 when the score's confidence was below
-- scorer.low_confidence at the transition: show it marked or suppress it.
-- A replayed transition has the same key and time and collapses in merges.
CREATE TABLE IF NOT EXISTS alerts
(
    provider String,
    region String,
    zone_id String,
    instance_type String,
    market String,
    at DateTime,
    at_ms UInt16,
    from_label String,
    to_label String,
    score UInt8,
    confidence Float32,
    low_confidence UInt8,
    evidence String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (provider, region, instance_type, market, zone_id, at, at_ms);
