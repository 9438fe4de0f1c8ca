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
        // The execution's shared share of its calls' overheads (Gaussian copula).
        let rho = model.apis[api as usize].overhead_correlation;
        let shared = (rho > 0.0).then(|| Copula { shared: rho.sqrt() * self.rng.normal(), own: (1.0 - rho).sqrt() });
        // Visits left in the current counted loop.
        let mut runs_left = 0u32;
        for _ in 0..MAX_STAGES_PER_EXECUTION {
            let here = &states[state];
            let tr = if !here.repeats.is_empty() && runs_left > 0 {
                here.next.iter().find(|t| t.to == Some(state as u32))
            } else {
                choose(here, state, caller, &mut self.rng)
            };
            let Some(tr) = tr else { break };
            t += tr.work.for_caller(caller).sample(self.rng.f64()) as i64;
            let Some(next) = tr.to else { return t };
            if next as usize == state {
                runs_left = runs_left.saturating_sub(1);
            } else {
                state = next as usize;
                runs_left = draw_runs(&states[state].repeats, &mut self.rng).saturating_sub(1);
            }
            let s = &states[state];
            let mut slowest = 0i64;
            for &callee in &s.calls {
                let latency = self.call(api, caller, callee, id, t, depth, shared);
                slowest = slowest.max(latency);
            }
            // The work around a stage was measured as if the caller waited
            // (λ ≥ 0.5) or not; the stage is executed the same way, so
            // back-to-back calls never overlap and no time is counted twice.
            if s.lambda >= 0.5 {
                t += slowest;
            }
        }
        t
    }

    /// A call from `api` to `callee` at `t`: CLIENT span around the callee's
    /// execution. Returns the caller-observed latency.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        api: ApiId,
        caller: Caller,
        callee: ApiId,
        from: SpanId,
        t: i64,
        depth: u32,
        copula: Option<Copula>,
    ) -> i64 {
        let model = self.model;
        let u = match copula {
            Some(c) => normal_cdf(c.shared + c.own * self.rng.normal()).clamp(0.0, 1.0 - 1e-12),
            None => self.rng.f64(),
        };
        let overhead = model.apis[api as usize]
            .overhead
            .iter()
            .find(|o| o.callee == callee)
            .map_or(0.0, |o| o.overhead.for_caller(caller).sample(u)) as i64;
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

/// The part of an overhead's normal score that one execution's calls share,
/// and the weight of each call's own part.
#[derive(Clone, Copy)]
struct Copula {
    shared: f64,
    own: f64,
}

/// The standard normal CDF (Abramowitz–Stegun 7.1.26; error below 1e-7).
fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let erfc = poly * (-z * z).exp();
    if x >= 0.0 { 1.0 - 0.5 * erfc } else { 0.5 * erfc }
}

/// How many consecutive visits a counted loop makes (1 for ordinary states).
fn draw_runs(repeats: &[(u32, u64)], rng: &mut Rng) -> u32 {
    if repeats.is_empty() {
        return 1;
    }
    let total: u64 = repeats.iter().map(|r| r.1).sum();
    let mut x = (rng.f64() * total as f64) as u64;
    for &(d, c) in repeats {
        if x < c {
            return d.max(1);
        }
        x -= c;
    }
    repeats.last().map_or(1, |r| r.0.max(1))
}

/// Draws a transition out of state `index`, from `caller`'s own counts when
/// it has any (see [`crate::model::Transition::by_caller`]). A counted loop
/// that has done its runs leaves by one of its other transitions.
fn choose<'s>(state: &'s State, index: usize, caller: Caller, rng: &mut Rng) -> Option<&'s Transition> {
    let leaving_loop = !state.repeats.is_empty();
    let usable = |t: &Transition| !(leaving_loop && t.to == Some(index as u32));
    let own = |t: &Transition| {
        if !usable(t) {
            return 0.0;
        }
        t.by_caller.iter().find(|c| c.caller == caller).map_or(0.0, |c| c.count as f64)
    };
    let marginal = |t: &Transition| if usable(t) { t.p } else { 0.0 };
    let own_total: f64 = state.next.iter().map(own).sum();
    let (weight, total): (&dyn Fn(&Transition) -> f64, f64) =
        if own_total > 0.0 { (&own, own_total) } else { (&marginal, state.next.iter().map(marginal).sum()) };
    if total <= 0.0 {
        return None;
    }
    let mut x = rng.f64() * total;
    for t in &state.next {
        let w = weight(t);
        if x < w {
            return Some(t);
        }
        x -= w;
    }
    state.next.iter().rfind(|t| usable(t))
}
