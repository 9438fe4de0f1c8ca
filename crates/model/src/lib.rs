//! # palette-model
//!
//! Brief overview: where the model is fitted. From assembled call trees,
//! [`Fitter`] learns the topology `G = (P, V, E)`, one probabilistic finite
//! automaton per API (stages of concurrent calls, coarsened ALERGIA-style,
//! with per-caller transition counts), and the causal latency model on it
//! (local work per transition conditioned on the caller, λ per stage by
//! non-negative least squares, call overheads). Fits go through a name-keyed
//! [`Partial`], so shards merge exactly; [`build_model`] turns a partial into
//! a deterministic [`Model`] (`model.json`), Palette's or the naive baseline.
//!
//! ```
//! use palette_model::{build_model, FitOptions, Fitter, ModelKind, TraceFilter};
//! use palette_trace::{read_traces, CallTree, NoProgress, ReadOptions};
//!
//! # let dir = std::env::temp_dir().join(format!("palette-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let path = dir.join("traces.jsonl");
//! # let t = palette_testkit::system::generate(&palette_testkit::examples::figure1(), 50, 1);
//! # palette_trace::write::write_otlp_lines(std::fs::File::create(&path).unwrap(), t.traces.iter().map(Vec::as_slice), &t.names).unwrap();
//! let opts = FitOptions::default();
//! let mut fitter = Fitter::new(opts.clone(), TraceFilter::default());
//! let names = palette_model::FilterNames::default();
//! let mut sink = |tree: &CallTree| {
//!     fitter.add(tree, &names);
//!     Ok(())
//! };
//! let read = read_traces(&[path], &ReadOptions::default(), &NoProgress, &mut sink)?;
//! let partial = fitter.into_partial(&read.names, vec!["traces.jsonl".into()]);
//! let model = build_model(&partial, ModelKind::Palette, 1);
//! assert_eq!(model.services, ["A", "B", "C"]);
//! # Ok::<(), palette_trace::Error>(())
//! ```

pub mod build;
pub mod check;
pub mod exec;
pub mod file;
pub mod fit;
pub mod intervene;
pub mod json;
pub mod model;
pub mod partial;
pub mod pfa;
pub mod show;
pub mod simulate;
pub mod sketch;

pub use build::{build_model, build_model_owned, merge_partials};
pub use exec::{Context, Execution, Step};
pub use fit::{FilterNames, Fitter, TraceFilter};
pub use model::{ApiId, ApiModel, Caller, FitOptions, Model, ModelKind, RpcMode, State, Transition, WorkMode};
pub use partial::Partial;
pub use simulate::Simulator;
pub use sketch::Sketch;
