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
    palette up shop/system.json --packed --log-dir /tmp/shop-logs\n  \
    palette image && palette up shop/ --target compose")]
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
    /// Where the services run: local processes, or containers of the
    /// directory's compose.yaml (Docker Compose; the image is made from this
    /// binary first when it is the default and missing). On Ctrl-C the
    /// containers are stopped, the span file is copied into the system
    /// directory and everything the project made is removed.
    #[arg(long, value_enum, default_value_t = Target::Local)]
    pub target: Target,
    /// Run this binary in place of `palette serve` for each service: the
    /// generated code's (`palette generate --code rust`, then `cargo build
    /// --release` in DIR/code), which takes the same arguments.
    #[arg(long, value_name = "BINARY")]
    pub serve_with: Option<PathBuf>,
}

/// Where `palette up` runs the services.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Target {
    Local,
    Compose,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let system = LocalSystem::load(&args.system).map_err(|e| match e {
        ConfigError::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
            anyhow::Error::new(UsageError(format!(
                "{}: no such file; write a system with `palette generate MODEL -o DIR`",
                path.display()
            )))
        }
        e => anyhow::Error::new(e),
    })?;
    if args.target == Target::Compose {
        return on_compose(&system, Duration::from_nanos(args.health_timeout.max(0) as u64));
    }
    let serve = match &args.serve_with {
        Some(bin) if !bin.is_file() => {
            return Err(UsageError(format!(
                "{}: no such binary; build the generated code first (`cargo build --release` in DIR/code)",
                bin.display()
            ))
            .into());
        }
        Some(bin) => std::path::absolute(bin)?,
        None => std::env::current_exe()?,
    };
    let mut opts = UpOptions::new(serve);
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

/// `palette up --target compose`: the same system, as containers.
fn on_compose(system: &LocalSystem, health_timeout: Duration) -> anyhow::Result<()> {
    use palette_system::docker::{self, ComposeSystem, ComposeTool, DockerError};
    let project = ComposeSystem::new(&system.dir, &system.config, ComposeTool::detect()?).map_err(|e| match e {
        e @ DockerError::NoComposeFile { .. } => anyhow::Error::new(UsageError(e.to_string())),
        e => e.into(),
    })?;
    let image = project.image()?;
    if !docker::image_exists(&image)? {
        if image != palette_system::generate::DEFAULT_IMAGE {
            return Err(UsageError(format!(
                "image `{image}` is not on this Docker host: make it with `palette image --tag {image}` \
                 or build the system's Dockerfile"
            ))
            .into());
        }
        let report = palette_system::image::import(&std::env::current_exe()?, &image)?;
        eprintln!("palette up: made the image {image} from this binary ({} files)", report.files.len());
    }
    let signals = Signals::install("palette up", "")?;
    let last = project.clone();
    signals.on_quit(move || {
        eprintln!("palette up: killing and removing the containers of project `{}`", last.project);
        let _ = last.kill();
        let _ = last.down();
    });
    let c = &system.config;
    eprintln!("palette up: starting {} services on Docker Compose (project `{}`) …", c.services.len(), project.project);
    let started = project.up().and_then(|()| project.wait_healthy(c, health_timeout, || signals.received().is_some()));
    if let Err(e) = started {
        let logs = project.logs_tail(5);
        let _ = project.down();
        if matches!(e, DockerError::Interrupted) {
            let signal = signals.wait();
            eprintln!("palette up: {signal} while starting; removed the project");
            return Err(Interrupted { signal, kept: String::new() }.into());
        }
        return Err(anyhow::Error::new(e).context(format!("the compose project was removed; last log lines:\n{logs}")));
    }
    println!(
        "system `{}`: {} services on Docker Compose (project `{}`), all healthy",
        c.name,
        c.services.len(),
        project.project
    );
    let width = c.services.iter().map(|s| s.name.chars().count()).max().unwrap_or(0);
    for s in &c.services {
        let replicas = if s.instances > 1 { format!("  ({} replicas)", s.instances) } else { String::new() };
        println!("  {:width$}  http://127.0.0.1:{}{replicas}", s.name, s.port);
    }
    println!("press Ctrl-C to stop");
    let signal = signals.wait();
    eprintln!("palette up: {signal}: stopping the containers ({signal} again to quit now)");
    let stopped = project.stop();
    let mut kept = String::new();
    if let (Ok(()), Some(to), Some(first)) = (&stopped, system.spans_file(), c.services.first()) {
        let file = c.tracing.file.as_deref().unwrap_or_default();
        match project.copy_out(&first.host, file, &to) {
            Ok(true) => kept = format!("spans in {}", to.display()),
            Ok(false) => eprintln!("palette up: the services wrote no span file"),
            Err(e) => eprintln!("palette up: could not copy the spans out: {e}"),
        }
    }
    project.down()?;
    stopped?;
    eprintln!(
        "palette up: removed the compose project{}",
        if kept.is_empty() { String::new() } else { format!("; {kept}") }
    );
    Err(Interrupted { signal, kept }.into())
}
