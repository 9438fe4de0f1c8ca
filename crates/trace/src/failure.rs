//! What kind of failure an error is — the one question the binary asks of
//! every error to choose its exit code. It lives here, in the crate every
//! other depends on, so each library's error type answers it itself.

/// The kinds of failure a user must tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The input (a trace, model, system or intervention file) is at fault: exit 65.
    BadData,
    /// The request cannot be met as asked (a missing file, a name that is
    /// not there, flags that contradict each other): exit 2.
    Usage,
    /// Anything else went wrong while working: exit 1.
    Runtime,
}

impl FailureKind {
    /// The process exit code for this kind (sysexits' `EX_DATAERR` for bad data).
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::BadData => 65,
            FailureKind::Usage => 2,
            FailureKind::Runtime => 1,
        }
    }
}

/// Implemented by every library error: which kind of failure it is.
pub trait Classify {
    fn failure_kind(&self) -> FailureKind;
}

impl Classify for crate::Error {
    fn failure_kind(&self) -> FailureKind {
        if self.is_bad_data() {
            FailureKind::BadData
        } else if self.is_usage() {
            FailureKind::Usage
        } else {
            FailureKind::Runtime
        }
    }
}
