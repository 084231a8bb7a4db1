//! `capsight-status`: polls provider status feeds and publishes status signals on change.
//! Configuration: sections `telemetry`, `kafka`, `publisher`, `status` of
//! `deploy/config/capsight.toml`, overridable by `--config` and `CAPSIGHT_*` variables.

capsight_collector_kit::collector_main!(
    "capsight-status",
    "status",
    "capsight status collector: provider status feeds -> status signals",
    capsight_status::run
);
