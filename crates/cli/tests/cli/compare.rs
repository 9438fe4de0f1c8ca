//! `palette compare` as users rely on it: a file compared with itself
//! matches everywhere; the paper's Figure 1 — a shared service B whose
//! latency depends on its caller — is reproduced by the Palette model and
//! missed by the naive baseline, per caller; the HTML report is one
//! self-contained page; bad input stops with the right exit code.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

const USAGE: i32 = 2;
const BAD_DATA: i32 = 65;

fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(items: I) -> Vec<OsString> {
    items.into_iter().map(Into::into).collect()
}

/// Runs palette and asserts success; returns stdout.
fn ok(a: &[OsString]) -> String {
    let run = palette(a);
    assert!(!run.stderr.contains("panicked"), "palette panicked on {a:?}:\n{}", run.stderr);
    assert_eq!(run.code, 0, "palette {a:?} failed:\n{}", run.stderr);
    run.stdout
}

/// `palette compare --json inputs... extra...`, parsed.
fn compare_json(inputs: &[&Path], extra: &[&str]) -> Value {
    let mut a = args(["compare", "--json"]);
    a.extend(inputs.iter().map(|p| p.as_os_str().to_owned()));
    a.extend(args(extra.iter().copied()));
    serde_json::from_str(&ok(&a)).expect("compare --json prints JSON")
}

/// `palette example` into `dir`; returns the Figure-1 traces.
fn figure1(dir: &Dir) -> PathBuf {
    let out = dir.path("example");
    ok(&args(["example".as_ref(), "-o".as_ref(), out.as_os_str(), "--alibaba-rows".as_ref(), "1000".as_ref()]));
    out.join("figure1.otlp.jsonl")
}

/// Fits a model of `kind` to `traces` and simulates `n` traces from it.
fn simulate(dir: &Dir, traces: &Path, kind: &str, n: u32) -> PathBuf {
    let (model, out) = (dir.path(&format!("{kind}.json")), dir.path(&format!("{kind}.jsonl")));
    ok(&args(["fit".as_ref(), traces.as_os_str(), "--kind".as_ref(), kind.as_ref(), "-o".as_ref(), model.as_os_str()]));
    let n = n.to_string();
    ok(&args(["simulate".as_ref(), model.as_os_str(), "-n".as_ref(), n.as_ref(), "-o".as_ref(), out.as_os_str()]));
    out
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Every per-distribution row of `label` under `section`.
fn rows<'a>(report: &'a Value, section: &str, label: &str) -> &'a Vec<Value> {
    report[section][label].as_array().unwrap_or_else(|| panic!("no {section}.{label} in the report"))
}

/// The per-caller row of `callee` when called by `caller` (operations).
fn caller_row<'a>(report: &'a Value, label: &str, callee: &str, caller: &str) -> &'a Value {
    rows(report, "callers", label)
        .iter()
        .find(|r| r["operation"] == callee && r["caller"]["operation"] == caller)
        .unwrap_or_else(|| panic!("no callers.{label} row for {callee} ← {caller}"))
}

#[test]
fn a_file_against_itself_matches_everywhere() {
    let dir = Dir::new();
    let example = figure1(&dir);
    let shop = example.with_file_name("webshop.otlp.jsonl");
    let report = compare_json(&[&shop, &shop], &["--label", "same"]);
    assert_eq!(report["original"]["traces"], 1000);
    for section in ["roots", "apis", "callers"] {
        let rs = rows(&report, section, "same");
        assert!(!rs.is_empty(), "{section} is empty");
        for r in rs {
            assert_eq!(num(&r["ks"]), 0.0, "{section}: {r}");
            assert_eq!(num(&r["w1"]), 0.0, "{section}: {r}");
            assert_eq!(num(&r["p_value"]), 1.0, "{section}: {r}");
            // Identical, so never beyond a floor; a handful of values cannot be judged.
            let few = r["original_count"].as_u64().unwrap() < 30;
            assert_eq!(r["verdict"], if few { "too_few_samples" } else { "close" }, "{section}: {r}");
        }
    }
    let s = &report["structure"]["same"];
    for k in ["spans_per_trace", "depth", "fan_out"] {
        assert_eq!(num(&s[k]["ks"]), 0.0, "{k}");
    }
    assert_eq!(num(&s["edge_probability"]["mae"]), 0.0);
    assert!(s["edge_probability"]["edges"].as_u64().unwrap() > 10);
    assert_eq!(num(&s["concurrent_stages"]["difference"]), 0.0);
    // The web shop has concurrent fan-out: some stages are concurrent.
    assert!(num(&s["concurrent_stages"]["original"]) > 0.05, "{s}");

    // The same traces in another format: the same structure (spans per
    // trace count executions, however the format records calls), and the
    // same latency up to Jaeger's microsecond timestamps.
    let jaeger = example.with_file_name("webshop.jaeger.json");
    let report = compare_json(&[&shop, &jaeger], &[]);
    let s = &report["structure"]["webshop.jaeger"];
    assert_eq!(num(&s["spans_per_trace"]["ks"]), 0.0, "{s}");
    assert_eq!(num(&s["edge_probability"]["mae"]), 0.0);
    for r in rows(&report, "roots", "webshop.jaeger") {
        assert!(num(&r["w1"]) < 0.001 && num(&r["ks"]) < 0.05, "{r}");
    }
}

/// The paper's Figure 1: B does 10× more work for C than for A. A model
/// conditioned on the caller reproduces both; the naive per-API model gives
/// both callers the mixture.
#[test]
fn figure1_per_caller_latency_palette_vs_naive() {
    let dir = Dir::new();
    let original = figure1(&dir);
    let naive = simulate(&dir, &original, "naive", 5000);
    let model = simulate(&dir, &original, "palette", 5000);
    let report = compare_json(&[&original, &model, &naive], &["--label", "palette", "--label", "naive"]);
    let mut seen = Vec::new();
    for label in ["palette", "naive"] {
        for caller in ["a", "c"] {
            let r = caller_row(&report, label, "b", caller);
            let (ks, p) = (num(&r["ks"]), num(&r["p_value"]));
            assert!((0.0..=1.0).contains(&p));
            eprintln!("figure 1: B latency when called by {caller}: {label} KS {ks:.3} (p={p:.3})");
            seen.push((label, caller, ks));
        }
    }
    for &(label, caller, ks) in &seen {
        if label == "palette" {
            assert!(ks <= 0.10, "palette's B←{caller} KS is {ks}, expected ≤ 0.10");
        }
    }
    let naive_max = seen.iter().filter(|s| s.0 == "naive").map(|s| s.2).fold(0.0, f64::max);
    assert!(naive_max >= 0.40, "the naive baseline should miss B's caller dependence: max KS {naive_max}");
    // B's overall latency is the same mixture in both: only per caller do they differ.
    let b = |label| rows(&report, "apis", label).iter().find(|r| r["operation"] == "b").map(|r| num(&r["ks"]));
    assert!(b("naive").unwrap() <= 0.10 && b("palette").unwrap() <= 0.10);

    // The terminal report says the same, one verdict line per root API per candidate.
    let mut a = args(["compare".as_ref(), original.as_os_str(), model.as_os_str(), naive.as_os_str()]);
    a.extend(args(["--label", "palette", "--label", "naive"]));
    let text = ok(&a);
    let line = |start: &str, label: &str| {
        let mut current = "";
        for l in text.lines() {
            if !l.starts_with(' ') {
                current = l;
            }
            if current.starts_with(start) && l.contains(&format!("{label}:")) {
                return l.to_string();
            }
        }
        panic!("no `{start}` line for {label} in:\n{text}");
    };
    // Judged against the noise floor: Palette is close to the original per
    // caller, the naive baseline beyond the floor.
    for caller in ["a", "c"] {
        assert_eq!(caller_row(&report, "palette", "b", caller)["verdict"], "close", "B ← {caller}");
        assert_eq!(caller_row(&report, "naive", "b", caller)["verdict"], "differs", "B ← {caller}");
    }
    let summary = &report["summary"];
    assert_eq!(summary[0]["label"], "palette");
    assert_eq!(summary[0]["roots_close"], summary[0]["roots"], "{summary}");
    assert_eq!(summary[0]["structure"], "close", "{summary}");
    assert!(text.starts_with("verdict ("), "the verdict comes first:\n{text}");
    assert!(text.contains("\n  palette: close to the original — nothing clearly beyond the noise floor\n"), "{text}");
    assert!(
        text.contains("\n  naive: differs from the original — root-API latency beyond the noise floor\n"),
        "{text}"
    );
    assert!(line("A a", "palette").ends_with("✓ close"), "{text}");
    assert!(line("C c", "naive").ends_with("✗ differs"), "{text}");
    assert!(line("B b ← A a", "palette").contains("KS 0.0"), "{text}");
    assert!(text.contains("concurrent stages"), "{text}");
}

/// Splits a span CSV (one span per row, trace id first) into two halves by
/// trace id: two samples of one system.
fn halves(csv: &Path, dir: &Dir, name: &str) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(csv).expect("read the span CSV");
    let mut lines = text.lines();
    let header = lines.next().expect("a header");
    let (mut a, mut b) = (format!("{header}\n"), format!("{header}\n"));
    for line in lines {
        let last = line.split(',').next().and_then(|id| id.chars().last()).unwrap_or('0');
        let half = if "01234567".contains(last) { &mut a } else { &mut b };
        half.push_str(line);
        half.push('\n');
    }
    let (pa, pb) = (dir.path(&format!("{name}-a.csv")), dir.path(&format!("{name}-b.csv")));
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();
    (pa, pb)
}

/// The noise floor's promise: two halves of one original are close (where
/// they have enough samples), root APIs and structure alike.
fn assert_halves_are_close(a: &Path, b: &Path) {
    let report = compare_json(&[a, b], &["--label", "other-half"]);
    let roots = rows(&report, "roots", "other-half");
    let judged: Vec<&Value> = roots.iter().filter(|r| r["verdict"] != "too_few_samples").collect();
    for r in &judged {
        assert_eq!(r["verdict"], "close", "{}: {r}", a.display());
        let f = &r["floor"];
        assert!(num(&r["ks"]) <= num(&f["ks"]) && num(&f["ks"]) > 0.0, "{r}");
        let ci = &r["ci"]["ks"];
        assert!(num(&ci["lo"]) <= num(&r["ks"]) && num(&r["ks"]) <= num(&ci["hi"]), "{r}");
    }
    assert_eq!(report["structure"]["other-half"]["verdict"], "close", "{}", report["structure"]);
    eprintln!("{}: {} of {} root APIs judged, all close", a.display(), judged.len(), roots.len());
}

#[test]
fn two_halves_of_one_original_are_close() {
    let dir = Dir::new();
    let shop = figure1(&dir).with_file_name("webshop.spans.csv");
    let (a, b) = halves(&shop, &dir, "webshop");
    assert_halves_are_close(&a, &b);
    // The shipped real traces, where this checkout has them.
    for rel in ["nezha/onlineboutique/normal-2022-08-23T17-00.csv", "nezha/trainticket/normal-2023-01-29T08-50.csv"] {
        if let Some(csv) = shared_data(rel) {
            let name = rel.replace('/', "-");
            let (a, b) = halves(&csv, &dir, &name);
            assert_halves_are_close(&a, &b);
        }
    }
}

/// A shifted candidate differs; the same one with too few traces cannot be judged.
#[test]
fn a_slower_candidate_differs_and_a_tiny_one_has_too_few_samples() {
    let dir = Dir::new();
    let original = figure1(&dir);
    let model = dir.path("m.json");
    ok(&args(["fit".as_ref(), original.as_os_str(), "-o".as_ref(), model.as_os_str()]));
    let slower = dir.path("slower.json");
    let edits = dir.path("slower.yaml");
    std::fs::write(&edits, "- scale_latency: { service: B, factor: 1.5 }\n").unwrap();
    ok(&args([
        "edit".as_ref(),
        model.as_os_str(),
        "--apply".as_ref(),
        edits.as_os_str(),
        "-o".as_ref(),
        slower.as_os_str(),
    ]));
    let spans = |m: &Path, n: &str, out: &str| {
        let out = dir.path(out);
        ok(&args(["simulate".as_ref(), m.as_os_str(), "-n".as_ref(), n.as_ref(), "-o".as_ref(), out.as_os_str()]));
        out
    };
    let (slow, tiny) = (spans(&slower, "2000", "slow.jsonl"), spans(&model, "10", "tiny.jsonl"));
    let report = compare_json(&[&original, &slow, &tiny], &[]);
    for caller in ["a", "c"] {
        assert_eq!(caller_row(&report, "slow", "b", caller)["verdict"], "differs");
        assert_eq!(caller_row(&report, "tiny", "b", caller)["verdict"], "too_few_samples");
    }
}

#[test]
fn html_report_is_one_self_contained_page() {
    let dir = Dir::new();
    let original = figure1(&dir);
    let model = simulate(&dir, &original, "palette", 1000);
    let out = dir.path("report");
    let mut a = args(["compare".as_ref(), original.as_os_str(), model.as_os_str()]);
    a.extend(args(["--html".as_ref(), out.as_os_str()]));
    ok(&a);
    let page = std::fs::read_to_string(out.join("index.html")).expect("index.html written");
    assert!(page.contains("<svg"));
    // Root API plots (2), per-caller plots of B (2), API plots (3), and the topology.
    assert_eq!(page.matches("<svg").count(), 8);
    assert!(page.contains("latency (ms, log scale)") && page.contains("fraction with latency ≤ x"));
    assert!(page.contains("B b ← A a") && page.contains("Topology"));
    for (i, _) in page.match_indices("http") {
        assert_eq!(&page[i.saturating_sub(7)..i], "xmlns=\"", "a reference other than the SVG namespace at byte {i}");
    }
    assert!(!page.contains("<script") && !page.contains("<link") && !page.contains(" src="));
    // No temporary file is left beside it.
    let mut names: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(
        names,
        vec![OsString::from("comparison.json"), OsString::from("index.html")],
        "the page and its figures"
    );
}

#[test]
fn bad_inputs_and_usage() {
    let dir = Dir::new();
    let good = fixture("good/spancsv/gateway_wrapper.csv");
    let missing = dir.path("nope.jsonl");
    let run = palette(args(["compare".as_ref(), good.as_os_str(), missing.as_os_str()]));
    assert_eq!(run.code, USAGE, "{}", run.stderr);
    assert!(run.stderr.contains("nope.jsonl"), "{}", run.stderr);

    let garbage = fixture("bad/any/garbage.bin");
    let run = palette(args(["compare".as_ref(), good.as_os_str(), garbage.as_os_str()]));
    assert_eq!(run.code, BAD_DATA, "{}", run.stderr);
    assert!(run.stderr.contains("garbage.bin"), "{}", run.stderr);

    let truncated = fixture("bad/jaeger/truncated.json");
    let run = palette(args(["compare".as_ref(), truncated.as_os_str(), good.as_os_str()]));
    assert_eq!(run.code, BAD_DATA, "{}", run.stderr);

    // One input only; more labels than candidates; two candidates of one name.
    let run = palette(args(["compare".as_ref(), good.as_os_str()]));
    assert_eq!(run.code, USAGE, "{}", run.stderr);
    let run = palette(args([
        "compare".as_ref(),
        good.as_os_str(),
        good.as_os_str(),
        "--label".as_ref(),
        "a".as_ref(),
        "--label".as_ref(),
        "b".as_ref(),
    ]));
    assert_eq!(run.code, USAGE, "{}", run.stderr);
    let run = palette(args(["compare".as_ref(), good.as_os_str(), good.as_os_str(), good.as_os_str()]));
    assert_eq!(run.code, USAGE, "{}", run.stderr);
    assert!(run.stderr.contains("--label"), "{}", run.stderr);
}
