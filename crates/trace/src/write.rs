//! Writers: canonical spans out in each format the readers take.
//!
//! Used to write simulated and live traces (OTLP/JSON lines, the collector
//! file exporter's format) and to convert between formats. Every writer's
//! output reads back through [`crate::read_traces`] to the same traces.

use std::io::{self, Write};

use crate::span::{Interner, Span, SpanKind, flags};

/// A JSON string literal.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("strings always serialise")
}

fn otlp_kind(kind: SpanKind) -> u8 {
    match kind {
        SpanKind::Unknown => 0,
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// Appends one OTLP/JSON document holding `spans` (one trace, or any
/// spans), grouped into one resource per service, without a newline.
pub fn otlp_document(spans: &[Span], names: &Interner, out: &mut String) {
    OtlpWriter::default().document(spans, names, out);
}

/// Writes OTLP/JSON documents fast: names are JSON-escaped once and ids and
/// numbers are formatted by hand, since simulation and the runtime write
/// millions of spans.
#[derive(Default)]
pub struct OtlpWriter {
    /// JSON string literal of each symbol, filled on first use.
    quoted: Vec<Option<Box<str>>>,
    /// Services of the current document, reused.
    services: Vec<crate::span::Sym>,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends the low `digits` hex digits of `v` (lower case, zero padded): OTLP/JSON ids.
pub fn push_hex(out: &mut String, v: u128, digits: usize) {
    let mut buf = [0u8; 32];
    for (k, b) in buf[..digits].iter_mut().enumerate() {
        *b = HEX[((v >> (4 * (digits - 1 - k))) & 0xF) as usize];
    }
    out.push_str(std::str::from_utf8(&buf[..digits]).expect("hex digits are ASCII"));
}

/// Appends `v` in decimal without going through `fmt`.
pub fn push_int(out: &mut String, v: i64) {
    let mut buf = [0u8; 20];
    let (neg, mut n) = (v < 0, v.unsigned_abs());
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if neg {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(&buf[at..]).expect("digits are ASCII"));
}

impl OtlpWriter {
    fn quoted(&mut self, sym: crate::span::Sym, names: &Interner) -> &str {
        let i = sym.0 as usize;
        if self.quoted.len() <= i {
            self.quoted.resize(i + 1, None);
        }
        self.quoted[i].get_or_insert_with(|| quoted(names.resolve(sym)).into_boxed_str())
    }

    /// Appends one OTLP/JSON document holding `spans`, one resource per service.
    pub fn document(&mut self, spans: &[Span], names: &Interner, out: &mut String) {
        let mut services = std::mem::take(&mut self.services);
        services.clear();
        services.extend(spans.iter().map(|s| s.service));
        services.sort_by(|a, b| names.resolve(*a).cmp(names.resolve(*b)));
        services.dedup();
        out.push_str("{\"resourceSpans\":[");
        for (i, &service) in services.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":");
            out.push_str(self.quoted(service, names));
            out.push_str("}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"palette\"},\"spans\":[");
            let mut first = true;
            for s in spans.iter().filter(|s| s.service == service) {
                if !first {
                    out.push(',');
                }
                first = false;
                self.span(s, names, out);
            }
            out.push_str("]}]}");
        }
        out.push_str("]}");
        self.services = services;
    }

    fn span(&mut self, s: &Span, names: &Interner, out: &mut String) {
        out.push_str("{\"traceId\":\"");
        push_hex(out, s.trace_id.as_u128(), 32);
        out.push_str("\",\"spanId\":\"");
        push_hex(out, s.span_id.0 as u128, 16);
        out.push_str("\",\"parentSpanId\":\"");
        if !s.parent_id.is_none() {
            push_hex(out, s.parent_id.0 as u128, 16);
        }
        out.push_str("\",\"name\":");
        out.push_str(self.quoted(s.operation, names));
        out.push_str(",\"kind\":");
        push_int(out, otlp_kind(s.kind) as i64);
        out.push_str(",\"startTimeUnixNano\":\"");
        push_int(out, s.start_ns);
        out.push_str("\",\"endTimeUnixNano\":\"");
        push_int(out, s.end_ns());
        out.push('"');
        let mut attrs = 0;
        let mut attr = |out: &mut String| {
            out.push_str(if attrs == 0 { ",\"attributes\":[" } else { "," });
            attrs += 1;
        };
        if s.has(flags::FOLLOWS_FROM) {
            attr(out);
            out.push_str("{\"key\":\"palette.detached\",\"value\":{\"stringValue\":\"true\"}}");
        }
        if !s.remote_service.is_empty() {
            attr(out);
            out.push_str("{\"key\":\"peer.service\",\"value\":{\"stringValue\":");
            out.push_str(self.quoted(s.remote_service, names));
            out.push_str("}}");
        }
        for (key, value) in [("palette.request_bytes", s.request_bytes), ("palette.response_bytes", s.response_bytes)] {
            if let Some(b) = value {
                attr(out);
                out.push_str("{\"key\":\"");
                out.push_str(key);
                out.push_str("\",\"value\":{\"intValue\":\"");
                push_int(out, b as i64);
                out.push_str("\"}}");
            }
        }
        if attrs > 0 {
            out.push(']');
        }
        if s.is_error() {
            out.push_str(",\"status\":{\"code\":2}");
        }
        out.push('}');
    }
}

/// Writes one OTLP/JSON line per trace (the collector file exporter's format).
pub fn write_otlp_lines<'a>(
    mut w: impl Write,
    traces: impl IntoIterator<Item = &'a [Span]>,
    names: &Interner,
) -> io::Result<()> {
    let mut line = String::new();
    let mut writer = OtlpWriter::default();
    for trace in traces {
        line.clear();
        writer.document(trace, names, &mut line);
        line.push('\n');
        w.write_all(line.as_bytes())?;
    }
    w.flush()
}

/// Writes Jaeger query-API JSON (`{"data":[…]}`), times in microseconds.
pub fn write_jaeger<'a>(
    mut w: impl Write,
    traces: impl IntoIterator<Item = &'a [Span]>,
    names: &Interner,
) -> io::Result<()> {
    let mut docs = Vec::new();
    for trace in traces {
        let Some(first) = trace.first() else { continue };
        let mut services: Vec<&str> = trace.iter().map(|s| names.resolve(s.service)).collect();
        services.sort();
        services.dedup();
        let process_of = |s: &Span| {
            format!("p{}", services.iter().position(|n| *n == names.resolve(s.service)).expect("listed") + 1)
        };
        let spans: Vec<serde_json::Value> = trace
            .iter()
            .map(|s| {
                let mut refs = Vec::new();
                if !s.parent_id.is_none() {
                    let kind = if s.has(flags::FOLLOWS_FROM) { "FOLLOWS_FROM" } else { "CHILD_OF" };
                    refs.push(serde_json::json!({"refType": kind, "traceID": s.trace_id.to_string(), "spanID": s.parent_id.to_string()}));
                }
                let mut tags = vec![serde_json::json!({"key": "span.kind", "type": "string", "value": s.kind.as_str()})];
                if s.is_error() {
                    tags.push(serde_json::json!({"key": "error", "type": "bool", "value": true}));
                }
                serde_json::json!({
                    "traceID": s.trace_id.to_string(),
                    "spanID": s.span_id.to_string(),
                    "operationName": names.resolve(s.operation),
                    "references": refs,
                    "startTime": s.start_ns / 1_000,
                    "duration": s.duration_ns / 1_000,
                    "tags": tags,
                    "processID": process_of(s),
                })
            })
            .collect();
        let processes: serde_json::Map<String, serde_json::Value> = services
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("p{}", i + 1), serde_json::json!({"serviceName": n, "tags": []})))
            .collect();
        docs.push(serde_json::json!({"traceID": first.trace_id.to_string(), "spans": spans, "processes": processes}));
    }
    serde_json::to_writer(&mut w, &serde_json::json!({ "data": docs }))?;
    w.write_all(b"\n")?;
    w.flush()
}

/// Writes a Zipkin v2 JSON array of spans, times in microseconds.
pub fn write_zipkin<'a>(
    mut w: impl Write,
    traces: impl IntoIterator<Item = &'a [Span]>,
    names: &Interner,
) -> io::Result<()> {
    let mut all = Vec::new();
    for trace in traces {
        for s in trace {
            let mut v = serde_json::json!({
                "traceId": s.trace_id.to_string(),
                "id": s.span_id.to_string(),
                "name": names.resolve(s.operation),
                "timestamp": s.start_ns / 1_000,
                "duration": s.duration_ns / 1_000,
                "localEndpoint": {"serviceName": names.resolve(s.service)},
            });
            if !s.parent_id.is_none() {
                v["parentId"] = s.parent_id.to_string().into();
            }
            let kind = match s.kind {
                SpanKind::Server => Some("SERVER"),
                SpanKind::Client => Some("CLIENT"),
                SpanKind::Producer => Some("PRODUCER"),
                SpanKind::Consumer => Some("CONSUMER"),
                SpanKind::Internal | SpanKind::Unknown => None,
            };
            if let Some(k) = kind {
                v["kind"] = k.into();
            }
            if s.is_error() {
                v["tags"] = serde_json::json!({"error": ""});
            }
            all.push(v);
        }
    }
    serde_json::to_writer(&mut w, &all)?;
    w.write_all(b"\n")?;
    w.flush()
}

/// Writes span CSV in the Nezha layout (durations in microseconds).
pub fn write_span_csv<'a>(
    mut w: impl Write,
    traces: impl IntoIterator<Item = &'a [Span]>,
    names: &Interner,
) -> io::Result<()> {
    let mut csv = csv::Writer::from_writer(&mut w);
    csv.write_record([
        "TraceID",
        "SpanID",
        "ParentID",
        "PodName",
        "OperationName",
        "StartTimeUnixNano",
        "EndTimeUnixNano",
        "Duration",
    ])?;
    for trace in traces {
        for s in trace {
            let parent = if s.parent_id.is_none() { "root".to_string() } else { s.parent_id.to_string() };
            csv.write_record([
                s.trace_id.to_string(),
                s.span_id.to_string(),
                parent,
                names.resolve(s.service).to_string(),
                names.resolve(s.operation).to_string(),
                s.start_ns.to_string(),
                s.end_ns().to_string(),
                (s.duration_ns / 1_000).to_string(),
            ])?;
        }
    }
    csv.flush()?;
    drop(csv);
    w.flush()
}

/// Writes `content` to `path` atomically: a temporary file beside it, then a
/// rename, so a failure never leaves a half-written file.
pub fn write_atomically(
    path: &std::path::Path,
    content: impl FnOnce(&mut (dyn Write + Send)) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let name = path.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = io::BufWriter::new(std::fs::File::create(&tmp)?);
        content(&mut file)?;
        file.flush()?;
        file.get_ref().sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
