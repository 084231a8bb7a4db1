//! Crash safety of the real `capsight-launcher` binary: `kill -9` at every state, then a restart
//! completes the job with exactly one instance; and a restart of a (private) RabbitMQ broker in
//! the middle of a job loses nothing. Needs `cargo build -p capsight-launcher --bins`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod launcher;

use std::{os::unix::process::ExitStatusExt, time::Duration};

use capsight_proto::domain::LaunchState;
use capsight_testkit::wait::eventually;
use launcher::{ACME, Harness, P5_AZ4, P5_AZ6, states};

const LIMIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_at_every_state_then_restart_completes_with_exactly_one_instance() {
    let h = Harness::start("60s").await;
    for (step, recorded) in [
        ("preflight", "preflight"),
        ("provisioning", "provisioning"),
        ("launched", "provisioning"),
        ("running", "running"),
    ] {
        let job = h.launch(ACME, P5_AZ4, 1, 0).await;
        let mut doomed = h.spawn_binary(
            &[("CAPSIGHT_LAUNCHER__CRASH_AFTER", step)],
            &format!("crash-{step}"),
        );
        let status = doomed.exited(LIMIT).await;
        assert_eq!(status.signal(), Some(9), "{step}: {status:?}");
        let events = h.events(ACME, &job.job_id).await;
        assert_eq!(
            events.last().map(|e| e.state.as_str()),
            Some(recorded),
            "{step}: {:?}",
            states(&events)
        );
        let before = h.instances_of(&job.job_id).await.len();
        let expected_before = usize::from(matches!(step, "launched" | "running"));
        assert_eq!(before, expected_before, "{step}: instances before restart");

        let worker = h.spawn_binary(&[], &format!("restart-{step}"));
        let events = h.wait_state(ACME, &job.job_id, "running", LIMIT).await;
        assert_eq!(
            states(&events),
            "queued preflight provisioning running",
            "{step}"
        );
        let instances = h.instances_of(&job.job_id).await;
        assert_eq!(instances.len(), 1, "{step}: {instances:?}");
        assert_eq!(events[3].instance_id, instances[0].id.as_str(), "{step}");
        eventually(LIMIT, "the job acknowledged", || async {
            (h.queue_depth(&h.config.amqp.launch.jobs_queue).await == 0).then_some(())
        })
        .await;
        worker.kill();
    }
    assert_eq!(
        h.queue_depth(&h.config.amqp.launch.dead_letter_queue).await,
        0
    );
    h.sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_loop_is_dead_lettered_by_the_delivery_limit_and_replays_to_one_instance() {
    let h = Harness::start("60s").await;
    let t = h.config.amqp.launch.clone();
    let job = h.launch(ACME, P5_AZ4, 1, 0).await;
    // every worker dies right after the cloud answered: the job can never be acked
    let mut runs = 0;
    while h.queue_depth(&t.dead_letter_queue).await == 0 {
        assert!(runs < 10, "not dead-lettered after {runs} crashing workers");
        let mut doomed = h.spawn_binary(
            &[("CAPSIGHT_LAUNCHER__CRASH_AFTER", "launched")],
            &format!("loop-{runs}"),
        );
        let status = doomed.exited(LIMIT).await;
        assert_eq!(status.signal(), Some(9), "run {runs}: {status:?}");
        runs += 1;
        // the broker has requeued or dead-lettered it before the next worker starts
        eventually(LIMIT, "the job back in a queue", || async {
            let n = h.queue_depth(&t.jobs_queue).await + h.queue_depth(&t.dead_letter_queue).await;
            (n == 1).then_some(())
        })
        .await;
    }
    assert_eq!(
        runs,
        t.delivery_limit as usize + 1,
        "deliveries before dead-lettering"
    );
    assert_eq!(h.queue_depth(&t.jobs_queue).await, 0);
    // six launches with one client token: one instance
    assert_eq!(h.instances_of(&job.job_id).await.len(), 1);
    let events = h.events(ACME, &job.job_id).await;
    assert_eq!(events.last().unwrap().state, LaunchState::Provisioning);

    // replay (docs/runbooks.md): back to the work exchange with key `job`, then a sound worker
    let conn = h.config.amqp.connect().await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let dead = ch
        .basic_get(
            t.dead_letter_queue.as_str().into(),
            lapin::options::BasicGetOptions { no_ack: false },
        )
        .await
        .unwrap()
        .unwrap();
    ch.basic_publish(
        t.exchange.as_str().into(),
        t.jobs_routing_key.as_str().into(),
        lapin::options::BasicPublishOptions::default(),
        &dead.delivery.data,
        lapin::BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    dead.delivery
        .acker
        .ack(lapin::options::BasicAckOptions::default())
        .await
        .unwrap();
    let _ = conn.close(200, "bye".into()).await;
    let worker = h.spawn_binary(&[], "replay");
    let events = h.wait_state(ACME, &job.job_id, "running", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning running");
    assert_eq!(h.instances_of(&job.job_id).await.len(), 1);
    worker.kill();
    h.sandbox.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rabbitmq_restart_mid_job_loses_nothing() {
    // use1-az6 instances take 30 simulated minutes = 30 s to run
    let mut h = Harness::start("30m").await;
    let mut rabbit = h.private_rabbit().await;
    h.start_launcher();

    let job = h.launch(ACME, P5_AZ6, 1, 0).await;
    h.wait_pending(&job.job_id, LIMIT).await;

    rabbit.stop().await;
    rabbit.start().await;
    // a job published after the restart is handled too
    let after = h.launch(ACME, P5_AZ4, 1, 0).await;

    let events = h
        .wait_state(ACME, &job.job_id, "running", Duration::from_secs(120))
        .await;
    assert_eq!(states(&events), "queued preflight provisioning running");
    assert_eq!(h.instances_of(&job.job_id).await.len(), 1);
    h.wait_state(ACME, &after.job_id, "running", LIMIT).await;
    assert_eq!(h.instances_of(&after.job_id).await.len(), 1);
    eventually(LIMIT, "both jobs acknowledged", || async {
        (h.queue_depth(&h.config.amqp.launch.jobs_queue).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        h.queue_depth(&h.config.amqp.launch.dead_letter_queue).await,
        0
    );

    h.stop_launcher().await;
    h.sandbox.cleanup().await;
    // before the sandbox (and the node's directories in it) goes
    rabbit.stop().await;
}
