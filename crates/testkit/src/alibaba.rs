//! An Alibaba-like call-graph generator, writing the published CallGraph CSV
//! schemas (v2021 and v2022) as a stream.
//!
//! Shape, after the published characterisation of Alibaba's traces (Luo et
//! al., SoCC 2021 and the 2022 cluster-trace release): service popularity is
//! heavy-tailed, trace sizes are heavy-tailed (Pareto), call graphs vary from
//! request to request, many leaves are cache (`mc`) and database (`db`)
//! calls, and rows of concurrent traces interleave in time order. Rows are
//! written in timestamp order while memory holds only traces in flight.

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

struct Gen {
    cfg: AlibabaConfig,
    rng: Rng,
}

impl Gen {
    /// Heavy-tailed popularity: low ids are hot.
    fn service(&mut self) -> u32 {
        let u = self.rng.f64();
        ((self.cfg.services as f64) * u * u * u) as u32
    }

    fn trace(&mut self) -> Vec<Call> {
        let size = (self.rng.pareto(1.0, 1.2) as u32).clamp(1, self.cfg.max_calls) as usize;
        let entry = self.rng.range(0, (self.cfg.services / 50).max(1) as u64) as u32;
        let mut calls: Vec<Call> = Vec::with_capacity(size);
        calls.push(Call {
            parent: usize::MAX,
            rpcid: "0.1".into(),
            service: entry,
            interface: 0,
            rpctype: "http",
            work_ms: 0.0,
            start_ms: 0.0,
            rt_ms: 0.0,
            children: Vec::new(),
        });
        for i in 1..size {
            // Deep chains and wide fan-out both occur: extend the latest
            // call or pick any earlier one.
            let parent = if self.rng.bernoulli(0.45) { i - 1 } else { self.rng.range(0, i as u64 - 1) as usize };
            let ordinal = calls[parent].children.len() + 1;
            let rpcid = format!("{}.{}", calls[parent].rpcid, ordinal);
            calls[parent].children.push(i);
            let service = self.service();
            let rpctype = match self.rng.f64() {
                x if x < 0.55 => "rpc",
                x if x < 0.75 => "mc",
                x if x < 0.88 => "db",
                x if x < 0.95 => "http",
                _ => "mq",
            };
            let interface = self.rng.range(0, 4) as u32;
            calls.push(Call {
                parent,
                rpcid,
                service,
                interface,
                rpctype,
                work_ms: 0.0,
                start_ms: 0.0,
                rt_ms: 0.0,
                children: Vec::new(),
            });
        }
        // Latency bottom-up (children are created after parents), then start
        // times top-down: sequential calls, each after some local work.
        for i in (0..calls.len()).rev() {
            let leaf_like = matches!(calls[i].rpctype, "mc" | "db");
            calls[i].work_ms = if leaf_like { self.rng.lognormal(0.8, 0.6) } else { self.rng.lognormal(2.0, 0.8) };
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
    let mut g = Gen { cfg: cfg.clone(), rng: Rng::new(cfg.seed) };
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
