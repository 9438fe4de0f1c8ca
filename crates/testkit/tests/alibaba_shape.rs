//! The Alibaba-like generator at 20,000 services has the shape Luo et al.
//! (SoCC 2021) report for Alibaba's call graphs: most graphs small with a
//! heavy tail, heavy-tailed fan-out, shallow depth with a tail, stateful
//! (`mc`/`db`) leaves, skewed service popularity, and call graphs that vary
//! from request to request of the same API.

use std::collections::{BTreeMap, HashMap};

use palette_testkit::alibaba::{AlibabaConfig, Schema, write_alibaba};

/// What the test measures of one generated file.
#[derive(Default)]
struct Shape {
    /// Distinct services called (`dm`), to see the system grow with rows.
    services: usize,
    /// Calls per trace, sorted.
    sizes: Vec<usize>,
    /// Deepest call per trace (root = 1), sorted.
    depths: Vec<usize>,
    /// Calls made per calling span (spans with at least one call), sorted.
    fan_out: Vec<usize>,
    /// Share of calls to caches and databases.
    stateful_share: f64,
    /// Share of all calls received by the busiest 1% of services.
    top1pct_share: f64,
    /// Root APIs (with at least 30 traces) whose traces show more than one
    /// call graph, of all such root APIs: graphs are dynamic.
    root_apis_varied: (usize, usize),
    /// Share of those APIs' traces whose graph is not the API's commonest.
    off_mode_share: f64,
}

fn pct(sorted: &[usize], q: f64) -> usize {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn shape(services: u32, rows: u64) -> Shape {
    let cfg = AlibabaConfig { schema: Schema::V2022, rows, services, seed: 3, ..AlibabaConfig::default() };
    let mut csv = Vec::new();
    write_alibaba(&cfg, &mut csv).unwrap();
    let text = String::from_utf8(csv).unwrap();
    // trace → (rpc id, rpctype, callee, interface) rows.
    let mut traces: HashMap<&str, Vec<(&str, &str, &str)>> = HashMap::new();
    let mut per_service: HashMap<&str, usize> = HashMap::new();
    let (mut calls, mut stateful) = (0usize, 0usize);
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (trace, rpcid, rpctype, iface, dm) = (f[1], f[3], f[4], f[7], f[8]);
        traces.entry(trace).or_default().push((rpcid, rpctype, iface));
        *per_service.entry(dm).or_default() += 1;
        calls += 1;
        stateful += usize::from(matches!(rpctype, "mc" | "db"));
    }
    let mut s = Shape { services: per_service.len(), ..Shape::default() };
    let mut by_root: BTreeMap<&str, Vec<Vec<&str>>> = BTreeMap::new();
    for rows in traces.values() {
        s.sizes.push(rows.len());
        s.depths.push(rows.iter().map(|r| r.0.matches('.').count()).max().unwrap_or(0));
        let mut children: HashMap<&str, usize> = HashMap::new();
        for r in rows {
            if let Some((parent, _)) = r.0.rsplit_once('.') {
                *children.entry(parent).or_default() += 1;
            }
        }
        // The root's own row ("0.1") has parent "0", which is not a span.
        s.fan_out.extend(children.iter().filter(|(p, _)| **p != "0").map(|(_, n)| *n));
        if let Some(root) = rows.iter().find(|r| r.0 == "0.1") {
            let mut graph: Vec<&str> = rows.iter().map(|r| r.2).collect();
            graph.sort_unstable();
            by_root.entry(root.2).or_default().push(graph);
        }
    }
    s.sizes.sort_unstable();
    s.depths.sort_unstable();
    s.fan_out.sort_unstable();
    s.stateful_share = stateful as f64 / calls as f64;
    let mut counts: Vec<usize> = per_service.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let top = (counts.len() / 100).max(1);
    s.top1pct_share = counts[..top].iter().sum::<usize>() as f64 / calls as f64;
    // Per root API with enough traces: distinct graphs, and the share of
    // traces not of the API's commonest graph.
    let (mut varied, mut with_enough, mut off_mode, mut traced) = (0, 0, 0, 0);
    for graphs in by_root.values().filter(|g| g.len() >= 30) {
        let mut n: HashMap<&Vec<&str>, usize> = HashMap::new();
        for g in graphs {
            *n.entry(g).or_default() += 1;
        }
        with_enough += 1;
        varied += usize::from(n.len() > 1);
        off_mode += graphs.len() - n.values().max().unwrap();
        traced += graphs.len();
    }
    s.root_apis_varied = (varied, with_enough);
    s.off_mode_share = off_mode as f64 / traced as f64;
    s
}

#[test]
fn twenty_thousand_services_have_alibabas_shape() {
    let small = shape(20_000, 50_000);
    let s = shape(20_000, 300_000);
    eprintln!(
        "services reached: {} at 50k rows, {} at 300k rows; traces {}; size p50 {} p90 {} p99 {} max {}; \
         depth p50 {} p90 {} p99 {} max {}; fan-out p50 {} p90 {} p99 {} max {}; stateful {:.2}; \
         top 1% services {:.2} of calls; {} of {} root APIs with varying graphs, {:.2} of traces off the commonest graph",
        small.services,
        s.services,
        s.sizes.len(),
        pct(&s.sizes, 0.5),
        pct(&s.sizes, 0.9),
        pct(&s.sizes, 0.99),
        s.sizes.last().unwrap(),
        pct(&s.depths, 0.5),
        pct(&s.depths, 0.9),
        pct(&s.depths, 0.99),
        s.depths.last().unwrap(),
        pct(&s.fan_out, 0.5),
        pct(&s.fan_out, 0.9),
        pct(&s.fan_out, 0.99),
        s.fan_out.last().unwrap(),
        s.stateful_share,
        s.top1pct_share,
        s.root_apis_varied.0,
        s.root_apis_varied.1,
        s.off_mode_share,
    );
    // The system grows with the rows: rarely called services keep appearing.
    assert!(s.services > small.services && s.services >= 12_000, "services reached {}", s.services);
    // Most call graphs small, a heavy tail of large ones.
    assert!(pct(&s.sizes, 0.5) <= 10 && pct(&s.sizes, 0.99) >= 20 * pct(&s.sizes, 0.5));
    // Shallow mostly, some deep.
    assert!(pct(&s.depths, 0.5) <= 4 && *s.depths.last().unwrap() >= 6);
    // Heavy-tailed fan-out.
    assert!(pct(&s.fan_out, 0.5) <= 3 && pct(&s.fan_out, 0.99) >= 20);
    // Caches and databases are a large share of the calls (and call nothing).
    assert!((0.3..0.6).contains(&s.stateful_share), "stateful {}", s.stateful_share);
    // Skewed popularity: the busiest 1% of services get over 5x their share.
    assert!(s.top1pct_share >= 0.05, "top 1% {}", s.top1pct_share);
    // Dynamic call graphs.
    assert!(3 * s.root_apis_varied.0 >= 2 * s.root_apis_varied.1 && s.off_mode_share >= 0.2);
}
