//! Alibaba microservice CallGraph CSV, v2021 and v2022.
//!
//! v2021: `,traceid,timestamp,rpcid,um,rpctype,dm,interface,rt`
//! v2022: `timestamp,traceid,service,rpc_id,rpctype,um,uminstanceid,interface,dm,dminstanceid,rt`
//!
//! Columns are found by header name. Each row is a call from microservice
//! `um` to interface `interface` of `dm`; the API it executes is
//! `(dm, interface)`. The parent of rpc id `0.1.2` is `0.1`; `um = USER`
//! marks the root. Times are milliseconds (offsets from the dataset start).
//! v2021 logs rpc and http calls from both sides: the upstream row has the
//! caller-observed `rt`, the downstream row a negative `rt`; assembly merges
//! the two (the span ids are the same interned rpc id).

use std::io::BufRead;

use crate::defect::DefectKind;
use crate::error::Error;
use crate::format::csvheader::HeaderNames;
use crate::format::csvline::CsvLines;
use crate::format::{Ingest, row_too_long, truncate};
use crate::rpcid;
use crate::span::{Span, SpanId, SpanKind, Sym, TraceId, flags};

/// Column positions, found from the header.
struct Columns {
    traceid: usize,
    timestamp: usize,
    rpcid: usize,
    um: usize,
    dm: usize,
    interface: usize,
    rt: usize,
    rpctype: Option<usize>,
    /// Needed to tell a short row from a full one.
    width: usize,
}

impl Columns {
    fn from_header(header: &CsvLines<impl BufRead>) -> Result<Columns, String> {
        let names = HeaderNames::new(
            (0..header.len())
                .map(|i| header.field(i))
                .map(|c| String::from_utf8_lossy(c).trim().trim_matches('"').to_ascii_lowercase())
                .collect(),
        );
        let need = |alts: &[&str]| names.need(alts);
        Ok(Columns {
            traceid: need(&["traceid", "trace_id"])?,
            timestamp: need(&["timestamp"])?,
            rpcid: need(&["rpcid", "rpc_id"])?,
            um: need(&["um"])?,
            dm: need(&["dm"])?,
            interface: need(&["interface"])?,
            rt: need(&["rt"])?,
            rpctype: names.find(&["rpctype", "rpc_type"]),
            width: names.len(),
        })
    }
}

/// Alibaba's spellings of "no name".
fn is_unknown_name(s: &[u8]) -> bool {
    matches!(s, b"" | b"UNKNOWN" | b"unknown" | b"(?)" | b"?" | b"NAN" | b"NaN" | b"nan" | b"null" | b"NULL")
}

/// Interning with a one-entry cache per column: consecutive rows of a trace
/// often repeat names.
#[derive(Default)]
struct Cached {
    text: Vec<u8>,
    sym: Sym,
}

impl Cached {
    fn get(&mut self, ing: &mut Ingest, bytes: &[u8]) -> Sym {
        if self.sym != Sym::EMPTY && self.text == bytes {
            return self.sym;
        }
        self.sym = ing.names.intern_bytes(bytes);
        self.text.clear();
        self.text.extend_from_slice(bytes);
        self.sym
    }
}

fn parse_number(bytes: &[u8]) -> Option<f64> {
    // Integers (the common case) without a detour through UTF-8 and floats.
    if !bytes.is_empty() && bytes.len() < 19 {
        let (neg, digits) = match bytes[0] {
            b'-' => (true, &bytes[1..]),
            _ => (false, bytes),
        };
        if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
            let v = digits.iter().fold(0i64, |acc, &d| acc * 10 + (d - b'0') as i64);
            return Some(if neg { -v } else { v } as f64);
        }
    }
    let s = std::str::from_utf8(bytes).ok()?.trim();
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The span id of rpc id `path` (packed when short, else interned) and the
/// span id of its parent. The first time a long path is interned it is linked
/// (with any new ancestors) to its parent, here and for assembly's orphan
/// repair; afterwards its parent is a table lookup.
fn rpc_span_ids(ing: &mut Ingest, cache: &mut Cached, path: &[u8]) -> (SpanId, SpanId) {
    if let Some(id) = rpcid::pack(path) {
        return (id, ing.rpc_parents.parent(id));
    }
    let id = rpcid::interned(cache.get(ing, path));
    let parent = ing.rpc_parents.parent(id);
    // Linked before (the text may also have been interned as another name,
    // so an unlinked old symbol is linked now).
    if !parent.is_none() || !path.contains(&b'.') {
        return (id, parent);
    }
    let (mut child, mut path) = (id, path);
    while let Some(cut) = path.iter().rposition(|&b| b == b'.') {
        path = &path[..cut];
        if let Some(up) = rpcid::pack(path) {
            ing.rpc_link(child, up);
            break;
        }
        let up = rpcid::interned(ing.names.intern_bytes(path));
        let known = !ing.rpc_parents.parent(up).is_none() || !path.contains(&b'.');
        ing.rpc_link(child, up);
        if known {
            break;
        }
        child = up;
    }
    (id, ing.rpc_parents.parent(id))
}

/// `(dm, interface)` → (service, operation) symbols: one lookup per row
/// instead of two, since the pair repeats as often as either name.
#[derive(Default)]
struct ApiNames {
    pairs: rustc_hash::FxHashMap<Box<[u8]>, (Sym, Sym)>,
    /// `dm \0 interface`, reused.
    key: Vec<u8>,
}

impl ApiNames {
    fn get(&mut self, ing: &mut Ingest, dm: &[u8], iface: &[u8], unknown: Sym) -> (Sym, Sym) {
        self.key.clear();
        self.key.extend_from_slice(dm);
        self.key.push(0);
        self.key.extend_from_slice(iface);
        if let Some(&pair) = self.pairs.get(self.key.as_slice()) {
            return pair;
        }
        let mut name = |bytes: &[u8]| {
            if is_unknown_name(bytes) { unknown } else { ing.names.intern_bytes(bytes) }
        };
        let pair = (name(dm), name(iface));
        self.pairs.insert(self.key.as_slice().into(), pair);
        pair
    }
}

pub fn read(reader: Box<dyn BufRead + Send + '_>, ing: &mut Ingest) -> Result<(), Error> {
    let mut record = CsvLines::new(reader, ing.record_limit);
    let io_error = |ing: &Ingest, record: &CsvLines<_>, e: std::io::Error| {
        if record.too_long() {
            return ing.bad_data(record.line(), row_too_long(ing.record_limit));
        }
        crate::input::read_error(ing.path(), e)
    };
    if !record.next_record().map_err(|e| io_error(ing, &record, e))? {
        return Err(ing.bad_data(1, "the file is empty"));
    }
    let cols = Columns::from_header(&record).map_err(|m| ing.bad_data(1, m))?;
    let mut rows = Rows::new(cols, ing);
    while record.next_record().map_err(|e| io_error(ing, &record, e))? {
        rows.read(ing, &record)?;
    }
    Ok(())
}

/// Turns rows into spans, with the caches that carry from row to row.
struct Rows {
    cols: Columns,
    unknown: Sym,
    api_names: ApiNames,
    rpc_cache: Cached,
    type_cache: Cached,
    /// The last row's trace id text and its id: rows of a trace are adjacent.
    last_trace: (Vec<u8>, TraceId),
}

impl Rows {
    fn new(cols: Columns, ing: &mut Ingest) -> Rows {
        Rows {
            cols,
            unknown: ing.names.intern("unknown"),
            api_names: ApiNames::default(),
            rpc_cache: Cached::default(),
            type_cache: Cached::default(),
            last_trace: (Vec::new(), TraceId::default()),
        }
    }

    /// Pushes the span of the current row, or reports why the row is bad.
    fn read(&mut self, ing: &mut Ingest, record: &CsvLines<impl BufRead>) -> Result<(), Error> {
        let cols = &self.cols;
        let line = record.line();
        ing.saw_records(1);
        if record.len() < cols.width {
            if record.is_blank() {
                return Ok(());
            }
            let got = record.len();
            return ing.bad_record(line, format!("{got} fields where the header has {}", cols.width));
        }
        let field = |i: usize| record.field(i);
        let trace_text = field(cols.traceid);
        if trace_text.is_empty() {
            return ing.bad_record(line, "empty traceid".into());
        }
        if trace_text != self.last_trace.0.as_slice() {
            self.last_trace.0.clear();
            self.last_trace.0.extend_from_slice(trace_text);
            self.last_trace.1 = TraceId::from_text_bytes(trace_text);
        }
        let Some(ts_ms) = parse_number(field(cols.timestamp)) else {
            let v = truncate(&String::from_utf8_lossy(field(cols.timestamp)), 40);
            return ing.bad_record(line, format!("timestamp `{v}` is not a number of milliseconds"));
        };
        let Some(rt_ms) = parse_number(field(cols.rt)) else {
            let v = truncate(&String::from_utf8_lossy(field(cols.rt)), 40);
            return ing.bad_record(line, format!("rt `{v}` is not a number of milliseconds"));
        };
        let rpcid = field(cols.rpcid);
        if rpcid.is_empty() || !rpcid.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
            let v = truncate(&String::from_utf8_lossy(rpcid), 40);
            return ing.bad_record(line, format!("rpcid `{v}` is not a dotted number like 0.1.2"));
        }
        let um = field(cols.um);
        let (dm, iface) = (field(cols.dm), field(cols.interface));
        let (service, operation) = self.api_names.get(ing, dm, iface, self.unknown);
        name_defects(ing, line, um, dm, iface)?;
        let (span_id, parent) = rpc_span_ids(ing, &mut self.rpc_cache, rpcid);
        let parent_id = if um == b"USER" { SpanId(0) } else { parent };
        let protocol = match cols.rpctype {
            Some(c) if !field(c).is_empty() => self.type_cache.get(ing, field(c)),
            _ => Sym::EMPTY,
        };
        let mut span_flags = flags::RPC_PATH_IDS;
        if field(cols.rpctype.unwrap_or(cols.rt)).eq_ignore_ascii_case(b"mq") {
            span_flags |= flags::FOLLOWS_FROM;
        }
        let rt_ns = (rt_ms * 1e6).round() as i64;
        // A negative rt is the callee's own log of the call (v2021).
        let caller_duration_ns = (rt_ns >= 0).then_some(rt_ns);
        ing.push(Span {
            trace_id: self.last_trace.1,
            span_id,
            parent_id,
            service,
            operation,
            protocol,
            kind: SpanKind::Server,
            flags: span_flags,
            start_ns: (ts_ms * 1e6).round() as i64,
            duration_ns: rt_ns.saturating_abs(),
            caller_duration_ns,
            origin: ing.origin(line),
            ..Span::default()
        })
    }
}

/// Counts the defects a row's names show: unknown callee names, and a
/// service calling itself.
fn name_defects(ing: &mut Ingest, line: u64, um: &[u8], dm: &[u8], iface: &[u8]) -> Result<(), Error> {
    for name in [dm, iface] {
        if is_unknown_name(name) {
            let shown = String::from_utf8_lossy(name).into_owned();
            ing.defect(DefectKind::UnknownName, line, || format!("name `{shown}`"))?;
        }
    }
    if um == dm && !is_unknown_name(um) {
        ing.defect(DefectKind::SelfCall, line, || format!("{} calls itself", String::from_utf8_lossy(um)))?;
    }
    Ok(())
}
