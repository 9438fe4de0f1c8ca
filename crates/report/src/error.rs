//! Why a report could not be made.

/// Why comparing or rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two candidates share a label, so their results would overwrite each
    /// other in the keyed JSON maps.
    #[error("two candidates are labelled `{0}`: give each candidate its own label")]
    DuplicateLabel(String),
    /// A candidate's label is empty.
    #[error("a candidate has an empty label")]
    EmptyLabel,
    /// Plotting a CDF failed (the SVG backend writes to memory, so this
    /// means a bug rather than a full disk).
    #[error("cannot draw the plot `{title}`: {message}")]
    Plot { title: String, message: String },
}
