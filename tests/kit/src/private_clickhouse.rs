//! A private ClickHouse server for tests that stop and restart ClickHouse: its own ports and
//! directories (the local stack's `config.xml` and `users.xml` templates), never the shared
//! server.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use capsight_clickhouse::ClickHouseSettings;

use crate::{
    fixtures,
    process::{ChildGuard, free_port},
    wait::eventually,
};

/// A ClickHouse server of this test only; killed on drop, its data kept between restarts.
#[derive(Debug)]
pub struct PrivateClickHouse {
    dir: PathBuf,
    http_port: u16,
    child: Option<ChildGuard>,
}

fn render(template: &Path, to: &Path, vars: &[(&str, String)]) {
    let mut text = std::fs::read_to_string(template).unwrap();
    for (k, v) in vars {
        text = text.replace(k, v);
    }
    std::fs::write(to, text).unwrap();
}

impl PrivateClickHouse {
    /// A server on free ports with its state under `dir/clickhouse` (not started yet).
    pub fn new(dir: &Path) -> Self {
        let base = dir.join("clickhouse");
        for d in ["etc", "data", "tmp", "user_files", "format_schemas", "log"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        let http_port = free_port();
        let tcp_port = free_port();
        let b = |p: &str| base.join(p).display().to_string();
        let vars = [
            ("@HTTP_PORT@", http_port.to_string()),
            ("@TCP_PORT@", tcp_port.to_string()),
            ("@DATA_DIR@", b("data")),
            ("@TMP_DIR@", b("tmp")),
            ("@USER_FILES_DIR@", b("user_files")),
            ("@FORMAT_SCHEMAS_DIR@", b("format_schemas")),
            ("@LOG_DIR@", b("log")),
        ];
        let templates = fixtures::repo().join("deploy/local/clickhouse");
        for f in ["config.xml", "users.xml"] {
            render(&templates.join(f), &base.join("etc").join(f), &vars);
        }
        Self {
            dir: base,
            http_port,
            child: None,
        }
    }

    /// Its HTTP URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// `settings` pointed at this server.
    pub fn settings(&self, settings: &ClickHouseSettings) -> ClickHouseSettings {
        ClickHouseSettings {
            url: self.url(),
            ..settings.clone()
        }
    }

    /// Starts the server and waits (up to 2 min) until it answers.
    pub async fn start(&mut self) {
        let server = ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("clickhouse-server"));
        self.child = Some(ChildGuard::spawn(
            "private clickhouse-server",
            Command::new(server)
                .current_dir(&self.dir)
                .arg(format!(
                    "--config-file={}",
                    self.dir.join("etc/config.xml").display()
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        ));
        let ping = format!("{}/ping", self.url());
        eventually(Duration::from_secs(120), "private ClickHouse up", || {
            let ping = ping.clone();
            async move {
                let out = Command::new("curl")
                    .args(["-sf", "--max-time", "2", &ping])
                    .output()
                    .ok()?;
                out.status.success().then_some(())
            }
        })
        .await;
    }

    /// Freezes the server (`SIGSTOP`): connections open, nothing answered (a hung server).
    pub fn pause(&self) {
        if let Some(child) = &self.child {
            child.signal("STOP");
        }
    }

    /// Unfreezes a paused server.
    pub fn resume(&self) {
        if let Some(child) = &self.child {
            child.signal("CONT");
        }
    }

    /// Stops the server (`SIGKILL`, as a crash or an unplugged host) and waits for its exit.
    pub async fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            child.kill();
        }
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            child.kill();
        }
    }
}
