//! Was the host contended while the load ran? Figures measured over the
//! measured window, and a verdict.
//!
//! A benchmark system measures its latencies on the host it runs on; when
//! other work competes for the cores (a compile, a noisy VM neighbour) every
//! sleep and every piece of work ends late, and the latencies compared with
//! the traces say more about the host than about the model. So a run
//! measures its own lateness:
//!
//! - a **probe thread** in the generator sleeps 1 ms again and again and
//!   records how late it wakes: on an idle core the kernel wakes it within
//!   about 0.1 ms; a thread that has to wait for a core wakes later;
//! - from **`/proc`** (Linux; `None` elsewhere or when unreadable): CPU time
//!   at the window's start and end (`/proc/stat`: the busy and the stolen
//!   fraction), the runnable tasks sampled every 100 ms (`procs_running`),
//!   and CPU pressure (`/proc/pressure/cpu`: the fraction of time some task
//!   waited for a core);
//! - the **services' own lateness**: each serving process counts how late
//!   its local work ends (`GET /stats/lateness`, see
//!   [`palette_runtime::lateness`]); the generator reads every service's
//!   counters at the window's start and end and reports the difference,
//!   each process once.
//!
//! [`Contention::host_busy`] turns them into a one-line reason when a figure
//! is beyond its threshold (the constants below, calibrated on a 2-core VM
//! idle and with two CPU hogs). The host's busy fraction and the
//! generator's send lag are reported but decide nothing: the system's own
//! work and its own saturation raise them on an idle host too.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use palette_runtime::lateness::{LATENESS_FORMAT, LATENESS_PATH, LatenessReport, WorkLateness};
use serde::Serialize;

use crate::client::Pool;

// The thresholds were calibrated on a 2-core VM serving the 20-service web
// shop (`palette example`, fitted and generated, one process per service)
// under 20 req/s for 20 s: four runs with nothing else on the machine, one
// at 40 req/s, and two with two CPU hogs (`yes > /dev/null`, one per core;
// a third run, with three hogs, fell in the same ranges). Each threshold
// sits between the worst quiet run (40 req/s included) and the mildest
// hogged one.

/// 1 ms sleeps of the probe thread waking later than this at p99 (µs past
/// the asked millisecond) mean the generator's own threads wait for a core.
/// The kernel favours threads waking from sleep, so this grows least of
/// all figures: quiet runs 0.21–0.26 ms (0.30 ms at 40 req/s), hogged
/// 0.57–0.61 ms. The weakest separation; the other figures carry the
/// verdict when the probe is near its threshold.
pub const PROBE_P99_LATE_US: f64 = 450.0;

/// Mean runnable tasks per online CPU (other than the probe itself) above
/// this: on average more threads want a core than there are cores. Quiet
/// runs 0.29–0.39 (the services' own threads), hogged 5.1–5.4 (the hogs,
/// and the services' threads queueing behind them).
pub const RUNNABLE_PER_CPU: f64 = 1.0;

/// CPU pressure above this fraction of the window (PSI `some`: at least
/// one task waited for a core): quiet runs 7.4–7.9 % (11 % at 40 req/s),
/// hogged 37–44 %.
pub const PSI_CPU_SOME: f64 = 0.2;

/// Stolen CPU time (the hypervisor ran another guest on our cores) above
/// this fraction of the window: the VM's own cores were contended, whatever
/// the guest shows. Not seen in calibration (steal stayed below 0.2 %);
/// a tenth of the CPU time taken away is well past noise.
pub const STEAL_FRACTION: f64 = 0.1;

/// The services' sleeps resuming later than this at p99 (µs past their
/// asked end): the runtime's timer fires early by its usual wake-up delay,
/// so on an idle host they resume on time. Quiet runs 0.21–0.25 ms (0.36 ms
/// at 40 req/s), hogged 1.4–1.7 ms.
pub const SERVICE_SLEEP_P99_LATE_US: f64 = 800.0;

/// How long a probe sleep is asked to last.
const PROBE_SLEEP: Duration = Duration::from_millis(1);
/// How often `procs_running` is sampled.
const RUNNABLE_EVERY: Duration = Duration::from_millis(100);
/// How long a service has to answer `GET /stats/lateness`.
const LATENESS_TIMEOUT: Duration = Duration::from_secs(1);

/// How contended the host was during the measured window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Contention {
    /// Online CPUs (`available_parallelism`): what runnable tasks are per.
    pub cpus: usize,
    /// How late the probe thread's 1 ms sleeps woke, µs past the asked end:
    /// the generator host's scheduling delay. `None` when the window was
    /// too short for one.
    pub probe: Option<LatenessSummary>,
    /// The generator's send lag at p99, ms (`send_lag` of the report): its
    /// own lateness plus any wait for a free connection. Shown beside the
    /// rest, but no verdict is drawn from it, since a saturated system
    /// makes it grow on an idle host too.
    pub send_lag_p99_ms: Option<f64>,
    /// Fraction of all CPUs' time busy over the window (user, nice, system,
    /// irq, softirq and steal of `/proc/stat`): the system's own work
    /// included, so it is no verdict by itself.
    pub host_busy_fraction: Option<f64>,
    /// Fraction of all CPUs' time stolen by the hypervisor over the window.
    pub steal_fraction: Option<f64>,
    /// Runnable tasks per online CPU, other than the probe itself, mean of
    /// samples every 100 ms (`procs_running`): above 1 some task always
    /// waits for a core.
    pub runnable_per_cpu: Option<f64>,
    /// Fraction of the window some task waited for a CPU
    /// (`/proc/pressure/cpu`, `some`), when the kernel has PSI.
    pub psi_cpu_some: Option<f64>,
    /// How late the services' local work ended over the window, all
    /// processes together; `None` when no service answered.
    pub services: Option<ServicesLateness>,
    /// [`Contention::host_busy`]: why the host counts as busy, if it does.
    pub busy_reason: Option<String>,
}

/// A lateness distribution's summary, microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatenessSummary {
    /// Pieces (sleeps, work) summarised.
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl LatenessSummary {
    /// The summary of a histogram of nanoseconds; `None` when it is empty.
    fn of_ns(h: &Histogram<u64>) -> Option<LatenessSummary> {
        if h.is_empty() {
            return None;
        }
        Some(LatenessSummary {
            count: h.len(),
            mean_us: h.mean() / 1e3,
            p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
            p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
            max_us: h.max() as f64 / 1e3,
        })
    }

    /// The summary of a service kind's counters; `None` when nothing was counted.
    fn of_work(w: &WorkLateness) -> Option<LatenessSummary> {
        (w.count > 0).then_some(LatenessSummary {
            count: w.count,
            mean_us: w.mean_us,
            p50_us: w.p50_us,
            p99_us: w.p99_us,
            max_us: w.max_us,
        })
    }
}

/// The services' lateness over the window, every process once: counts and
/// means add up, quantiles are those of all processes' pieces together
/// (their histograms merged), the maximum is the largest.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServicesLateness {
    /// Processes counted (a packed system is one, however many ports).
    pub processes: usize,
    /// Service addresses whose counters are missing: no answer at the
    /// window's start or end, not a Palette service, or restarted meanwhile.
    pub unanswered: Vec<String>,
    /// Sleeps (sleep work and reproduced call overheads); `None`: none ran.
    pub sleep: Option<LatenessSummary>,
    /// CPU work; `None`: none ran.
    pub cpu: Option<LatenessSummary>,
    /// Memory work; `None`: none ran.
    pub memory: Option<LatenessSummary>,
}

impl Contention {
    /// Why the host counts as contended over the window — every figure
    /// beyond its threshold, with the threshold — or `None`.
    pub fn host_busy(&self) -> Option<String> {
        let mut why = Vec::new();
        if let Some(p) = self.probe
            && p.p99_us > PROBE_P99_LATE_US
        {
            why.push(format!(
                "1 ms sleeps woke {} late at p99 (threshold {})",
                ms(p.p99_us / 1e3),
                ms(PROBE_P99_LATE_US / 1e3)
            ));
        }
        if let Some(r) = self.runnable_per_cpu
            && r > RUNNABLE_PER_CPU
        {
            why.push(format!("{r:.2} runnable tasks per CPU (threshold {RUNNABLE_PER_CPU:.1})"));
        }
        if let Some(p) = self.psi_cpu_some
            && p > PSI_CPU_SOME
        {
            why.push(format!("PSI cpu some {:.0}% (threshold {:.0}%)", p * 100.0, PSI_CPU_SOME * 100.0));
        }
        if let Some(s) = self.steal_fraction
            && s > STEAL_FRACTION
        {
            why.push(format!("{:.0}% of CPU time stolen (threshold {:.0}%)", s * 100.0, STEAL_FRACTION * 100.0));
        }
        if let Some(s) = self.services.as_ref().and_then(|s| s.sleep)
            && s.p99_us > SERVICE_SLEEP_P99_LATE_US
        {
            why.push(format!(
                "services' sleeps resumed {} late at p99 (threshold {})",
                ms(s.p99_us / 1e3),
                ms(SERVICE_SLEEP_P99_LATE_US / 1e3)
            ));
        }
        (!why.is_empty()).then(|| format!("host busy: {}", why.join(", ")))
    }

    /// The `host` line of the report's text (without a newline): every
    /// figure there is.
    pub fn to_line(&self) -> String {
        let mut out = format!("host: {} CPUs", self.cpus);
        let pct = |f: f64| format!("{:.1}%", f * 100.0);
        if let Some(b) = self.host_busy_fraction {
            let _ = write!(out, ", busy {}", pct(b));
        }
        if let Some(s) = self.steal_fraction {
            let _ = write!(out, ", steal {}", pct(s));
        }
        if let Some(r) = self.runnable_per_cpu {
            let _ = write!(out, ", {r:.2} runnable/CPU");
        }
        if let Some(p) = self.psi_cpu_some {
            let _ = write!(out, ", PSI cpu some {}", pct(p));
        }
        if let Some(p) = self.probe {
            let _ = write!(
                out,
                "; 1 ms sleeps late p50 {} p99 {} max {}",
                ms(p.p50_us / 1e3),
                ms(p.p99_us / 1e3),
                ms(p.max_us / 1e3)
            );
        }
        if let Some(s) = &self.services {
            let kinds: Vec<String> = [("sleep", s.sleep), ("cpu", s.cpu), ("memory", s.memory)]
                .into_iter()
                .filter_map(|(k, l)| l.map(|l| format!("{k} p99 {}", ms(l.p99_us / 1e3))))
                .collect();
            if !kinds.is_empty() {
                let _ = write!(out, "; services' work late {}", kinds.join(", "));
            }
            if !s.unanswered.is_empty() {
                let _ = write!(out, " ({} of them unanswered)", s.unanswered.len());
            }
        }
        out
    }
}

/// Milliseconds, to two decimals.
fn ms(v: f64) -> String {
    format!("{v:.2} ms")
}

/// CPU time of all CPUs, from the `cpu` line of `/proc/stat`, in jiffies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CpuTimes {
    /// user, nice, system, irq, softirq and steal.
    busy: u64,
    steal: u64,
    /// Everything: busy plus idle and iowait.
    total: u64,
}

/// The `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq
/// steal (guest time is already in user).
fn cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    if v.len() < 4 {
        return None;
    }
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    Some(CpuTimes { busy, steal: at(7), total: busy + at(3) + at(4) })
}

/// `procs_running` of `/proc/stat`: tasks runnable right now.
fn procs_running(stat: &str) -> Option<u64> {
    stat.lines().find_map(|l| l.strip_prefix("procs_running "))?.trim().parse().ok()
}

/// `total=` of the `some` line of `/proc/pressure/cpu`, microseconds.
fn psi_some_total_us(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace().find_map(|f| f.strip_prefix("total="))?.parse().ok()
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// What the host looked like at one moment.
struct HostRead {
    at: Instant,
    cpu: Option<CpuTimes>,
    psi_us: Option<u64>,
}

impl HostRead {
    fn now() -> HostRead {
        HostRead {
            at: Instant::now(),
            cpu: read("/proc/stat").as_deref().and_then(cpu_times),
            psi_us: read("/proc/pressure/cpu").as_deref().and_then(psi_some_total_us),
        }
    }
}

/// What the probe thread measured over the window.
#[derive(Default)]
pub(crate) struct HostFigures {
    probe: Option<LatenessSummary>,
    host_busy_fraction: Option<f64>,
    steal_fraction: Option<f64>,
    runnable_per_cpu: Option<f64>,
    psi_cpu_some: Option<f64>,
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The probe thread's work: from `start` to `end` (or until `stop()`),
/// sleeps of 1 ms timed, `procs_running` sampled, `/proc` read at both ends.
pub(crate) fn probe(start: Instant, end: Instant, stop: &dyn Fn() -> bool) -> HostFigures {
    while Instant::now() < start {
        if stop() {
            return HostFigures::default();
        }
        std::thread::sleep((start - Instant::now().min(start)).min(Duration::from_millis(50)));
    }
    let cpus = cpus();
    // Nanoseconds late, 3 digits; anything past a minute is a minute.
    let mut late = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).ok();
    let (mut runnable_sum, mut runnable_n) = (0u64, 0u64);
    let mut next_sample = Instant::now();
    let first = HostRead::now();
    while Instant::now() < end && !stop() {
        let t = Instant::now();
        if t >= next_sample {
            if let Some(n) = read("/proc/stat").as_deref().and_then(procs_running) {
                // The probe itself is running while it reads.
                runnable_sum += n.saturating_sub(1);
                runnable_n += 1;
            }
            next_sample += RUNNABLE_EVERY;
            if next_sample < t {
                next_sample = t + RUNNABLE_EVERY;
            }
            continue;
        }
        std::thread::sleep(PROBE_SLEEP);
        let over = u64::try_from(t.elapsed().saturating_sub(PROBE_SLEEP).as_nanos()).unwrap_or(u64::MAX);
        if let Some(h) = late.as_mut() {
            h.saturating_record(over.max(1));
        }
    }
    let last = HostRead::now();
    let mut f = HostFigures { probe: late.as_ref().and_then(LatenessSummary::of_ns), ..HostFigures::default() };
    if let (Some(a), Some(b)) = (first.cpu, last.cpu)
        && b.total > a.total
    {
        let total = (b.total - a.total) as f64;
        f.host_busy_fraction = Some((b.busy.saturating_sub(a.busy) as f64 / total).clamp(0.0, 1.0));
        f.steal_fraction = Some((b.steal.saturating_sub(a.steal) as f64 / total).clamp(0.0, 1.0));
    }
    if runnable_n > 0 {
        f.runnable_per_cpu = Some(runnable_sum as f64 / runnable_n as f64 / cpus as f64);
    }
    let wall_us = last.at.saturating_duration_since(first.at).as_micros() as f64;
    if let (Some(a), Some(b)) = (first.psi_us, last.psi_us)
        && wall_us > 0.0
    {
        f.psi_cpu_some = Some((b.saturating_sub(a) as f64 / wall_us).clamp(0.0, 1.0));
    }
    f
}

/// Every service's lateness counters now, one entry per pool (`None`:
/// no valid answer), read concurrently.
pub(crate) async fn read_lateness(pools: &[Arc<Pool>]) -> Vec<Option<LatenessReport>> {
    let tasks: Vec<_> = pools
        .iter()
        .map(|p| {
            let p = p.clone();
            tokio::spawn(async move {
                let body = p.get(LATENESS_PATH, LATENESS_TIMEOUT).await.ok()?;
                let r: LatenessReport = serde_json::from_slice(&body).ok()?;
                (r.format == LATENESS_FORMAT).then_some(r)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.ok().flatten());
    }
    out
}

/// The services' lateness over the window from the reads at its `start`
/// and `end` (one per address, in `addresses` order), each process once.
pub(crate) fn services_lateness(
    addresses: &[String],
    start: &[Option<LatenessReport>],
    end: &[Option<LatenessReport>],
) -> Option<ServicesLateness> {
    let mut seen: Vec<&str> = Vec::new();
    let mut unanswered = Vec::new();
    let (mut sleep, mut cpu, mut memory) = (WorkLateness::default(), WorkLateness::default(), WorkLateness::default());
    for (i, address) in addresses.iter().enumerate() {
        let (Some(Some(a)), Some(Some(b))) = (start.get(i), end.get(i)) else {
            unanswered.push(address.clone());
            continue;
        };
        let Some(w) = b.since(a) else {
            unanswered.push(address.clone());
            continue;
        };
        if seen.contains(&b.process.as_str()) {
            continue;
        }
        seen.push(&b.process);
        sleep = sleep.merge(&w.sleep);
        cpu = cpu.merge(&w.cpu);
        memory = memory.merge(&w.memory);
    }
    (!seen.is_empty()).then(|| ServicesLateness {
        processes: seen.len(),
        unanswered,
        sleep: LatenessSummary::of_work(&sleep),
        cpu: LatenessSummary::of_work(&cpu),
        memory: LatenessSummary::of_work(&memory),
    })
}

/// The figures put together, with the verdict.
pub(crate) fn contention(
    host: HostFigures,
    send_lag_p99_ms: Option<f64>,
    services: Option<ServicesLateness>,
) -> Contention {
    let mut c = Contention {
        cpus: cpus(),
        probe: host.probe,
        send_lag_p99_ms,
        host_busy_fraction: host.host_busy_fraction,
        steal_fraction: host.steal_fraction,
        runnable_per_cpu: host.runnable_per_cpu,
        psi_cpu_some: host.psi_cpu_some,
        services,
        busy_reason: None,
    };
    c.busy_reason = c.host_busy();
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "cpu  23047 10 2934 62288 207 3 98 20 0 0\ncpu0 11255 0 1264 31675 46 0 43 9 0 0\n\
                    intr 1 2 3\nprocs_running 4\nprocs_blocked 0\n";
        let c = cpu_times(stat).unwrap();
        assert_eq!(c.busy, 23047 + 10 + 2934 + 3 + 98 + 20);
        assert_eq!(c.steal, 20);
        assert_eq!(c.total, c.busy + 62288 + 207);
        assert_eq!(procs_running(stat), Some(4));
        assert_eq!(cpu_times("cpu0 1 2 3 4\n"), None);
        assert_eq!(procs_running("cpu  1 2 3 4\n"), None);
        let psi =
            "some avg10=4.21 avg60=1.38 avg300=1.91 total=15529904\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        assert_eq!(psi_some_total_us(psi), Some(15_529_904));
        assert_eq!(psi_some_total_us("full total=3\n"), None);
    }

    fn report(process: &str, sleeps: &[(u64, u64)], sum_ns: u64, max_ns: u64) -> LatenessReport {
        LatenessReport {
            format: LATENESS_FORMAT.into(),
            process: process.into(),
            since_unix_ns: 1,
            sleep: WorkLateness::from_parts(sum_ns, max_ns, sleeps.to_vec()),
            cpu: WorkLateness::default(),
            memory: WorkLateness::default(),
        }
    }

    #[test]
    fn services_are_differenced_and_each_process_counted_once() {
        let addrs: Vec<String> = ["a:1", "a:2", "b:1", "c:1", "d:1"].iter().map(|s| s.to_string()).collect();
        let a0 = report("aa", &[(8192, 10)], 100_000, 9000);
        let a1 = report("aa", &[(8192, 30)], 300_000, 9000);
        let b0 = report("bb", &[], 0, 0);
        let b1 = report("bb", &[(1_048_576, 10)], 11_000_000, 1_200_000);
        let start = vec![Some(a0.clone()), Some(a0), Some(b0), None, Some(report("dd", &[], 0, 0))];
        // c never answered at the start; d restarted (another process id).
        let end =
            vec![Some(a1.clone()), Some(a1), Some(b1), Some(report("cc", &[], 0, 0)), Some(report("d2", &[], 0, 0))];
        let s = services_lateness(&addrs, &start, &end).unwrap();
        assert_eq!(s.processes, 2);
        assert_eq!(s.unanswered, ["c:1", "d:1"]);
        let sleep = s.sleep.unwrap();
        // 20 pieces from a (packed: two ports, counted once), 10 from b.
        assert_eq!(sleep.count, 30);
        assert!((sleep.mean_us - (200.0 + 11_000.0) / 30.0).abs() < 1e-9, "{sleep:?}");
        assert_eq!(sleep.max_us, 1200.0);
        assert!(sleep.p99_us > 1000.0 && sleep.p50_us < 10.0, "{sleep:?}");
        assert!(s.cpu.is_none() && s.memory.is_none());
        assert!(services_lateness(&addrs[..1], &[None], &[None]).is_none());
    }

    fn quiet() -> Contention {
        Contention {
            cpus: 2,
            probe: Some(LatenessSummary { count: 19_000, mean_us: 70.0, p50_us: 65.0, p99_us: 120.0, max_us: 900.0 }),
            send_lag_p99_ms: Some(0.2),
            host_busy_fraction: Some(0.3),
            steal_fraction: Some(0.001),
            runnable_per_cpu: Some(0.1),
            psi_cpu_some: Some(0.02),
            services: Some(ServicesLateness {
                processes: 20,
                unanswered: Vec::new(),
                sleep: Some(LatenessSummary { count: 5000, mean_us: 5.0, p50_us: 1.0, p99_us: 60.0, max_us: 800.0 }),
                cpu: None,
                memory: None,
            }),
            busy_reason: None,
        }
    }

    #[test]
    fn a_quiet_host_is_not_busy_and_each_figure_can_make_it_busy() {
        let q = quiet();
        assert_eq!(q.host_busy(), None);
        let line = q.to_line();
        assert!(line.starts_with("host: 2 CPUs, busy 30.0%"), "{line}");
        assert!(line.contains("0.10 runnable/CPU") && line.contains("PSI cpu some 2.0%"), "{line}");
        assert!(line.contains("1 ms sleeps late p50 0.07 ms p99 0.12 ms"), "{line}");
        assert!(line.contains("services' work late sleep p99 0.06 ms"), "{line}");
        // Nothing known (not Linux, no services): nothing to call busy.
        assert_eq!(Contention { cpus: 1, ..Contention::default() }.host_busy(), None);

        let mut c = quiet();
        c.probe.as_mut().unwrap().p99_us = 2300.0;
        assert_eq!(c.host_busy().unwrap(), "host busy: 1 ms sleeps woke 2.30 ms late at p99 (threshold 0.45 ms)");
        let mut c = quiet();
        c.runnable_per_cpu = Some(2.1);
        assert!(c.host_busy().unwrap().contains("2.10 runnable tasks per CPU"));
        let mut c = quiet();
        c.psi_cpu_some = Some(0.38);
        assert!(c.host_busy().unwrap().contains("PSI cpu some 38%"));
        let mut c = quiet();
        c.steal_fraction = Some(0.25);
        assert!(c.host_busy().unwrap().contains("25% of CPU time stolen"));
        let mut c = quiet();
        c.services.as_mut().unwrap().sleep.as_mut().unwrap().p99_us = 4000.0;
        assert!(c.host_busy().unwrap().contains("services' sleeps resumed 4.00 ms late"));
        // Everything at once: one line, every reason.
        let mut c = quiet();
        c.probe.as_mut().unwrap().p99_us = 2300.0;
        c.runnable_per_cpu = Some(2.1);
        c.psi_cpu_some = Some(0.38);
        let why = c.host_busy().unwrap();
        assert_eq!(why.lines().count(), 1);
        assert_eq!(why.matches("threshold").count(), 3, "{why}");
        // A busy CPU alone (the system's own work) is no verdict.
        let mut c = quiet();
        c.host_busy_fraction = Some(0.95);
        assert_eq!(c.host_busy(), None);
    }
}
