//! The HTML report: one self-contained page (inline CSS, inline SVG, no
//! scripts, nothing fetched) with latency CDF plots of the original against
//! every candidate, the verdict and structure tables and a picture of the
//! original's topology.

use std::fmt::Write;

use plotters::style::RGBColor;

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
.scroll { overflow-x: auto; max-width: 100%; margin: 0.6em 0; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.25em 0.6em; text-align: right; border-bottom: 1px solid #eee; white-space: nowrap; }
th { background: #f5f5f5; position: sticky; top: 0; }
th small, td small { color: #666; font-weight: normal; }
td.name, th.name { text-align: left; max-width: 22em; overflow: hidden; text-overflow: ellipsis; }
td.verdict { text-align: left; white-space: normal; min-width: 7em; }
td.wrap { white-space: normal; text-align: left; max-width: 40em; }
td.close, li.close { color: #1a7f37; } td.differs, td.missing, li.differs { color: #b42318; }
td.too_few_samples, td.inconclusive, td.borderline, li.inconclusive, li.borderline { color: #9a6700; }
.verdict { font-size: 1.1em; border: 1px solid #ddd; background: #fafafa; padding: 0.6em 1.2em; max-width: 70em; }
.verdict li { margin: 0.2em 0; } .busy { color: #9a6700; }
nav.toc { font-size: 0.95em; } nav.toc a { margin-right: 1.2em; }
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
    h += "<h1>Fidelity report</h1>\n";
    summary_box(&mut h, cmp);
    h += "<nav class=\"toc\"><b>Contents:</b> <a href=\"#run\">Run</a><a href=\"#inputs\">Inputs</a>\
        <a href=\"#roots\">Request latency</a><a href=\"#callers\">By caller</a><a href=\"#apis\">API latency</a>\
        <a href=\"#edges\">Edges</a><a href=\"#structure\">Structure</a><a href=\"#topology\">Topology</a>\
        <a href=\"#method\">Method</a></nav>\n";
    h += "<h2 id=\"run\">Run</h2>\n";
    metadata_table(&mut h, cmp);
    load_over_time(&mut h, cmp)?;
    h += "<h2 id=\"inputs\">Inputs</h2>\n";
    inputs_table(&mut h, cmp);

    let page = Page { original, candidates, cmp, opts };
    page.roots_section(&mut h)?;
    page.callers_section(&mut h)?;
    page.apis_section(&mut h)?;

    h += "<h2 id=\"edges\">Caller-observed latency per edge</h2>\n<p class=\"note\">Each call's duration as its caller saw it \
        (the client span where the traces have one, else the callee's span), and how far each quantile moved: \
        the delay a <code>delay</code> intervention adds to reproduce the candidate.</p>\n";
    edge_table(&mut h, cmp, opts.max_rows);

    h += "<h2 id=\"structure\">Structure</h2>\n<p class=\"note\">Spans per trace count executions (one per API call). \
        Calls per caller execution: how often an edge is called each time its caller runs (above 1 in loops), \
        compared as the mean absolute difference over the union of edges. \
        A stage is a group of one execution's calls that overlap in time; a concurrent stage has two or more. \
        Brackets: noise floors.</p>\n";
    structure_table(&mut h, cmp);

    h += "<h2 id=\"topology\">Topology of the original</h2>\n<p class=\"note\">Services on rings by call depth (root services in \
        the middle), arrows from caller to callee, thicker for more calls. Hover for counts.</p>\n";
    h += &topology_svg(&original.profile, opts.max_services);
    method(&mut h, cmp);
    h += "<footer>Written by <code>palette compare</code>.</footer>\n</body>\n</html>\n";
    Ok(h)
}

/// What the page's sections are drawn from.
struct Page<'a> {
    original: &'a Input,
    candidates: &'a [Input],
    cmp: &'a Comparison,
    opts: &'a HtmlOptions,
}

impl Page<'_> {
    /// End-to-end latency per root API: the verdict table and a plot per root
    /// API (most traces first).
    fn roots_section(&self, h: &mut String) -> Result<(), Error> {
        let Page { original, candidates, cmp, opts } = *self;
        let root_names: Vec<&ApiName> = original.profile.roots_by_count();
        *h += "<h2 id=\"roots\">Request latency by root API</h2>\n<p class=\"note\">End-to-end latency of each root API. \
            Each figure has its noise floor beside it in brackets (see <a href=\"#method\">Method</a>).</p>\n";
        verdict_table(h, cmp, |l| &cmp.roots[l], |_| true, opts.max_rows);
        *h += "<div class=\"plots\">\n";
        for name in root_names.iter().take(opts.max_root_plots) {
            let title = format!("{name} (end to end)");
            let series = series(original, candidates, |p| p.roots.get(*name));
            *h += &plot::cdf_svg(&title, &series)?;
        }
        *h += "</div>\n";
        if root_names.len() > opts.max_root_plots {
            let _ =
                writeln!(h, "<p class=\"note\">Plots of the {} root APIs with most traces.</p>", opts.max_root_plots);
        }
        Ok(())
    }

    /// Latency per caller of the most executed APIs with two or more callers.
    fn callers_section(&self, h: &mut String) -> Result<(), Error> {
        let Page { original, candidates, cmp, opts } = *self;
        let multi: Vec<&ApiName> = original
            .profile
            .apis_by_count()
            .into_iter()
            .filter(|a| original.profile.callers_of(a).len() >= 2)
            .take(opts.top)
            .collect();
        *h += "<h2 id=\"callers\">Latency by caller</h2>\n";
        if multi.is_empty() {
            *h += "<p class=\"note\">No API of the original has two or more callers.</p>\n";
        } else {
            *h += "<p class=\"note\">A shared API's latency can depend on who calls it \
                (the paper's Figure 1): each plot is the API's execution latency when called by one caller.</p>\n";
            let is_multi =
                |r: &LatencyComparison| multi.iter().any(|m| m.service == r.service && m.operation == r.operation);
            verdict_table(h, cmp, |l| &cmp.callers[l], is_multi, usize::MAX);
            for api in &multi {
                let _ = writeln!(h, "<h3>{}</h3>\n<div class=\"plots\">", xml_escape(&api.to_string()));
                for (caller, _) in original.profile.callers_of(api).into_iter().take(opts.max_callers) {
                    let key = (caller.clone(), (*api).clone());
                    let title = format!("{api} ← {caller}");
                    let series = series(original, candidates, |p| p.callers.get(&key));
                    *h += &plot::cdf_svg(&title, &series)?;
                }
                *h += "</div>\n";
            }
        }
        Ok(())
    }

    /// Execution latency of the most executed APIs.
    fn apis_section(&self, h: &mut String) -> Result<(), Error> {
        let Page { original, candidates, cmp, opts } = *self;
        let _ = writeln!(h, "<h2 id=\"apis\">API latency (top {} by executions)</h2>", opts.top);
        let top: Vec<&ApiName> = original.profile.apis_by_count().into_iter().take(opts.top).collect();
        verdict_table(h, cmp, |l| &cmp.apis[l], |_| true, opts.top);
        *h += "<div class=\"plots\">\n";
        for name in &top {
            let series = series(original, candidates, |p| p.apis.get(*name).map(|a| &a.latency));
            *h += &plot::cdf_svg(&name.to_string(), &series)?;
        }
        *h += "</div>\n";
        Ok(())
    }
}

/// The per-candidate verdicts, first thing on the page.
fn summary_box(h: &mut String, cmp: &Comparison) {
    h.push_str("<div class=\"verdict\"><b>Verdict</b>\n<ul>\n");
    for s in &cmp.summary {
        let class = match s.verdict {
            Verdict::Differs => "differs",
            Verdict::Close => "close",
            Verdict::Borderline => "borderline",
            Verdict::Inconclusive | Verdict::TooFewSamples | Verdict::Missing => "inconclusive",
        };
        let _ = write!(h, "<li class=\"{class}\">{}<br><small>{}</small>", xml_escape(&s.line), xml_escape(&s.counts));
        if let Some(busy) = &s.host_busy {
            let _ = write!(h, "<br><span class=\"busy\">{}</span>", xml_escape(busy));
        }
        h.push_str("</li>\n");
    }
    let _ = writeln!(
        h,
        "</ul>\n<small>Within the noise floor: no further from the original than the original's own traces are from \
         each other at the same sample size ({:.0}% bound); beyond it means by more than the figure's own 95% \
         interval (else borderline). Close also needs KS ≤ {:.2}, W1 ≤ {:.0}% and at least {} \
         values a side.</small></div>",
        cmp.floor_level * 100.0,
        cmp.close_ks,
        cmp.close_w1 * 100.0,
        cmp.min_samples
    );
}

/// Keys of the run metadata shown first, in this order; the rest follow
/// by name, and `runs` gets a table of its own.
const METADATA_ORDER: [&str; 4] = ["palette", "command", "date", "host CPUs"];

/// Columns of the per-run table: the metadata key and its heading.
const RUN_COLUMNS: [(&str, &str); 8] = [
    ("kind", "candidate"),
    ("run", "run"),
    ("run_id", "run id"),
    ("measured_requests", "measured requests"),
    ("compared_traces", "traces compared"),
    ("warmup_traces_excluded", "warm-up traces left out"),
    ("in_flight_at_end", "in flight at the end"),
    ("host", "host during the run"),
];

/// How the candidates were made, from the command that made them.
fn metadata_table(h: &mut String, cmp: &Comparison) {
    let Some(serde_json::Value::Object(meta)) = &cmp.metadata else {
        h.push_str("<p class=\"note\">No run metadata: a plain <code>palette compare</code> of files.</p>\n");
        return;
    };
    let shown = |value: &serde_json::Value| match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "–".into(),
        other => other.to_string(),
    };
    let mut keys: Vec<&String> = METADATA_ORDER.iter().filter_map(|k| meta.get_key_value(*k).map(|(k, _)| k)).collect();
    keys.extend(meta.keys().filter(|k| !METADATA_ORDER.contains(&k.as_str()) && k.as_str() != "runs"));
    h.push_str("<div class=\"scroll\"><table>\n");
    for key in keys {
        let _ = writeln!(
            h,
            "<tr><th class=\"name\">{}</th><td class=\"wrap\"><code>{}</code></td></tr>",
            xml_escape(key),
            xml_escape(&shown(&meta[key]))
        );
    }
    h.push_str("</table></div>\n");
    let Some(serde_json::Value::Array(runs)) = meta.get("runs") else {
        return;
    };
    h.push_str("<h3>Live runs</h3>\n<p class=\"note\">Only requests sent in the measured window are compared; the \
        load generator's and the services' own lateness tell whether the host was busy (full figures in the JSON report \
        and each run's load report).</p>\n<div class=\"scroll\"><table>\n<tr>");
    for (_, heading) in RUN_COLUMNS {
        let _ = write!(h, "<th class=\"name\">{heading}</th>");
    }
    h.push_str("</tr>\n");
    for run in runs {
        h.push_str("<tr>");
        for (key, _) in RUN_COLUMNS {
            let value = run.get(key).map_or_else(|| "–".to_string(), &shown);
            let busy = key == "host" && run.get("host_busy").is_some_and(|b| !b.is_null());
            let class = if busy {
                "wrap inconclusive"
            } else if key == "host" {
                "wrap"
            } else {
                "name"
            };
            let _ = write!(h, "<td class=\"{class}\">{}</td>", xml_escape(&value));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table></div>\n");
}

/// With a load profile: per candidate, the target rate against each run's
/// achieved rate, and each run's p50 and p99, window by window (from the
/// `windows` of each run in the metadata).
fn load_over_time(h: &mut String, cmp: &Comparison) -> Result<(), Error> {
    let Some(serde_json::Value::Object(meta)) = &cmp.metadata else {
        return Ok(());
    };
    let (Some(spec), Some(serde_json::Value::Array(runs))) = (meta.get("load profile"), meta.get("runs")) else {
        return Ok(());
    };
    let with_windows: Vec<&serde_json::Value> = runs.iter().filter(|r| r["windows"].is_array()).collect();
    if with_windows.is_empty() {
        return Ok(());
    }
    let spec = spec.as_str().unwrap_or_default();
    let _ = writeln!(
        h,
        "<h3>Load over time</h3>\n<p class=\"note\">The load followed the profile <code>{}</code>. Per window: the \
         rate it aimed at (dashed, black) against the 2xx responses each run received per second, and each run's \
         median and p99 latency of the requests scheduled in the window. The legend gives each run's worst window \
         (achieved ÷ target − 1).</p>\n<div class=\"plots\">",
        xml_escape(spec)
    );
    let mut kinds: Vec<&str> = Vec::new();
    for r in &with_windows {
        let k = r["kind"].as_str().unwrap_or_default();
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    for kind in kinds {
        let color = cmp.candidates.iter().position(|c| c.label == kind).map_or(plot::ORIGINAL, plot::candidate_color);
        let mine: Vec<&serde_json::Value> = with_windows.iter().copied().filter(|r| r["kind"] == kind).collect();
        let (rates, latency) = load_lines(kind, &mine, color);
        *h += &plot::lines_svg(
            &format!("{kind}: requests/s per window"),
            "seconds into the measured window",
            "requests/s",
            &rates,
        )?;
        *h += &plot::lines_svg(
            &format!("{kind}: latency per window"),
            "seconds into the measured window",
            "ms",
            &latency,
        )?;
    }
    h.push_str("</div>\n");
    Ok(())
}

/// The lines of one candidate's two load plots, window by window: the
/// target rate and each run's achieved rate; each run's p50 and p99.
fn load_lines(kind: &str, runs: &[&serde_json::Value], color: RGBColor) -> (Vec<plot::Line>, Vec<plot::Line>) {
    let line = |label: String, run: &serde_json::Value, key: &str, dashed: bool, width: u32| plot::Line {
        label,
        color,
        points: window_points(run, key),
        dashed,
        width,
    };
    let mut rates = vec![plot::Line {
        label: "target".into(),
        color: plot::ORIGINAL,
        points: window_points(runs[0], "target_rate"),
        dashed: true,
        width: 3,
    }];
    let mut latency = Vec::new();
    for r in runs {
        let name = format!("{kind} run {}", r["run"].as_u64().unwrap_or(1));
        let worst = r["rate_deviation"]["relative"]
            .as_f64()
            .map_or_else(String::new, |d| format!(" (worst {})", text::signed_percent(Some(d))));
        rates.push(line(format!("{name} achieved{worst}"), r, "achieved_rate", false, 2));
        latency.push(line(format!("{name} p50"), r, "p50_ms", false, 2));
        latency.push(line(format!("{name} p99"), r, "p99_ms", true, 1));
    }
    (rates, latency)
}

/// `(middle of the window in s, its figure `key`)` for each window of
/// `run`; NaN where the figure is missing (the plot leaves it out).
fn window_points(run: &serde_json::Value, key: &str) -> Vec<(f64, f64)> {
    let mid =
        |w: &serde_json::Value| w["start_s"].as_f64().unwrap_or(0.0) + w["length_s"].as_f64().unwrap_or(0.0) / 2.0;
    run["windows"]
        .as_array()
        .map(|ws| ws.iter().map(|w| (mid(w), w[key].as_f64().unwrap_or(f64::NAN))).collect())
        .unwrap_or_default()
}

/// What the figures mean, in plain words.
fn method(h: &mut String, cmp: &Comparison) {
    let _ = writeln!(
        h,
        "<h2 id=\"method\">Method</h2>\n<p class=\"note\"><b>KS</b> (Kolmogorov–Smirnov) is the largest vertical gap \
         between the two cumulative distributions: 0.10 means that at some latency the share of requests at or below \
         it differs by 10 points. <b>W1</b> (Wasserstein-1) is the average distance latency mass has to move to turn \
         one distribution into the other, as a share of the original's mean. p50/p90/p99 are relative errors of \
         those percentiles.</p>\n<p class=\"note\">The <b>noise floor</b> of a figure is how large it gets between \
         two samples of the <i>original's own</i> system of the same sizes as those compared: drawn {} times by \
         bootstrap from the original, the bound that {:.0}% of the draws stay within on every metric at once \
         (so a copy of the original is close {:.0}% of the time). A candidate run several times is judged on its \
         runs pooled, against the floor at the pooled sample's size. \
         Verdicts: <b>close</b> within every floor (and KS ≤ {:.2}, W1 ≤ {:.0}%); <b>differs</b> beyond a floor by \
         more than the figure's own uncertainty (its 95% bootstrap interval is beyond the floor too); \
         <b>borderline</b> beyond a floor but not by more than that, so that another run may land on either side; \
         <b>too few samples</b> under {} values a side, or within floors wider than those bounds; \
         <b>inconclusive</b> beyond a floor while the host was measured busy. Intervals in the JSON report \
         (<code>ci</code>) are 95% bootstrap intervals of each figure. Figures and floors are compared at the \
         precision shown.</p>",
        200,
        cmp.floor_level * 100.0,
        cmp.floor_level * 100.0,
        cmp.close_ks,
        cmp.close_w1 * 100.0,
        cmp.min_samples
    );
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
    h.push_str("<div class=\"scroll\"><table>\n<tr><th class=\"name\">input</th><th class=\"name\">file</th><th>traces</th><th>spans</th><th>executions</th><th>APIs</th><th>root APIs</th><th>runs</th></tr>\n");
    let rows = std::iter::once((&cmp.original, plot::ORIGINAL))
        .chain(cmp.candidates.iter().enumerate().map(|(i, c)| (c, plot::candidate_color(i))));
    for (k, (s, color)) in rows.enumerate() {
        let role = if k == 0 { format!("{} (original)", s.label) } else { s.label.clone() };
        let _ = writeln!(
            h,
            "<tr><td class=\"name\"><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td class=\"name\" title=\"{2}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            plot::css(color),
            xml_escape(&role),
            xml_escape(&s.source),
            thousands(s.traces),
            thousands(s.spans),
            thousands(s.executions),
            thousands(s.apis),
            thousands(s.root_apis),
            s.runs
        );
    }
    h.push_str("</table></div>\n");
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
    h.push_str("<div class=\"scroll\"><table>\n<tr><th class=\"name\">API</th><th class=\"name\">candidate</th>\
        <th>n<br><small>orig / cand</small></th><th>KS<br><small>[floor]</small></th><th>W1<br><small>% of mean [floor]</small></th>\
        <th>p50<br><small>orig ms; error [floor]</small></th><th>p90<br><small>orig ms; error [floor]</small></th>\
        <th>p99<br><small>orig ms; error [floor]</small></th><th class=\"name\">verdict</th></tr>\n");
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
            let class = verdict_class(r.verdict);
            let floor = |f: fn(&crate::floor::LatencyMetrics) -> f64, pct: bool, signed: bool| {
                r.floor.as_ref().map_or_else(String::new, |fl| {
                    let v = f(fl);
                    let body = match (pct, signed) {
                        (_, true) => text::bound(v),
                        (true, false) => format!("{:.1}%", v * 100.0),
                        (false, false) => format!("{v:.3}"),
                    };
                    format!(" <small>[{body}]</small>")
                })
            };
            let num = |x: Option<f64>, f: &dyn Fn(f64) -> String| x.map_or_else(|| "–".to_string(), f);
            let q = |s: &crate::compare::Stat, fl: String| {
                format!("{:.2} ms<br>{}{fl}", s.original_ms, text::signed_percent(s.rel_error))
            };
            let _ = writeln!(
                h,
                "<tr><td class=\"name\" title=\"{n}\">{n}</td><td class=\"name\">{}</td><td>{} / {}</td><td>{}{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"verdict {class}\">{}</td></tr>",
                xml_escape(label),
                thousands(r.original_count),
                thousands(r.candidate_count),
                num(r.ks, &|v| format!("{v:.3}")),
                floor(|f| f.ks, false, false),
                num(r.w1, &|v| format!("{:.1}%", v * 100.0)),
                floor(|f| f.w1, true, false),
                q(&r.p50, floor(|f| f.p50, true, true)),
                q(&r.p90, floor(|f| f.p90, true, true)),
                q(&r.p99, floor(|f| f.p99, true, true)),
                text::verdict(r.verdict),
                n = xml_escape(&name),
            );
        }
    }
    h.push_str("</table></div>\n");
}

/// The CSS class of a verdict (its JSON name).
fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Close => "close",
        Verdict::Differs => "differs",
        Verdict::Borderline => "borderline",
        Verdict::TooFewSamples => "too_few_samples",
        Verdict::Inconclusive => "inconclusive",
        Verdict::Missing => "missing",
    }
}

/// Per-edge caller-observed latency: the first `limit` edges by calls, each
/// candidate's row under the edge.
fn edge_table(h: &mut String, cmp: &Comparison, limit: usize) {
    h.push_str("<div class=\"scroll\"><table>\n<tr><th class=\"name\">caller → callee</th><th class=\"name\">candidate</th>\
        <th>calls<br><small>orig / cand</small></th><th>KS</th><th>p50<br><small>orig → cand ms (shift, ratio)</small></th>\
        <th>p90<br><small>orig → cand ms (shift, ratio)</small></th><th>p99<br><small>orig → cand ms (shift, ratio)</small></th></tr>\n");
    let cell = |s: &crate::compare::Shift| match (s.candidate_ms, s.shift_ms) {
        (Some(c), Some(d)) => format!(
            "{:.2} → {c:.2} ({d:+.2}, {})",
            s.original_ms,
            s.ratio.map_or_else(|| "×n/a".into(), |r| format!("×{r:.2}"))
        ),
        _ => format!("{:.2} → –", s.original_ms),
    };
    let Some(first) = cmp.candidates.first() else {
        h.push_str("</table></div>\n");
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
    h.push_str("</table></div>\n");
}

fn structure_table(h: &mut String, cmp: &Comparison) {
    h.push_str("<div class=\"scroll\"><table>\n<tr><th class=\"name\">metric</th><th>original</th>");
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
        h.push_str("</table></div>\n");
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
    let ks = |v: f64, f: f64| format!("KS {v:.3} <small>[{f:.3}]</small>");
    let shape_names = [
        "spans per trace <small>(executions)</small>",
        "call-tree depth <small>(executions)</small>",
        "fan-out <small>(calls per calling execution)</small>",
    ];
    for (k, (name, shape)) in shape_names.into_iter().zip(first.shape_rows()).enumerate() {
        row(name, d(&shape.distribution.original), &|s| {
            let shape = &s.shape_rows()[k];
            format!("{}; {}", d(&shape.distribution.candidate), ks(shape.ks, shape.floor))
        });
    }
    row(
        "calls per caller execution <small>(mean |difference| over edges)</small>",
        format!("{} edges", thousands(first.edge_probability.edges - first.edge_probability.extra)),
        &|s| {
            let e = &s.edge_probability;
            format!(
                "{:.3} <small>[{:.3}]</small> ({} missing, {} extra edges)",
                s.metrics.edge_calls, s.floor.edge_calls, e.missing, e.extra
            )
        },
    );
    row(
        "concurrent stages <small>(% of stages)</small>",
        format!("{:.1}%", first.concurrent_stages.original * 100.0),
        &|s| {
            format!(
                "{:.1}% ({:+.1} pts) <small>[±{:.1}]</small>",
                s.concurrent_stages.candidate * 100.0,
                s.concurrent_stages.difference * 100.0,
                s.floor.concurrent_stages * 100.0
            )
        },
    );
    row("APIs missing / extra", format!("{} APIs", thousands(cmp.original.apis)), &|s| {
        format!("{} / {}", s.apis.missing_count, s.apis.extra_count)
    });
    row("verdict", String::new(), &|s| {
        format!("<span class=\"{}\">{}</span>", verdict_class(s.verdict), text::verdict(s.verdict))
    });
    h.push_str("</table></div>\n");
    worst_edges_tables(h, cmp, &labels);
}

/// The largest differences of calls per caller execution, a table per
/// candidate.
fn worst_edges_tables(h: &mut String, cmp: &Comparison, labels: &[&str]) {
    for l in labels {
        let worst = &cmp.structure[*l].edge_probability.worst;
        if worst.is_empty() {
            continue;
        }
        let _ = writeln!(
            h,
            "<h3>Largest differences of calls per caller execution: {}</h3>\n<div class=\"scroll\"><table>\n<tr><th class=\"name\">caller</th><th class=\"name\">callee</th><th>original<br><small>calls per execution</small></th><th>candidate<br><small>calls per execution</small></th></tr>",
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
        h.push_str("</table></div>\n");
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
        assert!(!page.contains("Load over time"), "no profile, no load plots");
    }

    #[test]
    fn a_profile_run_plots_target_and_achieved_rate_and_latency_per_window() {
        let mut names = Interner::default();
        let trees: Vec<_> = (0..40).map(|i| tree(&mut names, &[("A/a", NO_PARENT, 0, 1_000_000 + i * 1000)])).collect();
        let p = Profile::from_traces(&trees, &names, CollectOptions::default());
        let o = Input::new("orig", "o.jsonl", p.clone());
        let cands = [Input::new("palette", "p.jsonl", p)];
        let mut cmp = compare(&o, &cands, &CompareOptions::default()).unwrap();
        let windows = |achieved: [f64; 2]| {
            serde_json::json!([
                {"start_s": 0.0, "length_s": 5.0, "target_rate": 5.3, "achieved_rate": achieved[0], "p50_ms": 3.0, "p99_ms": 9.0},
                {"start_s": 5.0, "length_s": 5.0, "target_rate": 12.0, "achieved_rate": achieved[1], "p50_ms": 3.5, "p99_ms": null}
            ])
        };
        cmp.metadata = Some(serde_json::json!({
            "load profile": "sine:period=20s,min=5,max=40",
            "runs": [
                {"kind": "palette", "run": 1, "windows": windows([5.2, 12.1]), "rate_deviation": {"relative": -0.0189}},
                {"kind": "palette", "run": 2, "windows": windows([5.4, 11.0]), "rate_deviation": {"relative": -0.0833}},
            ]
        }));
        let page = render(&o, &cands, &cmp, &HtmlOptions::default()).unwrap();
        assert!(page.contains("Load over time") && page.contains("sine:period=20s,min=5,max=40"));
        assert!(page.contains("palette: requests/s per window") && page.contains("palette: latency per window"));
        assert!(page.contains("palette run 2 achieved (worst -8.3%)"), "{page}");
        assert!(page.contains("palette run 1 p99"));
        // The root and API plots, the topology and the two load plots.
        assert_eq!(page.matches("<svg").count(), 5);
    }
}
