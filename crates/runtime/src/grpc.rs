//! The gRPC transport (`"rpc": "grpc"`): the same calls as HTTP/1.1, as the
//! one generic unary method of `proto/palette.proto`
//! (`/palette.v1.Palette/Call`).
//!
//! Both sides are tonic's codec and generated stubs over hyper's HTTP/2,
//! with the runtime's own connection handling:
//! - [`GrpcClient`] keeps one HTTP/2 connection per peer, multiplexing every
//!   call to it (as a gRPC channel does), reconnecting when it closes;
//! - [`serve_grpc`] answers gRPC and HTTP/1.1 on the same port, told apart
//!   per connection by the HTTP/2 preface: a gRPC system still answers
//!   `GET /healthz` (the supervisor, compose and Kubernetes probes) and
//!   `POST /op/{operation}` (root requests from `palette load` or curl)
//!   exactly as an HTTP system does; calls between its services are gRPC.
//!
//! Metadata mirror the HTTP headers: `traceparent`, `tracestate` and
//! `baggage` on requests; `palette-server-ns` and `palette-calls` on
//! replies. An error carries a gRPC status code (for other gRPC tools) and
//! the runtime's HTTP-equivalent status in `palette-status`, so a caller
//! sees the same statuses and writes the same spans over either transport;
//! a failure without `palette-status` did not come from a Palette service
//! (a broken connection, a foreign server) and is a failed call.

use std::convert::Infallible;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Uri;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use crate::transport::{CALLS_HEADER, CallError, CallFuture, CallHeaders, Handler, Inbound, Outbound, Phase, Reply};
use crate::transport::{SERVER_NS_HEADER, Transport, dispatch};

/// The code generated from `proto/palette.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("palette.v1");
}

use pb::palette_server::{Palette, PaletteServer};
use pb::{CallReply, CallRequest};

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
        502 => Code::Internal,
        503 => Code::Unavailable,
        504 => Code::DeadlineExceeded,
        _ => Code::Unknown,
    }
}

fn status_of(status: u16, message: String) -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert(STATUS_METADATA, MetadataValue::from(status));
    Status::with_metadata(code_for(status), message, metadata)
}

/// Serves the executor of one service as the `Palette` gRPC service.
struct GrpcHandler {
    handler: Arc<dyn Handler>,
}

/// Every value of a metadata key, joined with `,` (as HTTP headers are);
/// `Err` when one is not text.
fn metadata_text(md: &MetadataMap, name: &str) -> Result<Option<String>, ()> {
    let mut all = md.get_all(name).iter();
    let Some(first) = all.next() else { return Ok(None) };
    let mut s = first.to_str().map_err(|_| ())?.to_string();
    for v in all {
        s.push(',');
        s.push_str(v.to_str().map_err(|_| ())?);
    }
    Ok(Some(s))
}

#[tonic::async_trait]
impl Palette for GrpcHandler {
    async fn call(&self, request: tonic::Request<CallRequest>) -> Result<tonic::Response<CallReply>, Status> {
        let md = request.metadata();
        // A traceparent that is not text is malformed: a new root.
        let traceparent = metadata_text(md, "traceparent").ok().flatten();
        let tracestate = metadata_text(md, "tracestate").ok().flatten();
        let Ok(baggage) = metadata_text(md, "baggage") else {
            return Err(status_of(400, "baggage holds characters metadata cannot carry".into()));
        };
        let CallRequest { operation, payload } = request.into_inner();
        let max = self.handler.max_body_bytes();
        if payload.len() as u64 > max {
            return Err(status_of(413, format!("request body over {max} bytes")));
        }
        let inbound = Inbound { operation, traceparent, tracestate, baggage, body: payload, grpc: true };
        match self.handler.clone().handle(inbound).await {
            Outbound::Ok { body, server_ns, calls } => {
                let mut r = tonic::Response::new(CallReply { payload: body });
                r.metadata_mut().insert(SERVER_NS_HEADER, MetadataValue::from(server_ns));
                r.metadata_mut().insert(CALLS_HEADER, MetadataValue::from(calls));
                Ok(r)
            }
            Outbound::Error { status, message } => Err(status_of(status, message)),
        }
    }
}

fn is_grpc(req: &http::Request<Incoming>) -> bool {
    req.version() == http::Version::HTTP_2
        && req.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Serves gRPC (HTTP/2) and HTTP/1.1 on `listener` until
/// [`Phase::Closing`], when the listener closes and each connection
/// finishes the requests on it and closes. `max_streams` bounds the calls
/// one connection carries at once: above the in-flight bound, so an
/// overloaded service answers UNAVAILABLE rather than calls queueing in
/// the connection.
pub async fn serve_grpc(
    listener: TcpListener,
    handler: Arc<dyn Handler>,
    max_streams: u32,
    mut phase: watch::Receiver<Phase>,
) {
    let max_message = usize::try_from(handler.max_body_bytes()).unwrap_or(usize::MAX).saturating_add(MESSAGE_SLACK);
    let grpc = PaletteServer::new(GrpcHandler { handler: handler.clone() })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    builder.http2().max_concurrent_streams(max_streams);
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = phase.wait_for(|p| *p == Phase::Closing) => return,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of descriptors or a reset before accept: back off, go on.
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (handler, grpc, builder, mut phase) = (handler.clone(), grpc.clone(), builder.clone(), phase.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let (handler, mut grpc) = (handler.clone(), grpc.clone());
                async move {
                    if is_grpc(&req) {
                        tower_call(&mut grpc, req).await
                    } else {
                        Ok::<_, Infallible>(dispatch(handler, req).await.map(tonic::body::Body::new))
                    }
                }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = phase.wait_for(|p| *p == Phase::Closing) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
}

/// One request through a tower service that is always ready (the generated server is).
fn tower_call<S, R>(svc: &mut S, req: R) -> S::Future
where
    S: tonic::codegen::Service<R>,
{
    svc.call(req)
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

/// gRPC client: one multiplexed HTTP/2 connection per peer, `TCP_NODELAY`.
///
/// Unary calls are framed here on the `h2` crate directly (a gRPC message
/// is a 5-byte prefix and the protobuf): hyper's HTTP/2 client, under
/// tonic's, adds a spawned task per call, and on a lightly loaded service
/// each hand-off between tasks is a thread wake-up that costs more than
/// the call overhead the traces recorded (see BENCHMARKS.md).
pub struct GrpcClient {
    peers: Vec<GrpcPeer>,
    /// Largest reply payload accepted.
    max_body_bytes: u64,
}

impl GrpcClient {
    /// A client for peers at `host:port` addresses.
    pub fn new(addrs: Vec<String>, max_body_bytes: u64) -> GrpcClient {
        let peers = addrs
            .into_iter()
            .map(|addr| GrpcPeer {
                uri: Uri::from_str(&format!("http://{addr}{CALL_PATH}"))
                    .unwrap_or_else(|_| Uri::from_static("http://localhost/palette.v1.Palette/Call")),
                addr,
                conn: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            })
            .collect();
        GrpcClient { peers, max_body_bytes }
    }

    /// The peer's connection, opened if there is none; `true` when new.
    async fn connection(&self, p: &GrpcPeer) -> Result<(h2::client::SendRequest<Bytes>, bool), CallError> {
        if let Some(s) = p.open() {
            return Ok((s, false));
        }
        let _connecting = p.connecting.lock().await;
        if let Some(s) = p.open() {
            return Ok((s, false));
        }
        let stream =
            TcpStream::connect(&p.addr).await.map_err(|source| CallError::Connect { peer: p.addr.clone(), source })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = h2::client::Builder::new()
            .initial_window_size(WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_send_buffer_size(WINDOW as usize)
            .handshake::<_, Bytes>(stream)
            .await
            .map_err(|e| CallError::Protocol { peer: p.addr.clone(), message: e.to_string() })?;
        tokio::spawn(async move {
            // Ends when the peer closes the connection or every sender is dropped.
            let _ = conn.await;
        });
        *p.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender.clone());
        Ok((sender, true))
    }

    async fn call_grpc(
        &self,
        peer: usize,
        operation: &str,
        headers: CallHeaders,
        body: Bytes,
    ) -> Result<Reply, CallError> {
        let p = self.peers.get(peer).ok_or(CallError::NoPeer(peer))?;
        let protocol = |message: String| CallError::Protocol { peer: p.addr.clone(), message };
        let mut req = http::Request::post(p.uri.clone())
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers");
        for (name, value) in
            [("traceparent", headers.traceparent), ("tracestate", headers.tracestate), ("baggage", headers.baggage)]
        {
            if let Some(v) = value {
                req = req.header(name, v);
            }
        }
        let req = req.body(()).map_err(|e| protocol(e.to_string()))?;
        let message = frame(&CallRequest { operation: operation.to_string(), payload: body });
        let mut retried = false;
        loop {
            let (sender, fresh) = self.connection(p).await?;
            match self.exchange(sender, req.clone(), message.clone()).await {
                Ok(reply) => return reply.map_err(protocol),
                Err(e) => {
                    // The connection is unusable: the next call opens another.
                    p.forget();
                    // A shared connection that closed before it took the
                    // call (the peer restarted, or said GOAWAY): the callee
                    // never saw it; again on a new connection.
                    if e.unsent && !fresh && !retried {
                        retried = true;
                        continue;
                    }
                    return Err(protocol(e.message));
                }
            }
        }
    }

    /// One call on `sender`'s connection. The outer error is the
    /// connection's; the inner one a reply that is not gRPC.
    async fn exchange(
        &self,
        sender: h2::client::SendRequest<Bytes>,
        req: http::Request<()>,
        message: Bytes,
    ) -> Result<Result<Reply, String>, WireError> {
        let mut sender = sender.ready().await?;
        let (response, mut send) = sender.send_request(req, false)?;
        send_all(&mut send, message).await?;
        let response = response.await?;
        let (parts, mut body) = response.into_parts();
        if parts.status != http::StatusCode::OK {
            return Ok(Err(format!("HTTP status {} to a gRPC call", parts.status)));
        }
        let limit = usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX).saturating_add(MESSAGE_SLACK);
        let mut data = bytes::BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if data.len() + chunk.len() > limit {
                return Ok(Err(format!("reply over {limit} bytes")));
            }
            data.extend_from_slice(&chunk);
        }
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
                None => Err(format!("gRPC {:?}: {message}", Code::from_i32(code))),
            });
        }
        let reply = match unframe(&data) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let number = |k: &str| parts.headers.get(k).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        Ok(Ok(Reply {
            status: 200,
            server_ns: number(SERVER_NS_HEADER),
            calls: number(CALLS_HEADER).and_then(|n: u64| u32::try_from(n).ok()),
            body: reply.payload,
        }))
    }
}

/// The path of the one method.
const CALL_PATH: &str = "/palette.v1.Palette/Call";

/// Per-stream flow-control window: a typical payload goes in one flight.
const WINDOW: u32 = 1 << 20;

/// Connection flow-control window, shared by the calls in flight.
const CONNECTION_WINDOW: u32 = 16 << 20;

/// A gRPC message: uncompressed flag, big-endian length, the protobuf.
fn frame(msg: &CallRequest) -> Bytes {
    let len = prost::Message::encoded_len(msg);
    let mut buf = Vec::with_capacity(5 + len);
    buf.push(0);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    prost::Message::encode(msg, &mut buf).expect("a Vec grows as needed");
    Bytes::from(buf)
}

/// The one message of a unary reply.
fn unframe(data: &[u8]) -> Result<CallReply, String> {
    let Some((head, rest)) = data.split_first_chunk::<5>() else {
        return Err("a reply without a message".into());
    };
    if head[0] != 0 {
        return Err("a compressed reply (none was asked for)".into());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if rest.len() != len {
        return Err(format!("a reply message of {} bytes framed as {len}", rest.len()));
    }
    <CallReply as prost::Message>::decode(rest).map_err(|e| format!("a reply that is not a CallReply: {e}"))
}

/// Sends `data` and ends the stream, as flow control allows.
async fn send_all(send: &mut h2::SendStream<Bytes>, mut data: Bytes) -> Result<(), h2::Error> {
    if data.is_empty() {
        return send.send_data(data, true);
    }
    send.reserve_capacity(data.len());
    while !data.is_empty() {
        let granted = match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(n) => n?,
            None => return Err(h2::Error::from(h2::Reason::STREAM_CLOSED)),
        };
        if granted == 0 {
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        send.send_data(chunk, data.is_empty())?;
    }
    Ok(())
}

impl Transport for GrpcClient {
    fn call<'a>(&'a self, peer: usize, operation: &'a str, headers: CallHeaders, body: Bytes) -> CallFuture<'a> {
        Box::pin(self.call_grpc(peer, operation, headers, body))
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
