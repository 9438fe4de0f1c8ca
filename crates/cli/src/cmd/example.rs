//! `palette example`: write the built-in example traces to a directory.

use std::path::PathBuf;

use anyhow::Context;
use palette_testkit::alibaba::{AlibabaConfig, Schema, write_alibaba};
use palette_testkit::{examples, system};
use palette_trace::write;

use crate::cmd::UsageError;

#[derive(clap::Args, Debug)]
#[command(after_help = "Writes, from ground-truth generators built into palette (no download):\n  \
    webshop.otlp.jsonl, webshop.jaeger.json, webshop.zipkin.json, webshop.spans.csv  the web shop, four formats\n  \
    figure1.otlp.jsonl                                                          the paper's Figure 1 system\n  \
    alibaba-v2021.csv, alibaba-v2022.csv                                        Alibaba-style call graphs\n\n\
    Example:\n  palette example -o example && palette inspect example/webshop.otlp.jsonl")]
pub struct Args {
    /// Directory to write into (created if missing).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// Requests to generate for each example system.
    #[arg(long, default_value_t = 1000)]
    pub traces: usize,
    /// Rows of each Alibaba-style file.
    #[arg(long, default_value_t = 20_000)]
    pub alibaba_rows: u64,
    /// Microservices in the Alibaba-style files.
    #[arg(long, default_value_t = 200)]
    pub alibaba_services: u32,
    /// Seed for the generators: same seed, same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Overwrite files of the same names.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
    let names = [
        "webshop.otlp.jsonl",
        "webshop.jaeger.json",
        "webshop.zipkin.json",
        "webshop.spans.csv",
        "figure1.otlp.jsonl",
        "alibaba-v2021.csv",
        "alibaba-v2022.csv",
    ];
    if !args.force
        && let Some(existing) = names.iter().map(|n| args.output.join(n)).find(|p| p.exists())
    {
        return Err(UsageError(format!("{} exists; pass --force to overwrite", existing.display())).into());
    }
    let shop = system::generate(&examples::webshop(), args.traces, args.seed);
    let traces = || shop.traces.iter().map(Vec::as_slice);
    let out = |name: &str| args.output.join(name);
    let ctx = |name: &str| format!("cannot write {}", out(name).display());
    write::write_atomically(&out(names[0]), |w| write::write_otlp_lines(w, traces(), &shop.names))
        .with_context(|| ctx(names[0]))?;
    write::write_atomically(&out(names[1]), |w| write::write_jaeger(w, traces(), &shop.names))
        .with_context(|| ctx(names[1]))?;
    write::write_atomically(&out(names[2]), |w| write::write_zipkin(w, traces(), &shop.names))
        .with_context(|| ctx(names[2]))?;
    write::write_atomically(&out(names[3]), |w| write::write_span_csv(w, traces(), &shop.names))
        .with_context(|| ctx(names[3]))?;
    let fig = system::generate(&examples::figure1(), args.traces, args.seed);
    write::write_atomically(&out(names[4]), |w| {
        write::write_otlp_lines(w, fig.traces.iter().map(Vec::as_slice), &fig.names)
    })
    .with_context(|| ctx(names[4]))?;
    for (name, schema) in [(names[5], Schema::V2021), (names[6], Schema::V2022)] {
        let cfg = AlibabaConfig {
            schema,
            rows: args.alibaba_rows,
            services: args.alibaba_services,
            seed: args.seed,
            ..AlibabaConfig::default()
        };
        write::write_atomically(&out(name), |w| write_alibaba(&cfg, w).map(|_| ())).with_context(|| ctx(name))?;
    }
    println!(
        "wrote {} web-shop traces ({} spans) and {} Figure-1 traces in four formats, and {} Alibaba-style rows per schema, to {}",
        shop.traces.len(),
        shop.span_count(),
        fig.traces.len(),
        args.alibaba_rows,
        args.output.display()
    );
    Ok(())
}
