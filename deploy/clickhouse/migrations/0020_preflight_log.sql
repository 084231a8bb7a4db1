-- Every preflight the gateway answered: who asked (tenant id; tenants read only their own rows
-- through the gateway), what, the decision and the outcome of each step. checks is the list of
-- steps as JSON ([{"name","status","reason","error_code"}]); score is -1 when no score existed.
CREATE TABLE IF NOT EXISTS preflight_log
(
    preflight_id String,
    tenant String,
    at DateTime,
    at_ms UInt16,
    provider String,
    region String,
    zone_id String,
    instance_type String,
    market String,
    count UInt32,
    decision String,
    permission String,
    quota String,
    capacity String,
    quota_headroom UInt32,
    score Int16,
    alternatives UInt32,
    checks String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (tenant, at, preflight_id);
