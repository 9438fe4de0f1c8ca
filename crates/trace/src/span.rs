//! Canonical spans: the one shape every trace format is read into.

use rustc_hash::FxHashMap;
use std::fmt;

/// A 128-bit trace id. Shorter ids (Zipkin 64-bit, Jaeger unpadded) are
/// left-padded with zeros, as W3C trace-context does.
///
/// Stored as two halves rather than a `u128` so spans keep 8-byte alignment:
/// 16-byte alignment sends every span buffer down the allocator's slow path.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId {
    hi: u64,
    lo: u64,
}

/// A 64-bit span id. Zero means "none", as in W3C trace-context.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub u64);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.hi, self.lo)
    }
}
impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl TraceId {
    pub const fn new(id: u128) -> TraceId {
        TraceId { hi: (id >> 64) as u64, lo: id as u64 }
    }
    pub const fn as_u128(self) -> u128 {
        ((self.hi as u128) << 64) | self.lo as u128
    }
    /// Parses hex of up to 32 digits (longer ids keep their last 32 digits).
    pub fn from_hex(s: &str) -> Option<TraceId> {
        parse_hex(s.trim().as_bytes()).map(TraceId::new)
    }
    /// Parses hex, or else derives a stable id from the text (Alibaba and other
    /// datasets use ids that are not hex numbers).
    pub fn from_text(s: &str) -> TraceId {
        TraceId::from_text_bytes(s.trim().as_bytes())
    }
    /// [`TraceId::from_text`] on raw bytes.
    pub fn from_text_bytes(s: &[u8]) -> TraceId {
        parse_hex(s).map_or_else(|| TraceId::new(hash128(s)), TraceId::new)
    }
}

impl SpanId {
    /// Parses hex of up to 16 digits (longer ids keep their last 16 digits).
    pub fn from_hex(s: &str) -> Option<SpanId> {
        let s = s.trim().as_bytes();
        parse_hex(&s[s.len().saturating_sub(16)..]).map(|v| SpanId(v as u64))
    }
    pub fn is_none(self) -> bool {
        self.0 == 0
    }
}

/// Hex digit values; 0xFF for anything else.
const HEX: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Parses up to the last 32 hex digits of `s`; `None` if empty or not hex.
fn parse_hex(s: &[u8]) -> Option<u128> {
    if s.is_empty() {
        return None;
    }
    let (head, tail) = s.split_at(s.len().saturating_sub(32));
    let mut v: u128 = 0;
    let mut bad = 0u8;
    for &b in tail {
        let d = HEX[b as usize];
        bad |= d;
        v = (v << 4) | (d & 0x0F) as u128;
    }
    // Digits beyond the last 32 must still be hex.
    for &b in head {
        bad |= HEX[b as usize];
    }
    (bad & 0xF0 == 0).then_some(v)
}

/// FNV-1a over 128 bits, then a finaliser: stable across runs and platforms,
/// which keeps derived ids (and so every output) deterministic.
pub fn hash128(bytes: &[u8]) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for &b in bytes {
        h ^= b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h ^ (h >> 67)
}

/// Stable 64-bit hash for derived span ids; never zero.
pub fn hash64(bytes: &[u8]) -> u64 {
    let h = hash128(bytes);
    ((h >> 64) as u64 ^ h as u64).max(1)
}

/// What a span records, as OpenTelemetry names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum SpanKind {
    #[default]
    Unknown,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    /// Client-side kinds: the caller's record of an outgoing call.
    pub fn is_caller_side(self) -> bool {
        matches!(self, SpanKind::Client | SpanKind::Producer)
    }
    pub fn parse(s: &str) -> SpanKind {
        let s = s.trim();
        let s = s.strip_prefix("SPAN_KIND_").unwrap_or(s);
        match s.to_ascii_lowercase().as_str() {
            "server" | "2" => SpanKind::Server,
            "client" | "3" => SpanKind::Client,
            "producer" | "4" => SpanKind::Producer,
            "consumer" | "5" => SpanKind::Consumer,
            "internal" | "1" => SpanKind::Internal,
            _ => SpanKind::Unknown,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unknown => "unknown",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }
}

/// An interned string. `Sym(0)` is the empty string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug)]
pub struct Sym(pub u32);

impl Sym {
    pub const EMPTY: Sym = Sym(0);
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Interns service, operation and other repeated names, so spans stay small
/// and comparisons are integer compares.
#[derive(Clone, Debug)]
pub struct Interner {
    /// Lookup from the bytes as read to symbol, so readers need not
    /// validate UTF-8 on every row.
    ids: FxHashMap<Box<[u8]>, Sym>,
    /// The text of each symbol, indexed by `Sym.0`.
    names: Vec<Box<str>>,
}

impl Default for Interner {
    fn default() -> Self {
        let mut i = Interner { ids: FxHashMap::default(), names: Vec::new() };
        i.intern("");
        i
    }
}

impl Interner {
    /// An interner whose first symbols are `names`, in order (`Sym(1)` is
    /// `names[0]`, duplicates aside): symbols known before reading starts.
    pub fn with_names(names: &[String]) -> Interner {
        let mut i = Interner::default();
        for n in names {
            i.intern(n);
        }
        i
    }

    pub fn intern(&mut self, s: &str) -> Sym {
        self.intern_bytes(s.as_bytes())
    }
    /// Interns raw bytes; invalid UTF-8 is stored with replacement characters.
    pub fn intern_bytes(&mut self, s: &[u8]) -> Sym {
        if let Some(&sym) = self.ids.get(s) {
            return sym;
        }
        let sym = Sym(self.names.len() as u32);
        self.names.push(String::from_utf8_lossy(s).into());
        self.ids.insert(s.into(), sym);
        sym
    }
    /// The symbol of `s`, if it was interned before.
    pub fn get(&self, s: &str) -> Option<Sym> {
        self.ids.get(s.as_bytes()).copied()
    }
    pub fn resolve(&self, sym: Sym) -> &str {
        &self.names[sym.0 as usize]
    }
    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.len() <= 1
    }
}

/// Where a span came from, for error messages: an index into the list of
/// input files, and the 1-based line (or record) number in that file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Origin {
    pub file: u32,
    /// Saturates at `u32::MAX`: 4 bytes here keep every span smaller.
    pub line: u32,
}

/// Bit flags of a [`Span`].
pub mod flags {
    /// The span recorded an error.
    pub const ERROR: u8 = 1;
    /// The link to the parent is FOLLOWS_FROM (or a messaging hop): the
    /// parent does not wait for it.
    pub const FOLLOWS_FROM: u8 = 2;
    /// Span ids are interned Alibaba rpc ids (`0.1.2` → parent `0.1`), so a
    /// missing parent can be repaired by walking up the rpc id.
    pub const RPC_PATH_IDS: u8 = 4;
    /// The parent was missing and has been replaced by the nearest recorded
    /// ancestor (or none); assembly counts it as an orphan.
    pub const ORPHAN: u8 = 8;
}

/// One canonical span.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Span {
    /// Groups spans into traces.
    pub trace_id: TraceId,
    /// Unique within the trace (after repair).
    pub span_id: SpanId,
    /// The calling span; `SpanId(0)` for a root.
    pub parent_id: SpanId,
    /// Service that recorded the span (the partition of the API).
    pub service: Sym,
    /// Operation (endpoint, method, interface) name.
    pub operation: Sym,
    /// The peer a caller-side span names (Zipkin remoteEndpoint,
    /// `peer.service`): the callee when it recorded no span of its own.
    pub remote_service: Sym,
    /// Transport or call type when the trace says (http, grpc, rpc, db, mq…).
    pub protocol: Sym,
    pub kind: SpanKind,
    /// See [`flags`].
    pub flags: u8,
    /// Start time, nanoseconds (Unix epoch, or the dataset's own offset).
    pub start_ns: i64,
    /// Duration in nanoseconds; negative values are repaired on assembly.
    pub duration_ns: i64,
    /// Caller-observed latency of the call into this span when the same
    /// record carries it (Alibaba v2021 logs the call from both sides).
    pub caller_duration_ns: Option<i64>,
    pub request_bytes: Option<u32>,
    pub response_bytes: Option<u32>,
    /// Where the span was read, for error messages.
    pub origin: Origin,
}

impl Span {
    pub fn end_ns(&self) -> i64 {
        self.start_ns.saturating_add(self.duration_ns)
    }
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
    pub fn is_error(&self) -> bool {
        self.has(flags::ERROR)
    }
}

/// An API vertex: the (service, operation) pair whose execution a span records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Api {
    pub service: Sym,
    pub operation: Sym,
}

impl Api {
    pub fn display<'a>(&self, names: &'a Interner) -> ApiDisplay<'a> {
        ApiDisplay { service: names.resolve(self.service), operation: names.resolve(self.operation) }
    }
}

/// `service/operation`, for humans.
pub struct ApiDisplay<'a> {
    pub service: &'a str,
    pub operation: &'a str,
}

impl fmt::Display for ApiDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.service, self.operation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_pad_and_truncate() {
        assert_eq!(TraceId::from_hex("1a").unwrap().as_u128(), 0x1a);
        assert_eq!(TraceId::from_hex("xyz"), None);
        assert_eq!(SpanId::from_hex("00000000000000ff").unwrap().0, 255);
        assert_ne!(TraceId::from_text("not-hex"), TraceId::from_text("not-hex2"));
        assert_eq!(TraceId::from_text("not-hex"), TraceId::from_text("not-hex"));
    }

    #[test]
    fn interner_round_trips() {
        let mut i = Interner::default();
        let a = i.intern("frontend");
        assert_eq!(i.intern("frontend"), a);
        assert_eq!(i.resolve(a), "frontend");
        assert_eq!(i.resolve(Sym::EMPTY), "");
    }
}
