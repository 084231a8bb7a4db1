//! Every gateway RPC over real gRPC, against the real local stack and an in-process cloudsim.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod gateway;

use std::time::Duration;

use capsight_clickhouse::rows::{LaunchEventRow, ScoreRow};
use capsight_proto::{
    domain::{Label, Score},
    v1::{self, CheckStatus, Decision, LaunchState},
};
use capsight_testkit::{
    clickhouse::insert,
    grpc::authed,
    kafka::Reader,
    launches,
    signals::score,
    wait::{eventually, eventually_every},
};
use futures::StreamExt;
use gateway::Gateway;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use prost::Message;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// `text` holds every one of `parts`.
#[track_caller]
fn says(text: &str, parts: &[&str]) {
    assert!(parts.iter().all(|p| text.contains(p)), "{text}");
}

fn key(s: &str) -> Option<v1::CapacityKey> {
    let k: capsight_proto::domain::CapacityKey = s.parse().unwrap();
    Some(v1::CapacityKey::from(&k))
}

/// An alternative's key in its string form.
fn key_name(a: &v1::Alternative) -> String {
    capsight_proto::domain::CapacityKey::try_from(a.key.clone().unwrap())
        .unwrap()
        .to_string()
}

fn spec(k: &str, count: u32) -> Option<v1::LaunchSpec> {
    Some(v1::LaunchSpec {
        key: key(k),
        count,
        image_id: "ami-0123456789abcdef0".into(),
        ..Default::default()
    })
}

const AZ1: &str = "aws/us-east-1/use1-az1/p5.48xlarge/on_demand";
const AZ4: &str = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";
const AZ6: &str = "aws/us-east-1/use1-az6/p5.48xlarge/on_demand";
const WEST: &str = "aws/us-west-2/usw2-az1/p5.48xlarge/on_demand";

async fn health(h: &Gateway, service: &str) -> i32 {
    HealthClient::new(h.channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

#[tokio::test(flavor = "multi_thread")]
async fn not_serving_until_the_scores_view_is_built_then_scores_are_served() {
    // the scores topic does not exist yet: the view cannot be built
    let h = Gateway::prepare(false).await.launch_gateway().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(health(&h, "").await, ServingStatus::NotServing as i32);
    assert_eq!(
        health(&h, "capsight.v1.ScoreService").await,
        ServingStatus::NotServing as i32
    );
    let err = h
        .scores()
        .get_score(authed(
            v1::GetScoreRequest { key: key(AZ1) },
            &h.key("acme"),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    h.create_scores_topic().await;
    for (k, v) in [(AZ1, 20), (AZ4, 85), (AZ6, 60), (WEST, 90)] {
        h.sandbox.publish_score(&score(k, v, 0.8)).await;
    }
    // a newer record of the same key wins
    h.sandbox.publish_score(&score(AZ1, 15, 0.9)).await;
    h.wait_ready().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    eventually(Duration::from_secs(20), "SERVING", || async {
        (health(&h, "").await == ServingStatus::Serving as i32).then_some(())
    })
    .await;
    // records published after start are read too
    let az1 = eventually(Duration::from_secs(20), "AZ1 at 15", || async {
        h.scores()
            .get_score(authed(
                v1::GetScoreRequest { key: key(AZ1) },
                &h.key("acme"),
            ))
            .await
            .ok()
            .filter(|s| s.get_ref().score == 15)
    })
    .await;
    assert_eq!(az1.get_ref().label, i32::from(Label::Unavailable));
    eventually_every(
        Duration::from_millis(100),
        Duration::from_secs(20),
        "4 keys in the view",
        || async { (h.running.as_ref().unwrap().view.len() >= 4).then_some(()) },
    )
    .await;

    // unknown key
    let err = h
        .scores()
        .get_score(authed(
            v1::GetScoreRequest {
                key: key("aws/us-east-1//p4d.24xlarge/spot"),
            },
            &h.key("acme"),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // filters and pagination
    let list = |filter: v1::ScoreFilter, page_size: u32, page_token: String| {
        let mut c = h.scores();
        let key = h.key("acme");
        async move {
            c.list_scores(authed(
                v1::ListScoresRequest {
                    filter: Some(filter),
                    page_size,
                    page_token,
                },
                &key,
            ))
            .await
            .unwrap()
            .into_inner()
        }
    };
    let all = list(v1::ScoreFilter::default(), 0, String::new()).await;
    assert_eq!(all.total, 4);
    let good = list(
        v1::ScoreFilter {
            min_label: i32::from(Label::Available),
            ..Default::default()
        },
        0,
        String::new(),
    )
    .await;
    assert_eq!(good.total, 2, "{good:?}");
    let east_h100 = list(
        v1::ScoreFilter {
            region: "us-east-1".into(),
            gpu_model: "h100".into(),
            min_gpus: 8,
            ..Default::default()
        },
        0,
        String::new(),
    )
    .await;
    assert_eq!(east_h100.total, 3);
    let p1 = list(v1::ScoreFilter::default(), 3, String::new()).await;
    assert_eq!(p1.scores.len(), 3);
    assert!(!p1.next_page_token.is_empty());
    let p2 = list(v1::ScoreFilter::default(), 3, p1.next_page_token).await;
    assert_eq!(p2.scores.len(), 1);
    assert!(p2.next_page_token.is_empty());
    assert_eq!(p2.total, 4);
    h.sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_scores_streams_label_transitions_only() {
    let h = Gateway::start(&[score(AZ4, 85, 0.8)]).await;
    h.wait_ready().await;
    let mut stream = h
        .scores()
        .watch_scores(authed(
            v1::WatchScoresRequest {
                filter: Some(v1::ScoreFilter {
                    region: "us-east-1".into(),
                    ..Default::default()
                }),
            },
            &h.key("acme"),
        ))
        .await
        .unwrap()
        .into_inner();
    // same label: no transition; other region: filtered; then Available -> Unavailable
    h.sandbox.publish_score(&score(AZ4, 82, 0.8)).await;
    h.sandbox.publish_score(&score(WEST, 30, 0.8)).await;
    h.sandbox.publish_score(&score(AZ4, 30, 0.8)).await;
    let t = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("a transition within 20 s")
        .unwrap()
        .unwrap();
    let s = t.score.unwrap();
    assert_eq!(s.score, 30);
    assert_eq!(s.label, i32::from(Label::Unavailable));
    assert_eq!(t.previous, i32::from(Label::Available));
    h.sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn history_comes_from_clickhouse_bucketed_by_step() {
    let h = Gateway::start(&[]).await;
    let now = u32::try_from(chrono::Utc::now().timestamp()).unwrap();
    let base = now - now % 600 - 3600;
    let rows: Vec<ScoreRow> = [(0u32, 40u8), (60, 70), (600, 90), (1200, 20)]
        .into_iter()
        .map(|(offset, value)| {
            ScoreRow::new(&Score {
                evidence: vec![],
                updated_at: chrono::DateTime::from_timestamp(i64::from(base + offset), 0).unwrap(),
                signal_count: 5,
                ..score(AZ4, value, 0.5)
            })
        })
        .collect();
    insert(&h.sandbox.client(), "scores", &rows).await;
    let resp = h
        .scores()
        .get_history(authed(
            v1::GetHistoryRequest {
                key: key(AZ4),
                from: Some(prost_types::Timestamp {
                    seconds: i64::from(base),
                    nanos: 0,
                }),
                to: None,
                step_seconds: 600,
            },
            &h.key("acme"),
        ))
        .await
        .unwrap()
        .into_inner();
    let scores: Vec<u32> = resp.points.iter().map(|p| p.score).collect();
    assert_eq!(scores, vec![70, 90, 20]);
    assert_eq!(resp.points[0].label, i32::from(Label::Limited));
    h.sandbox.cleanup().await;
}

/// The answer to a preflight of `count` instances of key `k` by the tenant of `api_key`.
async fn preflighted(
    h: &Gateway,
    k: &str,
    count: u32,
    live_probe: bool,
    api_key: &str,
) -> v1::PreflightResponse {
    let req = v1::PreflightRequest {
        spec: spec(k, count),
        constraints: None,
        live_probe,
    };
    h.preflight()
        .preflight(authed(req, api_key))
        .await
        .unwrap()
        .into_inner()
}

/// The preflight answered `decision` (the whole answer shown otherwise).
#[track_caller]
fn decided(r: &v1::PreflightResponse, decision: Decision) {
    assert_eq!(r.decision, decision as i32, "{r:#?}");
}

fn statuses(r: &v1::PreflightResponse) -> Vec<(String, i32)> {
    r.checks
        .iter()
        .map(|c| (c.name.clone(), c.status))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn preflight_branches_and_every_preflight_is_logged() {
    let h = Gateway::start(&[
        score(AZ1, 15, 0.9),
        score(AZ4, 88, 0.8),
        score(AZ6, 62, 0.6),
        score(WEST, 91, 0.7),
    ])
    .await;
    h.wait_ready().await;

    // OK: allowed, quota for 1 (192 vCPUs), Available
    let ok = preflighted(&h, AZ4, 1, false, &h.key("acme")).await;
    decided(&ok, Decision::CanLaunch);
    assert_eq!(
        statuses(&ok),
        vec![
            ("permission".into(), CheckStatus::Passed as i32),
            ("quota".into(), CheckStatus::Passed as i32),
            ("capacity".into(), CheckStatus::Passed as i32),
        ]
    );
    assert_eq!(ok.quota_headroom, 1);
    assert!(ok.alternatives.is_empty());

    // quota short: 2 x 192 vCPUs > 192 — an account issue, never alternatives
    let quota = preflighted(&h, AZ1, 2, false, &h.key("acme")).await;
    decided(&quota, Decision::FixAccountIssue);
    assert_eq!(quota.checks[1].status, CheckStatus::Failed as i32);
    says(&quota.checks[1].reason, &["L-417A185B"]);
    assert_eq!(quota.checks[2].status, CheckStatus::Skipped as i32);
    assert!(quota.alternatives.is_empty());

    // permission denied: the tenant's role may not RunInstances
    let denied = preflighted(&h, AZ4, 1, false, &h.key("readonly")).await;
    decided(&denied, Decision::FixAccountIssue);
    assert_eq!(denied.checks[0].status, CheckStatus::Failed as i32);
    assert_eq!(denied.checks[0].error_code, "UnauthorizedOperation");
    assert!(denied.alternatives.is_empty());

    // no role registered at all: also the account's issue
    let norole = preflighted(&h, AZ4, 1, false, &h.key("globex")).await;
    decided(&norole, Decision::FixAccountIssue);
    says(&norole.checks[0].reason, &["no AWS role"]);

    // capacity short: AZ1 scores 15 -> alternatives inline, same type other zone first
    let short = preflighted(&h, AZ1, 1, false, &h.key("acme")).await;
    decided(&short, Decision::RetryWithAlternatives);
    assert_eq!(short.checks[2].status, CheckStatus::Failed as i32);
    let alt_keys: Vec<String> = short.alternatives.iter().map(key_name).collect();
    assert_eq!(alt_keys, vec![AZ4, WEST, AZ6]);
    assert!(short.alternatives[0].usd_per_gpu_hour > 0.0);
    assert!(!short.alternatives[0].reason.is_empty());

    // limited capacity passes with a warning
    let limited = preflighted(&h, AZ6, 1, false, &h.key("acme")).await;
    decided(&limited, Decision::CanLaunch);
    assert_eq!(limited.checks[2].status, CheckStatus::Warning as i32);

    // every preflight logged, with the tenant id
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Logged {
        tenant: String,
        decision: String,
    }
    let rows = h
        .sandbox
        .client()
        .query("SELECT tenant, decision FROM preflight_log ORDER BY at, at_ms")
        .fetch_all::<Logged>()
        .await
        .unwrap();
    assert_eq!(rows.len(), 6);
    let by = |t: &str, d: &str| {
        rows.iter()
            .filter(|r| r.tenant == t && r.decision == d)
            .count()
    };
    assert_eq!(by("acme", "can_launch"), 2);
    assert_eq!(by("acme", "fix_account_issue"), 1);
    assert_eq!(by("acme", "retry_with_alternatives"), 1);
    assert_eq!(by("readonly", "fix_account_issue"), 1);
    assert_eq!(by("globex", "fix_account_issue"), 1);
    h.sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alternatives_honour_constraints() {
    let h = Gateway::start(&[
        score(AZ1, 15, 0.9),
        score(AZ4, 70, 0.8),
        score(WEST, 91, 0.7),
        score("aws/us-east-1/use1-az4/p5.48xlarge/spot", 95, 0.7),
        score("aws/us-east-1/use1-az4/p5.48xlarge/capacity_block", 99, 0.9),
    ])
    .await;
    h.wait_ready().await;
    let alts = |constraints: v1::Constraints| {
        let mut c = h.preflight();
        let key = h.key("acme");
        async move {
            c.alternatives(authed(
                v1::AlternativesRequest {
                    spec: Some(v1::LaunchSpec {
                        key: key_of(AZ1),
                        count: 1,
                        ..Default::default()
                    }),
                    constraints: Some(constraints),
                },
                &key,
            ))
            .await
            .unwrap()
            .into_inner()
            .alternatives
        }
    };
    fn key_of(s: &str) -> Option<v1::CapacityKey> {
        key(s)
    }
    // default: no spot (not interruptible), capacity blocks allowed, limit 3; likeliest
    // first: 99 at confidence 0.9 (94.1 expected), 91 at 0.7 (78.7), 70 at 0.8 (66)
    let d = alts(v1::Constraints::default()).await;
    let names: Vec<String> = d.iter().map(key_name).collect();
    assert_eq!(
        names,
        vec![
            "aws/us-east-1/use1-az4/p5.48xlarge/capacity_block".to_owned(),
            WEST.to_owned(),
            AZ4.to_owned()
        ]
    );
    says(&d[0].advice, &["cannot be cancelled"]);
    // region-locked and interruptible: spot appears, us-west-2 does not
    let r = alts(v1::Constraints {
        allowed_regions: vec!["us-east-1".into()],
        interruptible: true,
        markets: vec![v1::Market::OnDemand as i32, v1::Market::Spot as i32],
        ..Default::default()
    })
    .await;
    let names: Vec<String> = r.iter().map(key_name).collect();
    assert_eq!(
        names,
        vec![
            "aws/us-east-1/use1-az4/p5.48xlarge/spot".to_owned(),
            AZ4.to_owned()
        ]
    );
    // a price cap below the H100 price leaves nothing
    assert!(
        alts(v1::Constraints {
            max_usd_per_gpu_hour: 1.0,
            ..Default::default()
        })
        .await
        .is_empty()
    );
    h.sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn launch_publishes_a_confirmed_job_and_tenants_see_only_their_own() {
    let h = Gateway::start(&[]).await;
    h.wait_ready().await;
    let (acme, globex) = (h.key("acme"), h.key("globex"));
    let mut launch = h.launch();
    let req = v1::LaunchRequest {
        spec: Some(v1::LaunchSpec {
            key: key("aws/us-east-1/use1-az4/p5.48xlarge/spot"),
            count: 2,
            image_id: "ami-0123456789abcdef0".into(),
            ..Default::default()
        }),
        constraints: Some(v1::Constraints {
            interruptible: true,
            allowed_regions: vec!["us-east-1".into()],
            ..Default::default()
        }),
        warm_standby: true,
        max_lifetime_seconds: 7200,
        idle_ttl_seconds: 900,
        max_fallbacks: 3,
        idempotency_key: "train-42".into(),
    };
    let resp = launch
        .launch(authed(req.clone(), &acme))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.state, LaunchState::Queued as i32);
    let job_id = resp.job_id.clone();
    let id = || job_id.clone();
    // same idempotency key, same job, not published twice
    let again = launch
        .launch(authed(req, &acme))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.job_id, job_id);

    // the job is on the queue, confirmed, with its properties
    let conn = h.config.amqp.connect().await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let got = ch
        .basic_get(
            h.config.amqp.launch.jobs_queue.as_str().into(),
            BasicGetOptions::default(),
        )
        .await
        .unwrap()
        .expect("a job on the queue");
    let job = v1::LaunchJob::decode(got.data.as_slice()).unwrap();
    assert_eq!(job.job_id, job_id);
    assert_eq!(job.tenant, "acme");
    assert!(job.tenant_hash.starts_with("t-"));
    assert!(job.warm_standby);
    assert_eq!(job.max_fallbacks, 3);
    assert_eq!(job.spec.as_ref().unwrap().count, 2);
    assert_eq!(
        got.properties.message_id().as_ref().map(|m| m.as_str()),
        Some(job_id.as_str())
    );
    assert_eq!(got.properties.delivery_mode(), &Some(2));
    got.ack(BasicAckOptions::default()).await.unwrap();
    let none = ch
        .basic_get(
            h.config.amqp.launch.jobs_queue.as_str().into(),
            BasicGetOptions::default(),
        )
        .await
        .unwrap();
    assert!(none.is_none(), "the idempotent retry was not re-published");

    // GetLaunch: owner sees it, queued
    let status = launch
        .get_launch(authed(v1::GetLaunchRequest { job_id: id() }, &acme))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.state, LaunchState::Queued as i32);
    assert_eq!(status.events.len(), 1);
    // another tenant cannot see, list, watch or cancel it
    for code in [
        launch
            .get_launch(authed(v1::GetLaunchRequest { job_id: id() }, &globex))
            .await
            .unwrap_err()
            .code(),
        launch
            .cancel_launch(authed(v1::CancelLaunchRequest { job_id: id() }, &globex))
            .await
            .unwrap_err()
            .code(),
        launch
            .watch_launch(authed(
                v1::WatchLaunchRequest {
                    job_id: job_id.clone(),
                    until_running: false,
                },
                &globex,
            ))
            .await
            .err()
            .unwrap()
            .code(),
    ] {
        assert_eq!(code, Code::NotFound);
    }
    let theirs = launch
        .list_launches(authed(v1::ListLaunchesRequest { limit: 0 }, &globex))
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.launches.is_empty());
    let mine = launch
        .list_launches(authed(v1::ListLaunchesRequest { limit: 0 }, &acme))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.launches.len(), 1);
    assert_eq!(mine.launches[0].job_id, job_id);

    // WatchLaunch follows the launcher's transitions until running
    let mut watch = launch
        .watch_launch(authed(
            v1::WatchLaunchRequest {
                job_id: job_id.clone(),
                until_running: true,
            },
            &acme,
        ))
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.state, LaunchState::Queued as i32);
    // the launcher's transitions
    let ev = |seq: u32, state: &str| LaunchEventRow {
        at: u32::try_from(chrono::Utc::now().timestamp()).unwrap(),
        at_ms: 0,
        instance_id: if state == "running" {
            "i-0abc".into()
        } else {
            String::new()
        },
        attempt: 1,
        ..launches::event(
            &launches::request(
                &job_id,
                "acme",
                &"aws/us-east-1/use1-az4/p5.48xlarge/spot".parse().unwrap(),
                2,
                chrono::Utc::now(),
            ),
            seq,
            capsight_proto::domain::LaunchState::parse("state", state).unwrap(),
        )
    };
    let client = h.sandbox.client();
    insert(
        &client,
        "launch_events",
        &[ev(1, "provisioning"), ev(2, "running")],
    )
    .await;
    let mut states = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("stream ends at running")
    {
        states.push(e.unwrap().state);
    }
    assert_eq!(
        states,
        vec![
            LaunchState::Provisioning as i32,
            LaunchState::Running as i32
        ]
    );

    // cancel a running job: requested; after termination: FAILED_PRECONDITION
    let c = launch
        .cancel_launch(authed(v1::CancelLaunchRequest { job_id: id() }, &acme))
        .await
        .unwrap()
        .into_inner();
    assert!(c.cancel_requested);
    assert_eq!(c.state, LaunchState::Running as i32);
    insert(&client, "launch_events", &[ev(3, "cancelled")]).await;
    let err = launch
        .cancel_launch(authed(v1::CancelLaunchRequest { job_id: id() }, &acme))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let status = launch
        .get_launch(authed(v1::GetLaunchRequest { job_id }, &acme))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.state, LaunchState::Cancelled as i32);
    assert_eq!(status.events.len(), 4);
    assert!(status.cancel_requested);
    h.sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_report_publishes_a_hashed_report_signal() {
    let h = Gateway::start(&[]).await;
    let resp = h
        .report()
        .submit_report(authed(
            v1::SubmitReportRequest {
                id: "r-1".into(),
                provider: "aws".into(),
                region: "us-east-1".into(),
                zone_name: "us-east-1b".into(),
                instance_type: "p5.48xlarge".into(),
                outcome: v1::ReportOutcome::LaunchFailed as i32,
                error_code: "InsufficientInstanceCapacity".into(),
                error_message: "We currently do not have sufficient p5.48xlarge capacity".into(),
                ..Default::default()
            },
            &h.key("acme"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(resp.signal_id.starts_with("report-"), "{}", resp.signal_id);

    let kafka = &h.sandbox.kafka;
    let signal = Reader::subscribe(kafka, &kafka.topics.signals)
        .take(1, Duration::from_secs(20))
        .await[0]
        .signal();
    assert_eq!(signal.id.as_str(), resp.signal_id);
    // the tenant's AZ name was mapped to the AZ ID; the tenant id never travels
    assert_eq!(signal.key.to_string(), AZ4);
    let hash = signal.tenant.unwrap();
    assert!(hash.as_str().starts_with("t-"));
    assert!(!hash.as_str().contains("acme"));

    // the intake's validation applies
    let err = h
        .report()
        .submit_report(authed(
            v1::SubmitReportRequest {
                provider: "aws".into(),
                region: "us-east-1".into(),
                instance_type: "p5.48xlarge".into(),
                outcome: v1::ReportOutcome::LaunchFailed as i32,
                ..Default::default()
            },
            &h.key("acme"),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("error_code:"),
        "{}",
        err.message()
    );
    h.sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_is_resource_exhausted_and_missing_keys_unauthenticated() {
    let h = Gateway::start(&[]).await;
    h.wait_ready().await;
    let mut ok = 0;
    let mut exhausted = None;
    for _ in 0..20 {
        match h
            .scores()
            .list_scores(authed(v1::ListScoresRequest::default(), &h.key("flood")))
            .await
        {
            Ok(_) => ok += 1,
            Err(e) => {
                exhausted = Some(e);
                break;
            }
        }
    }
    let e = exhausted.expect("the flood was limited");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert_eq!(ok, 5);
    assert!(e.metadata().get("retry-after").is_some());
    // other tenants are not affected
    h.scores()
        .list_scores(authed(v1::ListScoresRequest::default(), &h.key("acme")))
        .await
        .unwrap();
    // no key, a bad key
    let e = h
        .scores()
        .list_scores(v1::ListScoresRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = h
        .scores()
        .list_scores(authed(
            v1::ListScoresRequest::default(),
            "csk_00000000_nope",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    h.sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_are_invalid_argument_naming_the_field() {
    let h = Gateway::start(&[]).await;
    h.wait_ready().await;
    let k = h.key("acme");
    let launch_with = |s: Option<v1::LaunchSpec>, tweak: fn(&mut v1::LaunchRequest)| {
        let mut c = h.launch();
        let k = k.clone();
        async move {
            let mut r = v1::LaunchRequest {
                spec: s,
                ..Default::default()
            };
            tweak(&mut r);
            c.launch(authed(r, &k)).await.unwrap_err()
        }
    };
    let mut cases: Vec<(tonic::Status, &str)> = vec![
        (launch_with(spec(AZ4, 0), |_| {}).await, "spec.count"),
        (launch_with(spec(AZ4, 33), |_| {}).await, "spec.count"),
        (
            launch_with(spec("aws/us-east-1//m5.large/on_demand", 1), |_| {}).await,
            "spec.key.instance_type",
        ),
        (
            launch_with(spec("aws/ap-east-9//p5.48xlarge/on_demand", 1), |_| {}).await,
            "spec.key.region",
        ),
        (launch_with(None, |_| {}).await, "spec"),
        (
            launch_with(spec(AZ4, 1), |r| r.warm_standby = true).await,
            "warm_standby",
        ),
        (
            launch_with(spec(AZ4, 1), |r| r.max_fallbacks = 99).await,
            "max_fallbacks",
        ),
        (
            launch_with(spec(AZ4, 1), |r| r.idempotency_key = "no spaces".into()).await,
            "idempotency_key",
        ),
    ];
    let mut bad_zone = spec(AZ4, 1).unwrap();
    bad_zone.key.as_mut().unwrap().zone_id = "us-east-1a".into();
    cases.push((
        launch_with(Some(bad_zone), |_| {}).await,
        "spec.key.zone_id",
    ));
    let mut bad_image = spec(AZ4, 1).unwrap();
    bad_image.image_id = "my-image".into();
    cases.push((launch_with(Some(bad_image), |_| {}).await, "spec.image_id"));
    let list_refused = |req: v1::ListScoresRequest| {
        let mut c = h.scores();
        let k = k.clone();
        async move { c.list_scores(authed(req, &k)).await.unwrap_err() }
    };
    let too_many = v1::ListScoresRequest {
        page_size: 5000,
        ..Default::default()
    };
    cases.push((list_refused(too_many).await, "page_size"));
    let over_sure = v1::ListScoresRequest {
        filter: Some(v1::ScoreFilter {
            min_confidence: 2.0,
            ..Default::default()
        }),
        ..Default::default()
    };
    cases.push((list_refused(over_sure).await, "filter.min_confidence"));
    cases.push((
        h.scores()
            .get_history(authed(
                v1::GetHistoryRequest {
                    key: key(AZ4),
                    step_seconds: 5,
                    ..Default::default()
                },
                &k,
            ))
            .await
            .unwrap_err(),
        "step_seconds",
    ));
    cases.push((
        h.launch()
            .get_launch(authed(v1::GetLaunchRequest { job_id: "x".into() }, &k))
            .await
            .unwrap_err(),
        "job_id",
    ));
    cases.push((
        h.preflight()
            .preflight(authed(
                v1::PreflightRequest {
                    spec: spec(AZ4, 1),
                    constraints: Some(v1::Constraints {
                        markets: vec![v1::Market::Spot as i32],
                        ..Default::default()
                    }),
                    live_probe: false,
                },
                &k,
            ))
            .await
            .unwrap_err(),
        "constraints.markets[0]",
    ));
    for (status, field) in cases {
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().starts_with(&format!("{field}:")),
            "expected {field}: got {}",
            status.message()
        );
    }
    h.sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_probe_overrides_a_stale_score() {
    // the scores say AZ6 is fine and AZ4 is not; the simulated cloud says the opposite
    let h = Gateway::start(&[
        score(AZ6, 90, 0.9),
        score(AZ4, 10, 0.9),
        score(AZ1, 85, 0.8),
    ])
    .await;
    h.wait_ready().await;
    let acme = h.key("acme");
    let empty = preflighted(&h, AZ6, 1, true, &acme).await;
    decided(&empty, Decision::RetryWithAlternatives);
    says(&empty.checks[2].reason, &["live probe"]);
    assert!(!empty.alternatives.is_empty());
    let stocked = preflighted(&h, AZ4, 1, true, &acme).await;
    decided(&stocked, Decision::CanLaunch);
    says(&stocked.checks[2].reason, &["released"]);
    h.sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn old_or_thin_evidence_is_served_as_unknown_and_ranked_after_known_good_keys() {
    // AZ4 was short 13 hours ago (past the 12h horizon); AZ6 rests on one signal (confidence
    // 0.1); WEST is known Limited; AZ1, the request, is known Unavailable
    let mut stale = score(AZ4, 30, 0.9);
    stale.updated_at = chrono::Utc::now() - chrono::Duration::hours(13);
    let h = Gateway::start(&[
        score(AZ1, 15, 0.9),
        stale,
        score(AZ6, 100, 0.1),
        score(WEST, 62, 0.6),
    ])
    .await;
    h.wait_ready().await;
    let key = h.key("acme");
    let mut scores = h.scores();
    let get = |k: &'static str| {
        let mut c = scores.clone();
        let key = key.clone();
        async move {
            c.get_score(authed(v1::GetScoreRequest { key: self::key(k) }, &key))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let old = get(AZ4).await;
    assert_eq!(
        (old.label, old.confidence, old.score),
        (v1::Label::Unknown as i32, 0.0, 30),
        "{old:#?}"
    );
    let thin = get(AZ6).await;
    assert_eq!(thin.label, v1::Label::Unknown as i32, "{thin:#?}");
    assert_eq!(get(WEST).await.label, v1::Label::Limited as i32);
    let listed = scores
        .list_scores(authed(v1::ListScoresRequest::default(), &key))
        .await
        .unwrap()
        .into_inner();
    let unknown = listed
        .scores
        .iter()
        .filter(|s| s.label == v1::Label::Unknown as i32)
        .count();
    assert_eq!(unknown, 2, "{listed:#?}");

    // alternatives to AZ1: the known Limited key before both unknown ones, however high
    // their last scores were
    let mut c = h.preflight();
    let alts = c
        .alternatives(authed(
            v1::AlternativesRequest {
                spec: spec(AZ1, 1),
                constraints: None,
            },
            &key,
        ))
        .await
        .unwrap()
        .into_inner()
        .alternatives;
    let names: Vec<String> = alts.iter().map(key_name).collect();
    assert_eq!(names.first().map(String::as_str), Some(WEST), "{names:?}");
    assert_eq!(names.len(), 3, "the default limit: {names:?}");

    // a preflight on the thin key passes with a warning that says so and points to a probe
    let p = preflighted(&h, AZ6, 1, false, &key).await;
    decided(&p, Decision::CanLaunch);
    let capacity = p.checks.last().unwrap();
    assert_eq!(capacity.status, CheckStatus::Warning as i32, "{p:#?}");
    says(&capacity.reason, &["low confidence", "live_probe"]);

    // an unknown key whose evidence leans to no capacity sends the caller to alternatives
    let p = preflighted(&h, AZ4, 1, false, &key).await;
    decided(&p, Decision::RetryWithAlternatives);
    assert_eq!(
        p.alternatives.first().map(key_name).as_deref(),
        Some(WEST),
        "{p:#?}"
    );
    h.sandbox.cleanup().await;
}

/// `Launch` runs the same preflight as `Preflight` (logged, with the tenant GPU quota) and queues
/// only what it allows: an account issue and, without fallbacks, a capacity shortfall are
/// `FAILED_PRECONDITION` saying why; nothing refused reaches the queue.
#[tokio::test(flavor = "multi_thread")]
async fn launch_runs_the_preflight_and_queues_only_what_it_allows() {
    let mut g = Gateway::prepare(true).await;
    for s in [score(AZ1, 15, 0.9), score(AZ4, 88, 0.8)] {
        g.sandbox.publish_score(&s).await;
    }
    // 8 GPUs: one p5.48xlarge fits, two p4d.24xlarge (16 GPUs, 192 vCPUs) do not
    g.config.tenancy.default_gpu_quota = 8;
    let h = g.launch_gateway().await;
    h.wait_ready().await;
    let acme = h.key("acme");
    let p4d = "aws/us-east-1/use1-az4/p4d.24xlarge/on_demand";

    // Preflight says the tenant GPU quota is short, in the quota check
    let over = preflighted(&h, p4d, 2, false, &acme).await;
    decided(&over, Decision::FixAccountIssue);
    let quota = over.checks.iter().find(|c| c.name == "quota").unwrap();
    assert_eq!(quota.status, CheckStatus::Failed as i32, "{quota:#?}");
    assert_eq!(quota.error_code, "TenantGpuQuotaExceeded");
    assert!(
        quota.reason.contains("16 requested"),
        "names the numbers: {}",
        quota.reason
    );

    let launch = |k: &'static str, count: u32, fallbacks: u32, api_key: String| {
        let mut c = h.launch();
        async move {
            c.launch(authed(
                v1::LaunchRequest {
                    spec: spec(k, count),
                    max_fallbacks: fallbacks,
                    ..Default::default()
                },
                &api_key,
            ))
            .await
        }
    };
    // the same decision refuses the launch
    let refused = launch(p4d, 2, 0, acme.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    says(
        refused.message(),
        &["quota check", "tenant GPU quota exceeded"],
    );
    // the tenant's role may not launch: refused, naming the permission check
    let denied = launch(AZ4, 1, 0, h.key("readonly")).await.unwrap_err();
    assert_eq!(denied.code(), Code::FailedPrecondition, "{denied:?}");
    says(denied.message(), &["permission check"]);
    // AZ1 is short of capacity: without fallbacks the answer names where to launch instead
    let short = launch(AZ1, 1, 0, acme.clone()).await.unwrap_err();
    assert_eq!(short.code(), Code::FailedPrecondition, "{short:?}");
    says(short.message(), &["capacity check", AZ4]);
    // with fallbacks the launcher may try it and then the alternatives: queued
    let with_fallbacks = launch(AZ1, 1, 2, acme.clone()).await.unwrap().into_inner();
    assert_eq!(with_fallbacks.state, LaunchState::Queued as i32);
    let fine = launch(AZ4, 1, 0, acme.clone()).await.unwrap().into_inner();
    assert_eq!(fine.state, LaunchState::Queued as i32);

    // exactly the two allowed jobs reached the queue
    let conn = h.config.amqp.connect().await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut queued = Vec::new();
    while let Some(got) = ch
        .basic_get(
            h.config.amqp.launch.jobs_queue.as_str().into(),
            BasicGetOptions::default(),
        )
        .await
        .unwrap()
    {
        queued.push(v1::LaunchJob::decode(got.data.as_slice()).unwrap().job_id);
        got.ack(BasicAckOptions::default()).await.unwrap();
    }
    queued.sort();
    let mut expected = vec![with_fallbacks.job_id, fine.job_id];
    expected.sort();
    assert_eq!(queued, expected);
    // every launch's preflight is logged (plus the Preflight call)
    let logged: u64 = h
        .sandbox
        .client()
        .query("SELECT count() FROM preflight_log")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(logged, 6);
    h.sandbox.cleanup().await;
}
