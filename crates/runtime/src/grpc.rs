//! The gRPC transport (`"rpc": "grpc"`): the same calls as HTTP/1.1, as the
//! one generic unary method of `proto/palette.proto`
//! (`/palette.v1.Palette/Call`).
//!
//! The messages are `prost` code generated from the proto at build time
//! (`protox`, no system `protoc`); unary calls are framed on the `h2` crate
//! directly (a gRPC message is a 5-byte prefix and the protobuf):
//! - [`GrpcClient`] keeps one HTTP/2 connection per peer instance, multiplexing every
//!   call to it (as a gRPC channel does), reconnecting when it closes;
//! - [`serve_grpc`] answers gRPC and HTTP/1.1 on the same port, told apart
//!   per connection by the HTTP/2 preface: a gRPC system still answers
//!   `GET /healthz` (the supervisor, compose and Kubernetes probes),
//!   `GET /stats/lateness` and `POST /op/{operation}` (root requests from
//!   `palette load` or curl) exactly as an HTTP system does; calls between
//!   its services are gRPC.
//!
//! Why not tonic over hyper's HTTP/2: a first version used them, and a
//! zero-work hop cost 65 µs at p50 back to back (`palette bench runtime`)
//! against 34 µs with this framing on the same machine; hyper's client
//! spawns a task per call, and its frames went out in separate writes, each
//! a wake-up for the peer. Whatever a hop costs beyond the call overhead
//! the traces recorded cannot be taken back by the runtime, so a cheap hop
//! is fidelity (BENCHMARKS.md, "gRPC transport").
//!
//! Metadata mirror the HTTP headers: `traceparent`, `tracestate` and
//! `baggage` on requests; `palette-server-ns` and `palette-calls` on
//! replies. An error carries a gRPC status code (for other gRPC tools) and
//! the runtime's HTTP-equivalent status in `palette-status`, so a caller
//! sees the same statuses and writes the same spans over either transport;
//! a failure without `palette-status` did not come from a Palette service
//! (a broken connection, a foreign server) and is a failed call.

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Uri;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::balance::{Endpoint, Instances};
use crate::transport::client::{self, Client, Connections, Failed};
use crate::transport::{CALLS_HEADER, CallError, CallFuture, CallHeaders, Handler, Inbound, Outbound, Phase, Reply};
use crate::transport::{
    SERVER_NS_HEADER, Transport, accept_until_closing, header_text, http1_builder, http1_connection,
};

/// The messages generated from `proto/palette.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/palette.v1.rs"));
}

use pb::{CallReply, CallRequest};

/// The gRPC status codes the runtime answers with (as numbered by gRPC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
}

/// Error metadata: the HTTP status the runtime would have answered.
pub const STATUS_METADATA: &str = "palette-status";

/// `rpc.service` of the spans: the proto service.
pub const SERVICE: &str = "palette.v1.Palette";

/// `rpc.method` of the spans.
pub const METHOD: &str = "Call";

/// Room in a message beyond the payload, for the operation name and framing.
const MESSAGE_SLACK: usize = 64 << 10;

/// The gRPC code for a status the runtime answers with.
pub fn code_for(status: u16) -> Code {
    match status {
        200 => Code::Ok,
        400 => Code::InvalidArgument,
        404 => Code::Unimplemented,
        413 => Code::OutOfRange,
        500 | 502 => Code::Internal,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Unknown,
    }
}

/// The HTTP/2 connection preface: what a gRPC client sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Serves gRPC (HTTP/2) and HTTP/1.1 on `listener` until
/// [`Phase::Closing`], when the listener closes and each connection
/// finishes the requests on it and closes. A connection that opens with
/// the HTTP/2 preface is gRPC; any other, HTTP/1.1 (`/healthz`, root
/// requests). `max_streams` bounds the calls one connection carries at
/// once: above the in-flight bound, so an overloaded service answers
/// UNAVAILABLE rather than calls queueing in the connection.
pub async fn serve_grpc(
    listener: TcpListener,
    handler: Arc<dyn Handler>,
    max_streams: u32,
    phase: watch::Receiver<Phase>,
) {
    let http1 = Arc::new(http1_builder());
    accept_until_closing(listener, phase, |stream, phase| {
        let (handler, http1) = (handler.clone(), http1.clone());
        tokio::spawn(async move {
            if opens_with_preface(&stream).await {
                h2_connection(stream, handler, max_streams, phase).await;
            } else {
                http1_connection(stream, handler, http1, phase).await;
            }
        });
    })
    .await;
}

/// Whether the first bytes on `stream` are the HTTP/2 preface (read
/// without consuming them).
async fn opens_with_preface(stream: &TcpStream) -> bool {
    let mut buf = [0u8; PREFACE.len()];
    for _ in 0..100 {
        match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if n >= PREFACE.len() || !PREFACE.starts_with(&buf[..n]) => return buf[..n] == *PREFACE,
            // Part of a preface so far: wait for the rest.
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
        }
    }
    false
}

/// Serves the gRPC calls of one HTTP/2 connection, each as its own task.
async fn h2_connection(
    stream: TcpStream,
    handler: Arc<dyn Handler>,
    max_streams: u32,
    mut phase: watch::Receiver<Phase>,
) {
    let Ok(mut conn) = h2::server::Builder::new()
        .initial_window_size(WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_send_buffer_size(WINDOW as usize)
        .max_concurrent_streams(max_streams)
        .handshake::<_, Bytes>(stream)
        .await
    else {
        return;
    };
    let mut closing = false;
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((req, respond))) => {
                    tokio::spawn(answer(handler.clone(), req, respond));
                }
                // The client went away, or the connection failed.
                _ => return,
            },
            // GOAWAY: calls in flight finish, then accept ends.
            _ = phase.wait_for(|p| *p == Phase::Closing), if !closing => {
                closing = true;
                conn.graceful_shutdown();
            }
        }
    }
}

/// A call as the handler takes it, or the error it is answered with.
async fn read_call(max_body: u64, req: http::Request<h2::RecvStream>) -> Result<Inbound, Outbound> {
    let error = |status: u16, message: String| Outbound::Error { status, message };
    let (parts, mut body) = req.into_parts();
    // The message is read before anything is answered: a reply that ends
    // the stream while the client is still sending would reach it as a
    // reset stream instead of the status.
    let data = match read_message(&mut body, max_body).await {
        Ok(data) => data,
        Err(Unread::Reset(_)) => return Err(error(400, "the call was reset while it was read".into())),
        Err(Unread::TooLong(_)) => return Err(error(413, format!("request body over {max_body} bytes"))),
    };
    if parts.uri.path() != CALL_PATH {
        return Err(error(404, format!("unknown method {}; calls are {CALL_PATH}", parts.uri.path())));
    }
    // A traceparent that is not text is malformed: a new root.
    let traceparent = header_text(&parts.headers, "traceparent").ok().flatten();
    let tracestate = header_text(&parts.headers, "tracestate").ok().flatten();
    let Ok(baggage) = header_text(&parts.headers, "baggage") else {
        return Err(error(400, "baggage holds characters metadata cannot carry".into()));
    };
    let CallRequest { operation, payload } = unframe::<CallRequest>(&data).map_err(|e| error(400, e))?;
    if payload.len() as u64 > max_body {
        return Err(error(413, format!("request body over {max_body} bytes")));
    }
    Ok(Inbound { operation, traceparent, tracestate, baggage, body: payload, grpc: true })
}

/// Runs one call and answers it: headers with the metadata, the reply
/// message, `grpc-status: 0` trailers; or, for an error, one trailers-only
/// header block with the code. A call the client resets (its timeout) is
/// dropped, cancelling its execution as a closed HTTP connection does.
async fn answer(
    handler: Arc<dyn Handler>,
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let run = async {
        match read_call(handler.max_body_bytes(), req).await {
            Ok(inbound) => handler.handle(inbound).await,
            Err(out) => out,
        }
    };
    let out = tokio::select! {
        out = run => out,
        _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => return,
    };
    let mut head = http::Response::builder().status(200).header(http::header::CONTENT_TYPE, "application/grpc");
    match out {
        Outbound::Ok { body, server_ns, calls } => {
            let head = head.header(SERVER_NS_HEADER, server_ns).header(CALLS_HEADER, calls).body(());
            let Ok(mut send) = head.map_err(drop).and_then(|h| respond.send_response(h, false).map_err(drop)) else {
                return;
            };
            if send_all(&mut send, frame(&CallReply { payload: body }), false).is_ok() {
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                let _ = send.send_trailers(trailers);
            }
        }
        Outbound::Error { status, message } => {
            head = head
                .header("grpc-status", code_for(status) as i32)
                .header("grpc-message", crate::transport::percent_encode(&message))
                .header(STATUS_METADATA, status);
            if let Ok(h) = head.body(()) {
                let _ = respond.send_response(h, true);
            }
        }
    }
}

/// Why the HTTP/2 connection did not carry a call.
struct WireError {
    message: String,
    /// The request never left: sending it again on a new connection is safe.
    unsent: bool,
}

impl From<h2::Error> for WireError {
    fn from(e: h2::Error) -> WireError {
        // A stream refused, or a connection going away before the peer
        // processed it: per RFC 9113 the request was not acted upon.
        let unsent = e.reason() == Some(h2::Reason::REFUSED_STREAM) || e.is_go_away();
        WireError { message: e.to_string(), unsent }
    }
}

struct GrpcPeer {
    /// `host:port`, for connecting.
    addr: String,
    /// `http://host:port/palette.v1.Palette/Call`: every call's URI.
    uri: Uri,
    /// The connection every call to this peer shares, once open.
    conn: Mutex<Option<h2::client::SendRequest<Bytes>>>,
    /// Held while connecting, so concurrent first calls open one connection.
    connecting: tokio::sync::Mutex<()>,
}

impl GrpcPeer {
    fn open(&self) -> Option<h2::client::SendRequest<Bytes>> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn forget(&self) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Endpoint for GrpcPeer {
    fn new(addr: String) -> GrpcPeer {
        GrpcPeer {
            uri: Uri::from_str(&format!("http://{addr}{CALL_PATH}"))
                .unwrap_or_else(|_| Uri::from_static("http://localhost/palette.v1.Palette/Call")),
            addr,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    fn addr(&self) -> &str {
        &self.addr
    }
}

/// A unary call as it goes out: the request's headers and its one framed message.
struct GrpcRequest {
    head: http::Request<()>,
    message: Bytes,
}

impl Connections for GrpcPeer {
    type Connection = h2::client::SendRequest<Bytes>;
    type Request = GrpcRequest;
    /// One shared connection: a call it did not take goes once more, on the one that replaced it.
    const RESENDS: u32 = 1;

    fn request(&self, operation: &str, headers: CallHeaders, body: Bytes) -> Result<GrpcRequest, CallError> {
        let head = http::Request::post(self.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers");
        let head = client::with_context(head, headers).body(()).map_err(|e| CallError::protocol(&self.addr, e))?;
        Ok(GrpcRequest { head, message: frame(&CallRequest { operation: operation.to_string(), payload: body }) })
    }

    /// The peer's connection, opened if there is none; `true` when new.
    async fn connection(&self) -> Result<(Self::Connection, bool), CallError> {
        if let Some(s) = self.open() {
            return Ok((s, false));
        }
        let _connecting = self.connecting.lock().await;
        if let Some(s) = self.open() {
            return Ok((s, false));
        }
        let stream = client::connect(&self.addr).await?;
        let (sender, conn) = h2::client::Builder::new()
            .initial_window_size(WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_send_buffer_size(WINDOW as usize)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|e| CallError::protocol(&self.addr, e))?;
        tokio::spawn(async move {
            // Ends when the peer closes the connection or every sender is dropped.
            let _ = conn.await;
        });
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender.clone());
        Ok((sender, true))
    }

    async fn exchange(
        &self,
        sender: Self::Connection,
        request: GrpcRequest,
        max_body_bytes: u64,
    ) -> Result<Reply, Failed<GrpcRequest>> {
        match exchange(sender, request.head.clone(), request.message.clone(), max_body_bytes).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(message)) => Err(Failed::Sent(CallError::protocol(&self.addr, message))),
            Err(e) => {
                // The connection is unusable: the next call opens another.
                self.forget();
                let error = CallError::protocol(&self.addr, e.message);
                Err(if e.unsent { Failed::Unsent { request, error } } else { Failed::Sent(error) })
            }
        }
    }
}

/// gRPC client: one multiplexed HTTP/2 connection per peer instance,
/// `TCP_NODELAY`; calls to a replicated peer go to its instances in turn.
///
/// Unary calls are framed on the `h2` crate directly (see the module doc).
pub struct GrpcClient {
    client: Client<GrpcPeer>,
}

impl GrpcClient {
    /// A client for peers at `host:port` addresses, one instance each.
    pub fn new(addrs: Vec<String>, max_body_bytes: u64) -> GrpcClient {
        GrpcClient { client: Client::one_instance_each(addrs, max_body_bytes) }
    }

    /// A client for peers with one or more instances each.
    pub fn with_instances(peers: Vec<Instances>, max_body_bytes: u64) -> GrpcClient {
        GrpcClient { client: Client::new(peers, max_body_bytes) }
    }
}

/// One call on `sender`'s connection. The outer error is the
/// connection's; the inner one a reply that is not gRPC.
async fn exchange(
    sender: h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
    message: Bytes,
    max_body_bytes: u64,
) -> Result<Result<Reply, String>, WireError> {
    let mut sender = sender.ready().await?;
    let (response, mut send) = sender.send_request(req, false)?;
    // A callee may answer (and end the stream) before it has read the
    // whole message: its answer is what counts.
    let sent = send_all(&mut send, message, true);
    let response = match (response.await, sent) {
        (Ok(r), _) => r,
        (Err(e), Ok(())) | (_, Err(e)) => return Err(e.into()),
    };
    let (parts, mut body) = response.into_parts();
    if parts.status != http::StatusCode::OK {
        return Ok(Err(format!("HTTP status {} to a gRPC call", parts.status)));
    }
    let data = match read_message(&mut body, max_body_bytes).await {
        Ok(data) => data,
        Err(Unread::Reset(e)) => return Err(e.into()),
        Err(Unread::TooLong(limit)) => return Ok(Err(format!("reply over {limit} bytes"))),
    };
    // A trailers-only reply (an error) has its status in the headers.
    let trailers = if parts.headers.contains_key("grpc-status") { None } else { body.trailers().await? };
    let status = trailers.as_ref().unwrap_or(&parts.headers);
    let text = |k: &str| status.get(k).and_then(|v| v.to_str().ok());
    let Some(code) = text("grpc-status").and_then(|v| v.parse::<i32>().ok()) else {
        return Ok(Err("a reply without grpc-status".into()));
    };
    if code != Code::Ok as i32 {
        let message = text("grpc-message").and_then(crate::transport::percent_decode).unwrap_or_default();
        // Without palette-status the error did not come from a Palette service.
        return Ok(match text(STATUS_METADATA).and_then(|v| v.parse::<u16>().ok()) {
            Some(status) => Ok(Reply { status, server_ns: None, calls: None, body: Bytes::from(message) }),
            None => Err(format!("gRPC status {code}: {message}")),
        });
    }
    let reply = match unframe::<CallReply>(&data) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(Reply {
        status: 200,
        server_ns: client::number(&parts.headers, SERVER_NS_HEADER),
        calls: client::number(&parts.headers, CALLS_HEADER),
        body: reply.payload,
    }))
}

/// Why a message was not read whole.
enum Unread {
    /// The stream or its connection broke off.
    Reset(h2::Error),
    /// It ran over this many bytes: the payload limit and room for framing.
    TooLong(usize),
}

/// Reads the one message of a call or reply, returning flow-control
/// capacity as it goes; a payload may be at most `max_payload` bytes.
async fn read_message(body: &mut h2::RecvStream, max_payload: u64) -> Result<bytes::BytesMut, Unread> {
    let limit = usize::try_from(max_payload).unwrap_or(usize::MAX).saturating_add(MESSAGE_SLACK);
    let mut data = bytes::BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(Unread::Reset)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        if data.len() + chunk.len() > limit {
            return Err(Unread::TooLong(limit));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

/// The path of the one method.
const CALL_PATH: &str = "/palette.v1.Palette/Call";

/// Per-stream flow-control window: a typical payload goes in one flight.
const WINDOW: u32 = 1 << 20;

/// Connection flow-control window, shared by the calls in flight.
const CONNECTION_WINDOW: u32 = 16 << 20;

/// A gRPC message: uncompressed flag, big-endian length, the protobuf.
fn frame<M: prost::Message>(msg: &M) -> Bytes {
    let len = prost::Message::encoded_len(msg);
    let mut buf = Vec::with_capacity(5 + len);
    buf.push(0);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    prost::Message::encode(msg, &mut buf).expect("a Vec grows as needed");
    Bytes::from(buf)
}

/// The one message of a unary call or reply.
fn unframe<M: prost::Message + Default>(data: &[u8]) -> Result<M, String> {
    let Some((head, rest)) = data.split_first_chunk::<5>() else {
        return Err("a gRPC stream without a message".into());
    };
    if head[0] != 0 {
        return Err("a compressed message (compression is not offered)".into());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if rest.len() != len {
        return Err(format!("a message of {} bytes framed as {len}", rest.len()));
    }
    M::decode(rest).map_err(|e| format!("not a palette.v1 message: {e}"))
}

/// Queues `data` on the stream (`end`: and ends it). h2 sends it as flow
/// control allows; waiting for capacity first would flush the headers
/// alone and cost the peer a wake-up per frame. Bodies are already in
/// memory (slices of one buffer), so queueing holds nothing more.
fn send_all(send: &mut h2::SendStream<Bytes>, data: Bytes, end: bool) -> Result<(), h2::Error> {
    send.send_data(data, end)
}

impl Transport for GrpcClient {
    fn call<'a>(&'a self, peer: usize, operation: &'a str, headers: CallHeaders, body: Bytes) -> CallFuture<'a> {
        Box::pin(self.client.call(peer, operation, headers, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_runtime_status_has_its_own_code() {
        let statuses = [200, 400, 404, 413, 502, 503, 504];
        let codes: std::collections::BTreeSet<i32> = statuses.iter().map(|&s| code_for(s) as i32).collect();
        assert_eq!(codes.len(), statuses.len());
        assert_eq!(code_for(503), Code::Unavailable);
        assert_eq!(code_for(504), Code::DeadlineExceeded);
        assert_eq!(code_for(404), Code::Unimplemented);
        assert_eq!(code_for(418), Code::Unknown);
    }
}
