//! The generator's own ceiling: load against a server that answers at once.
//!
//! [`NullServer`] is an HTTP/1.1 server that answers every request with an
//! empty 200 on its own thread (a single-threaded runtime, like one service
//! pinned to a core), and [`null_system`] a one-API system pointing at it.
//! `palette bench load` raises the rate against them until the generator
//! falls behind; the rate where it still keeps up is its ceiling on the
//! machine.

use std::convert::Infallible;
use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use palette_runtime::SystemConfig;

/// An HTTP/1.1 server answering everything with 200 at once, until dropped.
pub struct NullServer {
    /// The loopback port it listens on.
    pub port: u16,
    /// Dropping it stops the server.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NullServer {
    pub fn start() -> std::io::Result<NullServer> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("null-server".into()).spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
                loop {
                    tokio::select! {
                        _ = &mut stopped => return,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let _ = stream.set_nodelay(true);
                            tokio::spawn(async move {
                                let svc = service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
                                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .await;
                            });
                        }
                    }
                }
            })
        })?;
        Ok(NullServer { port, stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for NullServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A system of one service `null` with one root API `op`, at `port`.
pub fn null_system(port: u16) -> SystemConfig {
    let text = format!(
        r#"{{
  "format": "palette-system/1", "name": "null", "seed": 1,
  "services": [{{"name": "null", "host": "null", "port": {port}, "apis": [0]}}],
  "model": {{
    "format": "palette-model/1", "kind": "palette",
    "options": {{"stage_tolerance_ns": 100000, "confidence": 0.05, "max_unrolled": 3, "min_caller_support": 20}},
    "provenance": {{"inputs": [], "traces": 1, "spans": 1}},
    "services": ["null"],
    "apis": [{{"service": "null", "operation": "op", "count": 1, "callers": [{{"caller": null, "count": 1}}],
              "latency": {{"n": 1, "min": 1.0, "max": 1.0, "bins": [[0, 1]]}}}}],
    "roots": [{{"api": 0, "count": 1}}], "edges": []
  }}
}}"#
    );
    SystemConfig::parse(&text, Path::new("null-system.json")).expect("the built-in system is valid")
}
