//! `downscale`: keep N services — the root services, then, greedily, the
//! service carrying the most traffic among those the kept ones' reachable
//! APIs call — and
//! fold every removed subtree's latency into its caller's work, so root
//! APIs keep their end-to-end latency.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::Check;
use super::graph::remove_apis;
use crate::model::Model;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownscaleSpec {
    /// Services to keep (at least the number of services with root APIs).
    pub services: usize,
}

impl DownscaleSpec {
    pub fn apply(&self, m: &mut Model) -> Check {
        let keep = chosen(m, self.services)?;
        if keep.len() == m.services.len() {
            return Ok(());
        }
        let removed: Vec<bool> = m.apis.iter().map(|a| !keep.contains(&a.service)).collect();
        remove_apis(m, &removed, true)
    }
}

/// The services to keep.
pub fn chosen(m: &Model, n: usize) -> Check<BTreeSet<String>> {
    let mut keep: BTreeSet<String> = m.roots.iter().map(|r| m.apis[r.api as usize].service.clone()).collect();
    if n < keep.len() {
        return Err(format!(
            "cannot downscale to {n} services: the model has {} services with root APIs, and they always stay",
            keep.len()
        ));
    }
    // By index: a model of 20,000 services has ~100,000 edges, and the
    // loop below picks hundreds of services.
    // (Names from the APIs too: a hand-edited model may not list them all.)
    let mut names: Vec<&str> = Vec::new();
    let mut index = std::collections::HashMap::<&str, usize>::new();
    for s in m.services.iter().chain(m.apis.iter().map(|a| &a.service)) {
        index.entry(s.as_str()).or_insert_with(|| {
            names.push(s.as_str());
            names.len() - 1
        });
    }
    let service_of: Vec<usize> = m.apis.iter().map(|a| index[a.service.as_str()]).collect();
    // Traffic: executions seen per service.
    let mut traffic = vec![0u64; names.len()];
    for (a, &s) in m.apis.iter().zip(&service_of) {
        traffic[s] += a.count;
    }
    let mut calls: Vec<Vec<u32>> = vec![Vec::new(); m.apis.len()];
    for e in &m.edges {
        calls[e.caller as usize].push(e.callee);
    }
    let mut kept = vec![false; names.len()];
    for name in &keep {
        kept[index[name.as_str()]] = true;
    }
    // Only what the kept services reach from the roots stays (the rest is
    // unreachable and goes with the removed services), so candidates are
    // the services called by reachable APIs, and reach grows with every
    // pick: `waiting` holds, per candidate, its APIs that reachable ones call.
    let mut reach = vec![false; m.apis.len()];
    let mut waiting: Vec<Vec<u32>> = vec![Vec::new(); names.len()];
    let mut frontier = BTreeSet::<usize>::new();
    let mut work: Vec<u32> = Vec::new();
    for r in &m.roots {
        if !reach[r.api as usize] {
            reach[r.api as usize] = true;
            work.push(r.api);
        }
    }
    loop {
        while let Some(a) = work.pop() {
            for &c in &calls[a as usize] {
                let s = service_of[c as usize];
                if reach[c as usize] {
                    continue;
                }
                if kept[s] {
                    reach[c as usize] = true;
                    work.push(c);
                } else {
                    waiting[s].push(c);
                    frontier.insert(s);
                }
            }
        }
        if keep.len() >= n {
            break;
        }
        // The busiest candidate; on a tie, the first by name.
        let best =
            frontier.iter().copied().max_by(|&a, &b| traffic[a].cmp(&traffic[b]).then_with(|| names[b].cmp(names[a])));
        let Some(s) = best else { break };
        frontier.remove(&s);
        kept[s] = true;
        keep.insert(names[s].to_string());
        for c in std::mem::take(&mut waiting[s]) {
            if !reach[c as usize] {
                reach[c as usize] = true;
                work.push(c);
            }
        }
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use crate::intervene::tests_support::shop;
    use crate::intervene::{apply, parse};

    #[test]
    fn downscale_keeps_roots_and_busiest() {
        let m = shop();
        let e = apply(&m, &parse("- downscale: { services: 2 }\n").unwrap()).unwrap();
        assert_eq!(e.services, ["cart", "frontend"], "cart has more traffic than email");
        let err = apply(&m, &parse("- downscale: { services: 0 }\n").unwrap()).unwrap_err();
        assert!(!err.is_bad_data());
        assert!(err.to_string().contains("cannot downscale to 0 services"), "{err}");
        assert_eq!(apply(&m, &parse("- downscale: { services: 9 }\n").unwrap()).unwrap().apis, m.apis);
    }
}
