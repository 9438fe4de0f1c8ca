//! # palette-trace
//!
//! Brief overview: reads distributed traces in the formats production systems
//! export — Alibaba CallGraph CSV (v2021, v2022), span CSV (Nezha), Jaeger
//! JSON, Zipkin v2 JSON and OTLP/JSON, plain or gzip — into canonical
//! [`Span`]s, and assembles them into repaired [`CallTree`]s: one execution per
//! API call, client spans folded into the call edge, defects counted in a
//! [`DefectReport`] under a [`Policy`] per kind.
//!
//! Assembly streams: with a window of input time (Alibaba rows are time
//! ordered), a trace is handed on as soon as it is complete, so memory is
//! bounded by the traces open at once, not by the input.
//!
//! ```no_run
//! use palette_trace::{read_traces, CallTree, NoProgress, ReadOptions, TraceStats};
//!
//! let mut stats = TraceStats::default();
//! let mut sink = |tree: &CallTree| {
//!     stats.add(tree);
//!     Ok(())
//! };
//! let inputs = ["traces.csv".into()];
//! let read = read_traces(&inputs, &ReadOptions::default(), &NoProgress, &mut sink)?;
//! let summary = stats.summary(&read);
//! println!("{} traces, {} spans, {} services", summary.traces, summary.spans, summary.services);
//! # Ok::<(), palette_trace::Error>(())
//! ```

pub mod assemble;
pub mod defect;
pub mod error;
pub mod failure;
pub mod format;
pub mod input;
pub mod overlap;
pub mod rng;
pub mod rpcid;
pub mod span;
pub mod stats;
pub mod tree;
pub mod write;

pub use assemble::{AssembleOptions, AssemblyCounts, TraceSink};
pub use defect::{DefectKind, DefectReport, Policies, Policy};
pub use error::Error;
pub use format::{Format, ReadOptions, ReadSummary, input_overlap, read_traces};
pub use input::{NoProgress, Progress};
pub use overlap::{InputWarning, InputWarningKind};
pub use span::{Api, Interner, Span, SpanId, SpanKind, Sym, TraceId};
pub use stats::{InspectSummary, TraceStats};
pub use tree::{CallTree, EdgeKind, Exec};
