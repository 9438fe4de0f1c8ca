//! A minimal HTTP/1.1 client for OTLP/HTTP: POST a body, read the status.
//!
//! The export thread is a plain thread with one request in flight, so a
//! blocking client over `std::net::TcpStream` is all it needs: one kept-alive
//! connection, reopened when the server closes it or a request fails.
//! Responses are framed by `Content-Length`, chunked encoding or the end of
//! the connection; their bodies are read and ignored (OTLP partial-success
//! details are not acted on).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::ExportError;

/// Longest wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for one read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries per batch (the first and the retries).
const ATTEMPTS: u32 = 3;
/// Wait before the first retry; doubled for each further one.
const BACKOFF: Duration = Duration::from_millis(100);
/// After a batch fails every try, later batches get one try each and at
/// most one per this long, so a dead collector does not stall the thread
/// (and the span file) for the full retry schedule of every batch.
const COOL_DOWN: Duration = Duration::from_secs(1);
/// Longest status line or header accepted.
const MAX_LINE: usize = 8192;

/// An `http://host:port/path` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Name or address to connect to (IPv6 without brackets).
    pub host: String,
    /// 80 when the URL has none.
    pub port: u16,
    /// Request target; `/v1/traces` when the URL has no path.
    pub path: String,
}

impl Endpoint {
    /// Parses `http://host[:port][/path]` (port 80 and path `/v1/traces` by default).
    pub fn parse(url: &str) -> Result<Endpoint, ExportError> {
        let bad = || ExportError::Endpoint(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/v1/traces"),
        };
        if path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(bad)?),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => 80,
            Some(p) => p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(bad)?,
        };
        let host_ok = !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
            && (authority.starts_with('[') || !host.contains(':'));
        if !host_ok {
            return Err(bad());
        }
        Ok(Endpoint { host: host.to_string(), port, path: path.to_string() })
    }

    fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.host_header(), self.path)
    }
}

/// Why one request failed, and whether trying again may help.
struct Failure {
    /// What went wrong, for `Exporter::last_error`.
    message: String,
    /// Connection trouble or a status the OTLP specification calls retryable.
    retry: bool,
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure { message: e.to_string(), retry: true }
    }
}

/// Posts OTLP protobuf to one endpoint.
pub struct Client {
    /// Where requests go; also names the collector in errors.
    endpoint: Endpoint,
    /// The request head, the same for every request but its length.
    head: String,
    /// The kept-alive connection, if any.
    conn: Option<BufReader<TcpStream>>,
    /// Until when failed batches are not retried.
    cool_until: Option<Instant>,
}

impl Client {
    pub fn new(endpoint: Endpoint) -> Client {
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-protobuf\r\nUser-Agent: palette\r\nContent-Length: ",
            endpoint.path,
            endpoint.host_header()
        );
        Client { endpoint, head, conn: None, cool_until: None }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Posts `body`, retrying a little; the error says why the last try failed.
    pub fn post(&mut self, body: &[u8]) -> Result<(), String> {
        let cooling = self.cool_until.is_some_and(|t| Instant::now() < t);
        if cooling {
            return Err("collector unavailable (cooling down after failures)".into());
        }
        let attempts = if self.cool_until.is_some() { 1 } else { ATTEMPTS };
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                std::thread::sleep(BACKOFF * (1 << (attempt - 1)));
            }
            match self.try_post(body) {
                Ok(()) => {
                    self.cool_until = None;
                    return Ok(());
                }
                Err(f) => {
                    self.conn = None;
                    last = f.message;
                    if !f.retry {
                        break;
                    }
                }
            }
        }
        self.cool_until = Some(Instant::now() + COOL_DOWN);
        Err(last)
    }

    fn connect(&self) -> io::Result<BufReader<TcpStream>> {
        let mut last =
            io::Error::new(io::ErrorKind::NotFound, format!("{} resolves to no address", self.endpoint.host));
        for addr in (self.endpoint.host.as_str(), self.endpoint.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    s.set_read_timeout(Some(IO_TIMEOUT))?;
                    s.set_write_timeout(Some(IO_TIMEOUT))?;
                    s.set_nodelay(true)?;
                    return Ok(BufReader::new(s));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn try_post(&mut self, body: &[u8]) -> Result<(), Failure> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect()?,
        };
        let mut request = Vec::with_capacity(self.head.len() + 24 + body.len());
        request.extend_from_slice(self.head.as_bytes());
        request.extend_from_slice(body.len().to_string().as_bytes());
        request.extend_from_slice(b"\r\n\r\n");
        request.extend_from_slice(body);
        conn.get_mut().write_all(&request)?;
        let response = read_response(&mut conn)?;
        if response.keep_alive {
            self.conn = Some(conn);
        }
        match response.status {
            200..=299 => Ok(()),
            // The OTLP/HTTP specification's retryable statuses.
            429 | 502 | 503 | 504 => Err(Failure { message: format!("HTTP {}", response.status), retry: true }),
            s => Err(Failure { message: format!("HTTP {s}"), retry: false }),
        }
    }
}

struct Response {
    /// 2xx: the batch was accepted.
    status: u16,
    /// The connection can carry the next request.
    keep_alive: bool,
}

fn read_line(r: &mut impl BufRead, line: &mut String) -> io::Result<()> {
    line.clear();
    let n = (&mut *r).take(MAX_LINE as u64).read_line(line)?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the collector closed the connection"));
    }
    if !line.ends_with('\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "response line too long"));
    }
    Ok(())
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("bad HTTP response: {what}"))
}

/// Reads a response, its body included (and discarded).
fn read_response(r: &mut impl BufRead) -> io::Result<Response> {
    let mut line = String::new();
    read_line(r, &mut line)?;
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status: u16 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(|| invalid("status line"))?;
    if !version.starts_with("HTTP/1.") {
        return Err(invalid("not HTTP/1.x"));
    }
    let mut keep_alive = version == "HTTP/1.1";
    let (mut length, mut chunked) = (None, false);
    loop {
        read_line(r, &mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else { return Err(invalid("header")) };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<u64>().map_err(|_| invalid("content-length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            keep_alive = if v.contains("close") { false } else { keep_alive || v.contains("keep-alive") };
        }
    }
    if chunked {
        loop {
            read_line(r, &mut line)?;
            let size = line.trim_end().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size.trim(), 16).map_err(|_| invalid("chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    read_line(r, &mut line)?;
                    if line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            discard(r, size)?;
            read_line(r, &mut line)?;
        }
    } else if let Some(n) = length {
        discard(r, n)?;
    } else if !(100..200).contains(&status) && status != 204 && status != 304 {
        // Delimited by the end of the connection.
        io::copy(r, &mut io::sink())?;
        keep_alive = false;
    }
    Ok(Response { status, keep_alive })
}

fn discard(r: &mut impl BufRead, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut (&mut *r).take(n), &mut io::sink())?;
    if copied < n {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the collector closed the connection mid-body"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("http://127.0.0.1:4318/v1/traces").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.path.as_str()), ("127.0.0.1", 4318, "/v1/traces"));
        let e = Endpoint::parse("http://collector").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.path.as_str()), ("collector", 80, "/v1/traces"));
        let e = Endpoint::parse("http://[::1]:4318/x").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.path.as_str()), ("::1", 4318, "/x"));
        assert_eq!(e.to_string(), "http://[::1]:4318/x");
        for bad in ["https://a:1/", "a:1", "http://:1/", "http://a:0/", "http://a:x/", "http://a b:1/", "http://a:1/ x"]
        {
            assert!(Endpoint::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn responses_are_framed() {
        let mut r = io::Cursor::new(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 503 X\r\n\r\n".to_vec());
        let first = read_response(&mut r).unwrap();
        assert_eq!((first.status, first.keep_alive), (200, true));
        let second = read_response(&mut r).unwrap();
        assert_eq!((second.status, second.keep_alive), (503, false));
        let mut r = io::Cursor::new(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\n\r\nrest".to_vec(),
        );
        let chunked = read_response(&mut r).unwrap();
        assert_eq!((chunked.status, chunked.keep_alive), (200, true));
        assert_eq!(&r.get_ref()[r.position() as usize..], b"rest");
        let mut r = io::Cursor::new(b"HTTP/1.0 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec());
        assert!(!read_response(&mut r).unwrap().keep_alive);
        assert!(read_response(&mut io::Cursor::new(b"garbage\r\n".to_vec())).is_err());
        assert!(
            read_response(&mut io::Cursor::new(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab".to_vec())).is_err()
        );
    }
}
