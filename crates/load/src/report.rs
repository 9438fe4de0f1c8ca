//! What a load run measured: per root API and in total, over time, as a
//! table or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::contention::Contention;

/// The result of a load run.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    /// The system's name, to tell reports apart.
    pub system: String,
    /// `poisson`, `replay` or `profile`.
    pub arrivals: &'static str,
    /// The `--profile` spec the rate followed, so a report says which curve
    /// its `target_rate`s are of.
    pub profile: Option<String>,
    /// The mean rate asked for, requests per second (replay: the traced
    /// rate times the speed; a profile: its mean over the window).
    pub requested_rate: f64,
    /// Length of the measured window, seconds.
    pub duration_s: f64,
    /// Warm-up before it (requests sent, not recorded), seconds.
    pub warmup_s: f64,
    /// The in-flight bound.
    pub connections: usize,
    /// Seed of the arrival times, root picks and payload sizes (and, with
    /// `run_id`, of the trace ids).
    pub seed: u64,
    /// This run's id, 16 hex digits: mixed into its trace and span ids, so
    /// runs with the same seed send the same workload under trace ids of
    /// their own.
    pub run_id: String,
    /// Start of the measured window (the end of the warm-up), Unix
    /// nanoseconds by this host's wall clock, as the services' spans are:
    /// traces whose root span starts before it are warm-up traffic. Exactly
    /// where the generator starts counting arrivals as measured.
    pub measured_from_unix_ns: u64,
    /// The scheduled end of the measured window, Unix nanoseconds (also
    /// when the run was stopped early): no measured arrival is scheduled
    /// at or after it.
    pub measured_until_unix_ns: u64,
    /// Wall time of the whole run: warm-up, window and the drain of the
    /// requests still in flight at its end, seconds.
    pub elapsed_s: f64,
    /// The run was stopped before the end of its window (Ctrl-C).
    pub stopped_early: bool,
    /// One row per root API, in the model's order.
    pub apis: Vec<ApiReport>,
    /// All root APIs together.
    pub total: ApiReport,
    /// From each measured request's scheduled time to the moment it was
    /// sent: the generator's own lateness plus the wait for a free
    /// connection. It is part of every latency (no coordinated omission);
    /// large values with an idle system mean the generator is the bottleneck.
    pub send_lag: Option<Latency>,
    /// Width of a timeline interval, seconds.
    pub timeline_step_s: f64,
    /// The measured window over time: queueing shows as latency growing from
    /// one interval to the next.
    pub timeline: Vec<Interval>,
    /// With a profile: the timeline interval where the achieved rate was
    /// furthest from the target, relatively — one figure for "did the
    /// system follow the curve".
    pub rate_deviation: Option<RateDeviation>,
    /// Requests on the wire at the end of the measured window (or when the
    /// run was stopped): answered or failed in the drain after it, and
    /// counted in `requests` like every request scheduled in the window.
    pub in_flight_at_end: u64,
    /// How contended the host was over the measured window: the generator's
    /// own lateness, `/proc`, the services' lateness, and a verdict.
    pub contention: Contention,
}

/// Requests, rates, errors and latency of one root API (or all of them).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ApiReport {
    /// `service operation`, or `total`.
    pub api: String,
    /// Where its requests went (`host:port`); empty for the total.
    pub target: String,
    /// Requests scheduled in the measured window (all of them: sent or not).
    pub requests: u64,
    /// Of those, answered with 2xx.
    pub ok: u64,
    /// Of those, failed: non-2xx, timeouts, connection errors, and requests
    /// still unsent when the run had to stop (`unsent`).
    pub errors: u64,
    /// `errors` by kind: the HTTP status, `timeout`, `connect`, `io`, `unsent`.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Requests scheduled per second of the measured window.
    pub offered_rate: f64,
    /// 2xx responses received during the measured window, per second: what
    /// the system sustained.
    pub achieved_rate: f64,
    /// From scheduled send time to the end of the response, 2xx only.
    pub latency: Option<Latency>,
}

/// A latency distribution's summary, milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Latencies summarised.
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// The summary of a histogram of microseconds; `None` when it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1e3;
        Some(Latency {
            count: h.len(),
            mean_ms: h.mean() / 1e3,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        })
    }
}

/// One interval of the measured window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Interval {
    /// Start, seconds into the measured window.
    pub start_s: f64,
    /// Its length, seconds: the step, but the last one may be cut short by
    /// the end of the window, and its rates are per second of this.
    pub length_s: f64,
    /// The rate aimed at over it, on average: the profile's mean over the
    /// interval (the `--rate` for Poisson arrivals; `None` for a replay),
    /// to hold the achieved rate against.
    pub target_rate: Option<f64>,
    /// Requests scheduled in it.
    pub requests: u64,
    /// The same per second: what the generator offered, which differs from
    /// the target only by the rounding of whole arrivals.
    pub offered_rate: f64,
    /// Requests sent in it per second (whenever scheduled): below the
    /// offered rate when the generator or its connections fell behind.
    pub sent_rate: f64,
    /// 2xx responses received in it, per second.
    pub achieved_rate: f64,
    /// Requests scheduled in it that failed.
    pub errors: u64,
    /// Latency of the requests scheduled in it.
    pub latency: Option<Latency>,
}

/// Where a run strayed furthest from its profile.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RateDeviation {
    /// The interval's start, seconds into the measured window.
    pub start_s: f64,
    pub target_rate: f64,
    pub achieved_rate: f64,
    /// `achieved / target − 1`: negative when the system fell short.
    pub relative: f64,
}

impl RateDeviation {
    /// The interval of `timeline` with the largest `|achieved / target − 1|`;
    /// intervals with no target or a zero one (a learned curve's silent
    /// spell) have no relative deviation and are left out.
    pub fn worst(timeline: &[Interval]) -> Option<RateDeviation> {
        timeline
            .iter()
            .filter_map(|i| {
                let target = i.target_rate.filter(|&t| t > 0.0)?;
                Some(RateDeviation {
                    start_s: i.start_s,
                    target_rate: target,
                    achieved_rate: i.achieved_rate,
                    relative: i.achieved_rate / target - 1.0,
                })
            })
            .max_by(|a, b| a.relative.abs().total_cmp(&b.relative.abs()))
    }
}

impl LoadReport {
    /// The per-window table of a profile run: what was aimed at, offered,
    /// sent and achieved, and the latency, window by window.
    pub fn windows_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>8}  {:>9}  {:>9}  {:>9}  {:>10}  {:>7}  {:>9}  {:>9}",
            "window", "target/s", "offered/s", "sent/s", "achieved/s", "errors", "p50 ms", "p99 ms"
        );
        for i in &self.timeline {
            let q =
                |f: fn(&Latency) -> f64| i.latency.as_ref().map_or_else(|| "-".to_string(), |l| format!("{:.2}", f(l)));
            let target = i.target_rate.map_or_else(|| "-".to_string(), |t| format!("{t:.1}"));
            let _ = writeln!(
                out,
                "{:>7.1}s  {target:>9}  {:>9.1}  {:>9.1}  {:>10.1}  {:>7}  {:>9}  {:>9}",
                i.start_s,
                i.offered_rate,
                i.sent_rate,
                i.achieved_rate,
                thousands(i.errors),
                q(|l| l.p50_ms),
                q(|l| l.p99_ms)
            );
        }
        if let Some(d) = &self.rate_deviation {
            let _ = writeln!(
                out,
                "worst deviation of achieved from target: {:+.1}% in the window at {:.1}s (target {:.1}/s, achieved {:.1}/s)",
                d.relative * 100.0,
                d.start_s,
                d.target_rate,
                d.achieved_rate
            );
        }
        out
    }

    /// The summary table (and the lines under it) for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let width = self.apis.iter().map(|a| a.api.chars().count()).max().unwrap_or(0).clamp(8, 48);
        let _ = writeln!(
            out,
            "{:<width$}  {:>9}  {:>9}  {:>10}  {:>7}  {:>9}  {:>9}  {:>9}  {:>9}",
            "root api", "requests", "offered/s", "achieved/s", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for row in self.apis.iter().chain(std::iter::once(&self.total)) {
            let name: String = if row.api.chars().count() > width {
                let cut: String = row.api.chars().take(width - 1).collect();
                cut + "…"
            } else {
                row.api.clone()
            };
            let l = row.latency.unwrap_or_default();
            let q = |v: f64| if row.latency.is_some() { format!("{v:.2}") } else { "-".into() };
            let _ = writeln!(
                out,
                "{name:<width$}  {:>9}  {:>9.1}  {:>10.1}  {:>7}  {:>9}  {:>9}  {:>9}  {:>9}",
                thousands(row.requests),
                row.offered_rate,
                row.achieved_rate,
                thousands(row.errors),
                q(l.p50_ms),
                q(l.p90_ms),
                q(l.p99_ms),
                q(l.max_ms)
            );
        }
        if !self.total.errors_by_kind.is_empty() {
            let kinds: Vec<String> =
                self.total.errors_by_kind.iter().map(|(k, n)| format!("{k} {}", thousands(*n))).collect();
            let _ = writeln!(out, "errors: {}", kinds.join(", "));
        }
        if self.profile.is_some() {
            out.push_str(&self.windows_text());
        }
        let mode = match (self.arrivals, &self.profile) {
            (_, Some(spec)) => format!("profile {spec} (a mean {:.1}/s)", self.requested_rate),
            ("replay", None) => format!("replayed arrivals at a mean {:.1}/s", self.requested_rate),
            _ => format!("Poisson arrivals at {:.1}/s", self.requested_rate),
        };
        let _ = write!(
            out,
            "{mode} for {:.1}s after {:.1}s of warm-up, at most {} in flight; took {:.1}s",
            self.duration_s, self.warmup_s, self.connections, self.elapsed_s
        );
        if let Some(lag) = self.send_lag {
            let _ = write!(out, "; send lag p50 {:.2} ms, p99 {:.2} ms", lag.p50_ms, lag.p99_ms);
        }
        if self.stopped_early {
            out.push_str(" (stopped early)");
        }
        out.push('\n');
        out.push_str(&self.contention.to_line());
        out.push('\n');
        if let Some(why) = &self.contention.busy_reason {
            out.push_str(why);
            out.push_str(": latencies include the host's own delays\n");
        }
        out
    }
}

use palette_trace::stats::thousands;
