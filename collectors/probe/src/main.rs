//! `capsight-probe`: active capacity probes -> launch-attempt signals, within a hard daily
//! budget, audited in ClickHouse, with a sweeper for anything left behind.
//! Configuration: sections `telemetry`, `kafka`, `publisher`, `clickhouse`, `cloud`, `probe` of
//! `deploy/config/capsight.toml`; AWS endpoint and credentials from the standard AWS chain.

capsight_collector_kit::collector_main!(
    "capsight-probe",
    "probe",
    "capsight prober: budgeted capacity probes -> launch-attempt signals",
    capsight_probe::run
);
