//! Comparing candidates with the original: every metric, as data.
//!
//! [`compare`] matches APIs across inputs by service and operation name and
//! computes, for each candidate:
//! - per root API, per API and per (caller, API) pair: the KS statistic and
//!   its p-value, Wasserstein-1 normalised by the original's mean, and the
//!   relative error of the mean, p50, p90 and p99;
//! - structure: the KS statistic of the spans-per-trace, depth and fan-out
//!   distributions, the mean absolute error of per-edge call probabilities
//!   over the union of edges, and the fraction of concurrent stages.
//!
//! Each figure has its noise floor beside it ([`crate::floor`]): the
//! distance the original shows against itself at the candidate's sample
//! size. A verdict is "close" within the floor (and within the absolute
//! bounds), "differs" beyond it, "too few samples" when either side has
//! fewer than [`CompareOptions::min_samples`] values or the floor is wider
//! than the bounds, and "inconclusive" instead of "differs" when the
//! candidate ran on a busy host. A candidate run several times is judged
//! on its runs pooled, against the floor at the pooled sample's size: for
//! runs of one system that is the most exact estimate there is (a median
//! of per-run figures is noisier, and small samples inflate KS), and it
//! is what kept the verdict from flipping between invocations where the
//! median of three runs did not. Each figure's range over the runs is
//! reported beside it.
//!
//! The result serialises as the `--json` report; its maps are keyed by
//! candidate label.

use std::collections::{BTreeMap, BTreeSet};

use palette_trace::stats::Distribution;
use serde::Serialize;

use crate::collect::{ApiName, Profile, Sample};
use crate::error::Error;
use crate::floor::{self, FloorOptions, Interval, LatencyIntervals, LatencyMetrics, StructureMetrics};
use crate::metrics;

/// One input of a comparison: its profile and how to name it.
#[derive(Clone, Debug)]
pub struct Input {
    /// Short name used in tables, legends and as the JSON key (`palette`,
    /// `naive`, or the file stem).
    pub label: String,
    /// Where it was read from, for the reader of the report.
    pub source: String,
    /// What was collected from it (every run together, for plots and counts).
    pub profile: Profile,
    /// Each run of a candidate that was run several times (`palette run
    /// --repeat`), compared one by one; empty for a single run, which is
    /// `profile` itself.
    pub runs: Vec<Profile>,
    /// Why the host was too busy for a live candidate's latency to be
    /// judged (from the load generator's and services' lateness), if it was:
    /// its "differs" verdicts become "inconclusive".
    pub host_busy: Option<String>,
}

impl Input {
    pub fn new(label: impl Into<String>, source: impl Into<String>, profile: Profile) -> Input {
        Input { label: label.into(), source: source.into(), profile, runs: Vec::new(), host_busy: None }
    }

    /// A candidate of several runs: `pooled` is all of them read together.
    pub fn with_runs(
        label: impl Into<String>,
        source: impl Into<String>,
        pooled: Profile,
        runs: Vec<Profile>,
    ) -> Input {
        let runs = if runs.len() > 1 { runs } else { Vec::new() };
        Input { runs, ..Input::new(label, source, pooled) }
    }

    /// The runs compared one by one.
    pub fn runs(&self) -> Vec<&Profile> {
        if self.runs.is_empty() { vec![&self.profile] } else { self.runs.iter().collect() }
    }
}

/// Thresholds of the verdicts.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// The absolute bound of a "close" verdict: however wide the noise
    /// floor (few samples, a noisy original), a distribution with a KS
    /// statistic above this is never called close — it is "too few
    /// samples" when within the floor.
    pub close_ks: f64,
    /// ... and likewise for Wasserstein-1 as a fraction of the original's mean.
    pub close_w1: f64,
    /// Below this many values on either side a distribution is "too few
    /// samples": its floor would be too wide to mean anything.
    pub min_samples: u64,
    /// How floors and confidence intervals are drawn.
    pub floor: FloorOptions,
    /// Edges listed under the largest call-probability errors.
    pub worst_edges: usize,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            close_ks: 0.25,
            close_w1: 0.25,
            min_samples: 30,
            floor: FloorOptions::default(),
            worst_edges: 10,
        }
    }
}

/// Everything `palette compare` reports; `--json` prints it as is.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// The reference input.
    pub original: InputSummary,
    /// Each candidate, in command-line order (the maps below are keyed by
    /// their labels).
    pub candidates: Vec<InputSummary>,
    /// The KS threshold of a "close" verdict, so readers of the JSON know
    /// what `close` meant.
    pub close_ks: f64,
    /// The W1 threshold (fraction of the original's mean) of a "close" verdict.
    pub close_w1: f64,
    /// Fewest values per side for a verdict other than "too few samples".
    pub min_samples: u64,
    /// Share of same-system samples the noise floors cover (0.95).
    pub floor_level: f64,
    /// One verdict per candidate, in command-line order: what to read first.
    pub summary: Vec<CandidateSummary>,
    /// How the candidates were made (version, command, seed, rate, host…),
    /// set by the command that ran them; `null` for a plain comparison.
    pub metadata: Option<serde_json::Value>,
    /// End-to-end latency per root API of the original, most traces first.
    pub roots: BTreeMap<String, Vec<LatencyComparison>>,
    /// Execution latency per API of the original, most executions first.
    pub apis: BTreeMap<String, Vec<LatencyComparison>>,
    /// Execution latency of each API per caller (every caller → callee edge
    /// of the original), callees by executions then callers by calls.
    pub callers: BTreeMap<String, Vec<LatencyComparison>>,
    /// Caller-observed latency of every caller → callee edge of the
    /// original (the client span where there is one), with how far each
    /// quantile moved: what a delay intervention should add to reproduce a
    /// candidate (a fault) from the original. Ordered by calls, most first.
    pub edges: BTreeMap<String, Vec<EdgeShift>>,
    /// Shape of the call trees.
    pub structure: BTreeMap<String, StructureComparison>,
    /// Failure rates per root API and edge, and requests per root request.
    pub failures: BTreeMap<String, crate::failures::FailureComparison>,
}

/// What an input holds, in brief.
#[derive(Clone, Debug, Serialize)]
pub struct InputSummary {
    /// The label it is shown and keyed by.
    pub label: String,
    /// The file or directory read.
    pub source: String,
    /// Traces read.
    pub traces: u64,
    /// Canonical spans in them.
    pub spans: u64,
    /// Executions (one per API call).
    pub executions: u64,
    /// Distinct APIs executed.
    pub apis: u64,
    /// Distinct root APIs.
    pub root_apis: u64,
    /// Runs compared one by one (1 unless the candidate was repeated).
    pub runs: usize,
    /// Why the host was busy while the candidate ran, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_busy: Option<String>,
}

impl InputSummary {
    fn of(input: &Input) -> InputSummary {
        let p = &input.profile;
        InputSummary {
            label: input.label.clone(),
            source: input.source.clone(),
            traces: p.traces,
            spans: p.spans,
            executions: p.executions,
            apis: p.apis.len() as u64,
            root_apis: p.roots.len() as u64,
            runs: input.runs().len(),
            host_busy: input.host_busy.clone(),
        }
    }
}

/// The verdict on one distribution (or on a candidate's structure).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every metric within its noise floor, and KS and W1 within the
    /// absolute bounds.
    Close,
    /// At least one metric beyond its noise floor by more than its own
    /// uncertainty (its 95% interval is beyond the floor too).
    Differs,
    /// Beyond a floor, but within the figure's own 95% interval of it: a
    /// difference as large as the figure's uncertainty, too small to call.
    Borderline,
    /// Fewer values than `min_samples` on a side, or within a floor wider
    /// than the absolute bounds: the data cannot tell.
    TooFewSamples,
    /// Beyond the floor, but the host was busy while the candidate ran, so
    /// the difference may be the host's.
    Inconclusive,
    /// The candidate never executed it (in this context).
    Missing,
}

/// One candidate's verdicts, counted.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CandidateSummary {
    /// The candidate's label.
    pub label: String,
    /// Runs it was compared over.
    pub runs: usize,
    /// Root APIs of the original.
    pub roots: u64,
    /// Root-API latency distributions per verdict.
    pub roots_close: u64,
    pub roots_differs: u64,
    pub roots_borderline: u64,
    pub roots_too_few_samples: u64,
    pub roots_inconclusive: u64,
    pub roots_missing: u64,
    /// The verdict on the shape of the call trees (all structure metrics).
    pub structure: Verdict,
    /// The candidate's verdict as a whole: `differs` when a root API or the
    /// structure clearly differs (or a root API is missing), `inconclusive`
    /// when a difference was measured on a busy host, `too_few_samples`
    /// when nothing could be judged, else `close` (borderline figures
    /// included: they are too small to call).
    pub verdict: Verdict,
    /// Why the host was busy, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_busy: Option<String>,
    /// The verdict in words, as the terminal and the HTML show it.
    pub line: String,
    /// The root APIs per verdict, all of them, in words.
    pub counts: String,
}

impl CandidateSummary {
    fn of(
        label: &str,
        runs: usize,
        roots: &[LatencyComparison],
        structure: Verdict,
        host_busy: Option<String>,
    ) -> Self {
        let count = |v: Verdict| roots.iter().filter(|r| r.verdict == v).count() as u64;
        let borderline = count(Verdict::Borderline);
        let mut s = CandidateSummary {
            label: label.to_string(),
            runs,
            roots: roots.len() as u64,
            roots_close: count(Verdict::Close),
            roots_differs: count(Verdict::Differs),
            roots_borderline: borderline,
            roots_too_few_samples: count(Verdict::TooFewSamples),
            roots_inconclusive: count(Verdict::Inconclusive),
            roots_missing: count(Verdict::Missing),
            structure,
            verdict: Verdict::Close,
            host_busy,
            line: String::new(),
            counts: String::new(),
        };
        s.verdict = s.overall();
        let runs = if runs > 1 { format!(" ({runs} runs pooled)") } else { String::new() };
        s.line = format!("{}{runs}: {}", s.label, s.in_words());
        s.counts = format!(
            "root APIs: {} close, {} borderline, {} differ, {} too few samples, {} inconclusive, {} missing",
            s.roots_close,
            s.roots_borderline,
            s.roots_differs,
            s.roots_too_few_samples,
            s.roots_inconclusive,
            s.roots_missing
        );
        s
    }
}

impl CandidateSummary {
    /// The verdict on the whole candidate. It names what is clearly so, so
    /// that it repeats between invocations: one root API beyond its floor
    /// by more than its uncertainty, or a structure that is, is a candidate
    /// that differs, however many others sit at the edge; borderline
    /// figures, which another run may put on either side, decide nothing
    /// (the counts below the line say how many there are).
    fn overall(&self) -> Verdict {
        let roots_judged = self.roots - self.roots_too_few_samples;
        if self.roots_differs > 0
            || self.roots_missing > 0
            || matches!(self.structure, Verdict::Differs | Verdict::Missing)
        {
            Verdict::Differs
        } else if self.roots_inconclusive > 0 || self.structure == Verdict::Inconclusive {
            Verdict::Inconclusive
        } else if roots_judged == 0 && self.structure == Verdict::TooFewSamples {
            Verdict::TooFewSamples
        } else {
            Verdict::Close
        }
    }

    /// The verdict in words: what it is and where it comes from.
    fn in_words(&self) -> String {
        let too_few = match self.roots_too_few_samples {
            0 => String::new(),
            n if n == self.roots => "; too few samples to judge the root APIs".to_string(),
            n => format!("; too few samples to judge {n} of {} root APIs", self.roots),
        };
        match self.verdict {
            Verdict::Differs => {
                let mut what = Vec::new();
                if self.roots_differs > 0 {
                    what.push("root-API latency");
                }
                if self.structure == Verdict::Differs {
                    what.push("structure");
                }
                let mut line = if what.is_empty() {
                    "differs from the original".to_string()
                } else {
                    format!("differs from the original — {} beyond the noise floor", what.join(" and "))
                };
                if self.roots_missing > 0 || self.structure == Verdict::Missing {
                    line.push_str(if what.is_empty() { " — " } else { "; " });
                    line.push_str("root APIs missing");
                }
                line
            }
            Verdict::Inconclusive => {
                format!("inconclusive — beyond the noise floor while the host was busy{too_few}")
            }
            Verdict::TooFewSamples => "too few samples to judge".to_string(),
            Verdict::Close | Verdict::Borderline | Verdict::Missing => {
                format!("close to the original — nothing clearly beyond the noise floor{too_few}")
            }
        }
    }
}

/// One statistic of the original and the candidate.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Stat {
    /// The original's value, ms.
    pub original_ms: f64,
    /// The candidate's value, ms; `null` when it has no samples.
    pub candidate_ms: Option<f64>,
    /// `(candidate − original) / original`; `null` when undefined.
    pub rel_error: Option<f64>,
}

/// One latency distribution of the original against a candidate's.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LatencyComparison {
    /// Service of the API whose latency this is.
    pub service: String,
    /// Operation of the API whose latency this is.
    pub operation: String,
    /// For per-caller latency, the calling API (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<ApiName>,
    /// Observations in the original (executions, traces or calls).
    pub original_count: u64,
    /// Observations in the candidate.
    pub candidate_count: u64,
    /// Values the metrics ran on in the original (its reservoir).
    pub original_sample: u64,
    /// Values the metrics ran on in the candidate.
    pub candidate_sample: u64,
    /// Two-sample KS statistic, in [0, 1]; `null` when the candidate lacks it.
    pub ks: Option<f64>,
    /// Asymptotic p-value of the KS test over the samples compared.
    pub p_value: Option<f64>,
    /// Wasserstein-1 divided by the original's mean (0.05 = 5%).
    pub w1: Option<f64>,
    /// Wasserstein-1 in ms.
    pub w1_ms: Option<f64>,
    /// The noise floor of each metric (KS, W1, and |relative error| of
    /// p50/p90/p99): the 95% bound, jointly over the metrics, of the
    /// distance between two samples of the original's own system of these
    /// sizes. `null` when a side has no values.
    pub floor: Option<LatencyMetrics>,
    /// 95% bootstrap confidence intervals of the candidate's metrics.
    pub ci: Option<LatencyIntervals>,
    /// Runs pooled into the figures.
    pub runs: usize,
    /// The smallest and largest value of each metric over the runs (when
    /// there are several): how much a single run varies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs_min: Option<LatencyMetrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs_max: Option<LatencyMetrics>,
    /// Mean latency.
    pub mean: Stat,
    /// Median latency.
    pub p50: Stat,
    /// 90th percentile.
    pub p90: Stat,
    /// 99th percentile.
    pub p99: Stat,
    /// Close, differs, too few samples, inconclusive or missing.
    pub verdict: Verdict,
}

/// One statistic of an edge's caller-observed latency on both sides.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Shift {
    /// The original's value, ms.
    pub original_ms: f64,
    /// The candidate's value, ms; `null` when the candidate never makes the call.
    pub candidate_ms: Option<f64>,
    /// `candidate − original`, ms: the delay that moves this quantile.
    pub shift_ms: Option<f64>,
    /// `candidate / original`; `null` when undefined.
    pub ratio: Option<f64>,
}

impl Shift {
    fn new(original_ms: f64, candidate_ms: Option<f64>) -> Shift {
        Shift {
            original_ms,
            candidate_ms,
            shift_ms: candidate_ms.map(|c| c - original_ms),
            ratio: candidate_ms.filter(|_| original_ms > 0.0).map(|c| c / original_ms),
        }
    }
}

/// One caller → callee edge's caller-observed latency, original against a
/// candidate.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EdgeShift {
    /// The calling API.
    pub caller: ApiName,
    /// The called API.
    pub callee: ApiName,
    /// Calls in the original.
    pub original_calls: u64,
    /// Calls in the candidate.
    pub candidate_calls: u64,
    /// Two-sample KS statistic; `null` when the candidate lacks the edge.
    pub ks: Option<f64>,
    /// Mean caller-observed latency.
    pub mean: Shift,
    /// Median.
    pub p50: Shift,
    /// 90th percentile.
    pub p90: Shift,
    /// 99th percentile.
    pub p99: Shift,
}

/// A distribution of small integers, original against candidate.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DistributionComparison {
    /// Two-sample KS statistic of the two distributions.
    pub ks: f64,
    /// The original's summary.
    pub original: Distribution,
    /// The candidate's summary.
    pub candidate: Distribution,
}

/// One edge's call probability on both sides.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EdgeError {
    /// The calling API.
    pub caller: ApiName,
    /// The called API.
    pub callee: ApiName,
    /// Calls per execution of the caller in the original (0: absent).
    pub original: f64,
    /// Calls per execution of the caller in the candidate (0: absent).
    pub candidate: f64,
}

/// Per-edge call probabilities compared.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EdgeComparison {
    /// Mean absolute difference of calls per caller execution over the
    /// union of edges whose caller runs on both sides (an absent edge has
    /// rate 0 on its side).
    pub mae: f64,
    /// Edges in the union.
    pub edges: u64,
    /// Those whose caller runs on both sides: the edges `mae` averages over.
    pub rated: u64,
    /// Edges of the original the candidate never calls.
    pub missing: u64,
    /// Edges the candidate calls that the original never does.
    pub extra: u64,
    /// The largest errors, largest first.
    pub worst: Vec<EdgeError>,
}

/// A fraction on both sides.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FractionComparison {
    /// The original's fraction.
    pub original: f64,
    /// The candidate's fraction.
    pub candidate: f64,
    /// `candidate − original`.
    pub difference: f64,
}

/// API sets compared.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ApiSetComparison {
    /// APIs of the original the candidate never executes (first 20 by name).
    pub missing: Vec<ApiName>,
    /// How many of them there are.
    pub missing_count: u64,
    /// APIs the candidate executes that the original never does (first 20).
    pub extra: Vec<ApiName>,
    /// How many of them there are.
    pub extra_count: u64,
}

/// The shape of the call trees, original against a candidate.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StructureComparison {
    /// Executions per trace (one per API call, client spans folded).
    pub spans_per_trace: DistributionComparison,
    /// Call-tree depth.
    pub depth: DistributionComparison,
    /// Calls per execution that makes any.
    pub fan_out: DistributionComparison,
    /// Per-edge call probability.
    pub edge_probability: EdgeComparison,
    /// Fraction of stages whose calls run concurrently.
    pub concurrent_stages: FractionComparison,
    /// APIs present on one side only.
    pub apis: ApiSetComparison,
    /// The figures the verdict is on (median over runs): KS of the three
    /// distributions, mean absolute difference of calls per caller
    /// execution, |difference| of the concurrent fraction.
    pub metrics: StructureMetrics,
    /// Their noise floors (95%, jointly).
    pub floor: StructureMetrics,
    /// Within the floors, beyond them, or inconclusive on a busy host.
    pub verdict: Verdict,
}

/// One of the three distributions of the call trees' shape, with the KS
/// the verdict is on and its noise floor: a row of each structure table.
pub(crate) struct ShapeRow<'s> {
    pub distribution: &'s DistributionComparison,
    pub ks: f64,
    pub floor: f64,
}

impl StructureComparison {
    /// Spans per trace, call-tree depth and fan-out, the order the reports
    /// show them in.
    pub(crate) fn shape_rows(&self) -> [ShapeRow<'_>; 3] {
        let (m, f) = (&self.metrics, &self.floor);
        [
            ShapeRow { distribution: &self.spans_per_trace, ks: m.spans_per_trace, floor: f.spans_per_trace },
            ShapeRow { distribution: &self.depth, ks: m.depth, floor: f.depth },
            ShapeRow { distribution: &self.fan_out, ks: m.fan_out, floor: f.fan_out },
        ]
    }
}

/// Compares each candidate with the original.
pub fn compare(original: &Input, candidates: &[Input], opts: &CompareOptions) -> Result<Comparison, Error> {
    let mut seen = BTreeSet::new();
    for c in candidates {
        if c.label.is_empty() {
            return Err(Error::EmptyLabel);
        }
        if !seen.insert(c.label.as_str()) {
            return Err(Error::DuplicateLabel(c.label.clone()));
        }
    }
    let o = &original.profile;
    let mut cmp = Comparison {
        original: InputSummary::of(original),
        candidates: candidates.iter().map(InputSummary::of).collect(),
        close_ks: opts.close_ks,
        close_w1: opts.close_w1,
        min_samples: opts.min_samples,
        floor_level: opts.floor.level,
        summary: Vec::new(),
        metadata: None,
        roots: BTreeMap::new(),
        apis: BTreeMap::new(),
        callers: BTreeMap::new(),
        edges: BTreeMap::new(),
        structure: BTreeMap::new(),
        failures: BTreeMap::new(),
    };
    let mut edge_keys: Vec<(&(ApiName, ApiName), u64)> = o.calls.iter().map(|(k, s)| (k, s.count)).collect();
    edge_keys.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let apis = o.apis_by_count();
    // Every caller → callee edge, callees by executions then callers by calls.
    let mut by_callee: BTreeMap<&ApiName, Vec<(&ApiName, u64)>> = BTreeMap::new();
    for ((caller, callee), s) in &o.callers {
        by_callee.entry(callee).or_default().push((caller, s.count));
    }
    let mut caller_edges: Vec<(&ApiName, &ApiName)> = Vec::new();
    for &callee in &apis {
        if let Some(callers) = by_callee.get_mut(callee) {
            callers.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            caller_edges.extend(callers.iter().map(|&(caller, _)| (caller, callee)));
        }
    }
    for cand in candidates {
        let c = &cand.profile;
        let runs = cand.runs();
        let busy = cand.host_busy.is_some();
        let judge = |job: &Job<'_>| {
            let per_run: Vec<Option<&Sample>> = runs.iter().map(|p| job.pick(p)).collect();
            latency(&job.seed_key(), job.api(), job.caller(), job.original(o), job.pick(c), &per_run, busy, opts)
        };
        let roots_jobs: Vec<Job> = o.roots_by_count().into_iter().map(Job::Root).collect();
        let roots = par_map(&roots_jobs, &judge);
        let api_jobs: Vec<Job> = apis.iter().map(|&name| Job::Api(name)).collect();
        let api_rows = par_map(&api_jobs, &judge);
        let caller_jobs: Vec<Job> = caller_edges.iter().map(|&(caller, callee)| Job::Caller(caller, callee)).collect();
        let caller_rows = par_map(&caller_jobs, &judge);
        let structure = structure(o, c, opts);
        cmp.summary.push(CandidateSummary::of(
            &cand.label,
            runs.len(),
            &roots,
            structure.verdict,
            cand.host_busy.clone(),
        ));
        cmp.roots.insert(cand.label.clone(), roots);
        cmp.apis.insert(cand.label.clone(), api_rows);
        cmp.callers.insert(cand.label.clone(), caller_rows);
        let edges = edge_keys.iter().map(|&(key, _)| edge_shift(key, &o.calls[key], c.calls.get(key))).collect();
        cmp.edges.insert(cand.label.clone(), edges);
        cmp.structure.insert(cand.label.clone(), structure);
        cmp.failures.insert(cand.label.clone(), crate::failures::FailureComparison::of(o, c));
    }
    Ok(cmp)
}

/// One latency distribution to judge: where it is in a profile.
enum Job<'a> {
    Root(&'a ApiName),
    Api(&'a ApiName),
    Caller(&'a ApiName, &'a ApiName),
}

impl Job<'_> {
    fn pick<'p>(&self, p: &'p Profile) -> Option<&'p Sample> {
        match self {
            Job::Root(name) => p.roots.get(*name),
            Job::Api(name) => p.apis.get(*name).map(|a| &a.latency),
            Job::Caller(caller, callee) => p.callers.get(&((*caller).clone(), (*callee).clone())),
        }
    }
    fn original<'p>(&self, o: &'p Profile) -> &'p Sample {
        self.pick(o).expect("jobs come from the original's own distributions")
    }
    fn api(&self) -> &ApiName {
        match self {
            Job::Root(name) | Job::Api(name) | Job::Caller(_, name) => name,
        }
    }
    fn caller(&self) -> Option<&ApiName> {
        match self {
            Job::Caller(caller, _) => Some(caller),
            _ => None,
        }
    }
    /// Seeds its floor: the same distribution gets the same draws in any report.
    fn seed_key(&self) -> String {
        match self {
            Job::Root(name) => format!("root {name}"),
            Job::Api(name) => format!("api {name}"),
            Job::Caller(caller, callee) => format!("caller {caller} {callee}"),
        }
    }
}

/// `f` over `items` on every core, in order: floors are the costly part of
/// a comparison and each distribution's is independent (and seeded by
/// its name, so the result does not depend on the split).
fn par_map<T: Sync, R: Send>(items: &[T], f: &(dyn Fn(&T) -> R + Sync)) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(items.len().max(1));
    if threads <= 1 || items.len() < 16 {
        return items.iter().map(f).collect();
    }
    // Strided, not in halves: the most executed (costliest) rows come first.
    let mut parts: Vec<Vec<R>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| scope.spawn(move || items.iter().skip(t).step_by(threads).map(f).collect::<Vec<R>>()))
            .collect();
        handles.into_iter().map(|h| h.join().expect("a comparison thread panicked")).collect()
    });
    let mut iters: Vec<_> = parts.iter_mut().map(|p| std::mem::take(p).into_iter()).collect();
    (0..items.len()).filter_map(|i| iters[i % threads].next()).collect()
}

fn ms(ns: f64) -> f64 {
    ns / 1e6
}

/// A value at the precision reports show it (KS to 3 decimals, fractions
/// to 0.1%), so a verdict never contradicts the numbers beside it.
fn shown(x: f64) -> f64 {
    (x.abs() * 1000.0).round() / 1000.0
}

/// Whether every metric is within its floor, at the shown precision.
fn within(m: &LatencyMetrics, f: &LatencyMetrics) -> bool {
    [(m.ks, f.ks), (m.w1, f.w1), (m.p50, f.p50), (m.p90, f.p90), (m.p99, f.p99)]
        .iter()
        .all(|&(m, f)| shown(m) <= shown(f))
}

/// The smallest magnitude each metric's interval allows (0 where an
/// interval of a signed error spans 0).
fn least(ci: &LatencyIntervals) -> LatencyMetrics {
    let least = |i: Interval| if i.lo <= 0.0 && i.hi >= 0.0 { 0.0 } else { i.lo.abs().min(i.hi.abs()) };
    LatencyMetrics { ks: least(ci.ks), w1: least(ci.w1), p50: least(ci.p50), p90: least(ci.p90), p99: least(ci.p99) }
}

/// The verdict on figures `m` with floor `f` and intervals `ci`: beyond
/// the floor is "differs" only when the figure's own interval is beyond it
/// too, else "borderline" — a difference no larger than the figure's
/// uncertainty, which one more run could put on either side.
fn verdict(
    m: &LatencyMetrics,
    f: &LatencyMetrics,
    ci: &LatencyIntervals,
    busy: bool,
    opts: &CompareOptions,
) -> Verdict {
    if !within(m, f) {
        if busy {
            Verdict::Inconclusive
        } else if within(&least(ci), f) {
            Verdict::Borderline
        } else {
            Verdict::Differs
        }
    } else if shown(m.ks) > shown(opts.close_ks) || shown(m.w1) > shown(opts.close_w1) {
        Verdict::TooFewSamples
    } else {
        Verdict::Close
    }
}

/// Per metric, the smallest and the largest over runs.
fn run_range(per_run: &[LatencyMetrics]) -> (LatencyMetrics, LatencyMetrics) {
    let fold = |f: fn(f64, f64) -> f64| {
        let first = per_run[0];
        per_run.iter().skip(1).fold(first, |acc, m| LatencyMetrics {
            ks: f(acc.ks, m.ks),
            w1: f(acc.w1, m.w1),
            p50: f(acc.p50, m.p50),
            p90: f(acc.p90, m.p90),
            p99: f(acc.p99, m.p99),
        })
    };
    (fold(f64::min), fold(f64::max))
}

/// One latency distribution compared: `pooled` is the candidate's sample
/// over every run (the figures and the verdict), `per_run` its sample in
/// each run (the figures' range over runs).
#[allow(clippy::too_many_arguments)]
fn latency(
    key: &str,
    name: &ApiName,
    caller: Option<&ApiName>,
    original: &Sample,
    pooled: Option<&Sample>,
    per_run: &[Option<&Sample>],
    busy: bool,
    opts: &CompareOptions,
) -> LatencyComparison {
    let pooled = pooled.filter(|s| !s.values.is_empty());
    let runs: Vec<&Sample> = per_run.iter().flatten().copied().filter(|s| !s.values.is_empty()).collect();
    let a = &original.values;
    let q = |s: &[i64], p: f64| metrics::quantile(s, p).map_or(0.0, |v| ms(v as f64));
    let mean = original.mean_ns();
    let of_pooled = |f: &dyn Fn(&Sample) -> f64| pooled.map(f);
    let cand_mean = of_pooled(&|s| ms(s.mean_ns()));
    let (c50, c90, c99) =
        (of_pooled(&|s| q(&s.values, 0.5)), of_pooled(&|s| q(&s.values, 0.9)), of_pooled(&|s| q(&s.values, 0.99)));
    let w1_ms = of_pooled(&|s| ms(metrics::wasserstein1(a, &s.values)));
    let p_values = of_pooled(&|s| metrics::ks_p_value(metrics::ks_statistic(a, &s.values), a.len(), s.values.len()));
    let stat = |orig: f64, cand: Option<f64>| Stat {
        original_ms: orig,
        candidate_ms: cand,
        rel_error: cand.and_then(|c| metrics::relative_error(orig, c)),
    };
    let per_metrics: Vec<LatencyMetrics> = runs.iter().map(|s| LatencyMetrics::of(a, mean, &s.values)).collect();
    let point = pooled.map(|s| LatencyMetrics::of(a, mean, &s.values));
    let candidate_n = pooled.map_or(0, |s| s.values.len());
    let counted_n = pooled.map_or(0, |s| s.count);
    let enough = original.count >= opts.min_samples && counted_n >= opts.min_samples;
    let seed = floor::seed_for(opts.floor.seed, key);
    let (floor, ci) = match point {
        Some(point) if !a.is_empty() && enough => {
            let f = floor::latency_floor(a, mean, candidate_n, 1, &opts.floor, seed);
            let samples: Vec<&[i64]> = pooled.iter().map(|s| s.values.as_slice()).collect();
            (Some(f), Some(floor::latency_intervals(a, mean, &samples, point, &opts.floor, seed)))
        }
        _ => (None, None),
    };
    let verdict = match (point, floor) {
        (None, _) => Verdict::Missing,
        (Some(_), None) => Verdict::TooFewSamples,
        (Some(m), Some(f)) => verdict(&m, &f, ci.as_ref().expect("intervals come with a floor"), busy, opts),
    };
    let (runs_min, runs_max) = if per_metrics.len() > 1 {
        let (lo, hi) = run_range(&per_metrics);
        (Some(lo), Some(hi))
    } else {
        (None, None)
    };
    LatencyComparison {
        service: name.service.clone(),
        operation: name.operation.clone(),
        caller: caller.cloned(),
        original_count: original.count,
        candidate_count: pooled.map_or(0, |s| s.count),
        original_sample: a.len() as u64,
        candidate_sample: pooled.map_or(0, |s| s.values.len() as u64),
        ks: point.map(|m| m.ks),
        p_value: p_values,
        w1: point.map(|m| m.w1),
        w1_ms,
        floor,
        ci,
        runs: runs.len(),
        runs_min,
        runs_max,
        mean: stat(ms(mean), cand_mean),
        p50: stat(q(a, 0.5), c50),
        p90: stat(q(a, 0.9), c90),
        p99: stat(q(a, 0.99), c99),
        verdict,
    }
}

/// One edge's caller-observed latency compared.
fn edge_shift(key: &(ApiName, ApiName), original: &Sample, candidate: Option<&Sample>) -> EdgeShift {
    let candidate = candidate.filter(|s| !s.values.is_empty());
    let (a, b) = (&original.values, candidate.map(|s| s.values.as_slice()));
    let q = |s: &[i64], p: f64| metrics::quantile(s, p).map_or(0.0, |v| ms(v as f64));
    let quantile = |p: f64| Shift::new(q(a, p), b.map(|b| q(b, p)));
    EdgeShift {
        caller: key.0.clone(),
        callee: key.1.clone(),
        original_calls: original.count,
        candidate_calls: candidate.map_or(0, |s| s.count),
        ks: b.map(|b| metrics::ks_statistic(a, b)),
        mean: Shift::new(ms(original.mean_ns()), candidate.map(|s| ms(s.mean_ns()))),
        p50: quantile(0.5),
        p90: quantile(0.9),
        p99: quantile(0.99),
    }
}

fn distribution(a: &palette_trace::stats::Histogram, b: &palette_trace::stats::Histogram) -> DistributionComparison {
    DistributionComparison { ks: metrics::ks_histograms(a, b), original: a.summary(), candidate: b.summary() }
}

/// The first names of a set, and its size.
fn first_names<'a>(names: impl Iterator<Item = &'a ApiName>) -> (Vec<ApiName>, u64) {
    let mut list = Vec::new();
    let mut n = 0;
    for name in names {
        if list.len() < 20 {
            list.push(name.clone());
        }
        n += 1;
    }
    (list, n)
}

/// The shape of `c` (every run together) against `o`, with the verdict on
/// its figures against their floors at its size.
fn structure(o: &Profile, c: &Profile, opts: &CompareOptions) -> StructureComparison {
    let mut shape = shape(o, c, opts);
    shape.metrics = shape_metrics(&shape);
    let candidate_traces = c.traces;
    // A rate's spread shrinks with the traces it is measured over.
    let to_candidate = if candidate_traces > 0 { (o.traces as f64 / candidate_traces as f64).sqrt() } else { 1.0 };
    let edges: Vec<floor::EdgeRate> = o
        .callers
        .keys()
        .filter(|(caller, _)| c.apis.contains_key(caller))
        .map(|(caller, callee)| {
            let sd = o.call_rate_sd(caller, callee);
            floor::EdgeRate {
                calls_per_execution: o.call_probability(caller, callee),
                original_sd: sd,
                candidate_sd: sd * to_candidate,
            }
        })
        .collect();
    let input = floor::StructureInput {
        spans_per_trace: &o.spans_per_trace,
        depth: &o.depth,
        fan_out: &o.fan_out,
        candidate_traces,
        candidate_callers: c.fan_out.count(),
        edges: &edges,
        union_edges: shape.edge_probability.rated as usize,
        concurrent_fraction: o.concurrent_fraction(),
        concurrent_sd_original: o.concurrent_fraction_sd(),
        concurrent_sd_candidate: o.concurrent_fraction_sd() * to_candidate,
    };
    let enough = o.traces >= opts.min_samples && input.candidate_traces >= opts.min_samples;
    shape.floor = floor::structure_floor(&input, 1, &opts.floor, floor::seed_for(opts.floor.seed, "structure"));
    let (m, f) = (shape.metrics, shape.floor);
    let within = [
        (m.spans_per_trace, f.spans_per_trace),
        (m.depth, f.depth),
        (m.fan_out, f.fan_out),
        (m.edge_calls, f.edge_calls),
        (m.concurrent_stages, f.concurrent_stages),
    ]
    .iter()
    .all(|&(m, f)| shown(m) <= shown(f));
    // The shape of the call trees is what the system did, not how long it
    // took: a busy host does not make it inconclusive.
    shape.verdict = match (enough, within) {
        (false, _) => Verdict::TooFewSamples,
        (true, true) => Verdict::Close,
        (true, false) => Verdict::Differs,
    };
    shape
}

/// The figures of one run's shape.
fn shape_metrics(s: &StructureComparison) -> StructureMetrics {
    StructureMetrics {
        spans_per_trace: s.spans_per_trace.ks,
        depth: s.depth.ks,
        fan_out: s.fan_out.ks,
        edge_calls: s.edge_probability.mae,
        concurrent_stages: s.concurrent_stages.difference.abs(),
    }
}

/// The shape of `c` against `o`, without floor or verdict.
fn shape(o: &Profile, c: &Profile, opts: &CompareOptions) -> StructureComparison {
    let edges: BTreeSet<&(ApiName, ApiName)> = o.callers.keys().chain(c.callers.keys()).collect();
    let mut errors: Vec<EdgeError> = edges
        .iter()
        .map(|(caller, callee)| EdgeError {
            caller: caller.clone(),
            callee: callee.clone(),
            original: o.call_probability(caller, callee),
            candidate: c.call_probability(caller, callee),
        })
        .collect();
    // A rate per caller execution means nothing where the caller never
    // runs: such edges count under the missing APIs and edges, not here.
    let both = |e: &EdgeError| o.apis.contains_key(&e.caller) && c.apis.contains_key(&e.caller);
    let mae = metrics::mean_absolute_error(errors.iter().filter(|e| both(e)).map(|e| (e.original, e.candidate)));
    let rated = errors.iter().filter(|e| both(e)).count() as u64;
    let missing = edges.iter().filter(|k| !c.callers.contains_key(k)).count() as u64;
    let extra = edges.iter().filter(|k| !o.callers.contains_key(k)).count() as u64;
    errors.sort_by(|x, y| (y.original - y.candidate).abs().total_cmp(&(x.original - x.candidate).abs()));
    errors.retain(|e| e.original != e.candidate);
    errors.truncate(opts.worst_edges);
    let (missing_apis, missing_count) = first_names(o.apis.keys().filter(|k| !c.apis.contains_key(*k)));
    let (extra_apis, extra_count) = first_names(c.apis.keys().filter(|k| !o.apis.contains_key(*k)));
    let (fo, fc) = (o.concurrent_fraction(), c.concurrent_fraction());
    StructureComparison {
        spans_per_trace: distribution(&o.spans_per_trace, &c.spans_per_trace),
        depth: distribution(&o.depth, &c.depth),
        fan_out: distribution(&o.fan_out, &c.fan_out),
        edge_probability: EdgeComparison { mae, edges: edges.len() as u64, rated, missing, extra, worst: errors },
        concurrent_stages: FractionComparison { original: fo, candidate: fc, difference: fc - fo },
        apis: ApiSetComparison { missing: missing_apis, missing_count, extra: extra_apis, extra_count },
        metrics: StructureMetrics::default(),
        floor: StructureMetrics::default(),
        verdict: Verdict::Close,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::tests::tree;
    use crate::collect::{CollectOptions, Profile};
    use palette_trace::Interner;
    use palette_trace::tree::NO_PARENT;

    /// Figure-1-like traces: A and C call B; B's latency per caller is given.
    fn profile(b_via_a: &[i64], b_via_c: &[i64], concurrent: bool) -> Profile {
        let mut names = Interner::default();
        let mut trees = Vec::new();
        for &d in b_via_a {
            trees.push(tree(&mut names, &[("A/a", NO_PARENT, 0, 1000), ("B/b", 0, 10, 10 + d)]));
        }
        for &d in b_via_c {
            let second = if concurrent { 20 } else { 10 + d };
            trees.push(tree(
                &mut names,
                &[("C/c", NO_PARENT, 0, 1000), ("B/b", 0, 10, 10 + d), ("D/d", 0, second, second + 5)],
            ));
        }
        Profile::from_traces(&trees, &names, CollectOptions { stage_tolerance_ns: 0, ..CollectOptions::default() })
    }

    /// The fixtures here hold a handful of values: judge them anyway.
    fn tiny() -> CompareOptions {
        CompareOptions { min_samples: 1, ..CompareOptions::default() }
    }

    fn find<'a>(rows: &'a [LatencyComparison], op: &str, caller: Option<&str>) -> &'a LatencyComparison {
        rows.iter()
            .find(|r| r.operation == op && r.caller.as_ref().map(|c| c.operation.as_str()) == caller)
            .unwrap_or_else(|| panic!("no row {op} {caller:?}"))
    }

    #[test]
    fn identical_inputs_match_everywhere() {
        let p = profile(&[10, 20, 30], &[100, 200], true);
        let o = Input::new("orig", "o", p.clone());
        let cmp = compare(&o, &[Input::new("same", "s", p)], &tiny()).unwrap();
        for rows in [&cmp.roots["same"], &cmp.apis["same"], &cmp.callers["same"]] {
            for r in rows {
                assert_eq!((r.ks, r.w1, r.verdict), (Some(0.0), Some(0.0), Verdict::Close), "{r:?}");
                assert_eq!(r.p_value, Some(1.0));
                assert_eq!(r.p99.rel_error, Some(0.0));
            }
        }
        let s = &cmp.structure["same"];
        assert_eq!((s.spans_per_trace.ks, s.depth.ks, s.fan_out.ks), (0.0, 0.0, 0.0));
        assert_eq!((s.edge_probability.mae, s.edge_probability.edges, s.concurrent_stages.difference), (0.0, 3, 0.0));
        assert!(s.edge_probability.worst.is_empty());
    }

    #[test]
    fn runs_are_judged_pooled() {
        // Each run holds half the original's values: alone, each differs
        // (KS 0.5); together they are the original's sample.
        let all: Vec<i64> = (1..=40).map(|v| v * 10).collect();
        let o = Input::new("orig", "o", profile(&all, &[], true));
        let runs = vec![profile(&all[..20], &[], true), profile(&all[20..], &[], true)];
        let c = Input::with_runs("twice", "t", profile(&all, &[], true), runs);
        let cmp = compare(&o, &[c], &tiny()).unwrap();
        let b = find(&cmp.apis["twice"], "b", None);
        assert_eq!((b.ks, b.verdict, b.runs), (Some(0.0), Verdict::Close, 2), "{b:?}");
        assert_eq!((b.candidate_count, b.original_count), (40, 40));
        assert_eq!(b.runs_min.map(|m| m.ks), Some(0.5), "the range over runs shows each run alone");
        assert_eq!(b.runs_max.map(|m| m.ks), Some(0.5));
        assert!(
            cmp.summary[0].line.starts_with("twice (2 runs pooled): close to the original"),
            "{}",
            cmp.summary[0].line
        );
    }

    #[test]
    fn a_candidate_verdict_names_only_what_is_clearly_so() {
        let summary = |differs, borderline, too_few, structure| {
            let mut s = CandidateSummary {
                label: "c".into(),
                runs: 1,
                roots: 4,
                roots_close: 4 - differs - borderline - too_few,
                roots_differs: differs,
                roots_borderline: borderline,
                roots_too_few_samples: too_few,
                roots_inconclusive: 0,
                roots_missing: 0,
                structure,
                verdict: Verdict::Close,
                host_busy: None,
                line: String::new(),
                counts: String::new(),
            };
            s.verdict = s.overall();
            (s.verdict, s.in_words())
        };
        // However many figures sit at the edge, one clear difference makes
        // the candidate differ: a borderline API moving between runs does
        // not change the line.
        for borderline in 0..=2 {
            let (v, words) = summary(1, borderline, 0, Verdict::Close);
            assert_eq!(v, Verdict::Differs);
            assert_eq!(words, "differs from the original — root-API latency beyond the noise floor");
        }
        assert_eq!(
            summary(2, 1, 0, Verdict::Differs).1,
            "differs from the original — root-API latency and structure beyond the noise floor"
        );
        assert_eq!(
            summary(0, 0, 0, Verdict::Differs).1,
            "differs from the original — structure beyond the noise floor"
        );
        assert_eq!(summary(0, 0, 0, Verdict::Close).0, Verdict::Close);
        // Borderline figures are too small to call, here as for one figure.
        assert_eq!(summary(0, 0, 0, Verdict::Close), summary(0, 2, 0, Verdict::Borderline));
        assert_eq!(summary(0, 0, 4, Verdict::TooFewSamples).0, Verdict::TooFewSamples);
        assert_eq!(
            summary(0, 0, 1, Verdict::Close).1,
            "close to the original — nothing clearly beyond the noise floor; too few samples to judge 1 of 4 root APIs"
        );
    }

    #[test]
    fn per_caller_latency_shows_what_per_api_hides() {
        // Original: B takes 10 via A and 100 via C. The candidate swaps them:
        // B's overall distribution is the same, but per caller it is disjoint.
        let o = Input::new("orig", "o", profile(&[10; 5], &[100; 5], true));
        let c = Input::new("swapped", "s", profile(&[100; 5], &[10; 5], false));
        let cmp = compare(&o, &[c], &tiny()).unwrap();
        assert_eq!(find(&cmp.apis["swapped"], "b", None).ks, Some(0.0));
        let via_a = find(&cmp.callers["swapped"], "b", Some("a"));
        assert_eq!((via_a.ks, via_a.verdict), (Some(1.0), Verdict::Differs));
        // W1 moves the whole mass by 90, normalised by the original's mean of 10.
        assert_eq!(via_a.w1, Some(9.0));
        assert_eq!(via_a.p50.rel_error, Some(9.0));
        let s = &cmp.structure["swapped"];
        assert_eq!(s.concurrent_stages.original, 0.5);
        assert_eq!(s.concurrent_stages.candidate, 0.0);
        assert_eq!(s.edge_probability.mae, 0.0);
    }

    #[test]
    fn missing_apis_and_edges() {
        let o = Input::new("orig", "o", profile(&[10, 20], &[30], true));
        let c = Input::new("only-a", "c", profile(&[10, 20], &[], true));
        let cmp = compare(&o, &[c], &tiny()).unwrap();
        let row = find(&cmp.roots["only-a"], "c", None);
        assert_eq!((row.verdict, row.ks, row.candidate_count), (Verdict::Missing, None, 0));
        let s = &cmp.structure["only-a"];
        // Edges: A→B (1 vs 1), C→B and C→D missing. C never runs in the
        // candidate, so its edges have no rate there: they count as missing,
        // and the rate difference is over A→B alone.
        assert_eq!((s.edge_probability.edges, s.edge_probability.missing, s.edge_probability.extra), (3, 2, 0));
        assert_eq!((s.edge_probability.rated, s.edge_probability.mae), (1, 0.0));
        assert_eq!(s.apis.missing_count, 2);
        let json = serde_json::to_value(&cmp).unwrap();
        assert!(json["roots"]["only-a"][0]["ks"].is_number());
        assert!(json["structure"]["only-a"]["edge_probability"]["mae"].is_number());
    }

    /// Traces of A calling B where B takes `callee` ms and the caller sees
    /// `callee + delay` ms (a network delay between them).
    fn delayed(callee: &[i64], delay: i64) -> Profile {
        let mut names = Interner::default();
        let ms = 1_000_000;
        let trees: Vec<_> = callee
            .iter()
            .map(|&d| {
                let mut t = tree(&mut names, &[("A/a", NO_PARENT, 0, 1000 * ms), ("B/b", 0, 10 * ms, (10 + d) * ms)]);
                t.execs[1].call_duration_ns = (d + delay) * ms;
                t
            })
            .collect();
        Profile::from_traces(&trees, &names, CollectOptions::default())
    }

    #[test]
    fn edge_shift_is_caller_observed() {
        let callee: Vec<i64> = (1..=100).collect();
        let o = Input::new("orig", "o", delayed(&callee, 2));
        let c = Input::new("fault", "f", delayed(&callee, 247));
        let cmp = compare(&o, &[c], &tiny()).unwrap();
        // The callee's own latency did not move; the caller's view did, by 245 ms.
        assert_eq!(find(&cmp.callers["fault"], "b", Some("a")).ks, Some(0.0));
        let e = &cmp.edges["fault"][0];
        assert_eq!((e.caller.operation.as_str(), e.callee.operation.as_str()), ("a", "b"));
        assert_eq!((e.original_calls, e.candidate_calls, e.ks), (100, 100, Some(1.0)));
        for s in [&e.mean, &e.p50, &e.p90, &e.p99] {
            assert!((s.shift_ms.unwrap() - 245.0).abs() < 1e-9, "{s:?}");
        }
        assert!((e.p50.original_ms - 52.0).abs() <= 1.0, "{:?}", e.p50);
        assert!((e.p50.ratio.unwrap() - e.p50.candidate_ms.unwrap() / e.p50.original_ms).abs() < 1e-12);
        let text = crate::text::edges(&cmp, 5);
        assert!(text.contains("A a → B b") && text.contains("+245.00 ms"), "{text}");
        let json = serde_json::to_value(&cmp).unwrap();
        assert_eq!(json["edges"]["fault"][0]["p90"]["shift_ms"], 245.0);
        // An edge the candidate lacks has no shift.
        let none = compare(&o, &[Input::new("empty", "e", Profile::default())], &tiny()).unwrap();
        let e = &none.edges["empty"][0];
        assert_eq!((e.ks, e.p50.shift_ms, e.candidate_calls), (None, None, 0));
    }

    #[test]
    fn labels_must_differ() {
        let p = profile(&[1], &[1], false);
        let o = Input::new("o", "o", p.clone());
        let twice = [Input::new("x", "1", p.clone()), Input::new("x", "2", p.clone())];
        assert!(matches!(compare(&o, &twice, &tiny()), Err(Error::DuplicateLabel(_))));
        assert!(matches!(compare(&o, &[Input::new("", "1", p)], &tiny()), Err(Error::EmptyLabel)));
    }
}
