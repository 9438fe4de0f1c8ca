//! Interventions on a fitted Alibaba-like model: downscaling keeps the root
//! APIs' end-to-end latency.

use palette_model::intervene::{apply, parse};
use palette_model::{FilterNames, FitOptions, Fitter, Model, ModelKind, Simulator, TraceFilter, build_model};
use palette_testkit::alibaba::{AlibabaConfig, Schema, write_alibaba};
use palette_trace::{CallTree, NoProgress, ReadOptions, read_traces};
use std::collections::BTreeMap;

/// A model fitted to `rows` rows of Alibaba-like traces of `services`
/// services, at most `max_calls` calls a trace, from the testkit.
fn alibaba_model(services: u32, rows: u64, max_calls: u32, seed: u64) -> Model {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alibaba.csv");
    let cfg = AlibabaConfig { schema: Schema::V2022, rows, services, traces_per_s: 500.0, max_calls, seed };
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

/// Root latency (ns, sorted) per root API name, from `n` simulated traces.
fn by_root(m: &Model, n: usize, seed: u64) -> BTreeMap<String, Vec<i64>> {
    let mut sim = Simulator::new(m, seed);
    let mut out: BTreeMap<String, Vec<i64>> = Default::default();
    for _ in 0..n {
        let (spans, names) = sim.trace().unwrap();
        let root = &spans[0];
        let key = format!("{} {}", names.resolve(root.service), names.resolve(root.operation));
        out.entry(key).or_default().push(root.duration_ns);
    }
    out.values_mut().for_each(|v| v.sort_unstable());
    out
}

/// Every root API's latencies together, sorted.
fn pooled(m: &BTreeMap<String, Vec<i64>>) -> Vec<i64> {
    let mut all: Vec<i64> = m.values().flatten().copied().collect();
    all.sort_unstable();
    all
}

#[test]
fn downscaling_an_alibaba_like_model_keeps_root_latency() {
    let full = alibaba_model(1000, 150_000, 200, 11);
    eprintln!("roots {}", full.roots.len());
    assert!(full.services.len() >= 150, "{} services", full.services.len());
    let roots: std::collections::BTreeSet<&str> =
        full.roots.iter().map(|r| full.apis[r.api as usize].service.as_str()).collect();
    let n = roots.len().max(20);
    let small = apply(&full, &parse(&format!("- downscale: {{ services: {n} }}\n")).unwrap()).unwrap();
    assert_eq!(small.services.len(), n);
    assert!(roots.iter().all(|r| small.services.iter().any(|s| s == r)), "root services stay");
    assert_eq!(small.roots.len(), full.roots.len());
    let (a, b) = (pooled(&by_root(&full, 20_000, 1)), pooled(&by_root(&small, 20_000, 2)));
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

/// Issue 7: a model of over 2,000 services from the project's generator,
/// downscaled to 50 services, keeps the root APIs' latency distribution:
/// pooled over all requests, full against downscaled simulation; per root
/// API with enough samples, the downscaled simulation against the traces.
#[test]
fn downscaling_two_thousand_services_to_fifty_keeps_root_latency() {
    let full = alibaba_model(2050, 400_000, 2000, 5);
    assert!(full.services.len() >= 2000, "{} services", full.services.len());
    let small = apply(&full, &parse("- downscale: { services: 50 }\n").unwrap()).unwrap();
    assert_eq!(small.services.len(), 50);
    assert_eq!(small.roots.len(), full.roots.len(), "every root API stays");

    let n = 20_000;
    let (a, b) = (by_root(&full, n, 1), by_root(&small, n, 2));
    let ks_pooled = palette_report::metrics::ks_statistic(&pooled(&a), &pooled(&b));
    // Per root API with at least 500 samples on both sides: below that the
    // KS of two samples of one distribution is itself near 0.1.
    let mut per_api: Vec<(String, usize, f64)> = a
        .iter()
        .filter_map(|(k, x)| {
            let y = b.get(k)?;
            (x.len() >= 500 && y.len() >= 500)
                .then(|| (k.clone(), x.len(), palette_report::metrics::ks_statistic(x, y)))
        })
        .collect();
    per_api.sort_by(|x, y| y.2.total_cmp(&x.2));
    // Each of those root APIs against its traced latency (the full model's
    // recorded sketch, drawn at evenly spaced quantiles): a root API whose
    // two simulations differ is one the full model's walk reproduces less
    // well than the downscaled one, which draws removed subtrees from
    // their recorded latency.
    let mut against_traces = Vec::new();
    for (name, samples, ks) in &per_api {
        let api = full.find_api(name).unwrap();
        let mut traced: Vec<i64> =
            (0..5000).map(|i| full.apis[api as usize].latency.sample((i as f64 + 0.5) / 5000.0) as i64).collect();
        traced.sort_unstable();
        let full_ks = palette_report::metrics::ks_statistic(&a[name], &traced);
        let small_ks = palette_report::metrics::ks_statistic(&b[name], &traced);
        eprintln!(
            "  {name}: {samples} samples, KS full vs downscaled {ks:.3}; vs traces: full {full_ks:.3}, downscaled {small_ks:.3}"
        );
        against_traces.push((name.clone(), *ks, full_ks, small_ks));
    }
    eprintln!(
        "downscale {} → {} services: every request's root latency pooled, KS full vs downscaled {ks_pooled:.3}",
        full.services.len(),
        small.services.len()
    );
    assert!(ks_pooled <= 0.10, "pooled KS {ks_pooled}");
    assert!(per_api.len() >= 5, "too few root APIs with enough samples: {}", per_api.len());
    // Per root API: the two simulations agree, or where they do not, the
    // downscaled one is the closer to the traces (the gap is the full
    // model's, not the downscale's).
    for (api, ks, full_ks, small_ks) in &against_traces {
        assert!(
            *ks <= 0.10 || small_ks < full_ks,
            "root API {api}: KS {ks} between the simulations, and against the traces full {full_ks}, downscaled {small_ks}"
        );
    }
}
