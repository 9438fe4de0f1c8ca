//! `palette bench work`: how precisely the runtime's local work hits its target.

use std::time::Instant;

use anyhow::Context;
use palette_runtime::config::{Limits, WorkMode};
use palette_runtime::work::Worker;

use crate::cmd::UsageError;
use crate::cmd::bench::machine;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example (the run recorded in BENCHMARKS.md):\n  palette bench work --samples 200")]
pub struct Args {
    /// Samples per mode and target; the table shows their p50 and p90.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Targets in milliseconds, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "0.05,0.5,5,50")]
    pub targets_ms: Vec<f64>,
    /// Modes to measure, comma separated: sleep, cpu, memory.
    #[arg(long, value_delimiter = ',', default_value = "sleep,cpu,memory")]
    pub modes: Vec<String>,
}

fn mode_of(name: &str) -> Result<WorkMode, UsageError> {
    match name {
        "sleep" => Ok(WorkMode::Sleep),
        "cpu" => Ok(WorkMode::Cpu),
        "memory" => Ok(WorkMode::Memory),
        other => Err(UsageError(format!("unknown work mode `{other}` (use sleep, cpu or memory)"))),
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let modes = args.modes.iter().map(|m| mode_of(m.trim())).collect::<Result<Vec<_>, _>>()?;
    if args.samples == 0 {
        return Err(UsageError("--samples must be at least 1".into()).into());
    }
    if let Some(t) = args.targets_ms.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
        return Err(UsageError(format!("target {t} ms is not a positive number of milliseconds")).into());
    }
    // Two reactor threads, as `palette serve` on this machine would have.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let load_before = load_average();
    let t = Instant::now();
    let worker = Worker::new(&Limits::default());
    let calibrated_in = t.elapsed();
    let mut rows = Vec::new();
    for (&mode, name) in modes.iter().zip(&args.modes) {
        for &ms in &args.targets_ms {
            eprintln!("{name} {ms} ms × {}…", args.samples);
            let ns = (ms * 1e6).round() as u64;
            let mut errors: Vec<f64> = rt.block_on(async {
                let mut errors = Vec::with_capacity(args.samples);
                for _ in 0..args.samples {
                    let t = Instant::now();
                    worker.work(mode, ns).await;
                    errors.push(t.elapsed().as_nanos() as f64 - ns as f64);
                }
                errors
            });
            errors.sort_by(f64::total_cmp);
            rows.push((name.trim().to_string(), ms, quantile(&errors, 0.5), quantile(&errors, 0.9)));
        }
    }
    let c = worker.calibration();
    println!(
        "local work at low load: {} samples per case, one at a time, 2 reactor threads; {}; load average {} before, {} after",
        args.samples,
        machine(),
        load_before,
        load_average()
    );
    println!(
        "calibration ({:.0} ms): cpu {:.2} 16x16 multiplies/µs, memory {:.1} touches/µs over {} MiB, sleep spins the last {:.0} µs",
        calibrated_in.as_secs_f64() * 1e3,
        c.cpu_multiplies_per_us,
        c.memory_touches_per_us,
        c.memory_buffer_bytes >> 20,
        c.sleep_spin_ns as f64 / 1e3
    );
    println!(
        "{:<7} {:>10} {:>14} {:>14} {:>12} {:>6}",
        "mode", "target ms", "p50-target µs", "p90-target µs", "bound µs", "p90 ok"
    );
    for (name, ms, p50, p90) in rows {
        // Within max(3 %, 100 µs) of the target at p90.
        let bound_us = (ms * 1e3 * 0.03).max(100.0);
        let ok = (p90 / 1e3).abs() <= bound_us;
        println!(
            "{:<7} {:>10} {:>+14.1} {:>+14.1} {:>12.1} {:>6}",
            name,
            ms,
            p50 / 1e3,
            p90 / 1e3,
            bound_us,
            if ok { "yes" } else { "NO" }
        );
    }
    Ok(())
}
