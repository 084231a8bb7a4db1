//! `capsight-reports`: the crowdsourced intake (HTTP, default 127.0.0.1:8088).
//! Configuration: sections `telemetry`, `kafka`, `publisher`, `tenancy`, `clickhouse`, `reports` of
//! `deploy/config/capsight.toml`, overridable by `--config` and `CAPSIGHT_*` variables.

capsight_runtime::service_main!(
    "capsight-reports",
    "capsight reports intake: tenants' reports and EventBridge events -> signals",
    capsight_reports::ReportsConfig,
    capsight_reports::start
);
