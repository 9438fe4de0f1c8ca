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
use palette_trace::{Interner, Span, SpanId, SpanKind, Sym, TraceId};

use crate::exec::{Context, Execution, Step};
use crate::model::{ApiId, Model};

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

    /// Runs `api` in `ctx` from `start`; returns its end time and the calls it made.
    fn execute(&mut self, api: ApiId, ctx: Context, parent: SpanId, start: i64, depth: u32) -> (i64, u32) {
        let id = self.new_span_id();
        let index = self.spans.len();
        let (service, operation) = self.api_syms[api as usize];
        self.spans.push(Span {
            trace_id: self.trace_id,
            span_id: id,
            parent_id: parent,
            service,
            operation,
            kind: SpanKind::Server,
            start_ns: start,
            ..Span::default()
        });
        let (end, calls_made) = self.walk(api, ctx, id, start, depth);
        self.spans[index].duration_ns = end - start;
        (end, calls_made)
    }

    fn walk(&mut self, api: ApiId, ctx: Context, id: SpanId, start: i64, depth: u32) -> (i64, u32) {
        let truncated = depth >= MAX_DEPTH || self.spans.len() >= MAX_SPANS_PER_TRACE;
        let mut exec = Execution::new(self.model, api, ctx, truncated, &mut self.rng);
        let mut t = start;
        loop {
            match exec.next_step(&mut self.rng) {
                Step::Finish { work_ns } => return (t + work_ns, exec.calls_made()),
                Step::Stage { work_ns, calls, wait, .. } => {
                    t += work_ns;
                    let child = exec.child_context();
                    let (mut slowest, mut outcome) = (0i64, 0u32);
                    for &callee in calls {
                        let overhead = exec.overhead_ns(callee, &mut self.rng);
                        let (latency, calls_made) = self.call(api, child, callee, id, t, overhead, depth);
                        slowest = slowest.max(latency);
                        outcome = outcome.saturating_add(calls_made);
                    }
                    exec.observe_outcome(outcome);
                    // The work around a stage was measured as if the caller
                    // waited (λ ≥ 0.5) or not; the stage is executed the same
                    // way, so back-to-back calls never overlap and no time is
                    // counted twice.
                    if wait {
                        t += slowest;
                    }
                }
            }
        }
    }

    /// A call from `api` to `callee` at `t`: a CLIENT span around the
    /// callee's execution. Returns the caller-observed latency and the calls
    /// the callee made.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        api: ApiId,
        ctx: Context,
        callee: ApiId,
        from: SpanId,
        t: i64,
        overhead: i64,
        depth: u32,
    ) -> (i64, u32) {
        if self.local.contains(&(api, callee)) {
            // A local call: the callee's span hangs directly under the caller.
            let index = self.spans.len();
            let (end, calls_made) = self.execute(callee, ctx, from, t, depth + 1);
            self.spans[index].kind = SpanKind::Internal;
            return (end + overhead - t, calls_made);
        }
        let client = self.new_span_id();
        let index = self.spans.len();
        self.spans.push(Span {
            trace_id: self.trace_id,
            span_id: client,
            parent_id: from,
            service: self.api_syms[api as usize].0,
            operation: self.api_syms[callee as usize].1,
            kind: SpanKind::Client,
            start_ns: t,
            ..Span::default()
        });
        let before = overhead / 2;
        let (end, calls_made) = self.execute(callee, ctx, client, t + before, depth + 1);
        let end = end + (overhead - before);
        self.spans[index].duration_ns = end - t;
        (end - t, calls_made)
    }
}
