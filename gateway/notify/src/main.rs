//! `capsight-notifier`: delivers tenants' webhook notifications (label changes, launch events).
//! Configuration: sections `telemetry`, `clickhouse`, `tenancy`, `notify` of
//! `deploy/config/capsight.toml`. Run one replica (see the crate's contract).

capsight_runtime::service_main!(
    "capsight-notifier",
    "capsight notifier: label changes and launch events -> tenants' webhooks",
    capsight_notify::NotifierConfig,
    capsight_notify::run
);
