//! Executing one API's model, step by step.
//!
//! The same walk drives the offline [`crate::Simulator`] and the live
//! runtime: an [`Execution`] yields [`Step`]s — do this much local work, then
//! make these calls concurrently (and wait for them or not) — and finally
//! the tail work. Whoever drives it decides what "work" and "call" mean:
//! the simulator adds numbers, the runtime sleeps or computes and sends
//! real requests. Choices are drawn from the caller's own counts where the
//! model has them, the marginal otherwise.

use palette_trace::rng::Rng;

use crate::model::{ApiId, Caller, Model, ModelKind, State, Transition};

/// At most this many stages per execution, so a hand-edited model with a
/// cycle of certain transitions still ends; more only where the API's PFA
/// has a longer path (see [`longest_path`]).
pub const MAX_STAGES_PER_EXECUTION: u32 = 10_000;

/// The most stages a path through `states` can make if the PFA's only
/// cycles are counted loops, as in every fitted model: each state once,
/// a loop as many times as its longest run.
pub fn longest_path(states: &[State]) -> u32 {
    states.iter().map(|s| s.repeats.iter().map(|r| r.0).max().unwrap_or(1).max(1)).fold(0u32, u32::saturating_add)
}

/// What an execution is conditioned on, besides its API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Context {
    /// The API that called this execution; `None` for a root request.
    pub caller: Caller,
}

impl Context {
    /// A root request.
    pub const ROOT: Context = Context { caller: None };
}

/// One step of an execution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step<'m> {
    /// Do `work_ns` of local work, then call every API of `calls`
    /// concurrently (a multiset: an API listed twice is called twice).
    Stage {
        work_ns: i64,
        /// The PFA state entered (for span attributes; 0 for naive models).
        state: u32,
        calls: &'m [ApiId],
        /// Whether the execution waits for the calls before its next step
        /// (λ ≥ 0.5: the work was measured that way) or lets them run on.
        wait: bool,
    },
    /// Do `work_ns` of tail work; the execution is over.
    Finish { work_ns: i64 },
}

/// The walk of one execution of one API.
pub struct Execution<'m> {
    model: &'m Model,
    api: ApiId,
    ctx: Context,
    /// Current PFA state (Palette models).
    state: usize,
    /// Visits left in the current counted loop.
    runs_left: u32,
    stages: u32,
    /// Stages this execution may make: [`MAX_STAGES_PER_EXECUTION`] until an
    /// execution gets that far, then the API's [`longest_path`] if longer.
    stage_cap: u32,
    cap_extended: bool,
    /// This execution's shared share of its calls' overheads.
    copula: Option<Copula>,
    /// Naive models: the calls still to make, one per step, as indices into
    /// the API's naive calls (last first).
    naive_calls: Vec<usize>,
    /// What the last stage's calls did (see [`Execution::observe_outcome`]).
    outcome: Option<u32>,
    /// Calls made so far: this execution's own outcome, for its caller.
    calls_made: u32,
    /// Makes no calls: its work is the API's observed latency.
    leaf: bool,
    finished: bool,
}

impl<'m> Execution<'m> {
    /// Starts an execution of `api` in `ctx`. With `truncated` (a depth or
    /// size limit was reached) the execution makes no calls and takes the
    /// API's observed latency as its work.
    pub fn new(model: &'m Model, api: ApiId, ctx: Context, truncated: bool, rng: &mut Rng) -> Execution<'m> {
        let a = &model.apis[api as usize];
        let rho = a.overhead_correlation;
        let copula = (rho > 0.0).then(|| Copula { shared: rho.sqrt() * rng.normal(), own: (1.0 - rho).sqrt() });
        let mut naive_calls = Vec::new();
        if let (ModelKind::Naive, Some(naive), false) = (model.kind, &a.naive, truncated) {
            for (i, call) in naive.calls.iter().enumerate() {
                let weights: Vec<f64> = call.per_execution.iter().map(|&(_, k)| k as f64).collect();
                let n = call.per_execution[rng.pick(&weights)].0;
                naive_calls.extend(std::iter::repeat_n(i, n as usize));
            }
            naive_calls.reverse();
        }
        let leaf = truncated || (model.kind == ModelKind::Palette && a.states.is_empty()) || {
            model.kind == ModelKind::Naive && a.naive.is_none()
        };
        Execution {
            model,
            api,
            ctx,
            state: 0,
            runs_left: 0,
            stages: 0,
            stage_cap: MAX_STAGES_PER_EXECUTION,
            cap_extended: false,
            copula,
            naive_calls,
            outcome: None,
            calls_made: 0,
            leaf,
            finished: false,
        }
    }

    /// Tells the execution a waited call to `callee` failed. Returns whether
    /// it goes on. It fails with the call (and stops at once, as a caller
    /// passing an error on does) with the learned probability for this
    /// callee; a failure the traces never showed this API get is always
    /// passed on. Draws from `rng` only for a learned probability strictly
    /// between 0 and 1.
    pub fn observe_failed_call(&mut self, callee: ApiId, rng: &mut Rng) -> bool {
        let failures = self.model.apis[self.api as usize].failures.as_ref();
        let passes_on = match failures.and_then(|f| f.propagation(callee)) {
            None => true,
            Some(q) if q <= 0.0 => false,
            Some(q) if q >= 1.0 => true,
            Some(q) => rng.f64() < q,
        };
        if passes_on {
            self.finished = true;
        }
        !passes_on
    }

    /// Whether the execution, now at its end, fails of itself: the API's
    /// own rate for this caller. Draws from `rng` only for an API that can
    /// fail, so models without failures keep their random streams.
    pub fn fails(&self, rng: &mut Rng) -> bool {
        let rate = self.model.apis[self.api as usize].failures.as_ref().map_or(0.0, |f| f.own_rate(self.ctx.caller));
        rate > 0.0 && (rate >= 1.0 || rng.f64() < rate)
    }

    /// The context this execution's own calls run in.
    pub fn child_context(&self) -> Context {
        Context { caller: Some(self.api) }
    }

    /// Tells the execution what the last stage's calls did: how many calls
    /// they made in turn (each callee's [`Execution::calls_made`], summed;
    /// the runtime carries it in a response header). The next choice is
    /// conditioned on it where the model says it matters.
    pub fn observe_outcome(&mut self, outcome: u32) {
        self.outcome = Some(outcome);
    }

    /// How many calls this execution has made so far.
    pub fn calls_made(&self) -> u32 {
        self.calls_made
    }

    /// The next step; after [`Step::Finish`] it keeps returning a zero finish.
    pub fn next_step(&mut self, rng: &mut Rng) -> Step<'m> {
        if self.finished {
            return Step::Finish { work_ns: 0 };
        }
        let model = self.model;
        let a = &model.apis[self.api as usize];
        if self.leaf {
            self.finished = true;
            return Step::Finish { work_ns: self.leaf_work_ns(rng) };
        }
        if model.kind == ModelKind::Naive {
            if self.stages >= self.stage_cap {
                self.finished = true;
                return Step::Finish { work_ns: 0 };
            }
            self.stages += 1;
            let Some(naive) = &a.naive else {
                // Leaf executions finished above; a naive API without calls has no steps.
                self.finished = true;
                return Step::Finish { work_ns: 0 };
            };
            return match self.naive_calls.pop() {
                Some(call) => {
                    self.calls_made += 1;
                    Step::Stage {
                        work_ns: 0,
                        state: 0,
                        calls: std::slice::from_ref(&naive.calls[call].callee),
                        wait: true,
                    }
                }
                None => {
                    self.finished = true;
                    Step::Finish { work_ns: naive.work.sample(rng.f64()) as i64 }
                }
            };
        }
        let from = self.state;
        let Some((taken, work_ns)) = self.take_transition(from as u32, rng) else {
            return Step::Finish { work_ns: 0 };
        };
        let states = &a.states;
        match states[from].next[taken].to {
            None => Step::Finish { work_ns },
            Some(next) => {
                let s = &states[next as usize];
                Step::Stage { work_ns, state: next, calls: &s.calls, wait: s.lambda >= 0.5 }
            }
        }
    }

    /// Leaves PFA state `state` of a Palette model: picks the transition
    /// (the loop's own while a counted loop has visits left, else one drawn
    /// for the caller and the last calls' outcome), samples its work, and
    /// enters the state it leads to, counting that state's calls. Returns
    /// the transition's index in `states[state].next` and its work in
    /// nanoseconds; `None` when the state has no usable transition or the
    /// execution has taken as many steps as it may (it is over). [`Execution::next_step`] walks with it, and
    /// generated code calls it from each state's function, which is why
    /// the state is an argument: the code says where it is.
    pub fn take_transition(&mut self, state: u32, rng: &mut Rng) -> Option<(usize, i64)> {
        let states = &self.model.apis[self.api as usize].states;
        if self.finished {
            return None;
        }
        if self.stages >= self.stage_cap && !self.cap_extended {
            // Only executions this long pay for walking the API's states.
            self.cap_extended = true;
            self.stage_cap = self.stage_cap.max(longest_path(states));
        }
        if self.stages >= self.stage_cap {
            self.finished = true;
            return None;
        }
        self.stages += 1;
        let at = state as usize;
        let Some(here) = states.get(at) else {
            self.finished = true;
            return None;
        };
        if at != self.state {
            // Code that jumped elsewhere than the walk would have: no loop carries over.
            self.state = at;
            self.runs_left = 0;
        }
        let tr = if !here.repeats.is_empty() && self.runs_left > 0 {
            here.next.iter().find(|t| t.to == Some(state))
        } else {
            choose(here, at, self.ctx, self.outcome.take(), rng)
        };
        let Some(tr) = tr else {
            self.finished = true;
            return None;
        };
        let taken = here.next.iter().position(|t| std::ptr::eq(t, tr)).expect("a transition of this state");
        let work_ns = tr.work.for_caller(self.ctx.caller).sample(rng.f64()) as i64;
        let Some(next) = tr.to else {
            self.finished = true;
            return Some((taken, work_ns));
        };
        if next == state {
            self.runs_left = self.runs_left.saturating_sub(1);
        } else {
            self.state = next as usize;
            self.runs_left = draw_runs(&states[self.state].repeats, rng).saturating_sub(1);
        }
        self.calls_made = self.calls_made.saturating_add(states[self.state].calls.len() as u32);
        Some((taken, work_ns))
    }

    /// A leaf's work: a draw of the API's observed latency, nanoseconds.
    pub fn leaf_work_ns(&self, rng: &mut Rng) -> i64 {
        self.model.apis[self.api as usize].latency.sample(rng.f64()) as i64
    }

    /// A call overhead (caller-observed latency minus the callee's own) for
    /// a call to `callee`, nanoseconds. Calls of one execution share part
    /// of their randomness (a Gaussian copula), as slow moments of a caller
    /// slow all its calls.
    pub fn overhead_ns(&self, callee: ApiId, rng: &mut Rng) -> i64 {
        let a = &self.model.apis[self.api as usize];
        if let Some(naive) = &a.naive {
            return naive.calls.iter().find(|c| c.callee == callee).map_or(0.0, |c| c.overhead.sample(rng.f64()))
                as i64;
        }
        let u = match self.copula {
            Some(c) => normal_cdf(c.shared + c.own * rng.normal()).clamp(0.0, 1.0 - 1e-12),
            None => rng.f64(),
        };
        a.overhead.iter().find(|o| o.callee == callee).map_or(0.0, |o| o.overhead.for_caller(self.ctx.caller).sample(u))
            as i64
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

/// Draws a transition out of state `index`. The most specific counts the
/// model kept decide: the caller's for the outcome of the stage just run
/// ([`Transition::by_outcome`]), then the caller's own
/// ([`Transition::by_caller`]). Any other caller chooses by what is left
/// when the listed callers' counts are taken out — the callers without
/// enough support for counts of their own, pooled — and by the marginal only
/// if nothing is left. (The marginal would hand a rare caller the common
/// callers' habits: one that always takes branch A would mostly take the
/// common caller's branch B.) A counted loop that has done its runs leaves
/// by one of its other transitions.
fn choose<'s>(
    state: &'s State,
    index: usize,
    ctx: Context,
    outcome: Option<u32>,
    rng: &mut Rng,
) -> Option<&'s Transition> {
    let leaving_loop = !state.repeats.is_empty();
    let usable = |t: &Transition| !(leaving_loop && t.to == Some(index as u32));
    let listed = state.next.iter().any(|t| t.by_caller.iter().any(|c| c.caller == ctx.caller));
    let by_outcome = |t: &Transition| {
        if !usable(t) {
            return 0.0;
        }
        let Some(o) = outcome else { return 0.0 };
        t.by_outcome.iter().find(|c| c.caller == ctx.caller && c.outcome == o).map_or(0.0, |c| c.count as f64)
    };
    let own = |t: &Transition| {
        if !usable(t) {
            return 0.0;
        }
        t.by_caller.iter().find(|c| c.caller == ctx.caller).map_or(0.0, |c| c.count as f64)
    };
    let rest = |t: &Transition| {
        if !usable(t) {
            return 0.0;
        }
        t.count.saturating_sub(t.by_caller.iter().map(|c| c.count).sum()) as f64
    };
    let marginal = |t: &Transition| if usable(t) { t.p } else { 0.0 };
    let total_of = |w: &dyn Fn(&Transition) -> f64| state.next.iter().map(w).sum::<f64>();
    let candidates: [&dyn Fn(&Transition) -> f64; 3] =
        if listed { [&by_outcome, &own, &marginal] } else { [&by_outcome, &rest, &marginal] };
    let (weight, total) = candidates.into_iter().map(|w| (w, total_of(w))).find(|(_, total)| *total > 0.0)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intervene::tests_support::shop;

    /// Stages an execution of `api` makes, calls counted per stage.
    fn stages(model: &Model, api: ApiId) -> u32 {
        let mut rng = Rng::new(1);
        let mut exec = Execution::new(model, api, Context::ROOT, false, &mut rng);
        let mut n = 0;
        while let Step::Stage { .. } = exec.next_step(&mut rng) {
            n += 1;
        }
        n
    }

    #[test]
    fn a_traced_loop_longer_than_the_default_bound_runs_in_full() {
        let mut model = shop();
        let home = 2;
        let runs = MAX_STAGES_PER_EXECUTION * 3;
        let state = &mut model.apis[home].states[1];
        let mut again = state.next[0].clone();
        again.to = Some(1);
        state.next = vec![again, state.next[0].clone()];
        state.repeats = vec![(runs, 1)];
        assert_eq!(longest_path(&model.apis[home].states), 1 + runs + 1);
        assert_eq!(stages(&model, home as ApiId), runs);
    }

    #[test]
    fn a_hand_made_cycle_still_ends() {
        let mut model = shop();
        let home = 2;
        // State 1 always goes back to 2, and 2 to 1: no way out.
        model.apis[home].states[1].next.retain(|t| t.to == Some(2));
        model.apis[home].states[1].next[0].p = 1.0;
        model.apis[home].states[2].next[0].to = Some(1);
        assert_eq!(stages(&model, home as ApiId), MAX_STAGES_PER_EXECUTION);
    }
}
