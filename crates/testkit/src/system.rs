//! Ground-truth systems: a tiny description language for microservice
//! behaviour, and a generator that runs it to produce traces.
//!
//! This is written independently of Palette's model code on purpose: tests
//! generate traces from a known truth and check that the learner recovers it.

use std::collections::BTreeMap;

use palette_trace::span::{Interner, Span, SpanId, SpanKind, TraceId, flags};

use crate::rng::Rng;

/// A latency distribution, in milliseconds.
#[derive(Clone, Debug)]
pub enum Dist {
    Fixed(f64),
    Exp {
        mean: f64,
    },
    LogNormal {
        median: f64,
        sigma: f64,
    },
    /// Uniform in [lo, hi].
    Uniform(f64, f64),
}

impl Dist {
    pub fn sample(&self, rng: &mut Rng) -> f64 {
        match *self {
            Dist::Fixed(v) => v,
            Dist::Exp { mean } => rng.exp(mean),
            Dist::LogNormal { median, sigma } => rng.lognormal(median, sigma),
            Dist::Uniform(lo, hi) => lo + (hi - lo) * rng.f64(),
        }
        .max(0.0)
    }
    pub fn median(&self) -> f64 {
        match *self {
            Dist::Fixed(v) => v,
            Dist::Exp { mean } => mean * std::f64::consts::LN_2,
            Dist::LogNormal { median, .. } => median,
            Dist::Uniform(lo, hi) => (lo + hi) / 2.0,
        }
    }
}

/// What an API does, step by step.
#[derive(Clone, Debug)]
pub enum Step {
    /// Local work.
    Work(Dist),
    /// Local work whose size depends on the calling API ("service/op");
    /// `default` for callers not listed (and for root executions).
    WorkByCaller { by: Vec<(String, Dist)>, default: Dist },
    /// A call to another API ("service/op"), waited for.
    Call(String),
    /// A call whose result the caller does not wait for.
    FireAndForget(String),
    /// Calls made concurrently; the step ends when all have returned.
    Parallel(Vec<String>),
    /// Steps one after another.
    Seq(Vec<Step>),
    /// Exactly one branch, with the given probabilities (summing to 1).
    Choice(Vec<(f64, Step)>),
    /// A step taken only when the API was called by this caller.
    IfCaller { caller: String, then: Box<Step> },
    /// The body repeated a uniform number of times in [min, max].
    Repeat { min: u32, max: u32, body: Box<Step> },
    /// A call, then `then` only if the callee made no calls of its own (a
    /// lookup that came back empty, handled by an error path): a choice
    /// that depends on what a call did, not on who called.
    CallThenIfEmpty { callee: String, then: Box<Step> },
    /// With probability `p` the execution fails here and stops: the rest
    /// of its body is not run (its span records an error).
    Fail(f64),
    /// A call; when the callee failed, the caller fails with it (and
    /// stops) with probability `propagate`, else carries on.
    CallOrFail { callee: String, propagate: f64 },
}

impl Step {
    /// Every API ("service/op") this step can call, in order, with repeats.
    pub fn callees(&self) -> Vec<&str> {
        fn walk<'a>(s: &'a Step, out: &mut Vec<&'a str>) {
            match s {
                Step::Call(a) | Step::FireAndForget(a) => out.push(a),
                Step::Parallel(v) => out.extend(v.iter().map(String::as_str)),
                Step::Seq(v) => v.iter().for_each(|s| walk(s, out)),
                Step::Choice(v) => v.iter().for_each(|(_, s)| walk(s, out)),
                Step::IfCaller { then, .. } => walk(then, out),
                Step::Repeat { body, .. } => walk(body, out),
                Step::CallThenIfEmpty { callee, then } => {
                    out.push(callee);
                    walk(then, out);
                }
                Step::CallOrFail { callee, .. } => out.push(callee),
                Step::Work(_) | Step::WorkByCaller { .. } | Step::Fail(_) => {}
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }
}

/// One API of a ground-truth system.
#[derive(Clone, Debug)]
pub struct ApiSpec {
    pub service: String,
    pub operation: String,
    pub body: Step,
}

/// A ground-truth system: its APIs and the mix of requests that enter it.
#[derive(Clone, Debug)]
pub struct SystemSpec {
    pub name: String,
    /// Keyed by "service/op".
    pub apis: BTreeMap<String, ApiSpec>,
    /// Root APIs and their share of requests.
    pub roots: Vec<(String, f64)>,
    /// Network and client-library time added around each call, milliseconds.
    pub call_overhead: Dist,
    /// Whether callers record CLIENT spans (as OpenTelemetry does).
    pub client_spans: bool,
    /// Requests per second entering the system.
    pub rate_per_s: f64,
}

impl SystemSpec {
    pub fn new(name: &str) -> SystemSpec {
        SystemSpec {
            name: name.into(),
            apis: BTreeMap::new(),
            roots: Vec::new(),
            call_overhead: Dist::Uniform(0.1, 0.3),
            client_spans: true,
            rate_per_s: 50.0,
        }
    }
    /// Adds an API `service/op`.
    pub fn api(&mut self, key: &str, body: Step) -> &mut Self {
        let (service, operation) = key.split_once('/').expect("API keys are service/op");
        self.apis.insert(key.into(), ApiSpec { service: service.into(), operation: operation.into(), body });
        self
    }
    pub fn root(&mut self, key: &str, share: f64) -> &mut Self {
        self.roots.push((key.into(), share));
        self
    }
    /// Services of the system, sorted.
    pub fn services(&self) -> Vec<String> {
        let mut s: Vec<String> = self.apis.values().map(|a| a.service.clone()).collect();
        s.sort();
        s.dedup();
        s
    }
    /// Checks every called API exists.
    pub fn validate(&self) -> Result<(), String> {
        for (key, api) in &self.apis {
            let out = api.body.callees();
            if let Some(missing) = out.iter().find(|c| !self.apis.contains_key(**c)) {
                return Err(format!("{key} calls unknown API {missing}"));
            }
        }
        for (r, _) in &self.roots {
            if !self.apis.contains_key(r) {
                return Err(format!("unknown root API {r}"));
            }
        }
        Ok(())
    }
}

/// Generated traces: canonical spans per trace, and the names they use.
pub struct Traces {
    pub names: Interner,
    pub traces: Vec<Vec<Span>>,
}

impl Traces {
    pub fn span_count(&self) -> usize {
        self.traces.iter().map(Vec::len).sum()
    }
}

const MS: f64 = 1e6;

struct Generator<'a> {
    spec: &'a SystemSpec,
    rng: Rng,
    names: Interner,
    trace_id: TraceId,
    spans: Vec<Span>,
    /// The execution being run has failed: its remaining steps are skipped.
    failed: bool,
    /// The last call's callee failed.
    callee_failed: bool,
}

impl Generator<'_> {
    fn new_span_id(&mut self) -> SpanId {
        SpanId(self.rng.next_u64().max(1))
    }

    /// Runs API `key` called by `caller` starting at `start_ns`; returns its
    /// end time. Pushes its SERVER span (and its calls' spans).
    fn execute(&mut self, key: &str, caller: Option<&str>, parent: SpanId, start_ns: i64) -> i64 {
        let api = &self.spec.apis[key];
        let id = self.new_span_id();
        let index = self.spans.len();
        let service = self.names.intern(&api.service);
        let operation = self.names.intern(&api.operation);
        self.spans.push(Span {
            trace_id: self.trace_id,
            span_id: id,
            parent_id: parent,
            service,
            operation,
            kind: SpanKind::Server,
            start_ns,
            ..Span::default()
        });
        let body = api.body.clone();
        let outer = std::mem::replace(&mut self.failed, false);
        let end = self.run(&body, key, caller, id, start_ns);
        self.spans[index].duration_ns = end - start_ns;
        if self.failed {
            self.spans[index].flags |= flags::ERROR;
        }
        self.callee_failed = std::mem::replace(&mut self.failed, outer);
        end
    }

    fn run(&mut self, step: &Step, me: &str, caller: Option<&str>, id: SpanId, t: i64) -> i64 {
        if self.failed {
            return t;
        }
        match step {
            Step::Fail(p) => {
                self.failed = self.rng.f64() < *p;
                t
            }
            Step::CallOrFail { callee, propagate } => {
                let end = self.call(callee, me, id, t, false);
                if self.callee_failed {
                    self.failed = self.rng.f64() < *propagate;
                }
                end
            }
            Step::Work(d) => t + (d.sample(&mut self.rng) * MS) as i64,
            Step::WorkByCaller { by, default } => {
                let d = caller.and_then(|c| by.iter().find(|(k, _)| k == c)).map_or(default, |(_, d)| d).clone();
                t + (d.sample(&mut self.rng) * MS) as i64
            }
            Step::Call(callee) => self.call(callee, me, id, t, false),
            Step::FireAndForget(callee) => {
                self.call(callee, me, id, t, true);
                // The caller only pays for sending the request.
                t + 20_000
            }
            Step::Parallel(callees) => {
                let mut end = t;
                for c in callees {
                    end = end.max(self.call(c, me, id, t, false));
                }
                end
            }
            Step::Seq(steps) => steps.iter().fold(t, |t, s| self.run(s, me, caller, id, t)),
            Step::Choice(branches) => {
                let weights: Vec<f64> = branches.iter().map(|(p, _)| *p).collect();
                let k = self.rng.pick(&weights);
                self.run(&branches[k].1, me, caller, id, t)
            }
            Step::IfCaller { caller: want, then } => {
                if caller == Some(want.as_str()) {
                    self.run(then, me, caller, id, t)
                } else {
                    t
                }
            }
            Step::Repeat { min, max, body } => {
                let n = self.rng.range(*min as u64, *max as u64);
                (0..n).fold(t, |t, _| self.run(body, me, caller, id, t))
            }
            Step::CallThenIfEmpty { callee, then } => {
                let before = self.spans.len();
                let t = self.call(callee, me, id, t, false);
                let own_spans = if self.spec.client_spans { 2 } else { 1 };
                if self.spans.len() - before == own_spans { self.run(then, me, caller, id, t) } else { t }
            }
        }
    }

    /// A call from `me` (span `from`) to `callee` at `t`: a CLIENT span
    /// around the callee's SERVER span, with overhead split before and after.
    fn call(&mut self, callee: &str, me: &str, from: SpanId, t: i64, detached: bool) -> i64 {
        let overhead = (self.spec.call_overhead.sample(&mut self.rng) * MS) as i64;
        let before = overhead / 2;
        let detach_flag = if detached { flags::FOLLOWS_FROM } else { 0 };
        if !self.spec.client_spans {
            let index = self.spans.len();
            let end = self.execute(callee, Some(me), from, t + before);
            self.spans[index].flags |= detach_flag;
            return end + (overhead - before);
        }
        let client_id = self.new_span_id();
        let index = self.spans.len();
        let caller_service = self.names.intern(&self.spec.apis[me].service);
        let op = self.names.intern(&self.spec.apis[callee].operation);
        self.spans.push(Span {
            trace_id: self.trace_id,
            span_id: client_id,
            parent_id: from,
            service: caller_service,
            operation: op,
            kind: SpanKind::Client,
            flags: detach_flag,
            start_ns: t,
            ..Span::default()
        });
        let server_end = self.execute(callee, Some(me), client_id, t + before);
        let end = server_end + (overhead - before);
        self.spans[index].duration_ns = end - t;
        if self.callee_failed {
            self.spans[index].flags |= flags::ERROR;
        }
        end
    }
}

/// Runs `spec` for `n` requests (Poisson arrivals at its rate), deterministically for `seed`.
pub fn generate(spec: &SystemSpec, n: usize, seed: u64) -> Traces {
    spec.validate().expect("valid ground-truth system");
    // Mixing in the system's name keeps ids distinct between systems
    // generated with the same seed.
    let seed = seed ^ palette_trace::span::hash64(spec.name.as_bytes());
    let mut g = Generator {
        spec,
        rng: Rng::new(seed),
        names: Interner::default(),
        trace_id: TraceId::default(),
        spans: Vec::new(),
        failed: false,
        callee_failed: false,
    };
    let weights: Vec<f64> = spec.roots.iter().map(|(_, w)| *w).collect();
    // Start at a fixed, realistic epoch so timestamps look like real ones.
    let mut t: i64 = 1_700_000_000_000_000_000;
    let mut traces = Vec::with_capacity(n);
    for _ in 0..n {
        t += (g.rng.exp(1.0 / spec.rate_per_s) * 1e9) as i64;
        g.trace_id = TraceId::new(((g.rng.next_u64() as u128) << 64) | g.rng.next_u64() as u128);
        let root = spec.roots[g.rng.pick(&weights)].0.clone();
        g.execute(&root, None, SpanId(0), t);
        traces.push(std::mem::take(&mut g.spans));
    }
    Traces { names: g.names, traces }
}
