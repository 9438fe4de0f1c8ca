//! `palette bench simulate`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use palette_model::Simulator;
use palette_trace::write::OtlpWriter;

use crate::cmd::bench::machine;
use crate::cmd::thousands;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example (the run recorded in BENCHMARKS.md):\n  \
    palette fit ../shared/data/nezha/onlineboutique/normal-2022-08-23T17-00.csv -o ob.json\n  \
    palette bench simulate ob.json -n 200000")]
pub struct Args {
    /// The model to sample from.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Traces per run.
    #[arg(short = 'n', long, default_value_t = 200_000)]
    pub traces: u64,
    /// Runs of each measurement; the table shows the median.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Where the written output goes (removed afterwards).
    #[arg(long, default_value = "bench-out")]
    pub dir: PathBuf,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let model = crate::cmd::show::load(&args.model)?;
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let out_path = args.dir.join("bench-simulate.jsonl");
    let (mut sample, mut encode, mut write, mut floor) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut spans, mut bytes) = (0u64, 0u64);
    for run in 1..=args.repeat.max(1) {
        eprintln!("run {run}/{}…", args.repeat.max(1));
        // Sampling alone.
        let t = Instant::now();
        let mut sim = Simulator::new(&model, 1);
        spans = 0;
        for _ in 0..args.traces {
            spans += sim.trace().map_or(0, |(s, _)| s.len() as u64);
        }
        sample.push(t.elapsed().as_secs_f64());
        // Sampling and OTLP/JSON encoding, in memory.
        let t = Instant::now();
        let mut sim = Simulator::new(&model, 1);
        let (mut writer, mut line) = (OtlpWriter::default(), String::new());
        bytes = 0;
        for _ in 0..args.traces {
            let (trace, names) = sim.trace().expect("model has roots");
            line.clear();
            writer.document(trace, names, &mut line);
            bytes += line.len() as u64 + 1;
        }
        encode.push(t.elapsed().as_secs_f64());
        // What `palette simulate` does: encode and write a file.
        let t = Instant::now();
        let mut file = std::fs::File::create(&out_path)?;
        crate::cmd::simulate::simulate_to(&model, args.traces, 1, &mut file)?;
        drop(file);
        write.push(t.elapsed().as_secs_f64());
        // The I/O floor: writing as many bytes, already encoded.
        let chunk = vec![b'x'; 1 << 20];
        let t = Instant::now();
        let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&out_path)?);
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            file.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        file.flush()?;
        drop(file);
        floor.push(t.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_file(&out_path);
    let n = args.traces as f64;
    println!(
        "simulate {} ({} APIs), {} traces ({} spans, {} MiB of OTLP/JSON), median of {} runs; {}",
        args.model.display(),
        model.apis.len(),
        thousands(args.traces),
        thousands(spans),
        bytes / (1 << 20),
        args.repeat.max(1),
        machine()
    );
    println!("{:<34} {:>9} {:>12} {:>14}", "stage", "seconds", "traces/s", "spans/s");
    for (name, secs) in [
        ("sample (walk PFAs and GCMs)", median(sample)),
        ("sample + encode OTLP/JSON", median(encode)),
        ("sample + encode + write file", median(write)),
        ("write floor (same bytes, no work)", median(floor)),
    ] {
        println!(
            "{:<34} {:>9.2} {:>12} {:>14}",
            name,
            secs,
            thousands((n / secs) as u64),
            thousands((spans as f64 / secs) as u64)
        );
    }
    Ok(())
}
