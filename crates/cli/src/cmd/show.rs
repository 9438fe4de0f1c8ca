//! `palette show`: what a model holds.

use std::path::PathBuf;

use palette_model::Model;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model written by `palette fit`.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.model)?;
    let model: Model = serde_json::from_str(&text)?;
    println!("services {}\napis {}\nedges {}", model.services.len(), model.apis.len(), model.edges.len());
    Ok(())
}
