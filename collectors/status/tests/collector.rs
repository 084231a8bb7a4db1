//! The status collector end to end on the real broker: feeds served over HTTP by the test,
//! signals read back from a per-test topic.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, extract::Path, extract::State, http::StatusCode, routing::get};
use capsight_proto::domain::{Market, Payload, Provider, SignalSource, StatusSeverity};
use capsight_publisher::{Publisher, PublisherSettings};
use capsight_status::{
    CatalogKeys, Collector, StatusSettings,
    feeds::{FeedConfig, FeedKind},
};
use capsight_testkit::{Sandbox, kafka::Reader};

type Bodies = Arc<Mutex<HashMap<String, (StatusCode, String)>>>;

async fn serve(bodies: Bodies) -> String {
    async fn feed(Path(name): Path<String>, State(b): State<Bodies>) -> (StatusCode, String) {
        b.lock()
            .unwrap()
            .get(&name)
            .cloned()
            .unwrap_or((StatusCode::NOT_FOUND, String::new()))
    }
    let app = Router::new().route("/{name}", get(feed)).with_state(bodies);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn feed(
    name: &str,
    kind: FeedKind,
    url: String,
    provider: &str,
    region: Option<&str>,
) -> FeedConfig {
    FeedConfig {
        name: name.into(),
        kind,
        url,
        provider: provider.into(),
        region: region.map(Into::into),
        locations: if provider == "lambda" {
            [("Texas".to_owned(), "us-south-1".to_owned())].into()
        } else {
            Default::default()
        },
        products: vec![],
    }
}

const AWS_OK: &str = r#"<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>l</link><description>d</description>
<item><title>Service is operating normally: [RESOLVED] Increased Insufficient Capacity Errors</title><link>https://status.aws.amazon.com/</link>
<pubDate>Mon, 23 Nov 2026 09:00:00 PST</pubDate><guid>g3</guid></item></channel></rss>"#;

#[tokio::test(flavor = "multi_thread")]
async fn changes_become_signals_and_broken_feeds_do_not_stop_the_rest() {
    let bodies: Bodies = Arc::default();
    let put = |name: &str, code: StatusCode, body: &str| {
        bodies
            .lock()
            .unwrap()
            .insert(name.into(), (code, body.into()));
    };
    put(
        "aws",
        StatusCode::OK,
        include_str!("fixtures/aws_ec2_us_east_1.rss"),
    );
    put(
        "lambda",
        StatusCode::OK,
        include_str!("fixtures/statuspage.json"),
    );
    put("gcp", StatusCode::OK, "{ this is not json");
    let base = serve(bodies.clone()).await;

    let sandbox = Sandbox::builder("status").signals(3).start().await;
    let kafka = &sandbox.kafka;

    let settings = StatusSettings {
        poll_interval: Duration::from_secs(60),
        request_timeout: Duration::from_secs(5),
        markets: vec![capsight_proto::domain::Market::OnDemand],
        feeds: vec![
            feed(
                "aws-ec2-us-east-1",
                FeedKind::AwsRss,
                format!("{base}/aws"),
                "aws",
                Some("us-east-1"),
            ),
            feed(
                "lambda",
                FeedKind::Statuspage,
                format!("{base}/lambda"),
                "lambda",
                None,
            ),
            feed(
                "gcp",
                FeedKind::GcpIncidents,
                format!("{base}/gcp"),
                "gcp",
                None,
            ),
            feed(
                "down",
                FeedKind::GcpIncidents,
                "http://127.0.0.1:1/x".into(),
                "gcp",
                None,
            ),
        ],
    };
    let catalog = capsight_catalog::Catalog::embedded().unwrap();
    let aws_types = catalog
        .offered_in(
            capsight_proto::domain::Provider::Aws,
            &"aws/us-east-1//p5.48xlarge/spot"
                .parse::<capsight_proto::domain::CapacityKey>()
                .unwrap()
                .region,
        )
        .count();
    assert!(aws_types > 0);
    let publisher = Publisher::new(kafka, &PublisherSettings::default(), "test").unwrap();
    let mut collector =
        Collector::new(&settings, publisher, Arc::new(CatalogKeys(catalog))).unwrap();

    let started = chrono::Utc::now();
    let first = collector.poll_once().await;
    assert_eq!((first.feeds_ok, first.feeds_failed), (2, 2), "{first:?}");
    assert!(first.signals >= aws_types, "{first:?}");

    // unchanged feeds publish nothing
    let second = collector.poll_once().await;
    assert_eq!(second.signals, 0, "{second:?}");

    // AWS recovers: one resolution per key
    put("aws", StatusCode::OK, AWS_OK);
    let third = collector.poll_once().await;
    assert_eq!(third.changes, 1, "{third:?}");
    assert_eq!(third.signals, aws_types, "{third:?}");

    // the signals on the topic are what the reports said, all valid, AWS ones keyed per type
    let total = first.signals + third.signals;
    let mut aws_open = 0;
    let mut aws_resolved = 0;
    let records = Reader::subscribe(kafka, &kafka.topics.signals)
        .take(total, Duration::from_secs(30))
        .await;
    for record in &records {
        // keyed by its partition key
        let s = record.signal();
        let Payload::Status(ev) = &s.payload else {
            panic!("not a status signal: {s:?}")
        };
        assert_eq!(s.source, SignalSource::Status, "{s:?}");
        assert_eq!(s.tenant, None);
        assert_eq!(s.key.zone, None, "status is region-wide");
        assert_eq!(s.key.market, Market::OnDemand, "the configured markets");
        assert!(s.id.as_str().starts_with("status-"), "{s:?}");
        assert!(s.observed_at >= started && s.observed_at <= chrono::Utc::now());
        if ev.feed == "aws-ec2-us-east-1" {
            assert_eq!(s.key.provider, Provider::Aws);
            assert_eq!(s.key.region.as_str(), "us-east-1");
            // one rolling incident per AWS service-region feed; the newest item is its state
            assert_eq!(ev.incident_id, "aws-ec2-us-east-1");
            assert_eq!(ev.url, "https://status.aws.amazon.com/");
            let (seen, severity, title) = if ev.resolved {
                (
                    &mut aws_resolved,
                    StatusSeverity::None,
                    "Service is operating normally: [RESOLVED] Increased Insufficient Capacity Errors",
                )
            } else {
                (
                    &mut aws_open,
                    StatusSeverity::Major,
                    "Service disruption: Increased Insufficient Capacity Errors",
                )
            };
            *seen += 1;
            assert_eq!(ev.severity, severity);
            assert_eq!(ev.title, title);
        } else {
            assert_eq!(ev.feed, "lambda", "{ev:?}");
            assert_eq!(s.key.provider, Provider::Lambda);
            assert!(!ev.incident_id.is_empty() && !ev.title.is_empty(), "{ev:?}");
        }
    }
    assert_eq!((aws_open, aws_resolved), (aws_types, aws_types));
}
