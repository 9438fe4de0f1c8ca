//! Jaeger JSON: the query API's `{"data":[{traceID, spans, processes}]}`, one
//! trace object, and a flat array of Jaeger-model spans (each with its own
//! `process`).
//!
//! Times are microseconds. Ids may be unpadded hex. The parent is the first
//! CHILD_OF reference, else a FOLLOWS_FROM one (the caller does not wait), else
//! a `parentSpanID` field. `span.kind`, `error`, `peer.service` and
//! `rpc.system`/`http.method` come from tags.

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::defect::DefectKind;
use crate::error::Error;
use crate::format::json::{Ctx, Document, Key, KeyIn, Record, read_documents};
use crate::format::{Ingest, truncate};
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
    read_documents::<Jaeger>(reader, ing)
}

/// Shapes: `{"data":[trace…]}`, `[trace…]`, `[span…]`, or one trace; read
/// trace by trace, and span by span within a trace.
struct Jaeger;

impl Document for Jaeger {
    const WHAT: &'static str = "Jaeger JSON";
    fn parse<'de, D: Deserializer<'de>>(ctx: &mut Ctx<'_>, de: D) -> Result<(), D::Error> {
        de.deserialize_any(Item { ctx, t: 0, k: 0, top: true, trace: false })
    }
}

const WRONG_SHAPE: &str = "Jaeger JSON must be {\"data\":[…]}, a trace with \"spans\", or an array of spans";

/// An element of an array of traces or spans — a trace object, an array of
/// spans (a trace without processes), or a span — or, at the `top`, the
/// whole document. `t` is the trace's index, `k` the span's in a flat array;
/// `trace` says it is a trace (in `data`), even without `spans`.
struct Item<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    t: usize,
    k: usize,
    top: bool,
    trace: bool,
}

impl<'de> DeserializeSeed<'de> for Item<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.ctx.pos.start_record();
        d.deserialize_any(self)
    }
}

/// The spans of one trace met so far, held until its processes are known
/// (Jaeger writes `processes` after `spans`).
struct Trace {
    t: usize,
    processes: Option<HashMap<String, Process>>,
    held: Vec<JSpan>,
}

impl Trace {
    fn span(&mut self, ing: &mut Ingest, value: Value, k: usize, line: u64) -> Result<(), Error> {
        ing.saw_records(1);
        match JSpan::deserialize(value) {
            Ok(s) => match &self.processes {
                Some(processes) => push_span(ing, s, processes, line),
                None => {
                    self.held.push(s);
                    Ok(())
                }
            },
            Err(e) => ing.bad_record(line, format!("trace {} span {k}: {e}", self.t)),
        }
    }

    fn finish(self, ing: &mut Ingest, line: u64) -> Result<(), Error> {
        let processes = self.processes.unwrap_or_default();
        for s in self.held {
            push_span(ing, s, &processes, line)?;
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for Item<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Jaeger trace or span")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        const FIELDS: &[&str] = &["data", "spans", "processes"];
        let (ctx, t) = (self.ctx, self.t);
        let mut trace = Trace { t, processes: None, held: Vec::new() };
        let (mut is_trace, mut has_data) = (false, false);
        // The other fields: a span's, if this turns out to be one.
        let mut fields = serde_json::Map::new();
        while let Some(key) = map.next_key_seed(KeyIn(FIELDS))? {
            match key {
                Key::Known(0) if self.top => {
                    has_data = true;
                    map.next_value_seed(Traces { ctx: &mut *ctx })?;
                }
                Key::Known(1) => {
                    is_trace = true;
                    map.next_value_seed(TraceSpans { ctx: &mut *ctx, trace: &mut trace })?;
                }
                Key::Known(2) => {
                    let value: Value = map.next_value()?;
                    match HashMap::<String, Process>::deserialize(value) {
                        Ok(p) => {
                            let held = std::mem::take(&mut trace.held);
                            for s in held {
                                let r = push_span(ctx.ing, s, &p, ctx.line);
                                ctx.check(r)?;
                            }
                            trace.processes = Some(p);
                        }
                        Err(e) => return Err(ctx.bad_data(format!("trace {t}: bad processes: {e}"))),
                    }
                }
                Key::Known(i) => {
                    fields.insert(FIELDS[i].to_string(), map.next_value()?);
                }
                Key::Other(name) => {
                    let value: Value = map.next_value()?;
                    if !is_trace && !has_data {
                        fields.insert(name, value);
                    }
                }
            }
        }
        if has_data {
            return Ok(());
        }
        if is_trace || self.trace {
            let r = trace.finish(ctx.ing, ctx.line);
            return ctx.check(r);
        }
        if self.top {
            return Err(ctx.bad_data(WRONG_SHAPE));
        }
        let r = Trace { t: 0, processes: Some(HashMap::new()), held: Vec::new() }.span(
            ctx.ing,
            Value::Object(fields),
            self.k,
            ctx.line,
        );
        ctx.check(r)
    }

    /// An array of spans: the top-level document, or one trace of `data`.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        if self.top {
            // Element `i` is trace `i` of an array of traces, or span `i` of
            // the one trace an array of spans makes.
            let mut i = 0;
            while seq.next_element_seed(Item { ctx: &mut *ctx, t: i, k: i, top: false, trace: false })?.is_some() {
                i += 1;
            }
            return Ok(());
        }
        let mut trace = Trace { t: self.t, processes: Some(HashMap::new()), held: Vec::new() };
        let mut k = 0;
        while let Some(value) = seq.next_element_seed(Record(ctx.pos))? {
            let r = trace.span(ctx.ing, value, k, ctx.line);
            ctx.check(r)?;
            k += 1;
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(Value::from(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(Value::from(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(Value::Null)
    }
}

impl Item<'_, '_> {
    /// A scalar where a trace or span should be.
    fn scalar<E: de::Error>(self, value: Value) -> Result<(), E> {
        if self.top {
            return Err(self.ctx.bad_data(WRONG_SHAPE));
        }
        Err(self.ctx.bad_data(format!("trace {} is neither a trace object nor an array of spans: {value}", self.t)))
    }
}

/// The `data` array: traces.
struct Traces<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
}

impl<'de> DeserializeSeed<'de> for Traces<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Traces<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of Jaeger traces")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut t = 0;
        while seq.next_element_seed(Item { ctx: &mut *self.ctx, t, k: 0, top: false, trace: true })?.is_some() {
            t += 1;
        }
        Ok(())
    }
}

/// A trace's `spans` array.
struct TraceSpans<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    trace: &'c mut Trace,
}

impl<'de> DeserializeSeed<'de> for TraceSpans<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TraceSpans<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of spans")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let mut k = 0;
        while let Some(value) = seq.next_element_seed(Record(ctx.pos))? {
            let r = self.trace.span(ctx.ing, value, k, ctx.line);
            ctx.check(r)?;
            k += 1;
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.not_an_array())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.not_an_array())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.not_an_array())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.not_an_array())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.not_an_array())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(self.not_an_array())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.not_an_array())
    }
}

impl TraceSpans<'_, '_> {
    fn not_an_array<E: de::Error>(self) -> E {
        self.ctx.bad_data(format!("trace {}: \"spans\" is not an array", self.trace.t))
    }
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
            key @ ("http.status_code" | "http.response.status_code" | "rpc.grpc.status_code" | "grpc.status_code")
                if super::status_is_error(key, &tag_text(&tag.value)) =>
            {
                span_flags |= flags::ERROR
            }
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
