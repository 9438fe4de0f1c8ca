//! Sampling synthetic traces from a model, offline.
//!
//! A trace starts at a root API drawn from the traced mix. Each execution
//! walks its API's PFA: at each state a transition is drawn (from the
//! caller's own distribution when it has one), its work is sampled (again
//! per caller), and entering a state makes the state's calls concurrently;
//! the stage takes λ times its slowest call. Each call is a CLIENT span
//! around the callee's SERVER span, separated by the sampled call overhead.
//! Naive models make each callee's calls independently and one after the
//! other, then do their sampled work.

use palette_trace::rng::Rng;
use palette_trace::span::flags;
use palette_trace::{Interner, Span, SpanId, SpanKind, Sym, TraceId};

use crate::exec::{Context, Execution, Step};
use crate::model::{ApiId, Model, add_outcome};

/// Limits that keep a pathological (hand-edited) model finite.
const MAX_DEPTH: u32 = 64;
const MAX_SPANS_PER_TRACE: usize = 200_000;

/// Samples traces from a model.
pub struct Simulator<'m> {
    model: &'m Model,
    rng: Rng,
    names: Interner,
    /// (service, operation) symbols of each API.
    api_syms: Vec<(Sym, Sym)>,
    root_weights: Vec<f64>,
    /// Next trace's start time.
    clock_ns: i64,
    /// Mean gap between trace starts.
    gap_ns: f64,
    spans: Vec<Span>,
    trace_id: TraceId,
    /// Calls within one service (no client/server span pair), by (caller, callee).
    local: rustc_hash::FxHashSet<(ApiId, ApiId)>,
    /// Circuit breakers' state per (caller, callee), in simulated time:
    /// traces are sampled in start order, so a breaker opened by one
    /// trace's failures refuses the next traces' calls.
    breakers: rustc_hash::FxHashMap<(ApiId, ApiId), Breaker>,
}

impl<'m> Simulator<'m> {
    pub fn new(model: &'m Model, seed: u64) -> Simulator<'m> {
        let mut names = Interner::default();
        let api_syms = model.apis.iter().map(|a| (names.intern(&a.service), names.intern(&a.operation))).collect();
        Simulator {
            model,
            rng: Rng::new(seed),
            names,
            api_syms,
            root_weights: model.roots.iter().map(|r| r.count as f64).collect(),
            clock_ns: 1_700_000_000_000_000_000,
            gap_ns: 1e8,
            spans: Vec::new(),
            trace_id: TraceId::default(),
            local: model
                .edges
                .iter()
                .filter(|e| e.kind == crate::model::EdgeKind::Local)
                .map(|e| (e.caller, e.callee))
                .collect(),
            breakers: Default::default(),
        }
    }

    /// Samples one trace (its spans, and the names they use); `None` if the
    /// model has no root API.
    pub fn trace(&mut self) -> Option<(&[Span], &Interner)> {
        if self.root_weights.is_empty() {
            return None;
        }
        self.spans.clear();
        self.clock_ns += self.rng.exp(self.gap_ns) as i64;
        self.trace_id = TraceId::new(((self.rng.next_u64() as u128) << 64) | self.rng.next_u64() as u128);
        let root = self.model.roots[self.rng.pick(&self.root_weights)].api;
        self.execute(root, Context::ROOT, SpanId(0), self.clock_ns, 0);
        Some((&self.spans, &self.names))
    }

    fn new_span_id(&mut self) -> SpanId {
        SpanId(self.rng.next_u64().max(1))
    }

    /// Starts a span of this trace under `parent` at `start` (its duration
    /// is set when it ends); returns its id and its index in `self.spans`.
    fn open_span(
        &mut self,
        parent: SpanId,
        service: Sym,
        operation: Sym,
        kind: SpanKind,
        start: i64,
    ) -> (SpanId, usize) {
        let id = self.new_span_id();
        let index = self.spans.len();
        self.spans.push(Span {
            trace_id: self.trace_id,
            span_id: id,
            parent_id: parent,
            service,
            operation,
            kind,
            start_ns: start,
            ..Span::default()
        });
        (id, index)
    }

    /// Runs `api` in `ctx` from `start`; returns its end time, the calls
    /// it made, and the status it failed with (`None`: it succeeded).
    fn execute(&mut self, api: ApiId, ctx: Context, parent: SpanId, start: i64, depth: u32) -> Ended {
        let (service, operation) = self.api_syms[api as usize];
        let (id, index) = self.open_span(parent, service, operation, SpanKind::Server, start);
        let ended = self.walk(api, ctx, id, start, depth);
        self.spans[index].duration_ns = ended.end - start;
        if ended.failure.is_some() {
            self.spans[index].flags |= flags::ERROR;
        }
        ended
    }

    fn walk(&mut self, api: ApiId, ctx: Context, id: SpanId, start: i64, depth: u32) -> Ended {
        let truncated = depth >= MAX_DEPTH || self.spans.len() >= MAX_SPANS_PER_TRACE;
        let mut exec = Execution::new(self.model, api, ctx, truncated, &mut self.rng);
        let mut t = start;
        loop {
            match exec.next_step(&mut self.rng) {
                Step::Finish { work_ns } => {
                    let failure = exec.fails(&mut self.rng).then_some(MODELLED_FAILURE);
                    return Ended { end: t + work_ns, calls_made: exec.calls_made(), failure };
                }
                Step::Stage { work_ns, calls, wait, .. } => {
                    t += work_ns;
                    let child = exec.child_context();
                    let (mut slowest, mut outcome) = (0i64, 0u32);
                    let mut failed: Vec<(ApiId, u16)> = Vec::new();
                    for &callee in calls {
                        let overhead = exec.overhead_ns(callee, &mut self.rng);
                        let site = CallSite { caller: api, ctx: child, callee, from: id, overhead, depth };
                        let call = self.call(site, t);
                        slowest = slowest.max(call.latency);
                        outcome = add_outcome(outcome, call.calls_made, wait && call.failure.is_some());
                        if let (true, Some(status)) = (wait, call.failure) {
                            failed.push((callee, status));
                        }
                    }
                    exec.observe_outcome(outcome);
                    // The work around a stage was measured as if the caller
                    // waited (λ ≥ 0.5) or not; the stage is executed the same
                    // way, so back-to-back calls never overlap and no time is
                    // counted twice.
                    if wait {
                        t += slowest;
                    }
                    for (callee, status) in failed {
                        if !exec.observe_failed_call(callee, &mut self.rng) {
                            // Passed on at once, as the runtime does.
                            return Ended { end: t, calls_made: exec.calls_made(), failure: Some(passed_on(status)) };
                        }
                    }
                }
            }
        }
    }

    /// The call `site` makes at `t`: a CLIENT span around the
    /// callee's execution — or several, when a retry policy tries again —
    /// under the model's timeouts and circuit breakers.
    fn call(&mut self, site: CallSite, t: i64) -> Call {
        let CallSite { caller: api, ctx, callee, from, overhead, depth } = site;
        if self.local.contains(&(api, callee)) {
            // A local call: the callee's span hangs directly under the caller.
            let index = self.spans.len();
            let ended = self.execute(callee, ctx, from, t, depth + 1);
            self.spans[index].kind = SpanKind::Internal;
            return Call { latency: ended.end + overhead - t, calls_made: ended.calls_made, failure: ended.failure };
        }
        let policy = Policy::of(self.model, api, callee);
        let attempts = policy.retry.map_or(1, |r| r.attempts.max(1));
        let mut at = t;
        let mut attempt = 1;
        loop {
            let call = self.attempt(site, at, &policy);
            let retry = policy.retry.filter(|r| call.failure.is_some_and(|s| r.retries(s)));
            match retry {
                Some(r) if attempt < attempts => {
                    attempt += 1;
                    at += call.latency + (r.backoff_before_ms(attempt) * 1e6) as i64;
                }
                _ => return Call { latency: at + call.latency - t, ..call },
            }
        }
    }

    /// One try of a call at `t`.
    fn attempt(&mut self, site: CallSite, t: i64, policy: &Policy) -> Call {
        let CallSite { caller: api, ctx, callee, from, overhead, depth } = site;
        let (service, operation) = (self.api_syms[api as usize].0, self.api_syms[callee as usize].1);
        let (client, index) = self.open_span(from, service, operation, SpanKind::Client, t);
        if policy.breaker.is_some() && self.breakers.get(&(api, callee)).is_some_and(|b| b.open_until > t) {
            // An open circuit: the call fails at once and nothing is sent.
            self.spans[index].flags |= flags::ERROR;
            return Call { latency: 0, calls_made: 0, failure: Some(CIRCUIT_OPEN) };
        }
        let before = overhead / 2;
        let ended = self.execute(callee, ctx, client, t + before, depth + 1);
        let mut latency = ended.end + (overhead - before) - t;
        let mut call = Call { latency, calls_made: ended.calls_made, failure: ended.failure };
        if let Some(limit) = policy.timeout_ns.filter(|&l| latency > l) {
            // The caller gives up; the callee's execution (already recorded) ran on.
            latency = limit;
            call = Call { latency, calls_made: 0, failure: Some(TIMED_OUT) };
        }
        self.spans[index].duration_ns = latency;
        if call.failure.is_some() {
            self.spans[index].flags |= flags::ERROR;
        }
        if let Some(rule) = policy.breaker {
            let b = self.breakers.entry((api, callee)).or_default();
            b.record(call.failure.is_some(), t + latency, rule);
        }
        call
    }
}

/// One call as its caller makes it: from which API (and under which of
/// its spans) to which, in what context, with what overhead around it.
#[derive(Clone, Copy)]
struct CallSite {
    caller: ApiId,
    /// The callee's context.
    ctx: Context,
    callee: ApiId,
    from: SpanId,
    overhead: i64,
    /// The caller's depth.
    depth: u32,
}

/// How one execution ended, in the simulator.
struct Ended {
    end: i64,
    calls_made: u32,
    failure: Option<u16>,
}

/// How one call ended, as its caller saw it.
struct Call {
    latency: i64,
    calls_made: u32,
    failure: Option<u16>,
}

/// The status of a failure the model decided (the API's own, or one it
/// learned to pass on).
pub const MODELLED_FAILURE: u16 = 500;
/// The status of a call the caller gave up on.
pub const TIMED_OUT: u16 = 504;
/// The status of a call an open circuit refused.
pub const CIRCUIT_OPEN: u16 = 503;

/// The status an execution fails with when a call's failure stops it at
/// once: a timeout stays a timeout, anything else is a failed call (502).
pub fn passed_on(status: u16) -> u16 {
    if status == TIMED_OUT { TIMED_OUT } else { 502 }
}

/// The resilience rules that apply to calls from one API to another.
struct Policy<'m> {
    timeout_ns: Option<i64>,
    retry: Option<&'m crate::model::RetryRule>,
    breaker: Option<&'m crate::model::BreakerRule>,
}

impl<'m> Policy<'m> {
    fn of(model: &'m Model, caller: ApiId, callee: ApiId) -> Policy<'m> {
        let r = &model.deploy.resilience;
        if r.is_empty() {
            return Policy { timeout_ns: None, retry: None, breaker: None };
        }
        let (from, to) = (&model.apis[caller as usize].service, &model.apis[callee as usize].service);
        Policy {
            timeout_ns: r.timeout_ms(from, to).map(|ms| (ms * 1e6) as i64),
            retry: r.retry(to),
            breaker: r.breaker(to),
        }
    }
}

/// One caller's circuit to one callee, in simulated time.
#[derive(Default)]
struct Breaker {
    /// Failed calls in a row.
    failures: u32,
    /// Calls fail at once before this time (ns).
    open_until: i64,
}

impl Breaker {
    fn record(&mut self, failed: bool, now: i64, rule: &crate::model::BreakerRule) {
        if !failed {
            self.failures = 0;
            return;
        }
        self.failures += 1;
        if self.failures >= rule.failures.max(1) {
            self.open_until = now + (rule.open_ms * 1e6) as i64;
            // Half-open after the wait: one more failure opens it again.
            self.failures = rule.failures.max(1) - 1;
        }
    }
}
