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
pub mod config;

pub use config::SystemConfig;
pub mod context;
pub mod execute;
pub mod export;
pub mod grpc;
pub mod lateness;
pub mod program;
pub mod server;
pub mod synthetic;
pub mod transport;
pub mod work;
