//! Support for the collectors' integration tests (feature `testing`): a sandbox whose clouds
//! are an in-process cloudsim, and a collector's one pass in it.

use std::process::Command;

use capsight_testkit::{Sandbox, cloud::Sim, fixtures::scenario, sandbox::Builder};

/// A sandbox named `name` whose signals topic has `signal_partitions` partitions and whose
/// clouds are a cloudsim playing the fixture scenario `scenario`; start it with
/// [`Builder::start`].
pub fn sim_sandbox(name: &str, signal_partitions: i32, scenario_name: &str) -> Builder {
    Sandbox::builder(name)
        .signals(signal_partitions)
        .cloudsim(Sim::builder(scenario(scenario_name)))
}

/// `collector --once` in `sandbox`, with one attempt per cloud call (no retries).
pub fn once(sandbox: &Sandbox, collector: &str) -> Command {
    let mut cmd = sandbox.command(collector);
    cmd.arg("--once").env("CAPSIGHT_CLOUD__MAX_ATTEMPTS", "1");
    cmd
}
