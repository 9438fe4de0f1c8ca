//! Streaming JSON for the JSON trace formats.
//!
//! A document is parsed as it is read, and its big arrays (traces, spans)
//! element by element, so a reader's memory follows its largest element,
//! not the file. What bounds the bytes read is the record limit
//! ([`crate::ReadOptions::record_limit`]): the bytes since the last span (or
//! trace, or document) began. A span that large, or that much input without
//! one beginning (a line that never ends, endless whitespace), is refused as
//! bad data at the line where the limit was reached.
//!
//! The input is checked to be UTF-8 as it goes, so an invalid byte is
//! reported at its own line even where the parser would not look at it.

use std::cell::Cell;
use std::io::{self, Read};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny};
use serde_json::Value;

use crate::error::Error;
use crate::format::Ingest;
use crate::input;

/// Why the tracked input stopped handing out bytes.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// The record limit was reached on this line.
    TooLong { line: u64 },
    /// The byte at this line is not UTF-8.
    NotUtf8 { line: u64 },
}

/// How far the parser has got, shared between the input it pulls from and
/// the visitors that mark where records begin.
pub(crate) struct Position {
    newlines: Cell<u64>,
    consumed: Cell<u64>,
    /// `consumed` when the current record began.
    record_start: Cell<u64>,
    limit: u64,
    stop: Cell<Option<Stop>>,
}

impl Position {
    fn new(limit: u64) -> Position {
        Position {
            newlines: Cell::new(0),
            consumed: Cell::new(0),
            record_start: Cell::new(0),
            limit: limit.max(1),
            stop: Cell::new(None),
        }
    }

    /// The 1-based line of the next byte.
    pub fn line(&self) -> u64 {
        self.newlines.get() + 1
    }

    /// A record (document, trace or span) begins: the limit counts from here.
    pub fn start_record(&self) {
        self.record_start.set(self.consumed.get());
    }
}

/// Largest incomplete UTF-8 sequence carried from one buffer fill to the next.
const MAX_CARRY: usize = 3;

/// The input as the parser sees it: UTF-8 checked, lines counted, and cut
/// off at the record limit. It keeps its own buffer so that serde_json's
/// byte-at-a-time reads stay cheap.
pub(crate) struct Tracked<'p, R> {
    inner: R,
    pos: &'p Position,
    buf: Box<[u8]>,
    at: usize,
    /// End of the checked bytes that may be handed out.
    end: usize,
    /// End of the bytes read from `inner`; `end..filled` is an incomplete
    /// UTF-8 sequence to finish with the next read, or an invalid one.
    filled: usize,
    invalid: bool,
    eof: bool,
}

impl<'p, R: Read> Tracked<'p, R> {
    fn new(inner: R, pos: &'p Position) -> Tracked<'p, R> {
        Tracked {
            inner,
            pos,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            at: 0,
            end: 0,
            filled: 0,
            invalid: false,
            eof: false,
        }
    }

    /// Makes checked bytes available; `false` at the end of the input.
    #[cold]
    fn refill(&mut self) -> io::Result<bool> {
        loop {
            if self.invalid {
                self.pos.stop.set(Some(Stop::NotUtf8 { line: self.pos.line() }));
                return Err(io::Error::new(io::ErrorKind::InvalidData, "not valid UTF-8 text"));
            }
            let carry = self.filled - self.end;
            self.buf.copy_within(self.end..self.filled, 0);
            self.at = 0;
            self.end = 0;
            self.filled = carry;
            if self.eof {
                // A sequence cut off by the end of the input.
                self.invalid = carry > 0;
                if self.invalid {
                    continue;
                }
                return Ok(false);
            }
            let n = loop {
                match self.inner.read(&mut self.buf[carry..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            };
            self.eof = n == 0;
            self.filled = carry + n;
            match std::str::from_utf8(&self.buf[..self.filled]) {
                Ok(_) => self.end = self.filled,
                Err(e) => {
                    self.end = e.valid_up_to();
                    self.invalid = e.error_len().is_some() || self.eof;
                    debug_assert!(self.invalid || self.filled - self.end <= MAX_CARRY);
                }
            }
            if self.end > 0 {
                return Ok(true);
            }
        }
    }

    /// The next byte, without taking it; `None` at the end of the input.
    fn peek(&mut self) -> io::Result<Option<u8>> {
        if self.at == self.end && !self.refill()? {
            return Ok(None);
        }
        Ok(Some(self.buf[self.at]))
    }

    /// The line of an invalid UTF-8 byte already read ahead, if there is one:
    /// binary data is better described as that than by the parser's error.
    fn invalid_ahead(&self) -> Option<u64> {
        let ahead = memchr::memchr_iter(b'\n', &self.buf[self.at..self.end]).count() as u64;
        self.invalid.then(|| self.pos.line() + ahead)
    }

    /// The rest of the current line, newline included, when it is already
    /// buffered whole and within the record limit: a JSON line to parse in
    /// place, far faster than byte by byte.
    fn buffered_line(&self) -> Option<&[u8]> {
        let rest = &self.buf[self.at..self.end];
        let end = memchr::memchr(b'\n', rest)?;
        ((end as u64) < self.pos.limit).then(|| &rest[..=end])
    }

    /// Takes `n` bytes of a [`Tracked::buffered_line`] as read.
    fn consume_line(&mut self, n: usize) {
        self.pos.newlines.set(self.pos.newlines.get() + 1);
        self.pos.consumed.set(self.pos.consumed.get() + n as u64);
        self.at += n;
    }

    /// Skips JSON whitespace; `false` when the input ends first.
    fn skip_whitespace(&mut self) -> io::Result<bool> {
        let mut byte = [0u8];
        while let Some(b) = self.peek()? {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Ok(true);
            }
            self.read_exact(&mut byte)?;
        }
        Ok(false)
    }
}

impl<R: Read> Read for Tracked<'_, R> {
    #[inline]
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.end && !self.refill()? {
            return Ok(0);
        }
        let pos = self.pos;
        let used = pos.consumed.get() - pos.record_start.get();
        if used >= pos.limit {
            pos.stop.set(Some(Stop::TooLong { line: pos.line() }));
            return Err(io::Error::other("record limit reached"));
        }
        let n = out.len().min(self.end - self.at).min((pos.limit - used).min(usize::MAX as u64) as usize);
        let bytes = &self.buf[self.at..self.at + n];
        out[..n].copy_from_slice(bytes);
        let newlines =
            if n == 1 { (bytes[0] == b'\n') as u64 } else { memchr::memchr_iter(b'\n', bytes).count() as u64 };
        pos.newlines.set(pos.newlines.get() + newlines);
        pos.consumed.set(pos.consumed.get() + n as u64);
        self.at += n;
        Ok(n)
    }
}

/// What a format's visitors work with.
pub(crate) struct Ctx<'a> {
    pub ing: &'a mut Ingest,
    pub pos: &'a Position,
    /// The line the document starts on, where its records are placed (one
    /// line per document in JSON lines).
    pub line: u64,
    /// An error of ours raised inside the parser, which can only carry text.
    failed: Option<Error>,
}

impl Ctx<'_> {
    /// Stops the parse with `e`, which [`read_documents`] reports as it is.
    pub fn fail<E: de::Error>(&mut self, e: Error) -> E {
        self.failed = Some(e);
        E::custom("stopped by the reader")
    }

    /// Passes a result of ours through the parser.
    pub fn check<T, E: de::Error>(&mut self, r: Result<T, Error>) -> Result<T, E> {
        r.map_err(|e| self.fail(e))
    }

    /// Stops the parse with bad data at the document's line.
    pub fn bad_data<E: de::Error>(&mut self, message: impl Into<String>) -> E {
        let e = self.ing.bad_data(self.line, message);
        self.fail(e)
    }
}

/// One JSON trace format: how a document of it is parsed.
pub(crate) trait Document {
    /// What the format is called in messages ("OTLP/JSON").
    const WHAT: &'static str;
    fn parse<'de, D: Deserializer<'de>>(ctx: &mut Ctx<'_>, de: D) -> Result<(), D::Error>;
}

/// Reads every document of the input (one document, several concatenated,
/// or JSON lines).
pub(crate) fn read_documents<F: Document>(reader: impl Read, ing: &mut Ingest) -> Result<(), Error> {
    let pos = Position::new(ing.record_limit);
    let mut input = Tracked::new(reader, &pos);
    loop {
        pos.start_record();
        let more = input.skip_whitespace().map_err(|e| input_error(ing, &pos, e))?;
        if !more {
            return Ok(());
        }
        pos.start_record();
        let line = pos.line();
        let mut ctx = Ctx { ing: &mut *ing, pos: &pos, line, failed: None };
        // A line holding one whole document (JSON lines) is parsed in place;
        // checking it first keeps a document that goes on past the line from
        // being read twice.
        if let Some(text) = input.buffered_line().filter(|t| serde_json::from_slice::<IgnoredAny>(t).is_ok()) {
            let n = text.len();
            let parsed = F::parse(&mut ctx, &mut serde_json::Deserializer::from_slice(text));
            input.consume_line(n);
            if let Err(e) = parsed {
                return Err(ctx.failed.take().unwrap_or_else(|| json_error(ing, &pos, line, e, F::WHAT)));
            }
            continue;
        }
        let parsed = F::parse(&mut ctx, &mut serde_json::Deserializer::from_reader(&mut input));
        if let Err(e) = parsed {
            if let Some(ours) = ctx.failed.take() {
                return Err(ours);
            }
            if let (false, Some(line)) = (e.is_io(), input.invalid_ahead()) {
                return Err(ing.bad_data(line, "not valid UTF-8 text"));
            }
            return Err(json_error(ing, &pos, line, e, F::WHAT));
        }
    }
}

/// The error for input that stopped: the record limit, invalid UTF-8, or a
/// failing read.
fn input_error(ing: &Ingest, pos: &Position, e: io::Error) -> Error {
    match pos.stop.get() {
        Some(Stop::TooLong { line }) => ing.bad_data(
            line,
            format!(
                "more than {} of JSON without a span beginning (a span that long, or a line that never ends); \
                 palette reads JSON one span at a time and refuses records past that size",
                show_bytes(pos.limit)
            ),
        ),
        Some(Stop::NotUtf8 { line }) => ing.bad_data(line, "not valid UTF-8 text"),
        None => input::read_error(ing.path(), e),
    }
}

/// Maps a serde_json error in the document starting on `doc_line` to bad
/// data at its line.
fn json_error(ing: &Ingest, pos: &Position, doc_line: u64, e: serde_json::Error, what: &str) -> Error {
    if e.is_io() {
        return input_error(ing, pos, e.into());
    }
    let why = match e.classify() {
        serde_json::error::Category::Eof => "the JSON ends too early (truncated file?)".to_string(),
        _ => {
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            format!("not valid {what}: {msg}")
        }
    };
    // serde_json counts lines from the document's first byte.
    ing.bad_data(doc_line + e.line().max(1) as u64 - 1, why)
}

/// `16 MiB`, `1000 bytes`.
pub(crate) fn show_bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) { format!("{} MiB", n >> 20) } else { format!("{n} bytes") }
}

/// A map key, matched against the names a visitor knows.
pub(crate) enum Key {
    /// Index into the names.
    Known(usize),
    Other(String),
}

/// Reads a map key as a [`Key`] of `names`.
pub(crate) struct KeyIn(pub &'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KeyIn {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> de::Visitor<'de> for KeyIn {
    type Value = Key;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(match self.0.iter().position(|n| *n == v) {
            Some(i) => Key::Known(i),
            None => Key::Other(v.to_string()),
        })
    }
}

/// One element of a streamed array, read whole as a [`Value`]: the record
/// limit counts from its first byte.
pub(crate) struct Record<'p>(pub &'p Position);

impl<'de> DeserializeSeed<'de> for Record<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.0.start_record();
        serde::Deserialize::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::{Position, Stop, Tracked};
    use std::io::Read;

    fn read_all(input: &[u8], limit: u64, chunk: usize) -> (Vec<u8>, Option<Stop>, u64) {
        let pos = Position::new(limit);
        let mut t = Tracked::new(input, &pos);
        t.buf = vec![0; chunk].into_boxed_slice();
        let mut out = Vec::new();
        let mut byte = [0u8];
        loop {
            match t.read(&mut byte) {
                Ok(0) | Err(_) => break,
                Ok(_) => out.push(byte[0]),
            }
        }
        (out, pos.stop.get(), pos.line())
    }

    #[test]
    fn utf8_split_across_fills_is_whole() {
        let text = "a\né\n€😀 end".as_bytes();
        for chunk in 4..12 {
            let (out, stop, line) = read_all(text, 1 << 20, chunk);
            assert_eq!(out, text, "chunk {chunk}");
            assert!(stop.is_none());
            assert_eq!(line, 3);
        }
    }

    #[test]
    fn invalid_utf8_stops_at_its_line() {
        let (out, stop, _) = read_all(b"ok\nok\n\xff rest", 1 << 20, 8);
        assert_eq!(out, b"ok\nok\n");
        assert!(matches!(stop, Some(Stop::NotUtf8 { line: 3 })), "{stop:?}");
        // A sequence cut off by the end of the input.
        let (out, stop, _) = read_all(b"x\n\xe2\x82", 1 << 20, 8);
        assert_eq!(out, b"x\n");
        assert!(matches!(stop, Some(Stop::NotUtf8 { line: 2 })), "{stop:?}");
    }

    #[test]
    fn the_limit_counts_from_the_record_start() {
        let (out, stop, _) = read_all(b"0123456789\n0123", 6, 5);
        assert_eq!(out, b"012345");
        assert!(matches!(stop, Some(Stop::TooLong { line: 1 })), "{stop:?}");
        let pos = Position::new(4);
        let mut t = Tracked::new(&b"abcdefgh"[..], &pos);
        let mut two = [0u8; 2];
        for _ in 0..4 {
            pos.start_record();
            assert_eq!(t.read(&mut two).unwrap(), 2);
        }
        assert_eq!(t.read(&mut two).unwrap(), 0);
    }
}
