//! A fast CSV record reader for the row formats.
//!
//! Trace CSVs are large and almost never quoted, so the common case is a
//! line split at commas in place; a line with a quote takes the full RFC 4180
//! path (quoted commas, doubled quotes, newlines inside quotes). Measured on
//! Alibaba-style rows this halves parsing time against a general CSV parser.

use std::io::{self, BufRead, Read};
use std::ops::Range;

/// Reads CSV records one at a time, reusing its buffers.
pub struct CsvLines<R> {
    reader: R,
    /// The raw bytes of the current record (one line, or several when a
    /// quoted field holds a newline).
    raw: Vec<u8>,
    /// Unquoted field bytes, for records that had quotes.
    decoded: Vec<u8>,
    /// Field ranges into `raw` (fast path) or `decoded` (quoted path).
    fields: Vec<Range<usize>>,
    quoted: bool,
    /// Lines consumed so far; the current record starts at `record_line`.
    lines: u64,
    record_line: u64,
    /// The most bytes one record may take.
    limit: u64,
    too_long: bool,
}

impl<R: BufRead> CsvLines<R> {
    /// Records longer than `limit` bytes are refused (see [`CsvLines::too_long`]).
    pub fn new(reader: R, limit: u64) -> CsvLines<R> {
        CsvLines {
            limit,
            too_long: false,
            reader,
            raw: Vec::with_capacity(512),
            decoded: Vec::new(),
            fields: Vec::with_capacity(16),
            quoted: false,
            lines: 0,
            record_line: 0,
        }
    }

    /// Reads the next record; `false` at the end of the input.
    pub fn next_record(&mut self) -> io::Result<bool> {
        self.raw.clear();
        self.fields.clear();
        self.record_line = self.lines + 1;
        if self.read_line()? == 0 {
            return Ok(false);
        }
        self.lines += 1;
        // One pass finds the commas, and stops at a quote if there is one.
        let line = trim_newline(&self.raw);
        let mut start = 0;
        let mut quoted = false;
        for at in memchr::memchr2_iter(b',', b'"', line) {
            if line[at] == b'"' {
                quoted = true;
                break;
            }
            self.fields.push(start..at);
            start = at + 1;
        }
        if !quoted {
            self.quoted = false;
            self.fields.push(start..line.len());
            return Ok(true);
        }
        self.fields.clear();
        // A quoted field may hold newlines: read on until quotes balance.
        while self.raw.iter().filter(|&&b| b == b'"').count() % 2 == 1 {
            if self.read_line()? == 0 {
                break;
            }
            self.lines += 1;
        }
        self.quoted = true;
        self.decode_quoted();
        Ok(true)
    }

    /// Appends the next line to `raw`, within the record limit.
    fn read_line(&mut self) -> io::Result<usize> {
        let room = self.limit.saturating_sub(self.raw.len() as u64);
        let n = (&mut self.reader).take(room).read_until(b'\n', &mut self.raw)?;
        if n as u64 == room && self.raw.last() != Some(&b'\n') && !self.reader.fill_buf()?.is_empty() {
            self.too_long = true;
            return Err(io::Error::other("record limit reached"));
        }
        Ok(n)
    }

    /// True when reading stopped at a record longer than the limit.
    pub fn too_long(&self) -> bool {
        self.too_long
    }

    fn decode_quoted(&mut self) {
        self.decoded.clear();
        let line = trim_newline(&self.raw);
        let (mut in_quotes, mut start, mut i) = (false, 0, 0);
        while i < line.len() {
            let b = line[i];
            match (in_quotes, b) {
                (true, b'"') if line.get(i + 1) == Some(&b'"') => {
                    self.decoded.push(b'"');
                    i += 1;
                }
                (_, b'"') => in_quotes = !in_quotes,
                (false, b',') => {
                    self.fields.push(start..self.decoded.len());
                    start = self.decoded.len();
                }
                _ => self.decoded.push(b),
            }
            i += 1;
        }
        self.fields.push(start..self.decoded.len());
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Field `i`, without surrounding whitespace.
    pub fn field(&self, i: usize) -> &[u8] {
        let buf = if self.quoted { &self.decoded } else { &self.raw };
        buf[self.fields[i].clone()].trim_ascii()
    }

    /// The 1-based line the current record starts on.
    pub fn line(&self) -> u64 {
        self.record_line
    }

    /// True for a line with nothing but whitespace.
    pub fn is_blank(&self) -> bool {
        self.fields.len() == 1 && self.field(0).is_empty()
    }
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::CsvLines;

    fn records(text: &str) -> Vec<Vec<String>> {
        let mut r = CsvLines::new(text.as_bytes(), 1 << 20);
        let mut out = Vec::new();
        while r.next_record().unwrap() {
            out.push((0..r.len()).map(|i| String::from_utf8_lossy(r.field(i)).into_owned()).collect());
        }
        out
    }

    #[test]
    fn plain_and_quoted_records() {
        assert_eq!(records("a,b\r\n1,2\n"), vec![vec!["a", "b"], vec!["1", "2"]]);
        assert_eq!(records("x,\"a,b\",\"say \"\"hi\"\"\"\n"), vec![vec!["x", "a,b", "say \"hi\""]]);
        assert_eq!(records("x,\"two\nlines\",y\nz\n"), vec![vec!["x", "two\nlines", "y"], vec!["z"]]);
        assert_eq!(records("last,line"), vec![vec!["last", "line"]]);
        assert_eq!(records(",a,"), vec![vec!["", "a", ""]]);
    }

    #[test]
    fn lines_are_counted() {
        let mut r = CsvLines::new("h\n\"a\nb\"\nc\n".as_bytes(), 1 << 20);
        r.next_record().unwrap();
        assert_eq!(r.line(), 1);
        r.next_record().unwrap();
        assert_eq!(r.line(), 2);
        r.next_record().unwrap();
        assert_eq!(r.line(), 4);
    }

    #[test]
    fn a_record_past_the_limit_is_refused() {
        let mut r = CsvLines::new("ab,c\nabcdefgh\nx\n".as_bytes(), 6);
        assert!(r.next_record().unwrap());
        assert!(r.next_record().is_err());
        assert!(r.too_long());
        assert_eq!(r.line(), 2);
        // Exactly at the limit, newline included, is fine; so is a last line without one.
        let mut r = CsvLines::new("abcd\nabcdef".as_bytes(), 6);
        assert!(r.next_record().unwrap());
        assert!(r.next_record().unwrap());
        assert_eq!(r.field(0), b"abcdef");
        // A quote that never closes reads on only to the limit.
        let mut r = CsvLines::new("\"a\nb\nc\nd\ne\n".as_bytes(), 6);
        assert!(r.next_record().is_err());
        assert!(r.too_long());
    }
}
