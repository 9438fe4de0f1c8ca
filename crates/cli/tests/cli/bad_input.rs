//! Malformed input, in every format: `palette inspect` must either stop with
//! one clear line naming the file (and line, or trace) and exit 65, or repair
//! the defect and count it in the report. Never a panic.
//!
//! Small fixtures live in `tests/data/bad/<format>/`; big inputs (100 MB
//! lines) are generated into a temporary directory at test time.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// The exit code for bad input data.
const BAD_DATA: i32 = 65;
/// The exit code for a usage error.
const USAGE: i32 = 2;

fn bad(rel: &str) -> PathBuf {
    let p = fixture(&format!("bad/{rel}"));
    assert!(p.exists(), "fixture {} is missing", p.display());
    p
}

/// Runs `palette inspect --json [extra] path`; never a panic.
fn inspect(path: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<OsString> = vec!["inspect".into(), "--json".into()];
    args.extend(extra.iter().map(OsString::from));
    args.push(path.as_os_str().to_owned());
    let run = palette(&args);
    assert!(!run.stderr.contains("panicked"), "palette panicked on {}:\n{}", path.display(), run.stderr);
    run
}

/// Asserts exit 65 with one `palette: error:` line that names `path` (with
/// `:line` when given) and contains `needle`. Returns the message.
fn fails_at(path: &Path, extra: &[&str], line: Option<u64>, needle: &str) -> String {
    let run = inspect(path, extra);
    assert_eq!(
        run.code,
        BAD_DATA,
        "expected exit 65 for {} {extra:?}; stdout:\n{}\nstderr:\n{}",
        path.display(),
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.is_empty(), "no report on failure: {}", run.stdout);
    let msg = run.stderr.trim_end();
    assert_eq!(msg.lines().count(), 1, "one line: {msg}");
    assert!(msg.starts_with("palette: error: "), "{msg}");
    let place = match line {
        Some(l) => format!("{}:{l}: ", path.display()),
        None => format!("{}", path.display()),
    };
    assert!(msg.contains(&place), "`{place}` in: {msg}");
    assert!(msg.contains(needle), "`{needle}` in: {msg}");
    msg.to_string()
}

/// Asserts exit 0 and returns the JSON report.
fn repaired(path: &Path, extra: &[&str]) -> Value {
    let run = inspect(path, extra);
    assert_eq!(run.code, 0, "expected exit 0 for {} {extra:?}; stderr:\n{}", path.display(), run.stderr);
    serde_json::from_str(&run.stdout).expect("inspect --json prints JSON")
}

/// Asserts the report's defects are exactly `expected` (kind, count).
fn assert_defects(report: &Value, expected: &[(&str, u64)]) {
    let defects = report["defects"].as_object().expect("a defects object");
    let got: Vec<(String, u64)> =
        defects.iter().map(|(k, v)| (k.clone(), v["count"].as_u64().expect("count"))).collect();
    let mut want: Vec<(String, u64)> = expected.iter().map(|&(k, n)| (k.to_string(), n)).collect();
    want.sort();
    assert_eq!(got, want, "defects of {report:#}");
}

fn int(report: &Value, key: &str) -> u64 {
    report[key].as_u64().unwrap_or_else(|| panic!("`{key}` in {report:#}"))
}

/// Asserts traces, spans, dropped traces and dropped spans.
fn assert_counts(report: &Value, traces: u64, spans: u64, dropped_traces: u64, dropped_spans: u64) {
    assert_eq!(
        (int(report, "traces"), int(report, "spans"), int(report, "dropped_traces"), int(report, "dropped_spans")),
        (traces, spans, dropped_traces, dropped_spans),
        "(traces, spans, dropped_traces, dropped_spans) of {report:#}"
    );
}

/// Where the report says a defect was first seen.
fn first(report: &Value, kind: &str) -> String {
    report["defects"][kind]["first"]
        .as_str()
        .unwrap_or_else(|| panic!("defects.{kind}.first in {report:#}"))
        .to_string()
}

// ---------------------------------------------------------------------------
// Any format: files that are not traces at all.

#[test]
fn nonexistent_input_is_a_usage_error() {
    let dir = Dir::new();
    let missing = dir.path("no-such-file.csv");
    let run = inspect(&missing, &[]);
    assert_eq!(run.code, USAGE, "{}", run.stderr);
    assert!(run.stderr.starts_with("palette: error: "), "{}", run.stderr);
    assert!(run.stderr.contains("no-such-file.csv: no such file or directory"), "{}", run.stderr);
}

#[test]
fn directory_without_trace_files_is_a_usage_error() {
    let dir = Dir::new();
    dir.write("notes.txt", "not a trace");
    let run = inspect(dir.tmp.path(), &[]);
    assert_eq!(run.code, USAGE, "{}", run.stderr);
    assert!(run.stderr.contains("directory holds no trace files"), "{}", run.stderr);
}

#[test]
fn empty_file() {
    fails_at(&bad("any/empty.csv"), &[], None, "the file is empty");
}

#[test]
fn empty_file_with_each_forced_format() {
    for format in ["alibaba", "spancsv", "jaeger", "zipkin", "otlp"] {
        fails_at(&bad("any/empty.csv"), &["--format", format], Some(1), "the file is empty");
    }
}

#[test]
fn whitespace_only_file() {
    fails_at(&bad("any/whitespace.json"), &[], None, "the file is empty");
    fails_at(&bad("any/whitespace.json"), &["--format", "zipkin"], Some(1), "the file is empty");
}

#[test]
fn binary_garbage() {
    let path = bad("any/garbage.bin");
    fails_at(&path, &[], None, "not a trace file palette can read (binary data)");
    // Forced formats meet it as text that is not UTF-8, or as a CSV header
    // without the required columns.
    fails_at(&path, &["--format", "spancsv"], Some(1), "not valid UTF-8 text");
    fails_at(&path, &["--format", "jaeger"], Some(1), "not valid UTF-8 text");
    fails_at(&path, &["--format", "zipkin"], Some(1), "not valid UTF-8 text");
    fails_at(&path, &["--format", "otlp"], Some(1), "not valid UTF-8 text");
    let msg = fails_at(&path, &["--format", "alibaba"], Some(1), "the header has no `traceid` column");
    // The header is shown truncated, with control characters escaped.
    assert!(msg.len() < 400, "{msg}");
    assert!(!msg.chars().any(|c| c.is_control()), "{msg:?}");
}

#[test]
fn json_of_no_known_format() {
    fails_at(&bad("any/not_traces.json"), &[], None, "not a trace file palette can read (JSON without OTLP");
}

#[test]
fn gzip_sanity_check() {
    // The intact original of the two broken .gz files below reads fine.
    let report = inspect_json(&[&bad("any/good.csv.gz")], &[]);
    assert_defects(&report, &[]);
    assert_counts(&report, 1, 2, 0, 0);
}

#[test]
fn corrupt_gzip() {
    // A valid gzip header, then garbage.
    fails_at(
        &bad("any/corrupt.csv.gz"),
        &[],
        None,
        "unreadable data: corrupt deflate stream (a truncated or corrupt .gz file?)",
    );
}

#[test]
fn truncated_gzip() {
    fails_at(&bad("any/truncated.csv.gz"), &[], None, "(a truncated or corrupt .gz file?)");
}

// ---------------------------------------------------------------------------
// Span CSV.

#[test]
fn spancsv_wrong_header() {
    fails_at(&bad("spancsv/wrong_header.csv"), &[], None, "a header line `name,age,city` that names neither Alibaba");
}

#[test]
fn spancsv_wrong_header_forced() {
    fails_at(
        &bad("spancsv/wrong_header.csv"),
        &["--format", "spancsv"],
        Some(1),
        "the header has no `ServiceName` or `PodName` column",
    );
}

#[test]
fn spancsv_missing_required_column() {
    fails_at(&bad("spancsv/missing_column.csv"), &[], Some(1), "the header has no `StartTimeUnixNano` column");
}

#[test]
fn spancsv_non_numeric_time_fails_by_default() {
    fails_at(&bad("spancsv/non_numeric_time.csv"), &[], Some(3), "start time `soon` is not a number");
}

#[test]
fn spancsv_non_numeric_time_dropped_on_request() {
    let path = bad("spancsv/non_numeric_time.csv");
    let report = repaired(&path, &["--on-defect", "bad_record=drop"]);
    assert_defects(&report, &[("bad_record", 1)]);
    assert_counts(&report, 1, 1, 0, 1);
    assert_eq!(first(&report, "bad_record"), format!("{}:3", path.display()));
}

#[test]
fn spancsv_unterminated_quote() {
    fails_at(&bad("spancsv/unterminated_quote.csv"), &[], Some(3), "5 fields where the header has 8");
}

#[test]
fn spancsv_invalid_utf8_fails_by_default() {
    fails_at(&bad("spancsv/invalid_utf8.csv"), &[], Some(3), "not valid UTF-8 text");
}

#[test]
fn spancsv_invalid_utf8_row_dropped_on_request() {
    let path = bad("spancsv/invalid_utf8.csv");
    let report = repaired(&path, &["--on-defect", "bad_record=drop"]);
    assert_defects(&report, &[("bad_record", 1)]);
    // The rows after the bad one are still read.
    assert_counts(&report, 1, 2, 0, 1);
    assert_eq!(first(&report, "bad_record"), format!("{}:3", path.display()));
}

#[test]
fn spancsv_orphan() {
    // The orphan becomes a second root; the smaller tree is dropped.
    let path = bad("spancsv/orphan.csv");
    let report = repaired(&path, &[]);
    assert_defects(&report, &[("orphan", 1), ("multiple_roots", 1)]);
    assert_counts(&report, 1, 2, 0, 1);
    assert_eq!(first(&report, "orphan"), format!("{}:4", path.display()));
}

#[test]
fn spancsv_orphan_strict() {
    fails_at(
        &bad("spancsv/orphan.csv"),
        &["--strict"],
        Some(4),
        "orphan (parent 0000000000000077 not in 000000000000000000000000000000aa)",
    );
}

#[test]
fn spancsv_cycle_drops_the_trace() {
    let report = repaired(&bad("spancsv/cycle.csv"), &[]);
    assert_defects(&report, &[("cycle", 1)]);
    // Trace aa survives; trace bb (two spans in a cycle) is dropped.
    assert_counts(&report, 1, 1, 1, 2);
    assert_eq!(first(&report, "cycle"), "trace 000000000000000000000000000000bb");
}

#[test]
fn spancsv_cycle_repaired_on_request() {
    let report = repaired(&bad("spancsv/cycle.csv"), &["--on-defect", "cycle=repair"]);
    assert_defects(&report, &[("cycle", 1)]);
    assert_counts(&report, 2, 3, 0, 0);
}

#[test]
fn spancsv_cycle_strict_names_the_trace() {
    let path = bad("spancsv/cycle.csv");
    let run = inspect(&path, &["--strict"]);
    assert_eq!(run.code, BAD_DATA, "{}", run.stderr);
    assert_eq!(run.stderr.trim_end().lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("palette: error: cannot read traces: trace 000000000000000000000000000000bb: cycle"),
        "{}",
        run.stderr
    );
}

#[test]
fn spancsv_duplicate_span_id() {
    let path = bad("spancsv/duplicate_span_id.csv");
    let report = repaired(&path, &[]);
    assert_defects(&report, &[("duplicate_span_id", 1)]);
    assert_counts(&report, 1, 2, 0, 1);
    assert_eq!(first(&report, "duplicate_span_id"), format!("{}:4", path.display()));
}

#[test]
fn spancsv_duplicate_record() {
    let report = repaired(&bad("spancsv/duplicate_record.csv"), &[]);
    assert_defects(&report, &[("duplicate_record", 1)]);
    assert_counts(&report, 1, 2, 0, 1);
}

#[test]
fn spancsv_multiple_roots() {
    let report = repaired(&bad("spancsv/multiple_roots.csv"), &[]);
    assert_defects(&report, &[("multiple_roots", 1)]);
    assert_counts(&report, 1, 2, 0, 1);
    assert_eq!(first(&report, "multiple_roots"), "trace 000000000000000000000000000000aa");
}

#[test]
fn spancsv_multiple_roots_strict_names_the_trace() {
    let run = inspect(&bad("spancsv/multiple_roots.csv"), &["--strict"]);
    assert_eq!(run.code, BAD_DATA, "{}", run.stderr);
    assert!(run.stderr.contains("trace 000000000000000000000000000000aa: multiple_roots (2 roots)"), "{}", run.stderr);
}

#[test]
fn spancsv_negative_duration() {
    let path = bad("spancsv/negative_duration.csv");
    let report = repaired(&path, &[]);
    assert_defects(&report, &[("negative_duration", 1)]);
    assert_counts(&report, 1, 2, 0, 0);
    assert_eq!(first(&report, "negative_duration"), format!("{}:3", path.display()));
}

#[test]
fn spancsv_negative_duration_dropped_on_request() {
    let report = repaired(&bad("spancsv/negative_duration.csv"), &["--on-defect", "negative_duration=drop"]);
    assert_defects(&report, &[("negative_duration", 1)]);
    assert_counts(&report, 0, 0, 1, 2);
}

#[test]
fn spancsv_child_outside_parent() {
    let path = bad("spancsv/child_outside_parent.csv");
    let report = repaired(&path, &[]);
    assert_defects(&report, &[("child_outside_parent", 1)]);
    assert_counts(&report, 1, 2, 0, 0);
    assert_eq!(first(&report, "child_outside_parent"), format!("{}:3", path.display()));
}

#[test]
fn spancsv_extreme_times_do_not_overflow() {
    // End - start does not fit in 64 bits: saturates instead of panicking.
    let report = repaired(&bad("spancsv/time_overflow.csv"), &[]);
    assert_defects(&report, &[]);
    assert_counts(&report, 1, 1, 0, 0);
}

// ---------------------------------------------------------------------------
// Alibaba CallGraph CSV.

#[test]
fn alibaba_unknown_names() {
    // UNKNOWN, (?), NAN and an empty interface: four names, one trace.
    let path = bad("alibaba/v2021_unknown_names.csv");
    let report = repaired(&path, &[]);
    assert_defects(&report, &[("unknown_name", 4)]);
    assert_counts(&report, 1, 4, 0, 0);
    assert_eq!(first(&report, "unknown_name"), format!("{}:4", path.display()));
}

#[test]
fn alibaba_unknown_names_strict() {
    fails_at(&bad("alibaba/v2021_unknown_names.csv"), &["--strict"], Some(4), "unknown_name (name `UNKNOWN`)");
}

#[test]
fn alibaba_self_call() {
    let path = bad("alibaba/v2021_self_call.csv");
    let report = repaired(&path, &[]);
    assert_defects(&report, &[("self_call", 1)]);
    assert_counts(&report, 1, 2, 0, 0);
    assert_eq!(first(&report, "self_call"), format!("{}:3", path.display()));
}

#[test]
fn alibaba_missing_parent() {
    // 0.1.3.1 has no 0.1.3 (nor 0.1): it hangs under the root, 0.
    let path = bad("alibaba/v2021_missing_parent.csv");
    let report = repaired(&path, &[]);
    assert_defects(&report, &[("orphan", 1)]);
    assert_counts(&report, 1, 3, 0, 0);
    assert_eq!(first(&report, "orphan"), format!("{}:3", path.display()));
}

#[test]
fn alibaba_missing_parent_strict() {
    fails_at(&bad("alibaba/v2021_missing_parent.csv"), &["--strict"], Some(3), "orphan (");
}

#[test]
fn alibaba_v2021_duplicate_rows() {
    let path = bad("alibaba/v2021_duplicate_rows.csv");
    let report = repaired(&path, &[]);
    assert_defects(&report, &[("duplicate_record", 1)]);
    assert_counts(&report, 1, 2, 0, 1);
    assert_eq!(first(&report, "duplicate_record"), format!("{}:4", path.display()));
}

#[test]
fn alibaba_non_numeric_timestamp() {
    fails_at(
        &bad("alibaba/v2021_non_numeric_timestamp.csv"),
        &[],
        Some(3),
        "timestamp `later` is not a number of milliseconds",
    );
}

#[test]
fn alibaba_non_numeric_rt_fails_by_default() {
    fails_at(&bad("alibaba/v2022_non_numeric_rt.csv"), &[], Some(3), "rt `abc` is not a number of milliseconds");
}

#[test]
fn alibaba_non_numeric_rt_dropped_on_request() {
    let path = bad("alibaba/v2022_non_numeric_rt.csv");
    let report = repaired(&path, &["--on-defect", "bad_record=drop"]);
    assert_defects(&report, &[("bad_record", 1)]);
    assert_counts(&report, 1, 1, 0, 1);
    assert_eq!(first(&report, "bad_record"), format!("{}:3", path.display()));
}

#[test]
fn alibaba_missing_required_column() {
    fails_at(&bad("alibaba/v2022_missing_rt_column.csv"), &[], Some(1), "the header has no `rt` column");
}

#[test]
fn alibaba_short_row() {
    fails_at(&bad("alibaba/v2021_short_row.csv"), &[], Some(3), "4 fields where the header has 9");
}

// ---------------------------------------------------------------------------
// Jaeger JSON.

#[test]
fn jaeger_truncated() {
    fails_at(&bad("jaeger/truncated.json"), &[], Some(1), "the JSON ends too early (truncated file?)");
}

#[test]
fn jaeger_wrong_shape() {
    fails_at(&bad("jaeger/wrong_shape.json"), &[], Some(1), "Jaeger JSON must be {\"data\":[…]}");
}

#[test]
fn jaeger_spans_not_an_array() {
    fails_at(&bad("jaeger/spans_not_array.json"), &[], Some(1), "trace 0: \"spans\" is not an array");
}

#[test]
fn jaeger_invalid_utf8() {
    fails_at(&bad("jaeger/invalid_utf8.json"), &[], Some(6), "not valid UTF-8 text");
}

#[test]
fn jaeger_non_numeric_time() {
    fails_at(
        &bad("jaeger/non_numeric_time.json"),
        &[],
        Some(1),
        "span 0000000000000002: startTime is not a number of microseconds",
    );
}

#[test]
fn jaeger_orphan() {
    let report = repaired(&bad("jaeger/orphan.json"), &[]);
    assert_defects(&report, &[("orphan", 1), ("multiple_roots", 1)]);
    assert_counts(&report, 1, 2, 0, 1);
}

#[test]
fn jaeger_cycle_drops_the_trace() {
    let report = repaired(&bad("jaeger/cycle.json"), &[]);
    assert_defects(&report, &[("cycle", 1)]);
    assert_counts(&report, 0, 0, 1, 3);
}

#[test]
fn jaeger_self_parent_is_a_cycle() {
    let report = repaired(&bad("jaeger/self_parent.json"), &[]);
    assert_defects(&report, &[("cycle", 1)]);
    assert_counts(&report, 0, 0, 1, 2);
}

#[test]
fn jaeger_duplicate_span_id() {
    let report = repaired(&bad("jaeger/duplicate_span_id.json"), &[]);
    assert_defects(&report, &[("duplicate_span_id", 1)]);
    assert_counts(&report, 1, 2, 0, 1);
}

#[test]
fn jaeger_duplicate_span_id_strict() {
    fails_at(
        &bad("jaeger/duplicate_span_id.json"),
        &["--strict"],
        Some(1),
        "duplicate_span_id (span 0000000000000002 in 000000000000000000000000000000aa)",
    );
}

#[test]
fn jaeger_duplicate_record() {
    let report = repaired(&bad("jaeger/duplicate_record.json"), &[]);
    assert_defects(&report, &[("duplicate_record", 1)]);
    assert_counts(&report, 1, 2, 0, 1);
}

#[test]
fn jaeger_multiple_roots() {
    let report = repaired(&bad("jaeger/multiple_roots.json"), &[]);
    assert_defects(&report, &[("multiple_roots", 1)]);
    assert_counts(&report, 1, 2, 0, 1);
}

#[test]
fn jaeger_negative_duration() {
    let report = repaired(&bad("jaeger/negative_duration.json"), &[]);
    assert_defects(&report, &[("negative_duration", 1)]);
    assert_counts(&report, 1, 2, 0, 0);
}

#[test]
fn jaeger_child_outside_parent() {
    let report = repaired(&bad("jaeger/child_outside_parent.json"), &[]);
    assert_defects(&report, &[("child_outside_parent", 1)]);
    assert_counts(&report, 1, 2, 0, 0);
}

// ---------------------------------------------------------------------------
// Zipkin v2 JSON.

#[test]
fn zipkin_truncated() {
    fails_at(&bad("zipkin/truncated.json"), &[], Some(1), "the JSON ends too early (truncated file?)");
}

#[test]
fn zipkin_wrong_shape() {
    fails_at(&bad("zipkin/wrong_shape.json"), &[], Some(1), "Zipkin v2 JSON must be an array of spans");
}

#[test]
fn zipkin_invalid_utf8() {
    fails_at(&bad("zipkin/invalid_utf8.json"), &[], Some(3), "not valid UTF-8 text");
}

#[test]
fn zipkin_non_numeric_time() {
    fails_at(&bad("zipkin/non_numeric_time.json"), &[], Some(1), "span 1: invalid type: string \"soon\"");
}

#[test]
fn zipkin_orphan() {
    let report = repaired(&bad("zipkin/orphan.json"), &[]);
    assert_defects(&report, &[("orphan", 1), ("multiple_roots", 1)]);
    assert_counts(&report, 1, 2, 0, 1);
}

#[test]
fn zipkin_cycle_drops_the_trace() {
    let report = repaired(&bad("zipkin/cycle.json"), &[]);
    assert_defects(&report, &[("cycle", 1)]);
    assert_counts(&report, 0, 0, 1, 3);
}

#[test]
fn zipkin_duplicate_span_id() {
    // Two different spans (names, times) with one id: the first is kept.
    let report = repaired(&bad("zipkin/duplicate_span_id.json"), &[]);
    assert_defects(&report, &[("duplicate_span_id", 1)]);
    assert_eq!((int(&report, "traces"), int(&report, "spans")), (1, 2));
}

#[test]
fn zipkin_duplicate_record() {
    let report = repaired(&bad("zipkin/duplicate_record.json"), &[]);
    assert_defects(&report, &[("duplicate_record", 1)]);
    assert_eq!((int(&report, "traces"), int(&report, "spans")), (1, 2));
}

#[test]
fn zipkin_multiple_roots() {
    let report = repaired(&bad("zipkin/multiple_roots.json"), &[]);
    assert_defects(&report, &[("multiple_roots", 1)]);
    assert_counts(&report, 1, 2, 0, 1);
}

#[test]
fn zipkin_negative_duration() {
    let report = repaired(&bad("zipkin/negative_duration.json"), &[]);
    assert_defects(&report, &[("negative_duration", 1)]);
    assert_counts(&report, 1, 2, 0, 0);
}

#[test]
fn zipkin_child_outside_parent() {
    let report = repaired(&bad("zipkin/child_outside_parent.json"), &[]);
    assert_defects(&report, &[("child_outside_parent", 1)]);
    assert_counts(&report, 1, 2, 0, 0);
}

#[test]
fn zipkin_missing_timestamp() {
    // A span with no timestamp anywhere is dropped.
    let report = repaired(&bad("zipkin/missing_timestamp.json"), &[]);
    assert_defects(&report, &[("missing_timestamp", 1)]);
    assert_eq!((int(&report, "traces"), int(&report, "spans")), (1, 1));
}

#[test]
fn zipkin_missing_service() {
    let report = repaired(&bad("zipkin/missing_service.json"), &[]);
    assert_defects(&report, &[("missing_service", 1)]);
    assert_counts(&report, 1, 2, 0, 0);
}

#[test]
fn zipkin_shared_span_id() {
    let report = repaired(&bad("zipkin/shared_span_id.json"), &[]);
    assert_defects(&report, &[("shared_span_id", 1)]);
    assert_counts(&report, 1, 3, 0, 0);
}

#[test]
fn zipkin_shared_span_id_strict() {
    fails_at(
        &bad("zipkin/shared_span_id.json"),
        &["--strict"],
        Some(1),
        "shared_span_id (client and server share span id 2)",
    );
}

// ---------------------------------------------------------------------------
// OTLP/JSON, one document or JSON lines.

#[test]
fn otlp_truncated() {
    fails_at(&bad("otlp/truncated.json"), &[], Some(1), "the JSON ends too early (truncated file?)");
}

#[test]
fn otlp_truncated_json_line() {
    // The second of two JSON lines is cut short.
    fails_at(&bad("otlp/truncated_line.jsonl"), &[], None, "the JSON ends too early (truncated file?)");
}

#[test]
fn otlp_wrong_shape() {
    let path = bad("otlp/wrong_shape.json");
    // Detection finds no OTLP field…
    fails_at(&path, &[], None, "not a trace file palette can read");
    // …and a forced format rejects the unknown field rather than reading nothing.
    fails_at(
        &path,
        &["--format", "otlp"],
        Some(1),
        "not valid OTLP/JSON: unknown field `foo`, expected `resourceSpans`",
    );
}

#[test]
fn otlp_resource_spans_not_an_array() {
    fails_at(
        &bad("otlp/resource_spans_not_array.json"),
        &[],
        Some(1),
        "not valid OTLP/JSON: invalid type: map, expected a sequence",
    );
}

#[test]
fn otlp_invalid_utf8() {
    fails_at(&bad("otlp/invalid_utf8.jsonl"), &[], Some(3), "not valid UTF-8 text");
}

#[test]
fn otlp_non_numeric_time() {
    fails_at(
        &bad("otlp/non_numeric_time.jsonl"),
        &[],
        Some(2),
        "span 0000000000000002: start or end time is not a number of nanoseconds",
    );
}

#[test]
fn otlp_bad_span_id() {
    fails_at(
        &bad("otlp/bad_span_id.jsonl"),
        &[],
        Some(2),
        "spanId `xyz` is neither 16 hex digits nor base64 of 8 bytes",
    );
}

#[test]
fn otlp_bad_span_id_dropped_on_request() {
    let report = repaired(&bad("otlp/bad_span_id.jsonl"), &["--on-defect", "bad_record=drop"]);
    assert_defects(&report, &[("bad_record", 1)]);
    assert_counts(&report, 1, 1, 0, 1);
}

#[test]
fn otlp_orphan() {
    let path = bad("otlp/orphan.jsonl");
    let report = repaired(&path, &[]);
    assert_defects(&report, &[("orphan", 1), ("multiple_roots", 1)]);
    assert_counts(&report, 1, 2, 0, 1);
    assert_eq!(first(&report, "orphan"), format!("{}:2", path.display()));
}

#[test]
fn otlp_orphan_strict() {
    fails_at(&bad("otlp/orphan.jsonl"), &["--strict"], Some(2), "orphan (parent 0000000000000063");
}

#[test]
fn otlp_orphan_dropped_on_request() {
    let report = repaired(&bad("otlp/orphan.jsonl"), &["--on-defect", "orphan=drop"]);
    assert_defects(&report, &[("orphan", 1)]);
    assert_counts(&report, 0, 0, 1, 3);
}

#[test]
fn otlp_cycle_drops_the_trace() {
    let report = repaired(&bad("otlp/cycle.jsonl"), &[]);
    assert_defects(&report, &[("cycle", 1)]);
    assert_counts(&report, 0, 0, 1, 3);
    assert_eq!(first(&report, "cycle"), "trace 0af7651916cd43dd8448eb211c80319c");
}

#[test]
fn otlp_duplicate_span_id() {
    let report = repaired(&bad("otlp/duplicate_span_id.jsonl"), &[]);
    assert_defects(&report, &[("duplicate_span_id", 1)]);
    assert_counts(&report, 1, 2, 0, 1);
}

#[test]
fn otlp_duplicate_record() {
    let report = repaired(&bad("otlp/duplicate_record.jsonl"), &[]);
    assert_defects(&report, &[("duplicate_record", 1)]);
    assert_counts(&report, 1, 2, 0, 1);
}

#[test]
fn otlp_multiple_roots() {
    let report = repaired(&bad("otlp/multiple_roots.jsonl"), &[]);
    assert_defects(&report, &[("multiple_roots", 1)]);
    assert_counts(&report, 1, 2, 0, 1);
}

#[test]
fn otlp_negative_duration() {
    let report = repaired(&bad("otlp/negative_duration.jsonl"), &[]);
    assert_defects(&report, &[("negative_duration", 1)]);
    assert_counts(&report, 1, 2, 0, 0);
}

#[test]
fn otlp_child_outside_parent() {
    let report = repaired(&bad("otlp/child_outside_parent.jsonl"), &[]);
    assert_defects(&report, &[("child_outside_parent", 1)]);
    assert_counts(&report, 1, 2, 0, 0);
}

#[test]
fn otlp_missing_service() {
    let report = repaired(&bad("otlp/missing_service.json"), &[]);
    assert_defects(&report, &[("missing_service", 1)]);
    assert_counts(&report, 1, 1, 0, 0);
}

// ---------------------------------------------------------------------------
// 100 MB on one line: no panic, bounded time, a short message — and since
// the readers hold at most one record of 16 MiB, the record limit's.

const HUNDRED_MB: usize = 100 * 1024 * 1024;

/// Writes `head`, `fill` repeated to `len` bytes, then `tail`.
fn write_big(path: &Path, head: &str, fill: u8, len: usize, tail: &str) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create big file"));
    f.write_all(head.as_bytes()).expect("write");
    let chunk = vec![fill; 1024 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).expect("write");
        left -= n;
    }
    f.write_all(tail.as_bytes()).expect("write");
    f.flush().expect("flush");
}

/// Runs inspect on a big file: exit 65 at `line`, with a short message,
/// within a generous time bound.
fn big_fails(path: &Path, line: u64, needle: &str) {
    let started = Instant::now();
    let msg = fails_at(path, &[], Some(line), needle);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(msg.len() < 1000, "the message is short: {} bytes", msg.len());
}

#[test]
fn spancsv_one_line_of_100_mb() {
    let dir = Dir::new();
    let path = dir.path("big.csv");
    write_big(
        &path,
        "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration\n",
        b'x',
        HUNDRED_MB,
        "\n",
    );
    big_fails(&path, 2, "a row longer than 16 MiB");
}

#[test]
fn otlp_json_line_of_100_mb() {
    // A good first line, then one 100 MB document whose trace id is junk:
    // that span is longer than the record limit.
    let dir = Dir::new();
    let path = dir.path("big.jsonl");
    let good = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"a"}}]},"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"0000000000000001","parentSpanId":"","name":"root","kind":2,"startTimeUnixNano":"1000","endTimeUnixNano":"2000"}]}]}]}"#;
    let head = format!(
        "{good}\n{}",
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"0000000000000002","startTimeUnixNano":"1","endTimeUnixNano":"2","traceId":""#
    );
    write_big(&path, &head, b'z', HUNDRED_MB, "\"}]}]}]}\n");
    big_fails(&path, 2, "more than 16 MiB of JSON without a span beginning");
}

#[test]
fn otlp_json_line_of_100_mb_junk() {
    // Not JSON at all after the first line.
    let dir = Dir::new();
    let path = dir.path("junk.jsonl");
    write_big(&path, "{\"resourceSpans\":[]}\n", b'#', HUNDRED_MB, "\n");
    big_fails(&path, 2, "not valid OTLP/JSON: expected value");
}

// ---------------------------------------------------------------------------
// Extreme times once made assembly's clock-skew repair overflow.

#[test]
fn otlp_unset_start_times_in_a_chain() {
    // OTLP leaves an unset start time as 0: a chain that alternates 0 and
    // epoch start times makes the clock-skew repair shift by ~1.7e18 ns per
    // level, which overflows i64 after a few levels.
    let dir = Dir::new();
    let epoch: i64 = 1_700_000_000_000_000_000;
    let span = |id: u64, parent: u64, start: i64| {
        let parent = if parent == 0 { String::new() } else { format!("{parent:016x}") };
        format!(
            r#"{{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"{id:016x}","parentSpanId":"{parent}","name":"s{id}","kind":2,"startTimeUnixNano":"{start}","endTimeUnixNano":"{}"}}"#,
            start + 1000
        )
    };
    let mut spans = vec![span(1, 0, epoch)];
    for id in 2..12u64 {
        spans.push(span(id, id - 1, if id % 2 == 0 { 0 } else { epoch }));
    }
    let doc = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"a"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    );
    let path = dir.write("chain.json", doc);
    let report = repaired(&path, &[]);
    assert_eq!(int(&report, "traces"), 1);
    assert!(report["defects"]["child_outside_parent"]["count"].as_u64() > Some(0));
}

#[test]
fn jaeger_extreme_start_times() {
    let dir = Dir::new();
    let doc = r#"{"data":[{"traceID":"aa","spans":[
 {"traceID":"aa","spanID":"1","operationName":"root","references":[],"startTime":1000,"duration":100,"processID":"p1"},
 {"traceID":"aa","spanID":"2","operationName":"call","references":[{"refType":"CHILD_OF","traceID":"aa","spanID":"1"}],"startTime":9223372036854775807,"duration":10,"tags":[{"key":"span.kind","value":"client"}],"processID":"p1"},
 {"traceID":"aa","spanID":"3","operationName":"serve","references":[{"refType":"CHILD_OF","traceID":"aa","spanID":"2"}],"startTime":-9223372036854775807,"duration":10,"tags":[{"key":"span.kind","value":"server"}],"processID":"p2"}],
 "processes":{"p1":{"serviceName":"a"},"p2":{"serviceName":"b"}}}]}"#;
    let path = dir.write("extreme.json", doc);
    let report = repaired(&path, &[]);
    assert_eq!(int(&report, "traces"), 1);
}
