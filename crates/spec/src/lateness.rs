//! How late a process's local work ends: the services' own measure of a
//! contended host.
//!
//! Every piece of local work (`palette_runtime::work::Worker::work`) is asked to take
//! a given time; on an idle host a sleep resumes within microseconds of its
//! end and cpu or memory work ends a hand-back after it. When the host is
//! busy — other processes on its cores, a noisy neighbour on the VM — work
//! ends late, and every latency the system measures is stretched by it. A
//! [`Lateness`] counts, per work kind, how late each piece ended (its
//! actual end minus its asked end, early ends counted as zero): count, sum,
//! maximum and a histogram of logarithmic buckets (four per power of two,
//! so a quantile read from it is within 12 %). Recording is a few relaxed
//! atomic adds: cheap enough for every piece of work.
//!
//! The counters are cumulative since the process started serving, and never
//! reset: a reader that wants a window (the load generator's measured
//! window) reads them at its start and end and takes the difference
//! ([`WorkLateness::since`]); several readers can do so at once. Each port
//! of a service answers `GET /stats/lateness` with a [`LatenessReport`] as
//! JSON; `process` tells ports of one process (a packed system) apart from
//! ports of different ones, so a reader counts each process once.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::config::WorkMode;

/// The path every service port answers with its process's lateness.
pub const LATENESS_PATH: &str = "/stats/lateness";

/// `format` of a [`LatenessReport`]: a reader checks it before trusting the rest.
pub const LATENESS_FORMAT: &str = "palette-lateness/1";

/// Values below this (nanoseconds) share the first bucket: a microsecond
/// late is on time for any work the model asks for.
const FIRST_BUCKET_NS: u64 = 1024;
/// Buckets per power of two above [`FIRST_BUCKET_NS`].
const SUB_BUCKETS: usize = 4;
/// The first bucket, then four per power of two from 2^10 ns to 2^64 ns.
const BUCKETS: usize = 1 + (64 - 10) * SUB_BUCKETS;

/// The bucket a lateness of `ns` nanoseconds falls in.
fn bucket_of(ns: u64) -> usize {
    if ns < FIRST_BUCKET_NS {
        return 0;
    }
    let octave = ns.ilog2() as usize;
    let sub = ((ns >> (octave - 2)) & 3) as usize;
    1 + (octave - 10) * SUB_BUCKETS + sub
}

/// The smallest lateness (ns) in bucket `i`.
fn bucket_low(i: usize) -> u64 {
    if i == 0 {
        return 0;
    }
    let octave = 10 + (i - 1) / SUB_BUCKETS;
    let sub = ((i - 1) % SUB_BUCKETS) as u64;
    (4 + sub) << (octave - 2)
}

/// One past the largest lateness (ns) in bucket `i` (saturating).
fn bucket_high(i: usize) -> u64 {
    if i + 1 >= BUCKETS { u64::MAX } else { bucket_low(i + 1) }
}

/// The counters of one work kind.
struct Counters {
    /// Pieces of work that ended.
    count: AtomicU64,
    /// Their lateness, summed, nanoseconds: the mean.
    sum_ns: AtomicU64,
    /// The latest any ended, nanoseconds.
    max_ns: AtomicU64,
    /// Pieces per lateness bucket (see [`bucket_of`]): the quantiles.
    buckets: [AtomicU64; BUCKETS],
}

impl Counters {
    fn new() -> Counters {
        Counters {
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn record(&self, late_ns: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(late_ns, Ordering::Relaxed);
        self.max_ns.fetch_max(late_ns, Ordering::Relaxed);
        self.buckets[bucket_of(late_ns)].fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> WorkLateness {
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let n = b.load(Ordering::Relaxed);
                (n > 0).then_some((bucket_low(i), n))
            })
            .collect();
        // Read while others record: the bucket total is the count that
        // matches the buckets, whatever `count` says a moment later.
        WorkLateness::from_parts(self.sum_ns.load(Ordering::Relaxed), self.max_ns.load(Ordering::Relaxed), buckets)
    }
}

/// A process's lateness counters, per work kind. Shared by every request
/// (it lives in the `palette_runtime::work::Worker`).
pub struct Lateness {
    /// Identifies this set of counters in reports: random per process start.
    process: u64,
    /// When counting started, Unix nanoseconds.
    since_unix_ns: u64,
    sleep: Counters,
    cpu: Counters,
    memory: Counters,
}

impl Default for Lateness {
    fn default() -> Self {
        Lateness::new()
    }
}

impl Lateness {
    /// Counters at zero, from now.
    pub fn new() -> Lateness {
        let since_unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Lateness {
            process: u64::from_be_bytes(crate::context::Ids::span_id()),
            since_unix_ns,
            sleep: Counters::new(),
            cpu: Counters::new(),
            memory: Counters::new(),
        }
    }

    /// A piece of `mode` work ended `late_ns` after its asked end (0 when
    /// it ended on time or early).
    pub fn record(&self, mode: WorkMode, late_ns: u64) {
        match mode {
            WorkMode::Sleep => &self.sleep,
            WorkMode::Cpu => &self.cpu,
            WorkMode::Memory => &self.memory,
        }
        .record(late_ns);
    }

    /// The counters now.
    pub fn report(&self) -> LatenessReport {
        LatenessReport {
            format: LATENESS_FORMAT.into(),
            process: format!("{:016x}", self.process),
            since_unix_ns: self.since_unix_ns,
            sleep: self.sleep.read(),
            cpu: self.cpu.read(),
            memory: self.memory.read(),
        }
    }
}

/// What `GET /stats/lateness` answers: a process's lateness counters,
/// cumulative since `since_unix_ns`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatenessReport {
    /// [`LATENESS_FORMAT`].
    pub format: String,
    /// The counters' identity, 16 hex digits, random per process start: two
    /// ports answering the same value are one process (count it once); a
    /// value that changed between two reads is a restarted process (its
    /// counters started again at zero).
    pub process: String,
    /// When the counters started, Unix nanoseconds (the process's start).
    pub since_unix_ns: u64,
    /// Sleeps (sleep work, and the call overheads every mode reproduces by
    /// sleeping): resume time against the asked end.
    pub sleep: WorkLateness,
    /// CPU work: end against the asked end (includes the wait for a
    /// blocking-pool thread and the hand-back to the request).
    pub cpu: WorkLateness,
    /// Memory work: as cpu.
    pub memory: WorkLateness,
}

impl LatenessReport {
    /// The lateness of each kind between `earlier` (a report of the same
    /// process) and this one; `None` when `earlier` is of another process
    /// (a restart: the counters cannot be subtracted).
    pub fn since(&self, earlier: &LatenessReport) -> Option<LatenessReport> {
        if earlier.process != self.process {
            return None;
        }
        Some(LatenessReport {
            format: self.format.clone(),
            process: self.process.clone(),
            since_unix_ns: self.since_unix_ns,
            sleep: self.sleep.since(&earlier.sleep),
            cpu: self.cpu.since(&earlier.cpu),
            memory: self.memory.since(&earlier.memory),
        })
    }
}

/// How late one kind of work ended: a summary, and the buckets it was
/// read from (so windows can be subtracted and processes added).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkLateness {
    /// Pieces of work counted.
    pub count: u64,
    /// Their lateness summed, nanoseconds.
    pub sum_ns: u64,
    /// Mean lateness, microseconds.
    pub mean_us: f64,
    /// Median lateness, microseconds (from the buckets: within 12 %).
    pub p50_us: f64,
    /// 99th percentile, microseconds (from the buckets: within 12 %).
    pub p99_us: f64,
    /// The latest piece, microseconds: exact from the counters; for a
    /// difference whose maximum was set before the window, the top of the
    /// highest bucket occupied in it (at most the earlier maximum).
    pub max_us: f64,
    /// Occupied buckets as (smallest lateness in the bucket, ns; pieces), in
    /// increasing lateness. Buckets are four per power of two from 1024 ns
    /// (and one below it).
    pub buckets: Vec<(u64, u64)>,
}

impl WorkLateness {
    /// The summary of `buckets` (as in [`WorkLateness::buckets`]) whose
    /// lateness sums to `sum_ns` and whose latest is `max_ns`.
    pub fn from_parts(sum_ns: u64, max_ns: u64, mut buckets: Vec<(u64, u64)>) -> WorkLateness {
        buckets.retain(|b| b.1 > 0);
        buckets.sort_unstable();
        let count: u64 = buckets.iter().map(|b| b.1).sum();
        if count == 0 {
            return WorkLateness::default();
        }
        let us = |ns: f64| ns / 1e3;
        let max_ns = max_ns.min(buckets.last().map_or(0, |b| bucket_high(bucket_of(b.0)).saturating_sub(1)));
        let quantile = |q: f64| {
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for &(low, n) in &buckets {
                seen += n;
                if seen >= rank {
                    let high = bucket_high(bucket_of(low));
                    // The middle of the bucket, never past the maximum.
                    let mid = low as f64 + (high.saturating_sub(low)) as f64 / 2.0;
                    return mid.min(max_ns as f64);
                }
            }
            max_ns as f64
        };
        WorkLateness {
            count,
            sum_ns,
            mean_us: us(sum_ns as f64 / count as f64),
            p50_us: us(quantile(0.5)),
            p99_us: us(quantile(0.99)),
            max_us: us(max_ns as f64),
            buckets,
        }
    }

    fn max_ns(&self) -> u64 {
        (self.max_us * 1e3).round() as u64
    }

    /// What was counted after `earlier` (a read of the same counters).
    pub fn since(&self, earlier: &WorkLateness) -> WorkLateness {
        let buckets: Vec<(u64, u64)> = self
            .buckets
            .iter()
            .map(|&(low, n)| {
                let before = earlier.buckets.iter().find(|b| b.0 == low).map_or(0, |b| b.1);
                (low, n.saturating_sub(before))
            })
            .collect();
        // A maximum that grew was set in the window, and is in its highest
        // bucket; one set before is cut to that bucket's top by `from_parts`.
        WorkLateness::from_parts(self.sum_ns.saturating_sub(earlier.sum_ns), self.max_ns(), buckets)
    }

    /// Adds `other` (another process's) to this.
    pub fn merge(&self, other: &WorkLateness) -> WorkLateness {
        let mut buckets = self.buckets.clone();
        for &(low, n) in &other.buckets {
            match buckets.iter_mut().find(|b| b.0 == low) {
                Some(b) => b.1 += n,
                None => buckets.push((low, n)),
            }
        }
        WorkLateness::from_parts(self.sum_ns + other.sum_ns, self.max_ns().max(other.max_ns()), buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1023), 0);
        assert_eq!(bucket_of(1024), 1);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        for v in [1024u64, 1279, 1280, 5000, 1_000_000, 123_456_789, 1 << 40, u64::MAX / 3] {
            let i = bucket_of(v);
            assert!(
                bucket_low(i) <= v && v < bucket_high(i),
                "{v} in bucket {i}: {}..{}",
                bucket_low(i),
                bucket_high(i)
            );
            // At most a quarter of the value wide: quantiles within 12 %.
            assert!((bucket_high(i) - bucket_low(i)) as f64 <= bucket_low(i) as f64 / 4.0 + 1.0, "{v}");
        }
        for i in 0..BUCKETS {
            assert_eq!(bucket_of(bucket_low(i)), i);
        }
    }

    #[test]
    fn quantiles_differences_and_merges() {
        let l = Lateness::new();
        for _ in 0..98 {
            l.record(WorkMode::Sleep, 10_000);
        }
        l.record(WorkMode::Sleep, 2_000_000);
        l.record(WorkMode::Sleep, 5_000_000);
        let r = l.report();
        assert_eq!(r.format, LATENESS_FORMAT);
        assert_eq!(r.process.len(), 16);
        let s = &r.sleep;
        assert_eq!(s.count, 100);
        assert!((s.p50_us - 10.0).abs() < 1.2, "{s:?}");
        assert!((s.p99_us - 2000.0).abs() < 240.0, "{s:?}");
        assert_eq!(s.max_us, 5000.0);
        assert!((s.mean_us - (98.0 * 10.0 + 7000.0) / 100.0).abs() < 1e-9);
        assert_eq!(r.cpu.count, 0);
        assert_eq!(r.cpu.p99_us, 0.0);
        // A window: what came after the first report.
        for _ in 0..10 {
            l.record(WorkMode::Sleep, 100_000);
        }
        let w = l.report().since(&r).expect("the same process");
        assert_eq!(w.sleep.count, 10);
        assert!((w.sleep.mean_us - 100.0).abs() < 1e-9);
        assert!((w.sleep.p99_us - 100.0).abs() < 12.0, "{:?}", w.sleep);
        // The maximum of the window was not the process's: bounded by its bucket.
        assert!(w.sleep.max_us >= 100.0 && w.sleep.max_us < 120.0, "{:?}", w.sleep);
        // Another process: not subtracted.
        assert!(Lateness::new().report().since(&r).is_none());
        // Two processes merged: counts add, the maximum is the larger one.
        let both = w.sleep.merge(&r.sleep);
        assert_eq!(both.count, 110);
        assert_eq!(both.max_us, 5000.0);
        assert!((both.p50_us - 10.0).abs() < 1.2);
        // As JSON and back.
        let json = serde_json::to_string(&r).unwrap();
        let back: LatenessReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}
