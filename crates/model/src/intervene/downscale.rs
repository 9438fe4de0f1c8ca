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
    // Traffic: executions seen per service.
    let mut traffic = std::collections::BTreeMap::<&str, u64>::new();
    for a in &m.apis {
        *traffic.entry(&a.service).or_default() += a.count;
    }
    // Only what the kept services reach from the roots stays (the rest is
    // unreachable and goes with the removed services), so candidates are
    // the callees of reachable APIs, and reach grows with every pick.
    let mut reach: BTreeSet<u32> = m.roots.iter().map(|r| r.api).collect();
    loop {
        loop {
            let before = reach.len();
            for e in &m.edges {
                if reach.contains(&e.caller) && keep.contains(&m.apis[e.callee as usize].service) {
                    reach.insert(e.callee);
                }
            }
            if reach.len() == before {
                break;
            }
        }
        if keep.len() >= n {
            break;
        }
        let best = m
            .edges
            .iter()
            .filter(|e| reach.contains(&e.caller))
            .map(|e| &m.apis[e.callee as usize].service)
            .filter(|s| !keep.contains(*s))
            .max_by(|a, b| traffic[a.as_str()].cmp(&traffic[b.as_str()]).then_with(|| b.cmp(a)));
        match best {
            Some(s) => keep.insert(s.clone()),
            None => break,
        };
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
