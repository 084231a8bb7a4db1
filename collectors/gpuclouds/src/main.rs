//! `capsight-gpuclouds`: Lambda Cloud's availability listing -> availability and offering
//! signals, polled every few minutes. Configuration: sections `telemetry`, `kafka`,
//! `publisher`, `cloud`, `lambda`, `gpuclouds` of `deploy/config/capsight.toml`; the Lambda API
//! key from `LAMBDA_API_KEY`.

capsight_collector_kit::collector_main!(
    "capsight-gpuclouds",
    "gpuclouds",
    "capsight GPU clouds collector: Lambda Cloud availability -> signals",
    capsight_gpuclouds::run
);
