//! An Alibaba-like call-graph generator, writing the published CallGraph CSV
//! schemas (v2021 and v2022) as a stream.
//!
//! Shape, after the published characterisation of Alibaba's traces (Luo et
//! al., SoCC 2021 and the 2022 cluster-trace release): every API has a fixed
//! set of downstream calls (the static call graph) with heavy-tailed fan-out,
//! and each request draws its own dynamic call graph from it (optional and
//! repeated calls), so trace sizes are heavy-tailed and graphs vary from
//! request to request; service popularity is skewed; depth is bounded by
//! layers (most graphs shallow, some deep); many leaves are cache (`mc`) and
//! database (`db`) calls; rows of concurrent traces interleave in time order.
//! Every service has an owner one layer up that calls it now and then, so a
//! long run reaches every service however many there are (20,000 and more,
//! as in Alibaba's traces); `tests/alibaba_shape.rs` checks the shape.
//! Rows are written in timestamp order while memory holds only traces in
//! flight.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};

use crate::rng::Rng;

/// Which published schema to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    /// `,traceid,timestamp,rpcid,um,rpctype,dm,interface,rt`, rpc and http
    /// calls logged by both sides (downstream row with negative rt).
    V2021,
    /// `timestamp,traceid,service,rpc_id,rpctype,um,uminstanceid,interface,dm,dminstanceid,rt`.
    V2022,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct AlibabaConfig {
    pub schema: Schema,
    /// Stop starting traces once this many rows are written.
    pub rows: u64,
    /// Distinct microservices.
    pub services: u32,
    /// Traces starting per second of trace time.
    pub traces_per_s: f64,
    /// Largest trace, in calls.
    pub max_calls: u32,
    pub seed: u64,
}

impl Default for AlibabaConfig {
    fn default() -> Self {
        AlibabaConfig {
            schema: Schema::V2022,
            rows: 100_000,
            services: 2_000,
            traces_per_s: 2_000.0,
            max_calls: 2_000,
            seed: 1,
        }
    }
}

/// One call of a generated trace.
struct Call {
    parent: usize,
    rpcid: String,
    service: u32,
    interface: u32,
    rpctype: &'static str,
    /// Own work before, between and after its calls, ms.
    work_ms: f64,
    start_ms: f64,
    rt_ms: f64,
    children: Vec<usize>,
}

/// What an API calls: the system's static call graph. Each trace draws its
/// own dynamic call graph from it (every call is optional, some repeat).
struct Template {
    calls: Vec<TemplateCall>,
    /// Median of the API's own work, ms.
    work_median_ms: f64,
}

struct TemplateCall {
    service: u32,
    interface: u32,
    rpctype: &'static str,
    /// Chance the call is made in a given execution.
    p: f64,
    /// Most repetitions of the call in one execution.
    max_repeat: u32,
}

struct Gen {
    cfg: AlibabaConfig,
    rng: Rng,
    /// Templates, made the first time an API is called (so memory follows
    /// the APIs in use, not the service count).
    templates: std::collections::HashMap<(u32, u32), Template>,
}

/// Call-graph layers: services call only into deeper layers, which bounds
/// depth as in Alibaba's traces (most call graphs are shallow, a few deep).
const LAYERS: u32 = 6;

impl Gen {
    /// Entry services (the first 1%): the only ones requests start at.
    fn entry(&self) -> u32 {
        (self.cfg.services / 100).max(1)
    }

    /// Every third service past the entry ones is stateful (a cache or
    /// database): it calls nothing.
    fn is_stateful(&self, service: u32) -> bool {
        service.is_multiple_of(3) && service >= self.entry()
    }

    /// Stateful services in `[lo, hi)`.
    fn stateful_in(&self, lo: u32, hi: u32) -> u32 {
        let lo = lo.max(self.entry());
        if hi <= lo { 0 } else { hi.div_ceil(3) - lo.div_ceil(3) }
    }

    /// The first service of `layer` (layer 0 is the entry services).
    fn first(&self, layer: u32) -> u32 {
        let entry = self.entry();
        let rest = self.cfg.services.saturating_sub(entry);
        if layer == 0 { 0 } else { (entry + (layer - 1) * rest / (LAYERS - 1)).min(self.cfg.services) }
    }

    fn layer(&self, service: u32) -> u32 {
        (1..LAYERS).rev().find(|&l| service >= self.first(l)).unwrap_or(0)
    }

    /// A service in `layer` or deeper, popular ones (low ids) more often.
    fn service_below(&mut self, layer: u32) -> u32 {
        let first = self.first(layer.min(LAYERS - 1));
        let span = (self.cfg.services - first).max(1);
        let u = self.rng.f64();
        first + ((span as f64) * u * u) as u32
    }

    /// The services of the next layer that `service` (stateless) owns: the
    /// next layer is split into contiguous blocks, one per stateless service
    /// of this layer, so every service has a caller in the static call graph
    /// and a long enough run reaches all of them, however many.
    fn owned(&self, service: u32) -> std::ops::Range<u32> {
        let layer = self.layer(service);
        if layer + 1 >= LAYERS || self.is_stateful(service) {
            return 0..0;
        }
        let (lo, hi) = (self.first(layer), self.first(layer + 1));
        let stateless = (hi - lo) - self.stateful_in(lo, hi);
        let rank = (service - lo) - self.stateful_in(lo, service);
        let (next_lo, next_hi) = (hi, self.first(layer + 2).max(hi));
        let width = (next_hi - next_lo) as u64;
        let at = |k: u32| next_lo + (width * k as u64 / stateless.max(1) as u64) as u32;
        at(rank)..at(rank + 1)
    }

    fn call_to(&mut self, callee: u32, interface: u32, p: f64) -> TemplateCall {
        let rpctype = if self.is_stateful(callee) {
            if self.rng.bernoulli(0.6) { "mc" } else { "db" }
        } else {
            match self.rng.f64() {
                x if x < 0.8 => "rpc",
                x if x < 0.95 => "http",
                _ => "mq",
            }
        };
        let max_repeat = if self.rng.bernoulli(0.1) { self.rng.range(2, 4) as u32 } else { 1 };
        TemplateCall { service: callee, interface, rpctype, p, max_repeat }
    }

    fn template(&mut self, service: u32, interface: u32) -> &Template {
        if !self.templates.contains_key(&(service, interface)) {
            let mut rng =
                Rng::new(self.cfg.seed ^ ((service as u64) << 20 | interface as u64).wrapping_mul(0x9E37_79B9));
            std::mem::swap(&mut self.rng, &mut rng);
            let layer = self.layer(service);
            // Heavy-tailed fan-out; stateful services (caches, databases) and
            // the deepest layer call nothing.
            let fan_out = if self.is_stateful(service) || layer + 1 >= LAYERS {
                0
            } else {
                (self.rng.pareto(1.0, 1.1) as usize).min(40)
            };
            let mut calls: Vec<TemplateCall> = (0..fan_out)
                .map(|_| {
                    let mut callee = self.service_below(layer + 1);
                    let stateful = self.rng.bernoulli(0.5);
                    // Steer to a service of the drawn kind, keeping popularity
                    // (and the layering: never upwards).
                    while stateful != self.is_stateful(callee) && callee + 1 < self.cfg.services {
                        callee += 1;
                    }
                    let interface = self.rng.range(0, 3) as u32;
                    let p = if self.rng.bernoulli(0.6) { 1.0 } else { 0.2 + 0.7 * self.rng.f64() };
                    self.call_to(callee, interface, p)
                })
                .collect();
            // Interface 0 also makes the rarer calls to the services this one
            // owns, about one per execution in all: the long tail of
            // services, each seen now and then.
            if interface == 0 {
                let owned = self.owned(service);
                let p = (1.0 / owned.len().max(1) as f64).clamp(0.05, 0.8);
                for callee in owned {
                    let p = p * (0.5 + self.rng.f64());
                    let call = self.call_to(callee, 0, p);
                    calls.push(call);
                }
            }
            let work_median_ms = self.rng.lognormal(1.0, 0.8);
            std::mem::swap(&mut self.rng, &mut rng);
            self.templates.insert((service, interface), Template { calls, work_median_ms });
        }
        &self.templates[&(service, interface)]
    }

    fn trace(&mut self) -> Vec<Call> {
        let entry = self.entry();
        let u = self.rng.f64();
        let root_service = ((entry as f64) * u * u) as u32;
        let mut calls: Vec<Call> = vec![Call {
            parent: usize::MAX,
            rpcid: "0.1".into(),
            service: root_service,
            interface: self.rng.range(0, 2) as u32,
            rpctype: "http",
            work_ms: 0.0,
            start_ms: 0.0,
            rt_ms: 0.0,
            children: Vec::new(),
        }];
        // Expand breadth-first from the templates.
        let mut k = 0;
        while k < calls.len() && calls.len() < self.cfg.max_calls as usize {
            let (service, interface) = (calls[k].service, calls[k].interface);
            let planned: Vec<(u32, u32, &'static str, f64, u32)> = self
                .template(service, interface)
                .calls
                .iter()
                .map(|c| (c.service, c.interface, c.rpctype, c.p, c.max_repeat))
                .collect();
            for (callee, iface, rpctype, p, max_repeat) in planned {
                if !self.rng.bernoulli(p) {
                    continue;
                }
                let repeats = if max_repeat > 1 { self.rng.range(1, max_repeat as u64) as u32 } else { 1 };
                for _ in 0..repeats {
                    if calls.len() >= self.cfg.max_calls as usize {
                        break;
                    }
                    let i = calls.len();
                    let ordinal = calls[k].children.len() + 1;
                    let rpcid = format!("{}.{}", calls[k].rpcid, ordinal);
                    calls[k].children.push(i);
                    calls.push(Call {
                        parent: k,
                        rpcid,
                        service: callee,
                        interface: iface,
                        rpctype,
                        work_ms: 0.0,
                        start_ms: 0.0,
                        rt_ms: 0.0,
                        children: Vec::new(),
                    });
                }
            }
            k += 1;
        }
        // Latency bottom-up (children come after parents), then start times
        // top-down: sequential calls, each after some local work.
        for i in (0..calls.len()).rev() {
            let median = self.template(calls[i].service, calls[i].interface).work_median_ms;
            calls[i].work_ms = self.rng.lognormal(median, 0.4);
            let waited: f64 =
                calls[i].children.iter().filter(|&&c| calls[c].rpctype != "mq").map(|&c| calls[c].rt_ms + 0.2).sum();
            calls[i].rt_ms = calls[i].work_ms + waited;
        }
        for i in 0..calls.len() {
            let mut cursor = calls[i].start_ms + calls[i].work_ms / 2.0;
            let children = calls[i].children.clone();
            for c in children {
                calls[c].start_ms = cursor + 0.1;
                if calls[c].rpctype != "mq" {
                    cursor += calls[c].rt_ms + 0.2;
                }
            }
        }
        calls
    }
}

/// Writes Alibaba-like CallGraph rows to `out`; returns the rows written.
pub fn write_alibaba(cfg: &AlibabaConfig, out: impl Write) -> io::Result<u64> {
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    let mut g = Gen { cfg: cfg.clone(), rng: Rng::new(cfg.seed), templates: std::collections::HashMap::new() };
    match cfg.schema {
        Schema::V2021 => writeln!(out, ",traceid,timestamp,rpcid,um,rpctype,dm,interface,rt")?,
        Schema::V2022 => {
            writeln!(out, "timestamp,traceid,service,rpc_id,rpctype,um,uminstanceid,interface,dm,dminstanceid,rt")?
        }
    }
    // Pending rows, ordered by (timestamp ms, sequence).
    let mut pending: BinaryHeap<Reverse<(u64, u64, String)>> = BinaryHeap::new();
    let (mut seq, mut written, mut scheduled) = (0u64, 0u64, 0u64);
    let mut now_ms = 0.0f64;
    let mut line = String::with_capacity(256);
    while scheduled < cfg.rows {
        now_ms += g.rng.exp(1000.0 / cfg.traces_per_s);
        let trace_id = format!("0b{:028x}", (g.rng.next_u64() as u128) << 48 | (g.rng.next_u64() >> 16) as u128);
        let calls = g.trace();
        let online = format!("S_{}", calls[0].service);
        for call in &calls {
            let ts = (now_ms + call.start_ms) as u64;
            let um = if call.parent == usize::MAX {
                "USER".to_string()
            } else {
                format!("MS_{}", calls[call.parent].service)
            };
            let dm = format!("MS_{}", call.service);
            let iface = format!("{}_if{}", dm, call.interface);
            let rt = call.rt_ms.round().max(1.0) as i64;
            line.clear();
            match cfg.schema {
                Schema::V2021 => {
                    use std::fmt::Write as _;
                    let _ =
                        write!(line, "{seq},{trace_id},{ts},{},{um},{},{dm},{iface},{rt}", call.rpcid, call.rpctype);
                    pending.push(Reverse((ts, seq, line.clone())));
                    seq += 1;
                    scheduled += 1;
                    if matches!(call.rpctype, "rpc" | "http") {
                        // The callee's own log of the call: later, shorter, negative.
                        let down = (call.rt_ms - 0.2).round().max(1.0) as i64;
                        line.clear();
                        let _ = write!(
                            line,
                            "{seq},{trace_id},{},{},{um},{},{dm},{iface},{}",
                            ts, call.rpcid, call.rpctype, -down
                        );
                        pending.push(Reverse((ts, seq, line.clone())));
                        seq += 1;
                        scheduled += 1;
                    }
                }
                Schema::V2022 => {
                    use std::fmt::Write as _;
                    let um_pod = if um == "USER" { "UNKNOWN".to_string() } else { format!("{um}_POD_0") };
                    let _ = write!(
                        line,
                        "{ts},{trace_id},{online},{},{},{um},{um_pod},{iface},{dm},{dm}_POD_{},{rt}",
                        call.rpcid,
                        call.rpctype,
                        call.service % 3
                    );
                    pending.push(Reverse((ts, seq, line.clone())));
                    seq += 1;
                    scheduled += 1;
                }
            }
        }
        // Rows before the next trace's earliest start are final.
        while let Some(Reverse((ts, _, _))) = pending.peek() {
            if (*ts as f64) >= now_ms {
                break;
            }
            let Reverse((_, _, row)) = pending.pop().expect("peeked");
            out.write_all(row.as_bytes())?;
            out.write_all(b"\n")?;
            written += 1;
        }
    }
    while let Some(Reverse((_, _, row))) = pending.pop() {
        out.write_all(row.as_bytes())?;
        out.write_all(b"\n")?;
        written += 1;
    }
    out.flush()?;
    Ok(written)
}
