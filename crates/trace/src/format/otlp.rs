//! OTLP/JSON: one `{"resourceSpans":[…]}` document, or the collector file
//! exporter's JSON lines (one document per line).
//!
//! Ids are hex (as the OTLP/JSON spec says) or base64 (protobuf's generic
//! JSON mapping). Times are nanoseconds, as strings or numbers. The service is
//! the resource's `service.name`. `kind` and `status.code` may be numbers or
//! enum names.

use std::fmt;
use std::io::BufRead;

use base64::Engine;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::defect::DefectKind;
use crate::error::Error;
use crate::format::json::{Ctx, Document, Key, KeyIn, Record, read_documents};
use crate::format::{Ingest, truncate};
use crate::span::{Span, SpanId, SpanKind, Sym, TraceId, flags};

#[derive(Deserialize)]
struct Resource {
    #[serde(default)]
    attributes: Vec<KeyValue>,
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
    read_documents::<Otlp>(reader, ing)
}

/// `{"resourceSpans":[{"resource":…,"scopeSpans":[{"spans":[…]}]}]}`, read
/// span by span.
struct Otlp;

impl Document for Otlp {
    const WHAT: &'static str = "OTLP/JSON";
    fn parse<'de, D: Deserializer<'de>>(ctx: &mut Ctx<'_>, de: D) -> Result<(), D::Error> {
        de.deserialize_map(Doc { ctx })
    }
}

struct Doc<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
}

impl<'de> Visitor<'de> for Doc<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an OTLP/JSON document")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // `resourceSpans` is the only field of an OTLP trace document, so any
        // other top-level field means this is not one (`{}` is an empty document).
        const FIELDS: &[&str] = &["resourceSpans"];
        while let Some(key) = map.next_key_seed(KeyIn(FIELDS))? {
            match key {
                Key::Known(_) => map.next_value_seed(Each { ctx: &mut *self.ctx, what: "a sequence" })?,
                Key::Other(name) => return Err(de::Error::unknown_field(&name, FIELDS)),
            }
        }
        Ok(())
    }
}

/// An array of resourceSpans, or of scopeSpans under the service `Some(_)`
/// (`None`: the resource has not been seen yet).
struct Each<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    what: &'static str,
}

impl<'de> DeserializeSeed<'de> for Each<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Each<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.what)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(ResourceSeed { ctx: &mut *self.ctx })?.is_some() {}
        Ok(())
    }
}

/// One resourceSpans: its service, then its spans.
struct ResourceSeed<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
}

impl<'de> DeserializeSeed<'de> for ResourceSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.ctx.pos.start_record();
        d.deserialize_map(self)
    }
}

/// The spans of one resourceSpans met so far.
struct Spans {
    /// The resource's service, once its `resource` field has been read.
    service: Option<Sym>,
    /// Spans that came before the resource (exporters write the resource
    /// first, so this is rare), with their index in their scope.
    held: Vec<(Value, usize)>,
}

impl Spans {
    fn resolve(&mut self, ing: &mut Ingest, line: u64, resource: Option<Resource>) -> Result<(), Error> {
        let attrs = resource.map(|r| r.attributes).unwrap_or_default();
        let service_name = attrs.iter().find(|a| a.key == "service.name").and_then(|a| any_value_text(&a.value));
        let service = match service_name.as_deref() {
            Some(s) if !s.is_empty() => ing.names.intern(s),
            _ => {
                ing.defect(DefectKind::MissingService, line, || "resource without service.name".into())?;
                ing.names.intern("unknown")
            }
        };
        self.service = Some(service);
        for (value, k) in std::mem::take(&mut self.held) {
            span_value(ing, value, k, service, line)?;
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for ResourceSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a resourceSpans object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // `instrumentationLibrarySpans` is the pre-1.0 name of `scopeSpans`.
        const FIELDS: &[&str] = &["resource", "scopeSpans", "instrumentationLibrarySpans"];
        let ctx = self.ctx;
        let mut spans = Spans { service: None, held: Vec::new() };
        while let Some(key) = map.next_key_seed(KeyIn(FIELDS))? {
            match key {
                Key::Known(0) => {
                    let resource: Option<Resource> = map.next_value()?;
                    let r = spans.resolve(ctx.ing, ctx.line, resource);
                    ctx.check(r)?;
                }
                Key::Known(_) => map.next_value_seed(Scopes { ctx: &mut *ctx, spans: &mut spans })?,
                Key::Other(_) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if spans.service.is_none() {
            let r = spans.resolve(ctx.ing, ctx.line, None);
            ctx.check(r)?;
        }
        Ok(())
    }
}

/// An array of scopeSpans.
struct Scopes<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    spans: &'c mut Spans,
}

impl<'de> DeserializeSeed<'de> for Scopes<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Scopes<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Scope { ctx: &mut *self.ctx, spans: &mut *self.spans })?.is_some() {}
        Ok(())
    }
}

/// One scopeSpans object, or (as `SpanList`) its `spans` array.
struct Scope<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    spans: &'c mut Spans,
}

impl<'de> DeserializeSeed<'de> for Scope<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Scope<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scopeSpans object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeyIn(&["spans"]))? {
            match key {
                Key::Known(_) => map.next_value_seed(SpanList { ctx: &mut *self.ctx, spans: &mut *self.spans })?,
                Key::Other(_) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct SpanList<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    spans: &'c mut Spans,
}

impl<'de> DeserializeSeed<'de> for SpanList<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SpanList<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let mut k = 0;
        while let Some(value) = seq.next_element_seed(Record(ctx.pos))? {
            ctx.ing.saw_records(1);
            match self.spans.service {
                Some(service) => {
                    let r = span_value(ctx.ing, value, k, service, ctx.line);
                    ctx.check(r)?;
                }
                None => self.spans.held.push((value, k)),
            }
            k += 1;
        }
        Ok(())
    }
}

/// Span `k` of its scope.
fn span_value(ing: &mut Ingest, value: Value, k: usize, service: Sym, line: u64) -> Result<(), Error> {
    match OSpan::deserialize(value) {
        Ok(s) => push_span(ing, s, service, line),
        Err(e) => ing.bad_record(line, format!("span {k}: {e}")),
    }
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
            key @ ("http.status_code" | "http.response.status_code" | "rpc.grpc.status_code")
                if any_value_text(&a.value).is_some_and(|v| super::status_is_error(key, &v)) =>
            {
                span_flags |= flags::ERROR
            }
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
