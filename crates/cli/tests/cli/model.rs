//! `palette fit`, `merge` and `show` as users rely on them: the model of the
//! real data has the topology `inspect` reports, DOT output is accepted by
//! Graphviz (and is well-formed even without it), fits are deterministic,
//! merging partial fits gives the bytes of one fit, and bad input stops with
//! the right exit code and a clear message.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::util::*;

const USAGE: i32 = 2;
const BAD_DATA: i32 = 65;

const TRAINTICKET: &str = "nezha/trainticket/normal-2023-01-29T08-50.csv";
const BOUTIQUE: &str = "nezha/onlineboutique/normal-2022-08-23T17-00.csv";

fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(items: I) -> Vec<OsString> {
    items.into_iter().map(Into::into).collect()
}

/// Runs palette and asserts success; returns stdout.
fn ok(a: Vec<OsString>) -> String {
    let run = palette(&a);
    assert!(!run.stderr.contains("panicked"), "palette panicked on {a:?}:\n{}", run.stderr);
    assert_eq!(run.code, 0, "palette {a:?} failed:\n{}", run.stderr);
    run.stdout
}

/// `palette fit inputs... -o out extra...`.
fn fit(inputs: &[&Path], out: &Path, extra: &[&str]) -> Vec<u8> {
    let mut a = args(["fit"]);
    a.extend(inputs.iter().map(|p| p.as_os_str().to_owned()));
    a.extend(args(["-o".as_ref(), out.as_os_str()]));
    a.extend(args(extra.iter().copied()));
    ok(a);
    std::fs::read(out).expect("fit wrote its output")
}

fn show(model: &Path, extra: &[&str]) -> String {
    let mut a = args(["show".as_ref(), model.as_os_str()]);
    a.extend(args(extra.iter().copied()));
    ok(a)
}

/// The value of a `label      value` line of a terminal report.
fn field<'a>(report: &'a str, label: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.strip_prefix(label).filter(|rest| rest.starts_with(' ')).map(str::trim))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{report}"))
}

/// The model's counts, as `show` and `inspect` print them.
fn topology_lines(report: &str) -> [String; 3] {
    ["services", "apis", "edges"].map(|k| field(report, k).to_string())
}

// ---------------------------------------------------------------------------
// DOT, checked without Graphviz.

#[derive(Debug, PartialEq)]
enum Tok {
    Id(String),
    Arrow,
    Open,
    Close,
    LBracket,
    RBracket,
    Semi,
    Eq,
    Comma,
}

/// DOT tokens; quoted strings become ids with their escapes undone.
fn tokens(dot: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = dot.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => panic!("unterminated string in DOT:\n{dot}"),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some('"') => s.push('"'),
                            Some(other) => {
                                s.push('\\');
                                s.push(other);
                            }
                            None => panic!("unterminated string in DOT:\n{dot}"),
                        },
                        Some(ch) => s.push(ch),
                    }
                }
                out.push(Tok::Id(s));
            }
            '-' if chars.peek() == Some(&'>') => {
                chars.next();
                out.push(Tok::Arrow);
            }
            '{' => out.push(Tok::Open),
            '}' => out.push(Tok::Close),
            '[' => out.push(Tok::LBracket),
            ']' => out.push(Tok::RBracket),
            ';' => out.push(Tok::Semi),
            '=' => out.push(Tok::Eq),
            ',' => out.push(Tok::Comma),
            c if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' || c == '#' => {
                let mut s = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_alphanumeric() || n == '_' || n == '.' {
                        s.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Id(s));
            }
            other => panic!("unexpected `{other}` outside a quoted string in DOT:\n{dot}"),
        }
    }
    out
}

/// Checks a digraph's structure: `digraph` first, balanced braces and
/// brackets (outside quoted strings), and every edge between declared nodes.
/// Returns (declared nodes, edges).
fn check_dot(dot: &str) -> (BTreeSet<String>, Vec<(String, String)>) {
    assert!(dot.starts_with("digraph "), "DOT starts with `digraph`: {}", &dot[..dot.len().min(80)]);
    let toks = tokens(dot);
    let (mut braces, mut brackets) = (0i64, 0i64);
    for t in &toks {
        if brackets > 0 {
            assert!(!matches!(t, Tok::Open | Tok::Close), "a brace inside an attribute list in:\n{dot}");
        }
        match t {
            Tok::Open => braces += 1,
            Tok::Close => braces -= 1,
            Tok::LBracket => brackets += 1,
            Tok::RBracket => brackets -= 1,
            _ => {}
        }
        assert!(braces >= 0 && brackets >= 0, "unbalanced braces or brackets in:\n{dot}");
        assert!(brackets <= 1, "nested brackets in:\n{dot}");
    }
    assert_eq!((braces, brackets), (0, 0), "unbalanced braces or brackets in:\n{dot}");
    assert_eq!(toks.last(), Some(&Tok::Close), "the graph ends with `}}`");
    let keywords = ["graph", "node", "edge", "subgraph", "digraph", "strict"];
    let mut nodes = BTreeSet::new();
    let mut edges = Vec::new();
    let mut in_attrs = false;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::LBracket => in_attrs = true,
            Tok::RBracket => in_attrs = false,
            Tok::Arrow => {
                let (Some(Tok::Id(a)), Some(Tok::Id(b))) = (i.checked_sub(1).map(|k| &toks[k]), toks.get(i + 1)) else {
                    panic!("an edge without two node ids at token {i} in:\n{dot}");
                };
                edges.push((a.clone(), b.clone()));
            }
            Tok::Id(id) if !in_attrs => {
                let starts = matches!(i.checked_sub(1).map(|k| &toks[k]), Some(Tok::Semi | Tok::Open | Tok::Close));
                let declares = matches!(toks.get(i + 1), Some(Tok::LBracket | Tok::Semi));
                if starts && declares && !keywords.contains(&id.as_str()) {
                    assert!(nodes.insert(id.clone()), "node {id:?} declared twice in:\n{dot}");
                }
            }
            _ => {}
        }
    }
    for (a, b) in &edges {
        assert!(nodes.contains(a) && nodes.contains(b), "edge {a:?} -> {b:?} uses an undeclared node in:\n{dot}");
    }
    (nodes, edges)
}

/// Renders `dot` with Graphviz when it is installed (else prints SKIP):
/// `dot -Tsvg` must exit 0, warn about nothing and write an SVG.
fn graphviz_accepts(dot: &str, what: &str) {
    let child =
        Command::new("dot").arg("-Tsvg").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            skip(&format!("Graphviz `dot` is not on PATH; {what} checked structurally only"));
            return;
        }
        Err(e) => panic!("cannot run dot: {e}"),
    };
    child.stdin.take().unwrap().write_all(dot.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "dot -Tsvg rejected {what}:\n{stderr}\n{dot}");
    assert!(stderr.trim().is_empty(), "dot -Tsvg warned about {what}:\n{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("<svg"), "dot -Tsvg wrote no SVG for {what}");
}

#[test]
fn dot_checker_catches_mistakes() {
    let good = "digraph \"g\" {\n  node [shape=box];\n  \"a\" [label=\"x {\\\" ]\"];\n  \"b\";\n  \"a\" -> \"b\" [label=\"1\"];\n}\n";
    let (nodes, edges) = check_dot(good);
    assert_eq!(nodes.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(edges, [("a".to_string(), "b".to_string())]);
    for bad in [
        "graph g { a; }",
        "digraph g { \"a\"; \"a\" -> \"c\"; }",
        "digraph g { \"a\" [label=\"unbalanced\"; }",
        "digraph g { subgraph s { \"a\"; }",
        "digraph g { \"a\" [label=\"open string]; }",
        "digraph g { \"a\" [label=x{y}]; }",
    ] {
        let caught = std::panic::catch_unwind(|| check_dot(bad));
        assert!(caught.is_err(), "check_dot accepted {bad}");
    }
}

// ---------------------------------------------------------------------------
// The real data.

/// Fits `rel`, checks `show` against `inspect`, and returns the model path
/// and the summary JSON.
fn fit_and_show(dir: &Dir, rel: &str, services: u64, apis: u64) -> Option<(PathBuf, Value)> {
    let input = shared_data(rel)?;
    let model = dir.path("model.json");
    fit(&[&input], &model, &[]);
    let text = show(&model, &[]);
    let inspected = ok(args(["inspect".as_ref(), input.as_os_str()]));
    assert_eq!(topology_lines(&text), topology_lines(&inspected), "show and inspect disagree:\n{text}\n{inspected}");
    assert_eq!(field(&text, "services"), services.to_string());
    assert_eq!(field(&text, "apis"), apis.to_string());
    let summary: Value = serde_json::from_str(&show(&model, &["--json"])).expect("show --json prints JSON");
    let report = inspect_json(&[&input], &[]);
    for key in ["services", "apis", "edges"] {
        assert_eq!(summary[key], report[key], "`{key}` of show --json and inspect --json");
    }
    assert_eq!(summary["services"], services);
    assert_eq!(summary["apis"], apis);
    assert_eq!(summary["roots"].as_u64(), Some(report["root_apis"].as_array().unwrap().len() as u64));
    assert_eq!(summary["api_summaries"].as_array().unwrap().len() as u64, apis);
    Some((model, summary))
}

/// The root API with the most traces, by name.
fn top_root(summary: &Value) -> String {
    summary["root_apis"][0]["api"].as_str().expect("a root API").to_string()
}

/// Topology and root-API PFA as DOT: well-formed, and rendered by Graphviz.
fn check_dots(model: &Path, summary: &Value) {
    let topo = show(model, &["--dot"]);
    let (nodes, edges) = check_dot(&topo);
    let apis = summary["apis"].as_u64().unwrap() as usize;
    let roots = summary["roots"].as_u64().unwrap() as usize;
    assert_eq!(nodes.len(), apis + 1, "one node per API and the client");
    assert_eq!(edges.len(), summary["edges"].as_u64().unwrap() as usize + roots, "call edges and client edges");
    assert_eq!(
        topo.matches("subgraph ").count(),
        summary["services"].as_u64().unwrap() as usize,
        "a cluster per service"
    );
    graphviz_accepts(&topo, "the topology");

    let root = top_root(summary);
    let pfa = show(model, &["--api", &root, "--dot"]);
    let (nodes, edges) = check_dot(&pfa);
    assert!(nodes.contains("s0") && nodes.contains("finish"), "start and finish nodes: {nodes:?}");
    assert!(edges.iter().any(|(a, _)| a == "s0"), "start has a transition");
    assert!(edges.iter().any(|(_, b)| b == "finish"), "something finishes");
    let detail: Value = serde_json::from_str(&show(model, &["--api", &root, "--json"])).unwrap();
    let states = detail["states"].as_array().unwrap();
    let transitions: usize = states.iter().map(|s| s["next"].as_array().unwrap().len()).sum();
    assert_eq!(nodes.len(), states.len() + 1, "a node per state, and finish");
    assert_eq!(edges.len(), transitions);
    graphviz_accepts(&pfa, &format!("the PFA of {root}"));
}

#[test]
fn trainticket_fit_show_and_dot() {
    let dir = Dir::new();
    let Some((model, summary)) = fit_and_show(&dir, TRAINTICKET, 25, 182) else {
        return;
    };
    assert_eq!(top_root(&summary), "ts-gateway-service /*");
    assert_eq!(summary["root_apis"][0]["count"], 71);
    assert_eq!(summary["provenance"]["traces"], 71);
    assert_eq!(summary["provenance"]["spans"], 4890);
    check_dots(&model, &summary);
}

#[test]
fn online_boutique_fit_show_and_dot() {
    let dir = Dir::new();
    let Some((model, summary)) = fit_and_show(&dir, BOUTIQUE, 10, 37) else {
        return;
    };
    assert_eq!(summary["provenance"]["traces"], 502);
    check_dots(&model, &summary);
    // The root API's details: every state's transitions sum to 1, overall
    // and for every caller shown.
    let root = top_root(&summary);
    let detail: Value = serde_json::from_str(&show(&model, &["--api", &root, "--json"])).unwrap();
    for s in detail["states"].as_array().unwrap() {
        let p: f64 = s["next"].as_array().unwrap().iter().map(|t| t["p"].as_f64().unwrap()).sum();
        assert!((p - 1.0).abs() < 1e-5, "probabilities out of state {} sum to {p}", s["state"]);
    }
    let text = show(&model, &["--api", &root]);
    assert!(text.contains("s0 start"), "{text}");
    assert!(text.contains("→ finish"), "{text}");
}

#[test]
fn trainticket_fits_are_deterministic() {
    let Some(input) = shared_data(TRAINTICKET) else {
        return;
    };
    let dir = Dir::new();
    let a = fit(&[&input], &dir.path("a.json"), &[]);
    let b = fit(&[&input], &dir.path("b.json"), &[]);
    assert!(a == b, "two fits of the same traces differ");
}

// ---------------------------------------------------------------------------
// Generated traces.

/// `palette example` into `dir`; returns the directory.
fn example(dir: &Dir) -> PathBuf {
    let out = dir.path("example");
    ok(args(["example".as_ref(), "-o".as_ref(), out.as_os_str(), "--alibaba-rows".as_ref(), "10".as_ref()]));
    out
}

/// Splits a JSON-lines file into its first and second halves.
fn halves(dir: &Dir, input: &Path) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(input).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 100, "enough traces to split");
    let (a, b) = lines.split_at(lines.len() / 2);
    (dir.write("half1.otlp.jsonl", a.join("\n") + "\n"), dir.write("half2.otlp.jsonl", b.join("\n") + "\n"))
}

#[test]
fn webshop_fits_are_deterministic_and_merge_exactly() {
    let dir = Dir::new();
    let ex = example(&dir);
    let shop = ex.join("webshop.otlp.jsonl");
    let once = fit(&[&shop], &dir.path("once.json"), &[]);
    let twice = fit(&[&shop], &dir.path("twice.json"), &[]);
    assert!(once == twice, "two fits of the same traces differ");
    // Neither where the file is nor the order of its traces matters.
    let text = std::fs::read_to_string(&shop).unwrap();
    let reversed: String = text.lines().rev().map(|l| format!("{l}\n")).collect();
    let moved = dir.write("elsewhere/webshop.otlp.jsonl", reversed);
    assert!(fit(&[&moved], &dir.path("reversed.json"), &[]) == once, "the order of traces changed the model");

    let (h1, h2) = halves(&dir, &shop);
    for kind in ["palette", "naive"] {
        let whole = fit(&[&h1, &h2], &dir.path(&format!("whole-{kind}.json")), &["--kind", kind]);
        let p1 = dir.path(&format!("p1-{kind}.json"));
        let p2 = dir.path(&format!("p2-{kind}.json"));
        fit(&[&h1], &p1, &["--partial"]);
        fit(&[&h2], &p2, &["--partial"]);
        let merged = dir.path(&format!("merged-{kind}.json"));
        ok(args([
            "merge".as_ref(),
            p1.as_os_str(),
            p2.as_os_str(),
            "-o".as_ref(),
            merged.as_os_str(),
            "--kind".as_ref(),
            kind.as_ref(),
        ]));
        let merged = std::fs::read(&merged).unwrap();
        assert!(merged == whole, "{kind}: merging the halves' partial fits differs from one fit over both halves");
        let m: Value = serde_json::from_slice(&merged).unwrap();
        assert_eq!(m["kind"], kind);
        assert_eq!(m["provenance"]["traces"], 1000);
        assert_eq!(m["provenance"]["inputs"], json!(["half1.otlp.jsonl", "half2.otlp.jsonl"]));
    }
}

#[test]
fn naive_models_show_their_callees() {
    let dir = Dir::new();
    let ex = example(&dir);
    let model = dir.path("naive.json");
    fit(&[&ex.join("webshop.otlp.jsonl")], &model, &["--kind", "naive"]);
    let text = show(&model, &["--top", "50"]);
    assert!(text.contains("naive model"), "{text}");
    assert_eq!(field(&text, "services"), "20");
    assert!(text.contains("calls redis GET"), "naive callees listed:\n{text}");
    assert!(!text.contains("\npfa "), "a naive model has no PFA:\n{text}");
    let detail = show(&model, &["--api", "session Get"]);
    assert!(detail.contains("independent calls"), "{detail}");
    assert!(detail.contains("auth Verify: ×0.10 per execution"), "{detail}");
    let dot = show(&model, &["--api", "session/Get", "--dot"]);
    let (nodes, edges) = check_dot(&dot);
    assert_eq!((nodes.len(), edges.len()), (3, 2), "the API and its two callees:\n{dot}");
    graphviz_accepts(&dot, "a naive API");
    let summary: Value = serde_json::from_str(&show(&model, &["--json"])).unwrap();
    assert_eq!(summary["kind"], "naive");
    assert_eq!(summary["states"], 0);
}

#[test]
fn figure1_show_conditions_work_on_the_caller() {
    let dir = Dir::new();
    let ex = example(&dir);
    let model = dir.path("figure1.json");
    fit(&[&ex.join("figure1.otlp.jsonl")], &model, &[]);
    let text = show(&model, &[]);
    assert_eq!(topology_lines(&text), ["3", "3", "2   (0 local, 2 rpc)"].map(String::from));
    // B b does 10× more work for C than for A: the per-caller lines say so.
    let detail: Value = serde_json::from_str(&show(&model, &["--api", "B b", "--json"])).unwrap();
    let finish = &detail["states"][0]["next"][0];
    assert_eq!(finish["to"], Value::Null);
    let work = finish["work_by_caller_ms"].as_array().unwrap();
    let p50 = |caller: &str| {
        work.iter().find(|w| w["caller"] == caller).unwrap_or_else(|| panic!("work for {caller}"))["work"]["p50"]
            .as_f64()
            .unwrap()
    };
    let (a, c) = (p50("A a"), p50("C c"));
    assert!((1.5..2.5).contains(&a) && (15.0..25.0).contains(&c), "B's work: {a} ms for A, {c} ms for C");
    for by in finish["by_caller"].as_array().unwrap() {
        assert_eq!(by["p"], 1.0, "every caller finishes: {by}");
    }
    let text = show(&model, &["--api", "b"]);
    assert!(text.contains("from A a: p 1.0000 (532/532)"), "{text}");
    // Names by `service/operation` and unique operation resolve the same.
    assert_eq!(show(&model, &["--api", "B/b", "--dot"]), show(&model, &["--api", "b", "--dot"]));
}

/// One OTLP line of a trace whose names need quoting everywhere.
fn awkward_trace(k: u64) -> String {
    let t0 = 1_700_000_000_000_000_000u64 + k * 10_000_000;
    let trace = format!("{:032x}", k + 1);
    let id = |n: u64| format!("{:016x}", (k + 1) * 16 + n);
    let span = |n: u64, parent: Option<u64>, name: &str, start: u64, end: u64| {
        json!({
            "traceId": trace,
            "spanId": id(n),
            "parentSpanId": parent.map(id).unwrap_or_default(),
            "name": name,
            "kind": 2,
            "startTimeUnixNano": (t0 + start).to_string(),
            "endTimeUnixNano": (t0 + end).to_string(),
        })
    };
    let resource = |service: &str, spans: Vec<Value>| {
        json!({
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
            "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}],
        })
    };
    let slow = if k.is_multiple_of(3) { 3_000_000 } else { 1_000_000 };
    let mut resources = vec![
        resource("web \"edge\"", vec![span(1, None, "GET /orders/{orderId}", 0, 6_000_000 + slow)]),
        resource("back\\slash", vec![span(2, Some(1), "a{b}; c -> d [x=1]", 500_000, 1_500_000)]),
        resource("weird/svc", vec![span(3, Some(1), "say \"hi\" \\", 600_000, 1_400_000)]),
    ];
    if k.is_multiple_of(2) {
        resources.push(resource("<html>&", vec![span(4, Some(1), "# -- // {}", 2_000_000, 2_000_000 + slow)]));
    }
    json!({"resourceSpans": resources}).to_string()
}

#[test]
fn dot_quotes_awkward_names() {
    let dir = Dir::new();
    let lines: String = (0..60).map(|k| awkward_trace(k) + "\n").collect();
    let input = dir.write("awkward.otlp.jsonl", lines);
    let model = dir.path("model.json");
    fit(&[&input], &model, &[]);
    let text = show(&model, &[]);
    assert_eq!(field(&text, "services"), "4");
    assert_eq!(field(&text, "apis"), "4");

    let topo = show(&model, &["--dot"]);
    let (nodes, edges) = check_dot(&topo);
    assert_eq!((nodes.len(), edges.len()), (5, 4), "4 APIs and the client; 3 calls and the root:\n{topo}");
    for label in ["web \\\"edge\\\"", "back\\\\slash", "say \\\"hi\\\" \\\\", "GET /orders/{orderId}"] {
        assert!(topo.contains(label), "`{label}` quoted in:\n{topo}");
    }
    graphviz_accepts(&topo, "a topology with awkward names");

    let root = "web \"edge\" GET /orders/{orderId}";
    let pfa = show(&model, &["--api", root, "--dot"]);
    let (nodes, _) = check_dot(&pfa);
    assert!(nodes.len() >= 4, "start, stages and finish:\n{pfa}");
    assert!(
        pfa.contains("back\\\\slash a{b}; c -> d [x=1] || weird/svc say \\\"hi\\\" \\\\"),
        "concurrent stage:\n{pfa}"
    );
    graphviz_accepts(&pfa, "a PFA with awkward names");
    let detail = show(&model, &["--api", "weird/svc/say \"hi\" \\"]);
    assert!(detail.contains("web \"edge\" GET /orders/{orderId}"), "{detail}");
}

// ---------------------------------------------------------------------------
// Bad input.

/// Runs palette and asserts it fails with `code` and one error line
/// containing every needle.
fn fails(a: Vec<OsString>, code: i32, needles: &[&str]) -> String {
    let run = palette(&a);
    assert!(!run.stderr.contains("panicked"), "palette panicked on {a:?}:\n{}", run.stderr);
    assert_eq!(run.code, code, "exit code of {a:?}; stderr:\n{}", run.stderr);
    assert!(run.stdout.is_empty(), "nothing on stdout on failure: {}", run.stdout);
    // Palette's own errors are one `palette: error:` line; clap's usage
    // errors start with `error:` and add a usage hint.
    let msg = run.stderr.lines().find(|l| l.contains("error: ")).unwrap_or_default().to_string();
    assert!(msg.starts_with("palette: error: ") || msg.starts_with("error: "), "{}", run.stderr);
    for n in needles {
        assert!(msg.contains(n), "`{n}` in: {msg}");
    }
    msg
}

fn show_fails(model: &Path, extra: &[&str], code: i32, needles: &[&str]) -> String {
    let mut a = args(["show".as_ref(), model.as_os_str()]);
    a.extend(args(extra.iter().copied()));
    fails(a, code, needles)
}

#[test]
fn show_rejects_what_is_not_a_model() {
    let dir = Dir::new();
    let ex = example(&dir);
    let fig = ex.join("figure1.otlp.jsonl");
    let place = |p: &Path, line: u64| format!("{}:{line}: ", p.display());

    let other = dir.write("other.json", "{\n  \"name\": \"not a model\",\n  \"items\": [1, 2, 3]\n}\n");
    show_fails(&other, &[], BAD_DATA, &[&other.display().to_string(), "not a palette model", "palette fit"]);
    let broken = dir.write("broken.json", "{\n  \"format\": \"palette-model/1\",\n  \"kind\": \n");
    show_fails(&broken, &[], BAD_DATA, &[&place(&broken, 4)]);
    show_fails(&fig, &[], BAD_DATA, &[&place(&fig, 1), "not a palette model"]);
    let jaeger = ex.join("webshop.jaeger.json");
    show_fails(&jaeger, &[], BAD_DATA, &["not a palette model"]);

    let partial = dir.path("partial.json");
    fit(&[&fig], &partial, &["--partial"]);
    show_fails(&partial, &[], BAD_DATA, &[&place(&partial, 1), "partial fit", "palette merge"]);

    let model = dir.path("model.json");
    let bytes = fit(&[&fig], &model, &[]);
    let text = String::from_utf8(bytes).unwrap();
    let future = dir.write("future.json", text.replacen("palette-model/1", "palette-model/9", 1));
    show_fails(&future, &[], BAD_DATA, &[&place(&future, 2), "`palette-model/9` is not palette-model/1"]);
    // A hand edit that points at a state that does not exist: named by path and line.
    let mut m: Value = serde_json::from_str(&text).unwrap();
    m["apis"][1]["states"][0]["next"][0]["to"] = json!(7);
    let edited = serde_json::to_string_pretty(&m).unwrap();
    let line = edited.lines().position(|l| l.contains("\"to\": 7")).unwrap() as u64 + 1;
    let edited = dir.write("edited.json", edited);
    show_fails(&edited, &[], BAD_DATA, &[&place(&edited, line), "apis[1].states[0].next[0].to", "state 7"]);
    let mut m: Value = serde_json::from_str(&text).unwrap();
    m["apis"][0]["states"][0]["next"][0]["p"] = json!(0.5);
    let edited = serde_json::to_string_pretty(&m).unwrap();
    let line = edited.find("\"next\"").map(|at| edited[..at].lines().count() as u64).unwrap();
    let edited = dir.write("edited-p.json", edited);
    show_fails(&edited, &[], BAD_DATA, &[&place(&edited, line), "apis[0].states[0].next", "sum to 0.5, not 1"]);
    let mut m: Value = serde_json::from_str(&text).unwrap();
    m["edges"][0]["callee"] = json!(3);
    let edited = dir.write("edited2.json", serde_json::to_string_pretty(&m).unwrap());
    show_fails(&edited, &["--dot"], BAD_DATA, &["edges[0].callee", "API 3 does not exist"]);

    show_fails(&dir.path("missing.json"), &[], USAGE, &["missing.json", "no such file"]);
    show_fails(&dir.path("example"), &[], USAGE, &["is a directory"]);
    show_fails(&model, &["--api", "B bb"], USAGE, &["no such API", "`B b`"]);
    show_fails(&model, &["--api", "zzzzzzzz"], USAGE, &["no such API", "lists its 3 APIs"]);
    show_fails(&model, &["--dot", "--json"], USAGE, &["cannot be used with"]);
}

#[test]
fn show_asks_which_api_when_an_operation_is_shared() {
    let dir = Dir::new();
    let ex = example(&dir);
    let model = dir.path("model.json");
    fit(&[&ex.join("webshop.otlp.jsonl")], &model, &[]);
    let msg = show_fails(&model, &["--api", "List"], USAGE, &["services have that operation"]);
    for api in ["`ads List`", "`catalog List`", "`recommendation List`", "`reviews List`"] {
        assert!(msg.contains(api), "{api} in {msg}");
    }
    assert!(show(&model, &["--api", "PlaceOrder"]).starts_with("api           checkout PlaceOrder\n"));
}

#[test]
fn fit_and_merge_reject_bad_requests() {
    let dir = Dir::new();
    let ex = example(&dir);
    let shop = ex.join("webshop.otlp.jsonl");
    let out = dir.path("out.json");
    let fit_fails = |extra: &[&str], code: i32, needles: &[&str]| {
        let mut a = args(["fit".as_ref(), shop.as_os_str(), "-o".as_ref(), out.as_os_str()]);
        a.extend(args(extra.iter().copied()));
        fails(a, code, needles)
    };
    fit_fails(&["--confidence", "2"], USAGE, &["--confidence must be between 0 and 1"]);
    fit_fails(&["--include-service", "no-such-service"], USAGE, &["no trace is left to fit"]);
    fit_fails(&["--since", "1h"], USAGE, &["no trace is left to fit"]);
    fit_fails(&["--kind", "fancy"], USAGE, &["unknown model kind"]);
    assert!(!out.exists(), "no output after a failed fit");

    // merge takes partial fits only.
    let model = dir.path("model.json");
    fit(&[&shop], &model, &[]);
    let merge_fails = |input: &Path, code: i32, needles: &[&str]| {
        fails(args(["merge".as_ref(), input.as_os_str(), "-o".as_ref(), out.as_os_str()]), code, needles)
    };
    merge_fails(&model, BAD_DATA, &[&model.display().to_string(), "not a partial fit"]);
    merge_fails(&shop, BAD_DATA, &["not a partial fit"]);
    merge_fails(&dir.path("missing.json"), USAGE, &["no such file"]);
    // Partials of different options do not merge.
    let (p1, p2) = (dir.path("p1.json"), dir.path("p2.json"));
    fit(&[&shop], &p1, &["--partial"]);
    fit(&[&shop], &p2, &["--partial", "--confidence", "0.01"]);
    fails(
        args(["merge".as_ref(), p1.as_os_str(), p2.as_os_str(), "-o".as_ref(), out.as_os_str()]),
        USAGE,
        &["other options"],
    );
    assert!(!out.exists(), "no output after a failed merge");
}

/// The README's first command: the whole pipeline on the built-in examples.
#[test]
fn demo_runs_the_pipeline_and_writes_its_reports() {
    let dir = Dir::new();
    let out = dir.path("demo");
    let port = crate::util::free_ports(24).to_string();
    let run = palette([
        "demo".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        "--traces".as_ref(),
        "300".as_ref(),
        "--duration".as_ref(),
        "2s".as_ref(),
        "--repeat".as_ref(),
        "2".as_ref(),
        "--base-port".as_ref(),
        port.as_ref(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"));
    assert!(run.stdout.contains("demo done"), "{}", run.stdout);
    for system in ["figure1", "webshop"] {
        let report = std::fs::read_to_string(out.join(format!("{system}/report/index.html"))).expect("report written");
        assert!(report.contains("<svg"), "{system}: no plot");
        // The verdict first, then how the candidates were made.
        let verdict = report.find("<b>Verdict</b>").expect("verdict box");
        assert!(verdict < report.find("<h2").expect("sections"), "{system}: the verdict comes first");
        assert!(report.contains("palette (2 runs pooled): ") && report.contains(">repeats<"), "{system}");
        for kind in ["palette", "naive"] {
            for file in [format!("model-{kind}.json"), format!("spans-{kind}-2.jsonl"), format!("load-{kind}-1.json")] {
                assert!(out.join(system).join(&file).is_file(), "{system}: {file} missing");
            }
            assert!(out.join(format!("{system}/system-{kind}/system.json")).is_file());
        }
    }
    // Only measured traffic is compared: per run, the traces compared are the
    // load report's measured requests, give or take those still in flight.
    let counts: Vec<(u64, u64, u64)> = run
        .stderr
        .lines()
        .filter_map(|l| {
            let rest = l.split_once(": compared ")?.1;
            let (compared, rest) = rest.split_once(" traces of ")?;
            let (measured, rest) = rest.split_once(" measured requests (")?;
            let in_flight = rest.split_once(' ')?.0;
            let n = |x: &str| x.replace(',', "").parse::<u64>().ok();
            Some((n(compared)?, n(measured)?, n(in_flight)?))
        })
        .collect();
    assert_eq!(counts.len(), 8, "2 systems x 2 kinds x 2 runs: {}", run.stderr);
    for (compared, measured, in_flight) in counts {
        assert!(compared.abs_diff(measured) <= in_flight, "{compared} compared of {measured} measured (±{in_flight})");
        assert!(measured > 0);
    }
    // Each repetition sends its own requests; the kinds of one run the same.
    let seed = |file: &str| {
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("webshop").join(file)).expect("load report"))
                .expect("load report is JSON");
        report["seed"].as_u64().expect("seed recorded")
    };
    assert_eq!(seed("load-palette-1.json"), seed("load-naive-1.json"));
    assert_ne!(seed("load-palette-1.json"), seed("load-palette-2.json"));
    assert!(run.stdout.contains("figure1  verdict: palette (2 runs pooled): "), "{}", run.stdout);
    // The live systems' spans are compared with the ground truth, per caller of B too.
    assert!(run.stdout.contains("B b ← A a  palette:"), "{}", run.stdout);
}

/// Issue 18: on real traces that carry error signals (Zipkin `error` tags
/// and HTTP 5xx statuses) and on the Online Boutique fault file, the fitted
/// failure share of each root API equals the share of the traces whose root
/// span says it failed — counted here from the files themselves.
#[test]
fn fitted_root_failure_shares_equal_the_traced_ones() {
    let files = [
        "zipkin/messaging-kafka.json",
        "zipkin/smartthings-mobile-web-install.json",
        "zipkin/smartthings-oauth-authorization.json",
        "zipkin/yelp.json",
        "nezha/onlineboutique/fault-cartservice-network-delay-2022-08-22T04-28.csv",
    ];
    for rel in files {
        let Some(path) = crate::util::shared_data(rel) else { return };
        let traced = traced_root_failures(&path);
        let dir = crate::util::Dir::new();
        let model_path = dir.path("model.json");
        let fit = crate::util::palette(["fit", path.to_str().unwrap(), "-o", model_path.to_str().unwrap()]);
        assert_eq!(fit.code, 0, "{rel}: {}", fit.stderr);
        let model: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&model_path).unwrap()).unwrap();
        let apis = model["apis"].as_array().unwrap();
        for root in model["roots"].as_array().unwrap() {
            let a = &apis[root["api"].as_u64().unwrap() as usize];
            let name = format!("{} {}", a["service"].as_str().unwrap(), a["operation"].as_str().unwrap());
            let count = root["count"].as_u64().unwrap();
            let failed = root["failed"].as_u64().unwrap_or(0);
            let (n, k) = traced.get(&name).copied().unwrap_or((0, 0));
            println!("failure share: {rel}: {name}: fitted {failed} of {count}, traced {k} of {n}");
            assert_eq!((failed, count), (k, n), "{rel}: {name}");
        }
    }
}

/// Per root `service operation`: (traces, traces whose root span failed),
/// read straight from a Zipkin v2 JSON array or a span CSV with no error
/// column (the Nezha files: none failed).
fn traced_root_failures(path: &std::path::Path) -> std::collections::BTreeMap<String, (u64, u64)> {
    let mut out: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let text = std::fs::read_to_string(path).unwrap();
    if path.extension().is_some_and(|e| e == "csv") {
        let mut rows = text.lines();
        let header: Vec<&str> = rows.next().unwrap().split(',').collect();
        assert!(!header.iter().any(|h| h.eq_ignore_ascii_case("error")), "the Nezha CSV has no error column");
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let (parent, pod, op) = (col("ParentID"), col("PodName"), col("OperationName"));
        for row in rows {
            let f: Vec<&str> = row.split(',').collect();
            if f[parent] == "root" {
                // The pod name less its ReplicaSet and pod suffixes is the service.
                let service = f[pod].rsplitn(3, '-').last().unwrap();
                out.entry(format!("{service} {}", f[op])).or_default().0 += 1;
            }
        }
        return out;
    }
    let spans: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    for s in spans.iter().filter(|s| s.get("parentId").is_none()) {
        let service = s["localEndpoint"]["serviceName"].as_str().unwrap_or("");
        let tags = s.get("tags").and_then(|t| t.as_object());
        let status_5xx =
            |k: &str| tags.and_then(|t| t.get(k)).and_then(|v| v.as_str()).is_some_and(|v| v.starts_with('5'));
        let failed = tags.is_some_and(|t| t.contains_key("error")) || status_5xx("http.status_code");
        let e = out.entry(format!("{service} {}", s["name"].as_str().unwrap_or(""))).or_default();
        e.0 += 1;
        e.1 += u64::from(failed);
    }
    out
}
