//! `palette inspect`: what a set of traces holds.

use palette_trace::{CallTree, InspectSummary, TraceStats};

use crate::cmd::read::ReadArgs;
use crate::cmd::thousands;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  palette inspect traces.csv\n  palette inspect --json jaeger-export.json\n  palette inspect --strict alibaba/CallGraph_0.csv.gz alibaba/CallGraph_1.csv.gz"
)]
pub struct Args {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Print the report as JSON (top-level integers `traces`, `spans`,
    /// `services`, `apis`, `edges`, and the rest).
    #[arg(long)]
    pub json: bool,
    /// How many root APIs to list (all with --json).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut stats = TraceStats::default();
    let mut sink = |tree: &CallTree| {
        stats.add(tree);
        Ok(())
    };
    let read = args.read.read(&mut sink)?;
    let summary = stats.summary(&read);
    if args.json {
        crate::cmd::print_out(&(serde_json::to_string_pretty(&summary)? + "\n"))?;
    } else {
        crate::cmd::print_out(&render(&summary, args.top))?;
    }
    Ok(())
}

fn dist(d: &palette_trace::stats::Distribution) -> String {
    format!("min {}  p50 {}  p90 {}  p99 {}  max {}  mean {:.2}", d.min, d.p50, d.p90, d.p99, d.max, d.mean)
}

/// The terminal report.
pub fn render(s: &InspectSummary, top: usize) -> String {
    let mut out = String::new();
    for f in &s.files {
        out += &format!("{} ({})\n", f.path, f.format);
    }
    out += &format!("traces        {}\n", thousands(s.traces));
    out += &format!("spans         {}   (records read {})\n", thousands(s.spans), thousands(s.records));
    out += &format!("services      {}\n", thousands(s.services));
    out += &format!("apis          {}\n", thousands(s.apis));
    out += &format!(
        "edges         {}   ({} local, {} rpc)\n",
        thousands(s.edges),
        thousands(s.local_edges),
        thousands(s.rpc_edges)
    );
    out += &format!("root apis     {}\n", thousands(s.root_apis.len() as u64));
    for r in s.root_apis.iter().take(top) {
        out += &format!("  {:>10}  {} {}\n", thousands(r.count), r.service, r.operation);
    }
    if s.root_apis.len() > top {
        out += &format!("  … {} more (--top N, or --json)\n", s.root_apis.len() - top);
    }
    out += &format!("spans/trace   {}\n", dist(&s.spans_per_trace));
    out += &format!("depth         {}\n", dist(&s.depth));
    out += &format!("fan-out       {}\n", dist(&s.fan_out));
    out += &format!("error traces  {}\n", thousands(s.error_traces));
    out += &format!(
        "assembly      {} client spans folded, {} calls adopted, {} two-sided calls merged\n",
        thousands(s.folded_client_spans),
        thousands(s.adopted_calls),
        thousands(s.merged_call_pairs)
    );
    if s.defects.is_empty() {
        out += "defects       none\n";
    } else {
        out += "defects\n";
        for (kind, d) in &s.defects {
            out += &format!("  {:>10}  {kind}: {} (first at {})\n", thousands(d.count), d.repair, d.first);
        }
        if s.dropped_traces + s.dropped_spans > 0 {
            out +=
                &format!("  dropped {} traces and {} spans\n", thousands(s.dropped_traces), thousands(s.dropped_spans));
        }
    }
    out
}
