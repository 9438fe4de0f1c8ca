//! Summary statistics of assembled traces: what `palette inspect` prints.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::format::ReadSummary;
use crate::span::{Api, Interner, Sym};
use crate::tree::{CallTree, EdgeKind};

/// Exact counts of small integer values (spans per trace, depth, fan-out).
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    counts: BTreeMap<u64, u64>,
}

impl Histogram {
    pub fn add(&mut self, value: u64) {
        *self.counts.entry(value).or_default() += 1;
    }
    pub fn count(&self) -> u64 {
        self.counts.values().sum()
    }
    /// The smallest value with at least `q` of the observations at or below it.
    pub fn quantile(&self, q: f64) -> u64 {
        let n = self.count();
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n.max(1));
        let mut seen = 0;
        for (&v, &c) in &self.counts {
            seen += c;
            if seen >= rank {
                return v;
            }
        }
        0
    }
    pub fn summary(&self) -> Distribution {
        let n = self.count();
        let sum: u128 = self.counts.iter().map(|(&v, &c)| v as u128 * c as u128).sum();
        Distribution {
            count: n,
            min: self.counts.keys().next().copied().unwrap_or(0),
            p50: self.quantile(0.5),
            p90: self.quantile(0.9),
            p99: self.quantile(0.99),
            max: self.counts.keys().next_back().copied().unwrap_or(0),
            mean: if n == 0 { 0.0 } else { (sum as f64 / n as f64 * 100.0).round() / 100.0 },
        }
    }
    /// Every (value, count), ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts.iter().map(|(&v, &c)| (v, c))
    }
}

/// Accumulates statistics over traces as they are assembled.
#[derive(Clone, Debug, Default)]
pub struct TraceStats {
    pub traces: u64,
    pub spans: u64,
    /// Traces with at least one error execution.
    pub error_traces: u64,
    /// Executions per API.
    pub api_calls: FxHashMap<Api, u64>,
    /// Calls per (caller, callee, kind).
    pub edges: FxHashMap<(Api, Api, EdgeKind), u64>,
    /// Traces per root API.
    pub roots: FxHashMap<Api, u64>,
    pub spans_per_trace: Histogram,
    pub depth: Histogram,
    /// Calls made per execution that makes any.
    pub fan_out: Histogram,
}

impl TraceStats {
    pub fn add(&mut self, tree: &CallTree) {
        self.traces += 1;
        self.spans += tree.span_count as u64;
        self.spans_per_trace.add(tree.span_count as u64);
        self.depth.add(tree.depth() as u64);
        *self.roots.entry(tree.root().api).or_default() += 1;
        let mut error = false;
        for e in &tree.execs {
            *self.api_calls.entry(e.api).or_default() += 1;
            error |= e.error;
            if e.child_count > 0 {
                self.fan_out.add(e.child_count as u64);
            }
            if !e.is_root() {
                let caller = tree.execs[e.parent as usize].api;
                *self.edges.entry((caller, e.api, e.edge)).or_default() += 1;
            }
        }
        self.error_traces += error as u64;
    }

    pub fn services(&self) -> BTreeSet<Sym> {
        self.api_calls.keys().map(|a| a.service).collect()
    }

    /// The report `palette inspect` prints, names resolved.
    pub fn summary(&self, read: &ReadSummary) -> InspectSummary {
        let names = &read.names;
        let api = |a: &Api| ApiCount {
            service: names.resolve(a.service).to_string(),
            operation: names.resolve(a.operation).to_string(),
            count: 0,
        };
        let mut root_apis: Vec<ApiCount> = self.roots.iter().map(|(a, &c)| ApiCount { count: c, ..api(a) }).collect();
        root_apis.sort_by(|a, b| {
            b.count.cmp(&a.count).then_with(|| (&a.service, &a.operation).cmp(&(&b.service, &b.operation)))
        });
        let local_edges = self.edges.keys().filter(|k| k.2 == EdgeKind::Local).count() as u64;
        let defects = read
            .defects
            .counts
            .iter()
            .map(|(k, c)| {
                (
                    k.name().to_string(),
                    DefectSummary { count: c.count, first: c.first.clone(), repair: k.repair().to_string() },
                )
            })
            .collect();
        InspectSummary {
            traces: self.traces,
            spans: self.spans,
            services: self.services().len() as u64,
            apis: self.api_calls.len() as u64,
            edges: self.edges.len() as u64,
            local_edges,
            rpc_edges: self.edges.len() as u64 - local_edges,
            records: read.records,
            error_traces: self.error_traces,
            files: read
                .files
                .iter()
                .map(|(p, f)| FileSummary { path: p.display().to_string(), format: f.name().to_string() })
                .collect(),
            root_apis,
            spans_per_trace: self.spans_per_trace.summary(),
            depth: self.depth.summary(),
            fan_out: self.fan_out.summary(),
            defects,
            dropped_traces: read.defects.dropped_traces,
            dropped_spans: read.defects.dropped_spans,
            folded_client_spans: read.counts.folded_client_spans,
            adopted_calls: read.counts.adopted_calls,
            merged_call_pairs: read.counts.merged_call_pairs,
            peak_open_traces: read.counts.peak_open_traces,
        }
    }
}

/// Summary of a distribution of counts.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Distribution {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ApiCount {
    pub service: String,
    pub operation: String,
    pub count: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FileSummary {
    pub path: String,
    pub format: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DefectSummary {
    pub count: u64,
    /// Where it was first seen: file and line, or trace id.
    pub first: String,
    /// What was done about it.
    pub repair: String,
}

/// Everything `palette inspect` reports; `--json` prints it as is.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct InspectSummary {
    pub traces: u64,
    /// Canonical spans in the assembled traces.
    pub spans: u64,
    pub services: u64,
    pub apis: u64,
    pub edges: u64,
    pub local_edges: u64,
    pub rpc_edges: u64,
    /// Input records read (rows or spans), before merging and repair.
    pub records: u64,
    pub error_traces: u64,
    pub files: Vec<FileSummary>,
    pub root_apis: Vec<ApiCount>,
    pub spans_per_trace: Distribution,
    pub depth: Distribution,
    pub fan_out: Distribution,
    pub defects: BTreeMap<String, DefectSummary>,
    pub dropped_traces: u64,
    pub dropped_spans: u64,
    pub folded_client_spans: u64,
    pub adopted_calls: u64,
    pub merged_call_pairs: u64,
    pub peak_open_traces: u64,
}

impl InspectSummary {
    pub fn names(names: &Interner, api: Api) -> String {
        api.display(names).to_string()
    }
}

/// `1234567` → `1,234,567`: every report and table of the toolkit counts
/// this way.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
