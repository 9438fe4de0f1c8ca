//! What one input is reduced to before comparing: latency samples per root
//! API, per API and per (caller, API) pair, and the shape of its call trees.
//!
//! A [`Collector`] is a [`TraceSink`]: it sees each assembled trace once, as
//! reading streams, and keeps at most [`CollectOptions::sample_cap`] values
//! per distribution (a uniform reservoir with a fixed seed beyond that), so
//! memory is bounded by the number of distinct APIs and edges, not by the
//! input. [`Collector::finish`] resolves the input's symbols to names, which
//! is how APIs are matched across inputs.

use std::collections::BTreeMap;
use std::fmt;

use palette_trace::rng::Rng;
use palette_trace::stats::Histogram;
use palette_trace::{Api, CallTree, Interner, TraceSink};
use rustc_hash::FxHashMap;
use serde::Serialize;

/// How an input is summarised.
#[derive(Clone, Debug)]
pub struct CollectOptions {
    /// Values kept per distribution; beyond this a uniform reservoir sample
    /// is kept, which bounds memory on inputs of any size. 200,000 values
    /// put the KS statistic within ~0.003 of the full sample's.
    pub sample_cap: usize,
    /// Seed of the reservoir sampling: the same input gives the same report.
    pub seed: u64,
    /// Two calls share a stage unless the later starts this long (or more)
    /// after every call of the stage has ended. 0: a call that starts before
    /// the stage's calls have all ended joins it; one that starts at or
    /// after the end starts a new stage.
    pub stage_tolerance_ns: i64,
}

impl Default for CollectOptions {
    fn default() -> Self {
        CollectOptions { sample_cap: 200_000, seed: 1, stage_tolerance_ns: 100_000 }
    }
}

/// An API by name: how the same API is recognised in different inputs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ApiName {
    /// The service (partition) that executes the API.
    pub service: String,
    /// The operation (endpoint, method) within the service.
    pub operation: String,
}

impl ApiName {
    pub fn new(service: impl Into<String>, operation: impl Into<String>) -> ApiName {
        ApiName { service: service.into(), operation: operation.into() }
    }
    /// The names of `api` in the interner of the input it was read from.
    pub fn resolve(api: Api, names: &Interner) -> ApiName {
        ApiName::new(names.resolve(api.service), names.resolve(api.operation))
    }
}

impl fmt::Display for ApiName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.service, self.operation)
    }
}

/// A latency distribution: every value counted, a bounded sample kept.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Values seen (all of them, not only those kept): the weight of the
    /// API or edge, used to rank APIs and for call probabilities.
    pub count: u64,
    /// Sum of every value seen, in ns, so the mean that W1 is normalised by
    /// is exact even when only a reservoir is kept.
    pub sum_ns: f64,
    /// The values kept, in ns, sorted ascending: all of them up to the cap,
    /// else a uniform random sample of the cap's size. The metrics run on it.
    pub values: Vec<i64>,
}

impl Sample {
    /// A sample of exactly these values (sorted here).
    pub fn from_values(mut values: Vec<i64>) -> Sample {
        values.sort_unstable();
        Sample { count: values.len() as u64, sum_ns: values.iter().map(|&v| v as f64).sum(), values }
    }
    /// Mean of every value seen, ns; 0 when empty.
    pub fn mean_ns(&self) -> f64 {
        if self.count == 0 { 0.0 } else { self.sum_ns / self.count as f64 }
    }
}

/// Reservoir sampling (Vitter's algorithm R) into a [`Sample`].
#[derive(Clone, Debug, Default)]
struct Reservoir {
    /// The values kept so far (unsorted until [`Reservoir::finish`]), with
    /// the count and sum of all values seen.
    sample: Sample,
}

impl Reservoir {
    fn add(&mut self, value: i64, cap: usize, rng: &mut Rng) {
        let s = &mut self.sample;
        s.count += 1;
        s.sum_ns += value as f64;
        if s.values.len() < cap {
            s.values.push(value);
        } else {
            let j = rng.next_u64() % s.count;
            if (j as usize) < cap {
                s.values[j as usize] = value;
            }
        }
    }
    fn finish(self) -> Sample {
        let mut s = self.sample;
        s.values.sort_unstable();
        s.values.shrink_to_fit();
        s
    }
}

/// Per-API accumulation.
#[derive(Clone, Debug, Default)]
struct ApiAcc {
    /// Execution durations, for per-API latency and the execution count
    /// that call probabilities divide by.
    latency: Reservoir,
    /// Smallest depth the API was executed at (root = 1), for laying out
    /// the topology picture.
    min_depth: u32,
}

/// Accumulates one input's [`Profile`] from its traces as they stream.
pub struct Collector {
    /// Sample cap, seed and stage tolerance.
    opts: CollectOptions,
    /// Draws reservoir replacements; seeded, so reports are reproducible.
    rng: Rng,
    /// See the [`Profile`] field of the same name for each of these.
    traces: u64,
    spans: u64,
    executions: u64,
    /// Keyed by the input's own symbols while streaming (cheap integer
    /// hashing); resolved to names once in [`Collector::finish`].
    roots: FxHashMap<Api, Reservoir>,
    apis: FxHashMap<Api, ApiAcc>,
    callers: FxHashMap<(Api, Api), Reservoir>,
    calls: FxHashMap<(Api, Api), Reservoir>,
    spans_per_trace: Histogram,
    depth: Histogram,
    fan_out: Histogram,
    stages: u64,
    concurrent_stages: u64,
    /// Per-trace sums behind the [`Clustered`] variances (see there).
    edge_sums: FxHashMap<(Api, Api), Clustered>,
    caller_sq: FxHashMap<Api, f64>,
    stage_sums: Clustered,
    /// This trace's executions per API and calls per edge (reused across traces).
    trace_execs: FxHashMap<Api, u32>,
    trace_calls: FxHashMap<(Api, Api), u32>,
    /// Depth of each execution of the current trace (reused across traces).
    depths: Vec<u32>,
    /// See the [`Profile`] fields of the same names.
    failed_roots: FxHashMap<Api, u64>,
    failed_calls: FxHashMap<(Api, Api), u64>,
}

/// Sums over traces for the variance of a ratio of per-trace counts
/// (calls of an edge per execution of its caller; concurrent stages per
/// stage): Σcₜ² and Σcₜeₜ, with Σeₜ² kept per caller. Calls in one trace
/// are not independent (a loop makes many at once), so the spread of such a
/// rate is measured between traces, as a cluster-robust variance:
/// `Σ(cₜ − r·eₜ)² / (Σeₜ)²`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Clustered {
    /// Σ over traces of the numerator count squared.
    pub num_sq: f64,
    /// Σ over traces of numerator × denominator.
    pub cross: f64,
    /// Σ over traces of the denominator squared (for stages; per caller
    /// for edges, in [`Profile::caller_sq`]).
    pub den_sq: f64,
}

impl Clustered {
    /// The variance of the rate `r = num / den` from these sums.
    pub fn rate_variance(&self, r: f64, den_sq: f64, den: f64) -> f64 {
        if den <= 0.0 {
            return 0.0;
        }
        ((self.num_sq - 2.0 * r * self.cross + r * r * den_sq) / (den * den)).max(0.0)
    }
}

impl Collector {
    pub fn new(opts: CollectOptions) -> Collector {
        Collector {
            rng: Rng::new(opts.seed),
            opts,
            traces: 0,
            spans: 0,
            executions: 0,
            roots: FxHashMap::default(),
            apis: FxHashMap::default(),
            callers: FxHashMap::default(),
            calls: FxHashMap::default(),
            spans_per_trace: Histogram::default(),
            depth: Histogram::default(),
            fan_out: Histogram::default(),
            stages: 0,
            concurrent_stages: 0,
            edge_sums: FxHashMap::default(),
            caller_sq: FxHashMap::default(),
            stage_sums: Clustered::default(),
            trace_execs: FxHashMap::default(),
            trace_calls: FxHashMap::default(),
            depths: Vec::new(),
            failed_roots: FxHashMap::default(),
            failed_calls: FxHashMap::default(),
        }
    }

    /// Adds one assembled trace.
    pub fn add(&mut self, tree: &CallTree) {
        let cap = self.opts.sample_cap;
        self.traces += 1;
        self.spans += tree.span_count as u64;
        self.executions += tree.execs.len() as u64;
        self.spans_per_trace.add(tree.execs.len() as u64);
        let root = tree.root();
        self.roots.entry(root.api).or_default().add(root.duration_ns, cap, &mut self.rng);
        if root.error {
            *self.failed_roots.entry(root.api).or_default() += 1;
        }
        self.depths.clear();
        self.trace_execs.clear();
        self.trace_calls.clear();
        let (stages_before, concurrent_before) = (self.stages, self.concurrent_stages);
        let mut max_depth = 0;
        for (i, e) in tree.execs.iter().enumerate() {
            // Breadth-first order: a parent's depth is known before its children's.
            let depth = if e.is_root() { 1 } else { self.depths[e.parent as usize] + 1 };
            self.depths.push(depth);
            max_depth = max_depth.max(depth);
            let acc = self.apis.entry(e.api).or_insert_with(|| ApiAcc { min_depth: u32::MAX, ..ApiAcc::default() });
            acc.latency.add(e.duration_ns, cap, &mut self.rng);
            acc.min_depth = acc.min_depth.min(depth);
            *self.trace_execs.entry(e.api).or_default() += 1;
            if !e.is_root() {
                let caller = tree.execs[e.parent as usize].api;
                *self.trace_calls.entry((caller, e.api)).or_default() += 1;
                self.callers.entry((caller, e.api)).or_default().add(e.duration_ns, cap, &mut self.rng);
                self.calls.entry((caller, e.api)).or_default().add(e.call_duration_ns, cap, &mut self.rng);
                if e.error {
                    *self.failed_calls.entry((caller, e.api)).or_default() += 1;
                }
            }
            if e.child_count > 0 {
                self.fan_out.add(e.child_count as u64);
                self.count_stages(tree, i);
            }
        }
        self.depth.add(max_depth as u64);
        for (&(caller, callee), &c) in &self.trace_calls {
            let e = self.trace_execs.get(&caller).copied().unwrap_or(0) as f64;
            let sums = self.edge_sums.entry((caller, callee)).or_default();
            sums.num_sq += (c as f64) * (c as f64);
            sums.cross += c as f64 * e;
        }
        for (&api, &e) in &self.trace_execs {
            *self.caller_sq.entry(api).or_default() += (e as f64) * (e as f64);
        }
        let (s, k) = ((self.stages - stages_before) as f64, (self.concurrent_stages - concurrent_before) as f64);
        self.stage_sums.num_sq += k * k;
        self.stage_sums.cross += k * s;
        self.stage_sums.den_sq += s * s;
    }

    /// Cuts execution `i`'s calls (ordered by call start) into stages.
    fn count_stages(&mut self, tree: &CallTree, i: usize) {
        let tolerance = self.opts.stage_tolerance_ns.max(0);
        let mut stage_end = i64::MIN;
        let mut size = 0u32;
        for c in tree.children(i) {
            // Overlaps shorter than the tolerance are clock noise, not
            // concurrency: the same rule `palette fit` cuts stages by.
            if size > 0 && c.call_start_ns < stage_end.saturating_sub(tolerance) {
                size += 1;
                stage_end = stage_end.max(c.call_end_ns());
                continue;
            }
            if size > 0 {
                self.stages += 1;
                self.concurrent_stages += (size >= 2) as u64;
            }
            size = 1;
            stage_end = c.call_end_ns();
        }
        if size > 0 {
            self.stages += 1;
            self.concurrent_stages += (size >= 2) as u64;
        }
    }

    /// Traces added so far.
    pub fn traces(&self) -> u64 {
        self.traces
    }

    /// The profile, with the input's symbols resolved through `names`.
    pub fn finish(self, names: &Interner) -> Profile {
        let name = |api: Api| ApiName::resolve(api, names);
        Profile {
            traces: self.traces,
            spans: self.spans,
            executions: self.executions,
            roots: self.roots.into_iter().map(|(a, r)| (name(a), r.finish())).collect(),
            apis: self
                .apis
                .into_iter()
                .map(|(a, acc)| (name(a), ApiProfile { latency: acc.latency.finish(), min_depth: acc.min_depth }))
                .collect(),
            callers: self.callers.into_iter().map(|((c, a), r)| ((name(c), name(a)), r.finish())).collect(),
            calls: self.calls.into_iter().map(|((c, a), r)| ((name(c), name(a)), r.finish())).collect(),
            spans_per_trace: self.spans_per_trace,
            depth: self.depth,
            fan_out: self.fan_out,
            stages: self.stages,
            concurrent_stages: self.concurrent_stages,
            edge_sums: self.edge_sums.into_iter().map(|((c, a), v)| ((name(c), name(a)), v)).collect(),
            caller_sq: self.caller_sq.into_iter().map(|(a, v)| (name(a), v)).collect(),
            stage_sums: self.stage_sums,
            failed_roots: self.failed_roots.into_iter().map(|(a, n)| (name(a), n)).collect(),
            failed_calls: self.failed_calls.into_iter().map(|((c, a), n)| ((name(c), name(a)), n)).collect(),
        }
    }
}

impl TraceSink for Collector {
    fn trace(&mut self, tree: &CallTree) -> Result<(), palette_trace::Error> {
        self.add(tree);
        Ok(())
    }
}

/// One API of a [`Profile`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApiProfile {
    /// Execution durations (the callee's own span), ns.
    pub latency: Sample,
    /// Smallest depth it ran at (root = 1): its service's ring in the
    /// topology picture.
    pub min_depth: u32,
}

/// One input, reduced to what the fidelity metrics compare.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// Traces read (after repair and drops).
    pub traces: u64,
    /// Canonical spans in them, client spans included: for the input summary.
    pub spans: u64,
    /// Executions (one per API call): the unit every structure metric counts.
    pub executions: u64,
    /// Root execution duration per root API: end-to-end request latency.
    pub roots: BTreeMap<ApiName, Sample>,
    /// Execution duration per API, wherever it was called from.
    pub apis: BTreeMap<ApiName, ApiProfile>,
    /// Execution duration of each API per calling API, keyed `(caller,
    /// callee)`: a shared service's latency often depends on who calls it
    /// (the paper's Figure 1). Its count is the edge's number of calls.
    pub callers: BTreeMap<(ApiName, ApiName), Sample>,
    /// Each `(caller, callee)` call's duration as the caller observed it —
    /// the client span where the input has one, else the callee's own span —
    /// so a network delay between the two shows here and not in `callers`.
    pub calls: BTreeMap<(ApiName, ApiName), Sample>,
    /// Executions per trace. Counted as executions rather than canonical
    /// spans so a format that records each call from both sides (client and
    /// server spans) compares equal to one that records it once.
    pub spans_per_trace: Histogram,
    /// Longest root-to-leaf path of each trace, in executions.
    pub depth: Histogram,
    /// Calls made by each execution that makes any.
    pub fan_out: Histogram,
    /// Stages of all executions that make calls.
    pub stages: u64,
    /// Those stages with two or more concurrent calls.
    pub concurrent_stages: u64,
    /// Per edge `(caller, callee)`, the per-trace sums of its calls (see
    /// [`Clustered`]): how much its call rate varies between traces.
    pub edge_sums: BTreeMap<(ApiName, ApiName), Clustered>,
    /// Per API, Σ over traces of its executions squared.
    pub caller_sq: BTreeMap<ApiName, f64>,
    /// The per-trace sums of concurrent stages over stages.
    pub stage_sums: Clustered,
    /// Per root API, the traces whose root execution failed (of the
    /// `roots` sample's count).
    pub failed_roots: BTreeMap<ApiName, u64>,
    /// Per edge, the calls that failed (of the `callers` sample's count).
    pub failed_calls: BTreeMap<(ApiName, ApiName), u64>,
}

impl Profile {
    /// The profile of `trees` (whose symbols resolve through `names`).
    pub fn from_traces<'a>(
        trees: impl IntoIterator<Item = &'a CallTree>,
        names: &Interner,
        opts: CollectOptions,
    ) -> Profile {
        let mut c = Collector::new(opts);
        trees.into_iter().for_each(|t| c.add(t));
        c.finish(names)
    }

    /// Calls of edge `caller → callee` per execution of `caller`: its call
    /// probability (above 1 when the caller calls it in a loop).
    pub fn call_probability(&self, caller: &ApiName, callee: &ApiName) -> f64 {
        let calls = self.callers.get(&(caller.clone(), callee.clone())).map_or(0, |s| s.count);
        let execs = self.apis.get(caller).map_or(0, |a| a.latency.count);
        if execs == 0 { 0.0 } else { calls as f64 / execs as f64 }
    }

    /// The standard deviation of edge `caller → callee`'s call rate
    /// ([`Profile::call_probability`]) between samples of this many traces,
    /// measured between the traces of this profile.
    pub fn call_rate_sd(&self, caller: &ApiName, callee: &ApiName) -> f64 {
        let key = (caller.clone(), callee.clone());
        let sums = self.edge_sums.get(&key).copied().unwrap_or_default();
        let den = self.apis.get(caller).map_or(0, |a| a.latency.count) as f64;
        let den_sq = self.caller_sq.get(caller).copied().unwrap_or(0.0);
        let rate = self.call_probability(caller, callee);
        // With few traces the between-trace variance can be 0 by chance (one
        // trace): never less than independent calls would vary (binomial
        // below one call per execution, Poisson above).
        let independent = match den {
            d if d <= 0.0 => 0.0,
            d if rate > 1.0 => rate / d,
            d => rate * (1.0 - rate) / d,
        };
        sums.rate_variance(rate, den_sq, den).max(independent).sqrt()
    }

    /// The standard deviation of the concurrent fraction, likewise.
    pub fn concurrent_fraction_sd(&self) -> f64 {
        let s = &self.stage_sums;
        s.rate_variance(self.concurrent_fraction(), s.den_sq, self.stages as f64).sqrt()
    }

    /// Fraction of stages with concurrent calls; 0 when nothing calls anything.
    pub fn concurrent_fraction(&self) -> f64 {
        if self.stages == 0 { 0.0 } else { self.concurrent_stages as f64 / self.stages as f64 }
    }

    /// APIs by execution count, most executed first (ties by name).
    pub fn apis_by_count(&self) -> Vec<&ApiName> {
        let mut v: Vec<(&ApiName, u64)> = self.apis.iter().map(|(n, a)| (n, a.latency.count)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        v.into_iter().map(|(n, _)| n).collect()
    }

    /// Root APIs by trace count, most first (ties by name).
    pub fn roots_by_count(&self) -> Vec<&ApiName> {
        let mut v: Vec<(&ApiName, u64)> = self.roots.iter().map(|(n, s)| (n, s.count)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        v.into_iter().map(|(n, _)| n).collect()
    }

    /// The callers of `callee`, by calls, most first.
    pub fn callers_of(&self, callee: &ApiName) -> Vec<(&ApiName, &Sample)> {
        let mut v: Vec<(&ApiName, &Sample)> =
            self.callers.iter().filter(|((_, a), _)| a == callee).map(|((c, _), s)| (c, s)).collect();
        v.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(b.0)));
        v
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use palette_trace::tree::{EdgeKind, Exec, NO_PARENT};
    use palette_trace::{Sym, TraceId};

    /// A call tree from `(api, parent, call start, call end)` in
    /// breadth-first order, children of one parent contiguous and by start.
    pub fn tree(names: &mut Interner, execs: &[(&str, u32, i64, i64)]) -> CallTree {
        let mut out: Vec<Exec> = execs
            .iter()
            .map(|&(api, parent, start, end)| {
                let (service, operation) = api.split_once('/').expect("service/operation");
                Exec {
                    api: Api { service: names.intern(service), operation: names.intern(operation) },
                    parent,
                    first_child: 0,
                    child_count: 0,
                    edge: if parent == NO_PARENT { EdgeKind::Root } else { EdgeKind::Rpc },
                    protocol: Sym::EMPTY,
                    start_ns: start,
                    duration_ns: end - start,
                    call_start_ns: start,
                    call_duration_ns: end - start,
                    error: false,
                    detached: false,
                    request_bytes: None,
                    response_bytes: None,
                }
            })
            .collect();
        for i in 1..out.len() {
            let p = out[i].parent as usize;
            if out[p].child_count == 0 {
                out[p].first_child = i as u32;
            }
            out[p].child_count += 1;
        }
        CallTree { trace_id: TraceId::new(1), span_count: out.len() as u32, execs: out }
    }

    /// The profile of the one trace [`tree`] makes of `execs`, collected
    /// with the default options.
    pub fn one_trace_profile(execs: &[(&str, u32, i64, i64)]) -> Profile {
        let mut names = Interner::default();
        let t = tree(&mut names, execs);
        Profile::from_traces([&t], &names, CollectOptions::default())
    }

    #[test]
    fn stages_depth_fan_out_and_callers() {
        let mut names = Interner::default();
        // A calls B and C concurrently (one stage), then D after both ended
        // (a second stage, starting exactly at the end: sequential); D calls B.
        let t = tree(
            &mut names,
            &[
                ("A/a", NO_PARENT, 0, 100),
                ("B/b", 0, 10, 30),
                ("C/c", 0, 20, 40),
                ("D/d", 0, 40, 90),
                ("B/b", 3, 50, 80),
            ],
        );
        let p =
            Profile::from_traces([&t], &names, CollectOptions { stage_tolerance_ns: 0, ..CollectOptions::default() });
        assert_eq!((p.traces, p.executions, p.stages, p.concurrent_stages), (1, 5, 3, 1));
        assert_eq!(p.depth.quantile(1.0), 3);
        assert_eq!(p.fan_out.iter().collect::<Vec<_>>(), vec![(1, 1), (3, 1)]);
        assert_eq!(p.spans_per_trace.iter().collect::<Vec<_>>(), vec![(5, 1)]);
        let (a, b, d) = (ApiName::new("A", "a"), ApiName::new("B", "b"), ApiName::new("D", "d"));
        assert_eq!(p.apis[&b].latency.values, vec![20, 30]);
        assert_eq!(p.apis[&b].min_depth, 2);
        assert_eq!(p.callers[&(a.clone(), b.clone())].values, vec![20]);
        assert_eq!(p.callers[&(d.clone(), b.clone())].values, vec![30]);
        assert_eq!(p.roots[&a].values, vec![100]);
        assert_eq!(p.call_probability(&a, &b), 1.0);
        assert_eq!(p.call_probability(&b, &a), 0.0);
        assert_eq!(p.callers_of(&b).len(), 2);
        assert!((p.concurrent_fraction() - 1.0 / 3.0).abs() < 1e-12);

        // Overlaps shorter than the tolerance do not make calls concurrent.
        let opts = CollectOptions { stage_tolerance_ns: 1_000_000_000, ..CollectOptions::default() };
        let p = Profile::from_traces([&t], &names, opts);
        assert_eq!((p.stages, p.concurrent_stages), (4, 0));
    }

    #[test]
    fn reservoir_is_bounded_uniform_and_deterministic() {
        let run = |seed| {
            let mut r = Reservoir::default();
            let mut rng = Rng::new(seed);
            for v in 0..100_000 {
                r.add(v, 1000, &mut rng);
            }
            r.finish()
        };
        let s = run(1);
        assert_eq!((s.count, s.values.len()), (100_000, 1000));
        assert!((s.mean_ns() - 49_999.5).abs() < 1e-6);
        // A uniform sample of 0..100k: its median is near 50k.
        let median = s.values[500] as f64;
        assert!((median - 50_000.0).abs() < 5_000.0, "{median}");
        assert_eq!(s, run(1));
        assert_ne!(s.values, run(2).values);
    }
}
