//! What `palette show` prints of a model: a terminal summary (counts in
//! the layout of `palette inspect`, root APIs, a per-API table), one API in
//! detail (callers, PFA states and transitions with per-caller
//! probabilities and work, call overheads), Graphviz DOT (the topology, or
//! an API's PFA as in the paper's Figure 3), JSON, and the changes between
//! two models. Every view is a pure function of the model, so the CLI only
//! loads, resolves and prints.

mod api;
mod diff;
mod dot;
mod json;
mod resolve;
mod summary;

pub use api::render_api;
pub use diff::render_diff;
pub use dot::{dot_api, dot_quote, dot_topology};
pub use json::{api_json, summary_json};
pub use resolve::{edit_distance, resolve_api};
pub use summary::render_summary;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::{ApiId, Caller, EdgeKind};
use crate::{Model, ModelKind, Sketch};
use palette_trace::stats::thousands;

pub(super) fn list(items: &[String], max: usize) -> String {
    let mut s = items.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > max {
        let _ = write!(s, " and {} more", items.len() - max);
    }
    s
}

// ---------------------------------------------------------------------------
// Numbers and names.

/// Nanoseconds as milliseconds, two decimals.
pub(super) fn ms(ns: f64) -> String {
    format!("{:.2}", ns / 1e6)
}

pub(super) fn q_ms(s: &Sketch, q: f64) -> String {
    ms(s.quantile(q))
}

pub(super) fn pct(part: u64, whole: u64) -> String {
    if whole == 0 { "-".into() } else { format!("{:.1}%", 100.0 * part as f64 / whole as f64) }
}

pub(super) fn kind_name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Palette => "palette",
        ModelKind::Naive => "naive",
    }
}

pub(super) fn caller_name(model: &Model, c: Caller) -> String {
    c.map_or_else(|| "(root request)".into(), |id| model.api_name(id))
}

/// `B b || C c`: a stage's concurrent calls.
pub(super) fn stage_label(model: &Model, calls: &[ApiId]) -> String {
    calls.iter().map(|&c| model.api_name(c)).collect::<Vec<_>>().join(" || ")
}

pub(super) fn state_name(model: &Model, api: &crate::ApiModel, s: Option<u32>) -> String {
    match s {
        None => "finish".into(),
        Some(0) => "s0 start".into(),
        Some(k) => format!("s{k} [{}]", stage_label(model, &api.states[k as usize].calls)),
    }
}

pub(super) struct Counts {
    local_edges: usize,
    rpc_edges: usize,
    states: usize,
    transitions: usize,
    root_total: u64,
}

pub(super) fn counts(model: &Model) -> Counts {
    Counts {
        local_edges: model.edges.iter().filter(|e| e.kind == EdgeKind::Local).count(),
        rpc_edges: model.edges.iter().filter(|e| e.kind == EdgeKind::Rpc).count(),
        states: model.apis.iter().map(|a| a.states.len()).sum(),
        transitions: model.apis.iter().flat_map(|a| &a.states).map(|s| s.next.len()).sum(),
        root_total: model.roots.iter().map(|r| r.count).sum(),
    }
}

/// APIs by executions, most first (ties by name).
pub(super) fn by_count(model: &Model) -> Vec<usize> {
    let mut order: Vec<usize> = (0..model.apis.len()).collect();
    order.sort_by(|&a, &b| model.apis[b].count.cmp(&model.apis[a].count).then(a.cmp(&b)));
    order
}

pub(super) fn roots_by_count(model: &Model) -> Vec<&crate::model::RootCount> {
    let mut roots: Vec<_> = model.roots.iter().collect();
    roots.sort_by(|a, b| b.count.cmp(&a.count).then(a.api.cmp(&b.api)));
    roots
}

/// Mean calls per execution and the share of executions with at least one.
pub(super) fn naive_call_stats(per_execution: &[(u32, u64)]) -> (f64, f64) {
    let execs: u64 = per_execution.iter().map(|(_, k)| k).sum();
    if execs == 0 {
        return (0.0, 0.0);
    }
    let calls: u64 = per_execution.iter().map(|&(n, k)| n as u64 * k).sum();
    let some: u64 = per_execution.iter().filter(|(n, _)| *n > 0).map(|(_, k)| k).sum();
    (calls as f64 / execs as f64, some as f64 / execs as f64)
}

pub(super) fn line(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{label:<14}{value}");
}

pub(super) fn dist_line(s: &Sketch) -> String {
    if s.is_empty() {
        return "no samples".into();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  mean {}  (min {}, max {}) ms, n {}",
        q_ms(s, 0.5),
        q_ms(s, 0.9),
        q_ms(s, 0.99),
        ms(s.mean()),
        ms(s.min),
        ms(s.max),
        thousands(s.n)
    )
}

pub(super) fn bytes_line(s: &Sketch) -> String {
    format!("p50 {:.0}  p90 {:.0}  p99 {:.0} bytes, n {}", s.quantile(0.5), s.quantile(0.9), s.quantile(0.99), s.n)
}

pub(super) fn work_line(s: &Sketch) -> String {
    format!("work p50 {} ms  p90 {} ms", q_ms(s, 0.5), q_ms(s, 0.9))
}

/// Per caller: its visits of a state (the sum of its counts over the state's transitions).
pub(super) fn caller_totals(state: &crate::State) -> BTreeMap<Caller, u64> {
    let mut totals: BTreeMap<Caller, u64> = BTreeMap::new();
    for t in &state.next {
        for c in &t.by_caller {
            *totals.entry(c.caller).or_default() += c.count;
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_strings_are_quoted() {
        assert_eq!(dot_quote("GET /orders/{orderId}"), "\"GET /orders/{orderId}\"");
        assert_eq!(dot_quote("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(dot_quote("ends with \\"), "\"ends with \\\\\"");
        assert_eq!(dot_quote("two\nlines\t"), "\"two\\nlines \"");
    }

    #[test]
    fn close_names() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
    }
}
