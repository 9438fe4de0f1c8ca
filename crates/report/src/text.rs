//! The terminal report: one verdict line per distribution and candidate,
//! then the structure table.

use std::fmt::Write;

use crate::compare::{Comparison, EdgeShift, LatencyComparison, Shift, StructureComparison, Verdict};

pub use palette_trace::stats::thousands;

/// `+1.2%`, or `n/a` when undefined.
pub fn signed_percent(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".into(), |x| format!("{:+.1}%", x * 100.0))
}

/// `p=0.62`, or `p<0.01`.
pub fn p_value(p: f64) -> String {
    if p < 0.01 { "p<0.01".into() } else { format!("p={p:.2}") }
}

/// `✓ close`, `✗ differs`, `~ borderline`, `· too few samples`, `? inconclusive` or `✗ missing`.
pub fn verdict(v: Verdict) -> &'static str {
    match v {
        Verdict::Close => "✓ close",
        Verdict::Differs => "✗ differs",
        Verdict::Borderline => "~ borderline",
        Verdict::TooFewSamples => "· too few samples",
        Verdict::Inconclusive => "? inconclusive (host busy)",
        Verdict::Missing => "✗ missing",
    }
}

/// A fraction as reports show it: `4.4%`.
fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A floor as a percentage; `n/a` for a quantile too few values reach to be judged.
pub fn bound(x: f64) -> String {
    if x.is_finite() { format!("±{}", percent(x)) } else { "n/a".into() }
}

/// The metrics of one row, after the label, each with its noise floor in
/// brackets: `KS 0.041 [0.112]  W1 3.1% [8.0%]  p50 +1.2% [±6.3%] …`.
pub fn metrics_line(r: &LatencyComparison) -> String {
    let Some(ks) = r.ks else {
        return format!("not in the candidate ({} in the original)", thousands(r.original_count));
    };
    let w1 = r.w1.unwrap_or(0.0);
    let q = [&r.p50, &r.p90, &r.p99].map(|s| signed_percent(s.rel_error));
    match &r.floor {
        Some(f) => format!(
            "KS {ks:.3} [{:.3}]  W1 {} [{}]  p50 {} [{}]  p90 {} [{}]  p99 {} [{}]",
            f.ks,
            percent(w1),
            percent(f.w1),
            q[0],
            bound(f.p50),
            q[1],
            bound(f.p90),
            q[2],
            bound(f.p99)
        ),
        None => format!(
            "KS {ks:.3}  W1 {}  p50 {}  p90 {}  p99 {}  (n {} / {})",
            percent(w1),
            q[0],
            q[1],
            q[2],
            thousands(r.original_count),
            thousands(r.candidate_count)
        ),
    }
}

/// The verdict lines, one per candidate, and how to read them.
pub fn summary(cmp: &Comparison) -> String {
    let mut out = format!(
        "verdict ({:.0}% noise floor: how far the original is from itself at the candidate's sample size; \
         beyond it: by more than the figure's own 95% interval; close also needs KS ≤ {:.2}, W1 ≤ {:.0}% and {} samples a side)\n",
        cmp.floor_level * 100.0,
        cmp.close_ks,
        cmp.close_w1 * 100.0,
        cmp.min_samples
    );
    for s in &cmp.summary {
        let _ = writeln!(out, "  {}", s.line);
        let _ = writeln!(out, "  {:w$}  {}", "", s.counts, w = s.label.chars().count());
        if let Some(busy) = &s.host_busy {
            let _ = writeln!(out, "  {:w$}  {busy}", "", w = s.label.chars().count());
        }
    }
    out
}

/// What a row is about: `service operation`, or `service operation ← caller`.
fn row_name(r: &LatencyComparison) -> String {
    match &r.caller {
        None => format!("{} {}", r.service, r.operation),
        Some(c) => format!("{} {} ← {}", r.service, r.operation, c),
    }
}

/// Cuts `s` to `width` characters, marking the cut.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One section of verdict lines: for each row index, one line per candidate.
fn section<'c>(out: &mut String, cmp: &'c Comparison, rows: impl Fn(&str) -> Vec<&'c LatencyComparison>) {
    let labels: Vec<&str> = cmp.candidates.iter().map(|c| c.label.as_str()).collect();
    let per_label: Vec<Vec<&LatencyComparison>> = labels.iter().map(|l| rows(l)).collect();
    let n = per_label.first().map_or(0, Vec::len);
    let names: Vec<String> = (0..n).map(|i| row_name(per_label[0][i])).collect();
    let name_w = names.iter().map(|s| s.chars().count()).max().unwrap_or(0).min(48);
    let label_w = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) + 1;
    for (i, name) in names.iter().enumerate() {
        for (k, label) in labels.iter().enumerate() {
            let r = per_label[k][i];
            let shown = if k == 0 { fit(name, name_w) } else { String::new() };
            let head = format!("{shown:<name_w$}  {:<label_w$}", format!("{label}:"));
            let _ = writeln!(out, "{head} {:<92} {}", metrics_line(r), verdict(r.verdict));
        }
    }
}

/// The terminal report; `top` limits the API and per-caller sections.
pub fn render(cmp: &Comparison, top: usize) -> String {
    let mut out = summary(cmp);
    out += "\n";
    let inputs: Vec<_> = std::iter::once(&cmp.original).chain(&cmp.candidates).collect();
    let label_w = inputs.iter().map(|i| i.label.chars().count()).max().unwrap_or(0).max("original".len());
    for (i, s) in inputs.iter().enumerate() {
        let role = if i == 0 { "original" } else { &s.label };
        let _ = writeln!(
            out,
            "{role:<label_w$}  {} traces, {} spans, {} APIs  ({})",
            thousands(s.traces),
            thousands(s.spans),
            thousands(s.apis),
            s.source
        );
    }
    let _ = writeln!(
        out,
        "\nrequest latency by root API ([x]: the noise floor; W1 as a share of the original's mean; p50/p90/p99: relative error)"
    );
    section(&mut out, cmp, |l| cmp.roots[l].iter().collect());
    for (label, f) in &cmp.failures {
        let text = f.render(label, top.min(10));
        if !text.is_empty() {
            out += "\n";
            out += &text;
        }
    }

    // Per-caller rows of the most executed APIs with two or more callers.
    let Some(first) = cmp.candidates.first() else {
        return out;
    };
    let multi: Vec<(&str, &str)> = {
        let mut callers: std::collections::HashMap<(&str, &str), usize> = std::collections::HashMap::new();
        let mut order: Vec<(&str, &str)> = Vec::new();
        for r in &cmp.callers[&first.label] {
            let key = (r.service.as_str(), r.operation.as_str());
            let n = callers.entry(key).or_insert(0);
            if *n == 0 {
                order.push(key);
            }
            *n += 1;
        }
        order.retain(|k| callers[k] >= 2);
        order.truncate(top);
        order
    };
    if !multi.is_empty() {
        let _ = writeln!(out, "\nlatency by caller (APIs with two or more callers, most executed first)");
        section(&mut out, cmp, |l| {
            cmp.callers[l].iter().filter(|r| multi.contains(&(r.service.as_str(), r.operation.as_str()))).collect()
        });
    }
    let _ = writeln!(out, "\nAPI latency (top {top} by executions)");
    section(&mut out, cmp, |l| cmp.apis[l].iter().take(top).collect());
    let total = cmp.apis[&first.label].len();
    if total > top {
        let _ = writeln!(out, "  … {} more APIs (--top N, or --json for all)", total - top);
    }
    out += "\n";
    out += &structure_table(cmp);
    out
}

/// `245.3 → 490.1 (+244.8 ms, ×2.00)`, or `245.3 → –` when the candidate lacks it.
fn shift_cell(s: &Shift) -> String {
    match (s.candidate_ms, s.shift_ms) {
        (Some(c), Some(d)) => {
            let ratio = s.ratio.map_or_else(|| "×n/a".into(), |r| format!("×{r:.2}"));
            format!("{:.2} → {c:.2} ({d:+.2} ms, {ratio})", s.original_ms)
        }
        _ => format!("{:.2} → –", s.original_ms),
    }
}

/// Caller-observed latency per edge (`palette compare --edges`): for each
/// of the `top` edges with the most calls, one line per candidate with the
/// p50, p90 and p99 of the original and the candidate and their shift.
pub fn edges(cmp: &Comparison, top: usize) -> String {
    let mut out = String::new();
    let labels: Vec<&str> = cmp.candidates.iter().map(|c| c.label.as_str()).collect();
    let Some(first) = labels.first() else {
        return out;
    };
    let rows: Vec<&EdgeShift> = cmp.edges[*first].iter().take(top).collect();
    let _ = writeln!(
        out,
        "caller-observed latency per edge, ms (top {top} by calls; client span where traced, else the callee's)"
    );
    let names: Vec<String> = rows.iter().map(|r| format!("{} → {}", r.caller, r.callee)).collect();
    let name_w = names.iter().map(|s| s.chars().count()).max().unwrap_or(0).min(100);
    let label_w = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) + 1;
    for (i, name) in names.iter().enumerate() {
        let _ = writeln!(out, "{}  ({} calls)", fit(name, name_w), thousands(rows[i].original_calls));
        for label in &labels {
            let r = &cmp.edges[*label][i];
            let ks = r.ks.map_or_else(|| "missing".into(), |k| format!("KS {k:.2}"));
            let _ = writeln!(
                out,
                "  {:<label_w$} {ks:<8} p50 {}  p90 {}  p99 {}",
                format!("{label}:"),
                shift_cell(&r.p50),
                shift_cell(&r.p90),
                shift_cell(&r.p99)
            );
        }
    }
    let total = cmp.edges[*first].len();
    if total > top {
        let _ = writeln!(out, "  … {} more edges (--top N, or --json for all)", total - top);
    }
    out
}

/// The structure table: one row per metric, one column per input.
pub fn structure_table(cmp: &Comparison) -> String {
    let labels: Vec<&str> = cmp.candidates.iter().map(|c| c.label.as_str()).collect();
    let structures: Vec<_> = labels.iter().map(|l| &cmp.structure[*l]).collect();
    if structures.is_empty() {
        return String::new();
    }
    aligned(&labels, &structure_rows(cmp, &structures))
}

/// A structure table row: the metric, the original's figure, and each
/// candidate's.
type Row = (String, String, Vec<String>);

/// The rows of the structure table, for the candidates' comparisons `structures`
/// (one at least).
fn structure_rows(cmp: &Comparison, structures: &[&StructureComparison]) -> Vec<Row> {
    let first = structures[0];
    let mut rows: Vec<Row> = Vec::new();
    for (k, (name, shape)) in ["spans/trace", "depth", "fan-out"].into_iter().zip(first.shape_rows()).enumerate() {
        let cells = structures
            .iter()
            .map(|x| {
                let shape = &x.shape_rows()[k];
                format!("{:.2} KS {:.3} [{:.3}]", shape.distribution.candidate.mean, shape.ks, shape.floor)
            })
            .collect();
        rows.push((name.to_string(), format!("mean {:.2}", shape.distribution.original.mean), cells));
    }
    rows.push((
        "calls per caller execution".into(),
        format!("{} edges", thousands(first.edge_probability.edges - first.edge_probability.extra)),
        structures
            .iter()
            .map(|x| {
                let e = &x.edge_probability;
                format!(
                    "mean |diff| {:.3} [{:.3}] ({} missing, {} extra)",
                    x.metrics.edge_calls, x.floor.edge_calls, e.missing, e.extra
                )
            })
            .collect(),
    ));
    rows.push((
        "concurrent stages".into(),
        format!("{:.1}%", first.concurrent_stages.original * 100.0),
        structures
            .iter()
            .map(|x| {
                let c = &x.concurrent_stages;
                format!(
                    "{:.1}% ({:+.1} pts) [±{:.1}]",
                    c.candidate * 100.0,
                    c.difference * 100.0,
                    x.floor.concurrent_stages * 100.0
                )
            })
            .collect(),
    ));
    rows.push((
        "APIs missing / extra".into(),
        format!("{} APIs", thousands(cmp.original.apis)),
        structures.iter().map(|x| format!("{} / {}", x.apis.missing_count, x.apis.extra_count)).collect(),
    ));
    rows.push(("verdict".into(), String::new(), structures.iter().map(|x| verdict(x.verdict).to_string()).collect()));
    rows
}

/// The rows under a header of `labels`, each column right-aligned to its
/// widest cell.
fn aligned(labels: &[&str], rows: &[Row]) -> String {
    let name_w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let orig_w = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0).max("original".len());
    let widths: Vec<usize> = (0..labels.len())
        .map(|k| rows.iter().map(|r| r.2[k].chars().count()).max().unwrap_or(0).max(labels[k].chars().count()))
        .collect();
    let mut out = String::new();
    let _ = write!(out, "{:<name_w$}  {:>orig_w$}", "structure", "original");
    for (k, l) in labels.iter().enumerate() {
        let w = widths[k];
        let _ = write!(out, "  {l:>w$}");
    }
    out += "\n";
    for (name, orig, cells) in rows {
        let _ = write!(out, "{name:<name_w$}  {orig:>orig_w$}");
        for (k, c) in cells.iter().enumerate() {
            let w = widths[k];
            let _ = write!(out, "  {c:>w$}");
        }
        out += "\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(signed_percent(Some(0.012)), "+1.2%");
        assert_eq!(signed_percent(Some(-0.02)), "-2.0%");
        assert_eq!(signed_percent(None), "n/a");
        assert_eq!(p_value(0.621), "p=0.62");
        assert_eq!(p_value(0.001), "p<0.01");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
    }
}
