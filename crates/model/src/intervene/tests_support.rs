//! A small hand-made model for examples and tests: a web shop whose
//! `frontend home` calls `cart get` and then, half the time, `email send`.

use crate::model::{
    ApiModel, CalleeOverhead, CallerCount, CondSketch, Edge, EdgeKind, FORMAT, FitOptions, Model, ModelKind,
    Provenance, RootCount, State, Summary, Transition,
};
use crate::sketch::Sketch;

/// A sketch of `n` values spread evenly over [lo, hi] milliseconds.
pub fn ms(lo: f64, hi: f64, n: u32) -> Sketch {
    let mut s = Sketch::new();
    for i in 0..n {
        s.add((lo + (hi - lo) * i as f64 / (n.max(2) - 1) as f64) * 1e6);
    }
    s
}

fn tr(to: Option<u32>, count: u64, p: f64, work: Sketch) -> Transition {
    Transition {
        to,
        count,
        p,
        by_caller: vec![],
        by_outcome: vec![],
        work: CondSketch { all: work, by_caller: vec![] },
    }
}

fn leaf(service: &str, operation: &str, count: u64, caller: u32, latency: Sketch) -> ApiModel {
    ApiModel {
        service: service.into(),
        operation: operation.into(),
        count,
        callers: vec![CallerCount { caller: Some(caller), count }],
        latency,
        request_bytes: Some(ms(0.0001, 0.001, 10)),
        response_bytes: None,
        states: vec![],
        overhead: vec![],
        overhead_correlation: 0.0,
        naive: None,
        failures: None,
    }
}

/// The shop: APIs 0 `cart get`, 1 `email send`, 2 `frontend home` (root).
pub fn shop() -> Model {
    let home = ApiModel {
        service: "frontend".into(),
        operation: "home".into(),
        count: 1000,
        callers: vec![CallerCount { caller: None, count: 1000 }],
        latency: ms(10.0, 30.0, 100),
        request_bytes: None,
        response_bytes: None,
        states: vec![
            State {
                calls: vec![],
                visits: 1000,
                lambda: 0.0,
                repeats: vec![],
                next: vec![tr(Some(1), 1000, 1.0, ms(1.0, 2.0, 50))],
            },
            State {
                calls: vec![0],
                visits: 1000,
                lambda: 1.0,
                repeats: vec![],
                next: vec![tr(None, 500, 0.5, ms(1.0, 1.0, 10)), tr(Some(2), 500, 0.5, ms(0.5, 0.5, 10))],
            },
            State {
                calls: vec![1],
                visits: 500,
                lambda: 1.0,
                repeats: vec![],
                next: vec![tr(None, 500, 1.0, ms(2.0, 2.0, 10))],
            },
        ],
        overhead: vec![
            CalleeOverhead { callee: 0, overhead: CondSketch { all: ms(0.1, 0.2, 20), by_caller: vec![] } },
            CalleeOverhead { callee: 1, overhead: CondSketch { all: ms(0.1, 0.2, 20), by_caller: vec![] } },
        ],
        overhead_correlation: 0.0,
        naive: None,
        failures: None,
    };
    let edge = |caller, callee, count| Edge {
        caller,
        callee,
        kind: EdgeKind::Rpc,
        protocol: None,
        count,
        latency: Summary::default(),
    };
    Model {
        format: FORMAT.into(),
        kind: ModelKind::Palette,
        options: FitOptions::default(),
        provenance: Provenance { inputs: vec!["shop.jsonl".into()], traces: 1000, spans: 2500, interventions: vec![] },
        services: vec!["cart".into(), "email".into(), "frontend".into()],
        apis: vec![
            leaf("cart", "get", 1000, 2, ms(3.0, 5.0, 100)),
            leaf("email", "send", 500, 2, ms(8.0, 12.0, 100)),
            home,
        ],
        roots: vec![RootCount { api: 2, count: 1000, failed: 0 }],
        edges: vec![edge(2, 0, 1000), edge(2, 1, 500)],
        deploy: Default::default(),
    }
}
