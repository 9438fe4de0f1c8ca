//! Why a load run could not start or finish.

use std::path::PathBuf;

use palette_runtime::config::ConfigError;

/// Why a load run failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// An option is out of range (a rate of zero, no connections…).
    #[error("{0}")]
    Usage(String),
    /// The system file named does not exist.
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    /// The system file cannot be read or is not a valid system.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The system is valid but cannot be loaded: it has no root API, or a
    /// root API no service serves.
    #[error("{path}: {message}")]
    BadSystem { path: PathBuf, message: String },
    /// Reading the traces to replay failed.
    #[error(transparent)]
    Trace(#[from] palette_trace::Error),
    /// The traces to replay cannot drive load (no root the system serves, too few traces…).
    #[error("{0}")]
    BadReplay(String),
    /// A `--profile` spec that cannot be read: names the bad part and shows a valid spec.
    #[error("{0}")]
    BadProfile(String),
    /// A target did not answer its health check before the run.
    #[error("{service} at {address} does not answer ({why}); is the system running? (`palette up SYSTEM`)")]
    Unreachable { service: String, address: String, why: String },
    /// The async runtime could not be built.
    #[error("cannot start the load generator: {0}")]
    Runtime(std::io::Error),
}

impl LoadError {
    /// The input data is at fault: exit code 65.
    pub fn is_bad_data(&self) -> bool {
        match self {
            LoadError::Config(e) => e.is_bad_data(),
            LoadError::Trace(e) => e.is_bad_data(),
            LoadError::BadSystem { .. } | LoadError::BadReplay(_) => true,
            _ => false,
        }
    }

    /// The user asked for something impossible or named a missing file: exit code 2.
    pub fn is_usage(&self) -> bool {
        match self {
            LoadError::Usage(_) | LoadError::NotFound { .. } | LoadError::BadProfile(_) => true,
            LoadError::Trace(e) => e.is_usage(),
            _ => false,
        }
    }
}

impl palette_trace::failure::Classify for LoadError {
    fn failure_kind(&self) -> palette_trace::failure::FailureKind {
        use palette_trace::failure::FailureKind;
        if self.is_bad_data() {
            FailureKind::BadData
        } else if self.is_usage() {
            FailureKind::Usage
        } else {
            FailureKind::Runtime
        }
    }
}
