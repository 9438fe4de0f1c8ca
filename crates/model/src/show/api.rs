//! One API in detail.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use palette_trace::stats::thousands;

use super::*;
use crate::Model;
use crate::model::{ApiId, Caller, EdgeKind};

pub fn render_api(model: &Model, id: ApiId) -> String {
    let a = &model.apis[id as usize];
    let mut out = String::new();
    line(&mut out, "api", model.api_name(id));
    line(&mut out, "service", &a.service);
    line(&mut out, "operation", &a.operation);
    line(&mut out, "executions", thousands(a.count));
    if let Some(r) = model.roots.iter().find(|r| r.api == id) {
        let total: u64 = model.roots.iter().map(|r| r.count).sum();
        line(&mut out, "root api", format!("{} traces ({} of the workload)", thousands(r.count), pct(r.count, total)));
    }
    line(&mut out, "latency", dist_line(&a.latency));
    if let Some(s) = &a.request_bytes {
        line(&mut out, "request", bytes_line(s));
    }
    if let Some(s) = &a.response_bytes {
        line(&mut out, "response", bytes_line(s));
    }
    line(&mut out, "callers", a.callers.len());
    for c in &a.callers {
        let _ = writeln!(
            out,
            "  {:>10}  {:>6}  {}",
            thousands(c.count),
            pct(c.count, a.count),
            caller_name(model, c.caller)
        );
    }
    let callees: BTreeSet<ApiId> = model.edges.iter().filter(|e| e.caller == id).map(|e| e.callee).collect();
    line(&mut out, "callees", callees.len());
    for e in model.edges.iter().filter(|e| e.caller == id) {
        let _ = writeln!(
            out,
            "  {:>10}  {} ({}{}), caller-observed p50 {} ms  p90 {} ms",
            thousands(e.count),
            model.api_name(e.callee),
            match e.kind {
                EdgeKind::Local => "local",
                EdgeKind::Rpc => "rpc",
            },
            e.protocol.as_deref().map(|p| format!(" {p}")).unwrap_or_default(),
            ms(e.latency.p50),
            ms(e.latency.p90)
        );
    }
    if !a.states.is_empty() {
        let _ = writeln!(
            out,
            "\npfa           {} states, {} transitions (probabilities per caller: its count / its visits of the state)",
            a.states.len(),
            a.states.iter().map(|s| s.next.len()).sum::<usize>()
        );
        for (k, s) in a.states.iter().enumerate() {
            let lambda = if k == 0 { String::new() } else { format!("  λ {:.3}", s.lambda) };
            let _ = writeln!(out, "{}  visits {}{lambda}", state_name(model, a, Some(k as u32)), thousands(s.visits));
            if !s.repeats.is_empty() {
                let runs: Vec<String> = s.repeats.iter().map(|(d, c)| format!("{d}×{}", thousands(*c))).collect();
                let _ = writeln!(out, "  counted loop: consecutive visits per run {}", runs.join(", "));
            }
            let totals = caller_totals(s);
            for t in &s.next {
                let _ = writeln!(
                    out,
                    "  → {:<30}  p {:.4}  n {:>8}  {}",
                    state_name(model, a, t.to),
                    t.p,
                    thousands(t.count),
                    work_line(&t.work.all)
                );
                let callers: BTreeSet<Caller> =
                    t.by_caller.iter().map(|c| c.caller).chain(t.work.by_caller.iter().map(|c| c.caller)).collect();
                for c in callers {
                    let p = t.by_caller.iter().find(|x| x.caller == c).map(|x| {
                        let total = totals.get(&c).copied().unwrap_or(0);
                        format!("p {:.4} ({}/{})", x.count as f64 / total.max(1) as f64, x.count, total)
                    });
                    let w = t.work.by_caller.iter().find(|x| x.caller == c).map(|x| work_line(&x.sketch));
                    let _ = writeln!(
                        out,
                        "      from {}: {}",
                        caller_name(model, c),
                        [p, w].into_iter().flatten().collect::<Vec<_>>().join("  ")
                    );
                }
            }
        }
    }
    if !a.overhead.is_empty() {
        let _ = writeln!(out, "\noverhead      caller-observed call latency minus the callee's own, per callee");
        for o in &a.overhead {
            let _ = writeln!(out, "  {}: {}", model.api_name(o.callee), dist_line(&o.overhead.all));
            for cs in &o.overhead.by_caller {
                let _ = writeln!(
                    out,
                    "      when called from {}: {}",
                    caller_name(model, cs.caller),
                    dist_line(&cs.sketch)
                );
            }
        }
    }
    if let Some(n) = &a.naive {
        let _ = writeln!(out, "\nnaive         independent calls, made one after another");
        line(&mut out, "own work", dist_line(&n.work));
        for call in &n.calls {
            let (mean, some) = naive_call_stats(&call.per_execution);
            let per = call
                .per_execution
                .iter()
                .map(|(n, k)| format!("{n} call{} in {k}", if *n == 1 { "" } else { "s" }))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "  {}: ×{mean:.2} per execution, {:.1}% call it ({per})\n      overhead {}",
                model.api_name(call.callee),
                100.0 * some,
                dist_line(&call.overhead)
            );
        }
    }
    out
}
