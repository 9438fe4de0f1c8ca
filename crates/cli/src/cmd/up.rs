//! `palette up`: run a generated system as supervised local processes
//! until Ctrl-C or SIGTERM (the work is `palette_system::up`).

use std::path::PathBuf;
use std::time::Duration;

use palette_runtime::config::ConfigError;
use palette_system::SupervisorError;
use palette_system::up::{self, LocalSystem, Signals, UpOptions};

use crate::cmd::{Interrupted, UsageError};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    palette up shop/\n  \
    palette up shop/system.json --packed --log-dir /tmp/shop-logs")]
pub struct Args {
    /// A system directory written by `palette generate`, or its system.json.
    #[arg(value_name = "SYSTEM")]
    pub system: PathBuf,
    /// Serve every service from one process instead of one process each.
    #[arg(long)]
    pub packed: bool,
    /// Where the log files go (default: logs/ in the system directory).
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// How long to wait for every service to answer /healthz.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::cmd::parse_duration_ns)]
    pub health_timeout: i64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let system = LocalSystem::load(&args.system).map_err(|e| match e {
        ConfigError::Invalid { path, line, message } => palette_trace::Error::BadData { path, line, message }.into(),
        ConfigError::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
            anyhow::Error::new(UsageError(format!(
                "{}: no such file; write a system with `palette generate MODEL -o DIR`",
                path.display()
            )))
        }
        e => anyhow::Error::new(e),
    })?;
    let mut opts = UpOptions::new(std::env::current_exe()?);
    opts.packed = args.packed;
    opts.log_dir = args.log_dir.as_ref().map(std::path::absolute).transpose()?;
    opts.health_timeout = Duration::from_nanos(args.health_timeout.max(0) as u64);
    // Caught from here on: Ctrl-C during start-up stops the children too.
    let signals = Signals::install("palette up", "")?;
    let supervisor = up::start(&system, &opts)?;
    match supervisor.wait_healthy_unless(opts.health_timeout, || signals.received().is_some()) {
        Ok(()) => {}
        Err(SupervisorError::Interrupted) => {
            let signal = signals.wait();
            let report = supervisor.stop();
            eprintln!("palette up: {signal} while starting; stopped ({} restarts)", report.restarts);
            return Err(Interrupted { signal, kept: String::new() }.into());
        }
        Err(e) => {
            supervisor.stop();
            return Err(e.into());
        }
    }

    let c = &system.config;
    let children = supervisor.children();
    println!(
        "system `{}`: {} services in {} process{}, all healthy",
        c.name,
        c.services.len(),
        children.len(),
        if children.len() == 1 { "" } else { "es" }
    );
    // One line per instance: a replicated service's endpoints are named
    // `NAME (instance i)` by `LocalSystem::children`.
    let endpoints: Vec<_> = children.iter().flat_map(|ch| ch.endpoints.iter().map(move |e| (e, &ch.log))).collect();
    let width = endpoints.iter().map(|(e, _)| e.service.chars().count()).max().unwrap_or(0);
    for (e, log) in endpoints {
        println!("  {:width$}  http://{}  log {}", e.service, e.addr, log.display());
    }
    match system.spans_file() {
        Some(f) => println!("spans: {}", f.display()),
        None => println!("spans: not written to a file (tracing.file is null)"),
    }
    if let Some(url) = &c.tracing.otlp_endpoint {
        println!("spans: also sent to {url}");
    }
    println!("press Ctrl-C to stop");

    let signal = signals.wait();
    eprintln!("palette up: {signal}: stopping {} process(es) ({signal} again to quit now)", children.len());
    let report = supervisor.stop();
    eprintln!(
        "palette up: stopped ({} restart{}{})",
        report.restarts,
        if report.restarts == 1 { "" } else { "s" },
        if report.killed > 0 { format!(", {} killed after the stop timeout", report.killed) } else { String::new() }
    );
    Err(Interrupted { signal, kept: String::new() }.into())
}
