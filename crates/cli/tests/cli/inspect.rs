//! `palette inspect` (and `palette example`) as users rely on them: exact
//! counts on the real data in ../shared/data, Alibaba call graphs generated
//! by the testkit, directories, forced formats, wrapper adoption,
//! determinism and help text.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use palette_testkit::alibaba::{AlibabaConfig, Schema, write_alibaba};
use serde_json::Value;

use crate::util::*;

fn int(report: &Value, key: &str) -> u64 {
    report[key].as_u64().unwrap_or_else(|| panic!("`{key}` is not an integer in {report:#}"))
}

fn defect(report: &Value, kind: &str) -> u64 {
    report["defects"][kind]["count"].as_u64().unwrap_or(0)
}

/// The root APIs as (`service operation`, count).
fn roots(report: &Value) -> Vec<(String, u64)> {
    report["root_apis"]
        .as_array()
        .expect("root_apis is a list")
        .iter()
        .map(|r| {
            (
                format!("{} {}", r["service"].as_str().unwrap(), r["operation"].as_str().unwrap()),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The parts of a report that describe the traces themselves (not where
/// they were read from, nor how many were open at once).
fn shape(report: &Value) -> Value {
    let mut v = report.clone();
    let o = v.as_object_mut().unwrap();
    o.remove("files");
    o.remove("peak_open_traces");
    // Defects name the file they were first seen in.
    for d in o["defects"].as_object_mut().unwrap().values_mut() {
        d.as_object_mut().unwrap().remove("first");
    }
    v
}

// ---------------------------------------------------------------------------
// Acceptance: the real data.

#[test]
fn trainticket_normal_minute() {
    let Some(p) = shared_data("nezha/trainticket/normal-2023-01-29T08-50.csv") else {
        return;
    };
    let r = inspect_json(&[&p], &[]);
    assert_eq!(int(&r, "traces"), 71);
    assert_eq!(int(&r, "spans"), 4890);
    assert_eq!(int(&r, "records"), 4890);
    assert_eq!(int(&r, "services"), 25);
    assert_eq!(roots(&r), [("ts-gateway-service /*".to_string(), 71)]);
    // Every trace is `/*` with a FilteringWebHandler.handle sibling call.
    assert_eq!(int(&r, "adopted_calls"), 71);
    assert_eq!(r["defects"], serde_json::json!({}));
    assert_eq!(int(&r, "dropped_spans"), 0);
}

#[test]
fn online_boutique_normal_minute() {
    let Some(p) = shared_data("nezha/onlineboutique/normal-2022-08-23T17-00.csv") else {
        return;
    };
    let r = inspect_json(&[&p], &[]);
    assert_eq!(int(&r, "traces"), 502);
    assert_eq!(int(&r, "spans"), 22969);
    assert_eq!(int(&r, "records"), 22969);
    assert_eq!(int(&r, "services"), 10);
    assert_eq!(roots(&r), [("frontend hipstershop.Frontend/Recv.".to_string(), 502)]);
    assert_eq!(int(&r, "dropped_traces"), 0);
    assert_eq!(int(&r, "dropped_spans"), 0);
}

#[test]
fn every_zipkin_and_otlp_file_inspects() {
    // (file, traces, spans, records) as observed; any file added later must
    // at least inspect with exit 0.
    let known: [(&str, u64, u64, u64); 6] = [
        ("zipkin/ascend.json", 1, 8, 8),
        ("zipkin/messaging-kafka.json", 1, 28, 28),
        ("zipkin/smartthings-mobile-web-install.json", 1, 953, 1041),
        ("zipkin/smartthings-oauth-authorization.json", 1, 171, 175),
        ("zipkin/yelp.json", 1, 16, 16),
        ("otlp/example-trace.json", 1, 1, 1),
    ];
    let mut seen = 0;
    for dir in ["zipkin", "otlp"] {
        let Some(d) = shared_data(dir) else { return };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no JSON in {}", d.display());
        for f in files {
            let r = inspect_json(&[&f], &[]); // asserts exit 0
            assert!(int(&r, "traces") >= 1, "{}", f.display());
            let rel = format!("{dir}/{}", f.file_name().unwrap().to_string_lossy());
            if let Some(&(_, traces, spans, records)) = known.iter().find(|k| k.0 == rel) {
                seen += 1;
                assert_eq!(
                    (int(&r, "traces"), int(&r, "spans"), int(&r, "records")),
                    (traces, spans, records),
                    "{rel}"
                );
            }
        }
    }
    assert_eq!(seen, known.len(), "every known file was found");
}

#[test]
fn smartthings_defects_are_counted_and_repaired() {
    let Some(p) = shared_data("zipkin/smartthings-mobile-web-install.json") else {
        return;
    };
    let r = inspect_json(&[&p], &[]);
    assert_eq!(defect(&r, "shared_span_id"), 290);
    assert_eq!(defect(&r, "missing_timestamp"), 84);
    // Each shared id is split into a client span folded into its call.
    assert_eq!(int(&r, "folded_client_spans"), 290);
    assert_eq!(int(&r, "dropped_traces"), 0);
    assert_eq!(int(&r, "dropped_spans"), 0);
    // Under --strict the first defect stops the read.
    let run = palette(["inspect".as_ref(), "--strict".as_ref(), p.as_os_str()]);
    assert_eq!(run.code, 65, "{}", run.stderr);
}

// ---------------------------------------------------------------------------
// Alibaba call graphs, generated.

/// Writes an Alibaba-style file and returns its path and data rows.
fn alibaba(dir: &Dir, name: &str, cfg: &AlibabaConfig) -> (PathBuf, Vec<String>) {
    let mut bytes = Vec::new();
    let written = write_alibaba(cfg, &mut bytes).expect("generate");
    let text = String::from_utf8(bytes).expect("utf-8");
    let rows: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
    assert_eq!(rows.len() as u64, written);
    (dir.write(name, &text), rows)
}

fn config(schema: Schema, rows: u64, traces_per_s: f64, seed: u64) -> AlibabaConfig {
    AlibabaConfig { schema, rows, services: 200, traces_per_s, max_calls: 200, seed }
}

/// Column `name` of each row, by the header of `schema`.
fn column<'a>(schema: Schema, rows: &'a [String], name: &str) -> Vec<&'a str> {
    let header = match schema {
        Schema::V2021 => ",traceid,timestamp,rpcid,um,rpctype,dm,interface,rt",
        Schema::V2022 => "timestamp,traceid,service,rpc_id,rpctype,um,uminstanceid,interface,dm,dminstanceid,rt",
    };
    let i = header.split(',').position(|c| c == name).expect("column");
    rows.iter().map(|r| r.split(',').nth(i).expect("field")).collect()
}

#[test]
fn alibaba_v2021_merges_each_two_sided_call() {
    let dir = Dir::new();
    let (p, rows) = alibaba(&dir, "v2021.csv", &config(Schema::V2021, 3000, 2000.0, 11));
    let downstream =
        column(Schema::V2021, &rows, "rt").iter().filter(|rt| rt.parse::<i64>().unwrap() < 0).count() as u64;
    let traces: BTreeSet<&str> = column(Schema::V2021, &rows, "traceid").into_iter().collect();
    assert!(downstream > 100, "the generator logs rpc/http calls twice");
    let r = inspect_json(&[&p], &[]);
    assert_eq!(int(&r, "records"), rows.len() as u64);
    assert_eq!(int(&r, "merged_call_pairs"), downstream);
    assert_eq!(int(&r, "spans"), rows.len() as u64 - downstream);
    assert_eq!(int(&r, "traces"), traces.len() as u64);
    assert_eq!(int(&r, "dropped_spans"), 0);
}

#[test]
fn alibaba_v2022_has_one_span_per_row() {
    let dir = Dir::new();
    let (p, rows) = alibaba(&dir, "v2022.csv", &config(Schema::V2022, 3000, 2000.0, 12));
    let traces: BTreeSet<&str> = column(Schema::V2022, &rows, "traceid").into_iter().collect();
    let r = inspect_json(&[&p], &[]);
    assert_eq!(int(&r, "spans"), rows.len() as u64);
    assert_eq!(int(&r, "records"), rows.len() as u64);
    assert_eq!(int(&r, "traces"), traces.len() as u64);
    assert_eq!(int(&r, "merged_call_pairs"), 0);
    assert_eq!(int(&r, "dropped_spans"), 0);
}

#[test]
fn alibaba_traces_split_across_two_files_are_joined() {
    let dir = Dir::new();
    let cfg = config(Schema::V2021, 4000, 2000.0, 13);
    let (whole, rows) = alibaba(&dir, "whole.csv", &cfg);
    let header = ",traceid,timestamp,rpcid,um,rpctype,dm,interface,rt";
    // Cut mid-way, at the first line that leaves a trace on both sides.
    let ids = column(Schema::V2021, &rows, "traceid");
    let cut = (rows.len() / 2..rows.len()).find(|&i| ids[..i].contains(&ids[i])).expect("a trace straddles the middle");
    let straddling: BTreeSet<&str> = ids[cut..].iter().filter(|id| ids[..cut].contains(id)).copied().collect();
    let part = |rows: &[String]| format!("{header}\n{}\n", rows.join("\n"));
    let a = dir.write("part-0.csv", part(&rows[..cut]));
    let b = dir.write("part-1.csv", part(&rows[cut..]));

    let one = inspect_json(&[&whole], &[]);
    let two = inspect_json(&[&a, &b], &[]);
    assert_eq!(int(&two, "traces"), int(&one, "traces"));
    assert_eq!(int(&two, "spans"), int(&one, "spans"));
    assert_eq!(int(&two, "records"), rows.len() as u64);
    assert_eq!(defect(&two, "orphan"), 0);
    assert_eq!(shape(&two), shape(&one));
    // Read one at a time, each straddling trace is counted in both halves:
    // the join is real.
    assert!(!straddling.is_empty());
    let (ra, rb) = (inspect_json(&[&a], &[]), inspect_json(&[&b], &[]));
    assert_eq!(int(&ra, "traces") + int(&rb, "traces"), int(&one, "traces") + straddling.len() as u64);
    assert!(defect(&rb, "orphan") > 0);
}

/// Two unrelated Alibaba files read together hold what each holds alone.
#[test]
fn independent_alibaba_files_read_together_add_up() {
    let dir = Dir::new();
    let (a, _) = alibaba(&dir, "a.csv", &config(Schema::V2022, 2000, 2000.0, 21));
    let (b, _) = alibaba(&dir, "b.csv", &config(Schema::V2022, 2000, 2000.0, 22));
    let (ra, rb) = (inspect_json(&[&a], &[]), inspect_json(&[&b], &[]));
    let both = inspect_json(&[&a, &b], &[]);
    for key in ["traces", "spans", "records"] {
        assert_eq!(int(&both, key), int(&ra, key) + int(&rb, key), "{key}");
    }
    assert_eq!(int(&both, "dropped_spans"), 0);
    assert_eq!(defect(&both, "multiple_roots"), 0);
}

#[test]
fn a_short_window_bounds_open_traces() {
    let dir = Dir::new();
    // 20 traces a second for minutes of input time.
    let (p, _rows) = alibaba(&dir, "slow.csv", &config(Schema::V2022, 80_000, 20.0, 14));
    let off = inspect_json(&[&p], &["--window", "off"]);
    let short = inspect_json(&[&p], &["--window", "5s"]);
    let default = inspect_json(&[&p], &[]);
    let traces = int(&off, "traces");
    assert!(traces > 1000, "{traces} traces");
    // Without a window every trace stays open until the end.
    assert_eq!(int(&off, "peak_open_traces"), traces);
    let peak = int(&short, "peak_open_traces");
    assert!(peak * 5 < traces, "5s window: {peak} open at once of {traces}");
    assert!(int(&default, "peak_open_traces") < traces);
    // Every trace is far shorter than 5 s: the windows change nothing else.
    assert_eq!(shape(&short), shape(&off));
    assert_eq!(shape(&default), shape(&off));
}

// ---------------------------------------------------------------------------
// Inputs: directories and forced formats.

#[test]
fn a_directory_reads_every_trace_file_sorted() {
    let dir = Dir::new();
    let gateway = fixture("good/spancsv/gateway_wrapper.csv");
    dir.write("in/b-gateway.csv", std::fs::read(&gateway).unwrap());
    let (c, _) = alibaba(&dir, "in/c-alibaba.csv", &config(Schema::V2022, 500, 2000.0, 15));
    let (a, _) = alibaba(&dir, "in/a-alibaba.csv", &config(Schema::V2021, 500, 2000.0, 16));
    dir.write("in/README.txt", "not traces");
    dir.write("in/.partial.csv", "not,a,trace,file");
    let each: u64 = [a.as_path(), &gateway, c.as_path()].iter().map(|p| int(&inspect_json(&[p], &[]), "traces")).sum();

    let r = inspect_json(&[&dir.path("in")], &[]);
    let files: Vec<(String, String)> = r["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = Path::new(f["path"].as_str().unwrap());
            (path.file_name().unwrap().to_string_lossy().into_owned(), f["format"].as_str().unwrap().to_string())
        })
        .collect();
    let expected = [("a-alibaba.csv", "alibaba"), ("b-gateway.csv", "spancsv"), ("c-alibaba.csv", "alibaba")]
        .map(|(p, f)| (p.to_string(), f.to_string()));
    assert_eq!(files, expected);
    assert_eq!(int(&r, "traces"), each);
}

#[test]
fn forcing_the_format_reads_what_detection_cannot() {
    let dir = Dir::new();
    // A Zipkin span whose `traceId` comes after 20 kB of tags: beyond what
    // detection looks at.
    let big = "x".repeat(20_000);
    let json = format!(
        r#"[{{"tags":{{"note":"{big}"}},"traceId":"00000000000000a1","id":"0000000000000001","name":"get /","timestamp":1000,"duration":500,"kind":"SERVER","localEndpoint":{{"serviceName":"web"}}}},
{{"traceId":"00000000000000a1","parentId":"0000000000000001","id":"0000000000000002","name":"select","timestamp":1100,"duration":200,"localEndpoint":{{"serviceName":"web"}}}}]"#
    );
    let p = dir.write("late-fields.json", json);
    let detected = palette(["inspect".as_ref(), "--json".as_ref(), p.as_os_str()]);
    assert_eq!(detected.code, 65, "{}", detected.stderr);
    assert!(detected.stderr.contains("--format"), "{}", detected.stderr);

    let r = inspect_json(&[&p], &["--format", "zipkin"]);
    assert_eq!((int(&r, "traces"), int(&r, "spans")), (1, 2));
    assert_eq!(r["files"][0]["format"], "zipkin");
    assert_eq!(int(&r, "local_edges"), 1);

    // A forced format is used even where detection would pick another.
    let gateway = fixture("good/spancsv/gateway_wrapper.csv");
    let forced = palette(["inspect".as_ref(), "--format".as_ref(), "jaeger".as_ref(), gateway.as_os_str()]);
    assert_eq!(forced.code, 65, "{}", forced.stderr);
    let r = inspect_json(&[&gateway], &["--format", "spancsv"]);
    assert_eq!(int(&r, "traces"), 2);
}

// ---------------------------------------------------------------------------
// Wrapper adoption (DESIGN.md): TrainTicket's gateway shape.

#[test]
fn wrapper_adoption_moves_the_call_under_the_handler() {
    // Trace 1: `/*` has the childless `FilteringWebHandler.handle` and the
    // `HTTP GET` it makes as siblings; the call lies within the handler.
    // Trace 2: the call outlives the handler by 3 ms: not adopted.
    let p = fixture("good/spancsv/gateway_wrapper.csv");
    let r = inspect_json(&[&p], &[]);
    assert_eq!((int(&r, "traces"), int(&r, "spans")), (2, 8));
    assert_eq!((int(&r, "services"), int(&r, "apis")), (2, 3));
    assert_eq!(int(&r, "adopted_calls"), 1);
    assert_eq!(int(&r, "folded_client_spans"), 2);
    // `/*` → handle (local), handle → execute (rpc), and in trace 2 `/*` →
    // execute (rpc).
    assert_eq!((int(&r, "edges"), int(&r, "local_edges"), int(&r, "rpc_edges")), (3, 1, 2));
    assert_eq!(r["depth"]["max"], 3, "/* → handle → execute");
    assert_eq!(r["depth"]["min"], 2);

    let no = inspect_json(&[&p], &["--no-adopt"]);
    assert_eq!(int(&no, "adopted_calls"), 0);
    assert_eq!((int(&no, "edges"), int(&no, "local_edges"), int(&no, "rpc_edges")), (2, 1, 1));
    assert_eq!(no["depth"]["max"], 2);
    assert_eq!(no["fan_out"]["max"], 2, "/* calls both");
    assert_eq!(int(&no, "spans"), 8);
}

// ---------------------------------------------------------------------------
// Determinism.

const EXAMPLE_FILES: [&str; 7] = [
    "webshop.otlp.jsonl",
    "webshop.jaeger.json",
    "webshop.zipkin.json",
    "webshop.spans.csv",
    "figure1.otlp.jsonl",
    "alibaba-v2021.csv",
    "alibaba-v2022.csv",
];

fn example(dir: &Path, seed: &str) {
    let run = palette([
        "example".as_ref(),
        "-o".as_ref(),
        dir.as_os_str(),
        "--traces".as_ref(),
        "100".as_ref(),
        "--alibaba-rows".as_ref(),
        "2000".as_ref(),
        "--seed".as_ref(),
        seed.as_ref(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn same_seed_same_example_files_and_reports() {
    let dir = Dir::new();
    let (one, two, other) = (dir.path("one"), dir.path("two"), dir.path("other"));
    example(&one, "3");
    example(&two, "3");
    example(&other, "4");
    for name in EXAMPLE_FILES {
        let a = std::fs::read(one.join(name)).unwrap();
        let b = std::fs::read(two.join(name)).unwrap();
        assert!(!a.is_empty(), "{name} is empty");
        assert!(a == b, "{name} differs between two runs with seed 3");
        let c = std::fs::read(other.join(name)).unwrap();
        assert!(a != c, "{name} is the same for seeds 3 and 4");
    }
    // A second run without --force refuses to overwrite.
    let again = palette(["example".as_ref(), "-o".as_ref(), one.as_os_str()]);
    assert_eq!(again.code, 2, "{}", again.stderr);

    for name in ["webshop.otlp.jsonl", "alibaba-v2021.csv", "webshop.spans.csv"] {
        let p = one.join(name);
        let args = ["inspect".as_ref(), "--json".as_ref(), p.as_os_str()];
        let (a, b) = (palette(args), palette(args));
        assert_eq!(a.code, 0, "{}", a.stderr);
        assert_eq!(a.stdout, b.stdout, "inspect --json {name} differs between runs");
    }
    let r = inspect_json(&[&one.join("webshop.otlp.jsonl")], &[]);
    assert_eq!(int(&r, "traces"), 100);
}

#[test]
fn example_systems_have_distinct_trace_ids() {
    let dir = Dir::new();
    example(&dir.path("ex"), "1");
    let shop = dir.path("ex/webshop.otlp.jsonl");
    let fig = dir.path("ex/figure1.otlp.jsonl");
    let r = inspect_json(&[&shop, &fig], &[]);
    assert_eq!(int(&r, "traces"), 200);
    assert_eq!(r["defects"], serde_json::json!({}));
}

// ---------------------------------------------------------------------------
// Help.

#[test]
fn help_lists_the_verbs_with_a_sentence_each() {
    let run = palette(["--help"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for verb in ["inspect", "example"] {
        let line = run
            .stdout
            .lines()
            .map(str::trim_start)
            .find(|l| l.split_whitespace().next() == Some(verb))
            .unwrap_or_else(|| panic!("`{verb}` is not listed:\n{}", run.stdout));
        let sentence = line[verb.len()..].trim();
        assert!(
            sentence.split_whitespace().count() >= 5 && sentence.starts_with(|c: char| c.is_ascii_uppercase()),
            "`{verb}` has no sentence: {line}"
        );
    }
    let run = palette(["inspect", "--help"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for flag in ["--strict", "--on-defect", "--format", "--window", "--no-adopt", "--json"] {
        assert!(run.stdout.contains(flag), "`{flag}` in:\n{}", run.stdout);
    }
}

// ---------------------------------------------------------------------------
// Format variants users export.

#[test]
fn jaeger_flat_span_array_with_follows_from_and_unpadded_ids() {
    let dir = Dir::new();
    let doc = r#"[
 {"traceID":"1a","spanID":"1","operationName":"GET /","references":[],"startTime":1000,"duration":500,
  "process":{"serviceName":"front"},"tags":[{"key":"span.kind","type":"string","value":"server"}]},
 {"traceID":"1a","spanID":"2","operationName":"enqueue","references":[{"refType":"FOLLOWS_FROM","traceID":"1a","spanID":"1"}],
  "startTime":1100,"duration":900,"process":{"serviceName":"queue"},"tags":[]},
 {"traceID":"1a","spanID":"3","operationName":"query","references":[{"refType":"CHILD_OF","traceID":"1a","spanID":"1"}],
  "startTime":1200,"duration":100,"process":{"serviceName":"db"},"tags":[{"key":"error","type":"bool","value":true}]}
]"#;
    let path = dir.write("flat.json", doc);
    let r = inspect_json(&[&path], &[]);
    assert_eq!(r["files"][0]["format"], "jaeger");
    assert_eq!((int(&r, "traces"), int(&r, "spans"), int(&r, "services"), int(&r, "edges")), (1, 3, 3, 2));
    assert_eq!(int(&r, "rpc_edges"), 2);
    assert_eq!(int(&r, "error_traces"), 1);
    assert_eq!(roots(&r), vec![("front GET /".to_string(), 1)]);
    assert_eq!(r["defects"], serde_json::json!({}));
}

#[test]
fn otlp_with_base64_ids_enum_kinds_and_numeric_times() {
    let dir = Dir::new();
    // The OTLP example's ids, base64-encoded as protobuf's JSON mapping does.
    let doc = r#"{"resourceSpans":[
 {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
  "scopeSpans":[{"spans":[{"traceId":"W47/95gDgQPSabYzgT/GDA==","spanId":"7uGbfsPBsXQ=","name":"GET /items",
    "kind":"SPAN_KIND_SERVER","startTimeUnixNano":1544712660000000000,"endTimeUnixNano":1544712661000000000}]}]},
 {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"store"}}]},
  "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","parentSpanId":"7uGbfsPBsXQ=",
    "name":"Load","kind":2,"startTimeUnixNano":"1544712660100000000","endTimeUnixNano":"1544712660200000000",
    "status":{"code":"STATUS_CODE_ERROR"}}]}]}
]}"#;
    let path = dir.write("b64.json", doc);
    let r = inspect_json(&[&path], &[]);
    assert_eq!(r["files"][0]["format"], "otlp");
    // Hex and base64 spellings of the same trace id join into one trace.
    assert_eq!((int(&r, "traces"), int(&r, "spans"), int(&r, "services"), int(&r, "rpc_edges")), (1, 2, 2, 1));
    assert_eq!(int(&r, "error_traces"), 1);
    assert_eq!(r["defects"], serde_json::json!({}));
}

#[test]
fn zipkin_array_of_traces() {
    let dir = Dir::new();
    let span = |trace: &str, id: &str, parent: Option<&str>, svc: &str, kind: &str, ts: u64| {
        let parent = parent.map_or(String::new(), |p| format!(r#""parentId":"{p}","#));
        format!(
            r#"{{"traceId":"{trace}","id":"{id}",{parent}"name":"op","kind":"{kind}","timestamp":{ts},"duration":100,"localEndpoint":{{"serviceName":"{svc}"}}}}"#
        )
    };
    let doc = format!(
        "[[{},{}],[{}]]",
        span("a1", "1", None, "web", "SERVER", 1000),
        span("a1", "2", Some("1"), "web", "CLIENT", 1010),
        span("b2", "9", None, "web", "SERVER", 5000)
    );
    let path = dir.write("nested.json", doc);
    let r = inspect_json(&[&path], &[]);
    assert_eq!(r["files"][0]["format"], "zipkin");
    assert_eq!((int(&r, "traces"), int(&r, "spans")), (2, 3));
    // A client span to a callee that recorded nothing stays a call of its own.
    assert_eq!(int(&r, "edges"), 1);
}
