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

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let model = crate::cmd::show::load(&args.model)?;
    if model.roots.is_empty() {
        anyhow::bail!(UsageError(format!("{} has no root API to start traces from", args.model.display())));
    }
    let mut sim = Simulator::new(&model, args.seed);
    let mut spans = 0u64;
    let mut line = String::new();
    palette_trace::write::write_atomically(&args.output, |w| {
        for _ in 0..args.traces {
            let (trace, names) = sim.trace().expect("the model has roots");
            spans += trace.len() as u64;
            line.clear();
            palette_trace::write::otlp_document(trace, names, &mut line);
            line.push('\n');
            w.write_all(line.as_bytes())?;
        }
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
