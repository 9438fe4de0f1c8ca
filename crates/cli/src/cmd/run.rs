//! `palette run`: the main job, end to end — traces → model → generated
//! system → running services under load → the system's own spans →
//! fidelity report against the input.
//!
//! Each model kind (Palette's, and the naive baseline beside it) gets its own
//! generated system, started as supervised local processes, loaded
//! open-loop, and stopped (which flushes its spans); then one comparison of
//! the input with every live system's spans writes the HTML report. The
//! steps are the verbs a user would run by hand, so the directory holds the
//! same files they would: models, systems, live spans, logs and the report.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use palette_load::{LoadOptions, ProfileSpec};
use palette_system::up::Signals;

pub use crate::cmd::live::LiveRun;
use crate::cmd::live::{load_options, run_live};
use crate::cmd::{self, UsageError, parse_duration_ns, thousands, verb};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    palette run traces.csv -o run/ --rate 20 --duration 60s\n  \
    palette run jaeger-export.json -o run/ --kind palette --work cpu\n  \
    palette run traces.jsonl -o run/ --rpc grpc --apply what-if.yaml\n  \
    palette run traces.csv -o run/ --profile sine:period=60s,min=5,max=40 --duration 60s\n  \
    palette run traces.csv -o run/ --profile learned:speed=4   # the traces' own rate curve, 4x faster\n\n\
    DIR gets: model-KIND.json, system-KIND/ (with its spans.jsonl and logs/), \
    spans-KIND-R.jsonl (the live system's spans in run R), load-KIND-R.json, report/index.html \
    (with --repeat 1: spans-KIND.jsonl and load-KIND.json).")]
pub struct Args {
    /// Traces to learn from (any format palette reads; files or directories).
    #[arg(value_name = "TRACES", required = true)]
    pub inputs: Vec<PathBuf>,
    /// Directory for everything the run writes (created; must be empty unless --force).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// Poisson arrivals at this many requests per second over the root APIs.
    #[arg(long, value_name = "R/s", default_value_t = 20.0)]
    pub rate: f64,
    #[arg(
        long,
        value_name = "SPEC",
        conflicts_with = "rate",
        help = cmd::load::PROFILE_SHORT,
        long_help = cmd::load::PROFILE_HELP
    )]
    pub profile: Option<String>,
    /// Width of the load report's windows (`5s`): per-window target,
    /// achieved rate and latency. Default: 5s with --profile, else ~30 windows.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ns)]
    pub window: Option<i64>,
    /// The measured load window.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration_ns)]
    pub duration: i64,
    /// Load before the window, not measured (connections open, queues settle).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration_ns)]
    pub warmup: i64,
    /// Which models to run live: both (Palette's and the naive baseline, compared side by side), or one.
    #[arg(long, value_parser = ["both", "palette", "naive"], default_value = "both")]
    pub kind: String,
    /// How services spend their sampled local work.
    #[arg(long, value_parser = ["sleep", "cpu", "memory"], default_value = "sleep")]
    pub work: String,
    /// Serve every service of a system from one process.
    #[arg(long)]
    pub packed: bool,
    /// An intervention file applied to every fitted model before its system
    /// is generated, as `palette fit --apply` does (repeatable; see docs/interventions.md).
    #[arg(long, value_name = "FILE")]
    pub apply: Vec<PathBuf>,
    /// How the generated services call each other: HTTP/1.1 or gRPC
    /// (default: what the model records, else http). Same as applying `- rpc: X` last.
    #[arg(long, value_parser = ["http", "grpc"])]
    pub rpc: Option<String>,
    /// The first service's port.
    #[arg(long, value_name = "PORT", default_value_t = 7000)]
    pub base_port: u16,
    /// Seeds the services' choices and the load: same seed, same requests
    /// (each of --repeat's runs draws its own, derived from the seed).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write into a non-empty DIR (files of a previous run are replaced).
    #[arg(long)]
    pub force: bool,
    /// Run each live system this many times, each on fresh processes
    /// (the kinds interleaved); the report judges the runs pooled, against
    /// the noise floor at the pooled size, and shows each figure's range
    /// over the runs. The default 3 keeps the verdict from flipping between
    /// invocations.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub repeat: usize,
}

/// What a whole run wrote.
pub struct RunSummary {
    pub live: Vec<LiveRun>,
    pub report: PathBuf,
    /// One verdict line per candidate, as the report gives them.
    pub verdicts: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let signals = Signals::install("palette run", STOPPING)?;
    let summary = run_pipeline(&args, &signals)?;
    println!();
    for live in &summary.live {
        let t = &live.load.total;
        let p = |q: fn(&palette_load::Latency) -> f64| t.latency.as_ref().map_or(f64::NAN, q);
        println!(
            "{:8} live: {} requests, {} errors, {:.1} req/s, p50 {:.1} ms, p99 {:.1} ms; {} restart{}; spans {}",
            live.kind,
            thousands(t.requests),
            thousands(t.errors),
            t.achieved_rate,
            p(|l| l.p50_ms),
            p(|l| l.p99_ms),
            live.restarts,
            if live.restarts == 1 { "" } else { "s" },
            live.spans.display()
        );
    }
    for live in &summary.live {
        if let Some(d) = &live.load.rate_deviation {
            println!(
                "{:8} run {}: worst window {:+.1}% from the profile (at {:.0}s: target {:.1}/s, achieved {:.1}/s)",
                live.kind,
                live.run,
                d.relative * 100.0,
                d.start_s,
                d.target_rate,
                d.achieved_rate
            );
        }
    }
    println!("report: {}", summary.report.display());
    for v in &summary.verdicts {
        println!("verdict: {v}");
    }
    Ok(())
}

/// What the first SIGINT or SIGTERM says (the second quits at once).
pub const STOPPING: &str = "stopping the systems after the current step, keeping what was measured";

/// The whole pipeline; `palette demo` runs it on the built-in examples.
/// `signals` (installed before anything starts) stop it between steps and
/// end a load early; the command it is part of is `signals.program()`.
///
/// A run that fails or is stopped before anything was measured removes the
/// directory it created, so that the same command can simply be run again;
/// one that measured something keeps it, and says so.
pub fn run_pipeline(args: &Args, signals: &Signals) -> anyhow::Result<RunSummary> {
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        anyhow::bail!(UsageError(format!(
            "--rate must be a positive number of requests per second, not {}",
            args.rate
        )));
    }
    if args.duration <= 0 {
        anyhow::bail!(UsageError("--duration must be longer than 0".into()));
    }
    // Checked before anything starts, so a typo costs no fit.
    if let Some(spec) = &args.profile {
        ProfileSpec::parse(spec)?;
    }
    if let Some(w) = args.window {
        LoadOptions { window: Some(Duration::from_nanos(w.max(0) as u64)), ..load_options(args, None, 1) }
            .validate()?;
    }
    if !(1..=100).contains(&args.repeat) {
        anyhow::bail!(UsageError(format!("--repeat must be between 1 and 100, not {}", args.repeat)));
    }
    // Checked before DIR is created, so a mistyped input leaves nothing behind.
    if let Some(missing) = args.inputs.iter().chain(&args.apply).find(|p| !p.exists()) {
        anyhow::bail!(UsageError(format!("{}: no such file or directory", missing.display())));
    }
    let dir = &args.output;
    let ours = is_new_or_empty(dir);
    prepare_dir(dir, args.force)?;
    let mut live = Vec::new();
    match pipeline(args, signals, &mut live) {
        Ok(summary) => Ok(summary),
        Err(e) => Err(leave_behind(e, dir, ours, &live, signals.program())),
    }
}

/// Whether DIR is absent or empty: the run may remove it again.
fn is_new_or_empty(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(_) => !dir.exists(),
    }
}

/// What a failed or stopped run leaves, said once: nothing measured in a
/// directory it made → the directory goes; else what is kept stays.
fn leave_behind(e: anyhow::Error, dir: &Path, ours: bool, live: &[LiveRun], program: &str) -> anyhow::Error {
    let kept = if live.is_empty() && ours {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => format!("removed {} (nothing was measured)", dir.display()),
            Err(err) => format!("nothing was measured; could not remove {}: {err}", dir.display()),
        }
    } else if live.is_empty() {
        format!(
            "nothing was measured; {} held files before this run, so it is left as it is (pass --force to {program} again)",
            dir.display()
        )
    } else {
        let files: Vec<String> = live
            .iter()
            .flat_map(|l| [l.load_file.clone(), l.spans.clone()])
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        let stopped_early = if live.iter().any(|l| l.stopped_early) { ", the last stopped early" } else { "" };
        format!(
            "kept {}: {} measured run(s){stopped_early} ({}); no report was written",
            dir.display(),
            live.len(),
            files.join(", ")
        )
    };
    match e.downcast::<cmd::Interrupted>() {
        Ok(mut stopped) => {
            stopped.kept = kept;
            stopped.into()
        }
        Err(e) => {
            eprintln!("{program}: {kept}");
            e
        }
    }
}

/// Stops the pipeline at a step boundary once a signal arrived.
fn check(signals: &Signals) -> anyhow::Result<()> {
    match signals.received() {
        Some(signal) => Err(cmd::Interrupted { signal, kept: String::new() }.into()),
        None => Ok(()),
    }
}

fn pipeline(args: &Args, signals: &Signals, live: &mut Vec<LiveRun>) -> anyhow::Result<RunSummary> {
    let started_all = Instant::now();
    let kinds: Vec<&str> = match args.kind.as_str() {
        "both" => vec!["palette", "naive"],
        one => vec![one],
    };
    let mut steps = Steps { signals, done: 0, total: kinds.len() * (1 + args.repeat) + 1 };
    let inputs: Vec<&str> = args.inputs.iter().map(|p| s(p)).collect::<anyhow::Result<_>>()?;
    // A learned profile's curve is the input traces' own: their root spans
    // are read once, and matched to each system's root APIs.
    let profile = args.profile.as_deref().map(ProfileSpec::parse).transpose()?;
    let roots = match &profile {
        Some(p) if p.needs_traces() => Some(cmd::load::read_roots(&args.inputs)?),
        _ => None,
    };
    let (systems, input_warnings) = fit_and_generate(args, &inputs, &kinds, &mut steps)?;
    // The kinds take turns, so a change in the host's load over the runs
    // falls on each of them alike.
    for run in 1..=args.repeat {
        for (kind, system) in &systems {
            let of = if args.repeat > 1 { format!(" (run {run} of {})", args.repeat) } else { String::new() };
            steps.next(format!("running the {kind} system under load{of}"))?;
            let one = run_live(kind, run, system, &args.output, args, (profile.as_ref(), roots.as_ref()), signals)?;
            if let Some(busy) = &one.host_busy {
                eprintln!("palette: warning: {kind} run {run}: {busy}; latency verdicts of {kind} are inconclusive");
            }
            live.push(one);
            check(signals)?;
        }
    }
    steps.next("comparing the live systems' spans with the input".into())?;
    let report = args.output.join("report");
    let verdicts = compare_live(args, &inputs, &systems, live, &input_warnings, &report)?;
    eprintln!("done in {:.0}s", started_all.elapsed().as_secs_f64());
    Ok(RunSummary { live: std::mem::take(live), report: report.join("index.html"), verdicts })
}

/// The pipeline's numbered progress lines; a signal stops it at the next one.
struct Steps<'a> {
    signals: &'a Signals,
    done: usize,
    total: usize,
}

impl Steps<'_> {
    fn next(&mut self, what: String) -> anyhow::Result<()> {
        check(self.signals)?;
        self.done += 1;
        eprintln!("[{}/{}] {what}", self.done, self.total);
        Ok(())
    }
}

/// Each kind's generated system, by kind.
type Generated<'k> = Vec<(&'k str, PathBuf)>;

/// Fits each kind's model and generates its system in DIR (with `--rpc`
/// written as an intervention file beside the others); the input warnings
/// of the first fit are kept for the report.
fn fit_and_generate<'k>(
    args: &Args,
    inputs: &[&str],
    kinds: &[&'k str],
    steps: &mut Steps,
) -> anyhow::Result<(Generated<'k>, Vec<palette_trace::overlap::InputWarning>)> {
    let dir = &args.output;
    let mut apply = args.apply.clone();
    if let Some(rpc) = &args.rpc {
        // A file like any other intervention, so DIR shows what was applied.
        let file = dir.join(format!("rpc-{rpc}.yaml"));
        std::fs::write(&file, format!("# palette run --rpc {rpc}\n- rpc: {rpc}\n"))
            .with_context(|| format!("cannot write {}", file.display()))?;
        apply.push(file);
    }
    let mut systems = Vec::new();
    let mut input_warnings = Vec::new();
    for (k, kind) in kinds.iter().enumerate() {
        let model = dir.join(format!("model-{kind}.json"));
        let system = dir.join(format!("system-{kind}"));
        steps.next(format!("fitting the {kind} model and generating its system"))?;
        let mut argv = inputs.to_vec();
        argv.extend(["--kind", kind, "-o", s(&model)?]);
        for f in &apply {
            argv.extend(["--apply", s(f)?]);
        }
        // Inputs that do not belong together are said once, and recorded.
        let warnings = cmd::fit::run_with_warnings(verb(&argv)?, k == 0)?;
        if k == 0 {
            input_warnings = warnings;
        }
        let (seed, port) = (args.seed.to_string(), args.base_port.to_string());
        cmd::generate::run(verb(&[
            s(&model)?,
            "-o",
            s(&system)?,
            "--name",
            &format!("palette-{kind}"),
            "--seed",
            &seed,
            "--base-port",
            &port,
            "--work",
            &args.work,
            "--force",
        ])?)?;
        systems.push((*kind, system));
    }
    Ok((systems, input_warnings))
}

/// Compares every live run's spans with the input traces (each kind's runs
/// pooled) and writes the report to `report`; the verdict lines.
fn compare_live(
    args: &Args,
    inputs: &[&str],
    systems: &[(&str, PathBuf)],
    live: &[LiveRun],
    input_warnings: &[palette_trace::overlap::InputWarning],
    report: &Path,
) -> anyhow::Result<Vec<String>> {
    let mut argv = inputs.to_vec();
    argv.extend(["--html", s(report)?]);
    let compare_args: cmd::compare::Args = verb(&argv)?;
    let started = Instant::now();
    // The original is every trace file the models were fitted on.
    let original = compare_args.read_original(&args.inputs)?;
    let mut candidates = Vec::new();
    let mut runs_meta = Vec::new();
    for (kind, _) in systems {
        let mine: Vec<&LiveRun> = live.iter().filter(|l| l.kind == *kind).collect();
        let warmup = args.warmup.max(0);
        // A run's window ends where the next run's warm-up begins: a file
        // holds one run's spans, but the pooled read takes them all.
        let windows: Vec<(i64, i64)> = mine
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let from = l.load.measured_from_unix_ns as i64;
                let until = mine.get(i + 1).map_or(i64::MAX, |n| n.load.measured_from_unix_ns as i64 - warmup);
                (from, until)
            })
            .collect();
        let busy: Vec<&LiveRun> = mine.iter().copied().filter(|l| l.host_busy.is_some()).collect();
        let host_busy = busy.first().and_then(|l| l.host_busy.clone()).map(|reason| {
            if mine.len() > 1 { format!("{reason} ({} of {} runs)", busy.len(), mine.len()) } else { reason }
        });
        let candidate = cmd::compare::Candidate {
            label: kind.to_string(),
            runs: mine.iter().map(|l| l.spans.clone()).collect(),
            windows,
            host_busy,
        };
        let (input, counts) = compare_args.read_candidate(&candidate)?;
        for (l, c) in mine.iter().zip(&counts) {
            let t = &l.load.total;
            let in_flight = l.load.in_flight_at_end;
            eprintln!(
                "{kind} run {}: compared {} traces of {} measured requests ({} still in flight at the end; {} warm-up traces left out)",
                l.run,
                thousands(c.compared),
                thousands(t.requests),
                in_flight,
                thousands(c.excluded)
            );
            runs_meta.push(run_json(kind, l, c));
        }
        candidates.push(input);
    }
    let extra = report_metadata(args, inputs, input_warnings, live, runs_meta);
    let cmp = compare_args.report(&original, &candidates, cmd::compare::metadata(Some(extra)), started)?;
    Ok(cmp.summary.iter().map(|v| v.line.clone()).collect())
}

/// One run's entry in the report's metadata: what was measured and
/// compared, the host's state, and with a load profile its per-window rates.
fn run_json(kind: &str, l: &LiveRun, c: &cmd::compare::RunCount) -> serde_json::Value {
    let t = &l.load.total;
    let in_flight = l.load.in_flight_at_end;
    let mut runs_meta = Vec::new();
    runs_meta.push(serde_json::json!({
    "kind": kind,
    "run": l.run,
    "run_id": l.load.run_id,
    "measured_requests": t.requests,
    "compared_traces": c.compared,
    "warmup_traces_excluded": c.excluded,
    "in_flight_at_end": in_flight,
    "restarts": l.restarts,
    "host_busy": l.host_busy,
    "host": match &l.host_busy {
        Some(busy) => format!("{}; {busy}", l.load.contention.to_line()),
        None => l.load.contention.to_line(),
    },
    "contention": l.load.contention,
    }));
    // The per-window rates and latency the HTML plots against the profile.
    if l.load.profile.is_some()
        && let Some(serde_json::Value::Object(m)) = runs_meta.last_mut()
    {
        let windows: Vec<serde_json::Value> = l
            .load
            .timeline
            .iter()
            .map(|i| {
                serde_json::json!({
                    "start_s": i.start_s,
                    "length_s": i.length_s,
                    "target_rate": i.target_rate,
                    "offered_rate": i.offered_rate,
                    "achieved_rate": i.achieved_rate,
                    "errors": i.errors,
                    "p50_ms": i.latency.map(|l| l.p50_ms),
                    "p99_ms": i.latency.map(|l| l.p99_ms),
                })
            })
            .collect();
        m.insert("windows".into(), windows.into());
        m.insert("rate_deviation".into(), serde_json::json!(l.load.rate_deviation));
    }
    runs_meta.pop().unwrap_or_default()
}

/// The report's metadata: how the run was made.
fn report_metadata(
    args: &Args,
    inputs: &[&str],
    input_warnings: &[palette_trace::overlap::InputWarning],
    live: &[LiveRun],
    runs_meta: Vec<serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut extra = serde_json::Map::new();
    extra.insert("inputs".into(), serde_json::json!(inputs));
    let said: Vec<String> = input_warnings.iter().map(|w| w.to_string()).collect();
    extra.insert("input warnings".into(), serde_json::json!(said));
    extra.insert("seed".into(), args.seed.into());
    match &args.profile {
        Some(spec) => extra.insert("load profile".into(), spec.clone().into()),
        None => extra.insert("rate (requests/s)".into(), args.rate.into()),
    };
    if let Some(first) = live.first() {
        extra.insert("load window (s)".into(), first.load.timeline_step_s.into());
    }
    extra.insert("duration (s, measured, per run)".into(), (args.duration as f64 / 1e9).into());
    extra.insert("warm-up (s, per run, not compared)".into(), (args.warmup as f64 / 1e9).into());
    extra.insert("repeats".into(), args.repeat.into());
    extra.insert("work mode".into(), args.work.clone().into());
    extra.insert("rpc".into(), args.rpc.clone().unwrap_or_else(|| "as the model records (default http)".into()).into());
    extra.insert("packed".into(), args.packed.into());
    extra.insert("interventions".into(), serde_json::json!(args.apply));
    extra.insert("runs".into(), serde_json::Value::Array(runs_meta));
    extra
}

/// Creates DIR, refusing one with files in it unless `force`.
fn prepare_dir(dir: &Path, force: bool) -> anyhow::Result<()> {
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
        && !force
    {
        anyhow::bail!(UsageError(format!(
            "{} is not empty; pick another directory or pass --force to replace a previous run",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// A path as a pipeline argument; a path that is not UTF-8 is a usage
/// error (clap's parsing of the steps takes UTF-8), not an empty string.
fn s(p: &Path) -> anyhow::Result<&str> {
    p.to_str().ok_or_else(|| UsageError(format!("{}: the path is not valid UTF-8", p.display())).into())
}
