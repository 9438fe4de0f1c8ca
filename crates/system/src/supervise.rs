//! A supervisor of local service processes.
//!
//! [`Supervisor::start`] checks that every port its children will listen on
//! is free, starts the children (each in its own process group, so a
//! terminal's Ctrl-C reaches only the supervisor, which then stops them in
//! order), and watches them from a thread: a child that exits is started
//! again after an exponential backoff, and counted. [`Supervisor::wait_healthy`]
//! waits until every endpoint answers `GET /healthz` with 200;
//! [`Supervisor::stop`] sends SIGTERM to every child, waits a bounded time,
//! then kills what is left. Each child's stdout and stderr go to its log file.
//!
//! No child outlives the supervisor, even one killed with SIGKILL: one
//! thread starts, restarts and stops every child, and a child that calls
//! [`die_with_supervisor`] (as `palette serve` does) gets SIGTERM from the
//! kernel when that thread ends.
//!
//! The children are any commands ([`ChildSpec`]), so the supervisor can be
//! tested without the runtime; `up` builds the `palette serve` ones.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// Where a child serves one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The service's name, for messages.
    pub service: String,
    /// Must be free before the child starts, and answer `/healthz` once it runs.
    pub addr: SocketAddr,
}

/// One supervised process.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    /// Names the process in messages.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Added to the supervisor's environment.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory (the supervisor's when `None`).
    pub cwd: Option<PathBuf>,
    /// Receives the child's stdout and stderr, appended across restarts.
    pub log: PathBuf,
    /// The services the process serves.
    pub endpoints: Vec<Endpoint>,
}

/// How children are restarted and stopped.
#[derive(Clone, Debug)]
pub struct SupervisorOptions {
    /// Wait before the first restart of a crashed child; doubles with each
    /// crash in a row.
    pub first_backoff: Duration,
    /// The longest wait between restarts.
    pub max_backoff: Duration,
    /// A child that ran this long before exiting is restarted after
    /// `first_backoff` again: it was up, not crash-looping.
    pub stable_after: Duration,
    /// How long children get to exit after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
    /// Say on stderr when a child exits and is restarted.
    pub announce: bool,
    /// Exit codes that restarting cannot cure (`palette`'s usage and
    /// bad-data codes): such a child stays down and health waits fail at once.
    pub permanent_exit_codes: Vec<i32>,
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        SupervisorOptions {
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(10),
            announce: true,
            permanent_exit_codes: vec![2, 65],
        }
    }
}

/// Why children cannot be started or are not healthy.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("port {} of service `{service}` is taken ({error}); stop what listens on {addr}, or generate the system again with another --base-port", addr.port())]
    PortTaken { service: String, addr: SocketAddr, error: std::io::Error },
    #[error("cannot open log file {path}: {error}")]
    Log { path: PathBuf, error: std::io::Error },
    #[error("cannot start `{name}` ({program}): {error}")]
    Spawn { name: String, program: PathBuf, error: std::io::Error },
    #[error("not healthy after {:.1}s:\n{details}", timeout.as_secs_f64())]
    Unhealthy { timeout: Duration, details: String },
    #[error("interrupted while waiting for the services to be healthy")]
    Interrupted,
    #[error("`{name}` exited ({status}) and is not restarted: its exit code says restarting will not help\n{details}")]
    Exited { name: String, status: String, details: String },
}

/// What stopping did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Restarts over the supervisor's life.
    pub restarts: u64,
    /// Children that did not exit within the stop timeout and were killed.
    pub killed: usize,
}

struct Slot {
    spec: ChildSpec,
    child: Option<Child>,
    started: Instant,
    backoff: Duration,
    restart_at: Option<Instant>,
    /// How it exited, when restarting cannot help.
    failed: Option<String>,
}

struct Shared {
    slots: Mutex<Vec<Slot>>,
    stopping: AtomicBool,
    restarts: AtomicU64,
}

impl Shared {
    fn slots(&self) -> MutexGuard<'_, Vec<Slot>> {
        // A panic elsewhere must not stop the supervisor from stopping children.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Running, supervised children. Dropping it stops them.
pub struct Supervisor {
    shared: Arc<Shared>,
    /// Starts, restarts and stops the children; returns how many it killed.
    monitor: Option<JoinHandle<usize>>,
    opts: SupervisorOptions,
}

/// How often the monitor looks at its children.
const TICK: Duration = Duration::from_millis(50);

impl Supervisor {
    /// Checks every endpoint's port is free, then starts every child.
    pub fn start(specs: Vec<ChildSpec>, opts: SupervisorOptions) -> Result<Supervisor, SupervisorError> {
        {
            // Held until all are checked, so the check sees every port at once.
            let mut held = Vec::new();
            for e in specs.iter().flat_map(|s| &s.endpoints) {
                match TcpListener::bind(e.addr) {
                    Ok(l) => held.push(l),
                    Err(error) => {
                        return Err(SupervisorError::PortTaken { service: e.service.clone(), addr: e.addr, error });
                    }
                }
            }
        }
        let shared = Arc::new(Shared {
            slots: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
        });
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        // One thread starts, restarts and stops every child: the kernel ties
        // a child's parent-death signal to the thread that started it, so
        // that thread must live exactly as long as the supervisor.
        let monitor = {
            let (shared, opts) = (shared.clone(), opts.clone());
            std::thread::Builder::new()
                .name("palette-supervisor".into())
                .spawn(move || {
                    match start_all(specs, &opts) {
                        Ok(slots) => {
                            *shared.slots() = slots;
                            let _ = started_tx.send(Ok(()));
                        }
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                            return 0;
                        }
                    }
                    monitor(&shared, &opts);
                    terminate(&mut shared.slots(), opts.stop_timeout)
                })
                .map_err(|error| SupervisorError::Spawn {
                    name: "supervisor thread".into(),
                    program: PathBuf::new(),
                    error,
                })?
        };
        match started_rx.recv() {
            Ok(Ok(())) => Ok(Supervisor { shared, monitor: Some(monitor), opts }),
            Ok(Err(e)) => {
                let _ = monitor.join();
                Err(e)
            }
            Err(_) => {
                let _ = monitor.join();
                Err(SupervisorError::Spawn {
                    name: "supervisor thread".into(),
                    program: PathBuf::new(),
                    error: std::io::Error::other("it stopped before starting the children"),
                })
            }
        }
    }

    /// Waits until every endpoint answers `GET /healthz` with 200; on
    /// timeout, the error names those that did not, with their log's tail.
    /// A child that exits with a permanent exit code fails the wait at once.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<(), SupervisorError> {
        self.wait_healthy_unless(timeout, || false)
    }

    /// [`Supervisor::wait_healthy`], giving up with
    /// [`SupervisorError::Interrupted`] as soon as `interrupted` says so (a
    /// signal arrived).
    pub fn wait_healthy_unless(
        &self,
        timeout: Duration,
        mut interrupted: impl FnMut() -> bool,
    ) -> Result<(), SupervisorError> {
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<(usize, Endpoint, PathBuf)> = self
            .shared
            .slots()
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.spec.endpoints.iter().map(move |e| (i, e.clone(), s.spec.log.clone())))
            .collect();
        loop {
            pending.retain(|(_, e, _)| !healthy(e.addr));
            if pending.is_empty() {
                return Ok(());
            }
            if interrupted() {
                return Err(SupervisorError::Interrupted);
            }
            {
                let slots = self.shared.slots();
                if let Some((slot, status)) =
                    pending.iter().find_map(|(i, _, _)| slots[*i].failed.as_ref().map(|f| (&slots[*i], f)))
                {
                    let mut details = format!("  last lines of {}:\n", slot.spec.log.display());
                    for line in tail(&slot.spec.log, 12) {
                        details.push_str(&format!("    | {line}\n"));
                    }
                    return Err(SupervisorError::Exited {
                        name: slot.spec.name.clone(),
                        status: status.clone(),
                        details: details.trim_end().to_string(),
                    });
                }
            }
            if Instant::now() >= deadline {
                let mut details = String::new();
                let mut shown_logs: Vec<&Path> = Vec::new();
                for (_, e, log) in &pending {
                    details
                        .push_str(&format!("  service `{}` at http://{} did not answer /healthz\n", e.service, e.addr));
                    if !shown_logs.contains(&log.as_path()) {
                        shown_logs.push(log);
                        details.push_str(&format!("  last lines of {}:\n", log.display()));
                        for line in tail(log, 12) {
                            details.push_str(&format!("    | {line}\n"));
                        }
                    }
                }
                return Err(SupervisorError::Unhealthy { timeout, details: details.trim_end().to_string() });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::SeqCst)
    }

    /// Each child's name and process id (`None` while it waits to be restarted).
    pub fn pids(&self) -> Vec<(String, Option<u32>)> {
        self.shared.slots().iter().map(|s| (s.spec.name.clone(), s.child.as_ref().map(Child::id))).collect()
    }

    /// The children's specs, in start order.
    pub fn children(&self) -> Vec<ChildSpec> {
        self.shared.slots().iter().map(|s| s.spec.clone()).collect()
    }

    /// Sends SIGTERM to every child, waits up to the stop timeout, kills
    /// the rest, and reaps them all.
    pub fn stop(mut self) -> StopReport {
        self.shutdown()
    }

    fn shutdown(&mut self) -> StopReport {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // The monitor restarts nothing once it sees `stopping`, then stops
        // the children itself and says how many it had to kill.
        let killed = match self.monitor.take().map(JoinHandle::join) {
            Some(Ok(killed)) => killed,
            // It panicked: stop what is left from here.
            _ => terminate(&mut self.shared.slots(), self.opts.stop_timeout),
        };
        StopReport { restarts: self.restarts(), killed }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.monitor.is_some() {
            self.shutdown();
        }
    }
}

/// Starts every child, or none: on a failure the ones started are stopped.
fn start_all(specs: Vec<ChildSpec>, opts: &SupervisorOptions) -> Result<Vec<Slot>, SupervisorError> {
    let now = Instant::now();
    let mut slots: Vec<Slot> = Vec::with_capacity(specs.len());
    for spec in specs {
        match spawn(&spec) {
            Ok(child) => slots.push(Slot {
                spec,
                child: Some(child),
                started: now,
                backoff: opts.first_backoff,
                restart_at: None,
                failed: None,
            }),
            Err(e) => {
                terminate(&mut slots, opts.stop_timeout);
                return Err(e);
            }
        }
    }
    Ok(slots)
}

// Where a served process asks to die with its supervisor: the runtime, so
// generated services (`palette generate --code rust`) do it too.
pub use palette_spec::supervisor::{SUPERVISOR_PID_ENV, die_with_supervisor};

/// SIGTERM to every child, SIGKILL to those still running after `timeout`;
/// returns how many had to be killed.
fn terminate(slots: &mut [Slot], timeout: Duration) -> usize {
    for slot in slots.iter_mut() {
        slot.restart_at = None;
        if let Some(child) = &slot.child {
            signal(child, Signal::TERM);
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let mut running = 0;
        for slot in slots.iter_mut() {
            if let Some(child) = &mut slot.child {
                match child.try_wait() {
                    Ok(None) => running += 1,
                    _ => slot.child = None,
                }
            }
        }
        if running == 0 {
            return 0;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut killed = 0;
    for slot in slots.iter_mut() {
        if let Some(mut child) = slot.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            killed += 1;
        }
    }
    killed
}

fn signal(child: &Child, sig: Signal) {
    if let Some(pid) = Pid::from_raw(child.id() as i32) {
        // ESRCH: it has exited already, which is what we want.
        let _ = kill_process(pid, sig);
    }
}

fn monitor(shared: &Shared, opts: &SupervisorOptions) {
    while !shared.stopping.load(Ordering::SeqCst) {
        std::thread::sleep(TICK);
        let mut slots = shared.slots();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        for slot in slots.iter_mut() {
            if let Some(child) = &mut slot.child {
                let (status, code) = match child.try_wait() {
                    Ok(Some(status)) => (status.to_string(), status.code()),
                    Ok(None) => continue,
                    Err(e) => (format!("cannot be waited for: {e}"), None),
                };
                let ran = now.duration_since(slot.started);
                if code.is_some_and(|c| opts.permanent_exit_codes.contains(&c)) {
                    note(&slot.spec, opts, &format!("`{}` exited ({status}); not restarting it", slot.spec.name));
                    slot.child = None;
                    slot.failed = Some(status);
                    continue;
                }
                if ran >= opts.stable_after {
                    slot.backoff = opts.first_backoff;
                }
                let message = format!(
                    "`{}` exited ({status}) after {:.1}s; restarting in {:.2}s",
                    slot.spec.name,
                    ran.as_secs_f64(),
                    slot.backoff.as_secs_f64()
                );
                note(&slot.spec, opts, &message);
                slot.child = None;
                slot.restart_at = Some(now + slot.backoff);
                slot.backoff = (slot.backoff * 2).min(opts.max_backoff);
            } else if let Some(at) = slot.restart_at
                && now >= at
            {
                match spawn(&slot.spec) {
                    Ok(child) => {
                        let n = shared.restarts.fetch_add(1, Ordering::SeqCst) + 1;
                        note(
                            &slot.spec,
                            opts,
                            &format!("`{}` restarted (pid {}, restart {n})", slot.spec.name, child.id()),
                        );
                        slot.child = Some(child);
                        slot.started = now;
                        slot.restart_at = None;
                    }
                    Err(e) => {
                        note(&slot.spec, opts, &format!("{e}; trying again in {:.2}s", slot.backoff.as_secs_f64()));
                        slot.restart_at = Some(now + slot.backoff);
                        slot.backoff = (slot.backoff * 2).min(opts.max_backoff);
                    }
                }
            }
        }
    }
}

/// Says `message` on stderr (if asked) and in the child's log, where it
/// explains the gap between two runs.
fn note(spec: &ChildSpec, opts: &SupervisorOptions, message: &str) {
    if opts.announce {
        eprintln!("palette up: {message}");
    }
    if let Ok(mut f) = OpenOptions::new().append(true).open(&spec.log) {
        let _ = writeln!(f, "--- palette up: {message}");
    }
}

fn spawn(spec: &ChildSpec) -> Result<Child, SupervisorError> {
    let log_err = |error| SupervisorError::Log { path: spec.log.clone(), error };
    if let Some(dir) = spec.log.parent() {
        std::fs::create_dir_all(dir).map_err(log_err)?;
    }
    let out = OpenOptions::new().create(true).append(true).open(&spec.log).map_err(log_err)?;
    let err = out.try_clone().map_err(log_err)?;
    let mut out = out;
    // Marks where each run starts in a log that restarts append to.
    let _ = writeln!(out, "--- palette up: starting `{}`: {}", spec.name, command_line(spec));
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env(SUPERVISOR_PID_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    cmd.spawn().map_err(|error| SupervisorError::Spawn {
        name: spec.name.clone(),
        program: spec.program.clone(),
        error,
    })
}

fn command_line(spec: &ChildSpec) -> String {
    let mut line = spec.program.display().to_string();
    for a in &spec.args {
        line.push(' ');
        line.push_str(&a.to_string_lossy());
    }
    line
}

/// Whether `GET /healthz` at `addr` answers 200.
pub fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    // "HTTP/1.1 200"
    got == buf.len() && buf.starts_with(b"HTTP/1.") && &buf[8..12] == b" 200"
}

/// The last `n` lines of a log file (its last 64 KiB at most).
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut f) = File::open(path) else {
        return vec![format!("(no log at {})", path.display())];
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(64 << 10);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return vec!["(the log is empty)".into()];
    }
    lines[lines.len().saturating_sub(n)..].iter().map(|l| l.to_string()).collect()
}
