//! `palette serve`: run services of a generated system until a signal.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use palette_runtime::SystemConfig;
use palette_runtime::config::{ConfigError, PeerHosts};
use palette_runtime::server::{ServeOptions, ShutdownSignals, start};

use crate::cmd::UsageError;

/// How this process reaches the other services.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Peers {
    /// Every service at 127.0.0.1 and its port (local processes).
    Loopback,
    /// Every service at its `host` and port (compose, Kubernetes).
    Dns,
}

#[derive(clap::Args, Debug)]
#[command(
    group(clap::ArgGroup::new("which").required(true).args(["service", "all"])),
    after_help = "Examples:\n  palette serve system/system.json --all\n  \
        palette serve system/system.json --service frontend,cart --listen-host 0.0.0.0 --peers dns\n\n\
        Runs until SIGINT or SIGTERM, then refuses new root requests (503), drains the requests in flight and flushes spans."
)]
pub struct Args {
    /// The system file (`system.json`).
    #[arg(value_name = "SYSTEM")]
    pub system: PathBuf,
    /// Services to run in this process (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub service: Vec<String>,
    /// Run every service of the system in this process, each on its own port.
    #[arg(long)]
    pub all: bool,
    /// Address the services listen on (0.0.0.0 to be reachable from other hosts).
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub listen_host: IpAddr,
    /// How peers are reached: loopback (127.0.0.1:PORT) or dns (HOST:PORT).
    #[arg(long, value_enum, default_value = "loopback")]
    pub peers: Peers,
    /// Serve only this instance (from 0) of a replicated service, on port + INSTANCE
    /// (what `palette up` runs per instance); default: every instance, each on its port.
    #[arg(long, value_name = "INSTANCE")]
    pub instance: Option<u32>,
    /// Longest wait for in-flight requests at shutdown.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = crate::cmd::parse_duration_ns)]
    pub drain: i64,
}

/// Reads a system file; a missing file is a usage error, bad content is bad data.
pub fn load(path: &Path) -> anyhow::Result<SystemConfig> {
    match SystemConfig::load(path) {
        Ok(c) => Ok(c),
        Err(ConfigError::Io { path, source }) => Err(UsageError(format!("{}: {source}", path.display())).into()),
        Err(e) => Err(e.into()),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // First thing: a service started by `palette up`/`run` must not outlive it.
    palette_system::supervise::die_with_supervisor().context("not starting")?;
    let config = load(&args.system)?;
    let base_dir = match args.system.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let opts = ServeOptions {
        services: if args.all { None } else { Some(args.service.clone()) },
        listen_host: args.listen_host,
        peers: match args.peers {
            Peers::Loopback => PeerHosts::Loopback,
            Peers::Dns => PeerHosts::Dns,
        },
        base_dir: base_dir.clone(),
        drain: Duration::from_nanos(args.drain.max(0) as u64),
        instance: args.instance,
        programs: Default::default(),
    };
    let spans = describe_spans(&config, &base_dir);
    let protocols = match config.rpc {
        palette_runtime::config::RpcMode::Http => "",
        palette_runtime::config::RpcMode::Grpc => " (gRPC palette.v1.Palette/Call, and HTTP/1.1)",
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start Tokio")?;
    runtime.block_on(async move {
        // Caught before anyone is told the services are up.
        let mut signals = ShutdownSignals::listen().context("cannot catch SIGINT and SIGTERM")?;
        let running = start(config, &opts).await?;
        // A closed stdout (`palette serve … | head -1`) must not stop the
        // services: what is printed is for people, so errors are ignored.
        let mut out = std::io::stdout();
        for (name, addr) in running.listening() {
            let _ = writeln!(out, "{name} listening on http://{addr}{protocols}");
        }
        let _ = writeln!(out, "{spans}");
        let signal = signals.recv().await;
        eprintln!(
            "palette serve: {signal}: stopping (draining for up to {:?}; {signal} again to quit now)…",
            opts.drain
        );
        tokio::spawn(async move {
            let again = signals.recv().await;
            eprintln!("palette serve: {again} again: quitting now");
            std::process::exit(i32::from(palette_system::up::exit_code(again)));
        });
        let stats = running.shutdown().await;
        eprintln!(
            "palette serve: stopped; {} spans exported, {} dropped",
            crate::cmd::thousands(stats.exported),
            crate::cmd::thousands(stats.dropped)
        );
        Err(crate::cmd::Interrupted { signal, kept: String::new() }.into())
    })
}

/// Where the spans go, for the start-up message.
fn describe_spans(config: &SystemConfig, base_dir: &Path) -> String {
    let t = &config.tracing;
    let mut to = Vec::new();
    if let Some(f) = &t.file {
        let p = Path::new(f);
        to.push(if p.is_absolute() { p.display().to_string() } else { base_dir.join(p).display().to_string() });
    }
    if let Some(e) = &t.otlp_endpoint {
        to.push(format!("{e} (OTLP/HTTP)"));
    }
    if to.is_empty() {
        "spans are not exported (tracing.file and tracing.otlp_endpoint are null)".into()
    } else {
        format!("spans → {} (sample rate {})", to.join(" and "), t.sample_rate)
    }
}
