//! What the clients of both transports share. Per service a client holds
//! its instances and takes them in turn ([`Balanced`]); each instance keeps
//! its own connections, and a call reuses one when it can. A reused
//! connection may have closed before it took the call (the peer
//! restarted, closed an idle keep-alive connection, or said GOAWAY): the
//! callee never saw the call, so it goes again on another connection. A
//! call that cannot connect has the service's name looked up again before
//! the next call (instances by DNS come and go).
//!
//! The transports differ in what a connection is and how a call is
//! framed: that is their [`Connections`].

use std::future::Future;
use std::str::FromStr;

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::balance::{Balanced, Endpoint, Instances};
use crate::transport::{CallError, CallHeaders, Reply};

/// One instance's connections, as one transport keeps and uses them.
pub(crate) trait Connections: Endpoint {
    /// What carries a call to the instance.
    type Connection: Send;
    /// A call in its wire form, kept to send again when a connection did not take it.
    type Request: Send;
    /// How many times a call goes again after reused connections did not take it.
    const RESENDS: u32;

    /// The wire form of a call of `operation` on this instance.
    fn request(&self, operation: &str, headers: CallHeaders, body: Bytes) -> Result<Self::Request, CallError>;

    /// A connection for the next call, and whether it is new (`false`: one
    /// already open, which may turn out to have closed).
    fn connection(&self) -> impl Future<Output = Result<(Self::Connection, bool), CallError>> + Send;

    /// Sends `request` on `connection` and reads the reply, whose payload
    /// may be at most `max_body_bytes`.
    fn exchange(
        &self,
        connection: Self::Connection,
        request: Self::Request,
        max_body_bytes: u64,
    ) -> impl Future<Output = Result<Reply, Failed<Self::Request>>> + Send;
}

/// Why an exchange got no reply.
pub(crate) enum Failed<R> {
    /// The connection closed before it took the request: the callee never
    /// saw it, so sending it again is safe (`error`: why, if it is not sent again).
    Unsent { request: R, error: CallError },
    /// The callee may have seen the request, or the reply was not one.
    Sent(CallError),
}

/// A client of every service of a system over one transport: per service
/// its instances in turn, per instance its connections.
pub(crate) struct Client<E> {
    /// Per service; each call goes to the next instance.
    peers: Vec<Balanced<E>>,
    /// Largest reply payload read.
    max_body_bytes: u64,
}

impl<E: Connections> Client<E> {
    /// A client for peers at `host:port` addresses, one instance each.
    pub(crate) fn one_instance_each(addrs: Vec<String>, max_body_bytes: u64) -> Client<E> {
        Client::new(addrs.into_iter().map(|a| Instances::Fixed(vec![a])).collect(), max_body_bytes)
    }

    /// A client for peers with one or more instances each.
    pub(crate) fn new(peers: Vec<Instances>, max_body_bytes: u64) -> Client<E> {
        Client { peers: peers.into_iter().map(Balanced::new).collect(), max_body_bytes }
    }

    /// Calls `operation` on the next instance of service `peer`, again on
    /// another connection (at most [`Connections::RESENDS`] times) while a
    /// reused one did not take the call.
    pub(crate) async fn call(
        &self,
        peer: usize,
        operation: &str,
        headers: CallHeaders,
        body: Bytes,
    ) -> Result<Reply, CallError> {
        let balanced = self.peers.get(peer).ok_or(CallError::NoPeer(peer))?;
        let instance = &*balanced.pick().await?;
        let mut request = instance.request(operation, headers, body)?;
        let mut resends = 0;
        loop {
            let (connection, fresh) = instance.connection().await.inspect_err(|_| balanced.unreachable())?;
            match instance.exchange(connection, request, self.max_body_bytes).await {
                Ok(reply) => return Ok(reply),
                Err(Failed::Unsent { request: back, .. }) if !fresh && resends < E::RESENDS => {
                    resends += 1;
                    request = back;
                }
                Err(Failed::Unsent { error, .. } | Failed::Sent(error)) => return Err(error),
            }
        }
    }
}

/// A TCP connection to `addr`, `TCP_NODELAY`: calls are small, and Nagle
/// would hold them for up to 40 ms.
pub(crate) async fn connect(addr: &str) -> Result<TcpStream, CallError> {
    let stream =
        TcpStream::connect(addr).await.map_err(|source| CallError::Connect { peer: addr.to_string(), source })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// `req` with the context headers of the call; a header the call has none of is left out.
pub(crate) fn with_context(mut req: http::request::Builder, headers: CallHeaders) -> http::request::Builder {
    for (name, value) in
        [("traceparent", headers.traceparent), ("tracestate", headers.tracestate), ("baggage", headers.baggage)]
    {
        if let Some(v) = value {
            req = req.header(name, v);
        }
    }
    req
}

/// A reply header read as a number (`palette-server-ns`, `palette-calls`);
/// `None` when it is missing or not one.
pub(crate) fn number<T: FromStr>(headers: &http::HeaderMap, name: &str) -> Option<T> {
    headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}
