//! # palette-spec
//!
//! Brief overview: what the processes of a generated system agree on, with
//! no network code, so the crates that write, deploy or load a system
//! (`palette-system`, `palette-load`) need not link the runtime's HTTP and
//! gRPC stacks. [`config`] is `system.json` (the format is described in
//! `docs/system-format.md`); [`wire`] the `POST /op/{operation}` path and
//! response headers; [`context`] the W3C trace context that carries the
//! trace and the causal context between services; [`lateness`] the
//! work-lateness counters a service serves on `GET /stats/lateness` and the
//! load generator reads; [`supervisor`] how a supervised child dies with
//! its supervisor.
//!
//! ```
//! use palette_spec::config::{SystemConfig, SYSTEM_FORMAT};
//! let err = SystemConfig::parse("{}", "system.json".as_ref()).unwrap_err();
//! assert!(err.is_bad_data());
//! assert_eq!(palette_spec::wire::op_path("GET /home"), "/op/GET%20%2Fhome");
//! # let _ = SYSTEM_FORMAT;
//! ```

pub mod config;
pub mod context;
pub mod lateness;
pub mod supervisor;
pub mod synthetic;
pub mod wire;

pub use config::SystemConfig;
