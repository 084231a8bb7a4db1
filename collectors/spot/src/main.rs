//! `capsight-spot`: spot prices, placement scores, Spot Advisor buckets, capacity blocks and
//! instance-type offerings -> signals, each on its own cadence. Configuration: sections
//! `telemetry`, `kafka`, `publisher`, `cloud`, `spot` of `deploy/config/capsight.toml`; AWS
//! endpoint and credentials from the standard AWS chain.

capsight_collector_kit::collector_main!(
    "capsight-spot",
    "spot",
    "capsight spot collector: spot market and offerings -> signals",
    capsight_spot::run
);
