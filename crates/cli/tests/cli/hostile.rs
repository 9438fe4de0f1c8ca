//! Hostile files, beyond `bad_input.rs`: traces in every format, intervention
//! files, hand-broken `model.json` and `system.json`. Each case names the
//! attack and asserts the exact outcome — the exit code and the message's
//! key words, or what was read, repaired and counted. Never a panic.
//!
//! Trace fixtures live in `tests/data/hostile/<format>/`; the other files
//! are made here from the project's own small models and systems.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

const BAD_DATA: i32 = 65;
const USAGE: i32 = 2;
const FAILURE: i32 = 1;

fn hostile(rel: &str) -> PathBuf {
    let p = fixture(&format!("hostile/{rel}"));
    assert!(p.exists(), "fixture {} is missing", p.display());
    p
}

/// Runs `palette ARGS`; whatever it does, it does not panic.
fn run<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(args: I) -> Run {
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let r = palette(&args);
    assert!(!r.stderr.contains("panicked"), "palette {args:?} panicked:\n{}", r.stderr);
    assert!([0, 1, 2, 65].contains(&r.code), "palette {args:?} exited {}:\n{}", r.code, r.stderr);
    r
}

/// Asserts `code` and one `palette: error:` line holding every needle.
fn fails_with(r: &Run, code: i32, needles: &[&str]) -> String {
    assert_eq!(r.code, code, "expected exit {code}; stdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
    let msg = r.stderr.lines().find(|l| l.starts_with("palette: error: ")).unwrap_or_else(|| {
        panic!("no `palette: error:` line in:\n{}", r.stderr);
    });
    for n in needles {
        assert!(msg.contains(n), "`{n}` in: {msg}");
    }
    msg.to_string()
}

// ---------------------------------------------------------------------------
// Trace readers.

fn inspect(path: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<OsString> = vec!["inspect".into(), "--json".into()];
    args.extend(extra.iter().map(OsString::from));
    args.push(path.as_os_str().to_owned());
    run(&args)
}

/// Exit 65 with one line naming `path` (and `:line`) and holding `needle`.
fn unreadable(rel: &str, extra: &[&str], line: Option<u64>, needle: &str) {
    let path = hostile(rel);
    let r = inspect(&path, extra);
    let msg = fails_with(&r, BAD_DATA, &[needle]);
    assert!(r.stdout.is_empty(), "no report on failure: {}", r.stdout);
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "one line: {}", r.stderr);
    let place = match line {
        Some(l) => format!("{}:{l}: ", path.display()),
        None => format!("{}: ", path.display()),
    };
    assert!(msg.contains(&place), "`{place}` in: {msg}");
}

/// Exit 0 with (traces, spans, dropped traces, dropped spans) and exactly
/// these defects (kind, count, where first seen relative to the fixture).
fn read_as(rel: &str, counts: (u64, u64, u64, u64), defects: &[(&str, u64, &str)]) {
    let path = hostile(rel);
    let r = inspect(&path, &[]);
    assert_eq!(r.code, 0, "{rel}: {}", r.stderr);
    let report: Value = serde_json::from_str(&r.stdout).expect("inspect --json prints JSON");
    let int = |k: &str| report[k].as_u64().unwrap_or_else(|| panic!("`{k}` in {report:#}"));
    assert_eq!(
        (int("traces"), int("spans"), int("dropped_traces"), int("dropped_spans")),
        counts,
        "(traces, spans, dropped traces, dropped spans) of {rel}"
    );
    let got: Vec<(String, u64, String)> = report["defects"]
        .as_object()
        .expect("a defects object")
        .iter()
        .map(|(k, v)| (k.clone(), v["count"].as_u64().unwrap(), v["first"].as_str().unwrap_or("").to_string()))
        .collect();
    let mut want: Vec<(String, u64, String)> = defects
        .iter()
        .map(|&(k, n, at)| {
            let at = if at.starts_with(':') { format!("{}{at}", path.display()) } else { at.to_string() };
            (k.to_string(), n, at)
        })
        .collect();
    want.sort();
    assert_eq!(got, want, "defects of {rel}");
}

#[test]
fn spancsv_byte_order_mark_before_the_header_is_read() {
    read_as("spancsv/byte_order_mark.csv", (1, 2, 0, 0), &[]);
}

#[test]
fn spancsv_crlf_line_endings_are_read() {
    read_as("spancsv/crlf.csv", (1, 2, 0, 0), &[]);
}

#[test]
fn spancsv_header_without_rows_reads_no_traces_and_fits_nothing() {
    read_as("spancsv/header_only.csv", (0, 0, 0, 0), &[]);
    let dir = Dir::new();
    let out = dir.path("model.json");
    let r = run(["fit".as_ref(), hostile("spancsv/header_only.csv").as_os_str(), "-o".as_ref(), out.as_os_str()]);
    fails_with(&r, USAGE, &["no trace is left to fit"]);
    assert!(!out.exists());
}

#[test]
fn spancsv_row_with_an_extra_field_is_read_by_its_named_columns() {
    read_as("spancsv/extra_field.csv", (1, 1, 0, 0), &[]);
}

#[test]
fn spancsv_empty_trace_id() {
    unreadable("spancsv/empty_trace_id.csv", &[], Some(2), "TraceID `` is not hex");
}

#[test]
fn spancsv_empty_span_id() {
    unreadable("spancsv/empty_span_id.csv", &[], Some(3), "SpanID `` is not hex");
}

#[test]
fn spancsv_span_that_is_its_own_parent_is_a_cycle() {
    read_as("spancsv/self_parent.csv", (0, 0, 1, 1), &[("cycle", 1, "trace 000000000000000000000000000000aa")]);
}

#[test]
fn spancsv_start_time_past_u64_saturates_into_a_negative_duration() {
    read_as("spancsv/start_past_u64.csv", (1, 1, 0, 0), &[("negative_duration", 1, ":2")]);
}

#[test]
fn spancsv_nul_in_a_service_name_is_refused_before_it_reaches_a_command_line() {
    // Sniffing calls it binary; forced, the name is read as it is…
    unreadable("spancsv/nul_in_name.csv", &[], None, "not a trace file palette can read (binary data)");
    let path = hostile("spancsv/nul_in_name.csv");
    let r = inspect(&path, &["--format", "spancsv"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // …and fitted, but no system is generated whose `palette up` would fail
    // to pass `--service=fr\0ont` to its services.
    let dir = Dir::new();
    let model = dir.path("model.json");
    let r = run([
        "fit".as_ref(),
        "--format".as_ref(),
        "spancsv".as_ref(),
        path.as_os_str(),
        "-o".as_ref(),
        model.as_os_str(),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let sys = dir.path("sys");
    let r = run(["generate".as_ref(), model.as_os_str(), "-o".as_ref(), sys.as_os_str()]);
    fails_with(&r, BAD_DATA, &["model.json: ", "service name `fr\\0ont` holds a NUL character"]);
    assert!(!sys.join("system.json").exists());
}

#[test]
fn alibaba_header_without_rows_reads_no_traces() {
    read_as("alibaba/header_only.csv", (0, 0, 0, 0), &[]);
}

#[test]
fn alibaba_empty_traceid() {
    unreadable("alibaba/empty_traceid.csv", &[], Some(2), "empty traceid");
}

#[test]
fn alibaba_rt_nan_is_not_a_number() {
    unreadable("alibaba/rt_nan.csv", &[], Some(2), "rt `NaN` is not a number of milliseconds");
}

#[test]
fn alibaba_rt_inf_is_not_a_number() {
    unreadable("alibaba/rt_inf.csv", &[], Some(2), "rt `inf` is not a number of milliseconds");
}

#[test]
fn alibaba_negative_rt_is_the_callee_side_of_the_call() {
    read_as("alibaba/negative_rt.csv", (1, 2, 0, 0), &[]);
}

#[test]
fn alibaba_rpcid_with_an_empty_step_hangs_under_the_root() {
    read_as("alibaba/empty_rpcid_step.csv", (1, 2, 0, 0), &[("orphan", 1, ":3")]);
}

#[test]
fn alibaba_one_rpcid_for_two_callees_is_a_duplicate_span_id() {
    read_as("alibaba/same_rpcid_two_callees.csv", (1, 2, 0, 1), &[("duplicate_span_id", 1, ":4")]);
}

#[test]
fn alibaba_v2022_fractional_rt_is_read() {
    read_as("alibaba/v2022_fractional_rt.csv", (1, 2, 0, 0), &[]);
}

#[test]
fn gzip_of_two_members_reads_both() {
    // `cat a.gz b.gz`: the second member is not silently dropped.
    read_as("any/two_gzip_members.jsonl.gz", (1, 2, 0, 0), &[]);
}

#[test]
fn gzip_with_trailing_garbage_is_corrupt() {
    unreadable(
        "any/gzip_trailing_garbage.jsonl.gz",
        &[],
        None,
        "invalid gzip header (a truncated or corrupt .gz file?)",
    );
}

#[test]
fn gzip_inside_gzip_is_binary_data() {
    unreadable("any/double_gzip.jsonl.gz", &[], None, "not a trace file palette can read (binary data)");
}

#[test]
fn gzip_of_nothing_is_an_empty_file() {
    unreadable("any/empty.gz", &[], Some(1), "the file is empty");
}

#[test]
fn jaeger_byte_order_mark_is_refused_at_line_1() {
    // Detected as Jaeger, then refused by the JSON parser (see the report:
    // span CSV skips a BOM, the JSON readers do not).
    unreadable("jaeger/byte_order_mark.json", &[], Some(1), "not valid Jaeger JSON");
}

#[test]
fn jaeger_duration_of_u64_max_saturates() {
    read_as("jaeger/duration_u64_max.json", (1, 2, 0, 0), &[]);
}

#[test]
fn jaeger_empty_span_id() {
    unreadable("jaeger/empty_span_id.json", &[], Some(1), "spanID `` is not hex");
}

#[test]
fn jaeger_non_hex_span_id() {
    unreadable("jaeger/non_hex_span_id.json", &[], Some(1), "spanID `zz` is not hex");
}

#[test]
fn jaeger_json_nested_5000_deep_hits_the_recursion_limit() {
    unreadable("jaeger/nested_5000_deep.json", &[], Some(1), "not valid Jaeger JSON: recursion limit exceeded");
}

#[test]
fn jaeger_span_claiming_another_trace_is_an_orphan_there() {
    read_as("jaeger/span_of_another_trace.json", (2, 2, 0, 0), &[("orphan", 1, ":1")]);
}

#[test]
fn jaeger_two_concatenated_documents_are_both_read() {
    read_as("jaeger/two_documents.json", (2, 2, 0, 0), &[]);
}

#[test]
fn jaeger_unknown_process_id_is_a_missing_service() {
    read_as("jaeger/unknown_process.json", (1, 2, 0, 0), &[("missing_service", 1, ":1")]);
}

#[test]
fn jaeger_unknown_reference_type_makes_a_second_root() {
    read_as(
        "jaeger/unknown_ref_type.json",
        (1, 1, 0, 1),
        &[("multiple_roots", 1, "trace 000000000000000000000000000000aa")],
    );
}

#[test]
fn zipkin_empty_array_is_no_known_format() {
    unreadable("zipkin/empty_array.json", &[], None, "not a trace file palette can read (JSON without OTLP");
}

#[test]
fn zipkin_endpoint_that_is_not_an_object() {
    unreadable(
        "zipkin/endpoint_not_object.json",
        &[],
        Some(1),
        "span 1: invalid type: string \"b\", expected struct Endpoint",
    );
}

#[test]
fn zipkin_negative_duration_field() {
    read_as("zipkin/negative_duration_field.json", (1, 2, 0, 0), &[("negative_duration", 1, ":1")]);
}

#[test]
fn zipkin_non_hex_id() {
    unreadable("zipkin/non_hex_id.json", &[], Some(1), "id `xyz` is not hex");
}

#[test]
fn zipkin_timestamp_of_1e300() {
    unreadable(
        "zipkin/timestamp_1e300.json",
        &[],
        Some(1),
        "span 1: invalid type: floating point `1e+300`, expected i64",
    );
}

#[test]
fn zipkin_trailing_comma() {
    unreadable("zipkin/trailing_comma.json", &[], Some(1), "not valid Zipkin JSON: trailing comma");
}

#[test]
fn otlp_all_zero_trace_id_is_a_trace_of_its_own() {
    read_as("otlp/all_zero_trace_id.jsonl", (2, 2, 0, 0), &[("orphan", 1, ":1")]);
}

#[test]
fn otlp_base64_ids_link_parent_and_child() {
    read_as("otlp/base64_ids.jsonl", (1, 2, 0, 0), &[]);
}

#[test]
fn otlp_blank_lines_between_json_lines() {
    read_as("otlp/blank_lines.jsonl", (1, 2, 0, 0), &[]);
}

#[test]
fn otlp_crlf_json_lines() {
    read_as("otlp/crlf.jsonl", (1, 2, 0, 0), &[]);
}

#[test]
fn otlp_empty_service_name_is_a_missing_service() {
    read_as("otlp/empty_service_name.json", (1, 1, 0, 0), &[("missing_service", 1, ":1")]);
}

#[test]
fn otlp_end_time_past_u64() {
    unreadable(
        "otlp/end_past_u64.jsonl",
        &[],
        Some(1),
        "span 0000000000000002: start or end time is not a number of nanoseconds",
    );
}

#[test]
fn otlp_null_json_line() {
    unreadable(
        "otlp/null_line.jsonl",
        &[],
        Some(2),
        "not valid OTLP/JSON: invalid type: null, expected an OTLP/JSON document",
    );
}

#[test]
fn otlp_trace_id_of_30_digits() {
    unreadable(
        "otlp/trace_id_30_digits.jsonl",
        &[],
        Some(1),
        "traceId `0af7651916cd43dd8448eb211c8031` is neither 32 hex digits nor base64 of 16 bytes",
    );
}

// ---------------------------------------------------------------------------
// Intervention files (`palette edit --apply`), on the shop model: APIs
// `cart get`, `email send`, `frontend home`.

fn shop(dir: &Dir) -> PathBuf {
    dir.write("model.json", palette_model::intervene::tests_support::shop().to_json())
}

/// `palette edit model.json --apply FILE -o out.json` with `text` as FILE.
fn edit(dir: &Dir, name: &str, text: impl AsRef<[u8]>) -> (Run, PathBuf) {
    let model = shop(dir);
    let file = dir.write(name, text);
    let out = dir.path(&format!("{name}.out.json"));
    let r =
        run(["edit".as_ref(), model.as_os_str(), "--apply".as_ref(), file.as_os_str(), "-o".as_ref(), out.as_os_str()]);
    (r, out)
}

/// The edit fails with `code`, names the file and the needles, and writes
/// nothing.
fn edit_fails(text: &str, code: i32, needles: &[&str]) {
    let dir = Dir::new();
    let (r, out) = edit(&dir, "whatif.yaml", text);
    let msg = fails_with(&r, code, needles);
    assert!(msg.contains("whatif.yaml"), "names the file: {msg}");
    assert!(!out.exists(), "nothing is written: {text:?}");
}

#[test]
fn intervention_nan_factor_is_not_a_finite_number() {
    edit_fails(
        "- scale_latency: { service: cart, factor: .nan }\n",
        BAD_DATA,
        &["whatif.yaml:1: entry 0 (scale_latency): `NaN` is not a finite number"],
    );
}

#[test]
fn intervention_infinite_factor_is_not_a_finite_number() {
    edit_fails(
        "- scale_payload: { factor: .inf }\n",
        BAD_DATA,
        &["entry 0 (scale_payload): `inf` is not a finite number"],
    );
}

#[test]
fn intervention_nan_delay_is_not_taken_for_a_missing_one() {
    // Through JSON a NaN became null, which read as "no add_ms given".
    edit_fails("- delay: { into: cart, add_ms: .nan }\n", BAD_DATA, &["entry 0 (delay): `NaN` is not a finite number"]);
}

#[test]
fn intervention_minus_infinity_in_a_later_entry() {
    edit_fails(
        "- rpc: grpc\n- tracing: { sample_rate: -.inf }\n",
        BAD_DATA,
        &["whatif.yaml:2: entry 1 (tracing): `-inf` is not a finite number"],
    );
}

#[test]
fn intervention_negative_delay() {
    edit_fails(
        "- delay: { into: cart, add_ms: -5 }\n",
        USAGE,
        &["line 1: entry 0 (delay): `add_ms` must be a number ≥ 0, not -5"],
    );
}

#[test]
fn intervention_downscale_to_a_negative_count() {
    edit_fails("- downscale: { services: -1 }\n", BAD_DATA, &["entry 0 (downscale): invalid value: integer `-1`"]);
}

#[test]
fn intervention_number_past_u64() {
    edit_fails(
        "- downscale: { services: 99999999999999999999 }\n",
        BAD_DATA,
        &["not valid YAML", "99999999999999999999"],
    );
}

#[test]
fn intervention_factor_as_a_string() {
    edit_fails(
        "- scale_latency: { service: cart, factor: \"2\" }\n",
        BAD_DATA,
        &["entry 0 (scale_latency): invalid type: string \"2\", expected f64"],
    );
}

#[test]
fn intervention_service_as_a_list() {
    edit_fails(
        "- scale_latency: { service: [cart], factor: 2 }\n",
        BAD_DATA,
        &["entry 0 (scale_latency): invalid type: sequence, expected a string"],
    );
}

#[test]
fn intervention_duplicate_key() {
    edit_fails(
        "- delay: { into: cart, add_ms: 5, into: email }\n",
        BAD_DATA,
        &["not valid YAML", "duplicate entry with key \"into\""],
    );
}

#[test]
fn intervention_billion_laughs_is_refused_quickly() {
    // Nine levels of nine aliases: 387 million strings if expanded.
    let mut text =
        String::from("- scale_payload: { factor: 2, junk: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol] }\n");
    for i in 1..9 {
        text += &format!("- &x{i} [{}]\n", vec![format!("*x{}", i - 1); 9].join(", "));
    }
    let started = Instant::now();
    edit_fails(&text, BAD_DATA, &["not valid YAML: repetition limit exceeded"]);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn intervention_yaml_nested_10000_deep() {
    let text = format!("- scale_payload: {{ factor: 2, x: {}{} }}\n", "[".repeat(10_000), "]".repeat(10_000));
    edit_fails(&text, BAD_DATA, &["not valid YAML: recursion limit exceeded"]);
}

#[test]
fn intervention_aliases_repeat_an_entry() {
    let dir = Dir::new();
    let (r, out) = edit(&dir, "whatif.yaml", "- &d { delay: { into: cart, add_ms: 1 } }\n- *d\n- *d\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("applied 3 interventions"), "{}", r.stderr);
    let edited: Value = serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
    assert_eq!(edited["provenance"]["interventions"].as_array().map(Vec::len), Some(3));
}

#[test]
fn intervention_two_yaml_documents() {
    edit_fails("- rpc: grpc\n---\n- rpc: http\n", BAD_DATA, &["not valid YAML", "more than one document"]);
}

#[test]
fn intervention_file_that_is_not_utf8() {
    let dir = Dir::new();
    let (r, out) = edit(&dir, "whatif.yaml", b"\xff\xfe- rpc: grpc\n");
    fails_with(&r, BAD_DATA, &["whatif.yaml: not an intervention file: the file is not UTF-8 text"]);
    assert!(!out.exists());
}

#[test]
fn intervention_65_replicas() {
    edit_fails(
        "- replicate: { service: cart, instances: 65 }\n",
        USAGE,
        &["entry 0 (replicate): `instances` 65 is more than 64"],
    );
}

#[test]
fn intervention_unknown_service() {
    edit_fails(
        "- replicate: { service: nope, instances: 2 }\n",
        USAGE,
        &["entry 0 (replicate): unknown service `nope`"],
    );
}

#[test]
fn intervention_unknown_api() {
    edit_fails(
        "- scale_latency: { api: cart nothing, factor: 2 }\n",
        USAGE,
        &["entry 0 (scale_latency): unknown API `cart nothing`"],
    );
}

#[test]
fn intervention_percentiles_that_decrease() {
    edit_fails(
        "- delay: { into: cart, percentiles: [[50, 5], [40, 6]] }\n",
        USAGE,
        &["entry 0 (delay): percentiles must increase and their ms not decrease: [40, 6] after [50, 5]"],
    );
}

#[test]
fn intervention_tagged_entry() {
    edit_fails("- !delay { into: cart, add_ms: 1 }\n", BAD_DATA, &["entry 0 (?): expected `kind: { fields }`"]);
}

#[test]
fn intervention_sequence_as_a_key() {
    edit_fails("- { ? [a, b] : 1 }\n", BAD_DATA, &["whatif.yaml:1: entry 0 (?): key must be a string"]);
}

#[test]
fn intervention_file_of_20_mb_and_of_100000_entries() {
    let dir = Dir::new();
    let started = Instant::now();
    let (r, _) = edit(&dir, "comment.yaml", format!("# {}\n- rpc: grpc\n", "x".repeat(20 << 20)));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("applied 1 intervention:"), "{}", r.stderr);
    let (r, _) = edit(&dir, "many.yaml", "- rpc: grpc\n".repeat(100_000));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("applied 100000 interventions"), "{}", r.stderr);
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

#[test]
#[ignore = "issue 22: `edit` writes a model with null min/max when a factor makes a sketch infinite"]
fn intervention_factor_of_1e308_keeps_the_model_readable() {
    let dir = Dir::new();
    let (r, out) = edit(&dir, "whatif.yaml", "- scale_latency: { service: cart, factor: 1e308 }\n");
    if r.code == 0 {
        let r = run(["show".as_ref(), out.as_os_str()]);
        assert_eq!(r.code, 0, "the edited model reads back: {}", r.stderr);
    } else {
        fails_with(&r, USAGE, &["factor"]);
    }
}

// ---------------------------------------------------------------------------
// model.json broken by hand: `show`, `simulate` and `generate` refuse it with
// exit 65, the file, the line and the JSON path.

/// The shop model as JSON, edited by `f`, written pretty.
fn broken_model(dir: &Dir, name: &str, f: impl FnOnce(&mut Value)) -> PathBuf {
    let mut m: Value = serde_json::from_str(&palette_model::intervene::tests_support::shop().to_json()).unwrap();
    f(&mut m);
    dir.write(name, serde_json::to_string_pretty(&m).unwrap())
}

/// Every verb that reads a model refuses it with exit 65 at a line of it.
fn model_refused(path: &Path, needles: &[&str]) {
    let dir = Dir::new();
    let verbs: [Vec<OsString>; 3] = [
        vec!["show".into(), path.into()],
        vec!["simulate".into(), path.into(), "-n".into(), "5".into(), "-o".into(), dir.path("t.jsonl").into()],
        vec!["generate".into(), path.into(), "-o".into(), dir.path("sys").into()],
    ];
    let name = path.file_name().unwrap().to_str().unwrap();
    for args in verbs {
        let r = run(&args);
        let msg = fails_with(&r, BAD_DATA, needles);
        let at = msg.find(&format!("{name}:")).unwrap_or_else(|| panic!("names the file: {msg}"));
        let line: String = msg[at + name.len() + 1..].chars().take_while(char::is_ascii_digit).collect();
        assert!(line.parse::<u64>().is_ok_and(|l| l > 0), "{args:?} names a line: {msg}");
    }
    assert!(!dir.path("t.jsonl").exists() && !dir.path("sys").exists(), "nothing is written");
}

#[test]
fn model_negative_count() {
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| m["apis"][0]["count"] = json!(-5));
    model_refused(&m, &["invalid value: integer `-5`, expected u64"]);
}

#[test]
fn model_nan_literal() {
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| m["apis"][2]["states"][1]["lambda"] = json!("NAN"));
    let text = std::fs::read_to_string(&m).unwrap().replace("\"NAN\"", "NaN");
    let m = dir.write("m.json", text);
    model_refused(&m, &["not a palette model (expected value"]);
}

#[test]
fn model_missing_field() {
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| {
        m.as_object_mut().unwrap().remove("services");
    });
    model_refused(&m, &["missing field `services`"]);
}

#[test]
fn model_that_is_a_system_file() {
    let dir = Dir::new();
    let system = dir.write("system.json", serde_json::to_string_pretty(&chain_system(2)).unwrap());
    let r = run(["show".as_ref(), system.as_os_str()]);
    fails_with(&r, BAD_DATA, &["system.json:2: ", "format `palette-system/1` is not palette-model/1"]);
}

#[test]
fn model_format_as_a_number() {
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| m["format"] = json!(1));
    model_refused(&m, &["invalid type: integer `1`, expected a string"]);
}

#[test]
fn model_unknown_kind() {
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| m["kind"] = json!("fancy"));
    model_refused(&m, &["unknown variant `fancy`, expected `palette` or `naive`"]);
}

#[test]
fn model_sketch_with_min_above_max() {
    // `show` panicked in f64::clamp.
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| {
        m["apis"][1]["latency"]["min"] = json!(1e9);
        m["apis"][1]["latency"]["max"] = json!(1.0);
    });
    model_refused(&m, &["apis[1].latency: the sketch's min 1000000000 is above its max 1"]);
}

#[test]
fn model_work_sketch_by_caller_with_min_above_max() {
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| {
        m["apis"][2]["states"][0]["next"][0]["work"]["by_caller"] =
            json!([{"caller": null, "sketch": {"n": 3, "min": 5.0, "max": 4.0, "bins": [[100, 3]]}}]);
    });
    model_refused(&m, &["apis[2].states[0].next[0].work.by_caller[0].sketch: the sketch's min 5 is above its max 4"]);
}

#[test]
fn model_overhead_correlation_above_1() {
    // The copula drew NaN overheads: a silent change of every latency.
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| m["apis"][2]["overhead_correlation"] = json!(5.0));
    model_refused(&m, &["apis[2].overhead_correlation: correlation 5 is not between 0 and 1"]);
}

#[test]
fn model_api_of_a_service_not_listed() {
    // `generate` failed with exit 1 and a message about its own output.
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| m["apis"][1]["service"] = json!("ghost"));
    model_refused(&m, &["apis[1].service: service `ghost` is not in `services`"]);
}

#[test]
fn model_two_apis_of_one_name() {
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| m["apis"][1] = m["apis"][0].clone());
    model_refused(&m, &["apis[1].operation: API `cart get` is also apis[0]"]);
}

#[test]
fn model_deploy_of_1000_replicas() {
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| m["deploy"] = json!({"replicas": {"cart": 1000}}));
    model_refused(&m, &["deploy.replicas: 1000 instances of `cart`; a service has 1 to 64"]);
}

#[test]
fn model_deploy_sample_rate_of_5() {
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| m["deploy"] = json!({"sample_rate": 5.0}));
    model_refused(&m, &["deploy.sample_rate: sample_rate 5 is not between 0 and 1"]);
}

#[test]
fn model_deploy_unknown_rpc() {
    // `generate` silently made an HTTP system.
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| m["deploy"] = json!({"rpc": "carrier-pigeon"}));
    model_refused(&m, &["deploy.rpc: rpc `carrier-pigeon` is neither `http` nor `grpc`"]);
}

#[test]
fn model_root_that_does_not_exist() {
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| m["roots"][0]["api"] = json!(99));
    model_refused(&m, &["roots[0].api: API 99 does not exist (the model has 3 APIs)"]);
}

#[test]
fn model_caller_that_does_not_exist() {
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| m["apis"][0]["callers"][0]["caller"] = json!(4_000_000_000u64));
    model_refused(&m, &["apis[0].callers[0].caller: API 4000000000 does not exist"]);
}

#[test]
fn model_negative_lambda() {
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| m["apis"][2]["states"][1]["lambda"] = json!(-1.0));
    model_refused(&m, &["apis[2].states[1].lambda: λ -1 is not a number ≥ 0"]);
}

#[test]
fn model_without_roots_simulates_nothing() {
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| m["roots"] = json!([]));
    let out = dir.path("t.jsonl");
    let r = run(["simulate".as_ref(), m.as_os_str(), "-n".as_ref(), "5".as_ref(), "-o".as_ref(), out.as_os_str()]);
    fails_with(&r, USAGE, &["has no root API to start traces from"]);
    assert!(!out.exists());
}

#[test]
fn model_pfa_that_never_finishes_is_cut_at_10000_stages() {
    // State 2 (`email send`) loops to itself with probability 1.
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| m["apis"][2]["states"][2]["next"][0]["to"] = json!(2));
    let out = dir.path("t.jsonl");
    let r = run(["simulate".as_ref(), m.as_os_str(), "-n".as_ref(), "2".as_ref(), "-o".as_ref(), out.as_os_str()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let text = std::fs::read_to_string(&out).unwrap();
    let spans = text.matches("\"spanId\"").count();
    // Per trace: the root, its `cart get` call, and at most 10,000 stages
    // (each one call, a client and a server span) — bounded, not a hang.
    assert!(spans > 2 && spans <= 2 * (2 + 2 * 10_000), "{spans} spans");
}

#[test]
fn model_unknown_field_is_ignored() {
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| m["colour"] = json!("red"));
    let r = run(["show".as_ref(), m.as_os_str()]);
    assert_eq!(r.code, 0, "newer fields do not stop an older reader: {}", r.stderr);
}

#[test]
#[ignore = "issue 22: simulate overflows an integer on 1e30-ns durations (panics in debug builds)"]
fn model_work_of_1e300_ns() {
    let dir = Dir::new();
    let m = broken_model(&dir, "m.json", |m| {
        m["apis"][2]["states"][0]["next"][0]["work"]["all"] =
            json!({"n": 5, "min": 1e300, "max": 1e300, "bins": [[32767, 5]]});
    });
    let out = dir.path("t.jsonl");
    run(["simulate".as_ref(), m.as_os_str(), "-n".as_ref(), "5".as_ref(), "-o".as_ref(), out.as_os_str()]);
}

// ---------------------------------------------------------------------------
// system.json broken by hand: `palette serve` refuses it with exit 65, the
// file and the line, before it listens anywhere.

fn chain_system(n: usize) -> Value {
    let base = free_ports(n as u16);
    let ports: Vec<u16> = (0..n as u16).map(|i| base + i).collect();
    serde_json::from_str(&palette_runtime::synthetic::chain(&ports, &vec![0; n]).to_json()).unwrap()
}

/// `palette serve FILE --all` on the chain system edited by `f`.
fn serve_system(f: impl FnOnce(&mut Value)) -> Run {
    let dir = Dir::new();
    let mut c = chain_system(3);
    f(&mut c);
    let file = dir.write("system.json", serde_json::to_string_pretty(&c).unwrap());
    // A system that loads would be served until a signal: give up on it.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_palette"))
        .args(["serve".as_ref(), file.as_os_str(), "--all".as_ref()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("palette serve was still serving after 20 s:\n{}", String::from_utf8_lossy(&out.stdout));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let r: Run = child.wait_with_output().unwrap().into();
    assert!(!r.stderr.contains("panicked"), "palette serve panicked:\n{}", r.stderr);
    r
}

fn system_refused(f: impl FnOnce(&mut Value), needles: &[&str]) {
    let r = serve_system(f);
    let msg = fails_with(&r, BAD_DATA, needles);
    let at = msg.find("system.json:").unwrap_or_else(|| panic!("names the file: {msg}"));
    let line: String = msg[at + "system.json:".len()..].chars().take_while(char::is_ascii_digit).collect();
    assert!(line.parse::<u64>().is_ok_and(|l| l > 0), "names a line: {msg}");
    assert!(r.stdout.is_empty(), "nothing listened: {}", r.stdout);
}

#[test]
fn system_port_70000() {
    system_refused(|c| c["services"][0]["port"] = json!(70000), &["invalid value: integer `70000`, expected u16"]);
}

#[test]
fn system_negative_port() {
    system_refused(|c| c["services"][1]["port"] = json!(-1), &["invalid value: integer `-1`, expected u16"]);
}

#[test]
fn system_port_as_a_string() {
    system_refused(|c| c["services"][0]["port"] = json!("7000"), &["invalid type: string \"7000\", expected u16"]);
}

#[test]
fn system_instances_over_the_next_services_port() {
    system_refused(|c| c["services"][0]["instances"] = json!(2), &["is also a port of `s01`; locally instance i"]);
}

#[test]
fn system_instances_past_port_65535() {
    system_refused(
        |c| {
            c["services"][2]["port"] = json!(65535);
            c["services"][2]["instances"] = json!(2);
        },
        &["the 2 instances of `s03` need ports 65535 to 65536, past 65535"],
    );
}

#[test]
fn system_65_instances() {
    system_refused(
        |c| c["services"][0]["instances"] = json!(65),
        &["service `s01` has 65 instances; it needs 1 to 64"],
    );
}

#[test]
fn system_unknown_fields_at_every_level() {
    system_refused(|c| c["colour"] = json!("red"), &["unknown field `colour`"]);
    system_refused(|c| c["limits"]["max_coffee"] = json!(3), &["unknown field `max_coffee`"]);
    system_refused(|c| c["services"][0]["replicas"] = json!(3), &["unknown field `replicas`"]);
}

#[test]
fn system_hosts_that_are_not_dns_labels() {
    for host in ["S01", "a.b", "a_b", "-a", &"a".repeat(64)] {
        system_refused(|c| c["services"][0]["host"] = json!(host), &[&format!("host `{host}` is not a DNS label")]);
    }
}

#[test]
fn system_service_name_with_nul() {
    // `palette up` failed with "nul byte found in provided data" (exit 1).
    system_refused(
        |c| {
            c["services"][0]["name"] = json!("s\u{0}01");
            c["model"]["services"][0] = json!("s\u{0}01");
            c["model"]["apis"][0]["service"] = json!("s\u{0}01");
        },
        &["service name `s\\001` holds a NUL character, which no command line can carry"],
    );
}

#[test]
fn system_memory_work_limit_of_0() {
    // Like every other limit; it was accepted and memory work touched 8 bytes.
    system_refused(
        |c| c["limits"]["max_memory_work_bytes"] = json!(0),
        &["limits.max_memory_work_bytes must be at least 1"],
    );
}

#[test]
fn system_without_services() {
    system_refused(|c| c["services"] = json!([]), &["the system has no services"]);
}

#[test]
fn system_sample_rate_above_1() {
    system_refused(|c| c["tracing"]["sample_rate"] = json!(2.0), &["tracing.sample_rate 2 is not between 0 and 1"]);
}

#[test]
fn system_span_file_that_is_a_directory() {
    let r = serve_system(|c| c["tracing"]["file"] = json!("/"));
    fails_with(&r, FAILURE, &["cannot open span file /"]);
}

#[test]
fn system_otlp_endpoint_that_is_not_a_url() {
    let r = serve_system(|c| c["tracing"]["otlp_endpoint"] = json!("not a url"));
    fails_with(&r, FAILURE, &["bad OTLP endpoint `not a url`"]);
}

/// Starts `palette up` on `config`; returns it once it says it is up.
fn up(dir: &Dir, config: &Value) -> (std::process::Child, Up) {
    let file = dir.write("sys/system.json", serde_json::to_string_pretty(config).unwrap());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_palette"))
        .args(["up".as_ref(), file.as_os_str()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let shown = wait_until_up(&mut child, Duration::from_secs(60));
    (child, shown)
}

fn stop(mut child: std::process::Child) {
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert_eq!(child.wait().unwrap().code(), Some(143));
}

/// One HTTP/1.1 request; the status line.
fn status(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.lines().next().unwrap_or("").to_string()
}

#[test]
fn system_names_like_flags_paths_and_newlines_run_under_up() {
    // `palette up` passes each name as `--service=NAME`: a name that looks
    // like a flag, a path or holds a newline still reaches its process.
    let dir = Dir::new();
    let mut c = chain_system(3);
    let names = ["--all", "../../etc x", "名前\nzwei"];
    for (i, name) in names.iter().enumerate() {
        c["services"][i]["name"] = json!(name);
        c["model"]["services"][i] = json!(name);
        c["model"]["apis"][i]["service"] = json!(name);
    }
    let (child, shown) = up(&dir, &c);
    assert!(shown.shown.contains("3 services in 3 processes, all healthy"), "{}", shown.shown);
    let port = c["services"][0]["port"].as_u64().unwrap() as u16;
    let line = status(port, "POST /op/hop HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(line, "HTTP/1.1 200 OK", "the chain through all three names is served");
    stop(child);
}

#[test]
fn system_limits_at_their_type_maximum_are_served() {
    let dir = Dir::new();
    let mut c = chain_system(2);
    c["limits"]["max_in_flight"] = json!(u32::MAX);
    c["limits"]["call_timeout_ms"] = json!(u64::MAX);
    c["limits"]["max_body_bytes"] = json!(u64::MAX);
    // max_depth has a ceiling of its own (512: in-process calls nest on a worker's stack), checked in limits.rs.
    c["limits"]["max_depth"] = json!(512);
    c["limits"]["max_memory_work_bytes"] = json!(u64::MAX);
    c["work"]["mode"] = json!("memory");
    c["tracing"]["batch_size"] = json!(u64::MAX);
    c["tracing"]["flush_interval_ms"] = json!(u64::MAX);
    let (child, _shown) = up(&dir, &c);
    let port = c["services"][0]["port"].as_u64().unwrap() as u16;
    let line = status(port, "POST /op/hop HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
    assert_eq!(line, "HTTP/1.1 200 OK");
    stop(child);
    // A flush interval of u64::MAX ms still flushes at shutdown.
    let spans = std::fs::read_to_string(dir.path("sys/spans.jsonl")).unwrap();
    assert_eq!(spans.matches("\"spanId\"").count(), 3, "2 SERVER and 1 CLIENT span: {spans}");
}
