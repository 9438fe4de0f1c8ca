//! The HTTP wire contract between services and the load generator: an
//! operation is served at `POST /op/{operation}`, the operation
//! percent-encoded so any traced name (spaces, slashes, `?`, non-ASCII)
//! round-trips through a request line.

/// Response header with the callee's own duration (its SERVER span): the
/// caller subtracts it from the latency it observed to get the call
/// overhead it must reproduce.
pub const SERVER_NS_HEADER: &str = "palette-server-ns";

/// Response header: how many calls the callee's execution made — its
/// outcome, which the caller's next choice may depend on (see
/// `palette_model::Execution::observe_outcome`).
pub const CALLS_HEADER: &str = "palette-calls";

/// Path prefix of operations.
pub const OP_PREFIX: &str = "/op/";

/// `/op/{operation}`, the operation percent-encoded.
pub fn op_path(operation: &str) -> String {
    let mut path = String::with_capacity(OP_PREFIX.len() + operation.len() * 3);
    path.push_str(OP_PREFIX);
    push_percent_encoded(&mut path, operation);
    path
}

/// RFC 3986 percent-encoding: unreserved characters kept, every other byte as `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_percent_encoded(&mut out, s);
    out
}

fn push_percent_encoded(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// Decodes `%XX` escapes (either case); `None` for a bad escape or bytes
/// that are not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_percent_encoded() {
        assert_eq!(percent_encode("GET /cart?x=1"), "GET%20%2Fcart%3Fx%3D1");
        assert_eq!(percent_encode("hipstershop.CartService/GetCart"), "hipstershop.CartService%2FGetCart");
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("é"), "%C3%A9");
        assert_eq!(op_path("GET /home"), "/op/GET%20%2Fhome");
        for s in ["GET /x y", "ünï/cødé", "%41", ""] {
            assert_eq!(percent_decode(&percent_encode(s)).as_deref(), Some(s));
        }
        assert_eq!(percent_decode("%c3%a9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
