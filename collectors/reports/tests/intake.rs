//! The intake over real HTTP with the real broker: authentication, validation, rate limits,
//! de-duplication, EventBridge normalization, and exactly the expected signals on the topic.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{sync::Arc, time::Duration};

use capsight_proto::domain::{
    ErrorClass, InstanceEventKind, LaunchOutcome, Market, Payload, ProbeMethod, Signal,
    SignalSource,
};
use capsight_publisher::{Publisher, PublisherSettings};
use capsight_reports::{ReportsSettings, server::AppState};
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::{SharedRegistry, TenantHasher};
use capsight_testkit::{Sandbox, kafka::consume_all, tenants::tenant};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Intake {
    url: String,
    acme: String,
    slow: String,
    /// The topic and the registry (tests edit it while the intake runs).
    sandbox: Sandbox,
    http: reqwest::Client,
    _shutdown: Shutdown,
}

async fn start() -> Intake {
    start_with(Sandbox::builder("reports"), |_| {}).await
}

/// The intake over `builder`'s sandbox, its settings adjusted by `adjust`.
async fn start_with(
    builder: capsight_testkit::sandbox::Builder,
    adjust: impl FnOnce(&mut ReportsSettings),
) -> Intake {
    let sandbox = builder
        .signals(2)
        .tenants([
            tenant("acme")
                .name("Acme")
                .zone("us-east-1b", "use1-az6")
                .zone("us-east-1a", "use1-az4")
                .with_key(),
            tenant("slow")
                .name("Slow")
                .rate(2)
                .zone("us-east-1a", "use1-az4")
                .with_key(),
        ])
        .start()
        .await;
    #[derive(serde::Deserialize)]
    struct Conf {
        reports: ReportsSettings,
    }
    let mut settings = sandbox.config::<Conf>().reports;
    settings.max_body_bytes = 16 * 1024;
    adjust(&mut settings);
    let kafka = &sandbox.kafka;
    let publisher = Publisher::new(kafka, &PublisherSettings::default(), "test").unwrap();
    let state = Arc::new(AppState::new(
        publisher.clone(),
        // re-read the registry file quickly: a test changes a tenant's rate while it runs
        SharedRegistry::open(
            sandbox.registry().path().to_owned(),
            Duration::from_millis(100),
        )
        .unwrap(),
        TenantHasher::new(&"test-secret".to_owned().into()),
        settings,
        600,
        capsight_testkit::cloud::catalog(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    tokio::spawn(capsight_reports::run(
        state,
        listener,
        publisher,
        shutdown.clone(),
    ));
    Intake {
        url,
        acme: sandbox.key("acme"),
        slow: sandbox.key("slow"),
        sandbox,
        http: reqwest::Client::new(),
        _shutdown: shutdown,
    }
}

impl Intake {
    async fn post(&self, path: &str, key: Option<&str>, body: String) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}{path}", self.url)).body(body);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// A tenant's report of a capacity error, with id `id`.
fn report(id: &str) -> String {
    json!({"id": id, "provider": "aws", "region": "us-east-1", "zone_name": "us-east-1a",
           "instance_type": "p5.48xlarge", "outcome": "launch_failed",
           "error_code": "InsufficientInstanceCapacity",
           "error_message": "We currently do not have sufficient p5.48xlarge capacity in the Availability Zone you requested (us-east-1a). Our system will be working on provisioning additional capacity. You can currently get p5.48xlarge capacity by not specifying an Availability Zone in your request or choosing us-east-1b."})
    .to_string()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

fn cloudtrail(id: &str, error: Option<(&str, &str)>, instance: Option<&str>) -> String {
    let mut detail = json!({
        "eventVersion": "1.09", "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances",
        "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.10",
        "requestParameters": {
            "instancesSet": {"items": [{"imageId": "ami-0abc", "minCount": 1, "maxCount": 1}]},
            "instanceType": "p5.48xlarge",
            "placement": {"availabilityZone": "us-east-1a"},
            "instanceMarketOptions": {"marketType": "spot"}
        },
        "responseElements": null
    });
    if let Some((code, message)) = error {
        detail["errorCode"] = json!(code);
        detail["errorMessage"] = json!(message);
    }
    if let Some(i) = instance {
        detail["responseElements"] = json!({"instancesSet": {"items": [
            {"instanceId": i, "instanceType": "p5.48xlarge", "placement": {"availabilityZone": "us-east-1b"}}]}});
    }
    json!({"version": "0", "id": id, "detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2",
           "account": "123456789012", "time": now(), "region": "us-east-1", "resources": [], "detail": detail})
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn intake_validates_dedups_limits_and_publishes_exactly_what_it_accepts() {
    let t = start().await;

    // authentication
    assert_eq!(
        t.post("/v1/reports", None, report("r1")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.post("/v1/reports", Some("csk_bad_key"), report("r1"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // a report, then its re-delivery
    let (s, body) = t.post("/v1/reports", Some(&t.acme), report("r1")).await;
    assert_eq!(
        (s, &body["accepted"]),
        (StatusCode::ACCEPTED, &json!(1)),
        "{body}"
    );
    let (s, body) = t.post("/v1/reports", Some(&t.acme), report("r1")).await;
    assert_eq!(
        (s, &body["duplicates"]),
        (StatusCode::ACCEPTED, &json!(1)),
        "{body}"
    );

    // bad input names the problem
    let (s, body) = t.post("/v1/reports", Some(&t.acme), "{nope".into()).await;
    assert_eq!(
        (s, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("$"))
    );
    let bad_region = report("r2").replace("us-east-1\"", "US-EAST\"");
    let (s, body) = t.post("/v1/reports", Some(&t.acme), bad_region).await;
    assert_eq!(
        (s, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("[0].region")),
        "{body}"
    );
    let unknown = report("r3").replace("\"outcome\"", "\"colour\": \"red\", \"outcome\"");
    let (s, body) = t.post("/v1/reports", Some(&t.acme), unknown).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("colour"), "{body}");
    let (s, _) = t
        .post("/v1/reports", Some(&t.acme), "x".repeat(20_000))
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // the key is checked before the body is read: without one, a large body is not buffered
    let (s, _) = t.post("/v1/reports", None, "x".repeat(20_000)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // ids that would be remembered are bounded in length
    let long = "i".repeat(200);
    let (s, body) = t
        .post(
            "/v1/reports",
            Some(&t.acme),
            report("r9").replace("\"r9\"", &format!("\"{long}\"")),
        )
        .await;
    assert_eq!(
        (s, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("[0].id")),
        "{body}"
    );
    let (s, body) = t
        .post("/v1/events", Some(&t.acme), cloudtrail(&long, None, None))
        .await;
    assert_eq!(
        (s, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("id")),
        "{body}"
    );
    let huge_instance = json!({"version": "0", "id": "ev-long", "detail-type": "EC2 Instance Rebalance Recommendation",
        "source": "aws.ec2", "account": "1", "time": now(), "region": "us-east-1", "resources": [],
        "detail": {"instance-id": format!("i-{long}")}}).to_string();
    let (s, body) = t.post("/v1/events", Some(&t.acme), huge_instance).await;
    assert_eq!(
        (s, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("detail.instance-id")),
        "{body}"
    );

    // EventBridge: a failed launch, a successful one, then an interruption of its instance
    let (s, body) = t
        .post(
            "/v1/events",
            Some(&t.acme),
            cloudtrail(
                "ev-1",
                Some((
                    "Server.InsufficientInstanceCapacity",
                    "We currently do not have sufficient p5.48xlarge capacity.",
                )),
                None,
            ),
        )
        .await;
    assert_eq!(
        (s, &body["accepted"]),
        (StatusCode::ACCEPTED, &json!(1)),
        "{body}"
    );
    let (s, body) = t
        .post(
            "/v1/events",
            Some(&t.acme),
            cloudtrail("ev-2", None, Some("i-0123456789abcdef0")),
        )
        .await;
    assert_eq!(
        (s, &body["accepted"]),
        (StatusCode::ACCEPTED, &json!(1)),
        "{body}"
    );
    let warning = json!({"version": "0", "id": "ev-3", "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2", "account": "123456789012", "time": now(), "region": "us-east-1",
        "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"],
        "detail": {"instance-id": "i-0123456789abcdef0", "instance-action": "terminate"}}).to_string();
    let (s, body) = t.post("/v1/events", Some(&t.acme), warning.clone()).await;
    assert_eq!(
        (s, &body["accepted"]),
        (StatusCode::ACCEPTED, &json!(1)),
        "{body}"
    );
    let (s, body) = t.post("/v1/events", Some(&t.acme), warning).await;
    assert_eq!(
        (s, &body["duplicate"]),
        (StatusCode::ACCEPTED, &json!(true)),
        "{body}"
    );
    let unknown_instance = json!({"version": "0", "id": "ev-4", "detail-type": "EC2 Instance Rebalance Recommendation",
        "source": "aws.ec2", "account": "1", "time": now(), "region": "us-east-1", "resources": [],
        "detail": {"instance-id": "i-ffffffffffffffff0"}}).to_string();
    let (s, body) = t.post("/v1/events", Some(&t.acme), unknown_instance).await;
    assert_eq!(
        (s, &body["unkeyed"]),
        (StatusCode::ACCEPTED, &json!(["i-ffffffffffffffff0"])),
        "{body}"
    );
    let health = json!({"version": "0", "id": "ev-5", "detail-type": "AWS Health Event", "source": "aws.health",
        "account": "1", "time": now(), "region": "us-east-1", "resources": [], "detail": {}}).to_string();
    assert_eq!(
        t.post("/v1/events", Some(&t.acme), health).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // attack: invent keys (a zone, a type, a region the catalog does not list) by reporting
    // successful launches there; each is refused with 422 naming the field and publishes nothing
    for (i, (field, value, expect)) in [
        ("zone_id", "use1-az99", "[0].zone_id"),
        ("instance_type", "p9.mega", "[0].instance_type"),
        ("region", "af-south-1", "[0].region"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut invented = json!({"id": format!("inv{i}"), "provider": "aws",
            "region": "us-east-1", "instance_type": "p5.48xlarge", "outcome": "launch_succeeded"});
        invented[field] = json!(value);
        let (s, body) = t
            .post("/v1/reports", Some(&t.acme), invented.to_string())
            .await;
        assert_eq!(
            (s, body["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(expect)),
            "{body}"
        );
    }
    let forged =
        cloudtrail("ev-6", None, Some("i-0aaaaaaaaaaaaaaa0")).replace("p5.48xlarge", "p9.mega");
    let (s, body) = t.post("/v1/events", Some(&t.acme), forged).await;
    assert_eq!(
        (s, body["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("detail.requestParameters.instanceType")
        ),
        "{body}"
    );

    // a tenant over its rate gets 429 with Retry-After
    let mut statuses = Vec::new();
    for i in 0..3 {
        statuses.push(
            t.post("/v1/reports", Some(&t.slow), report(&format!("s{i}")))
                .await
                .0,
        );
    }
    assert_eq!(
        statuses,
        [
            StatusCode::ACCEPTED,
            StatusCode::ACCEPTED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );

    // exactly the accepted signals are on the topic: r1, ev-1, ev-2, ev-3, s0, s1
    let kafka = &t.sandbox.kafka;
    let got: Vec<Signal> = consume_all(kafka, &kafka.topics.signals).await;
    assert_eq!(got.len(), 6, "{got:#?}");
    let acme_hash = got[0].tenant.clone().unwrap();
    assert!(!acme_hash.as_str().contains("acme"));
    let report_signal = got
        .iter()
        .find(|s| {
            s.key
                .zone
                .as_ref()
                .is_some_and(|z| z.as_str() == "use1-az4")
                && matches!(s.payload, Payload::LaunchAttempt(_))
                && s.key.market == Market::OnDemand
        })
        .unwrap();
    let Payload::LaunchAttempt(a) = &report_signal.payload else {
        unreachable!()
    };
    assert_eq!(a.error_class, ErrorClass::Capacity);
    assert_eq!(report_signal.source, SignalSource::Report);
    assert_eq!(report_signal.tenant.as_ref(), Some(&acme_hash));
    assert_eq!(a.outcome, LaunchOutcome::Failed);
    assert_eq!(a.error_code, "InsufficientInstanceCapacity");
    assert!(a.error_message.contains("choosing us-east-1b"), "{a:?}");
    assert_eq!(a.method, ProbeMethod::TenantLaunch);
    assert_eq!(a.count, 1);
    assert!(a.hinted_regions.is_empty());
    assert_eq!(report_signal.key.instance_type.as_str(), "p5.48xlarge");
    assert_eq!(report_signal.key.region.as_str(), "us-east-1");
    // every accepted signal carries its tenant's keyed hash, never the tenant id: acme's
    // report and three events, slow's two reports
    let mut per_tenant: std::collections::BTreeMap<String, usize> = Default::default();
    for s in &got {
        let h = s.tenant.as_ref().unwrap().as_str().to_owned();
        assert!(!h.contains("acme") && !h.contains("slow"), "{s:?}");
        let zone = s.key.zone.as_ref().map(|z| z.as_str().to_owned());
        assert_ne!(
            zone.as_deref(),
            Some("use1-az99"),
            "an invented key got through: {s:?}"
        );
        assert!(s.id.as_str().starts_with("report-"), "{s:?}");
        assert_eq!(s.source, SignalSource::Report);
        *per_tenant.entry(h).or_default() += 1;
    }
    assert_eq!(
        per_tenant.get(acme_hash.as_str()),
        Some(&4),
        "{per_tenant:?}"
    );
    assert_eq!(per_tenant.len(), 2, "{per_tenant:?}");
    assert_eq!(
        a.hinted_zones
            .iter()
            .map(|z| z.as_str())
            .collect::<Vec<_>>(),
        ["use1-az6"]
    );
    let interruption = got
        .iter()
        .find_map(|s| match &s.payload {
            Payload::InstanceEvent(e) => Some((s, e)),
            _ => None,
        })
        .unwrap();
    assert_eq!(interruption.1.kind, InstanceEventKind::InterruptionWarning);
    assert_eq!(interruption.0.source, SignalSource::Report);
    assert!(!interruption.1.instance_id.is_empty(), "{interruption:?}");
    assert_eq!(
        interruption.0.key.to_string(),
        "aws/us-east-1/use1-az6/p5.48xlarge/spot"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_changed_in_the_registry_applies_without_a_restart() {
    let mut t = start().await;
    // "slow" may send 2 a minute: the third is refused
    for i in 0..2 {
        let (status, body) = t
            .post("/v1/reports", Some(&t.slow), report(&format!("a{i}")))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    assert_eq!(
        t.post("/v1/reports", Some(&t.slow), report("a2")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // the operator raises its rate in the registry: accepted again once it is re-read
    tokio::time::sleep(Duration::from_millis(20)).await;
    t.sandbox
        .tenants
        .as_mut()
        .unwrap()
        .update("slow", |slow| slow.rate_per_minute = Some(100));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = t.post("/v1/reports", Some(&t.slow), report("a3")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

/// With the broker away (its process stopped), a report is answered 503 with `Retry-After`
/// within `reports.publish_timeout` instead of hanging; once the broker is back, the same
/// report is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn with_the_broker_away_a_report_gets_503_and_retry_after_instead_of_hanging() {
    let broker = capsight_testkit::broker::PrivateBroker::start().await;
    let t = start_with(
        Sandbox::builder("reports_away").brokers(&broker.brokers()),
        |s| s.publish_timeout = Duration::from_secs(2),
    )
    .await;
    let (s, body) = t.post("/v1/reports", Some(&t.acme), report("w0")).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");

    broker.pause();
    let t0 = std::time::Instant::now();
    let resp = t
        .http
        .post(format!("{}/v1/reports", t.url))
        .header("authorization", format!("Bearer {}", t.acme))
        .body(report("w1"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let waited = t0.elapsed();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        resp.headers().contains_key("retry-after"),
        "{:?}",
        resp.headers()
    );
    println!(
        "MEASURED: broker away -> 503 after {} ms",
        waited.as_millis()
    );

    broker.resume();
    let accepted = capsight_testkit::wait::eventually_every(
        Duration::from_millis(500),
        Duration::from_secs(60),
        "the report accepted once the broker is back",
        || async {
            let (s, body) = t.post("/v1/reports", Some(&t.acme), report("w1")).await;
            (s == StatusCode::ACCEPTED).then_some(body).ok_or(s)
        },
    )
    .await;
    assert!(
        accepted["accepted"] == json!(1) || accepted["duplicates"] == json!(1),
        "{accepted}"
    );
}

/// A tenant's raw error message can carry its account id, role ARN and addresses: what reaches
/// the shared signals topic is redacted, and still classifiable.
#[tokio::test(flavor = "multi_thread")]
async fn raw_error_messages_reach_the_shared_topic_redacted() {
    let t = start().await;
    let mut body: Value = serde_json::from_str(&report("leaky")).unwrap();
    body["error_code"] = json!("UnauthorizedOperation");
    body["error_message"] = json!(
        "You are not authorized to perform this operation. User: \
         arn:aws:sts::210987654321:assumed-role/ml-team/ci is not authorized to perform \
         ec2:RunInstances (account 210987654321, from 198.51.100.7)"
    );
    let (status, answer) = t.post("/v1/reports", Some(&t.acme), body.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let kafka = &t.sandbox.kafka;
    let got: Vec<Signal> = consume_all(kafka, &kafka.topics.signals).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let Payload::LaunchAttempt(attempt) = &got[0].payload else {
        panic!("{got:#?}")
    };
    for leaked in ["210987654321", "ml-team", "198.51.100.7"] {
        assert!(
            !attempt.error_message.contains(leaked),
            "{leaked} reached the topic: {}",
            attempt.error_message
        );
    }
    assert!(attempt.error_message.contains("ec2:RunInstances"));
    assert_eq!(attempt.error_class, ErrorClass::Permission);
}
