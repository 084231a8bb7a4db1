//! `capsight-quota`: GPU family quotas per region -> quota signals (headroom in instances).
//! Configuration: sections `telemetry`, `kafka`, `publisher`, `cloud`, `quota` of
//! `deploy/config/capsight.toml`; AWS endpoint and credentials from the standard AWS chain.

capsight_collector_kit::collector_main!(
    "capsight-quota",
    "quota",
    "capsight quota collector: family quotas -> headroom signals",
    capsight_quota::run
);
