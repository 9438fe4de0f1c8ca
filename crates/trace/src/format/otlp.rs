//! OTLP/JSON: one `{"resourceSpans":[…]}` document, or the collector file
//! exporter's JSON lines (one document per line).
//!
//! Ids are hex (as the OTLP/JSON spec says) or base64 (protobuf's generic
//! JSON mapping). Times are nanoseconds, as strings or numbers. The service is
//! the resource's `service.name`. `kind` and `status.code` may be numbers or
//! enum names.

use std::io::BufRead;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::defect::DefectKind;
use crate::error::Error;
use crate::format::{Ingest, each_document, read_text, truncate};
use crate::span::{Span, SpanId, SpanKind, Sym, TraceId, flags};

/// `resourceSpans` is the only field of an OTLP trace document, so any other
/// top-level field means this is not one (`{}` is an empty document).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(rename = "resourceSpans", default)]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Deserialize)]
struct ResourceSpans {
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(rename = "scopeSpans", default)]
    scope_spans: Vec<ScopeSpans>,
    /// Pre-1.0 name of `scopeSpans`.
    #[serde(rename = "instrumentationLibrarySpans", default)]
    library_spans: Vec<ScopeSpans>,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(default)]
    attributes: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct ScopeSpans {
    #[serde(default)]
    spans: Vec<Value>,
}

#[derive(Deserialize)]
pub(crate) struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: Value,
}

#[derive(Deserialize)]
struct OSpan {
    #[serde(rename = "traceId")]
    trace_id: String,
    #[serde(rename = "spanId")]
    span_id: String,
    #[serde(rename = "parentSpanId", default)]
    parent_span_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: Value,
    #[serde(rename = "startTimeUnixNano")]
    start: Value,
    #[serde(rename = "endTimeUnixNano")]
    end: Value,
    #[serde(default)]
    attributes: Vec<KeyValue>,
    #[serde(default)]
    status: Option<Status>,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    code: Value,
}

/// The text of an OTLP `AnyValue` (`{"stringValue": …}`, `{"intValue": …}`…).
pub(crate) fn any_value_text(v: &Value) -> Option<String> {
    let o = v.as_object()?;
    let (_, inner) = o.iter().next()?;
    Some(match inner {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn any_value_u32(v: &Value) -> Option<u32> {
    any_value_text(v)?.trim().parse().ok()
}

/// An OTLP id: hex, or base64 of the raw bytes.
fn id_bytes(s: &str, len: usize) -> Option<u128> {
    let s = s.trim();
    if s.len() == len * 2 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return u128::from_str_radix(s, 16).ok();
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    (bytes.len() == len).then(|| bytes.iter().fold(0u128, |acc, &b| (acc << 8) | b as u128))
}

fn nanos(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.trim().parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

pub fn read(reader: Box<dyn BufRead + Send + '_>, ing: &mut Ingest) -> Result<(), Error> {
    let text = read_text(reader, ing)?;
    each_document::<Document>(&text, ing, "OTLP/JSON", |ing, doc, line| {
        for rs in doc.resource_spans {
            let attrs = rs.resource.map(|r| r.attributes).unwrap_or_default();
            let service_name = attrs.iter().find(|a| a.key == "service.name").and_then(|a| any_value_text(&a.value));
            let service = match service_name.as_deref() {
                Some(s) if !s.is_empty() => ing.names.intern(s),
                _ => {
                    ing.defect(DefectKind::MissingService, line, || "resource without service.name".into())?;
                    ing.names.intern("unknown")
                }
            };
            for scope in rs.scope_spans.into_iter().chain(rs.library_spans) {
                ing.saw_records(scope.spans.len() as u64);
                for (k, value) in scope.spans.into_iter().enumerate() {
                    match OSpan::deserialize(value) {
                        Ok(s) => push_span(ing, s, service, line)?,
                        Err(e) => ing.bad_record(line, format!("span {k}: {e}"))?,
                    }
                }
            }
        }
        Ok(())
    })
}

fn push_span(ing: &mut Ingest, s: OSpan, service: Sym, line: u64) -> Result<(), Error> {
    let Some(trace_id) = id_bytes(&s.trace_id, 16) else {
        return ing.bad_record(
            line,
            format!("traceId `{}` is neither 32 hex digits nor base64 of 16 bytes", truncate(&s.trace_id, 40)),
        );
    };
    let Some(span_id) = id_bytes(&s.span_id, 8) else {
        return ing.bad_record(
            line,
            format!("spanId `{}` is neither 16 hex digits nor base64 of 8 bytes", truncate(&s.span_id, 40)),
        );
    };
    let parent_id = if s.parent_span_id.trim().is_empty() {
        0
    } else {
        match id_bytes(&s.parent_span_id, 8) {
            Some(p) => p as u64,
            None => {
                return ing
                    .bad_record(line, format!("parentSpanId `{}` is not a span id", truncate(&s.parent_span_id, 40)));
            }
        }
    };
    let (Some(start), Some(end)) = (nanos(&s.start), nanos(&s.end)) else {
        return ing.bad_record(line, format!("span {span_id:016x}: start or end time is not a number of nanoseconds"));
    };
    let kind = match &s.kind {
        Value::Number(n) => SpanKind::parse(&n.to_string()),
        Value::String(k) => SpanKind::parse(k),
        _ => SpanKind::Unknown,
    };
    let mut span_flags = 0;
    let error = match s.status.as_ref().map(|st| &st.code) {
        Some(Value::Number(n)) => n.as_i64() == Some(2),
        Some(Value::String(c)) => c == "STATUS_CODE_ERROR" || c == "2",
        _ => false,
    };
    if error {
        span_flags |= flags::ERROR;
    }
    if matches!(kind, SpanKind::Producer | SpanKind::Consumer) {
        span_flags |= flags::FOLLOWS_FROM;
    }
    let (mut remote, mut protocol) = (Sym::EMPTY, Sym::EMPTY);
    let (mut request_bytes, mut response_bytes) = (None, None);
    for a in &s.attributes {
        match a.key.as_str() {
            "peer.service" => remote = any_value_text(&a.value).map_or(Sym::EMPTY, |v| ing.names.intern(&v)),
            "rpc.system" => protocol = any_value_text(&a.value).map_or(Sym::EMPTY, |v| ing.names.intern(&v)),
            "http.method" | "http.request.method" if protocol.is_empty() => protocol = ing.names.intern("http"),
            "palette.detached" if any_value_text(&a.value).as_deref() == Some("true") => {
                span_flags |= flags::FOLLOWS_FROM
            }
            "http.request.body.size" | "http.request_content_length" | "rpc.request.size" | "palette.request_bytes" => {
                request_bytes = any_value_u32(&a.value)
            }
            "http.response.body.size"
            | "http.response_content_length"
            | "rpc.response.size"
            | "palette.response_bytes" => response_bytes = any_value_u32(&a.value),
            _ => {}
        }
    }
    let operation = ing.names.intern(&s.name);
    ing.push(Span {
        trace_id: TraceId::new(trace_id),
        span_id: SpanId(span_id as u64),
        parent_id: SpanId(parent_id),
        service,
        operation,
        remote_service: remote,
        protocol,
        kind,
        flags: span_flags,
        start_ns: start,
        duration_ns: end.saturating_sub(start),
        caller_duration_ns: None,
        request_bytes,
        response_bytes,
        origin: ing.origin(line),
    })
}
