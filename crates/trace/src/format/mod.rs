//! Trace formats: detection and one reader per format.
//!
//! Every reader turns its records into canonical [`Span`]s and pushes them
//! into the [`Ingest`] context, which assembles traces as they complete.

pub mod alibaba;
pub mod jaeger;
pub mod otlp;
pub mod spancsv;
pub mod zipkin;

use std::path::{Path, PathBuf};

use crate::assemble::{AssembleOptions, Assembler, AssemblyCounts, Env, TraceSink};
use crate::defect::{DefectKind, DefectReport, Policy};
use crate::error::Error;
use crate::input::{self, NoProgress, Progress};
use crate::span::{Interner, Origin, Span};

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
    pub const ALL: [Format; 5] = [
        Format::Alibaba,
        Format::SpanCsv,
        Format::Jaeger,
        Format::Zipkin,
        Format::Otlp,
    ];

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
    if text
        .iter()
        .take(4096)
        .filter(|&&b| b == 0 || (b < 0x20 && !b.is_ascii_whitespace()))
        .count()
        > 0
    {
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
        return Err(
            "JSON without OTLP (resourceSpans), Jaeger (traceID) or Zipkin (traceId) fields".into(),
        );
    }
    let header_end = text.iter().position(|&b| b == b'\n').unwrap_or(text.len());
    let header = String::from_utf8_lossy(&text[..header_end]).to_ascii_lowercase();
    let cols: Vec<&str> = header
        .trim_end_matches('\r')
        .split(',')
        .map(|c| c.trim().trim_matches('"'))
        .collect();
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
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Force a format instead of detecting it per file.
    pub format: Option<Format>,
    /// Assembly window: `None` picks the format's default (see
    /// [`Format::default_window_ns`]); `Some(None)` turns it off.
    pub window_ns: Option<Option<i64>>,
    pub assemble: AssembleOptions,
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
}

/// Shared state of one read: names, the assembler and the sink.
pub struct Ingest<'s> {
    pub names: Interner,
    files: Vec<PathBuf>,
    /// Index of the file being read.
    file: u32,
    asm: Assembler,
    sink: &'s mut dyn TraceSink,
    records: u64,
}

impl Ingest<'_> {
    /// Hands a span to assembly.
    pub fn push(&mut self, span: Span) -> Result<(), Error> {
        let env = Env {
            names: &self.names,
            files: &self.files,
        };
        self.asm.push(span, &env, self.sink)
    }

    /// Counts input records (rows, JSON spans) as the reader meets them.
    pub fn saw_records(&mut self, n: u64) {
        self.records += n;
    }

    pub fn origin(&self, line: u64) -> Origin {
        Origin {
            file: self.file,
            line,
        }
    }

    pub fn path(&self) -> &Path {
        &self.files[self.file as usize]
    }

    /// A record that cannot be read: fails with its line unless the policy
    /// says to skip it.
    pub fn bad_record(&mut self, line: u64, message: String) -> Result<(), Error> {
        let policy = self.asm.policies().policy(DefectKind::BadRecord);
        if policy == Policy::Fail {
            return Err(Error::BadData {
                path: self.path().to_path_buf(),
                line,
                message,
            });
        }
        let path = self.path().display().to_string();
        self.asm.record(
            DefectKind::BadRecord,
            || format!("{path}:{line}"),
            || message,
        )?;
        self.asm.defects.dropped_spans += 1;
        Ok(())
    }

    /// Counts a defect repaired while reading (before assembly).
    pub fn defect(
        &mut self,
        kind: DefectKind,
        line: u64,
        detail: impl FnOnce() -> String,
    ) -> Result<Policy, Error> {
        let path = self.path().display().to_string();
        self.asm.record(kind, || format!("{path}:{line}"), detail)
    }

    pub fn bad_data(&self, line: u64, message: impl Into<String>) -> Error {
        Error::BadData {
            path: self.path().to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

/// Reads every input (files, or directories of files), assembling traces and
/// handing each to `sink` as it completes.
pub fn read_traces(
    inputs: &[PathBuf],
    opts: &ReadOptions,
    progress: &dyn Progress,
    sink: &mut dyn TraceSink,
) -> Result<ReadSummary, Error> {
    let files = input::expand_inputs(inputs)?;
    // Formats are detected up front, so the window can be chosen for the whole
    // input: traces may be split across files.
    let mut formats = Vec::with_capacity(files.len());
    for path in &files {
        let format = match opts.format {
            Some(f) => f,
            None => {
                let opened = input::open(path, &NoProgress)?;
                detect(&opened.head).map_err(|why| Error::UnknownFormat {
                    path: path.clone(),
                    why,
                })?
            }
        };
        formats.push(format);
    }
    let window = match opts.window_ns {
        Some(w) => w,
        None if !formats.is_empty() && formats.iter().all(|f| f.default_window_ns().is_some()) => {
            formats[0].default_window_ns()
        }
        None => None,
    };
    let mut assemble = opts.assemble.clone();
    assemble.window_ns = window;
    let mut ing = Ingest {
        names: Interner::default(),
        files: files.clone(),
        file: 0,
        asm: Assembler::new(assemble),
        sink,
        records: 0,
    };
    for (i, (path, &format)) in files.iter().zip(&formats).enumerate() {
        ing.file = i as u32;
        let opened = input::open(path, progress)?;
        if opened.head.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(ing.bad_data(1, "the file is empty"));
        }
        match format {
            Format::Alibaba => alibaba::read(opened.reader, &mut ing)?,
            Format::SpanCsv => spancsv::read(opened.reader, &mut ing)?,
            Format::Jaeger => jaeger::read(opened.reader, &mut ing)?,
            Format::Zipkin => zipkin::read(opened.reader, &mut ing)?,
            Format::Otlp => otlp::read(opened.reader, &mut ing)?,
        }
    }
    let env = Env {
        names: &ing.names,
        files: &ing.files,
    };
    ing.asm.finish(&env, ing.sink)?;
    Ok(ReadSummary {
        files: files.into_iter().zip(formats).collect(),
        records: ing.records,
        defects: std::mem::take(&mut ing.asm.defects),
        counts: std::mem::take(&mut ing.asm.counts),
        names: ing.names,
    })
}

/// Reads the whole (decompressed) input as UTF-8, for the JSON formats.
pub(crate) fn read_text(mut reader: impl std::io::Read, ing: &Ingest) -> Result<String, Error> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| input::read_error(ing.path(), e))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = 1 + good.iter().filter(|&&b| b == b'\n').count() as u64;
        ing.bad_data(line, "not valid UTF-8 text")
    })
}

/// Maps a serde_json error to bad data at its line.
pub(crate) fn json_error(ing: &Ingest, e: serde_json::Error, what: &str) -> Error {
    let why = match e.classify() {
        serde_json::error::Category::Eof => "the JSON ends too early (truncated file?)".to_string(),
        _ => {
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            format!("not valid {what}: {msg}")
        }
    };
    ing.bad_data(e.line().max(1) as u64, why)
}

/// Parses each JSON document of `text` (one document, several concatenated,
/// or JSON lines) and hands it to `f` with the line it starts on.
pub(crate) fn each_document<T: serde::de::DeserializeOwned>(
    text: &str,
    ing: &mut Ingest,
    what: &str,
    mut f: impl FnMut(&mut Ingest, T, u64) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<T>();
    let (mut counted_to, mut line) = (0usize, 1u64);
    loop {
        let start = stream.byte_offset();
        let skipped = text[start..].len() - text[start..].trim_start().len();
        let doc_start = start + skipped;
        line += text.as_bytes()[counted_to..doc_start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        counted_to = doc_start;
        let Some(doc) = stream.next() else { break };
        let doc = doc.map_err(|e| json_error(ing, e, what))?;
        f(ing, doc, line)?;
    }
    Ok(())
}
