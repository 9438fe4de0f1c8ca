//! # palette-load
//!
//! Brief overview: open-loop load against a generated system. Requests go
//! to the system's root APIs (`model.roots`, in their traced mix) as
//! `POST /op/{operation}` on the serving service's port, each with a fresh
//! W3C `traceparent` (sampled in the measured window, unsampled in the
//! warm-up, so the services' spans hold measured traffic only), at Poisson arrivals of a given rate, at a rate
//! that changes over time ([`Profile`]: steps, a ramp, a sine, bursts, or
//! the traces' own rate curve), or at the traced inter-arrival times of root
//! spans ([`Replay`], scaled by a speed and looped). Arrivals never wait for earlier responses; at most
//! `connections` requests are in flight and later arrivals queue, their
//! latency measured from the time they were *scheduled*, so a system's
//! queueing is never hidden by the generator slowing down (no coordinated
//! omission). Latencies go into HDR histograms per root API, in total and
//! per timeline interval; errors are counted by kind.
//!
//! The report places the measured window on the wall clock
//! (`measured_from_unix_ns`, `measured_until_unix_ns`: traces whose root
//! span starts earlier are warm-up traffic) and says how contended the host
//! was over it ([`Contention`]: the generator's own 1 ms sleeps, `/proc`,
//! and the services' lateness from `GET /stats/lateness`), with a verdict
//! ([`Contention::host_busy`]). Trace ids mix the seed with a per-run id, so
//! two runs with one seed send the same arrivals under different traces.
//!
//! [`run_load`] is async (for callers with a runtime, such as `palette
//! run`); [`run_load_blocking`] brings its own multi-threaded runtime.
//!
//! ```
//! use std::time::Duration;
//! use palette_load::{Arrivals, LoadOptions, Schedule};
//!
//! let opts = LoadOptions {
//!     arrivals: Arrivals::Poisson { rate: 0.0 },
//!     ..LoadOptions::default()
//! };
//! let err = opts.validate().unwrap_err();
//! assert!(err.is_usage());
//! assert!(err.to_string().contains("--rate"));
//!
//! // The arrivals of a run are known before it starts: here, 200 in 2 s.
//! # let model: palette_model::Model = serde_json::from_value(serde_json::json!({
//! #     "format": "palette-model/1", "kind": "palette",
//! #     "options": {"stage_tolerance_ns": 100000, "confidence": 0.05, "max_unrolled": 3, "min_caller_support": 20},
//! #     "provenance": {"inputs": [], "traces": 1, "spans": 1},
//! #     "services": ["web"],
//! #     "apis": [{"service": "web", "operation": "GET /", "count": 1, "callers": [],
//! #               "latency": {"n": 0, "min": 0.0, "max": 0.0, "bins": []}}],
//! #     "roots": [{"api": 0, "count": 1}], "edges": []
//! # })).unwrap();
//! let rate = Arrivals::Poisson { rate: 100.0 };
//! let arrivals: Vec<_> = Schedule::new(&rate, &model, 0, Duration::from_secs(2).as_nanos() as u64, 7).collect();
//! assert_eq!(arrivals.len(), 200);
//! assert!(arrivals.windows(2).all(|w| w[0].at_ns <= w[1].at_ns));
//! ```

pub mod arrivals;
pub mod bench;
pub mod client;
pub mod contention;
pub mod error;
pub mod profile;
pub mod record;
pub mod report;
pub mod run;

pub use arrivals::{Arrival, Arrivals, Replay, Schedule};
pub use contention::{Contention, LatenessSummary, ServicesLateness};
pub use error::LoadError;
pub use profile::{Profile, ProfileSpec, TracedRoots};
pub use report::{ApiReport, Interval, Latency, LoadReport, RateDeviation};
pub use run::{LoadObserver, LoadOptions, NoObserver, Progress, Target, load_system, run_load, run_load_blocking};
