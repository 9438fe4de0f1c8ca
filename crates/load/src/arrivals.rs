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

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use palette_model::Model;
use palette_model::model::ApiId;
use palette_trace::rng::Rng;
use palette_trace::{Api, CallTree, Progress, ReadOptions, read_traces};

use crate::error::LoadError;

/// How arrivals are timed.
#[derive(Clone, Debug)]
pub enum Arrivals {
    /// Poisson arrivals at `rate` requests per second over the traced root mix.
    Poisson { rate: f64 },
    /// Traced inter-arrival times divided by `speed` (2: twice as fast).
    Replay { replay: Arc<Replay>, speed: f64 },
}

impl Arrivals {
    /// The mean rate asked for, requests per second.
    pub fn rate(&self) -> f64 {
        match self {
            Arrivals::Poisson { rate } => *rate,
            Arrivals::Replay { replay, speed } => replay.rate() * speed,
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
        let mut roots: Vec<(i64, Api)> = Vec::new();
        let mut sink = |tree: &CallTree| {
            let root = tree.root();
            roots.push((root.start_ns, root.api));
            Ok(())
        };
        let read = read_traces(inputs, opts, progress, &mut sink)?;
        let by_name: HashMap<(&str, &str), ApiId> = model
            .roots
            .iter()
            .map(|r| {
                let a = &model.apis[r.api as usize];
                ((a.service.as_str(), a.operation.as_str()), r.api)
            })
            .collect();
        let mut resolved: HashMap<Api, Option<ApiId>> = HashMap::new();
        let mut matched = Vec::with_capacity(roots.len());
        let mut unmatched = 0;
        for (start, api) in roots {
            let id = *resolved.entry(api).or_insert_with(|| {
                by_name.get(&(read.names.resolve(api.service), read.names.resolve(api.operation))).copied()
            });
            match id {
                Some(id) => matched.push((start, id)),
                None => unmatched += 1,
            }
        }
        if matched.is_empty() {
            let roots: Vec<String> = model.roots.iter().map(|r| model.api_name(r.api)).collect();
            let traces = unmatched;
            return Err(LoadError::BadReplay(format!(
                "none of the {traces} traces to replay starts at a root API of the system ({})",
                roots.join(", ")
            )));
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
        };
        Schedule { kind, warmup_ns, end_ns: warmup_ns.saturating_add(duration_ns) }
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
