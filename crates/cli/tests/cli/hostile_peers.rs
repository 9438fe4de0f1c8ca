//! Hostile peers of `palette serve`: oversize and malformed HTTP/1.1
//! requests, request smuggling, a slowloris client, thousands of
//! connections, malformed trace context, and malformed gRPC frames. Each
//! case asserts the status (or that the connection is closed unanswered),
//! that the server still serves others afterwards, and, for trace context,
//! which trace the server's spans end up in.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palette_runtime::config::{RpcMode, SystemConfig};
use palette_runtime::synthetic::chain;
use serde_json::Value;

use crate::util::{Dir, free_ports};

/// A `palette serve --all` of a zero-work chain, killed if a test fails.
struct Server {
    child: Option<Child>,
    dir: Dir,
    ports: Vec<u16>,
}

impl Server {
    fn start(services: usize, edit: impl FnOnce(&mut SystemConfig)) -> Server {
        let base = free_ports(services as u16);
        let ports: Vec<u16> = (0..services as u16).map(|i| base + i).collect();
        let mut config = chain(&ports, &vec![0; services]);
        edit(&mut config);
        let dir = Dir::new();
        let system = dir.write("sys/system.json", config.to_json());
        let mut child = Command::new(env!("CARGO_BIN_EXE_palette"))
            .args(["serve", system.to_str().unwrap(), "--all"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Every service listening, then where the spans go.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        for _ in 0..=services {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "palette serve ended early");
        }
        Server { child: Some(child), dir, ports }
    }

    fn port(&self) -> u16 {
        self.ports[0]
    }

    /// A plain request still gets 200.
    fn assert_healthy(&self) {
        let r = exchange(self.port(), &request(""), Duration::from_secs(10));
        assert!(r.starts_with(b"HTTP/1.1 200"), "the server still serves: {}", String::from_utf8_lossy(&r));
    }

    /// SIGTERM, exit 143, and the spans it wrote.
    fn stop(mut self) -> Vec<Value> {
        let mut child = self.child.take().unwrap();
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
        let status = child.wait().unwrap();
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        assert_eq!(status.code(), Some(143), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        let text = std::fs::read_to_string(self.dir.path("sys/spans.jsonl")).unwrap_or_default();
        let mut spans = Vec::new();
        for line in text.lines() {
            let doc: Value = serde_json::from_str(line).expect("every span line is JSON");
            for rs in doc["resourceSpans"].as_array().into_iter().flatten() {
                let service = rs["resource"]["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["key"] == "service.name")
                    .map(|a| a["value"]["stringValue"].clone())
                    .unwrap_or_default();
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for sp in ss["spans"].as_array().into_iter().flatten() {
                        let mut sp = sp.clone();
                        sp["service"] = service.clone();
                        spans.push(sp);
                    }
                }
            }
        }
        spans
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `POST /op/hop` with `headers` (each ending in CRLF), no body, closing.
fn request(headers: &str) -> Vec<u8> {
    format!("POST /op/hop HTTP/1.1\r\nhost: x\r\n{headers}content-length: 0\r\nconnection: close\r\n\r\n").into_bytes()
}

/// Sends `raw` and reads until the server closes (or `wait` passes).
fn exchange(port: u16, raw: &[u8], wait: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    // The server may answer and close before it has read everything.
    let _ = s.write_all(raw);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn status_line(response: &[u8]) -> String {
    String::from_utf8_lossy(response).lines().next().unwrap_or("").to_string()
}

/// How many HTTP responses `response` holds.
fn responses(response: &[u8]) -> usize {
    String::from_utf8_lossy(response).matches("HTTP/1.1 ").count()
}

#[test]
fn header_of_1_mb_gets_431() {
    let server = Server::start(1, |_| {});
    let raw = request(&format!("x-big: {}\r\n", "a".repeat(1 << 20)));
    let r = exchange(server.port(), &raw, Duration::from_secs(10));
    assert_eq!(status_line(&r), "HTTP/1.1 431 Request Header Fields Too Large");
    server.assert_healthy();
}

#[test]
fn ten_thousand_headers_get_431() {
    let server = Server::start(1, |_| {});
    let headers: String = (0..10_000).map(|i| format!("x-h{i}: v\r\n")).collect();
    let r = exchange(server.port(), &request(&headers), Duration::from_secs(10));
    assert_eq!(status_line(&r), "HTTP/1.1 431 Request Header Fields Too Large");
    server.assert_healthy();
}

#[test]
fn request_line_of_100_kb_gets_414() {
    let server = Server::start(1, |_| {});
    let raw = format!("POST /op/{} HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n", "a".repeat(100_000));
    let r = exchange(server.port(), raw.as_bytes(), Duration::from_secs(10));
    assert_eq!(status_line(&r), "HTTP/1.1 414 URI Too Long");
    server.assert_healthy();
}

#[test]
fn slowloris_clients_holding_partial_headers_do_not_block_others() {
    let server = Server::start(1, |_| {});
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
        s.write_all(b"POST /op/hop HTTP/1.1\r\nhost: x\r\nx-slow: ").unwrap();
        held.push(s);
    }
    let started = Instant::now();
    for _ in 0..20 {
        server.assert_healthy();
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "20 requests beside 200 stalled ones took {:?}",
        started.elapsed()
    );
    // The stalled clients are still connected (issue 22 adds timeouts).
    for s in &mut held {
        s.write_all(b"1\r\n").unwrap();
    }
    drop(held);
    server.assert_healthy();
}

/// A request whose body hides a second request, for each order of the
/// two length headers.
fn smuggled(first: &str, second: &str) -> Vec<u8> {
    format!(
        "POST /op/hop HTTP/1.1\r\nhost: x\r\n{first}\r\n{second}\r\n\r\n0\r\n\r\n\
         POST /op/smuggled HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn smuggling_with_content_length_then_transfer_encoding_gets_one_answer_and_a_close() {
    let server = Server::start(1, |_| {});
    let r =
        exchange(server.port(), &smuggled("content-length: 4", "transfer-encoding: chunked"), Duration::from_secs(10));
    let text = String::from_utf8_lossy(&r);
    // The chunked body wins and the connection is closed after it: the
    // hidden request is never read, so never answered (no 404).
    assert_eq!(status_line(&r), "HTTP/1.1 200 OK", "{text}");
    assert_eq!(responses(&r), 1, "{text}");
    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
    server.assert_healthy();
}

#[test]
fn smuggling_with_transfer_encoding_then_content_length_gets_one_answer_and_a_close() {
    let server = Server::start(1, |_| {});
    let r =
        exchange(server.port(), &smuggled("transfer-encoding: chunked", "content-length: 40"), Duration::from_secs(10));
    let text = String::from_utf8_lossy(&r);
    assert_eq!(status_line(&r), "HTTP/1.1 200 OK", "{text}");
    assert_eq!(responses(&r), 1, "{text}");
    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
    server.assert_healthy();
}

#[test]
fn two_different_content_lengths_get_400() {
    let server = Server::start(1, |_| {});
    let raw = b"POST /op/hop HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\ncontent-length: 5\r\n\r\nhello";
    let r = exchange(server.port(), raw, Duration::from_secs(10));
    assert_eq!(status_line(&r), "HTTP/1.1 400 Bad Request");
    assert_eq!(responses(&r), 1);
    server.assert_healthy();
}

#[test]
fn transfer_encoding_not_ending_in_chunked_gets_400() {
    let server = Server::start(1, |_| {});
    let raw = b"POST /op/hop HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n";
    let r = exchange(server.port(), raw, Duration::from_secs(10));
    assert_eq!(status_line(&r), "HTTP/1.1 400 Bad Request");
    server.assert_healthy();
}

#[test]
fn bad_chunk_size_gets_400() {
    let server = Server::start(1, |_| {});
    let raw = b"POST /op/hop HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    let r = exchange(server.port(), raw, Duration::from_secs(10));
    assert_eq!(status_line(&r), "HTTP/1.1 400 Bad Request");
    assert!(String::from_utf8_lossy(&r).contains("cannot read the request body"));
    server.assert_healthy();
}

#[test]
fn declared_body_of_10_gb_gets_413_without_waiting_for_it() {
    let server = Server::start(1, |_| {});
    let raw = b"POST /op/hop HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000000\r\n\r\n";
    let started = Instant::now();
    let r = exchange(server.port(), raw, Duration::from_secs(10));
    assert_eq!(status_line(&r), "HTTP/1.1 413 Payload Too Large");
    assert!(String::from_utf8_lossy(&r).contains("request body over 16777216 bytes"));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    server.assert_healthy();
}

#[test]
fn folded_header_line_gets_400() {
    let server = Server::start(1, |_| {});
    let raw = b"POST /op/hop HTTP/1.1\r\nhost: x\r\nx-a: b\r\n c\r\ncontent-length: 0\r\n\r\n";
    let r = exchange(server.port(), raw, Duration::from_secs(10));
    assert_eq!(status_line(&r), "HTTP/1.1 400 Bad Request");
    server.assert_healthy();
}

#[test]
fn operation_with_a_bad_percent_escape_gets_400() {
    let server = Server::start(1, |_| {});
    let raw = b"POST /op/%zz HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n";
    let r = exchange(server.port(), raw, Duration::from_secs(10));
    assert_eq!(status_line(&r), "HTTP/1.1 400 Bad Request");
    assert!(String::from_utf8_lossy(&r).contains("the operation in the path is not percent-encoded UTF-8"));
    server.assert_healthy();
}

#[test]
fn http2_preface_on_an_http_system_is_closed_unanswered() {
    let server = Server::start(1, |_| {});
    let r = exchange(server.port(), b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Duration::from_secs(10));
    assert!(r.is_empty(), "{}", String::from_utf8_lossy(&r));
    server.assert_healthy();
}

#[test]
fn two_thousand_concurrent_connections_are_all_answered() {
    let _host = crate::util::host_shared();
    let server = Server::start(1, |c| c.limits.max_in_flight = 4096);
    let mut conns: Vec<TcpStream> =
        (0..2000).map(|_| TcpStream::connect(("127.0.0.1", server.port())).expect("connect")).collect();
    for c in &mut conns {
        c.write_all(&request("")).unwrap();
    }
    let mut ok = 0;
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut r = Vec::new();
        let _ = c.read_to_end(&mut r);
        if r.starts_with(b"HTTP/1.1 200") {
            ok += 1;
        }
    }
    drop(conns);
    assert_eq!(ok, 2000, "every connection got its 200");
    let r = exchange(
        server.port(),
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    assert_eq!(status_line(&r), "HTTP/1.1 200 OK");
    let spans = server.stop();
    assert_eq!(spans.len(), 2000, "one SERVER span per request");
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[test]
fn malformed_traceparents_start_new_whole_traces() {
    let server = Server::start(2, |_| {});
    let valid = format!("00-{TRACE}-{PARENT}-01");
    let malformed: Vec<Vec<u8>> = [
        valid.to_uppercase(),
        format!("00-{}-{PARENT}-01", "0".repeat(32)),
        format!("00-{TRACE}-{}-01", "0".repeat(16)),
        format!("ff-{TRACE}-{PARENT}-01"),
        format!("{valid}-extra"),
        valid.replace("e4736", "e473g"),
        valid[..54].to_string(),
        format!("00-{TRACE}{}", "a".repeat(4000)),
        "garbage".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .chain([b"00-\xff\xfe".to_vec()])
    .collect();
    for tp in &malformed {
        let mut raw = b"traceparent: ".to_vec();
        raw.extend_from_slice(tp);
        raw.extend_from_slice(b"\r\n");
        let r = exchange(server.port(), &request_with(&raw), Duration::from_secs(10));
        assert_eq!(status_line(&r), "HTTP/1.1 200 OK", "{}", String::from_utf8_lossy(tp));
    }
    let r = exchange(server.port(), &request(&format!("traceparent: {valid}\r\n")), Duration::from_secs(10));
    assert_eq!(status_line(&r), "HTTP/1.1 200 OK");

    let spans = server.stop();
    let mut roots: Vec<&Value> = spans.iter().filter(|s| s["service"] == "s01" && s["kind"] == 2).collect();
    roots.sort_by_key(|s| s["startTimeUnixNano"].as_str().unwrap().parse::<u64>().unwrap());
    assert_eq!(roots.len(), malformed.len() + 1, "one s01 SERVER span per request");
    let (joined, fresh) = roots.split_last().unwrap();
    assert_eq!(joined["traceId"], TRACE, "a valid traceparent is joined");
    assert_eq!(joined["parentSpanId"], PARENT);
    let mut ids = std::collections::BTreeSet::new();
    for root in fresh {
        let id = root["traceId"].as_str().unwrap();
        assert!(id != TRACE && id.len() == 32 && id != "0".repeat(32), "a new trace id, not {id}");
        assert!(root.get("parentSpanId").is_none(), "a root of its own: {root}");
        assert!(ids.insert(id.to_string()), "each malformed request starts its own trace");
        // The trace is whole: the call to s02 is in it too.
        let members = spans.iter().filter(|s| s["traceId"] == id).count();
        assert_eq!(members, 3, "s01 SERVER, CLIENT and s02 SERVER in trace {id}");
    }
}

fn request_with(headers: &[u8]) -> Vec<u8> {
    let mut raw = b"POST /op/hop HTTP/1.1\r\nhost: x\r\n".to_vec();
    raw.extend_from_slice(headers);
    raw.extend_from_slice(b"content-length: 0\r\nconnection: close\r\n\r\n");
    raw
}

#[test]
fn malformed_baggage_is_refused_with_400_naming_the_member() {
    let server = Server::start(2, |_| {});
    let cases: [(&[u8], &str, &str); 6] = [
        (b"palette.depth=-1", "400", "baggage member `palette.depth` has the bad value `-1`"),
        (b"palette.root=4294967296", "400", "baggage member `palette.root` has the bad value `4294967296`"),
        (b"palette.caller=99", "400", "baggage palette.caller=99 is not an API of this system (2 APIs)"),
        (b"k=caf\xc3\xa9", "400", "baggage holds characters a header cannot carry"),
        // Members without `=` are dropped, as W3C asks.
        (b"justakey,=,==,palette.rootx", "200", ""),
        // The deepest depth makes no calls rather than overflowing.
        (b"palette.depth=4294967295", "200", ""),
    ];
    for (baggage, code, message) in cases {
        let mut raw = b"baggage: ".to_vec();
        raw.extend_from_slice(baggage);
        raw.extend_from_slice(b"\r\n");
        let r = exchange(server.port(), &request_with(&raw), Duration::from_secs(10));
        let text = String::from_utf8_lossy(&r);
        assert!(
            status_line(&r).starts_with(&format!("HTTP/1.1 {code}")),
            "{}: {text}",
            String::from_utf8_lossy(baggage)
        );
        assert!(text.contains(message), "{}: `{message}` in {text}", String::from_utf8_lossy(baggage));
    }
    let spans = server.stop();
    // The two accepted requests: one full trace (3 spans) and one cut at
    // the depth limit (its SERVER span only).
    assert_eq!(spans.len(), 4, "{spans:#?}");
}

// ---------------------------------------------------------------------------
// gRPC: malformed messages on a well-formed HTTP/2 stream, and a broken
// HTTP/2 connection.

/// Calls `path` with `body` as the raw gRPC stream; the response's
/// `grpc-status`, `palette-status` and `grpc-message` (from headers or trailers).
fn grpc_raw(port: u16, path: &str, body: Vec<u8>) -> (String, String, String) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut client = client.ready().await.unwrap();
        let req = http::Request::builder()
            .method("POST")
            .uri(format!("http://127.0.0.1:{port}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let (response, mut send) = client.send_request(req, false).unwrap();
        send.send_data(bytes::Bytes::from(body), true).unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), response).await.expect("answered").unwrap();
        let (parts, mut body) = response.into_parts();
        while let Some(chunk) = body.data().await {
            let _ = chunk;
        }
        let trailers = body.trailers().await.ok().flatten().unwrap_or_default();
        let get = |k: &str| {
            parts
                .headers
                .get(k)
                .or_else(|| trailers.get(k))
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        (get("grpc-status"), get("palette-status"), get("grpc-message"))
    })
}

/// A gRPC message: flag, length prefix, bytes.
fn framed(flag: u8, len: u32, message: &[u8]) -> Vec<u8> {
    let mut v = vec![flag];
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(message);
    v
}

/// `CallRequest { operation: "hop" }` in protobuf.
const HOP: &[u8] = b"\x0a\x03hop";

#[test]
fn grpc_malformed_messages_get_invalid_argument() {
    let server = Server::start(1, |c| c.rpc = RpcMode::Grpc);
    let port = server.port();
    let call = "/palette.v1.Palette/Call";
    let ok = grpc_raw(port, call, framed(0, HOP.len() as u32, HOP));
    assert_eq!((ok.0.as_str(), ok.1.as_str()), ("0", ""), "a well-formed call succeeds: {ok:?}");
    let cases: [(Vec<u8>, &str); 5] = [
        // A length prefix of 4 GiB on a 5-byte message: refused, not allocated.
        (framed(0, u32::MAX, HOP), "a message of 5 bytes framed as 4294967295"),
        (framed(0, 2, HOP), "a message of 5 bytes framed as 2"),
        (framed(1, HOP.len() as u32, HOP), "a compressed message"),
        (Vec::new(), "a gRPC stream without a message"),
        (framed(0, 3, b"\xff\xff\xff"), "not a palette.v1 message"),
    ];
    for (body, message) in cases {
        let (grpc, palette, text) = grpc_raw(port, call, body);
        let text = percent_decode(&text);
        assert_eq!((grpc.as_str(), palette.as_str()), ("3", "400"), "{message}: {text}");
        assert!(text.contains(message), "`{message}` in {text}");
    }
    let (grpc, palette, text) = grpc_raw(port, "/palette.v1.Palette/Nope", framed(0, HOP.len() as u32, HOP));
    assert_eq!((grpc.as_str(), palette.as_str()), ("12", "404"), "{text}");
    server.assert_healthy();
}

fn percent_decode(s: &str) -> String {
    palette_runtime::transport::percent_decode(s).unwrap_or_else(|| s.to_string())
}

#[test]
fn grpc_garbage_after_the_http2_preface_closes_only_that_connection() {
    let server = Server::start(1, |c| c.rpc = RpcMode::Grpc);
    // The preface, then a frame header claiming 16 MB of an unknown type.
    let mut raw = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    raw.extend_from_slice(&[0xff, 0xff, 0xff, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00]);
    raw.extend_from_slice(&[0x55; 64]);
    let started = Instant::now();
    let r = exchange(server.port(), &raw, Duration::from_secs(10));
    assert!(started.elapsed() < Duration::from_secs(5), "the connection is closed, not held: {:?}", started.elapsed());
    // Whatever the server sent (its SETTINGS, a GOAWAY) is HTTP/2, not HTTP/1.1.
    assert!(!r.starts_with(b"HTTP/1.1"), "{}", String::from_utf8_lossy(&r));
    let ok = grpc_raw(server.port(), "/palette.v1.Palette/Call", framed(0, HOP.len() as u32, HOP));
    assert_eq!(ok.0, "0", "later calls are served: {ok:?}");
    server.assert_healthy();
}
