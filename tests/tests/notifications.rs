//! Tenant notifications on the real local stack: subscriptions through the gateway's
//! `NotificationService` (in-process), the notifier (its binary, killed with SIGKILL, and
//! `capsight_notify::start` in-process, as the binary runs it) reading ClickHouse, and real HTTP
//! receivers on loopback. The
//! interruption -> warm standby flow runs as in `standby_lifecycle.rs`: cloudsim's webhook ->
//! the reports intake -> Kafka -> the launcher's standby manager -> `launch_events`.
//!
//! Each attack a tenant key allows is performed: another tenant's subscriptions and dead
//! letters, too many subscriptions, URLs out of bounds or into private networks, unbounded
//! filters; and another tenant's launch events never reach a receiver.

#![allow(
    clippy::unwrap_used,
    clippy::too_many_lines,
    reason = "a panic in a test is a failed assertion"
)]

use std::{sync::Arc, time::Duration};

use capsight_clickhouse::rows::{LaunchEventRow, LaunchRequestRow, split_time};
use capsight_cloud::{CloudAdapter, InstanceState, Market, tenants::TenantClouds};
use capsight_e2e::standby::{self, registry};
use capsight_gateway::GatewayConfig;
use capsight_launcher::{
    LauncherConfig,
    standby::{Standby, StandbySettings},
    store::Store,
};
use capsight_notify::{Deps, NotifierConfig, payload};
use capsight_proto::domain::CapacityKey;
use capsight_proto::v1::{self, notification_service_client::NotificationServiceClient};
use capsight_runtime::shutdown::Shutdown;
use capsight_tenancy::TenantHasher;
use capsight_testkit::{
    Sandbox,
    clickhouse::insert,
    cloud::{self, wait_instance},
    grpc, launches,
    process::bin,
    wait::eventually,
    webhook::{Received, Receiver},
};
use tonic::{Code, transport::Channel};

type Client = NotificationServiceClient<Channel>;

/// The standby world (see `standby_lifecycle.rs`) with the `notify` config fragment, the
/// reports intake in-process fed by cloudsim's webhook with acme's key, and the gateway
/// in-process: (sandbox, shutdown of both, a NotificationService client).
async fn world() -> (Sandbox, Shutdown, Client) {
    let (sandbox, shutdown, _) = standby::world("notify", &["notify"]).await;
    let clouds: Arc<dyn TenantClouds> = sandbox.clouds();
    let gw: GatewayConfig = sandbox.config();
    let running = capsight_gateway::start(gw, clouds, shutdown.clone())
        .await
        .unwrap();
    let client = NotificationServiceClient::new(grpc::channel(running.addr));
    (sandbox, shutdown, client)
}

/// The notifier over the sandbox, started.
async fn notifier(sb: &Sandbox, shutdown: &Shutdown) -> capsight_notify::Running {
    let config: NotifierConfig = sb.config();
    let deps = Deps::from_config(&config).unwrap();
    capsight_notify::start(config, deps, shutdown.clone())
        .await
        .unwrap()
}

fn subscribe(
    url: &str,
    format: v1::WebhookFormat,
    events: &[v1::NotificationEvent],
) -> v1::CreateSubscriptionRequest {
    v1::CreateSubscriptionRequest {
        url: url.into(),
        format: format as i32,
        events: events.iter().map(|e| *e as i32).collect(),
        ..Default::default()
    }
}

/// Creates a subscription as `key`'s tenant: (id, secret).
async fn create(c: &mut Client, key: &str, r: v1::CreateSubscriptionRequest) -> (String, String) {
    let resp = c
        .create_subscription(grpc::authed(r, key))
        .await
        .unwrap()
        .into_inner();
    (resp.subscription.unwrap().id, resp.secret)
}

/// Launches one g5.xlarge spot instance in use1-az1 with token `job_id` and records acme's
/// running launch of it with a warm standby (the rows the gateway and worker write).
async fn running_spot_launch(sb: &Sandbox, adapter: &dyn CloudAdapter) -> (String, String) {
    let job_id = uuid::Uuid::now_v7().hyphenated().to_string();
    let spot = cloud::run_g5(adapter, &job_id, Market::Spot).await;
    let key: CapacityKey = "aws/us-east-1/use1-az1/g5.xlarge/spot".parse().unwrap();
    let now = chrono::Utc::now();
    let request = LaunchRequestRow {
        image_id: "ami-test".into(),
        warm_standby: 1,
        ..launches::request(&job_id, "acme", &key, 1, now)
    };
    insert(
        &sb.client(),
        "launch_requests",
        std::slice::from_ref(&request),
    )
    .await;
    let store = Store::new(sb.client());
    let now = chrono::Utc::now();
    for event in launches::ran(&request, [now; 3], &spot) {
        store.append(&event).await.unwrap();
    }
    (job_id, spot)
}

async fn wait_detail(sb: &Sandbox, job_id: &str, within: Duration, prefix: &str) -> LaunchEventRow {
    eventually(within, &format!("{prefix} of {job_id}"), || async {
        Store::new(sb.client())
            .events("acme", job_id, None)
            .await
            .unwrap()
            .into_iter()
            .find(|e| e.detail.starts_with(prefix))
    })
    .await
}

/// Waits until `rx` got `n` requests and returns them.
async fn got(rx: &Receiver, n: usize, within: Duration) -> Vec<Received> {
    eventually(within, &format!("{n} webhook requests"), || async {
        let r = rx.received();
        (r.len() >= n).then_some(r)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn interruption_to_standby_notifies_exactly_the_subscribed_events_in_order_signed_and_survives_a_kill()
 {
    let (sb, shutdown, mut c) = world().await;
    let (acme, globex) = (sb.key("acme"), sb.key("globex"));
    let good = Receiver::start(200).await;
    let failing = Receiver::start(500).await;
    let other = Receiver::start(200).await;
    use v1::{NotificationEvent as E, WebhookFormat as F};
    // acme: the interruption -> standby steps (not fallbacks, not reaping) as signed JSON ...
    let (sub_a, secret_a) = create(
        &mut c,
        &acme,
        subscribe(
            &good.url(),
            F::Json,
            &[E::InterruptionWarning, E::StandbyStarted, E::StandbyStopped],
        ),
    )
    .await;
    // ... and the standby start to a receiver that always fails, as Slack
    let (sub_b, _) = create(
        &mut c,
        &acme,
        subscribe(&failing.url(), F::Slack, &[E::StandbyStarted]),
    )
    .await;
    // globex subscribes to every launch event: acme's launch is none of its business
    let (sub_c, _) = create(
        &mut c,
        &globex,
        subscribe(
            &other.url(),
            F::Json,
            &[
                E::Fallback,
                E::InterruptionWarning,
                E::StandbyStarted,
                E::StandbyStopped,
                E::Reaped,
            ],
        ),
    )
    .await;

    // the first notifier is the binary, killed with SIGKILL below
    let n1 = sb.spawn(
        "capsight-notifier",
        &mut sb.command(bin("capsight-notifier")),
    );

    // acme's spot launch with a warm standby, managed by the standby manager (cooldown 4 s)
    let adapter = sb.tenant_adapter("acme").await;
    let (job_id, spot) = running_spot_launch(&sb, &*adapter).await;
    let config: LauncherConfig = sb.config();
    let manager = Standby::new(
        Store::new(sb.client()),
        sb.clouds(),
        registry(&sb),
        StandbySettings {
            cooldown: Duration::from_secs(4),
            interval: Duration::from_millis(200),
            consumer_group: format!("{}-standby", sb.group),
        },
        TenantHasher::new(&config.tenancy.hash_secret),
    );
    let standby_stop = Shutdown::new();
    let standby_task = tokio::spawn(manager.run(sb.kafka.clone(), standby_stop.clone()));
    let ready = wait_detail(&sb, &job_id, Duration::from_secs(60), "standby ready").await;
    let standby_id = ready
        .detail
        .split_whitespace()
        .find_map(|w| w.strip_prefix("standby="))
        .unwrap()
        .to_owned();
    wait_instance(
        &*adapter,
        &standby_id,
        &[InstanceState::Stopped],
        Duration::from_secs(30),
    )
    .await;

    // the cloud interrupts the spot instance
    assert_eq!(sb.sim().interrupt(&spot).await, 204);
    let active = wait_detail(&sb, &job_id, Duration::from_secs(30), "standby active").await;

    // the warning and the standby start reach acme's receiver; the failing one dead-letters
    let two = got(&good, 2, Duration::from_secs(30)).await;
    let dead = eventually(Duration::from_secs(30), "acme's dead letter", || {
        let mut c = c.clone();
        let acme = acme.clone();
        async move {
            let d = c
                .list_dead_letters(grpc::authed(v1::ListDeadLettersRequest { limit: 0 }, &acme))
                .await
                .unwrap()
                .into_inner()
                .dead_letters;
            (!d.is_empty()).then_some(d)
        }
    })
    .await;
    // once both deliveries are recorded, the notifier is killed (SIGKILL); the standby stop
    // happens while none runs
    eventually(
        Duration::from_secs(30),
        "both deliveries recorded",
        || async {
            let n = sb
                .client()
                .query(
                    "SELECT count() FROM notify_deliveries WHERE subscription_id = ? \
                 AND outcome = 'delivered'",
                )
                .bind(&sub_a)
                .fetch_one::<u64>()
                .await
                .unwrap();
            (n == 2).then_some(())
        },
    )
    .await;
    n1.kill();
    assert_eq!(two.len(), 2, "nothing else yet");

    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0].subscription_id, sub_b);
    assert_eq!(dead[0].event, E::StandbyStarted as i32);
    assert_eq!(
        dead[0].attempts, 3,
        "notify.max_attempts in the test config"
    );
    assert_eq!(dead[0].last_status, 500);
    let tries = failing.received();
    assert_eq!(tries.len(), 3, "three attempts, then the dead-letter store");
    for (n, t) in tries.iter().enumerate() {
        assert_eq!(
            t.header("idempotency-key"),
            dead[0].id,
            "one id across retries"
        );
        assert_eq!(t.header("capsight-delivery-attempt"), (n + 1).to_string());
        assert!(
            t.json()["text"].as_str().unwrap().contains("warm standby"),
            "a Slack payload: {:?}",
            t.body
        );
    }

    let stopped = wait_detail(&sb, &job_id, Duration::from_secs(60), "standby stopped").await;
    // nothing is sent while no notifier runs
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(good.received().len(), 2);

    // a new notifier resumes from the persisted cursor and outbox
    let second = Shutdown::new();
    let n2 = notifier(&sb, &second).await;
    let all = got(&good, 3, Duration::from_secs(30)).await;
    // a few more ticks: nothing sent twice
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all_after = good.received();
    assert_eq!(all_after.len(), 3, "exactly the configured notifications");
    assert_eq!(all.len(), 3);

    let kinds: Vec<String> = all
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["interruption_warning", "standby_started", "standby_stopped"],
        "in order"
    );
    let mut ids = std::collections::HashSet::new();
    for r in &all {
        let body = r.json();
        assert!(
            payload::verify(&secret_a, &r.header("capsight-signature"), &r.body),
            "the signature verifies with the subscription's secret"
        );
        assert!(
            !payload::verify("whsec_wrong", &r.header("capsight-signature"), &r.body),
            "and with nothing else"
        );
        assert_eq!(r.header("idempotency-key"), body["id"].as_str().unwrap());
        assert_eq!(r.header("capsight-event"), body["type"].as_str().unwrap());
        assert_eq!(body["subscription_id"], sub_a.as_str());
        assert_eq!(body["launch"]["job_id"], job_id.as_str());
        assert!(
            ids.insert(body["id"].as_str().unwrap().to_owned()),
            "ids are unique"
        );
    }
    assert_eq!(all[0].json()["launch"]["seq"], active.seq);
    assert!(
        all[0].json()["summary"].as_str().unwrap().contains(&spot),
        "the warning names the interrupted instance"
    );
    assert_eq!(all[2].json()["launch"]["seq"], stopped.seq);

    // nothing for the other tenant, and it sees none of acme's subscriptions or dead letters
    assert!(other.received().is_empty(), "globex got acme's events");
    let theirs = c
        .list_subscriptions(grpc::authed(v1::ListSubscriptionsRequest {}, &globex))
        .await
        .unwrap()
        .into_inner()
        .subscriptions;
    assert_eq!(
        theirs.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [sub_c.as_str()]
    );
    let their_dead = c
        .list_dead_letters(grpc::authed(
            v1::ListDeadLettersRequest { limit: 0 },
            &globex,
        ))
        .await
        .unwrap()
        .into_inner()
        .dead_letters;
    assert!(their_dead.is_empty());

    second.trigger();
    n2.join().await.unwrap();
    standby_stop.trigger();
    standby_task.await.unwrap().unwrap();
    shutdown.trigger();
    sb.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_tenant_key_cannot_reach_others_subscriptions_exceed_limits_or_aim_at_private_networks()
{
    let (sb, shutdown, mut c) = world().await;
    let (acme, globex) = (sb.key("acme"), sb.key("globex"));
    use v1::{NotificationEvent as E, WebhookFormat as F};
    let ok = |url: &str| subscribe(url, F::Json, &[E::StandbyStarted]);
    let code_and_message =
        |r: Result<tonic::Response<v1::CreateSubscriptionResponse>, tonic::Status>| {
            let s = r.unwrap_err();
            (s.code(), s.message().to_owned())
        };

    // no key, no call
    let anon = c
        .list_subscriptions(tonic::Request::new(v1::ListSubscriptionsRequest {}))
        .await
        .unwrap_err();
    assert_eq!(anon.code(), Code::Unauthenticated);

    // globex can neither see nor delete acme's subscription
    let (acme_sub, _) = create(&mut c, &acme, ok("http://127.0.0.1:9/hook")).await;
    let listed = c
        .list_subscriptions(grpc::authed(v1::ListSubscriptionsRequest {}, &globex))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.subscriptions.is_empty());
    let del = c
        .delete_subscription(grpc::authed(
            v1::DeleteSubscriptionRequest {
                id: acme_sub.clone(),
            },
            &globex,
        ))
        .await
        .unwrap_err();
    assert_eq!(del.code(), Code::NotFound);
    let mine = c
        .list_subscriptions(grpc::authed(v1::ListSubscriptionsRequest {}, &acme))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.subscriptions.len(), 1, "still there");
    assert_eq!(mine.subscriptions[0].id, acme_sub);

    // URLs: scheme, credentials, length, private networks (only loopback is allowed here)
    for (url, why) in [
        ("ftp://hooks.example.com/x", "scheme"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("http://10.0.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "private"),
        ("http://[fd00::1]/hook", "private"),
    ] {
        let (code, msg) =
            code_and_message(c.create_subscription(grpc::authed(ok(url), &acme)).await);
        assert_eq!(code, Code::InvalidArgument, "{url}");
        assert!(msg.starts_with("url:"), "{url}: {msg}");
        assert!(msg.contains(why), "{url}: {msg}");
    }
    let long = format!("http://127.0.0.1/{}", "a".repeat(3000));
    let (code, msg) = code_and_message(c.create_subscription(grpc::authed(ok(&long), &acme)).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.starts_with("url:") && msg.contains("longer"), "{msg}");

    // filters: bounded key selectors, known events, bounded cooldown
    let gpu = |m: &str| v1::KeySelector {
        gpu_model: m.into(),
        ..Default::default()
    };
    let mut many = subscribe("http://127.0.0.1:9/hook", F::Json, &[E::LabelChanged]);
    many.keys = (0..5).map(|_| gpu("H100")).collect();
    let (code, msg) = code_and_message(c.create_subscription(grpc::authed(many, &acme)).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.starts_with("keys:"), "{msg}");
    let mut unknown = ok("http://127.0.0.1:9/hook");
    unknown.events = vec![42];
    let (code, msg) = code_and_message(c.create_subscription(grpc::authed(unknown, &acme)).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.starts_with("events[0]:"), "{msg}");
    let mut forever = ok("http://127.0.0.1:9/hook");
    forever.cooldown_seconds = u32::MAX;
    let (code, msg) = code_and_message(c.create_subscription(grpc::authed(forever, &acme)).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.starts_with("cooldown_seconds:"), "{msg}");

    // at most 3 subscriptions per tenant (notify.max_subscriptions_per_tenant in the test
    // config); the 4th is refused and globex's own limit is untouched
    let mut gpus = subscribe("http://127.0.0.1:9/hook", F::Discord, &[E::LabelChanged]);
    gpus.keys = vec![gpu("H100")];
    create(&mut c, &acme, gpus).await;
    create(&mut c, &acme, ok("http://localhost:9/hook")).await;
    let (code, msg) = code_and_message(
        c.create_subscription(grpc::authed(ok("http://127.0.0.1:9/hook"), &acme))
            .await,
    );
    assert_eq!(code, Code::ResourceExhausted);
    assert!(msg.contains("3 subscriptions"), "{msg}");
    create(&mut c, &globex, ok("http://127.0.0.1:9/hook")).await;

    // acme deletes its own; then it may create again
    c.delete_subscription(grpc::authed(
        v1::DeleteSubscriptionRequest {
            id: acme_sub.clone(),
        },
        &acme,
    ))
    .await
    .unwrap();
    let after = c
        .list_subscriptions(grpc::authed(v1::ListSubscriptionsRequest {}, &acme))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.subscriptions.len(), 2);
    assert!(after.subscriptions.iter().all(|s| s.id != acme_sub));
    create(&mut c, &acme, ok("http://127.0.0.1:9/hook")).await;

    shutdown.trigger();
    sb.cleanup().await;
}

/// Label changes (the scorer's `alerts` rows) reach every tenant watching the key's GPU model,
/// once per key within the cooldown, low-confidence ones only on request, as Discord payloads.
#[tokio::test(flavor = "multi_thread")]
async fn label_changes_of_watched_gpu_models_reach_every_watching_tenant_within_the_cooldown() {
    let (sb, shutdown, mut c) = world().await;
    use v1::{NotificationEvent as E, WebhookFormat as F};
    let h100_in_use1 = || {
        let mut r = subscribe("", F::Discord, &[E::LabelChanged]);
        r.keys = vec![v1::KeySelector {
            gpu_model: "H100".into(),
            region: "us-east-1".into(),
            ..Default::default()
        }];
        r.cooldown_seconds = 600;
        r
    };
    let (acme_rx, globex_rx) = (Receiver::start(200).await, Receiver::start(200).await);
    for (key, rx) in [(sb.key("acme"), &acme_rx), (sb.key("globex"), &globex_rx)] {
        let mut r = h100_in_use1();
        r.url = rx.url();
        create(&mut c, &key, r).await;
    }
    let stop = Shutdown::new();
    let notifier = notifier(&sb, &stop).await;

    let t0 = chrono::Utc::now();
    let alert = |key: &str, secs: i64, from: &str, to: &str, low: u8| {
        let k: Vec<&str> = key.split('/').collect();
        let (at, at_ms) = split_time(t0 + chrono::Duration::seconds(secs));
        capsight_clickhouse::rows::AlertRow {
            provider: k[0].into(),
            region: k[1].into(),
            zone_id: k[2].into(),
            instance_type: k[3].into(),
            market: k[4].into(),
            at,
            at_ms,
            from_label: from.into(),
            to_label: to.into(),
            score: 20,
            confidence: if low == 1 { 0.1 } else { 0.9 },
            low_confidence: low,
            evidence: "[]".into(),
        }
    };
    let rows = [
        // watched: sent
        alert(
            "aws/us-east-1/use1-az4/p5.48xlarge/on_demand",
            0,
            "available",
            "unavailable",
            0,
        ),
        // the same key again within the cooldown: suppressed
        alert(
            "aws/us-east-1/use1-az4/p5.48xlarge/on_demand",
            1,
            "unavailable",
            "limited",
            0,
        ),
        // another GPU model, another region, a low-confidence change: not watched
        alert(
            "aws/us-east-1/use1-az1/g5.xlarge/on_demand",
            1,
            "available",
            "unavailable",
            0,
        ),
        alert(
            "aws/us-west-2/usw2-az1/p5.48xlarge/on_demand",
            1,
            "available",
            "unavailable",
            0,
        ),
        alert(
            "aws/us-east-1/use1-az1/p5.48xlarge/on_demand",
            1,
            "available",
            "unavailable",
            1,
        ),
        // another watched key: sent
        alert(
            "aws/us-east-1/use1-az2/p5.48xlarge/spot",
            2,
            "limited",
            "available",
            0,
        ),
    ];
    insert(&sb.client(), "alerts", &rows).await;

    for rx in [&acme_rx, &globex_rx] {
        let got = got(rx, 2, Duration::from_secs(30)).await;
        let texts: Vec<String> = got
            .iter()
            .map(|r| r.json()["content"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            texts[0].contains("use1-az4/p5.48xlarge/on_demand: available -> unavailable"),
            "{texts:?}"
        );
        assert!(
            texts[1].contains("use1-az2/p5.48xlarge/spot: limited -> available"),
            "{texts:?}"
        );
        for r in &got {
            assert_eq!(r.header("capsight-event"), "label_changed");
            assert!(!r.header("idempotency-key").is_empty());
        }
    }
    // a few more ticks: nothing else (cooldown, filters, confidence)
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(acme_rx.received().len(), 2);
    assert_eq!(globex_rx.received().len(), 2);
    assert_ne!(
        acme_rx.received()[0].header("idempotency-key"),
        globex_rx.received()[0].header("idempotency-key"),
        "one notification per subscription"
    );

    stop.trigger();
    notifier.join().await.unwrap();
    shutdown.trigger();
    sb.cleanup().await;
}

/// A notification whose receiver is down when the notifier is killed (SIGKILL, between
/// attempts) is delivered by the next notifier with the same idempotency id, at least once.
#[tokio::test(flavor = "multi_thread")]
async fn a_pending_notification_survives_a_kill_and_is_delivered_with_the_same_id() {
    let (sb, shutdown, mut c) = world().await;
    use v1::{NotificationEvent as E, WebhookFormat as F};
    let rx = Receiver::start(503).await;
    let mut r = subscribe(&rx.url(), F::Json, &[E::LabelChanged]);
    r.keys = vec![v1::KeySelector {
        instance_type: "p5.48xlarge".into(),
        ..Default::default()
    }];
    let (sub, secret) = create(&mut c, &sb.key("acme"), r).await;
    // the binary, retrying for long
    let killed = sb.spawn(
        "capsight-notifier",
        sb.command(bin("capsight-notifier"))
            .env("CAPSIGHT_NOTIFY__MAX_ATTEMPTS", "1000")
            .env("CAPSIGHT_NOTIFY__BACKOFF_INITIAL", "200ms")
            .env("CAPSIGHT_NOTIFY__BACKOFF_MAX", "200ms"),
    );
    let (at, at_ms) = split_time(chrono::Utc::now());
    insert(
        &sb.client(),
        "alerts",
        &[capsight_clickhouse::rows::AlertRow {
            provider: "aws".into(),
            region: "us-east-1".into(),
            zone_id: "use1-az4".into(),
            instance_type: "p5.48xlarge".into(),
            market: "on_demand".into(),
            at,
            at_ms,
            from_label: "available".into(),
            to_label: "unavailable".into(),
            score: 12,
            confidence: 0.9,
            low_confidence: 0,
            evidence: "[]".into(),
        }],
    )
    .await;
    let refused = got(&rx, 2, Duration::from_secs(30)).await;
    killed.kill();
    let id = refused[0].header("idempotency-key");
    assert!(refused.iter().all(|r| r.header("idempotency-key") == id));

    // the receiver recovers; a new notifier delivers the pending notification
    rx.answer(200);
    let stop = Shutdown::new();
    let n = notifier(&sb, &stop).await;
    let outcome = eventually(Duration::from_secs(30), "the delivered outcome", || async {
        sb.client()
            .query(
                "SELECT outcome, attempts FROM notify_deliveries WHERE subscription_id = ? \
                 AND id = ?",
            )
            .bind(&sub)
            .bind(&id)
            .fetch_optional::<(String, u32)>()
            .await
            .unwrap()
    })
    .await;
    assert_eq!(
        outcome,
        ("delivered".to_owned(), 1),
        "delivered on the new notifier's first attempt"
    );
    let all = rx.received();
    let last = all.last().unwrap();
    assert_eq!(
        last.header("idempotency-key"),
        id,
        "the same id after the kill"
    );
    assert!(payload::verify(
        &secret,
        &last.header("capsight-signature"),
        &last.body
    ));
    assert!(
        all.iter().all(|r| r.header("idempotency-key") == id),
        "one notification"
    );
    let dead = c
        .list_dead_letters(grpc::authed(
            v1::ListDeadLettersRequest { limit: 0 },
            &sb.key("acme"),
        ))
        .await
        .unwrap()
        .into_inner()
        .dead_letters;
    assert!(dead.is_empty(), "{dead:?}");

    stop.trigger();
    n.join().await.unwrap();
    shutdown.trigger();
    sb.cleanup().await;
}
