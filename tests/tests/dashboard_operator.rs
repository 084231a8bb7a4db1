//! The dashboard's operator and analyst routes over HTTP against a live gateway: only the
//! operator credential (a key of its own, configured as its SHA-256) opens them — no key is
//! 401, a tenant's key 403, an unknown key 401 — and the documented queries of
//! `docs/analytics.md` download as CSV from ClickHouse.

#![allow(
    clippy::unwrap_used,
    reason = "a panic in a test is a failed assertion"
)]

use capsight_gateway::GatewayConfig;
use capsight_runtime::shutdown::Shutdown;
use capsight_testkit::{
    Sandbox,
    cloud::Sim,
    fixtures::{documented_queries, scenario},
    tenants::tenant,
};

const OPERATOR_KEY: &str = "op-test-3f9a1c0e8b7d4a2f";
/// `printf %s op-test-3f9a1c0e8b7d4a2f | sha256sum`
const OPERATOR_KEY_SHA256: &str =
    "18d4e8dbc92a94fab67d075f416d095b708b8a8c40b45c5b424e503bba98719e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_operator_key_opens_the_operator_view_and_queries_download_as_csv() {
    let sandbox = Sandbox::builder("dashboard_op")
        .signals(1)
        .scores(1)
        .database()
        .profile("gateway")
        .tenants([tenant("acme").with_key()])
        .cloudsim(Sim::builder(scenario("dashboard")))
        .start()
        .await;
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

    let tenant_key = sandbox.key("acme");
    for path in [
        "/api/operator/overview",
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
