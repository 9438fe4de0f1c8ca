//! Local work: sleep, cpu (calibrated matrix multiply) or memory (strided buffer touches).
//!
//! The model says how long each piece of an execution's local work took in
//! production; a [`Worker`] spends that long here in one of three ways:
//!
//! - **sleep**: waits, precisely also below tokio's 1 ms timer granularity. A
//!   dedicated timer thread holds every pending deadline; it parks until
//!   shortly before the earliest one and spins the rest, then wakes the
//!   waiting task. How early it wakes up follows how late the kernel
//!   actually wakes it (timer slack, load), so the spinning stays short.
//! - **cpu**: multiplies small matrices until the thread has had the time
//!   *on a core* (its CPU time, not the wall clock), in pieces of about 10 µs
//!   sized by the calibration at start-up. On an idle core that is the time
//!   asked for, whatever the core's speed at the moment (on shared VMs it
//!   varies by 2×); on a busy one it takes longer, as real work does.
//! - **memory**: read-modify-writes a buffer larger than a core's private
//!   caches one cache line apart, so every touch moves a line, again until
//!   the thread has had the time on a core, competing for caches and memory
//!   bandwidth.
//!
//! CPU and memory work run on tokio's blocking pool, never on the reactor
//! threads that serve requests.
//!
//! Every piece of work, whatever its mode, is timed from the call to its
//! return, and how late it ended against the time asked is counted in the
//! worker's [`Lateness`] (`GET /stats/lateness`): on a contended host work
//! ends late, and that is how a service sees it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::{Limits, WorkMode};
use crate::lateness::{Lateness, LatenessReport};

/// Side of the matrices CPU work multiplies: small enough to stay in L1, so
/// the work is arithmetic, not memory traffic.
const N: usize = 16;
/// Largest buffer memory work uses, whatever the limit allows: bigger than
/// any core's private caches, so touches leave the core.
const MEMORY_BUFFER_CAP: u64 = 16 << 20;
/// Distance between consecutive touches, in 8-byte words: one cache line,
/// so each touch moves a line and the work streams through the caches. (A
/// page-plus-line stride, tried first, makes every touch a TLB miss; in
/// `palette bench work` it then ran ~40 % faster than calibrated, run after
/// run — likely huge pages backing the buffer only after calibration.)
const STRIDE_WORDS: usize = 64 / 8;
/// Calibration runs in bursts of back-to-back short runs, the bursts
/// spread out in time; the fastest run counts, since other load only ever
/// slows a run down. Short runs: on a busy machine some still get a core
/// to themselves. Back to back: memory work ran ~2× slower right after a
/// pause than in a steady stream. Spread: on a shared (virtual) machine a
/// core's speed changes for stretches of tens of milliseconds.
const CALIBRATION_BURSTS: u32 = 4;
const CALIBRATION_RUNS_PER_BURST: u32 = 8;
/// Length of one calibration run.
const CALIBRATION_RUN: Duration = Duration::from_millis(1);
/// Pause between bursts: calibration takes ~0.25 s in all.
const CALIBRATION_PAUSE: Duration = Duration::from_millis(50);

/// What calibration found, for reports and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Calibration {
    /// 16×16 f64 matrix multiplies per microsecond on an idle core.
    pub cpu_multiplies_per_us: f64,
    /// Buffer touches per microsecond on an idle core.
    pub memory_touches_per_us: f64,
    /// Size of memory work's buffer.
    pub memory_buffer_bytes: u64,
    /// How long before a deadline the timer thread currently wakes up to
    /// spin (follows the kernel's wake-up lateness).
    pub sleep_spin_ns: u64,
}

/// Does an execution's local work. Shared by every request of a process;
/// cheap to clone.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    /// Calibrated: how many multiplies CPU work does per nanosecond asked.
    cpu_multiplies_per_ns: f64,
    /// Shared with the blocking threads doing memory work.
    memory: Arc<Memory>,
    /// Serves every sleep of the process.
    timer: Timer,
    /// How late cpu and memory work end, learned (a running average of
    /// recent overshoots, nanoseconds): the hand-back from the pool thread
    /// to the waiting task, which the work cannot see. Work stops this much
    /// early, as sleeps fire early by their learned wake delay.
    pool_lateness_ns: AtomicU64,
    /// How late each piece of work ended against its asked end, per mode:
    /// the process's own measure of a contended host.
    lateness: Lateness,
}

/// The most pool lateness that is corrected for.
const MAX_POOL_LATENESS_NS: u64 = 200_000;

impl Worker {
    /// Calibrates CPU work and sizes memory work's buffer within `limits`.
    /// Takes about a quarter of a second.
    pub fn new(limits: &Limits) -> Worker {
        let mut memory = Memory::new(limits.max_memory_work_bytes);
        let rates = calibrate(&[&cpu_work, &|n| memory.touch(n)]);
        memory.touches_per_ns = rates[1];
        let cpu_multiplies_per_ns = rates[0];
        Worker {
            inner: Arc::new(Inner {
                cpu_multiplies_per_ns,
                memory: Arc::new(memory),
                timer: Timer::start(),
                pool_lateness_ns: AtomicU64::new(0),
                lateness: Lateness::new(),
            }),
        }
    }

    /// What calibration found.
    pub fn calibration(&self) -> Calibration {
        let i = &self.inner;
        Calibration {
            cpu_multiplies_per_us: i.cpu_multiplies_per_ns * 1e3,
            memory_touches_per_us: i.memory.touches_per_ns * 1e3,
            memory_buffer_bytes: i.memory.words.len() as u64 * 8,
            sleep_spin_ns: i.timer.shared.spin_ns.load(Ordering::Relaxed),
        }
    }

    /// How late work has ended so far, per mode (cumulative since start).
    pub fn lateness(&self) -> LatenessReport {
        self.inner.lateness.report()
    }

    /// Spends `ns` nanoseconds of work in `mode`. CPU and memory work run
    /// off the async reactor; sleep is precise below a millisecond too.
    /// How late it ends is counted (see [`Worker::lateness`]).
    pub async fn work(&self, mode: WorkMode, ns: u64) {
        if ns == 0 {
            return;
        }
        let asked = Instant::now();
        self.spend(mode, ns).await;
        let late = u64::try_from(asked.elapsed().as_nanos()).unwrap_or(u64::MAX).saturating_sub(ns);
        self.inner.lateness.record(mode, late);
    }

    async fn spend(&self, mode: WorkMode, ns: u64) {
        match mode {
            WorkMode::Sleep => self.inner.timer.sleep(Duration::from_nanos(ns)).await,
            // The wait for a blocking-pool thread counts as part of the
            // work: it is time the request spends, and at low load it is
            // the only gap between the time asked for and the time taken.
            WorkMode::Cpu => {
                let piece = piece_size(self.inner.cpu_multiplies_per_ns);
                let (asked, on_core) = (Instant::now(), self.on_core_ns(ns));
                let _ = tokio::task::spawn_blocking(move || on_core_for(on_core, asked, || cpu_work(piece))).await;
                self.learn_pool_lateness(asked, on_core);
            }
            WorkMode::Memory => {
                let piece = piece_size(self.inner.memory.touches_per_ns);
                let memory = self.inner.memory.clone();
                let (asked, on_core) = (Instant::now(), self.on_core_ns(ns));
                let _ = tokio::task::spawn_blocking(move || on_core_for(on_core, asked, || memory.touch(piece))).await;
                self.learn_pool_lateness(asked, on_core);
            }
        }
    }

    /// The time to spend on a core for `ns` of work: less the learned lateness
    /// (never below half the work).
    fn on_core_ns(&self, ns: u64) -> u64 {
        ns.saturating_sub(self.inner.pool_lateness_ns.load(Ordering::Relaxed).min(ns / 2))
    }

    /// Folds how late this piece of work (asked to spend `on_core` on a
    /// core) ended into the running average.
    fn learn_pool_lateness(&self, asked: Instant, on_core: u64) {
        let late = (asked.elapsed().as_nanos() as u64).saturating_sub(on_core);
        let late = late.min(MAX_POOL_LATENESS_NS);
        let old = self.inner.pool_lateness_ns.load(Ordering::Relaxed);
        // An average over about 16 pieces: quick to learn, slow to be fooled by one.
        let new = (old * 15 + late) / 16;
        self.inner.pool_lateness_ns.store(new, Ordering::Relaxed);
    }
}

/// One kind of work being calibrated.
struct Calibrating<'a> {
    work: &'a dyn Fn(u64),
    /// Units per run of about [`CALIBRATION_RUN`].
    units: u64,
    /// Fastest run so far, nanoseconds.
    best_ns: f64,
}

impl<'a> Calibrating<'a> {
    /// Warms up (caches, page tables, clock) while sizing a run.
    fn new(work: &'a dyn Fn(u64)) -> Calibrating<'a> {
        let mut units = 16u64;
        loop {
            let t = Instant::now();
            work(units);
            let took = t.elapsed();
            if took >= CALIBRATION_RUN / 4 || units >= 1 << 40 {
                let scale = CALIBRATION_RUN.as_secs_f64() / took.as_secs_f64().max(1e-9);
                let units = ((units as f64 * scale) as u64).max(1);
                return Calibrating { work, units, best_ns: f64::MAX };
            }
            units *= 4;
        }
    }

    fn run(&mut self) {
        let t = Instant::now();
        (self.work)(self.units);
        self.best_ns = self.best_ns.min(t.elapsed().as_nanos().max(1) as f64);
    }

    /// Units per nanosecond of the fastest run.
    fn rate(&self) -> f64 {
        self.units as f64 / self.best_ns
    }
}

/// Units of work per nanosecond of each `works[i](units)`: the fastest of
/// its runs (see [`CALIBRATION_BURSTS`]).
fn calibrate(works: &[&dyn Fn(u64)]) -> Vec<f64> {
    let mut c: Vec<Calibrating> = works.iter().map(|w| Calibrating::new(*w)).collect();
    for burst in 0..CALIBRATION_BURSTS {
        if burst > 0 {
            std::thread::sleep(CALIBRATION_PAUSE);
        }
        for w in &mut c {
            for _ in 0..CALIBRATION_RUNS_PER_BURST {
                w.run();
            }
        }
    }
    c.iter().map(Calibrating::rate).collect()
}

type Matrix = [[f64; N]; N];

fn multiply(a: &Matrix, b: &Matrix, c: &mut Matrix) {
    for (ci, ai) in c.iter_mut().zip(a) {
        *ci = [0.0; N];
        for (&aik, bk) in ai.iter().zip(b) {
            for (cij, &bkj) in ci.iter_mut().zip(bk) {
                *cij += aik * bkj;
            }
        }
    }
}

/// The wall-clock length of one piece of cpu or memory work: the CPU clock
/// is read between pieces, so this bounds how far past its time work ends.
const PIECE_NS: f64 = 10_000.0;

/// Units of work (at the calibrated `rate` per nanosecond) in one piece.
fn piece_size(rate: f64) -> u64 {
    ((PIECE_NS * rate).round() as u64).max(1)
}

/// The calling thread's CPU time, nanoseconds.
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Runs `piece` until this thread has spent `ns` of CPU time on it, less
/// the time since `asked` it took to get here.
fn on_core_for(ns: u64, asked: Instant, piece: impl Fn()) {
    let ns = ns.saturating_sub(asked.elapsed().as_nanos() as u64);
    let start = thread_cpu_ns();
    loop {
        piece();
        if thread_cpu_ns().saturating_sub(start) >= ns {
            return;
        }
    }
}

/// `multiplies` products of two fixed matrices. The inputs and result pass
/// through `black_box`, so none can be hoisted or skipped; the values stay
/// well away from denormals, which would slow some products down.
fn cpu_work(multiplies: u64) {
    let mut a = [[0.0; N]; N];
    let mut b = [[0.0; N]; N];
    for i in 0..N {
        for j in 0..N {
            a[i][j] = 1.0 + (i * N + j) as f64 / 256.0;
            b[i][j] = 0.5 - (i + 2 * j) as f64 / 128.0;
        }
    }
    let mut c = [[0.0; N]; N];
    for _ in 0..multiplies {
        multiply(black_box(&a), black_box(&b), &mut c);
        black_box(&mut c);
    }
}

/// Memory work's buffer. Words are atomics so concurrent work can share one
/// buffer safely; relaxed loads and stores compile to plain moves.
struct Memory {
    /// The buffer: a power of two of words, so the walk wraps with a mask.
    words: Vec<AtomicU64>,
    /// Where the next piece of work starts, so concurrent pieces walk
    /// different parts of the buffer.
    cursor: AtomicUsize,
    /// Calibrated: how many touches memory work does per nanosecond asked.
    touches_per_ns: f64,
}

impl Memory {
    /// A buffer of at most `limit` bytes (a power of two, at least one word),
    /// written once so every page is mapped before calibration.
    fn new(limit: u64) -> Memory {
        let bytes = limit.clamp(8, MEMORY_BUFFER_CAP);
        let words = 1usize << (bytes / 8).ilog2();
        Memory {
            words: (0..words as u64).map(AtomicU64::new).collect(),
            cursor: AtomicUsize::new(0),
            touches_per_ns: 0.0,
        }
    }

    /// `touches` read-modify-writes, a stride apart: with a power-of-two
    /// buffer and a stride of one cache line, the walk visits every line
    /// before it repeats.
    fn touch(&self, touches: u64) {
        let mask = self.words.len() - 1;
        let steps = STRIDE_WORDS.wrapping_mul(touches as usize);
        let mut at = self.cursor.fetch_add(steps, Ordering::Relaxed) & mask;
        for _ in 0..touches {
            let w = &self.words[at];
            w.store(w.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
            at = (at + STRIDE_WORDS) & mask;
        }
    }
}

/// The precise sleep: deadlines served by one thread that parks and spins.
struct Timer {
    /// Shared with the timer thread, which stops when the timer is dropped.
    shared: Arc<TimerShared>,
}

struct TimerShared {
    state: Mutex<TimerState>,
    /// Wakes the timer thread for an earlier deadline or to stop.
    wake: Condvar,
    /// Deadlines are nanoseconds since this instant.
    epoch: Instant,
    /// The earliest pending deadline (`u64::MAX`: none), readable without
    /// the lock, so the spinning thread notices an earlier deadline added
    /// meanwhile.
    earliest: AtomicU64,
    /// How long before a deadline the thread wakes to spin.
    spin_ns: AtomicU64,
    stop: AtomicBool,
    /// How much earlier than asked the timer fires, so that the sleeping
    /// task — woken on a reactor thread that may be parked, on a core that
    /// may be idle — resumes on time: adjusted after every sleep so that
    /// sleeps end on time on average.
    early_ns: AtomicU64,
}

struct TimerState {
    /// Sleeps not yet woken, earliest first.
    pending: BinaryHeap<Reverse<Pending>>,
    /// Orders deadlines that are equal.
    seq: u64,
}

struct Pending {
    /// When to wake, in nanoseconds since the timer's epoch.
    deadline_ns: u64,
    /// Registration order, breaking ties between equal deadlines.
    seq: u64,
    /// Completes the sleeping task's future, with when it fired.
    done: tokio::sync::oneshot::Sender<Instant>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline_ns, self.seq) == (other.deadline_ns, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline_ns, self.seq).cmp(&(other.deadline_ns, other.seq))
    }
}

/// Spin time before the first wake-up is measured.
const INITIAL_SPIN: Duration = Duration::from_micros(150);
/// Bounds of the spin time: at least what an idle kernel's wake-up takes,
/// at most what a loaded one's can (beyond that, spinning only burns CPU).
const MIN_SPIN: Duration = Duration::from_micros(20);
const MAX_SPIN: Duration = Duration::from_millis(1);
/// Most the timer fires early: a wake delay beyond it is load, which no
/// advance should hide.
const MAX_EARLY: Duration = Duration::from_micros(200);
/// Added to the lateness estimate: wake-ups vary.
const SPIN_HEADROOM: Duration = Duration::from_micros(20);

impl Timer {
    fn start() -> Timer {
        let shared = Arc::new(TimerShared {
            state: Mutex::new(TimerState { pending: BinaryHeap::new(), seq: 0 }),
            wake: Condvar::new(),
            epoch: Instant::now(),
            earliest: AtomicU64::new(u64::MAX),
            spin_ns: AtomicU64::new(INITIAL_SPIN.as_nanos() as u64),
            stop: AtomicBool::new(false),
            early_ns: AtomicU64::new(0),
        });
        let thread = shared.clone();
        std::thread::Builder::new()
            .name("palette-timer".into())
            .spawn(move || thread.run())
            .expect("the timer thread starts");
        Timer { shared }
    }

    async fn sleep(&self, d: Duration) {
        let s = &self.shared;
        let asked = Instant::now();
        let early = Duration::from_nanos(s.early_ns.load(Ordering::Relaxed));
        if d < early / 2 {
            // Shorter than half the wake-up's cost: any sleep would end
            // later than not sleeping ends early.
            return;
        }
        let early = early.min(d);
        let deadline_ns = (s.epoch.elapsed() + d - early).as_nanos() as u64;
        let (done, rx) = tokio::sync::oneshot::channel();
        {
            let mut st = s.lock();
            st.seq += 1;
            let seq = st.seq;
            st.pending.push(Reverse(Pending { deadline_ns, seq, done }));
            if deadline_ns < s.earliest.load(Ordering::SeqCst) {
                s.earliest.store(deadline_ns, Ordering::SeqCst);
                s.wake.notify_one();
            }
        }
        if rx.await.is_ok() && early < d {
            s.learn_lateness(asked.elapsed(), d);
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _guard = self.shared.lock();
        self.shared.wake.notify_one();
    }
}

impl TimerShared {
    fn lock(&self) -> MutexGuard<'_, TimerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the firing advance so that sleeps end on time on average:
    /// by a sixteenth of how late (or early) this one ended, asked for
    /// `asked` and taking `took`. What it corrects is all of a sleep's
    /// lateness (the timer thread's own, the hand-over to the sleeping
    /// task, the task waiting for a reactor thread), not only the part the
    /// timer can see; and the mean rather than the median, since an
    /// execution's latency is a sum of its sleeps and their callees', and
    /// a sum's shift is the sum of the parts' mean shifts.
    fn learn_lateness(&self, took: Duration, asked: Duration) {
        let bound = MAX_EARLY.as_nanos() as i64;
        let late = (took.as_nanos() as i64 - asked.as_nanos() as i64).clamp(-bound, bound);
        let early = self.early_ns.load(Ordering::Relaxed) as i64;
        let next = (early + late / 16).clamp(0, bound);
        self.early_ns.store(next as u64, Ordering::Relaxed);
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn run(&self) {
        let mut late_ns = INITIAL_SPIN.as_nanos() as f64 - SPIN_HEADROOM.as_nanos() as f64;
        let mut st = self.lock();
        while !self.stop.load(Ordering::SeqCst) {
            let now = self.now_ns();
            while st.pending.peek().is_some_and(|p| p.0.deadline_ns <= now) {
                let Reverse(p) = st.pending.pop().expect("peeked");
                // The sleeper may have gone (request cancelled): nothing to wake.
                let _ = p.done.send(Instant::now());
            }
            let next = st.pending.peek().map_or(u64::MAX, |p| p.0.deadline_ns);
            self.earliest.store(next, Ordering::SeqCst);
            if next == u64::MAX {
                st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let spin = self.spin_ns.load(Ordering::Relaxed);
            let wake_at = next.saturating_sub(spin);
            if wake_at > now {
                let (guard, result) =
                    self.wake.wait_timeout(st, Duration::from_nanos(wake_at - now)).unwrap_or_else(|e| e.into_inner());
                st = guard;
                if result.timed_out() {
                    // Track a high quantile of the kernel's lateness: up fast, down slowly.
                    let late = self.now_ns().saturating_sub(wake_at) as f64;
                    late_ns += if late > late_ns { (late - late_ns) / 4.0 } else { (late - late_ns) / 64.0 };
                    let spin = (late_ns + SPIN_HEADROOM.as_nanos() as f64)
                        .clamp(MIN_SPIN.as_nanos() as f64, MAX_SPIN.as_nanos() as f64);
                    self.spin_ns.store(spin as u64, Ordering::Relaxed);
                }
            } else {
                // Spin without the lock, so sleepers can still register.
                drop(st);
                while self.now_ns() < self.earliest.load(Ordering::SeqCst) && !self.stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
                st = self.lock();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timing tests run one at a time: run together they would measure each
    /// other. Other load on the machine remains, hence the generous bounds.
    static TIMING: Mutex<()> = Mutex::new(());

    fn timing() -> MutexGuard<'static, ()> {
        TIMING.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Two reactor threads, like a server on this machine.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    }

    #[test]
    fn calibration_is_quick_and_sane() {
        let _serial = timing();
        let t = Instant::now();
        let w = Worker::new(&Limits::default());
        let took = t.elapsed();
        assert!(took < Duration::from_secs(2), "calibration took {took:?}");
        let c = w.calibration();
        assert!(c.cpu_multiplies_per_us.is_finite() && c.cpu_multiplies_per_us > 1e-3, "{c:?}");
        assert!(c.memory_touches_per_us.is_finite() && c.memory_touches_per_us > 1e-2, "{c:?}");
        assert_eq!(c.memory_buffer_bytes, MEMORY_BUFFER_CAP);
        // Calibrated work takes about the time it was calibrated for (the
        // fastest of a few runs: a loaded machine only makes it slower).
        for (name, rate, run) in [
            ("cpu", w.inner.cpu_multiplies_per_ns, &cpu_work as &dyn Fn(u64)),
            ("memory", w.inner.memory.touches_per_ns, &|n| w.inner.memory.touch(n)),
        ] {
            let target = 20e6;
            let took: Vec<f64> = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    run((target * rate) as u64);
                    t.elapsed().as_nanos() as f64
                })
                .collect();
            let best = took.iter().copied().fold(f64::MAX, f64::min);
            // Below half: work was skipped; above 5×: a wrong rate, not just load.
            assert!(best > 0.5 * target && best < 5.0 * target, "{name}: 20 ms of work took {took:?} ns");
        }
    }

    #[test]
    fn memory_buffers_stay_within_the_limit() {
        for (limit, bytes) in [(0, 8), (100, 64), (4096, 4096), (5000, 4096), (u64::MAX, MEMORY_BUFFER_CAP)] {
            let m = Memory::new(limit);
            assert_eq!(m.words.len() as u64 * 8, bytes, "limit {limit}");
            m.touch(1000);
        }
    }

    #[test]
    fn the_strided_walk_visits_every_cache_line() {
        let m = Memory::new(1 << 16);
        let lines = (1 << 16) / 64;
        m.touch(lines as u64);
        let touched = m.words.iter().enumerate().filter(|(i, w)| w.load(Ordering::Relaxed) != *i as u64).count();
        assert_eq!(touched, lines);
    }

    #[test]
    fn sleep_is_precise_below_a_millisecond() {
        let _serial = timing();
        runtime().block_on(async {
            let w = Worker::new(&Limits::default());
            for target_us in [50u64, 300, 3000] {
                let mut late = Vec::new();
                for _ in 0..40 {
                    let t = Instant::now();
                    w.work(WorkMode::Sleep, target_us * 1000).await;
                    late.push(t.elapsed().as_nanos() as f64 - (target_us * 1000) as f64);
                }
                let min = late.iter().copied().fold(f64::MAX, f64::min);
                // Early by at most the advance that centres wake-ups on the target.
                assert!(min >= -(MAX_EARLY.as_nanos() as f64), "{target_us} µs: a sleep ended {} ns early", -min);
                // Generous: tokio's own timer would be ~1 ms late; benchmarks measure the real figure.
                let p50 = quantile(late, 0.5);
                assert!(p50 < 500_000.0, "{target_us} µs: median {p50} ns late");
            }
        });
    }

    #[test]
    fn a_sleep_shorter_than_half_the_wake_up_is_skipped() {
        let _serial = timing();
        runtime().block_on(async {
            let w = Worker::new(&Limits::default());
            w.inner.timer.shared.early_ns.store(100_000, Ordering::Relaxed);
            let t = Instant::now();
            w.work(WorkMode::Sleep, 40_000).await;
            // A real sleep would go through the timer thread and a wake-up.
            assert!(t.elapsed() < Duration::from_micros(40), "took {:?}", t.elapsed());
        });
    }

    #[test]
    fn concurrent_sleeps_end_in_deadline_order() {
        let _serial = timing();
        runtime().block_on(async {
            let w = Worker::new(&Limits::default());
            let start = Instant::now();
            let order = Arc::new(Mutex::new(Vec::new()));
            let tasks: Vec<_> = [20u64, 4, 12, 8, 16]
                .into_iter()
                .map(|ms| {
                    let (w, order) = (w.clone(), order.clone());
                    tokio::spawn(async move {
                        w.work(WorkMode::Sleep, ms * 1_000_000).await;
                        order.lock().unwrap().push((ms, start.elapsed()));
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let order = order.lock().unwrap().clone();
            assert_eq!(order.iter().map(|o| o.0).collect::<Vec<_>>(), [4, 8, 12, 16, 20], "{order:?}");
            for (ms, at) in order {
                assert!(at + MAX_EARLY >= Duration::from_millis(ms), "{ms} ms sleep ended at {at:?}");
            }
        });
    }

    #[test]
    fn cpu_and_memory_work_take_about_their_time() {
        let _serial = timing();
        runtime().block_on(async {
            let w = Worker::new(&Limits::default());
            for mode in [WorkMode::Cpu, WorkMode::Memory] {
                let mut took = Vec::new();
                for _ in 0..5 {
                    let t = Instant::now();
                    w.work(mode, 10_000_000).await;
                    took.push(t.elapsed().as_nanos() as f64);
                }
                let best = took.iter().copied().fold(f64::MAX, f64::min);
                assert!(best > 5e6 && best < 50e6, "{mode:?}: 10 ms of work took {took:?} ns");
            }
            // No work: returns at once, whatever the mode.
            for mode in [WorkMode::Sleep, WorkMode::Cpu, WorkMode::Memory] {
                let t = Instant::now();
                w.work(mode, 0).await;
                assert!(t.elapsed() < Duration::from_millis(5));
            }
        });
    }
}
