//! What changed from one model to another.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use crate::Model;

/// What changed from `a` to `b`: services, APIs, edges, roots, latencies,
/// call overheads, deployment choices and the interventions recorded.
pub fn render_diff(a: &Model, b: &Model, a_path: &Path, b_path: &Path) -> String {
    let mut out = format!("changes from {} to {}:\n", a_path.display(), b_path.display());
    let before = out.len();
    let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    let mut list = |what: &str, x: BTreeSet<String>, y: BTreeSet<String>| {
        for n in x.difference(&y) {
            let _ = writeln!(out, "  - {what} {n}");
        }
        for n in y.difference(&x) {
            let _ = writeln!(out, "  + {what} {n}");
        }
    };
    list("service", set(&a.services), set(&b.services));
    let apis = |m: &Model| (0..m.apis.len() as u32).map(|i| m.api_name(i)).collect::<BTreeSet<_>>();
    list("API", apis(a), apis(b));
    let edges =
        |m: &Model| m.edges.iter().map(|e| format!("{} → {}", m.api_name(e.caller), m.api_name(e.callee))).collect();
    list("edge", edges(a), edges(b));
    let roots = |m: &Model| m.roots.iter().map(|r| m.api_name(r.api)).collect();
    list("root API", roots(a), roots(b));
    let ms = |v: f64| v / 1e6;
    let changed = |x: f64, y: f64| (x - y).abs() > 0.01 * x.abs().max(y.abs()).max(1e3);
    for (i, api) in a.apis.iter().enumerate() {
        let name = a.api_name(i as u32);
        let Some(j) = b.find_api(&name) else { continue };
        let other = &b.apis[j as usize];
        let work = |m: &Model, k: usize| -> f64 {
            m.apis[k].states.iter().flat_map(|s| &s.next).map(|t| t.p * t.work.all.mean()).sum::<f64>()
                + m.apis[k].naive.as_ref().map_or(0.0, |n| n.work.mean())
        };
        let (wa, wb) = (work(a, i), work(b, j as usize));
        if changed(wa, wb) {
            let _ = writeln!(out, "  ~ {name}: local work {:.3} → {:.3} ms (mean over transitions)", ms(wa), ms(wb));
        }
        if api.states.is_empty() && changed(api.latency.mean(), other.latency.mean()) {
            let _ = writeln!(
                out,
                "  ~ {name}: latency {:.3} → {:.3} ms (mean)",
                ms(api.latency.mean()),
                ms(other.latency.mean())
            );
        }
        if api.states.len() != other.states.len() {
            let _ = writeln!(out, "  ~ {name}: {} → {} PFA states", api.states.len(), other.states.len());
        }
        for o in &api.overhead {
            let callee = a.api_name(o.callee);
            let Some(c) = b.find_api(&callee) else { continue };
            let Some(p) = other.overhead.iter().find(|x| x.callee == c) else { continue };
            if changed(o.overhead.all.mean(), p.overhead.all.mean()) {
                let _ = writeln!(
                    out,
                    "  ~ {name} → {callee}: call overhead {:.3} → {:.3} ms (mean)",
                    ms(o.overhead.all.mean()),
                    ms(p.overhead.all.mean())
                );
            }
        }
        for o in
            other.overhead.iter().filter(|o| !api.overhead.iter().any(|x| a.api_name(x.callee) == b.api_name(o.callee)))
        {
            let _ = writeln!(
                out,
                "  ~ {name} → {}: call overhead now {:.3} ms (mean)",
                b.api_name(o.callee),
                ms(o.overhead.all.mean())
            );
        }
    }
    if a.deploy != b.deploy {
        let j = |d: &crate::model::Deploy| serde_json::to_string(d).unwrap_or_default();
        let _ = writeln!(out, "  ~ deploy: {} → {}", j(&a.deploy), j(&b.deploy));
    }
    let known = a.provenance.interventions.len();
    let shares_history = b.provenance.interventions.starts_with(&a.provenance.interventions);
    for i in b.provenance.interventions.iter().skip(if shares_history { known } else { 0 }) {
        let _ = writeln!(out, "  intervention {i}");
    }
    if out.len() == before {
        out += "  no differences\n";
    }
    out
}
