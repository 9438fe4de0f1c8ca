//! `palette compare`: how closely candidates' traces match the original's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use palette_report::{CollectOptions, Collector, CompareOptions, Comparison, HtmlOptions, Input, compare};
use palette_trace::{CallTree, TraceSink};

use crate::cmd::read::ReadArgs;
use crate::cmd::{UsageError, parse_duration_ns, thousands};

#[derive(clap::Args, Debug)]
#[command(
    override_usage = "palette compare [OPTIONS] ORIGINAL CANDIDATE...",
    after_help = "The first input is the original (the reference); each further input is a candidate, labelled \
    by its file stem or by --label (in order).\n\n\
    Every figure is shown with its noise floor in brackets: how far the original is from itself at the \
    candidate's sample size (95%, by seeded bootstrap). Verdicts: close (within every floor, and KS and W1 \
    within --close-ks/--close-w1), differs (beyond a floor), too few samples (under --min-samples, or a \
    floor wider than the bounds), missing. The report starts with one verdict line per candidate.\n\n\
    Examples:\n  \
    palette compare traces.jsonl palette.jsonl naive.jsonl\n  \
    palette compare traces.jsonl sim.jsonl base.jsonl --label palette --label naive --html report/\n  \
    palette compare --json traces.csv system-spans/"
)]
pub struct Args {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Label of each candidate, in order (repeatable); the rest are labelled
    /// by file stem.
    #[arg(long = "label", value_name = "NAME")]
    pub labels: Vec<String>,
    /// Print everything as JSON (top-level `roots`, `apis`, `callers`,
    /// `edges`, `structure`, each keyed by candidate label).
    #[arg(long)]
    pub json: bool,
    /// Also print each edge's caller-observed latency (client span) with
    /// its p50/p90/p99 shift in ms and as a ratio: the delay to give
    /// `palette edit --delay` to reproduce a candidate such as a fault.
    #[arg(long)]
    pub edges: bool,
    /// Also write a self-contained HTML report with CDF plots to DIR/index.html.
    #[arg(long, value_name = "DIR")]
    pub html: Option<PathBuf>,
    /// APIs to show and plot (most executed first).
    #[arg(long, default_value_t = 12)]
    pub top: usize,
    /// Latency values kept per distribution (a fixed-seed reservoir sample
    /// beyond that), which bounds memory.
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    pub sample_cap: usize,
    /// A call joins the current stage only if it starts more than this
    /// before every call of the stage has ended (as `palette fit` cuts
    /// stages): shorter overlaps are clock noise, not concurrency.
    #[arg(long, value_name = "DURATION", default_value = "100us")]
    pub stage_tolerance: String,
    /// Absolute bound of a "close" verdict, beside the noise floor: a KS
    /// statistic above this is never close, however few the samples ...
    #[arg(long, default_value_t = 0.25, value_name = "D")]
    pub close_ks: f64,
    /// ... and likewise Wasserstein-1 as a fraction of the original's mean.
    #[arg(long, default_value_t = 0.25, value_name = "FRACTION")]
    pub close_w1: f64,
    /// Fewest values on each side for a verdict; fewer is "too few samples".
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub min_samples: u64,
    /// Bootstrap draws for each noise floor and confidence interval.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub bootstrap: usize,
}

/// One candidate to compare: the span files of its runs (one unless it was
/// run several times) and what is known of how they were made.
pub struct Candidate {
    /// Its label in the report.
    pub label: String,
    /// One file per run.
    pub runs: Vec<PathBuf>,
    /// Per run, the wall-clock window (unix ns, `[from, until)`) whose root
    /// requests count; traces that started outside it (warm-up traffic) are
    /// left out. Empty: every trace counts.
    pub windows: Vec<(i64, i64)>,
    /// Why the host was busy while it ran, if it was.
    pub host_busy: Option<String>,
}

/// What reading one run of a candidate kept and left out.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunCount {
    /// Traces compared.
    pub compared: u64,
    /// Traces left out because their root started outside the window.
    pub excluded: u64,
}

/// A [`Collector`] that keeps only the traces whose root started in one of
/// the windows.
struct InWindows<'a> {
    collector: &'a mut Collector,
    windows: &'a [(i64, i64)],
    excluded: u64,
}

impl TraceSink for InWindows<'_> {
    fn trace(&mut self, tree: &CallTree) -> Result<(), palette_trace::Error> {
        let start = tree.root().start_ns;
        if self.windows.is_empty() || self.windows.iter().any(|&(from, until)| (from..until).contains(&start)) {
            self.collector.add(tree);
        } else {
            self.excluded += 1;
        }
        Ok(())
    }
}

/// A file's label: its name without directories and trace extensions
/// (`.gz`, `.jsonl`, `.json`, `.ndjson`, `.csv`).
pub fn stem(path: &Path) -> String {
    let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    let name = [".jsonl", ".ndjson", ".json", ".csv"].iter().find_map(|e| name.strip_suffix(e)).unwrap_or(name);
    name.to_string()
}

impl Args {
    /// The candidates' labels, checked.
    fn labels(&self) -> Result<Vec<String>, UsageError> {
        let candidates = &self.read.inputs[1..];
        if self.labels.len() > candidates.len() {
            return Err(UsageError(format!(
                "{} --label given for {} candidate(s); give at most one per candidate",
                self.labels.len(),
                candidates.len()
            )));
        }
        let labels: Vec<String> = candidates
            .iter()
            .enumerate()
            .map(|(i, p)| self.labels.get(i).cloned().unwrap_or_else(|| stem(p)))
            .collect();
        for (i, l) in labels.iter().enumerate() {
            if l.trim().is_empty() {
                return Err(UsageError("--label: a label cannot be empty".into()));
            }
            if labels[..i].contains(l) {
                return Err(UsageError(format!(
                    "two candidates are labelled `{l}`; name them apart with --label NAME (one per candidate, in order)"
                )));
            }
        }
        Ok(labels)
    }

    fn collect_options(&self) -> Result<CollectOptions, UsageError> {
        if self.sample_cap == 0 {
            return Err(UsageError("--sample-cap must be at least 1".into()));
        }
        let tolerance =
            parse_duration_ns(&self.stage_tolerance).map_err(|e| UsageError(format!("--stage-tolerance: {e}")))?;
        Ok(CollectOptions { sample_cap: self.sample_cap, seed: 1, stage_tolerance_ns: tolerance })
    }

    /// `ReadArgs` for one of the inputs, with every other reading flag kept.
    fn read_one(&self, input: &Path) -> ReadArgs {
        ReadArgs {
            inputs: vec![input.to_path_buf()],
            format: self.read.format,
            window: self.read.window.clone(),
            strict: self.read.strict,
            on_defect: self.read.on_defect.clone(),
            no_adopt: self.read.no_adopt,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.read.inputs.len() < 2 {
        anyhow::bail!(UsageError(
            "compare needs the original and at least one candidate: palette compare ORIGINAL CANDIDATE...".into()
        ));
    }
    let labels = args.labels()?;
    let started = Instant::now();
    let original = args.read_original(&args.read.inputs[..1])?;
    let candidates: Vec<Input> = args.read.inputs[1..]
        .iter()
        .zip(labels)
        .map(|(p, label)| {
            let c = Candidate { label, runs: vec![p.clone()], windows: Vec::new(), host_busy: None };
            args.read_candidate(&c).map(|(input, _)| input)
        })
        .collect::<anyhow::Result<_>>()?;
    args.report(&original, &candidates, metadata(None), started)?;
    Ok(())
}

/// What every report says of how it was made; `run` adds its own fields.
pub fn metadata(extra: Option<serde_json::Map<String, serde_json::Value>>) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    let version = match option_env!("PALETTE_COMMIT") {
        Some(commit) if !commit.is_empty() => format!("{} (commit {commit})", env!("CARGO_PKG_VERSION")),
        _ => env!("CARGO_PKG_VERSION").to_string(),
    };
    m.insert("palette".into(), version.into());
    let argv: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    m.insert("command".into(), argv.join(" ").into());
    m.insert("date".into(), crate::cmd::utc_now().into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    m.insert("host CPUs".into(), cpus.into());
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let first: Vec<&str> = load.split_whitespace().take(3).collect();
        m.insert("host load average (1, 5, 15 min, at the report)".into(), first.join(" ").into());
    }
    if let Some(extra) = extra {
        m.extend(extra);
    }
    serde_json::Value::Object(m)
}

impl Args {
    fn compare_options(&self) -> Result<CompareOptions, UsageError> {
        let bounds_ok = self.close_ks > 0.0 && self.close_ks <= 1.0 && self.close_w1 > 0.0 && self.close_w1.is_finite();
        if !bounds_ok {
            return Err(UsageError("--close-ks must be in (0, 1] and --close-w1 a positive fraction".into()));
        }
        if self.bootstrap < 20 {
            return Err(UsageError("--bootstrap must be at least 20 draws".into()));
        }
        let mut opts = CompareOptions {
            close_ks: self.close_ks,
            close_w1: self.close_w1,
            min_samples: self.min_samples,
            ..CompareOptions::default()
        };
        opts.floor.replicates = self.bootstrap;
        Ok(opts)
    }

    /// Reads `files` into one profile, keeping traces whose root started in `windows`.
    fn read_profile(
        &self,
        files: &[PathBuf],
        windows: &[(i64, i64)],
    ) -> anyhow::Result<(palette_report::Profile, RunCount)> {
        let mut collector = Collector::new(self.collect_options()?);
        let mut read = self.read_one(&files[0]);
        read.inputs = files.to_vec();
        let mut sink = InWindows { collector: &mut collector, windows, excluded: 0 };
        let summary = read.read(&mut sink)?;
        let excluded = sink.excluded;
        if collector.traces() == 0 {
            let what = if excluded > 0 {
                format!("no trace started in the measured window ({excluded} outside it)")
            } else {
                "no trace is left to compare (every trace was dropped)".into()
            };
            return Err(palette_trace::Error::BadData { path: files[0].clone(), line: 0, message: what }.into());
        }
        let compared = collector.traces();
        Ok((collector.finish(&summary.names), RunCount { compared, excluded }))
    }

    /// The original: `paths` read as one input (`compare` gives its first
    /// input; `run` every trace file it fitted).
    pub fn read_original(&self, paths: &[PathBuf]) -> anyhow::Result<Input> {
        let (profile, _) = self.read_profile(paths, &[])?;
        let source = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        Ok(Input::new(stem(&paths[0]), source, profile))
    }

    /// One candidate: every run together (plots, counts) and each run on its own (the verdicts).
    pub fn read_candidate(&self, c: &Candidate) -> anyhow::Result<(Input, Vec<RunCount>)> {
        let window = |i: usize| c.windows.get(i).map(std::slice::from_ref).unwrap_or(&[]);
        let source = c.runs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        if c.runs.len() == 1 {
            let (profile, count) = self.read_profile(&c.runs, window(0))?;
            let mut input = Input::new(c.label.clone(), source, profile);
            input.host_busy = c.host_busy.clone();
            return Ok((input, vec![count]));
        }
        let (pooled, _) = self.read_profile(&c.runs, &c.windows)?;
        let mut runs = Vec::new();
        let mut counts = Vec::new();
        for (i, file) in c.runs.iter().enumerate() {
            let (profile, count) = self.read_profile(std::slice::from_ref(file), window(i))?;
            runs.push(profile);
            counts.push(count);
        }
        let mut input = Input::with_runs(c.label.clone(), source, pooled, runs);
        input.host_busy = c.host_busy.clone();
        Ok((input, counts))
    }

    /// Compares, prints the report (text or JSON), writes the HTML, and
    /// ends with the per-candidate verdict on stderr.
    pub fn report(
        &self,
        original: &Input,
        candidates: &[Input],
        metadata: serde_json::Value,
        started: Instant,
    ) -> anyhow::Result<Comparison> {
        let opts = self.compare_options()?;
        let mut cmp = compare(original, candidates, &opts)?;
        cmp.metadata = Some(metadata);
        if self.json {
            crate::cmd::print_out(&(serde_json::to_string_pretty(&cmp)? + "\n"))?;
        } else {
            crate::cmd::print_out(&palette_report::text::render(&cmp, self.top))?;
            if self.edges {
                crate::cmd::print_out(&("\n".to_string() + &palette_report::text::edges(&cmp, self.top)))?;
            }
        }
        let mut wrote = String::new();
        if let Some(dir) = &self.html {
            let html_opts = HtmlOptions { top: self.top, ..HtmlOptions::default() };
            let page = palette_report::html::render(original, candidates, &cmp, &html_opts)?;
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let path = dir.join("index.html");
            palette_trace::write::write_atomically(&path, |w| w.write_all(page.as_bytes()))
                .with_context(|| format!("cannot write {}", path.display()))?;
            // The figures behind the page, for scripts: what `--json` prints.
            let json = dir.join("comparison.json");
            let text = serde_json::to_string_pretty(&cmp)? + "\n";
            palette_trace::write::write_atomically(&json, |w| w.write_all(text.as_bytes()))
                .with_context(|| format!("cannot write {}", json.display()))?;
            wrote = format!("; wrote {} and comparison.json", path.display());
        }
        let verdicts: Vec<&str> = cmp.summary.iter().map(|s| s.line.as_str()).collect();
        eprintln!(
            "compared {} candidate(s) with {} ({} traces) in {:.1}s{wrote}\n{}",
            candidates.len(),
            original.label,
            thousands(original.profile.traces),
            started.elapsed().as_secs_f64(),
            verdicts.join("\n")
        );
        Ok(cmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems() {
        assert_eq!(stem(Path::new("out/m.jsonl")), "m");
        assert_eq!(stem(Path::new("figure1.otlp.jsonl")), "figure1.otlp");
        assert_eq!(stem(Path::new("a/CallGraph_0.csv.gz")), "CallGraph_0");
        assert_eq!(stem(Path::new("spans")), "spans");
    }

    /// A one-execution trace whose root starts at `start_ns`.
    fn trace(id: u128, start_ns: i64) -> CallTree {
        use palette_trace::tree::{EdgeKind, Exec, NO_PARENT};
        let root = Exec {
            api: palette_trace::Api { service: palette_trace::Sym::EMPTY, operation: palette_trace::Sym::EMPTY },
            parent: NO_PARENT,
            first_child: 0,
            child_count: 0,
            edge: EdgeKind::Root,
            protocol: palette_trace::Sym::EMPTY,
            start_ns,
            duration_ns: 1_000,
            call_start_ns: start_ns,
            call_duration_ns: 1_000,
            error: false,
            detached: false,
            request_bytes: None,
            response_bytes: None,
        };
        CallTree { trace_id: palette_trace::TraceId::new(id), span_count: 1, execs: vec![root] }
    }

    /// Warm-up traffic is left out: only traces whose root started in a
    /// run's measured window reach the collector.
    #[test]
    fn traces_outside_the_measured_windows_are_left_out() {
        let mut collector = Collector::new(CollectOptions::default());
        let windows = [(100, 200), (500, 600)];
        let mut sink = InWindows { collector: &mut collector, windows: &windows, excluded: 0 };
        for (i, start) in [50, 99, 100, 150, 199, 200, 300, 499, 500, 599, 600].into_iter().enumerate() {
            sink.trace(&trace(i as u128 + 1, start)).unwrap();
        }
        // Kept: 100, 150, 199 (first run), 500, 599 (second); the window's end is open.
        assert_eq!((sink.excluded, collector.traces()), (6, 5));
        // No windows: every trace counts (a plain `palette compare`).
        let mut collector = Collector::new(CollectOptions::default());
        let mut sink = InWindows { collector: &mut collector, windows: &[], excluded: 0 };
        sink.trace(&trace(1, 0)).unwrap();
        assert_eq!((sink.excluded, collector.traces()), (0, 1));
    }
}
