-- Tenant trust: each tenant report the scorer checked against its key's first-party launch
-- verdict (probes and capsight's own launches), one row per report. agrees = 1 when the report
-- said what capsight's own evidence said. A tenant's trust is computed from its agreements and
-- contradictions (capsight_tenancy::trust, `capsight-admin tenant trust`). A report checked
-- twice (a replay) has the same (tenant, report_id) and collapses in merges; readers take one
-- row per report.
CREATE TABLE IF NOT EXISTS tenant_checks
(
    tenant String,
    report_id String,
    provider String,
    region String,
    zone_id String,
    instance_type String,
    market String,
    at DateTime,
    at_ms UInt16,
    opinion Int8,
    verdict Float64,
    agrees UInt8,
    checked_at DateTime
)
ENGINE = ReplacingMergeTree(checked_at)
PARTITION BY toYYYYMM(at)
ORDER BY (tenant, report_id);
