//! The dashboard's operator and analyst routes over HTTP against a live gateway: only the
//! operator credential (a key of its own, configured as its SHA-256) opens them — no key is
//! 401, a tenant's key 403, an unknown key 401 — and the documented queries of
//! `docs/analytics.md` download as CSV from ClickHouse. The pipeline view and the tenants' report
//! trust show exactly what was put in the broker and ClickHouse: unprocessed signals as the
//! scorer's lag, dead letters, today's probe audit rows as spend against the budget, a
//! tenant's checked reports as its trust.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::time::Duration;

use capsight_clickhouse::rows::{ProbeAuditRow, TenantCheckRow};
use capsight_gateway::GatewayConfig;
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::{TenantHasher, TenantId};
use capsight_testkit::fixtures::{
    OPERATOR_KEY, OPERATOR_KEY_SHA256, dashboard_world, documented_queries,
};
use chrono::{NaiveDate, Utc};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_operator_key_opens_the_operator_view_and_queries_download_as_csv() {
    let sandbox = dashboard_world("dashboard_op").dlq().start().await;
    let mut config: GatewayConfig = sandbox.config();
    config.gateway.web_operator_key_sha256 = OPERATOR_KEY_SHA256.to_owned();
    let shutdown = Shutdown::new();
    let gateway = capsight_gateway::start(config, sandbox.clouds(), shutdown.clone())
        .await
        .unwrap();
    let base = format!("http://{}", gateway.web_addr.unwrap());
    let http = reqwest::Client::new();
    let get = |path: &str, key: Option<&str>| {
        let mut req = http.get(format!("{base}{path}"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send()
    };

    // what the pipeline view must show: 3 signals no scorer has read, 2 dead letters, one
    // settled and one reserved probe of a prober today, acme's 3 checked reports (1 contradicted)
    let kafka = &sandbox.config::<GatewayConfig>().kafka;
    let producer = capsight_testkit::kafka::producer(kafka, Duration::from_secs(10));
    for (topic, n) in [(&kafka.topics.signals, 3), (&kafka.topics.signals_dlq, 2)] {
        for i in 0..n {
            capsight_testkit::kafka::send(
                &producer,
                topic,
                &format!("k{i}"),
                b"x",
                Duration::from_secs(10),
            )
            .await;
        }
    }
    let now = Utc::now();
    let secs = u32::try_from(now.timestamp()).unwrap();
    let day = u16::try_from(
        now.date_naive()
            .signed_duration_since(NaiveDate::default())
            .num_days(),
    )
    .unwrap();
    let audit =
        |probe: &str, phase: &str, estimated: f64, actual: f64, outcome: &str| ProbeAuditRow {
            probe_id: probe.into(),
            phase: phase.into(),
            day,
            at: secs,
            at_ms: 0,
            prober: "probe-op".into(),
            account: "123456789012".into(),
            provider: "aws".into(),
            region: "us-east-1".into(),
            zone_id: "use1-az4".into(),
            instance_type: "p5.48xlarge".into(),
            market: "on_demand".into(),
            method: "capacity_reservation".into(),
            priority: 0,
            demand: 0.0,
            reason: "due".into(),
            estimated_usd: estimated,
            actual_usd: actual,
            outcome: outcome.into(),
            error_class: "none".into(),
            error_code: String::new(),
            provisioning_ms: 0,
            resources: String::new(),
            signal: String::new(),
        };
    let db = sandbox.client();
    let mut insert = db.insert::<ProbeAuditRow>("probe_audit").await.unwrap();
    for row in [
        audit("p-1", "reserved", 2.0, 0.0, ""),
        audit("p-1", "done", 2.0, 1.25, "failed"),
        audit("p-2", "reserved", 0.5, 0.0, ""),
    ] {
        insert.write(&row).await.unwrap();
    }
    insert.end().await.unwrap();
    let hash = TenantHasher::new(&sandbox.config::<GatewayConfig>().tenancy.hash_secret)
        .hash(&TenantId::parse("acme").unwrap());
    let mut insert = db.insert::<TenantCheckRow>("tenant_checks").await.unwrap();
    for (i, agrees) in [1u8, 1, 0].into_iter().enumerate() {
        insert
            .write(&TenantCheckRow {
                tenant: hash.as_str().to_owned(),
                report_id: format!("r-{i}"),
                provider: "aws".into(),
                region: "us-east-1".into(),
                zone_id: "use1-az4".into(),
                instance_type: "p5.48xlarge".into(),
                market: "on_demand".into(),
                at: secs,
                at_ms: 0,
                opinion: -1,
                verdict: 0.9,
                agrees,
                checked_at: secs,
            })
            .await
            .unwrap();
    }
    insert.end().await.unwrap();

    let tenant_key = sandbox.key("acme");
    for path in [
        "/api/operator/overview",
        "/api/operator/pipeline",
        "/api/operator/queries",
        "/api/operator/queries/0",
    ] {
        assert_eq!(get(path, None).await.unwrap().status(), 401, "{path}");
        assert_eq!(
            get(path, Some(&tenant_key)).await.unwrap().status(),
            403,
            "{path}"
        );
        assert_eq!(
            get(path, Some("not-a-key")).await.unwrap().status(),
            401,
            "{path}"
        );
    }
    // the tenant key still works where it belongs
    assert_eq!(
        get("/api/whoami", Some(&tenant_key))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/api/whoami", Some(OPERATOR_KEY))
            .await
            .unwrap()
            .status(),
        401
    );

    let overview: serde_json::Value = get("/api/operator/overview", Some(OPERATOR_KEY))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(overview["scores_view"]["keys"].is_u64(), "{overview}");
    assert!(overview["usage"].is_array(), "{overview}");
    let tenants = overview["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 1, "{overview}");
    assert_eq!(tenants[0]["id"], "acme", "{overview}");
    // the gateway profile's default rate; no own limit in the registry
    assert_eq!(tenants[0]["rate_per_minute"], 100_000, "{overview}");
    assert_eq!(tenants[0]["active_keys"], 1, "{overview}");
    // trust = (4 + 2) / (4 + 1 + 3), the scorer's formula over acme's checks
    assert_eq!(tenants[0]["checks"], 3, "{overview}");
    assert_eq!(tenants[0]["contradictions"], 1, "{overview}");
    assert!(
        (tenants[0]["trust"].as_f64().unwrap() - 0.75).abs() < 1e-9,
        "{overview}"
    );
    assert_eq!(overview["trust"][0]["tenant"], "acme", "{overview}");

    let pipeline: serde_json::Value = get("/api/operator/pipeline", Some(OPERATOR_KEY))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pipeline["scorer"]["lag"], 3, "{pipeline}");
    assert_eq!(pipeline["dlq"]["messages"], 2, "{pipeline}");
    assert!(pipeline["collectors"].is_array(), "{pipeline}");
    let probes = &pipeline["probes"];
    // p-1 settled at its actual cost, p-2 not settled: its reservation
    assert!(
        (probes["spent_usd"].as_f64().unwrap() - 1.75).abs() < 1e-9,
        "{pipeline}"
    );
    let prober = &probes["probers"][0];
    assert_eq!(prober["prober"], "probe-op", "{pipeline}");
    assert_eq!(prober["probes"], 1, "{pipeline}");
    assert_eq!(prober["failed"], 1, "{pipeline}");
    let budget = sandbox
        .config::<capsight_probe::ProbeConfig>()
        .probe
        .daily_budget_usd;
    assert!(
        (prober["budget_usd"].as_f64().unwrap() - budget).abs() < 1e-9,
        "{pipeline}"
    );

    let listed: serde_json::Value = get("/api/operator/queries", Some(OPERATOR_KEY))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let documented = documented_queries("analytics.md");
    assert_eq!(
        listed["queries"].as_array().unwrap().len(),
        documented.len(),
        "{listed}"
    );
    for n in 0..documented.len() {
        let resp = get(&format!("/api/operator/queries/{n}"), Some(OPERATOR_KEY))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "query {n}");
        assert!(
            resp.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .contains(".csv"),
            "query {n}"
        );
        let csv = resp.text().await.unwrap();
        // CSVWithNames: the header row even when the fresh database has no rows
        assert!(
            csv.lines().next().unwrap_or("").contains('"'),
            "query {n}: {csv}"
        );
    }

    shutdown.trigger();
    drop(gateway);
    sandbox.cleanup().await;
}
