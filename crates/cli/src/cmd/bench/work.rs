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

/// Busy CPU time of the whole machine and of this process, in clock ticks
/// (`/proc`, Linux); their difference over a case is what other processes
/// ran meanwhile.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let busy = fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces): utime and stime are the 12th and 13th.
    let after = own.rsplit_once(')')?.1;
    let f: Vec<u64> = after.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
    Some((busy, f.first()? + f.get(1)?))
}

/// Cores other processes kept busy between two [`cpu_ticks`] readings
/// `secs` apart (Linux's clock tick is 1/100 s).
fn other_cores(before: Option<(u64, u64)>, after: Option<(u64, u64)>, secs: f64) -> Option<f64> {
    let ((b0, o0), (b1, o1)) = (before?, after?);
    Some((b1.saturating_sub(b0) as f64 - o1.saturating_sub(o0) as f64).max(0.0) / 100.0 / secs)
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
            let (ticks, started) = (cpu_ticks(), Instant::now());
            let mut errors: Vec<f64> = rt.block_on(async {
                let mut errors = Vec::with_capacity(args.samples);
                for _ in 0..args.samples {
                    let t = Instant::now();
                    worker.work(mode, ns).await;
                    errors.push(t.elapsed().as_nanos() as f64 - ns as f64);
                }
                errors
            });
            let others = other_cores(ticks, cpu_ticks(), started.elapsed().as_secs_f64());
            errors.sort_by(f64::total_cmp);
            rows.push((name.trim().to_string(), ms, quantile(&errors, 0.5), quantile(&errors, 0.9), others));
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
        "{:<7} {:>10} {:>14} {:>14} {:>12} {:>6} {:>12}",
        "mode", "target ms", "p50-target µs", "p90-target µs", "bound µs", "p90 ok", "other load"
    );
    for (name, ms, p50, p90, others) in rows {
        // Within max(3 %, 100 µs) of the target at p90.
        let bound_us = (ms * 1e3 * 0.03).max(100.0);
        let ok = (p90 / 1e3).abs() <= bound_us;
        println!(
            "{:<7} {:>10} {:>+14.1} {:>+14.1} {:>12.1} {:>6} {:>12}",
            name,
            ms,
            p50 / 1e3,
            p90 / 1e3,
            bound_us,
            if ok { "yes" } else { "NO" },
            others.map_or_else(|| "?".into(), |c| format!("{c:.2} cores"))
        );
    }
    Ok(())
}
