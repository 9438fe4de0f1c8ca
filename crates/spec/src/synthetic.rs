//! Systems built in code rather than learned: a chain of services, each
//! calling the next, with a fixed amount of local work each. With zero work
//! it measures what the runtime (`palette-runtime`) costs per hop (`palette bench
//! runtime`); with work it is a known system for tests (timeouts,
//! overload, drains).

use palette_model::model::{
    ApiModel, CallerCount, CondSketch, Edge, EdgeKind, FORMAT, FitOptions, Model, ModelKind, Provenance, RootCount,
    State, Summary, Transition,
};
use palette_model::{ApiId, Sketch};

use crate::config::{Limits, RpcMode, SYSTEM_FORMAT, ServiceConfig, SystemConfig, TracingConfig, WorkConfig};

/// The operation every chain service serves.
pub const CHAIN_OPERATION: &str = "hop";

/// Name of the `i`-th service of a chain (0-based): `s01`, `s02`, … (sorted
/// like the model's services, up to 99).
pub fn chain_service(i: usize) -> String {
    format!("s{:02}", i + 1)
}

fn fixed(ns: u64) -> Sketch {
    let mut s = Sketch::new();
    s.add(ns as f64);
    s
}

fn transition(to: Option<u32>, work_ns: u64) -> Transition {
    Transition {
        to,
        count: 1,
        p: 1.0,
        by_caller: Vec::new(),
        by_outcome: Vec::new(),
        work: CondSketch { all: fixed(work_ns), by_caller: Vec::new() },
    }
}

/// A chain of `ports.len()` services: service `i` listens on `ports[i]`,
/// serves `hop`, does `work_ns[i]` of local work after its call returns,
/// and calls service `i + 1`; the first is the root. Spans go to
/// `spans.jsonl` (relative to the system's directory), work is sleep.
pub fn chain(ports: &[u16], work_ns: &[u64]) -> SystemConfig {
    assert_eq!(ports.len(), work_ns.len(), "one work amount per service");
    let n = ports.len();
    let apis = (0..n)
        .map(|i| {
            let caller: Option<ApiId> = i.checked_sub(1).map(|c| c as ApiId);
            let mut states = vec![State {
                calls: Vec::new(),
                visits: 1,
                lambda: 0.0,
                repeats: Vec::new(),
                next: vec![if i + 1 < n { transition(Some(1), 0) } else { transition(None, work_ns[i]) }],
            }];
            if i + 1 < n {
                states.push(State {
                    calls: vec![(i + 1) as ApiId],
                    visits: 1,
                    lambda: 1.0,
                    repeats: Vec::new(),
                    next: vec![transition(None, work_ns[i])],
                });
            }
            ApiModel {
                service: chain_service(i),
                operation: CHAIN_OPERATION.into(),
                count: 1,
                callers: vec![CallerCount { caller, count: 1 }],
                latency: fixed(work_ns[i..].iter().sum()),
                request_bytes: None,
                response_bytes: None,
                states,
                overhead: Vec::new(),
                overhead_correlation: 0.0,
                naive: None,
                failures: None,
            }
        })
        .collect();
    let edges = (1..n)
        .map(|i| Edge {
            caller: (i - 1) as ApiId,
            callee: i as ApiId,
            kind: EdgeKind::Rpc,
            protocol: None,
            count: 1,
            latency: Summary::default(),
        })
        .collect();
    let model = Model {
        format: FORMAT.into(),
        kind: ModelKind::Palette,
        options: FitOptions::default(),
        provenance: Provenance::default(),
        services: (0..n).map(chain_service).collect(),
        apis,
        roots: vec![RootCount { api: 0, count: 1, failed: 0 }],
        edges,
        deploy: Default::default(),
    };
    SystemConfig {
        format: SYSTEM_FORMAT.into(),
        name: "chain".into(),
        seed: 1,
        rpc: RpcMode::Http,
        work: WorkConfig::default(),
        tracing: TracingConfig::default(),
        limits: Limits::default(),
        services: (0..n)
            .map(|i| ServiceConfig {
                name: chain_service(i),
                host: chain_service(i),
                port: ports[i],
                instances: 1,
                apis: vec![i as ApiId],
            })
            .collect(),
        model,
    }
}

/// Name of service `hop` of chain `chain` in [`chains`]: `c0001h01`, …
/// (zero-padded, so names sort in index order).
pub fn chains_service(chain: usize, hop: usize) -> String {
    format!("c{:04}h{:02}", chain + 1, hop + 1)
}

/// `chains` zero-work chains of `hops` services each, every chain's first
/// service a root API called equally often: a big system whose every
/// request crosses the same number of hops, so the per-hop cost of serving
/// thousands of services in one process compares with a single chain's.
/// Service `c * hops + h` listens on `ports[c * hops + h]`.
pub fn chains(chains: usize, hops: usize, ports: &[u16]) -> SystemConfig {
    assert_eq!(ports.len(), chains * hops, "one port per service");
    let one = chain(&ports[..hops], &vec![0; hops]);
    let mut apis = Vec::with_capacity(chains * hops);
    let mut edges = Vec::with_capacity(chains * hops);
    let mut services = Vec::with_capacity(chains * hops);
    for c in 0..chains {
        let base = (c * hops) as ApiId;
        for (h, api) in one.model.apis.iter().enumerate() {
            let mut api = api.clone();
            api.service = chains_service(c, h);
            for caller in &mut api.callers {
                caller.caller = caller.caller.map(|x| x + base);
            }
            for state in &mut api.states {
                state.calls.iter_mut().for_each(|x| *x += base);
            }
            apis.push(api);
            services.push(ServiceConfig {
                name: chains_service(c, h),
                host: chains_service(c, h),
                port: ports[c * hops + h],
                instances: 1,
                apis: vec![base + h as ApiId],
            });
        }
        edges.extend(one.model.edges.iter().map(|e| Edge {
            caller: e.caller + base,
            callee: e.callee + base,
            ..e.clone()
        }));
    }
    let model = Model {
        services: services.iter().map(|s| s.name.clone()).collect(),
        roots: (0..chains).map(|c| RootCount { api: (c * hops) as ApiId, count: 1, failed: 0 }).collect(),
        apis,
        edges,
        ..one.model
    };
    SystemConfig { name: "chains".into(), services, model, ..one }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_chains_are_one_valid_system() {
        let ports: Vec<u16> = (9001..9013).collect();
        let system = chains(4, 3, &ports);
        let back = SystemConfig::parse(&system.to_json(), "chains.json".as_ref()).unwrap();
        assert_eq!(back.services.len(), 12);
        assert_eq!(back.model.roots.len(), 4);
        assert_eq!(back.model.api_name(4), "c0002h02 hop");
        let mut rng = palette_trace::rng::Rng::new(1);
        let mut e = palette_model::Execution::new(&back.model, 3, palette_model::Context::ROOT, false, &mut rng);
        assert!(matches!(e.next_step(&mut rng), palette_model::Step::Stage { calls: [4], wait: true, .. }));
        let mut e = palette_model::Execution::new(&back.model, 11, palette_model::Context::ROOT, false, &mut rng);
        assert!(matches!(e.next_step(&mut rng), palette_model::Step::Finish { work_ns: 0 }));
    }

    #[test]
    fn chains_are_valid_systems() {
        let system = chain(&[9001, 9002, 9003], &[0, 1000, 5000]);
        let text = system.to_json();
        let back = SystemConfig::parse(&text, "chain.json".as_ref()).unwrap();
        assert_eq!(back, system);
        assert_eq!(back.model.apis[2].latency.quantile(0.5).round(), 5000.0);
        assert_eq!(back.model.api_name(1), "s02 hop");
        // The walk: the first two call the next, the last only works.
        let mut rng = palette_trace::rng::Rng::new(1);
        let mut e = palette_model::Execution::new(&back.model, 0, palette_model::Context::ROOT, false, &mut rng);
        assert!(matches!(e.next_step(&mut rng), palette_model::Step::Stage { calls: [1], wait: true, .. }));
        assert!(matches!(e.next_step(&mut rng), palette_model::Step::Finish { work_ns: 0 }));
        let mut e = palette_model::Execution::new(&back.model, 2, palette_model::Context::ROOT, false, &mut rng);
        assert!(
            matches!(e.next_step(&mut rng), palette_model::Step::Finish { work_ns } if (4950..=5050).contains(&work_ns))
        );
    }
}
