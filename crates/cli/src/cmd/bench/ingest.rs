//! `palette bench ingest`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use palette_trace::{CallTree, NoProgress, ReadOptions, read_traces};
use serde::{Deserialize, Serialize};

use crate::cmd::bench::{file_mib, generated_input, machine, peak_rss_kib};
use crate::cmd::thousands;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example (the run recorded in BENCHMARKS.md):\n  palette bench ingest --rows 1000000,5000000 --dir /tmp/palette-bench"
)]
pub struct Args {
    /// Input sizes in rows, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000000,5000000")]
    pub rows: Vec<u64>,
    /// Where the generated inputs go (reused when already there).
    #[arg(long, default_value = "bench-out")]
    pub dir: PathBuf,
    /// Distinct microservices in the generated call graphs.
    #[arg(long, default_value_t = 2000)]
    pub services: u32,
    /// Python interpreter for the pandas baseline; `none` skips it.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Runs of each tool per size; the table shows the median (the machine
    /// is shared, so single runs are noisy).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Print the results as JSON too.
    #[arg(long)]
    pub json: bool,
}

/// The run with the median time.
pub fn median(mut runs: Vec<Measured>) -> Measured {
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    runs.swap_remove(runs.len() / 2)
}

/// What one measured child reports.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Measured {
    pub seconds: f64,
    pub peak_rss_kib: u64,
    pub traces: u64,
}

#[derive(Serialize, Debug)]
struct Row {
    rows: u64,
    file_mib: f64,
    wc_seconds: f64,
    palette: Measured,
    palette_rows_per_s: f64,
    pandas: Option<Measured>,
}

/// The measured work: read, assemble and hand every trace to a sink.
pub fn worker(file: &Path) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut traces = 0u64;
    let mut sink = |tree: &CallTree| {
        traces += 1;
        std::hint::black_box(tree.execs.len());
        Ok(())
    };
    read_traces(&[file.to_path_buf()], &ReadOptions::default(), &NoProgress, &mut sink)?;
    let seconds = start.elapsed().as_secs_f64();
    let m = Measured { seconds, peak_rss_kib: peak_rss_kib().unwrap_or(0), traces };
    println!("{}", serde_json::to_string(&m)?);
    Ok(())
}

const PANDAS_SCRIPT: &str = r#"
import json, resource, sys, time
t0 = time.perf_counter()
import pandas as pd
path = sys.argv[1]
cols = ["timestamp", "traceid", "rpc_id", "um", "dm", "interface", "rt"]
df = pd.read_csv(path, usecols=cols, dtype={"traceid": str, "rpc_id": str, "um": str, "dm": str, "interface": str})
# The same grouping palette does: rows into traces, each call linked to its
# parent rpc id, each trace's root API found.
df["parent"] = df["rpc_id"].str.rsplit(".", n=1).str[0]
g = df.groupby("traceid", sort=False)
summary = pd.DataFrame({"calls": g.size(), "start": g["timestamp"].min(), "end": g["timestamp"].max()})
roots = df.loc[df["um"] == "USER", ["traceid", "dm", "interface"]].drop_duplicates("traceid").set_index("traceid")
summary = summary.join(roots)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "traces": int(len(summary))}))
"#;

pub fn run_json(cmd: &mut Command) -> anyhow::Result<Measured> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    serde_json::from_str(line).with_context(|| format!("{cmd:?} printed `{line}`"))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the palette binary")?;
    let script = args.dir.join("pandas_ingest.py");
    std::fs::write(&script, PANDAS_SCRIPT)?;
    let pandas_ok = args.python != "none"
        && Command::new(&args.python).args(["-c", "import pandas"]).output().is_ok_and(|o| o.status.success());
    if args.python != "none" && !pandas_ok {
        eprintln!(
            "note: `{} -c 'import pandas'` failed; the pandas column is skipped (pip install pandas)",
            args.python
        );
    }
    let mut rows_out = Vec::new();
    for &rows in &args.rows {
        let file = generated_input(&args.dir, rows, args.services)?;
        // Warm the page cache so every tool reads from memory.
        let _ = Command::new("wc").arg("-l").arg(&file).output();
        let repeat = args.repeat.max(1);
        let mut wc_runs = Vec::new();
        let mut lines: u64 = 0;
        for _ in 0..repeat {
            let t = Instant::now();
            let wc = Command::new("wc").arg("-l").arg(&file).output().context("cannot run wc")?;
            wc_runs.push(Measured { seconds: t.elapsed().as_secs_f64(), peak_rss_kib: 0, traces: 0 });
            lines =
                String::from_utf8_lossy(&wc.stdout).split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        }
        let wc_seconds = median(wc_runs).seconds;
        let data_rows = lines.saturating_sub(1);
        let mut palette_runs = Vec::new();
        let mut pandas_runs = Vec::new();
        // Interleaved, so a slow spell of the machine hits both tools.
        for run in 1..=repeat {
            eprintln!("measuring palette on {} rows ({run}/{repeat})…", thousands(data_rows));
            palette_runs.push(run_json(Command::new(&exe).args(["bench", "ingest-worker"]).arg(&file))?);
            if pandas_ok {
                eprintln!("measuring pandas on {} rows ({run}/{repeat})…", thousands(data_rows));
                pandas_runs.push(run_json(Command::new(&args.python).arg(&script).arg(&file))?);
            }
        }
        let palette = median(palette_runs);
        let pandas = (!pandas_runs.is_empty()).then(|| median(pandas_runs));
        rows_out.push(Row {
            rows: data_rows,
            file_mib: file_mib(&file),
            wc_seconds,
            palette_rows_per_s: data_rows as f64 / palette.seconds,
            palette,
            pandas,
        });
    }
    println!(
        "ingest + assembly of Alibaba v2022 CallGraph CSV ({} services), median of {} runs; {}",
        args.services,
        args.repeat.max(1),
        machine()
    );
    println!(
        "{:>10}  {:>8}  {:>8}  {:>10}  {:>12}  {:>11}  {:>9}  {:>11}  {:>10}  {:>14}",
        "rows",
        "file MiB",
        "wc -l s",
        "palette s",
        "palette rows/s",
        "palette RSS",
        "pandas s",
        "pandas RSS",
        "palette/wc",
        "pandas/palette"
    );
    for r in &rows_out {
        let (ps, prss, ratio) = match &r.pandas {
            Some(p) => (
                format!("{:.2}", p.seconds),
                format!("{} MiB", p.peak_rss_kib / 1024),
                format!("{:.1}x", p.seconds / r.palette.seconds),
            ),
            None => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        println!(
            "{:>10}  {:>8.0}  {:>8.2}  {:>10.2}  {:>14}  {:>11}  {:>9}  {:>11}  {:>10}  {:>14}",
            thousands(r.rows),
            r.file_mib,
            r.wc_seconds,
            r.palette.seconds,
            thousands(r.palette_rows_per_s as u64),
            format!("{} MiB", r.palette.peak_rss_kib / 1024),
            ps,
            prss,
            format!("{:.1}x", r.palette.seconds / r.wc_seconds.max(1e-9)),
            ratio
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows_out)?);
    }
    Ok(())
}
