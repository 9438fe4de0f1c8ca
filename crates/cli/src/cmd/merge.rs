//! `palette merge`: combine partial fits of disjoint inputs.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use palette_model::{Partial, build_model_owned, merge_partials};

use crate::cmd::UsageError;
use crate::cmd::fit::{ModelArgs, summary, write_file};

#[derive(clap::Args, Debug)]
#[command(after_help = "Merging is exact: the model equals one `palette fit` over all the shards' inputs.")]
pub struct Args {
    /// Partial fits written by `palette fit --partial`.
    #[arg(required = true, value_name = "PARTIAL")]
    pub partials: Vec<PathBuf>,
    /// Where to write the model (or the merged partial, with --partial).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Write the merged partial instead of a model.
    #[arg(long)]
    pub partial: bool,
}

/// Reads a partial fit, with a clear error for anything else.
fn read_partial(path: &PathBuf) -> anyhow::Result<Partial> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::Error::new(UsageError(format!("{}: no such file", path.display()))),
        _ => anyhow::Error::new(e).context(format!("cannot read {}", path.display())),
    })?;
    let partial: Partial = serde_json::from_str(&text).map_err(|e| palette_trace::Error::BadData {
        path: path.clone(),
        line: e.line() as u64,
        message: format!("not a partial fit ({e}); write one with `palette fit --partial`"),
    })?;
    if partial.format != palette_model::partial::PARTIAL_FORMAT {
        return Err(palette_trace::Error::BadData {
            path: path.clone(),
            line: 1,
            message: format!("format `{}` is not {}", partial.format, palette_model::partial::PARTIAL_FORMAT),
        }
        .into());
    }
    Ok(partial)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let parts = args.partials.iter().map(read_partial).collect::<anyhow::Result<Vec<_>>>()?;
    let merged = merge_partials(&parts).map_err(UsageError).context("cannot merge")?;
    if args.partial {
        return write_file(&args.output, &merged.to_json());
    }
    let model = build_model_owned(merged, args.model.kind, args.model.min_support);
    write_file(&args.output, &model.to_json())?;
    eprintln!("{}", summary(&model, &args.output, started));
    Ok(())
}
