//! `palette`: the command-line interface. One module per verb; the work is
//! done by the library crates.

mod cmd;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Trace assembly allocates and frees many small buffers; mimalloc keeps
/// that off the profile (glibc's allocator cost a fifth of ingest time).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turn distributed traces into a representative, runnable microservice
/// benchmark system.
///
/// Palette reads traces (Alibaba CallGraph CSV, span CSV, Jaeger, Zipkin or
/// OTLP JSON, plain or gzip), learns the system's topology, call behaviour and
/// latency, and reports how faithful a model or a generated system is.
///
/// Exit codes: 0 ok, 1 runtime failure, 2 usage error, 65 bad input data.
#[derive(Parser)]
#[command(name = "palette", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job on the built-in examples (Figure 1, a web shop): live systems under load, fidelity reports.
    Demo(cmd::demo::Args),
    /// Read traces and report what they hold: counts, topology, shapes, defects.
    Inspect(cmd::inspect::Args),
    /// The whole job: traces → model → running system under load → its spans → fidelity report.
    Run(cmd::run::Args),
    /// Learn a model from traces: topology, per-API PFA and causal latency model (model.json).
    Fit(cmd::fit::Args),
    /// Apply interventions (remove, downscale, delay, work mode…) to a model, writing a new one.
    Edit(cmd::edit::Args),
    /// Merge partial fits of disjoint inputs into one model (same bytes as one fit).
    Merge(cmd::merge::Args),
    /// Show a model: services, APIs, edges, PFA and latency summaries; Graphviz DOT.
    Show(cmd::show::Args),
    /// Sample synthetic traces from a model, as OTLP/JSON lines.
    Simulate(cmd::simulate::Args),
    /// Compare traces with the original's: latency and structure fidelity (table, JSON, HTML with CDF plots).
    Compare(cmd::compare::Args),
    /// Generate a runnable system from a model: system.json, compose.yaml, k8s/, Dockerfile, README.
    Generate(cmd::generate::Args),
    /// Run a generated system as supervised local processes (or on Docker Compose) until Ctrl-C.
    Up(cmd::up::Args),
    /// Make the container image of generated systems from this binary (docker import, offline).
    Image(cmd::image::Args),
    /// Write the built-in example traces (a web shop and Alibaba-style calls) in every format.
    Example(cmd::example::Args),
    /// Measure Palette's own speed and memory; prints a table.
    Bench(cmd::bench::Args),
    /// Serve services of a generated system (system.json) until SIGINT/SIGTERM.
    Serve(cmd::serve::Args),
    /// Open-loop load against a running system's root APIs: Poisson or replayed arrivals, latency table.
    Load(cmd::load::Args),
    /// Check that a served service answers /healthz (exit 0) — the containers' health check.
    Health(cmd::health::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(args),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Example(args) => cmd::example::run(args),
        Command::Fit(args) => cmd::fit::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Merge(args) => cmd::merge::run(args),
        Command::Edit(args) => cmd::edit::run(args),
        Command::Show(args) => cmd::show::run(args),
        Command::Simulate(args) => cmd::simulate::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Compare(args) => cmd::compare::run(args),
        Command::Generate(args) => cmd::generate::run(args),
        Command::Up(args) => cmd::up::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Load(args) => cmd::load::run(args),
        Command::Image(args) => cmd::image::run(args),
        Command::Health(args) => cmd::health::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Stopping on a signal is what the user asked for, not an error.
            match err.downcast_ref::<cmd::Interrupted>() {
                Some(stopped) => eprintln!("palette: {stopped}"),
                None => eprintln!("palette: error: {err:#}"),
            }
            ExitCode::from(exit_code(&err))
        }
    }
}

/// 130/143 for a stop on SIGINT/SIGTERM; otherwise the first cause in the
/// chain that is bad data (65) or a usage error (2); 1 for anything else.
fn exit_code(err: &anyhow::Error) -> u8 {
    use palette_trace::failure::FailureKind;
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<cmd::Interrupted>() {
            return e.exit_code();
        }
        if let Some(kind @ (FailureKind::BadData | FailureKind::Usage)) = failure_kind(cause) {
            return kind.exit_code();
        }
    }
    FailureKind::Runtime.exit_code()
}

/// The kind of failure `cause` says it is, for every error type that can
/// reach `main` (each implements `palette_trace::failure::Classify`): the
/// one place that knows them all.
fn failure_kind(cause: &(dyn std::error::Error + 'static)) -> Option<palette_trace::failure::FailureKind> {
    use palette_trace::failure::Classify;
    macro_rules! first_classified {
        ($($error:ty),* $(,)?) => {
            $(if let Some(e) = cause.downcast_ref::<$error>() {
                return Some(e.failure_kind());
            })*
        };
    }
    first_classified!(
        palette_trace::Error,
        palette_model::file::FileError,
        palette_model::intervene::InterventionError,
        palette_spec::config::ConfigError,
        palette_load::LoadError,
        palette_runtime::server::ServeError,
        palette_system::generate::GenerateError,
        cmd::UsageError,
    );
    None
}
