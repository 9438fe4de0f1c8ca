//! When requests arrive and which root API each one calls.
//!
//! Two arrival processes, both deterministic for a seed:
//!
//! - **Poisson** at a rate. Each phase (warm-up, then the measured window)
//!   gets exactly `round(rate × length)` arrivals, placed as a Poisson
//!   process conditioned on that count places them: the sorted positions of
//!   independent uniform points, drawn as normalised cumulative sums of
//!   exponentials. Gaps are still exponential-like (CV ≈ 1), but the offered
//!   rate is exactly the one asked for, so a run of a few seconds can tell
//!   "the system kept up" from "the generator happened to send less". Root
//!   APIs are drawn from the traced mix (`model.roots` counts).
//! - **Replay** of traced arrivals: the inter-arrival times of root spans,
//!   in start order, each with its own root API, divided by a speed factor
//!   and looped when the run outlasts the traces.
//! - **Profile**: a rate that changes over time ([`Profile`]), open loop.
//!   The window is cut into slots (1 s unless set); slot `[a, b)` gets
//!   `round(Λ(b)) − round(Λ(a))` arrivals, where `Λ` is the integral of the
//!   rate from the window's start. Rounding the running total rather than
//!   each slot carries every fraction forward, so no arrival is lost and any
//!   run of whole slots holds the curve's integral to within one arrival:
//!   a 5 s window at 5/s is offered 25 ± 1, where a plain Poisson process
//!   would give ± 5. Within a slot the arrivals are the slot's share of a
//!   Poisson process conditioned on that count: sorted uniform points of
//!   `Λ`, mapped back to time through `Λ⁻¹`, so they follow the curve inside
//!   the slot too (a 2 s burst is a burst, whatever the slot). The warm-up
//!   runs the same way at the profile's rate at t = 0.

use std::path::PathBuf;
use std::sync::Arc;

use palette_model::Model;
use palette_model::model::ApiId;
use palette_trace::rng::Rng;
use palette_trace::{Progress, ReadOptions};

use crate::error::LoadError;
use crate::profile::{Profile, TracedRoots, no_roots};

/// How arrivals are timed.
#[derive(Clone, Debug)]
pub enum Arrivals {
    /// Poisson arrivals at `rate` requests per second over the traced root mix.
    Poisson { rate: f64 },
    /// Traced inter-arrival times divided by `speed` (2: twice as fast).
    Replay { replay: Arc<Replay>, speed: f64 },
    /// A rate that changes over the measured window.
    Profile { profile: Arc<Profile> },
}

impl Arrivals {
    /// The mean rate asked for, requests per second (a profile: over the
    /// window it was made for).
    pub fn rate(&self) -> f64 {
        match self {
            Arrivals::Poisson { rate } => *rate,
            Arrivals::Replay { replay, speed } => replay.rate() * speed,
            Arrivals::Profile { profile } => profile.mean_rate(0.0, profile.duration_s()),
        }
    }

    /// The rate aimed at between `from` and `to` seconds into the measured
    /// window, on average; `None` for a replay, which aims at no rate.
    pub fn target_rate(&self, from: f64, to: f64) -> Option<f64> {
        match self {
            Arrivals::Poisson { rate } => Some(*rate),
            Arrivals::Replay { .. } => None,
            Arrivals::Profile { profile } => Some(profile.mean_rate(from, to)),
        }
    }

    /// `poisson`, `replay` or `profile`.
    pub fn name(&self) -> &'static str {
        match self {
            Arrivals::Poisson { .. } => "poisson",
            Arrivals::Replay { .. } => "replay",
            Arrivals::Profile { .. } => "profile",
        }
    }
}

/// One request to send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arrival {
    /// When, in nanoseconds after the run starts (warm-up included).
    pub at_ns: u64,
    /// The root API it calls.
    pub api: ApiId,
    /// Sent after the warm-up: its latency is recorded.
    pub measured: bool,
}

/// Root-span arrivals read from traces, ready to replay.
#[derive(Clone, Debug)]
pub struct Replay {
    /// In start order: the gap since the previous root span (for the first:
    /// the mean gap, used when the replay loops back to it), nanoseconds,
    /// and the root API.
    entries: Vec<(f64, ApiId)>,
    /// Root spans whose API is not a root API of the system, left out.
    pub unmatched: u64,
}

impl Replay {
    /// Reads the root spans of every trace in `inputs` and keeps those whose
    /// API (by service and operation name) is one of `model.roots`.
    pub fn read(
        inputs: &[PathBuf],
        opts: &ReadOptions,
        progress: &dyn Progress,
        model: &Model,
    ) -> Result<Replay, LoadError> {
        let (matched, unmatched) = TracedRoots::read(inputs, opts, progress)?.resolve(model);
        if matched.is_empty() {
            return Err(no_roots(model, unmatched, "replay"));
        }
        let mut replay = Replay::from_roots(matched)?;
        replay.unmatched = unmatched;
        Ok(replay)
    }

    /// A replay of root spans given as (start time in ns, root API), in any order.
    pub fn from_roots(mut roots: Vec<(i64, ApiId)>) -> Result<Replay, LoadError> {
        if roots.len() < 2 {
            return Err(LoadError::BadReplay(format!(
                "replay needs at least 2 traces to have an inter-arrival time; {} given",
                roots.len()
            )));
        }
        roots.sort_by_key(|&(start, api)| (start, api));
        let span = (roots[roots.len() - 1].0 - roots[0].0) as f64;
        if span <= 0.0 {
            return Err(LoadError::BadReplay(format!(
                "all {} traces to replay start at the same time: no inter-arrival times to replay",
                roots.len()
            )));
        }
        let mean_gap = span / (roots.len() - 1) as f64;
        let mut entries = Vec::with_capacity(roots.len());
        let mut prev = roots[0].0;
        for (i, &(start, api)) in roots.iter().enumerate() {
            let gap = if i == 0 { mean_gap } else { (start - prev) as f64 };
            entries.push((gap, api));
            prev = start;
        }
        Ok(Replay { entries, unmatched: 0 })
    }

    /// Root spans kept.
    pub fn traces(&self) -> usize {
        self.entries.len()
    }

    /// The traced mean rate, requests per second (at speed 1).
    pub fn rate(&self) -> f64 {
        let span: f64 = self.entries[1..].iter().map(|e| e.0).sum();
        (self.entries.len() - 1) as f64 / span * 1e9
    }
}

/// The arrivals of one run, in time order: an iterator that ends at the
/// end of the measured window.
pub struct Schedule {
    kind: Kind,
    /// Where the warm-up ends and the measured window starts, ns.
    warmup_ns: u64,
    /// Where the run ends, ns.
    end_ns: u64,
}

enum Kind {
    Poisson {
        rate: f64,
        /// Root APIs and their traced counts, the mix to draw from.
        roots: Vec<ApiId>,
        weights: Vec<f64>,
        /// Draws the gaps; root picks use their own stream, so adding a
        /// root API does not move any arrival.
        gaps: Rng,
        picks: Rng,
        /// The phase being generated: its start, length, arrivals left,
        /// the running sum of exponentials and their total over the phase.
        phase: Option<Phase>,
        /// The next phase to start: 0 warm-up, 1 measured, 2 done.
        next_phase: u8,
    },
    Profile(Box<Slots>),
    Replay {
        replay: Arc<Replay>,
        speed: f64,
        /// Index of the next entry (wraps around).
        next: usize,
        /// Time of the next arrival, ns (a float: many small gaps do not round away).
        at: f64,
    },
}

/// A phase of Poisson arrivals being generated.
struct Phase {
    start_ns: u64,
    len_ns: f64,
    /// Arrivals still to place.
    left: u64,
    /// Exponentials drawn so far, summed: the next point is at `sum / total`.
    sum: f64,
    /// All `count + 1` exponentials of the phase, summed.
    total: f64,
}

/// Profile arrivals, generated a slot at a time.
struct Slots {
    profile: Arc<Profile>,
    /// The system's root APIs and their traced counts: the mix of every
    /// profile but a learned one, which carries its own per bin.
    roots: Vec<ApiId>,
    weights: Vec<f64>,
    /// As for Poisson arrivals: places, and root picks on a stream of their own.
    gaps: Rng,
    picks: Rng,
    slot_ns: u64,
    /// Arrivals of the slot being sent, reversed (popped from the end).
    pending: Vec<Arrival>,
    /// The slot to fill next, counted from the start of its phase.
    next_slot: u64,
    /// 0 warm-up, 1 measured, 2 done.
    phase: u8,
}

/// The default slot: whole seconds, so that report windows of whole
/// seconds hold whole slots.
pub const SLOT_NS: u64 = 1_000_000_000;

impl Slots {
    /// Expected arrivals from the start of `phase` to `t` seconds into it.
    fn cumulative(&self, phase: u8, t: f64) -> f64 {
        match phase {
            0 => self.profile.rate_at(0.0) * t,
            _ => self.profile.cumulative(t),
        }
    }

    /// The time in `[a, b]` where the cumulative count reaches `y`, by
    /// bisection (the cumulative count never decreases).
    fn invert(&self, phase: u8, y: f64, mut a: f64, mut b: f64) -> f64 {
        for _ in 0..64 {
            if b - a < 1e-10 {
                break;
            }
            let mid = (a + b) / 2.0;
            if self.cumulative(phase, mid) < y {
                a = mid;
            } else {
                b = mid;
            }
        }
        b
    }

    /// Fills `pending` with the next slot that has arrivals; `false` at the end.
    fn fill(&mut self, warmup_ns: u64, end_ns: u64) -> bool {
        while self.pending.is_empty() {
            let (start_ns, len_ns) = match self.phase {
                0 => (0, warmup_ns),
                1 => (warmup_ns, end_ns - warmup_ns),
                _ => return false,
            };
            let from_ns = self.next_slot * self.slot_ns;
            if from_ns >= len_ns {
                self.phase += 1;
                self.next_slot = 0;
                continue;
            }
            self.next_slot += 1;
            let to_ns = (from_ns + self.slot_ns).min(len_ns);
            let (a, b) = (from_ns as f64 / 1e9, to_ns as f64 / 1e9);
            let (ya, yb) = (self.cumulative(self.phase, a), self.cumulative(self.phase, b));
            let count = (yb.round() - ya.round()).max(0.0) as u64;
            // n sorted uniform points: normalised sums of n + 1 exponentials.
            let spacings: Vec<f64> = (0..=count).map(|_| self.gaps.exp(1.0)).collect();
            let total: f64 = spacings.iter().sum();
            let mut sum = 0.0;
            for e in &spacings[..count as usize] {
                sum += e;
                let y = ya + (yb - ya) * sum / total;
                let t = self.invert(self.phase, y, a, b);
                let at_ns = (start_ns + (t * 1e9) as u64).clamp(start_ns + from_ns, start_ns + to_ns - 1);
                let at_window = if self.phase == 0 { 0.0 } else { t };
                let api = match self.profile.mix_at(at_window) {
                    Some((apis, weights)) => apis[self.picks.pick(weights)],
                    None => self.roots[self.picks.pick(&self.weights)],
                };
                self.pending.push(Arrival { at_ns, api, measured: at_ns >= warmup_ns });
            }
            self.pending.reverse();
        }
        true
    }
}

impl Schedule {
    /// The arrivals of a run with `warmup_ns` of warm-up then `duration_ns`
    /// measured, over `model`'s root mix, for `seed`.
    pub fn new(arrivals: &Arrivals, model: &Model, warmup_ns: u64, duration_ns: u64, seed: u64) -> Schedule {
        let kind = match arrivals {
            Arrivals::Poisson { rate } => Kind::Poisson {
                rate: *rate,
                roots: model.roots.iter().map(|r| r.api).collect(),
                weights: model.roots.iter().map(|r| r.count as f64).collect(),
                gaps: Rng::new(seed),
                picks: Rng::new(seed ^ 0x5DEE_CE66_D1CE_5EED),
                phase: None,
                next_phase: 0,
            },
            Arrivals::Replay { replay, speed } => {
                Kind::Replay { replay: replay.clone(), speed: *speed, next: 0, at: 0.0 }
            }
            Arrivals::Profile { profile } => Kind::Profile(Box::new(Slots {
                profile: profile.clone(),
                roots: model.roots.iter().map(|r| r.api).collect(),
                weights: model.roots.iter().map(|r| r.count as f64).collect(),
                gaps: Rng::new(seed),
                picks: Rng::new(seed ^ 0x5DEE_CE66_D1CE_5EED),
                slot_ns: SLOT_NS,
                pending: Vec::new(),
                next_slot: 0,
                phase: 0,
            })),
        };
        Schedule { kind, warmup_ns, end_ns: warmup_ns.saturating_add(duration_ns) }
    }

    /// Profile arrivals: slots of `slot_ns` (at least 1 ms) instead of 1 s.
    /// Other arrivals have no slots.
    pub fn with_slot_ns(mut self, slot_ns: u64) -> Schedule {
        if let Kind::Profile(slots) = &mut self.kind {
            slots.slot_ns = slot_ns.max(1_000_000);
        }
        self
    }

    /// Where the measured window starts, ns after the run's start.
    pub fn warmup_ns(&self) -> u64 {
        self.warmup_ns
    }

    /// Where the run ends, ns after its start.
    pub fn end_ns(&self) -> u64 {
        self.end_ns
    }
}

impl Iterator for Schedule {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        let (warmup_ns, end_ns) = (self.warmup_ns, self.end_ns);
        match &mut self.kind {
            Kind::Poisson { rate, roots, weights, gaps, picks, phase, next_phase } => loop {
                if let Some(p) = phase
                    && p.left > 0
                {
                    p.left -= 1;
                    p.sum += gaps.exp(1.0);
                    let at_ns = p.start_ns + (p.len_ns * p.sum / p.total) as u64;
                    let api = roots[picks.pick(weights)];
                    return Some(Arrival { at_ns: at_ns.min(end_ns - 1), api, measured: at_ns >= warmup_ns });
                }
                let (start_ns, len_ns) = match *next_phase {
                    0 => (0, warmup_ns),
                    1 => (warmup_ns, end_ns - warmup_ns),
                    _ => return None,
                };
                *next_phase += 1;
                let count = (*rate * len_ns as f64 / 1e9).round() as u64;
                // n points split the phase into n + 1 exponential spacings;
                // their total, drawn ahead on a copy of the stream, scales
                // the running sum into the phase.
                let mut ahead = gaps.clone();
                let total: f64 = (0..=count).map(|_| ahead.exp(1.0)).sum();
                *phase = Some(Phase { start_ns, len_ns: len_ns as f64, left: count, sum: 0.0, total });
            },
            Kind::Profile(slots) => {
                if !slots.fill(warmup_ns, end_ns) {
                    return None;
                }
                slots.pending.pop()
            }
            Kind::Replay { replay, speed, next, at } => {
                let at_ns = *at as u64;
                if at_ns >= end_ns {
                    return None;
                }
                let api = replay.entries[*next].1;
                *next = (*next + 1) % replay.entries.len();
                *at += replay.entries[*next].0 / *speed;
                Some(Arrival { at_ns, api, measured: at_ns >= warmup_ns })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ProfileSpec;

    fn model() -> Model {
        serde_json::from_value(serde_json::json!({
            "format": "palette-model/1", "kind": "palette",
            "options": {"stage_tolerance_ns": 100000, "confidence": 0.05, "max_unrolled": 3, "min_caller_support": 20},
            "provenance": {"inputs": [], "traces": 1, "spans": 1},
            "services": ["web"],
            "apis": [
                {"service": "web", "operation": "a", "count": 3, "callers": [], "latency": {"n": 0, "min": 0.0, "max": 0.0, "bins": []}},
                {"service": "web", "operation": "b", "count": 1, "callers": [], "latency": {"n": 0, "min": 0.0, "max": 0.0, "bins": []}}
            ],
            "roots": [{"api": 0, "count": 3}, {"api": 1, "count": 1}], "edges": []
        }))
        .unwrap()
    }

    const S: u64 = 1_000_000_000;

    fn profile(spec: &str, duration_s: u64, traces: Option<&TracedRoots>) -> Arrivals {
        let spec = ProfileSpec::parse(spec).unwrap();
        let (p, _) = Profile::new(&spec, duration_s as f64, &model(), traces).unwrap();
        Arrivals::Profile { profile: Arc::new(p) }
    }

    fn schedule(a: &Arrivals, warmup_s: u64, duration_s: u64, seed: u64) -> Vec<Arrival> {
        Schedule::new(a, &model(), warmup_s * S, duration_s * S, seed).collect()
    }

    /// Measured arrivals per `window_s` window, against the curve's integral there.
    fn counts_follow_the_curve(a: &Arrivals, duration_s: u64, window_s: u64) {
        let Arrivals::Profile { profile } = a else { unreachable!() };
        let warmup_s = 2;
        let got = schedule(a, warmup_s, duration_s, 7);
        assert!(got.windows(2).all(|w| w[0].at_ns <= w[1].at_ns), "{}: in time order", profile.spec());
        assert!(got.iter().all(|x| x.measured == (x.at_ns >= warmup_s * S) && x.at_ns < (warmup_s + duration_s) * S));
        // The warm-up runs at the rate at t = 0.
        let warm = got.iter().filter(|x| !x.measured).count() as f64;
        assert_eq!(warm, (profile.rate_at(0.0) * warmup_s as f64).round(), "{}", profile.spec());
        for w in 0..duration_s.div_ceil(window_s) {
            let (from, to) = (w * window_s, ((w + 1) * window_s).min(duration_s));
            let n = got.iter().filter(|x| x.measured && (from..to).contains(&((x.at_ns - warmup_s * S) / S))).count()
                as f64;
            let want = profile.cumulative(to as f64) - profile.cumulative(from as f64);
            assert!(
                (n - want).abs() < 1.0,
                "{}: {n} arrivals in [{from}s, {to}s), the curve says {want}",
                profile.spec()
            );
        }
        // Not a grid: the gaps vary as a Poisson process's do (CV near 1
        // within a slot of constant rate; the curve adds to it).
        let gaps: Vec<f64> = got.windows(2).map(|w| (w[1].at_ns - w[0].at_ns) as f64).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt();
        assert!(sd / mean > 0.7, "{}: CV {}", profile.spec(), sd / mean);
    }

    #[test]
    fn each_kind_of_profile_gets_its_curve_window_by_window() {
        counts_follow_the_curve(&profile("step:rates=5,20,10,every=10s", 60, None), 60, 5);
        counts_follow_the_curve(&profile("step:rates=7.3,0,every=1500ms", 30, None), 30, 1);
        counts_follow_the_curve(&profile("ramp:from=5,to=40", 60, None), 60, 5);
        counts_follow_the_curve(&profile("ramp:from=40,to=2,over=20s", 40, None), 40, 5);
        counts_follow_the_curve(&profile("sine:period=60s,min=5,max=40", 60, None), 60, 5);
        counts_follow_the_curve(&profile("sine:period=7s,min=0,max=33.3", 23, None), 23, 1);
        counts_follow_the_curve(&profile("bursts:base=5,peak=50,every=20s,length=2s", 60, None), 60, 2);
        counts_follow_the_curve(&profile("bursts:base=0,peak=100,every=5s,length=500ms", 20, None), 20, 5);
    }

    #[test]
    fn inside_a_slot_arrivals_follow_the_curve_too() {
        // A 0.5 s burst at 100/s within each 5 s: its 50 arrivals land in the
        // burst, not spread over the 1 s slot that holds it.
        let a = profile("bursts:base=0,peak=100,every=5s,length=500ms", 20, None);
        let got = schedule(&a, 0, 20, 3);
        assert_eq!(got.len(), 200);
        assert!(got.iter().all(|x| x.at_ns % (5 * S) >= 4_500_000_000), "every arrival inside a burst");
    }

    #[test]
    fn same_seed_same_arrivals() {
        let a = profile("sine:period=20s,min=10,max=80", 20, None);
        let one = schedule(&a, 1, 20, 11);
        assert_eq!(one, schedule(&a, 1, 20, 11));
        let other = schedule(&a, 1, 20, 12);
        assert_eq!(one.len(), other.len(), "the counts are the curve's, whatever the seed");
        assert_ne!(one, other);
        // The root mix is the model's (3 : 1).
        let share = one.iter().filter(|x| x.api == 0).count() as f64 / one.len() as f64;
        assert!((share - 0.75).abs() < 0.05, "{share}");
        // Smaller slots hold the counts of smaller windows.
        let fine: Vec<Arrival> = Schedule::new(&a, &model(), 0, 20 * S, 11).with_slot_ns(S / 4).collect();
        let Arrivals::Profile { profile } = &a else { unreachable!() };
        for q in 0..80u64 {
            let n = fine.iter().filter(|x| x.at_ns / (S / 4) == q).count() as f64;
            let want = profile.cumulative((q + 1) as f64 / 4.0) - profile.cumulative(q as f64 / 4.0);
            assert!((n - want).abs() < 1.0, "quarter {q}: {n} vs {want}");
        }
    }

    #[test]
    fn a_learned_profile_follows_the_traced_rate_and_mix_over_time() {
        // 20 s traced: `a` at 10/s for 10 s, then `b` at 40/s.
        let mut roots = Vec::new();
        for i in 0..100 {
            roots.push((i * 100_000_000, "web".to_string(), "a".to_string()));
        }
        for i in 0..400 {
            roots.push((10 * S as i64 + i * 25_000_000, "web".to_string(), "b".to_string()));
        }
        let traces = TracedRoots::from_names(roots);
        let a = profile("learned:bin=1s", 40, Some(&traces));
        counts_follow_the_curve(&a, 40, 5);
        let got = schedule(&a, 0, 40, 5);
        // Looped once: 1,000 arrivals; the mix of each half is its own.
        assert_eq!(got.len(), 1000);
        for (from, to, api, n) in [(0, 10, 0, 100), (10, 20, 1, 400), (20, 30, 0, 100), (30, 40, 1, 400)] {
            let inside: Vec<&Arrival> = got.iter().filter(|x| (from * S..to * S).contains(&x.at_ns)).collect();
            assert_eq!(inside.len(), n, "[{from}, {to})");
            assert!(inside.iter().all(|x| x.api == api), "[{from}, {to}): all calls to root {api}");
        }
        // Twice as fast: the same 500 traces in 10 s, at twice the rate.
        let fast = profile("learned:bin=1s,speed=2", 10, Some(&traces));
        assert_eq!(schedule(&fast, 0, 10, 5).len(), 500);
    }
}
