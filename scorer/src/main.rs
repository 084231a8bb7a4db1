//! `capsight-scorer`: reads `[telemetry]`, `[kafka]`, `[clickhouse]` and `[scorer]` and runs
//! [`capsight_scorer::run`] until SIGINT/SIGTERM.

capsight_runtime::service_main!(
    "capsight-scorer",
    "capsight scorer: signals -> windowed scores in ClickHouse and capsight.scores.v1",
    capsight_scorer::ScorerConfig,
    capsight_scorer::run
);
