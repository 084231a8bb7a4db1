//! Processes a test spawns, stopped whatever happens to the test.
//!
//! A [`ChildGuard`] owns a spawned process and kills it (SIGKILL, then reaps it) when dropped:
//! at the end of the test, and during unwinding when an assertion fails. A failing test must not
//! leave a consumer behind that loads the broker for every test after it.
//!
//! A test binary that hangs must not hang the suite: the first guard starts a [`watchdog`] that,
//! once the binary has run longer than `CAPSIGHT_TEST_WATCHDOG_SECS` (default 900 s), kills
//! every process the binary's guards still own and aborts it, so `cargo test --no-fail-fast`
//! reports it failed and goes on with the next binary.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

/// How long a test binary may run before [`watchdog`] aborts it, unless
/// `CAPSIGHT_TEST_WATCHDOG_SECS` says otherwise.
pub const WATCHDOG_DEFAULT: Duration = Duration::from_secs(900);

/// Set by [`no_watchdog`]: this binary is a long-running tool, not a test.
static NO_WATCHDOG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns the [`watchdog`] off for this binary, before anything starts it: for tools built on
/// the test kit that run for as long as their work takes (the evaluation harness), not for tests.
pub fn no_watchdog() {
    NO_WATCHDOG.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Processes the guards of this binary own: pid -> kill its whole group.
static LIVE: Mutex<BTreeMap<u32, bool>> = Mutex::new(BTreeMap::new());

fn live() -> std::sync::MutexGuard<'static, BTreeMap<u32, bool>> {
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts (once per test binary) a thread that, when the binary has run longer than
/// `CAPSIGHT_TEST_WATCHDOG_SECS` (default [`WATCHDOG_DEFAULT`]), prints which limit was hit,
/// kills every process a [`ChildGuard`] still owns and aborts the binary. Called by every guard
/// and by the sandbox, so every integration test is covered; [`no_watchdog`] turns it off.
pub fn watchdog() {
    if NO_WATCHDOG.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let limit = std::env::var("CAPSIGHT_TEST_WATCHDOG_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(WATCHDOG_DEFAULT, Duration::from_secs);
        std::thread::Builder::new()
            .name("capsight-test-watchdog".into())
            .spawn(move || {
                std::thread::sleep(limit);
                let exe = std::env::current_exe().unwrap_or_default();
                eprintln!(
                    "capsight test watchdog: {} ran longer than {limit:?} \
                     (CAPSIGHT_TEST_WATCHDOG_SECS); killing its processes and aborting it",
                    exe.display()
                );
                for (pid, group) in live().iter() {
                    let target = if *group {
                        format!("-{pid}")
                    } else {
                        pid.to_string()
                    };
                    let _ = Command::new("kill").args(["-KILL", "--", &target]).status();
                }
                std::process::abort();
            })
            .expect("spawn the test watchdog");
    });
}

/// A spawned process that is killed when the guard is dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
    /// Kill the process's whole group (a script and everything it started).
    group: bool,
}

impl ChildGuard {
    /// Spawns `cmd`; `name` appears in panics.
    pub fn spawn(name: impl Into<String>, cmd: &mut Command) -> Self {
        let name = name.into();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name}: {e}"));
        Self::adopt(name, child)
    }

    /// Spawns `cmd` with its standard output discarded and its standard error appended to
    /// `log` (named in panics, and kept when the test fails).
    pub fn spawn_logged(name: impl Into<String>, cmd: &mut Command, log: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("log {}: {e}", log.display()));
        Self::spawn(
            format!("{} (log {})", name.into(), log.display()),
            cmd.stdout(Stdio::null()).stderr(file),
        )
    }

    /// Spawns `cmd` as the leader of a new process group; the guard kills the whole group
    /// (for scripts that start processes of their own).
    pub fn spawn_group(name: impl Into<String>, cmd: &mut Command) -> Self {
        use std::os::unix::process::CommandExt;
        let mut guard = Self::spawn(name, cmd.process_group(0));
        guard.group = true;
        live().insert(guard.id(), true);
        guard
    }

    /// The child's standard output and error, when they were piped.
    pub fn take_output(
        &mut self,
    ) -> (
        Option<std::process::ChildStdout>,
        Option<std::process::ChildStderr>,
    ) {
        self.child
            .as_mut()
            .map_or((None, None), |c| (c.stdout.take(), c.stderr.take()))
    }

    /// Guards an already spawned process.
    pub fn adopt(name: impl Into<String>, child: Child) -> Self {
        watchdog();
        live().insert(child.id(), false);
        Self {
            child: Some(child),
            name: name.into(),
            group: false,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `signal` (a `kill` signal name such as `STOP`, `CONT`, `TERM`).
    pub fn signal(&self, signal: &str) {
        send_signal(self.id(), signal);
    }

    /// SIGKILL and reap (a crash).
    pub fn kill(mut self) {
        self.kill_now();
    }

    /// SIGTERM, then waits up to `grace` for the exit; panics when the process ignored it or
    /// exited unsuccessfully.
    pub fn terminate(mut self, grace: Duration) {
        if let Some(status) = self.wait_for(Duration::ZERO) {
            panic!("{} had already exited with {status}", self.name);
        }
        self.signal("TERM");
        let status = self.wait_for(grace).unwrap_or_else(|| {
            panic!("{} ignored SIGTERM for {grace:?}", self.name);
        });
        assert!(status.success(), "{} exited with {status}", self.name);
    }

    /// The exit status once the process exited within `timeout`; `None` while it runs.
    pub fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                live().remove(&child.id());
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits, without blocking the async runtime, until the process exits; panics after
    /// `limit`.
    pub async fn exited(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.wait_for(Duration::ZERO) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {limit:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// [`ChildGuard::terminate`] without blocking the async runtime (for processes that need
    /// the test's in-process services to shut down).
    pub async fn stop(mut self, grace: Duration) {
        if let Some(status) = self.wait_for(Duration::ZERO) {
            panic!("{} had already exited with {status}", self.name);
        }
        self.signal("TERM");
        let status = self.exited(grace).await;
        assert!(status.success(), "{} exited with {status}", self.name);
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.group {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
            }
            let _ = child.kill();
            let _ = child.wait();
            live().remove(&child.id());
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Sends `signal` to `pid` with `kill(1)`.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Runs `cmd` to completion (standard output and error captured) and asserts it succeeded,
/// with its standard error as the message.
pub fn succeed(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{:?} exited with {}:\n{}",
        cmd.get_program(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A workspace binary in the target directory this test binary was built into; panics with
/// instructions when it is missing (a test must fail, not skip).
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

/// A unique name with `prefix`, for topics, groups, databases and directories.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_guard_kills_its_process() {
        let guard = ChildGuard::spawn("sleep", Command::new("sleep").arg("600"));
        let pid = guard.id();
        let alive = |pid: u32| {
            Command::new("kill")
                .args(["-0", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        };
        assert!(alive(pid));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _guard = guard;
            panic!("a failing assertion");
        }));
        assert!(panicked.is_err());
        assert!(!alive(pid), "process {pid} outlived its panicking test");
    }

    /// Run in a copy of this binary (`CAPSIGHT_WATCHDOG_SELFTEST` set): owns a process, prints
    /// its pid and hangs; in the suite: runs that copy with a one-second watchdog.
    #[test]
    fn the_watchdog_aborts_a_hanging_binary_and_kills_its_processes() {
        const HANG: &str = "CAPSIGHT_WATCHDOG_SELFTEST";
        const NAME: &str =
            "process::tests::the_watchdog_aborts_a_hanging_binary_and_kills_its_processes";
        if std::env::var_os(HANG).is_some() {
            let guard = ChildGuard::spawn("sleep", Command::new("sleep").arg("600"));
            println!("owned pid {}", guard.id());
            std::thread::sleep(Duration::from_secs(600));
            return;
        }
        let started = Instant::now();
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(HANG, "1")
            .env("CAPSIGHT_TEST_WATCHDOG_SECS", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "the hanging copy exited {}",
            out.status
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the watchdog took {:?}",
            started.elapsed()
        );
        assert!(stderr.contains("capsight test watchdog"), "{stderr}");
        let pid: u32 = stdout
            .lines()
            .find_map(|l| l.split("owned pid ").nth(1))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {stdout}"));
        // killed: gone, or a zombie nobody reaped yet (its parent, the copy, was aborted)
        let running = || {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let live = state
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .is_some_and(|s| s != "Z");
            live.then_some(state)
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while running().is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(running(), None, "process {pid} outlived the aborted binary");
    }
}
