//! The request context on the wire: W3C Trace Context (`traceparent`,
//! `tracestate`) and W3C Baggage carrying Palette's causal context.
//!
//! A request without a valid `traceparent` starts a new trace (a malformed
//! one is not an error: W3C asks receivers to restart the trace). Any client
//! that speaks W3C Trace Context — an OpenTelemetry SDK, a proxy — can start
//! the trace, and the system's spans join it. `baggage` carries
//! `palette.root`, `palette.caller` (API indices into the model) and `palette.depth` (calls from the root); other members
//! are passed on, within the size bound.

use std::sync::atomic::{AtomicU64, Ordering};

use palette_model::ApiId;

/// `traceparent`: which trace a request belongs to and which span called it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    /// The caller's span (a CLIENT span, or the span of an outside client).
    pub parent_id: [u8; 8],
    /// Bit 0: sampled.
    pub flags: u8,
}

impl TraceParent {
    /// Parses a header value; `None` when it is malformed (the request then
    /// starts a new trace). Version `00` must be exactly 55 characters;
    /// later versions may append fields after a `-`, which are ignored, as
    /// the specification asks; version `ff` is invalid.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let v = value.trim_matches([' ', '\t']).as_bytes();
        if v.len() < 55 {
            return None;
        }
        let version = hex_byte(&v[0..2])?;
        if version == 0xff || (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
            return None;
        }
        if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, b) in trace_id.iter_mut().enumerate() {
            *b = hex_byte(&v[3 + 2 * i..5 + 2 * i])?;
        }
        let mut parent_id = [0u8; 8];
        for (i, b) in parent_id.iter_mut().enumerate() {
            *b = hex_byte(&v[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&v[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent { trace_id, parent_id, flags })
    }

    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The header value, version `00` (the only version this writes).
    pub fn format(&self) -> String {
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        push_hex(&mut s, &self.trace_id);
        s.push('-');
        push_hex(&mut s, &self.parent_id);
        s.push('-');
        push_hex(&mut s, &[self.flags]);
        s
    }
}

/// Two lower-case hex digits (the specification forbids upper case).
fn hex_byte(b: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(b[0])? << 4 | digit(b[1])?)
}

/// Appends lower-case hex.
pub fn push_hex(s: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
}

/// Longest `tracestate` passed on: W3C asks vendors to propagate at least
/// 512 characters and lets them cut entries beyond that.
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// Most `tracestate` list members (the specification's limit).
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// The `tracestate` to pass on: whole list members, in order, while they fit
/// in [`MAX_TRACESTATE_BYTES`] and 32 members; `None` when nothing is left or
/// the value holds characters a header cannot carry.
pub fn bound_tracestate(value: &str) -> Option<String> {
    if !value.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t') {
        return None;
    }
    let mut out = String::new();
    let members = value.split(',').map(|m| m.trim_matches([' ', '\t'])).filter(|m| !m.is_empty());
    for m in members.take(MAX_TRACESTATE_MEMBERS) {
        let extra = m.len() + usize::from(!out.is_empty());
        if out.len() + extra > MAX_TRACESTATE_BYTES {
            break;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(m);
    }
    (!out.is_empty()).then_some(out)
}

/// Palette's members of `baggage`, and everyone else's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Baggage {
    /// The root API of the request (absent: this request is the root).
    pub root: Option<ApiId>,
    /// The API that made this call (absent: an outside client).
    pub caller: Option<ApiId>,
    /// Calls between the root and this request (0: the root).
    pub depth: u32,
    /// Other list members, verbatim and in order, so context that other
    /// tools put in baggage survives the trip through the system.
    pub other: Vec<String>,
}

/// Why a `baggage` header is refused (400).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BaggageError {
    #[error("baggage of {bytes} bytes exceeds the limit of {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("baggage member `{key}` has the bad value `{value}` (expected a number)")]
    BadValue { key: &'static str, value: String },
    #[error("baggage holds characters a header cannot carry")]
    BadCharacters,
}

/// Room kept for Palette's own members when other members are bounded:
/// four keys with the largest `u32` values take 99 bytes.
const OWN_MEMBERS_BYTES: usize = 100;

impl Baggage {
    /// Parses a `baggage` value (several headers joined with `,`). Members
    /// without `=` are dropped (the specification says they are invalid);
    /// Palette's members must hold numbers; the whole value must fit
    /// `max_bytes`.
    pub fn parse(value: &str, max_bytes: usize) -> Result<Baggage, BaggageError> {
        if value.len() > max_bytes {
            return Err(BaggageError::TooLarge { bytes: value.len(), max: max_bytes });
        }
        if !value.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t') {
            return Err(BaggageError::BadCharacters);
        }
        let mut b = Baggage::default();
        for member in value.split(',').map(|m| m.trim_matches([' ', '\t'])).filter(|m| !m.is_empty()) {
            let Some((key, rest)) = member.split_once('=') else { continue };
            let key = key.trim_matches([' ', '\t']);
            let own: Option<&'static str> = match key {
                "palette.root" => Some("palette.root"),
                "palette.caller" => Some("palette.caller"),
                "palette.depth" => Some("palette.depth"),
                _ => None,
            };
            let Some(key) = own else {
                b.other.push(member.to_string());
                continue;
            };
            // Properties after `;` carry nothing Palette reads.
            let raw = rest.split(';').next().unwrap_or("").trim_matches([' ', '\t']);
            let n: u32 = raw.parse().map_err(|_| BaggageError::BadValue { key, value: raw.to_string() })?;
            match key {
                "palette.root" => b.root = Some(n),
                "palette.caller" => b.caller = Some(n),
                _ => b.depth = n,
            }
        }
        Ok(b)
    }

    /// The other members as one `,`-led tail, as many (in order) as fit in
    /// `max_bytes` beside Palette's own members; computed once per request
    /// and appended to every call's baggage.
    pub fn other_tail(&self, max_bytes: usize) -> String {
        let room = max_bytes.saturating_sub(OWN_MEMBERS_BYTES);
        let mut tail = String::new();
        for m in &self.other {
            if tail.len() + 1 + m.len() > room {
                break;
            }
            tail.push(',');
            tail.push_str(m);
        }
        tail
    }

    /// The `baggage` value of a call: Palette's members, then `tail` (from
    /// [`Baggage::other_tail`]). Palette's members are never dropped: they
    /// are what the callee's behaviour is conditioned on.
    pub fn format(root: ApiId, caller: ApiId, depth: u32, tail: &str) -> String {
        use std::fmt::Write;
        let mut s = String::with_capacity(80 + tail.len());
        let _ = write!(s, "palette.root={root},palette.caller={caller}");
        let _ = write!(s, ",palette.depth={depth}");
        s.push_str(tail);
        s
    }
}

/// Random, unique ids for spans and traces: a process-wide counter through
/// a SplitMix64 finaliser, seeded from the clock and the process id. Ids
/// need to be unique, not reproducible (W3C asks for randomness in them).
pub struct Ids;

static ID_STATE: AtomicU64 = AtomicU64::new(0);

fn id_seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        mix(t ^ (u64::from(std::process::id()) << 32))
    })
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^ (z >> 31)
}

impl Ids {
    fn next() -> u64 {
        loop {
            let v = mix(id_seed() ^ ID_STATE.fetch_add(0x9E3779B97F4A7C15, Ordering::Relaxed));
            if v != 0 {
                return v;
            }
        }
    }

    /// A new span id (never all zero).
    pub fn span_id() -> [u8; 8] {
        Ids::next().to_be_bytes()
    }

    /// A new trace id (never all zero).
    pub fn trace_id() -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&Ids::next().to_be_bytes());
        id[8..].copy_from_slice(&Ids::next().to_be_bytes());
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trips() {
        let tp = TraceParent::parse(TP).unwrap();
        assert_eq!(tp.trace_id[0], 0x4b);
        assert_eq!(tp.parent_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert!(tp.sampled());
        assert_eq!(tp.format(), TP);
        let unsampled = TraceParent::parse(&TP.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
        // Whitespace around the value is allowed.
        assert!(TraceParent::parse(&format!(" {TP}\t")).is_some());
    }

    #[test]
    fn malformed_traceparents_start_new_traces() {
        let bad = [
            "",
            "00",
            &TP.to_uppercase(),
            &TP.replace("4bf92f3577b34da6a3ce929d0e0e4736", "00000000000000000000000000000000"),
            &TP.replace("00f067aa0ba902b7", "0000000000000000"),
            &TP.replacen("00-", "ff-", 1),
            &format!("{TP}-extra"), // version 00 has no more fields
            &TP.replace('-', "_"),
            &TP.replace("0e4736", "0e473g"),
            &TP[..54],
        ];
        for b in bad {
            assert_eq!(TraceParent::parse(b), None, "{b:?}");
        }
        // A later version may carry more fields after a dash.
        let future = format!("{}{}-whatever", "01", &TP[2..]);
        assert!(TraceParent::parse(&future).is_some());
        assert!(TraceParent::parse(&format!("{}{}x", "01", &TP[2..])).is_none());
    }

    #[test]
    fn tracestate_is_bounded_at_member_boundaries() {
        assert_eq!(
            bound_tracestate("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE").as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        let long: Vec<String> = (0..40).map(|i| format!("k{i}={}", "v".repeat(20))).collect();
        let kept = bound_tracestate(&long.join(",")).unwrap();
        assert!(kept.len() <= MAX_TRACESTATE_BYTES);
        assert!(kept.starts_with("k0=") && kept.split(',').count() == 20, "{kept}");
        assert_eq!(bound_tracestate(" , "), None);
        assert_eq!(bound_tracestate("a=\u{e9}"), None);
    }

    #[test]
    fn baggage_carries_palette_members_and_keeps_others() {
        let b = Baggage::parse("userId=alice, palette.root=3,palette.caller = 5;p=1,palette.depth=4,x", 8192).unwrap();
        assert_eq!((b.root, b.caller, b.depth), (Some(3), Some(5), 4));
        assert_eq!(b.other, ["userId=alice"]);
        let tail = b.other_tail(8192);
        assert_eq!(tail, ",userId=alice");
        let out = Baggage::format(3, 7, 5, &tail);
        assert_eq!(out, "palette.root=3,palette.caller=7,palette.depth=5,userId=alice");
        let again = Baggage::parse(&out, 8192).unwrap();
        assert_eq!((again.root, again.caller, again.depth), (Some(3), Some(7), 5));
        assert_eq!(Baggage::parse("", 10).unwrap(), Baggage::default());
    }

    #[test]
    fn bad_baggage_is_refused() {
        assert_eq!(
            Baggage::parse("palette.caller=x", 100),
            Err(BaggageError::BadValue { key: "palette.caller", value: "x".into() })
        );
        assert!(matches!(Baggage::parse("palette.depth=-1", 100), Err(BaggageError::BadValue { .. })));
        assert_eq!(Baggage::parse(&"a=b,".repeat(10), 20), Err(BaggageError::TooLarge { bytes: 40, max: 20 }));
        assert_eq!(Baggage::parse("a=\u{1}", 100), Err(BaggageError::BadCharacters));
    }

    #[test]
    fn other_members_are_cut_to_the_bound() {
        let b =
            Baggage { other: (0..100).map(|i| format!("key{i}={}", "v".repeat(50))).collect(), ..Baggage::default() };
        let tail = b.other_tail(1024);
        let out = Baggage::format(u32::MAX, u32::MAX, u32::MAX, &tail);
        assert!(out.len() <= 1024, "{}", out.len());
        assert!(tail.starts_with(",key0="));
        assert!(Baggage::parse(&out, 1024).is_ok());
    }

    #[test]
    fn ids_are_nonzero_and_distinct() {
        let ids: std::collections::HashSet<[u8; 8]> = (0..10_000).map(|_| Ids::span_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(!ids.contains(&[0; 8]));
        assert_ne!(Ids::trace_id(), Ids::trace_id());
    }
}
