//! `palette bench load`: the load generator's own ceiling.

use std::time::Duration;

use anyhow::Context;
use palette_load::bench::{NullServer, null_system};
use palette_load::{Arrivals, LoadOptions, NoObserver, run_load_blocking};

use crate::cmd::bench::machine;
use crate::cmd::{UsageError, parse_duration_ns, thousands};

#[derive(clap::Args, Debug)]
#[command(after_help = "Example (the run recorded in BENCHMARKS.md):\n  \
    palette bench load --rates 1000,2000,5000,10000,20000 --duration 5s")]
pub struct Args {
    /// Offered rates to try, requests per second, comma-separated.
    #[arg(long, value_name = "R,R,...", value_delimiter = ',', default_value = "1000,2000,5000,10000,20000")]
    pub rates: Vec<f64>,
    /// Measured window of each run.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub duration: String,
    /// In-flight bound of each run.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub connections: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let ns = parse_duration_ns(&args.duration).map_err(|e| UsageError(format!("--duration: {e}")))?;
    let server = NullServer::start().context("cannot start the zero-latency server")?;
    let system = null_system(server.port);
    println!(
        "open-loop load against a zero-latency HTTP/1.1 server (one thread) on loopback; {}s per rate, 1s warm-up; {}",
        ns as f64 / 1e9,
        machine()
    );
    println!(
        "{:>9}  {:>10}  {:>10}  {:>8}  {:>8}  {:>8}  {:>12}  {:>12}",
        "offered/s", "sent", "achieved/s", "errors", "p50 ms", "p99 ms", "lag p50 ms", "lag p99 ms"
    );
    let mut ceiling = None;
    for &rate in &args.rates {
        let opts = LoadOptions {
            arrivals: Arrivals::Poisson { rate },
            duration: Duration::from_nanos(ns.max(0) as u64),
            warmup: Duration::from_secs(1),
            connections: args.connections,
            ..LoadOptions::default()
        };
        let r = run_load_blocking(&opts, &system, "null-system.json".as_ref(), &NoObserver)?;
        let t = &r.total;
        let l = t.latency.unwrap_or_default();
        let lag = r.send_lag.unwrap_or_default();
        println!(
            "{:>9}  {:>10}  {:>10.0}  {:>8}  {:>8.2}  {:>8.2}  {:>12.3}  {:>12.3}",
            thousands(rate as u64),
            thousands(t.requests),
            t.achieved_rate,
            thousands(t.errors),
            l.p50_ms,
            l.p99_ms,
            lag.p50_ms,
            lag.p99_ms
        );
        // Keeping up: every request answered, at the offered rate, and sent
        // on time (a late generator shows as send lag, not as system latency).
        if t.errors == 0 && t.achieved_rate >= 0.98 * t.offered_rate && lag.p99_ms < 1.0 {
            ceiling = Some(rate);
        }
    }
    match ceiling {
        Some(rate) => println!(
            "keeps up (no errors, ≥ 98% achieved, send lag p99 < 1 ms) up to {}/s of the rates tried",
            thousands(rate as u64)
        ),
        None => println!("kept up at none of the rates tried"),
    }
    Ok(())
}
