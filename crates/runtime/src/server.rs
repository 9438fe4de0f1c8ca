//! Serving a system: one or many of its services in this process, each on
//! its own port.
//!
//! [`start`] binds every chosen service's port (all of them, or none: a
//! port in use fails the start before anything serves), starts span export
//! and serves. Per request a service checks the operation, the context
//! headers and its in-flight bound, then runs the execution
//! ([`crate::execute`]). [`Running::shutdown`] stops taking new root
//! requests (503), waits (bounded) for in-flight requests and detached
//! calls — still serving the calls they make, which may need new
//! connections to services in this process — then closes the listeners and
//! connections and flushes the spans.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use palette_model::ApiId;
use palette_model::exec::Context;
use palette_trace::rng::Rng;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::balance::Instances;
use crate::config::{PeerHosts, RpcMode, ServiceConfig, SystemConfig};
use crate::context::{Baggage, Ids, TraceParent, bound_tracestate};
use crate::execute::{Clock, Shared, Start, TraceCtx};
use crate::export::{AttrValue, ExportError, ExportStats, Exporter, Kind, SpanRecord};
use crate::grpc::{GrpcClient, serve_grpc};
use crate::transport::{Handler, HttpClient, Inbound, Outbound, Phase, Transport, serve_http};
use crate::work::Worker;

/// What to serve and how.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Names of the services to run here; `None`: all of them (packing).
    pub services: Option<Vec<String>>,
    /// Address to listen on: loopback by default, so a system started on a
    /// laptop is not reachable from the network; `0.0.0.0` in containers.
    pub listen_host: IpAddr,
    /// How this process reaches the other services.
    pub peers: PeerHosts,
    /// The directory of `system.json`: a relative span file is under it.
    pub base_dir: PathBuf,
    /// Longest wait for in-flight requests at shutdown.
    pub drain: Duration,
    /// Serve only this instance of the (replicated) services chosen; `None`:
    /// every instance, each on its port (`port + i`). With peers by DNS a
    /// process is one instance whatever this says, listening on `port`.
    pub instance: Option<u32>,
    /// Generated code for some APIs (empty for `palette serve`: every API
    /// walks its PFA).
    pub programs: crate::program::Programs,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            services: None,
            listen_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            peers: PeerHosts::Loopback,
            base_dir: PathBuf::from("."),
            drain: Duration::from_secs(10),
            instance: None,
            programs: crate::program::Programs::default(),
        }
    }
}

/// Why a system cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("no service `{name}` in the system (it has {known})")]
    UnknownService { name: String, known: String },
    #[error(
        "service `{service}` has {instances} instance(s): there is no instance {instance} (they are numbered from 0)"
    )]
    UnknownInstance { service: String, instance: u32, instances: u32 },
    #[error("cannot listen on {addr} for service `{service}`: {source}")]
    Bind { service: String, addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Export(#[from] ExportError),
}

impl ServeError {
    /// A wrong service name is a usage error (exit 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, ServeError::UnknownService { .. } | ServeError::UnknownInstance { .. })
    }
}

/// One service's request handler.
struct Service {
    shared: Arc<Shared>,
    index: usize,
    /// Operation name → API, for this service's APIs.
    ops: HashMap<String, ApiId>,
    /// `service.instance.id` of its spans, for a replicated service.
    instance: Option<Arc<str>>,
    /// Requests executing now, against `limits.max_in_flight`.
    in_flight: AtomicU32,
}

/// Decrements the counters a request holds when it ends, however it ends
/// (a dropped connection cancels the request's future).
struct Held<'a>(&'a AtomicU32, &'a AtomicUsize);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        self.1.fetch_sub(1, Ordering::AcqRel);
    }
}

fn error(status: u16, message: String) -> Outbound {
    Outbound::Error { status, message }
}

/// Where a request stands in its trace: the caller's trace, or a new
/// root's with the sampling decision made here.
struct InTrace {
    trace_id: [u8; 16],
    /// The caller's span; all zero for a new root.
    parent_span: [u8; 8],
    /// This request's SERVER span.
    span_id: [u8; 8],
    sampled: bool,
    tracestate: Option<String>,
}

impl Service {
    /// Checks a request, joins its trace, holds its place among the
    /// requests in flight and runs its execution.
    async fn serve(&self, req: Inbound) -> Outbound {
        let t0 = Instant::now();
        let (api, baggage) = match self.admit(&req) {
            Ok(admitted) => admitted,
            Err(refused) => return refused,
        };
        let (in_trace, rng) = self.join_trace(&req);
        let (_held, before) = self.hold_in_flight();
        let limits = &self.shared.config.limits;
        if before >= limits.max_in_flight {
            if in_trace.sampled {
                self.record_overloaded(&req, api, &in_trace, t0);
            }
            let name = &self.shared.service_names[self.index];
            return error(503, format!("service `{name}` is overloaded: {} requests in flight", limits.max_in_flight));
        }
        let start = self.start(api, &req, &baggage, in_trace, t0);
        let out = self.shared.clone().execute(start, rng).await;
        match out.failure {
            None => Outbound::Ok {
                body: self.shared.zeros.slice(..out.response_bytes),
                server_ns: out.elapsed_ns,
                calls: out.calls_made,
            },
            Some(f) => error(f.status, f.message),
        }
    }

    /// The request's API and its checked baggage, or the answer that
    /// refuses it: an operation this service does not have (404), baggage
    /// that is malformed or names no API of the system (400), a new root
    /// request while shutting down (503; calls are still served).
    fn admit(&self, req: &Inbound) -> Result<(ApiId, Baggage), Outbound> {
        let sh = &self.shared;
        let name = &sh.service_names[self.index];
        let Some(&api) = self.ops.get(&req.operation) else {
            return Err(error(404, format!("service `{name}` has no operation `{}`", req.operation)));
        };
        let limits = &sh.config.limits;
        let baggage = match req.baggage.as_deref().map(|b| Baggage::parse(b, limits.max_baggage_bytes)).transpose() {
            Ok(b) => b.unwrap_or_default(),
            Err(e) => return Err(error(400, e.to_string())),
        };
        let apis = sh.config.model.apis.len() as u32;
        for (key, value) in [("palette.root", baggage.root), ("palette.caller", baggage.caller)] {
            if let Some(v) = value.filter(|&v| v >= apis) {
                return Err(error(400, format!("baggage {key}={v} is not an API of this system ({apis} APIs)")));
            }
        }
        if baggage.caller.is_none() && sh.draining.load(Ordering::Acquire) {
            return Err(error(503, format!("service `{name}` is shutting down")));
        }
        Ok((api, baggage))
    }

    /// The request's place in its trace (a malformed `traceparent` starts a
    /// new one), and the random stream of its execution, which the
    /// sampling of a new root draws from first.
    fn join_trace(&self, req: &Inbound) -> (InTrace, Rng) {
        let sh = &self.shared;
        let parent = req.traceparent.as_deref().and_then(TraceParent::parse);
        let span_id = Ids::span_id();
        let mut rng = sh.rng_for(self.index, span_id);
        let (trace_id, parent_span, sampled) = match parent {
            Some(p) => (p.trace_id, p.parent_id, p.sampled()),
            // Head sampling at the root; the decision travels in traceparent.
            None => (Ids::trace_id(), [0; 8], rng.f64() < sh.config.tracing.sample_rate),
        };
        // W3C: tracestate is only meaningful beside a valid traceparent.
        let tracestate = if parent.is_some() { req.tracestate.as_deref().and_then(bound_tracestate) } else { None };
        (InTrace { trace_id, parent_span, span_id, sampled, tracestate }, rng)
    }

    /// Counts the request among this service's requests in flight and the
    /// process's active work until the guard drops; with the count before it.
    fn hold_in_flight(&self) -> (Held<'_>, u32) {
        self.shared.active.fetch_add(1, Ordering::AcqRel);
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        (Held(&self.in_flight, &self.shared.active), before)
    }

    /// The error SERVER span of a request refused for overload: the traces
    /// show the 503 where it happened.
    fn record_overloaded(&self, req: &Inbound, api: ApiId, in_trace: &InTrace, t0: Instant) {
        let sh = &self.shared;
        let mut attributes =
            vec![("palette.api", AttrValue::Int(i64::from(api))), ("http.response.status_code", AttrValue::Int(503))];
        if req.grpc {
            attributes.extend(crate::execute::grpc_attributes());
            attributes.push(("rpc.grpc.status_code", AttrValue::Int(crate::grpc::code_for(503) as i64)));
        }
        let now = sh.clock.unix_ns(t0);
        sh.exporter.record(SpanRecord {
            service: sh.service_names[self.index].clone(),
            instance: self.instance.clone(),
            trace_id: in_trace.trace_id,
            span_id: in_trace.span_id,
            parent_span_id: in_trace.parent_span,
            name: req.operation.clone(),
            kind: Kind::Server,
            start_unix_ns: now,
            end_unix_ns: now + crate::transport::ns_since(t0),
            error: Some("overloaded".into()),
            attributes,
        });
    }

    /// Where the execution of an admitted request starts: its API, caller
    /// and depth from the baggage, its trace context for the calls it makes.
    fn start(&self, api: ApiId, req: &Inbound, baggage: &Baggage, in_trace: InTrace, t0: Instant) -> Start {
        let limits = &self.shared.config.limits;
        let trace = Arc::new(TraceCtx {
            trace_id: in_trace.trace_id,
            sampled: in_trace.sampled,
            tracestate: in_trace.tracestate,
            root: baggage.root.unwrap_or(api),
            tail: baggage.other_tail(limits.max_baggage_bytes),
        });
        Start {
            api,
            ctx: Context { caller: baggage.caller },
            trace,
            depth: baggage.depth,
            span_id: in_trace.span_id,
            parent_span: in_trace.parent_span,
            kind: Kind::Server,
            request_bytes: req.body.len(),
            t0,
            grpc: req.grpc,
            instance: self.instance.clone(),
        }
    }
}

impl Handler for Service {
    fn handle(self: Arc<Self>, req: Inbound) -> Pin<Box<dyn std::future::Future<Output = Outbound> + Send>> {
        Box::pin(async move { self.serve(req).await })
    }

    fn max_body_bytes(&self) -> u64 {
        self.shared.config.limits.max_body_bytes
    }

    fn lateness(&self) -> Option<crate::lateness::LatenessReport> {
        Some(self.shared.worker.lateness())
    }
}

/// A system being served.
pub struct Running {
    listening: Vec<(String, SocketAddr)>,
    phase: watch::Sender<Phase>,
    shared: Arc<Shared>,
    servers: Vec<JoinHandle<()>>,
    drain: Duration,
}

/// Largest payload any API of `config` can be asked to send, within the limit.
fn largest_body(config: &SystemConfig) -> usize {
    let most = config
        .model
        .apis
        .iter()
        .flat_map(|a| [a.request_bytes.as_ref(), a.response_bytes.as_ref()])
        .flatten()
        .map(|s| s.max.max(0.0) as u64)
        .max()
        .unwrap_or(0);
    most.min(config.limits.max_body_bytes) as usize
}

/// Starts serving `opts.services` of `config`; returns once every port is
/// bound. Must run inside a Tokio runtime.
pub async fn start(config: SystemConfig, opts: &ServeOptions) -> Result<Running, ServeError> {
    let chosen: Vec<usize> = match &opts.services {
        None => (0..config.services.len()).collect(),
        Some(names) => names
            .iter()
            .map(|n| {
                config.services.iter().position(|s| &s.name == n).ok_or_else(|| ServeError::UnknownService {
                    name: n.clone(),
                    known: config.services.iter().map(|s| format!("`{}`", s.name)).collect::<Vec<_>>().join(", "),
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let mut listeners = Vec::with_capacity(chosen.len());
    for &i in &chosen {
        let s = &config.services[i];
        let instances: Vec<u32> = match (opts.instance, opts.peers) {
            (Some(k), _) if k >= s.instances => {
                return Err(ServeError::UnknownInstance {
                    service: s.name.clone(),
                    instance: k,
                    instances: s.instances,
                });
            }
            (Some(k), PeerHosts::Loopback) => vec![k],
            (None, PeerHosts::Loopback) => (0..s.instances).collect(),
            (k, PeerHosts::Dns) => vec![k.unwrap_or(0)],
        };
        for k in instances {
            // By DNS every instance has an address of its own and the service's port.
            let port = if opts.peers == PeerHosts::Dns { s.port } else { s.instance_port(k) };
            let addr = SocketAddr::new(opts.listen_host, port);
            let l = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind {
                service: s.name.clone(),
                addr,
                source,
            })?;
            listeners.push((i, instance_id(s, k, opts.peers), l));
        }
    }
    let exporter = Exporter::start(&config.tracing, &opts.base_dir)?;
    let peers = config.services.iter().map(|s| Instances::of(s, opts.peers)).collect();
    let transport: Arc<dyn Transport> = match config.rpc {
        RpcMode::Http => Arc::new(HttpClient::with_instances(peers, config.limits.max_body_bytes)),
        RpcMode::Grpc => Arc::new(GrpcClient::with_instances(peers, config.limits.max_body_bytes)),
    };
    let shared = Arc::new(shared_state(config, transport, exporter, opts.programs.clone()));
    let (phase, phase_rx) = watch::channel(Phase::Running);
    let mut listening = Vec::new();
    let mut servers = Vec::new();
    for (i, instance, listener) in listeners {
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            service: shared.config.services[i].name.clone(),
            addr: SocketAddr::new(opts.listen_host, shared.config.services[i].port),
            source,
        })?;
        listening.push((shared.config.services[i].name.clone(), addr));
        let ops = shared.config.services[i]
            .apis
            .iter()
            .map(|&a| (shared.config.model.apis[a as usize].operation.clone(), a))
            .collect();
        let handler =
            Arc::new(Service { shared: shared.clone(), index: i, ops, instance, in_flight: AtomicU32::new(0) });
        let phase = phase_rx.clone();
        servers.push(match shared.config.rpc {
            RpcMode::Http => tokio::spawn(serve_http(listener, handler, phase)),
            RpcMode::Grpc => {
                // Room above the in-flight bound: overload is answered, not queued.
                let streams = shared.config.limits.max_in_flight.saturating_mul(2).max(256);
                tokio::spawn(serve_grpc(listener, handler, streams, phase))
            }
        });
    }
    Ok(Running { listening, phase, shared, servers, drain: opts.drain })
}

/// `service.instance.id` of instance `k` of `s`: `None` for a service with
/// one instance (its spans stay as they were); by DNS the host name (the
/// container or pod), which tells replicas started alike apart.
fn instance_id(s: &ServiceConfig, k: u32, peers: PeerHosts) -> Option<Arc<str>> {
    if s.instances <= 1 {
        return None;
    }
    let host = match peers {
        PeerHosts::Dns => std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()),
        PeerHosts::Loopback => None,
    };
    Some(host.unwrap_or_else(|| format!("{}-{k}", s.host)).into())
}

/// The state every service of the process shares.
fn shared_state(
    config: SystemConfig,
    transport: Arc<dyn Transport>,
    exporter: Exporter,
    programs: crate::program::Programs,
) -> Shared {
    let apis = config.model.apis.len();
    let mut service_of = vec![0; apis];
    for (i, s) in config.services.iter().enumerate() {
        for &a in &s.apis {
            service_of[a as usize] = i;
        }
    }
    let modes = config.model.apis.iter().map(|a| config.work.mode_for(&a.service, &a.operation)).collect();
    let median_ns = config.model.apis.iter().map(|a| a.latency.quantile(0.5)).collect();
    let service_names = config.services.iter().map(|s| Arc::<str>::from(s.name.as_str())).collect();
    let service_seeds =
        config.services.iter().map(|s| config.seed ^ palette_trace::span::hash64(s.name.as_bytes())).collect();
    let local = config
        .model
        .edges
        .iter()
        .filter(|e| e.kind == palette_model::model::EdgeKind::Local)
        .map(|e| (e.caller, e.callee))
        .collect();
    Shared {
        zeros: Bytes::from(vec![0u8; largest_body(&config)]),
        worker: Worker::new(&config.limits),
        call_timeout: Duration::from_millis(config.limits.call_timeout_ms),
        breakers: Default::default(),
        hop_costs: crate::execute::HopCosts::new(config.services.len()),
        transport,
        exporter,
        clock: Clock::new(),
        service_of,
        modes,
        median_ns,
        service_names,
        service_seeds,
        local,
        active: AtomicUsize::new(0),
        draining: AtomicBool::new(false),
        programs,
        config,
    }
}

impl Running {
    /// (service, address) of each service instance served here, in the order asked.
    pub fn listening(&self) -> &[(String, SocketAddr)] {
        &self.listening
    }

    /// Refuses new root requests (503), waits up to the drain time for
    /// in-flight requests and detached calls (serving the calls they make),
    /// closes listeners and connections and flushes the spans.
    pub async fn shutdown(self) -> ExportStats {
        self.shared.draining.store(true, Ordering::Release);
        let deadline = Instant::now() + self.drain;
        while self.shared.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = self.phase.send(Phase::Closing);
        for s in self.servers {
            let _ = s.await;
        }
        self.shared.exporter.clone().shutdown().await
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, with the signal's name.
pub async fn shutdown_signal() -> &'static str {
    match ShutdownSignals::listen() {
        Ok(mut signals) => signals.recv().await,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// SIGINT and SIGTERM, caught from the moment this is made: a process that
/// says it is ready only after making it cannot be killed by a signal that
/// comes between the two (the default action would end it without draining).
pub struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers (inside a Tokio runtime).
    pub fn listen() -> std::io::Result<ShutdownSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(ShutdownSignals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(ShutdownSignals {})
        }
    }

    /// The next signal: `"SIGINT"` or `"SIGTERM"`.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
