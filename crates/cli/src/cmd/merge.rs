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

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let parts = args.partials.iter().map(|p| Partial::load(p)).collect::<Result<Vec<_>, _>>()?;
    let merged = merge_partials(&parts).map_err(UsageError).context("cannot merge")?;
    if args.partial {
        return write_file(&args.output, &merged.to_json());
    }
    let model = build_model_owned(merged, args.model.kind, args.model.min_support);
    write_file(&args.output, &model.to_json())?;
    eprintln!("{}", summary(&model, &args.output, started));
    Ok(())
}
