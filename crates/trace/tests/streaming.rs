//! The readers' memory bound: JSON is read span by span and CSV row by row,
//! so a document far larger than the record limit reads as it would without
//! one, and a single record past the limit is refused with its line.

use std::io::Write;
use std::path::{Path, PathBuf};

use palette_testkit::{examples, system};
use palette_trace::span::Span;
use palette_trace::{CallTree, Format, InspectSummary, NoProgress, ReadOptions, TraceStats, read_traces, write};

/// Far below one web shop document, well above one of its spans.
const SMALL_LIMIT: u64 = 2048;

fn read(path: &Path, limit: u64) -> Result<InspectSummary, palette_trace::Error> {
    let mut stats = TraceStats::default();
    let mut sink = |tree: &CallTree| {
        stats.add(tree);
        Ok(())
    };
    let opts = ReadOptions { record_limit: limit, ..ReadOptions::default() };
    let read = read_traces(&[path.to_path_buf()], &opts, &NoProgress, &mut sink)?;
    Ok(InspectSummary { files: Vec::new(), ..stats.summary(&read) })
}

fn write_file(path: &Path, bytes: &[u8]) -> PathBuf {
    if path.extension().is_some_and(|e| e == "gz") {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).expect("gzip");
        std::fs::write(path, gz.finish().expect("gzip")).expect("write");
    } else {
        std::fs::write(path, bytes).expect("write");
    }
    path.to_path_buf()
}

type Writer = fn(&mut dyn Write, &[&[Span]], &palette_trace::Interner) -> std::io::Result<()>;

#[test]
fn documents_far_larger_than_the_limit_read_as_without_it() {
    let traces = system::generate(&examples::webshop(), 200, 3);
    let refs: Vec<&[Span]> = traces.traces.iter().map(Vec::as_slice).collect();
    let writers: [(&str, Writer); 6] = [
        ("otlp.jsonl", |w, t, n| write::write_otlp_lines(w, t.iter().copied(), n)),
        ("jaeger.json", |w, t, n| write::write_jaeger(w, t.iter().copied(), n)),
        ("zipkin.json", |w, t, n| write::write_zipkin(w, t.iter().copied(), n)),
        ("spans.csv", |w, t, n| write::write_span_csv(w, t.iter().copied(), n)),
        ("otlp.jsonl.gz", |w, t, n| write::write_otlp_lines(w, t.iter().copied(), n)),
        ("jaeger.json.gz", |w, t, n| write::write_jaeger(w, t.iter().copied(), n)),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, writer) in writers {
        let mut bytes = Vec::new();
        writer(&mut bytes, &refs, &traces.names).expect("write");
        assert!(bytes.len() as u64 > 100 * SMALL_LIMIT, "{name}: {} bytes", bytes.len());
        let path = write_file(&dir.path().join(name), &bytes);
        let bounded = read(&path, SMALL_LIMIT).unwrap_or_else(|e| panic!("{name}: {e}"));
        let unbounded = read(&path, u64::MAX).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(bounded.traces, 200, "{name}");
        assert_eq!(bounded, unbounded, "{name}");
    }
}

/// `n` Jaeger spans of one trace, as JSON objects (the root first).
fn jaeger_spans(trace: u32, n: u32) -> Vec<String> {
    (1..=n)
        .map(|i| {
            let refs = if i == 1 {
                String::new()
            } else {
                format!(r#","references":[{{"refType":"CHILD_OF","spanID":"{:016x}"}}]"#, 1)
            };
            format!(
                r#"{{"traceID":"{trace:032x}","spanID":"{i:016x}","operationName":"op{}","startTime":{},"duration":{},"processID":"p{}","tags":[{{"key":"span.kind","value":"server"}}]{refs}}}"#,
                i % 3,
                1_000 + i,
                if i == 1 { 1_000 } else { 10 },
                i % 2
            )
        })
        .collect()
}

const JAEGER_PROCESSES: &str = r#"{"p0":{"serviceName":"even"},"p1":{"serviceName":"odd"}}"#;

#[test]
fn jaeger_processes_after_the_spans_name_them() {
    // Jaeger writes `processes` after `spans`: the trace's spans wait for
    // them, and read as they do with the processes first.
    let doc = |processes_first: bool| {
        let traces: Vec<String> = (1..=50)
            .map(|t| {
                let spans = format!(r#""spans":[{}]"#, jaeger_spans(t, 40).join(","));
                let processes = format!(r#""processes":{JAEGER_PROCESSES}"#);
                let (a, b) = if processes_first { (processes, spans) } else { (spans, processes) };
                format!(r#"{{"traceID":"{t:032x}",{a},{b}}}"#)
            })
            .collect();
        format!(r#"{{"data":[{}],"total":50}}"#, traces.join(",\n"))
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_file(&dir.path().join("trace.json"), doc(false).as_bytes());
    let got = read(&path, SMALL_LIMIT).expect("read");
    assert_eq!((got.traces, got.spans, got.services), (50, 2000, 2));
    assert!(!got.defects.contains_key("missing_service"), "{:?}", got.defects);
    let path = write_file(&dir.path().join("trace.json"), doc(true).as_bytes());
    assert_eq!(read(&path, SMALL_LIMIT).expect("read"), got);
    // A flat array of spans, each with its own process.
    let flat: Vec<String> = jaeger_spans(7, 30)
        .into_iter()
        .map(|s| s.replace(r#""processID":"p0""#, r#""process":{"serviceName":"even"}"#))
        .map(|s| s.replace(r#""processID":"p1""#, r#""process":{"serviceName":"odd"}"#))
        .collect();
    let path = write_file(&dir.path().join("flat.json"), format!("[{}]", flat.join(",")).as_bytes());
    let got = read(&path, SMALL_LIMIT).expect("read");
    assert_eq!((got.traces, got.spans, got.services), (1, 30, 2));
}

#[test]
fn otlp_resource_after_its_spans_names_them() {
    let span = |i: u32| {
        let parent = if i == 1 { String::new() } else { format!("{:016x}", 1) };
        format!(
            r#"{{"traceId":"{:032x}","spanId":"{i:016x}","parentSpanId":"{parent}","name":"op","kind":2,"startTimeUnixNano":"{}","endTimeUnixNano":"{}"}}"#,
            9,
            1_000 + i,
            2_000 + i
        )
    };
    let spans: Vec<String> = (1..=100).map(span).collect();
    let resource = r#""resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]}"#;
    let scopes = format!(r#""scopeSpans":[{{"scope":{{"name":"x"}},"spans":[{}]}}]"#, spans.join(","));
    let dir = tempfile::tempdir().expect("temp dir");
    let first = write_file(
        &dir.path().join("first.json"),
        format!("{{\"resourceSpans\":[{{{resource},{scopes}}}]}}").as_bytes(),
    );
    let last = write_file(
        &dir.path().join("last.json"),
        format!("{{\"resourceSpans\":[{{{scopes},{resource}}}]}}").as_bytes(),
    );
    let got = read(&first, SMALL_LIMIT).expect("read");
    assert_eq!((got.traces, got.spans, got.services), (1, 100, 1));
    assert!(got.defects.is_empty(), "{:?}", got.defects);
    assert_eq!(read(&last, SMALL_LIMIT).expect("read"), got);
}

/// Asserts that reading `content` (as `format`) fails at `line` with `needle`.
fn refused(name: &str, content: &[u8], format: Format, line: u64, needle: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_file(&dir.path().join(name), content);
    let mut sink = |_: &CallTree| Ok(());
    let opts = ReadOptions { format: Some(format), record_limit: SMALL_LIMIT, ..ReadOptions::default() };
    let err = read_traces(std::slice::from_ref(&path), &opts, &NoProgress, &mut sink).expect_err("refused");
    assert!(err.is_bad_data(), "{name}: {err}");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("{}:{line}: ", path.display())), "{name}: {msg}");
    assert!(msg.contains(needle), "{name}: `{needle}` in {msg}");
}

#[test]
fn a_record_past_the_limit_is_refused_at_its_line() {
    let good = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"a"}}]},"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"0000000000000001","name":"root","kind":2,"startTimeUnixNano":"1000","endTimeUnixNano":"2000"}]}]}]}"#;
    let long_name = "n".repeat(SMALL_LIMIT as usize * 2);
    let long_span = good.replace("\"root\"", &format!("\"{long_name}\""));
    let json_message = "more than 2048 bytes of JSON without a span beginning";
    // JSON lines: the third line holds a span longer than the limit.
    let lines = format!("{good}\n{good}\n{long_span}\n{good}\n");
    refused("long.jsonl", lines.as_bytes(), Format::Otlp, 3, json_message);
    refused("long.jsonl.gz", lines.as_bytes(), Format::Otlp, 3, json_message);
    // A line that never ends, and whitespace without end.
    let endless = format!("{good}\n{{\"resourceSpans\":[{}", " ".repeat(10_000));
    refused("endless.jsonl", endless.as_bytes(), Format::Otlp, 2, json_message);
    refused("blank.jsonl", format!("{good}{}", "\n".repeat(10_000)).as_bytes(), Format::Otlp, 2050, json_message);
    let zipkin = format!(
        "[\n{{\"traceId\":\"1\",\"id\":\"1\",\"name\":\"a\"}},\n{{\"traceId\":\"1\",\"id\":\"2\",\"name\":\"{long_name}\"}}]"
    );
    refused("long.zipkin.json", zipkin.as_bytes(), Format::Zipkin, 3, json_message);
    let jaeger = format!(
        "{{\"data\":[{{\"traceID\":\"1\",\"spans\":[],\"processes\":{{\"p\":{{\"serviceName\":\"{long_name}\"}}}}}}]}}"
    );
    refused("long.jaeger.json", jaeger.as_bytes(), Format::Jaeger, 1, json_message);
    // CSV rows, with and without a quote that never closes.
    // The CSV parser reads ahead of its row by its buffer (64 KiB), which the
    // limit allows for.
    let long_row = "n".repeat(100_000);
    let csv = format!(
        "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano\n1,1,,a,b,1,2\n{long_row}\n"
    );
    refused("long.csv", csv.as_bytes(), Format::SpanCsv, 3, "a row longer than 2048 bytes");
    let alibaba = format!(
        ",traceid,timestamp,rpcid,um,rpctype,dm,interface,rt\n0,ab,0,0.1,USER,http,MS_0,MS_0_if2,204\n\"{long_name}\n"
    );
    refused("long.alibaba.csv", alibaba.as_bytes(), Format::Alibaba, 3, "a row longer than 2048 bytes");
}
