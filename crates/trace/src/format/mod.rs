//! Trace formats: detection and one reader per format.
//!
//! Every reader turns its records into canonical [`Span`]s and pushes them
//! into the [`Ingest`] context, which assembles traces as they complete.

pub mod alibaba;
pub(crate) mod csvheader;
pub mod csvline;
pub mod jaeger;
pub(crate) mod json;
pub mod otlp;
pub mod spancsv;
pub mod zipkin;

use std::path::{Path, PathBuf};

use std::sync::mpsc::{Receiver, SyncSender};

use crate::assemble::{AssembleOptions, AssemblyCounts, Closed, Grouper, TraceSink, TreeBuilder};
use crate::defect::{DefectKind, DefectReport, Policies, Policy};
use crate::error::Error;
use crate::input::{self, NoProgress, Progress};
use crate::overlap::{InputWarning, OverlapTracker};
use crate::rpcid::RpcParents;
use crate::span::{Interner, Origin, Span, SpanId};

/// A trace format palette reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// Alibaba microservice CallGraph CSV (v2021 and v2022 schemas).
    Alibaba,
    /// One span per row, as in the Nezha dataset.
    SpanCsv,
    /// Jaeger query JSON (`{"data":[…]}`) or a flat array of Jaeger spans.
    Jaeger,
    /// Zipkin v2 JSON (an array of spans, or an array of traces).
    Zipkin,
    /// OTLP/JSON: one document, or the collector file exporter's JSON lines.
    Otlp,
}

impl Format {
    pub const ALL: [Format; 5] = [Format::Alibaba, Format::SpanCsv, Format::Jaeger, Format::Zipkin, Format::Otlp];

    pub fn name(self) -> &'static str {
        match self {
            Format::Alibaba => "alibaba",
            Format::SpanCsv => "spancsv",
            Format::Jaeger => "jaeger",
            Format::Zipkin => "zipkin",
            Format::Otlp => "otlp",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == s)
    }

    /// Alibaba rows are time ordered, so traces can be closed by a window of
    /// input time; other formats hold whole traces and close at the end.
    pub fn default_window_ns(self) -> Option<i64> {
        match self {
            Format::Alibaba => Some(DEFAULT_ALIBABA_WINDOW_NS),
            _ => None,
        }
    }
}

/// Default assembly window for time-ordered input: Alibaba calls of one trace
/// span seconds, and a minute leaves ample room for slow ones.
pub const DEFAULT_ALIBABA_WINDOW_NS: i64 = 60_000_000_000;

/// Tells the format from the first bytes of the (decompressed) content.
pub fn detect(head: &[u8]) -> Result<Format, String> {
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = text.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Err("the file is empty".into());
    };
    let text = &text[start..];
    if text.iter().take(4096).filter(|&&b| b == 0 || (b < 0x20 && !b.is_ascii_whitespace())).count() > 0 {
        return Err("binary data".into());
    }
    let has = |needle: &str| text.windows(needle.len()).any(|w| w == needle.as_bytes());
    if text[0] == b'{' || text[0] == b'[' {
        if has("\"resourceSpans\"") || has("\"scopeSpans\"") {
            return Ok(Format::Otlp);
        }
        if has("\"spanID\"") || has("\"traceID\"") {
            return Ok(Format::Jaeger);
        }
        if has("\"traceId\"") {
            return Ok(Format::Zipkin);
        }
        return Err("JSON without OTLP (resourceSpans), Jaeger (traceID) or Zipkin (traceId) fields".into());
    }
    let header_end = text.iter().position(|&b| b == b'\n').unwrap_or(text.len());
    let header = String::from_utf8_lossy(&text[..header_end]).to_ascii_lowercase();
    let cols: Vec<&str> = header.trim_end_matches('\r').split(',').map(|c| c.trim().trim_matches('"')).collect();
    let col = |n: &str| cols.contains(&n);
    if col("traceid") && (col("rpcid") || col("rpc_id")) && col("um") && col("dm") {
        return Ok(Format::Alibaba);
    }
    if (col("traceid") || col("trace_id")) && (col("spanid") || col("span_id")) {
        return Ok(Format::SpanCsv);
    }
    Err(format!(
        "a header line `{}` that names neither Alibaba (traceid, rpcid, um, dm) nor span CSV (traceid, spanid) columns",
        truncate(&header, 120)
    ))
}

/// The message for a CSV row past [`ReadOptions::record_limit`].
/// Whether a span attribute (tag) reports a failed request: an HTTP 5xx
/// status, or a gRPC status OpenTelemetry counts as a server error
/// (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
/// DATA_LOSS). A 4xx is the client's mistake, not a failure of the system.
pub(crate) fn status_is_error(key: &str, value: &str) -> bool {
    let value = value.trim().trim_matches('"');
    match key {
        "http.status_code" | "http.response.status_code" => value.parse::<u16>().is_ok_and(|c| c >= 500),
        "rpc.grpc.status_code" | "grpc.status_code" => {
            value.parse::<i64>().is_ok_and(|c| matches!(c, 2 | 4 | 12 | 13 | 14 | 15))
        }
        _ => false,
    }
}

pub(crate) fn row_too_long(limit: u64) -> String {
    format!(
        "a row longer than {} (a line that never ends?); palette reads CSV one row at a time and refuses rows past that size",
        json::show_bytes(limit)
    )
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// How to read inputs.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Force a format instead of detecting it per file.
    pub format: Option<Format>,
    /// Assembly window: `None` picks the format's default (see
    /// [`Format::default_window_ns`]); `Some(None)` turns it off.
    pub window_ns: Option<Option<i64>>,
    pub assemble: AssembleOptions,
    /// Names to intern before reading, so a consumer can know their symbols
    /// up front (see [`Interner::with_names`]).
    pub known_names: Vec<String>,
    /// The most bytes one record may take: a CSV row, or in JSON a span (or
    /// what lies between two spans). A longer one is bad data, so that no
    /// input makes a reader hold more than this at once.
    pub record_limit: u64,
}

/// The default [`ReadOptions::record_limit`]: far beyond any real span or
/// row (those are kilobytes), small enough to hold a few of at once.
pub const RECORD_LIMIT: u64 = 16 << 20;

impl Default for ReadOptions {
    fn default() -> ReadOptions {
        ReadOptions {
            format: None,
            window_ns: None,
            assemble: AssembleOptions::default(),
            known_names: Vec::new(),
            record_limit: RECORD_LIMIT,
        }
    }
}

/// What reading found, besides the traces themselves.
#[derive(Clone, Debug, Default)]
pub struct ReadSummary {
    /// Each input file and the format it was read as.
    pub files: Vec<(PathBuf, Format)>,
    /// Records read (rows, spans, JSON spans), before any merging.
    pub records: u64,
    pub defects: DefectReport,
    pub counts: AssemblyCounts,
    /// Every name seen, for resolving the symbols in the traces.
    pub names: Interner,
    /// Inputs that may not belong together (the same traces in two files,
    /// systems sharing no service); checked only with two files or more.
    /// See [`crate::overlap`].
    pub input_warnings: Vec<InputWarning>,
}

/// Spans travel to the assembly thread in batches of this many: large
/// enough that channel costs vanish, small enough to stream.
const BATCH_SPANS: usize = 1024;

/// Spans read, and the rpc-id links made while reading them.
struct Batch {
    spans: Vec<Span>,
    links: Vec<(SpanId, SpanId)>,
}

/// The reader's side of one read: names, reader-level defects, and the
/// channel to the thread that groups spans and builds trees.
pub struct Ingest {
    pub names: Interner,
    files: Vec<PathBuf>,
    /// Index of the file being read.
    file: u32,
    policies: Policies,
    /// Defects found while reading (assembly counts its own).
    defects: DefectReport,
    batch: Batch,
    /// Parents of long Alibaba rpc ids, kept across files (traces may be
    /// split across them); assembly keeps its own copy from the links sent.
    pub rpc_parents: RpcParents,
    to_assembly: Option<SyncSender<Batch>>,
    records: u64,
    /// See [`ReadOptions::record_limit`].
    pub record_limit: u64,
}

impl Ingest {
    /// Hands a span to assembly.
    pub fn push(&mut self, span: Span) -> Result<(), Error> {
        self.batch.spans.push(span);
        if self.batch.spans.len() >= BATCH_SPANS {
            self.send()?;
        }
        Ok(())
    }

    /// Records that rpc id `child` (an Alibaba span id symbol) has parent
    /// rpc id `parent`, for repairing missing parents.
    pub fn rpc_link(&mut self, child: SpanId, parent: SpanId) {
        self.rpc_parents.link(child, parent);
        self.batch.links.push((child, parent));
    }

    fn send(&mut self) -> Result<(), Error> {
        let batch =
            std::mem::replace(&mut self.batch, Batch { spans: Vec::with_capacity(BATCH_SPANS), links: Vec::new() });
        match &self.to_assembly {
            Some(tx) => tx.send(batch).map_err(|_| Error::AssemblyStopped),
            None => Err(Error::AssemblyStopped),
        }
    }

    /// Counts input records (rows, JSON spans) as the reader meets them.
    pub fn saw_records(&mut self, n: u64) {
        self.records += n;
    }

    pub fn origin(&self, line: u64) -> Origin {
        Origin { file: self.file, line: line.min(u32::MAX as u64) as u32 }
    }

    pub fn path(&self) -> &Path {
        &self.files[self.file as usize]
    }

    /// A record that cannot be read: fails with its line unless the policy
    /// says to skip it.
    pub fn bad_record(&mut self, line: u64, message: String) -> Result<(), Error> {
        if self.policies.policy(DefectKind::BadRecord) == Policy::Fail {
            return Err(self.bad_data(line, message));
        }
        self.defect(DefectKind::BadRecord, line, || message)?;
        self.defects.dropped_spans += 1;
        Ok(())
    }

    /// Counts a defect repaired while reading (before assembly).
    pub fn defect(&mut self, kind: DefectKind, line: u64, detail: impl FnOnce() -> String) -> Result<Policy, Error> {
        let path = self.path().display().to_string();
        self.defects.record(&self.policies, kind, || format!("{path}:{line}"), detail)
    }

    pub fn bad_data(&self, line: u64, message: impl Into<String>) -> Error {
        Error::BadData { path: self.path().to_path_buf(), line, message: message.into() }
    }
}

/// Reads every input (files, or directories of files), assembling traces and
/// handing each to `sink` as it completes.
///
/// Parsing runs on the calling thread; grouping, building trees and the
/// sink run on a second one, so the two halves of the work overlap.
pub fn read_traces(
    inputs: &[PathBuf],
    opts: &ReadOptions,
    progress: &dyn Progress,
    sink: &mut dyn TraceSink,
) -> Result<ReadSummary, Error> {
    let files = input::expand_inputs(inputs)?;
    let (formats, pipes) = detect_formats(&files, opts)?;
    let window = read_window(opts, &formats);
    let mut assemble = opts.assemble.clone();
    assemble.window_ns = window;
    let (to_assembly, from_reader) = std::sync::mpsc::sync_channel::<Batch>(4);
    let mut ing = Ingest {
        names: Interner::with_names(&opts.known_names),
        files: files.clone(),
        file: 0,
        policies: assemble.policies.clone(),
        defects: DefectReport::default(),
        batch: Batch { spans: Vec::with_capacity(BATCH_SPANS), links: Vec::new() },
        rpc_parents: RpcParents::default(),
        to_assembly: Some(to_assembly),
        records: 0,
        record_limit: opts.record_limit,
    };
    let mut builder = TreeBuilder::new(assemble, files.clone());
    let mut grouper = Grouper::new(window);
    // Looks at each trace on its way to the builder: no second read.
    let mut overlap = (files.len() >= 2).then(|| OverlapTracker::new(files.len(), window.is_some()));
    let (read_result, build_result) = std::thread::scope(|scope| {
        let assembling = std::thread::Builder::new()
            .name("assemble".into())
            .spawn_scoped(scope, || assemble_batches(from_reader, &mut grouper, &mut builder, &mut overlap, sink));
        let assembling = match assembling {
            Ok(handle) => handle,
            Err(e) => {
                return (Err(Error::Io { path: PathBuf::from("<thread>"), source: e }), Ok(()));
            }
        };
        let read_result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            read_all(&mut ing, &files, &formats, pipes, progress)
        }));
        // Closing the channel lets assembly finish (also after a panic, which
        // would otherwise leave it waiting, and the scope waiting for it).
        ing.to_assembly = None;
        let build_result = assembling.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let read_result = read_result.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (read_result, build_result)
    });
    // The builder's error explains a reader stopped by a closed channel.
    match (read_result, build_result) {
        (Err(Error::AssemblyStopped), Err(e)) | (Ok(()), Err(e)) | (Err(e), _) => return Err(e),
        (Ok(()), Ok(())) => {}
    }
    let mut defects = ing.defects;
    defects.merge(builder.defects);
    let mut counts = builder.counts;
    counts.peak_open_traces = grouper.peak_open_traces;
    let input_warnings = overlap.map(|o| o.warnings(&files)).unwrap_or_default();
    Ok(ReadSummary {
        files: files.into_iter().zip(formats).collect(),
        records: ing.records,
        defects,
        counts,
        names: ing.names,
        input_warnings,
    })
}

/// Each file's format (given, or detected from its head), up front so the
/// window can be chosen for the whole input: traces may be split across
/// files. A pipe read for detection comes back, to be read on from where
/// detection left it.
fn detect_formats(files: &[PathBuf], opts: &ReadOptions) -> Result<(Vec<Format>, Vec<OpenedPipe>), Error> {
    let mut formats = Vec::with_capacity(files.len());
    let mut pipes: Vec<OpenedPipe> = Vec::with_capacity(files.len());
    for path in files {
        let (format, pipe) = match opts.format {
            Some(f) => (f, None),
            None => {
                let opened = input::open(path, &NoProgress)?;
                if opened.head.iter().all(|b| b.is_ascii_whitespace()) {
                    return Err(Error::BadData { path: path.clone(), line: 1, message: "the file is empty".into() });
                }
                let format = detect(&opened.head).map_err(|why| Error::UnknownFormat { path: path.clone(), why })?;
                (format, opened.pipe.then_some(opened))
            }
        };
        formats.push(format);
        pipes.push(pipe);
    }
    Ok((formats, pipes))
}

/// A pipe opened (and its head read) for format detection; `None` for a file,
/// which is opened again from its start.
type OpenedPipe = Option<input::Opened<'static>>;

/// The assembly window: the one asked for, else the formats' own when every
/// file's format has one (time-ordered input), else none.
fn read_window(opts: &ReadOptions, formats: &[Format]) -> Option<i64> {
    match opts.window_ns {
        Some(w) => w,
        None if !formats.is_empty() && formats.iter().all(|f| f.default_window_ns().is_some()) => {
            formats[0].default_window_ns()
        }
        None => None,
    }
}

/// The assembly thread: groups the reader's spans into traces, builds each
/// closed trace and hands it to `sink`, until the reader closes the channel.
fn assemble_batches(
    from_reader: Receiver<Batch>,
    grouper: &mut Grouper,
    builder: &mut TreeBuilder,
    overlap: &mut Option<OverlapTracker>,
    sink: &mut dyn TraceSink,
) -> Result<(), Error> {
    let mut rpc_up = RpcParents::default();
    let mut closed: Vec<Closed> = Vec::new();
    let mut build = |closed: &mut Vec<Closed>, rpc_up: &RpcParents| -> Result<(), Error> {
        for (trace_id, spans) in closed.drain(..) {
            if let Some(o) = overlap.as_mut() {
                o.group(trace_id, &spans);
            }
            if let Some(tree) = builder.build(trace_id, spans, rpc_up)? {
                sink.trace(&tree)?;
            }
        }
        Ok(())
    };
    for batch in from_reader {
        for (child, parent) in batch.links {
            rpc_up.link(child, parent);
        }
        for span in batch.spans {
            grouper.push(span, &mut closed);
            if !closed.is_empty() {
                build(&mut closed, &rpc_up)?;
            }
        }
    }
    grouper.finish(&mut closed);
    build(&mut closed, &rpc_up)
}

/// Reads `inputs` only to check whether they belong together: the
/// [`ReadSummary::input_warnings`] of a [`read_traces`] whose traces go
/// nowhere. A whole read (parsing and assembly) of every input, so a caller
/// that reads them anyway should take the warnings from its own read; with
/// fewer than two files there is nothing to check and nothing is read.
pub fn input_overlap(
    inputs: &[PathBuf],
    opts: &ReadOptions,
    progress: &dyn Progress,
) -> Result<Vec<InputWarning>, Error> {
    if input::expand_inputs(inputs)?.len() < 2 {
        return Ok(Vec::new());
    }
    let mut sink = |_: &crate::tree::CallTree| Ok(());
    Ok(read_traces(inputs, opts, progress, &mut sink)?.input_warnings)
}

fn read_all(
    ing: &mut Ingest,
    files: &[PathBuf],
    formats: &[Format],
    mut pipes: Vec<OpenedPipe>,
    progress: &dyn Progress,
) -> Result<(), Error> {
    for (i, (path, &format)) in files.iter().zip(formats).enumerate() {
        ing.file = i as u32;
        let opened = match pipes[i].take() {
            Some(opened) => {
                progress.start_file(path, 0);
                opened
            }
            None => input::open(path, progress)?,
        };
        if opened.head.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(ing.bad_data(1, "the file is empty"));
        }
        match format {
            Format::Alibaba => alibaba::read(opened.reader, ing)?,
            Format::SpanCsv => spancsv::read(opened.reader, ing)?,
            Format::Jaeger => jaeger::read(opened.reader, ing)?,
            Format::Zipkin => zipkin::read(opened.reader, ing)?,
            Format::Otlp => otlp::read(opened.reader, ing)?,
        }
    }
    ing.send()
}
