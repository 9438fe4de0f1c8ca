//! Span export: files read back by the trace crate, concurrent appends,
//! OTLP/HTTP decoded by the official protobuf definitions, failures counted.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palette_runtime::config::TracingConfig;
use palette_runtime::export::{AttrValue, ExportError, ExportStats, Exporter, Kind, SpanRecord};
use palette_trace::{CallTree, EdgeKind, NoProgress, ReadOptions, read_traces};

fn config(file: Option<&str>, endpoint: Option<String>, batch_size: usize, flush_interval_ms: u64) -> TracingConfig {
    TracingConfig {
        file: file.map(String::from),
        otlp_endpoint: endpoint,
        sample_rate: 1.0,
        batch_size,
        flush_interval_ms,
    }
}

fn id16(trace: u64) -> [u8; 16] {
    (u128::from(trace) << 64 | 0xfeed).to_be_bytes()
}

fn id8(trace: u64, k: u64) -> [u8; 8] {
    (trace << 8 | k).to_be_bytes()
}

/// One request through two services, as the runtime records it: the
/// frontend's server span, its client span to cart, cart's server span and
/// an internal span inside cart. Every `error_every`-th trace fails in cart.
fn trace_spans(trace: u64, error_every: u64) -> Vec<SpanRecord> {
    let (frontend, cart): (Arc<str>, Arc<str>) = ("frontend".into(), "cart".into());
    let t0 = 1_700_000_000_000_000_000 + trace * 1_000_000_000;
    let failed = error_every > 0 && trace.is_multiple_of(error_every);
    let span = |service: &Arc<str>, k: u64, parent: u64, name: &str, kind: Kind, start: u64, end: u64| SpanRecord {
        service: service.clone(),
        instance: None,
        trace_id: id16(trace),
        span_id: id8(trace, k),
        parent_span_id: if parent == 0 { [0; 8] } else { id8(trace, parent) },
        name: name.into(),
        kind,
        start_unix_ns: t0 + start,
        end_unix_ns: t0 + end,
        error: None,
        attributes: vec![("palette.state", AttrValue::Int(k as i64))],
    };
    let mut spans = vec![
        span(&frontend, 1, 0, "GET /", Kind::Server, 0, 10_000_000),
        span(&frontend, 2, 1, "POST /cart", Kind::Client, 1_000_000, 8_000_000),
        span(&cart, 3, 2, "POST /cart", Kind::Server, 1_100_000, 7_900_000),
        span(&cart, 4, 3, "load", Kind::Internal, 1_200_000, 2_000_000),
    ];
    spans[1].attributes.push(("peer.service", AttrValue::Str("cart".into())));
    if failed {
        spans[2].error = Some(format!("cart \"failed\" in trace {trace}"));
    }
    spans
}

fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "the file ends inside a line");
    text.lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {} does not parse: {e}", i + 1)))
        .collect()
}

/// Every span of the OTLP/JSON documents, with its resource's service.
fn spans_of(docs: &[serde_json::Value]) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for doc in docs {
        for rs in doc["resourceSpans"].as_array().unwrap() {
            let service = rs["resource"]["attributes"][0]["value"]["stringValue"].as_str().unwrap().to_string();
            for ss in rs["scopeSpans"].as_array().unwrap() {
                assert_eq!(ss["scope"]["name"], "palette");
                for s in ss["spans"].as_array().unwrap() {
                    out.push((service.clone(), s.clone()));
                }
            }
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn spans_in_the_file_read_back_as_the_traces_recorded() {
    let dir = tempfile::tempdir().unwrap();
    // A long interval: batches are cut by size alone, so the line count is known.
    let exporter = Exporter::start(&config(Some("out/spans.jsonl"), None, 64, 60_000), dir.path()).unwrap();
    let mut recorded = Vec::new();
    for t in 1..=50 {
        for s in trace_spans(t, 7) {
            recorded.push(s.clone());
            exporter.record(s);
        }
    }
    let stats = exporter.shutdown().await;
    assert_eq!(stats, ExportStats { exported: 200, dropped: 0 });

    let path = dir.path().join("out/spans.jsonl");
    let docs = read_lines(&path);
    assert_eq!(docs.len(), 4, "200 spans in batches of 64");
    let spans = spans_of(&docs);
    assert_eq!(spans.len(), 200);
    let by_id: BTreeMap<String, &(String, serde_json::Value)> =
        spans.iter().map(|s| (s.1["spanId"].as_str().unwrap().to_string(), s)).collect();
    for r in &recorded {
        let (service, s) = by_id[&hex(&r.span_id)];
        assert_eq!(service.as_str(), &*r.service);
        assert_eq!(s["traceId"], hex(&r.trace_id));
        assert_eq!(s["name"], r.name.as_str());
        assert_eq!(s["kind"], r.kind as i64);
        assert_eq!(s["startTimeUnixNano"], r.start_unix_ns.to_string());
        assert_eq!(s["endTimeUnixNano"], r.end_unix_ns.to_string());
        if r.parent_span_id == [0; 8] {
            assert!(s.get("parentSpanId").is_none());
        } else {
            assert_eq!(s["parentSpanId"], hex(&r.parent_span_id));
        }
        match &r.error {
            Some(m) => assert_eq!(s["status"], serde_json::json!({"code": 2, "message": m})),
            None => assert_eq!(s["status"], serde_json::json!({})),
        }
    }

    // The trace crate reads the file as OTLP and assembles the call trees.
    let mut trees: Vec<CallTree> = Vec::new();
    let mut sink = |t: &CallTree| {
        trees.push(t.clone());
        Ok(())
    };
    let read = read_traces(&[path], &ReadOptions::default(), &NoProgress, &mut sink).unwrap();
    assert_eq!(read.records, 200);
    assert_eq!(read.files[0].1, palette_trace::Format::Otlp);
    assert_eq!(trees.len(), 50);
    let name = |s| read.names.resolve(s).to_string();
    for tree in &trees {
        assert_eq!(tree.span_count, 4);
        let trace = (tree.trace_id.as_u128() >> 64) as u64;
        // The client span is folded into the frontend → cart call.
        let apis: Vec<(String, String, EdgeKind)> =
            tree.execs.iter().map(|e| (name(e.api.service), name(e.api.operation), e.edge)).collect();
        assert_eq!(
            apis,
            [
                ("frontend".into(), "GET /".into(), EdgeKind::Root),
                ("cart".into(), "POST /cart".into(), EdgeKind::Rpc),
                ("cart".into(), "load".into(), EdgeKind::Local),
            ]
        );
        assert_eq!(tree.execs[1].parent, 0);
        assert_eq!(tree.execs[2].parent, 1);
        assert_eq!(tree.execs[1].call_duration_ns, 7_000_000, "the caller's view comes from the client span");
        assert_eq!(tree.execs[1].error, trace.is_multiple_of(7), "trace {trace}");
    }
}

#[tokio::test]
async fn a_partial_batch_is_written_after_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Exporter::start(&config(Some("spans.jsonl"), None, 1000, 50), dir.path()).unwrap();
    for s in trace_spans(1, 0) {
        exporter.record(s);
    }
    let path = dir.path().join("spans.jsonl");
    let t = Instant::now();
    while std::fs::metadata(&path).map_or(0, |m| m.len()) == 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "nothing written 10 s after a 50 ms flush interval");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(spans_of(&read_lines(&path)).len(), 4);
    assert_eq!(exporter.stats(), ExportStats { exported: 4, dropped: 0 });
    assert_eq!(exporter.shutdown().await, ExportStats { exported: 4, dropped: 0 });
}

#[tokio::test]
async fn exporters_sharing_a_file_never_interleave_lines() {
    let dir = tempfile::tempdir().unwrap();
    let per_exporter = 3000u64;
    let mut threads = Vec::new();
    for e in 0..2u64 {
        // Separate opens of the file, as separate processes would have.
        let exporter = Exporter::start(&config(Some("shared.jsonl"), None, 7, 60_000), dir.path()).unwrap();
        threads.push(std::thread::spawn(move || {
            for t in 0..per_exporter / 4 {
                for mut s in trace_spans(e << 32 | t, 0) {
                    // Long names make lines of tens of kilobytes.
                    s.name = format!("{}-{}", s.name, "x".repeat(2000));
                    exporter.record(s);
                }
            }
            exporter
        }));
    }
    let mut total = ExportStats::default();
    for t in threads {
        let stats = t.join().unwrap().shutdown().await;
        total.exported += stats.exported;
        total.dropped += stats.dropped;
    }
    assert_eq!(total, ExportStats { exported: 2 * per_exporter, dropped: 0 });
    let docs = read_lines(&dir.path().join("shared.jsonl"));
    assert_eq!(docs.len() as u64, 2 * per_exporter.div_ceil(7));
    assert_eq!(spans_of(&docs).len() as u64, 2 * per_exporter);
}

#[tokio::test]
async fn spans_recorded_after_shutdown_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Exporter::start(&config(Some("s.jsonl"), None, 10, 60_000), dir.path()).unwrap();
    let clone = exporter.clone();
    exporter.record(trace_spans(1, 0).remove(0));
    assert_eq!(exporter.shutdown().await, ExportStats { exported: 1, dropped: 0 });
    clone.record(trace_spans(2, 0).remove(0));
    assert_eq!(clone.stats(), ExportStats { exported: 1, dropped: 1 });
    assert_eq!(clone.shutdown().await, ExportStats { exported: 1, dropped: 1 });
}

#[tokio::test]
async fn bad_destinations_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain"), "").unwrap();
    let err = Exporter::start(&config(Some("plain/spans.jsonl"), None, 10, 100), dir.path()).err().unwrap();
    assert!(matches!(err, ExportError::File { .. }), "{err}");
    assert!(err.to_string().contains("plain"), "{err}");
    for url in ["https://collector:4318/v1/traces", "collector:4318", "http://collector:99999/"] {
        let err = Exporter::start(&config(None, Some(url.into()), 10, 100), dir.path()).err().unwrap();
        assert_eq!(err.to_string(), format!("bad OTLP endpoint `{url}`: expected http://host:port/path"));
    }
    // Nowhere to export to: tracing is off, nothing is counted.
    let off = Exporter::start(&config(None, None, 10, 100), dir.path()).unwrap();
    off.record(trace_spans(1, 0).remove(0));
    assert_eq!(off.shutdown().await, ExportStats::default());
}

#[tokio::test]
async fn a_refused_collector_drops_and_counts_while_the_file_still_gets_the_spans() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let endpoint = format!("http://127.0.0.1:{port}/v1/traces");
    let exporter = Exporter::start(&config(Some("s.jsonl"), Some(endpoint), 100, 60_000), dir.path()).unwrap();
    for s in trace_spans(1, 0).into_iter().chain(trace_spans(2, 0)) {
        exporter.record(s);
    }
    let probe = exporter.clone();
    assert_eq!(exporter.shutdown().await, ExportStats { exported: 0, dropped: 8 });
    let error = probe.last_error().expect("the failure is reported");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert_eq!(spans_of(&read_lines(&dir.path().join("s.jsonl"))).len(), 8);
}

/// The Python receiver (`tests/python/otlp_receiver.py`), or why it cannot run.
struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(dir: &Path, extra: &[&str]) -> Result<Receiver, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/otlp_receiver.py");
        let out = dir.join("received.jsonl");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(&out)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("python3 not runnable ({e})"))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        match line.trim().parse() {
            Ok(port) => Ok(Receiver { child, port, out }),
            Err(_) => {
                let output = child.wait_with_output().unwrap();
                let stderr = String::from_utf8_lossy(&output.stderr);
                let why = stderr.lines().last().unwrap_or("no output").to_string();
                if stderr.contains("ModuleNotFoundError") {
                    Err(format!("opentelemetry-proto is not installed ({why})"))
                } else {
                    panic!("the receiver failed to start: {stderr}")
                }
            }
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.port)
    }

    fn received(&self) -> Vec<serde_json::Value> {
        read_lines(&self.out)
    }
}

#[tokio::test]
async fn otlp_http_exports_decode_with_the_official_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = match Receiver::start(dir.path(), &[]) {
        Ok(r) => r,
        Err(why) => return eprintln!("SKIP: OTLP/HTTP export not checked: {why}"),
    };
    let exporter = Exporter::start(&config(None, Some(receiver.endpoint()), 50, 60_000), dir.path()).unwrap();
    let traces = 60u64;
    for t in 1..=traces {
        for s in trace_spans(t, 5) {
            exporter.record(s);
        }
    }
    let n = traces * 4;
    assert_eq!(exporter.shutdown().await, ExportStats { exported: n, dropped: 0 });
    let got = receiver.received();
    assert_eq!(got.len() as u64, n.div_ceil(50), "one request per batch: {got:?}");
    let mut spans = 0;
    let (mut roots, mut errors, mut kinds) = (0, 0, BTreeMap::<String, u64>::new());
    for r in &got {
        assert!(r.get("error").is_none(), "the receiver could not decode a request: {r}");
        assert_eq!(r["ids_ok"], true, "{r}");
        assert_eq!(r["content_type"], "application/x-protobuf");
        assert_eq!(r["services"], serde_json::json!(["cart", "frontend"]));
        spans += r["spans"].as_u64().unwrap();
        roots += r["roots"].as_u64().unwrap();
        errors += r["errors"].as_u64().unwrap();
        for (k, v) in r["kinds"].as_object().unwrap() {
            *kinds.entry(k.clone()).or_default() += v.as_u64().unwrap();
        }
        for m in r["messages"].as_array().unwrap() {
            assert!(m.as_str().unwrap().starts_with("cart \"failed\" in trace "), "{m}");
        }
        let names: Vec<&str> = r["names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        for want in ["GET /", "POST /cart", "load", "palette.state=3", "peer.service=cart"] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
    }
    assert_eq!(spans, n, "spans decoded by opentelemetry-proto");
    assert_eq!(roots, traces);
    assert_eq!(errors, traces / 5);
    let want: BTreeMap<String, u64> =
        [("1".into(), traces), ("2".into(), 2 * traces), ("3".into(), traces)].into_iter().collect();
    assert_eq!(kinds, want, "INTERNAL, SERVER and CLIENT spans");
}

#[tokio::test]
async fn an_unavailable_collector_is_retried_then_the_batch_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = match Receiver::start(dir.path(), &["--status", "503"]) {
        Ok(r) => r,
        Err(why) => return eprintln!("SKIP: OTLP/HTTP retries not checked: {why}"),
    };
    let exporter = Exporter::start(&config(None, Some(receiver.endpoint()), 100, 60_000), dir.path()).unwrap();
    for s in trace_spans(1, 0) {
        exporter.record(s);
    }
    let probe = exporter.clone();
    assert_eq!(exporter.shutdown().await, ExportStats { exported: 0, dropped: 4 });
    assert!(probe.last_error().unwrap().ends_with("HTTP 503"), "{:?}", probe.last_error());
    let got = receiver.received();
    assert_eq!(got.len(), 3, "the first try and two retries: {got:?}");
    assert!(got.iter().all(|r| r["status"] == 503 && r["bytes"].as_u64().unwrap() > 0));
}

#[tokio::test]
async fn the_span_file_decodes_with_the_official_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Exporter::start(&config(Some("spans.jsonl"), None, 30, 60_000), dir.path()).unwrap();
    for t in 1..=20 {
        for s in trace_spans(t, 3) {
            exporter.record(s);
        }
    }
    assert_eq!(exporter.shutdown().await, ExportStats { exported: 80, dropped: 0 });
    // otlp_valid.py's check: json_format.Parse with no unknown field, exact id lengths, kinds, times.
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python");
    let out = Command::new("python3")
        .arg("-c")
        .arg("import sys; sys.path.insert(0, sys.argv[1]); from otlp_valid import check_file; print(check_file(sys.argv[2]))")
        .arg(&python)
        .arg(dir.path().join("spans.jsonl"))
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return eprintln!("SKIP: span file not checked with opentelemetry-proto: python3 not runnable ({e})"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("ModuleNotFoundError") {
        return eprintln!("SKIP: span file not checked: opentelemetry-proto is not installed");
    }
    assert!(out.status.success(), "opentelemetry-proto rejects the span file: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "80");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_is_counted_once_when_shutdown_races_recording() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Exporter::start(&config(Some("s.jsonl"), None, 100, 60_000), dir.path()).unwrap();
    let per_thread = 20_000u64;
    let threads: Vec<_> = (0..2u64)
        .map(|k| {
            let e = exporter.clone();
            std::thread::spawn(move || {
                for t in 0..per_thread / 4 {
                    for s in trace_spans(k << 32 | t, 0) {
                        e.record(s);
                    }
                }
            })
        })
        .collect();
    let probe = exporter.clone();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let at_shutdown = exporter.shutdown().await;
    for t in threads {
        t.join().unwrap();
    }
    let end = probe.stats();
    assert_eq!(end.exported + end.dropped, 2 * per_thread, "{end:?}");
    assert_eq!(end.exported, at_shutdown.exported, "nothing is exported after shutdown");
    let written = spans_of(&read_lines(&dir.path().join("s.jsonl"))).len() as u64;
    assert_eq!(written, end.exported);
}
