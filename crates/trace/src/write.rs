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
    use std::fmt::Write as _;
    let mut services: Vec<_> = spans.iter().map(|s| s.service).collect();
    services.sort_by(|a, b| names.resolve(*a).cmp(names.resolve(*b)));
    services.dedup();
    out.push_str("{\"resourceSpans\":[");
    for (i, &service) in services.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"resource\":{{\"attributes\":[{{\"key\":\"service.name\",\"value\":{{\"stringValue\":{}}}}}]}},\"scopeSpans\":[{{\"scope\":{{\"name\":\"palette\"}},\"spans\":[",
            quoted(names.resolve(service))
        );
        let mut first = true;
        for s in spans.iter().filter(|s| s.service == service) {
            if !first {
                out.push(',');
            }
            first = false;
            let parent = if s.parent_id.is_none() { String::new() } else { s.parent_id.to_string() };
            let _ = write!(
                out,
                "{{\"traceId\":\"{}\",\"spanId\":\"{}\",\"parentSpanId\":\"{}\",\"name\":{},\"kind\":{},\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\"",
                s.trace_id,
                s.span_id,
                parent,
                quoted(names.resolve(s.operation)),
                otlp_kind(s.kind),
                s.start_ns,
                s.end_ns()
            );
            let mut attrs: Vec<String> = Vec::new();
            if s.has(flags::FOLLOWS_FROM) {
                attrs.push("{\"key\":\"palette.detached\",\"value\":{\"stringValue\":\"true\"}}".into());
            }
            if !s.remote_service.is_empty() {
                attrs.push(format!(
                    "{{\"key\":\"peer.service\",\"value\":{{\"stringValue\":{}}}}}",
                    quoted(names.resolve(s.remote_service))
                ));
            }
            if let Some(b) = s.request_bytes {
                attrs.push(format!("{{\"key\":\"palette.request_bytes\",\"value\":{{\"intValue\":\"{b}\"}}}}"));
            }
            if let Some(b) = s.response_bytes {
                attrs.push(format!("{{\"key\":\"palette.response_bytes\",\"value\":{{\"intValue\":\"{b}\"}}}}"));
            }
            if !attrs.is_empty() {
                let _ = write!(out, ",\"attributes\":[{}]", attrs.join(","));
            }
            if s.is_error() {
                out.push_str(",\"status\":{\"code\":2}");
            }
            out.push('}');
        }
        out.push_str("]}]}");
    }
    out.push_str("]}");
}

/// Writes one OTLP/JSON line per trace (the collector file exporter's format).
pub fn write_otlp_lines<'a>(
    mut w: impl Write,
    traces: impl IntoIterator<Item = &'a [Span]>,
    names: &Interner,
) -> io::Result<()> {
    let mut line = String::new();
    for trace in traces {
        line.clear();
        otlp_document(trace, names, &mut line);
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
    content: impl FnOnce(&mut dyn Write) -> io::Result<()>,
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
