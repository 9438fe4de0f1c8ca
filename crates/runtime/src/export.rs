//! Span export: OTLP/JSON lines to a file and/or OTLP/HTTP (protobuf) to a collector.
//!
//! INTERFACE ONLY — being implemented (batching, file writer, protobuf encoder).

use std::path::Path;
use std::sync::Arc;

use crate::config::TracingConfig;

/// The kind of a span, as OTLP numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
}

/// A finished span, ready to export.
#[derive(Clone, Debug)]
pub struct SpanRecord {
    /// `service.name` of the resource the span is exported under.
    pub service: Arc<str>,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// All zero for a root span.
    pub parent_span_id: [u8; 8],
    pub name: String,
    pub kind: Kind,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    /// `Some(message)`: status ERROR with that message.
    pub error: Option<String>,
    pub attributes: Vec<(&'static str, AttrValue)>,
}

/// What an exporter did, reported at shutdown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub exported: u64,
    /// Spans dropped because the queue was full or an export failed.
    pub dropped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot open span file {path}: {source}")]
    File { path: std::path::PathBuf, source: std::io::Error },
    #[error("bad OTLP endpoint `{0}`: expected http://host:port/path")]
    Endpoint(String),
}

/// Exports the spans of every service in this process. Cheap to clone.
#[derive(Clone)]
pub struct Exporter {}

impl Exporter {
    /// Starts exporting as `config` says; a relative span file is under `base_dir`.
    pub fn start(config: &TracingConfig, base_dir: &Path) -> Result<Exporter, ExportError> {
        let _ = (config, base_dir);
        Ok(Exporter {})
    }

    /// Queues a span; never blocks (a full queue drops the span and counts it).
    pub fn record(&self, span: SpanRecord) {
        let _ = span;
    }

    /// Flushes everything queued and stops.
    pub async fn shutdown(self) -> ExportStats {
        ExportStats::default()
    }
}
