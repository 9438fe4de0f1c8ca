//! Fitting: accumulate what each assembled trace shows, per API.
//!
//! For every execution of an API `v`, its calls (ordered by start) are cut
//! into stages — a call joins the current stage unless it starts after every
//! call of the stage has ended (within the stage tolerance); detached calls
//! count as ending when they start. The sequence of stage labels is a path
//! in `v`'s prefix tree; each step records, per caller of `v`, the local work
//! before the stage, and each stage records `y = (next stage start, or the
//! end) − stage start` against `x = the stage's slowest call`, for λ.

use rustc_hash::FxHashMap;

use palette_trace::tree::Exec;
use palette_trace::{Api, CallTree, Interner};

use crate::model::{EdgeKind, FAILED_OUTCOME, FitOptions, add_outcome};
use crate::partial::{Moments, PARTIAL_FORMAT, PApi, PNode, Partial, PartialApi, PartialEdge, WorkAcc};
use crate::sketch::Sketch;

/// Which traces (and parts of traces) a fit uses.
#[derive(Clone, Debug, Default)]
pub struct TraceFilter {
    /// Skip traces with any error execution.
    pub drop_errors: bool,
    /// Keep only traces that touch one of these services (if any are given).
    pub include_services: Vec<String>,
    /// Remove these services' executions, and everything they call.
    pub exclude_services: Vec<String>,
    /// Keep only traces that touch one of these APIs (`service operation`).
    pub include_apis: Vec<String>,
    /// Remove these APIs' executions, and everything they call.
    pub exclude_apis: Vec<String>,
    /// Keep traces whose root starts this long after the first trace read, or later.
    pub since_ns: Option<i64>,
    /// … and before this.
    pub until_ns: Option<i64>,
}

impl TraceFilter {
    /// Every name the filter mentions: read with
    /// [`palette_trace::ReadOptions::known_names`] set to this, their symbols
    /// are known before the first trace arrives.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.include_services.iter().chain(&self.exclude_services).cloned().collect();
        for a in self.include_apis.iter().chain(&self.exclude_apis) {
            if let Some((s, o)) = a.split_once(' ').or_else(|| a.split_once('/')) {
                out.push(s.to_string());
                out.push(o.to_string());
            }
        }
        out
    }

    fn is_empty(&self) -> bool {
        !self.drop_errors
            && self.include_services.is_empty()
            && self.exclude_services.is_empty()
            && self.include_apis.is_empty()
            && self.exclude_apis.is_empty()
            && self.since_ns.is_none()
            && self.until_ns.is_none()
    }
}

#[derive(Default)]
struct Node {
    parent: Option<u32>,
    label: Vec<Api>,
    /// Per caller; a short list, since most nodes see one or two callers.
    enter: Vec<(Option<Api>, WorkAcc)>,
    finish: Vec<(Option<Api>, WorkAcc)>,
    lambda: Moments,
    /// `enter` and `finish` counted per (caller, outcome of the previous stage).
    enter_outcome: Vec<(Option<Api>, u32, u64)>,
    finish_outcome: Vec<(Option<Api>, u32, u64)>,
}

#[derive(Default)]
struct ApiAcc {
    count: u64,
    callers: FxHashMap<Option<Api>, u64>,
    latency: Sketch,
    request_bytes: Sketch,
    response_bytes: Sketch,
    nodes: Vec<Node>,
    /// Stage labels of this API, interned.
    labels: FxHashMap<Vec<Api>, u32>,
    /// (node, label) → child node.
    children: FxHashMap<(u32, u32), u32>,
    overhead: FxHashMap<(Api, Option<Api>), Sketch>,
    calls_per_execution: FxHashMap<(Api, u32), u64>,
    naive_work: Sketch,
    overhead_pairs: crate::partial::Moments,
    /// See the fields of the same names in [`PartialApi`].
    failed: u64,
    clean: FxHashMap<Option<Api>, (u64, u64)>,
    after_failed_call: FxHashMap<Api, (u64, u64)>,
}

#[derive(Default)]
struct EdgeAcc {
    count: u64,
    latency: Sketch,
    /// Every protocol the edge was seen with; the partial keeps the
    /// smallest by name, as merging partials does, so the choice does not
    /// depend on the order symbols were interned in.
    protocols: Vec<palette_trace::Sym>,
}

/// One stage of an execution, while cutting.
struct Stage {
    label: Vec<Api>,
    start: i64,
    /// When the last waited call of the stage ends.
    end: i64,
    /// The slowest call's caller-observed latency.
    max_latency: i64,
    /// What the stage's calls did: the calls they made themselves, summed.
    outcome: u32,
}

/// Accumulates traces into per-API counts and sketches.
pub struct Fitter {
    opts: FitOptions,
    filter: TraceFilter,
    apis: FxHashMap<Api, ApiAcc>,
    roots: FxHashMap<Api, u64>,
    /// Traces whose root execution failed, per root API.
    failed_roots: FxHashMap<Api, u64>,
    edges: FxHashMap<(Api, Api, EdgeKind), EdgeAcc>,
    traces: u64,
    spans: u64,
    /// Root start of the first trace read, for the time-window filter.
    first_start: Option<i64>,
    /// Per-execution removal marks (exclusion filters), reused.
    removed: Vec<bool>,
    stages: Vec<Stage>,
}

impl Fitter {
    pub fn new(opts: FitOptions, filter: TraceFilter) -> Fitter {
        Fitter {
            opts,
            filter,
            apis: FxHashMap::default(),
            roots: FxHashMap::default(),
            failed_roots: FxHashMap::default(),
            edges: FxHashMap::default(),
            traces: 0,
            spans: 0,
            first_start: None,
            removed: Vec::new(),
            stages: Vec::new(),
        }
    }

    pub fn traces(&self) -> u64 {
        self.traces
    }

    /// Adds one trace. `names` resolves the filter's names (it may be a
    /// snapshot: only names the filter mentions are looked up).
    pub fn add(&mut self, tree: &CallTree, names: &FilterNames) {
        if !self.filter.is_empty() && !self.keep(tree, names) {
            return;
        }
        self.traces += 1;
        self.spans += tree.span_count as u64;
        *self.roots.entry(tree.root().api).or_default() += 1;
        if tree.root().error {
            *self.failed_roots.entry(tree.root().api).or_default() += 1;
        }
        for i in 0..tree.execs.len() {
            if !self.removed.is_empty() && self.removed[i] {
                continue;
            }
            self.add_exec(tree, i);
        }
    }

    /// Applies the filter; marks excluded executions in `self.removed`.
    fn keep(&mut self, tree: &CallTree, names: &FilterNames) -> bool {
        self.removed.clear();
        let f = &self.filter;
        let root_start = tree.root().start_ns;
        let first = *self.first_start.get_or_insert(root_start);
        if f.since_ns.is_some_and(|s| root_start - first < s) || f.until_ns.is_some_and(|u| root_start - first >= u) {
            return false;
        }
        if f.drop_errors && tree.execs.iter().any(|e| e.error) {
            return false;
        }
        if !f.include_services.is_empty() && !tree.execs.iter().any(|e| names.included_service(e.api)) {
            return false;
        }
        if !f.include_apis.is_empty() && !tree.execs.iter().any(|e| names.included_api(e.api)) {
            return false;
        }
        if !f.exclude_services.is_empty() || !f.exclude_apis.is_empty() {
            self.removed.resize(tree.execs.len(), false);
            for i in 0..tree.execs.len() {
                let e = &tree.execs[i];
                let parent_gone = !e.is_root() && self.removed[e.parent as usize];
                self.removed[i] = parent_gone || names.excluded(e.api);
            }
            if self.removed[0] {
                return false;
            }
        }
        true
    }

    fn add_exec(&mut self, tree: &CallTree, i: usize) {
        let e = &tree.execs[i];
        let caller = (!e.is_root()).then(|| tree.execs[e.parent as usize].api);
        let (in_calls, failed_calls) = self.cut_stages(tree, e);
        let acc = self.apis.entry(e.api).or_default();
        acc.count_execution(e, caller, in_calls);
        count_calls(acc, &mut self.edges, e.api, caller, kept_calls(tree, e, &self.removed));
        acc.count_failures(e.error, caller, failed_calls, self.stages.len().saturating_sub(1));
        acc.walk_stages(e, caller, &mut self.stages);
    }

    /// Cuts `e`'s calls (ordered by start) into `self.stages`; returns the
    /// time spent in waited calls, and the (stage, callee) of each waited
    /// call that failed, once per stage.
    fn cut_stages(&mut self, tree: &CallTree, e: &Exec) -> (i64, Vec<(usize, Api)>) {
        let tol = self.opts.stage_tolerance_ns;
        self.stages.clear();
        let mut in_calls = 0i64;
        let mut failed_calls: Vec<(usize, Api)> = Vec::new();
        for call in kept_calls(tree, e, &self.removed) {
            let end = if call.detached { call.call_start_ns } else { call.call_end_ns() };
            in_calls += if call.detached { 0 } else { call.call_duration_ns };
            match self.stages.last_mut() {
                Some(s) if call.call_start_ns < s.end.saturating_sub(tol) || call.call_start_ns < s.start + 1 => {
                    s.label.push(call.api);
                    s.end = s.end.max(end);
                    s.max_latency = s.max_latency.max(if call.detached { 0 } else { call.call_duration_ns });
                    s.outcome = add_outcome(s.outcome, call.child_count, call.error && !call.detached);
                }
                _ => self.stages.push(Stage {
                    label: vec![call.api],
                    start: call.call_start_ns,
                    end,
                    max_latency: if call.detached { 0 } else { call.call_duration_ns },
                    outcome: add_outcome(0, call.child_count, call.error && !call.detached),
                }),
            }
            let stage = (self.stages.len() - 1, call.api);
            if call.error && !call.detached && !failed_calls.contains(&stage) {
                failed_calls.push(stage);
            }
        }
        (in_calls, failed_calls)
    }

    /// Everything counted, keyed by name (see [`Partial`]); consumes the
    /// fitter so nothing is held twice.
    pub fn into_partial(self, names: &Interner, inputs: Vec<String>) -> Partial {
        let name_of = |a: Api| (names.resolve(a.service).to_string(), names.resolve(a.operation).to_string());
        let mut all: Vec<(String, String)> = self.apis.keys().map(|&a| name_of(a)).collect();
        all.sort();
        all.dedup();
        let index: FxHashMap<(String, String), PApi> =
            all.iter().cloned().enumerate().map(|(i, n)| (n, i as PApi)).collect();
        let id = |a: Api| index[&name_of(a)];
        let caller_id = |c: Option<Api>| c.map(id);
        let outcome_counts =
            |list: Vec<(Option<Api>, u32, u64)>| sorted(list.into_iter().map(|(c, o, n)| ((caller_id(c), o), n)));
        let mut apis: Vec<PartialApi> = vec![PartialApi::default(); all.len()];
        for (api, acc) in self.apis {
            let p = &mut apis[id(api) as usize];
            p.count = acc.count;
            p.callers = sorted(acc.callers.iter().map(|(&c, &n)| (caller_id(c), n)));
            p.latency = acc.latency;
            p.request_bytes = acc.request_bytes;
            p.response_bytes = acc.response_bytes;
            p.overhead = sorted(acc.overhead.into_iter().map(|((callee, c), s)| ((id(callee), caller_id(c)), s)));
            p.calls_per_execution =
                sorted(acc.calls_per_execution.iter().map(|(&(callee, n), &k)| ((id(callee), n), k)));
            p.naive_work = acc.naive_work;
            p.overhead_pairs = acc.overhead_pairs;
            p.failed = acc.failed;
            p.clean = sorted(acc.clean.iter().map(|(&c, n)| (caller_id(c), n.0)));
            p.clean_failed = sorted(acc.clean.iter().filter(|(_, n)| n.1 > 0).map(|(&c, n)| (caller_id(c), n.1)));
            p.after_failed_call = sorted(acc.after_failed_call.iter().map(|(&c, n)| (id(c), n.0)));
            p.after_failed_call_failed =
                sorted(acc.after_failed_call.iter().filter(|(_, n)| n.1 > 0).map(|(&c, n)| (id(c), n.1)));
            let nodes: Vec<PNode> = acc
                .nodes
                .into_iter()
                .map(|n| {
                    let mut label: Vec<PApi> = n.label.iter().map(|&a| id(a)).collect();
                    label.sort_unstable();
                    PNode {
                        parent: n.parent,
                        label,
                        enter: sorted(n.enter.into_iter().map(|(c, w)| (caller_id(c), w))),
                        finish: sorted(n.finish.into_iter().map(|(c, w)| (caller_id(c), w))),
                        lambda: n.lambda,
                        enter_outcome: outcome_counts(n.enter_outcome),
                        finish_outcome: outcome_counts(n.finish_outcome),
                    }
                })
                .collect();
            p.nodes = canonical_tree(nodes);
        }
        let roots = sorted(self.roots.iter().map(|(&a, &n)| (id(a), n)));
        let failed_roots = sorted(self.failed_roots.iter().map(|(&a, &n)| (id(a), n)));
        let mut edges: Vec<PartialEdge> = self
            .edges
            .iter()
            .map(|(&(caller, callee, kind), e)| PartialEdge {
                caller: id(caller),
                callee: id(callee),
                kind,
                protocol: e.protocols.iter().map(|&p| names.resolve(p)).min().map(str::to_string),
                count: e.count,
                latency: e.latency.clone(),
            })
            .collect();
        edges.sort_by_key(|a| (a.caller, a.callee, a.kind));
        Partial {
            format: PARTIAL_FORMAT.into(),
            options: self.opts.clone(),
            inputs,
            traces: self.traces,
            spans: self.spans,
            api_names: all,
            apis,
            roots,
            failed_roots,
            edges,
        }
    }
}

/// The calls of `e` the filter kept, in order.
fn kept_calls<'t>(tree: &'t CallTree, e: &Exec, removed: &'t [bool]) -> impl Iterator<Item = &'t Exec> {
    e.children().filter(move |&c| removed.is_empty() || !removed[c]).map(move |c| &tree.execs[c])
}

/// Counts each of `calls`, made by an execution of `api` called by
/// `caller`: on its edge (count, caller-observed latency, protocol), and in
/// `acc` (calls per callee per execution, and the call overhead, with the
/// pairs of successive overheads to one callee).
fn count_calls<'t>(
    acc: &mut ApiAcc,
    edges: &mut FxHashMap<(Api, Api, EdgeKind), EdgeAcc>,
    api: Api,
    caller: Option<Api>,
    calls: impl Iterator<Item = &'t Exec>,
) {
    // (callee, calls, log-bucket of the last call's overhead)
    let mut per_callee: Vec<(Api, u32, i64)> = Vec::new();
    for call in calls {
        let edge = edges.entry((api, call.api, edge_kind(call.edge))).or_default();
        edge.count += 1;
        edge.latency.add(call.call_duration_ns as f64);
        if !call.protocol.is_empty() && !edge.protocols.contains(&call.protocol) {
            edge.protocols.push(call.protocol);
        }
        let overhead = (call.call_duration_ns - call.duration_ns).max(0);
        let level = crate::sketch::Sketch::bucket(overhead as f64) as i64;
        match per_callee.iter_mut().find(|(a, _, _)| *a == call.api) {
            Some((_, n, last)) => {
                *n += 1;
                acc.overhead_pairs.add(*last, level);
                *last = level;
            }
            None => per_callee.push((call.api, 1, level)),
        }
        acc.overhead.entry((call.api, caller)).or_default().add(overhead as f64);
    }
    for (callee, n, _) in per_callee {
        *acc.calls_per_execution.entry((callee, n)).or_default() += 1;
    }
}

impl ApiAcc {
    /// The execution itself: its caller, latency, message sizes and the
    /// naive model's work (its time outside waited calls, `in_calls`).
    fn count_execution(&mut self, e: &Exec, caller: Option<Api>, in_calls: i64) {
        self.count += 1;
        *self.callers.entry(caller).or_default() += 1;
        self.latency.add(e.duration_ns as f64);
        if let Some(b) = e.request_bytes {
            self.request_bytes.add(b as f64);
        }
        if let Some(b) = e.response_bytes {
            self.response_bytes.add(b as f64);
        }
        self.naive_work.add((e.duration_ns - in_calls).max(0) as f64);
    }

    /// Failures: the API's own, or passed on after a failed call. A
    /// detached call's failure never reaches the caller. Each stage with a
    /// failed call to a callee is one chance to pass its failure on; the
    /// execution took it when it failed right after that stage.
    fn count_failures(
        &mut self,
        failed: bool,
        caller: Option<Api>,
        failed_calls: Vec<(usize, Api)>,
        last_stage: usize,
    ) {
        self.failed += u64::from(failed);
        if failed_calls.is_empty() {
            let n = self.clean.entry(caller).or_default();
            n.0 += 1;
            n.1 += u64::from(failed);
        }
        for (k, callee) in failed_calls {
            let n = self.after_failed_call.entry(callee).or_default();
            n.0 += 1;
            n.1 += u64::from(failed && k == last_stage);
        }
    }

    /// Walks the prefix tree along `e`'s stages (sorting each stage's
    /// label), counting the work before each stage and λ's pair for it,
    /// then the work before the end, where the execution chose to finish.
    fn walk_stages(&mut self, e: &Exec, caller: Option<Api>, stages: &mut [Stage]) {
        if self.nodes.is_empty() {
            self.nodes.push(Node::default());
        }
        let mut node = 0u32;
        let (mut prev_start, mut prev_x) = (e.start_ns, 0i64);
        let mut prev_outcome: Option<u32> = None;
        for k in 0..stages.len() {
            stages[k].label.sort_unstable();
            let child = self.child(node, &stages[k].label);
            let stage = &stages[k];
            let waited = stage.start - (prev_start + prev_x);
            let detached = stage.start - prev_start;
            if let Some(o) = prev_outcome {
                count_outcome(&mut self.nodes[child as usize].enter_outcome, caller, o);
            }
            prev_outcome = Some(stage.outcome);
            let w = per_caller(&mut self.nodes[child as usize].enter, caller);
            w.count += 1;
            w.waited.add(waited.max(0) as f64);
            w.detached.add(detached.max(0) as f64);
            let next_action = stages.get(k + 1).map_or(e.end_ns(), |s| s.start);
            self.nodes[child as usize].lambda.add(stage.max_latency, next_action - stage.start);
            node = child;
            prev_start = stage.start;
            prev_x = stage.max_latency;
        }
        // An execution that failed right after a failed call passed the
        // failure on: it did not choose to finish there (its path was cut),
        // so its end is not counted as one. Counting it would make the
        // callers that carried on after such a call look as if they stop,
        // and a loop cut by a failure look like a short loop.
        let passed_on = e.error && prev_outcome.is_some_and(|o| o & FAILED_OUTCOME != 0);
        if passed_on {
            return;
        }
        if let Some(o) = prev_outcome {
            count_outcome(&mut self.nodes[node as usize].finish_outcome, caller, o);
        }
        let w = per_caller(&mut self.nodes[node as usize].finish, caller);
        w.count += 1;
        w.waited.add((e.end_ns() - (prev_start + prev_x)).max(0) as f64);
        w.detached.add((e.end_ns() - prev_start).max(0) as f64);
    }

    /// The prefix-tree node under `node` for a stage of `label`, made when
    /// new (labels are interned per API).
    fn child(&mut self, node: u32, label: &[Api]) -> u32 {
        let label_id = match self.labels.get(label) {
            Some(&id) => id,
            None => {
                let id = self.labels.len() as u32;
                self.labels.insert(label.to_vec(), id);
                id
            }
        };
        match self.children.get(&(node, label_id)) {
            Some(&c) => c,
            None => {
                let c = self.nodes.len() as u32;
                self.nodes.push(Node { parent: Some(node), label: label.to_vec(), ..Node::default() });
                self.children.insert((node, label_id), c);
                c
            }
        }
    }
}

fn count_outcome(list: &mut Vec<(Option<Api>, u32, u64)>, caller: Option<Api>, outcome: u32) {
    match list.iter_mut().find(|(c, o, _)| *c == caller && *o == outcome) {
        Some(entry) => entry.2 += 1,
        None => {
            list.reserve_exact(1);
            list.push((caller, outcome, 1));
        }
    }
}

fn per_caller(list: &mut Vec<(Option<Api>, WorkAcc)>, caller: Option<Api>) -> &mut WorkAcc {
    let k = match list.iter().position(|(c, _)| *c == caller) {
        Some(k) => k,
        None => {
            // Most nodes see one caller: room for exactly one, not Vec's
            // default four (this alone halves a fit's memory).
            list.reserve_exact(1);
            list.push((caller, WorkAcc::default()));
            list.len() - 1
        }
    };
    &mut list[k].1
}

fn edge_kind(e: palette_trace::EdgeKind) -> EdgeKind {
    match e {
        palette_trace::EdgeKind::Local => EdgeKind::Local,
        _ => EdgeKind::Rpc,
    }
}

pub(crate) fn sorted<K: Ord, V>(items: impl Iterator<Item = (K, V)>) -> Vec<(K, V)> {
    let mut v: Vec<(K, V)> = items.collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Renumbers a prefix tree breadth-first with children ordered by label, so
/// the same tree always has the same layout whatever order it was built in.
pub(crate) fn canonical_tree(nodes: Vec<PNode>) -> Vec<PNode> {
    if nodes.is_empty() {
        return nodes;
    }
    let mut children: Vec<Vec<u32>> = vec![Vec::new(); nodes.len()];
    for (i, n) in nodes.iter().enumerate() {
        if let Some(p) = n.parent {
            children[p as usize].push(i as u32);
        }
    }
    for c in children.iter_mut() {
        c.sort_by(|&a, &b| nodes[a as usize].label.cmp(&nodes[b as usize].label));
    }
    let mut order = vec![0u32];
    let mut k = 0;
    while k < order.len() {
        let n = order[k] as usize;
        order.extend_from_slice(&children[n]);
        k += 1;
    }
    let mut new_id = vec![0u32; nodes.len()];
    for (new, &old) in order.iter().enumerate() {
        new_id[old as usize] = new as u32;
    }
    let mut slots: Vec<Option<PNode>> = nodes.into_iter().map(Some).collect();
    order
        .iter()
        .map(|&old| {
            let mut n = slots[old as usize].take().expect("each node once");
            n.parent = n.parent.map(|p| new_id[p as usize]);
            n
        })
        .collect()
}

/// The names a filter mentions, resolved against one read's symbols.
#[derive(Default)]
pub struct FilterNames {
    include_services: Vec<palette_trace::Sym>,
    exclude_services: Vec<palette_trace::Sym>,
    include_apis: Vec<Api>,
    exclude_apis: Vec<Api>,
}

impl FilterNames {
    /// Resolves `filter`'s names to the symbols a read with
    /// `known_names = filter.names()` gives them.
    pub fn new(filter: &TraceFilter) -> FilterNames {
        let names = Interner::with_names(&filter.names());
        let names = &names;
        let services = |list: &[String]| list.iter().filter_map(|s| names.get(s)).collect();
        let apis = |list: &[String]| {
            list.iter()
                .filter_map(|a| {
                    let (s, o) = a.split_once(' ').or_else(|| a.split_once('/'))?;
                    Some(Api { service: names.get(s)?, operation: names.get(o)? })
                })
                .collect()
        };
        FilterNames {
            include_services: services(&filter.include_services),
            exclude_services: services(&filter.exclude_services),
            include_apis: apis(&filter.include_apis),
            exclude_apis: apis(&filter.exclude_apis),
        }
    }
    fn included_service(&self, a: Api) -> bool {
        self.include_services.contains(&a.service)
    }
    fn included_api(&self, a: Api) -> bool {
        self.include_apis.contains(&a)
    }
    fn excluded(&self, a: Api) -> bool {
        self.exclude_services.contains(&a.service) || self.exclude_apis.contains(&a)
    }
}
