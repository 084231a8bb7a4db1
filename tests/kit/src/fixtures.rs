//! Files the tests share, kept out of test code: cloudsim scenarios
//! (`tests/fixtures/scenarios/`, so a reader finds every simulated world in one place), tenants'
//! reports (`tests/fixtures/reports/`), config
//! fragments a [`crate::Sandbox`] layers over the defaults (`tests/fixtures/config/`), the SQL
//! documented in `docs/`, sandboxes for a launcher and for a gateway in its world (its
//! scenario, its tenants).
//!
//! A scenario a test needs in a variant is the parsed fixture, changed in code
//! ([`scenario`] returns the parsed value).

use std::path::PathBuf;

use capsight_cloudsim::scenario::Scenario;

use crate::{
    Sandbox,
    cloud::{ROLE_ACME, ROLE_READONLY, Sim},
    sandbox::Builder,
    tenants::{TenantSpec, tenant},
};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fixtures folder (`tests/fixtures`).
pub fn dir() -> PathBuf {
    repo().join("tests/fixtures")
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// `tests/fixtures/reports/<name>.json`: a tenant's report as the intake takes it.
pub fn report(name: &str) -> serde_json::Value {
    let path = dir().join("reports").join(format!("{name}.json"));
    serde_json::from_str(&read(path.clone()))
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// The text of `tests/fixtures/scenarios/<name>.toml`; panics naming the file when it is
/// missing.
pub fn scenario_text(name: &str) -> String {
    read(dir().join("scenarios").join(format!("{name}.toml")))
}

/// `tests/fixtures/scenarios/<name>.toml`, parsed.
pub fn scenario(name: &str) -> Scenario {
    Scenario::parse(&scenario_text(name)).unwrap_or_else(|e| panic!("scenario {name}: {e}"))
}

/// A scenario cloudsim ships (`deploy/cloudsim/scenarios/<name>.toml`, e.g. `stockout`),
/// parsed.
pub fn shipped_scenario(name: &str) -> Scenario {
    let text = read(
        repo()
            .join("deploy/cloudsim/scenarios")
            .join(format!("{name}.toml")),
    );
    Scenario::parse(&text).unwrap_or_else(|e| panic!("scenario {name}: {e}"))
}

/// The config fragment `tests/fixtures/config/<name>.toml`, parsed.
pub fn config(name: &str) -> toml::Table {
    let text = read(dir().join("config").join(format!("{name}.toml")));
    text.parse()
        .unwrap_or_else(|e| panic!("config fixture {name}: {e}"))
}

/// The `sql` code blocks of a markdown text, in order.
pub fn sql_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim()) {
            (None, "```sql") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// The `sql` blocks of `docs/<doc>` (e.g. `analytics.md`), verbatim.
pub fn documented_queries(doc: &str) -> Vec<String> {
    sql_blocks(&read(repo().join("docs").join(doc)))
}

/// The tenants of the gateway's scenario (`scenarios/gateway.toml`), each with an API key and
/// the AZ name `us-east-1b` mapped to `use1-az4`:
/// * `acme`: [`ROLE_ACME`] (may launch; quota for one p5.48xlarge, 192 vCPUs);
/// * `globex`: no role registered;
/// * `readonly`: [`ROLE_READONLY`] (may describe, not launch);
/// * `flood`: 5 requests per minute.
pub fn gateway_tenants() -> Vec<TenantSpec> {
    let t = |id: &str| tenant(id).zone("us-east-1b", "use1-az4").with_key();
    vec![
        t("acme").role(ROLE_ACME, "ext-acme"),
        t("globex"),
        t("readonly").role(ROLE_READONLY, "ext-ro"),
        t("flood").rate(5),
    ]
}

/// A sandbox for a launcher: a signals topic (1 partition, for launch-attempt signals), a
/// migrated database, the launch topology, and the `launcher` and `cloud` config fragments;
/// tenants and a cloudsim are the test's to add.
pub fn launcher_world(prefix: &str) -> Builder {
    Sandbox::builder(prefix)
        .signals(1)
        .database()
        .amqp()
        .profile("launcher")
        .profile("cloud")
}

/// The dashboard operator's key in tests.
pub const OPERATOR_KEY: &str = "op-test-3f9a1c0e8b7d4a2f";
/// `printf %s op-test-3f9a1c0e8b7d4a2f | sha256sum`: what `gateway.web_operator_key_sha256` holds.
pub const OPERATOR_KEY_SHA256: &str =
    "18d4e8dbc92a94fab67d075f416d095b708b8a8c40b45c5b424e503bba98719e";

/// A sandbox for the gateway's dashboard: signals and scores topics (1 partition each), a
/// migrated database, the `gateway` config fragment, tenant `acme` with a key, and cloudsim
/// with the `dashboard` scenario (frozen clock).
pub fn dashboard_world(prefix: &str) -> Builder {
    Sandbox::builder(prefix)
        .signals(1)
        .scores(1)
        .database()
        .profile("gateway")
        .tenants([tenant("acme").with_key()])
        .cloudsim(Sim::builder(scenario("dashboard")))
}

/// A sandbox for the whole pipeline in one test (scorer, launcher, gateway): signals and scores
/// topics (1 partition each), a migrated database, the launch topology and the `scorer`,
/// `launcher`, `gateway` and `cloud` config fragments; tenants and a cloudsim are the test's to
/// add.
pub fn pipeline_world(prefix: &str) -> Builder {
    Sandbox::builder(prefix)
        .topics(1)
        .database()
        .amqp()
        .profile("scorer")
        .profile("launcher")
        .profile("gateway")
        .profile("cloud")
}

/// A sandbox where launches go through the gateway to a launcher: [`launcher_world`] with a
/// scores topic (1 partition, the gateway's view), the `gateway` config fragment, tenant `acme`
/// with [`ROLE_ACME`] and a key, and cloudsim running the `launcher` scenario at 60 simulated
/// seconds a second.
pub fn gateway_launcher_world(prefix: &str) -> Builder {
    launcher_world(prefix)
        .scores(1)
        .profile("gateway")
        .tenants([tenant("acme").role(ROLE_ACME, "ext-acme").with_key()])
        .cloudsim(Sim::builder(scenario("launcher")).time_scale(60.0))
}

/// A sandbox for a collector: a signals topic with `signal_partitions` partitions and a cloudsim
/// playing the scenario `scenario_name`.
pub fn collector_world(prefix: &str, signal_partitions: i32, scenario_name: &str) -> Builder {
    Sandbox::builder(prefix)
        .signals(signal_partitions)
        .scenario(scenario_name)
}

/// A sandbox for a gateway: a signals topic (1 partition, for report signals), a migrated
/// database, the launch topology, and the `gateway` and `cloud` config fragments. Tenants, the
/// cloudsim and the scores topic are the test's to add ([`Builder::scores`]; the gateway's view
/// reads it).
pub fn gateway_sandbox(prefix: &str) -> Builder {
    Sandbox::builder(prefix)
        .signals(1)
        .database()
        .amqp()
        .profile("gateway")
        .profile("cloud")
}

/// A sandbox for a gateway in its world: [`gateway_sandbox`] with [`gateway_tenants`] and the
/// gateway's scenario in a cloudsim with a frozen clock.
pub fn gateway_world(prefix: &str) -> Builder {
    gateway_sandbox(prefix)
        .tenants(gateway_tenants())
        .cloudsim(Sim::builder(scenario("gateway")))
}
