//! Jaeger JSON: the query API's `{"data":[{traceID, spans, processes}]}`, one
//! trace object, and a flat array of Jaeger-model spans (each with its own
//! `process`).
//!
//! Times are microseconds. Ids may be unpadded hex. The parent is the first
//! CHILD_OF reference, else a FOLLOWS_FROM one (the caller does not wait), else
//! a `parentSpanID` field. `span.kind`, `error`, `peer.service` and
//! `rpc.system`/`http.method` come from tags.

use std::collections::HashMap;
use std::io::BufRead;

use serde::Deserialize;
use serde_json::Value;

use crate::defect::DefectKind;
use crate::error::Error;
use crate::format::{Ingest, each_document, read_text, truncate};
use crate::span::{Span, SpanId, SpanKind, Sym, TraceId, flags};

#[derive(Deserialize, Clone)]
struct Process {
    #[serde(rename = "serviceName", default)]
    service_name: String,
}

#[derive(Deserialize)]
struct Ref {
    #[serde(rename = "refType", default)]
    ref_type: String,
    #[serde(rename = "spanID", default)]
    span_id: String,
}

#[derive(Deserialize)]
struct Tag {
    key: String,
    #[serde(default)]
    value: Value,
}

#[derive(Deserialize)]
struct JSpan {
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
    #[serde(rename = "operationName", default)]
    operation: String,
    #[serde(default)]
    references: Vec<Ref>,
    #[serde(rename = "parentSpanID", default)]
    parent_span_id: Option<String>,
    #[serde(rename = "startTime")]
    start_time: Value,
    #[serde(default)]
    duration: Value,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(rename = "processID", default)]
    process_id: Option<String>,
    #[serde(default)]
    process: Option<Process>,
}

/// A number that may be written as a JSON number or a string.
pub(crate) fn number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f.round() as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

fn tag_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn read(reader: Box<dyn BufRead + Send + '_>, ing: &mut Ingest) -> Result<(), Error> {
    let text = read_text(reader, ing)?;
    each_document::<Value>(&text, ing, "Jaeger JSON", |ing, doc, line| {
        // Shapes: {"data":[trace…]}, [trace…], [span…], or one trace.
        let traces: Vec<&Value> = match &doc {
            Value::Object(o) if o.get("data").is_some_and(Value::is_array) => {
                o["data"].as_array().expect("checked").iter().collect()
            }
            Value::Object(o) if o.contains_key("spans") => vec![&doc],
            Value::Array(items) if items.first().is_some_and(|t| t.get("spans").is_some()) => items.iter().collect(),
            Value::Array(_) => vec![&doc],
            _ => {
                return Err(ing.bad_data(
                    line,
                    "Jaeger JSON must be {\"data\":[…]}, a trace with \"spans\", or an array of spans",
                ));
            }
        };
        for (t, trace) in traces.into_iter().enumerate() {
            let (spans, processes) = match trace {
                Value::Array(spans) => (spans.as_slice(), HashMap::new()),
                Value::Object(o) => {
                    let spans = match o.get("spans") {
                        None => &[][..],
                        Some(Value::Array(v)) => v.as_slice(),
                        Some(_) => {
                            return Err(ing.bad_data(line, format!("trace {t}: \"spans\" is not an array")));
                        }
                    };
                    let processes = match trace.get("processes") {
                        Some(p) => HashMap::<String, Process>::deserialize(p)
                            .map_err(|e| ing.bad_data(line, format!("trace {t}: bad processes: {e}")))?,
                        None => HashMap::new(),
                    };
                    (spans, processes)
                }
                _ => {
                    return Err(
                        ing.bad_data(line, format!("trace {t} is neither a trace object nor an array of spans"))
                    );
                }
            };
            ing.saw_records(spans.len() as u64);
            for (k, value) in spans.iter().enumerate() {
                match JSpan::deserialize(value) {
                    Ok(s) => push_span(ing, s, &processes, line)?,
                    Err(e) => ing.bad_record(line, format!("trace {t} span {k}: {e}"))?,
                }
            }
        }
        Ok(())
    })
}

fn push_span(ing: &mut Ingest, s: JSpan, processes: &HashMap<String, Process>, line: u64) -> Result<(), Error> {
    let Some(trace_id) = TraceId::from_hex(&s.trace_id) else {
        return ing.bad_record(line, format!("traceID `{}` is not hex", truncate(&s.trace_id, 40)));
    };
    let Some(span_id) = SpanId::from_hex(&s.span_id) else {
        return ing.bad_record(line, format!("spanID `{}` is not hex", truncate(&s.span_id, 40)));
    };
    let child_of = s.references.iter().find(|r| r.ref_type.eq_ignore_ascii_case("CHILD_OF"));
    let follows = s.references.iter().find(|r| r.ref_type.eq_ignore_ascii_case("FOLLOWS_FROM"));
    let mut span_flags = 0;
    let parent_text = match (child_of, follows) {
        (Some(r), _) => Some(r.span_id.as_str()),
        (None, Some(r)) => {
            span_flags |= flags::FOLLOWS_FROM;
            Some(r.span_id.as_str())
        }
        (None, None) => s.parent_span_id.as_deref(),
    };
    let parent_id = match parent_text {
        None | Some("") => SpanId(0),
        Some(p) => match SpanId::from_hex(p) {
            Some(id) => id,
            None => {
                return ing.bad_record(line, format!("parent span id `{}` is not hex", truncate(p, 40)));
            }
        },
    };
    let Some(start_us) = number(&s.start_time) else {
        return ing.bad_record(line, format!("span {span_id}: startTime is not a number of microseconds"));
    };
    let process = s.process.as_ref().or_else(|| s.process_id.as_ref().and_then(|p| processes.get(p)));
    let service = match process.map(|p| p.service_name.as_str()) {
        Some(name) if !name.is_empty() => ing.names.intern(name),
        _ => {
            ing.defect(DefectKind::MissingService, line, || format!("span {span_id} has no process service name"))?;
            ing.names.intern("unknown")
        }
    };
    let mut kind = SpanKind::Unknown;
    let (mut remote, mut protocol) = (Sym::EMPTY, Sym::EMPTY);
    for tag in &s.tags {
        match tag.key.as_str() {
            "span.kind" => kind = SpanKind::parse(&tag_text(&tag.value)),
            "error" if matches!(&tag.value, Value::Bool(true)) || tag_text(&tag.value) == "true" => {
                span_flags |= flags::ERROR
            }
            "otel.status_code" if tag_text(&tag.value) == "ERROR" => span_flags |= flags::ERROR,
            "peer.service" => remote = ing.names.intern(&tag_text(&tag.value)),
            "rpc.system" => protocol = ing.names.intern(&tag_text(&tag.value)),
            "http.method" | "http.request.method" if protocol.is_empty() => protocol = ing.names.intern("http"),
            _ => {}
        }
    }
    let operation = ing.names.intern(&s.operation);
    ing.push(Span {
        trace_id,
        span_id,
        parent_id,
        service,
        operation,
        remote_service: remote,
        protocol,
        kind,
        flags: span_flags,
        start_ns: start_us.saturating_mul(1_000),
        duration_ns: number(&s.duration).unwrap_or(0).saturating_mul(1_000),
        caller_duration_ns: None,
        request_bytes: None,
        response_bytes: None,
        origin: ing.origin(line),
    })
}
