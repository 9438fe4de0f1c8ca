//! From a partial fit to a model, and merging partials.

use std::collections::BTreeMap;

use crate::fit::canonical_tree;
use crate::model::{
    ApiModel, CalleeFailCount, CalleeOverhead, CallerCount, CallerFailCount, CallerSketch, CondSketch, Edge, FORMAT,
    FailCount, Failures, FitOptions, Model, ModelKind, NaiveApi, NaiveCall, Provenance, RootCount, Summary,
};
use crate::partial::{PApi, PCaller, PNode, Partial, PartialApi, PartialEdge, WorkAcc};
use crate::pfa::coarsen;
use crate::sketch::Sketch;

/// Builds the model of `kind` from everything a (possibly merged) partial counted.
pub fn build_model(partial: &Partial, kind: ModelKind, min_root_support: u64) -> Model {
    build_model_owned(partial.clone(), kind, min_root_support)
}

/// [`build_model`], consuming the partial so its memory is reused.
pub fn build_model_owned(mut partial: Partial, kind: ModelKind, min_root_support: u64) -> Model {
    let opts = &partial.options.clone();
    let parts = std::mem::take(&mut partial.apis);
    let mut services: Vec<String> = partial.api_names.iter().map(|(s, _)| s.clone()).collect();
    services.dedup();
    let apis = partial
        .api_names
        .iter()
        .zip(parts)
        .map(|((service, operation), p)| api_model(service, operation, p, kind, opts))
        .collect();
    let roots = partial
        .roots
        .iter()
        .filter(|(_, n)| *n >= min_root_support)
        .map(|&(api, count)| RootCount { api, count, failed: count_of(&partial.failed_roots, api) })
        .collect();
    let edges = partial
        .edges
        .iter()
        .map(|e| Edge {
            caller: e.caller,
            callee: e.callee,
            kind: e.kind,
            protocol: e.protocol.clone(),
            count: e.count,
            latency: Summary::of(&e.latency),
        })
        .collect();
    Model {
        format: FORMAT.into(),
        kind,
        options: opts.clone(),
        provenance: Provenance {
            inputs: partial.inputs.clone(),
            traces: partial.traces,
            spans: partial.spans,
            interventions: Vec::new(),
        },
        services,
        apis,
        roots,
        edges,
        deploy: Default::default(),
    }
}

fn api_model(service: &str, operation: &str, mut p: PartialApi, kind: ModelKind, opts: &FitOptions) -> ApiModel {
    let callers = p.callers.iter().map(|&(caller, count)| CallerCount { caller, count }).collect();
    let some = |s: &Sketch| (!s.is_empty()).then(|| s.clone());
    let mut model = ApiModel {
        service: service.into(),
        operation: operation.into(),
        count: p.count,
        callers,
        latency: std::mem::take(&mut p.latency),
        request_bytes: some(&p.request_bytes),
        response_bytes: some(&p.response_bytes),
        states: Vec::new(),
        overhead: Vec::new(),
        overhead_correlation: 0.0,
        naive: None,
        failures: failures(&p, opts),
    };
    match kind {
        ModelKind::Palette => {
            model.states = coarsen(std::mem::take(&mut p.nodes), opts);
            model.overhead = overheads(&p, opts);
            model.overhead_correlation = crate::pfa::round6(p.overhead_pairs.correlation());
        }
        ModelKind::Naive => model.naive = Some(naive(&p)),
    }
    model
}

/// The API's failures, from its counts; `None` when it neither failed nor
/// saw a call fail (an API that saw calls fail and never failed has
/// learned that it does not pass them on).
fn failures(p: &PartialApi, opts: &FitOptions) -> Option<Failures> {
    if p.failed == 0 && p.after_failed_call.is_empty() {
        return None;
    }
    let count = |list: &[(u64, u64)]| {
        let (executions, failed) = list.iter().fold((0, 0), |(e, f), &(a, b)| (e + a, f + b));
        FailCount { executions, failed }
    };
    let per_caller: Vec<(PCaller, FailCount)> =
        p.clean.iter().map(|&(c, n)| (c, FailCount { executions: n, failed: count_of(&p.clean_failed, c) })).collect();
    let own = count(&per_caller.iter().map(|(_, f)| (f.executions, f.failed)).collect::<Vec<_>>());
    // A caller keeps its own rate where it has the support for one and the
    // rate is not the marginal's within what its sample size can tell.
    let own_by_caller = if per_caller.len() > 1 {
        per_caller
            .iter()
            .filter(|(_, f)| f.executions >= opts.min_caller_support)
            .filter(|(_, f)| {
                let p0 = own.rate();
                let se = (p0 * (1.0 - p0) / f.executions as f64).sqrt();
                (f.rate() - p0).abs() > 3.0 * se.max(1e-9)
            })
            .map(|&(caller, count)| CallerFailCount { caller, count })
            .collect()
    } else {
        Vec::new()
    };
    let propagated = p
        .after_failed_call
        .iter()
        .map(|&(callee, n)| CalleeFailCount {
            callee,
            count: FailCount { executions: n, failed: count_of(&p.after_failed_call_failed, callee) },
        })
        .collect();
    Some(Failures { failed: p.failed, own, own_by_caller, propagated, forced: None })
}

fn count_of<K: PartialEq>(list: &[(K, u64)], key: K) -> u64 {
    list.iter().find(|(k, _)| *k == key).map_or(0, |(_, n)| *n)
}

/// Per callee, the overhead sketch conditioned on this API's caller.
fn overheads(p: &PartialApi, opts: &FitOptions) -> Vec<CalleeOverhead> {
    let mut by_callee: BTreeMap<PApi, Vec<(PCaller, &Sketch)>> = BTreeMap::new();
    for ((callee, caller), s) in &p.overhead {
        by_callee.entry(*callee).or_default().push((*caller, s));
    }
    by_callee
        .into_iter()
        .map(|(callee, per_caller)| {
            let mut all = Sketch::new();
            for (_, s) in &per_caller {
                all.merge(s);
            }
            let by_caller = if per_caller.len() > 1 {
                per_caller
                    .iter()
                    .filter(|(_, s)| s.n >= opts.min_caller_support)
                    .map(|(c, s)| CallerSketch { caller: *c, sketch: (*s).clone() })
                    .collect()
            } else {
                Vec::new()
            };
            CalleeOverhead { callee, overhead: CondSketch { all, by_caller } }
        })
        .collect()
}

fn naive(p: &PartialApi) -> NaiveApi {
    let mut calls: BTreeMap<PApi, Vec<(u32, u64)>> = BTreeMap::new();
    for &((callee, n), k) in &p.calls_per_execution {
        calls.entry(callee).or_default().push((n, k));
    }
    let mut overhead: BTreeMap<PApi, Sketch> = BTreeMap::new();
    for ((callee, _), s) in &p.overhead {
        overhead.entry(*callee).or_default().merge(s);
    }
    NaiveApi {
        work: p.naive_work.clone(),
        calls: calls
            .into_iter()
            .map(|(callee, mut per)| {
                let with_calls: u64 = per.iter().map(|(_, k)| k).sum();
                if p.count > with_calls {
                    per.insert(0, (0, p.count - with_calls));
                }
                NaiveCall { callee, per_execution: per, overhead: overhead.remove(&callee).unwrap_or_default() }
            })
            .collect(),
    }
}

/// Merges partials of disjoint inputs: exact, and the result is canonical,
/// so the order of the partials does not matter beyond the input list.
/// Partials fitted with different options do not merge.
pub fn merge_partials(parts: &[Partial]) -> Result<Partial, String> {
    if let Some(first) = parts.first()
        && let Some((i, _)) = parts.iter().enumerate().find(|(_, p)| p.options != first.options)
    {
        return Err(format!(
            "partial {} was fitted with other options than partial 1: {:?} vs {:?}",
            i + 1,
            parts[i].options,
            first.options
        ));
    }
    let mut names: Vec<(String, String)> = parts.iter().flat_map(|p| p.api_names.iter().cloned()).collect();
    names.sort();
    names.dedup();
    let index: BTreeMap<&(String, String), PApi> = names.iter().enumerate().map(|(i, n)| (n, i as PApi)).collect();
    let mut out = Partial {
        format: crate::partial::PARTIAL_FORMAT.into(),
        options: parts.first().map(|p| p.options.clone()).unwrap_or_default(),
        inputs: parts.iter().flat_map(|p| p.inputs.iter().cloned()).collect(),
        traces: parts.iter().map(|p| p.traces).sum(),
        spans: parts.iter().map(|p| p.spans).sum(),
        api_names: names.clone(),
        apis: vec![PartialApi::default(); names.len()],
        roots: Vec::new(),
        failed_roots: Vec::new(),
        edges: Vec::new(),
    };
    let mut roots: BTreeMap<PApi, u64> = BTreeMap::new();
    let mut edges: BTreeMap<(PApi, PApi, crate::model::EdgeKind), PartialEdge> = BTreeMap::new();
    for part in parts {
        let map: Vec<PApi> = part.api_names.iter().map(|n| index[n]).collect();
        let m = |a: PApi| map[a as usize];
        let mc = |c: PCaller| c.map(m);
        for (i, api) in part.apis.iter().enumerate() {
            let target = &mut out.apis[m(i as PApi) as usize];
            merge_api(target, api, &m, &mc);
        }
        for &(a, n) in &part.roots {
            *roots.entry(m(a)).or_default() += n;
        }
        out.failed_roots = add_counts(&out.failed_roots, part.failed_roots.iter().map(|&(a, n)| (m(a), n)));
        for e in &part.edges {
            let key = (m(e.caller), m(e.callee), e.kind);
            let entry = edges.entry(key).or_insert_with(|| PartialEdge {
                caller: key.0,
                callee: key.1,
                kind: key.2,
                ..PartialEdge::default()
            });
            entry.count += e.count;
            entry.latency.merge(&e.latency);
            entry.protocol = match (entry.protocol.take(), e.protocol.clone()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    out.roots = roots.into_iter().collect();
    out.edges = edges.into_values().collect();
    Ok(out)
}

fn merge_api(target: &mut PartialApi, api: &PartialApi, m: &dyn Fn(PApi) -> PApi, mc: &dyn Fn(PCaller) -> PCaller) {
    target.count += api.count;
    target.callers = add_counts(&target.callers, api.callers.iter().map(|&(c, n)| (mc(c), n)));
    target.latency.merge(&api.latency);
    target.request_bytes.merge(&api.request_bytes);
    target.response_bytes.merge(&api.response_bytes);
    target.naive_work.merge(&api.naive_work);
    target.overhead_pairs.merge(&api.overhead_pairs);
    let mut overhead: BTreeMap<(PApi, PCaller), Sketch> = target.overhead.drain(..).collect();
    for ((callee, caller), s) in &api.overhead {
        overhead.entry((m(*callee), mc(*caller))).or_default().merge(s);
    }
    target.overhead = overhead.into_iter().collect();
    target.calls_per_execution =
        add_counts(&target.calls_per_execution, api.calls_per_execution.iter().map(|&((c, n), k)| ((m(c), n), k)));
    target.failed += api.failed;
    target.clean = add_counts(&target.clean, api.clean.iter().map(|&(c, n)| (mc(c), n)));
    target.clean_failed = add_counts(&target.clean_failed, api.clean_failed.iter().map(|&(c, n)| (mc(c), n)));
    target.after_failed_call =
        add_counts(&target.after_failed_call, api.after_failed_call.iter().map(|&(c, n)| (m(c), n)));
    target.after_failed_call_failed =
        add_counts(&target.after_failed_call_failed, api.after_failed_call_failed.iter().map(|&(c, n)| (m(c), n)));
    // Trees merge by label, from the start node down.
    let remapped: Vec<PNode> = api
        .nodes
        .iter()
        .map(|n| {
            let mut label: Vec<PApi> = n.label.iter().map(|&a| m(a)).collect();
            label.sort_unstable();
            PNode {
                parent: n.parent,
                label,
                enter: n.enter.iter().map(|(c, w)| (mc(*c), w.clone())).collect(),
                finish: n.finish.iter().map(|(c, w)| (mc(*c), w.clone())).collect(),
                lambda: n.lambda,
                enter_outcome: add_counts(&[], n.enter_outcome.iter().map(|&((c, o), k)| ((mc(c), o), k))),
                finish_outcome: add_counts(&[], n.finish_outcome.iter().map(|&((c, o), k)| ((mc(c), o), k))),
            }
        })
        .collect();
    target.nodes = merge_trees(std::mem::take(&mut target.nodes), remapped);
}

fn add_counts<K: Ord + Copy>(a: &[(K, u64)], b: impl Iterator<Item = (K, u64)>) -> Vec<(K, u64)> {
    let mut m: BTreeMap<K, u64> = a.iter().copied().collect();
    for (k, n) in b {
        *m.entry(k).or_default() += n;
    }
    m.into_iter().collect()
}

fn add_work(a: &mut Vec<(PCaller, WorkAcc)>, b: &[(PCaller, WorkAcc)]) {
    let mut m: BTreeMap<PCaller, WorkAcc> = a.drain(..).collect();
    for (c, w) in b {
        m.entry(*c).or_default().merge(w);
    }
    *a = m.into_iter().collect();
}

fn merge_trees(mut a: Vec<PNode>, b: Vec<PNode>) -> Vec<PNode> {
    if a.is_empty() {
        return canonical_tree(b);
    }
    if b.is_empty() {
        return a;
    }
    // Map each node of b to its node in a (by parent and label), adding new ones.
    let mut child_of: BTreeMap<(u32, Vec<PApi>), u32> = BTreeMap::new();
    for (i, n) in a.iter().enumerate() {
        if let Some(p) = n.parent {
            child_of.insert((p, n.label.clone()), i as u32);
        }
    }
    let mut map = vec![0u32; b.len()];
    for (i, n) in b.into_iter().enumerate() {
        let Some(p) = n.parent else {
            add_work(&mut a[0].finish, &n.finish);
            a[0].finish_outcome = add_counts(&a[0].finish_outcome, n.finish_outcome.iter().copied());
            a[0].lambda.merge(&n.lambda);
            continue;
        };
        let parent = map[p as usize];
        let key = (parent, n.label.clone());
        match child_of.get(&key) {
            Some(&k) => {
                map[i] = k;
                let t = &mut a[k as usize];
                add_work(&mut t.enter, &n.enter);
                add_work(&mut t.finish, &n.finish);
                t.enter_outcome = add_counts(&t.enter_outcome, n.enter_outcome.iter().copied());
                t.finish_outcome = add_counts(&t.finish_outcome, n.finish_outcome.iter().copied());
                t.lambda.merge(&n.lambda);
            }
            None => {
                let k = a.len() as u32;
                map[i] = k;
                child_of.insert(key, k);
                a.push(PNode { parent: Some(parent), ..n });
            }
        }
    }
    canonical_tree(a)
}
