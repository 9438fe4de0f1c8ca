//! `palette demo`: the main job on the built-in examples, end to end.
//!
//! Generates ground truth with palette's own example systems (no download,
//! no `../shared`): the paper's Figure 1 and a 20-service web shop with
//! concurrent fan-out, choices, caller-dependent work and a loop. Then, for
//! each, what `palette run` does: fit Palette's model and the naive
//! baseline, generate both systems, run them as local processes under
//! open-loop load, collect their spans and compare them with the ground
//! truth in an HTML report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::cmd::{self, verb};

#[derive(clap::Args, Debug)]
#[command(after_help = "Writes DIR/traces (the ground truth) and DIR/figure1, DIR/webshop (each a `palette run` \
    directory: models, systems, live spans, load reports, report/index.html).")]
pub struct Args {
    /// Directory for everything the demo writes (replaced if it holds a previous demo).
    #[arg(short, long, value_name = "DIR", default_value = "palette-demo")]
    pub output: PathBuf,
    /// Requests generated for each example system's ground truth.
    #[arg(long, default_value_t = 2000)]
    pub traces: usize,
    /// Load on each live system, requests per second.
    #[arg(long, value_name = "R/s", default_value_t = 40.0)]
    pub rate: f64,
    /// The measured load window of each live system, per run.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub duration: String,
    /// Runs of each live system (fresh processes each time); the report
    /// judges them pooled.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub repeat: usize,
    /// The first port of the live systems (each example uses a few from here).
    #[arg(long, value_name = "PORT", default_value_t = 7000)]
    pub base_port: u16,
    /// Seed for generation, the services and the load: same seed, same requests.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// An intervention file applied to every fitted model (repeatable; see docs/interventions.md).
    #[arg(long, value_name = "FILE")]
    pub apply: Vec<PathBuf>,
    /// How the generated services call each other: HTTP/1.1 (default) or gRPC.
    #[arg(long, value_parser = ["http", "grpc"])]
    pub rpc: Option<String>,
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    // Checked before anything is written.
    if let Some(missing) = args.apply.iter().find(|p| !p.exists()) {
        anyhow::bail!(cmd::UsageError(format!("{}: no such file or directory", missing.display())));
    }
    // Caught before any system starts: a signal stops the current run's
    // systems and the demo, keeping what was measured.
    let signals = palette_system::up::Signals::install("palette demo", cmd::run::STOPPING)?;
    let dir = &args.output;
    let traces = dir.join("traces");
    std::fs::create_dir_all(&traces).with_context(|| format!("cannot create {}", traces.display()))?;
    eprintln!("generating the example systems' ground-truth traces…");
    cmd::example::run(cmd::example::Args {
        output: traces.clone(),
        traces: args.traces,
        alibaba_rows: 1_000,
        alibaba_services: 200,
        seed: args.seed,
        force: true,
    })?;
    let (rate, seed, port) = (args.rate.to_string(), args.seed.to_string(), args.base_port.to_string());
    let repeat = args.repeat.to_string();
    // Relative to where the demo was started, as the user typed them.
    let apply: Vec<PathBuf> = args.apply.iter().map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone())).collect();
    let mut summaries = Vec::new();
    for system in ["figure1", "webshop"] {
        eprintln!("\n== {system}");
        let input = traces.join(format!("{system}.otlp.jsonl"));
        let out = dir.join(system);
        let mut argv = vec![
            s(&input),
            "-o",
            s(&out),
            "--rate",
            &rate,
            "--duration",
            &args.duration,
            "--warmup",
            "2s",
            "--repeat",
            &repeat,
            "--packed",
            "--seed",
            &seed,
            "--base-port",
            &port,
            "--force",
        ];
        for f in &apply {
            argv.extend(["--apply", s(f)]);
        }
        if let Some(rpc) = &args.rpc {
            argv.extend(["--rpc", rpc]);
        }
        let run_args: cmd::run::Args = verb(&argv)?;
        summaries.push((system, cmd::run::run_pipeline(&run_args, &signals)?));
    }
    println!();
    println!("demo done in {:.0}s", started.elapsed().as_secs_f64());
    for (system, summary) in &summaries {
        for live in &summary.live {
            let t = &live.load.total;
            println!(
                "  {system:8} {:8} live: {} requests, {} errors, p50 {:.1} ms",
                live.kind,
                cmd::thousands(t.requests),
                cmd::thousands(t.errors),
                t.latency.as_ref().map_or(f64::NAN, |l| l.p50_ms)
            );
        }
        println!("  {system:8} report: {}", summary.report.display());
        for v in &summary.verdicts {
            println!("  {system:8} verdict: {v}");
        }
    }
    Ok(())
}
