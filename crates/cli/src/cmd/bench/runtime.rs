//! `palette bench runtime`: what the runtime costs per hop and how many
//! requests one core serves, against a bare hyper server measured in the
//! same run.
//!
//! Servers run as child processes (`palette serve`, and a hidden bare hyper
//! echo server); the load comes from this process over raw keep-alive TCP
//! (a request written, the response read to its end), so the client adds
//! as little as possible to either side.
//!
//! (a) Latency: one connection, one request at a time, through a chain of
//! zero-work services (tracing on, spans to a file) and through the bare
//! server; the chain's round trip divided by its hops is the per-hop cost.
//! The same for gRPC (`"rpc": "grpc"`): a chain whose services call each
//! other over gRPC, loaded over gRPC by the runtime's own client, against a
//! bare gRPC server (the runtime's gRPC server loop, echoing) loaded by the
//! same client.
//! (b) Throughput: closed-loop load on many connections against one
//! zero-work service and against the bare server, each pinned to core 0
//! (`taskset -c 0`); the load generator runs on the remaining cores.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cmd::bench::machine;
use crate::cmd::thousands;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example (the run recorded in BENCHMARKS.md):\n  \
    cargo build --release && target/release/palette bench runtime --dir /tmp/pbr")]
pub struct Args {
    /// Services in the latency chain (each calls the next).
    #[arg(long, default_value_t = 5)]
    pub hops: usize,
    /// Sequential requests per latency measurement (per server, taking turns).
    #[arg(long, default_value_t = 5000)]
    pub requests: usize,
    /// Length of each throughput measurement (per server, in one-second turns).
    #[arg(long, default_value = "5s", value_parser = crate::cmd::parse_duration_ns)]
    pub duration: i64,
    /// Pause after each latency request: at a low request rate the servers'
    /// threads sleep between requests and every request pays their wake-ups
    /// (0: back to back).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = crate::cmd::parse_duration_ns)]
    pub gap: i64,
    /// Concurrent connections of the throughput load.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Runs of each measurement, interleaved; the table shows the median.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Where the systems and their span files go (removed afterwards).
    #[arg(long, default_value = "bench-out")]
    pub dir: PathBuf,
}

/// Ports free right now.
pub(crate) fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let l = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<Vec<_>, _>>()?;
    l.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// A server process; stopped with SIGTERM when dropped.
pub(crate) struct Server {
    child: Child,
    stopped: bool,
}

impl Server {
    /// Starts `palette ARGS` (under `taskset -c 0` when `pin`) and waits for
    /// its `listening` lines.
    pub(crate) fn start(args: &[&str], pin: bool, listening: usize) -> anyhow::Result<Server> {
        let exe = std::env::current_exe().context("cannot find the palette binary")?;
        let mut cmd = if pin {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let mut child = cmd
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut seen = 0;
        while seen < listening {
            let mut line = String::new();
            if out.read_line(&mut line)? == 0 {
                let mut err = String::new();
                let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                bail!("{cmd:?} exited before listening: {}", err.trim());
            }
            seen += usize::from(line.contains(" listening on "));
        }
        // Whatever else it prints is read, so it never writes to a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Ok(Server { child, stopped: false })
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, wait, and what it said on stderr.
    pub(crate) fn stop(mut self) -> anyhow::Result<String> {
        self.stopped = true;
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        let status = self.child.wait()?;
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err)?;
        }
        if !status.success() {
            bail!("server exited with {status}: {}", err.trim());
        }
        Ok(err)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A keep-alive connection sending one request at a time.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

const REQUEST: &[u8] = b"POST /op/hop HTTP/1.1\r\nhost: bench\r\ncontent-length: 0\r\n\r\n";

impl Conn {
    async fn open(port: u16) -> anyhow::Result<Conn> {
        let stream =
            TcpStream::connect(("127.0.0.1", port)).await.with_context(|| format!("cannot connect to port {port}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, buf: Vec::with_capacity(4096) })
    }

    /// Sends the request and reads the whole response; its status.
    async fn request(&mut self) -> anyhow::Result<u16> {
        self.stream.write_all(REQUEST).await?;
        loop {
            if let Some((status, len)) = parse_response(&self.buf) {
                self.buf.drain(..len);
                return Ok(status);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// (status, length) of a complete response at the start of `b`.
fn parse_response(b: &[u8]) -> Option<(u16, usize)> {
    let head_end = b.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&b[..head_end]).ok()?;
    let status = head.get(9..12)?.parse().ok()?;
    let body = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (b.len() >= head_end + body).then_some((status, head_end + body))
}

/// A sequential client of one server: raw HTTP/1.1, or the runtime's gRPC client.
enum Client {
    Http(Conn),
    /// One HTTP/2 connection, opened by the first call.
    Grpc(palette_runtime::grpc::GrpcClient),
}

impl Client {
    async fn open(port: u16, grpc: bool) -> anyhow::Result<Client> {
        Ok(if grpc {
            Client::Grpc(palette_runtime::grpc::GrpcClient::new(vec![format!("127.0.0.1:{port}")], 1 << 20))
        } else {
            Client::Http(Conn::open(port).await?)
        })
    }

    async fn request(&mut self) -> anyhow::Result<u16> {
        use palette_runtime::transport::{CallHeaders, Transport};
        match self {
            Client::Http(c) => c.request().await,
            Client::Grpc(g) => Ok(g.call(0, "hop", CallHeaders::default(), Default::default()).await?.status),
        }
    }
}

/// Round trips of `n` sequential requests to each (port, gRPC?), nanoseconds,
/// sorted, one list per port. The ports take turns in blocks of 100
/// requests, on a connection each, so every one sees the same machine: on
/// a shared machine the round trip of even the bare server moves by 2× from
/// one second to the next.
async fn latencies(ports: &[(u16, bool)], n: usize, gap: Duration) -> anyhow::Result<Vec<Vec<u64>>> {
    const BLOCK: usize = 100;
    let mut conns = Vec::new();
    for &(p, grpc) in ports {
        conns.push(Client::open(p, grpc).await?);
    }
    let mut out = vec![Vec::with_capacity(n); ports.len()];
    while out[0].len() < n {
        for (c, o) in conns.iter_mut().zip(&mut out) {
            for _ in 0..BLOCK.min(n - o.len()) {
                let t = Instant::now();
                let status = c.request().await?;
                o.push(t.elapsed().as_nanos() as u64);
                if status != 200 {
                    bail!("status {status}");
                }
                if !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
            }
        }
    }
    out.iter_mut().for_each(|o| o.sort_unstable());
    Ok(out)
}

/// Requests per second over `duration` from `connections` closed loops.
async fn throughput(port: u16, connections: usize, duration: Duration) -> anyhow::Result<f64> {
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let mut c = Conn::open(port).await?;
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < end {
                if c.request().await? != 200 {
                    bail!("a request failed");
                }
                done += 1;
            }
            Ok::<u64, anyhow::Error>(done)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn quantile(sorted: &[u64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Writes a zero-work chain of `n` services on free ports to
/// `dir/system.json`, with spans to `dir/spans.jsonl` or none.
fn write_chain(dir: &Path, n: usize, traced: bool, grpc: bool) -> anyhow::Result<(PathBuf, u16)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ports = free_ports(n)?;
    let mut config = palette_runtime::synthetic::chain(&ports, &vec![0; n]);
    if grpc {
        config.rpc = palette_runtime::config::RpcMode::Grpc;
    }
    if !traced {
        config.tracing.file = None;
    }
    let path = dir.join("system.json");
    std::fs::write(&path, config.to_json()).with_context(|| format!("cannot write {}", path.display()))?;
    let _ = std::fs::remove_file(dir.join("spans.jsonl"));
    Ok((path, ports[0]))
}

/// The spans a stopped `palette serve` says it exported and dropped.
pub(crate) fn span_counts(stderr: &str) -> (u64, u64) {
    let line = stderr.lines().find(|l| l.contains("spans exported")).unwrap_or("");
    let nums: Vec<u64> =
        line.split(|c: char| !c.is_ascii_digit() && c != ',').filter_map(|w| w.replace(',', "").parse().ok()).collect();
    (nums.first().copied().unwrap_or(0), nums.get(1).copied().unwrap_or(0))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if Command::new("taskset").arg("-V").output().is_err() {
        bail!("taskset (util-linux) is needed to pin the servers to one core");
    }
    let repeat = args.repeat.max(1);
    let hops = args.hops.max(1);
    let dirs = [
        "runtime-chain",
        "runtime-chain-untraced",
        "runtime-single",
        "runtime-single-untraced",
        "runtime-grpc-chain",
        "runtime-grpc-chain-untraced",
    ];
    let (chain, chain_port) = write_chain(&args.dir.join(dirs[0]), hops, true, false)?;
    let (chain_off, chain_off_port) = write_chain(&args.dir.join(dirs[1]), hops, false, false)?;
    let (single, single_port) = write_chain(&args.dir.join(dirs[2]), 1, true, false)?;
    let (single_off, single_off_port) = write_chain(&args.dir.join(dirs[3]), 1, false, false)?;
    let (grpc_chain, grpc_port) = write_chain(&args.dir.join(dirs[4]), hops, true, true)?;
    let (grpc_chain_off, grpc_off_port) = write_chain(&args.dir.join(dirs[5]), hops, false, true)?;
    let bare_ports = free_ports(3)?;
    let path = |p: &Path| p.to_str().map(String::from).context("non-UTF-8 path");
    let (bare_port, pinned_bare_port) = (bare_ports[0].to_string(), bare_ports[1].to_string());
    let bare_grpc_port = bare_ports[2].to_string();
    let servers = [
        Server::start(&["serve", &path(&chain)?, "--all"], false, hops)?,
        Server::start(&["serve", &path(&chain_off)?, "--all"], false, hops)?,
        Server::start(&["serve", &path(&single)?, "--all"], true, 1)?,
        Server::start(&["serve", &path(&single_off)?, "--all"], true, 1)?,
        Server::start(&["bench", "runtime-bare", "--port", &bare_port], false, 1)?,
        Server::start(&["bench", "runtime-bare", "--port", &pinned_bare_port], true, 1)?,
        Server::start(&["serve", &path(&grpc_chain)?, "--all"], false, hops)?,
        Server::start(&["serve", &path(&grpc_chain_off)?, "--all"], false, hops)?,
        Server::start(&["bench", "runtime-bare", "--grpc", "--port", &bare_grpc_port], false, 1)?,
    ];

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let duration = Duration::from_nanos(args.duration.max(1) as u64);
    let gap = Duration::from_nanos(args.gap.max(0) as u64);
    let (mut bare_lat, mut chain_lat, mut chain_off_lat) = (vec![], vec![], vec![]);
    let (mut bare_grpc_lat, mut grpc_lat, mut grpc_off_lat) = (vec![], vec![], vec![]);
    let ports = [
        (bare_ports[0], false),
        (chain_port, false),
        (chain_off_port, false),
        (bare_ports[2], true),
        (grpc_port, true),
        (grpc_off_port, true),
    ];
    let (mut bare_rps, mut palette_rps, mut palette_off_rps) = (vec![], vec![], vec![]);
    rt.block_on(async {
        // Warm-up: connections, pools, caches, the CPU governor.
        latencies(&ports, 500, Duration::ZERO).await?;
        for port in [bare_ports[1], single_port, single_off_port] {
            throughput(port, args.connections, Duration::from_millis(500)).await?;
        }
        for run in 1..=repeat {
            eprintln!("run {run}/{repeat}…");
            let mut l = latencies(&ports, args.requests, gap).await?.into_iter();
            bare_lat.extend(l.next());
            chain_lat.extend(l.next());
            chain_off_lat.extend(l.next());
            bare_grpc_lat.extend(l.next());
            grpc_lat.extend(l.next());
            grpc_off_lat.extend(l.next());
            // Throughput in one-second turns, for the same reason.
            let (mut done, mut time) = ([0.0f64; 3], 0.0);
            while time < duration.as_secs_f64() {
                let slice = Duration::from_secs(1).min(duration);
                for (i, port) in [bare_ports[1], single_port, single_off_port].into_iter().enumerate() {
                    done[i] += throughput(port, args.connections, slice).await? * slice.as_secs_f64();
                }
                time += slice.as_secs_f64();
            }
            bare_rps.push(done[0] / time);
            palette_rps.push(done[1] / time);
            palette_off_rps.push(done[2] / time);
        }
        Ok::<(), anyhow::Error>(())
    })?;
    let mut said = Vec::new();
    for s in servers {
        said.push(s.stop()?);
    }
    let (chain_spans, chain_dropped) = span_counts(&said[0]);
    let (single_spans, single_dropped) = span_counts(&said[2]);
    let (grpc_spans, grpc_dropped) = span_counts(&said[6]);
    for d in dirs {
        let _ = std::fs::remove_dir_all(args.dir.join(d));
    }

    let us = |runs: &[Vec<u64>], q: f64, per: f64| median(runs.iter().map(|r| quantile(r, q) / per / 1e3).collect());
    let h = hops as f64;
    println!(
        "runtime: {hops}-service zero-work chain and one pinned service vs bare hyper; spans to a file \
         unless `tracing off`; median of {repeat} runs; {}",
        machine()
    );
    println!(
        "(a) round trip, 1 connection, {} sequential requests{}",
        thousands(args.requests as u64),
        if gap.is_zero() { String::new() } else { format!(", {:?} apart", gap) }
    );
    println!("{:<34} {:>9} {:>9}", "", "p50 µs", "p99 µs");
    let bare50 = us(&bare_lat, 0.5, 1.0);
    let bare99 = us(&bare_lat, 0.99, 1.0);
    println!("{:<34} {bare50:>9.1} {bare99:>9.1}", "bare hyper (1 hop)");
    println!(
        "{:<34} {:>9.1} {:>9.1}",
        format!("palette chain ({hops} hops)"),
        us(&chain_lat, 0.5, 1.0),
        us(&chain_lat, 0.99, 1.0)
    );
    for (name, runs) in [("palette per hop (chain / hops)", &chain_lat), ("  same, tracing off", &chain_off_lat)] {
        let (p50, p99) = (us(runs, 0.5, h), us(runs, 0.99, h));
        println!(
            "{name:<34} {p50:>9.1} {p99:>9.1}   {:.2}x / {:.2}x of bare (target ≤ 1.5x)",
            p50 / bare50,
            p99 / bare99
        );
    }
    let http50 = us(&chain_lat, 0.5, h);
    let http99 = us(&chain_lat, 0.99, h);
    let bare_grpc50 = us(&bare_grpc_lat, 0.5, 1.0);
    let bare_grpc99 = us(&bare_grpc_lat, 0.99, 1.0);
    println!("{:<34} {bare_grpc50:>9.1} {bare_grpc99:>9.1}", "bare gRPC (1 hop)");
    println!(
        "{:<34} {:>9.1} {:>9.1}",
        format!("palette gRPC chain ({hops} hops)"),
        us(&grpc_lat, 0.5, 1.0),
        us(&grpc_lat, 0.99, 1.0)
    );
    for (name, runs) in [("palette gRPC per hop", &grpc_lat), ("  same, tracing off", &grpc_off_lat)] {
        let (p50, p99) = (us(runs, 0.5, h), us(runs, 0.99, h));
        println!(
            "{name:<34} {p50:>9.1} {p99:>9.1}   {:.2}x / {:.2}x of bare gRPC",
            p50 / bare_grpc50,
            p99 / bare_grpc99
        );
    }
    let (g50, g99) = (us(&grpc_lat, 0.5, h), us(&grpc_lat, 0.99, h));
    println!(
        "{:<34} {:>9.1} {:>9.1}   gRPC hop {:.2}x / {:.2}x of an HTTP/1.1 hop; bare gRPC {:.2}x / {:.2}x of bare hyper",
        "gRPC - HTTP per hop (tracing on)",
        g50 - http50,
        g99 - http99,
        g50 / http50,
        g99 / http99,
        bare_grpc50 / bare50,
        bare_grpc99 / bare99
    );
    println!(
        "(b) throughput, server pinned to core 0, {} connections, {:.0} s per run",
        args.connections,
        duration.as_secs_f64()
    );
    let b = median(bare_rps);
    println!("{:<34} {:>12}", "bare hyper", format!("{} req/s", thousands(b as u64)));
    for (name, runs) in [("palette (1 zero-work service)", palette_rps), ("  same, tracing off", palette_off_rps)] {
        let p = median(runs);
        println!(
            "{name:<34} {:>12}   ({:.0}% of bare; target ≥ 50%)",
            format!("{} req/s", thousands(p as u64)),
            100.0 * p / b
        );
    }
    println!(
        "spans: chain {} exported, {} dropped; pinned service {} exported, {} dropped; gRPC chain {} exported, {} dropped",
        thousands(chain_spans),
        thousands(chain_dropped),
        thousands(single_spans),
        thousands(single_dropped),
        thousands(grpc_spans),
        thousands(grpc_dropped)
    );
    Ok(())
}

/// The baseline: a bare hyper HTTP/1.1 server on the same runtime setup
/// as `palette serve`, answering every request with its own body.
pub fn bare_server(port: u16) -> anyhow::Result<()> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("bare listening on http://127.0.0.1:{port}");
        let serve = async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(body)))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        };
        tokio::select! {
            _ = serve => {}
            _ = palette_runtime::server::shutdown_signal() => {}
        }
        Ok(())
    })
}

/// Answers every call with its own payload at once: the gRPC baseline.
struct Echo;

impl palette_runtime::transport::Handler for Echo {
    fn handle(
        self: std::sync::Arc<Self>,
        req: palette_runtime::transport::Inbound,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = palette_runtime::transport::Outbound> + Send>> {
        Box::pin(async move { palette_runtime::transport::Outbound::Ok { body: req.body, server_ns: 0, calls: 0 } })
    }

    fn max_body_bytes(&self) -> u64 {
        1 << 20
    }
}

/// The gRPC baseline: the runtime's gRPC server loop (what a gRPC system's
/// services run), with a handler that only echoes.
pub fn bare_grpc_server(port: u16) -> anyhow::Result<()> {
    use palette_runtime::transport::Phase;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("bare gRPC listening on http://127.0.0.1:{port}");
        let (phase, phase_rx) = tokio::sync::watch::channel(Phase::Running);
        let serve = palette_runtime::grpc::serve_grpc(listener, std::sync::Arc::new(Echo), 1024, phase_rx);
        tokio::select! {
            _ = serve => {}
            _ = palette_runtime::server::shutdown_signal() => {}
        }
        drop(phase);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_framed() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcHTTP/1.1 503";
        assert_eq!(parse_response(r), Some((200, 41)));
        assert_eq!(parse_response(&r[..39]), None);
        assert_eq!(parse_response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), Some((404, 45)));
        assert_eq!(span_counts("palette serve: stopped; 1,234 spans exported, 5 dropped"), (1234, 5));
    }
}
