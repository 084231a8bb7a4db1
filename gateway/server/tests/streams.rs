//! Server streams are bounded: per tenant (open streams), per connection (HTTP/2 concurrent
//! streams), in time (WatchScores' lifetime), and in ClickHouse reads (every WatchLaunch shares
//! one feed). Against the real local stack.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod gateway;

use std::time::{Duration, Instant};

use capsight_proto::{
    domain::{self, LaunchState},
    v1::{self, score_service_client::ScoreServiceClient},
};
use capsight_tenancy::TenantId;
use capsight_testkit::{
    clickhouse::insert,
    grpc::{self, authed},
    launches,
    signals::score,
    wait::eventually,
};
use futures::StreamExt;
use gateway::Gateway;
use tonic::{Code, Streaming, transport::Channel};

const AZ4: &str = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";

/// A gateway whose `[gateway]` settings `change` sets, its scores view ready.
async fn gateway_with(change: impl FnOnce(&mut capsight_gateway::GatewaySettings)) -> Gateway {
    let mut g = Gateway::prepare(true).await;
    g.sandbox.publish_score(&score(AZ4, 85, 0.8)).await;
    change(&mut g.config.gateway);
    let g = g.launch_gateway().await;
    g.wait_ready().await;
    g
}

async fn watch_scores(
    channel: &Channel,
    key: &str,
) -> Result<Streaming<v1::ScoreTransition>, tonic::Status> {
    ScoreServiceClient::new(channel.clone())
        .watch_scores(authed(v1::WatchScoresRequest { filter: None }, key))
        .await
        .map(tonic::Response::into_inner)
}

fn held(g: &Gateway, tenant: &str) -> u32 {
    g.running
        .as_ref()
        .unwrap()
        .streams
        .held(&TenantId::parse(tenant).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_over_its_open_stream_cap_is_refused_until_one_of_its_streams_closes() {
    let g = gateway_with(|s| s.max_open_streams_per_tenant = 3).await;
    let (acme, globex) = (g.key("acme"), g.key("globex"));
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(watch_scores(&g.channel, &acme).await.unwrap());
    }
    assert_eq!(held(&g, "acme"), 3);
    let over = watch_scores(&g.channel, &acme).await.unwrap_err();
    assert_eq!(over.code(), Code::ResourceExhausted, "{over:?}");
    assert!(
        over.message().contains("3 open streams"),
        "names the limit: {}",
        over.message()
    );
    // WatchLaunch counts against the same cap (refused before the launch is even looked up)
    let launch = g
        .launch()
        .watch_launch(authed(
            v1::WatchLaunchRequest {
                job_id: uuid::Uuid::new_v4().to_string(),
                until_running: false,
            },
            &acme,
        ))
        .await
        .err()
        .unwrap();
    assert_eq!(launch.code(), Code::ResourceExhausted, "{launch:?}");
    // another tenant is not affected
    let theirs = watch_scores(&g.channel, &globex).await.unwrap();
    assert_eq!(held(&g, "globex"), 1);

    // the client drops a stream: its slot is freed and the tenant may open one again
    drop(open.pop());
    let again = eventually(Duration::from_secs(10), "a freed slot", || async {
        watch_scores(&g.channel, &acme).await
    })
    .await;
    assert_eq!(held(&g, "acme"), 3);
    // the streams opened still work
    g.sandbox.publish_score(&score(AZ4, 30, 0.8)).await;
    for mut s in open.into_iter().chain([again, theirs]) {
        let t = tokio::time::timeout(Duration::from_secs(20), s.next())
            .await
            .expect("a transition within 20 s")
            .unwrap()
            .unwrap();
        assert_eq!(t.score.unwrap().score, 30);
    }
    g.sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_scores_ends_cleanly_after_its_max_lifetime() {
    let g = gateway_with(|s| s.watch_scores_max_duration = Duration::from_secs(2)).await;
    let started = Instant::now();
    let mut stream = watch_scores(&g.channel, &g.key("acme")).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("the stream ends within 20 s");
    // a clean end (status OK, no message), after the lifetime and not long after
    assert!(end.unwrap().is_none(), "ended without a transition");
    let lived = started.elapsed();
    assert!(
        lived >= Duration::from_millis(1900) && lived < Duration::from_secs(10),
        "{lived:?}"
    );
    eventually(Duration::from_secs(5), "the slot freed", || async {
        (held(&g, "acme") == 0).then_some(())
    })
    .await;
    // the client subscribes again
    watch_scores(&g.channel, &g.key("acme")).await.unwrap();
    g.sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_watchers_of_a_launch_see_every_transition_from_one_shared_read() {
    const WATCHERS: usize = 20;
    let interval = Duration::from_millis(200);
    let g = gateway_with(|s| {
        s.max_open_streams_per_tenant = 32;
        s.watch_poll_interval = interval;
    })
    .await;
    let acme = g.key("acme");
    let job_id = uuid::Uuid::new_v4().to_string();
    let key: domain::CapacityKey = AZ4.parse().unwrap();
    let request = launches::request(&job_id, "acme", &key, 1, chrono::Utc::now());
    let client = g.sandbox.client();
    insert(&client, "launch_requests", std::slice::from_ref(&request)).await;
    insert(&client, "launch_events", &[launches::queued(&request)]).await;

    let feed = g.running.as_ref().unwrap().feed.clone();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let s = g
            .launch()
            .watch_launch(authed(
                v1::WatchLaunchRequest {
                    job_id: job_id.clone(),
                    until_running: false,
                },
                &acme,
            ))
            .await
            .unwrap()
            .into_inner();
        watchers.push(s);
    }
    assert_eq!(
        feed.watched(),
        1,
        "one launch watched, however many watchers"
    );
    let (polls_before, started) = (feed.polls(), Instant::now());
    for (seq, state) in [
        (1, LaunchState::Provisioning),
        (2, LaunchState::Running),
        (3, LaunchState::Terminated),
    ] {
        tokio::time::sleep(Duration::from_millis(500)).await;
        insert(
            &client,
            "launch_events",
            &[launches::event(&request, seq, state)],
        )
        .await;
    }
    let seen = futures::future::join_all(watchers.into_iter().map(|mut s| async move {
        let mut states = Vec::new();
        while let Some(e) = tokio::time::timeout(Duration::from_secs(20), s.next())
            .await
            .expect("the stream ends at the final state")
        {
            states.push(e.unwrap().state);
        }
        states
    }))
    .await;
    let (polls, elapsed) = (feed.polls() - polls_before, started.elapsed());
    let expected = vec![
        v1::LaunchState::Queued as i32,
        v1::LaunchState::Provisioning as i32,
        v1::LaunchState::Running as i32,
        v1::LaunchState::Terminated as i32,
    ];
    for states in &seen {
        assert_eq!(states, &expected);
    }
    // one read per tick for all 20 watchers (a read per watcher would be 20 per tick)
    let ticks = u64::try_from(elapsed.as_millis() / interval.as_millis()).unwrap();
    assert!(
        polls >= 3 && polls <= ticks + 2,
        "{polls} reads in {elapsed:?} ({ticks} ticks of {interval:?}) for {WATCHERS} watchers"
    );
    // the launch ended: the feed stops reading it
    eventually(
        Duration::from_secs(5),
        "the ended launch forgotten",
        || async { (feed.watched() == 0).then_some(()) },
    )
    .await;
    let idle = feed.polls();
    tokio::time::sleep(interval * 5).await;
    assert_eq!(feed.polls(), idle, "no reads while nothing is watched");
    assert_eq!(held(&g, "acme"), 0);
    g.sandbox.cleanup().await;
}

/// What a client sees on a connection over `max_concurrent_streams`: its next call is not sent
/// (the HTTP/2 client queues it, no error) until one of the connection's calls ends; another
/// connection is served meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn one_connection_gets_at_most_max_concurrent_streams_served_at_once() {
    let g = gateway_with(|s| s.max_concurrent_streams = 4).await;
    let acme = g.key("acme");
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(watch_scores(&g.channel, &acme).await.unwrap());
    }
    let fifth = {
        let (channel, acme) = (g.channel.clone(), acme.clone());
        tokio::spawn(async move { watch_scores(&channel, &acme).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!fifth.is_finished(), "the fifth call waits");
    assert_eq!(held(&g, "acme"), 4, "the server never saw the fifth call");
    // a second connection is served meanwhile
    let other = grpc::channel(g.running.as_ref().unwrap().addr);
    let _second = watch_scores(&other, &acme).await.unwrap();
    assert_eq!(held(&g, "acme"), 5);
    // one of the connection's streams ends: the waiting call goes out and is served
    drop(open.pop());
    let fifth = tokio::time::timeout(Duration::from_secs(10), fifth)
        .await
        .expect("served once a stream closed")
        .unwrap();
    assert!(fifth.is_ok(), "{fifth:?}");
    eventually(Duration::from_secs(5), "5 open streams", || async {
        (held(&g, "acme") == 5).then_some(())
    })
    .await;
    g.sandbox.cleanup().await;
}
