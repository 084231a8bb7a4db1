//! A real Prometheus scrapes every binary of the pipeline: the cloudsim binary (its built-in
//! demo scenario), the four collectors, the reports intake, the scorer, the gateway and the
//! launcher run as processes on the real stack, each serving `GET /metrics` on a port of its
//! own; Debian's `prometheus` runs with a generated scrape config (1 s interval); the test
//! calls some RPCs and the intake, then asks Prometheus's HTTP API (`/api/v1/query`) for each
//! binary's series and checks their values are plausible.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use capsight_e2e::bin;
use capsight_proto::v1::{
    self, CapacityKey, GetScoreRequest, ListScoresRequest, score_service_client::ScoreServiceClient,
};
use capsight_testkit::{
    Sandbox,
    fixtures::launcher_world,
    grpc::{authed, channel},
    process::{ChildGuard, free_port},
    tenants::tenant,
};

/// The binaries and the `[metrics.listen]` field of each.
const BINARIES: [(&str, &str); 11] = [
    ("cloudsim", "cloudsim"),
    ("capsight-scorer", "scorer"),
    ("capsight-gateway", "gateway"),
    ("capsight-launcher", "launcher"),
    ("capsight-reports", "reports"),
    ("capsight-quota", "quota"),
    ("capsight-spot", "spot"),
    ("capsight-status", "status"),
    ("capsight-probe", "probe"),
    ("capsight-notifier", "notifier"),
    ("capsight-gpuclouds", "gpuclouds"),
];

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Debian's prometheus binary (installed by `deploy/local/stack install`).
fn prometheus_bin() -> PathBuf {
    let path = PathBuf::from("/usr/bin/prometheus");
    assert!(
        path.exists(),
        "prometheus is missing: run deploy/local/stack install (Debian package prometheus)"
    );
    path
}

/// One instant query; the result vector's (labels, value) pairs; `None` while Prometheus does
/// not answer yet (starting).
async fn query(
    http: &reqwest::Client,
    prometheus: SocketAddr,
    promql: &str,
) -> Option<Vec<(serde_json::Value, f64)>> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let response = http
        .get(format!("http://{prometheus}/api/v1/query?query={encoded}"))
        .send()
        .await
        .ok()?;
    if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "success", "{promql}: {body}");
    let result = body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let value = r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
            (r["metric"].clone(), value)
        })
        .collect();
    Some(result)
}

/// Waits until `promql` returns a result `accept` takes; panics with the last result after
/// `limit`.
async fn wait_for(
    http: &reqwest::Client,
    prometheus: SocketAddr,
    promql: &str,
    limit: Duration,
    accept: impl Fn(&[(serde_json::Value, f64)]) -> bool,
) -> Vec<(serde_json::Value, f64)> {
    let deadline = Instant::now() + limit;
    loop {
        let result = query(http, prometheus, promql).await.unwrap_or_default();
        if accept(&result) {
            return result;
        }
        assert!(
            Instant::now() < deadline,
            "{promql} after {limit:?}: {result:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The single value of a query that must return one series above `min`.
async fn positive(http: &reqwest::Client, prometheus: SocketAddr, promql: &str, min: f64) -> f64 {
    let r = wait_for(http, prometheus, promql, Duration::from_secs(120), |r| {
        r.len() == 1 && r[0].1 > min
    })
    .await;
    r[0].1
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_finds_every_binarys_series() {
    let sb: Sandbox = launcher_world("prom")
        .scores(1)
        .dlq()
        .profile("scorer")
        .profile("gateway")
        .profile("pipeline")
        .tenants([tenant("acme").name("Acme").with_key()])
        .start()
        .await;
    let metrics: Vec<(&str, SocketAddr)> = BINARIES
        .iter()
        .map(|(bin, _)| (*bin, local(free_port())))
        .collect();
    let cloudsim = local(free_port());
    let gateway = local(free_port());
    let intake = local(free_port());
    let aws = [
        ("AWS_ENDPOINT_URL", format!("http://{cloudsim}")),
        ("AWS_ACCESS_KEY_ID", "AKIDCAPSIGHTDEMO".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "demo".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ];
    let feeds = format!(
        "[{{name=\"cloudsim-statuspage\",kind=\"statuspage\",url=\"http://{cloudsim}/api/v2/summary.json\",provider=\"aws\"}}]"
    );

    let mut children: Vec<ChildGuard> = Vec::new();
    for ((binary, field), (_, addr)) in BINARIES.iter().zip(&metrics) {
        let mut cmd = sb.command(bin(binary));
        cmd.env(
            format!("CAPSIGHT_METRICS__LISTEN__{}", field.to_uppercase()),
            addr.to_string(),
        )
        .envs(aws.clone())
        .env("CAPSIGHT_CLOUDSIM__LISTEN", cloudsim.to_string())
        .env("CAPSIGHT_GATEWAY__LISTEN", gateway.to_string())
        .env("CAPSIGHT_REPORTS__LISTEN", intake.to_string())
        .env("CAPSIGHT_STATUS__FEEDS", &feeds)
        // the demo scenario's Lambda account, on cloudsim's Lambda API
        .env("CAPSIGHT_LAMBDA__ENDPOINT", format!("http://{cloudsim}"))
        .env("LAMBDA_API_KEY", "secret_capsight_demo_lambda");
        children.push(sb.spawn(binary, &mut cmd));
        if *binary == "cloudsim" {
            // the collectors' first calls must find it
            let http = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while http
                .get(format!("http://{cloudsim}/healthz"))
                .send()
                .await
                .is_err()
            {
                assert!(Instant::now() < deadline, "cloudsim did not start");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    // a real Prometheus scraping all of them every second
    let prometheus = local(free_port());
    let dir = sb.dir.join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let targets: String = metrics
        .iter()
        .map(|(bin, addr)| {
            format!("      - targets: [\"{addr}\"]\n        labels: {{ component: \"{bin}\" }}\n")
        })
        .collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: capsight\n    static_configs:\n{targets}"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let _prometheus = sb.spawn(
        "prometheus",
        Command::new(prometheus_bin())
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prometheus}")),
    );
    let http = reqwest::Client::new();

    // every target up and every process saying which binary it is
    wait_for(
        &http,
        prometheus,
        "up{job=\"capsight\"} == 1",
        Duration::from_secs(60),
        |r| r.len() == BINARIES.len(),
    )
    .await;
    let up = wait_for(
        &http,
        prometheus,
        "capsight_process_up",
        Duration::from_secs(30),
        |r| r.len() == BINARIES.len(),
    )
    .await;
    for (bin, _) in BINARIES {
        assert!(
            up.iter().any(|(m, v)| m["binary"] == bin && *v == 1.0),
            "{bin}: {up:?}"
        );
    }

    // collectors: signals published per role, the cloud calls behind them, the prober's budget
    for role in ["quota", "spot", "gpuclouds"] {
        positive(
            &http,
            prometheus,
            &format!("sum(capsight_signals_published_total{{role=\"{role}\"}})"),
            0.0,
        )
        .await;
    }
    positive(
        &http,
        prometheus,
        "sum(capsight_dependency_call_seconds_count{dependency=\"cloud\",component=\"capsight-quota\"})",
        0.0,
    )
    .await;
    positive(&http, prometheus, "sum(capsight_probe_probes_total)", 0.0).await;
    let budget = positive(&http, prometheus, "capsight_probe_budget_usd", 0.0).await;
    assert!((budget - 25.0).abs() < 1e-9, "{budget}");
    // the status collector polls cloudsim's status page (counted by cloudsim)
    positive(
        &http,
        prometheus,
        "sum(capsight_http_requests_total{component=\"cloudsim\",route=\"/api/v2/summary.json\",status=\"200\"})",
        0.0,
    )
    .await;

    // scorer: valid messages written to ClickHouse, its lag watched
    positive(
        &http,
        prometheus,
        "sum(capsight_scorer_messages_total{outcome=\"valid\"})",
        0.0,
    )
    .await;
    positive(
        &http,
        prometheus,
        "sum(capsight_dependency_call_seconds_count{dependency=\"clickhouse\",operation=\"signals\"})",
        0.0,
    )
    .await;
    for consumer in ["scorer", "gateway-view", "launcher-standby"] {
        wait_for(
            &http,
            prometheus,
            &format!("capsight_consumer_lag_messages{{consumer=\"{consumer}\"}}"),
            Duration::from_secs(60),
            |r| !r.is_empty() && r.iter().all(|(_, v)| *v >= 0.0),
        )
        .await;
    }

    // gateway: some RPCs, counted by method and code
    let mut client = ScoreServiceClient::new(channel(gateway));
    let key = sb.key("acme");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut listed = 0;
    while listed < 3 {
        match client
            .list_scores(authed(ListScoresRequest::default(), &key))
            .await
        {
            Ok(page) if !page.get_ref().scores.is_empty() => listed += 1,
            _ => {
                assert!(Instant::now() < deadline, "no scores through the gateway");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let missing = client
        .get_score(authed(
            GetScoreRequest {
                key: Some(CapacityKey {
                    provider: "aws".into(),
                    region: "eu-north-1".into(),
                    zone_id: "eun1-az1".into(),
                    instance_type: "p5.48xlarge".into(),
                    market: v1::Market::OnDemand.into(),
                }),
            },
            &key,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
    let ok = positive(
        &http,
        prometheus,
        "sum(capsight_grpc_requests_total{method=\"/capsight.v1.ScoreService/ListScores\",code=\"OK\"})",
        2.0,
    )
    .await;
    assert!(ok >= 3.0, "{ok}");
    positive(
        &http,
        prometheus,
        "sum(capsight_grpc_requests_total{method=\"/capsight.v1.ScoreService/GetScore\",code=\"NOT_FOUND\"})",
        0.0,
    )
    .await;
    positive(
        &http,
        prometheus,
        "sum(capsight_gateway_scores_served_total)",
        0.0,
    )
    .await;
    positive(
        &http,
        prometheus,
        "sum(capsight_grpc_request_seconds_count{method=\"/capsight.v1.ScoreService/ListScores\"})",
        2.0,
    )
    .await;

    // reports intake: an unauthenticated report is refused and counted by route and status
    let refused = http
        .post(format!("http://{intake}/v1/reports"))
        .json(&serde_json::json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
    positive(
        &http,
        prometheus,
        "sum(capsight_http_requests_total{component=\"capsight-reports\",route=\"/v1/reports\",status=\"401\"})",
        0.0,
    )
    .await;

    // launcher: the live launches gauge from its cancel sweep (none launched: 0)
    let jobs = wait_for(
        &http,
        prometheus,
        "capsight_launcher_jobs",
        Duration::from_secs(60),
        |r| r.len() == 2,
    )
    .await;
    assert!(jobs.iter().all(|(_, v)| *v == 0.0), "{jobs:?}");

    // every publisher reports its buffer depth, the collectors' and the services' alike
    let buffered = wait_for(
        &http,
        prometheus,
        "capsight_publisher_buffered_signals",
        Duration::from_secs(60),
        |r| r.len() == 8,
    )
    .await;
    for role in [
        "probe",
        "quota",
        "spot",
        "status",
        "reports",
        "gateway",
        "launcher",
        "gpuclouds",
    ] {
        assert!(
            buffered.iter().any(|(m, v)| m["role"] == role && *v >= 0.0),
            "{role}: {buffered:?}"
        );
    }
    // ClickHouse reads and the launcher's RabbitMQ subscription are timed like every other call
    for (component, dependency, operation) in [
        ("capsight-launcher", "rabbitmq", "consume"),
        ("capsight-launcher", "clickhouse", "launch.live"),
        ("capsight-scorer", "clickhouse", "scorer.tenant_trust"),
    ] {
        positive(
            &http,
            prometheus,
            &format!(
                "sum(capsight_dependency_call_seconds_count{{component=\"{component}\",dependency=\"{dependency}\",operation=\"{operation}\"}})"
            ),
            0.0,
        )
        .await;
    }

    for child in children.into_iter().rev() {
        child.stop(Duration::from_secs(60)).await;
    }
    sb.cleanup().await;
}
