//! `palette bench packed`: one process serving a thousand services.
//!
//! Two zero-work systems run as `palette serve --all` children, each
//! request crossing the same number of hops: the big one (`--services`, as
//! chains of `--hops`) and the baseline, a single chain of `--hops`
//! services. Measured: start-up until every service answers `/healthz`,
//! resident memory, and under open-loop Poisson load from `palette load`
//! (the same rate on both, taking turns) the root round trip, whose
//! median divided by the hops is the per-hop cost. The ratio to the
//! baseline is what serving many services costs each hop.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cmd::bench::machine;
use crate::cmd::bench::runtime::{Server, free_ports, span_counts};
use crate::cmd::thousands;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example (the run recorded in BENCHMARKS.md):\n  \
    cargo build --release && target/release/palette bench packed --services 1000 --dir /tmp/pbp")]
pub struct Args {
    /// Services of the big system (rounded down to whole chains).
    #[arg(long, default_value_t = 1000)]
    pub services: usize,
    /// Services per chain: the hops of every request, in both systems.
    #[arg(long, default_value_t = 10)]
    pub hops: usize,
    /// Open-loop request rate of each load run.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Length of each load run.
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Load runs per system, taking turns; the table shows the median.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Where the systems and their span files go (removed afterwards).
    #[arg(long, default_value = "bench-out")]
    pub dir: PathBuf,
}

/// What one system measured.
struct Measured {
    services: usize,
    startup_s: f64,
    rss_started_kib: u64,
    /// Per run: (requests, ok, p50 ms, p99 ms).
    runs: Vec<(u64, u64, f64, f64)>,
    rss_end_kib: u64,
    peak_rss_kib: u64,
    threads: u64,
    spans: (u64, u64),
}

/// A field of /proc/PID/status, in its unit (KiB for memory).
fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Whether the service on `port` answers `/healthz` with 200.
fn healthy(port: u16) -> bool {
    let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    if c.write_all(b"GET /healthz HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    buf.starts_with(b"HTTP/1.1 200")
}

/// Writes a zero-work system of `chains` chains of `hops` on free ports.
fn write_system(dir: &Path, chains: usize, hops: usize) -> anyhow::Result<(PathBuf, Vec<u16>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ports = free_ports(chains * hops)?;
    let config = palette_runtime::synthetic::chains(chains, hops, &ports);
    let path = dir.join("system.json");
    std::fs::write(&path, config.to_json()).with_context(|| format!("cannot write {}", path.display()))?;
    let _ = std::fs::remove_file(dir.join("spans.jsonl"));
    Ok((path, ports))
}

/// Starts `palette serve --all` and waits until every service is healthy.
fn start(system: &Path, ports: &[u16]) -> anyhow::Result<(Server, f64)> {
    let t = Instant::now();
    let path = system.to_str().context("non-UTF-8 path")?;
    let server = Server::start(&["serve", path, "--all"], false, ports.len())?;
    for &p in ports {
        while !healthy(p) {
            if t.elapsed() > Duration::from_secs(120) {
                bail!("port {p} not healthy after 120 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok((server, t.elapsed().as_secs_f64()))
}

/// One `palette load` run: (requests, ok, p50 ms, p99 ms) of the roots.
fn load(system: &Path, args: &Args, seed: usize) -> anyhow::Result<(u64, u64, f64, f64)> {
    let exe = std::env::current_exe().context("cannot find the palette binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("load").arg(system).args(["--rate", &args.rate.to_string(), "--duration", &args.duration]);
    cmd.args(["--warmup", "1s", "--json", "--seed", &seed.to_string()]);
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("palette load --json printed no JSON")?;
    let t = &v["total"];
    let num = |x: &serde_json::Value| x.as_f64().unwrap_or(f64::NAN);
    Ok((
        t["requests"].as_u64().unwrap_or(0),
        t["ok"].as_u64().unwrap_or(0),
        num(&t["latency"]["p50_ms"]),
        num(&t["latency"]["p99_ms"]),
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let hops = args.hops.max(1);
    let chains = (args.services / hops).max(1);
    let repeat = args.repeat.max(1);
    let sizes = [1, chains];
    let mut systems = Vec::new();
    let mut measured = Vec::new();
    for &n in &sizes {
        let dir = args.dir.join(format!("packed-{}", n * hops));
        let (path, ports) = write_system(&dir, n, hops)?;
        eprintln!("starting {} services in one process…", n * hops);
        let (server, startup_s) = start(&path, &ports)?;
        let rss_started_kib = proc_status(server.pid(), "VmRSS:");
        measured.push(Measured {
            services: n * hops,
            startup_s,
            rss_started_kib,
            runs: Vec::new(),
            rss_end_kib: 0,
            peak_rss_kib: 0,
            threads: 0,
            spans: (0, 0),
        });
        systems.push((dir, path, server));
    }
    // Turns: both servers stay up, so each run sees the same machine.
    for run in 1..=repeat {
        for (i, (_, path, _)) in systems.iter().enumerate() {
            eprintln!("load run {run}/{repeat} on {} services…", measured[i].services);
            let r = load(path, &args, run)?;
            measured[i].runs.push(r);
        }
    }
    for (i, (dir, _, server)) in systems.into_iter().enumerate() {
        let m = &mut measured[i];
        m.rss_end_kib = proc_status(server.pid(), "VmRSS:");
        m.peak_rss_kib = proc_status(server.pid(), "VmHWM:");
        m.threads = proc_status(server.pid(), "Threads:");
        m.spans = span_counts(&server.stop()?);
        let _ = std::fs::remove_dir_all(dir);
    }

    println!(
        "packed serving: zero-work services in one `palette serve --all` process, every request {hops} hops \
         (chains of {hops}); Poisson {} req/s for {} per run (+1 s warm-up), runs taking turns, median of {repeat}; \
         spans to a file; {}",
        args.rate,
        args.duration,
        machine()
    );
    println!(
        "{:>8}  {:>10}  {:>10}  {:>10}  {:>10}  {:>7}  {:>13}  {:>8}  {:>8}  {:>11}  {:>11}  {:>11}",
        "services",
        "start-up s",
        "RSS start",
        "RSS end",
        "peak RSS",
        "threads",
        "ok/requests",
        "p50 ms",
        "p99 ms",
        "hop p50 µs",
        "hop p99 µs",
        "hop p50 vs"
    );
    let base_hop = median(measured[0].runs.iter().map(|r| r.2).collect()) * 1e3 / hops as f64;
    for m in &measured {
        let (req, ok): (u64, u64) = m.runs.iter().fold((0, 0), |a, r| (a.0 + r.0, a.1 + r.1));
        let (p50, p99) = (median(m.runs.iter().map(|r| r.2).collect()), median(m.runs.iter().map(|r| r.3).collect()));
        let hop50 = p50 * 1e3 / hops as f64;
        println!(
            "{:>8}  {:>10.2}  {:>10}  {:>10}  {:>10}  {:>7}  {:>13}  {:>8.2}  {:>8.2}  {:>11.0}  {:>11.0}  {:>11}",
            thousands(m.services as u64),
            m.startup_s,
            format!("{} MiB", m.rss_started_kib / 1024),
            format!("{} MiB", m.rss_end_kib / 1024),
            format!("{} MiB", m.peak_rss_kib / 1024),
            m.threads,
            format!("{}/{}", thousands(ok), thousands(req)),
            p50,
            p99,
            hop50,
            p99 * 1e3 / hops as f64,
            format!("{:.2}x", hop50 / base_hop),
        );
    }
    let (e, d) = measured.last().map_or((0, 0), |m| m.spans);
    println!("spans of the big system: {} exported, {} dropped", thousands(e), thousands(d));
    Ok(())
}
