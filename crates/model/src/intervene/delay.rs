//! `delay`: extra latency on every call into a service or an API — a
//! network-delay fault, as the caller observes it. The delay is fixed
//! (`add_ms`), normally distributed around it (`jitter_ms`, as `tc netem
//! delay 245ms 10ms` draws it), or any distribution given by percentiles
//! (`percentiles: [[50, 245], [90, 251], [99, 1080]]`, e.g. the per-edge
//! shifts `palette compare --edges` measured between a normal and a faulty
//! period). A distributed delay is drawn independently of the call's
//! original overhead.

use serde::{Deserialize, Serialize};

use super::graph::cond_map;
use super::{Check, api, positive};
use crate::model::{CalleeOverhead, CondSketch, Model};
use crate::sketch::Sketch;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelaySpec {
    /// A service name, or an API (`service operation`).
    pub into: String,
    /// Milliseconds added to every call's caller-observed latency (the
    /// mean, with `jitter_ms`). Either this or `percentiles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_ms: Option<f64>,
    /// Standard deviation of a normally distributed delay around `add_ms`,
    /// ms (a draw below 0 adds nothing): a delay that varies per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
    /// The delay's distribution as `[percentile, ms]` pairs, percentiles
    /// increasing in (0, 100], ms non-decreasing: linear between the points,
    /// the first value below the first point and the last above the last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percentiles: Vec<(f64, f64)>,
}

/// Quantiles a distributed delay is represented by: as fine as the grid
/// [`Sketch::combine`] sums on.
const GRID: usize = 1024;

impl DelaySpec {
    /// A fixed delay of `add_ms`.
    pub fn fixed(into: impl Into<String>, add_ms: f64) -> DelaySpec {
        DelaySpec { into: into.into(), add_ms: Some(add_ms), jitter_ms: None, percentiles: Vec::new() }
    }

    /// The delay to add, ns: a constant, or a distribution of [`GRID`]
    /// quantiles.
    fn delay(&self) -> Result<Delay, String> {
        match (self.add_ms, self.percentiles.is_empty()) {
            (None, true) => Err("a delay needs `add_ms` or `percentiles`".into()),
            (Some(_), false) => Err("give `add_ms` (with `jitter_ms`) or `percentiles`, not both".into()),
            (Some(add), true) => {
                positive("add_ms", add, true)?;
                match self.jitter_ms {
                    None => Ok(Delay::Fixed(add * 1e6)),
                    Some(j) => {
                        positive("jitter_ms", j, true)?;
                        let q = |u: f64| (add + j * normal_quantile(u)).max(0.0) * 1e6;
                        Ok(Delay::Distributed(grid(q)))
                    }
                }
            }
            (None, false) => {
                if self.jitter_ms.is_some() {
                    return Err("`jitter_ms` goes with `add_ms`, not with `percentiles`".into());
                }
                let p = &self.percentiles;
                for (i, &(pct, ms)) in p.iter().enumerate() {
                    if !(pct > 0.0 && pct <= 100.0) {
                        return Err(format!("percentile {pct} must be in (0, 100]"));
                    }
                    positive("percentiles ms", ms, true)?;
                    if i > 0 && (pct <= p[i - 1].0 || ms < p[i - 1].1) {
                        return Err(format!(
                            "percentiles must increase and their ms not decrease: [{}, {}] after [{}, {}]",
                            pct,
                            ms,
                            p[i - 1].0,
                            p[i - 1].1
                        ));
                    }
                }
                let q = |u: f64| {
                    let pct = u * 100.0;
                    let k = p.partition_point(|&(x, _)| x < pct);
                    let ms = if k == 0 {
                        p[0].1
                    } else if k == p.len() {
                        p[k - 1].1
                    } else {
                        let ((x0, y0), (x1, y1)) = (p[k - 1], p[k]);
                        y0 + (y1 - y0) * (pct - x0) / (x1 - x0)
                    };
                    ms * 1e6
                };
                Ok(Delay::Distributed(grid(q)))
            }
        }
    }

    pub fn apply(&self, m: &mut Model) -> Check {
        let delay = self.delay()?;
        let target: Vec<bool> = if m.services.contains(&self.into) {
            m.apis.iter().map(|a| a.service == self.into).collect()
        } else {
            let id = api(m, &self.into).map_err(|_| {
                format!("`into: {}` is neither a service nor an API (`service operation`) of the model", self.into)
            })?;
            (0..m.apis.len()).map(|i| i == id as usize).collect()
        };
        let shift = |s: &Sketch| match &delay {
            Delay::Fixed(add) if s.is_empty() => fixed(*add),
            Delay::Fixed(add) => s.shifted(*add),
            // Not reweighted to the original's count: rounding 1,024 points
            // down to a small sketch's few values would distort the shape.
            Delay::Distributed(d) if s.is_empty() => d.clone(),
            Delay::Distributed(d) => s.sum_independent(d),
        };
        for a in &mut m.apis {
            // The overhead sketch is what a caller adds to the callee's own
            // latency: shifting it delays exactly the calls into the target.
            let mut callees: Vec<u32> = a.states.iter().flat_map(|s| s.calls.iter().copied()).collect();
            callees.sort_unstable();
            callees.dedup();
            for c in callees.into_iter().filter(|&c| target[c as usize]) {
                if !a.overhead.iter().any(|o| o.callee == c) {
                    a.overhead.push(CalleeOverhead { callee: c, overhead: CondSketch::default() });
                }
            }
            a.overhead.sort_by_key(|o| o.callee);
            for o in a.overhead.iter_mut().filter(|o| target[o.callee as usize]) {
                cond_map(&mut o.overhead, &shift);
            }
            if let Some(naive) = &mut a.naive {
                for c in naive.calls.iter_mut().filter(|c| target[c.callee as usize]) {
                    c.overhead = shift(&c.overhead);
                }
            }
        }
        // The edges' summaries are for reading, not sampling: each quantile
        // moves by the delay's own (exact for a fixed delay, an upper bound
        // for a distributed one).
        let q = |p: f64| match &delay {
            Delay::Fixed(v) => *v,
            Delay::Distributed(d) => d.quantile(p),
        };
        for e in m.edges.iter_mut().filter(|e| target[e.callee as usize]) {
            e.latency.mean += delay.mean();
            e.latency.p50 += q(0.5);
            e.latency.p90 += q(0.9);
            e.latency.p99 += q(0.99);
        }
        Ok(())
    }
}

/// What a delay adds, ns.
enum Delay {
    Fixed(f64),
    Distributed(Sketch),
}

impl Delay {
    fn mean(&self) -> f64 {
        match self {
            Delay::Fixed(v) => *v,
            Delay::Distributed(s) => s.mean(),
        }
    }
}

/// The distribution whose quantile function is `q`, on [`GRID`] midpoints.
fn grid(q: impl Fn(f64) -> f64) -> Sketch {
    let mut s = Sketch::new();
    for i in 0..GRID {
        s.add(q((i as f64 + 0.5) / GRID as f64));
    }
    s
}

/// The standard normal quantile (Acklam's rational approximation; relative
/// error below 1.2e-9), for `u` in (0, 1).
#[allow(clippy::excessive_precision)] // the published constants, as published
fn normal_quantile(u: f64) -> f64 {
    const A: [f64; 6] = [
        -39.696830286653757,
        220.94609842452050,
        -275.92851044696869,
        138.35775186726900,
        -30.664798066147160,
        2.5066282774592392,
    ];
    const B: [f64; 5] =
        [-54.476098798224058, 161.58583685804089, -155.69897985988661, 66.801311887719720, -13.280681552885720];
    const C: [f64; 6] = [
        -7.7848940024302926e-3,
        -0.32239645804113648,
        -2.4007582771618381,
        -2.5497325393437338,
        4.3746641414649678,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.7846957090414622e-3, 0.32246712907003983, 2.445134137142996, 3.7544086619074162];
    let tail = |q: f64| {
        let q = (-2.0 * q.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if u < 0.02425 {
        tail(u)
    } else if u > 1.0 - 0.02425 {
        -tail(1.0 - u)
    } else {
        let q = u - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

fn fixed(v: f64) -> Sketch {
    let mut s = Sketch::new();
    s.add(v);
    s
}

#[cfg(test)]
mod tests {
    use crate::intervene::tests_support::shop;
    use crate::intervene::{apply, parse};
    use crate::{Model, Simulator};

    /// Caller-observed latencies (CLIENT spans) of calls into `service`,
    /// ms, sorted.
    fn into_latencies(m: &Model, service: &str) -> Vec<f64> {
        let mut sim = Simulator::new(m, 3);
        let mut out = Vec::new();
        for _ in 0..2000 {
            let (spans, names) = sim.trace().unwrap();
            for c in spans.iter().filter(|s| s.kind == palette_trace::SpanKind::Client) {
                let callee = spans.iter().find(|s| s.parent_id == c.span_id).unwrap();
                if names.resolve(callee.service) == service {
                    out.push(c.duration_ns as f64 / 1e6);
                }
            }
        }
        out.sort_by(f64::total_cmp);
        out
    }

    /// Mean caller-observed latency of calls into `service`, ms.
    fn into_latency(m: &Model, service: &str) -> f64 {
        let v = into_latencies(m, service);
        v.iter().sum::<f64>() / v.len() as f64
    }

    fn quantile(v: &[f64], q: f64) -> f64 {
        v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
    }

    #[test]
    fn distributed_delays() {
        let m = shop();
        let before = into_latencies(&m, "cart");
        let spread = quantile(&before, 0.99) - quantile(&before, 0.01);
        // Normal jitter: the mean moves by add_ms, the spread grows by ~±1.28σ at p10/p90.
        let e = apply(&m, &parse("- delay: { into: cart, add_ms: 500, jitter_ms: 100 }\n").unwrap()).unwrap();
        let after = into_latencies(&e, "cart");
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!((mean(&after) - mean(&before) - 500.0).abs() < 10.0, "{} → {}", mean(&before), mean(&after));
        let width = quantile(&after, 0.9) - quantile(&after, 0.1);
        assert!((width - 256.3).abs() < 25.0 + spread, "p10..p90 width {width} (callee spread {spread})");
        // Percentiles: the delay's quantiles, plus the original's small latency.
        let e = apply(&m, &parse("- delay: { into: cart, percentiles: [[50, 1000], [90, 3000]] }\n").unwrap()).unwrap();
        let after = into_latencies(&e, "cart");
        for (q, want) in [(0.25, 1000.0), (0.5, 1000.0), (0.7, 2000.0), (0.9, 3000.0), (0.99, 3000.0)] {
            let got = quantile(&after, q) - quantile(&before, 0.5);
            assert!((got - want).abs() < 0.03 * want + spread, "q{q}: {got} vs {want}");
        }
        let email = into_latency(&e, "email") - into_latency(&m, "email");
        assert!(email.abs() < 0.5, "email untouched: {email}");
        for (yaml, msg) in [
            ("- delay: { into: cart }\n", "needs `add_ms` or `percentiles`"),
            ("- delay: { into: cart, add_ms: 5, percentiles: [[50, 1]] }\n", "not both"),
            ("- delay: { into: cart, add_ms: 5, jitter_ms: -1 }\n", "`jitter_ms` must be a number ≥ 0"),
            ("- delay: { into: cart, percentiles: [[50, 1]], jitter_ms: 1 }\n", "goes with `add_ms`"),
            ("- delay: { into: cart, percentiles: [[0, 1]] }\n", "must be in (0, 100]"),
            ("- delay: { into: cart, percentiles: [[50, 5], [90, 4]] }\n", "must increase"),
            ("- delay: { into: cart, percentiles: [[90, 5], [50, 6]] }\n", "must increase"),
        ] {
            let err = apply(&m, &parse(yaml).unwrap()).unwrap_err().to_string();
            assert!(err.contains(msg), "{yaml}: {err}");
        }
    }

    #[test]
    fn normal_quantiles() {
        for (u, z) in [(0.5, 0.0), (0.9, 1.2815516), (0.01, -2.3263479), (0.999, 3.0902323)] {
            assert!((super::normal_quantile(u) - z).abs() < 1e-6, "{u}");
        }
    }

    #[test]
    fn delay_shifts_calls_into_the_service() {
        let m = shop();
        let e = apply(&m, &parse("- delay: { into: cart, add_ms: 245 }\n").unwrap()).unwrap();
        let (before, after) = (into_latency(&m, "cart"), into_latency(&e, "cart"));
        assert!((after - before - 245.0).abs() < 2.5, "{before} → {after}");
        let (before, after) = (into_latency(&m, "email"), into_latency(&e, "email"));
        assert!((after - before).abs() < 0.5, "email untouched: {before} → {after}");
        let err = apply(&m, &parse("- delay: { into: cart, add_ms: -3 }\n").unwrap()).unwrap_err().to_string();
        assert!(err.contains("`add_ms` must be a number ≥ 0"), "{err}");
        let err = apply(&m, &parse("- delay: { into: nowhere, add_ms: 3 }\n").unwrap()).unwrap_err().to_string();
        assert!(err.contains("neither a service nor an API"), "{err}");
    }
}
