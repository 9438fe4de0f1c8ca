//! Load that changes over time: a rate curve `rate(t)` over the measured
//! window, given as a `--profile` spec.
//!
//! | spec | rate at `t` seconds into the measured window |
//! |---|---|
//! | `step:rates=5,20,10,every=10s` | each rate held for `every`, in turn, the list cycling |
//! | `ramp:from=5,to=40[,over=30s]` | linear from `from` to `to` over `over` (default: the whole window), then `to` |
//! | `sine:period=60s,min=5,max=40` | `min + (max − min)·(1 − cos 2πt/period)/2`: `min` at t = 0, `max` at half a period |
//! | `bursts:base=5,peak=50,every=20s,length=2s` | `base`, and `peak` over the last `length` of each `every` (the first burst ends at `every`) |
//! | `learned[:speed=2,scale=0.5,bin=1s]` | the traces' own rate of root spans, per root API, in bins, looped; `speed` compresses time (and raises the rate alike, as `--replay --speed` does), `scale` multiplies the rate |
//!
//! Rates are requests per second (`20` or `20/s`); durations `500ms`, `10s`,
//! `2m`, `1h` or a bare number of seconds.
//!
//! The profile's clock starts with the measured window; the warm-up before
//! it runs at the profile's rate at t = 0 (and, for `learned`, the root mix
//! of its first bin), so the system meets the first window already warm at
//! the rate it starts with.
//!
//! How arrivals follow the curve is in [`crate::arrivals`]: whole slots of
//! the window get exactly the rounded cumulative count, so the count of any
//! span of slots is within one of the curve's integral.

use std::path::PathBuf;

use palette_model::Model;
use palette_model::model::ApiId;
use palette_trace::{Api, CallTree, Progress, ReadOptions, read_traces};

use crate::error::LoadError;

/// A rate above this is a typo, not a load: it would plan billions of arrivals.
const MAX_RATE: f64 = 1_000_000.0;

/// A valid spec of every kind, shown with an error.
const EXAMPLES: [(&str, &str); 5] = [
    ("step", "step:rates=5,20,10,every=10s"),
    ("ramp", "ramp:from=5,to=40,over=30s"),
    ("sine", "sine:period=60s,min=5,max=40"),
    ("bursts", "bursts:base=5,peak=50,every=20s,length=2s"),
    ("learned", "learned:speed=1,scale=1,bin=1s"),
];

/// A parsed `--profile` spec, before it meets a run (a duration, and for
/// `learned` the traces).
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileSpec {
    /// The spec as given, for reports and errors.
    pub text: String,
    /// What it asks for.
    pub shape: Shape,
}

/// The kinds of curve, with their parameters (rates per second, times in seconds).
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    Step { rates: Vec<f64>, every_s: f64 },
    Ramp { from: f64, to: f64, over_s: Option<f64> },
    Sine { period_s: f64, min: f64, max: f64 },
    Bursts { base: f64, peak: f64, every_s: f64, length_s: f64 },
    Learned { speed: f64, scale: f64, bin_s: Option<f64> },
}

/// A bad spec: names the bad part and shows a valid one of the same kind.
fn bad(spec: &str, kind: Option<&str>, why: String) -> LoadError {
    let example = match kind.and_then(|k| EXAMPLES.iter().find(|e| e.0 == k)) {
        Some((_, e)) => format!("e.g. --profile {e}"),
        None => format!("e.g. --profile {}", EXAMPLES.iter().map(|e| e.1).collect::<Vec<_>>().join(" or ")),
    };
    LoadError::BadProfile(format!("--profile `{spec}`: {why}; {example}"))
}

/// `20` or `20/s`.
fn parse_rate(s: &str) -> Option<f64> {
    let v: f64 = s.trim().trim_end_matches("/s").trim().parse().ok()?;
    (v.is_finite() && (0.0..=MAX_RATE).contains(&v)).then_some(v)
}

/// `500ms`, `10s`, `2m`, `1h` or bare seconds, positive.
fn parse_seconds(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let v: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    let secs = v * scale;
    (secs.is_finite() && secs > 0.0 && secs <= 366.0 * 86_400.0).then_some(secs)
}

impl ProfileSpec {
    /// Parses `KIND[:key=value,…]`; a list value (`rates=`) continues over
    /// the commas up to the next `key=`.
    pub fn parse(text: &str) -> Result<ProfileSpec, LoadError> {
        let spec = text.trim();
        let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
        let kind = kind.trim();
        let known = EXAMPLES.iter().any(|e| e.0 == kind);
        if !known {
            let why = if kind.is_empty() {
                "no profile kind".to_string()
            } else {
                format!("unknown profile kind `{kind}` (step, ramp, sine, bursts or learned)")
            };
            return Err(bad(spec, None, why));
        }
        let fail = |why: String| bad(spec, Some(kind), why);
        let mut pairs: Vec<(String, Vec<String>)> = Vec::new();
        for token in rest.split(',').map(str::trim) {
            if rest.trim().is_empty() {
                break;
            }
            match token.split_once('=') {
                Some((k, v)) => {
                    let k = k.trim().to_string();
                    if pairs.iter().any(|p| p.0 == k) {
                        return Err(fail(format!("`{k}` is given twice")));
                    }
                    pairs.push((k, vec![v.trim().to_string()]));
                }
                None => match pairs.last_mut() {
                    Some(last) if last.0 == "rates" => last.1.push(token.to_string()),
                    _ => return Err(fail(format!("`{token}` is not a key=value"))),
                },
            }
        }
        let takes: &[&str] = match kind {
            "step" => &["rates", "every"],
            "ramp" => &["from", "to", "over"],
            "sine" => &["period", "min", "max"],
            "bursts" => &["base", "peak", "every", "length"],
            _ => &["speed", "scale", "bin"],
        };
        if let Some((k, _)) = pairs.iter().find(|p| !takes.contains(&p.0.as_str())) {
            return Err(fail(format!("unknown key `{k}` for {kind} (it takes {})", takes.join(", "))));
        }
        for (k, v) in &pairs {
            if k != "rates" && v.len() > 1 {
                return Err(fail(format!("`{k}` takes one value, not {}", v.join(","))));
            }
        }
        let raw = |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| p.1[0].as_str());
        let rate = |k: &str| -> Result<Option<f64>, LoadError> {
            match raw(k) {
                None => Ok(None),
                Some(v) => parse_rate(v).map(Some).ok_or_else(|| {
                    fail(format!("{k}=`{v}` is not a rate (0 to 1000000 requests per second, like 20 or 20/s)"))
                }),
            }
        };
        let secs = |k: &str| -> Result<Option<f64>, LoadError> {
            match raw(k) {
                None => Ok(None),
                Some(v) => parse_seconds(v)
                    .map(Some)
                    .ok_or_else(|| fail(format!("{k}=`{v}` is not a positive duration like 500ms, 10s or 2m"))),
            }
        };
        let factor = |k: &str| -> Result<f64, LoadError> {
            match raw(k) {
                None => Ok(1.0),
                Some(v) => v
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && *f > 0.0 && *f <= 1e6)
                    .ok_or_else(|| fail(format!("{k}=`{v}` is not a positive factor like 2 or 0.5"))),
            }
        };
        let need = |k: &str, v: Option<f64>| v.ok_or_else(|| fail(format!("{kind} needs {k}=")));
        let shape = match kind {
            "step" => {
                let list = pairs.iter().find(|p| p.0 == "rates").map(|p| p.1.clone());
                let list = list.ok_or_else(|| fail("step needs rates=".into()))?;
                let mut rates = Vec::with_capacity(list.len());
                for v in &list {
                    rates.push(parse_rate(v).ok_or_else(|| {
                        fail(format!("`{v}` in rates is not a rate (0 to 1000000 requests per second)"))
                    })?);
                }
                if rates.iter().all(|&r| r == 0.0) {
                    return Err(fail("every rate is 0: nothing would be sent".into()));
                }
                Shape::Step { rates, every_s: need("every", secs("every")?)? }
            }
            "ramp" => {
                let (from, to) = (need("from", rate("from")?)?, need("to", rate("to")?)?);
                if from == 0.0 && to == 0.0 {
                    return Err(fail("from and to are both 0: nothing would be sent".into()));
                }
                Shape::Ramp { from, to, over_s: secs("over")? }
            }
            "sine" => {
                let (min, max) = (need("min", rate("min")?)?, need("max", rate("max")?)?);
                if min > max {
                    return Err(fail(format!("min ({min}) is above max ({max})")));
                }
                if max == 0.0 {
                    return Err(fail("max is 0: nothing would be sent".into()));
                }
                Shape::Sine { period_s: need("period", secs("period")?)?, min, max }
            }
            "bursts" => {
                let (base, peak) = (need("base", rate("base")?)?, need("peak", rate("peak")?)?);
                let (every_s, length_s) = (need("every", secs("every")?)?, need("length", secs("length")?)?);
                if length_s >= every_s {
                    return Err(fail(format!("length ({length_s}s) must be shorter than every ({every_s}s)")));
                }
                if base == 0.0 && peak == 0.0 {
                    return Err(fail("base and peak are both 0: nothing would be sent".into()));
                }
                Shape::Bursts { base, peak, every_s, length_s }
            }
            _ => Shape::Learned { speed: factor("speed")?, scale: factor("scale")?, bin_s: secs("bin")? },
        };
        Ok(ProfileSpec { text: spec.to_string(), shape })
    }

    /// Whether it is learned from traces, which the caller must read ([`TracedRoots`]).
    pub fn needs_traces(&self) -> bool {
        matches!(self.shape, Shape::Learned { .. })
    }
}

/// Root spans of traces by start time, read once and matched to a system's
/// root APIs for each system that needs them (`palette run` has two).
#[derive(Clone, Debug)]
pub struct TracedRoots {
    /// Start (ns) and the root span's service and operation.
    roots: Vec<(i64, String, String)>,
}

impl TracedRoots {
    /// Reads the root span of every trace in `inputs`.
    pub fn read(inputs: &[PathBuf], opts: &ReadOptions, progress: &dyn Progress) -> Result<TracedRoots, LoadError> {
        let mut raw: Vec<(i64, Api)> = Vec::new();
        let mut sink = |tree: &CallTree| {
            let root = tree.root();
            raw.push((root.start_ns, root.api));
            Ok(())
        };
        let read = read_traces(inputs, opts, progress, &mut sink)?;
        let roots = raw
            .into_iter()
            .map(|(start, api)| {
                (start, read.names.resolve(api.service).to_string(), read.names.resolve(api.operation).to_string())
            })
            .collect();
        Ok(TracedRoots { roots })
    }

    /// Root spans given as (start ns, service, operation).
    pub fn from_names(roots: Vec<(i64, String, String)>) -> TracedRoots {
        TracedRoots { roots }
    }

    /// The roots whose API (by service and operation) is one of
    /// `model.roots`, as (start ns, API), and how many are not.
    pub fn resolve(&self, model: &Model) -> (Vec<(i64, ApiId)>, u64) {
        let by_name: std::collections::HashMap<(&str, &str), ApiId> = model
            .roots
            .iter()
            .map(|r| {
                let a = &model.apis[r.api as usize];
                ((a.service.as_str(), a.operation.as_str()), r.api)
            })
            .collect();
        let mut matched = Vec::with_capacity(self.roots.len());
        let mut unmatched = 0;
        for (start, service, operation) in &self.roots {
            match by_name.get(&(service.as_str(), operation.as_str())) {
                Some(&id) => matched.push((*start, id)),
                None => unmatched += 1,
            }
        }
        (matched, unmatched)
    }
}

/// None of `traces` traces starts at a root API of `model`: nothing to
/// `what` (replay, learn a profile from).
pub(crate) fn no_roots(model: &Model, traces: u64, what: &str) -> LoadError {
    let roots: Vec<String> = model.roots.iter().map(|r| model.api_name(r.api)).collect();
    LoadError::BadReplay(format!(
        "none of the {traces} traces to {what} starts at a root API of the system ({})",
        roots.join(", ")
    ))
}

/// A rate curve learned from traced root spans: counts per bin, per root API.
#[derive(Clone, Debug)]
struct Learned {
    /// Bin width, seconds of traced time.
    bin_s: f64,
    /// Per bin: the root APIs with traces in it and their counts (sparse:
    /// most bins hold few APIs; apart, so a pick needs no copy).
    bins: Vec<(Vec<ApiId>, Vec<f64>)>,
    /// Traces before each bin (one more entry than bins): the cumulative
    /// count at bin edges, which the curve's integral interpolates.
    before: Vec<f64>,
    speed: f64,
    scale: f64,
}

impl Learned {
    fn new(mut roots: Vec<(i64, ApiId)>, speed: f64, scale: f64, bin_s: Option<f64>) -> Result<Learned, LoadError> {
        roots.sort_unstable();
        let (first, last) = (roots[0].0, roots[roots.len() - 1].0);
        let span_s = (last - first) as f64 / 1e9;
        if roots.len() < 2 || span_s <= 0.0 {
            return Err(LoadError::BadReplay(format!(
                "a learned profile needs traces that start at different times; {} trace(s) over {span_s} s",
                roots.len()
            )));
        }
        // About 20 traces per bin on average, at least 1 s: fewer make a
        // curve of mostly noise.
        let bin_s = bin_s.unwrap_or_else(|| {
            const ROUND: [f64; 12] = [1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 86_400.0];
            let want = span_s * 20.0 / roots.len() as f64;
            ROUND.iter().copied().find(|&b| b >= want).unwrap_or(86_400.0)
        });
        // The last trace starts at the end of the span: it falls in the last bin.
        let n = ((span_s / bin_s).ceil() as usize).max(1);
        if n > 10_000_000 {
            return Err(LoadError::BadProfile(format!(
                "--profile learned: bin={bin_s}s makes {n} bins over the traces' {span_s:.0} s; use a wider bin"
            )));
        }
        let mut counts: Vec<std::collections::BTreeMap<ApiId, f64>> = vec![Default::default(); n];
        for (start, api) in roots {
            let i = (((start - first) as f64 / 1e9 / bin_s) as usize).min(n - 1);
            *counts[i].entry(api).or_default() += 1.0;
        }
        let bins: Vec<(Vec<ApiId>, Vec<f64>)> = counts.into_iter().map(|c| c.into_iter().unzip()).collect();
        let mut before = Vec::with_capacity(n + 1);
        let mut sum = 0.0;
        before.push(0.0);
        for b in &bins {
            sum += b.1.iter().sum::<f64>();
            before.push(sum);
        }
        Ok(Learned { bin_s, bins, before, speed, scale })
    }

    /// Traced time at run time `t` (seconds): bin index and the fraction into it.
    fn at(&self, t: f64) -> (f64, usize, f64) {
        let n = self.bins.len();
        let pos = (t * self.speed / self.bin_s).max(0.0);
        let loops = (pos / n as f64).floor();
        let within = pos - loops * n as f64;
        let i = (within.floor() as usize).min(n - 1);
        (loops, i, (within - i as f64).clamp(0.0, 1.0))
    }

    fn rate(&self, t: f64) -> f64 {
        let (_, i, _) = self.at(t);
        (self.before[i + 1] - self.before[i]) / self.bin_s * self.speed * self.scale
    }

    fn cumulative(&self, t: f64) -> f64 {
        let (loops, i, frac) = self.at(t);
        let total = self.before[self.bins.len()];
        let c = loops * total + self.before[i] + frac * (self.before[i + 1] - self.before[i]);
        c * self.scale
    }
}

/// A rate curve over a run's measured window.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The spec, for the report.
    spec: String,
    curve: Curve,
    /// The measured window it was made for, seconds: a ramp's default
    /// length, and what the mean rate is over.
    duration_s: f64,
}

#[derive(Clone, Debug)]
enum Curve {
    Step { rates: Vec<f64>, every_s: f64 },
    Ramp { from: f64, to: f64, over_s: f64 },
    Sine { period_s: f64, min: f64, max: f64 },
    Bursts { base: f64, peak: f64, every_s: f64, length_s: f64 },
    Learned(Learned),
}

impl Profile {
    /// The curve of `spec` over a measured window of `duration_s` seconds;
    /// a learned one from `traces`' roots that are roots of `model`
    /// (returned: how many were not).
    pub fn new(
        spec: &ProfileSpec,
        duration_s: f64,
        model: &Model,
        traces: Option<&TracedRoots>,
    ) -> Result<(Profile, u64), LoadError> {
        let mut unmatched = 0;
        let curve = match spec.shape.clone() {
            Shape::Step { rates, every_s } => Curve::Step { rates, every_s },
            Shape::Ramp { from, to, over_s } => Curve::Ramp { from, to, over_s: over_s.unwrap_or(duration_s) },
            Shape::Sine { period_s, min, max } => Curve::Sine { period_s, min, max },
            Shape::Bursts { base, peak, every_s, length_s } => Curve::Bursts { base, peak, every_s, length_s },
            Shape::Learned { speed, scale, bin_s } => {
                let traces = traces.ok_or_else(|| {
                    bad(&spec.text, Some("learned"), "a learned profile needs traces to learn from".into())
                })?;
                let (roots, left_out) = traces.resolve(model);
                if roots.is_empty() {
                    return Err(no_roots(model, left_out, "learn the profile from"));
                }
                unmatched = left_out;
                Curve::Learned(Learned::new(roots, speed, scale, bin_s)?)
            }
        };
        Ok((Profile { spec: spec.text.clone(), curve, duration_s }, unmatched))
    }

    /// The spec it was made from.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The measured window it was made for, seconds.
    pub fn duration_s(&self) -> f64 {
        self.duration_s
    }

    /// Requests per second at `t` seconds into the measured window.
    pub fn rate_at(&self, t: f64) -> f64 {
        let t = t.max(0.0);
        match &self.curve {
            Curve::Step { rates, every_s } => rates[((t / every_s) as usize) % rates.len()],
            Curve::Ramp { from, to, over_s } => from + (to - from) * (t / over_s).min(1.0),
            Curve::Sine { period_s, min, max } => {
                min + (max - min) * (1.0 - (std::f64::consts::TAU * t / period_s).cos()) / 2.0
            }
            Curve::Bursts { base, peak, every_s, length_s } => {
                if t % every_s >= every_s - length_s {
                    *peak
                } else {
                    *base
                }
            }
            Curve::Learned(l) => l.rate(t),
        }
    }

    /// Requests expected from the window's start to `t` seconds into it:
    /// the integral of the rate, in closed form so that counts over long
    /// runs do not drift.
    pub fn cumulative(&self, t: f64) -> f64 {
        let t = t.max(0.0);
        match &self.curve {
            Curve::Step { rates, every_s } => {
                let per_cycle: f64 = rates.iter().sum::<f64>() * every_s;
                let cycle_s = every_s * rates.len() as f64;
                let cycles = (t / cycle_s).floor();
                let mut left = t - cycles * cycle_s;
                let mut sum = cycles * per_cycle;
                for r in rates {
                    let d = left.min(*every_s);
                    sum += r * d;
                    left -= d;
                    if left <= 0.0 {
                        break;
                    }
                }
                sum
            }
            Curve::Ramp { from, to, over_s } => {
                let u = t.min(*over_s);
                from * u + (to - from) * u * u / (2.0 * over_s) + to * (t - u)
            }
            Curve::Sine { period_s, min, max } => {
                let w = std::f64::consts::TAU / period_s;
                (min + max) / 2.0 * t - (max - min) / 2.0 * (w * t).sin() / w
            }
            Curve::Bursts { base, peak, every_s, length_s } => {
                let quiet = every_s - length_s;
                let periods = (t / every_s).floor();
                let left = t - periods * every_s;
                let per_period = base * quiet + peak * length_s;
                periods * per_period + base * left.min(quiet) + peak * (left - quiet).max(0.0)
            }
            Curve::Learned(l) => l.cumulative(t),
        }
    }

    /// The mean rate between `from` and `to` seconds into the window.
    pub fn mean_rate(&self, from: f64, to: f64) -> f64 {
        if to <= from {
            return self.rate_at(from);
        }
        (self.cumulative(to) - self.cumulative(from)) / (to - from)
    }

    /// The root mix at `t` seconds into the window: `None` when it is the
    /// system's traced mix throughout, else the APIs and weights of the
    /// learned bin `t` falls in.
    pub(crate) fn mix_at(&self, t: f64) -> Option<(&[ApiId], &[f64])> {
        match &self.curve {
            Curve::Learned(l) => {
                let (apis, weights) = &l.bins[l.at(t.max(0.0)).1];
                Some((apis, weights))
            }
            _ => None,
        }
    }

    /// Learned profiles: the bin width, seconds of traced time.
    pub fn bin_s(&self) -> Option<f64> {
        match &self.curve {
            Curve::Learned(l) => Some(l.bin_s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Shape {
        ProfileSpec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).shape
    }

    fn err(s: &str) -> String {
        let e = ProfileSpec::parse(s).expect_err(s);
        assert!(e.is_usage(), "{s}: a usage error");
        e.to_string()
    }

    fn model() -> Model {
        serde_json::from_value(serde_json::json!({
            "format": "palette-model/1", "kind": "palette",
            "options": {"stage_tolerance_ns": 100000, "confidence": 0.05, "max_unrolled": 3, "min_caller_support": 20},
            "provenance": {"inputs": [], "traces": 1, "spans": 1},
            "services": ["web"],
            "apis": [
                {"service": "web", "operation": "a", "count": 1, "callers": [], "latency": {"n": 0, "min": 0.0, "max": 0.0, "bins": []}},
                {"service": "web", "operation": "b", "count": 1, "callers": [], "latency": {"n": 0, "min": 0.0, "max": 0.0, "bins": []}}
            ],
            "roots": [{"api": 0, "count": 1}, {"api": 1, "count": 1}], "edges": []
        }))
        .unwrap()
    }

    fn profile(s: &str, duration_s: f64) -> Profile {
        Profile::new(&ProfileSpec::parse(s).unwrap(), duration_s, &model(), None).unwrap().0
    }

    #[test]
    fn specs_parse() {
        assert_eq!(parse("step:rates=5,20,10,every=10s"), Shape::Step { rates: vec![5.0, 20.0, 10.0], every_s: 10.0 });
        assert_eq!(parse("step:every=500ms,rates=5/s,0"), Shape::Step { rates: vec![5.0, 0.0], every_s: 0.5 });
        assert_eq!(parse("ramp:from=5,to=40"), Shape::Ramp { from: 5.0, to: 40.0, over_s: None });
        assert_eq!(parse(" ramp:from=40, to=5, over=2m "), Shape::Ramp { from: 40.0, to: 5.0, over_s: Some(120.0) });
        assert_eq!(parse("sine:period=60s,min=5,max=40"), Shape::Sine { period_s: 60.0, min: 5.0, max: 40.0 });
        assert_eq!(
            parse("bursts:base=5,peak=50,every=20s,length=2s"),
            Shape::Bursts { base: 5.0, peak: 50.0, every_s: 20.0, length_s: 2.0 }
        );
        assert_eq!(parse("learned"), Shape::Learned { speed: 1.0, scale: 1.0, bin_s: None });
        assert_eq!(parse("learned:speed=2,bin=5s"), Shape::Learned { speed: 2.0, scale: 1.0, bin_s: Some(5.0) });
        assert!(ProfileSpec::parse("learned:scale=3").unwrap().needs_traces());
        assert!(!ProfileSpec::parse("sine:period=1m,min=0,max=1").unwrap().needs_traces());
    }

    #[test]
    fn bad_specs_name_the_bad_part_and_show_a_valid_one() {
        let cases = [
            ("", "no profile kind"),
            ("wave:period=1s", "unknown profile kind `wave`"),
            ("sine:period=60s,min=5", "sine needs max="),
            ("sine:period=60s,min=50,max=40", "min (50) is above max (40)"),
            ("sine:period=soon,min=5,max=40", "period=`soon` is not a positive duration"),
            ("sine:period=0s,min=5,max=40", "period=`0s` is not a positive duration"),
            ("sine:period=60s,min=5,max=40,phase=3", "unknown key `phase` for sine (it takes period, min, max)"),
            ("sine:period=60s,min=5,max=40,min=6", "`min` is given twice"),
            ("sine:period=60s,min=5,max=-1", "max=`-1` is not a rate"),
            ("step:rates=5,x,10,every=10s", "`x` in rates is not a rate"),
            ("step:rates=0,0,every=10s", "nothing would be sent"),
            ("step:rates=5,20", "step needs every="),
            ("ramp:from=5,to=40,7", "`7` is not a key=value"),
            ("ramp:from=5,6,to=40", "`6` is not a key=value"),
            ("ramp:from=0,to=0", "nothing would be sent"),
            ("ramp:from=5,to=1e9", "to=`1e9` is not a rate"),
            ("bursts:base=5,peak=50,every=2s,length=2s", "length (2s) must be shorter than every (2s)"),
            ("learned:speed=0", "speed=`0` is not a positive factor"),
            ("learned:speed=2,3", "`3` is not a key=value"),
        ];
        for (spec, why) in cases {
            let e = err(spec);
            assert!(e.starts_with(&format!("--profile `{}`: ", spec.trim())), "{e}");
            assert!(e.contains(why), "{spec}: {e}");
            assert!(e.contains("e.g. --profile "), "{e}");
        }
        // The example shown is of the kind asked for, and itself valid.
        let e = err("sine:period=60s");
        let example = e.split("e.g. --profile ").nth(1).unwrap();
        assert!(example.starts_with("sine:"), "{e}");
        ProfileSpec::parse(example).unwrap();
        for (_, example) in EXAMPLES {
            ProfileSpec::parse(example).unwrap();
        }
    }

    /// The closed-form integral agrees with a fine sum of the rate.
    fn check_integral(p: &Profile, until: f64) {
        let steps = 200_000;
        let dt = until / steps as f64;
        let mut sum = 0.0;
        for k in 0..steps {
            sum += p.rate_at((k as f64 + 0.5) * dt) * dt;
        }
        let exact = p.cumulative(until);
        assert!((sum - exact).abs() < 1e-3 * exact.max(1.0) + 0.05, "{}: {sum} vs {exact}", p.spec());
    }

    #[test]
    fn curves_and_their_integrals() {
        let step = profile("step:rates=5,20,10,every=10s", 60.0);
        assert_eq!(
            (step.rate_at(0.0), step.rate_at(10.0), step.rate_at(29.9), step.rate_at(30.0)),
            (5.0, 20.0, 10.0, 5.0)
        );
        assert_eq!(step.cumulative(35.0), 50.0 + 200.0 + 100.0 + 25.0);
        let ramp = profile("ramp:from=5,to=40", 70.0);
        assert_eq!(
            (ramp.rate_at(0.0), ramp.rate_at(35.0), ramp.rate_at(70.0), ramp.rate_at(99.0)),
            (5.0, 22.5, 40.0, 40.0)
        );
        assert!((ramp.mean_rate(0.0, 70.0) - 22.5).abs() < 1e-9);
        let ramp = profile("ramp:from=40,to=0,over=10s", 70.0);
        assert!((ramp.cumulative(20.0) - 200.0).abs() < 1e-9);
        let sine = profile("sine:period=60s,min=5,max=40", 60.0);
        assert!((sine.rate_at(0.0) - 5.0).abs() < 1e-9 && (sine.rate_at(30.0) - 40.0).abs() < 1e-9);
        assert!((sine.mean_rate(0.0, 60.0) - 22.5).abs() < 1e-9);
        let bursts = profile("bursts:base=5,peak=50,every=20s,length=2s", 60.0);
        assert_eq!(
            (bursts.rate_at(0.0), bursts.rate_at(17.9), bursts.rate_at(18.0), bursts.rate_at(20.0)),
            (5.0, 5.0, 50.0, 5.0)
        );
        assert!((bursts.cumulative(40.0) - 2.0 * (5.0 * 18.0 + 50.0 * 2.0)).abs() < 1e-9);
        for p in [step, ramp, sine, bursts] {
            check_integral(&p, 47.3);
        }
    }

    #[test]
    fn a_learned_curve_follows_the_traces_and_their_mix() {
        // 10 s of traces: 10/s of `a` for 5 s, then 30/s of `b`.
        let mut roots = Vec::new();
        for i in 0..50 {
            roots.push((1_000_000_000 + i * 100_000_000, "web".into(), "a".into()));
        }
        for i in 0..150 {
            roots.push((6_000_000_000 + i * 33_333_333, "web".into(), "b".into()));
        }
        roots.push((5_500_000_000, "db".into(), "q".into()));
        let traces = TracedRoots::from_names(roots);
        let spec = ProfileSpec::parse("learned:bin=1s").unwrap();
        let (p, unmatched) = Profile::new(&spec, 20.0, &model(), Some(&traces)).unwrap();
        assert_eq!(unmatched, 1);
        assert_eq!(p.bin_s(), Some(1.0));
        assert!((p.mean_rate(0.0, 5.0) - 10.0).abs() < 1e-9, "{}", p.mean_rate(0.0, 5.0));
        assert!((p.mean_rate(5.0, 9.0) - 30.0).abs() < 1.0, "{}", p.mean_rate(5.0, 9.0));
        assert_eq!(p.mix_at(2.5), Some((&[0][..], &[10.0][..])));
        assert_eq!(p.mix_at(7.5), Some((&[1][..], &[30.0][..])));
        // Looped: 200 traces per 10 s of traced time.
        assert!((p.cumulative(20.0) - 400.0).abs() < 1e-9);
        check_integral(&p, 17.7);
        // Twice as fast and half the rate: the same traces in 5 s.
        let spec = ProfileSpec::parse("learned:bin=1s,speed=2,scale=0.5").unwrap();
        let (fast, _) = Profile::new(&spec, 20.0, &model(), Some(&traces)).unwrap();
        assert!((fast.cumulative(5.0) - 100.0).abs() < 1e-9);
        assert!((fast.rate_at(1.0) - 10.0).abs() < 1e-9);
        // Without traces, or with none the system serves: errors.
        assert!(Profile::new(&spec, 20.0, &model(), None).unwrap_err().is_usage());
        let other = TracedRoots::from_names(vec![(0, "x".into(), "y".into()), (5, "x".into(), "y".into())]);
        assert!(Profile::new(&spec, 20.0, &model(), Some(&other)).unwrap_err().is_bad_data());
    }
}
