//! The HTTP/1.1 client: keep-alive connections to one target address.
//!
//! A pool per address keeps idle connections for reuse and opens a new one
//! whenever none is idle; the run's in-flight bound (a semaphore around
//! every request) is what limits connections, so the pool itself never
//! makes a request wait.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx response, read to its end.
    Ok,
    /// Any other status.
    Status(u16),
    /// No response within the request timeout.
    Timeout,
    /// The connection could not be opened.
    Connect,
    /// The connection failed while the request was on it.
    Io,
}

impl Outcome {
    /// The name errors of this kind are counted under.
    pub fn kind(self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Status(code) => code.to_string(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Connect => "connect".into(),
            Outcome::Io => "io".into(),
        }
    }
}

/// Keep-alive connections to one address.
pub struct Pool {
    /// `host:port` connected to.
    pub address: String,
    /// The `Host` header: HTTP/1.1 requires one.
    host: HeaderValue,
    /// Open connections with nothing on them, most recently used last.
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    /// Idle connections kept at most (more are closed): the in-flight bound.
    max_idle: usize,
}

impl Pool {
    pub fn new(address: String, max_idle: usize) -> Pool {
        let host = HeaderValue::from_str(&address).unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        Pool { address, host, idle: Mutex::new(Vec::new()), max_idle }
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(tx) = idle.pop() {
            if !tx.is_closed() {
                return Some(tx);
            }
        }
        None
    }

    fn put_idle(&self, tx: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(tx);
        }
    }

    async fn connect(&self) -> std::io::Result<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(&self.address).await?;
        // Requests are small and latency is what is measured: no Nagle delay.
        stream.set_nodelay(true)?;
        let (tx, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            // Ends when the server closes or the last sender is dropped.
            let _ = conn.await;
        });
        Ok(tx)
    }

    /// Sends one request and reads the whole response. A reused connection
    /// that turns out closed before the request went out is replaced once
    /// (the request was not sent, so it is safe to send again).
    pub async fn send(
        &self,
        method: Method,
        uri: &Uri,
        headers: &[(&'static str, HeaderValue)],
        body: Bytes,
    ) -> Outcome {
        match self.exchange(method, uri, headers, body).await {
            Ok((status, _)) if (200..300).contains(&status) => Outcome::Ok,
            Ok((status, _)) => Outcome::Status(status),
            Err(outcome) => outcome,
        }
    }

    /// Sends one request as [`Pool::send`] does and returns the status and
    /// the whole response body; `Err` is how it failed (never `Ok` or
    /// `Status`).
    pub async fn exchange(
        &self,
        method: Method,
        uri: &Uri,
        headers: &[(&'static str, HeaderValue)],
        body: Bytes,
    ) -> Result<(u16, Bytes), Outcome> {
        for _ in 0..2 {
            let (mut tx, reused) = match self.take_idle() {
                Some(tx) => (tx, true),
                None => match self.connect().await {
                    Ok(tx) => (tx, false),
                    Err(_) => return Err(Outcome::Connect),
                },
            };
            if tx.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(Outcome::Io);
            }
            let mut req = Request::new(Full::new(body.clone()));
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri.clone();
            let h = req.headers_mut();
            h.insert(http::header::HOST, self.host.clone());
            for (name, value) in headers {
                h.insert(*name, value.clone());
            }
            match tx.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status();
                    let Ok(body) = resp.into_body().collect().await else {
                        return Err(Outcome::Io);
                    };
                    self.put_idle(tx);
                    return Ok((status.as_u16(), body.to_bytes()));
                }
                Err(e) if reused && e.is_canceled() => continue,
                Err(_) => return Err(Outcome::Io),
            }
        }
        Err(Outcome::Io)
    }

    /// `GET path` answered 2xx within `timeout`: its body; otherwise why not.
    pub async fn get(&self, path: &'static str, timeout: Duration) -> Result<Bytes, String> {
        let uri = Uri::from_static(path);
        match tokio::time::timeout(timeout, self.exchange(Method::GET, &uri, &[], Bytes::new())).await {
            Ok(Ok((status, body))) if (200..300).contains(&status) => Ok(body),
            Ok(Ok((status, _))) => Err(format!("GET {path} answered {status}")),
            Ok(Err(Outcome::Connect)) => Err("cannot connect".into()),
            Ok(Err(_)) => Err("the connection failed".into()),
            Err(_) => Err(format!("no answer to GET {path} within {timeout:?}")),
        }
    }

    /// `GET /healthz` answers 200 within `timeout`; otherwise why not.
    pub async fn health(&self, timeout: Duration) -> Result<(), String> {
        let uri = Uri::from_static("/healthz");
        match tokio::time::timeout(timeout, self.send(Method::GET, &uri, &[], Bytes::new())).await {
            Ok(Outcome::Ok) => Ok(()),
            Ok(Outcome::Status(code)) => Err(format!("GET /healthz answered {code}")),
            Ok(Outcome::Connect) => Err("cannot connect".into()),
            Ok(_) => Err("the connection failed".into()),
            Err(_) => Err(format!("no answer to GET /healthz within {:?}", timeout)),
        }
    }
}

/// `/op/{operation}` with the operation percent-encoded (RFC 3986: unreserved
/// characters kept, every other byte as `%XX`).
pub fn op_path(operation: &str) -> String {
    let mut path = String::with_capacity(4 + operation.len() * 3);
    path.push_str("/op/");
    for &b in operation.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            path.push(b as char);
        } else {
            path.push_str(&format!("%{b:02X}"));
        }
    }
    path
}

/// A W3C `traceparent` (version 00) for a new trace, sampled or not.
pub fn traceparent(trace_id: u128, span_id: u64, sampled: bool) -> String {
    format!("00-{trace_id:032x}-{span_id:016x}-{:02x}", u8::from(sampled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(op_path("GET /cart"), "/op/GET%20%2Fcart");
        assert_eq!(op_path("a-b.c_d~e9"), "/op/a-b.c_d~e9");
        assert_eq!(op_path("é"), "/op/%C3%A9");
        assert!(op_path("x?y#z%").parse::<Uri>().is_ok());
    }

    #[test]
    fn traceparent_is_w3c() {
        let tp = traceparent(0xabc, 0x12, true);
        assert_eq!(tp, "00-00000000000000000000000000000abc-0000000000000012-01");
        assert_eq!(tp.len(), 55);
        assert!(traceparent(0xabc, 0x12, false).ends_with("-00"));
    }
}
