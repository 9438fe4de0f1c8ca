//! Failure fidelity: how often requests and calls fail on each side, and
//! how many requests each API serves per root request (what a retry storm
//! multiplies).
//!
//! A failure rate is a binomial proportion, so its noise floor is the one of
//! two samples of the compared sizes drawn from one system: 1.96 standard
//! errors of the difference at the pooled rate. Calls of one trace are not
//! independent (a loop fails its calls together), so the floor of an edge
//! is a lower bound: an edge just beyond it is worth a look, not a verdict.

use std::fmt::Write as _;

use serde::Serialize;

use crate::collect::{ApiName, Profile};

/// A failure count and the share it is of its total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Rate {
    pub total: u64,
    pub failed: u64,
    /// `failed / total` (0 when there is nothing).
    pub rate: f64,
}

impl Rate {
    fn of(total: u64, failed: u64) -> Rate {
        Rate { total, failed, rate: if total == 0 { 0.0 } else { failed as f64 / total as f64 } }
    }
}

/// One failure rate on both sides.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RateComparison {
    /// The calling API, for an edge; `None` for a root API.
    pub caller: Option<ApiName>,
    pub api: ApiName,
    pub original: Rate,
    pub candidate: Rate,
    /// 95% noise floor of the difference (see the module doc).
    pub floor: f64,
    /// `|candidate − original| ≤ floor`.
    pub within: bool,
}

impl RateComparison {
    fn new(caller: Option<ApiName>, api: ApiName, original: Rate, candidate: Rate) -> RateComparison {
        let (n, m) = (original.total as f64, candidate.total as f64);
        let pooled = (original.failed + candidate.failed) as f64 / (n + m).max(1.0);
        let floor = if n > 0.0 && m > 0.0 {
            1.96 * (pooled * (1.0 - pooled) * (1.0 / n + 1.0 / m)).sqrt()
        } else {
            f64::INFINITY
        };
        // At the precision shown (0.1%), so a verdict never contradicts its numbers.
        let shown = |x: f64| (x * 1000.0).round() / 1000.0;
        let within = shown((candidate.rate - original.rate).abs()) <= shown(floor);
        RateComparison { caller, api, original, candidate, floor, within }
    }
}

/// Executions of an API per root request on both sides.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Amplification {
    pub api: ApiName,
    pub original: f64,
    pub candidate: f64,
    /// `candidate / original` (infinite for an API only the candidate runs).
    pub ratio: f64,
}

/// Failures and amplification, original against one candidate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailureComparison {
    /// Per root API of the original, most traces first.
    pub roots: Vec<RateComparison>,
    /// Per edge that failed on either side, most failures first.
    pub edges: Vec<RateComparison>,
    /// Per API on either side, the largest change first.
    pub amplification: Vec<Amplification>,
}

impl FailureComparison {
    pub fn of(o: &Profile, c: &Profile) -> FailureComparison {
        let root_rate = |p: &Profile, api: &ApiName| {
            Rate::of(p.roots.get(api).map_or(0, |s| s.count), p.failed_roots.get(api).copied().unwrap_or(0))
        };
        let roots = o
            .roots_by_count()
            .into_iter()
            .map(|api| RateComparison::new(None, api.clone(), root_rate(o, api), root_rate(c, api)))
            .collect();
        let mut keys: Vec<&(ApiName, ApiName)> = o.failed_calls.keys().chain(c.failed_calls.keys()).collect();
        keys.sort();
        keys.dedup();
        let edge_rate = |p: &Profile, key: &(ApiName, ApiName)| {
            Rate::of(p.callers.get(key).map_or(0, |s| s.count), p.failed_calls.get(key).copied().unwrap_or(0))
        };
        let mut edges: Vec<RateComparison> = keys
            .into_iter()
            .map(|k| RateComparison::new(Some(k.0.clone()), k.1.clone(), edge_rate(o, k), edge_rate(c, k)))
            .collect();
        edges.sort_by_key(|r| std::cmp::Reverse(r.original.failed + r.candidate.failed));
        let per_root = |p: &Profile, api: &ApiName| {
            let n = p.apis.get(api).map_or(0, |a| a.latency.count);
            if p.traces == 0 { 0.0 } else { n as f64 / p.traces as f64 }
        };
        let mut names: Vec<&ApiName> = o.apis.keys().chain(c.apis.keys()).collect();
        names.sort();
        names.dedup();
        let mut amplification: Vec<Amplification> = names
            .into_iter()
            .map(|api| {
                let (a, b) = (per_root(o, api), per_root(c, api));
                let ratio = if a > 0.0 { b / a } else { f64::INFINITY };
                Amplification { api: api.clone(), original: a, candidate: b, ratio }
            })
            .collect();
        amplification.sort_by(|a, b| b.ratio.ln().abs().total_cmp(&a.ratio.ln().abs()));
        FailureComparison { roots, edges, amplification }
    }

    /// Whether either side failed at all.
    pub fn any_failures(&self) -> bool {
        self.roots.iter().chain(&self.edges).any(|r| r.original.failed + r.candidate.failed > 0)
    }

    /// The terminal section for candidate `label`: root failure rates,
    /// the edges that failed most, and the APIs whose requests per root
    /// request changed by more than 10%, `top` of each at most.
    pub fn render(&self, label: &str, top: usize) -> String {
        let mut out = String::new();
        let pct = |r: f64| format!("{:.1}%", r * 100.0);
        let line = |out: &mut String, name: String, r: &RateComparison| {
            let floor = if r.floor.is_finite() { pct(r.floor) } else { "–".into() };
            let _ = writeln!(
                out,
                "  {name:<48} {:>7} ({} of {}) → {:>7} ({} of {})  floor {floor}  {}",
                pct(r.original.rate),
                r.original.failed,
                r.original.total,
                pct(r.candidate.rate),
                r.candidate.failed,
                r.candidate.total,
                if r.within { "within" } else { "beyond" }
            );
        };
        if self.any_failures() {
            let _ = writeln!(out, "failed requests by root API, original → {label} (95% binomial noise floor)");
            for r in self.roots.iter().take(top) {
                line(&mut out, r.api.to_string(), r);
            }
            if !self.edges.is_empty() {
                let _ = writeln!(out, "failed calls by edge, original → {label}");
                for r in self.edges.iter().take(top) {
                    let caller = r.caller.as_ref().map_or_else(String::new, ToString::to_string);
                    line(&mut out, format!("{caller} → {}", r.api), r);
                }
            }
        }
        let changed: Vec<&Amplification> =
            self.amplification.iter().filter(|a| a.ratio.ln().abs() > 1.1f64.ln()).take(top).collect();
        if !changed.is_empty() {
            let _ = writeln!(out, "requests per root request, original → {label} (changed by more than 10%)");
            for a in changed {
                let _ = writeln!(
                    out,
                    "  {:<48} {:>8.3} → {:>8.3}  (×{:.2})",
                    a.api.to_string(),
                    a.original,
                    a.candidate,
                    a.ratio
                );
            }
        }
        out
    }
}
