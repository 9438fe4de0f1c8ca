//! Span export: OTLP/JSON lines to a file and/or OTLP/HTTP (protobuf) to a collector.
//!
//! [`Exporter::record`] hands a finished span to a bounded queue and returns
//! at once, so a slow disk or collector never slows a request down: when the
//! queue is full the span is dropped and counted. One background thread per
//! exporter drains the queue into batches (`batch_size` spans, or whatever
//! waited `flush_interval_ms`), groups each batch by service into
//! `resourceSpans` and exports it as one `ExportTraceServiceRequest`:
//!
//! - to the span file, as one line of OTLP/JSON in the format of the
//!   OpenTelemetry collector's file exporter, appended with a single `write`
//!   under an advisory lock, so processes sharing the file never interleave
//!   inside a line and a failed write leaves no partial line;
//! - to the OTLP/HTTP endpoint, protobuf-encoded by hand (see `proto`),
//!   retried a little, then dropped and counted.

mod http;
mod json;
mod proto;

use std::fs::File;
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::TracingConfig;

pub use http::Endpoint;

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
    /// `service.instance.id` of the resource, for a service with several
    /// instances: which of them did the work.
    pub instance: Option<Arc<str>>,
    /// W3C trace id: the trace this span belongs to.
    pub trace_id: [u8; 16],
    /// W3C span id (parent id of the spans this one calls).
    pub span_id: [u8; 8],
    /// All zero for a root span.
    pub parent_span_id: [u8; 8],
    /// The operation: what `palette fit` reads back as the API's name.
    pub name: String,
    /// Server for an execution, client for a call, internal for a local call.
    pub kind: Kind,
    /// Wall-clock start and end, Unix nanoseconds.
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    /// `Some(message)`: status ERROR with that message.
    pub error: Option<String>,
    /// Extra facts (peer service, PFA state, body sizes); keys are fixed names.
    pub attributes: Vec<(&'static str, AttrValue)>,
}

/// What an exporter did, reported at shutdown.
///
/// After shutdown every recorded span is counted exactly once: `exported +
/// dropped` is the number of spans recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Spans every configured destination accepted.
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
    #[error("cannot start the span export thread: {0}")]
    Thread(std::io::Error),
}

/// Fewest spans the queue holds: enough for a burst of several batches
/// while the thread is writing one.
const MIN_QUEUE: usize = 16_384;
/// Most spans the queue holds, whatever the batch size: the queue's slots
/// are allocated up front.
const MAX_QUEUE: usize = 1 << 20;

/// What travels to the export thread.
enum Msg {
    /// A finished span to export.
    Span(SpanRecord),
    /// Makes the thread look at the stop flag now.
    Wake,
}

/// Counters shared by the exporter's handles and its thread.
#[derive(Default)]
struct Counters {
    /// See [`ExportStats`].
    exported: AtomicU64,
    dropped: AtomicU64,
    /// Set by `shutdown`: the thread drains the queue, exports and stops.
    stop: AtomicBool,
    /// `record` calls between their look at `stop` and their send: the
    /// thread's last drain waits for them, so no span is lost uncounted.
    sending: AtomicU64,
    /// The latest export failure, for the server to report.
    last_error: Mutex<Option<String>>,
}

impl Counters {
    fn stats(&self) -> ExportStats {
        ExportStats { exported: self.exported.load(Ordering::Relaxed), dropped: self.dropped.load(Ordering::Relaxed) }
    }
}

/// What every clone of an exporter shares.
struct Shared {
    /// The queue: bounded, and only ever `try_send`, so `record` never blocks.
    tx: SyncSender<Msg>,
    /// Shared with the thread, which outlives no handle but owns no sender.
    counters: Arc<Counters>,
    /// Becomes true when the thread has exported everything and stopped.
    done: tokio::sync::watch::Receiver<bool>,
}

/// Exports the spans of every service in this process. Cheap to clone.
///
/// With neither a span file nor an endpoint configured, spans are discarded
/// uncounted: tracing is off.
#[derive(Clone)]
pub struct Exporter {
    /// `None` when there is nowhere to export to.
    shared: Option<Arc<Shared>>,
}

impl Exporter {
    /// Starts exporting as `config` says; a relative span file is under `base_dir`.
    pub fn start(config: &TracingConfig, base_dir: &Path) -> Result<Exporter, ExportError> {
        let file = match &config.file {
            Some(f) => Some(SpanFile::open(&base_dir.join(f))?),
            None => None,
        };
        let otlp = match &config.otlp_endpoint {
            Some(url) => Some(http::Client::new(Endpoint::parse(url)?)),
            None => None,
        };
        if file.is_none() && otlp.is_none() {
            return Ok(Exporter { shared: None });
        }
        let batch_size = config.batch_size.max(1);
        let capacity = batch_size.saturating_mul(4).clamp(MIN_QUEUE, MAX_QUEUE);
        let (tx, rx) = mpsc::sync_channel(capacity);
        let counters = Arc::new(Counters::default());
        let (done_tx, done) = tokio::sync::watch::channel(false);
        let worker = ExportThread {
            rx,
            counters: counters.clone(),
            batch_size,
            interval: Duration::from_millis(config.flush_interval_ms),
            file,
            otlp,
            json: String::new(),
            proto: Vec::new(),
        };
        std::thread::Builder::new()
            .name("palette-export".into())
            .spawn(move || {
                worker.run();
                let _ = done_tx.send(true);
            })
            .map_err(ExportError::Thread)?;
        Ok(Exporter { shared: Some(Arc::new(Shared { tx, counters, done })) })
    }

    /// Queues a span; never blocks (a full queue drops the span and counts it).
    pub fn record(&self, span: SpanRecord) {
        let Some(shared) = &self.shared else { return };
        let c = &shared.counters;
        c.sending.fetch_add(1, Ordering::SeqCst);
        let sent = !c.stop.load(Ordering::SeqCst) && shared.tx.try_send(Msg::Span(span)).is_ok();
        c.sending.fetch_sub(1, Ordering::SeqCst);
        if !sent {
            c.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What has been exported and dropped so far.
    pub fn stats(&self) -> ExportStats {
        self.shared.as_ref().map_or_else(ExportStats::default, |s| s.counters.stats())
    }

    /// The latest export failure (a file write or an OTLP request), if any.
    pub fn last_error(&self) -> Option<String> {
        let shared = self.shared.as_ref()?;
        shared.counters.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Flushes everything queued and stops. Spans recorded through other
    /// clones afterwards are dropped and counted.
    pub async fn shutdown(self) -> ExportStats {
        let Some(shared) = self.shared else { return ExportStats::default() };
        shared.counters.stop.store(true, Ordering::SeqCst);
        // A full queue needs no wake-up: the thread is busy and sees the flag.
        let _ = shared.tx.try_send(Msg::Wake);
        let mut done = shared.done.clone();
        let _ = done.wait_for(|d| *d).await;
        shared.counters.stats()
    }
}

/// How long the export thread sleeps between looks at the queue while a
/// batch is open: far below any flush interval, long enough that a busy
/// service's spans arrive in bunches.
const POLL: Duration = Duration::from_millis(2);

/// The background thread's state.
struct ExportThread {
    rx: Receiver<Msg>,
    counters: Arc<Counters>,
    /// Spans per export request (`tracing.batch_size`).
    batch_size: usize,
    /// Longest a span waits in a partial batch (`tracing.flush_interval_ms`).
    interval: Duration,
    /// Destinations: each batch goes to every one configured.
    file: Option<SpanFile>,
    otlp: Option<http::Client>,
    /// Encoding buffers, reused across batches.
    json: String,
    proto: Vec<u8>,
}

impl ExportThread {
    fn run(mut self) {
        let mut batch: Vec<SpanRecord> = Vec::with_capacity(self.batch_size.min(MIN_QUEUE));
        // When the oldest span of the batch must be exported.
        let mut deadline: Option<Instant> = None;
        loop {
            // Block on the queue only while idle. With a batch open, sleep and
            // then take everything queued: a span recorded while the thread
            // sleeps costs its sender no wake-up (a wake per span was a
            // tenth of a busy service's CPU).
            if batch.is_empty() {
                match self.rx.recv() {
                    Ok(Msg::Span(span)) => {
                        deadline = Some(Instant::now() + self.interval);
                        batch.push(span);
                    }
                    Ok(Msg::Wake) => {}
                    // Every handle is gone: nothing more can arrive.
                    Err(_) => break,
                }
            } else {
                let until = deadline.map_or(POLL, |d| d.saturating_duration_since(Instant::now()));
                std::thread::sleep(until.min(POLL));
            }
            let mut disconnected = false;
            loop {
                match self.rx.try_recv() {
                    Ok(Msg::Span(span)) => {
                        if batch.is_empty() {
                            deadline = Some(Instant::now() + self.interval);
                        }
                        batch.push(span);
                        if batch.len() >= self.batch_size {
                            self.export(&mut batch);
                            deadline = None;
                        }
                    }
                    Ok(Msg::Wake) => {}
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.export(&mut batch);
                deadline = None;
            }
            if disconnected {
                break;
            }
            if self.counters.stop.load(Ordering::SeqCst) {
                // Drain until no `record` is between its look at the flag and
                // its send; one more drain then takes the last of them.
                loop {
                    let quiet = self.counters.sending.load(Ordering::SeqCst) == 0;
                    while let Ok(msg) = self.rx.try_recv() {
                        if let Msg::Span(span) = msg {
                            batch.push(span);
                            if batch.len() >= self.batch_size {
                                self.export(&mut batch);
                            }
                        }
                    }
                    if quiet {
                        break;
                    }
                    std::thread::yield_now();
                }
                break;
            }
        }
        self.export(&mut batch);
    }

    /// Exports one batch to every destination and counts it.
    fn export(&mut self, batch: &mut Vec<SpanRecord>) {
        if batch.is_empty() {
            return;
        }
        // Stable: spans of one service keep the order they finished in.
        batch.sort_by(|a, b| (&a.service, &a.instance).cmp(&(&b.service, &b.instance)));
        let mut failure = None;
        if let Some(file) = &mut self.file {
            self.json.clear();
            json::request(batch, &mut self.json);
            self.json.push('\n');
            if let Err(e) = file.append(self.json.as_bytes()) {
                failure = Some(format!("cannot write spans to {}: {e}", file.path.display()));
            }
        }
        if let Some(client) = &mut self.otlp {
            self.proto.clear();
            proto::request(batch, &mut self.proto);
            if let Err(e) = client.post(&self.proto) {
                failure = Some(format!("cannot export spans to {}: {e}", client.endpoint()));
            }
        }
        let n = batch.len() as u64;
        match failure {
            None => self.counters.exported.fetch_add(n, Ordering::Relaxed),
            Some(message) => {
                *self.counters.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
                self.counters.dropped.fetch_add(n, Ordering::Relaxed)
            }
        };
        batch.clear();
    }
}

/// The span file, opened for appending.
struct SpanFile {
    /// For error messages.
    path: PathBuf,
    /// Opened with O_APPEND: every write lands at the current end.
    file: File,
}

impl SpanFile {
    fn open(path: &Path) -> Result<SpanFile, ExportError> {
        let err = |source| ExportError::File { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = File::options().append(true).create(true).open(path).map_err(err)?;
        Ok(SpanFile { path: path.to_path_buf(), file })
    }

    /// Appends whole lines with one `write`: O_APPEND places it atomically
    /// at the end, so writers sharing the file never interleave. The
    /// advisory lock serialises cooperating writers, so a short write (disk
    /// full) can be cut off again without cutting anyone else's line.
    fn append(&mut self, lines: &[u8]) -> io::Result<()> {
        // Filesystems without locks still get O_APPEND's guarantee.
        let locked = self.file.lock().is_ok();
        let result = self.append_locked(lines);
        if locked {
            let _ = self.file.unlock();
        }
        result
    }

    fn append_locked(&mut self, lines: &[u8]) -> io::Result<()> {
        loop {
            match self.file.write(lines) {
                Ok(n) if n == lines.len() => return Ok(()),
                Ok(n) => {
                    // With O_APPEND the offset is now the end of what was written.
                    let end = self.file.stream_position()?;
                    if self.file.metadata()?.len() == end {
                        self.file.set_len(end - n as u64)?;
                    } else {
                        // Someone appended after the partial line: end it, so
                        // at least their lines stay whole.
                        let _ = self.file.write(b"\n");
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("short write ({n} of {} bytes)", lines.len()),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
