-- The active prober's audit trail (capsight-probe). Every probe writes a `reserved` row BEFORE it
-- touches the cloud (the estimated cost it set aside from the day's budget) and a `done` row
-- after it (outcome, actual cost, created resources); a probe that was not run writes only a
-- `done` row with outcome `skipped`. At start-up a prober recovers today's spend from this table:
-- the actual cost of done probes plus the estimate of probes with a reserved row and no done row
-- (a prober killed mid-probe), so a restart can never exceed the day's budget.
-- who: prober (instance name) + account; what: key + method; why: priority, demand, reason.
CREATE TABLE IF NOT EXISTS probe_audit
(
    probe_id String,
    phase String,
    day Date,
    at DateTime,
    at_ms UInt16,
    prober String,
    account String,
    provider String,
    region String,
    zone_id String,
    instance_type String,
    market String,
    method String,
    priority UInt32,
    demand Float64,
    reason String,
    estimated_usd Float64,
    actual_usd Float64,
    outcome String,
    error_class String,
    error_code String,
    provisioning_ms UInt32,
    resources String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (prober, day, probe_id, phase);
