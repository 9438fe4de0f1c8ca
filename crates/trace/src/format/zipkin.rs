//! Zipkin v2 JSON: an array of spans, or an array of traces (arrays of spans).
//!
//! Zipkin's quirks, each repaired and counted:
//! - **Shared span ids**: a client and the server it called report the same
//!   `id` (the server with `"shared": true`). The server half gets an id of
//!   its own with the client as parent; spans whose parent is the shared id
//!   were made by the server and hang under it.
//! - **Missing timestamps**: a span reported in several pieces, some without
//!   timestamp or kind. A piece is merged into the record of the same span
//!   (same id and service); a span that has no timestamp anywhere takes the
//!   earliest annotation, or is dropped and its children move to its parent.
//! - **Missing localEndpoint**: the service is `unknown`.
//!
//! Times are microseconds. Spans without a kind are local spans.

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::defect::DefectKind;
use crate::error::Error;
use crate::format::json::{Ctx, Document, Record, read_documents};
use crate::format::{Ingest, truncate};
use crate::span::{Span, SpanId, SpanKind, Sym, TraceId, flags, hash64};

#[derive(Deserialize, Clone, Default)]
struct Endpoint {
    #[serde(rename = "serviceName", default)]
    service_name: Option<String>,
}

#[derive(Deserialize, Clone)]
struct Annotation {
    #[serde(default)]
    timestamp: Option<i64>,
}

/// What palette reads from a span's tags: their names, not their values
/// (a document's spans are held until it ends, so they are kept small).
#[derive(Clone, Copy, Default)]
struct Tags {
    error: bool,
    http: bool,
    grpc: bool,
}

impl Tags {
    fn absorb(&mut self, other: Tags) {
        self.error |= other.error;
        self.http |= other.http;
        self.grpc |= other.grpc;
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tags, D::Error> {
        struct Names;
        impl<'de> Visitor<'de> for Names {
            type Value = Tags;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tags, A::Error> {
                let mut tags = Tags::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if matches!(&*key, "http.status_code" | "http.response.status_code" | "grpc.status_code") {
                        // Zipkin tags are strings; a sloppy exporter's number is read too.
                        let value = map.next_value::<serde_json::Value>()?;
                        let text = value.as_str().map_or_else(|| value.to_string(), str::to_string);
                        tags.error |= super::status_is_error(&key, &text);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                    tags.error |= key == "error";
                    tags.http |= key.starts_with("http.");
                    tags.grpc |= key.starts_with("grpc.");
                }
                Ok(tags)
            }
        }
        d.deserialize_map(Names)
    }
}

#[derive(Deserialize, Clone)]
struct ZSpan {
    #[serde(rename = "traceId")]
    trace_id: String,
    id: String,
    #[serde(rename = "parentId", default)]
    parent_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    timestamp: Option<i64>,
    #[serde(default)]
    duration: Option<i64>,
    #[serde(rename = "localEndpoint", default)]
    local: Option<Endpoint>,
    #[serde(rename = "remoteEndpoint", default)]
    remote: Option<Endpoint>,
    #[serde(default)]
    tags: Tags,
    #[serde(default)]
    shared: bool,
    #[serde(default)]
    annotations: Vec<Annotation>,
}

impl ZSpan {
    fn service(&self) -> Option<&str> {
        self.local.as_ref().and_then(|e| e.service_name.as_deref()).filter(|s| !s.is_empty())
    }
    fn is_server(&self) -> bool {
        self.shared || self.kind.as_deref().is_some_and(|k| k.eq_ignore_ascii_case("SERVER"))
    }
    /// True when `other` records the same span as `self`: identical timing,
    /// name and parent (pieces may differ in tags and annotations).
    fn same_span(&self, other: &ZSpan) -> bool {
        let lower = |p: &Option<String>| p.as_deref().map(str::to_ascii_lowercase);
        self.timestamp == other.timestamp
            && self.duration == other.duration
            && self.name == other.name
            && lower(&self.parent_id) == lower(&other.parent_id)
    }
    /// Fills what `self` lacks from another record of the same span.
    fn absorb(&mut self, other: ZSpan) {
        self.timestamp = self.timestamp.or(other.timestamp);
        self.duration = self.duration.or(other.duration);
        self.kind = self.kind.take().or(other.kind);
        if self.name.as_deref().is_none_or(str::is_empty) {
            self.name = other.name;
        }
        self.remote = self.remote.take().or(other.remote);
        self.parent_id = self.parent_id.take().or(other.parent_id);
        self.annotations.extend(other.annotations);
        self.tags.absorb(other.tags);
    }
}

pub fn read(reader: Box<dyn BufRead + Send + '_>, ing: &mut Ingest) -> Result<(), Error> {
    read_documents::<Zipkin>(reader, ing)
}

/// An array of spans, or of traces (arrays of spans), read span by span.
/// Pieces of one span may be anywhere in an array of spans, so its spans are
/// held (small: see [`Tags`]) until it ends; a trace's, until the trace ends.
struct Zipkin;

impl Document for Zipkin {
    const WHAT: &'static str = "Zipkin JSON";
    fn parse<'de, D: Deserializer<'de>>(ctx: &mut Ctx<'_>, de: D) -> Result<(), D::Error> {
        de.deserialize_any(Doc { ctx })
    }
}

const WRONG_SHAPE: &str = "Zipkin v2 JSON must be an array of spans (or of traces)";

struct Doc<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
}

impl<'de> Visitor<'de> for Doc<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of Zipkin spans")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let mut spans = Vec::new();
        let mut k = 0;
        while seq.next_element_seed(Item { ctx: &mut *ctx, spans: &mut spans, k })?.is_some() {
            k += 1;
        }
        let r = push_spans(ctx.ing, spans, ctx.line);
        ctx.check(r)
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(self.ctx.bad_data(WRONG_SHAPE))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(self.ctx.bad_data(WRONG_SHAPE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(self.ctx.bad_data(WRONG_SHAPE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(self.ctx.bad_data(WRONG_SHAPE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(self.ctx.bad_data(WRONG_SHAPE))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(self.ctx.bad_data(WRONG_SHAPE))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(self.ctx.bad_data(WRONG_SHAPE))
    }
}

/// Element `k` of the document: a span, or a trace (an array of spans).
struct Item<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    spans: &'c mut Vec<ZSpan>,
    k: usize,
}

impl<'de> DeserializeSeed<'de> for Item<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.ctx.pos.start_record();
        d.deserialize_any(self)
    }
}

impl Item<'_, '_> {
    fn span<E: de::Error>(self, value: Value) -> Result<(), E> {
        let r = parse(self.ctx, value, self.k, self.spans);
        self.ctx.check(r)
    }
}

impl<'de> Visitor<'de> for Item<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Zipkin span or trace")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        let mut trace = Vec::new();
        let mut j = 0;
        while let Some(value) = seq.next_element_seed(Record(ctx.pos))? {
            let r = parse(ctx, value, self.k * 1_000_000 + j, &mut trace);
            ctx.check(r)?;
            j += 1;
        }
        let r = push_spans(ctx.ing, trace, ctx.line);
        ctx.check(r)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let value = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        self.span(value)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.span(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.span(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.span(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.span(Value::from(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.span(Value::from(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.span(Value::Null)
    }
}

/// Span `k` of the document, into `spans`.
fn parse(ctx: &mut Ctx<'_>, value: Value, k: usize, spans: &mut Vec<ZSpan>) -> Result<(), Error> {
    ctx.ing.saw_records(1);
    match ZSpan::deserialize(value) {
        Ok(s) => spans.push(s),
        Err(e) => ctx.ing.bad_record(ctx.line, format!("span {k}: {e}"))?,
    }
    Ok(())
}

fn push_spans(ing: &mut Ingest, raw: Vec<ZSpan>, line: u64) -> Result<(), Error> {
    // Group records of one span id, in input order.
    let mut order: Vec<(String, String)> = Vec::new();
    let mut groups: HashMap<(String, String), Vec<ZSpan>> = HashMap::new();
    for s in raw {
        let key = (s.trace_id.to_ascii_lowercase(), s.id.to_ascii_lowercase());
        let group = groups.entry(key.clone()).or_default();
        if group.is_empty() {
            order.push(key);
        }
        group.push(s);
    }
    let mut out: Vec<(ZSpan, Option<u64>)> = Vec::new(); // span, new id for a server half
    let mut server_ids: HashMap<(String, String), u64> = HashMap::new();
    let mut dropped_parent: HashMap<(String, String), Option<String>> = HashMap::new();
    for key in order {
        let records = groups.remove(&key).expect("grouped above");
        // Merge pieces of the same side: same service, at most one kind.
        let mut sides: Vec<ZSpan> = Vec::new();
        for r in records {
            let same = sides
                .iter_mut()
                .find(|s| s.service() == r.service() && (s.kind.is_none() || r.kind.is_none() || s.kind == r.kind));
            match same {
                Some(s) => {
                    if s.timestamp.is_none() || r.timestamp.is_none() {
                        ing.defect(DefectKind::MissingTimestamp, line, || {
                            format!("span {} reported without timestamp", key.1)
                        })?;
                    } else if s.same_span(&r) {
                        ing.defect(DefectKind::DuplicateRecord, line, || format!("span {} reported twice", key.1))?;
                    } else {
                        ing.defect(DefectKind::DuplicateSpanId, line, || {
                            format!("two different spans with id {}", key.1)
                        })?;
                    }
                    s.absorb(r);
                }
                None => sides.push(r),
            }
        }
        let mut kept: Vec<ZSpan> = Vec::new();
        let mut lost_parent = None;
        for mut s in sides {
            if s.timestamp.is_none() {
                s.timestamp = s.annotations.iter().filter_map(|a| a.timestamp).min();
                if s.timestamp.is_none() {
                    ing.defect(DefectKind::MissingTimestamp, line, || format!("span {} has no timestamp", key.1))?;
                    lost_parent = Some(s.parent_id.clone());
                    continue;
                }
                ing.defect(DefectKind::MissingTimestamp, line, || format!("span {} timed by its annotations", key.1))?;
            }
            kept.push(s);
        }
        if let (true, Some(parent)) = (kept.is_empty(), lost_parent) {
            dropped_parent.insert(key.clone(), parent);
        }
        if kept.len() >= 2 && kept.iter().any(ZSpan::is_server) && kept.iter().any(|s| !s.is_server()) {
            ing.defect(DefectKind::SharedSpanId, line, || format!("client and server share span id {}", key.1))?;
            let server_id = hash64(format!("{}/{}/server", key.0, key.1).as_bytes());
            server_ids.insert(key.clone(), server_id);
            for s in kept {
                let id = s.is_server().then_some(server_id);
                out.push((s, id));
            }
        } else {
            out.extend(kept.into_iter().map(|s| (s, None)));
        }
    }
    for (s, new_id) in out {
        push_one(ing, s, new_id, &server_ids, &dropped_parent, line)?;
    }
    Ok(())
}

fn push_one(
    ing: &mut Ingest,
    s: ZSpan,
    new_id: Option<u64>,
    server_ids: &HashMap<(String, String), u64>,
    dropped: &HashMap<(String, String), Option<String>>,
    line: u64,
) -> Result<(), Error> {
    let Some(trace_id) = TraceId::from_hex(&s.trace_id) else {
        return ing.bad_record(line, format!("traceId `{}` is not hex", truncate(&s.trace_id, 40)));
    };
    let Some(own_id) = SpanId::from_hex(&s.id) else {
        return ing.bad_record(line, format!("id `{}` is not hex", truncate(&s.id, 40)));
    };
    let trace_key = s.trace_id.to_ascii_lowercase();
    let (span_id, parent_id) = if let Some(server) = new_id {
        // The server half of a shared span: its parent is the client half.
        (SpanId(server), own_id)
    } else {
        // Walk past parents that were dropped for lack of a timestamp.
        let mut parent = s.parent_id.clone().map(|p| p.to_ascii_lowercase());
        let mut hops = 0;
        while let Some(p) = parent.clone() {
            match dropped.get(&(trace_key.clone(), p.clone())) {
                Some(up) if hops < 64 => {
                    parent = up.clone().map(|u| u.to_ascii_lowercase());
                    hops += 1;
                }
                _ => break,
            }
        }
        let parent_id = match parent.as_deref() {
            None | Some("") => SpanId(0),
            Some(p) => match server_ids.get(&(trace_key.clone(), p.to_string())) {
                // Children of a shared id were made by its server half.
                Some(&server) if !s.is_server() || s.id.to_ascii_lowercase() != p => SpanId(server),
                _ => match SpanId::from_hex(p) {
                    Some(id) => id,
                    None => {
                        return ing.bad_record(line, format!("parentId `{}` is not hex", truncate(p, 40)));
                    }
                },
            },
        };
        (own_id, parent_id)
    };
    let service = match s.service() {
        Some(name) => ing.names.intern(name),
        None => {
            ing.defect(DefectKind::MissingService, line, || format!("span {own_id} has no localEndpoint"))?;
            ing.names.intern("unknown")
        }
    };
    let kind = match s.kind.as_deref() {
        Some(k) => SpanKind::parse(k),
        None => SpanKind::Internal,
    };
    let remote = match s.remote.as_ref().and_then(|e| e.service_name.as_deref()) {
        Some(r) if !r.is_empty() => ing.names.intern(r),
        _ => Sym::EMPTY,
    };
    let mut span_flags = 0;
    if s.tags.error {
        span_flags |= flags::ERROR;
    }
    if matches!(kind, SpanKind::Producer | SpanKind::Consumer) {
        span_flags |= flags::FOLLOWS_FROM;
    }
    let protocol = if s.tags.http {
        ing.names.intern("http")
    } else if s.tags.grpc {
        ing.names.intern("grpc")
    } else {
        Sym::EMPTY
    };
    let operation = ing.names.intern(s.name.as_deref().unwrap_or(""));
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
        start_ns: s.timestamp.unwrap_or(0).saturating_mul(1_000),
        duration_ns: s.duration.unwrap_or(0).saturating_mul(1_000),
        caller_duration_ns: None,
        request_bytes: None,
        response_bytes: None,
        origin: ing.origin(line),
    })
}
