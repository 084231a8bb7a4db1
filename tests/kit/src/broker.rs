//! A private Kafka-protocol broker for tests that break the broker.
//!
//! [`PrivateBroker`] runs its own tansu process (the version `deploy/local/stack install`
//! installs) on free ports with its own data directory, so a test may pause it (`SIGSTOP`),
//! resume it, or kill it without disturbing the shared stack. Started with
//! [`PrivateBroker::start_behind_proxy`], it advertises a [`KafkaProxy`] as its address: every
//! client connection goes through the proxy, which reads each request's API key and can run an
//! action just before forwarding a chosen request — e.g. pause the broker the moment a consumer
//! commits its offsets.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::process::{ChildGuard, free_port, send_signal, unique};

/// Kafka API keys the tests act on.
pub mod api {
    /// `OffsetCommit`.
    pub const OFFSET_COMMIT: i16 = 8;
    /// `Heartbeat`.
    pub const HEARTBEAT: i16 = 12;
    /// `JoinGroup`.
    pub const JOIN_GROUP: i16 = 11;
}

/// The tansu binary: `CAPSIGHT_TANSU`, else `tansu` on the PATH, else `$CARGO_HOME/bin/tansu`.
pub fn tansu() -> PathBuf {
    if let Ok(p) = std::env::var("CAPSIGHT_TANSU") {
        return PathBuf::from(p);
    }
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let candidates = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| PathBuf::from(d).join("tansu"))
        .chain([home.join("bin/tansu")])
        .collect::<Vec<_>>();
    candidates
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("tansu missing: run deploy/local/stack install"))
}

/// A tansu broker of this test only; killed (and its data deleted) on drop.
#[derive(Debug)]
pub struct PrivateBroker {
    process: Option<ChildGuard>,
    dir: PathBuf,
    listen_port: u16,
    advertised: SocketAddr,
    proxy: Option<KafkaProxy>,
}

impl PrivateBroker {
    /// A broker clients reach directly, on a free port.
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    /// A broker clients reach directly on `port` (e.g. one a client was pointed at before the
    /// broker existed).
    pub async fn start_on(port: u16) -> Self {
        let mut b = Self {
            process: None,
            dir: std::env::temp_dir().join(unique("capsight-tansu")),
            listen_port: port,
            advertised: ([127, 0, 0, 1], port).into(),
            proxy: None,
        };
        b.restart().await;
        b
    }

    /// A broker listening on `port` that advertises `advertised` as its address (something in
    /// front of it that forwards to `port`, e.g. a [`crate::tls::TlsForwarder`]).
    pub async fn start_advertising(port: u16, advertised: SocketAddr) -> Self {
        let mut b = Self {
            process: None,
            dir: std::env::temp_dir().join(unique("capsight-tansu")),
            listen_port: port,
            advertised,
            proxy: None,
        };
        b.restart().await;
        b
    }

    /// A broker that advertises a [`KafkaProxy`] in front of it as its address.
    pub async fn start_behind_proxy() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let advertised = listener.local_addr().unwrap();
        let port = free_port();
        let mut b = Self {
            process: None,
            dir: std::env::temp_dir().join(unique("capsight-tansu")),
            listen_port: port,
            advertised,
            proxy: Some(KafkaProxy::serve(listener, ([127, 0, 0, 1], port).into())),
        };
        b.restart().await;
        b
    }

    /// Starts the broker (again) on the same ports and data directory, and waits until it
    /// listens.
    pub async fn restart(&mut self) {
        self.kill9();
        std::fs::create_dir_all(&self.dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .unwrap();
        self.process = Some(ChildGuard::spawn(
            "tansu",
            Command::new(tansu())
                .args([
                    "broker",
                    "--listener-url",
                    &format!("tcp://127.0.0.1:{}", self.listen_port),
                    "--advertised-listener-url",
                    &format!("tcp://{}", self.advertised),
                    "--storage-engine",
                    "sqlite://tansu.db",
                ])
                .current_dir(&self.dir)
                .env("RUST_LOG", "warn")
                .env_remove("CLUSTER_ID")
                .env_remove("STORAGE_ENGINE")
                .stdout(Stdio::null())
                .stderr(log),
        ));
        self.wait_listening().await;
    }

    /// `kill -9`: no clean shutdown; the data directory stays for [`PrivateBroker::restart`].
    pub fn kill9(&mut self) {
        if let Some(p) = self.process.take() {
            p.kill();
        }
    }

    async fn wait_listening(&self) {
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", self.listen_port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "private tansu did not listen on {} within 10 s (log: {})",
            self.listen_port,
            self.dir.join("tansu.log").display()
        );
    }

    /// `bootstrap.servers` for clients.
    pub fn brokers(&self) -> String {
        self.advertised.to_string()
    }

    /// The broker's process id (0 after [`PrivateBroker::kill9`]).
    pub fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, ChildGuard::id)
    }

    /// Freezes the broker (`SIGSTOP`): connections stay open, nothing is answered.
    pub fn pause(&self) {
        send_signal(self.pid(), "STOP");
    }

    /// Thaws a paused broker (`SIGCONT`).
    pub fn resume(&self) {
        send_signal(self.pid(), "CONT");
    }

    /// The proxy in front of the broker (brokers started with
    /// [`PrivateBroker::start_behind_proxy`]).
    pub fn proxy(&self) -> &KafkaProxy {
        self.proxy
            .as_ref()
            .unwrap_or_else(|| panic!("this broker was started without a proxy"))
    }

    /// Arms a pause: the next request with `api_key` (from any client) freezes the broker just
    /// before it is forwarded. The returned future resolves once that happened.
    pub fn pause_on_next(&self, api_key: i16) -> impl Future<Output = ()> + Send + 'static {
        let pid = self.pid();
        let done = Arc::new(tokio::sync::Notify::new());
        let signal = Arc::clone(&done);
        self.proxy().on_next(
            api_key,
            Box::new(move || {
                send_signal(pid, "STOP");
                // stores a permit when nobody waits yet
                signal.notify_one();
            }),
        );
        async move { done.notified().await }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        // a stopped (SIGSTOP) process still dies of SIGKILL
        self.kill9();
        if let Some(p) = &self.proxy {
            p.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type Action = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct ProxyState {
    armed: Vec<(i16, Action)>,
    seen: BTreeMap<i16, u64>,
}

/// A TCP proxy in front of a broker that reads the API key of every request (see the module
/// contract).
#[derive(Clone)]
pub struct KafkaProxy {
    state: Arc<Mutex<ProxyState>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for KafkaProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaProxy").finish_non_exhaustive()
    }
}

impl KafkaProxy {
    fn serve(listener: TcpListener, upstream: SocketAddr) -> Self {
        let state: Arc<Mutex<ProxyState>> = Arc::default();
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut cr, cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let mut cw = cw;
                    let back = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                        let _ = cw.shutdown().await;
                    });
                    // client -> broker, one request frame at a time
                    loop {
                        let mut len = [0u8; 4];
                        if cr.read_exact(&mut len).await.is_err() {
                            break;
                        }
                        let n = i32::from_be_bytes(len).max(0) as usize;
                        let mut frame = vec![0u8; n];
                        if cr.read_exact(&mut frame).await.is_err() {
                            break;
                        }
                        if frame.len() >= 2 {
                            let key = i16::from_be_bytes([frame[0], frame[1]]);
                            let actions = {
                                let mut s = state.lock().unwrap();
                                *s.seen.entry(key).or_default() += 1;
                                let (now, later): (Vec<_>, Vec<_>) =
                                    s.armed.drain(..).partition(|(k, _)| *k == key);
                                s.armed = later;
                                now
                            };
                            for (_, action) in actions {
                                action();
                            }
                        }
                        if sw.write_all(&len).await.is_err() || sw.write_all(&frame).await.is_err()
                        {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                    back.abort();
                });
            }
        });
        Self {
            state,
            task: Arc::new(task),
        }
    }

    /// Runs `action` just before the next request with `api_key` is forwarded.
    pub fn on_next(&self, api_key: i16, action: Box<dyn FnOnce() + Send>) {
        self.state.lock().unwrap().armed.push((api_key, action));
    }

    /// How many requests with `api_key` went through.
    pub fn seen(&self, api_key: i16) -> u64 {
        self.state
            .lock()
            .unwrap()
            .seen
            .get(&api_key)
            .copied()
            .unwrap_or(0)
    }

    fn stop(&self) {
        self.task.abort();
    }
}
