//! How services talk: one small [`Transport`] trait for "call operation X on
//! peer Y with these headers and this body", and its HTTP/1.1
//! implementation on hyper — a client with pooled keep-alive connections per
//! peer, and a server that hands each request to a [`Handler`]. gRPC
//! ([`crate::grpc`]) is a second implementation of both; the executor does
//! not know which it runs over.
//!
//! Wire protocol: `POST /op/{operation}` (percent-encoded), W3C context
//! headers, `palette-server-ns` on 200 responses, one-line error bodies,
//! `GET /healthz`, and `GET /stats/lateness` (the process's
//! [`crate::lateness::LatenessReport`] as JSON).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::balance::{Endpoint, Instances};
use crate::lateness::{LATENESS_PATH, LatenessReport};

// The wire contract (paths, headers, encoding) is the spec's, shared with
// the load generator.
pub use palette_spec::wire::{CALLS_HEADER, OP_PREFIX, SERVER_NS_HEADER, percent_decode, percent_encode};

pub(crate) mod client;

use client::{Client, Connections, Failed};

/// The context headers of a call; `None` leaves a header out (a root
/// request from an outside client has none).
#[derive(Clone, Debug, Default)]
pub struct CallHeaders {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub baggage: Option<String>,
}

/// What came back from a call.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    /// The callee's own duration (`palette-server-ns`), when it sent one.
    pub server_ns: Option<u64>,
    /// Calls the callee's execution made (`palette-calls`), when it sent it.
    pub calls: Option<u32>,
    pub body: Bytes,
}

/// Why a call got no reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot connect to {peer}: {source}")]
    Connect { peer: String, source: std::io::Error },
    #[error("{peer}: {message}")]
    Protocol { peer: String, message: String },
    #[error("no peer {0}")]
    NoPeer(usize),
}

impl CallError {
    /// `peer` answered, or broke off, in a way that is not the protocol's.
    pub(crate) fn protocol(peer: &str, message: impl std::fmt::Display) -> CallError {
        CallError::Protocol { peer: peer.to_string(), message: message.to_string() }
    }
}

/// A boxed call in flight.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<Reply, CallError>> + Send + 'a>>;

/// Calls an operation on a peer. Peers are numbered as the system's
/// services are (`SystemConfig::services`).
pub trait Transport: Send + Sync + 'static {
    fn call<'a>(&'a self, peer: usize, operation: &'a str, headers: CallHeaders, body: Bytes) -> CallFuture<'a>;
}

/// Idle keep-alive connections kept per peer; more are closed when returned.
const MAX_IDLE_PER_PEER: usize = 1024;

struct Peer {
    /// `host:port`, for connecting and for the `host` header.
    addr: String,
    host: HeaderValue,
    /// Connections not carrying a request right now.
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Endpoint for Peer {
    fn new(addr: String) -> Peer {
        Peer {
            host: HeaderValue::from_str(&addr).unwrap_or(HeaderValue::from_static("localhost")),
            addr,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn addr(&self) -> &str {
        &self.addr
    }
}

impl Connections for Peer {
    type Connection = SendRequest<Full<Bytes>>;
    type Request = http::Request<Full<Bytes>>;
    /// Any idle connection in the pool may have closed: each is tried in turn, then a new one.
    const RESENDS: u32 = u32::MAX;

    fn request(&self, operation: &str, headers: CallHeaders, body: Bytes) -> Result<Self::Request, CallError> {
        let req = http::Request::builder()
            .method(Method::POST)
            .uri(format!("{OP_PREFIX}{}", percent_encode(operation)))
            .header(http::header::HOST, self.host.clone());
        client::with_context(req, headers).body(Full::new(body)).map_err(|e| CallError::protocol(&self.addr, e))
    }

    async fn connection(&self) -> Result<(Self::Connection, bool), CallError> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        if let Some(sender) = pooled {
            return Ok((sender, false));
        }
        let stream = client::connect(&self.addr).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| CallError::protocol(&self.addr, e))?;
        tokio::spawn(async move {
            // The connection ends when the peer closes it or the pool drops it.
            let _ = conn.await;
        });
        Ok((sender, true))
    }

    async fn exchange(
        &self,
        mut sender: Self::Connection,
        req: Self::Request,
        max_body_bytes: u64,
    ) -> Result<Reply, Failed<Self::Request>> {
        let protocol = |e: &dyn std::fmt::Display| CallError::protocol(&self.addr, e);
        if let Err(e) = sender.ready().await {
            return Err(Failed::Unsent { request: req, error: protocol(&e) });
        }
        match sender.try_send_request(req).await {
            Ok(resp) => {
                let (parts, incoming) = resp.into_parts();
                let body = Limited::new(incoming, max_body_bytes as usize)
                    .collect()
                    .await
                    .map_err(|e| Failed::Sent(protocol(&format!("reading the response: {e}"))))?
                    .to_bytes();
                if !sender.is_closed() {
                    let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                    if idle.len() < MAX_IDLE_PER_PEER {
                        idle.push(sender);
                    }
                }
                let server_ns = client::number(&parts.headers, SERVER_NS_HEADER);
                let calls = client::number(&parts.headers, CALLS_HEADER);
                Ok(Reply { status: parts.status.as_u16(), server_ns, calls, body })
            }
            Err(mut e) => match e.take_message() {
                // The connection closed before it took the request.
                Some(back) => Err(Failed::Unsent { request: back, error: protocol(e.error()) }),
                None => Err(Failed::Sent(protocol(e.error()))),
            },
        }
    }
}

/// HTTP/1.1 client: keep-alive connections pooled per peer instance,
/// `TCP_NODELAY` (the requests are small; Nagle would add 40 ms waits).
pub struct HttpClient {
    client: Client<Peer>,
}

impl HttpClient {
    /// A client for peers at `host:port` addresses, one instance each.
    pub fn new(addrs: Vec<String>, max_body_bytes: u64) -> HttpClient {
        HttpClient { client: Client::one_instance_each(addrs, max_body_bytes) }
    }

    /// A client for peers with one or more instances each.
    pub fn with_instances(peers: Vec<Instances>, max_body_bytes: u64) -> HttpClient {
        HttpClient { client: Client::new(peers, max_body_bytes) }
    }
}

impl Transport for HttpClient {
    fn call<'a>(&'a self, peer: usize, operation: &'a str, headers: CallHeaders, body: Bytes) -> CallFuture<'a> {
        Box::pin(self.client.call(peer, operation, headers, body))
    }
}

/// A request as a service sees it, whatever the transport.
#[derive(Debug)]
pub struct Inbound {
    pub operation: String,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// Every `baggage` header, joined with `,`.
    pub baggage: Option<String>,
    pub body: Bytes,
    /// It came as a gRPC call: its SERVER span says so (`rpc.system`).
    pub grpc: bool,
}

/// A service's answer.
#[derive(Debug)]
pub enum Outbound {
    /// 200 with the response payload and the server-side duration.
    Ok { body: Bytes, server_ns: u64, calls: u32 },
    /// An error status with a one-line message.
    Error { status: u16, message: String },
}

/// What serves requests: the executor of one service.
pub trait Handler: Send + Sync + 'static {
    fn handle(self: Arc<Self>, req: Inbound) -> Pin<Box<dyn Future<Output = Outbound> + Send>>;
    /// Largest request body accepted (413 beyond).
    fn max_body_bytes(&self) -> u64;
    /// How late the process's local work has ended, for `GET
    /// /stats/lateness`; `None` (404) for a handler that does no work.
    fn lateness(&self) -> Option<LatenessReport> {
        None
    }
}

/// Where a server is in its shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    /// No new connections; open ones finish their current request and close.
    Closing,
}

fn text(status: StatusCode, message: &str) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Every value of a header, joined with `,`; `Err` when one is not text.
pub(crate) fn header_text(headers: &http::HeaderMap, name: &str) -> Result<Option<String>, ()> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else { return Ok(None) };
    let mut s = first.to_str().map_err(|_| ())?.to_string();
    for v in all {
        s.push(',');
        s.push_str(v.to_str().map_err(|_| ())?);
    }
    Ok(Some(s))
}

async fn dispatch(handler: Arc<dyn Handler>, req: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
    let path = req.uri().path();
    if path == "/healthz" {
        return text(StatusCode::OK, "ok");
    }
    if path == LATENESS_PATH {
        return match handler.lateness().map(|l| serde_json::to_vec(&l)) {
            Some(Ok(json)) => {
                let mut r = http::Response::new(Full::new(Bytes::from(json)));
                r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                r
            }
            Some(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot write the lateness: {e}")),
            None => text(StatusCode::NOT_FOUND, "this server keeps no lateness counters"),
        };
    }
    let Some(encoded) = path.strip_prefix(OP_PREFIX) else {
        return text(StatusCode::NOT_FOUND, &format!("unknown path {path}; operations are POST /op/NAME"));
    };
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "operations take POST");
    }
    let Some(operation) = percent_decode(encoded) else {
        return text(StatusCode::BAD_REQUEST, "the operation in the path is not percent-encoded UTF-8");
    };
    let max = handler.max_body_bytes();
    if let Some(len) = req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok())
        && len.parse::<u64>().is_ok_and(|n| n > max)
    {
        return text(StatusCode::PAYLOAD_TOO_LARGE, &format!("request body over {max} bytes"));
    }
    // A traceparent a header cannot hold as text is malformed: a new root.
    let traceparent = header_text(req.headers(), "traceparent").ok().flatten();
    let tracestate = header_text(req.headers(), "tracestate").ok().flatten();
    let Ok(baggage) = header_text(req.headers(), "baggage") else {
        return text(StatusCode::BAD_REQUEST, "baggage holds characters a header cannot carry");
    };
    let body = match Limited::new(req.into_body(), max as usize).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return text(StatusCode::PAYLOAD_TOO_LARGE, &format!("request body over {max} bytes"));
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, &format!("cannot read the request body: {e}")),
    };
    match handler.handle(Inbound { operation, traceparent, tracestate, baggage, body, grpc: false }).await {
        Outbound::Ok { body, server_ns, calls } => {
            let mut r = http::Response::new(Full::new(body));
            r.headers_mut().insert(SERVER_NS_HEADER, HeaderValue::from(server_ns));
            r.headers_mut().insert(CALLS_HEADER, HeaderValue::from(calls));
            r
        }
        Outbound::Error { status, message } => {
            text(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &message)
        }
    }
}

/// Serves HTTP/1.1 on `listener` until [`Phase::Closing`], when the
/// listener closes and each connection finishes its current request and
/// closes.
pub async fn serve_http(listener: TcpListener, handler: Arc<dyn Handler>, phase: watch::Receiver<Phase>) {
    let builder = Arc::new(http1_builder());
    accept_until_closing(listener, phase, |stream, phase| {
        tokio::spawn(http1_connection(stream, handler.clone(), builder.clone(), phase));
    })
    .await;
}

/// The HTTP/1.1 server settings of every port: keep-alive, as callers
/// reuse their connections.
pub(crate) fn http1_builder() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(true);
    builder
}

/// Accepts connections on `listener` until [`Phase::Closing`], each
/// `TCP_NODELAY`, and hands each to `serve` with the phase to watch; what
/// every server's listener does, whatever the protocol.
pub(crate) async fn accept_until_closing(
    listener: TcpListener,
    mut phase: watch::Receiver<Phase>,
    mut serve: impl FnMut(TcpStream, watch::Receiver<Phase>),
) {
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
        serve(stream, phase.clone());
    }
}

/// Serves one HTTP/1.1 connection until it closes, or until
/// [`Phase::Closing`] and its current request is answered.
pub(crate) async fn http1_connection(
    stream: TcpStream,
    handler: Arc<dyn Handler>,
    builder: Arc<hyper::server::conn::http1::Builder>,
    mut phase: watch::Receiver<Phase>,
) {
    let service = hyper::service::service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(dispatch(handler, req).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = phase.wait_for(|p| *p == Phase::Closing) => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// Nanoseconds since `t`, saturating.
pub fn ns_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}
