//! End-to-end tests of capsight across processes on the real local stack.
//!
//! The tests in `tests/tests/` spawn the workspace's binaries from the cargo target directory;
//! `deploy/local/stack test` builds them and brings the stack up first. Helpers here find the
//! binaries and the repository.

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Path of a workspace binary in the target directory this test binary was built into.
///
/// Panics with instructions when it is missing (a test must fail, not skip).
pub fn bin(name: &str) -> PathBuf {
    // test binaries live in <target>/debug/deps/; workspace binaries in <target>/debug/
    let exe = std::env::current_exe().unwrap_or_default();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join(name))
        .unwrap_or_default();
    assert!(
        path.exists(),
        "{} is missing: run the suite with deploy/local/stack test, which builds the binaries \
         (or cargo build --workspace --bins first)",
        path.display()
    );
    path
}

/// The `capsight-admin` binary.
pub fn admin_bin() -> PathBuf {
    bin("capsight-admin")
}
