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

use crate::model::{ApiId, Caller, Model, ModelKind, State, Transition};

/// Limits that keep a pathological (hand-edited) model finite.
const MAX_DEPTH: u32 = 64;
const MAX_STAGES_PER_EXECUTION: u32 = 10_000;
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
        self.execute(root, None, SpanId(0), self.clock_ns, 0);
        Some((&self.spans, &self.names))
    }

    fn new_span_id(&mut self) -> SpanId {
        SpanId(self.rng.next_u64().max(1))
    }

    /// Runs `api` called by `caller` from `start`; returns its end time.
    fn execute(&mut self, api: ApiId, caller: Caller, parent: SpanId, start: i64, depth: u32) -> i64 {
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
        let a = &self.model.apis[api as usize];
        let end = if depth >= MAX_DEPTH || self.spans.len() >= MAX_SPANS_PER_TRACE {
            start + a.latency.sample(self.rng.f64()) as i64
        } else {
            match self.model.kind {
                ModelKind::Palette => self.walk(api, caller, id, start, depth),
                ModelKind::Naive => self.naive(api, id, start, depth),
            }
        };
        self.spans[index].duration_ns = end - start;
        end
    }

    fn walk(&mut self, api: ApiId, caller: Caller, id: SpanId, start: i64, depth: u32) -> i64 {
        let model = self.model;
        let states = &model.apis[api as usize].states;
        if states.is_empty() {
            return start + model.apis[api as usize].latency.sample(self.rng.f64()) as i64;
        }
        let mut t = start;
        let mut state = 0usize;
        for _ in 0..MAX_STAGES_PER_EXECUTION {
            let Some(tr) = choose(&states[state], caller, &mut self.rng) else { break };
            t += tr.work.for_caller(caller).sample(self.rng.f64()) as i64;
            let Some(next) = tr.to else { return t };
            state = next as usize;
            let s = &states[state];
            let mut slowest = 0i64;
            for &callee in &s.calls {
                let latency = self.call(api, caller, callee, id, t, depth);
                slowest = slowest.max(latency);
            }
            t += (s.lambda * slowest as f64) as i64;
        }
        t
    }

    /// A call from `api` to `callee` at `t`: CLIENT span around the callee's
    /// execution. Returns the caller-observed latency.
    fn call(&mut self, api: ApiId, caller: Caller, callee: ApiId, from: SpanId, t: i64, depth: u32) -> i64 {
        let model = self.model;
        let overhead = model.apis[api as usize]
            .overhead
            .iter()
            .find(|o| o.callee == callee)
            .map_or(0.0, |o| o.overhead.for_caller(caller).sample(self.rng.f64())) as i64;
        self.client_call(api, callee, from, t, overhead, depth)
    }

    fn client_call(&mut self, api: ApiId, callee: ApiId, from: SpanId, t: i64, overhead: i64, depth: u32) -> i64 {
        if self.local.contains(&(api, callee)) {
            // A local call: the callee's span hangs directly under the caller.
            let index = self.spans.len();
            let end = self.execute(callee, Some(api), from, t, depth + 1) + overhead;
            self.spans[index].kind = SpanKind::Internal;
            return end - t;
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
        let end = self.execute(callee, Some(api), client, t + before, depth + 1) + (overhead - before);
        self.spans[index].duration_ns = end - t;
        end - t
    }

    fn naive(&mut self, api: ApiId, id: SpanId, start: i64, depth: u32) -> i64 {
        let model = self.model;
        let Some(naive) = &model.apis[api as usize].naive else {
            return start + model.apis[api as usize].latency.sample(self.rng.f64()) as i64;
        };
        let mut t = start;
        for call in &naive.calls {
            let weights: Vec<f64> = call.per_execution.iter().map(|&(_, k)| k as f64).collect();
            let n = call.per_execution[self.rng.pick(&weights)].0;
            for _ in 0..n {
                let overhead = call.overhead.sample(self.rng.f64()) as i64;
                t += self.client_call(api, call.callee, id, t, overhead, depth);
            }
        }
        t + naive.work.sample(self.rng.f64()) as i64
    }
}

/// Draws a transition out of `state`, from `caller`'s own counts when it has any.
fn choose<'s>(state: &'s State, caller: Caller, rng: &mut Rng) -> Option<&'s Transition> {
    if state.next.is_empty() {
        return None;
    }
    let own: Vec<f64> = state
        .next
        .iter()
        .map(|t| t.by_caller.iter().find(|c| c.caller == caller).map_or(0.0, |c| c.count as f64))
        .collect();
    let weights = if own.iter().sum::<f64>() > 0.0 { own } else { state.next.iter().map(|t| t.p).collect() };
    Some(&state.next[rng.pick(&weights)])
}
