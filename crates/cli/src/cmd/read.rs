//! Trace-reading options shared by every verb that reads traces.

use std::path::PathBuf;

use anyhow::Context;
use palette_trace::{AssembleOptions, Format, Policies, ReadOptions, ReadSummary, TraceSink, read_traces};

use crate::cmd::{UsageError, parse_duration_ns};
use crate::progress;

#[derive(clap::Args, Debug)]
pub struct ReadArgs {
    /// Trace files, or directories of them; plain or gzip.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Read every input as this format instead of detecting it
    /// [alibaba, spancsv, jaeger, zipkin, otlp].
    #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
    pub format: Option<Format>,
    /// Close a trace after this much input time without a new span, for
    /// time-ordered input (Alibaba; default 60s there). `off` waits for the end.
    #[arg(long, value_name = "DURATION")]
    pub window: Option<String>,
    /// Fail (exit 65) at the first defect, naming its file and line or trace,
    /// instead of repairing it.
    #[arg(long)]
    pub strict: bool,
    /// Policy for one kind of defect, e.g. `orphan=drop` (repeatable). Kinds:
    /// bad_record, orphan, multiple_roots, duplicate_span_id,
    /// duplicate_record, cycle, negative_duration, child_outside_parent,
    /// shared_span_id, missing_timestamp, missing_service, unknown_name,
    /// self_call. Policies: repair, drop, fail.
    #[arg(long = "on-defect", value_name = "KIND=POLICY")]
    pub on_defect: Vec<String>,
    /// Keep calls that instrumentation recorded as siblings of the handler
    /// span that made them where they are (no wrapper adoption).
    #[arg(long)]
    pub no_adopt: bool,
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).ok_or_else(|| format!("unknown format `{s}` (one of alibaba, spancsv, jaeger, zipkin, otlp)"))
}

impl ReadArgs {
    pub fn options(&self) -> Result<ReadOptions, UsageError> {
        let mut policies = if self.strict { Policies::strict() } else { Policies::default() };
        for spec in &self.on_defect {
            policies.set_from_str(spec).map_err(|e| UsageError(format!("--on-defect: {e}")))?;
        }
        let window_ns = match self.window.as_deref() {
            None => None,
            Some("off") | Some("none") => Some(None),
            Some(w) => Some(Some(parse_duration_ns(w).map_err(|e| UsageError(format!("--window: {e}")))?)),
        };
        Ok(ReadOptions {
            format: self.format,
            window_ns,
            assemble: AssembleOptions { window_ns: None, adopt: !self.no_adopt, policies },
            known_names: Vec::new(),
            ..ReadOptions::default()
        })
    }

    /// Reads all inputs into `sink`, with a progress bar on a terminal.
    pub fn read(&self, sink: &mut dyn TraceSink) -> anyhow::Result<ReadSummary> {
        self.read_with_names(sink, Vec::new())
    }

    /// [`ReadArgs::read`], with `known_names` interned first (their symbols
    /// are then known to the sink before reading starts).
    pub fn read_with_names(&self, sink: &mut dyn TraceSink, known_names: Vec<String>) -> anyhow::Result<ReadSummary> {
        let mut opts = self.options()?;
        opts.known_names = known_names;
        let bar = progress::Bytes::new(progress::total_bytes(&self.inputs), "reading");
        let result = read_traces(&self.inputs, &opts, &bar, sink);
        bar.finish();
        result.context("cannot read traces")
    }
}
