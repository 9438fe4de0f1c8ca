//! A load run: schedule arrivals, send them, record what came back.
//!
//! A dedicated thread walks the [`Schedule`] and sleeps until each
//! arrival's time (a thread sleep is precise to tens of microseconds; the
//! async timer only to a millisecond, which would show up in every
//! latency). It then takes one of the `connections` in-flight permits —
//! waiting, in arrival order, while all are busy — and spawns the request
//! on the async runtime. Latency is measured from the scheduled time, so a
//! request that waited for a permit carries that wait: a slow system cannot
//! slow the generator down and hide its own queueing (no coordinated
//! omission).
//!
//! The run ends at the end of the measured window; requests scheduled in it
//! are still sent and awaited (the drain), up to one request timeout past
//! the window. Whatever is still unsent then is counted as an `unsent`
//! error, never dropped silently.
//!
//! Over the measured window a probe thread and a monitor task measure how
//! contended the host is ([`crate::contention`]): the probe's own sleeps,
//! `/proc`, and every service's lateness counters read at the window's start
//! and end.
//!
//! Arrival times, root picks and payload sizes follow the seed alone; trace
//! and span ids mix in a run id as well (fresh per run unless given), so two
//! runs with the same seed send the same workload under different traces.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Uri};
use palette_model::Sketch;
use palette_model::model::ApiId;
use palette_runtime::SystemConfig;
use palette_runtime::config::{ConfigError, PeerHosts, ServiceConfig};
use palette_trace::rng::Rng;
use tokio::sync::Semaphore;

use crate::arrivals::{Arrivals, Schedule};
use crate::client::{Outcome, Pool, op_path, traceparent};
use crate::contention::{self, HostFigures};
use crate::error::LoadError;
use crate::record::{Recorder, Times};
use crate::report::{LoadReport, RateDeviation};

/// Where the system's services are reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every service on this host at its port (a local `palette up`).
    Host(String),
    /// Every service at its own `host:port` (inside compose or Kubernetes).
    Dns,
}

/// How to load a system.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// How arrivals are timed: Poisson at a rate, or replayed traces.
    pub arrivals: Arrivals,
    /// The measured window.
    pub duration: Duration,
    /// Sent before the window and not recorded: connections open, caches
    /// and the system's queues reach their steady state.
    pub warmup: Duration,
    /// At most this many requests in flight; more arrivals wait for one to
    /// finish (and their wait counts in their latency).
    pub connections: usize,
    /// Seeds arrival times, root API picks, payload sizes and trace ids.
    pub seed: u64,
    /// Where the services are.
    pub target: Target,
    /// A request without a complete response after this long fails as a timeout.
    pub timeout: Duration,
    /// Check every target's `/healthz` before starting, so a system that is
    /// not running gives one clear error instead of a table of failures.
    pub health_check: bool,
    /// Width of a timeline interval. `None`: 5 s with a profile (a window
    /// that holds enough arrivals to tell the curve from noise), else about
    /// 30 intervals over the window.
    pub window: Option<Duration>,
    /// Mixed into trace and span ids (not into arrivals, root picks or
    /// payloads, which the seed alone decides), so two runs with the same
    /// seed never share a trace id and their spans can be told apart.
    /// `None`: a fresh one per run, from the OS's randomness and the clock;
    /// `Some`: this one (trace ids then repeat for the same seed and id).
    pub run_id: Option<u64>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            arrivals: Arrivals::Poisson { rate: 10.0 },
            duration: Duration::from_secs(60),
            warmup: Duration::from_secs(5),
            connections: 256,
            seed: 1,
            target: Target::Host("127.0.0.1".into()),
            timeout: Duration::from_secs(30),
            health_check: true,
            window: None,
            run_id: None,
        }
    }
}

impl LoadOptions {
    /// Rejects options no run can use.
    pub fn validate(&self) -> Result<(), LoadError> {
        let usage = |m: String| Err(LoadError::Usage(m));
        match &self.arrivals {
            Arrivals::Poisson { rate } if !(rate.is_finite() && *rate > 0.0) => {
                return usage(format!("--rate must be a positive number of requests per second, not {rate}"));
            }
            Arrivals::Replay { speed, .. } if !(speed.is_finite() && *speed > 0.0) => {
                return usage(format!("--speed must be a positive factor, not {speed}"));
            }
            Arrivals::Profile { profile } if (profile.duration_s() - self.duration.as_secs_f64()).abs() > 1e-6 => {
                return usage(format!(
                    "the profile was made for a {}s window, not --duration {}s",
                    profile.duration_s(),
                    self.duration.as_secs_f64()
                ));
            }
            _ => {}
        }
        if let Some(w) = self.window {
            if w < Duration::from_millis(100) {
                return usage(format!("--window must be at least 100ms, not {w:?}"));
            }
            if self.duration.as_nanos() / w.as_nanos() > 10_000 {
                return usage(format!(
                    "--window {w:?} cuts --duration {:?} into more than 10000 windows; use a wider one",
                    self.duration
                ));
            }
        }
        if self.duration.is_zero() {
            return usage("--duration must be longer than zero".into());
        }
        if self.duration + self.warmup > Duration::from_secs(366 * 86_400) {
            return usage("--duration and --warmup together must be at most a year".into());
        }
        if !(1..=100_000).contains(&self.connections) {
            return usage(format!("--connections must be between 1 and 100000, not {}", self.connections));
        }
        if self.timeout.is_zero() {
            return usage("--timeout must be longer than zero".into());
        }
        if let Target::Host(h) = &self.target
            && h.trim().is_empty()
        {
            return usage("--target-host must not be empty".into());
        }
        Ok(())
    }
}

impl LoadOptions {
    /// The timeline's interval, ns: `window`, else 5 s for a profile, else
    /// `None` (the recorder's ~30 intervals).
    pub fn timeline_step_ns(&self) -> Option<u64> {
        match (self.window, &self.arrivals) {
            (Some(w), _) => Some(w.as_nanos() as u64),
            (None, Arrivals::Profile { .. }) => Some(5_000_000_000),
            (None, _) => None,
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Sees a run as it goes. Called from the async side a few times a second.
pub trait LoadObserver: Sync {
    /// Where the run is.
    fn progress(&self, _p: &Progress) {}
    /// Polled as often: `true` ends the run early (its report says so).
    fn stop_requested(&self) -> bool {
        false
    }
}

/// Observes nothing.
pub struct NoObserver;
impl LoadObserver for NoObserver {}

/// A snapshot of a running load.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Since the run started.
    pub elapsed: Duration,
    /// Warm-up plus the measured window.
    pub planned: Duration,
    /// Still in the warm-up.
    pub warming_up: bool,
    /// Arrivals scheduled and sent so far.
    pub sent: u64,
    /// Requests answered with 2xx, and failed (unsent ones included).
    pub ok: u64,
    pub errors: u64,
    /// Requests on the wire now.
    pub in_flight: u64,
}

/// Reads `system.json`, or `system.json` in a directory.
pub fn load_system(path: &Path) -> Result<(SystemConfig, PathBuf), LoadError> {
    let file = if path.is_dir() { path.join("system.json") } else { path.to_path_buf() };
    if !file.exists() {
        return Err(LoadError::NotFound { path: file });
    }
    let config = SystemConfig::load(&file).map_err(|e| match e {
        ConfigError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            LoadError::NotFound { path: file.clone() }
        }
        e => LoadError::Config(e),
    })?;
    Ok((config, file))
}

/// Everything needed to call one root API.
struct Root {
    /// The API, to name it and to map arrivals to this entry.
    api: ApiId,
    /// Connections to the service serving it (shared by its other root
    /// APIs): one pool per instance of a replicated service, taken in turn
    /// per request.
    pools: Vec<Arc<Pool>>,
    /// Whose turn it is among `pools`.
    next: AtomicUsize,
    /// `/op/{operation}`, encoded once.
    uri: Uri,
    /// Request body sizes, when the traces recorded them.
    request_bytes: Option<Sketch>,
}

/// State shared by the scheduler thread, the request tasks and the async side.
struct Shared {
    /// In `model.roots` order; arrivals and results refer to them by index.
    roots: Vec<Root>,
    /// Results; locked only for the moment of recording one.
    recorder: Mutex<Recorder>,
    /// The in-flight bound: one permit per request on the wire.
    permits: Arc<Semaphore>,
    /// Per request, so a hung system cannot hold permits forever.
    timeout: Duration,
    /// The run's time zero.
    t0: Instant,
    /// Zeros that request bodies are cut from.
    payload: Bytes,
    /// Counters for progress reports, readable without the recorder's lock.
    sent: AtomicU64,
    in_flight: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    /// Set to end the run early (Ctrl-C, or the run's future was dropped).
    stop: AtomicBool,
}

impl Shared {
    fn since_t0(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.t0).as_nanos() as u64
    }
}

/// Where the instances of `service` are reached (`host:port` each).
fn service_addresses(service: &ServiceConfig, target: &Target) -> Vec<String> {
    // On one host instance i of a replicated service listens on port + i;
    // by DNS the name stands for every instance (compose, Kubernetes).
    match target {
        Target::Host(h) if h.contains(':') && !h.starts_with('[') => {
            service.ports().map(|p| format!("[{h}]:{p}")).collect()
        }
        Target::Host(h) => service.ports().map(|p| format!("{h}:{p}")).collect(),
        // A replicated service's name resolves to every instance
        // (compose replicas, a headless Kubernetes Service): resolved
        // once here, so requests are spread per request, not per connection.
        Target::Dns if service.instances > 1 => {
            let name = service.peer_address(PeerHosts::Dns);
            let mut all: Vec<String> = std::net::ToSocketAddrs::to_socket_addrs(name.as_str())
                .map(|a| a.map(|a| a.to_string()).collect())
                .unwrap_or_default();
            all.sort();
            all.dedup();
            if all.is_empty() { vec![name] } else { all }
        }
        Target::Dns => vec![service.peer_address(PeerHosts::Dns)],
    }
}

/// A run id nobody else has: the OS's randomness (std's hasher keys) with
/// the clock and the process id.
fn fresh_run_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}

/// What the monitor task read over the window.
#[derive(Default)]
struct Monitored {
    /// Every service's lateness counters at the window's start and end
    /// (`None`: the run stopped before the window began).
    first: Option<Vec<Option<palette_runtime::lateness::LatenessReport>>>,
    last: Option<Vec<Option<palette_runtime::lateness::LatenessReport>>>,
    /// Requests on the wire at the window's end.
    in_flight: u64,
}

/// Waits for `at`; `false` if the run was stopped first.
async fn wait_until(shared: &Shared, at: Instant) -> bool {
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= at {
            return true;
        }
        tokio::time::sleep((at - now).min(Duration::from_millis(50))).await;
    }
}

/// Reads the services' lateness counters at the window's start and end
/// (or when the run stops), and what is in flight at its end.
async fn monitor(shared: Arc<Shared>, pools: Vec<Arc<Pool>>, start: Instant, end: Instant) -> Monitored {
    if !wait_until(&shared, start).await {
        return Monitored::default();
    }
    let first = contention::read_lateness(&pools).await;
    wait_until(&shared, end).await;
    let in_flight = shared.in_flight.load(Ordering::Relaxed);
    let last = contention::read_lateness(&pools).await;
    Monitored { first: Some(first), last: Some(last), in_flight }
}

/// The roots the system is loaded through, in `model.roots` order.
fn roots(system: &SystemConfig, path: &Path, opts: &LoadOptions) -> Result<Vec<Root>, LoadError> {
    let model = &system.model;
    if model.roots.is_empty() {
        return Err(LoadError::BadSystem {
            path: path.to_path_buf(),
            message: "the system has no root API to send requests to (model.roots is empty)".into(),
        });
    }
    let mut pools: Vec<Arc<Pool>> = Vec::new();
    let mut roots = Vec::with_capacity(model.roots.len());
    for r in &model.roots {
        let Some(s) = system.service_of(r.api) else {
            return Err(LoadError::BadSystem {
                path: path.to_path_buf(),
                message: format!("no service serves root API `{}`", model.api_name(r.api)),
            });
        };
        let root_pools = service_addresses(&system.services[s], &opts.target)
            .into_iter()
            .map(|address| match pools.iter().find(|p| p.address == address) {
                Some(p) => p.clone(),
                None => {
                    let p = Arc::new(Pool::new(address, opts.connections));
                    pools.push(p.clone());
                    p
                }
            })
            .collect();
        let a = &model.apis[r.api as usize];
        let uri: Uri = op_path(&a.operation).parse().map_err(|e| LoadError::BadSystem {
            path: path.to_path_buf(),
            message: format!("operation `{}` makes no valid path ({e})", a.operation),
        })?;
        roots.push(Root {
            api: r.api,
            pools: root_pools,
            next: AtomicUsize::new(0),
            uri,
            request_bytes: a.request_bytes.clone(),
        });
    }
    Ok(roots)
}

/// Runs `opts` against `system` (read from `path`, named in errors) and
/// reports. Async, so `palette run` can drive it inside its own runtime;
/// the runtime must be multi-threaded or be driven by another thread while
/// this runs (arrivals are scheduled on a thread of their own, see the
/// module docs). [`run_load_blocking`] brings its own runtime.
pub async fn run_load(
    opts: &LoadOptions,
    system: &SystemConfig,
    path: &Path,
    observer: &dyn LoadObserver,
) -> Result<LoadReport, LoadError> {
    opts.validate()?;
    let roots = roots(system, path, opts)?;
    if opts.health_check {
        let mut seen: Vec<&str> = Vec::new();
        for r in &roots {
            for pool in &r.pools {
                if seen.contains(&pool.address.as_str()) {
                    continue;
                }
                seen.push(&pool.address);
                if let Err(why) = pool.health(Duration::from_secs(5)).await {
                    let service = system.service_of(r.api).map(|s| system.services[s].name.clone()).unwrap_or_default();
                    return Err(LoadError::Unreachable { service, address: pool.address.clone(), why });
                }
            }
        }
    }
    let max_body = roots
        .iter()
        .filter_map(|r| r.request_bytes.as_ref().map(|s| s.quantile(1.0).max(0.0) as u64))
        .max()
        .unwrap_or(0)
        .min(system.limits.max_body_bytes);
    let names: Vec<String> = roots.iter().map(|r| system.model.api_name(r.api)).collect();
    let targets: Vec<String> =
        roots.iter().map(|r| r.pools.iter().map(|p| p.address.as_str()).collect::<Vec<_>>().join(",")).collect();
    let warmup_ns = opts.warmup.as_nanos() as u64;
    let duration_ns = opts.duration.as_nanos() as u64;
    let step_ns = opts.timeline_step_ns();
    // Slots that tile the report's windows, so each window's offered count
    // is the curve's integral to within one (see `arrivals`).
    let slot_ns = match step_ns {
        Some(w) => gcd(w, crate::arrivals::SLOT_NS),
        None => crate::arrivals::SLOT_NS,
    };
    let schedule =
        Schedule::new(&opts.arrivals, &system.model, warmup_ns, duration_ns, opts.seed).with_slot_ns(slot_ns);
    let run_id = opts.run_id.unwrap_or_else(fresh_run_id);
    // Every service instance's lateness counters, read at the window's ends.
    let mut lateness_addresses: Vec<String> =
        system.services.iter().flat_map(|s| service_addresses(s, &opts.target)).collect();
    lateness_addresses.dedup();
    let lateness_pools: Vec<Arc<Pool>> = lateness_addresses.iter().map(|a| Arc::new(Pool::new(a.clone(), 1))).collect();
    // A short lead-in, so the first arrivals are not late before the
    // scheduler thread is even running. The wall clock of `t0` places the
    // measured window among the services' spans (which use the wall clock).
    let lead_in = Duration::from_millis(20);
    let (unix_now, now) = (SystemTime::now(), Instant::now());
    let t0 = now + lead_in;
    let unix_t0 = unix_now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from((d + lead_in).as_nanos()).unwrap_or(u64::MAX));
    // Exactly the window the schedule marks arrivals measured in and the
    // recorder records.
    let measured_from_unix_ns = unix_t0.saturating_add(warmup_ns);
    let measured_until_unix_ns = measured_from_unix_ns.saturating_add(duration_ns);
    let (window_start, window_end) = (t0 + opts.warmup, t0 + opts.warmup + opts.duration);
    let shared = Arc::new(Shared {
        roots,
        recorder: Mutex::new(Recorder::new(
            system.model.roots.len(),
            (warmup_ns, warmup_ns + duration_ns),
            (opts.warmup + opts.duration + opts.timeout * 2).as_nanos() as u64,
            step_ns,
        )),
        permits: Arc::new(Semaphore::new(opts.connections)),
        timeout: opts.timeout,
        t0,
        payload: Bytes::from(vec![0u8; max_body as usize]),
        sent: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let handle = tokio::runtime::Handle::current();
    let scheduler_shared = shared.clone();
    let hard_stop = t0 + opts.warmup + opts.duration + opts.timeout;
    let seed = opts.seed;
    std::thread::Builder::new()
        .name("palette-load".into())
        .spawn(move || {
            schedule_arrivals(&scheduler_shared, schedule, &handle, hard_stop, seed, run_id);
            let _ = done_tx.send(());
        })
        .map_err(LoadError::Runtime)?;
    // If this future is dropped mid-run, the scheduler thread stops sending
    // (and the probe and the monitor stop).
    let _stop_on_drop = StopOnDrop(&shared.stop);
    let (probe_tx, probe_rx) = tokio::sync::oneshot::channel::<HostFigures>();
    let probe_shared = shared.clone();
    let probe_stop = move || probe_shared.stop.load(Ordering::Relaxed);
    std::thread::Builder::new()
        .name("palette-probe".into())
        .spawn(move || {
            let _ = probe_tx.send(contention::probe(window_start, window_end, &probe_stop));
        })
        .map_err(LoadError::Runtime)?;
    let monitored = tokio::spawn(monitor(shared.clone(), lateness_pools, window_start, window_end));
    let planned = opts.warmup + opts.duration;
    let snapshot = |shared: &Shared| Progress {
        elapsed: shared.t0.elapsed(),
        planned,
        warming_up: shared.t0.elapsed() < opts.warmup,
        sent: shared.sent.load(Ordering::Relaxed),
        ok: shared.ok.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        in_flight: shared.in_flight.load(Ordering::Relaxed),
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let on_tick = |shared: &Shared| {
        observer.progress(&snapshot(shared));
        if observer.stop_requested() {
            shared.stop.store(true, Ordering::Relaxed);
        }
    };
    loop {
        tokio::select! {
            _ = &mut done_rx => break,
            _ = tick.tick() => on_tick(&shared),
        }
    }
    // The drain: every permit back means every request has finished.
    let drain = shared.permits.acquire_many(opts.connections as u32);
    tokio::pin!(drain);
    loop {
        tokio::select! {
            _ = &mut drain => break,
            _ = tick.tick() => on_tick(&shared),
        }
    }
    // The contention figures are of the whole window: a run whose last
    // arrival came early waits for its end.
    let figures = async { (probe_rx.await.unwrap_or_default(), monitored.await.unwrap_or_default()) };
    tokio::pin!(figures);
    let (host, monitored) = loop {
        tokio::select! {
            f = &mut figures => break f,
            _ = tick.tick() => on_tick(&shared),
        }
    };
    observer.progress(&snapshot(&shared));
    let elapsed_s = shared.t0.elapsed().as_secs_f64();
    let recorder = shared.recorder.lock().unwrap_or_else(|p| p.into_inner());
    let (apis, total, send_lag, timeline_step_s, mut timeline) = recorder.summarise(&names, &targets);
    for i in &mut timeline {
        i.target_rate = opts.arrivals.target_rate(i.start_s, i.start_s + i.length_s);
    }
    let rate_deviation = match opts.arrivals {
        Arrivals::Profile { .. } => RateDeviation::worst(&timeline),
        _ => None,
    };
    let services = match (&monitored.first, &monitored.last) {
        (Some(first), Some(last)) => contention::services_lateness(&lateness_addresses, first, last),
        _ => None,
    };
    let contention = contention::contention(host, send_lag.map(|l| l.p99_ms), services);
    Ok(LoadReport {
        system: system.name.clone(),
        arrivals: opts.arrivals.name(),
        profile: match &opts.arrivals {
            Arrivals::Profile { profile } => Some(profile.spec().to_string()),
            _ => None,
        },
        rate_deviation,
        requested_rate: opts.arrivals.rate(),
        duration_s: opts.duration.as_secs_f64(),
        warmup_s: opts.warmup.as_secs_f64(),
        connections: opts.connections,
        seed: opts.seed,
        run_id: format!("{run_id:016x}"),
        measured_from_unix_ns,
        measured_until_unix_ns,
        elapsed_s,
        stopped_early: shared.stop.load(Ordering::Relaxed),
        apis,
        total,
        send_lag,
        timeline_step_s,
        timeline,
        in_flight_at_end: monitored.in_flight,
        contention,
    })
}

/// Tells the scheduler thread to stop when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// [`run_load`] on a runtime of its own (one worker per core).
pub fn run_load_blocking(
    opts: &LoadOptions,
    system: &SystemConfig,
    path: &Path,
    observer: &dyn LoadObserver,
) -> Result<LoadReport, LoadError> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(LoadError::Runtime)?;
    rt.block_on(run_load(opts, system, path, observer))
}

/// The scheduler thread: sends every arrival at its time, or counts it unsent.
fn schedule_arrivals(
    shared: &Arc<Shared>,
    mut schedule: Schedule,
    handle: &tokio::runtime::Handle,
    hard_stop: Instant,
    seed: u64,
    run_id: u64,
) {
    let mut by_api = vec![usize::MAX; shared.roots.iter().map(|r| r.api as usize + 1).max().unwrap_or(0)];
    for (i, r) in shared.roots.iter().enumerate() {
        by_api[r.api as usize] = i;
    }
    let index_of = |api: ApiId| by_api[api as usize];
    // Payload sizes: deterministic for the seed, independent of the
    // arrival streams. Trace and span ids: for the seed and the run, so no
    // two runs share one.
    let mut rng = Rng::new(seed ^ 0x7ACE_1D5E_ED00_0001);
    let mut ids = {
        let mut key = [0u8; 24];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&run_id.to_le_bytes());
        key[16..].copy_from_slice(b"trace-id");
        Rng::new(palette_trace::span::hash64(&key))
    };
    for arrival in schedule.by_ref() {
        let at = shared.t0 + Duration::from_nanos(arrival.at_ns);
        let now = Instant::now();
        if now >= hard_stop || shared.stop.load(Ordering::Relaxed) {
            if arrival.measured && at <= now {
                record_unsent(shared, index_of(arrival.api), arrival.at_ns);
            }
            break;
        }
        if at > now {
            std::thread::sleep(at - now);
        }
        let permit = match shared.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => match handle.block_on(shared.permits.clone().acquire_owned()) {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let i = index_of(arrival.api);
        let root = &shared.roots[i];
        let size = root.request_bytes.as_ref().map_or(0, |s| s.sample(rng.f64()).max(0.0) as usize);
        let body = shared.payload.slice(..size.min(shared.payload.len()));
        let trace_id = ((ids.next_u64() as u128) << 64 | ids.next_u64() as u128).max(1);
        let span_id = ids.next_u64().max(1);
        // Warm-up requests go unsampled: the services do not record them,
        // so the spans hold the measured window's traffic alone, and a
        // compare of them is not swayed by cold connections.
        let tp =
            HeaderValue::from_str(&traceparent(trace_id, span_id, arrival.measured)).expect("hex is a valid header");
        shared.sent.fetch_add(1, Ordering::Relaxed);
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        let task_shared = shared.clone();
        handle.spawn(async move {
            let s = &task_shared;
            let sent = Instant::now();
            let root = &s.roots[i];
            let headers = [("traceparent", tp)];
            let pool = &root.pools[root.next.fetch_add(1, Ordering::Relaxed) % root.pools.len()];
            let call = pool.send(Method::POST, &root.uri, &headers, body);
            let outcome = tokio::time::timeout(s.timeout, call).await.unwrap_or(Outcome::Timeout);
            let done = Instant::now();
            let counter = if outcome == Outcome::Ok { &s.ok } else { &s.errors };
            counter.fetch_add(1, Ordering::Relaxed);
            s.in_flight.fetch_sub(1, Ordering::Relaxed);
            let times = Times { scheduled: arrival.at_ns, sent: s.since_t0(sent), done: s.since_t0(done) };
            s.recorder.lock().unwrap_or_else(|p| p.into_inner()).finished(i, arrival.measured, times, outcome);
            drop(permit);
        });
    }
    // Arrivals already due when the run stopped were never sent; later
    // ones (a run stopped early) were never part of it.
    let now_ns = shared.since_t0(Instant::now());
    for arrival in schedule.take_while(|a| a.at_ns <= now_ns) {
        if arrival.measured {
            record_unsent(shared, index_of(arrival.api), arrival.at_ns);
        }
    }
}

fn record_unsent(shared: &Shared, i: usize, at_ns: u64) {
    shared.errors.fetch_add(1, Ordering::Relaxed);
    shared.recorder.lock().unwrap_or_else(|p| p.into_inner()).unsent(i, at_ns);
}
