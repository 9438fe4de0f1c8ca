//! `palette load`: open-loop load against a running system's root APIs.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use palette_load::{
    Arrivals, LoadObserver, LoadOptions, Profile, ProfileSpec, Progress, Replay, Target, TracedRoots, load_system,
    run_load,
};

use crate::cmd::{UsageError, parse_duration_ns, thousands};
use crate::progress;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    palette up system/ &   # start the system first\n  \
    palette load system/ --rate 200 --duration 30s\n  \
    palette load system/system.json --replay traces.csv --speed 2 --json\n  \
    palette load system/ --profile sine:period=60s,min=5,max=40 --duration 60s\n  \
    palette load system/ --profile learned:speed=2 --replay traces.csv   # the traces' own rate curve\n  \
    palette load /etc/palette/system.json --peers dns --rate 50   # inside compose or Kubernetes")]
pub struct Args {
    /// A generated system: its system.json, or the directory holding it.
    #[arg(value_name = "SYSTEM")]
    pub system: PathBuf,
    /// Poisson arrivals at this many requests per second (`200` or `200/s`),
    /// over the root APIs in their traced mix.
    #[arg(long, value_name = "R/s", default_value = "10", allow_hyphen_values = true)]
    pub rate: String,
    #[arg(long, value_name = "SPEC", conflicts_with = "rate", help = PROFILE_SHORT, long_help = PROFILE_HELP)]
    pub profile: Option<String>,
    /// Width of the timeline's windows (`5s`): the per-window table and
    /// JSON `timeline`. Default: 5s with --profile, else ~30 windows.
    #[arg(long, value_name = "DURATION")]
    pub window: Option<String>,
    /// The measured window (`60s`, `2m`, `500ms`).
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub duration: String,
    /// Requests sent before the window and not recorded.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub warmup: String,
    /// At most this many requests in flight; later arrivals wait (and their
    /// wait counts in their latency).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub connections: usize,
    /// Instead of Poisson arrivals, replay the inter-arrival times and root
    /// APIs of the root spans in these traces (any format palette reads),
    /// looping when the run is longer. With --profile learned: the traces
    /// the rate curve is learned from (not replayed).
    #[arg(long, value_name = "TRACES", num_args = 1.., conflicts_with = "rate")]
    pub replay: Vec<PathBuf>,
    /// Replay speed: 2 sends twice as fast as traced.
    #[arg(
        long,
        value_name = "X",
        default_value_t = 1.0,
        requires = "replay",
        conflicts_with = "profile",
        allow_hyphen_values = true
    )]
    pub speed: f64,
    /// Seed of the arrival times, root picks and trace ids: same seed, same requests.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the report as JSON (per-API rows, `total`, `send_lag`, `timeline`).
    #[arg(long)]
    pub json: bool,
    /// The host every service is reached on, each at its port from system.json.
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub target_host: String,
    /// `dns`: reach each service at its own `host:port` from system.json (as
    /// peers do inside compose or Kubernetes) instead of --target-host.
    #[arg(long, value_name = "loopback|dns", default_value = "loopback", value_parser = ["loopback", "dns"])]
    pub peers: String,
    /// A request without a complete response after this long is a `timeout` error.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub timeout: String,
    /// Do not check each service's /healthz before the run.
    #[arg(long)]
    pub no_health_check: bool,
}

/// `--profile` in `-h`.
pub(crate) const PROFILE_SHORT: &str =
    "A rate that changes over time: step:, ramp:, sine:, bursts: or learned (see --help)";

/// `--profile` in `--help`: every kind of spec, shared by `load` and `run`.
pub(crate) const PROFILE_HELP: &str = "A rate that changes over the measured window, open loop (instead of --rate):
`step:rates=5,20,10,every=10s` (each rate for 10 s in turn, cycling);
`ramp:from=5,to=40[,over=30s]` (linear over the window or `over`, then held);
`sine:period=60s,min=5,max=40` (min + (max−min)·(1−cos 2πt/period)/2: min at the
start, max at half a period); `bursts:base=5,peak=50,every=20s,length=2s` (peak
over the last 2 s of every 20 s); `learned[:speed=2,scale=0.5,bin=1s]` (the rate
of root spans over time in the traces — per root API — looped, `speed`
compressing time, `scale` multiplying the rate; `palette load` takes the traces
from --replay, `palette run` from TRACES). The profile's clock starts with the
measured window; the warm-up runs at its rate at t = 0. Each whole second gets
exactly the curve's count (rounded, the remainder carried), placed as a Poisson
process would place it.";

fn duration(flag: &str, s: &str) -> Result<Duration, UsageError> {
    let ns = parse_duration_ns(s).map_err(|e| UsageError(format!("{flag}: {e}")))?;
    Ok(Duration::from_nanos(ns.max(0) as u64))
}

fn rate(s: &str) -> Result<f64, UsageError> {
    let number = s.trim().trim_end_matches("/s").trim_end_matches("rps").trim();
    number
        .parse()
        .map_err(|_| UsageError(format!("--rate: `{s}` is not a number of requests per second like 200 or 200/s")))
}

/// A progress bar over the planned run time, on a terminal only.
pub(crate) struct Bar {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
}

impl Bar {
    /// A bar on stderr; setting `stop` ends the run early.
    pub(crate) fn new(stop: Arc<AtomicBool>) -> Bar {
        let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {elapsed}").expect("static template").progress_chars("=> "),
        );
        Bar { bar, stop }
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl LoadObserver for Bar {
    fn progress(&self, p: &Progress) {
        self.bar.set_length(p.planned.as_millis() as u64);
        self.bar.set_position((p.elapsed.as_millis() as u64).min(p.planned.as_millis() as u64));
        let phase = if p.warming_up {
            "warm-up"
        } else if p.elapsed >= p.planned {
            "draining"
        } else {
            "load"
        };
        self.bar.set_message(format!(
            "{phase}: sent {} ok {} errors {} in flight {}",
            thousands(p.sent),
            thousands(p.ok),
            thousands(p.errors),
            thousands(p.in_flight)
        ));
    }
    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Reads the root spans of `inputs`, with a progress bar.
pub(crate) fn read_roots(inputs: &[PathBuf]) -> anyhow::Result<TracedRoots> {
    let bar = progress::Bytes::new(progress::total_bytes(inputs), "reading");
    let roots = TracedRoots::read(inputs, &Default::default(), &bar);
    bar.finish();
    Ok(roots?)
}

/// The arrivals of `--profile SPEC` over a `duration` window of `model`'s
/// system; a learned profile learns from `traces`' roots (`what` says
/// where they came from, in the error when there are none).
pub(crate) fn profile_arrivals(
    spec: &ProfileSpec,
    duration: Duration,
    model: &palette_model::Model,
    traces: Option<&TracedRoots>,
) -> anyhow::Result<Arrivals> {
    let (profile, unmatched) = Profile::new(spec, duration.as_secs_f64(), model, traces)?;
    if unmatched > 0 {
        eprintln!(
            "profile: {} traces start at an API that is not a root of the system; left out of the curve",
            thousands(unmatched)
        );
    }
    if let Some(bin) = profile.bin_s() {
        eprintln!("profile: the traces' rate of root spans in {bin}s bins");
    }
    Ok(Arrivals::Profile { profile: Arc::new(profile) })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (config, path) = load_system(&args.system)?;
    let measured = duration("--duration", &args.duration)?;
    let arrivals = if let Some(spec) = &args.profile {
        let spec = ProfileSpec::parse(spec)?;
        let traces = match (spec.needs_traces(), args.replay.is_empty()) {
            (true, true) => anyhow::bail!(UsageError(format!(
                "--profile {}: a learned profile learns from the traces given with --replay; e.g. --profile learned --replay traces.json",
                spec.text
            ))),
            (false, false) => anyhow::bail!(UsageError(format!(
                "--replay and --profile {} do not go together: --replay replays traced arrivals; with --profile learned it names the traces to learn the rate from",
                spec.text
            ))),
            (true, false) => {
                Some(read_roots(&args.replay).context("cannot read the traces to learn the profile from")?)
            }
            (false, true) => None,
        };
        profile_arrivals(&spec, measured, &config.model, traces.as_ref())?
    } else if args.replay.is_empty() {
        Arrivals::Poisson { rate: rate(&args.rate)? }
    } else {
        let bar = progress::Bytes::new(progress::total_bytes(&args.replay), "reading");
        let replay = Replay::read(&args.replay, &Default::default(), &bar, &config.model);
        bar.finish();
        let replay = replay.context("cannot read the traces to replay")?;
        if replay.unmatched > 0 {
            eprintln!(
                "replay: {} of {} traces start at an API that is not a root of the system; left out",
                thousands(replay.unmatched),
                thousands(replay.unmatched + replay.traces() as u64)
            );
        }
        Arrivals::Replay { replay: Arc::new(replay), speed: args.speed }
    };
    let target = if args.peers == "dns" {
        if args.target_host != "127.0.0.1" {
            anyhow::bail!(UsageError("--target-host and --peers dns do not go together: pick one".into()));
        }
        Target::Dns
    } else {
        Target::Host(args.target_host.clone())
    };
    let opts = LoadOptions {
        arrivals,
        duration: measured,
        warmup: duration("--warmup", &args.warmup)?,
        connections: args.connections,
        seed: args.seed,
        target,
        timeout: duration("--timeout", &args.timeout)?,
        health_check: !args.no_health_check,
        window: args.window.as_deref().map(|w| duration("--window", w)).transpose()?,
        run_id: None,
    };
    opts.validate()?;
    // Ctrl-C or SIGTERM ends the run early with a report of what was
    // measured (and exit 130/143); a second one ends the process.
    let signals = palette_system::up::Signals::install("palette load", "stopping: waiting for requests in flight")?;
    let observer = Bar::new(signals.stop_flag());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let report = rt.block_on(run_load(&opts, &config, &path, &observer));
    observer.finish();
    let report = report?;
    if args.json {
        crate::cmd::print_out(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    } else {
        crate::cmd::print_out(&report.to_text())?;
    }
    if let Some(signal) = signals.received() {
        let kept = "the report above covers the requests sent before it".to_string();
        return Err(crate::cmd::Interrupted { signal, kept }.into());
    }
    if report.total.requests > 0 && report.total.ok == 0 {
        anyhow::bail!(
            "no request succeeded ({} errors); is the system running and reachable?",
            thousands(report.total.errors)
        );
    }
    Ok(())
}
