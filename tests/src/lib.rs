//! End-to-end tests of capsight across processes on the real local stack.
//!
//! The tests in `tests/tests/` spawn the workspace's binaries from the cargo target directory;
//! `deploy/local/stack test` builds them and brings the stack up first. Helpers here find the
//! binaries and the repository; [`standby`] is the warm-standby world several tests share.

#![allow(
    clippy::unwrap_used,
    clippy::missing_panics_doc,
    reason = "test support: a failed set-up is a failed test, with the panic as its message"
)]

pub mod standby;

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Path of a workspace binary in the target directory this test binary was built into
/// (panics with instructions when it is missing: a test must fail, not skip).
pub use capsight_testkit::process::bin;

/// The `capsight-admin` binary.
pub fn admin_bin() -> PathBuf {
    bin("capsight-admin")
}
