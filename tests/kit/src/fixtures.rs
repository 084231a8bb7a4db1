//! Scenario files for cloudsim, kept in `tests/fixtures/scenarios/` rather than inline in test
//! code, so tests share them and a reader finds every simulated world in one place.

use std::path::PathBuf;

/// The fixtures folder (`tests/fixtures`).
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// The text of `tests/fixtures/scenarios/<name>.toml`; panics naming the file when it is
/// missing.
pub fn scenario(name: &str) -> String {
    let path = dir().join("scenarios").join(format!("{name}.toml"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("scenario fixture {}: {e}", path.display()))
}
