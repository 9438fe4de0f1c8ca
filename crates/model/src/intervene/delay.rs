//! `delay`: a fixed extra latency on every call into a service or an API —
//! a network-delay fault, as the caller observes it.

use serde::{Deserialize, Serialize};

use super::graph::cond_map;
use super::{Check, api, positive};
use crate::model::{CalleeOverhead, CondSketch, Model};
use crate::sketch::Sketch;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelaySpec {
    /// A service name, or an API (`service operation`).
    pub into: String,
    /// Milliseconds added to every call's caller-observed latency.
    pub add_ms: f64,
}

impl DelaySpec {
    pub fn apply(&self, m: &mut Model) -> Check {
        positive("add_ms", self.add_ms, true)?;
        let target: Vec<bool> = if m.services.contains(&self.into) {
            m.apis.iter().map(|a| a.service == self.into).collect()
        } else {
            let id = api(m, &self.into).map_err(|_| {
                format!("`into: {}` is neither a service nor an API (`service operation`) of the model", self.into)
            })?;
            (0..m.apis.len()).map(|i| i == id as usize).collect()
        };
        let add = self.add_ms * 1e6;
        let shift = |s: &Sketch| if s.is_empty() { fixed(add) } else { s.shifted(add) };
        for a in &mut m.apis {
            // The overhead sketch is what a caller adds to the callee's own
            // latency: shifting it delays exactly the calls into the target.
            let mut callees: Vec<u32> = a.states.iter().flat_map(|s| s.calls.iter().copied()).collect();
            callees.sort_unstable();
            callees.dedup();
            for c in callees.into_iter().filter(|&c| target[c as usize]) {
                if !a.overhead.iter().any(|o| o.callee == c) {
                    a.overhead.push(CalleeOverhead { callee: c, overhead: CondSketch::default() });
                }
            }
            a.overhead.sort_by_key(|o| o.callee);
            for o in a.overhead.iter_mut().filter(|o| target[o.callee as usize]) {
                cond_map(&mut o.overhead, &shift);
            }
            if let Some(naive) = &mut a.naive {
                for c in naive.calls.iter_mut().filter(|c| target[c.callee as usize]) {
                    c.overhead = shift(&c.overhead);
                }
            }
        }
        for e in m.edges.iter_mut().filter(|e| target[e.callee as usize]) {
            e.latency.mean += add;
            e.latency.p50 += add;
            e.latency.p90 += add;
            e.latency.p99 += add;
        }
        Ok(())
    }
}

fn fixed(v: f64) -> Sketch {
    let mut s = Sketch::new();
    s.add(v);
    s
}

#[cfg(test)]
mod tests {
    use crate::intervene::tests_support::shop;
    use crate::intervene::{apply, parse};
    use crate::{Model, Simulator};

    /// Mean caller-observed latency (CLIENT span) of calls into `service`, ms.
    fn into_latency(m: &Model, service: &str) -> f64 {
        let mut sim = Simulator::new(m, 3);
        let (mut sum, mut n) = (0.0, 0);
        for _ in 0..2000 {
            let (spans, names) = sim.trace().unwrap();
            for c in spans.iter().filter(|s| s.kind == palette_trace::SpanKind::Client) {
                let callee = spans.iter().find(|s| s.parent_id == c.span_id).unwrap();
                if names.resolve(callee.service) == service {
                    sum += c.duration_ns as f64 / 1e6;
                    n += 1;
                }
            }
        }
        sum / n as f64
    }

    #[test]
    fn delay_shifts_calls_into_the_service() {
        let m = shop();
        let e = apply(&m, &parse("- delay: { into: cart, add_ms: 245 }\n").unwrap()).unwrap();
        let (before, after) = (into_latency(&m, "cart"), into_latency(&e, "cart"));
        assert!((after - before - 245.0).abs() < 2.5, "{before} → {after}");
        let (before, after) = (into_latency(&m, "email"), into_latency(&e, "email"));
        assert!((after - before).abs() < 0.5, "email untouched: {before} → {after}");
        let err = apply(&m, &parse("- delay: { into: cart, add_ms: -3 }\n").unwrap()).unwrap_err().to_string();
        assert!(err.contains("`add_ms` must be a number ≥ 0"), "{err}");
        let err = apply(&m, &parse("- delay: { into: nowhere, add_ms: 3 }\n").unwrap()).unwrap_err().to_string();
        assert!(err.contains("neither a service nor an API"), "{err}");
    }
}
