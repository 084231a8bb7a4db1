//! Crash safety of the real `capsight-launcher` binary: `kill -9` at every state, then a restart
//! completes the job with exactly one instance; and a restart of a (private) RabbitMQ broker in
//! the middle of a job loses nothing. Needs `cargo build -p capsight-launcher --bins`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

mod common;

use std::{
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use capsight_proto::domain::LaunchState;
use common::{ACME, Harness};

const LIMIT: Duration = Duration::from_secs(90);

async fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    common::eventually(limit, "the launcher process to exit", || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await
}

fn states(events: &[capsight_clickhouse::rows::LaunchEventRow]) -> Vec<&str> {
    events.iter().map(|e| e.state.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_at_every_state_then_restart_completes_with_exactly_one_instance() {
    let h = Harness::start("60s").await;
    let config = h.write_config("");
    for (step, recorded) in [
        ("preflight", "preflight"),
        ("provisioning", "provisioning"),
        ("launched", "provisioning"),
        ("running", "running"),
    ] {
        let job = h.job(ACME, "aws/us-east-1/use1-az4/p5.48xlarge/on_demand", 1, 0);
        h.submit(&job).await;
        let mut doomed = h.spawn_binary(
            &config,
            &[("CAPSIGHT_LAUNCHER__CRASH_AFTER", step)],
            &format!("crash-{step}.log"),
        );
        let status = wait_exit(&mut doomed, LIMIT).await;
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

        let mut worker = h.spawn_binary(&config, &[], &format!("restart-{step}.log"));
        let events = h.wait_state(ACME, &job.job_id, "running", LIMIT).await;
        assert_eq!(
            states(&events),
            vec!["queued", "preflight", "provisioning", "running"],
            "{step}"
        );
        let instances = h.instances_of(&job.job_id).await;
        assert_eq!(instances.len(), 1, "{step}: {instances:?}");
        assert_eq!(events[3].instance_id, instances[0].id.as_str(), "{step}");
        common::eventually(LIMIT, "the job acknowledged", || async {
            (h.queue_depth(&h.config.amqp.launch.jobs_queue).await == 0).then_some(())
        })
        .await;
        worker.kill().unwrap();
        worker.wait().unwrap();
    }
    assert_eq!(
        h.queue_depth(&h.config.amqp.launch.dead_letter_queue).await,
        0
    );
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_loop_is_dead_lettered_by_the_delivery_limit_and_replays_to_one_instance() {
    let h = Harness::start("60s").await;
    let config = h.write_config("");
    let t = h.config.amqp.launch.clone();
    let job = h.job(ACME, "aws/us-east-1/use1-az4/p5.48xlarge/on_demand", 1, 0);
    h.submit(&job).await;
    // every worker dies right after the cloud answered: the job can never be acked
    let mut runs = 0;
    while h.queue_depth(&t.dead_letter_queue).await == 0 {
        assert!(runs < 10, "not dead-lettered after {runs} crashing workers");
        let mut doomed = h.spawn_binary(
            &config,
            &[("CAPSIGHT_LAUNCHER__CRASH_AFTER", "launched")],
            &format!("loop-{runs}.log"),
        );
        let status = wait_exit(&mut doomed, LIMIT).await;
        assert_eq!(status.signal(), Some(9), "run {runs}: {status:?}");
        runs += 1;
        // the broker has requeued or dead-lettered it before the next worker starts
        common::eventually(LIMIT, "the job back in a queue", || async {
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
    let mut worker = h.spawn_binary(&config, &[], "replay.log");
    let events = h.wait_state(ACME, &job.job_id, "running", LIMIT).await;
    assert_eq!(
        states(&events),
        vec!["queued", "preflight", "provisioning", "running"]
    );
    assert_eq!(h.instances_of(&job.job_id).await.len(), 1);
    worker.kill().unwrap();
    worker.wait().unwrap();
    h.cleanup().await;
}

/// A private RabbitMQ node (own name, ports and directories), never the shared one.
struct Rabbit {
    env: Vec<(String, String)>,
    node: String,
    child: Option<Child>,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rabbit_bin(name: &str) -> PathBuf {
    let p = Path::new("/usr/lib/rabbitmq/bin").join(name);
    if p.exists() { p } else { PathBuf::from(name) }
}

impl Rabbit {
    fn new(dir: &Path) -> Self {
        let port = free_port();
        let dist = free_port();
        let base = dir.join("rabbitmq");
        for d in ["home", "mnesia", "log", "etc"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("etc/enabled_plugins"), "[].\n").unwrap();
        std::fs::write(base.join("etc/rabbitmq-env.conf"), "").unwrap();
        let conf =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local/rabbitmq/rabbitmq.conf");
        let node = format!("capsight-launcher-test-{port}@localhost");
        let b = |p: &str| base.join(p).display().to_string();
        let env = vec![
            ("HOME".to_owned(), b("home")),
            ("LC_ALL".to_owned(), "C.UTF-8".to_owned()),
            ("RABBITMQ_NODENAME".to_owned(), node.clone()),
            (
                "RABBITMQ_NODE_IP_ADDRESS".to_owned(),
                "127.0.0.1".to_owned(),
            ),
            ("RABBITMQ_NODE_PORT".to_owned(), port.to_string()),
            ("RABBITMQ_DIST_PORT".to_owned(), dist.to_string()),
            ("RABBITMQ_MNESIA_BASE".to_owned(), b("mnesia")),
            ("RABBITMQ_LOG_BASE".to_owned(), b("log")),
            ("RABBITMQ_PID_FILE".to_owned(), b("beam.pid")),
            (
                "RABBITMQ_CONFIG_FILE".to_owned(),
                conf.display().to_string(),
            ),
            (
                "RABBITMQ_ADVANCED_CONFIG_FILE".to_owned(),
                b("etc/advanced.config"),
            ),
            (
                "RABBITMQ_CONF_ENV_FILE".to_owned(),
                b("etc/rabbitmq-env.conf"),
            ),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE".to_owned(),
                b("etc/enabled_plugins"),
            ),
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS".to_owned(),
                "-kernel inet_dist_use_interface {127,0,0,1}".to_owned(),
            ),
            ("ERL_EPMD_ADDRESS".to_owned(), "127.0.0.1".to_owned()),
        ];
        Self {
            env,
            node,
            child: None,
            port,
        }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    async fn start(&mut self) {
        let child = Command::new(rabbit_bin("rabbitmq-server"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = self.url();
        common::eventually(Duration::from_secs(120), "private RabbitMQ up", || {
            let url = url.clone();
            async move {
                lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
                    .await
                    .ok()
                    .map(|_| ())
            }
        })
        .await;
    }

    async fn stop(&mut self) {
        let status = Command::new(rabbit_bin("rabbitmqctl"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "rabbitmqctl stop: {status:?}");
        if let Some(mut child) = self.child.take() {
            wait_exit(&mut child, Duration::from_secs(60)).await;
        }
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new(rabbit_bin("rabbitmqctl"))
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .args(["-n", &self.node, "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rabbitmq_restart_mid_job_loses_nothing() {
    // use1-az6 instances take 30 simulated minutes = 30 s to run
    let mut h = Harness::start("30m").await;
    let mut rabbit = Rabbit::new(&h.dir);
    rabbit.start().await;
    h.config.amqp.url = rabbit.url().into();
    let (stop, task) = h.spawn_launcher();

    let job = h.job(ACME, "aws/us-east-1/use1-az6/p5.48xlarge/on_demand", 1, 0);
    h.submit(&job).await;
    h.wait_state(ACME, &job.job_id, "provisioning", LIMIT).await;
    common::eventually(LIMIT, "the instance launched", || async {
        (h.instances_of(&job.job_id).await.len() == 1).then_some(())
    })
    .await;

    rabbit.stop().await;
    rabbit.start().await;
    // a job published after the restart is handled too
    let after = h.job(ACME, "aws/us-east-1/use1-az4/p5.48xlarge/on_demand", 1, 0);
    h.submit(&after).await;

    let events = h
        .wait_state(ACME, &job.job_id, "running", Duration::from_secs(120))
        .await;
    assert_eq!(
        states(&events),
        vec!["queued", "preflight", "provisioning", "running"]
    );
    assert_eq!(h.instances_of(&job.job_id).await.len(), 1);
    h.wait_state(ACME, &after.job_id, "running", LIMIT).await;
    assert_eq!(h.instances_of(&after.job_id).await.len(), 1);
    common::eventually(LIMIT, "both jobs acknowledged", || async {
        (h.queue_depth(&h.config.amqp.launch.jobs_queue).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        h.queue_depth(&h.config.amqp.launch.dead_letter_queue).await,
        0
    );

    stop.trigger();
    task.await.unwrap();
    h.cleanup().await;
    rabbit.stop().await;
}
