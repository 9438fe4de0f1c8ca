//! `palette show`: what a model holds.
//!
//! Four views of one `model.json`: a terminal summary (counts in the same
//! layout as `palette inspect`, root APIs, a per-API table), the details of
//! one API (`--api`: callers, PFA states and transitions with per-caller
//! probabilities and work, call overheads), Graphviz DOT (`--dot`: the
//! topology, or with `--api` that API's PFA as in the paper's Figure 3) and
//! JSON (`--json`).
//!
//! A model file is checked before anything is shown: a file that is not a
//! model, has another format tag, or refers to an API or state that does not
//! exist stops with exit 65 naming the file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use palette_model::check::{Seg, check, locate_line};
use palette_model::model::{ApiId, Caller, EdgeKind, FORMAT};
use palette_model::partial::PARTIAL_FORMAT;
use palette_model::{Model, ModelKind, Sketch};
use serde_json::{Value, json};

use crate::cmd::{UsageError, thousands};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    palette show model.json\n  \
    palette show model.json --api 'frontend GET /product'\n  \
    palette show model.json --dot | dot -Tsvg > topology.svg\n  \
    palette show model.json --api B/b --dot | dot -Tsvg > pfa.svg\n  \
    palette show model.json --json")]
pub struct Args {
    /// A model written by `palette fit` or `palette merge`.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Show one API in detail: `service operation`, `service/operation`, or
    /// an operation name that only one service has.
    #[arg(long, value_name = "NAME")]
    pub api: Option<String>,
    /// Write Graphviz DOT instead: the topology, or with --api that API's PFA.
    #[arg(long, conflicts_with = "json")]
    pub dot: bool,
    /// Print the summary (or with --api the API's details) as JSON, with
    /// top-level integers `services`, `apis`, `edges`, `roots`.
    #[arg(long)]
    pub json: bool,
    /// Show what changed from this model to MODEL (e.g. `--diff model.json edited.json`).
    #[arg(long, value_name = "BEFORE", conflicts_with_all = ["api", "dot", "json"])]
    pub diff: Option<PathBuf>,
    /// How many root APIs and APIs to list (all with --json).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let model = load(&args.model)?;
    if let Some(before) = &args.diff {
        let before_model = load(before)?;
        return Ok(crate::cmd::print_out(&render_diff(&before_model, &model, before, &args.model))?);
    }
    let api = args.api.as_deref().map(|name| resolve(&model, name, &args.model)).transpose()?;
    let out = match (api, args.dot, args.json) {
        (None, true, _) => dot_topology(&model),
        (Some(id), true, _) => dot_api(&model, id),
        (None, false, true) => pretty(&summary_json(&model, &args.model))?,
        (Some(id), false, true) => pretty(&api_json(&model, id))?,
        (None, false, false) => render_summary(&model, &args.model, args.top),
        (Some(id), false, false) => render_api(&model, id),
    };
    crate::cmd::print_out(&out)?;
    Ok(())
}

fn pretty(v: &Value) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

// ---------------------------------------------------------------------------
// Loading and checking.

fn bad_data(path: &Path, line: u64, message: String) -> anyhow::Error {
    palette_trace::Error::BadData { path: path.to_path_buf(), line, message }.into()
}

/// Reads and checks a model file: exit 2 when it is missing, 65 when it is
/// not a well-formed `palette-model/1` model.
pub fn load(path: &Path) -> anyhow::Result<Model> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::Error::new(UsageError(format!("{}: no such file", path.display()))),
        std::io::ErrorKind::IsADirectory => {
            anyhow::Error::new(UsageError(format!("{}: is a directory, not a model file", path.display())))
        }
        std::io::ErrorKind::InvalidData => bad_data(path, 0, "not a model: the file is not UTF-8 text".into()),
        _ => anyhow::Error::new(e).context(format!("cannot read {}", path.display())),
    })?;
    let model: Model = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(e) => {
            // Say what the file is when it carries another format tag.
            #[derive(serde::Deserialize)]
            struct Tag {
                format: Option<String>,
            }
            let tag = serde_json::from_str::<Tag>(&text).ok().and_then(|t| t.format);
            let message = match tag.as_deref() {
                Some(PARTIAL_FORMAT) => {
                    "this is a partial fit, not a model; turn it into one with `palette merge PARTIAL... -o model.json`"
                        .to_string()
                }
                Some(f) if f != FORMAT => format!("format `{f}` is not {FORMAT}"),
                _ => format!("not a palette model ({e}); write one with `palette fit`"),
            };
            let line = if tag.is_some() && tag.as_deref() != Some(FORMAT) {
                locate_line(&text, &[Seg::Key("format")]).unwrap_or(1)
            } else {
                e.line() as u64
            };
            return Err(bad_data(path, line, message));
        }
    };
    if model.format != FORMAT {
        let line = locate_line(&text, &[Seg::Key("format")]).unwrap_or(1);
        return Err(bad_data(path, line, format!("format `{}` is not {FORMAT}", model.format)));
    }
    if let Err(e) = check(&model) {
        return Err(bad_data(path, e.line(&text), e.to_string()));
    }
    Ok(model)
}

// ---------------------------------------------------------------------------
// Finding an API by name.

fn resolve(model: &Model, name: &str, path: &Path) -> Result<ApiId, UsageError> {
    if let Some(id) = model.find_api(name) {
        return Ok(id);
    }
    let same_op: Vec<String> =
        model.apis.iter().filter(|a| a.operation == name).map(|a| format!("`{} {}`", a.service, a.operation)).collect();
    if same_op.len() > 1 {
        return Err(UsageError(format!(
            "--api `{name}`: {} services have that operation; name one: {}",
            same_op.len(),
            list(&same_op, 10)
        )));
    }
    let close = close_matches(model, name);
    let hint = if close.is_empty() {
        format!("`palette show {}` lists its {} APIs", path.display(), model.apis.len())
    } else {
        format!("close matches: {}", list(&close.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>(), 10))
    };
    Err(UsageError(format!(
        "--api `{name}`: no such API in {} (give `service operation`, `service/operation` or a unique operation); {hint}",
        path.display()
    )))
}

fn list(items: &[String], max: usize) -> String {
    let mut s = items.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > max {
        let _ = write!(s, " and {} more", items.len() - max);
    }
    s
}

/// APIs whose name contains the query (or the other way round), or is a
/// few edits away from it; best first.
fn close_matches(model: &Model, name: &str) -> Vec<String> {
    let q = name.trim().to_lowercase();
    if q.is_empty() {
        return Vec::new();
    }
    let mut scored: Vec<(usize, String)> = Vec::new();
    for (i, a) in model.apis.iter().enumerate() {
        let full = model.api_name(i as ApiId);
        let forms =
            [full.to_lowercase(), format!("{}/{}", a.service, a.operation).to_lowercase(), a.operation.to_lowercase()];
        let score = if forms.iter().any(|f| f.contains(&q) || (f.len() >= 3 && q.contains(f.as_str()))) {
            0
        } else {
            forms.iter().map(|f| edit_distance(f, &q)).min().unwrap_or(usize::MAX)
        };
        let allowed = (q.chars().count() / 3).max(1);
        if score <= allowed {
            scored.push((score, full));
        }
    }
    scored.sort();
    scored.into_iter().map(|(_, n)| n).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

// ---------------------------------------------------------------------------
// Numbers.

/// Nanoseconds as milliseconds, two decimals.
fn ms(ns: f64) -> String {
    format!("{:.2}", ns / 1e6)
}

fn q_ms(s: &Sketch, q: f64) -> String {
    ms(s.quantile(q))
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 { "-".into() } else { format!("{:.1}%", 100.0 * part as f64 / whole as f64) }
}

fn kind_name(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Palette => "palette",
        ModelKind::Naive => "naive",
    }
}

fn caller_name(model: &Model, c: Caller) -> String {
    c.map_or_else(|| "(root request)".into(), |id| model.api_name(id))
}

/// `B b || C c`: a stage's concurrent calls.
fn stage_label(model: &Model, calls: &[ApiId]) -> String {
    calls.iter().map(|&c| model.api_name(c)).collect::<Vec<_>>().join(" || ")
}

fn state_name(model: &Model, api: &palette_model::ApiModel, s: Option<u32>) -> String {
    match s {
        None => "finish".into(),
        Some(0) => "s0 start".into(),
        Some(k) => format!("s{k} [{}]", stage_label(model, &api.states[k as usize].calls)),
    }
}

struct Counts {
    local_edges: usize,
    rpc_edges: usize,
    states: usize,
    transitions: usize,
    root_total: u64,
}

fn counts(model: &Model) -> Counts {
    Counts {
        local_edges: model.edges.iter().filter(|e| e.kind == EdgeKind::Local).count(),
        rpc_edges: model.edges.iter().filter(|e| e.kind == EdgeKind::Rpc).count(),
        states: model.apis.iter().map(|a| a.states.len()).sum(),
        transitions: model.apis.iter().flat_map(|a| &a.states).map(|s| s.next.len()).sum(),
        root_total: model.roots.iter().map(|r| r.count).sum(),
    }
}

/// APIs by executions, most first (ties by name).
fn by_count(model: &Model) -> Vec<usize> {
    let mut order: Vec<usize> = (0..model.apis.len()).collect();
    order.sort_by(|&a, &b| model.apis[b].count.cmp(&model.apis[a].count).then(a.cmp(&b)));
    order
}

fn roots_by_count(model: &Model) -> Vec<&palette_model::model::RootCount> {
    let mut roots: Vec<_> = model.roots.iter().collect();
    roots.sort_by(|a, b| b.count.cmp(&a.count).then(a.api.cmp(&b.api)));
    roots
}

/// Mean calls per execution and the share of executions with at least one.
fn naive_call_stats(per_execution: &[(u32, u64)]) -> (f64, f64) {
    let execs: u64 = per_execution.iter().map(|(_, k)| k).sum();
    if execs == 0 {
        return (0.0, 0.0);
    }
    let calls: u64 = per_execution.iter().map(|&(n, k)| n as u64 * k).sum();
    let some: u64 = per_execution.iter().filter(|(n, _)| *n > 0).map(|(_, k)| k).sum();
    (calls as f64 / execs as f64, some as f64 / execs as f64)
}

// ---------------------------------------------------------------------------
// The terminal summary.

fn line(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{label:<14}{value}");
}

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

// ---------------------------------------------------------------------------
// One API.

fn dist_line(s: &Sketch) -> String {
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

fn bytes_line(s: &Sketch) -> String {
    format!("p50 {:.0}  p90 {:.0}  p99 {:.0} bytes, n {}", s.quantile(0.5), s.quantile(0.9), s.quantile(0.99), s.n)
}

fn work_line(s: &Sketch) -> String {
    format!("work p50 {} ms  p90 {} ms", q_ms(s, 0.5), q_ms(s, 0.9))
}

/// Per caller: its visits of a state (the sum of its counts over the state's transitions).
fn caller_totals(state: &palette_model::State) -> BTreeMap<Caller, u64> {
    let mut totals: BTreeMap<Caller, u64> = BTreeMap::new();
    for t in &state.next {
        for c in &t.by_caller {
            *totals.entry(c.caller).or_default() += c.count;
        }
    }
    totals
}

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

// ---------------------------------------------------------------------------
// JSON.

fn quantiles_ms(s: &Sketch) -> Value {
    let r = |v: f64| (v / 1e3).round() / 1e3;
    json!({
        "n": s.n,
        "p50": r(s.quantile(0.5)),
        "p90": r(s.quantile(0.9)),
        "p99": r(s.quantile(0.99)),
        "mean": r(s.mean()),
    })
}

fn caller_json(model: &Model, c: Caller) -> Value {
    c.map_or(Value::Null, |id| Value::String(model.api_name(id)))
}

pub fn summary_json(model: &Model, path: &Path) -> Value {
    let c = counts(model);
    let roots: Vec<Value> = roots_by_count(model)
        .into_iter()
        .map(|r| {
            let a = &model.apis[r.api as usize];
            json!({
                "api": model.api_name(r.api),
                "service": a.service,
                "operation": a.operation,
                "count": r.count,
                "share": if c.root_total == 0 { 0.0 } else { r.count as f64 / c.root_total as f64 },
            })
        })
        .collect();
    let apis: Vec<Value> = by_count(model)
        .into_iter()
        .map(|i| {
            let a = &model.apis[i];
            let mut v = json!({
                "api": model.api_name(i as ApiId),
                "service": a.service,
                "operation": a.operation,
                "count": a.count,
                "callers": a.callers.len(),
                "latency_ms": quantiles_ms(&a.latency),
                "states": a.states.len(),
                "transitions": a.states.iter().map(|s| s.next.len()).sum::<usize>(),
            });
            if let Some(n) = &a.naive {
                v["callees"] = n
                    .calls
                    .iter()
                    .map(|call| {
                        let (mean, some) = naive_call_stats(&call.per_execution);
                        json!({"api": model.api_name(call.callee), "mean_calls": mean, "share_calling": some})
                    })
                    .collect();
            }
            v
        })
        .collect();
    json!({
        "model": path.display().to_string(),
        "format": model.format,
        "kind": kind_name(model.kind),
        "provenance": model.provenance,
        "options": model.options,
        "services": model.services.len(),
        "apis": model.apis.len(),
        "edges": model.edges.len(),
        "local_edges": c.local_edges,
        "rpc_edges": c.rpc_edges,
        "roots": model.roots.len(),
        "states": c.states,
        "transitions": c.transitions,
        "root_apis": roots,
        "api_summaries": apis,
    })
}

pub fn api_json(model: &Model, id: ApiId) -> Value {
    let a = &model.apis[id as usize];
    let states: Vec<Value> = a
        .states
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let totals = caller_totals(s);
            let next: Vec<Value> = s
                .next
                .iter()
                .map(|t| {
                    json!({
                        "to": t.to,
                        "count": t.count,
                        "p": t.p,
                        "by_caller": t.by_caller.iter().map(|c| {
                            let total = totals.get(&c.caller).copied().unwrap_or(0);
                            json!({
                                "caller": caller_json(model, c.caller),
                                "count": c.count,
                                "visits": total,
                                "p": c.count as f64 / total.max(1) as f64,
                            })
                        }).collect::<Vec<_>>(),
                        "work_ms": quantiles_ms(&t.work.all),
                        "work_by_caller_ms": t.work.by_caller.iter().map(|c| json!({
                            "caller": caller_json(model, c.caller),
                            "work": quantiles_ms(&c.sketch),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({
                "state": k,
                "calls": s.calls.iter().map(|&c| model.api_name(c)).collect::<Vec<_>>(),
                "visits": s.visits,
                "repeats": s.repeats,
                "lambda": s.lambda,
                "next": next,
            })
        })
        .collect();
    let overhead: Vec<Value> = a
        .overhead
        .iter()
        .map(|o| {
            json!({
                "callee": model.api_name(o.callee),
                "overhead_ms": quantiles_ms(&o.overhead.all),
                "by_caller_ms": o.overhead.by_caller.iter().map(|c| json!({
                    "caller": caller_json(model, c.caller),
                    "overhead": quantiles_ms(&c.sketch),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut v = json!({
        "api": model.api_name(id),
        "service": a.service,
        "operation": a.operation,
        "count": a.count,
        "callers": a.callers.iter().map(|c| json!({"caller": caller_json(model, c.caller), "count": c.count})).collect::<Vec<_>>(),
        "root_count": model.roots.iter().find(|r| r.api == id).map_or(0, |r| r.count),
        "latency_ms": quantiles_ms(&a.latency),
        "states": states,
        "overhead": overhead,
    });
    if let Some(n) = &a.naive {
        v["naive"] = json!({
            "work_ms": quantiles_ms(&n.work),
            "calls": n.calls.iter().map(|call| {
                let (mean, some) = naive_call_stats(&call.per_execution);
                json!({
                    "callee": model.api_name(call.callee),
                    "per_execution": call.per_execution,
                    "mean_calls": mean,
                    "share_calling": some,
                    "overhead_ms": quantiles_ms(&call.overhead),
                })
            }).collect::<Vec<_>>(),
        });
    }
    v
}

// ---------------------------------------------------------------------------
// Graphviz DOT.

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

/// What changed from `a` to `b`: services, APIs, edges, roots, latencies,
/// call overheads, deployment choices and the interventions recorded.
pub fn render_diff(a: &Model, b: &Model, a_path: &Path, b_path: &Path) -> String {
    use std::collections::BTreeSet;
    use std::fmt::Write as _;
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
        let j = |d: &palette_model::model::Deploy| serde_json::to_string(d).unwrap_or_default();
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
    fn locates_lines_of_paths() {
        let text = "{\n  \"format\": \"x\",\n  \"apis\": [\n    {\"a\": [1, 2]},\n    {\"a\": [\"}\\\"\",\n      7]}\n  ]\n}\n";
        assert_eq!(locate_line(text, &[Seg::Key("format")]), Some(2));
        assert_eq!(locate_line(text, &[Seg::Key("apis"), Seg::Index(0), Seg::Key("a"), Seg::Index(1)]), Some(4));
        assert_eq!(locate_line(text, &[Seg::Key("apis"), Seg::Index(1), Seg::Key("a"), Seg::Index(1)]), Some(6));
        assert_eq!(locate_line(text, &[Seg::Key("apis"), Seg::Index(2)]), None);
        assert_eq!(locate_line(text, &[Seg::Key("nope")]), None);
    }

    #[test]
    fn close_names() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
    }
}
