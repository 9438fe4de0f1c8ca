pub mod bench;
pub mod compare;
pub mod demo;
pub mod edit;
pub mod example;
pub mod fit;
pub mod generate;
pub mod health;
pub mod image;
pub mod inspect;
pub mod live;
pub mod load;
pub mod merge;
pub mod read;
pub mod run;
pub mod serve;
pub mod show;
pub mod simulate;
pub mod up;

use std::fmt;

/// Parses a verb's arguments as its command line would, so pipelines
/// (`demo`, `run`) run the same verbs a user runs by hand.
pub fn verb<A: clap::Args>(argv: &[&str]) -> anyhow::Result<A> {
    #[derive(clap::Parser)]
    #[command(no_binary_name = true)]
    struct Verb<A: clap::Args> {
        #[command(flatten)]
        args: A,
    }
    use anyhow::Context as _;
    use clap::Parser as _;
    Ok(Verb::<A>::try_parse_from(argv).with_context(|| format!("pipeline step {argv:?}"))?.args)
}

/// Writes a verb's report to stdout. A reader that went away (`| head`)
/// is not an error: the rest of the report is simply not wanted.
pub fn print_out(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// A usage error found after argument parsing (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

impl palette_trace::failure::Classify for UsageError {
    fn failure_kind(&self) -> palette_trace::failure::FailureKind {
        palette_trace::failure::FailureKind::Usage
    }
}

/// A command stopped by SIGINT or SIGTERM after stopping what it started:
/// the process exits 130 or 143, with `kept` saying what is left on disk.
#[derive(Debug)]
pub struct Interrupted {
    /// The signal's name, which decides the exit code.
    pub signal: &'static str,
    /// What was kept or removed, in words (empty: nothing to say).
    pub kept: String,
}

impl Interrupted {
    /// The exit code: 128 + the signal's number.
    pub fn exit_code(&self) -> u8 {
        palette_system::up::exit_code(self.signal)
    }
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "interrupted ({})", self.signal)?;
        if !self.kept.is_empty() {
            write!(f, "; {}", self.kept)?;
        }
        Ok(())
    }
}

impl std::error::Error for Interrupted {}

/// Parses `250ms`, `60s`, `2m`, `1h`, `1.5s` or a bare number of seconds.
pub fn parse_duration_ns(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{s}` is not a duration like 500ms, 60s or 2m"))?;
    let scale = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "" | "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        other => {
            return Err(format!("unknown time unit `{other}` in `{s}` (use ns, us, ms, s, m or h)"));
        }
    };
    Ok((value * scale).round() as i64)
}

/// Now as `2026-12-02T15:04:05Z` (UTC), for report metadata.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    utc(secs)
}

/// Unix seconds as an RFC 3339 UTC time (the civil-from-days algorithm).
fn utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `1234567` → `1,234,567`: the report crate's, so every table reads alike.
pub use palette_report::text::thousands;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_numbers() {
        assert_eq!(parse_duration_ns("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration_ns("2m"), Ok(120_000_000_000));
        assert_eq!(parse_duration_ns("1.5"), Ok(1_500_000_000));
        assert!(parse_duration_ns("soon").is_err());
        assert!(parse_duration_ns("5 parsecs").is_err());
        assert_eq!(thousands(4890), "4,890");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_825_600), "2000-02-29T12:00:00Z");
        assert_eq!(utc(1_795_186_800), "2026-11-20T15:00:00Z");
    }
}
