//! # palette-testkit
//!
//! Brief overview: ground truth for Palette's tests, benchmarks and demo.
//! [`system`] describes microservice behaviour in a few lines (work, calls,
//! concurrency, choices, loops, caller-dependent work) and runs it to produce
//! canonical traces; [`examples`] holds the built-in systems (the paper's
//! Figure 1 and a 20-service web shop); [`alibaba`] writes Alibaba-like
//! CallGraph CSV at any scale, as a stream.
//!
//! ```
//! use palette_testkit::{examples, system};
//!
//! let traces = system::generate(&examples::figure1(), 100, 7);
//! assert_eq!(traces.traces.len(), 100);
//! ```

pub mod alibaba;
pub mod examples;
/// The deterministic generator lives in `palette-trace` so the model can sample with it too.
pub use palette_trace::rng;
pub mod system;
