//! Serving systems over gRPC (`"rpc": "grpc"`): the protocol as a foreign
//! gRPC client sees it (codes, metadata, messages), HTTP/1.1 on the same
//! port, a chain's trace, overload and timeouts as error spans with the
//! right status, and the Figure-1 system against its ground truth.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use palette_runtime::config::RpcMode;
use palette_runtime::grpc::pb::{CallReply, CallRequest};
use palette_runtime::synthetic::chain;
use palette_runtime::transport::CallHeaders;
use prost::Message;

use crate::serve::{
    MS, SERIAL, Span, assert_chain_trace, figure1, figure1_in_three_runs, free_ports, post, profile, raw, serve,
    tracing,
};

/// What a gRPC call answered, as a foreign client reads it.
struct RawReply {
    /// `grpc-status` (0: OK).
    code: i32,
    /// `grpc-message`, percent-decoded.
    message: String,
    /// Headers and trailers together (a trailers-only error has no body).
    metadata: http::HeaderMap,
    reply: Option<CallReply>,
}

impl RawReply {
    fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(|v| v.to_str().ok())
    }
}

/// One call of `path` over a new HTTP/2 connection, framed by hand: what
/// any gRPC implementation sends.
async fn raw_grpc_path(port: u16, path: &str, operation: &str, metadata: &[(&str, &str)], payload: usize) -> RawReply {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (tx, conn) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(conn);
    let msg = CallRequest { operation: operation.into(), payload: Bytes::from(vec![0; payload]) }.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend((msg.len() as u32).to_be_bytes());
    frame.extend(msg);
    let mut req = http::Request::post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in metadata {
        req = req.header(*k, *v);
    }
    let mut tx = tx.ready().await.unwrap();
    let (resp, mut send) = tx.send_request(req.body(()).unwrap(), false).unwrap();
    send.send_data(Bytes::from(frame), true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200, "gRPC answers HTTP 200 whatever the outcome");
    let (parts, mut body) = resp.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let mut metadata = parts.headers;
    if !metadata.contains_key("grpc-status")
        && let Some(t) = body.trailers().await.unwrap()
    {
        metadata.extend(t);
    }
    let reply = (data.len() >= 5).then(|| CallReply::decode(&data[5..]).unwrap());
    let code = metadata.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap();
    let message = metadata
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .and_then(palette_runtime::transport::percent_decode)
        .unwrap_or_default();
    RawReply { code, message, metadata, reply }
}

async fn raw_grpc(port: u16, operation: &str, metadata: &[(&str, &str)], payload: usize) -> RawReply {
    raw_grpc_path(port, "/palette.v1.Palette/Call", operation, metadata, payload).await
}

fn grpc_chain(ports: &[u16], work_ns: &[u64]) -> palette_runtime::SystemConfig {
    let mut config = chain(ports, work_ns);
    config.rpc = RpcMode::Grpc;
    config.tracing = tracing();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_answers_with_codes_and_metadata_and_http_on_the_same_port() {
    let _serial = SERIAL.lock().await;
    let ports = free_ports(2);
    let mut config = grpc_chain(&ports, &[0, 0]);
    config.limits.max_body_bytes = 100;
    config.limits.max_baggage_bytes = 200;
    config.model.apis[1].operation = "GET /cart/{id}".into();
    let port = ports[0];
    let served = serve(config, None).await;

    let ok = raw_grpc(port, "hop", &[], 10).await;
    assert_eq!(ok.code, 0, "{}", ok.message);
    assert!(ok.reply.is_some());
    assert!(ok.meta("palette-server-ns").and_then(|v| v.parse::<u64>().ok()).is_some());
    assert_eq!(ok.meta("palette-calls"), Some("1"), "s01 called s02 once");
    let long_baggage = format!("k={}", "v".repeat(300));
    // (operation, metadata, payload bytes, code, palette-status, message)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, usize, i32, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        ("nope", vec![], 0, 12, "404", "no operation `nope`"),
        ("hop", vec![], 101, 11, "413", "over 100 bytes"),
        ("hop", vec![("baggage", "palette.caller=x")], 0, 3, "400", "bad value"),
        ("hop", vec![("baggage", &long_baggage)], 0, 3, "400", "exceeds"),
        ("hop", vec![("baggage", "palette.caller=77")], 0, 3, "400", "not an API"),
        // A malformed traceparent is not an error: the request starts a new trace.
        ("hop", vec![("traceparent", "00-zz-00")], 0, 0, "", ""),
    ];
    for (op, md, payload, code, status, text) in cases {
        let r = raw_grpc(port, op, &md, payload).await;
        assert_eq!(r.code, code, "{op} {md:?}: {}", r.message);
        assert!(r.message.contains(text), "{op} {md:?}: {:?} lacks {text:?}", r.message);
        if code != 0 {
            assert_eq!(r.meta("palette-status"), Some(status), "{op} {md:?}");
        }
    }
    let other = raw_grpc_path(port, "/palette.v1.Palette/Other", "hop", &[], 0).await;
    assert_eq!((other.code, other.meta("palette-status")), (12, Some("404")), "{}", other.message);
    // The same port answers HTTP/1.1: health checks and root requests.
    let (code, body) =
        tokio::task::spawn_blocking(move || raw(port, "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"))
            .await
            .unwrap();
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, body) = tokio::task::spawn_blocking(move || post(port, "/op/hop", "", "")).await.unwrap();
    assert_eq!(code, 200, "{body}");
    // The runtime's own client: s02's operation (a space, slashes, braces) unencoded.
    let r = served.root(1, "GET /cart/{id}").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.server_ns.is_some());
    let r = served.root(1, "nope").await;
    assert_eq!(r.status, 404);
    let (spans, _dir) = served.finish().await;
    // Calls s01 made to s02 went over gRPC.
    let clients: Vec<&Span> = spans.iter().filter(|s| s.kind == 3).collect();
    assert!(!clients.is_empty());
    assert!(clients.iter().all(|s| s.str("rpc.system") == Some("grpc") && s.str("rpc.method") == Some("Call")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_chain_carries_the_trace_and_records_every_hop() {
    let _serial = SERIAL.lock().await;
    let ports = free_ports(3);
    let served = serve(grpc_chain(&ports, &[2 * MS, 2 * MS, 2 * MS]), None).await;
    let client_span = "00f067aa0ba902b7";
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let headers = CallHeaders {
        traceparent: Some(format!("00-{trace}-{client_span}-01")),
        tracestate: Some("vendor=abc".into()),
        baggage: Some("user=alice".into()),
    };
    let t = Instant::now();
    let r = served.client.call(0, "hop", headers, Bytes::new()).await.unwrap();
    let took = t.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(r.calls, Some(1));
    let server_ns = r.server_ns.unwrap();
    assert!(server_ns >= 6 * MS, "three hops of 2 ms work: {server_ns} ns");
    assert!(took.as_nanos() as u64 >= server_ns);
    // Calls share one connection per peer: many at once all succeed.
    let served = Arc::new(served);
    let many: Vec<_> = (0..50)
        .map(|_| {
            let s = served.clone();
            tokio::spawn(async move { s.root(0, "hop").await })
        })
        .collect();
    for r in many {
        assert_eq!(r.await.unwrap().status, 200);
    }
    let (spans, _dir) = Arc::into_inner(served).unwrap().finish().await;

    let ours: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace).collect();
    assert_eq!(ours.len(), 5, "3 SERVER + 2 CLIENT spans: {ours:#?}");
    assert_eq!(spans.len(), 5 * 51);
    assert_chain_trace(&ours, client_span, RpcMode::Grpc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_overload_timeouts_and_missing_peers_are_error_spans_with_their_codes() {
    let _serial = SERIAL.lock().await;
    // Overload: UNAVAILABLE at once, not queued in the connection.
    let ports = free_ports(1);
    let mut config = grpc_chain(&ports, &[400 * MS]);
    config.limits.max_in_flight = 1;
    let served = Arc::new(serve(config, None).await);
    let slow = tokio::spawn({
        let s = served.clone();
        async move { s.root(0, "hop").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    let r = served.root(0, "hop").await;
    assert_eq!(r.status, 503);
    assert!(t.elapsed() < Duration::from_millis(200), "503 is immediate, not queued: {:?}", t.elapsed());
    assert!(String::from_utf8_lossy(&r.body).contains("overloaded"));
    let raw = raw_grpc(ports[0], "hop", &[], 0).await;
    assert_eq!((raw.code, raw.meta("palette-status")), (14, Some("503")), "{}", raw.message);
    assert_eq!(slow.await.unwrap().status, 200);
    let served = Arc::into_inner(served).unwrap();
    let (spans, _dir) = served.finish().await;
    assert_eq!(spans.len(), 3);
    let rejected: Vec<&Span> = spans.iter().filter(|s| s.error).collect();
    assert_eq!(rejected.len(), 2);
    for s in rejected {
        assert_eq!((s.kind, s.int("http.response.status_code")), (2, Some(503)));
        assert_eq!(s.int("rpc.grpc.status_code"), Some(14));
    }

    // A call that times out: DEADLINE_EXCEEDED, error SERVER and CLIENT spans.
    let ports = free_ports(2);
    let mut config = grpc_chain(&ports, &[0, 2_000 * MS]);
    config.limits.call_timeout_ms = 100;
    let served = serve(config.clone(), None).await;
    let t = Instant::now();
    let r = served.root(0, "hop").await;
    assert_eq!(r.status, 504, "{}", String::from_utf8_lossy(&r.body));
    assert!(t.elapsed() < Duration::from_millis(1_000), "{:?}", t.elapsed());
    assert!(String::from_utf8_lossy(&r.body).contains("timed out after 100 ms"));
    let raw = raw_grpc(ports[0], "hop", &[], 0).await;
    assert_eq!((raw.code, raw.meta("palette-status")), (4, Some("504")), "{}", raw.message);
    let (spans, _dir) = served.finish().await;
    let root = spans.iter().find(|s| s.service == "s01" && s.kind == 2).unwrap();
    assert!(root.error);
    assert_eq!((root.int("http.response.status_code"), root.int("rpc.grpc.status_code")), (Some(504), Some(4)));
    let client = spans.iter().find(|s| s.kind == 3).unwrap();
    assert!(client.error);
    assert_eq!(client.str("rpc.system"), Some("grpc"));

    // Only the first service runs: its call cannot connect (INTERNAL, 502).
    let served = serve(config, Some(&["s01"])).await;
    let r = served.root(0, "hop").await;
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("call to `s02 hop` failed"));
    let raw = raw_grpc(ports[0], "hop", &[], 0).await;
    assert_eq!((raw.code, raw.meta("palette-status")), (13, Some("502")), "{}", raw.message);
    let (spans, _dir) = served.finish().await;
    assert_eq!(spans.len(), 4);
    assert!(spans.iter().all(|s| s.error));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figure1_served_over_grpc_matches_its_ground_truth() {
    let _serial = SERIAL.lock().await;
    let work = tempfile::tempdir().unwrap();
    let mut fig = figure1(work.path(), 4000);
    fig.config.rpc = RpcMode::Grpc;
    let truth = profile(&fig.truth);
    // As over HTTP: a run that misses on a shared machine is repeated, at
    // most three times; a transport that is wrong misses every time.
    figure1_in_three_runs(&fig, &truth, "figure1 served over gRPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_grpc_peer_is_reconnected() {
    let _serial = SERIAL.lock().await;
    let ports = free_ports(2);
    let config = grpc_chain(&ports, &[0, 0]);
    let served = serve(config.clone(), Some(&["s01"])).await;
    let peer_dir = tempfile::tempdir().unwrap();
    let opts = palette_runtime::server::ServeOptions {
        services: Some(vec!["s02".into()]),
        base_dir: peer_dir.path().to_path_buf(),
        drain: Duration::from_secs(5),
        ..Default::default()
    };
    let peer = palette_runtime::server::start(config.clone(), &opts).await.unwrap();
    assert_eq!(served.root(0, "hop").await.status, 200);
    // The peer stops (as a supervised service that crashed would): calls fail at once...
    peer.shutdown().await;
    let r = served.root(0, "hop").await;
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    // ...and once it is back, the next call opens a new connection.
    let peer = palette_runtime::server::start(config.clone(), &opts).await.unwrap();
    let r = served.root(0, "hop").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // A restart between two calls: the shared connection is closed when
    // the next call takes it, which goes again on a new one.
    peer.shutdown().await;
    let peer = palette_runtime::server::start(config, &opts).await.unwrap();
    let r = served.root(0, "hop").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    peer.shutdown().await;
    served.finish().await;
}
