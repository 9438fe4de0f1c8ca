//! `palette up`: a generated system as supervised local processes.
//!
//! [`LocalSystem::load`] reads `system.json` (or the directory holding it);
//! [`LocalSystem::children`] turns it into `palette serve` processes — one
//! per service instance (a replicated service has several, instance i on
//! port + i), or with `packed` one for all — that listen on 127.0.0.1,
//! reach their peers there, run in the system directory (so the span file
//! lands there) and log to `logs/HOST.log`; [`start`] hands them to a
//! [`Supervisor`]. `palette run` uses the same calls to bring a system up
//! and down around a measurement.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use palette_spec::config::{ConfigError, SystemConfig};

use crate::supervise::{ChildSpec, Endpoint, Supervisor, SupervisorError, SupervisorOptions};

/// A system file on disk and what it says.
#[derive(Clone, Debug)]
pub struct LocalSystem {
    /// The absolute path of `system.json`: children may run elsewhere.
    pub path: PathBuf,
    /// Its directory: children run here, so relative paths in it (the
    /// span file) resolve as `palette serve` resolves them.
    pub dir: PathBuf,
    pub config: SystemConfig,
}

impl LocalSystem {
    /// Reads and checks `system.json`, given the file or its directory.
    pub fn load(path: &Path) -> Result<LocalSystem, ConfigError> {
        let file = if path.is_dir() { path.join("system.json") } else { path.to_path_buf() };
        let config = SystemConfig::load(&file)?;
        let file = std::path::absolute(&file).map_err(|source| ConfigError::Io { path: file.clone(), source })?;
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
        Ok(LocalSystem { path: file, dir, config })
    }

    /// Where the services append their spans, if to a file.
    pub fn spans_file(&self) -> Option<PathBuf> {
        self.config.tracing.file.as_ref().map(|f| self.dir.join(f))
    }

    /// The `palette serve` processes that run the system.
    pub fn children(&self, opts: &UpOptions) -> Vec<ChildSpec> {
        let log_dir = opts.log_dir.clone().unwrap_or_else(|| self.dir.join("logs"));
        let endpoint = |s: &palette_spec::config::ServiceConfig, i: u32| Endpoint {
            service: if s.instances > 1 { format!("{} (instance {i})", s.name) } else { s.name.clone() },
            addr: s.instance_listen(i),
        };
        let child = |name: String, log: String, selectors: Vec<OsString>, endpoints: Vec<Endpoint>| ChildSpec {
            name,
            program: opts.program.clone(),
            args: [vec!["serve".into(), self.path.clone().into()], selectors].concat(),
            env: Vec::new(),
            cwd: Some(self.dir.clone()),
            log: log_dir.join(format!("{log}.log")),
            endpoints,
        };
        if opts.packed {
            let endpoints =
                self.config.services.iter().flat_map(|s| (0..s.instances).map(move |i| endpoint(s, i))).collect();
            vec![child("all services".into(), "all".into(), vec!["--all".into()], endpoints)]
        } else {
            let mut children = Vec::new();
            for s in &self.config.services {
                // `=`: a service name starting with '-' stays a value.
                let service: OsString = format!("--service={}", s.name).into();
                if s.instances <= 1 {
                    children.push(child(s.name.clone(), s.host.clone(), vec![service], vec![endpoint(s, 0)]));
                    continue;
                }
                // One process per instance: each crashes and is restarted on its own.
                for i in 0..s.instances {
                    children.push(child(
                        format!("{} (instance {i})", s.name),
                        format!("{}-{i}", s.host),
                        vec![service.clone(), format!("--instance={i}").into()],
                        vec![endpoint(s, i)],
                    ));
                }
            }
            children
        }
    }
}

/// How to run a system locally.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// One process serving every service (packing) instead of one each.
    pub packed: bool,
    /// Where log files go; `logs/` in the system directory by default.
    pub log_dir: Option<PathBuf>,
    /// The `palette` executable whose `serve` runs the services.
    pub program: PathBuf,
    pub supervisor: SupervisorOptions,
    /// How long [`Supervisor::wait_healthy`] waits in `palette up`.
    pub health_timeout: Duration,
}

impl UpOptions {
    /// Options running `program` (usually `std::env::current_exe()`).
    pub fn new(program: PathBuf) -> UpOptions {
        UpOptions {
            packed: false,
            log_dir: None,
            program,
            supervisor: SupervisorOptions::default(),
            health_timeout: Duration::from_secs(30),
        }
    }
}

/// Starts the system's processes (after checking their ports are free).
pub fn start(system: &LocalSystem, opts: &UpOptions) -> Result<Supervisor, SupervisorError> {
    Supervisor::start(system.children(opts), opts.supervisor.clone())
}

/// SIGINT (Ctrl-C) and SIGTERM, caught from the moment of
/// [`Signals::install`]: installed before children start, a signal during
/// start-up stops them instead of killing the supervisor and orphaning them.
///
/// The first signal is only recorded (and raises [`Signals::stop_flag`]):
/// the command stops what it started, keeps what it measured, and exits
/// with [`exit_code`]. A second one ends the process at once; its children
/// still stop, as each `palette serve` asked the kernel to signal it when
/// its supervisor dies ([`crate::supervise::die_with_supervisor`]).
pub struct Signals {
    /// Wakes [`Signals::wait`] on the first signal.
    rx: std::sync::mpsc::Receiver<&'static str>,
    /// The first signal's name, kept for every later question.
    first: std::sync::Arc<std::sync::OnceLock<&'static str>>,
    /// Raised on the first signal, for code that polls a flag (the load generator).
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The command, for messages that tell the user what to run.
    program: &'static str,
    /// Run on the second signal, just before the process exits: what must
    /// not outlive it and does not die with it (containers).
    last_words: std::sync::Arc<std::sync::OnceLock<LastWords>>,
}

/// See [`Signals::on_quit`].
type LastWords = Box<dyn Fn() + Send + Sync>;

impl Signals {
    /// Catches the signals on a thread of its own, for the rest of the
    /// process's life. `program` names the command in its messages; the
    /// first signal prints `notice` (unless empty), a second one says the
    /// process quits now.
    pub fn install(program: &'static str, notice: &'static str) -> std::io::Result<Signals> {
        use std::sync::atomic::Ordering;
        use tokio::signal::unix::{SignalKind, signal};
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let (tx, rx) = std::sync::mpsc::channel();
        let first = std::sync::Arc::new(std::sync::OnceLock::new());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let last_words = std::sync::Arc::new(std::sync::OnceLock::<LastWords>::new());
        let (first_in, stop_in, last_words_in) = (first.clone(), stop.clone(), last_words.clone());
        std::thread::Builder::new().name("palette-signals".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return drop(ready_tx.send(Err(e))),
            };
            rt.block_on(async move {
                let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                    (Ok(t), Ok(i)) => (t, i),
                    (Err(e), _) | (_, Err(e)) => return drop(ready_tx.send(Err(e))),
                };
                let _ = ready_tx.send(Ok(()));
                loop {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    if first_in.set(name).is_err() {
                        eprintln!("{program}: {name} again: quitting now");
                        if let Some(f) = last_words_in.get() {
                            f();
                        }
                        std::process::exit(i32::from(exit_code(name)));
                    }
                    stop_in.store(true, Ordering::SeqCst);
                    if !notice.is_empty() {
                        eprintln!("{program}: {name}: {notice} ({name} again to quit now)");
                    }
                    let _ = tx.send(name);
                }
            })
        })?;
        ready_rx.recv().map_err(|_| std::io::Error::other("the signal thread stopped"))??;
        Ok(Signals { rx, first, stop, program, last_words })
    }

    /// Sets what a second signal runs before the process exits (once; a
    /// later call is ignored). Local children need nothing (they die with
    /// their supervisor); containers do.
    pub fn on_quit(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.last_words.set(Box::new(f));
    }

    /// The first signal that arrived, if one did (it stays the answer).
    pub fn received(&self) -> Option<&'static str> {
        self.first.get().copied()
    }

    /// Blocks until a signal arrives (or returns the one that did); returns its name.
    pub fn wait(&self) -> &'static str {
        if let Some(name) = self.received() {
            return name;
        }
        self.rx.recv().unwrap_or("SIGTERM")
    }

    /// The command the signals stop (`palette run`, …).
    pub fn program(&self) -> &'static str {
        self.program
    }

    /// A flag raised on the first signal.
    pub fn stop_flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.stop.clone()
    }
}

/// The exit status a shell gives a process ended by `signal` (128 + its
/// number): 130 for SIGINT, 143 for SIGTERM. Commands that stop on a signal
/// exit with it after stopping cleanly, so scripts see the interruption.
pub fn exit_code(signal: &str) -> u8 {
    match signal {
        "SIGINT" => 130,
        _ => 143,
    }
}
