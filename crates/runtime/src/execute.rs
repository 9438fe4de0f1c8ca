//! One request's execution: the model's walk made real.
//!
//! [`palette_model::Execution`] says what to do; this module does it. Per
//! stage: the sampled local work, then the stage's calls, concurrently —
//! over the transport, or in-process for calls the traces recorded inside
//! one service — waited for or fired and forgotten as the model says. The
//! causal equation is evaluated as the execution goes: its target is the
//! sum of the sampled work and the measured latency of every waited stage
//! (its slowest call), and each piece of work is sized to bring the elapsed
//! time up to the target so far (live correction: a timer that overshot or a
//! fast stage is made up at the next piece, and at the end). Each call
//! reproduces its sampled overhead: the caller-observed latency minus the
//! callee's own, topped up where the real network was faster. Where the
//! real transport was slower than the sampled overhead (a gRPC hop on
//! loopback costs more than many traced calls' overhead), the client span
//! keeps the real latency but the caller's causal target counts the call
//! at its modelled latency — the callee's own plus the sampled overhead —
//! so the caller's later work absorbs the transport's excess instead of
//! adding it to every latency above (the callee's own time, slowed by load
//! or not, is always counted in full). Since most APIs end with a call,
//! with no later work to absorb it, the excess is also anticipated: a
//! waited stage's work ends early by how much longer than the sampled
//! overheads the calls will likely take (learned per peer, [`HopCosts`]),
//! and the final top-up makes up for a guess that was too high.
//! (A sleep's own lateness — the woken task waiting for a thread — is
//! taken care of by the worker's timer, which fires early by as much as
//! makes sleeps end on time on average.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use palette_model::exec::{Context, Execution, Step};
use palette_model::model::add_outcome;
use palette_model::simulate::{MODELLED_FAILURE, passed_on};
use palette_model::{ApiId, Sketch};
use palette_trace::rng::Rng;
use rustc_hash::FxHashSet;

use crate::config::{RpcMode, SystemConfig, WorkMode};
use crate::context::{Baggage, TraceParent};
use crate::export::{AttrValue, Exporter, Kind, SpanRecord};
use crate::transport::{CallError, CallHeaders, Reply, Transport, ns_since};
use crate::work::Worker;

/// A boxed future that owns what it uses (spawnable).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Wall-clock time of a monotonic instant: spans need Unix times, durations
/// need a clock that does not jump.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    unix_ns: u64,
    at: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        let unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Clock { unix_ns, at: Instant::now() }
    }

    pub fn unix_ns(&self, t: Instant) -> u64 {
        self.unix_ns + u64::try_from(t.saturating_duration_since(self.at).as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// What a process shares between its services and requests.
pub struct Shared {
    pub config: SystemConfig,
    pub transport: Arc<dyn Transport>,
    pub worker: Worker,
    pub exporter: Exporter,
    pub clock: Clock,
    /// Per API: the index of the service that serves it (its peer number).
    pub service_of: Vec<usize>,
    /// Per API: how its local work is produced.
    pub modes: Vec<WorkMode>,
    /// Per API: its median latency in the traces. A stage's calls start
    /// slowest first, as the traces show them: calls started a few µs apart
    /// in the other order could end before the next one starts and read
    /// as sequential.
    pub median_ns: Vec<f64>,
    /// Per service: its name, shared by all its spans.
    pub service_names: Vec<Arc<str>>,
    /// Per service: the system seed mixed with its name; a request's random
    /// stream is this mixed with its span id.
    pub service_seeds: Vec<u64>,
    /// (caller, callee) pairs the traces recorded inside one service: made
    /// in-process, with an INTERNAL span, as the original did.
    pub local: FxHashSet<(ApiId, ApiId)>,
    /// Payload bytes; bodies are slices of it (no copy per request).
    pub zeros: Bytes,
    /// Requests executing and detached calls running, for the drain at shutdown.
    pub active: AtomicUsize,
    /// Shutting down: new root requests are refused, calls still served.
    pub draining: AtomicBool,
    pub call_timeout: Duration,
    /// What a call to each service really costs on top of the callee's own
    /// time, learned: a waited stage's work ends early by the part of it
    /// the sampled overhead will not cover (see [`HopCosts`]).
    pub hop_costs: HopCosts,
    /// Generated code for some APIs (a `palette generate --code rust`
    /// binary); the others, and every API of `palette serve`, walk the model.
    pub programs: crate::program::Programs,
    /// Circuit breakers of this process's calls, per (caller, callee) API,
    /// for the model's `breakers` rules.
    pub breakers: std::sync::Mutex<rustc_hash::FxHashMap<(ApiId, ApiId), Breaker>>,
}

/// One caller's circuit to one callee.
#[derive(Default, Debug)]
pub struct Breaker {
    /// Failed calls in a row.
    failures: u32,
    /// Calls fail at once (503, nothing sent) until then.
    open_until: Option<Instant>,
}

/// Per peer service: a running estimate of the 90th percentile of a call's
/// real transport time (the caller-observed latency less the callee's
/// own). A call whose sampled overhead is below it will most likely take
/// longer than the model says; the stage's work before it ends early by
/// the difference, so the excess is absorbed before the call rather than
/// added to the caller's latency when nothing follows the call (most APIs
/// end with a call). Ending early costs nothing when the guess is too
/// high: the caller's next work, or its final top-up, makes up the
/// difference to the causal target.
pub struct HopCosts {
    p90_ns: Vec<AtomicU64>,
}

/// The most transport time that is anticipated: more is load, which the
/// caller should see.
const MAX_ANTICIPATED_HOP_NS: u64 = 2_000_000;

impl HopCosts {
    pub fn new(services: usize) -> HopCosts {
        HopCosts { p90_ns: (0..services).map(|_| AtomicU64::new(0)).collect() }
    }

    /// The transport time a call to `peer` is expected to take at most
    /// (nine calls in ten).
    pub fn expected_ns(&self, peer: usize) -> u64 {
        self.p90_ns.get(peer).map_or(0, |a| a.load(Ordering::Relaxed))
    }

    /// Folds one measured transport time into the estimate: up by nine
    /// steps when above it, down by one when below, so it settles where one
    /// measurement in ten is above (a stochastic quantile estimate; races
    /// between requests only blur it).
    pub fn record(&self, peer: usize, ns: u64) {
        let Some(a) = self.p90_ns.get(peer) else { return };
        let est = a.load(Ordering::Relaxed);
        if est == 0 {
            // The first measurement is the best guess there is: starting
            // from it, not from nothing, the estimate settles in a few calls.
            a.store(ns.clamp(1, MAX_ANTICIPATED_HOP_NS), Ordering::Relaxed);
            return;
        }
        let step = (est / 64).max(500);
        let next = if ns > est { est + 9 * step } else { est.saturating_sub(step) };
        a.store(next.min(MAX_ANTICIPATED_HOP_NS), Ordering::Relaxed);
    }
}

/// One trace's context, shared by an execution's calls.
#[derive(Debug)]
pub struct TraceCtx {
    pub trace_id: [u8; 16],
    pub sampled: bool,
    /// Passed on unchanged (already bounded).
    pub tracestate: Option<String>,
    /// The root API of the request.
    pub root: ApiId,
    /// Baggage members of other tools, `,`-led, bounded.
    pub tail: String,
}

/// Why an execution failed, as its caller is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// 504: a call timed out; 502: a call failed.
    pub status: u16,
    pub message: String,
}

/// How an execution ended.
#[derive(Debug)]
pub struct Outcome {
    pub failure: Option<Failure>,
    /// Its duration (the span's), nanoseconds.
    pub elapsed_ns: u64,
    /// The response payload size drawn from the API's model.
    pub response_bytes: usize,
    /// Calls the execution made: its outcome, returned to the caller.
    pub calls_made: u32,
}

/// Where an execution starts: its API, context, place in the trace.
pub struct Start {
    pub api: ApiId,
    pub ctx: Context,
    pub trace: Arc<TraceCtx>,
    /// Calls from the root (0: the root).
    pub depth: u32,
    pub span_id: [u8; 8],
    /// The calling span; all zero for a root.
    pub parent_span: [u8; 8],
    /// Server for a request that came over the transport, internal for an in-process call.
    pub kind: Kind,
    /// Request payload received (for the span's size attribute).
    pub request_bytes: usize,
    /// When the request arrived.
    pub t0: Instant,
    /// It arrived as a gRPC call (its span gets the `rpc.*` attributes).
    pub grpc: bool,
    /// The instance executing it (`service.instance.id`), for a replicated service.
    pub instance: Option<Arc<str>>,
}

/// One call of a stage, drawn before any is made so the draws do not
/// depend on the order calls finish in.
struct Plan {
    callee: ApiId,
    overhead_ns: u64,
    request_bytes: usize,
}

/// The caller's side of a call.
#[derive(Clone)]
struct From {
    api: ApiId,
    /// The caller's instance: its CLIENT spans and in-process calls are its.
    instance: Option<Arc<str>>,
    span_id: [u8; 8],
    depth: u32,
    detached: bool,
}

/// One try of a remote call, as its CLIENT span and the context it passes on see it.
struct Try<'a> {
    from: &'a From,
    trace: &'a TraceCtx,
    callee: ApiId,
    client_span: [u8; 8],
    /// 1 for the first try.
    attempt: u32,
    t0: Instant,
}

/// How a try ended for the caller, before its latency is taken.
struct Settled {
    failure: Option<Failure>,
    /// Calls the callee made (0 when unknown or the try failed).
    calls_made: u32,
    /// See [`CallResult::transport_excess_ns`].
    transport_excess_ns: u64,
}

struct CallResult {
    observed_ns: u64,
    /// How much longer the real transport took than the sampled overhead:
    /// not counted in the caller's target (see the module doc).
    transport_excess_ns: u64,
    failure: Option<Failure>,
    /// Calls the callee made (0 when unknown).
    calls_made: u32,
}

/// Drives futures concurrently on the current task and collects their
/// outputs in order (no spawn: dropping the execution cancels its calls).
async fn join_all<T>(futs: Vec<BoxFuture<T>>) -> Vec<T> {
    let mut slots: Vec<(Option<BoxFuture<T>>, Option<T>)> = futs.into_iter().map(|f| (Some(f), None)).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (fut, out) in &mut slots {
            if let Some(f) = fut {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *out = Some(v);
                        *fut = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    slots.into_iter().filter_map(|(_, out)| out).collect()
}

/// OpenTelemetry's RPC attributes of a gRPC span (client or server).
pub fn grpc_attributes() -> [(&'static str, AttrValue); 3] {
    [
        ("rpc.system", AttrValue::Str("grpc".into())),
        ("rpc.service", AttrValue::Str(crate::grpc::SERVICE.into())),
        ("rpc.method", AttrValue::Str(crate::grpc::METHOD.into())),
    ]
}

fn draw_bytes(sketch: Option<&Sketch>, cap: usize, rng: &mut Rng) -> usize {
    sketch.map_or(0, |s| (s.sample(rng.f64()).max(0.0) as usize).min(cap))
}

impl Shared {
    /// The random stream of one execution: (system seed, service, span id).
    pub fn rng_for(&self, service: usize, span_id: [u8; 8]) -> Rng {
        Rng::new(self.service_seeds[service] ^ u64::from_be_bytes(span_id))
    }

    /// Works until `target_ns` have passed since `t0`.
    async fn work_until(&self, mode: WorkMode, t0: Instant, target_ns: u64) {
        let elapsed = ns_since(t0);
        if target_ns > elapsed {
            self.worker.work(mode, target_ns - elapsed).await;
        }
    }

    /// Runs one execution to its end and records its span: the API's
    /// generated code when the process has it (see [`crate::program`]),
    /// else the model's walk.
    pub fn execute(self: Arc<Self>, start: Start, rng: Rng) -> BoxFuture<Outcome> {
        Box::pin(async move {
            let sh = self;
            let program = if start.depth >= sh.config.limits.max_depth { None } else { sh.programs.get(start.api) };
            let mut cx = Cx::new(&sh, start, rng);
            let ended = match program {
                Some(body) => body(&mut cx).await,
                None => cx.interpret().await,
            };
            if ended.is_ok() {
                cx.work_until_target().await;
                cx.decide_failure();
            }
            cx.end()
        })
    }

    /// How much longer than their sampled overheads a waited stage's calls
    /// will likely take over the transport: the most of any of its remote
    /// calls (in-process calls have no transport).
    fn anticipated_excess_ns(&self, caller: ApiId, plans: &[Plan]) -> u64 {
        plans
            .iter()
            .filter(|p| !self.local.contains(&(caller, p.callee)))
            .map(|p| self.hop_costs.expected_ns(self.service_of[p.callee as usize]).saturating_sub(p.overhead_ns))
            .max()
            .unwrap_or(0)
    }

    /// One call of a stage: in-process for a local edge, else over the
    /// transport with a CLIENT span around it.
    fn call(self: Arc<Self>, from: From, ctx: Context, plan: Plan, trace: Arc<TraceCtx>) -> BoxFuture<CallResult> {
        Box::pin(async move {
            let t0 = Instant::now();
            let callee = plan.callee;
            let peer = self.service_of[callee as usize];
            if self.local.contains(&(from.api, callee)) {
                let span_id = crate::context::Ids::span_id();
                let rng = self.rng_for(peer, span_id);
                let start = Start {
                    api: callee,
                    ctx,
                    trace,
                    depth: from.depth + 1,
                    span_id,
                    parent_span: from.span_id,
                    kind: Kind::Internal,
                    request_bytes: 0,
                    t0,
                    grpc: false,
                    instance: from.instance.clone(),
                };
                let out = self.clone().execute(start, rng).await;
                // In process the real overhead is nil: all of it is added.
                if plan.overhead_ns > 0 {
                    self.worker.work(WorkMode::Sleep, plan.overhead_ns).await;
                }
                return CallResult {
                    observed_ns: ns_since(t0),
                    transport_excess_ns: 0,
                    failure: out.failure,
                    calls_made: out.calls_made,
                };
            }
            let policy = self.policy(from.api, callee);
            let attempts = policy.retry.map_or(1, |r| r.attempts.max(1));
            let mut attempt = 1;
            loop {
                let result = self.clone().attempt(&from, &plan, &trace, &policy, attempt).await;
                let retry = policy.retry.filter(|r| result.failure.as_ref().is_some_and(|f| r.retries(f.status)));
                match retry {
                    Some(r) if attempt < attempts => {
                        attempt += 1;
                        let backoff_ns = (r.backoff_before_ms(attempt) * 1e6) as u64;
                        if backoff_ns > 0 {
                            self.worker.work(WorkMode::Sleep, backoff_ns).await;
                        }
                    }
                    // The caller waited for every try and every backoff: all
                    // of it is latency but the last try's transport excess.
                    _ => return CallResult { observed_ns: ns_since(t0).max(result.observed_ns), ..result },
                }
            }
        })
    }

    /// The resilience rules of calls from `caller` to `callee` (by service).
    fn policy(&self, caller: ApiId, callee: ApiId) -> Policy<'_> {
        let model = &self.config.model;
        let rules = &model.deploy.resilience;
        if rules.is_empty() {
            return Policy { timeout: self.call_timeout, retry: None, breaker: None };
        }
        let (from, to) = (&model.apis[caller as usize].service, &model.apis[callee as usize].service);
        let timeout = rules
            .timeout_ms(from, to)
            .map_or(self.call_timeout, |ms| Duration::from_secs_f64(ms / 1e3).min(self.call_timeout));
        Policy { timeout, retry: rules.retry(to), breaker: rules.breaker(to) }
    }

    /// One try of a remote call: a CLIENT span around the request (with
    /// its try number when it is a retry), or an immediate 503 when the
    /// circuit to the callee is open.
    fn attempt(
        self: Arc<Self>,
        from: &From,
        plan: &Plan,
        trace: &Arc<TraceCtx>,
        policy: &Policy<'_>,
        attempt: u32,
    ) -> impl Future<Output = CallResult> + Send {
        let (from, trace, callee) = (from.clone(), trace.clone(), plan.callee);
        let (request_bytes, overhead_ns) = (plan.request_bytes, plan.overhead_ns);
        let (timeout, breaker) = (policy.timeout, policy.breaker.cloned());
        async move {
            let plan = Plan { callee, overhead_ns, request_bytes };
            let t0 = Instant::now();
            let peer = self.service_of[callee as usize];
            let open = breaker.is_some() && self.circuit_open(from.api, callee, t0);
            let this_try =
                Try { from: &from, trace: &trace, callee, client_span: crate::context::Ids::span_id(), attempt, t0 };
            let headers = self.call_headers(&this_try);
            let operation = &self.config.model.apis[callee as usize].operation;
            let body = self.zeros.slice(..plan.request_bytes);
            let sent = if open {
                None
            } else {
                Some(tokio::time::timeout(timeout, self.transport.call(peer, operation, headers, body)).await)
            };
            let settled = self.settle(sent, &plan, t0, timeout).await;
            let observed_ns = ns_since(t0);
            let result = CallResult {
                observed_ns,
                transport_excess_ns: settled.transport_excess_ns.min(observed_ns),
                failure: settled.failure,
                calls_made: settled.calls_made,
            };
            if trace.sampled {
                self.record_client_span(&this_try, &result);
            }
            if let Some(rule) = &breaker {
                self.record_call(from.api, callee, result.failure.is_some(), rule);
            }
            result
        }
    }

    /// The context a try passes on: the trace with the try's CLIENT span as
    /// the callee's parent, and the caller and depth in the baggage.
    fn call_headers(&self, t: &Try<'_>) -> CallHeaders {
        let trace = t.trace;
        let tp = TraceParent { trace_id: trace.trace_id, parent_id: t.client_span, flags: u8::from(trace.sampled) };
        CallHeaders {
            traceparent: Some(tp.format()),
            tracestate: trace.tracestate.clone(),
            baggage: Some(Baggage::format(trace.root, t.from.api, t.from.depth + 1, &trace.tail)),
        }
    }

    /// What a try's answer means for its caller: the failure it is told
    /// (refused by an open circuit, timed out, failed, an error status), or
    /// the callee's outcome once the call is topped up to its sampled overhead.
    async fn settle(
        &self,
        sent: Option<Result<Result<Reply, CallError>, tokio::time::error::Elapsed>>,
        plan: &Plan,
        t0: Instant,
        timeout: Duration,
    ) -> Settled {
        let name = || self.config.model.api_name(plan.callee);
        let failed = |status: u16, message: String| Settled {
            failure: Some(Failure { status, message }),
            calls_made: 0,
            transport_excess_ns: 0,
        };
        let timed_out = || failed(504, format!("call to `{}` timed out after {} ms", name(), timeout.as_millis()));
        match sent {
            None => failed(503, format!("call to `{}` refused: its circuit is open", name())),
            Some(Err(_)) => timed_out(),
            Some(Ok(Err(e))) => failed(502, format!("call to `{}` failed: {e}", name())),
            Some(Ok(Ok(r))) if r.status != 200 => {
                let text = String::from_utf8_lossy(&r.body[..r.body.len().min(200)]);
                failed(r.status, format!("call to `{}` returned {}: {}", name(), r.status, text.trim()))
            }
            Some(Ok(Ok(r))) => match self.top_up_overhead(&r, plan, t0, timeout).await {
                Some(transport_excess_ns) => {
                    Settled { failure: None, calls_made: r.calls.unwrap_or(0), transport_excess_ns }
                }
                None => timed_out(),
            },
        }
    }

    /// Sleeps what the sampled overhead asks for beyond the call's real
    /// transport time (learning that time for [`HopCosts`]); returns how
    /// much longer than the model the call took, or `None` when the top-up
    /// would run past the timeout (it sleeps until then: the modelled
    /// overhead, a `delay` too, is part of the call as its caller sees it).
    async fn top_up_overhead(&self, reply: &Reply, plan: &Plan, t0: Instant, timeout: Duration) -> Option<u64> {
        let server_ns = reply.server_ns.unwrap_or(0);
        let actual = ns_since(t0).saturating_sub(server_ns);
        if reply.server_ns.is_some() {
            self.hop_costs.record(self.service_of[plan.callee as usize], actual);
        }
        let top_up = plan.overhead_ns.saturating_sub(actual);
        let left = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX).saturating_sub(ns_since(t0));
        if top_up > left {
            self.worker.work(WorkMode::Sleep, left).await;
            return None;
        }
        if top_up > 0 {
            self.worker.work(WorkMode::Sleep, top_up).await;
        }
        // Beyond the callee's own time and the sampled overhead, the call
        // took what the model does not say: the real transport's excess, or
        // the top-up sleep's lateness.
        Some(ns_since(t0).saturating_sub(server_ns.saturating_add(plan.overhead_ns)))
    }

    /// The CLIENT span of a sampled try: the callee's service, whether the
    /// call was detached, gRPC's attributes, the try's number when it is a
    /// retry, and the status a failed try ended with.
    fn record_client_span(&self, t: &Try<'_>, result: &CallResult) {
        let peer = self.service_of[t.callee as usize];
        let mut attributes = vec![("peer.service", AttrValue::Str(self.service_names[peer].to_string()))];
        if t.from.detached {
            attributes.push(("palette.detached", AttrValue::Str("true".into())));
        }
        if self.config.rpc == RpcMode::Grpc {
            attributes.extend(grpc_attributes());
        }
        if t.attempt > 1 {
            // OpenTelemetry's name for a retry's number (1: the first retry).
            attributes.push(("http.request.resend_count", AttrValue::Int(i64::from(t.attempt - 1))));
            attributes.push(("palette.attempt", AttrValue::Int(i64::from(t.attempt))));
        }
        if let Some(f) = &result.failure {
            attributes.push(("http.response.status_code", AttrValue::Int(i64::from(f.status))));
        }
        let start_unix_ns = self.clock.unix_ns(t.t0);
        self.exporter.record(SpanRecord {
            service: self.service_names[self.service_of[t.from.api as usize]].clone(),
            instance: t.from.instance.clone(),
            trace_id: t.trace.trace_id,
            span_id: t.client_span,
            parent_span_id: t.from.span_id,
            name: self.config.model.apis[t.callee as usize].operation.clone(),
            kind: Kind::Client,
            start_unix_ns,
            end_unix_ns: start_unix_ns + result.observed_ns,
            error: result.failure.as_ref().map(|f| f.message.clone()),
            attributes,
        });
    }

    /// Whether calls from `caller` to `callee` are refused at `now`.
    fn circuit_open(&self, caller: ApiId, callee: ApiId, now: Instant) -> bool {
        let breakers = self.breakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        breakers.get(&(caller, callee)).and_then(|b| b.open_until).is_some_and(|until| now < until)
    }

    /// Counts a call's result against its circuit: enough failures in a row
    /// open it; after the wait, one more failure opens it again.
    fn record_call(&self, caller: ApiId, callee: ApiId, failed: bool, rule: &palette_model::model::BreakerRule) {
        let mut breakers = self.breakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let b = breakers.entry((caller, callee)).or_default();
        if !failed {
            b.failures = 0;
            return;
        }
        b.failures += 1;
        let threshold = rule.failures.max(1);
        if b.failures >= threshold {
            b.open_until = Some(Instant::now() + Duration::from_secs_f64(rule.open_ms.max(0.0) / 1e3));
            b.failures = threshold - 1;
        }
    }
}

/// The resilience rules that apply to one caller's calls to one callee.
struct Policy<'m> {
    /// The call's timeout: the rule's, or the system's limit.
    timeout: Duration,
    retry: Option<&'m palette_model::model::RetryRule>,
    breaker: Option<&'m palette_model::model::BreakerRule>,
}

/// Why an execution stops before its end: a call failed (the failure is
/// the execution's, and its caller is told), or it ran past
/// `limits.max_stages`. Generated code passes it on with `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop;

/// One execution in progress: what generated code (and the model's walk)
/// drives. Work is not done when it is asked for but added to the
/// execution's causal target; it is spent just before the next calls (less
/// the transport time they will likely add) and at the end, so the
/// execution's latency is its work plus its waited calls, whatever the
/// timers and the network did.
pub struct Cx<'s> {
    sh: &'s Arc<Shared>,
    api: ApiId,
    exec: Execution<'s>,
    rng: Rng,
    start: Start,
    mode: WorkMode,
    /// The causal target so far: sampled work plus each waited stage's slowest call.
    target: u64,
    /// Work added since the last calls: the most that anticipating the
    /// next calls' transport time may take off.
    stage_work: u64,
    stages: u32,
    failure: Option<Failure>,
}

impl<'s> Cx<'s> {
    fn new(sh: &'s Arc<Shared>, start: Start, mut rng: Rng) -> Cx<'s> {
        let truncated = start.depth >= sh.config.limits.max_depth;
        let exec = Execution::new(&sh.config.model, start.api, start.ctx, truncated, &mut rng);
        let api = start.api;
        Cx {
            sh,
            api,
            exec,
            rng,
            mode: sh.modes[api as usize],
            start,
            target: 0,
            stage_work: 0,
            stages: 0,
            failure: None,
        }
    }

    /// The API being executed.
    pub fn api(&self) -> ApiId {
        self.api
    }

    /// The API that called this execution (`None` for a root request).
    pub fn caller(&self) -> Option<ApiId> {
        self.start.ctx.caller
    }

    /// Adds `ns` of local work to do before the next calls (or at the end).
    /// Replacing a `cx.work(…)` by real code is how an API gets a real
    /// implementation: the real code's time is then the work.
    pub fn work(&mut self, ns: i64) {
        self.target = self.target.saturating_add(ns.max(0) as u64);
        self.stage_work = self.stage_work.saturating_add(ns.max(0) as u64);
    }

    /// Leaves PFA state `state`: the index of the transition taken (in the
    /// model's order) and its sampled work, nanoseconds; `None` when the
    /// model has no way on (the execution ends). See
    /// [`palette_model::Execution::take_transition`].
    pub fn transition(&mut self, state: u32) -> Option<(usize, i64)> {
        self.exec.take_transition(state, &mut self.rng)
    }

    /// A leaf API's work: a draw of its observed latency, nanoseconds.
    pub fn leaf_work(&mut self) -> i64 {
        self.exec.leaf_work_ns(&mut self.rng)
    }

    /// Makes `calls` concurrently (an API listed twice is called twice),
    /// after the work so far, and waits for all of them. A failed call stops
    /// the execution.
    pub async fn calls(&mut self, calls: &[ApiId]) -> Result<(), Stop> {
        self.stage(calls, true).await
    }

    /// Starts `calls` after the work so far and goes on without waiting
    /// (the traces' fire-and-forget calls); their failures are their own.
    pub async fn calls_detached(&mut self, calls: &[ApiId]) -> Result<(), Stop> {
        self.stage(calls, false).await
    }

    async fn work_until_target(&mut self) {
        self.sh.work_until(self.mode, self.start.t0, self.target).await;
    }

    /// The model's walk, step by step: the interpreted service.
    async fn interpret(&mut self) -> Result<(), Stop> {
        loop {
            match self.exec.next_step(&mut self.rng) {
                Step::Finish { work_ns } => {
                    self.work(work_ns);
                    return Ok(());
                }
                Step::Stage { work_ns, calls, wait, .. } => {
                    self.work(work_ns);
                    self.stage(calls, wait).await?;
                }
            }
        }
    }

    async fn stage(&mut self, calls: &[ApiId], wait: bool) -> Result<(), Stop> {
        let sh = self.sh;
        let limits = &sh.config.limits;
        self.stages += 1;
        if self.stages > limits.max_stages || calls.is_empty() {
            self.stage_work = 0;
            self.work_until_target().await;
            return if self.stages > limits.max_stages { Err(Stop) } else { Ok(()) };
        }
        let model = &sh.config.model;
        let body_cap = sh.zeros.len();
        let child = self.exec.child_context();
        let mut plans: Vec<Plan> = calls
            .iter()
            .map(|&callee| Plan {
                callee,
                overhead_ns: self.exec.overhead_ns(callee, &mut self.rng).max(0) as u64,
                request_bytes: draw_bytes(model.apis[callee as usize].request_bytes.as_ref(), body_cap, &mut self.rng),
            })
            .collect();
        // The transport time the sampled overheads will likely not cover,
        // taken out of this stage's work (see [`HopCosts`]).
        let anticipated = if wait { sh.anticipated_excess_ns(self.api, &plans) } else { 0 };
        let stage_work = std::mem::take(&mut self.stage_work);
        sh.work_until(self.mode, self.start.t0, self.target - anticipated.min(stage_work)).await;
        if plans.len() > 1 {
            // Stable, and after every draw: the random stream is the same either way.
            plans.sort_by(|a, b| sh.median_ns[b.callee as usize].total_cmp(&sh.median_ns[a.callee as usize]));
        }
        let s = &self.start;
        let from =
            From { api: self.api, instance: s.instance.clone(), span_id: s.span_id, depth: s.depth, detached: !wait };
        if wait {
            let callees: Vec<ApiId> = plans.iter().map(|p| p.callee).collect();
            let futs =
                plans.into_iter().map(|p| sh.clone().call(from.clone(), child, p, s.trace.clone())).collect::<Vec<_>>();
            let results = if futs.len() == 1 {
                vec![futs.into_iter().next().expect("one call").await]
            } else {
                join_all(futs).await
            };
            self.target += results.iter().map(|r| r.observed_ns - r.transport_excess_ns).max().unwrap_or(0);
            // What the calls did (and whether one failed) is a causal parent of the next choice.
            self.exec
                .observe_outcome(results.iter().fold(0u32, |n, r| add_outcome(n, r.calls_made, r.failure.is_some())));
            for (callee, r) in callees.into_iter().zip(results) {
                let Some(f) = r.failure else { continue };
                if !self.exec.observe_failed_call(callee, &mut self.rng) {
                    self.failure = Some(Failure { status: passed_on(f.status), message: f.message });
                    return Err(Stop);
                }
            }
        } else {
            for p in plans {
                let call = sh.clone().call(from.clone(), child, p, s.trace.clone());
                let shared = sh.clone();
                shared.active.fetch_add(1, Ordering::AcqRel);
                tokio::spawn(async move {
                    call.await;
                    shared.active.fetch_sub(1, Ordering::AcqRel);
                });
            }
        }
        Ok(())
    }

    /// Fails the execution, now over, where the model says it fails: of
    /// itself, or with the calls that failed (see
    /// [`palette_model::Execution::fails`]).
    fn decide_failure(&mut self) {
        if self.failure.is_none() && self.exec.fails(&mut self.rng) {
            let name = self.sh.config.model.api_name(self.api);
            self.failure = Some(Failure { status: MODELLED_FAILURE, message: format!("`{name}` failed (modelled)") });
        }
    }

    /// Records the execution's span and says how it ended.
    fn end(mut self) -> Outcome {
        let sh = self.sh;
        let model = &sh.config.model;
        let api = self.api;
        let body_cap = sh.zeros.len();
        let response_bytes = draw_bytes(model.apis[api as usize].response_bytes.as_ref(), body_cap, &mut self.rng);
        let Start { ctx, trace, span_id, parent_span, kind, request_bytes, t0, grpc, instance, .. } = self.start;
        let failure = self.failure;
        let elapsed_ns = ns_since(t0);
        if trace.sampled {
            let a = &model.apis[api as usize];
            let mut attributes = vec![("palette.api", AttrValue::Int(i64::from(api)))];
            if let Some(c) = ctx.caller {
                attributes.push(("palette.caller", AttrValue::Int(i64::from(c))));
            }
            if kind == Kind::Server {
                let status = failure.as_ref().map_or(200, |f| f.status);
                attributes.push(("http.response.status_code", AttrValue::Int(i64::from(status))));
                if grpc {
                    attributes.extend(grpc_attributes());
                    attributes.push(("rpc.grpc.status_code", AttrValue::Int(crate::grpc::code_for(status) as i64)));
                }
            }
            if request_bytes > 0 {
                attributes.push(("http.request.body.size", AttrValue::Int(request_bytes as i64)));
            }
            if response_bytes > 0 && failure.is_none() {
                attributes.push(("http.response.body.size", AttrValue::Int(response_bytes as i64)));
            }
            let start_unix_ns = sh.clock.unix_ns(t0);
            sh.exporter.record(SpanRecord {
                service: sh.service_names[sh.service_of[api as usize]].clone(),
                instance,
                trace_id: trace.trace_id,
                span_id,
                parent_span_id: parent_span,
                name: a.operation.clone(),
                kind,
                start_unix_ns,
                end_unix_ns: start_unix_ns + elapsed_ns,
                error: failure.as_ref().map(|f| f.message.clone()),
                attributes,
            });
        }
        Outcome { failure, elapsed_ns, response_bytes, calls_made: self.exec.calls_made() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_costs_settle_at_the_ninetieth_percentile() {
        let hops = HopCosts::new(2);
        assert_eq!(hops.expected_ns(0), 0, "nothing is anticipated before a call is measured");
        let mut rng = Rng::new(7);
        // Transport times spread evenly over 100–300 µs: the 90th percentile is 280 µs.
        for _ in 0..5_000 {
            hops.record(0, rng.range(100_000, 300_000));
        }
        let p90 = hops.expected_ns(0);
        assert!((265_000..=295_000).contains(&p90), "estimated {p90} ns");
        assert_eq!(hops.expected_ns(1), 0, "each peer has its own estimate");
        assert_eq!(hops.expected_ns(9), 0, "an unknown peer anticipates nothing");
        hops.record(1, u64::MAX);
        assert_eq!(hops.expected_ns(1), MAX_ANTICIPATED_HOP_NS, "load is not anticipated beyond the bound");
    }

    #[tokio::test]
    async fn join_all_keeps_order_and_runs_concurrently() {
        let t = Instant::now();
        let futs: Vec<BoxFuture<u32>> = (0..4u32)
            .map(|i| -> BoxFuture<u32> {
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(u64::from(40 - 10 * i))).await;
                    i
                })
            })
            .collect();
        assert_eq!(join_all(futs).await, [0, 1, 2, 3]);
        // Sequential would take 100 ms.
        assert!(t.elapsed() < Duration::from_millis(90), "{:?}", t.elapsed());
    }

    #[test]
    fn clock_is_monotonic_unix_time() {
        let c = Clock::new();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        let t = c.unix_ns(Instant::now());
        assert!(t.abs_diff(now) < 1_000_000_000);
        assert!(c.unix_ns(Instant::now()) >= t);
    }
}
