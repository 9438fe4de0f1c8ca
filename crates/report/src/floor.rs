//! The noise floor: how far the original is from *itself*.
//!
//! Two samples of one system differ by chance, the more so the fewer values
//! they hold. A candidate is only shown to differ from the original when it
//! differs by more than that. For each compared distribution the floor is
//! found by bootstrap from the original alone: draw one sample of the
//! original's size and, for each of the candidate's runs, one of the
//! candidate's size — all with replacement from the original — and measure
//! them against each other as the candidate is measured; over
//! [`FloorOptions::replicates`] such draws, the floor of each metric is the
//! bound that a [`FloorOptions::level`] share of the draws stays within *on
//! every metric at once* (a joint bound, so that a copy of the original is
//! "close" at that rate, not five times less often).
//!
//! The bootstrap confidence interval of a candidate's metric resamples the
//! original and each candidate run from themselves.
//!
//! Samples larger than [`FloorOptions::max_n`] are resampled at that size
//! and the spread is scaled by `√(nₑ′/nₑ)` (nₑ = n₁n₂/(n₁+n₂), the effective
//! size): every metric here is a root-n statistic, and this keeps the cost
//! of a floor bounded whatever the input's size.
//!
//! Everything is seeded per distribution (by its name), so a report is the
//! same for the same inputs.

use palette_trace::rng::Rng;
use palette_trace::stats::Histogram;
use serde::Serialize;

use crate::metrics;

/// How floors and intervals are drawn.
#[derive(Clone, Debug)]
pub struct FloorOptions {
    /// Bootstrap draws per floor and per interval. 200 puts the 95% bound
    /// within a few percent of its value at 10,000 draws, at a cost a
    /// report of thousands of APIs can afford.
    pub replicates: usize,
    /// Share of same-system draws the floor covers (jointly over metrics).
    pub level: f64,
    /// Largest sample drawn per side (larger ones are scaled, see the module).
    pub max_n: usize,
    /// Seed mixed with each distribution's name.
    pub seed: u64,
}

impl Default for FloorOptions {
    fn default() -> Self {
        FloorOptions { replicates: 200, level: 0.95, max_n: 1000, seed: 1 }
    }
}

/// The five latency metrics of one comparison, as fractions: KS in [0, 1],
/// W1 over the original's mean, and the relative errors of p50, p90, p99.
/// As a floor, a quantile too few values reach is infinite (`null` in
/// JSON): shown, not judged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencyMetrics {
    /// Two-sample Kolmogorov–Smirnov statistic.
    pub ks: f64,
    /// Wasserstein-1 as a fraction of the original's mean.
    pub w1: f64,
    /// `(candidate − original) / original` of the median.
    pub p50: f64,
    /// ... of the 90th percentile.
    pub p90: f64,
    /// ... of the 99th percentile.
    pub p99: f64,
}

impl LatencyMetrics {
    /// The metrics of `candidate` against `original` (both sorted), W1
    /// divided by `original_mean`.
    pub fn of(original: &[i64], original_mean: f64, candidate: &[i64]) -> LatencyMetrics {
        let rel = |p: f64| {
            let (a, b) = (metrics::quantile(original, p), metrics::quantile(candidate, p));
            match (a, b) {
                (Some(a), Some(b)) => metrics::relative_error(a as f64, b as f64).unwrap_or(0.0),
                _ => 0.0,
            }
        };
        let w1 = metrics::wasserstein1(original, candidate);
        LatencyMetrics {
            ks: metrics::ks_statistic(original, candidate),
            w1: if original_mean > 0.0 { w1 / original_mean } else { 0.0 },
            p50: rel(0.5),
            p90: rel(0.9),
            p99: rel(0.99),
        }
    }

    fn to_array(self) -> [f64; 5] {
        [self.ks, self.w1, self.p50, self.p90, self.p99]
    }

    fn from_array(a: [f64; 5]) -> LatencyMetrics {
        LatencyMetrics { ks: a[0], w1: a[1], p50: a[2], p90: a[3], p99: a[4] }
    }

    /// Each metric's median over runs (signed errors keep their sign).
    pub fn median(runs: &[LatencyMetrics]) -> LatencyMetrics {
        LatencyMetrics::from_array(median_each(runs.iter().map(|m| m.to_array())))
    }
}

/// A bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Interval {
    /// 2.5th percentile.
    pub lo: f64,
    /// 97.5th percentile.
    pub hi: f64,
}

/// 95% bootstrap intervals of a candidate's latency metrics.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatencyIntervals {
    pub ks: Interval,
    pub w1: Interval,
    pub p50: Interval,
    pub p90: Interval,
    pub p99: Interval,
}

/// The median of each column of `rows`.
fn median_each<const K: usize>(rows: impl Iterator<Item = [f64; K]>) -> [f64; K] {
    let rows: Vec<[f64; K]> = rows.collect();
    let mut out = [0.0; K];
    for (k, o) in out.iter_mut().enumerate() {
        let mut column: Vec<f64> = rows.iter().map(|r| r[k]).collect();
        *o = median(&mut column);
    }
    out
}

/// The median of `v` (sorted here); 0 when empty.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// The `q` quantile of `v` (sorted here), nearest rank.
fn quantile_of(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    metrics::quantile(v, q).unwrap_or(0.0)
}

/// A seed for one distribution: the options' seed mixed with its name.
pub fn seed_for(base: u64, name: &str) -> u64 {
    // FNV-1a: stable across platforms and versions, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ base;
    for b in name.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `m` values drawn with replacement from `sorted`, written sorted into
/// `out`, in O(m): the order statistics of `m` uniforms come from
/// cumulative exponential spacings, so no sort is needed.
fn resample(sorted: &[i64], m: usize, rng: &mut Rng, out: &mut Vec<i64>) {
    out.clear();
    if sorted.is_empty() || m == 0 {
        return;
    }
    let spacings: Vec<f64> = (0..=m).map(|_| rng.exp(1.0)).collect();
    let total: f64 = spacings.iter().sum();
    let n = sorted.len();
    let mut acc = 0.0;
    for s in &spacings[..m] {
        acc += s;
        let i = ((acc / total) * n as f64) as usize;
        out.push(sorted[i.min(n - 1)]);
    }
}

/// Effective two-sample size.
fn effective(n1: usize, n2: usize) -> f64 {
    if n1 == 0 || n2 == 0 { 0.0 } else { (n1 as f64 * n2 as f64) / (n1 as f64 + n2 as f64) }
}

/// Sizes to draw at, and the factor that scales their spread to the real sizes.
fn drawn_sizes(n_original: usize, n_candidate: usize, max_n: usize) -> (usize, usize, f64) {
    let (mo, mc) = (n_original.min(max_n).max(1), n_candidate.min(max_n).max(1));
    let real = effective(n_original.max(1), n_candidate.max(1));
    let drawn = effective(mo, mc);
    let scale = if real > 0.0 { (drawn / real).sqrt().min(1.0) } else { 1.0 };
    (mo, mc, scale)
}

/// The smallest per-metric bounds that `level` of the replicates stay
/// within on every metric at once: each metric's bound is its own quantile
/// at one common level, raised until the joint coverage is reached.
fn joint_bounds<const K: usize>(replicates: &[[f64; K]], level: f64) -> [f64; K] {
    let mut sorted: Vec<Vec<f64>> = (0..K).map(|k| replicates.iter().map(|r| r[k].abs()).collect()).collect();
    sorted.iter_mut().for_each(|v| v.sort_by(f64::total_cmp));
    let bounds_at = |q: f64| -> [f64; K] {
        let mut b = [0.0; K];
        for k in 0..K {
            b[k] = metrics::quantile(&sorted[k], q).unwrap_or(0.0);
        }
        b
    };
    let n = replicates.len().max(1);
    let mut q = level;
    loop {
        let b = bounds_at(q);
        let covered = replicates.iter().filter(|r| (0..K).all(|k| r[k].abs() <= b[k])).count();
        if covered as f64 / n as f64 >= level || q >= 1.0 {
            return b;
        }
        q = (q + 0.5 / n as f64).min(1.0);
    }
}

/// `count` bootstrap replicates: each draws `mo` values of `original` and,
/// per run, `size` values of its `source`, and keeps the runs' median of
/// the metrics of each run's draw against the original's.
fn replicate_medians(
    original: &[i64],
    mo: usize,
    sources: &[(&[i64], usize)],
    mean: f64,
    count: usize,
    rng: &mut Rng,
) -> Vec<[f64; 5]> {
    let (mut a, mut b) = (Vec::with_capacity(mo), Vec::new());
    let mut per_run = Vec::with_capacity(sources.len());
    (0..count)
        .map(|_| {
            resample(original, mo, rng, &mut a);
            per_run.clear();
            for &(source, size) in sources {
                resample(source, size, rng, &mut b);
                per_run.push(LatencyMetrics::of(&a, mean, &b));
            }
            LatencyMetrics::median(&per_run).to_array()
        })
        .collect()
}

/// The floor of a latency distribution: the distance from `original`
/// (sorted, with mean `mean` over every value seen) that samples of its own
/// system show, for `runs` candidate runs of `candidate_n` values each whose
/// metrics are summarised by their median.
pub fn latency_floor(
    original: &[i64],
    mean: f64,
    candidate_n: usize,
    runs: usize,
    opts: &FloorOptions,
    seed: u64,
) -> LatencyMetrics {
    let runs = runs.max(1);
    let judged = judged_quantiles(original.len().min(candidate_n));
    let (mo, mc, scale) = drawn_sizes(original.len(), candidate_n, opts.max_n);
    let mut rng = Rng::new(seed);
    let sources = vec![(original, mc); runs];
    let mut replicates = replicate_medians(original, mo, &sources, mean, opts.replicates, &mut rng);
    for m in &mut replicates {
        for (x, &judge) in m.iter_mut().zip(&judged) {
            if !judge {
                *x = 0.0;
            }
        }
    }
    let mut bounds = joint_bounds(&replicates, opts.level);
    for (x, &judge) in bounds.iter_mut().zip(&judged) {
        *x = if judge { *x * scale } else { f64::INFINITY };
    }
    LatencyMetrics::from_array(bounds)
}

/// Fewest values a sample needs beyond a quantile for its error to be
/// judged: with fewer, resampling cannot see how far the unseen tail
/// reaches (the bootstrap bound of a p99 of 150 values is far too tight).
pub const MIN_BEYOND_QUANTILE: usize = 10;

/// Which of KS, W1, p50, p90, p99 a sample of `n` values can judge: KS
/// and W1 always; a quantile q when n·(1 − q) ≥ [`MIN_BEYOND_QUANTILE`].
fn judged_quantiles(n: usize) -> [bool; 5] {
    let beyond = |q: f64| (n as f64 * (1.0 - q)).round() as usize >= MIN_BEYOND_QUANTILE;
    [true, true, beyond(0.5), beyond(0.9), beyond(0.99)]
}

/// 95% bootstrap intervals of the metrics of `runs` (each sorted) against
/// `original`: the estimate `point` (the runs' median) plus the spread of
/// the resampled statistic around its own median.
pub fn latency_intervals(
    original: &[i64],
    mean: f64,
    runs: &[&[i64]],
    point: LatencyMetrics,
    opts: &FloorOptions,
    seed: u64,
) -> LatencyIntervals {
    let n_c = runs.iter().map(|r| r.len()).min().unwrap_or(0);
    let (mo, mc, scale) = drawn_sizes(original.len(), n_c, opts.max_n);
    let mut rng = Rng::new(seed ^ 0x005e_edc1);
    let sources: Vec<(&[i64], usize)> = runs.iter().map(|r| (*r, mc.min(r.len()))).collect();
    let mut replicates = replicate_medians(original, mo, &sources, mean, opts.replicates, &mut rng);
    let p = point.to_array();
    let mut out = [Interval { lo: 0.0, hi: 0.0 }; 5];
    for k in 0..5 {
        let mut v: Vec<f64> = replicates.iter_mut().map(|r| r[k]).collect();
        let mid = median(&mut v);
        let (lo, hi) = (quantile_of(&mut v, 0.025), quantile_of(&mut v, 0.975));
        let (mut lo, mut hi) = (p[k] + scale * (lo - mid), p[k] + scale * (hi - mid));
        if k < 2 {
            // KS and W1 are distances: never below 0 (KS never above 1).
            lo = lo.max(0.0);
            hi = hi.max(0.0);
            if k == 0 {
                hi = hi.min(1.0);
            }
        }
        out[k] = Interval { lo, hi };
    }
    LatencyIntervals { ks: out[0], w1: out[1], p50: out[2], p90: out[3], p99: out[4] }
}

/// The structure metrics of one comparison.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct StructureMetrics {
    /// KS of executions per trace.
    pub spans_per_trace: f64,
    /// KS of call-tree depth.
    pub depth: f64,
    /// KS of fan-out.
    pub fan_out: f64,
    /// Mean absolute difference of calls per caller execution over the edges.
    pub edge_calls: f64,
    /// Absolute difference of the fraction of concurrent stages.
    pub concurrent_stages: f64,
}

impl StructureMetrics {
    fn to_array(self) -> [f64; 5] {
        [self.spans_per_trace, self.depth, self.fan_out, self.edge_calls, self.concurrent_stages]
    }
    fn from_array(a: [f64; 5]) -> StructureMetrics {
        StructureMetrics {
            spans_per_trace: a[0],
            depth: a[1],
            fan_out: a[2],
            edge_calls: a[3],
            concurrent_stages: a[4],
        }
    }
    /// Each metric's median over runs.
    pub fn median(runs: &[StructureMetrics]) -> StructureMetrics {
        StructureMetrics::from_array(median_each(runs.iter().map(|m| m.to_array())))
    }
}

/// One edge as the structure floor needs it.
#[derive(Clone, Copy, Debug)]
pub struct EdgeRate {
    /// Calls per execution of the caller in the original.
    pub calls_per_execution: f64,
    /// Its standard deviation between samples of the original's size.
    pub original_sd: f64,
    /// ... and of the candidate's size (per run).
    pub candidate_sd: f64,
}

/// What the structure floor is drawn from: the original's distributions
/// and the candidate's sizes.
pub struct StructureInput<'a> {
    pub spans_per_trace: &'a Histogram,
    pub depth: &'a Histogram,
    pub fan_out: &'a Histogram,
    /// Traces per candidate run.
    pub candidate_traces: u64,
    /// Executions that make calls, per candidate run.
    pub candidate_callers: u64,
    /// Every edge of the original.
    pub edges: &'a [EdgeRate],
    /// Edges in the union the candidate's error is averaged over.
    pub union_edges: usize,
    /// The original's fraction of concurrent stages, and its standard
    /// deviation between samples of the original's and the candidate's sizes.
    pub concurrent_fraction: f64,
    pub concurrent_sd_original: f64,
    pub concurrent_sd_candidate: f64,
}

/// A histogram as resampling needs it: its `(value, count)` bins, its total
/// count, and the candidate's sample size.
type Bins = (Vec<(u64, u64)>, u64, usize);

/// A sorted sample of `m` values drawn from a histogram.
fn resample_histogram(h: &[(u64, u64)], total: u64, m: usize, rng: &mut Rng, out: &mut Vec<i64>) {
    out.clear();
    if total == 0 || m == 0 {
        return;
    }
    let spacings: Vec<f64> = (0..=m).map(|_| rng.exp(1.0)).collect();
    let sum: f64 = spacings.iter().sum();
    let (mut acc, mut bin, mut below) = (0.0, 0usize, h[0].1);
    for s in &spacings[..m] {
        acc += s;
        let rank = ((acc / sum) * total as f64) as u64;
        while rank >= below && bin + 1 < h.len() {
            bin += 1;
            below += h[bin].1;
        }
        out.push(h[bin].0 as i64);
    }
}

/// The structure floor: per metric, the bound that `level` of same-system
/// draws stay within (jointly). Tree-shape distributions are bootstrapped
/// from the original's histograms; call rates and the concurrent fraction,
/// which would need every trace kept to resample, are drawn from their
/// normal approximations with the variance measured between the original's
/// traces ([`crate::collect::Clustered`]).
pub fn structure_floor(s: &StructureInput<'_>, runs: usize, opts: &FloorOptions, seed: u64) -> StructureMetrics {
    let runs = runs.max(1);
    let mut rng = Rng::new(seed);
    let hists: Vec<Bins> =
        [(s.spans_per_trace, s.candidate_traces), (s.depth, s.candidate_traces), (s.fan_out, s.candidate_callers)]
            .iter()
            .map(|(h, n)| (h.iter().collect::<Vec<_>>(), h.count(), *n as usize))
            .collect();
    let scales: Vec<(usize, usize, f64)> =
        hists.iter().map(|(_, total, n)| drawn_sizes(*total as usize, *n, opts.max_n)).collect();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut per_run = Vec::with_capacity(runs);
    let replicates: Vec<[f64; 5]> = (0..opts.replicates)
        .map(|_| {
            // The original's draw is shared by the runs, as the original is.
            let originals: Vec<Vec<i64>> = hists
                .iter()
                .zip(&scales)
                .map(|((h, total, _), (mo, _, _))| {
                    if h.is_empty() {
                        return Vec::new();
                    }
                    resample_histogram(h, *total, *mo, &mut rng, &mut a);
                    a.clone()
                })
                .collect();
            let edge_o: Vec<f64> =
                s.edges.iter().map(|e| e.calls_per_execution + e.original_sd * rng.normal()).collect();
            let conc_o = s.concurrent_fraction + s.concurrent_sd_original * rng.normal();
            per_run.clear();
            for _ in 0..runs {
                let mut ks = [0.0; 3];
                for (k, ((h, total, _), (_, mc, scale))) in hists.iter().zip(&scales).enumerate() {
                    if h.is_empty() {
                        continue;
                    }
                    resample_histogram(h, *total, *mc, &mut rng, &mut b);
                    ks[k] = metrics::ks_statistic(&originals[k], &b) * scale;
                }
                let edge_sum: f64 = s
                    .edges
                    .iter()
                    .zip(&edge_o)
                    .map(|(e, o)| {
                        let c = e.calls_per_execution + e.candidate_sd * rng.normal();
                        (c - o).abs()
                    })
                    .sum();
                let conc_c = s.concurrent_fraction + s.concurrent_sd_candidate * rng.normal();
                per_run.push(StructureMetrics {
                    spans_per_trace: ks[0],
                    depth: ks[1],
                    fan_out: ks[2],
                    edge_calls: if s.union_edges == 0 { 0.0 } else { edge_sum / s.union_edges as f64 },
                    concurrent_stages: (conc_c - conc_o).abs(),
                });
            }
            StructureMetrics::median(&per_run).to_array()
        })
        .collect();
    StructureMetrics::from_array(joint_bounds(&replicates, opts.level))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(rng: &mut Rng, n: usize, median_ms: f64) -> Vec<i64> {
        let mut v: Vec<i64> = (0..n).map(|_| (rng.lognormal(median_ms, 0.5) * 1e6) as i64).collect();
        v.sort_unstable();
        v
    }

    fn mean(v: &[i64]) -> f64 {
        v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64
    }

    fn within(m: &LatencyMetrics, f: &LatencyMetrics) -> bool {
        m.to_array().iter().zip(f.to_array()).all(|(m, f)| m.abs() <= f)
    }

    #[test]
    fn resamples_are_sorted_and_from_the_sample() {
        let mut rng = Rng::new(3);
        let s: Vec<i64> = (0..100).map(|i| i * 10).collect();
        let mut out = Vec::new();
        resample(&s, 500, &mut rng, &mut out);
        assert_eq!(out.len(), 500);
        assert!(out.windows(2).all(|w| w[0] <= w[1]));
        assert!(out.iter().all(|v| v % 10 == 0 && (0..1000).contains(v)));
        // Roughly uniform over the sample: the median is near 495.
        assert!((out[250] - 495).abs() <= 100, "{}", out[250]);
        let mut h = Histogram::default();
        [1u64, 1, 1, 2, 5].iter().for_each(|&x| h.add(x));
        let bins: Vec<(u64, u64)> = h.iter().collect();
        resample_histogram(&bins, h.count(), 1000, &mut rng, &mut out);
        let ones = out.iter().filter(|&&v| v == 1).count();
        assert!((500..700).contains(&ones), "{ones} of 1000 should be ~600");
        assert!(out.windows(2).all(|w| w[0] <= w[1]) && out.iter().all(|v| [1, 2, 5].contains(v)));
    }

    /// A fresh sample of the original's own distribution is within the floor
    /// for at least ~95% of seeds (the floor's promise), and one 25% slower is
    /// beyond it.
    #[test]
    fn same_distribution_is_within_the_floor_and_a_shifted_one_is_not() {
        let opts = FloorOptions::default();
        let (mut inside, mut shifted_out) = (0, 0);
        let seeds = 60;
        for seed in 0..seeds {
            let mut rng = Rng::new(1000 + seed);
            let original = sorted(&mut rng, 400, 10.0);
            let same = sorted(&mut rng, 300, 10.0);
            let slower = sorted(&mut rng, 300, 12.5);
            let m = mean(&original);
            let floor = latency_floor(&original, m, same.len(), 1, &opts, seed_for(1, "x"));
            inside += within(&LatencyMetrics::of(&original, m, &same), &floor) as u32;
            shifted_out += !within(&LatencyMetrics::of(&original, m, &slower), &floor) as u32;
        }
        // Joint 95% coverage: expect ~57 of 60; 52 leaves room for chance.
        assert!(inside >= 52, "same distribution within the floor for {inside} of {seeds} seeds");
        assert!(shifted_out >= 57, "a 25% slower distribution beyond the floor for {shifted_out} of {seeds} seeds");
    }

    #[test]
    fn floor_shrinks_with_samples_and_with_repeats_and_is_deterministic() {
        let mut rng = Rng::new(5);
        let original = sorted(&mut rng, 5000, 10.0);
        let m = mean(&original);
        let opts = FloorOptions::default();
        let small = latency_floor(&original, m, 50, 1, &opts, 9);
        let large = latency_floor(&original, m, 5000, 1, &opts, 9);
        let repeated = latency_floor(&original, m, 50, 5, &opts, 9);
        assert!(small.ks > 1.5 * large.ks, "{small:?} vs {large:?}");
        assert!(repeated.ks < small.ks, "median of 5 runs varies less: {repeated:?} vs {small:?}");
        // KS of two samples of nₑ ≈ 2500 at 95%: about 1.36/√2500 = 0.027 (jointly a little more).
        assert!((0.02..0.05).contains(&large.ks), "{large:?}");
        assert_eq!(small, latency_floor(&original, m, 50, 1, &opts, 9));
    }

    #[test]
    fn intervals_cover_the_estimate() {
        let mut rng = Rng::new(8);
        let original = sorted(&mut rng, 800, 10.0);
        let cand = sorted(&mut rng, 600, 12.0);
        let m = mean(&original);
        let point = LatencyMetrics::of(&original, m, &cand);
        let ci = latency_intervals(&original, m, &[&cand], point, &FloorOptions::default(), 4);
        for (p, i) in point.to_array().iter().zip([ci.ks, ci.w1, ci.p50, ci.p90, ci.p99]) {
            assert!(i.lo <= *p && *p <= i.hi, "{p} outside {i:?}");
        }
        assert!(ci.ks.hi - ci.ks.lo < 0.2 && ci.ks.lo > 0.05, "{:?}", ci.ks);
    }

    #[test]
    fn structure_floor_of_a_histogram_against_itself() {
        let mut h = Histogram::default();
        let mut rng = Rng::new(2);
        for _ in 0..2000 {
            h.add(rng.range(1, 12));
        }
        let edges = [EdgeRate {
            calls_per_execution: 0.5,
            original_sd: (0.25f64 / 2000.0).sqrt(),
            candidate_sd: (0.25f64 / 500.0).sqrt(),
        }];
        let input = StructureInput {
            spans_per_trace: &h,
            depth: &h,
            fan_out: &h,
            candidate_traces: 500,
            candidate_callers: 500,
            edges: &edges,
            union_edges: 1,
            concurrent_fraction: 0.2,
            concurrent_sd_original: (0.16f64 / 4000.0).sqrt(),
            concurrent_sd_candidate: (0.16f64 / 1000.0).sqrt(),
        };
        let f = structure_floor(&input, 1, &FloorOptions::default(), 1);
        // KS at nₑ = 400: ~0.07 at 95%, jointly a little more.
        assert!((0.04..0.12).contains(&f.spans_per_trace), "{f:?}");
        // |difference| of two rates of sd √(0.25/2000 + 0.25/500) = 0.025: ~0.05-0.07.
        assert!((0.03..0.09).contains(&f.edge_calls), "{f:?}");
        assert!(f.concurrent_stages > 0.0 && f.concurrent_stages < 0.05, "{f:?}");
    }
}
