//! OTLP/JSON, as the OpenTelemetry collector's file exporter writes it.
//!
//! Ids are hex (the OTLP/JSON rule, not protobuf's base64), times and 64-bit
//! integers are decimal strings, enums are numbers, `parentSpanId` is left
//! out for roots and `status` is `{}` unless the span failed. Written by
//! hand with the trace crate's digit writers: export runs once per span.

use palette_trace::write::{push_hex, push_int};

use super::{AttrValue, SpanRecord};

/// Appends a JSON string literal.
fn push_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).expect("strings always serialise"));
    }
}

fn push_u64_str(out: &mut String, v: u64) {
    out.push('"');
    match i64::try_from(v) {
        Ok(v) => push_int(out, v),
        Err(_) => out.push_str(&v.to_string()),
    }
    out.push('"');
}

/// Appends one `ExportTraceServiceRequest` (no newline) holding `spans`,
/// which are sorted by service and instance: one resource per run of them.
pub fn request(spans: &[SpanRecord], out: &mut String) {
    out.push_str("{\"resourceSpans\":[");
    for (i, group) in spans.chunk_by(|a, b| a.service == b.service && a.instance == b.instance).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":");
        push_str(out, &group[0].service);
        if let Some(id) = &group[0].instance {
            out.push_str("}},{\"key\":\"service.instance.id\",\"value\":{\"stringValue\":");
            push_str(out, id);
        }
        out.push_str("}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"palette\"},\"spans\":[");
        for (k, s) in group.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            span(s, out);
        }
        out.push_str("]}]}");
    }
    out.push_str("]}");
}

fn span(s: &SpanRecord, out: &mut String) {
    out.push_str("{\"traceId\":\"");
    push_hex(out, u128::from_be_bytes(s.trace_id), 32);
    out.push_str("\",\"spanId\":\"");
    push_hex(out, u64::from_be_bytes(s.span_id) as u128, 16);
    out.push('"');
    if s.parent_span_id != [0; 8] {
        out.push_str(",\"parentSpanId\":\"");
        push_hex(out, u64::from_be_bytes(s.parent_span_id) as u128, 16);
        out.push('"');
    }
    out.push_str(",\"name\":");
    push_str(out, &s.name);
    out.push_str(",\"kind\":");
    push_int(out, s.kind as i64);
    out.push_str(",\"startTimeUnixNano\":");
    push_u64_str(out, s.start_unix_ns);
    out.push_str(",\"endTimeUnixNano\":");
    push_u64_str(out, s.end_unix_ns);
    if !s.attributes.is_empty() {
        out.push_str(",\"attributes\":[");
        for (i, (key, value)) in s.attributes.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"key\":");
            push_str(out, key);
            match value {
                AttrValue::Str(v) => {
                    out.push_str(",\"value\":{\"stringValue\":");
                    push_str(out, v);
                }
                AttrValue::Int(v) => {
                    out.push_str(",\"value\":{\"intValue\":\"");
                    push_int(out, *v);
                    out.push('"');
                }
            }
            out.push_str("}}");
        }
        out.push(']');
    }
    match &s.error {
        Some(message) => {
            out.push_str(",\"status\":{\"message\":");
            push_str(out, message);
            out.push_str(",\"code\":2}");
        }
        None => out.push_str(",\"status\":{}"),
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::Kind;

    fn record(service: &str, parent: u8, error: Option<&str>) -> SpanRecord {
        SpanRecord {
            service: service.into(),
            instance: None,
            trace_id: [0xab; 16],
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            parent_span_id: [0, 0, 0, 0, 0, 0, 0, parent],
            name: "GET /a\"b".into(),
            kind: Kind::Server,
            start_unix_ns: 1_700_000_000_000_000_000,
            end_unix_ns: u64::MAX,
            error: error.map(String::from),
            attributes: vec![("palette.state", AttrValue::Int(-3)), ("peer.service", AttrValue::Str("b".into()))],
        }
    }

    #[test]
    fn encodes_as_the_collector_does() {
        let mut out = String::new();
        request(&[record("a", 0, None), record("a", 9, Some("boom\n")), record("b", 0, None)], &mut out);
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let rs = doc["resourceSpans"].as_array().unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0]["resource"]["attributes"][0]["value"]["stringValue"], "a");
        assert_eq!(rs[1]["resource"]["attributes"][0]["value"]["stringValue"], "b");
        assert_eq!(rs[0]["scopeSpans"][0]["scope"]["name"], "palette");
        let spans = rs[0]["scopeSpans"][0]["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 2);
        let (root, child) = (&spans[0], &spans[1]);
        assert_eq!(root["traceId"], "abababababababababababababababab");
        assert_eq!(root["spanId"], "0102030405060708");
        assert!(root.get("parentSpanId").is_none(), "roots have no parentSpanId: {root}");
        assert_eq!(child["parentSpanId"], "0000000000000009");
        assert_eq!(root["name"], "GET /a\"b");
        assert_eq!(root["kind"], 2);
        assert_eq!(root["startTimeUnixNano"], "1700000000000000000");
        assert_eq!(root["endTimeUnixNano"], u64::MAX.to_string());
        assert_eq!(root["attributes"][0], serde_json::json!({"key": "palette.state", "value": {"intValue": "-3"}}));
        assert_eq!(root["attributes"][1], serde_json::json!({"key": "peer.service", "value": {"stringValue": "b"}}));
        assert_eq!(root["status"], serde_json::json!({}));
        assert_eq!(child["status"], serde_json::json!({"code": 2, "message": "boom\n"}));
    }
}
