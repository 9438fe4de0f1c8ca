//! `palette compare`: how closely candidates' traces match the original's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use palette_report::{CollectOptions, Collector, CompareOptions, HtmlOptions, Input, compare};

use crate::cmd::read::ReadArgs;
use crate::cmd::{UsageError, parse_duration_ns, thousands};

#[derive(clap::Args, Debug)]
#[command(
    override_usage = "palette compare [OPTIONS] ORIGINAL CANDIDATE...",
    after_help = "The first input is the original (the reference); each further input is a candidate, labelled \
    by its file stem or by --label (in order).\n\n\
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
    /// Verdict "close" needs a KS statistic at most this ...
    #[arg(long, default_value_t = 0.10, value_name = "D")]
    pub close_ks: f64,
    /// ... and Wasserstein-1 at most this fraction of the original's mean.
    #[arg(long, default_value_t = 0.10, value_name = "FRACTION")]
    pub close_w1: f64,
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
    let started = Instant::now();
    if args.read.inputs.len() < 2 {
        anyhow::bail!(UsageError(
            "compare needs the original and at least one candidate: palette compare ORIGINAL CANDIDATE...".into()
        ));
    }
    let labels = args.labels()?;
    let collect = args.collect_options()?;
    let opts = CompareOptions { close_ks: args.close_ks, close_w1: args.close_w1, ..CompareOptions::default() };
    let read = |path: &Path, label: String| -> anyhow::Result<Input> {
        let mut collector = Collector::new(collect.clone());
        let summary = args.read_one(path).read(&mut collector)?;
        if collector.traces() == 0 {
            return Err(palette_trace::Error::BadData {
                path: path.to_path_buf(),
                line: 0,
                message: "no trace is left to compare (every trace was dropped)".into(),
            }
            .into());
        }
        Ok(Input::new(label, path.display().to_string(), collector.finish(&summary.names)))
    };
    let original_path = &args.read.inputs[0];
    let original = read(original_path, stem(original_path))?;
    let candidates: Vec<Input> =
        args.read.inputs[1..].iter().zip(labels).map(|(p, label)| read(p, label)).collect::<anyhow::Result<_>>()?;
    let cmp = compare(&original, &candidates, &opts)?;
    if args.json {
        crate::cmd::print_out(&(serde_json::to_string_pretty(&cmp)? + "\n"))?;
    } else {
        crate::cmd::print_out(&palette_report::text::render(&cmp, args.top))?;
        if args.edges {
            crate::cmd::print_out(&("\n".to_string() + &palette_report::text::edges(&cmp, args.top)))?;
        }
    }
    let mut wrote = String::new();
    if let Some(dir) = &args.html {
        let html_opts = HtmlOptions { top: args.top, ..HtmlOptions::default() };
        let page = palette_report::html::render(&original, &candidates, &cmp, &html_opts)?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("index.html");
        palette_trace::write::write_atomically(&path, |w| w.write_all(page.as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        wrote = format!("; wrote {}", path.display());
    }
    let close = cmp.roots.values().flatten().filter(|r| r.verdict == palette_report::Verdict::Close).count();
    let total: usize = cmp.roots.values().map(Vec::len).sum();
    eprintln!(
        "compared {} candidate(s) with {} ({} traces): {close} of {total} root-API latency distributions close{wrote} in {:.1}s",
        candidates.len(),
        original.label,
        thousands(original.profile.traces),
        started.elapsed().as_secs_f64()
    );
    Ok(())
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
}
