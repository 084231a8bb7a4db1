//! One test's isolated corner of the shared local stack.
//!
//! [`Sandbox::builder`] names everything a service touches after the test — signals, scores and
//! dead-letter topics, a ClickHouse database, the RabbitMQ launch topology, consumer groups, a
//! tenant registry, a temporary directory — and [`Builder::start`] creates what the test asked
//! for: topics, a migrated database, the registry, a cloudsim. Names are unique per test run,
//! so tests run in parallel against one stack.
//!
//! The sandbox writes one config file (`sandbox.toml` in its directory): its names plus the
//! config fragments of `tests/fixtures/config/` the test chose ([`Builder::profile`]). Every
//! service reads it the same way: in-process through [`Sandbox::config`], as a binary through
//! [`Sandbox::command`] (`CAPSIGHT_CONFIG`). The stack's addresses still come from the
//! environment (`deploy/local/stack env`).
//!
//! [`Sandbox::cleanup`] drops the database and deletes the launch topology; dropping the
//! sandbox stops its cloudsim and removes its directory — unless the test failed, when the
//! directory (logs, registry, config) is kept and named on stderr.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, OnceLock},
    time::Duration,
};

use capsight_amqp::AmqpSettings;
use capsight_clickhouse::ClickHouseSettings;
use capsight_cloud::{CloudAdapter, CloudSettings, tenants::AwsClouds};
use capsight_kafka::{KafkaSettings, TopicSpec};
use capsight_proto::domain::{Score, Signal};
use rdkafka::producer::FutureProducer;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

use crate::{
    cloud::{Sim, SimBuilder},
    fixtures,
    kafka::{self, Record},
    process::ChildGuard,
    tenants::{TenantSpec, Tenants},
};

/// What a sandbox holds, before it is created.
#[derive(Debug)]
#[must_use = "a sandbox is created by start()"]
pub struct Builder {
    prefix: String,
    signals: Option<i32>,
    scores: Option<i32>,
    dlq: bool,
    database: bool,
    amqp: bool,
    brokers: Option<String>,
    profiles: Vec<String>,
    tenants: Vec<TenantSpec>,
    sim: Option<SimBuilder>,
}

impl Builder {
    /// A signals topic with `partitions` partitions.
    pub fn signals(mut self, partitions: i32) -> Self {
        self.signals = Some(partitions);
        self
    }

    /// A compacted scores topic with `partitions` partitions.
    pub fn scores(mut self, partitions: i32) -> Self {
        self.scores = Some(partitions);
        self
    }

    /// A dead-letter topic for signals.
    pub fn dlq(mut self) -> Self {
        self.dlq = true;
        self
    }

    /// All three topics, signals and scores with `partitions` partitions each.
    pub fn topics(self, partitions: i32) -> Self {
        self.signals(partitions).scores(partitions).dlq()
    }

    /// A ClickHouse database with every migration applied.
    pub fn database(mut self) -> Self {
        self.database = true;
        self
    }

    /// The test uses the RabbitMQ launch topology (declared by the services; deleted by
    /// [`Sandbox::cleanup`]).
    pub fn amqp(mut self) -> Self {
        self.amqp = true;
        self
    }

    /// Kafka clients go to `brokers` (a private broker) instead of the shared one.
    pub fn brokers(mut self, brokers: &str) -> Self {
        self.brokers = Some(brokers.to_owned());
        self
    }

    /// Layers `tests/fixtures/config/<name>.toml` (e.g. `launcher`: its test timings) into the
    /// sandbox's config.
    pub fn profile(mut self, name: &str) -> Self {
        self.profiles.push(name.to_owned());
        self
    }

    /// A tenant registry with `tenants` ([`Sandbox::tenants`]).
    pub fn tenants(mut self, tenants: impl IntoIterator<Item = TenantSpec>) -> Self {
        self.tenants.extend(tenants);
        self
    }

    /// A cloudsim of the test ([`Sandbox::sim`]).
    pub fn cloudsim(mut self, sim: SimBuilder) -> Self {
        self.sim = Some(sim);
        self
    }

    /// A cloudsim started from the scenario file `tests/fixtures/scenarios/<name>.toml`.
    pub fn scenario(self, name: &str) -> Self {
        self.cloudsim(Sim::builder(fixtures::scenario(name)))
    }

    /// Creates it all.
    pub async fn start(mut self) -> Sandbox {
        crate::process::watchdog();
        // services started in-process build TLS configs from the process provider, as binaries do
        capsight_runtime::tls::install_crypto_provider();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("{}_{}", self.prefix, &id[..12]);
        let sim = self.sim.take();
        let mut sandbox = Sandbox::create(self, name, None).await;
        if let Some(sim) = sim {
            sandbox.sim = Some(sim.start().await);
        }
        sandbox
    }
}

/// How long the sandbox's producer holds a record for the broker.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// The stack's sections a sandbox renames (addresses from the environment).
#[derive(serde::Deserialize)]
struct Stack {
    kafka: KafkaSettings,
    clickhouse: ClickHouseSettings,
    amqp: AmqpSettings,
}

#[derive(serde::Deserialize)]
struct CloudSection {
    cloud: CloudSettings,
}

/// One test's topics, database, RabbitMQ names, registry, cloudsim and config (see the module
/// contract).
pub struct Sandbox {
    /// Unique name of the sandbox (`<prefix>_<12 hex>`), part of every name in it.
    pub name: String,
    /// Kafka settings with the sandbox's topics.
    pub kafka: KafkaSettings,
    /// ClickHouse settings with the sandbox's database.
    pub clickhouse: ClickHouseSettings,
    /// RabbitMQ settings with the sandbox's launch topology.
    pub amqp: AmqpSettings,
    /// Consumer group of a scorer in the sandbox.
    pub group: String,
    /// Its directory (config, registry, logs).
    pub dir: PathBuf,
    /// The tenant registry, when the test asked for tenants.
    pub tenants: Option<Tenants>,
    spec: Builder,
    config: PathBuf,
    sim: Option<Sim>,
    producer: OnceLock<FutureProducer>,
}

impl Sandbox {
    /// A sandbox for the test `prefix` (letters, digits and `_`), with nothing created yet.
    pub fn builder(prefix: &str) -> Builder {
        assert!(
            prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "sandbox prefix {prefix:?}: lowercase letters, digits and _"
        );
        Builder {
            prefix: prefix.to_owned(),
            signals: None,
            scores: None,
            dlq: false,
            database: false,
            amqp: false,
            brokers: None,
            profiles: Vec::new(),
            tenants: Vec::new(),
            sim: None,
        }
    }

    /// A sandbox for a scoring test: one-partition topics, a database and the scorer's
    /// test timings (`profile("scorer")`).
    pub fn scoring(prefix: &str) -> Builder {
        Self::builder(prefix).topics(1).database().profile("scorer")
    }

    async fn create(spec: Builder, name: String, shared_signals: Option<(String, i32)>) -> Self {
        let stack: Stack = capsight_runtime::config::load(None).unwrap();
        let dir = std::env::temp_dir().join(format!("capsight-{name}"));
        std::fs::create_dir_all(&dir).unwrap();

        let mut kafka = stack.kafka;
        if let Some(b) = &spec.brokers {
            b.clone_into(&mut kafka.brokers);
        }
        let t = &mut kafka.topics;
        t.signals = format!("test.{name}.signals");
        t.scores = format!("test.{name}.scores");
        t.signals_dlq = format!("test.{name}.dlq");
        t.signals_partitions = spec.signals.unwrap_or(1);
        if let Some((topic, partitions)) = shared_signals {
            t.signals = topic;
            t.signals_partitions = partitions;
        }
        t.scores_partitions = spec.scores.unwrap_or(1);
        let clickhouse = stack.clickhouse.with_database(&format!("test_{name}"));
        let mut amqp = stack.amqp;
        amqp.launch = amqp.launch.prefixed(&format!("test.{name}"));
        let group = format!("test-{name}");
        let tenants = (!spec.tenants.is_empty())
            .then(|| Tenants::write(dir.join("tenants.toml"), spec.tenants.clone()));

        let config = dir.join("sandbox.toml");
        let mut table = names(&kafka, &clickhouse, &amqp, &group, tenants.as_ref());
        for p in &spec.profiles {
            merge(&mut table, fixtures::config(p));
        }
        std::fs::write(&config, toml::to_string(&table).unwrap()).unwrap();

        let t = &kafka.topics;
        let mut specs = Vec::new();
        if spec.signals.is_some() {
            specs.push(TopicSpec::plain(t.signals.clone(), t.signals_partitions));
        }
        if spec.scores.is_some() {
            specs.push(kafka::compacted(&t.scores, t.scores_partitions));
        }
        if spec.dlq {
            specs.push(TopicSpec::plain(t.signals_dlq.clone(), 1));
        }
        if spec.brokers.is_some() && !specs.is_empty() {
            // a private broker that was just started
            kafka::wait_for_broker(&kafka, Duration::from_secs(30)).await;
        }
        kafka::ensure_topics(&kafka, &specs).await;
        if spec.database {
            capsight_clickhouse::migrate::apply(&clickhouse)
                .await
                .expect(
                    "ClickHouse reachable at CAPSIGHT_CLICKHOUSE__URL (run deploy/local/stack up)",
                );
        }
        Self {
            name,
            kafka,
            clickhouse,
            amqp,
            group,
            dir,
            tenants,
            spec,
            config,
            sim: None,
            producer: OnceLock::new(),
        }
    }

    /// A second deployment next to this one: it reads the same signals topic, with its own
    /// scores and dead-letter topics, consumer group, database and directory (created like
    /// this sandbox's).
    pub async fn twin(&self, suffix: &str) -> Self {
        let spec = Builder {
            prefix: String::new(),
            signals: None,
            scores: self.spec.scores,
            dlq: self.spec.dlq,
            database: self.spec.database,
            amqp: false,
            brokers: self.spec.brokers.clone(),
            profiles: self.spec.profiles.clone(),
            tenants: Vec::new(),
            sim: None,
        };
        let t = &self.kafka.topics;
        Self::create(
            spec,
            format!("{}_{suffix}", self.name),
            Some((t.signals.clone(), t.signals_partitions)),
        )
        .await
    }

    /// Loads a service's config `T` as its binary would with [`Sandbox::config_file`]:
    /// defaults < the sandbox's file < `CAPSIGHT_*` environment. (With a private broker set
    /// `kafka.brokers` from [`Sandbox::kafka`]: the environment names the shared one.)
    pub fn config<T: DeserializeOwned>(&self) -> T {
        capsight_runtime::config::load(Some(&self.config))
            .unwrap_or_else(|e| panic!("{}: {e}", self.config.display()))
    }

    /// The sandbox's config file.
    pub fn config_file(&self) -> &Path {
        &self.config
    }

    /// `exe` configured for this sandbox (`CAPSIGHT_CONFIG`, and the private broker's address
    /// when there is one); the test adds its own variables and standard streams.
    pub fn command(&self, exe: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new(exe.as_ref());
        cmd.env("CAPSIGHT_CONFIG", &self.config)
            .env("RUST_LOG", "info");
        if let Some(b) = &self.spec.brokers {
            cmd.env("CAPSIGHT_KAFKA__BROKERS", b);
        }
        cmd
    }

    /// A collector binary's `--once` pass with the sandbox's settings ([`Self::command`]) and
    /// one attempt per cloud call (no retries).
    pub fn once(&self, exe: impl AsRef<Path>) -> Command {
        let mut cmd = self.command(exe);
        cmd.arg("--once").env("CAPSIGHT_CLOUD__MAX_ATTEMPTS", "1");
        cmd
    }

    /// Spawns `cmd` guarded, its standard error in `<dir>/<log>.log`.
    pub fn spawn(&self, log: &str, cmd: &mut Command) -> ChildGuard {
        ChildGuard::spawn_logged(log, cmd, &self.dir.join(format!("{log}.log")))
    }

    /// The scorer binary's command (`capsight-scorer`) with its health endpoint on `health`, a
    /// loopback port (`None`: a free one); add settings, then [`Self::spawn`] it.
    pub fn scorer_command(&self, health: Option<u16>) -> Command {
        let port = health.unwrap_or_else(crate::process::free_port);
        let mut cmd = self.command(crate::process::bin("capsight-scorer"));
        cmd.env(
            "CAPSIGHT_SCORER__HEALTH_LISTEN",
            format!("127.0.0.1:{port}"),
        );
        cmd
    }

    /// The scorer binary with the sandbox's settings (see [`Self::scorer_command`]).
    pub fn spawn_scorer(&self) -> ChildGuard {
        self.spawn("capsight-scorer", &mut self.scorer_command(None))
    }

    /// The GPU-clouds collector binary (`capsight-gpuclouds`) with the provider settings `env`,
    /// polling every second with one attempt per call.
    pub fn spawn_gpuclouds(&self, env: [(&str, String); 2]) -> ChildGuard {
        self.spawn(
            "capsight-gpuclouds",
            self.command(crate::process::bin("capsight-gpuclouds"))
                .envs(env)
                .env("CAPSIGHT_GPUCLOUDS__INTERVAL", "1s")
                .env("CAPSIGHT_CLOUD__MAX_ATTEMPTS", "1"),
        )
    }

    /// The reports intake binary (`capsight-reports`) on a free loopback port: its guard and
    /// its `host:port`.
    pub fn spawn_intake(&self) -> (ChildGuard, String) {
        let addr = format!("127.0.0.1:{}", crate::process::free_port());
        let guard = self.spawn(
            "capsight-reports",
            self.command(crate::process::bin("capsight-reports"))
                .env("CAPSIGHT_REPORTS__LISTEN", &addr),
        );
        (guard, addr)
    }

    /// The tenant registry (panics when the test asked for none).
    pub fn registry(&self) -> &Tenants {
        self.tenants
            .as_ref()
            .unwrap_or_else(|| panic!("sandbox {} has no tenants", self.name))
    }

    /// The API key of `tenant`.
    pub fn key(&self, tenant: &str) -> String {
        self.registry().key(tenant)
    }

    /// The sandbox's cloudsim (panics when there is none).
    pub fn sim(&self) -> &Sim {
        self.sim
            .as_ref()
            .unwrap_or_else(|| panic!("sandbox {} has no cloudsim", self.name))
    }

    /// Starts a cloudsim for the sandbox now (when it needs the address of a service the test
    /// starts first).
    pub async fn start_cloudsim(&mut self, sim: SimBuilder) {
        self.sim = Some(sim.start().await);
    }

    /// Tenant clouds on the sandbox's cloudsim, with the sandbox's `[cloud]` settings.
    pub fn clouds(&self) -> Arc<AwsClouds> {
        self.sim().clouds(self.config::<CloudSection>().cloud)
    }

    /// The adapter acting as the registered tenant `tenant` in `us-east-1`.
    pub async fn tenant_adapter(&self, tenant: &str) -> Arc<dyn CloudAdapter> {
        crate::cloud::tenant_adapter(&*self.clouds(), &self.registry().tenant(tenant)).await
    }

    /// A client of the sandbox's database.
    pub fn client(&self) -> clickhouse::Client {
        self.clickhouse.client().unwrap()
    }

    /// Creates the compacted scores topic (for a test that starts without it).
    pub async fn create_scores_topic(&self, partitions: i32) {
        kafka::ensure_topics(
            &self.kafka,
            &[kafka::compacted(&self.kafka.topics.scores, partitions)],
        )
        .await;
    }

    fn producer(&self) -> &FutureProducer {
        self.producer
            .get_or_init(|| kafka::producer(&self.kafka, PRODUCE_TIMEOUT))
    }

    /// Publishes `signals` to the signals topic keyed like the collectors do; returns when all
    /// are acknowledged.
    pub async fn publish(&self, signals: &[Signal]) {
        kafka::send_signals(
            self.producer(),
            &self.kafka.topics.signals,
            signals,
            PRODUCE_TIMEOUT,
        )
        .await;
    }

    /// Publishes raw bytes to the signals topic.
    pub async fn publish_raw(&self, key: &str, payload: &[u8]) {
        let topic = &self.kafka.topics.signals;
        kafka::send(self.producer(), topic, key, payload, PRODUCE_TIMEOUT).await;
    }

    /// Publishes `score` to the scores topic under its key.
    pub async fn publish_score(&self, score: &Score) {
        let topic = &self.kafka.topics.scores;
        kafka::send_score(self.producer(), topic, score, PRODUCE_TIMEOUT).await;
    }

    /// Every record of `topic` from the beginning to its current end.
    pub async fn read_topic(&self, topic: &str) -> Vec<Record> {
        kafka::read_to_end(&self.kafka, topic).await
    }

    /// The last score per key on the scores topic.
    pub async fn latest_scores(&self) -> HashMap<String, Score> {
        kafka::latest_scores(&self.kafka, &self.kafka.topics.scores).await
    }

    /// Waits until `done(latest scores)` holds; panics with the scores after `timeout`.
    pub async fn wait_for_scores(
        &self,
        timeout: Duration,
        done: impl Fn(&HashMap<String, Score>) -> bool,
    ) -> HashMap<String, Score> {
        kafka::wait_for_scores(&self.kafka, &self.kafka.topics.scores, timeout, done).await
    }

    /// Waits until every key of `keys` has a score counting at least `signals` signals; panics
    /// with the scores after `timeout`.
    pub async fn wait_for_signal_counts(
        &self,
        timeout: Duration,
        keys: &[&str],
        signals: u64,
    ) -> HashMap<String, Score> {
        self.wait_for_scores(timeout, |s| {
            keys.iter()
                .all(|k| s.get(*k).is_some_and(|s| s.signal_count >= signals))
        })
        .await
    }

    /// The score of `key` once it counts at least `signals` signals; panics after `timeout`.
    pub async fn wait_for_score(&self, timeout: Duration, key: &str, signals: u64) -> Score {
        let scores = self.wait_for_signal_counts(timeout, &[key], signals).await;
        scores[key].clone()
    }

    /// Drops the database (when the sandbox made one) and deletes the launch topology (when
    /// the test used it). Topics are left to the broker's retention: they are cheap and
    /// unique.
    pub async fn cleanup(&self) {
        if self.spec.database {
            crate::clickhouse::drop_database(&self.clickhouse).await;
        }
        if self.spec.amqp {
            crate::amqp::delete_topology(&self.amqp).await;
        }
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.sim = None;
        if std::thread::panicking() {
            eprintln!(
                "sandbox {} kept for the failed test: {}",
                self.name,
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The sandbox's names as config sections.
fn names(
    kafka: &KafkaSettings,
    clickhouse: &ClickHouseSettings,
    amqp: &AmqpSettings,
    group: &str,
    tenants: Option<&Tenants>,
) -> Table {
    let s = |v: &str| Value::String(v.to_owned());
    let section = |entries: Vec<(&str, Value)>| -> Value {
        Value::Table(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    };
    let t = &kafka.topics;
    let l = &amqp.launch;
    let mut table = Table::new();
    table.insert(
        "kafka".into(),
        section(vec![
            ("brokers", s(&kafka.brokers)),
            (
                "topics",
                section(vec![
                    ("signals", s(&t.signals)),
                    (
                        "signals_partitions",
                        Value::Integer(t.signals_partitions.into()),
                    ),
                    ("scores", s(&t.scores)),
                    (
                        "scores_partitions",
                        Value::Integer(t.scores_partitions.into()),
                    ),
                    ("signals_dlq", s(&t.signals_dlq)),
                ]),
            ),
        ]),
    );
    table.insert(
        "clickhouse".into(),
        section(vec![("database", s(&clickhouse.database))]),
    );
    table.insert(
        "amqp".into(),
        section(vec![(
            "launch",
            section(vec![
                ("exchange", s(&l.exchange)),
                ("jobs_queue", s(&l.jobs_queue)),
                ("dead_letter_exchange", s(&l.dead_letter_exchange)),
                ("dead_letter_queue", s(&l.dead_letter_queue)),
                ("retry_queue", s(&l.retry_queue)),
            ]),
        )]),
    );
    table.insert("scorer".into(), section(vec![("group_id", s(group))]));
    table.insert(
        "launcher".into(),
        section(vec![(
            "standby",
            section(vec![("consumer_group", s(&format!("{group}-standby")))]),
        )]),
    );
    // a secret of the sandbox's own: services refuse the shipped development default
    let mut tenancy = vec![("hash_secret", s(&format!("secret-{group}")))];
    if let Some(tenants) = tenants {
        tenancy.push(("registry", s(&tenants.path().display().to_string())));
    }
    table.insert("tenancy".into(), section(tenancy));
    // processes of parallel tests must not collide on the default metrics ports: any free port
    // (a test that scrapes one sets its address with CAPSIGHT_METRICS__LISTEN__<BINARY>)
    let any = || s("127.0.0.1:0");
    let listen = [
        "scorer",
        "gateway",
        "launcher",
        "reports",
        "probe",
        "quota",
        "spot",
        "status",
        "cloudsim",
        "notifier",
        "gpuclouds",
    ];
    table.insert(
        "metrics".into(),
        section(vec![(
            "listen",
            section(listen.iter().map(|b| (*b, any())).collect()),
        )]),
    );
    table
}

/// Merges `over` into `base`, table by table.
fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}
