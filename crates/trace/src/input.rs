//! Opening inputs: files or directories, plain or gzip, with progress.
//!
//! Besides regular files, a pipe is read (a FIFO, or `<(…)` in a shell): it
//! is read until its writer closes it, and opening a FIFO that no program
//! opens for writing gives up after [`FIFO_WAIT`]. Devices and sockets are
//! refused: `/dev/zero` or a terminal would never end.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;

/// Reports how far reading has got, for progress bars.
pub trait Progress: Sync {
    /// A new file of `bytes` bytes (on disk) starts.
    fn start_file(&self, _path: &Path, _bytes: u64) {}
    /// `bytes` more bytes (on disk) were read.
    fn advance(&self, _bytes: u64) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Expands directories (sorted, non-recursive, hidden files skipped) into
/// the files they hold.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound { path: input.clone() },
            _ => Error::Io { path: input.clone(), source: e },
        })?;
        if !meta.is_dir() {
            files.push(input.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(input)
            .map_err(|e| Error::Io { path: input.clone(), source: e })?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && is_trace_file_name(p))
            .collect();
        if found.is_empty() {
            return Err(Error::EmptyDirectory { path: input.clone() });
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

fn is_trace_file_name(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name = name.strip_suffix(".gz").unwrap_or(name);
    !name.starts_with('.') && [".csv", ".json", ".jsonl", ".ndjson"].iter().any(|ext| name.ends_with(ext))
}

/// Counts bytes as they are read from disk.
struct Counting<'p, R> {
    inner: R,
    progress: &'p dyn Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// An opened input: its decompressed content, with the first bytes
/// available for sniffing the format.
pub struct Opened<'p> {
    pub head: Vec<u8>,
    pub reader: Box<dyn BufRead + Send + 'p>,
    /// A pipe cannot be opened twice: what one open read is gone.
    pub pipe: bool,
}

/// How long opening a FIFO waits for a program to open it for writing.
pub const FIFO_WAIT: Duration = Duration::from_secs(10);

/// Opens `path` for reading: a regular file, or a pipe; a device or socket
/// is bad data (it would never end, or is no file of traces).
fn open_file(path: &Path) -> Result<(File, bool), Error> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::NotFound { path: path.to_path_buf() },
        _ => Error::Io { path: path.to_path_buf(), source: e },
    })?;
    if let Some(what) = never_a_trace_file(&meta) {
        return Err(Error::BadData {
            path: path.to_path_buf(),
            line: 0,
            message: format!("{what}, not a file of traces; palette reads regular files, directories and pipes"),
        });
    }
    if is_fifo(&meta) {
        return Ok((open_fifo(path, FIFO_WAIT)?, true));
    }
    let file = File::open(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    Ok((file, false))
}

/// What a device or socket is, for refusing it.
#[cfg(unix)]
fn never_a_trace_file(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_char_device() {
        Some("a character device (a terminal, or a device such as /dev/zero)")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        None
    }
}

#[cfg(not(unix))]
fn never_a_trace_file(_: &std::fs::Metadata) -> Option<&'static str> {
    None
}

#[cfg(unix)]
fn is_fifo(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_fifo()
}

#[cfg(not(unix))]
fn is_fifo(_: &std::fs::Metadata) -> bool {
    false
}

/// Opens a FIFO, waiting at most `wait` for a writer: opening one blocks
/// until some program opens it for writing, which may be never.
fn open_fifo(path: &Path, wait: Duration) -> Result<File, Error> {
    let io_err = |e: io::Error| Error::Io { path: path.to_path_buf(), source: e };
    let (tx, rx) = std::sync::mpsc::channel();
    let target = path.to_path_buf();
    std::thread::Builder::new()
        .name("open-fifo".into())
        .spawn(move || {
            let _ = tx.send(File::open(&target));
        })
        .map_err(io_err)?;
    match rx.recv_timeout(wait) {
        Ok(opened) => opened.map_err(io_err),
        Err(_) => {
            // Opening the other end lets the waiting open return, so that
            // no thread stays blocked: the opener (or the file it opened,
            // waiting in the channel) is a reader, so this does not block.
            if let Ok(writer) = std::fs::OpenOptions::new().write(true).open(path) {
                drop(writer);
                let _ = rx.recv();
            }
            Err(Error::BadData {
                path: path.to_path_buf(),
                line: 0,
                message: format!(
                    "a FIFO that no program opened for writing within {} s; start its writer first",
                    wait.as_secs()
                ),
            })
        }
    }
}

/// How many decompressed bytes are kept for format detection.
const HEAD_BYTES: usize = 16 * 1024;

/// Opens `path`, decompressing gzip (detected by its magic bytes, not the name).
pub fn open<'p>(path: &Path, progress: &'p dyn Progress) -> Result<Opened<'p>, Error> {
    let io_err = |e: io::Error| Error::Io { path: path.to_path_buf(), source: e };
    let (file, pipe) = open_file(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    progress.start_file(path, size);
    let mut raw = BufReader::with_capacity(256 * 1024, Counting { inner: file, progress });
    let magic = raw.fill_buf().map_err(io_err)?;
    let gzip = magic.len() >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    let mut decoded: Box<dyn Read + Send + 'p> =
        if gzip { Box::new(flate2::bufread::MultiGzDecoder::new(raw)) } else { Box::new(raw) };
    let mut head = Vec::with_capacity(HEAD_BYTES);
    (&mut decoded).take(HEAD_BYTES as u64).read_to_end(&mut head).map_err(|e| read_error(path, e))?;
    let reader = BufReader::with_capacity(256 * 1024, Cursor::new(head.clone()).chain(decoded));
    Ok(Opened { head, reader: Box::new(reader), pipe })
}

/// Maps a read error to our error: a corrupt gzip stream or invalid text is
/// bad data, anything else an I/O failure.
pub fn read_error(path: &Path, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof => Error::BadData {
            path: path.to_path_buf(),
            line: 0,
            message: format!("unreadable data: {e} (a truncated or corrupt .gz file?)"),
        },
        _ => Error::Io { path: path.to_path_buf(), source: e },
    }
}
