//! # palette-runtime
//!
//! Brief overview: where a request is served. A generated system is one
//! [`SystemConfig`] (`system.json`); `palette serve` runs one or many of its
//! services, each on its own port, executing the model per request: walk
//! the API's PFA for the caller (and what its last calls did), do the sampled local
//! work, make each stage's calls concurrently over real sockets, and top up
//! the time the causal equation asks for. Spans go out as OTLP.
//!
//! ```
//! use palette_runtime::config::{SystemConfig, SYSTEM_FORMAT};
//! let err = SystemConfig::parse("{}", "system.json".as_ref()).unwrap_err();
//! assert!(err.is_bad_data());
//! # let _ = SYSTEM_FORMAT;
//! ```

pub mod balance;
// The schema and protocol modules live in `palette-spec` (shared with the
// crates that deploy and load a system); re-exported so `crate::config`
// and `palette_runtime::config` name the one definition.
pub use palette_spec::{SystemConfig, config, context, lateness, synthetic};
pub mod execute;
pub mod export;
pub mod grpc;
pub mod program;
pub mod server;
pub mod transport;
pub mod work;

impl palette_trace::failure::Classify for server::ServeError {
    fn failure_kind(&self) -> palette_trace::failure::FailureKind {
        use palette_trace::failure::FailureKind;
        if self.is_usage() { FailureKind::Usage } else { FailureKind::Runtime }
    }
}
