//! Against the real ClickHouse (started by `deploy/local/stack up`; address from
//! `CAPSIGHT_CLICKHOUSE__URL`), one database per test. Fails, never skips, when it is down.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use capsight_clickhouse::{migrate, rows::SignalRow};
use capsight_proto::domain::{
    ErrorClass, LaunchAttempt, LaunchOutcome, Payload, ProbeMethod, Signal, SignalId, SignalSource,
};
use capsight_testkit::clickhouse::{drop_database, insert, named};

#[tokio::test]
async fn migrations_apply_once_and_record_what_they_applied() {
    let ch = named("migrate");
    let first = migrate::apply(&ch)
        .await
        .expect("ClickHouse reachable at CAPSIGHT_CLICKHOUSE__URL (run deploy/local/stack up)");
    let all = migrate::embedded().unwrap();
    // files gated to newer servers are skipped, not recorded, and skipped again next time
    let gated = first.skipped.len();
    assert_eq!(first.applied.len() + gated, all.len());
    let second = migrate::apply(&ch).await.unwrap();
    assert!(second.applied.is_empty());
    assert_eq!(second.already_applied, all.len() - gated);
    assert_eq!(second.skipped, first.skipped);

    // an edited, already applied migration is refused
    let mut edited = all.clone();
    edited[0].checksum = "0".repeat(64);
    let err = migrate::apply_migrations(&ch, &edited).await.unwrap_err();
    assert!(
        err.to_string().contains("changed after it was applied"),
        "{err}"
    );

    // a migration for a newer server than any that exists is skipped, not recorded
    let mut future = all.clone();
    let mut m = migrate::parse("9999_future.sql", "-- capsight:requires 999.0\nSELECT 1").unwrap();
    m.version = 9999;
    future.push(m);
    let report = migrate::apply_migrations(&ch, &future).await.unwrap();
    assert_eq!(
        report.skipped.last().map(String::as_str),
        Some("9999_future.sql")
    );
    drop_database(&ch).await;
}

#[tokio::test]
async fn a_signal_row_round_trips() {
    let ch = named("signals");
    migrate::apply(&ch).await.expect("ClickHouse reachable");
    let signal = Signal {
        id: SignalId::parse("id", "probe-xyz").unwrap(),
        observed_at: chrono::DateTime::from_timestamp_millis(1_795_000_000_123).unwrap(),
        source: SignalSource::Probe,
        tenant: None,
        key: "aws/us-east-1/use1-az4/p5.48xlarge/on_demand"
            .parse()
            .unwrap(),
        payload: Payload::LaunchAttempt(LaunchAttempt {
            outcome: LaunchOutcome::Failed,
            error_class: ErrorClass::Capacity,
            error_code: "InsufficientInstanceCapacity".into(),
            error_message: "We currently do not have sufficient p5.48xlarge capacity in the \
                            Availability Zone you requested (us-east-1a)."
                .into(),
            provisioning_ms: None,
            hinted_zones: vec![],
            hinted_regions: vec![],
            method: ProbeMethod::Launch,
            count: 1,
        }),
    };
    let row = SignalRow::new(&signal, chrono::Utc::now());
    let client = ch.client().unwrap();
    insert(&client, "signals", std::slice::from_ref(&row)).await;

    let back: Vec<SignalRow> = client
        .query("SELECT ?fields FROM signals WHERE id = ?")
        .bind("probe-xyz")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(back, vec![row]);
    assert_eq!(back[0].observed_ms, 123);
    assert_eq!(back[0].error_class, "capacity");
    assert!(back[0].payload.contains("\"launch_attempt\""));
    drop_database(&ch).await;
}
