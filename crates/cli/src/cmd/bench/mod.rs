//! `palette bench`: measure Palette's own speed and memory, print a table.
//!
//! Every measurement runs in a child process, so peak memory is per case;
//! baselines are measured in the same invocation, so ratios survive noisy,
//! shared machines.

mod fit;
mod generate;
mod ingest;
mod load;
mod packed;
mod runtime;
mod simulate;
mod work;

use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// Ingest + assembly of Alibaba-style CallGraph CSV against `wc -l` (the
    /// I/O floor) and a pandas script doing the same grouping.
    Ingest(ingest::Args),
    /// One measured ingest, run as a child by `bench ingest`; prints JSON.
    #[command(hide = true)]
    IngestWorker { file: std::path::PathBuf },
    /// Read + assemble + fit + build model.json of Alibaba-style CSV with at
    /// least a million traces, against ingest alone.
    Fit(fit::Args),
    /// Sampling traces from a model: walk alone, with OTLP encoding, and
    /// written to a file, against writing the same bytes.
    Simulate(simulate::Args),
    /// One measured fit, run as a child by `bench fit`; prints JSON.
    #[command(hide = true)]
    FitWorker { file: std::path::PathBuf },
    /// The load generator's own ceiling: rising Poisson rates against a
    /// zero-latency server.
    Load(load::Args),
    /// Per-hop latency of a zero-work chain of services (HTTP/1.1 and gRPC)
    /// and requests/s of one service on one core, against bare hyper and
    /// bare gRPC servers.
    Runtime(runtime::Args),
    /// The bare hyper server `bench runtime` compares with, run as a child.
    #[command(hide = true)]
    RuntimeBare {
        #[arg(long)]
        port: u16,
        /// The bare gRPC server instead (the runtime's gRPC server loop, echoing).
        #[arg(long)]
        grpc: bool,
    },
    /// `palette generate` of a model of thousands of services, against
    /// copying the model file.
    Generate(generate::Args),
    /// One measured generate, run as a child by `bench generate`; prints JSON.
    #[command(hide = true)]
    GenerateWorker {
        model: std::path::PathBuf,
        out: std::path::PathBuf,
        /// Generate each service as Rust too.
        #[arg(long)]
        code: bool,
    },
    /// One process serving 1,000 zero-work services: start-up, memory and
    /// per-hop latency under open-loop load, against a single chain.
    Packed(packed::Args),
    /// The runtime's local work (sleep, cpu, memory): how far from its
    /// target it ends, p50 and p90, at low load.
    Work(work::Args),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.what {
        What::Ingest(a) => ingest::run(a),
        What::IngestWorker { file } => ingest::worker(&file),
        What::Fit(a) => fit::run(a),
        What::Simulate(a) => simulate::run(a),
        What::FitWorker { file } => fit::worker(&file),
        What::Load(a) => load::run(a),
        What::Runtime(a) => runtime::run(a),
        What::RuntimeBare { port, grpc: false } => runtime::bare_server(port),
        What::RuntimeBare { port, grpc: true } => runtime::bare_grpc_server(port),
        What::Work(a) => work::run(a),
        What::Packed(a) => packed::run(a),
        What::Generate(a) => generate::run(a),
        What::GenerateWorker { model, out, code } => generate::worker(&model, &out, code),
    }
}

/// Request rate of the generated inputs: low enough that even the smallest
/// input spans several assembly windows (60 s by default), so every size is
/// measured in the steady state of streaming assembly.
pub const TRACES_PER_S: f64 = 500.0;

/// The benchmark input of `rows` Alibaba-style v2022 rows over `services`
/// services in `dir`, generated (deterministically) unless already there.
pub fn generated_input(dir: &Path, rows: u64, services: u32) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    use palette_testkit::alibaba::{AlibabaConfig, Schema, write_alibaba};
    let file = dir.join(format!("alibaba-v2022-{rows}-{services}-{TRACES_PER_S}tps.csv"));
    if !file.exists() {
        eprintln!("generating {} ({} rows)…", file.display(), crate::cmd::thousands(rows));
        let cfg = AlibabaConfig {
            schema: Schema::V2022,
            rows,
            services,
            seed: 42,
            traces_per_s: TRACES_PER_S,
            ..AlibabaConfig::default()
        };
        palette_trace::write::write_atomically(&file, |w| write_alibaba(&cfg, w).map(|_| ()))
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(file)
}

/// Peak resident memory of this process, from /proc (Linux), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A short description of this machine for the benchmark record.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()))
        .map_or(0, |kib| kib / 1024 / 1024);
    format!("{cores} cores ({cpu}), {mem_gib} GiB")
}

pub fn file_mib(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
}
