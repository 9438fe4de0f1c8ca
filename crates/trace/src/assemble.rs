//! Streaming assembly: canonical spans in, repaired call trees out.
//!
//! Spans are grouped by trace id. With a window (time-ordered input such as
//! Alibaba's), a trace is closed once no span of it has been seen for
//! `window_ns` of input time, so memory stays bounded by the traces open in
//! one window; without one, traces close at the end of the input.
//!
//! Closing a trace repairs it (see [`DefectKind`] for each policy), adopts
//! wrapper siblings (DESIGN.md "Wrapper adoption"), folds client spans into
//! the call edge and orders executions breadth-first.

use std::collections::VecDeque;
use std::path::PathBuf;

use rustc_hash::FxHashMap;

use crate::defect::{DefectKind, DefectReport, Policies, Policy};
use crate::error::Error;
use crate::rpcid::RpcParents;
use crate::span::{Api, Origin, Span, SpanId, SpanKind, Sym, TraceId, flags};
use crate::tree::{CallTree, EdgeKind, Exec, NO_PARENT};

/// How traces are assembled.
#[derive(Clone, Debug)]
pub struct AssembleOptions {
    /// Close a trace after this much input time without a new span. `None`
    /// keeps every trace open until the end of the input.
    pub window_ns: Option<i64>,
    /// Adopt calls recorded as siblings of the handler span that made them.
    pub adopt: bool,
    pub policies: Policies,
}

impl Default for AssembleOptions {
    fn default() -> Self {
        AssembleOptions { window_ns: None, adopt: true, policies: Policies::default() }
    }
}

/// Receives each trace as it is assembled. Symbols in the tree resolve
/// through [`crate::ReadSummary::names`] once reading is done.
pub trait TraceSink: Send {
    fn trace(&mut self, tree: &CallTree) -> Result<(), Error>;
}

impl<F: FnMut(&CallTree) -> Result<(), Error> + Send> TraceSink for F {
    fn trace(&mut self, tree: &CallTree) -> Result<(), Error> {
        self(tree)
    }
}

/// What assembly did besides repairing defects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AssemblyCounts {
    /// Traces handed to the sink.
    pub traces: u64,
    /// Spans in those traces.
    pub spans: u64,
    /// Client spans folded into call edges.
    pub folded_client_spans: u64,
    /// Calls re-parented under the handler span that made them.
    pub adopted_calls: u64,
    /// Alibaba calls logged by both sides and merged into one.
    pub merged_call_pairs: u64,
    /// Most traces open at once: the memory bound of streaming assembly.
    pub peak_open_traces: u64,
}

/// Spans of one trace that is still open.
struct Pending {
    spans: Vec<Span>,
    /// Latest input time seen for the trace.
    last_ns: i64,
}

/// A trace whose spans are all in: ready to be built into a tree.
pub type Closed = (TraceId, Vec<Span>);

/// Most traces are small: start with room for a few spans.
fn first_spans(span: Span) -> Vec<Span> {
    let mut spans = Vec::with_capacity(4);
    spans.push(span);
    spans
}

/// Sweep for expired traces every this many spans: often enough to bound
/// memory, rarely enough to cost nothing.
const SWEEP_EVERY: u32 = 256;

/// Groups spans into traces and decides when each trace is complete. This
/// half of assembly runs beside the reader; [`TreeBuilder`] does the rest,
/// on another thread.
pub struct Grouper {
    /// `None`: traces stay open until [`Grouper::finish`].
    window_ns: Option<i64>,
    /// Traces still receiving spans.
    open: FxHashMap<TraceId, Pending>,
    /// Close-candidates in input-time order: (earliest close time, trace).
    deadlines: VecDeque<(i64, TraceId)>,
    /// Latest input time seen: the clock the window runs on.
    now_ns: i64,
    /// Spans pushed since the last sweep of expired traces.
    since_sweep: u32,
    /// Most traces open at once.
    pub peak_open_traces: u64,
}

impl Grouper {
    pub fn new(window_ns: Option<i64>) -> Grouper {
        Grouper {
            window_ns,
            open: FxHashMap::default(),
            deadlines: VecDeque::new(),
            now_ns: i64::MIN,
            since_sweep: 0,
            peak_open_traces: 0,
        }
    }

    /// Adds a span; appends traces that fell out of the window to `closed`.
    pub fn push(&mut self, span: Span, closed: &mut Vec<Closed>) {
        let t = span.start_ns;
        let trace_id = span.trace_id;
        match self.open.get_mut(&trace_id) {
            Some(p) => {
                p.last_ns = p.last_ns.max(t);
                p.spans.push(span);
            }
            None => {
                if let Some(w) = self.window_ns {
                    self.deadlines.push_back((t.saturating_add(w), trace_id));
                }
                self.open.insert(trace_id, Pending { spans: first_spans(span), last_ns: t });
                self.peak_open_traces = self.peak_open_traces.max(self.open.len() as u64);
            }
        }
        if let Some(w) = self.window_ns {
            self.now_ns = self.now_ns.max(t);
            self.since_sweep += 1;
            if self.since_sweep >= SWEEP_EVERY {
                self.since_sweep = 0;
                self.sweep(w, closed);
            }
        }
    }

    fn sweep(&mut self, window: i64, closed: &mut Vec<Closed>) {
        while let Some(&(deadline, trace_id)) = self.deadlines.front() {
            if deadline > self.now_ns {
                break;
            }
            self.deadlines.pop_front();
            let Some(p) = self.open.get(&trace_id) else {
                continue;
            };
            let due = p.last_ns.saturating_add(window);
            if due > self.now_ns {
                self.deadlines.push_back((due, trace_id));
                continue;
            }
            let p = self.open.remove(&trace_id).expect("checked above");
            closed.push((trace_id, p.spans));
        }
    }

    /// Closes every open trace, in order of first appearance for windowed
    /// input and by trace id otherwise, so output order is deterministic.
    pub fn finish(&mut self, closed: &mut Vec<Closed>) {
        let mut order: Vec<TraceId> = if self.window_ns.is_some() {
            let mut seen = rustc_hash::FxHashSet::default();
            self.deadlines.drain(..).map(|(_, t)| t).filter(|t| seen.insert(*t)).collect()
        } else {
            let mut ids: Vec<TraceId> = self.open.keys().copied().collect();
            ids.sort_unstable();
            ids
        };
        order.retain(|t| self.open.contains_key(t));
        for trace_id in order {
            let p = self.open.remove(&trace_id).expect("listed above");
            closed.push((trace_id, p.spans));
        }
    }
}

/// Builds closed traces into repaired call trees, counting defects.
pub struct TreeBuilder {
    opts: AssembleOptions,
    /// Input files, for naming where a defect is.
    files: Vec<PathBuf>,
    pub defects: DefectReport,
    pub counts: AssemblyCounts,
    /// Children lists, reused from trace to trace.
    kids: Vec<Vec<u32>>,
}

impl TreeBuilder {
    pub fn new(opts: AssembleOptions, files: Vec<PathBuf>) -> TreeBuilder {
        TreeBuilder {
            opts,
            files,
            defects: DefectReport::default(),
            counts: AssemblyCounts::default(),
            kids: Vec::new(),
        }
    }

    /// Builds one trace; `None` if a policy dropped it.
    /// Builds one trace; `rpc_up` resolves missing Alibaba parents.
    pub fn build(
        &mut self,
        trace_id: TraceId,
        spans: Vec<Span>,
        rpc_up: &RpcParents,
    ) -> Result<Option<CallTree>, Error> {
        let n = spans.len() as u64;
        let env = Env { files: &self.files };
        match build_tree(
            trace_id,
            spans,
            rpc_up,
            &mut self.kids,
            &env,
            &self.opts,
            &mut self.defects,
            &mut self.counts,
        )? {
            Some(tree) => {
                self.counts.traces += 1;
                self.counts.spans += tree.span_count as u64;
                Ok(Some(tree))
            }
            None => {
                self.defects.dropped_traces += 1;
                self.defects.dropped_spans += n;
                Ok(None)
            }
        }
    }
}

/// Where things are, for error messages.
pub struct Env<'a> {
    pub files: &'a [PathBuf],
}

impl Env<'_> {
    pub fn at(&self, origin: Origin) -> String {
        match self.files.get(origin.file as usize) {
            Some(p) => format!("{}:{}", p.display(), origin.line),
            None => format!("line {}", origin.line),
        }
    }
}

const NONE: u32 = u32::MAX;

/// Tolerance for "this span contains that one": max(1 ms, 2% of the container).
fn containment_tolerance(duration_ns: i64) -> i64 {
    (duration_ns / 50).max(1_000_000)
}

fn covers(outer: &Span, inner: &Span, tol: i64) -> bool {
    inner.start_ns >= outer.start_ns.saturating_sub(tol) && inner.end_ns() <= outer.end_ns().saturating_add(tol)
}

/// Repairs and assembles one trace. `None` means the trace was dropped.
#[allow(clippy::too_many_arguments)]
fn build_tree(
    trace_id: TraceId,
    mut spans: Vec<Span>,
    rpc_up: &RpcParents,
    kids: &mut Vec<Vec<u32>>,
    env: &Env,
    opts: &AssembleOptions,
    defects: &mut DefectReport,
    counts: &mut AssemblyCounts,
) -> Result<Option<CallTree>, Error> {
    let policies = &opts.policies;
    if !repair_negative_durations(&mut spans, env, policies, defects)? {
        return Ok(None);
    }
    if !remove_duplicate_ids(&mut spans, trace_id, env, policies, defects, counts)? {
        return Ok(None);
    }
    let n = spans.len();
    let Some(mut parent) = link_parents(&spans, trace_id, rpc_up, env, policies, defects)? else {
        return Ok(None);
    };
    if !break_cycles(&spans, &mut parent, trace_id, policies, defects)? {
        return Ok(None);
    }

    // Reused across traces: one list per span would be an allocation each.
    if kids.len() < n {
        kids.resize_with(n, Vec::new);
    }
    let kids = &mut kids[..n];
    let roots = fill_children(&spans, &parent, kids);
    let Some(root) = keep_largest_root(roots, &spans, kids, trace_id, policies, defects)? else {
        return Ok(None);
    };

    if opts.adopt {
        counts.adopted_calls += adopt_wrapped_calls(&spans, kids, &mut parent, root);
    }

    let (mut execs, body_of, folded_spans) = lay_out_breadth_first(&spans, kids, root);
    counts.folded_client_spans += folded_spans as u64;
    let span_count = execs.len() as u32 + folded_spans;

    if !repair_skew(&mut execs, &spans, &body_of, env, policies, defects)? {
        return Ok(None);
    }

    Ok(Some(CallTree { trace_id, span_count, execs }))
}

/// Flips negative durations to their magnitude (or drops the trace, per
/// policy); `false` means the trace was dropped.
fn repair_negative_durations(
    spans: &mut [Span],
    env: &Env,
    policies: &Policies,
    defects: &mut DefectReport,
) -> Result<bool, Error> {
    for s in spans.iter_mut().filter(|s| s.duration_ns < 0) {
        let d = s.duration_ns;
        if defects.record(policies, DefectKind::NegativeDuration, || env.at(s.origin), || format!("duration {d} ns"))?
            == Policy::Drop
        {
            return Ok(false);
        }
        s.duration_ns = d.saturating_abs();
    }
    Ok(true)
}

/// Sorts spans by id and resolves duplicate ids: merges Alibaba's two-sided
/// logs, drops exact copies and clashing ids; `false` means the trace was
/// dropped.
fn remove_duplicate_ids(
    spans: &mut Vec<Span>,
    trace_id: TraceId,
    env: &Env,
    policies: &Policies,
    defects: &mut DefectReport,
    counts: &mut AssemblyCounts,
) -> Result<bool, Error> {
    spans.sort_by_key(|s| s.span_id);
    let mut write = 0usize;
    for read in 0..spans.len() {
        if write > 0 && spans[write - 1].span_id == spans[read].span_id {
            let (kept, dup) = (&spans[write - 1], &spans[read]);
            if let Some(merged) = merge_two_sided(kept, dup) {
                spans[write - 1] = merged;
                counts.merged_call_pairs += 1;
                continue;
            }
            let same = Span { origin: kept.origin, ..dup.clone() } == *kept;
            let kind = if same { DefectKind::DuplicateRecord } else { DefectKind::DuplicateSpanId };
            let id = dup.span_id;
            if defects.record(policies, kind, || env.at(dup.origin), || format!("span {id} in {trace_id}"))?
                == Policy::Drop
            {
                return Ok(false);
            }
            defects.dropped_spans += 1;
            continue;
        }
        spans.swap(write, read);
        write += 1;
    }
    spans.truncate(write);
    Ok(true)
}

/// Each span's parent index (`NONE` for roots) in the id-sorted `spans`,
/// repairing orphans: an Alibaba call whose parent row is missing hangs under
/// its nearest recorded ancestor. `None` means the trace was dropped.
fn link_parents(
    spans: &[Span],
    trace_id: TraceId,
    rpc_up: &RpcParents,
    env: &Env,
    policies: &Policies,
    defects: &mut DefectReport,
) -> Result<Option<Vec<u32>>, Error> {
    let find = |id: SpanId| spans.binary_search_by_key(&id, |s| s.span_id).ok();
    let mut parent = vec![NONE; spans.len()];
    for (i, s) in spans.iter().enumerate() {
        if s.parent_id.is_none() {
            continue;
        }
        if let Some(p) = find(s.parent_id) {
            parent[i] = p as u32;
            continue;
        }
        let pid = s.parent_id;
        let ancestor = if s.has(flags::RPC_PATH_IDS) {
            nearest_rpc_ancestor(pid, rpc_up, &|id| find(id).is_some()).and_then(find)
        } else {
            None
        };
        let detail = || match ancestor {
            Some(a) => format!("parent missing in {trace_id}; attached to ancestor {}", spans[a].span_id),
            None => format!("parent {pid} not in {trace_id}"),
        };
        if defects.record(policies, DefectKind::Orphan, || env.at(s.origin), detail)? == Policy::Drop {
            return Ok(None);
        }
        parent[i] = ancestor.map_or(NONE, |a| a as u32);
    }
    Ok(Some(parent))
}

/// Finds self-parents and cycles in `parent`; each one repaired makes the
/// earliest span of the cycle a root. `false` means the trace was dropped.
fn break_cycles(
    spans: &[Span],
    parent: &mut [u32],
    trace_id: TraceId,
    policies: &Policies,
    defects: &mut DefectReport,
) -> Result<bool, Error> {
    let n = spans.len();
    let mut state = vec![0u8; n]; // 0 unvisited, 1 on the current path, 2 done
    let mut path = Vec::new();
    for start in 0..n {
        let mut i = start;
        while i != NONE as usize && state[i] == 0 {
            state[i] = 1;
            path.push(i);
            i = parent[i] as usize;
        }
        if i != NONE as usize && state[i] == 1 {
            let sid = spans[i].span_id;
            let policy = defects.record(
                policies,
                DefectKind::Cycle,
                || format!("trace {trace_id}"),
                || format!("span {sid} is its own ancestor"),
            )?;
            if policy == Policy::Drop {
                return Ok(false);
            }
            let mut cycle = vec![i];
            let mut j = parent[i] as usize;
            while j != i {
                cycle.push(j);
                j = parent[j] as usize;
            }
            let first = *cycle.iter().min_by_key(|&&k| (spans[k].start_ns, k)).expect("non-empty");
            parent[first] = NONE;
        }
        for &k in &path {
            state[k] = 2;
        }
        path.clear();
    }
    Ok(true)
}

/// Refills `kids` (one list per span, reused across traces) from `parent`,
/// each list ordered by start; returns the roots.
fn fill_children(spans: &[Span], parent: &[u32], kids: &mut [Vec<u32>]) -> Vec<u32> {
    for k in kids.iter_mut() {
        k.clear();
    }
    let mut roots = Vec::new();
    for (i, &p) in parent.iter().enumerate() {
        match p {
            NONE => roots.push(i as u32),
            p => kids[p as usize].push(i as u32),
        }
    }
    for k in kids.iter_mut() {
        k.sort_by_key(|&c| (spans[c as usize].start_ns, c));
    }
    roots
}

/// The one root to keep: with several, the largest tree (the rest are counted
/// as dropped spans). `None` means no root or the trace was dropped.
fn keep_largest_root(
    roots: Vec<u32>,
    spans: &[Span],
    kids: &[Vec<u32>],
    trace_id: TraceId,
    policies: &Policies,
    defects: &mut DefectReport,
) -> Result<Option<u32>, Error> {
    if roots.len() <= 1 {
        return Ok(roots.first().copied());
    }
    let policy = defects.record(
        policies,
        DefectKind::MultipleRoots,
        || format!("trace {trace_id}"),
        || format!("{} roots", roots.len()),
    )?;
    if policy == Policy::Drop {
        return Ok(None);
    }
    let sizes: Vec<usize> = roots.iter().map(|&r| subtree_size(kids, r)).collect();
    let best = (0..roots.len())
        .max_by_key(|&k| (sizes[k], std::cmp::Reverse((spans[roots[k] as usize].start_ns, roots[k]))))
        .expect("several roots");
    defects.dropped_spans += (spans.len() - sizes[best]) as u64;
    Ok(Some(roots[best]))
}

/// Breadth-first layout from `root`, folding client spans into their call.
/// Each execution's calls are appended together, so they are contiguous.
/// Returns the executions, for each the span whose children are its calls,
/// and how many client spans were folded.
fn lay_out_breadth_first(spans: &[Span], kids: &[Vec<u32>], root: u32) -> (Vec<Exec>, Vec<u32>, u32) {
    let (root_exec, root_body, folded) = make_exec(spans, kids, root as usize, None);
    let mut folded_spans = folded as u32;
    let mut execs: Vec<Exec> = Vec::with_capacity(spans.len());
    execs.push(root_exec);
    let mut body_of: Vec<u32> = vec![root_body as u32];
    let mut next = 0;
    while next < execs.len() {
        let body = body_of[next] as usize;
        let mut calls: Vec<(Exec, u32)> = Vec::with_capacity(kids[body].len());
        for &c in &kids[body] {
            let (mut exec, callee, folded) = make_exec(spans, kids, c as usize, Some(&execs[next]));
            folded_spans += folded as u32;
            exec.parent = next as u32;
            calls.push((exec, callee as u32));
        }
        calls.sort_by_key(|(e, callee)| (e.call_start_ns, *callee));
        execs[next].first_child = execs.len() as u32;
        execs[next].child_count = calls.len() as u32;
        for (exec, callee) in calls {
            body_of.push(callee);
            execs.push(exec);
        }
        next += 1;
    }
    (execs, body_of, folded_spans)
}

/// If `a` and `b` are the two halves of an Alibaba call (upstream row with
/// the caller-observed rt, downstream row with the callee's), merge them.
fn merge_two_sided(a: &Span, b: &Span) -> Option<Span> {
    if !a.has(flags::RPC_PATH_IDS) || !b.has(flags::RPC_PATH_IDS) {
        return None;
    }
    let (up, down) = match (a.caller_duration_ns, b.caller_duration_ns) {
        (Some(_), None) => (a, b),
        (None, Some(_)) => (b, a),
        _ => return None,
    };
    Some(Span {
        start_ns: up.start_ns,
        duration_ns: down.duration_ns,
        caller_duration_ns: up.caller_duration_ns,
        flags: up.flags | down.flags,
        ..up.clone()
    })
}

/// Walks `0.1.2` → `0.1` → `0` until a span of the trace has that rpc id.
fn nearest_rpc_ancestor(missing: SpanId, rpc_up: &RpcParents, known: &dyn Fn(SpanId) -> bool) -> Option<SpanId> {
    let mut at = rpc_up.parent(missing);
    // Rpc ids are finite paths, but a hostile link table must not loop.
    for _ in 0..4096 {
        if at.is_none() {
            return None;
        }
        if known(at) {
            return Some(at);
        }
        at = rpc_up.parent(at);
    }
    None
}

fn subtree_size(kids: &[Vec<u32>], root: u32) -> usize {
    let mut stack = vec![root];
    let mut size = 0;
    while let Some(i) = stack.pop() {
        size += 1;
        stack.extend_from_slice(&kids[i as usize]);
    }
    size
}

/// A span that records a call from its parent's service: a caller-side kind,
/// another service, or an unlabelled span wrapping one span of another service.
fn is_call(spans: &[Span], kids: &[Vec<u32>], i: usize, parent_service: Sym) -> bool {
    let s = &spans[i];
    s.kind.is_caller_side() || s.service != parent_service || implicit_client_child(spans, kids, i).is_some()
}

/// For a span of unknown kind whose only child is a span of another service
/// that it covers, that child: the span is the caller's record of the call.
fn implicit_client_child(spans: &[Span], kids: &[Vec<u32>], i: usize) -> Option<usize> {
    let s = &spans[i];
    if s.kind != SpanKind::Unknown || kids[i].len() != 1 {
        return None;
    }
    let c = kids[i][0] as usize;
    let child = &spans[c];
    (child.service != s.service && covers(s, child, containment_tolerance(s.duration_ns))).then_some(c)
}

/// The span that does the callee's work for the call recorded by span `i`:
/// its single child when `i` is a client span, else `i` itself.
fn callee_of(spans: &[Span], kids: &[Vec<u32>], i: usize) -> Option<usize> {
    let s = &spans[i];
    if s.kind.is_caller_side() && kids[i].len() == 1 {
        let c = kids[i][0] as usize;
        if !spans[c].kind.is_caller_side() {
            return Some(c);
        }
    }
    implicit_client_child(spans, kids, i)
}

/// Builds the execution for span `i` (called from `caller`). Returns the
/// execution, the span whose children are its calls, and whether a client
/// span was folded.
fn make_exec(spans: &[Span], kids: &[Vec<u32>], i: usize, caller: Option<&Exec>) -> (Exec, usize, bool) {
    let s = &spans[i];
    let (body, folded) = match callee_of(spans, kids, i) {
        Some(c) => (c, true),
        None => (i, false),
    };
    let b = &spans[body];
    let mut api = Api { service: b.service, operation: b.operation };
    // A client span to a callee that recorded nothing: the callee is the
    // remote service it names, when it names one.
    let uninstrumented_peer = !folded && s.kind.is_caller_side() && kids[i].is_empty() && !s.remote_service.is_empty();
    if uninstrumented_peer {
        api.service = s.remote_service;
    }
    let edge = match caller {
        None => EdgeKind::Root,
        Some(_) if folded || uninstrumented_peer => EdgeKind::Rpc,
        Some(c) if c.api.service != api.service => EdgeKind::Rpc,
        Some(_) => EdgeKind::Local,
    };
    let call_duration = if folded { s.duration_ns } else { b.caller_duration_ns.unwrap_or(b.duration_ns) };
    let exec = Exec {
        api,
        parent: NO_PARENT,
        first_child: 0,
        child_count: 0,
        edge,
        protocol: if b.protocol.is_empty() { s.protocol } else { b.protocol },
        start_ns: b.start_ns,
        duration_ns: b.duration_ns,
        call_start_ns: s.start_ns,
        call_duration_ns: call_duration,
        error: b.is_error() || s.is_error(),
        detached: s.has(flags::FOLLOWS_FROM) || b.has(flags::FOLLOWS_FROM) || s.kind == SpanKind::Producer,
        request_bytes: b.request_bytes.or(s.request_bytes),
        response_bytes: b.response_bytes.or(s.response_bytes),
    };
    (exec, body, folded)
}

/// DESIGN.md "Wrapper adoption": a childless span of the parent's own service
/// that contains a sibling call adopts that call. Returns how many were adopted.
fn adopt_wrapped_calls(spans: &[Span], kids: &mut [Vec<u32>], parent: &mut [u32], root: u32) -> u64 {
    let mut adopted = 0;
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        let p_us = p as usize;
        let service = spans[p_us].service;
        let children = kids[p_us].clone();
        let wrappers: Vec<u32> = children
            .iter()
            .copied()
            .filter(|&w| {
                let ws = &spans[w as usize];
                // Alibaba rows are calls, never handler spans.
                kids[w as usize].is_empty()
                    && ws.service == service
                    && !ws.kind.is_caller_side()
                    && !ws.has(flags::RPC_PATH_IDS)
            })
            .collect();
        if !wrappers.is_empty() {
            let mut is_wrapper = wrappers.clone();
            is_wrapper.sort_unstable();
            let calls: Vec<u32> = children
                .iter()
                .copied()
                .filter(|&c| is_wrapper.binary_search(&c).is_err() && is_call(spans, kids, c as usize, service))
                .collect();
            let moved: Vec<(u32, u32)> =
                calls.iter().zip(adopters(spans, &wrappers, &calls)).filter_map(|(&c, w)| w.map(|w| (c, w))).collect();
            if !moved.is_empty() {
                let mut gone: Vec<u32> = moved.iter().map(|&(c, _)| c).collect();
                gone.sort_unstable();
                kids[p_us].retain(|k| gone.binary_search(k).is_err());
                let mut adopting: Vec<u32> = Vec::new();
                for &(c, w) in &moved {
                    kids[w as usize].push(c);
                    parent[c as usize] = w;
                    adopting.push(w);
                }
                adopting.sort_unstable();
                adopting.dedup();
                for w in adopting {
                    kids[w as usize].sort_by_key(|&k| (spans[k as usize].start_ns, k));
                }
                adopted += moved.len() as u64;
            }
        }
        stack.extend_from_slice(&kids[p_us]);
    }
    adopted
}

/// For each of `calls`, the wrapper that adopts it: the shortest (then
/// first) of `wrappers` that covers it, if any. A sweep over start times
/// with a prefix-minimum tree over end times, so a span with a million
/// children costs n log n, not n² (DESIGN.md "Wrapper adoption").
fn adopters(spans: &[Span], wrappers: &[u32], calls: &[u32]) -> Vec<Option<u32>> {
    // A wrapper covers a call that starts at or after `reach.0` and ends at
    // or before `reach.1`: its own span widened by its tolerance.
    let reach = |w: u32| {
        let ws = &spans[w as usize];
        let tol = containment_tolerance(ws.duration_ns);
        (ws.start_ns.saturating_sub(tol), ws.end_ns().saturating_add(tol))
    };
    // Ends, latest first: the wrappers that end late enough for a call are a prefix.
    let mut ends: Vec<i64> = wrappers.iter().map(|&w| reach(w).1).collect();
    ends.sort_unstable_by(|a, b| b.cmp(a));
    ends.dedup();
    let mut by_start: Vec<u32> = wrappers.to_vec();
    by_start.sort_by_key(|&w| reach(w).0);
    let mut order: Vec<usize> = (0..calls.len()).collect();
    order.sort_by_key(|&k| spans[calls[k] as usize].start_ns);
    // Fenwick tree of the best (duration, index) per prefix of `ends`.
    let mut tree: Vec<Option<(i64, u32)>> = vec![None; ends.len() + 1];
    let mut out = vec![None; calls.len()];
    let mut next = 0;
    for k in order {
        let call = &spans[calls[k] as usize];
        while next < by_start.len() && reach(by_start[next]).0 <= call.start_ns {
            let w = by_start[next];
            let key = (spans[w as usize].duration_ns, w);
            let mut i = ends.partition_point(|&e| e > reach(w).1) + 1;
            while i < tree.len() {
                tree[i] = Some(tree[i].map_or(key, |t| t.min(key)));
                i += i & i.wrapping_neg();
            }
            next += 1;
        }
        let mut i = ends.partition_point(|&e| e >= call.end_ns());
        let mut best: Option<(i64, u32)> = None;
        while i > 0 {
            if let Some(t) = tree[i] {
                best = Some(best.map_or(t, |b| b.min(t)));
            }
            i &= i - 1;
        }
        out[k] = best.map(|(_, w)| w);
    }
    out
}

/// A call that starts before its caller's execution (or an execution that
/// starts before its own call) is clock skew: shift that subtree later.
/// `false` when the policy drops the trace.
fn repair_skew(
    execs: &mut [Exec],
    spans: &[Span],
    body_of: &[u32],
    env: &Env,
    policies: &Policies,
    defects: &mut DefectReport,
) -> Result<bool, Error> {
    let mut shift = vec![0i64; execs.len()];
    for i in 0..execs.len() {
        let parent = execs[i].parent;
        // Parents come first in breadth-first order, so they are final.
        let (inherited, parent_start) = match parent {
            NO_PARENT => (0, i64::MIN),
            p => (shift[p as usize], execs[p as usize].start_ns),
        };
        let e = &mut execs[i];
        e.call_start_ns = e.call_start_ns.saturating_add(inherited);
        e.start_ns = e.start_ns.saturating_add(inherited);
        let call_late = if parent == NO_PARENT { 0 } else { parent_start.saturating_sub(e.call_start_ns).max(0) };
        let exec_late = e.call_start_ns.saturating_sub(e.start_ns).max(0);
        let late = call_late.saturating_add(exec_late);
        let mut own = 0;
        if late > 0 {
            let origin = spans[body_of[i] as usize].origin;
            let detail = || format!("starts {late} ns before its caller");
            if defects.record(policies, DefectKind::ChildOutsideParent, || env.at(origin), detail)? == Policy::Drop {
                return Ok(false);
            }
            e.call_start_ns = e.call_start_ns.saturating_add(call_late);
            e.start_ns = e.start_ns.saturating_add(late);
            own = late;
        }
        shift[i] = inherited.saturating_add(own);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    const MS: i64 = 1_000_000;

    fn span(id: u64, parent: u64, service: u32, start_ms: i64, duration_ms: i64) -> Span {
        Span {
            trace_id: TraceId::new(1),
            span_id: SpanId(id),
            parent_id: SpanId(parent),
            service: Sym(service),
            operation: Sym(9),
            // Server spans: none of them is taken for a caller's record.
            kind: SpanKind::Server,
            start_ns: start_ms * MS,
            duration_ns: duration_ms * MS,
            ..Span::default()
        }
    }

    #[test]
    fn adopters_are_the_shortest_covering_wrapper() {
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            let spans: Vec<Span> =
                (0..60).map(|i| span(i + 1, 0, 0, rng.range(0, 100) as i64, rng.range(0, 60) as i64)).collect();
            let wrappers: Vec<u32> = (0..30).collect();
            let calls: Vec<u32> = (30..60).collect();
            let brute: Vec<Option<u32>> = calls
                .iter()
                .map(|&c| {
                    let cs = &spans[c as usize];
                    wrappers
                        .iter()
                        .copied()
                        .filter(|&w| {
                            covers(&spans[w as usize], cs, containment_tolerance(spans[w as usize].duration_ns))
                        })
                        .min_by_key(|&w| (spans[w as usize].duration_ns, w))
                })
                .collect();
            assert_eq!(adopters(&spans, &wrappers, &calls), brute);
        }
    }

    #[test]
    fn a_span_with_many_wrappers_and_calls_assembles_quickly() {
        // Under the root: n handler spans of its own service, each wrapping
        // one call to another service recorded as its sibling.
        let n = 100_000;
        let mut spans = vec![span(1, 0, 0, 0, 10 * n as i64 + 10)];
        for i in 0..n as u64 {
            let at = 10 * i as i64;
            spans.push(span(2 + 2 * i, 1, 0, at, 5));
            spans.push(span(3 + 2 * i, 1, 1, at + 1, 2));
        }
        let mut builder = TreeBuilder::new(AssembleOptions::default(), Vec::new());
        let tree = builder.build(TraceId::new(1), spans, &RpcParents::default()).unwrap().expect("kept");
        assert_eq!(builder.counts.adopted_calls, n as u64);
        assert_eq!(tree.root().child_count as usize, n);
        assert!(tree.children(0).iter().all(|e| e.child_count == 1), "each handler made its call");
        assert_eq!(tree.depth(), 3);
    }

    #[test]
    fn a_chain_deeper_than_any_stack_assembles() {
        let n = 300_000u64;
        let spans: Vec<Span> =
            (1..=n).map(|i| span(i, i - 1, (i % 2) as u32, i as i64, 2 * (n - i) as i64 + 1)).collect();
        let mut builder = TreeBuilder::new(AssembleOptions::default(), Vec::new());
        let tree = builder.build(TraceId::new(1), spans, &RpcParents::default()).unwrap().expect("kept");
        assert_eq!(tree.execs.len(), n as usize);
        assert_eq!(tree.depth(), n as u32);
    }
}
