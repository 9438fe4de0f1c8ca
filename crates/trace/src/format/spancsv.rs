//! Span CSV: one span per row, as in the Nezha dataset.
//!
//! `TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration`
//!
//! Columns are found by header name (case-insensitive, with common aliases).
//! `ParentID` is `root` (or empty, `0`, `null`) for a root. The service is the
//! `ServiceName` column when there is one, else the pod name without its
//! replica-set and pod suffixes. Times: a column named `…nano…`/`…_ns` is in
//! nanoseconds, `…micro…`/`…_us` and a bare `Duration` in microseconds,
//! `…milli…`/`…_ms` in milliseconds. Optional `Kind`/`SpanKind`, `Error` or
//! `StatusCode` columns are used when present.

use std::cell::Cell;
use std::io::{BufRead, Read};

use crate::defect::DefectKind;
use crate::error::Error;
use crate::format::csvheader::HeaderNames;
use crate::format::{Ingest, row_too_long, truncate};
use crate::span::{Span, SpanId, SpanKind, Sym, TraceId, flags};

/// Nanoseconds per unit of a time column, from its name.
fn unit_ns(name: &str, default: i64) -> i64 {
    if name.contains("nano") || name.ends_with("_ns") {
        1
    } else if name.contains("micro") || name.ends_with("_us") {
        1_000
    } else if name.contains("milli") || name.ends_with("_ms") {
        1_000_000
    } else {
        default
    }
}

struct Columns {
    trace: usize,
    span: usize,
    parent: Option<usize>,
    service: Option<usize>,
    pod: Option<usize>,
    operation: usize,
    start: (usize, i64),
    end: Option<(usize, i64)>,
    duration: Option<(usize, i64)>,
    kind: Option<usize>,
    error: Option<usize>,
    width: usize,
}

impl Columns {
    fn from_header(header: &csv::ByteRecord) -> Result<Columns, String> {
        let names = HeaderNames::new(
            header
                .iter()
                .map(|c| {
                    let name = String::from_utf8_lossy(c);
                    name.trim().trim_matches('"').trim_start_matches('\u{feff}').to_ascii_lowercase()
                })
                .collect(),
        );
        let find = |alts: &[&str]| names.find(alts);
        let need = |alts: &[&str]| names.need(alts);
        let timed = |alts: &[&str], default: i64| find(alts).map(|i| (i, unit_ns(names.name(i), default)));
        let service = find(&["servicename", "service", "service_name"]);
        let pod = find(&["podname", "pod", "pod_name"]);
        if service.is_none() && pod.is_none() {
            return Err(format!("the header has no `ServiceName` or `PodName` column (it has: {})", names.listing()));
        }
        let start = timed(
            &["starttimeunixnano", "starttime", "start_time", "start_time_unix_nano", "start", "timestamp"],
            1_000,
        )
        .ok_or_else(|| need(&["StartTimeUnixNano"]).unwrap_err())?;
        let end = timed(&["endtimeunixnano", "endtime", "end_time", "end_time_unix_nano", "end"], 1_000);
        let duration = timed(&["duration", "duration_us", "duration_ns", "duration_ms"], 1_000);
        if end.is_none() && duration.is_none() {
            return Err("the header has neither an `EndTimeUnixNano` nor a `Duration` column".into());
        }
        Ok(Columns {
            trace: need(&["traceid", "trace_id"])?,
            span: need(&["spanid", "span_id"])?,
            parent: find(&["parentid", "parent_id", "parentspanid", "parent_span_id"]),
            service,
            pod,
            operation: need(&["operationname", "operation", "operation_name", "name", "spanname", "span_name"])?,
            start,
            end,
            duration,
            kind: find(&["kind", "spankind", "span_kind"]),
            error: find(&["error", "statuscode", "status_code", "status"]),
            width: names.len(),
        })
    }
}

/// `ts-gateway-service-6f6cfc45b-h5m2n` → `ts-gateway-service`: strips a
/// Deployment pod's replica-set hash and pod suffix, and nothing else.
pub fn service_of_pod(pod: &str) -> &str {
    let mut parts = pod.rsplitn(3, '-');
    let (Some(suffix), Some(hash), Some(base)) = (parts.next(), parts.next(), parts.next()) else {
        return pod;
    };
    let alnum = |s: &str| s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let digit = |s: &str| s.bytes().any(|b| b.is_ascii_digit());
    if suffix.len() == 5
        && (6..=10).contains(&hash.len())
        && alnum(suffix)
        && alnum(hash)
        && (digit(suffix) || digit(hash))
        && !base.is_empty()
    {
        base
    } else {
        pod
    }
}

fn parse_i64(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>().ok().or_else(|| s.parse::<f64>().ok().filter(|v| v.is_finite()).map(|v| v.round() as i64))
}

fn is_no_parent(s: &str) -> bool {
    matches!(s.trim(), "" | "root" | "0" | "null" | "none" | "None" | "NULL" | "0000000000000000")
}

fn is_error_value(s: &str) -> bool {
    matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "1" | "error" | "2" | "status_code_error")
}

/// The input as the CSV parser reads it, cut off where a row would pass the
/// record limit (the parser would otherwise gather a row without end).
struct RowLimited<'c, R> {
    inner: R,
    read: u64,
    /// Where the row being read begins, and how far past it reading may go.
    row_start: &'c Cell<u64>,
    limit: u64,
    too_long: &'c Cell<bool>,
}

/// The CSV parser's buffer: it reads ahead of the row it is on by at most that.
const CSV_READ_AHEAD: u64 = 64 * 1024;

impl<R: Read> Read for RowLimited<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let room =
            self.row_start.get().saturating_add(self.limit).saturating_add(CSV_READ_AHEAD).saturating_sub(self.read);
        if room == 0 {
            self.too_long.set(true);
            return Err(std::io::Error::other("record limit reached"));
        }
        let take = out.len().min(room.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut out[..take])?;
        self.read += n as u64;
        Ok(n)
    }
}

pub fn read(reader: Box<dyn BufRead + Send + '_>, ing: &mut Ingest) -> Result<(), Error> {
    let (row_start, row_start_line, too_long) = (Cell::new(0), Cell::new(1), Cell::new(false));
    let limited =
        RowLimited { inner: reader, read: 0, row_start: &row_start, limit: ing.record_limit, too_long: &too_long };
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(CSV_READ_AHEAD as usize)
        .from_reader(limited);
    let mut record = csv::StringRecord::new();
    let csv_error = |ing: &Ingest, e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(_) if too_long.get() => ing.bad_data(row_start_line.get(), row_too_long(ing.record_limit)),
        csv::ErrorKind::Io(io) => crate::input::read_error(ing.path(), io),
        csv::ErrorKind::Utf8 { pos, err } => {
            ing.bad_data(pos.map_or(0, |p| p.line()), format!("not valid UTF-8 text ({err})"))
        }
        other => ing.bad_data(0, format!("{other:?}")),
    };
    if !csv.read_record(&mut record).map_err(|e| csv_error(ing, e))? {
        return Err(ing.bad_data(1, "the file is empty"));
    }
    let cols = Columns::from_header(record.as_byte_record()).map_err(|m| ing.bad_data(1, m))?;
    let unknown = ing.names.intern("unknown");
    loop {
        row_start.set(csv.position().byte());
        row_start_line.set(csv.position().line());
        match csv.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            // A row that is not UTF-8 is a bad record: the reader has moved
            // past it, so the policy may skip it.
            Err(e) if matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) => {
                let csv::ErrorKind::Utf8 { pos, err } = e.kind() else { unreachable!("matched above") };
                let line = pos.as_ref().map_or(0, |p| p.line());
                ing.saw_records(1);
                ing.bad_record(line, format!("not valid UTF-8 text ({err})"))?;
                continue;
            }
            Err(e) => return Err(csv_error(ing, e)),
        }
        read_row(ing, &cols, &record, unknown)?;
    }
    Ok(())
}

/// Pushes the span of one row, or reports why the row is bad.
fn read_row(ing: &mut Ingest, cols: &Columns, record: &csv::StringRecord, unknown: Sym) -> Result<(), Error> {
    let line = record.position().map_or(0, |p| p.line());
    ing.saw_records(1);
    if record.len() < cols.width {
        if record.len() == 1 && record[0].trim().is_empty() {
            return Ok(());
        }
        let got = record.len();
        return ing.bad_record(line, format!("{got} fields where the header has {}", cols.width));
    }
    let f = |i: usize| record[i].trim();
    let (trace_id, span_id, parent_id) = match row_ids(cols, f) {
        Ok(ids) => ids,
        Err(why) => return ing.bad_record(line, why),
    };
    let (start_ns, duration_ns) = match row_times(cols, f) {
        Ok(times) => times,
        Err(why) => return ing.bad_record(line, why),
    };
    let service_text = match (cols.service, cols.pod) {
        (Some(s), _) if !f(s).is_empty() => f(s),
        (_, Some(p)) => service_of_pod(f(p)),
        (Some(s), None) => f(s),
        (None, None) => unreachable!("checked by the header"),
    };
    let service = if service_text.is_empty() {
        ing.defect(DefectKind::MissingService, line, || "empty service name".into())?;
        unknown
    } else {
        ing.names.intern(service_text)
    };
    let operation = ing.names.intern(f(cols.operation));
    let kind = cols.kind.map_or(SpanKind::Unknown, |k| SpanKind::parse(f(k)));
    let error = cols.error.is_some_and(|e| is_error_value(f(e)));
    ing.push(Span {
        trace_id,
        span_id,
        parent_id,
        service,
        operation,
        kind,
        flags: if error { flags::ERROR } else { 0 },
        start_ns,
        duration_ns,
        origin: ing.origin(line),
        ..Span::default()
    })
}

/// A row's trace, span and parent ids, or why they are unreadable.
fn row_ids<'r>(cols: &Columns, f: impl Fn(usize) -> &'r str) -> Result<(TraceId, SpanId, SpanId), String> {
    let Some(trace_id) = TraceId::from_hex(f(cols.trace)) else {
        return Err(format!("TraceID `{}` is not hex", truncate(f(cols.trace), 40)));
    };
    let Some(span_id) = SpanId::from_hex(f(cols.span)) else {
        return Err(format!("SpanID `{}` is not hex", truncate(f(cols.span), 40)));
    };
    let parent_id = match cols.parent.map(&f) {
        None => SpanId(0),
        Some(p) if is_no_parent(p) => SpanId(0),
        Some(p) => match SpanId::from_hex(p) {
            Some(id) => id,
            None => return Err(format!("ParentID `{}` is neither hex nor `root`", truncate(p, 40))),
        },
    };
    Ok((trace_id, span_id, parent_id))
}

/// A row's start and duration in nanoseconds (the duration from the end time
/// when it is readable, else from the duration column), or why they are not.
fn row_times<'r>(cols: &Columns, f: impl Fn(usize) -> &'r str) -> Result<(i64, i64), String> {
    let Some(start) = parse_i64(f(cols.start.0)) else {
        return Err(format!("start time `{}` is not a number", truncate(f(cols.start.0), 40)));
    };
    let start_ns = start.saturating_mul(cols.start.1);
    let duration_ns = match (cols.end, cols.duration) {
        (Some((e, unit)), _) if parse_i64(f(e)).is_some() => {
            parse_i64(f(e)).expect("checked").saturating_mul(unit).saturating_sub(start_ns)
        }
        (_, Some((d, unit))) if parse_i64(f(d)).is_some() => parse_i64(f(d)).expect("checked").saturating_mul(unit),
        _ => return Err("end time and duration are not numbers".into()),
    };
    Ok((start_ns, duration_ns))
}

#[cfg(test)]
mod tests {
    use super::service_of_pod;

    #[test]
    fn pod_names_lose_their_suffixes() {
        assert_eq!(service_of_pod("ts-gateway-service-6f6cfc45b-h5m2n"), "ts-gateway-service");
        assert_eq!(service_of_pod("frontend-579b9bff58-t2dbm"), "frontend");
        assert_eq!(service_of_pod("frontend"), "frontend");
        assert_eq!(service_of_pod("cart-service-api"), "cart-service-api");
        assert_eq!(service_of_pod("redis-cart-0"), "redis-cart-0");
    }
}
