//! The model file: `model.json`, format `palette-model/1`.
//!
//! Everything is ordered deterministically (APIs by service then operation,
//! states breadth-first, transitions by target) and every number derives from
//! exact counts, so the same input and options give the same bytes. APIs are
//! referred to by their index in [`Model::apis`]; a caller of `null` is the
//! client outside the system (a root request). See `docs/model-format.md`.

use serde::{Deserialize, Serialize};

use crate::sketch::Sketch;

/// The format tag this version writes and reads.
pub const FORMAT: &str = "palette-model/1";

/// Index of an API in [`Model::apis`].
pub type ApiId = u32;

/// Who called an execution: an API, or `None` for a root request.
pub type Caller = Option<ApiId>;

/// Which model this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Caller-conditioned PFA and causal latency model (the paper's).
    Palette,
    /// The reference baseline: per-API latency marginal, independent
    /// per-edge call counts, all calls sequential.
    Naive,
}

/// The options a model was fitted with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    /// Two calls are in one stage unless the later starts at least this long
    /// after every call of the stage has ended.
    pub stage_tolerance_ns: i64,
    /// ALERGIA confidence α: smaller merges more states.
    pub confidence: f64,
    /// Kept for model-file compatibility: repetitions of a stage always fold
    /// into one counted loop (see [`State::repeats`]).
    pub max_unrolled: u32,
    /// A caller's own distributions are used only with at least this many samples.
    pub min_caller_support: u64,
    /// Choices conditioned on a stage's outcome are kept only with at least
    /// this many samples, and only where they differ from the caller's.
    #[serde(default = "default_min_outcome_support")]
    pub min_outcome_support: u64,
}

fn default_min_outcome_support() -> u64 {
    5
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            stage_tolerance_ns: 100_000,
            confidence: 0.05,
            max_unrolled: 3,
            min_caller_support: 20,
            min_outcome_support: default_min_outcome_support(),
        }
    }
}

/// Where a model came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Input file names (not paths: the model does not depend on where the
    /// files were), in the order read.
    pub inputs: Vec<String>,
    pub traces: u64,
    pub spans: u64,
    /// Interventions applied, in order (later stages add to this).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interventions: Vec<String>,
}

/// A fitted model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub format: String,
    pub kind: ModelKind,
    pub options: FitOptions,
    pub provenance: Provenance,
    /// Service names, sorted.
    pub services: Vec<String>,
    /// APIs, sorted by (service, operation).
    pub apis: Vec<ApiModel>,
    /// Root APIs and how many traces each started.
    pub roots: Vec<RootCount>,
    /// Call edges of the topology.
    pub edges: Vec<Edge>,
    /// How a generated system should run this model, as interventions
    /// recorded it (work modes, RPC, replicas, sampling): `generate` reads it, so an
    /// edited model carries its deployment choices with it.
    #[serde(default, skip_serializing_if = "Deploy::is_default")]
    pub deploy: Deploy,
}

/// Most instances of one service: each is a process (or container) and,
/// locally, a port of its own, so a typo like `instances: 3000` is refused
/// rather than exhausting a laptop.
pub const MAX_REPLICAS: u32 = 64;

/// Deployment choices recorded by interventions, for `palette generate`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Deploy {
    /// Work-mode rules in the order applied; a later rule overrides an
    /// earlier one for what it covers (system, service or API).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub work: Vec<WorkRule>,
    /// `http` or `grpc` ([`RpcMode::from_name`]); `None` leaves the
    /// generator's default. Kept as the text the file holds so the loader's
    /// check can name a bad value at its line (`deploy.rpc: rpc … is
    /// neither …`) instead of a parse error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc: Option<String>,
    /// Instances per service name (absent: one).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub replicas: std::collections::BTreeMap<String, u32>,
    /// Share of root requests traced; `None`: every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
    /// Client-side timeouts, retries and circuit breakers the interventions
    /// added: they act in the simulator and the runtime alike.
    #[serde(default, skip_serializing_if = "Resilience::is_empty")]
    pub resilience: Resilience,
}

/// How callers guard their calls (none of this is learned: the traces show
/// the calls a policy made, not the policy).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resilience {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeouts: Vec<TimeoutRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retries: Vec<RetryRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakers: Vec<BreakerRule>,
}

impl Resilience {
    pub fn is_empty(&self) -> bool {
        self.timeouts.is_empty() && self.retries.is_empty() && self.breakers.is_empty()
    }

    /// The timeout of a call from service `caller` to service `callee`,
    /// milliseconds: the last rule that covers the pair (a rule without a
    /// caller covers every caller).
    pub fn timeout_ms(&self, caller: &str, callee: &str) -> Option<f64> {
        self.timeouts
            .iter()
            .rev()
            .find(|t| t.callee == callee && t.caller.as_deref().is_none_or(|c| c == caller))
            .map(|t| t.ms)
    }

    /// The retry policy of calls to service `callee` (the last rule for it).
    pub fn retry(&self, callee: &str) -> Option<&RetryRule> {
        self.retries.iter().rev().find(|r| r.callee == callee)
    }

    /// The circuit breaker of calls to service `callee` (the last rule for it).
    pub fn breaker(&self, callee: &str) -> Option<&BreakerRule> {
        self.breakers.iter().rev().find(|b| b.callee == callee)
    }
}

/// A call from `caller` to `callee` fails with 504 once it has taken `ms`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimeoutRule {
    /// The calling service; `None`: every caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    pub callee: String,
    pub ms: f64,
}

/// A failed call to `callee` is made again, up to `attempts` tries in all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryRule {
    pub callee: String,
    /// Tries in all, the first included (3: the first and two retries).
    pub attempts: u32,
    /// Wait before the second try; it doubles before each later one.
    pub backoff_ms: f64,
    /// Retry only failures with these statuses (500 modelled failure, 502
    /// failed call, 503 open circuit, 504 timeout); empty: every failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<u16>,
}

impl RetryRule {
    /// Whether a failure with `status` is tried again.
    pub fn retries(&self, status: u16) -> bool {
        self.on.is_empty() || self.on.contains(&status)
    }

    /// The wait before try `attempt` (2 for the first retry), milliseconds.
    pub fn backoff_before_ms(&self, attempt: u32) -> f64 {
        self.backoff_ms * f64::from(2u32.saturating_pow(attempt.saturating_sub(2).min(20)))
    }
}

/// After `failures` failed calls in a row to `callee`, a caller fails its
/// calls at once (503, no request sent) for `open_ms`; then one call goes
/// through, and its result closes the circuit or opens it again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BreakerRule {
    pub callee: String,
    pub failures: u32,
    pub open_ms: f64,
}

impl Deploy {
    pub fn is_default(&self) -> bool {
        *self == Deploy::default()
    }
}

/// How a service spends its sampled local work. One definition for the
/// model's recorded choices (`deploy.work`) and `system.json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkMode {
    /// Sleep for the time (precise below a millisecond too).
    #[default]
    Sleep,
    /// Multiply matrices for the time (calibrated at start-up), off the
    /// async reactor: the work competes for CPU as real work does.
    Cpu,
    /// Touch a buffer with a stride for the time: the work competes for
    /// memory bandwidth and cache.
    Memory,
}

impl WorkMode {
    /// The name the files and flags use.
    pub fn name(self) -> &'static str {
        match self {
            WorkMode::Sleep => "sleep",
            WorkMode::Cpu => "cpu",
            WorkMode::Memory => "memory",
        }
    }

    /// The mode a name stands for; `None` for any other text.
    pub fn from_name(name: &str) -> Option<WorkMode> {
        [WorkMode::Sleep, WorkMode::Cpu, WorkMode::Memory].into_iter().find(|m| m.name() == name)
    }
}

/// The transport between services. One definition for the model's recorded
/// choice (`deploy.rpc`) and `system.json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RpcMode {
    /// HTTP/1.1: `POST /op/{operation}`.
    #[default]
    Http,
    /// gRPC: one generic unary method.
    Grpc,
}

impl RpcMode {
    /// The name the files and flags use.
    pub fn name(self) -> &'static str {
        match self {
            RpcMode::Http => "http",
            RpcMode::Grpc => "grpc",
        }
    }

    /// The mode a name stands for; `None` for any other text.
    pub fn from_name(name: &str) -> Option<RpcMode> {
        [RpcMode::Http, RpcMode::Grpc].into_iter().find(|m| m.name() == name)
    }
}

/// One work-mode choice: for the whole system, a service, or one API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkRule {
    pub mode: WorkMode,
    /// Narrows the rule to one service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Narrows the rule to one API, `service operation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RootCount {
    pub api: ApiId,
    pub count: u64,
    /// Of those traces, the ones whose root execution failed.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub failed: u64,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// How a caller reaches a callee.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeKind {
    Local,
    #[default]
    Rpc,
}

/// A call edge: caller API → callee API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub caller: ApiId,
    pub callee: ApiId,
    pub kind: EdgeKind,
    /// Transport when the traces say (http, grpc, rpc, db, mc, mq…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Calls seen.
    pub count: u64,
    /// Caller-observed latency of the calls, nanoseconds.
    pub latency: Summary,
}

/// Quantiles of a distribution, nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Summary {
    pub fn of(s: &Sketch) -> Summary {
        Summary {
            mean: s.mean().round(),
            p50: s.quantile(0.5).round(),
            p90: s.quantile(0.9).round(),
            p99: s.quantile(0.99).round(),
        }
    }
}

/// One API: its callers, its call behaviour (PFA) and its latency (GCM).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiModel {
    pub service: String,
    pub operation: String,
    /// Executions seen.
    pub count: u64,
    /// Executions per caller (`null`: root requests).
    pub callers: Vec<CallerCount>,
    /// Observed latency L_v of the API's own executions (its server span).
    pub latency: Sketch,
    /// Request and response sizes in bytes, when the traces carry them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_bytes: Option<Sketch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_bytes: Option<Sketch>,
    /// Palette models: the PFA with the GCM's nodes on it. State 0 is `start`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<State>,
    /// Call overhead per callee: caller-observed latency minus the callee's
    /// own, conditioned on this API's caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overhead: Vec<CalleeOverhead>,
    /// How alike the overheads of one execution's calls are (0: independent,
    /// 1: all at the same quantile): the correlation of repeated calls'
    /// log overheads. A slow moment of the caller (a throttled pod, a busy
    /// network) slows all its calls at once; sampling them independently
    /// would average that away. Used as a Gaussian copula's ρ.
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub overhead_correlation: f64,
    /// Naive models: independent calls, made one after another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub naive: Option<NaiveApi>,
    /// How the API fails; absent when no execution of it failed or saw a
    /// call fail (and no intervention made it fail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<Failures>,
}

/// What the traces say about an API's failures. A failed call is passed on
/// (the caller fails and stops right after the stage, as code that lets an
/// error propagate does) with the probability learned for its callee; a
/// caller that carries on after it chooses its next step knowing the call
/// failed (the failure is part of the stage's outcome, [`FAILED_OUTCOME`]),
/// so a fallback the traces show is taken. An execution's own failure is
/// decided at its end, at the API's rate for its caller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Failures {
    /// Executions that failed, of [`ApiModel::count`].
    pub failed: u64,
    /// The API's own failures: executions none of whose calls failed, and
    /// how many of them failed anyway.
    pub own: FailCount,
    /// The same per caller, for callers with enough executions whose rate
    /// differs from the marginal's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub own_by_caller: Vec<CallerFailCount>,
    /// Per callee: stages of this API's executions in which a call to it
    /// failed, and after how many of them the execution failed with it (it
    /// passed the failure on). A callee not listed here always has its
    /// failures passed on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub propagated: Vec<CalleeFailCount>,
    /// Set by an `error_rate` intervention: the probability of an own
    /// failure, for every caller, instead of the counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced: Option<f64>,
}

/// `failed` of `executions`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FailCount {
    pub executions: u64,
    pub failed: u64,
}

impl FailCount {
    pub fn rate(&self) -> f64 {
        if self.executions == 0 { 0.0 } else { self.failed as f64 / self.executions as f64 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallerFailCount {
    pub caller: Caller,
    #[serde(flatten)]
    pub count: FailCount,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalleeFailCount {
    pub callee: ApiId,
    #[serde(flatten)]
    pub count: FailCount,
}

/// Set in a stage's outcome (the calls its callees made, summed) when one
/// of the stage's calls failed: a failure is what most often changes what
/// a caller does next.
pub const FAILED_OUTCOME: u32 = 1 << 31;

/// Adds `calls` made by a callee (and whether its call failed) to a
/// stage's outcome; the count saturates below [`FAILED_OUTCOME`].
pub fn add_outcome(outcome: u32, calls: u32, failed: bool) -> u32 {
    let count = (outcome & !FAILED_OUTCOME).saturating_add(calls & !FAILED_OUTCOME).min(FAILED_OUTCOME - 1);
    count | (outcome & FAILED_OUTCOME) | if failed { FAILED_OUTCOME } else { 0 }
}

impl Failures {
    /// The probability that an execution called by `caller` fails of
    /// itself (no call of it failed).
    pub fn own_rate(&self, caller: Caller) -> f64 {
        if let Some(p) = self.forced {
            return p;
        }
        self.own_by_caller.iter().find(|c| c.caller == caller).map_or(self.own.rate(), |c| c.count.rate())
    }

    /// The probability that a failed call to `callee` makes this execution
    /// fail with it, besides its own failures (which may still come at its
    /// end: the learned rate after a failed call is `1 − (1 − q)(1 − own)`);
    /// `None` for a callee the traces never saw fail here.
    pub fn propagation(&self, callee: ApiId) -> Option<f64> {
        self.propagated.iter().find(|c| c.callee == callee).map(|c| c.count.rate())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutcomeCount {
    pub caller: Caller,
    /// Calls made by the callees of the stage just run, summed.
    pub outcome: u32,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallerCount {
    pub caller: Caller,
    pub count: u64,
}

/// A PFA state: a stage of concurrent calls (`start` has none).
///
/// GCM nodes on it: the stage's calls (child latencies L_c, measured live),
/// `lambda` (how much of the slowest call the caller waits for), and on each
/// outgoing transition the choice ("called" node) and the local work W done
/// before the next stage (or, into `finish`, the tail work).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Callee APIs called concurrently in this stage (a multiset, sorted);
    /// empty for `start`.
    pub calls: Vec<ApiId>,
    /// Times the state was entered.
    pub visits: u64,
    /// stage = lambda · max over calls of their latency (λ≈1: the caller
    /// waits; λ≈0: fire-and-forget), fitted by non-negative least squares.
    pub lambda: f64,
    /// A counted loop: (consecutive visits, runs) — how many times in a row
    /// the stage runs once entered. The self-transition carries the work
    /// between repetitions; after the drawn number of visits the state leaves
    /// by one of its other transitions (in proportion to their counts).
    /// Empty for ordinary states.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repeats: Vec<(u32, u64)>,
    /// Transitions out; probabilities sum to 1.
    pub next: Vec<Transition>,
}

/// A transition between states, or into `finish` (`to: null`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub to: Option<u32>,
    pub count: u64,
    /// Marginal probability.
    pub p: f64,
    /// Counts per caller with enough support. A caller listed on any
    /// transition of a state chooses by its own counts there (0 where it is
    /// not listed); callers listed nowhere in the state use `p`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_caller: Vec<CallerCount>,
    /// Counts per (caller, outcome of the state's stage) where the outcome
    /// changes the choice: what the calls just made did (the calls they
    /// made in turn, summed) is a causal parent of what happens next — an
    /// API that calls an error handler only when a lookup came back empty.
    /// Used before `by_caller`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_outcome: Vec<OutcomeCount>,
    /// Local work before the next stage's calls start (into `finish`: the
    /// tail), nanoseconds.
    pub work: CondSketch,
}

/// A distribution with per-caller versions where there is enough data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CondSketch {
    pub all: Sketch,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_caller: Vec<CallerSketch>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallerSketch {
    pub caller: Caller,
    pub sketch: Sketch,
}

impl CondSketch {
    /// The caller's own distribution if it has one, else the marginal.
    pub fn for_caller(&self, caller: Caller) -> &Sketch {
        self.by_caller.iter().find(|c| c.caller == caller).map_or(&self.all, |c| &c.sketch)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalleeOverhead {
    pub callee: ApiId,
    pub overhead: CondSketch,
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

/// The naive baseline for one API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NaiveApi {
    /// Own work: execution time minus the time spent in calls, unconditioned.
    pub work: Sketch,
    /// Per callee, how many calls an execution makes (0 included), drawn
    /// independently of every other callee.
    pub calls: Vec<NaiveCall>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NaiveCall {
    pub callee: ApiId,
    /// (calls per execution, executions) pairs, ascending.
    pub per_execution: Vec<(u32, u64)>,
    /// Caller-observed latency of one call minus the callee's own.
    pub overhead: Sketch,
}

impl Model {
    /// `service operation` of an API, for people.
    pub fn api_name(&self, id: ApiId) -> String {
        let a = &self.apis[id as usize];
        format!("{} {}", a.service, a.operation)
    }

    /// Finds an API by `service operation`, `service/operation`, or a unique operation name.
    pub fn find_api(&self, name: &str) -> Option<ApiId> {
        let exact = self.apis.iter().position(|a| {
            name == format!("{} {}", a.service, a.operation) || name == format!("{}/{}", a.service, a.operation)
        });
        if let Some(i) = exact {
            return Some(i as ApiId);
        }
        let mut by_op = self.apis.iter().enumerate().filter(|(_, a)| a.operation == name);
        match (by_op.next(), by_op.next()) {
            (Some((i, _)), None) => Some(i as ApiId),
            _ => None,
        }
    }

    /// Serialises deterministically (indented JSON with lists of numbers on
    /// one line, see [`crate::json`]; trailing newline).
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        self.write_json(&mut out).expect("models always serialise");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// Writes the same bytes as [`Model::to_json`] as they are made: a model
    /// of 20,000 services is half a gigabyte of text, which need not be held
    /// beside the model.
    pub fn write_json(&self, w: impl std::io::Write) -> std::io::Result<()> {
        crate::json::to_writer(w, self)
    }
}
