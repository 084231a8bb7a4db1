//! A private RabbitMQ node for tests that stop and restart the broker: its own node name,
//! ports and directories (the local stack's `rabbitmq.conf`), never the shared node.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crate::{
    fixtures,
    process::{ChildGuard, free_port},
    wait::eventually,
};

/// A RabbitMQ node of this test only; stopped on drop.
#[derive(Debug)]
pub struct PrivateRabbit {
    env: Vec<(String, String)>,
    /// Its state directory, also its working directory (crash dumps land there).
    base: PathBuf,
    node: String,
    child: Option<ChildGuard>,
    port: u16,
}

fn rabbit_bin(name: &str) -> PathBuf {
    let p = Path::new("/usr/lib/rabbitmq/bin").join(name);
    if p.exists() { p } else { PathBuf::from(name) }
}

impl PrivateRabbit {
    /// A node on free ports with its state under `dir` (not started yet).
    pub fn new(dir: &Path) -> Self {
        let port = free_port();
        let dist = free_port();
        let base = dir.join("rabbitmq");
        for d in ["home", "mnesia", "log", "etc"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("etc/enabled_plugins"), "[].\n").unwrap();
        std::fs::write(base.join("etc/rabbitmq-env.conf"), "").unwrap();
        let conf = fixtures::repo().join("deploy/local/rabbitmq/rabbitmq.conf");
        let node = format!("capsight-test-{port}@localhost");
        let b = |p: &str| base.join(p).display().to_string();
        let env = [
            ("HOME", b("home")),
            ("LC_ALL", "C.UTF-8".to_owned()),
            ("RABBITMQ_NODENAME", node.clone()),
            ("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1".to_owned()),
            ("RABBITMQ_NODE_PORT", port.to_string()),
            ("RABBITMQ_DIST_PORT", dist.to_string()),
            ("RABBITMQ_MNESIA_BASE", b("mnesia")),
            ("RABBITMQ_LOG_BASE", b("log")),
            ("RABBITMQ_PID_FILE", b("beam.pid")),
            ("RABBITMQ_CONFIG_FILE", conf.display().to_string()),
            ("RABBITMQ_ADVANCED_CONFIG_FILE", b("etc/advanced.config")),
            ("RABBITMQ_CONF_ENV_FILE", b("etc/rabbitmq-env.conf")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", b("etc/enabled_plugins")),
            (
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}".to_owned(),
            ),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".to_owned()),
            ("ERL_CRASH_DUMP", b("erl_crash.dump")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Self {
            env,
            base,
            node,
            child: None,
            port,
        }
    }

    /// Its AMQP URL.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts the node and waits (up to 2 min) until it accepts connections.
    pub async fn start(&mut self) {
        self.child = Some(ChildGuard::spawn(
            "private rabbitmq-server",
            Command::new(rabbit_bin("rabbitmq-server"))
                .current_dir(&self.base)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        ));
        let url = self.url();
        eventually(Duration::from_secs(120), "private RabbitMQ up", || {
            let url = url.clone();
            async move {
                lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
                    .await
                    .map(|_| ())
            }
        })
        .await;
    }

    /// `rabbitmqctl stop`, given at most 60 s (`timeout(1)`): a node that cannot be reached
    /// must fail the test, not hang it.
    fn ctl_stop(&self) -> std::io::Result<std::process::ExitStatus> {
        Command::new("timeout")
            .arg("60")
            .arg(rabbit_bin("rabbitmqctl"))
            .current_dir(&self.base)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    }

    /// Stops the node cleanly (`rabbitmqctl stop`) and waits up to 60 s for its exit.
    pub async fn stop(&mut self) {
        let status = self.ctl_stop().unwrap();
        assert!(status.success(), "rabbitmqctl stop: {status:?}");
        if let Some(mut child) = self.child.take() {
            child.exited(Duration::from_secs(60)).await;
        }
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        if self.child.is_some() && !self.ctl_stop().is_ok_and(|s| s.success()) {
            // `rabbitmq-server` runs the node as a child of its own, which killing the script
            // leaves running: kill the node by its home directory (unique to this test)
            let _ = Command::new("pkill")
                .args(["-KILL", "-f"])
                .arg(self.base.join("home"))
                .status();
        }
    }
}
