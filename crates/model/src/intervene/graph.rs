//! PFA surgery shared by the topology interventions: taking calls out of
//! stages (folding their latency into the caller's work when asked),
//! bypassing stages left without calls, and dropping or inserting APIs with
//! every reference renumbered.

use std::collections::BTreeSet;

use crate::model::{ApiId, CallerSketch, CondSketch, Model, ModelKind, State, Transition};
use crate::sketch::Sketch;

/// The latency a caller sees for one call to `callee`: the callee's own
/// latency plus the caller's overhead for the call, drawn independently.
pub(crate) fn call_latency(m: &Model, caller: ApiId, callee: ApiId) -> Sketch {
    let own = &m.apis[callee as usize].latency;
    let a = &m.apis[caller as usize];
    if let Some(naive) = &a.naive {
        return match naive.calls.iter().find(|c| c.callee == callee) {
            Some(c) => own.sum_independent(&c.overhead),
            None => own.clone(),
        };
    }
    match a.overhead.iter().find(|o| o.callee == callee) {
        Some(o) => own.sum_independent(&o.overhead.all),
        None => own.clone(),
    }
}

/// `a + b` for independent draws, per caller where either has its own.
pub(crate) fn cond_sum(a: &CondSketch, b: &CondSketch) -> CondSketch {
    let callers: BTreeSet<_> = a.by_caller.iter().chain(&b.by_caller).map(|c| c.caller).collect();
    CondSketch {
        all: a.all.sum_independent(&b.all),
        by_caller: callers
            .into_iter()
            .map(|caller| CallerSketch { caller, sketch: a.for_caller(caller).sum_independent(b.for_caller(caller)) })
            .collect(),
    }
}

/// Every sketch of a conditional distribution mapped by `f`.
pub(crate) fn cond_map(c: &mut CondSketch, f: &dyn Fn(&Sketch) -> Sketch) {
    c.all = f(&c.all);
    for s in &mut c.by_caller {
        s.sketch = f(&s.sketch);
    }
}

/// Takes the calls to APIs in `removed` out of `caller`'s stages. With
/// `keep_latency` the time they added is folded into the work before the
/// stage: the removed calls' latency beyond what the stage's remaining
/// calls take anyway (independent draws), so the caller's latency stays.
/// Stages left without calls are bypassed.
#[expect(clippy::needless_range_loop, reason = "the loop's body changes `m` and `preds` at the state it is at")]
pub(crate) fn strip_calls(m: &mut Model, caller: ApiId, removed: &dyn Fn(ApiId) -> bool, keep_latency: bool) {
    let ci = caller as usize;
    if m.kind == ModelKind::Naive || m.apis[ci].naive.is_some() {
        strip_naive(m, caller, removed, keep_latency);
        return;
    }
    // Who leads into each state: a PFA of a long traced run has as many
    // states as stages, and scanning them all for each one is quadratic.
    let mut preds = predecessors(&m.apis[ci].states);
    for s in 0..m.apis[ci].states.len() {
        let state = &m.apis[ci].states[s];
        let (gone, kept): (Vec<ApiId>, Vec<ApiId>) = state.calls.iter().partition(|&&c| removed(c));
        if gone.is_empty() {
            continue;
        }
        if keep_latency && state.lambda >= 0.5 {
            let lat_gone: Vec<Sketch> = gone.iter().map(|&c| call_latency(m, caller, c)).collect();
            let lat_kept: Vec<Sketch> = kept.iter().map(|&c| call_latency(m, caller, c)).collect();
            let parts: Vec<&Sketch> = lat_gone.iter().chain(&lat_kept).collect();
            let g = gone.len();
            let extra = Sketch::combine(&parts, |v| {
                let all = v.iter().copied().fold(0.0, f64::max);
                let rest = v[g..].iter().copied().fold(0.0, f64::max);
                all - rest
            });
            let extra = CondSketch { all: extra, by_caller: vec![] };
            for &p in &preds[s] {
                for t in m.apis[ci].states[p as usize].next.iter_mut().filter(|t| t.to == Some(s as u32)) {
                    t.work = cond_sum(&t.work, &extra);
                }
            }
        }
        m.apis[ci].states[s].calls = kept;
    }
    m.apis[ci].overhead.retain(|o| !removed(o.callee));
    // Bypassing changes no state's calls, so the empty ones are bypassed in
    // order, and removed (with one renumbering) once all are.
    let states = &mut m.apis[ci].states;
    let bypassed: Vec<bool> = (0..states.len()).map(|s| s > 0 && states[s].calls.is_empty()).collect();
    for s in (0..states.len()).filter(|&s| bypassed[s]) {
        bypass(states, s, &mut preds);
    }
    remove_states(states, &bypassed);
    // An API left with no calls at all keeps its walk (start → finish):
    // its work is what it did around the calls.
}

fn strip_naive(m: &mut Model, caller: ApiId, removed: &dyn Fn(ApiId) -> bool, keep_latency: bool) {
    let mut extra: Vec<(Sketch, f64)> = Vec::new();
    if let Some(naive) = &m.apis[caller as usize].naive {
        for c in naive.calls.iter().filter(|c| removed(c.callee)) {
            let n: u64 = c.per_execution.iter().map(|r| r.1).sum();
            let calls: u64 = c.per_execution.iter().map(|r| r.0 as u64 * r.1).sum();
            let per_exec = if n == 0 { 0.0 } else { calls as f64 / n as f64 };
            extra.push((call_latency(m, caller, c.callee), per_exec));
        }
    }
    let Some(naive) = &mut m.apis[caller as usize].naive else { return };
    naive.calls.retain(|c| !removed(c.callee));
    if keep_latency {
        for (lat, per_exec) in extra {
            naive.work = naive.work.sum_independent(&lat.scaled(per_exec));
        }
    }
}

/// Replaces every transition into state `s` by transitions straight to
/// where `s` leads (probabilities multiplied, work added), leaving `s`
/// unreachable for [`remove_states`]. A self-loop of `s` is dropped: the
/// stage it repeated is gone. `preds` (see [`predecessors`]) is kept up to date.
fn bypass(states: &mut [State], s: usize, preds: &mut [BTreeSet<u32>]) {
    let mut outs: Vec<Transition> = states[s].next.iter().filter(|t| t.to != Some(s as u32)).cloned().collect();
    let total: f64 = outs.iter().map(|t| t.p).sum();
    if outs.is_empty() || total <= 0.0 {
        outs = vec![Transition {
            to: None,
            count: states[s].visits,
            p: 1.0,
            by_caller: vec![],
            by_outcome: vec![],
            work: CondSketch::default(),
        }];
    } else {
        for t in &mut outs {
            t.p /= total;
        }
    }
    for t in &states[s].next {
        if let Some(to) = t.to {
            preds[to as usize].remove(&(s as u32));
        }
    }
    for p in std::mem::take(&mut preds[s]) {
        let p = p as usize;
        if p == s {
            continue;
        }
        let state = &mut states[p];
        let mut next = Vec::new();
        for t in std::mem::take(&mut state.next) {
            if t.to != Some(s as u32) {
                next.push(t);
                continue;
            }
            for u in &outs {
                next.push(join(&t, u, &outs));
            }
        }
        state.next = merge_same_target(next);
        for u in &outs {
            if let Some(to) = u.to {
                preds[to as usize].insert(p as u32);
            }
        }
    }
}

/// For each state, the states with a transition into it.
fn predecessors(states: &[State]) -> Vec<BTreeSet<u32>> {
    let mut preds = vec![BTreeSet::new(); states.len()];
    for (p, state) in states.iter().enumerate() {
        for to in state.next.iter().filter_map(|t| t.to) {
            preds[to as usize].insert(p as u32);
        }
    }
    preds
}

/// Deletes the states marked `gone` (none of them a target any more),
/// renumbering the transitions of the rest.
fn remove_states(states: &mut Vec<State>, gone: &[bool]) {
    if !gone.contains(&true) {
        return;
    }
    let mut new_id = vec![u32::MAX; states.len()];
    let mut next_id = 0u32;
    for (s, id) in new_id.iter_mut().enumerate() {
        if !gone[s] {
            *id = next_id;
            next_id += 1;
        }
    }
    let mut s = 0;
    states.retain(|_| {
        s += 1;
        !gone[s - 1]
    });
    for st in states.iter_mut() {
        for t in &mut st.next {
            t.to = t.to.map(|to| new_id[to as usize]);
        }
    }
}

/// `t` followed by `u` (one of `outs`, the ways out of the bypassed state).
fn join(t: &Transition, u: &Transition, outs: &[Transition]) -> Transition {
    // A caller that chose by its own counts at the bypassed state keeps its
    // share; others take the marginal.
    let share = |caller| {
        let own: u64 = outs.iter().flat_map(|o| &o.by_caller).filter(|c| c.caller == caller).map(|c| c.count).sum();
        if own == 0 {
            return u.p;
        }
        u.by_caller.iter().find(|c| c.caller == caller).map_or(0.0, |c| c.count as f64 / own as f64)
    };
    let mut by_caller = t.by_caller.clone();
    for c in &mut by_caller {
        c.count = (c.count as f64 * share(c.caller)).round() as u64;
    }
    let mut by_outcome = t.by_outcome.clone();
    for c in &mut by_outcome {
        c.count = (c.count as f64 * share(c.caller)).round() as u64;
    }
    Transition {
        to: u.to,
        count: (t.count as f64 * u.p).round() as u64,
        p: t.p * u.p,
        by_caller,
        by_outcome,
        work: cond_sum(&t.work, &u.work),
    }
}

/// One transition per target: probabilities and counts add, work sketches
/// merge weighted by the transitions' probabilities.
fn merge_same_target(mut next: Vec<Transition>) -> Vec<Transition> {
    next.sort_by_key(|t| t.to);
    for i in 0..next.len() {
        let shared = next.iter().filter(|t| t.to == next[i].to).count() > 1;
        if shared {
            let w = ((next[i].p * 100_000.0).round() as u64).max(1);
            cond_map(&mut next[i].work, &|s| s.with_weight(w));
        }
    }
    let mut out: Vec<Transition> = Vec::with_capacity(next.len());
    for t in next {
        match out.last_mut() {
            Some(last) if last.to == t.to => {
                last.p += t.p;
                last.count += t.count;
                for c in t.by_caller {
                    match last.by_caller.iter_mut().find(|x| x.caller == c.caller) {
                        Some(x) => x.count += c.count,
                        None => last.by_caller.push(c),
                    }
                }
                for c in t.by_outcome {
                    match last.by_outcome.iter_mut().find(|x| x.caller == c.caller && x.outcome == c.outcome) {
                        Some(x) => x.count += c.count,
                        None => last.by_outcome.push(c),
                    }
                }
                last.work.all.merge(&t.work.all);
                for c in t.work.by_caller {
                    match last.work.by_caller.iter_mut().find(|x| x.caller == c.caller) {
                        Some(x) => x.sketch.merge(&c.sketch),
                        None => last.work.by_caller.push(c),
                    }
                }
            }
            _ => out.push(t),
        }
    }
    // Sums of shares that make 1 can round to just above it.
    for t in &mut out {
        t.p = t.p.min(1.0);
    }
    out
}

/// Keeps the APIs with `keep[id]`, renumbering every reference; references
/// to dropped APIs go (a dropped caller's counts, edges, roots). Callers
/// must first strip calls to dropped APIs ([`strip_calls`]).
pub(crate) fn retain_apis(m: &mut Model, keep: &[bool]) {
    let mut map = vec![None; keep.len()];
    let mut next = 0;
    for (i, &k) in keep.iter().enumerate() {
        if k {
            map[i] = Some(next);
            next += 1;
        }
    }
    renumber(m, &map);
    let mut i = 0;
    m.apis.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    m.services = m.apis.iter().map(|a| a.service.clone()).collect::<BTreeSet<_>>().into_iter().collect();
}

/// Rewrites every API reference through `map` (old id → new id, `None`:
/// gone). The APIs themselves are not moved.
pub(crate) fn renumber(m: &mut Model, map: &[Option<ApiId>]) {
    let f = |id: ApiId| map[id as usize];
    let fc = |c: Option<ApiId>| -> Option<Option<ApiId>> {
        match c {
            None => Some(None),
            Some(id) => f(id).map(Some),
        }
    };
    m.roots.retain_mut(|r| f(r.api).map(|n| r.api = n).is_some());
    m.edges.retain_mut(|e| match (f(e.caller), f(e.callee)) {
        (Some(a), Some(b)) => {
            e.caller = a;
            e.callee = b;
            true
        }
        _ => false,
    });
    let cond = |c: &mut CondSketch| c.by_caller.retain_mut(|s| fc(s.caller).map(|n| s.caller = n).is_some());
    for a in &mut m.apis {
        a.callers.retain_mut(|c| fc(c.caller).map(|n| c.caller = n).is_some());
        for st in &mut a.states {
            st.calls = st.calls.iter().filter_map(|&c| f(c)).collect();
            st.calls.sort_unstable();
            for t in &mut st.next {
                t.by_caller.retain_mut(|c| fc(c.caller).map(|n| c.caller = n).is_some());
                t.by_outcome.retain_mut(|c| fc(c.caller).map(|n| c.caller = n).is_some());
                cond(&mut t.work);
            }
        }
        a.overhead.retain_mut(|o| match f(o.callee) {
            Some(n) => {
                o.callee = n;
                cond(&mut o.overhead);
                true
            }
            None => false,
        });
        if let Some(naive) = &mut a.naive {
            naive.calls.retain_mut(|c| f(c.callee).map(|n| c.callee = n).is_some());
        }
        if let Some(fails) = &mut a.failures {
            fails.own_by_caller.retain_mut(|c| fc(c.caller).map(|n| c.caller = n).is_some());
            fails.propagated.retain_mut(|c| f(c.callee).map(|n| c.callee = n).is_some());
        }
    }
    m.edges.sort_by_key(|e| (e.caller, e.callee, e.kind));
}

/// The APIs a root request can reach, by the calls the model can make.
pub(crate) fn reachable(m: &Model) -> Vec<bool> {
    let mut seen = vec![false; m.apis.len()];
    let mut stack: Vec<ApiId> = m.roots.iter().map(|r| r.api).collect();
    while let Some(a) = stack.pop() {
        if std::mem::replace(&mut seen[a as usize], true) {
            continue;
        }
        let api = &m.apis[a as usize];
        stack.extend(api.states.iter().flat_map(|s| s.calls.iter().copied()));
        if let Some(naive) = &api.naive {
            stack.extend(naive.calls.iter().map(|c| c.callee));
        }
    }
    seen
}

/// Drops every API no root request can reach any more.
pub(crate) fn prune_unreachable(m: &mut Model) {
    let keep = reachable(m);
    if keep.iter().all(|&k| k) {
        return;
    }
    retain_apis(m, &keep);
}

/// Takes calls to `removed` out of every API, then drops `removed` and
/// whatever only they reached. Refuses to drop every root API.
pub(crate) fn remove_apis(m: &mut Model, removed: &[bool], keep_latency: bool) -> Result<(), String> {
    if m.roots.iter().all(|r| removed[r.api as usize]) {
        return Err("this would remove every root API: nothing would be left to call".into());
    }
    for a in 0..m.apis.len() {
        if !removed[a] {
            strip_calls(m, a as ApiId, &|c| removed[c as usize], keep_latency);
        }
    }
    let keep: Vec<bool> = removed.iter().map(|r| !r).collect();
    retain_apis(m, &keep);
    prune_unreachable(m);
    Ok(())
}
