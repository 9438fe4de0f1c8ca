//! `system.json`: everything a generated system's services need to run.
//!
//! One file describes the whole system: which service listens where, the
//! model every API executes (its PFA and causal latency model), how work
//! is produced, how services talk, where spans go, and the limits that keep
//! a service safe under bad input or overload. Every service process loads
//! the same file (`palette serve system.json --service NAME`), so a system
//! is one artefact that `generate` writes, interventions edit and
//! deployments (local, compose, Kubernetes) ship as-is.
//!
//! [`SystemConfig::load`] parses and checks it; errors name the file, the
//! line and the entry, and are bad data (exit 65) for the CLI.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use palette_model::Model;
use palette_model::check::{OwnedSeg, Seg, check, locate_line};
use palette_model::model::{ApiId, MAX_REPLICAS};
use serde::{Deserialize, Serialize};

/// The format tag this version writes and reads.
pub const SYSTEM_FORMAT: &str = "palette-system/1";

/// A generated system.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    pub format: String,
    /// The system's name: a DNS label, used as the compose project and the
    /// Kubernetes namespace.
    pub name: String,
    /// Seeds every random choice; each service mixes in its own name, so
    /// services draw independent streams and a rerun draws the same ones.
    pub seed: u64,
    /// How services call each other.
    #[serde(default)]
    pub rpc: RpcMode,
    /// How local work is produced, system-wide with per-service and per-API overrides.
    #[serde(default)]
    pub work: WorkConfig,
    /// Where spans go.
    #[serde(default)]
    pub tracing: TracingConfig,
    /// Bounds enforced at load and at run time.
    #[serde(default)]
    pub limits: Limits,
    /// The services, each with its port and the APIs it serves.
    pub services: Vec<ServiceConfig>,
    /// The model every API executes.
    pub model: Model,
}

// The transport and work modes are the model's own types: `deploy` records
// them and `system.json` carries them, so there is one definition of each.
pub use palette_model::model::{RpcMode, WorkMode};

/// Work modes: the system's default, and overrides (an API's beats its service's).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkConfig {
    pub mode: WorkMode,
    /// By service name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, WorkMode>,
    /// By `service operation`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub apis: BTreeMap<String, WorkMode>,
}

impl WorkConfig {
    /// The mode `service operation` runs its work in.
    pub fn mode_for(&self, service: &str, operation: &str) -> WorkMode {
        if !self.apis.is_empty()
            && let Some(m) = self.apis.get(&format!("{service} {operation}"))
        {
            return *m;
        }
        self.services.get(service).copied().unwrap_or(self.mode)
    }
}

/// Span export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// OTLP/JSON lines file (the collector file-exporter format); relative
    /// paths are relative to the directory of `system.json`. `null`: none.
    pub file: Option<String>,
    /// OTLP/HTTP endpoint (e.g. `http://127.0.0.1:4318/v1/traces`), protobuf. `null`: none.
    pub otlp_endpoint: Option<String>,
    /// Share of root requests traced (head sampling; the decision travels in
    /// `traceparent`'s sampled flag).
    pub sample_rate: f64,
    /// Spans per export batch.
    pub batch_size: usize,
    /// Longest a finished span waits before it is exported.
    pub flush_interval_ms: u64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            file: Some("spans.jsonl".into()),
            otlp_endpoint: None,
            sample_rate: 1.0,
            batch_size: 512,
            flush_interval_ms: 1000,
        }
    }
}

/// Limits that keep a service safe: enforced when the file is loaded (the
/// model must stay within them) and per request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests a service executes at once; more get 503 (and an error span)
    /// instead of an unbounded queue.
    pub max_in_flight: u32,
    /// A call that takes longer fails with a timeout (error span, 504 to the caller).
    pub call_timeout_ms: u64,
    /// Largest request or response body.
    pub max_body_bytes: u64,
    /// Largest `baggage` header accepted or sent (W3C asks for at least 8192).
    pub max_baggage_bytes: usize,
    /// Most calls in one stage.
    pub max_fan_out: u32,
    /// Most stages in one execution (loops included).
    pub max_stages: u32,
    /// Deepest call chain; deeper executions make no calls. At most
    /// [`MAX_DEPTH_LIMIT`].
    pub max_depth: u32,
    /// Largest buffer memory work touches.
    pub max_memory_work_bytes: u64,
}

/// The most `limits.max_depth` may be. In-process calls (local edges) nest
/// on the stack of the thread serving the request, and a debug build
/// overflows a worker's 2 MiB stack between 1,000 and 2,000 nested calls;
/// real call graphs are tens of levels deep.
pub const MAX_DEPTH_LIMIT: u32 = 512;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_in_flight: 1024,
            call_timeout_ms: 10_000,
            max_body_bytes: 16 << 20,
            max_baggage_bytes: 8192,
            max_fan_out: 1024,
            max_stages: 10_000,
            max_depth: 64,
            max_memory_work_bytes: 64 << 20,
        }
    }
}

/// One service of the system.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The service name in the traces (and in `service.name` of its spans).
    pub name: String,
    /// A DNS label for the service: its compose service and Kubernetes
    /// Service name, and its host when peers are reached by DNS.
    pub host: String,
    /// Port it listens on (on 127.0.0.1 locally, all interfaces in containers).
    pub port: u16,
    /// Processes serving it (the `replicate` intervention): callers spread
    /// their calls over them. Locally instance `i` listens on `port + i`;
    /// in containers every instance has its own address and listens on `port`.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub instances: u32,
    /// The APIs it serves (indices into the model's APIs).
    pub apis: Vec<ApiId>,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// How peers are reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PeerHosts {
    /// Every service on 127.0.0.1 at its port (local processes, packing).
    #[default]
    Loopback,
    /// Every service at `host:port` (compose and Kubernetes DNS).
    Dns,
}

impl ServiceConfig {
    /// Where peers send this service's requests (its first instance, locally).
    pub fn peer_address(&self, hosts: PeerHosts) -> String {
        match hosts {
            PeerHosts::Loopback => format!("127.0.0.1:{}", self.port),
            PeerHosts::Dns => format!("{}:{}", self.host, self.port),
        }
    }

    /// The port instance `i` listens on locally (checked at load to fit in a `u16`).
    pub fn instance_port(&self, i: u32) -> u16 {
        self.port.saturating_add(u16::try_from(i).unwrap_or(u16::MAX))
    }

    /// The local ports of all its instances.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.instances.max(1)).map(|i| self.instance_port(i))
    }

    /// Where the service listens by default: loopback only, so a system
    /// started on a laptop is not reachable from the network.
    pub fn default_listen(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Where instance `i` listens locally.
    pub fn instance_listen(&self, i: u32) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.instance_port(i)))
    }
}

/// Why a system file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Invalid { path: PathBuf, line: u64, message: String },
}

impl ConfigError {
    /// Bad content (exit 65), as opposed to a file that cannot be read.
    pub fn is_bad_data(&self) -> bool {
        matches!(self, ConfigError::Invalid { .. })
    }
}

impl palette_trace::failure::Classify for ConfigError {
    fn failure_kind(&self) -> palette_trace::failure::FailureKind {
        use palette_trace::failure::FailureKind;
        match self {
            ConfigError::Invalid { .. } => FailureKind::BadData,
            ConfigError::Io { .. } => FailureKind::Runtime,
        }
    }
}

impl SystemConfig {
    /// Reads and checks a system file.
    pub fn load(path: &Path) -> Result<SystemConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        SystemConfig::parse(&text, path)
    }

    /// Parses and checks the text of a system file (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<SystemConfig, ConfigError> {
        let invalid = |line: u64, message: String| ConfigError::Invalid { path: path.to_path_buf(), line, message };
        let config: SystemConfig = serde_json::from_str(text).map_err(|e| {
            let message = if text.contains("\"palette-model/1\"") && !text.contains(SYSTEM_FORMAT) {
                format!("this is a model, not a system; generate one with `palette generate {}`", path.display())
            } else {
                format!("not a palette system file ({e})")
            };
            invalid(e.line() as u64, message)
        })?;
        let at = |segs: &[Seg]| locate_line(text, segs).unwrap_or(0);
        if config.format != SYSTEM_FORMAT {
            return Err(invalid(
                at(&[Seg::Key("format")]),
                format!("format `{}` is not {SYSTEM_FORMAT}", config.format),
            ));
        }
        if let Err(e) = check(&config.model) {
            let mut segs = vec![Seg::Key("model")];
            segs.extend(e.path.iter().map(|s| s.as_seg()));
            return Err(invalid(locate_line(text, &segs).unwrap_or(0), format!("model.{e}")));
        }
        config.check().map_err(|(segs, message)| {
            let segs: Vec<Seg> = segs.iter().map(|s| s.as_seg()).collect();
            invalid(at(&segs), message)
        })?;
        Ok(config)
    }

    /// Checks what parsing cannot: names, ports, the API assignment and the limits.
    fn check(&self) -> Result<(), (Vec<OwnedSeg>, String)> {
        use OwnedSeg::{Index as I, Key as K};
        let l = &self.limits;
        let positive = [
            ("max_in_flight", u64::from(l.max_in_flight)),
            ("call_timeout_ms", l.call_timeout_ms),
            ("max_body_bytes", l.max_body_bytes),
            ("max_fan_out", u64::from(l.max_fan_out)),
            ("max_stages", u64::from(l.max_stages)),
            ("max_depth", u64::from(l.max_depth)),
            ("max_baggage_bytes", l.max_baggage_bytes as u64),
            ("max_memory_work_bytes", l.max_memory_work_bytes),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err((vec![K("limits"), K(name)], format!("limits.{name} must be at least 1")));
            }
        }
        if l.max_depth > MAX_DEPTH_LIMIT {
            return Err((
                vec![K("limits"), K("max_depth")],
                format!(
                    "limits.max_depth {} is over {MAX_DEPTH_LIMIT}, the deepest call chain a service runs",
                    l.max_depth
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.tracing.sample_rate) {
            return Err((
                vec![K("tracing"), K("sample_rate")],
                format!("tracing.sample_rate {} is not between 0 and 1", self.tracing.sample_rate),
            ));
        }
        if self.tracing.batch_size == 0 {
            return Err((vec![K("tracing"), K("batch_size")], "tracing.batch_size must be at least 1".into()));
        }
        if self.services.is_empty() {
            return Err((vec![K("services")], "the system has no services".into()));
        }
        let apis = self.model.apis.len();
        let mut served_by: Vec<Option<usize>> = vec![None; apis];
        let mut ports = BTreeMap::new();
        let mut names = BTreeMap::new();
        for (i, s) in self.services.iter().enumerate() {
            if let Some(j) = names.insert(s.name.as_str(), i) {
                return Err((
                    vec![K("services"), I(i), K("name")],
                    format!("service `{}` is listed twice (also services[{j}])", s.name),
                ));
            }
            if s.name.contains('\0') {
                return Err((
                    vec![K("services"), I(i), K("name")],
                    format!(
                        "service name `{}` holds a NUL character, which no command line can carry",
                        s.name.escape_debug()
                    ),
                ));
            }
            if !is_dns_label(&s.host) {
                return Err((
                    vec![K("services"), I(i), K("host")],
                    format!("host `{}` is not a DNS label (a-z, 0-9, '-', at most 63)", s.host),
                ));
            }
            if s.port == 0 {
                return Err((vec![K("services"), I(i), K("port")], format!("service `{}` has port 0", s.name)));
            }
            if s.instances == 0 || s.instances > MAX_REPLICAS {
                return Err((
                    vec![K("services"), I(i), K("instances")],
                    format!("service `{}` has {} instances; it needs 1 to {MAX_REPLICAS}", s.name, s.instances),
                ));
            }
            if u32::from(s.port) + s.instances - 1 > u32::from(u16::MAX) {
                return Err((
                    vec![K("services"), I(i), K("instances")],
                    format!(
                        "the {} instances of `{}` need ports {} to {}, past 65535",
                        s.instances,
                        s.name,
                        s.port,
                        u32::from(s.port) + s.instances - 1
                    ),
                ));
            }
            for port in s.ports() {
                if let Some(j) = ports.insert(port, i) {
                    let other = &self.services[j];
                    if s.instances == 1 && other.instances == 1 {
                        return Err((
                            vec![K("services"), I(i), K("port")],
                            format!("port {port} of `{}` is also the port of `{}`", s.name, other.name),
                        ));
                    }
                    let what = if port == s.port { String::new() } else { format!(" (instance {})", port - s.port) };
                    return Err((
                        vec![K("services"), I(i), K(if port == s.port { "port" } else { "instances" })],
                        format!(
                            "port {port} of `{}`{what} is also a port of `{}`; locally instance i of a service \
                             listens on port + i",
                            s.name, other.name
                        ),
                    ));
                }
            }
            for (k, &api) in s.apis.iter().enumerate() {
                let at = vec![K("services"), I(i), K("apis"), I(k)];
                let Some(slot) = served_by.get_mut(api as usize) else {
                    return Err((at, format!("API {api} does not exist (the model has {apis} APIs)")));
                };
                let a = &self.model.apis[api as usize];
                if a.service != s.name {
                    return Err((
                        at,
                        format!(
                            "API `{} {}` belongs to service `{}`, not `{}`",
                            a.service, a.operation, a.service, s.name
                        ),
                    ));
                }
                if slot.replace(i).is_some() {
                    return Err((at, format!("API `{} {}` is listed twice", a.service, a.operation)));
                }
            }
        }
        if let Some(api) = served_by.iter().position(Option::is_none) {
            return Err((
                vec![K("services")],
                format!("no service serves API `{}`", self.model.api_name(api as ApiId)),
            ));
        }
        for (a, api) in self.model.apis.iter().enumerate() {
            for (s, state) in api.states.iter().enumerate() {
                if state.calls.len() > l.max_fan_out as usize {
                    return Err((
                        vec![K("model"), K("apis"), I(a), K("states"), I(s), K("calls")],
                        format!("{} calls in one stage exceed limits.max_fan_out {}", state.calls.len(), l.max_fan_out),
                    ));
                }
                if let Some(&(runs, _)) = state.repeats.iter().find(|r| r.0 > l.max_stages) {
                    return Err((
                        vec![K("model"), K("apis"), I(a), K("states"), I(s), K("repeats")],
                        format!("a loop of {runs} runs exceeds limits.max_stages {}", l.max_stages),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The index of the service serving `api`.
    pub fn service_of(&self, api: ApiId) -> Option<usize> {
        self.services.iter().position(|s| s.apis.contains(&api))
    }

    /// Deterministic indented JSON (lists of numbers on one line, as the
    /// model's) with a trailing newline.
    pub fn to_json(&self) -> String {
        palette_model::json::to_string(self)
    }
}

/// RFC 1123 label: what compose service names and Kubernetes Services accept.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
