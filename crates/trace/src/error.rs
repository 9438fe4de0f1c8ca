use std::path::PathBuf;

use crate::defect::DefectKind;

/// Why reading traces failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A named input does not exist.
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    /// A directory held no trace files.
    #[error("{path}: directory holds no trace files")]
    EmptyDirectory { path: PathBuf },
    /// The content is not any format we read.
    #[error("{path}: not a trace file palette can read ({why}); pass --format to say which it is")]
    UnknownFormat { path: PathBuf, why: String },
    /// The content is malformed at a known place.
    #[error("{path}{}: {message}", line_suffix(*line))]
    BadData { path: PathBuf, line: u64, message: String },
    /// The tree builder stopped (its own error says why).
    #[error("trace assembly stopped early")]
    AssemblyStopped,
    /// A defect whose policy is `fail` (for example under `--strict`).
    #[error("{location}: {kind} ({detail}); its policy is fail: use --on-defect {kind}=repair to repair it, or =drop to drop the trace", kind = kind.name())]
    Defect { kind: DefectKind, location: String, detail: String },
}

impl Error {
    /// True when the input data (not the system) is at fault: exit code 65.
    pub fn is_bad_data(&self) -> bool {
        matches!(self, Error::UnknownFormat { .. } | Error::BadData { .. } | Error::Defect { .. })
    }
    /// True when the user named something that is not there: exit code 2.
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::NotFound { .. } | Error::EmptyDirectory { .. })
    }
}

/// `:line`, or nothing when the line is not known (0).
fn line_suffix(line: u64) -> String {
    if line == 0 { String::new() } else { format!(":{line}") }
}
