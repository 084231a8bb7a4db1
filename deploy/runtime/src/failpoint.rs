//! Test failpoints (`crash_after` settings): accepted only in debug builds, so a release binary
//! cannot be made to kill itself by configuration.

/// How the running binary was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// `debug_assertions` on: the tests' builds.
    Debug,
    /// An optimized release build.
    Release,
}

impl Build {
    /// This binary's build.
    pub const fn current() -> Self {
        if cfg!(debug_assertions) {
            Self::Debug
        } else {
            Self::Release
        }
    }
}

/// A failpoint was set in a release build.
#[derive(Debug, thiserror::Error)]
#[error("{field} = {value:?} is a test failpoint; release builds refuse it (leave it empty)")]
pub struct FailpointRefused {
    /// The setting, e.g. `launcher.crash_after`.
    pub field: &'static str,
    /// What it was set to.
    pub value: String,
}

/// Checks the failpoint setting `field` (empty = off) for this binary's build.
pub fn check(field: &'static str, value: &str) -> Result<(), FailpointRefused> {
    check_for(Build::current(), field, value)
}

/// Kills this process with `SIGKILL` at failpoint `field` = `point`, as an operator's `kill -9`
/// or the OOM killer would: nothing runs after it (no destructor, no flush, no shutdown hook).
pub fn kill_self(field: &'static str, point: &str) -> ! {
    tracing::warn!(field, point, "failpoint: killing this process with SIGKILL");
    let _ = std::process::Command::new("kill")
        .args(["-9", &std::process::id().to_string()])
        .status();
    std::process::abort();
}

/// Checks the failpoint setting `field` for a binary of build `build`.
pub fn check_for(build: Build, field: &'static str, value: &str) -> Result<(), FailpointRefused> {
    if build == Build::Release && !value.is_empty() {
        return Err(FailpointRefused {
            field,
            value: value.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_builds_refuse_a_set_failpoint_and_debug_builds_take_it() {
        let refused = check_for(Build::Release, "launcher.crash_after", "launched").unwrap_err();
        assert!(refused.to_string().contains("launcher.crash_after"));
        assert!(check_for(Build::Release, "launcher.crash_after", "").is_ok());
        assert!(check_for(Build::Debug, "launcher.crash_after", "launched").is_ok());
    }
}
