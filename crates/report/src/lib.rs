//! # palette-report
//!
//! Brief overview: measures how representative a set of traces is of an
//! original — a Palette simulation, a naive baseline, or the traces a
//! generated system emitted — and reports it as a terminal table, JSON, or
//! a self-contained HTML page with latency CDF plots (DESIGN.md "Fidelity").
//!
//! Each input streams through a [`Collector`] (a [`palette_trace::TraceSink`])
//! into a [`Profile`]: latency samples per root API, per API and per
//! (caller, API) pair, each bounded by a reservoir, and the shape of the call
//! trees. [`compare()`] matches APIs by service and operation name and computes
//! the metrics ([`metrics`]: KS statistic and p-value, Wasserstein-1,
//! quantile errors; structure: KS of spans per trace, depth and fan-out,
//! per-edge call-probability error, fraction of concurrent stages).
//! [`text::render`] and [`html::render`] present the [`Comparison`], which is
//! also the JSON report.
//!
//! ```no_run
//! use palette_report::{CollectOptions, Collector, CompareOptions, HtmlOptions, Input, compare};
//! use palette_trace::{NoProgress, ReadOptions, read_traces};
//!
//! let read = |path: &str, label: &str| -> Result<Input, palette_trace::Error> {
//!     let mut collector = Collector::new(CollectOptions::default());
//!     let read = read_traces(&[path.into()], &ReadOptions::default(), &NoProgress, &mut collector)?;
//!     Ok(Input::new(label, path, collector.finish(&read.names)))
//! };
//! let original = read("traces.jsonl", "original")?;
//! let candidates = [read("palette.jsonl", "palette")?, read("naive.jsonl", "naive")?];
//! let cmp = compare(&original, &candidates, &CompareOptions::default())?;
//! print!("{}", palette_report::text::render(&cmp, 12));
//! let page = palette_report::html::render(&original, &candidates, &cmp, &HtmlOptions::default())?;
//! std::fs::write("index.html", page)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod collect;
pub mod compare;
pub mod error;
pub mod failures;
pub mod floor;
pub mod html;
pub mod metrics;
pub mod plot;
pub mod text;
pub mod topology;

pub use collect::{ApiName, ApiProfile, CollectOptions, Collector, Profile, Sample};
pub use compare::{
    CandidateSummary, CompareOptions, Comparison, EdgeShift, Input, LatencyComparison, Shift, StructureComparison,
    Verdict, compare,
};
pub use error::Error;
pub use floor::{FloorOptions, LatencyMetrics, StructureMetrics};
pub use html::HtmlOptions;
