//! `add`: a call from an existing API to a callee, made with a given
//! probability per execution; the callee API (and its service) is created
//! when new, as a leaf doing `work_ms` of work.

use serde::{Deserialize, Serialize};

use super::graph::renumber;
use super::{Check, api, positive};
use crate::model::{
    ApiId, ApiModel, CallerCount, CondSketch, Edge, EdgeKind, Model, NaiveCall, State, Summary, Transition,
};
use crate::sketch::Sketch;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddSpec {
    /// The calling API (`service operation`); it must exist.
    pub caller: String,
    /// The called API (`service operation`); created when new.
    pub callee: String,
    /// Share of the caller's executions that make the call, in (0, 1].
    pub probability: f64,
    /// A new callee's work per execution, milliseconds (required for a new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_ms: Option<f64>,
}

impl AddSpec {
    pub fn apply(&self, m: &mut Model) -> Check {
        let caller = api(m, &self.caller)?;
        if !(self.probability > 0.0 && self.probability <= 1.0) {
            return Err(format!("`probability` must be in (0, 1], not {}", self.probability));
        }
        let (callee, caller) = match m.find_api(&self.callee) {
            Some(c) => (c, caller),
            None => self.create(m, caller)?,
        };
        if m.edges.iter().any(|e| e.caller == caller && e.callee == callee) {
            return Err(format!("`{}` already calls `{}`", self.caller, self.callee));
        }
        let q = self.probability;
        let count = (m.apis[caller as usize].count as f64 * q).round() as u64;
        let a = &mut m.apis[caller as usize];
        if let Some(naive) = &mut a.naive {
            let execs = a.count.max(1);
            let with = ((execs as f64 * q).round() as u64).max(1);
            naive.calls.push(NaiveCall {
                callee,
                per_execution: vec![(0, execs.saturating_sub(with)), (1, with)],
                overhead: Sketch::new(),
            });
            naive.calls.sort_by_key(|c| c.callee);
        } else {
            add_call(a, callee, q);
        }
        let c = &mut m.apis[callee as usize];
        c.callers.push(CallerCount { caller: Some(caller), count });
        c.callers.sort_by_key(|c| c.caller);
        let latency = Summary::of(&m.apis[callee as usize].latency);
        m.edges.push(Edge { caller, callee, kind: EdgeKind::Rpc, protocol: None, count, latency });
        m.edges.sort_by_key(|e| (e.caller, e.callee, e.kind));
        Ok(())
    }

    /// Inserts the new callee API in order; returns its id and the caller's new id.
    fn create(&self, m: &mut Model, caller: ApiId) -> Check<(ApiId, ApiId)> {
        let (service, operation) = self
            .callee
            .split_once([' ', '/'])
            .filter(|(s, o)| !s.is_empty() && !o.trim().is_empty())
            .ok_or_else(|| format!("new callee `{}` must be written `service operation`", self.callee))?;
        let work = self.work_ms.ok_or_else(|| format!("`{}` is a new API: give its `work_ms`", self.callee))?;
        positive("work_ms", work, true)?;
        let mut latency = Sketch::new();
        latency.add(work * 1e6);
        let new = ApiModel {
            service: service.into(),
            operation: operation.trim().into(),
            count: 0,
            callers: vec![],
            latency,
            request_bytes: None,
            response_bytes: None,
            states: vec![],
            overhead: vec![],
            overhead_correlation: 0.0,
            naive: (m.kind == crate::ModelKind::Naive)
                .then(|| crate::model::NaiveApi { work: Sketch::new(), calls: vec![] }),
            failures: None,
        };
        let at = m.apis.partition_point(|a| (&a.service, &a.operation) < (&new.service, &new.operation));
        let map: Vec<Option<ApiId>> =
            (0..m.apis.len() as ApiId).map(|i| Some(if i as usize >= at { i + 1 } else { i })).collect();
        renumber(m, &map);
        m.apis.insert(at, new);
        if !m.services.iter().any(|s| s == service) {
            m.services.push(service.into());
            m.services.sort();
        }
        let caller = map[caller as usize].expect("kept");
        let a = &mut m.apis[at];
        if let Some(n) = &mut a.naive {
            n.work = a.latency.clone();
        }
        Ok((at as ApiId, caller))
    }
}

/// Every way into `finish` now goes, with probability `q`, through a new
/// last stage calling `callee` first.
fn add_call(a: &mut ApiModel, callee: ApiId, q: f64) {
    if a.states.is_empty() {
        // A leaf: its latency was its work; it becomes start → finish.
        let work = CondSketch { all: a.latency.clone(), by_caller: vec![] };
        a.states.push(State {
            calls: vec![],
            visits: a.count,
            lambda: 0.0,
            repeats: vec![],
            next: vec![Transition { to: None, count: a.count, p: 1.0, by_caller: vec![], by_outcome: vec![], work }],
        });
    }
    let k = a.states.len() as u32;
    let mut visits = 0;
    for s in &mut a.states {
        let mut extra = Vec::new();
        for t in s.next.iter_mut().filter(|t| t.to.is_none()) {
            let mut via = t.clone();
            via.to = Some(k);
            via.p = t.p * q;
            via.count = (t.count as f64 * q).round() as u64;
            via.by_caller.iter_mut().for_each(|c| c.count = (c.count as f64 * q).round() as u64);
            via.by_outcome.iter_mut().for_each(|c| c.count = (c.count as f64 * q).round() as u64);
            t.p *= 1.0 - q;
            t.count -= via.count.min(t.count);
            t.by_caller.iter_mut().for_each(|c| c.count = (c.count as f64 * (1.0 - q)).round() as u64);
            t.by_outcome.iter_mut().for_each(|c| c.count = (c.count as f64 * (1.0 - q)).round() as u64);
            visits += via.count;
            extra.push(via);
        }
        s.next.extend(extra);
        s.next.retain(|t| t.p > 0.0);
        s.next.sort_by_key(|t| t.to);
    }
    a.states.push(State {
        calls: vec![callee],
        visits,
        lambda: 1.0,
        repeats: vec![],
        next: vec![Transition {
            to: None,
            count: visits,
            p: 1.0,
            by_caller: vec![],
            by_outcome: vec![],
            work: CondSketch::default(),
        }],
    });
}

#[cfg(test)]
mod tests {
    use crate::intervene::tests_support::shop;
    use crate::intervene::{apply, parse};
    use crate::{ApiId, Simulator};

    #[test]
    fn add_creates_the_callee_and_calls_it_with_the_probability() {
        let m = shop();
        let text = "- add: { caller: cart get, callee: db query, probability: 0.3, work_ms: 2 }\n";
        let e = apply(&m, &parse(text).unwrap()).unwrap();
        assert_eq!(e.services, ["cart", "db", "email", "frontend"]);
        let db = e.find_api("db query").unwrap();
        let cart = e.find_api("cart get").unwrap();
        assert_eq!(e.roots[0].api, e.find_api("frontend home").unwrap());
        let mut sim = Simulator::new(&e, 5);
        let (mut carts, mut dbs) = (0, 0);
        for _ in 0..4000 {
            let (spans, names) = sim.trace().unwrap();
            for s in spans.iter().filter(|s| s.kind == palette_trace::SpanKind::Server) {
                match names.resolve(s.service) {
                    "cart" => carts += 1,
                    "db" => dbs += 1,
                    _ => {}
                }
            }
        }
        let share = dbs as f64 / carts as f64;
        assert!((share - 0.3).abs() < 0.03, "{share}");
        let _: ApiId = cart;
        let _ = db;
        let err = apply(&m, &parse("- add: { caller: cart get, callee: db query, probability: 0.3 }\n").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("give its `work_ms`"), "{err}");
        let err = apply(&m, &parse("- add: { caller: cart get, callee: email send, probability: 1.5 }\n").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("`probability` must be in (0, 1]"), "{err}");
    }
}
