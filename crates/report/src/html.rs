//! The HTML report: one self-contained page (inline CSS, inline SVG, no
//! scripts, nothing fetched) with latency CDF plots of the original against
//! every candidate, the verdict and structure tables and a picture of the
//! original's topology.

use std::fmt::Write;

use crate::collect::{ApiName, Sample};
use crate::compare::{Comparison, Input, LatencyComparison, Verdict};
use crate::error::Error;
use crate::plot::{self, Series};
use crate::text::{self, thousands};
use crate::topology::{topology_svg, xml_escape};

/// What the page shows.
#[derive(Clone, Debug)]
pub struct HtmlOptions {
    /// APIs plotted (most executed first), and APIs with two or more callers
    /// plotted per caller.
    pub top: usize,
    /// Root APIs plotted (most traces first); all are in the table up to
    /// [`HtmlOptions::max_rows`].
    pub max_root_plots: usize,
    /// Callers plotted per API (most calls first).
    pub max_callers: usize,
    /// Services drawn in the topology picture (most executed first).
    pub max_services: usize,
    /// Rows of each table (the JSON report has them all).
    pub max_rows: usize,
}

impl Default for HtmlOptions {
    fn default() -> Self {
        HtmlOptions { top: 12, max_root_plots: 50, max_callers: 6, max_services: 60, max_rows: 200 }
    }
}

const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1500px; padding: 0 1.5em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1em; margin: 1.2em 0 0.3em; }
p.note { color: #555; max-width: 60em; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.6em 0; }
th, td { padding: 0.25em 0.7em; text-align: right; border-bottom: 1px solid #eee; white-space: nowrap; }
th { background: #f5f5f5; }
td.name, th.name { text-align: left; max-width: 38em; overflow: hidden; text-overflow: ellipsis; }
td.close { color: #1a7f37; } td.differs, td.missing { color: #b42318; }
.swatch { display: inline-block; width: 1.6em; height: 0.35em; vertical-align: middle; margin-right: 0.4em; }
.plots { display: flex; flex-wrap: wrap; gap: 10px; }
.plots svg { border: 1px solid #eee; }
footer { margin-top: 3em; color: #888; font-size: 0.85em; }
"#;

/// The page.
pub fn render(original: &Input, candidates: &[Input], cmp: &Comparison, opts: &HtmlOptions) -> Result<String, Error> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Palette fidelity report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        xml_escape(&original.label)
    );
    h += "<h1>Fidelity report</h1>\n<p class=\"note\">How closely each candidate's traces match the original's. \
        Latency is compared by the two-sample Kolmogorov–Smirnov statistic (KS, the largest gap between the CDFs) \
        with its asymptotic p-value, the Wasserstein-1 distance as a fraction of the original's mean (W1), and the \
        relative error of p50, p90 and p99. ";
    let _ = writeln!(
        h,
        "A distribution is <b>close</b> when KS ≤ {:.2} and W1 ≤ {:.0}%.</p>",
        cmp.close_ks,
        cmp.close_w1 * 100.0
    );
    inputs_table(&mut h, cmp);

    let root_names: Vec<&ApiName> = original.profile.roots_by_count();
    h += "<h2>Request latency by root API</h2>\n";
    verdict_table(&mut h, cmp, |l| &cmp.roots[l], |_| true, opts.max_rows);
    h += "<div class=\"plots\">\n";
    for name in root_names.iter().take(opts.max_root_plots) {
        let title = format!("{name} (end to end)");
        let series = series(original, candidates, |p| p.roots.get(*name));
        h += &plot::cdf_svg(&title, &series)?;
    }
    h += "</div>\n";
    if root_names.len() > opts.max_root_plots {
        let _ = writeln!(h, "<p class=\"note\">Plots of the {} root APIs with most traces.</p>", opts.max_root_plots);
    }

    // Per-caller latency of the most executed APIs with two or more callers.
    let multi: Vec<&ApiName> = original
        .profile
        .apis_by_count()
        .into_iter()
        .filter(|a| original.profile.callers_of(a).len() >= 2)
        .take(opts.top)
        .collect();
    if !multi.is_empty() {
        h += "<h2>Latency by caller</h2>\n<p class=\"note\">A shared API's latency can depend on who calls it \
            (the paper's Figure 1): each plot is the API's execution latency when called by one caller.</p>\n";
        let is_multi =
            |r: &LatencyComparison| multi.iter().any(|m| m.service == r.service && m.operation == r.operation);
        verdict_table(&mut h, cmp, |l| &cmp.callers[l], is_multi, usize::MAX);
        for api in &multi {
            let _ = writeln!(h, "<h3>{}</h3>\n<div class=\"plots\">", xml_escape(&api.to_string()));
            for (caller, _) in original.profile.callers_of(api).into_iter().take(opts.max_callers) {
                let key = (caller.clone(), (*api).clone());
                let title = format!("{api} ← {caller}");
                let series = series(original, candidates, |p| p.callers.get(&key));
                h += &plot::cdf_svg(&title, &series)?;
            }
            h += "</div>\n";
        }
    }

    let _ = writeln!(h, "<h2>API latency (top {} by executions)</h2>", opts.top);
    let top: Vec<&ApiName> = original.profile.apis_by_count().into_iter().take(opts.top).collect();
    verdict_table(&mut h, cmp, |l| &cmp.apis[l], |_| true, opts.top);
    h += "<div class=\"plots\">\n";
    for name in &top {
        let series = series(original, candidates, |p| p.apis.get(*name).map(|a| &a.latency));
        h += &plot::cdf_svg(&name.to_string(), &series)?;
    }
    h += "</div>\n";

    h += "<h2>Caller-observed latency per edge</h2>\n<p class=\"note\">Each call's duration as its caller saw it \
        (the client span where the traces have one, else the callee's span), and how far each quantile moved: \
        the delay a <code>delay</code> intervention adds to reproduce the candidate.</p>\n";
    edge_table(&mut h, cmp, opts.max_rows);

    h += "<h2>Structure</h2>\n<p class=\"note\">Spans per trace count executions (one per API call). \
        Call probability is calls of an edge per execution of its caller, compared over the union of edges. \
        A stage is a group of one execution's calls that overlap in time; a concurrent stage has two or more.</p>\n";
    structure_table(&mut h, cmp);

    h += "<h2>Topology of the original</h2>\n<p class=\"note\">Services on rings by call depth (root services in \
        the middle), arrows from caller to callee, thicker for more calls. Hover for counts.</p>\n";
    h += &topology_svg(&original.profile, opts.max_services);
    h += "<footer>Written by <code>palette compare</code>.</footer>\n</body>\n</html>\n";
    Ok(h)
}

/// The series of one plot: the original in black, candidates in colour.
fn series<'a>(
    original: &'a Input,
    candidates: &'a [Input],
    pick: impl Fn(&'a crate::Profile) -> Option<&'a Sample>,
) -> Vec<Series<'a>> {
    let mut out = Vec::with_capacity(candidates.len() + 1);
    let line = |input: &'a Input, color, sample: Option<&'a Sample>| Series {
        label: format!("{} (n={})", input.label, thousands(sample.map_or(0, |s| s.count))),
        color,
        values: sample.map_or(&[][..], |s| s.values.as_slice()),
        dashed: false,
    };
    out.push(line(original, plot::ORIGINAL, pick(&original.profile)));
    for (i, c) in candidates.iter().enumerate() {
        out.push(line(c, plot::candidate_color(i), pick(&c.profile)));
    }
    out
}

fn inputs_table(h: &mut String, cmp: &Comparison) {
    h.push_str("<table>\n<tr><th class=\"name\">input</th><th class=\"name\">file</th><th>traces</th><th>spans</th><th>executions</th><th>APIs</th><th>root APIs</th></tr>\n");
    let rows = std::iter::once((&cmp.original, plot::ORIGINAL))
        .chain(cmp.candidates.iter().enumerate().map(|(i, c)| (c, plot::candidate_color(i))));
    for (k, (s, color)) in rows.enumerate() {
        let role = if k == 0 { format!("{} (original)", s.label) } else { s.label.clone() };
        let _ = writeln!(
            h,
            "<tr><td class=\"name\"><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            plot::css(color),
            xml_escape(&role),
            xml_escape(&s.source),
            thousands(s.traces),
            thousands(s.spans),
            thousands(s.executions),
            thousands(s.apis),
            thousands(s.root_apis)
        );
    }
    h.push_str("</table>\n");
}

/// A table of rows interleaved by candidate (row 1 of each candidate, then
/// row 2 of each, so a distribution's lines sit together): the first
/// `limit` distributions that `keep` accepts.
fn verdict_table<'c>(
    h: &mut String,
    cmp: &'c Comparison,
    rows: impl Fn(&str) -> &'c Vec<LatencyComparison>,
    keep: impl Fn(&LatencyComparison) -> bool,
    limit: usize,
) {
    h.push_str("<table>\n<tr><th class=\"name\">API</th><th class=\"name\">candidate</th><th>n (orig / cand)</th><th>KS</th><th>p-value</th><th>W1</th><th>p50</th><th>p90</th><th>p99</th><th class=\"name\">verdict</th></tr>\n");
    let per: Vec<(&str, &Vec<LatencyComparison>)> =
        cmp.candidates.iter().map(|c| (c.label.as_str(), rows(&c.label))).collect();
    let n = per.first().map_or(0, |p| p.1.len());
    let shown = (0..n).filter(|&i| keep(&per[0].1[i])).take(limit);
    for i in shown {
        for (label, rs) in &per {
            let r = &rs[i];
            let name = match &r.caller {
                None => format!("{} {}", r.service, r.operation),
                Some(c) => format!("{} {} ← {}", r.service, r.operation, c),
            };
            let class = match r.verdict {
                Verdict::Close => "close",
                Verdict::Differs => "differs",
                Verdict::Missing => "missing",
            };
            let num = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or_else(|| "–".to_string(), f);
            let q =
                |s: &crate::compare::Stat| format!("{:.2} ms ({})", s.original_ms, text::signed_percent(s.rel_error));
            let _ = writeln!(
                h,
                "<tr><td class=\"name\" title=\"{n}\">{n}</td><td class=\"name\">{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"name {class}\">{}</td></tr>",
                xml_escape(label),
                thousands(r.original_count),
                thousands(r.candidate_count),
                num(r.ks, &|v| format!("{v:.3}")),
                num(r.p_value, &|v| if v < 0.001 { "&lt;0.001".into() } else { format!("{v:.3}") }),
                num(r.w1, &|v| format!("{:.1}%", v * 100.0)),
                q(&r.p50),
                q(&r.p90),
                q(&r.p99),
                text::verdict(r.verdict),
                n = xml_escape(&name),
            );
        }
    }
    h.push_str("</table>\n");
}

/// Per-edge caller-observed latency: the first `limit` edges by calls, each
/// candidate's row under the edge.
fn edge_table(h: &mut String, cmp: &Comparison, limit: usize) {
    h.push_str("<table>\n<tr><th class=\"name\">caller → callee</th><th class=\"name\">candidate</th><th>calls (orig / cand)</th><th>KS</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th></tr>\n");
    let cell = |s: &crate::compare::Shift| match (s.candidate_ms, s.shift_ms) {
        (Some(c), Some(d)) => format!(
            "{:.2} → {c:.2} ({d:+.2}, {})",
            s.original_ms,
            s.ratio.map_or_else(|| "×n/a".into(), |r| format!("×{r:.2}"))
        ),
        _ => format!("{:.2} → –", s.original_ms),
    };
    let Some(first) = cmp.candidates.first() else {
        h.push_str("</table>\n");
        return;
    };
    for i in 0..cmp.edges[&first.label].len().min(limit) {
        for c in &cmp.candidates {
            let r = &cmp.edges[&c.label][i];
            let name = xml_escape(&format!("{} → {}", r.caller, r.callee));
            let _ = writeln!(
                h,
                "<tr><td class=\"name\" title=\"{name}\">{name}</td><td class=\"name\">{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                xml_escape(&c.label),
                thousands(r.original_calls),
                thousands(r.candidate_calls),
                r.ks.map_or_else(|| "–".into(), |v| format!("{v:.3}")),
                cell(&r.p50),
                cell(&r.p90),
                cell(&r.p99),
            );
        }
    }
    h.push_str("</table>\n");
}

fn structure_table(h: &mut String, cmp: &Comparison) {
    h.push_str("<table>\n<tr><th class=\"name\">metric</th><th>original</th>");
    for (i, c) in cmp.candidates.iter().enumerate() {
        let _ = write!(
            h,
            "<th><span class=\"swatch\" style=\"background:{}\"></span>{}</th>",
            plot::css(plot::candidate_color(i)),
            xml_escape(&c.label)
        );
    }
    h.push_str("</tr>\n");
    let labels: Vec<&str> = cmp.candidates.iter().map(|c| c.label.as_str()).collect();
    let Some(first) = labels.first().map(|l| &cmp.structure[*l]) else {
        h.push_str("</table>\n");
        return;
    };
    let mut row = |name: &str, orig: String, cell: &dyn Fn(&crate::StructureComparison) -> String| {
        let _ = write!(h, "<tr><td class=\"name\">{name}</td><td>{orig}</td>");
        for l in &labels {
            let _ = write!(h, "<td>{}</td>", cell(&cmp.structure[*l]));
        }
        h.push_str("</tr>\n");
    };
    let d = |x: &palette_trace::stats::Distribution| format!("mean {:.2}, p50 {}, p99 {}", x.mean, x.p50, x.p99);
    row("spans per trace", d(&first.spans_per_trace.original), &|s| {
        format!("{}; KS {:.3}", d(&s.spans_per_trace.candidate), s.spans_per_trace.ks)
    });
    row("call-tree depth", d(&first.depth.original), &|s| format!("{}; KS {:.3}", d(&s.depth.candidate), s.depth.ks));
    row("fan-out", d(&first.fan_out.original), &|s| format!("{}; KS {:.3}", d(&s.fan_out.candidate), s.fan_out.ks));
    row(
        "per-edge call probability",
        format!("{} edges", thousands(first.edge_probability.edges - first.edge_probability.extra)),
        &|s| {
            let e = &s.edge_probability;
            format!("MAE {:.4} ({} missing, {} extra edges)", e.mae, e.missing, e.extra)
        },
    );
    row("concurrent stages", format!("{:.1}%", first.concurrent_stages.original * 100.0), &|s| {
        format!("{:.1}% ({:+.1} pts)", s.concurrent_stages.candidate * 100.0, s.concurrent_stages.difference * 100.0)
    });
    row("APIs missing / extra", format!("{} APIs", thousands(cmp.original.apis)), &|s| {
        format!("{} / {}", s.apis.missing_count, s.apis.extra_count)
    });
    h.push_str("</table>\n");
    // The largest call-probability errors, per candidate.
    for l in &labels {
        let worst = &cmp.structure[*l].edge_probability.worst;
        if worst.is_empty() {
            continue;
        }
        let _ = writeln!(
            h,
            "<h3>Largest call-probability errors: {}</h3>\n<table>\n<tr><th class=\"name\">caller</th><th class=\"name\">callee</th><th>original</th><th>candidate</th></tr>",
            xml_escape(l)
        );
        for e in worst {
            let _ = writeln!(
                h,
                "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td>{:.3}</td><td>{:.3}</td></tr>",
                xml_escape(&e.caller.to_string()),
                xml_escape(&e.callee.to_string()),
                e.original,
                e.candidate
            );
        }
        h.push_str("</table>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::tests::tree;
    use crate::collect::{CollectOptions, Profile};
    use crate::compare::{CompareOptions, compare};
    use palette_trace::Interner;
    use palette_trace::tree::NO_PARENT;

    #[test]
    fn page_is_self_contained() {
        let mut names = Interner::default();
        let mut trees = Vec::new();
        for i in 0..50 {
            trees.push(tree(&mut names, &[("A/a", NO_PARENT, 0, 1_000_000 + i * 1000), ("B/b", 0, 10, 20_000 + i)]));
            trees.push(tree(&mut names, &[("C/<c>", NO_PARENT, 0, 3_000_000), ("B/b", 0, 10, 200_000 + i * 100)]));
        }
        let p = Profile::from_traces(&trees, &names, CollectOptions::default());
        let o = Input::new("orig", "o.jsonl", p.clone());
        let cands = [Input::new("palette", "p.jsonl", p.clone()), Input::new("naive", "n.jsonl", p)];
        let cmp = compare(&o, &cands, &CompareOptions::default()).unwrap();
        let page = render(&o, &cands, &cmp, &HtmlOptions::default()).unwrap();
        assert!(page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>\n"));
        // 2 roots + 2 per-caller + 3 APIs plots, and the topology.
        assert_eq!(page.matches("<svg").count(), 8);
        assert!(page.contains("Latency by caller") && page.contains("B b ← A a"));
        assert!(page.contains("C &lt;c&gt;") && !page.contains("C <c>"));
        assert!(page.contains("Caller-observed latency per edge") && page.contains("C &lt;c&gt; → B b"));
        assert!(page.contains("(+0.00, ×1.00)"), "edge shifts of identical inputs");
        for (i, _) in page.match_indices("http") {
            let before = &page[i.saturating_sub(7)..i];
            assert_eq!(before, "xmlns=\"", "a link other than an SVG namespace at {i}");
        }
        assert!(!page.contains("<script") && !page.contains("<link") && !page.contains("src="));
    }
}
