//! `palette edit`: apply interventions to a model, writing a new one (the
//! input is never modified). Also the `--apply FILE` loader that `fit` and
//! `generate` share.

use std::path::{Path, PathBuf};

use palette_model::Model;
use palette_model::intervene::{self, Entry, Intervention, InterventionError};

use crate::cmd::UsageError;
use crate::cmd::fit::write_file;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    palette edit model.json --apply whatif.yaml -o edited.json\n  \
    palette edit model.json --remove-service emailservice --keep-latency -o no-email.json\n  \
    palette edit model.json --downscale 20 -o small.json\n  \
    palette edit model.json --delay cartservice=245ms --work cpu -o slow-cart.json\n  \
    palette edit model.json --timeout frontend:cartservice=50ms --retry cartservice=3/10ms -o storm.json\n  \
    palette show --diff model.json edited.json\n\
    See docs/interventions.md for every intervention.")]
pub struct Args {
    /// A model written by `palette fit`, `merge` or `edit`.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Where to write the edited model (never the input).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// An intervention file: a YAML list, applied in order (repeatable; files first, then the flags below).
    #[arg(long, value_name = "FILE")]
    pub apply: Vec<PathBuf>,
    /// Remove a service (repeatable).
    #[arg(long, value_name = "SERVICE")]
    pub remove_service: Vec<String>,
    /// Remove an API, `service operation` (repeatable).
    #[arg(long, value_name = "API")]
    pub remove_api: Vec<String>,
    /// With --remove-service/--remove-api: fold the removed calls' latency into their callers' work.
    #[arg(long)]
    pub keep_latency: bool,
    /// Keep only this many services (the root services and the busiest they call).
    #[arg(long, value_name = "N")]
    pub downscale: Option<usize>,
    /// Add a fixed delay to every call into a service: `SERVICE=DURATION` (e.g. `cart=245ms`; repeatable).
    #[arg(long, value_name = "SERVICE=DURATION")]
    pub delay: Vec<String>,
    /// Scale a service's local work: `SERVICE=FACTOR` (repeatable).
    #[arg(long, value_name = "SERVICE=FACTOR")]
    pub scale_latency: Vec<String>,
    /// How the generated system produces local work: sleep, cpu or memory (recorded for generate).
    #[arg(long, value_name = "MODE")]
    pub work: Option<String>,
    /// A caller's timeout on calls to a service: `[CALLER:]CALLEE=DURATION` (e.g. `frontend:cart=100ms`; repeatable).
    #[arg(long, value_name = "[CALLER:]CALLEE=DURATION")]
    pub timeout: Vec<String>,
    /// Retry failed calls to a service: `CALLEE=ATTEMPTS[/BACKOFF]` (e.g. `cart=3/10ms`: three tries in all; repeatable).
    #[arg(long, value_name = "CALLEE=ATTEMPTS[/BACKOFF]")]
    pub retry: Vec<String>,
    /// A circuit breaker on calls to a service: `CALLEE=FAILURES/OPEN` (e.g. `cart=5/1s`; repeatable).
    #[arg(long, value_name = "CALLEE=FAILURES/OPEN")]
    pub circuit_breaker: Vec<String>,
    /// An API's own failure probability: `SERVICE OPERATION=P` (e.g. `"cart GetCart=0.05"`; repeatable).
    #[arg(long, value_name = "API=P")]
    pub error_rate: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if same_file(&args.model, &args.output) {
        anyhow::bail!(UsageError(format!(
            "-o {} is the input model: edit never modifies its input; write to another file",
            args.output.display()
        )));
    }
    let model = crate::cmd::show::load(&args.model)?;
    let mut entries = Vec::new();
    for f in &args.apply {
        entries.extend(load_entries(f, entries.len())?);
    }
    entries.extend(flag_entries(&args, entries.len())?);
    if entries.is_empty() {
        anyhow::bail!(UsageError("nothing to do: give --apply FILE or an intervention flag (see --help)".into()));
    }
    let source = if args.apply.len() == 1 { args.apply[0].clone() } else { PathBuf::from("the interventions") };
    let edited = intervene::apply(&model, &entries).map_err(|e| classify(e, &source))?;
    write_file(&args.output, &edited.to_json())?;
    eprintln!(
        "applied {} intervention{}: {} → {} services, {} → {} APIs, {} → {} edges; wrote {}",
        entries.len(),
        if entries.len() == 1 { "" } else { "s" },
        model.services.len(),
        edited.services.len(),
        model.apis.len(),
        edited.apis.len(),
        model.edges.len(),
        edited.edges.len(),
        args.output.display()
    );
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Reads an intervention file; errors name the file and line (exit 65 for
/// a malformed file, 2 for a missing one).
pub fn load_entries(path: &Path, first_index: usize) -> anyhow::Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::Error::new(UsageError(format!("{}: no such file", path.display()))),
        std::io::ErrorKind::InvalidData => palette_model::file::FileError::BadData {
            path: path.to_path_buf(),
            line: 0,
            message: "not an intervention file: the file is not UTF-8 text".into(),
        }
        .into(),
        _ => anyhow::Error::new(e).context(format!("cannot read {}", path.display())),
    })?;
    let mut entries = intervene::parse(&text).map_err(|e| classify(e, path))?;
    for e in &mut entries {
        e.index += first_index;
    }
    Ok(entries)
}

/// Applies intervention files to a model after it was built (filters were
/// used by the fit, if any); for `fit --apply` and `generate --apply`.
pub fn apply_files(model: Model, files: &[PathBuf], entries: &[Entry]) -> anyhow::Result<Model> {
    let source = files.first().cloned().unwrap_or_default();
    intervene::apply_after_fit(model, entries).map_err(|e| classify(e, &source))
}

/// Bad files are bad data (65) with the file and line; requests that do
/// not fit the model are usage errors (2).
pub fn classify(e: InterventionError, path: &Path) -> anyhow::Error {
    if e.is_bad_data() {
        palette_model::file::FileError::BadData { path: path.to_path_buf(), line: e.line(), message: without_line(&e) }
            .into()
    } else {
        UsageError(format!("{}: {e}", path.display())).into()
    }
}

/// The message without its "line N: " prefix (BadData prints the line itself).
fn without_line(e: &InterventionError) -> String {
    let s = e.to_string();
    match s.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
        Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => rest.to_string(),
        _ => s,
    }
}

fn flag_entries(args: &Args, first: usize) -> anyhow::Result<Vec<Entry>> {
    use palette_model::intervene::{delay, downscale, record, remove, resilience, scale};
    let mut out = Vec::new();
    let mut push = |i: Intervention| out.push(Entry::from_flag(first + out.len(), i));
    for s in &args.remove_service {
        push(Intervention::Remove(remove::RemoveSpec {
            service: Some(s.clone()),
            api: None,
            edge: None,
            keep_latency: args.keep_latency,
        }));
    }
    for a in &args.remove_api {
        push(Intervention::Remove(remove::RemoveSpec {
            service: None,
            api: Some(a.clone()),
            edge: None,
            keep_latency: args.keep_latency,
        }));
    }
    if let Some(n) = args.downscale {
        push(Intervention::Downscale(downscale::DownscaleSpec { services: n }));
    }
    for d in &args.delay {
        let (into, dur) = d
            .split_once('=')
            .ok_or_else(|| UsageError(format!("--delay {d}: write SERVICE=DURATION, e.g. cart=245ms")))?;
        let ns = crate::cmd::parse_duration_ns(dur).map_err(|e| UsageError(format!("--delay {d}: {e}")))?;
        push(Intervention::Delay(delay::DelaySpec::fixed(into, ns as f64 / 1e6)));
    }
    for s in &args.scale_latency {
        let (service, factor) = s
            .split_once('=')
            .and_then(|(s, f)| Some((s, f.parse::<f64>().ok()?)))
            .ok_or_else(|| UsageError(format!("--scale-latency {s}: write SERVICE=FACTOR, e.g. frontend=0.5")))?;
        push(Intervention::ScaleLatency(scale::ScaleLatencySpec { service: Some(service.into()), api: None, factor }));
    }
    let ms = |flag: &str, v: &str, d: &str| -> anyhow::Result<f64> {
        let ns = crate::cmd::parse_duration_ns(d).map_err(|e| UsageError(format!("--{flag} {v}: {e}")))?;
        Ok(ns as f64 / 1e6)
    };
    for t in &args.timeout {
        let bad = || UsageError(format!("--timeout {t}: write [CALLER:]CALLEE=DURATION, e.g. frontend:cart=100ms"));
        let (pair, dur) = t.rsplit_once('=').ok_or_else(bad)?;
        let (caller, callee) = match pair.split_once(':') {
            Some((c, e)) => (Some(c.to_string()), e.to_string()),
            None => (None, pair.to_string()),
        };
        push(Intervention::Timeout(resilience::TimeoutSpec { caller, callee, ms: ms("timeout", t, dur)? }));
    }
    for r in &args.retry {
        let bad = || UsageError(format!("--retry {r}: write CALLEE=ATTEMPTS[/BACKOFF], e.g. cart=3/10ms"));
        let (callee, rest) = r.rsplit_once('=').ok_or_else(bad)?;
        let (attempts, backoff) = rest.split_once('/').map_or((rest, None), |(a, b)| (a, Some(b)));
        let attempts: u32 = attempts.parse().map_err(|_| bad())?;
        let backoff_ms = match backoff {
            Some(b) => ms("retry", r, b)?,
            None => 0.0,
        };
        push(Intervention::Retry(resilience::RetrySpec { callee: callee.into(), attempts, backoff_ms, on: vec![] }));
    }
    for b in &args.circuit_breaker {
        let bad = || UsageError(format!("--circuit-breaker {b}: write CALLEE=FAILURES/OPEN, e.g. cart=5/1s"));
        let (callee, rest) = b.rsplit_once('=').ok_or_else(bad)?;
        let (failures, open) = rest.split_once('/').ok_or_else(bad)?;
        let failures: u32 = failures.parse().map_err(|_| bad())?;
        push(Intervention::CircuitBreaker(resilience::BreakerSpec {
            callee: callee.into(),
            failures,
            open_ms: ms("circuit-breaker", b, open)?,
        }));
    }
    for e in &args.error_rate {
        let bad = || UsageError(format!("--error-rate {e}: write \"SERVICE OPERATION=P\", e.g. \"cart GetCart=0.05\""));
        let (api, p) = e.rsplit_once('=').ok_or_else(bad)?;
        let probability: f64 = p.parse().map_err(|_| bad())?;
        push(Intervention::ErrorRate(resilience::ErrorRateSpec { api: api.into(), probability }));
    }
    if let Some(w) = &args.work {
        let mode = palette_model::WorkMode::from_name(w)
            .ok_or_else(|| UsageError(format!("--work {w}: use sleep, cpu or memory")))?;
        push(Intervention::Work(record::WorkSpec { mode, service: None, api: None }));
    }
    Ok(out)
}
