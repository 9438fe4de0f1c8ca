//! `remove`: a service, an API or a call edge leaves the model. Callers'
//! stages lose the calls (stages left empty are bypassed, probabilities
//! renormalised); with `keep_latency` the calls' latency becomes the
//! callers' work. APIs no root request reaches any more go too.

use serde::{Deserialize, Serialize};

use super::graph::{prune_unreachable, remove_apis, strip_calls};
use super::{Check, api, service_apis};
use crate::model::Model;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveSpec {
    /// Remove every API of this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Remove this API (`service operation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Remove only the calls along this edge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<EdgeSpec>,
    /// Fold the removed calls' latency into the callers' work, so the
    /// callers take as long as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_latency: bool,
}

/// A call edge, by API names (`service operation`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    pub caller: String,
    pub callee: String,
}

impl RemoveSpec {
    pub fn apply(&self, m: &mut Model) -> Check {
        match (&self.service, &self.api, &self.edge) {
            (Some(s), None, None) => {
                let apis = service_apis(m, s)?;
                let mut removed = vec![false; m.apis.len()];
                apis.iter().for_each(|&a| removed[a as usize] = true);
                remove_apis(m, &removed, self.keep_latency)
            }
            (None, Some(a), None) => {
                let id = api(m, a)?;
                let mut removed = vec![false; m.apis.len()];
                removed[id as usize] = true;
                remove_apis(m, &removed, self.keep_latency)
            }
            (None, None, Some(e)) => {
                let (caller, callee) = (api(m, &e.caller)?, api(m, &e.callee)?);
                if !m.edges.iter().any(|x| x.caller == caller && x.callee == callee) {
                    return Err(format!("there is no edge `{}` → `{}`", e.caller, e.callee));
                }
                strip_calls(m, caller, &|c| c == callee, self.keep_latency);
                m.edges.retain(|x| !(x.caller == caller && x.callee == callee));
                prune_unreachable(m);
                Ok(())
            }
            _ => Err("give exactly one of `service`, `api` or `edge`".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::intervene::tests_support::shop;
    use crate::intervene::{apply, parse};
    use crate::{Model, Simulator};

    /// Root latencies (ms) and the services seen, over `n` simulated traces.
    pub(crate) fn simulate(m: &Model, n: usize) -> (Vec<f64>, std::collections::BTreeSet<String>) {
        let mut sim = Simulator::new(m, 7);
        let (mut lat, mut seen) = (Vec::new(), std::collections::BTreeSet::new());
        for _ in 0..n {
            let (spans, names) = sim.trace().unwrap();
            lat.push(spans[0].duration_ns as f64 / 1e6);
            seen.extend(spans.iter().map(|s| names.resolve(s.service).to_string()));
        }
        (lat, seen)
    }

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len() as f64
    }

    #[test]
    fn removing_a_service_renormalises_and_it_is_never_called() {
        let m = shop();
        let e = apply(&m, &parse("- remove: { service: email }\n").unwrap()).unwrap();
        assert_eq!(e.services, ["cart", "frontend"]);
        let home = &e.apis[e.find_api("frontend home").unwrap() as usize];
        assert_eq!(home.states.len(), 2, "the email stage is bypassed");
        for s in &home.states {
            assert!((s.next.iter().map(|t| t.p).sum::<f64>() - 1.0).abs() < 1e-9);
        }
        let (lat, seen) = simulate(&e, 2000);
        assert!(!seen.contains("email"));
        let (orig, _) = simulate(&m, 2000);
        // Half the requests lose a ~10 ms call.
        assert!(mean(&orig) - mean(&lat) > 4.0, "{} vs {}", mean(&orig), mean(&lat));
        assert_eq!(m, shop(), "the input model is untouched");
        assert_eq!(e.provenance.interventions, [r#"{"remove":{"service":"email"}}"#]);
    }

    #[test]
    fn removing_every_other_stage_of_a_long_run_is_linear() {
        // `frontend home` runs 20,000 stages, cart and email by turns, as a
        // PFA fitted on one long traced run has them.
        let mut m = shop();
        let n = 20_000u32;
        let home = m.find_api("frontend home").unwrap() as usize;
        let step = m.apis[home].states[2].next[0].clone();
        let mut states = vec![m.apis[home].states[0].clone()];
        for s in 1..=n {
            let mut next = step.clone();
            next.to = (s < n).then_some(s + 1);
            states.push(crate::model::State {
                calls: vec![s % 2],
                visits: 1000,
                lambda: 1.0,
                repeats: vec![],
                next: vec![next],
            });
        }
        m.apis[home].states = states;
        let e = apply(&m, &parse("- remove: { service: email }\n").unwrap()).unwrap();
        let home = &e.apis[e.find_api("frontend home").unwrap() as usize];
        assert_eq!(home.states.len(), 1 + n as usize / 2, "every email stage is bypassed");
        for (s, state) in home.states.iter().enumerate().skip(1) {
            assert_eq!(state.calls, [e.find_api("cart get").unwrap()]);
            let to = state.next.iter().map(|t| t.to).collect::<Vec<_>>();
            assert_eq!(
                to,
                [(s < home.states.len() - 1).then_some(s as u32 + 1)],
                "state {s} leads to the next cart stage"
            );
        }
    }

    #[test]
    fn keep_latency_keeps_the_callers_latency() {
        let m = shop();
        let e = apply(&m, &parse("- remove: { service: email, keep_latency: true }\n").unwrap()).unwrap();
        let (lat, seen) = simulate(&e, 4000);
        assert!(!seen.contains("email"));
        let (orig, _) = simulate(&m, 4000);
        assert!((mean(&orig) - mean(&lat)).abs() / mean(&orig) < 0.03, "{} vs {}", mean(&orig), mean(&lat));
    }

    #[test]
    fn removing_an_edge_or_api() {
        let m = shop();
        let e =
            apply(&m, &parse("- remove: { edge: { caller: frontend home, callee: cart get } }\n").unwrap()).unwrap();
        assert_eq!(e.services, ["email", "frontend"]);
        let (_, seen) = simulate(&e, 500);
        assert!(!seen.contains("cart"));
        let e = apply(&m, &parse("- remove: { api: email send }\n").unwrap()).unwrap();
        assert_eq!(e.apis.len(), 2);
        let err = apply(&m, &parse("- remove: { service: frontend }\n").unwrap()).unwrap_err().to_string();
        assert!(err.contains("every root API"), "{err}");
        let err = apply(&m, &parse("- remove: { service: nope }\n").unwrap()).unwrap_err().to_string();
        assert!(err.contains("unknown service `nope`"), "{err}");
        let err = apply(&m, &parse("- remove: { service: cart, api: cart get }\n").unwrap()).unwrap_err().to_string();
        assert!(err.contains("exactly one"), "{err}");
    }
}
