//! Interventions on a fitted Alibaba-like model: downscaling keeps the root
//! APIs' end-to-end latency.

use palette_model::intervene::{apply, parse};
use palette_model::{FilterNames, FitOptions, Fitter, Model, ModelKind, Simulator, TraceFilter, build_model};
use palette_testkit::alibaba::{AlibabaConfig, Schema, write_alibaba};
use palette_trace::{CallTree, NoProgress, ReadOptions, read_traces};

fn alibaba_model(services: u32, rows: u64) -> Model {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alibaba.csv");
    let cfg = AlibabaConfig { schema: Schema::V2022, rows, services, traces_per_s: 500.0, max_calls: 200, seed: 11 };
    write_alibaba(&cfg, std::fs::File::create(&path).unwrap()).unwrap();
    let mut fitter = Fitter::new(FitOptions::default(), TraceFilter::default());
    let names = FilterNames::default();
    let mut sink = |tree: &CallTree| {
        fitter.add(tree, &names);
        Ok(())
    };
    let read = read_traces(&[path], &ReadOptions::default(), &NoProgress, &mut sink).unwrap();
    build_model(&fitter.into_partial(&read.names, vec!["alibaba.csv".into()]), ModelKind::Palette, 1)
}

/// Root-span latencies (ns) of `n` simulated traces.
fn root_latencies(m: &Model, n: usize, seed: u64) -> Vec<i64> {
    let mut sim = Simulator::new(m, seed);
    let mut out: Vec<i64> = (0..n).map(|_| sim.trace().unwrap().0[0].duration_ns).collect();
    out.sort_unstable();
    out
}

#[test]
fn downscaling_an_alibaba_like_model_keeps_root_latency() {
    let full = alibaba_model(1000, 150_000);
    eprintln!("roots {}", full.roots.len());
    assert!(full.services.len() >= 150, "{} services", full.services.len());
    let roots: std::collections::BTreeSet<&str> =
        full.roots.iter().map(|r| full.apis[r.api as usize].service.as_str()).collect();
    let n = roots.len().max(20);
    let small = apply(&full, &parse(&format!("- downscale: {{ services: {n} }}\n")).unwrap()).unwrap();
    assert_eq!(small.services.len(), n);
    assert!(roots.iter().all(|r| small.services.iter().any(|s| s == r)), "root services stay");
    assert_eq!(small.roots.len(), full.roots.len());
    let (a, b) = (root_latencies(&full, 20_000, 1), root_latencies(&small, 20_000, 2));
    let ks = palette_report::metrics::ks_statistic(&a, &b);
    eprintln!(
        "downscale {} → {} services ({} → {} APIs): root latency KS {ks:.3}",
        full.services.len(),
        small.services.len(),
        full.apis.len(),
        small.apis.len()
    );
    assert!(ks <= 0.10, "KS {ks}");
    let err = apply(&full, &parse(&format!("- downscale: {{ services: {} }}\n", roots.len() - 1)).unwrap());
    assert!(err.unwrap_err().to_string().contains("root APIs"));
}
