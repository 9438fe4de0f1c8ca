//! `palette show`: what a model holds.
//!
//! Four views of one `model.json`: a terminal summary (counts in the same
//! layout as `palette inspect`, root APIs, a per-API table), the details of
//! one API (`--api`: callers, PFA states and transitions with per-caller
//! probabilities and work, call overheads), Graphviz DOT (`--dot`: the
//! topology, or with `--api` that API's PFA as in the paper's Figure 3) and
//! JSON (`--json`).
//!
//! A model file is checked before anything is shown ([`Model::load`]): a
//! file that is not a model, has another format tag, or refers to an API or
//! state that does not exist stops with exit 65 naming the file and line.
//! The views themselves are `palette_model::show`.

use std::path::{Path, PathBuf};

use palette_model::Model;
use palette_model::show::{
    api_json, dot_api, dot_topology, render_api, render_diff, render_summary, resolve_api, summary_json,
};
use serde_json::Value;

use crate::cmd::UsageError;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  \
    palette show model.json\n  \
    palette show model.json --api 'frontend GET /product'\n  \
    palette show model.json --dot | dot -Tsvg > topology.svg\n  \
    palette show model.json --api B/b --dot | dot -Tsvg > pfa.svg\n  \
    palette show model.json --json")]
pub struct Args {
    /// A model written by `palette fit` or `palette merge`.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Show one API in detail: `service operation`, `service/operation`, or
    /// an operation name that only one service has.
    #[arg(long, value_name = "NAME")]
    pub api: Option<String>,
    /// Write Graphviz DOT instead: the topology, or with --api that API's PFA.
    #[arg(long, conflicts_with = "json")]
    pub dot: bool,
    /// Print the summary (or with --api the API's details) as JSON, with
    /// top-level integers `services`, `apis`, `edges`, `roots`.
    #[arg(long)]
    pub json: bool,
    /// Show what changed from this model to MODEL (e.g. `--diff model.json edited.json`).
    #[arg(long, value_name = "BEFORE", conflicts_with_all = ["api", "dot", "json"])]
    pub diff: Option<PathBuf>,
    /// How many root APIs and APIs to list (all with --json).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let model = load(&args.model)?;
    if let Some(before) = &args.diff {
        let before_model = load(before)?;
        return Ok(crate::cmd::print_out(&render_diff(&before_model, &model, before, &args.model))?);
    }
    let api = args.api.as_deref().map(|name| resolve_api(&model, name, &args.model).map_err(UsageError)).transpose()?;
    let out = match (api, args.dot, args.json) {
        (None, true, _) => dot_topology(&model),
        (Some(id), true, _) => dot_api(&model, id),
        (None, false, true) => pretty(&summary_json(&model, &args.model))?,
        (Some(id), false, true) => pretty(&api_json(&model, id))?,
        (None, false, false) => render_summary(&model, &args.model, args.top),
        (Some(id), false, false) => render_api(&model, id),
    };
    crate::cmd::print_out(&out)?;
    Ok(())
}

fn pretty(v: &Value) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

/// Reads and checks a model file: exit 2 when it is missing, 65 when it is
/// not a well-formed `palette-model/1` model.
pub fn load(path: &Path) -> anyhow::Result<Model> {
    Ok(Model::load(path)?)
}
