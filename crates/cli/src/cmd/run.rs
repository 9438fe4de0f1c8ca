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
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use palette_load::{Arrivals, LoadOptions, LoadReport, Target, run_load_blocking};
use palette_system::up::{self, LocalSystem, UpOptions};

use crate::cmd::{self, UsageError, parse_duration_ns, thousands, verb};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    palette run traces.csv -o run/ --rate 20 --duration 60s\n  \
    palette run jaeger-export.json -o run/ --kind palette --work cpu\n  \
    palette run traces.jsonl -o run/ --rpc grpc --apply what-if.yaml\n\n\
    DIR gets: model-KIND.json, system-KIND/ (with its spans.jsonl and logs/), \
    spans-KIND.jsonl (the live system's spans), load-KIND.json, report/index.html.")]
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
    /// Seeds the services' choices and the load: same seed, same requests.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write into a non-empty DIR (files of a previous run are replaced).
    #[arg(long)]
    pub force: bool,
}

/// What one live system did.
pub struct LiveRun {
    pub kind: String,
    pub spans: PathBuf,
    pub load: LoadReport,
    /// Services restarted by the supervisor during the run (crashes).
    pub restarts: u64,
}

/// What a whole run wrote.
pub struct RunSummary {
    pub live: Vec<LiveRun>,
    pub report: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let summary = run_pipeline(&args)?;
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
    println!("report: {}", summary.report.display());
    Ok(())
}

/// The whole pipeline; `palette demo` runs it on the built-in examples.
pub fn run_pipeline(args: &Args) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        anyhow::bail!(UsageError(format!(
            "--rate must be a positive number of requests per second, not {}",
            args.rate
        )));
    }
    if args.duration <= 0 {
        anyhow::bail!(UsageError("--duration must be longer than 0".into()));
    }
    // Checked before DIR is created, so a mistyped input leaves nothing behind.
    if let Some(missing) = args.inputs.iter().chain(&args.apply).find(|p| !p.exists()) {
        anyhow::bail!(UsageError(format!("{}: no such file or directory", missing.display())));
    }
    let dir = &args.output;
    prepare_dir(dir, args.force)?;
    let kinds: Vec<&str> = match args.kind.as_str() {
        "both" => vec!["palette", "naive"],
        one => vec![one],
    };
    let steps = 2 * kinds.len() + 1;
    let mut step = 0;
    let mut next = |what: String| {
        step += 1;
        eprintln!("[{step}/{steps}] {what}");
    };
    let inputs: Vec<&str> = args.inputs.iter().map(|p| s(p)).collect();
    let mut apply = args.apply.clone();
    if let Some(rpc) = &args.rpc {
        // A file like any other intervention, so DIR shows what was applied.
        let file = dir.join(format!("rpc-{rpc}.yaml"));
        std::fs::write(&file, format!("# palette run --rpc {rpc}\n- rpc: {rpc}\n"))
            .with_context(|| format!("cannot write {}", file.display()))?;
        apply.push(file);
    }
    let mut live = Vec::new();
    for kind in &kinds {
        let model = dir.join(format!("model-{kind}.json"));
        let system = dir.join(format!("system-{kind}"));
        next(format!("fitting the {kind} model and generating its system"));
        let mut argv = inputs.clone();
        argv.extend(["--kind", kind, "-o", s(&model)]);
        for f in &apply {
            argv.extend(["--apply", s(f)]);
        }
        cmd::fit::run(verb(&argv)?)?;
        let (seed, port) = (args.seed.to_string(), args.base_port.to_string());
        cmd::generate::run(verb(&[
            s(&model),
            "-o",
            s(&system),
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
        next(format!("running the {kind} system under load"));
        live.push(run_live(kind, &system, dir, args)?);
    }
    next("comparing the live systems' spans with the input".into());
    let report = dir.join("report");
    let mut argv = inputs.clone();
    argv.extend(live.iter().map(|l| s(&l.spans)));
    for l in &live {
        argv.extend(["--label", &l.kind]);
    }
    argv.extend(["--html", s(&report)]);
    cmd::compare::run(verb(&argv)?)?;
    eprintln!("done in {:.0}s", started.elapsed().as_secs_f64());
    Ok(RunSummary { live, report: report.join("index.html") })
}

/// Starts one generated system, loads it, stops it, and keeps its spans.
fn run_live(kind: &str, system_dir: &Path, dir: &Path, args: &Args) -> anyhow::Result<LiveRun> {
    let system = LocalSystem::load(&system_dir.join("system.json"))?;
    let mut opts = UpOptions::new(std::env::current_exe()?);
    opts.packed = args.packed;
    let supervisor = up::start(&system, &opts)?;
    if let Err(e) = supervisor.wait_healthy(opts.health_timeout) {
        supervisor.stop();
        return Err(e.into());
    }
    let load_opts = LoadOptions {
        arrivals: Arrivals::Poisson { rate: args.rate },
        duration: Duration::from_nanos(args.duration as u64),
        warmup: Duration::from_nanos(args.warmup.max(0) as u64),
        seed: args.seed,
        target: Target::Host("127.0.0.1".into()),
        ..LoadOptions::default()
    };
    let observer = cmd::load::Bar::new(Arc::new(AtomicBool::new(false)));
    let report = run_load_blocking(&load_opts, &system.config, &system_dir.join("system.json"), &observer);
    observer.finish();
    // Stopping drains the services and flushes their spans.
    let stopped = supervisor.stop();
    let report = report?;
    eprint!("{}", report.to_text());
    std::fs::write(dir.join(format!("load-{kind}.json")), serde_json::to_string_pretty(&report)? + "\n")?;
    let produced = system.spans_file().context("the generated system writes no span file (tracing.file is null)")?;
    let spans = dir.join(format!("spans-{kind}.jsonl"));
    std::fs::copy(&produced, &spans).with_context(|| format!("cannot copy {}", produced.display()))?;
    Ok(LiveRun { kind: kind.to_string(), spans, load: report, restarts: stopped.restarts })
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

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}
