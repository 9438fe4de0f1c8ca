//! `palette fit`: learn a model from traces.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use palette_model::{FilterNames, FitOptions, Fitter, Model, ModelKind, TraceFilter, build_model_owned};
use palette_trace::{CallTree, InputWarning, ReadSummary};

use crate::cmd::read::ReadArgs;
use crate::cmd::{UsageError, parse_duration_ns, thousands};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    palette fit traces.csv -o model.json\n  \
    palette fit traces.csv --kind naive -o naive.json\n  \
    palette fit shard1.csv --partial -o part1.json && palette fit shard2.csv --partial -o part2.json\n  \
    palette merge part1.json part2.json -o model.json        # same bytes as fitting both at once")]
pub struct Args {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Where to write the model (or the partial fit, with --partial).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Write a partial fit (counts and sketches before coarsening) to merge
    /// later with `palette merge`.
    #[arg(long)]
    pub partial: bool,
    /// An intervention file (YAML list, see docs/interventions.md): its
    /// filters select the traces, the rest edit the fitted model (repeatable).
    #[arg(long, value_name = "FILE")]
    pub apply: Vec<PathBuf>,
    /// Skip traces with an error anywhere.
    #[arg(long)]
    pub drop_errors: bool,
    /// Keep only traces that touch this service (repeatable).
    #[arg(long, value_name = "SERVICE")]
    pub include_service: Vec<String>,
    /// Remove this service's executions and what they call (repeatable).
    #[arg(long, value_name = "SERVICE")]
    pub exclude_service: Vec<String>,
    /// Keep only traces that touch this API, `service operation` (repeatable).
    #[arg(long, value_name = "API")]
    pub include_api: Vec<String>,
    /// Remove this API's executions and what they call (repeatable).
    #[arg(long, value_name = "API")]
    pub exclude_api: Vec<String>,
    /// Keep traces starting this long after the first trace read, or later.
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Keep traces starting before this long after the first trace read.
    #[arg(long, value_name = "DURATION")]
    pub until: Option<String>,
    /// Two calls share a stage unless the later starts this long after every
    /// call of the stage ended.
    #[arg(long, value_name = "DURATION", default_value = "100us")]
    pub stage_tolerance: String,
    /// ALERGIA confidence α for merging PFA states (smaller merges more).
    #[arg(long, default_value_t = 0.05)]
    pub confidence: f64,
    /// Samples a caller needs before its own distributions are used.
    #[arg(long, default_value_t = 20)]
    pub min_caller_support: u64,
    /// Samples a stage's outcome (the calls its callees made) needs before
    /// the choice after it is conditioned on it; kept only where it matters.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub min_outcome_support: u64,
}

/// Options that shape the model built from counts (also taken by `merge`).
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// `palette` (caller-conditioned PFA + causal latency model) or `naive`
    /// (per-API latency, independent calls, all sequential: the baseline).
    #[arg(long, default_value = "palette", value_parser = parse_kind)]
    pub kind: ModelKind,
    /// Leave root APIs with fewer traces than this out of the workload mix.
    #[arg(long, default_value_t = 1)]
    pub min_support: u64,
}

fn parse_kind(s: &str) -> Result<ModelKind, String> {
    match s {
        "palette" => Ok(ModelKind::Palette),
        "naive" => Ok(ModelKind::Naive),
        _ => Err(format!("unknown model kind `{s}` (palette or naive)")),
    }
}

impl Args {
    fn filter(&self) -> Result<TraceFilter, UsageError> {
        let dur = |flag: &str, v: &Option<String>| {
            v.as_deref().map(parse_duration_ns).transpose().map_err(|e| UsageError(format!("--{flag}: {e}")))
        };
        Ok(TraceFilter {
            drop_errors: self.drop_errors,
            include_services: self.include_service.clone(),
            exclude_services: self.exclude_service.clone(),
            include_apis: self.include_api.clone(),
            exclude_apis: self.exclude_api.clone(),
            since_ns: dur("since", &self.since)?,
            until_ns: dur("until", &self.until)?,
        })
    }

    fn fit_options(&self) -> Result<FitOptions, UsageError> {
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err(UsageError(format!("--confidence must be between 0 and 1, not {}", self.confidence)));
        }
        Ok(FitOptions {
            stage_tolerance_ns: parse_duration_ns(&self.stage_tolerance)
                .map_err(|e| UsageError(format!("--stage-tolerance: {e}")))?,
            confidence: self.confidence,
            max_unrolled: FitOptions::default().max_unrolled,
            min_caller_support: self.min_caller_support.max(1),
            min_outcome_support: self.min_outcome_support.max(1),
        })
    }
}

/// File names of the inputs, for provenance.
pub fn input_names(inputs: &[PathBuf]) -> Vec<String> {
    inputs
        .iter()
        .map(|p| p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned()))
        .collect()
}

/// Inputs of a read that may not belong together (the same traces in two
/// files, systems that share no service), from the read itself: checked only
/// with two input files or more, at no second read. See
/// `palette_trace::overlap`.
pub fn input_warnings(read: &ReadSummary) -> Vec<InputWarning> {
    read.input_warnings.clone()
}

/// Prints each warning on one line of stderr, `palette: warning: …`.
pub fn print_input_warnings(warnings: &[InputWarning]) {
    for w in warnings {
        eprintln!("palette: warning: {w}");
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    run_with_warnings(args, true).map(drop)
}

/// `palette fit`, returning the warnings about its inputs (see
/// [`input_warnings`]) for a report to record; they are printed on stderr
/// too when `print` is set. Warnings never fail the fit.
pub fn run_with_warnings(args: Args, print: bool) -> anyhow::Result<Vec<InputWarning>> {
    let started = Instant::now();
    let mut filter = args.filter()?;
    let opts = args.fit_options()?;
    let mut entries = Vec::new();
    for f in &args.apply {
        entries.extend(crate::cmd::edit::load_entries(f, entries.len())?);
    }
    palette_model::intervene::fit_filters(&entries, &mut filter);
    if args.partial
        && let Some(e) =
            entries.iter().find(|e| !matches!(e.intervention, palette_model::intervene::Intervention::Filter(_)))
    {
        anyhow::bail!(UsageError(format!(
            "--partial with --apply: only filters apply to a partial fit; entry {} ({}) edits a model — \
             apply it after `palette merge` with `palette edit`",
            e.index,
            e.intervention.kind()
        )));
    }
    let names = FilterNames::new(&filter);
    let mut fitter = Fitter::new(opts, filter.clone());
    let mut sink = |tree: &CallTree| {
        fitter.add(tree, &names);
        Ok(())
    };
    let read = args.read.read_with_names(&mut sink, filter.names())?;
    let warnings = input_warnings(&read);
    if print {
        print_input_warnings(&warnings);
    }
    if fitter.traces() == 0 {
        anyhow::bail!(UsageError("no trace is left to fit (check the input and the filters)".into()));
    }
    let partial = fitter.into_partial(&read.names, input_names(&args.read.inputs));
    if args.partial {
        write_file(&args.output, &partial.to_json())?;
        eprintln!(
            "partial fit of {} traces ({} spans, {} APIs) written to {} in {:.1}s",
            thousands(partial.traces),
            thousands(partial.spans),
            thousands(partial.api_names.len() as u64),
            args.output.display(),
            started.elapsed().as_secs_f64()
        );
        return Ok(warnings);
    }
    let model = build_model_owned(partial, args.model.kind, args.model.min_support);
    let model = crate::cmd::edit::apply_files(model, &args.apply, &entries)?;
    palette_trace::write::write_atomically(&args.output, |w| model.write_json(w))
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!("{}", summary(&model, &args.output, started));
    Ok(warnings)
}

/// The one-line summary after a fit or merge.
pub fn summary(model: &Model, output: &Path, started: Instant) -> String {
    let states: usize = model.apis.iter().map(|a| a.states.len()).sum();
    format!(
        "fitted a {} model of {} traces ({} spans): {} services, {} APIs, {} edges, {} root APIs, {} PFA states; wrote {} in {:.1}s",
        match model.kind {
            ModelKind::Palette => "palette",
            ModelKind::Naive => "naive",
        },
        thousands(model.provenance.traces),
        thousands(model.provenance.spans),
        model.services.len(),
        model.apis.len(),
        model.edges.len(),
        model.roots.len(),
        states,
        output.display(),
        started.elapsed().as_secs_f64()
    )
}

/// Writes atomically: never a half-written model.
pub fn write_file(path: &Path, content: &str) -> anyhow::Result<()> {
    palette_trace::write::write_atomically(path, |w| w.write_all(content.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}
