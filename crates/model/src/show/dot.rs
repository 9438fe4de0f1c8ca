//! Graphviz DOT: the topology, or one API's PFA.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use palette_trace::stats::thousands;

use super::*;
use crate::Model;
use crate::model::{ApiId, EdgeKind};

/// A DOT double-quoted string: `"` and `\` escaped (so a name never ends
/// the string or forms an escape), line breaks as `\n`, other control
/// characters as spaces.
pub fn dot_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const DOT_HEADER: &str = "  graph [fontname=\"Helvetica\", fontsize=11];\n  \
    node [fontname=\"Helvetica\", fontsize=10, shape=box, style=rounded];\n  \
    edge [fontname=\"Helvetica\", fontsize=9];\n";

/// The topology: one cluster per service, APIs as nodes, call edges
/// labelled with call counts (dashed: local calls); root APIs filled, with
/// the client's requests drawn from a `client` node.
pub fn dot_topology(model: &Model) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", dot_quote("palette topology"));
    out += DOT_HEADER;
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(
        out,
        "  label={};\n  labelloc=t;",
        dot_quote(&format!(
            "{} services, {} APIs, {} edges, {} traces",
            model.services.len(),
            model.apis.len(),
            model.edges.len(),
            model.provenance.traces
        ))
    );
    let roots: BTreeMap<ApiId, u64> = model.roots.iter().map(|r| (r.api, r.count)).collect();
    let mut by_service: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, a) in model.apis.iter().enumerate() {
        by_service.entry(a.service.as_str()).or_default().push(i);
    }
    let _ = writeln!(out, "  \"client\" [shape=ellipse, style=dashed, label=\"client\"];");
    for (k, (service, apis)) in by_service.iter().enumerate() {
        let _ = writeln!(out, "  subgraph {} {{", dot_quote(&format!("cluster_{k}")));
        let _ = writeln!(out, "    label={};\n    style=rounded;\n    color=\"#888888\";", dot_quote(service));
        for &i in apis {
            let a = &model.apis[i];
            let style = if roots.contains_key(&(i as ApiId)) {
                ", style=\"rounded,filled,bold\", fillcolor=\"#ffe08a\""
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    {} [label={}, tooltip={}{style}];",
                dot_quote(&format!("api{i}")),
                dot_quote(&a.operation),
                dot_quote(&format!("{} — {} executions", model.api_name(i as ApiId), a.count))
            );
        }
        out += "  }\n";
    }
    for (&api, &count) in &roots {
        let _ = writeln!(
            out,
            "  \"client\" -> {} [label={}, color=\"#b8860b\"];",
            dot_quote(&format!("api{api}")),
            dot_quote(&thousands(count))
        );
    }
    for e in &model.edges {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}{}];",
            dot_quote(&format!("api{}", e.caller)),
            dot_quote(&format!("api{}", e.callee)),
            dot_quote(&thousands(e.count)),
            match (e.kind, &e.protocol) {
                (EdgeKind::Local, _) => ", style=dashed, tooltip=\"local\"".to_string(),
                (EdgeKind::Rpc, Some(p)) => format!(", tooltip={}", dot_quote(&format!("rpc {p}"))),
                (EdgeKind::Rpc, None) => ", tooltip=\"rpc\"".to_string(),
            }
        );
    }
    out += "}\n";
    out
}

/// One API: its PFA (the paper's Figure 3) for a Palette model, its
/// independent callees for a naive one.
pub fn dot_api(model: &Model, id: ApiId) -> String {
    let a = &model.apis[id as usize];
    let mut out = String::new();
    let name = model.api_name(id);
    let _ = writeln!(out, "digraph {} {{", dot_quote(&name));
    out += DOT_HEADER;
    let _ = writeln!(out, "  rankdir=LR;");
    if let Some(n) = &a.naive {
        let _ = writeln!(out, "  label={};\n  labelloc=t;", dot_quote(&format!("{name} (naive: independent calls)")));
        let _ =
            writeln!(out, "  \"api\" [label={}, style=\"rounded,filled\", fillcolor=\"#ffe08a\"];", dot_quote(&name));
        for (k, call) in n.calls.iter().enumerate() {
            let (mean, some) = naive_call_stats(&call.per_execution);
            let _ = writeln!(
                out,
                "  {} [label={}];\n  \"api\" -> {} [label={}];",
                dot_quote(&format!("c{k}")),
                dot_quote(&model.api_name(call.callee)),
                dot_quote(&format!("c{k}")),
                dot_quote(&format!("×{mean:.2} ({:.0}%)", 100.0 * some))
            );
        }
        out += "}\n";
        return out;
    }
    let _ = writeln!(out, "  label={};\n  labelloc=t;", dot_quote(&format!("{name}: PFA")));
    let _ = writeln!(out, "  \"s0\" [shape=circle, label=\"start\"];");
    for (k, s) in a.states.iter().enumerate().skip(1) {
        let _ = writeln!(
            out,
            "  {} [label={}, tooltip={}];",
            dot_quote(&format!("s{k}")),
            dot_quote(&stage_label(model, &s.calls)),
            dot_quote(&format!("s{k}: {} visits, λ {:.3}", s.visits, s.lambda))
        );
    }
    let _ = writeln!(out, "  \"finish\" [shape=doublecircle, label=\"finish\"];");
    for (k, s) in a.states.iter().enumerate() {
        for t in &s.next {
            let to = t.to.map_or_else(|| "finish".to_string(), |t| format!("s{t}"));
            let _ = writeln!(
                out,
                "  {} -> {} [label={}, tooltip={}];",
                dot_quote(&format!("s{k}")),
                dot_quote(&to),
                dot_quote(&format!("{:.2}", t.p)),
                dot_quote(&format!("{} times, work p50 {} ms", t.count, q_ms(&t.work.all, 0.5)))
            );
        }
    }
    out += "}\n";
    out
}
