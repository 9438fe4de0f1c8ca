//! Recording results as requests finish: HDR histograms per root API, per
//! timeline interval, and of the send lag.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::client::Outcome;
use crate::report::{ApiReport, Interval, Latency};

/// Latencies are recorded in microseconds, to 3 significant digits (0.1%)
/// in total and per root API; with more root APIs than this, per-API
/// histograms keep 2 digits (1%), so a system with thousands of roots needs
/// tens of megabytes, not hundreds.
const PRECISE_APIS: usize = 64;

fn histogram(max_us: u64, digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, max_us.max(2), digits).expect("bounds are valid")
}

/// What one root API's requests did.
struct ApiStats {
    /// Microseconds from scheduled time to the end of each 2xx response.
    latency: Histogram<u64>,
    /// Measured requests: scheduled in the window.
    requests: u64,
    ok: u64,
    /// 2xx responses received inside the measured window (whenever scheduled).
    ok_in_window: u64,
    /// Failed measured requests by kind.
    errors: BTreeMap<String, u64>,
}

/// One interval of the measured window.
struct Bucket {
    /// Two digits: a timeline is many histograms, and 1% is plenty to see a trend.
    latency: Histogram<u64>,
    /// Requests scheduled in the interval.
    requests: u64,
    /// 2xx responses received in the interval (its throughput).
    ok_done: u64,
    /// Requests scheduled in the interval that failed.
    errors: u64,
    /// Requests sent in the interval (whenever scheduled): with the
    /// scheduled count, it tells a generator that fell behind the curve
    /// from a system that did.
    sent: u64,
}

/// Results so far; one per run, behind a mutex held only to record.
pub struct Recorder {
    apis: Vec<ApiStats>,
    /// All root APIs' latencies, at full precision whatever their number.
    total: Histogram<u64>,
    /// The measured window in intervals of `step_ns`.
    timeline: Vec<Bucket>,
    step_ns: u64,
    /// Microseconds from scheduled time to sent, of measured requests.
    lag: Histogram<u64>,
    /// The measured window, ns after the run's start.
    window: (u64, u64),
}

/// Times of one finished request, ns after the run's start.
pub struct Times {
    /// When it should have been sent: where its latency starts.
    pub scheduled: u64,
    /// When it was: the difference is the send lag.
    pub sent: u64,
    /// When its response (or failure) was complete.
    pub done: u64,
}

impl Recorder {
    /// A recorder for `apis` root APIs, the measured `window` (ns after the
    /// run's start) and latencies up to `max_ns` (longer ones are recorded
    /// as `max_ns`), with timeline intervals of `step_ns` (`None`: about 30
    /// round ones over the window).
    pub fn new(apis: usize, window: (u64, u64), max_ns: u64, step_ns: Option<u64>) -> Recorder {
        let max_us = max_ns.div_ceil(1000).max(3_600_000_000);
        let api_digits = if apis <= PRECISE_APIS { 3 } else { 2 };
        let len = window.1 - window.0;
        let step_ns = step_ns.filter(|&s| s > 0).unwrap_or_else(|| timeline_step_ns(len));
        let buckets = len.div_ceil(step_ns) as usize;
        Recorder {
            apis: (0..apis)
                .map(|_| ApiStats {
                    latency: histogram(max_us, api_digits),
                    requests: 0,
                    ok: 0,
                    ok_in_window: 0,
                    errors: BTreeMap::new(),
                })
                .collect(),
            timeline: (0..buckets)
                .map(|_| Bucket { latency: histogram(max_us, 2), requests: 0, ok_done: 0, errors: 0, sent: 0 })
                .collect(),
            total: histogram(max_us, 3),
            step_ns,
            lag: histogram(max_us, 3),
            window,
        }
    }

    fn bucket(&mut self, t: u64) -> Option<&mut Bucket> {
        if t < self.window.0 {
            return None;
        }
        self.timeline.get_mut(((t - self.window.0) / self.step_ns) as usize)
    }

    /// A request to root `api` (its index in the run's roots) finished.
    pub fn finished(&mut self, api: usize, measured: bool, t: Times, outcome: Outcome) {
        let in_window = (self.window.0..self.window.1).contains(&t.done);
        if outcome == Outcome::Ok && in_window {
            self.apis[api].ok_in_window += 1;
            if let Some(b) = self.bucket(t.done) {
                b.ok_done += 1;
            }
        }
        if (self.window.0..self.window.1).contains(&t.sent)
            && let Some(b) = self.bucket(t.sent)
        {
            b.sent += 1;
        }
        if !measured {
            return;
        }
        let latency_us = (t.done.saturating_sub(t.scheduled) / 1000).max(1);
        self.lag.saturating_record((t.sent.saturating_sub(t.scheduled) / 1000).max(1));
        let s = &mut self.apis[api];
        s.requests += 1;
        if outcome == Outcome::Ok {
            s.ok += 1;
            s.latency.saturating_record(latency_us);
            self.total.saturating_record(latency_us);
        } else {
            *s.errors.entry(outcome.kind()).or_default() += 1;
        }
        if let Some(b) = self.bucket(t.scheduled) {
            b.requests += 1;
            if outcome == Outcome::Ok {
                b.latency.saturating_record(latency_us);
            } else {
                b.errors += 1;
            }
        }
    }

    /// A measured request scheduled at `scheduled` was never sent: the run
    /// had to stop first.
    pub fn unsent(&mut self, api: usize, scheduled: u64) {
        let s = &mut self.apis[api];
        s.requests += 1;
        *s.errors.entry("unsent".into()).or_default() += 1;
        if let Some(b) = self.bucket(scheduled) {
            b.requests += 1;
            b.errors += 1;
        }
    }

    /// Rows per root API (named by `names`, sent to `targets`) and the total,
    /// the send lag, the timeline step and the timeline.
    pub fn summarise(
        &self,
        names: &[String],
        targets: &[String],
    ) -> (Vec<ApiReport>, ApiReport, Option<Latency>, f64, Vec<Interval>) {
        let secs = (self.window.1 - self.window.0) as f64 / 1e9;
        let row = |api: String, target: String, s: &ApiStats| ApiReport {
            api,
            target,
            requests: s.requests,
            ok: s.ok,
            errors: s.errors.values().sum(),
            errors_by_kind: s.errors.clone(),
            offered_rate: s.requests as f64 / secs,
            achieved_rate: s.ok_in_window as f64 / secs,
            latency: Latency::of(&s.latency),
        };
        let rows: Vec<ApiReport> =
            self.apis.iter().enumerate().map(|(i, s)| row(names[i].clone(), targets[i].clone(), s)).collect();
        let mut all =
            ApiStats { latency: self.total.clone(), requests: 0, ok: 0, ok_in_window: 0, errors: BTreeMap::new() };
        for s in &self.apis {
            all.requests += s.requests;
            all.ok += s.ok;
            all.ok_in_window += s.ok_in_window;
            for (k, n) in &s.errors {
                *all.errors.entry(k.clone()).or_default() += n;
            }
        }
        let total = row("total".into(), String::new(), &all);
        let step_s = self.step_ns as f64 / 1e9;
        let timeline = self
            .timeline
            .iter()
            .enumerate()
            .map(|(i, b)| {
                // The last interval may be cut short by the end of the window.
                let start = i as u64 * self.step_ns;
                let len = self.step_ns.min(self.window.1 - self.window.0 - start) as f64 / 1e9;
                Interval {
                    start_s: start as f64 / 1e9,
                    length_s: len,
                    target_rate: None,
                    requests: b.requests,
                    offered_rate: b.requests as f64 / len,
                    sent_rate: b.sent as f64 / len,
                    achieved_rate: b.ok_done as f64 / len,
                    errors: b.errors,
                    latency: Latency::of(&b.latency),
                }
            })
            .collect();
        (rows, total, Latency::of(&self.lag), step_s, timeline)
    }
}

/// About 30 intervals over the window, each a round length from 100 ms up.
fn timeline_step_ns(window_ns: u64) -> u64 {
    const STEPS_MS: [u64; 14] =
        [100, 200, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000, 300_000, 600_000, 3_600_000, 21_600_000, 86_400_000];
    let want = window_ns / 30;
    STEPS_MS.iter().map(|ms| ms * 1_000_000).find(|&s| s >= want).unwrap_or(86_400_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(timeline_step_ns(3_000_000_000), 100_000_000);
        assert_eq!(timeline_step_ns(60_000_000_000), 2_000_000_000);
    }

    #[test]
    fn warmup_is_not_recorded_but_its_late_answers_count_as_throughput() {
        let mut r = Recorder::new(1, (1_000_000_000, 2_000_000_000), 10_000_000_000, None);
        // Scheduled in warm-up, answered inside the window.
        r.finished(0, false, Times { scheduled: 900_000_000, sent: 900_000_000, done: 1_100_000_000 }, Outcome::Ok);
        // Measured: 50 ms, of which 20 ms waiting to be sent.
        r.finished(0, true, Times { scheduled: 1_500_000_000, sent: 1_520_000_000, done: 1_550_000_000 }, Outcome::Ok);
        r.finished(
            0,
            true,
            Times { scheduled: 1_600_000_000, sent: 1_600_000_000, done: 1_700_000_000 },
            Outcome::Status(503),
        );
        r.unsent(0, 1_900_000_000);
        let (rows, total, lag, _, timeline) = r.summarise(&["a op".into()], &["127.0.0.1:1".into()]);
        assert_eq!(rows[0].requests, 3);
        assert_eq!(rows[0].ok, 1);
        assert_eq!(rows[0].errors, 2);
        assert_eq!(rows[0].errors_by_kind.get("503"), Some(&1));
        assert_eq!(rows[0].errors_by_kind.get("unsent"), Some(&1));
        assert_eq!(rows[0].achieved_rate, 2.0);
        let l = total.latency.expect("one latency");
        assert!((l.p50_ms - 50.0).abs() < 0.1, "{l:?}");
        assert!((lag.expect("lags").max_ms - 20.0).abs() < 0.1);
        assert_eq!(timeline[5].requests, 1);
        assert_eq!(timeline[1].achieved_rate, 10.0);
    }
}
