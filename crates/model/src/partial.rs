//! Partial fits: everything a fit has counted, before coarsening.
//!
//! A partial is keyed by names, not by the symbols of one read, so partials
//! of disjoint inputs merge exactly (counts add, sketches merge, sums are
//! integers). `fit` itself goes through a partial, so `fit` over all inputs
//! and `merge` of per-shard partials produce the same bytes.

use serde::{Deserialize, Serialize};

use crate::model::EdgeKind;
use crate::sketch::Sketch;

pub const PARTIAL_FORMAT: &str = "palette-partial/1";

/// Index into [`Partial::api_names`].
pub type PApi = u32;
/// A caller: an API, or `None` for a root request.
pub type PCaller = Option<PApi>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    pub format: String,
    /// Options of the fit: partials merge only with equal options.
    pub options: crate::model::FitOptions,
    pub inputs: Vec<String>,
    pub traces: u64,
    pub spans: u64,
    /// (service, operation) of every API, sorted.
    pub api_names: Vec<(String, String)>,
    /// Per API, same order as `api_names`.
    pub apis: Vec<PartialApi>,
    pub roots: Vec<(PApi, u64)>,
    /// Per root API, the traces whose root execution failed.
    #[serde(default)]
    pub failed_roots: Vec<(PApi, u64)>,
    pub edges: Vec<PartialEdge>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialEdge {
    pub caller: PApi,
    pub callee: PApi,
    pub kind: EdgeKind,
    pub protocol: Option<String>,
    pub count: u64,
    pub latency: Sketch,
}

/// Sums of x, y and their products over (x, y) pairs, in integers so they
/// add exactly in any order: enough for least squares (λ of a stage, in
/// nanoseconds) and for a correlation (overheads of repeated calls, in
/// log-scale sketch buckets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    pub n: u64,
    pub x: i128,
    pub y: i128,
    pub xx: i128,
    #[serde(default)]
    pub yy: i128,
    pub xy: i128,
}

impl Moments {
    pub fn add(&mut self, x: i64, y: i64) {
        let (x, y) = (x as i128, y as i128);
        self.n += 1;
        self.x += x;
        self.y += y;
        self.xx += x * x;
        self.yy += y * y;
        self.xy += x * y;
    }
    pub fn merge(&mut self, o: &Moments) {
        self.n += o.n;
        self.x += o.x;
        self.y += o.y;
        self.xx += o.xx;
        self.yy += o.yy;
        self.xy += o.xy;
    }
    /// λ in [0, 1] (and intercept ≥ 0) of `y = λ·x + c` minimising squared
    /// error; 0 without data. The upper bound matters when a call's latency
    /// never varies: then λ and the intercept cannot be told apart, and an
    /// unbounded fit would count the following work twice.
    pub fn lambda(&self) -> f64 {
        self.unbounded_lambda().min(1.0)
    }

    fn unbounded_lambda(&self) -> f64 {
        if self.n == 0 || self.xx == 0 {
            return 0.0;
        }
        let n = self.n as f64;
        let (sx, sy, sxx, sxy) = (self.x as f64, self.y as f64, self.xx as f64, self.xy as f64);
        let det = n * sxx - sx * sx;
        if det > 0.0 {
            let lambda = (n * sxy - sx * sy) / det;
            let intercept = (sy - lambda * sx) / n;
            if lambda >= 0.0 && intercept >= 0.0 {
                return lambda;
            }
            if lambda < 0.0 {
                return 0.0;
            }
        }
        // Intercept pinned at 0.
        (sxy / sxx).max(0.0)
    }

    /// Pearson correlation, in [0, 1] (a negative one is treated as none);
    /// 0 with too few pairs to say.
    pub fn correlation(&self) -> f64 {
        if self.n < 30 {
            return 0.0;
        }
        let n = self.n as f64;
        let cov = n * self.xy as f64 - self.x as f64 * self.y as f64;
        let vx = n * self.xx as f64 - (self.x as f64).powi(2);
        let vy = n * self.yy as f64 - (self.y as f64).powi(2);
        if vx <= 0.0 || vy <= 0.0 {
            return 0.0;
        }
        (cov / (vx * vy).sqrt()).clamp(0.0, 1.0)
    }
}

/// Work samples of one transition for one caller, measured two ways: as if
/// the source stage was waited for (resume at its end) and as if not
/// (resume at its start). The fitted λ picks one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkAcc {
    pub count: u64,
    pub waited: Sketch,
    pub detached: Sketch,
}

impl WorkAcc {
    pub fn merge(&mut self, o: &WorkAcc) {
        self.count += o.count;
        self.waited.merge(&o.waited);
        self.detached.merge(&o.detached);
    }
}

/// A node of an API's prefix tree: one stage after a given sequence of stages.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PNode {
    /// `None` for the start node.
    pub parent: Option<u32>,
    /// Callees of the stage, sorted (empty for start).
    pub label: Vec<PApi>,
    /// The transition from the parent into this node, per caller (sorted).
    pub enter: Vec<(PCaller, WorkAcc)>,
    /// Executions that finished after this node, per caller (tail work).
    pub finish: Vec<(PCaller, WorkAcc)>,
    pub lambda: Moments,
    /// `enter` counted per (caller, outcome of the parent's stage: the
    /// calls its callees made), sorted.
    #[serde(default)]
    pub enter_outcome: Vec<((PCaller, u32), u64)>,
    /// `finish` counted per (caller, outcome of this node's stage), sorted.
    #[serde(default)]
    pub finish_outcome: Vec<((PCaller, u32), u64)>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialApi {
    pub count: u64,
    pub callers: Vec<(PCaller, u64)>,
    pub latency: Sketch,
    pub request_bytes: Sketch,
    pub response_bytes: Sketch,
    /// Prefix tree, breadth-first, children ordered by label; node 0 is start.
    pub nodes: Vec<PNode>,
    /// ((callee, caller of this API), overhead sketch), sorted.
    pub overhead: Vec<((PApi, PCaller), Sketch)>,
    /// ((callee, calls in one execution), executions), sorted, for
    /// executions that made at least one call to that callee.
    pub calls_per_execution: Vec<((PApi, u32), u64)>,
    /// Execution time minus time in calls: the naive model's work.
    pub naive_work: Sketch,
    /// Overheads of repeated calls to one callee in one execution, in pairs.
    #[serde(default)]
    pub overhead_pairs: Moments,
    /// Executions that recorded an error.
    #[serde(default)]
    pub failed: u64,
    /// Per caller: executions none of whose waited calls failed, and of
    /// those, the ones that failed (the API's own failures).
    #[serde(default)]
    pub clean: Vec<(PCaller, u64)>,
    #[serde(default)]
    pub clean_failed: Vec<(PCaller, u64)>,
    /// Per callee: stages in which a waited call to it failed, and of those,
    /// the ones the execution failed right after (it passed the failure on).
    #[serde(default)]
    pub after_failed_call: Vec<(PApi, u64)>,
    #[serde(default)]
    pub after_failed_call_failed: Vec<(PApi, u64)>,
}

impl Partial {
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string(self).expect("partials always serialise");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_correlation_tells_shared_from_independent() {
        let (mut same, mut independent) = (Moments::default(), Moments::default());
        let mut rng = palette_trace::rng::Rng::new(5);
        for _ in 0..5000 {
            let level = rng.range(400, 800) as i64;
            same.add(level, level + rng.range(0, 2) as i64);
            independent.add(rng.range(400, 800) as i64, rng.range(400, 800) as i64);
        }
        assert!(same.correlation() > 0.99, "{}", same.correlation());
        assert!(independent.correlation() < 0.05, "{}", independent.correlation());
        // Too few pairs say nothing.
        let mut few = Moments::default();
        few.add(1, 1);
        few.add(2, 2);
        assert_eq!(few.correlation(), 0.0);
        // Merging is exact.
        let mut a = same;
        a.merge(&independent);
        let mut b = independent;
        b.merge(&same);
        assert_eq!(a, b);
    }
}
