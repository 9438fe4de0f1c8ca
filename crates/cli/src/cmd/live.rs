//! One live run of `palette run`: start a generated system as supervised
//! local processes, load it open loop, stop it, and keep its load report
//! and spans.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use palette_load::{Arrivals, LoadOptions, LoadReport, ProfileSpec, Target, TracedRoots, run_load_blocking};
use palette_system::SupervisorError;
use palette_system::up::{self, LocalSystem, Signals, UpOptions};

use crate::cmd;
use crate::cmd::run::Args;

/// What one live system did.
pub struct LiveRun {
    pub kind: String,
    /// Which repetition this was (1-based).
    pub run: usize,
    pub spans: PathBuf,
    /// Where its load report was written.
    pub load_file: PathBuf,
    pub load: LoadReport,
    /// Services restarted by the supervisor during the run (crashes).
    pub restarts: u64,
    /// Why the host was busy during the run, if it was (the load
    /// generator's and the services' own lateness).
    pub host_busy: Option<String>,
    /// A signal ended its load before the planned duration.
    pub stopped_early: bool,
}

/// Starts one generated system, loads it, stops it, and keeps its spans.
/// A signal ends the load early; what it measured is kept all the same.
pub fn run_live(
    kind: &str,
    run: usize,
    system_dir: &Path,
    dir: &Path,
    args: &Args,
    (profile, roots): (Option<&ProfileSpec>, Option<&TracedRoots>),
    signals: &Signals,
) -> anyhow::Result<LiveRun> {
    let system = LocalSystem::load(&system_dir.join("system.json"))?;
    let produced = system.spans_file().context("the generated system writes no span file (tracing.file is null)")?;
    // Each run starts from an empty span file: one file, one run.
    match std::fs::remove_file(&produced) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", produced.display()));
        }
        _ => {}
    }
    let mut opts = UpOptions::new(std::env::current_exe()?);
    opts.packed = args.packed;
    let supervisor = up::start(&system, &opts).map_err(|e| match e {
        // The user runs this command, not `generate`: say what to pass it.
        SupervisorError::PortTaken { service, addr, error } => anyhow::anyhow!(
            "port {} of service `{service}` is taken ({error}); stop what listens on {addr}, or pass another --base-port to `{}`",
            addr.port(),
            signals.program()
        ),
        e => e.into(),
    })?;
    if let Err(e) = supervisor.wait_healthy_unless(opts.health_timeout, || signals.received().is_some()) {
        supervisor.stop();
        return match e {
            SupervisorError::Interrupted => {
                Err(cmd::Interrupted { signal: signals.wait(), kept: String::new() }.into())
            }
            e => Err(e.into()),
        };
    }
    let arrivals = match profile {
        Some(p) => Some(cmd::load::profile_arrivals(
            p,
            Duration::from_nanos(args.duration as u64),
            &system.config.model,
            roots,
        )?),
        None => None,
    };
    let load_opts = load_options(args, arrivals, run);
    let observer = cmd::load::Bar::new(signals.stop_flag());
    let report = run_load_blocking(&load_opts, &system.config, &system_dir.join("system.json"), &observer);
    observer.finish();
    // Stopping drains the services and flushes their spans.
    let stopped = supervisor.stop();
    let report = report?;
    eprint!("{}", report.to_text());
    let name = |what: &str, ext: &str| {
        if args.repeat > 1 { format!("{what}-{kind}-{run}.{ext}") } else { format!("{what}-{kind}.{ext}") }
    };
    let load_file = dir.join(name("load", "json"));
    std::fs::write(&load_file, serde_json::to_string_pretty(&report)? + "\n")?;
    let spans = dir.join(name("spans", "jsonl"));
    std::fs::copy(&produced, &spans).with_context(|| format!("cannot copy {}", produced.display()))?;
    let host_busy = report.contention.host_busy();
    let stopped_early = signals.received().is_some();
    Ok(LiveRun {
        kind: kind.to_string(),
        run,
        spans,
        load_file,
        load: report,
        restarts: stopped.restarts,
        host_busy,
        stopped_early,
    })
}

/// The load of repetition `run` (Poisson at --rate unless `arrivals` are given).
pub fn load_options(args: &Args, arrivals: Option<Arrivals>, run: usize) -> LoadOptions {
    LoadOptions {
        arrivals: arrivals.unwrap_or(Arrivals::Poisson { rate: args.rate }),
        duration: Duration::from_nanos(args.duration.max(0) as u64),
        warmup: Duration::from_nanos(args.warmup.max(0) as u64),
        seed: load_seed(args.seed, run),
        target: Target::Host("127.0.0.1".into()),
        window: args.window.map(|w| Duration::from_nanos(w.max(0) as u64)),
        ..LoadOptions::default()
    }
}

/// The load's seed in repetition `run` (1-based) of a run seeded `seed`.
/// Each repetition draws its own requests (the kinds of one run share them):
/// pooled runs that replayed one sequence of root APIs would be one sample
/// counted N times, judged against a floor N times too tight. Run 1 keeps
/// the seed itself, so `--repeat 1` sends what `palette load --seed` does.
fn load_seed(seed: u64, run: usize) -> u64 {
    seed ^ (run as u64 - 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
