//! `palette simulate`: sample synthetic traces from a model.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use palette_model::Simulator;

use crate::cmd::{UsageError, thousands};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  palette simulate model.json -n 5000 --seed 7 -o synthetic.jsonl && palette inspect synthetic.jsonl"
)]
pub struct Args {
    /// A model written by `palette fit`.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Traces to sample.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub traces: u64,
    /// Seed: same model and seed, same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write OTLP/JSON lines (one trace per line, the collector
    /// file exporter's format).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

/// Samples `n` traces from `model` and writes them as OTLP/JSON lines to
/// `out`. Encoding runs on this thread and writing on another, in chunks of
/// about a megabyte, so the two overlap. Returns the spans written.
pub fn simulate_to(
    model: &palette_model::Model,
    n: u64,
    seed: u64,
    out: &mut (dyn std::io::Write + Send),
) -> std::io::Result<u64> {
    let mut sim = Simulator::new(model, seed);
    let mut writer = palette_trace::write::OtlpWriter::default();
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(4);
    std::thread::scope(|scope| {
        let writing = scope.spawn(move || -> std::io::Result<()> {
            for chunk in rx {
                out.write_all(chunk.as_bytes())?;
            }
            out.flush()
        });
        let mut spans = 0u64;
        let mut chunk = String::with_capacity(1 << 21);
        for _ in 0..n {
            let Some((trace, names)) = sim.trace() else { break };
            spans += trace.len() as u64;
            writer.document(trace, names, &mut chunk);
            chunk.push('\n');
            if chunk.len() >= 1 << 20 && tx.send(std::mem::replace(&mut chunk, String::with_capacity(1 << 21))).is_err()
            {
                break;
            }
        }
        if !chunk.is_empty() {
            let _ = tx.send(chunk);
        }
        drop(tx);
        writing.join().unwrap_or_else(|p| std::panic::resume_unwind(p)).map(|()| spans)
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let model = crate::cmd::show::load(&args.model)?;
    if model.roots.is_empty() {
        anyhow::bail!(UsageError(format!("{} has no root API to start traces from", args.model.display())));
    }
    let mut spans = 0u64;
    palette_trace::write::write_atomically(&args.output, |w| {
        spans = simulate_to(&model, args.traces, args.seed, w)?;
        Ok(())
    })
    .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!(
        "simulated {} traces ({} spans) from a {} model; wrote {} in {:.1}s",
        thousands(args.traces),
        thousands(spans),
        if model.kind == palette_model::ModelKind::Naive { "naive" } else { "palette" },
        args.output.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
