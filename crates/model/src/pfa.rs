//! Coarsening an API's prefix tree into its PFA (ALERGIA-style).
//!
//! States of the prefix tree are considered in breadth-first order (the
//! "blue" frontier of the "red" states kept so far). A blue state merges into
//! the first red state with the same stage label whose future is
//! statistically compatible: for every outgoing choice (including finishing),
//! the two frequencies pass Hoeffding's test at confidence α,
//!
//!   |f₁/n₁ − f₂/n₂| < √(½·ln(2/α)) · (1/√n₁ + 1/√n₂),
//!
//! recursively for the choices both have (to a bounded depth). A merge folds
//! the blue subtree into the red state, adding counts, λ sums and work
//! sketches. A stage repeated right after itself always folds into one
//! *counted loop*: a single state that remembers how many consecutive visits
//! each run made, so a loop of 1–5 calls is one state that repeats 1–5 times
//! (exactly, not geometrically), and a page that always makes nine calls
//! still makes nine. Merges are only between states at the same depth (runs
//! of stages from start), so they never close a cycle: every path of the PFA
//! is as long as some traced one, and repetition is the counted loops' job.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{CallerCount, CallerSketch, CondSketch, FitOptions, OutcomeCount, State, Transition};
use crate::partial::{Moments, PApi, PCaller, PNode, WorkAcc};
use crate::sketch::Sketch;

/// How deep the compatibility test looks.
const MAX_DEPTH: usize = 8;

struct Edge {
    /// `None`: finish.
    to: Option<usize>,
    by_caller: BTreeMap<PCaller, WorkAcc>,
    /// The same transitions per (caller, outcome of the source state's stage).
    by_outcome: BTreeMap<(PCaller, u32), u64>,
}

impl Edge {
    fn count(&self) -> u64 {
        self.by_caller.values().map(|w| w.count).sum()
    }
    fn absorb(&mut self, other: &Edge) {
        for (c, w) in &other.by_caller {
            self.by_caller.entry(*c).or_default().merge(w);
        }
        for (k, n) in &other.by_outcome {
            *self.by_outcome.entry(*k).or_default() += n;
        }
    }
}

struct Graph {
    label: Vec<Vec<PApi>>,
    lambda: Vec<Moments>,
    edges: Vec<Vec<Edge>>,
    /// The red state that points at each blue or tree state.
    incoming: Vec<usize>,
    red: Vec<bool>,
    blue: BTreeSet<usize>,
    /// For loop states: how many consecutive visits a run makes (counted loops).
    repeats: Vec<BTreeMap<u32, u64>>,
    /// Runs of stages from start to the state (a repeated stage counts once).
    /// Only states of equal depth merge, so merging never closes a cycle:
    /// paths stay as long as the traced ones, and repetition is left to
    /// counted loops.
    depth: Vec<u32>,
}

impl Graph {
    fn from_tree(nodes: Vec<PNode>) -> Graph {
        let n = nodes.len();
        let mut g = Graph {
            label: Vec::with_capacity(n),
            lambda: Vec::with_capacity(n),
            edges: (0..n).map(|_| Vec::new()).collect(),
            incoming: vec![0; n],
            red: vec![false; n],
            blue: BTreeSet::new(),
            repeats: vec![BTreeMap::new(); n],
            depth: vec![0; n],
        };
        for (i, node) in nodes.into_iter().enumerate() {
            if let Some(p) = node.parent {
                g.edges[p as usize].push(Edge {
                    to: Some(i),
                    by_caller: node.enter.into_iter().collect(),
                    by_outcome: node.enter_outcome.into_iter().collect(),
                });
                g.incoming[i] = p as usize;
                // Parents come first in the canonical (breadth-first) order.
                g.depth[i] = g.depth[p as usize] + u32::from(g.label[p as usize] != node.label);
            }
            if !node.finish.is_empty() {
                g.edges[i].push(Edge {
                    to: None,
                    by_caller: node.finish.into_iter().collect(),
                    by_outcome: node.finish_outcome.into_iter().collect(),
                });
            }
            g.label.push(node.label);
            g.lambda.push(node.lambda);
        }
        g
    }

    fn visits(&self, s: usize) -> u64 {
        self.edges[s].iter().map(Edge::count).sum()
    }

    /// The edge of `s` to a state labelled `label` (or to finish for `None`).
    fn edge_to(&self, s: usize, label: Option<&[PApi]>) -> Option<usize> {
        self.edges[s].iter().position(|e| match (e.to, label) {
            (None, None) => true,
            (Some(t), Some(l)) => self.label[t] == l,
            _ => false,
        })
    }

    fn compatible(&self, r: usize, b: usize, alpha: f64, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return true;
        }
        let (nr, nb) = (self.visits(r), self.visits(b));
        if nr == 0 || nb == 0 {
            return true;
        }
        let bound = (0.5 * (2.0 / alpha).ln()).sqrt() * (1.0 / (nr as f64).sqrt() + 1.0 / (nb as f64).sqrt());
        let choices: Vec<Option<Vec<PApi>>> = self.edges[r]
            .iter()
            .chain(&self.edges[b])
            .map(|e| e.to.map(|t| self.label[t].clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for choice in &choices {
            let fr = self.edge_to(r, choice.as_deref()).map_or(0, |k| self.edges[r][k].count());
            let fb = self.edge_to(b, choice.as_deref()).map_or(0, |k| self.edges[b][k].count());
            if (fr as f64 / nr as f64 - fb as f64 / nb as f64).abs() >= bound {
                return false;
            }
        }
        for choice in choices.iter().flatten() {
            let (Some(kr), Some(kb)) = (self.edge_to(r, Some(choice)), self.edge_to(b, Some(choice))) else {
                continue;
            };
            let (Some(tr), Some(tb)) = (self.edges[r][kr].to, self.edges[b][kb].to) else { continue };
            if !self.compatible(tr, tb, alpha, depth + 1) {
                return false;
            }
        }
        true
    }

    /// Folds tree state `b` (and its subtree) into state `r`.
    fn fold(&mut self, r: usize, b: usize) {
        self.fold_from(r, b, false);
    }

    /// Folds without recording runs (the caller has counted them).
    fn fold_counted(&mut self, r: usize, b: usize) {
        self.fold_from(r, b, true);
    }

    /// The fold, depth first as a recursion would go (the order decides
    /// which tree state stands for a merged one, and so the coarsening), on
    /// an explicit stack: a subtree is as deep as the longest traced run of
    /// stages, far deeper than the call stack allows.
    fn fold_from(&mut self, r: usize, b: usize, counted: bool) {
        let mut stack: Vec<(usize, std::vec::IntoIter<Edge>)> = Vec::new();
        stack.push((r, self.enter_fold(r, b, counted)));
        while let Some((r, edges)) = stack.last_mut() {
            let r = *r;
            let Some(e) = edges.next() else {
                stack.pop();
                continue;
            };
            let label = e.to.map(|t| self.label[t].clone());
            match self.edge_to(r, label.as_deref()) {
                Some(k) => {
                    self.edges[r][k].absorb(&e);
                    if let (Some(rt), Some(t)) = (self.edges[r][k].to, e.to)
                        && rt != t
                    {
                        // Continuing r's own loop is part of the run counted above.
                        let edges = self.enter_fold(rt, t, rt == r);
                        stack.push((rt, edges));
                    }
                }
                None => {
                    if let Some(t) = e.to {
                        self.incoming[t] = r;
                        if self.red[r] {
                            self.blue.insert(t);
                        }
                    }
                    self.edges[r].push(e);
                }
            }
        }
    }

    /// The part of folding `b` into `r` that comes before its transitions:
    /// the run into a counted loop (once, at its head, unless `counted`) and
    /// the λ sums. Returns `b`'s transitions, still to fold.
    fn enter_fold(&mut self, r: usize, b: usize, counted: bool) -> std::vec::IntoIter<Edge> {
        if !counted && !self.repeats[r].is_empty() {
            for (d, c) in self.chain_runs(b) {
                *self.repeats[r].entry(d).or_default() += c;
            }
        }
        let sums = self.lambda[b];
        self.lambda[r].merge(&sums);
        std::mem::take(&mut self.edges[b]).into_iter()
    }

    /// Run lengths of the same-stage chain starting at tree state `head`:
    /// how many executions made exactly d consecutive visits. The chain is a
    /// path of distinct states, so no longer than there are states: runs of
    /// any traced length are counted in full.
    fn chain_runs(&self, head: usize) -> BTreeMap<u32, u64> {
        let mut runs = BTreeMap::new();
        let (mut at, mut d) = (head, 1u32);
        loop {
            let visits = self.visits(at);
            let next = self
                .edge_to(at, Some(&self.label[head]))
                .and_then(|k| self.edges[at][k].to.filter(|&t| t != at).map(|t| (t, self.edges[at][k].count())));
            let flow = next.map_or(0, |(_, c)| c);
            if visits > flow {
                *runs.entry(d).or_default() += visits - flow;
            }
            match next {
                Some((t, _)) if (d as usize) < self.label.len() => {
                    at = t;
                    d += 1;
                }
                _ => return runs,
            }
        }
    }
}

/// Coarsens the prefix tree `nodes` (canonical order, node 0 = start) into
/// PFA states with their GCM nodes.
pub fn coarsen(nodes: Vec<PNode>, opts: &FitOptions) -> Vec<State> {
    if nodes.is_empty() {
        return Vec::new();
    }
    let mut g = Graph::from_tree(nodes);
    g.red[0] = true;
    // Only states of equal depth merge: keyed by depth too, a long run of
    // stages does not scan every red state with its label at each step.
    let mut red_by_label: BTreeMap<(u32, Vec<PApi>), Vec<usize>> = BTreeMap::new();
    let first: Vec<usize> = g.edges[0].iter().filter_map(|e| e.to).collect();
    g.blue.extend(first);
    while let Some(b) = g.blue.pop_first() {
        let p = g.incoming[b];
        // A stage repeated right after itself becomes a counted loop: one
        // state, with the distribution of how many times it runs.
        let repetition = p != 0 && g.label[p] == g.label[b];
        if repetition && g.repeats[p].is_empty() {
            g.repeats[p] = g.chain_runs(p);
            let k = g.edges[p].iter().position(|e| e.to == Some(b)).expect("the parent points at b");
            g.edges[p][k].to = Some(p);
            g.fold_counted(p, b);
            continue;
        }
        let target = if repetition {
            Some(p)
        } else {
            red_by_label
                .get(&(g.depth[b], g.label[b].clone()))
                .and_then(|reds| reds.iter().copied().find(|&r| g.compatible(r, b, opts.confidence, 0)))
        };
        match target {
            Some(r) => {
                let k = g.edges[p].iter().position(|e| e.to == Some(b)).expect("the parent points at b");
                g.edges[p][k].to = Some(r);
                g.fold(r, b);
            }
            None => {
                g.red[b] = true;
                red_by_label.entry((g.depth[b], g.label[b].clone())).or_default().push(b);
                let targets: Vec<usize> = g.edges[b].iter().filter_map(|e| e.to).filter(|&t| !g.red[t]).collect();
                g.blue.extend(targets);
            }
        }
    }
    // Number the states breadth-first from start, transitions ordered by
    // target label with finish last.
    for s in 0..g.edges.len() {
        let mut edges = std::mem::take(&mut g.edges[s]);
        edges.sort_by(|a, b| match (a.to, b.to) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (Some(x), Some(y)) => g.label[x].cmp(&g.label[y]),
        });
        g.edges[s] = edges;
    }
    let mut order = vec![0usize];
    let mut id = vec![u32::MAX; g.edges.len()];
    id[0] = 0;
    let mut k = 0;
    while k < order.len() {
        let s = order[k];
        for e in &g.edges[s] {
            if let Some(t) = e.to
                && id[t] == u32::MAX
            {
                id[t] = order.len() as u32;
                order.push(t);
            }
        }
        k += 1;
    }
    order.iter().map(|&s| state(&g, s, &id, opts)).collect()
}

fn state(g: &Graph, s: usize, id: &[u32], opts: &FitOptions) -> State {
    let visits = g.visits(s);
    // λ is the share of the slowest call the caller waits for, so at most 1.
    // The least-squares fit can exceed it (when a call's latency never
    // varies, its intercept is pinned at 0 and λ = mean stage time / latency;
    // or when the work after a call grows with it), but the work after a
    // waited stage is measured from the call's end, so λ > 1 would count
    // that work twice.
    let lambda = if s == 0 { 0.0 } else { round6(g.lambda[s].lambda()) };
    let waited = lambda >= 0.5;
    // Callers with enough support at this state get their own choices.
    let mut caller_visits: BTreeMap<PCaller, u64> = BTreeMap::new();
    for e in &g.edges[s] {
        for (c, w) in &e.by_caller {
            *caller_visits.entry(*c).or_default() += w.count;
        }
    }
    let conditioned: Vec<PCaller> = if caller_visits.len() > 1 {
        caller_visits.iter().filter(|(_, n)| **n >= opts.min_caller_support).map(|(c, _)| *c).collect()
    } else {
        Vec::new()
    };
    let by_outcome = outcome_conditioned(g, s, opts);
    let next = g.edges[s]
        .iter()
        .map(|e| {
            let count = e.count();
            let by_outcome = by_outcome
                .iter()
                .filter_map(|&(caller, outcome)| {
                    e.by_outcome.get(&(caller, outcome)).map(|&count| OutcomeCount { caller, outcome, count })
                })
                .collect();
            let by_caller = conditioned
                .iter()
                .filter_map(|c| {
                    e.by_caller.get(c).filter(|w| w.count > 0).map(|w| CallerCount { caller: *c, count: w.count })
                })
                .collect();
            let pick = |w: &WorkAcc| if waited { w.waited.clone() } else { w.detached.clone() };
            let mut all = Sketch::new();
            for w in e.by_caller.values() {
                all.merge(&pick(w));
            }
            let work_callers: Vec<CallerSketch> = if e.by_caller.len() > 1 {
                e.by_caller
                    .iter()
                    .filter(|(_, w)| w.count >= opts.min_caller_support)
                    .map(|(c, w)| CallerSketch { caller: *c, sketch: pick(w) })
                    .collect()
            } else {
                Vec::new()
            };
            Transition {
                to: e.to.map(|t| id[t]),
                count,
                p: if visits == 0 { 0.0 } else { round6(count as f64 / visits as f64) },
                by_caller,
                by_outcome,
                work: CondSketch { all, by_caller: work_callers },
            }
        })
        .collect();
    State {
        calls: g.label[s].clone(),
        visits,
        lambda,
        repeats: g.repeats[s].iter().map(|(&d, &c)| (d, c)).collect(),
        next,
    }
}

/// The (caller, outcome) pairs whose choices at state `s` differ from their
/// caller's as a whole: a choice that depends on what the state's calls did.
/// The test compares each transition's share among the pair's samples
/// with the caller's, against the standard error of a sample of that size
/// drawn from the caller's own samples (without replacement, so a pair that
/// is most of the caller's samples needs less), at about the fit's
/// confidence; pairs need `min_outcome_support` samples. Only those pairs
/// are kept, so the model grows where the outcome matters and nowhere else.
fn outcome_conditioned(g: &Graph, s: usize, opts: &FitOptions) -> Vec<(PCaller, u32)> {
    let edges = &g.edges[s];
    if edges.len() < 2 {
        return Vec::new();
    }
    let mut visits: BTreeMap<(PCaller, u32), u64> = BTreeMap::new();
    for e in edges {
        for (k, n) in &e.by_outcome {
            *visits.entry(*k).or_default() += n;
        }
    }
    let caller_visits = |c: PCaller| -> u64 { edges.iter().map(|e| e.by_caller.get(&c).map_or(0, |w| w.count)).sum() };
    let z = (2.0 * (2.0 / opts.confidence).ln()).sqrt();
    visits
        .iter()
        .filter(|&(&(caller, outcome), &n)| {
            let total = caller_visits(caller);
            if n < opts.min_outcome_support || n >= total {
                return false;
            }
            let finite = (total - n) as f64 / (total - 1) as f64;
            edges.iter().any(|e| {
                let own = e.by_outcome.get(&(caller, outcome)).copied().unwrap_or(0) as f64 / n as f64;
                let all = e.by_caller.get(&caller).map_or(0, |w| w.count) as f64 / total as f64;
                let se = (all * (1.0 - all) / n as f64 * finite).sqrt();
                se > 0.0 && (own - all).abs() > z * se
            })
        })
        .map(|(&k, _)| k)
        .collect()
}

/// Six decimals: readable in model.json, and far below any sampling noise.
pub(crate) fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One execution's step into a node, or its finish there.
    fn once() -> Vec<(PCaller, WorkAcc)> {
        let mut w = WorkAcc { count: 1, ..WorkAcc::default() };
        w.waited.add(1_000.0);
        w.detached.add(1_000.0);
        vec![(None, w)]
    }

    /// Appends a path of stages under `from`, one execution finishing at its end.
    fn path(nodes: &mut Vec<PNode>, from: u32, labels: impl Iterator<Item = PApi>) {
        let mut parent = from;
        for label in labels {
            nodes.push(PNode { parent: Some(parent), label: vec![label], enter: once(), ..PNode::default() });
            parent = nodes.len() as u32 - 1;
        }
        nodes.last_mut().expect("a non-empty path").finish = once();
    }

    #[test]
    fn a_run_longer_than_any_stack_is_one_counted_loop() {
        let runs = 50_000;
        let mut nodes = vec![PNode::default()];
        path(&mut nodes, 0, std::iter::repeat_n(7, runs));
        let states = coarsen(nodes, &FitOptions::default());
        assert_eq!(states.len(), 2, "start and the loop");
        assert_eq!(states[1].calls, vec![7]);
        assert_eq!(states[1].repeats, vec![(runs as u32, 1)], "the run is counted in full");
        assert_eq!(states[1].visits, runs as u64);
    }

    #[test]
    fn a_long_subtree_folds_into_its_twin() {
        // Two executions that differ only in their first stage: the second's
        // whole tail (50,000 stages) folds into the first's.
        let n = 50_000u32;
        let mut nodes = vec![PNode::default()];
        let tail = |first: PApi| std::iter::once(first).chain((1..n).map(|i| 10 + i % 3));
        path(&mut nodes, 0, tail(1));
        path(&mut nodes, 0, tail(2));
        let states = coarsen(crate::fit::canonical_tree(nodes), &FitOptions::default());
        assert_eq!(states.len(), n as usize + 2, "start, the two first stages, one shared tail");
        let last = states.iter().find(|s| s.next.iter().any(|t| t.to.is_none())).expect("a state that finishes");
        assert_eq!((last.visits, last.next.len()), (2, 1), "both executions end in the shared tail");
    }
}
