//! Helpers: temporary directories, running `palette`, the shared data folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary directory that is removed when dropped.
pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir { tmp: tempfile::tempdir().expect("create temp dir") }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    /// Writes `content` to `name` and returns its path.
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create parent");
        }
        std::fs::write(&p, content).expect("write fixture");
        p
    }
}

/// The result of running `palette`.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `palette` with `args`.
pub fn palette<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_palette")).args(args).output().expect("run palette").into()
}

/// Runs `palette inspect --json` on `inputs` (plus `extra` flags) and parses the report.
pub fn inspect_json(inputs: &[&Path], extra: &[&str]) -> serde_json::Value {
    let mut args: Vec<std::ffi::OsString> = vec!["inspect".into(), "--json".into()];
    args.extend(extra.iter().map(|s| s.into()));
    args.extend(inputs.iter().map(|p| p.as_os_str().to_owned()));
    let run = palette(&args);
    assert_eq!(run.code, 0, "palette inspect failed: {}", run.stderr);
    serde_json::from_str(&run.stdout).expect("inspect --json prints JSON")
}

/// `../shared/data` from the project root, if this checkout has it. Tests
/// that need it print why they skip when it is absent.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    let p = root.join(rel);
    if p.exists() {
        Some(p)
    } else {
        skip(&format!("{} is absent (no ../shared/data in this checkout)", p.display()));
        None
    }
}

/// The fixture folder of this crate's tests.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel)
}

/// Says that a check was skipped, on the real stderr: the test harness
/// captures `eprintln!`, and a skip must be visible in a passing run.
pub fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP: {why}");
}

/// A port `base` with `base..base+n` all free right now, below Linux's
/// ephemeral range (32768+): there, a service restarted by a test could
/// find its port taken by some outgoing connection's local end.
pub fn free_ports(n: u16) -> u16 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let seed = std::process::id() as u64 * 7919 + now.subsec_nanos() as u64;
    for k in 0..200u64 {
        let base = 20_000 + ((seed + k * 613) % 12_000) as u16;
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no {n} free ports in a row");
}

/// What a started `palette up` printed until it said the system is up, and
/// the rest of its output. Keep the reader while `up` runs: a closed pipe
/// would fail its later lines (restarts, shutdown).
pub struct Up {
    pub shown: String,
    pub rest: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

/// Reads `up`'s output (stdout and stderr piped) until "press Ctrl-C to
/// stop"; panics with its output if it ends first or takes over `within`.
pub fn wait_until_up(up: &mut std::process::Child, within: std::time::Duration) -> Up {
    use std::io::{BufRead, Read};
    let mut rest = std::io::BufReader::new(up.stdout.take().expect("stdout piped")).lines();
    let mut shown = String::new();
    let deadline = std::time::Instant::now() + within;
    while !shown.contains("press Ctrl-C to stop") {
        match rest.next() {
            Some(Ok(l)) => shown += &(l + "\n"),
            _ => {
                let _ = up.kill();
                let mut err = String::new();
                let _ = up.stderr.take().expect("stderr piped").read_to_string(&mut err);
                panic!("palette up ended early:\n{shown}{err}");
            }
        }
        assert!(std::time::Instant::now() < deadline, "palette up not up in {within:?}:\n{shown}");
    }
    Up { shown, rest }
}

/// Child processes of `pid` (Linux: /proc/PID/task/*/children).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(list) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(list.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

/// The command line of process `pid`, arguments separated by spaces.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// The host to one test: held by the tests that load the whole host (the
/// compose system's 21 containers, the overload run) and by those that time
/// how fast the host reacts or judge latency (signals, compose, load): run
/// beside another test on 2 cores they would measure it. Waits for every
/// [`host_shared`] holder to finish and keeps new ones out meanwhile.
pub fn host_to_myself() -> std::sync::RwLockWriteGuard<'static, ()> {
    HOST.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Held by tests that keep a core or more busy for seconds (a hundred
/// thousand calls fitted, two thousand services, two thousand connections):
/// they may run beside each other, never beside a [`host_to_myself`] test.
pub fn host_shared() -> std::sync::RwLockReadGuard<'static, ()> {
    HOST.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

static HOST: std::sync::RwLock<()> = std::sync::RwLock::new(());
