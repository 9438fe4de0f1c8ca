//! The terminal summary of a model.

use std::fmt::Write as _;
use std::path::Path;

use palette_trace::stats::thousands;

use super::*;
use crate::model::ApiId;
use crate::{Model, ModelKind};

pub fn render_summary(model: &Model, path: &Path, top: usize) -> String {
    let c = counts(model);
    let mut out = String::new();
    let _ = writeln!(out, "{} ({}, {} model)", path.display(), model.format, kind_name(model.kind));
    let inputs = &model.provenance.inputs;
    line(&mut out, "fitted from", if inputs.is_empty() { "(no inputs recorded)".to_string() } else { list(inputs, 5) });
    line(&mut out, "traces", thousands(model.provenance.traces));
    line(&mut out, "spans", thousands(model.provenance.spans));
    line(&mut out, "services", thousands(model.services.len() as u64));
    line(&mut out, "apis", thousands(model.apis.len() as u64));
    line(
        &mut out,
        "edges",
        format!(
            "{}   ({} local, {} rpc)",
            thousands(model.edges.len() as u64),
            thousands(c.local_edges as u64),
            thousands(c.rpc_edges as u64)
        ),
    );
    line(&mut out, "root apis", thousands(model.roots.len() as u64));
    for r in roots_by_count(model).into_iter().take(top) {
        let _ =
            writeln!(out, "  {:>10}  {:>6}  {}", thousands(r.count), pct(r.count, c.root_total), model.api_name(r.api));
    }
    if model.roots.len() > top {
        let _ = writeln!(out, "  … {} more (--top N, or --json)", model.roots.len() - top);
    }
    if model.kind == ModelKind::Palette {
        line(
            &mut out,
            "pfa",
            format!("{} states, {} transitions", thousands(c.states as u64), thousands(c.transitions as u64)),
        );
    }
    let o = &model.options;
    line(
        &mut out,
        "options",
        format!(
            "stage tolerance {} us, confidence {}, max unrolled {}, min caller support {}",
            o.stage_tolerance_ns as f64 / 1e3,
            o.confidence,
            o.max_unrolled,
            o.min_caller_support
        ),
    );
    if !model.provenance.interventions.is_empty() {
        line(&mut out, "interventions", model.provenance.interventions.join("; "));
    }
    let order = by_count(model);
    let _ = writeln!(
        out,
        "\napis by executions{}",
        if order.len() > top { format!(" (top {top} of {})", order.len()) } else { String::new() }
    );
    let naive = model.kind == ModelKind::Naive;
    let _ = writeln!(
        out,
        "  {:>10}  {:>7}  {:>9}  {:>9}  {:>9}  {}  api",
        "count",
        "callers",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        if naive { format!("{:>7}", "callees") } else { format!("{:>6}  {:>5}", "states", "trans") }
    );
    for &i in order.iter().take(top) {
        let a = &model.apis[i];
        let shape = match &a.naive {
            Some(n) if naive => format!("{:>7}", n.calls.len()),
            _ => format!("{:>6}  {:>5}", a.states.len(), a.states.iter().map(|s| s.next.len()).sum::<usize>()),
        };
        let _ = writeln!(
            out,
            "  {:>10}  {:>7}  {:>9}  {:>9}  {:>9}  {shape}  {}",
            thousands(a.count),
            a.callers.len(),
            q_ms(&a.latency, 0.5),
            q_ms(&a.latency, 0.9),
            q_ms(&a.latency, 0.99),
            model.api_name(i as ApiId)
        );
        if let Some(n) = &a.naive {
            for call in &n.calls {
                let (mean, some) = naive_call_stats(&call.per_execution);
                let _ = writeln!(
                    out,
                    "  {:>10}  calls {}  ×{mean:.2} per execution, in {:.1}% of executions",
                    "",
                    model.api_name(call.callee),
                    100.0 * some
                );
            }
        }
    }
    if order.len() > top {
        let _ = writeln!(out, "  … {} more (--top N, or --json)", order.len() - top);
    }
    out
}
