//! OTLP protobuf, encoded by hand: the few messages a trace export needs.
//!
//! Field numbers are those of `opentelemetry/proto/collector/trace/v1/
//! trace_service.proto`, `trace/v1/trace.proto`, `resource/v1/resource.proto`
//! and `common/v1/common.proto`. Fields holding their default value are left
//! out, as protobuf encoders do. A nested message is encoded in place and
//! its length prefix inserted in front of it afterwards, which moves each
//! byte once per level of nesting (five levels) — cheap next to a network
//! round trip, and no size pre-pass to keep in step with the encoder.

use super::{AttrValue, SpanRecord};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

// ExportTraceServiceRequest
const REQUEST_RESOURCE_SPANS: u32 = 1;
// ResourceSpans
const RESOURCE_SPANS_RESOURCE: u32 = 1;
const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
// Resource
const RESOURCE_ATTRIBUTES: u32 = 1;
// KeyValue
const KEY_VALUE_KEY: u32 = 1;
const KEY_VALUE_VALUE: u32 = 2;
// AnyValue
const ANY_VALUE_STRING: u32 = 1;
const ANY_VALUE_INT: u32 = 3;
// ScopeSpans
const SCOPE_SPANS_SCOPE: u32 = 1;
const SCOPE_SPANS_SPANS: u32 = 2;
// InstrumentationScope
const SCOPE_NAME: u32 = 1;
// Span
const SPAN_TRACE_ID: u32 = 1;
const SPAN_SPAN_ID: u32 = 2;
const SPAN_PARENT_SPAN_ID: u32 = 4;
const SPAN_NAME: u32 = 5;
const SPAN_KIND: u32 = 6;
const SPAN_START: u32 = 7;
const SPAN_END: u32 = 8;
const SPAN_ATTRIBUTES: u32 = 9;
const SPAN_STATUS: u32 = 15;
// Status
const STATUS_MESSAGE: u32 = 2;
const STATUS_CODE: u32 = 3;
const STATUS_CODE_ERROR: u64 = 2;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, u64::from(field) << 3 | u64::from(wire));
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(out, field, VARINT);
        varint(out, v);
    }
}

fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(out, field, FIXED64);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Field `field` holding the message `body` writes.
fn message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, LEN);
    let start = out.len();
    body(out);
    let mut prefix = Vec::with_capacity(10);
    varint(&mut prefix, (out.len() - start) as u64);
    out.splice(start..start, prefix);
}

fn string_attribute(out: &mut Vec<u8>, field: u32, k: &str, v: &str) {
    message(out, field, |out| {
        bytes(out, KEY_VALUE_KEY, k.as_bytes());
        message(out, KEY_VALUE_VALUE, |out| bytes(out, ANY_VALUE_STRING, v.as_bytes()));
    });
}

/// Appends one `ExportTraceServiceRequest` holding `spans`, which are sorted
/// by service and instance: one `ResourceSpans` per run of them.
pub fn request(spans: &[SpanRecord], out: &mut Vec<u8>) {
    for group in spans.chunk_by(|a, b| a.service == b.service && a.instance == b.instance) {
        message(out, REQUEST_RESOURCE_SPANS, |out| {
            message(out, RESOURCE_SPANS_RESOURCE, |out| {
                string_attribute(out, RESOURCE_ATTRIBUTES, "service.name", &group[0].service);
                if let Some(id) = &group[0].instance {
                    string_attribute(out, RESOURCE_ATTRIBUTES, "service.instance.id", id);
                }
            });
            message(out, RESOURCE_SPANS_SCOPE_SPANS, |out| {
                message(out, SCOPE_SPANS_SCOPE, |out| bytes(out, SCOPE_NAME, b"palette"));
                for s in group {
                    message(out, SCOPE_SPANS_SPANS, |out| span(s, out));
                }
            });
        });
    }
}

fn span(s: &SpanRecord, out: &mut Vec<u8>) {
    bytes(out, SPAN_TRACE_ID, &s.trace_id);
    bytes(out, SPAN_SPAN_ID, &s.span_id);
    if s.parent_span_id != [0; 8] {
        bytes(out, SPAN_PARENT_SPAN_ID, &s.parent_span_id);
    }
    if !s.name.is_empty() {
        bytes(out, SPAN_NAME, s.name.as_bytes());
    }
    uint(out, SPAN_KIND, s.kind as u64);
    fixed64(out, SPAN_START, s.start_unix_ns);
    fixed64(out, SPAN_END, s.end_unix_ns);
    for (k, v) in &s.attributes {
        match v {
            AttrValue::Str(v) => string_attribute(out, SPAN_ATTRIBUTES, k, v),
            AttrValue::Int(v) => message(out, SPAN_ATTRIBUTES, |out| {
                bytes(out, KEY_VALUE_KEY, k.as_bytes());
                // int64: negative values are their two's complement, ten bytes.
                message(out, KEY_VALUE_VALUE, |out| {
                    key(out, ANY_VALUE_INT, VARINT);
                    varint(out, *v as u64);
                });
            }),
        }
    }
    if let Some(m) = &s.error {
        message(out, SPAN_STATUS, |out| {
            if !m.is_empty() {
                bytes(out, STATUS_MESSAGE, m.as_bytes());
            }
            uint(out, STATUS_CODE, STATUS_CODE_ERROR);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::Kind;

    #[test]
    fn varints_are_little_endian_base_128() {
        let enc = |v| {
            let mut b = Vec::new();
            varint(&mut b, v);
            b
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(1), [1]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(u64::MAX), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    }

    #[test]
    fn nested_lengths_prefix_their_messages() {
        let mut b = Vec::new();
        message(&mut b, 1, |out| message(out, 2, |out| bytes(out, 1, &[7; 200])));
        // field 1 LEN, length 206 = 2 + 1 + 200 + key and length of the inner.
        assert_eq!(&b[..3], [0x0a, 0xce, 0x01]);
        assert_eq!(&b[3..6], [0x12, 0xcb, 0x01]);
        assert_eq!(&b[6..9], [0x0a, 0xc8, 0x01]);
        assert_eq!(b.len(), 9 + 200);
    }

    #[test]
    fn a_span_encodes_its_fields_in_order() {
        let s = SpanRecord {
            service: "svc".into(),
            instance: None,
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: [0; 8],
            name: "op".into(),
            kind: Kind::Client,
            start_unix_ns: 5,
            end_unix_ns: 6,
            error: Some("x".into()),
            attributes: vec![],
        };
        let mut b = Vec::new();
        span(&s, &mut b);
        let mut want = vec![0x0a, 16];
        want.extend([1; 16]);
        want.extend([0x12, 8]);
        want.extend([2; 8]);
        want.extend([0x2a, 2, b'o', b'p', 0x30, 3, 0x39, 5, 0, 0, 0, 0, 0, 0, 0, 0x41, 6, 0, 0, 0, 0, 0, 0, 0]);
        want.extend([0x7a, 5, 0x12, 1, b'x', 0x18, 2]);
        assert_eq!(b, want);
    }
}
