//! `palette bench fit`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use palette_model::{FilterNames, FitOptions, Fitter, ModelKind, TraceFilter, build_model_owned};
use palette_trace::{CallTree, NoProgress, ReadOptions, read_traces};
use serde::{Deserialize, Serialize};

use crate::cmd::bench::ingest::{Measured, median, run_json};
use crate::cmd::bench::{file_mib, generated_input, machine, peak_rss_kib};
use crate::cmd::thousands;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example (the run recorded in BENCHMARKS.md):\n  palette bench fit --rows 10000000 --services 20000 --dir /tmp/palette-bench"
)]
pub struct Args {
    /// Input sizes in rows, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000000")]
    pub rows: Vec<u64>,
    /// Where the generated inputs go (reused when already there).
    #[arg(long, default_value = "bench-out")]
    pub dir: PathBuf,
    /// Distinct microservices in the generated call graphs.
    #[arg(long, default_value_t = 2000)]
    pub services: u32,
    /// Runs of each measurement; the table shows the median.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
}

/// What one measured fit reports.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct FitMeasured {
    pub seconds: f64,
    pub peak_rss_kib: u64,
    pub traces: u64,
    pub spans: u64,
    pub model_bytes: u64,
    /// Services in the fitted model: how much of the generated system the
    /// rows reached.
    #[serde(default)]
    pub services: u64,
}

/// The measured work: read, assemble, fit, build and serialise the model.
pub fn worker(file: &Path) -> anyhow::Result<()> {
    let start = Instant::now();
    let opts = FitOptions::default();
    let filter = TraceFilter::default();
    let names = FilterNames::new(&filter);
    let mut fitter = Fitter::new(opts, filter);
    let mut sink = |tree: &CallTree| {
        fitter.add(tree, &names);
        Ok(())
    };
    let read = read_traces(&[file.to_path_buf()], &ReadOptions::default(), &NoProgress, &mut sink)?;
    let partial = fitter.into_partial(&read.names, vec![file.display().to_string()]);
    let model = build_model_owned(partial, ModelKind::Palette, 1);
    // Counted as written, as `palette fit` streams it to its file.
    let mut counted = Counted(0);
    model.write_json(&mut counted)?;
    let m = FitMeasured {
        seconds: start.elapsed().as_secs_f64(),
        peak_rss_kib: peak_rss_kib().unwrap_or(0),
        traces: model.provenance.traces,
        spans: model.provenance.spans,
        model_bytes: counted.0,
        services: model.services.len() as u64,
    };
    println!("{}", serde_json::to_string(&m)?);
    Ok(())
}

/// A writer that only counts bytes.
struct Counted(u64);

impl std::io::Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn run_fit(cmd: &mut Command) -> anyhow::Result<FitMeasured> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        anyhow::bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    serde_json::from_str(line).with_context(|| format!("{cmd:?} printed `{line}`"))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the palette binary")?;
    let repeat = args.repeat.max(1);
    let mut rows_out = Vec::new();
    for &rows in &args.rows {
        let file = generated_input(&args.dir, rows, args.services)?;
        let mut fits = Vec::new();
        let mut ingests = Vec::new();
        for run in 1..=repeat {
            eprintln!("measuring ingest and fit ({run}/{repeat})…");
            ingests.push(run_json(Command::new(&exe).args(["bench", "ingest-worker"]).arg(&file))?);
            fits.push(run_fit(Command::new(&exe).args(["bench", "fit-worker"]).arg(&file))?);
        }
        fits.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        let fit = fits.swap_remove(fits.len() / 2);
        let ingest: Measured = median(ingests);
        rows_out.push((rows, file_mib(&file), ingest, fit));
    }
    println!(
        "read + assemble + fit + build model.json of Alibaba-style CallGraph CSV ({} services), median of {repeat} runs; {}",
        args.services,
        machine()
    );
    println!(
        "{:>11}  {:>8}  {:>8}  {:>10}  {:>11}  {:>8}  {:>12}  {:>10}  {:>9}  {:>9}  {:>10}",
        "rows",
        "file MiB",
        "services",
        "traces",
        "spans",
        "fit s",
        "spans/s",
        "fit RSS",
        "model MiB",
        "ingest s",
        "fit/ingest"
    );
    for (rows, mib, ingest, fit) in &rows_out {
        println!(
            "{:>11}  {:>8.0}  {:>8}  {:>10}  {:>11}  {:>8.2}  {:>12}  {:>10}  {:>9.1}  {:>9.2}  {:>10}",
            thousands(*rows),
            mib,
            thousands(fit.services),
            thousands(fit.traces),
            thousands(fit.spans),
            fit.seconds,
            thousands((fit.spans as f64 / fit.seconds) as u64),
            format!("{} MiB", fit.peak_rss_kib / 1024),
            fit.model_bytes as f64 / (1024.0 * 1024.0),
            ingest.seconds,
            format!("{:.2}x", fit.seconds / ingest.seconds),
        );
    }
    Ok(())
}
