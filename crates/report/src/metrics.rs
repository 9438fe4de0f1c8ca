//! Two-sample distances between latency samples: the Kolmogorov–Smirnov
//! statistic and its p-value, Wasserstein-1, and quantile errors.
//!
//! Every function takes samples **sorted ascending** (as [`crate::Sample`]
//! keeps them) and runs in one merge pass, O(n₁ + n₂).

use palette_trace::stats::Histogram;

/// The two-sample Kolmogorov–Smirnov statistic: the largest vertical gap
/// between the two empirical CDFs, in [0, 1]. 0 for two empty samples; 1
/// when exactly one is empty.
///
/// Ties are handled exactly: both CDFs step past every copy of a value
/// before the gap is measured.
pub fn ks_statistic<T: PartialOrd + Copy>(a: &[T], b: &[T]) -> f64 {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return 0.0,
        (true, false) | (false, true) => return 1.0,
        _ => {}
    }
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut d: f64 = 0.0;
    while i < a.len() && j < b.len() {
        let x = if a[i] <= b[j] { a[i] } else { b[j] };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    // Past the end of one sample its CDF is 1; the other's gap only shrinks
    // from here, so the last measured point is the supremum.
    d
}

/// The KS statistic of two distributions of small integers (spans per
/// trace, depth, fan-out), kept as exact histograms.
pub fn ks_histograms(a: &Histogram, b: &Histogram) -> f64 {
    let (n, m) = (a.count(), b.count());
    match (n == 0, m == 0) {
        (true, true) => return 0.0,
        (true, false) | (false, true) => return 1.0,
        _ => {}
    }
    let (mut ia, mut ib) = (a.iter().peekable(), b.iter().peekable());
    let (mut ca, mut cb) = (0u64, 0u64);
    let mut d: f64 = 0.0;
    loop {
        let x = match (ia.peek(), ib.peek()) {
            (None, None) => break,
            (Some(&(x, _)), None) | (None, Some(&(x, _))) => x,
            (Some(&(x, _)), Some(&(y, _))) => x.min(y),
        };
        if let Some(&(v, c)) = ia.peek()
            && v == x
        {
            ca += c;
            ia.next();
        }
        if let Some(&(v, c)) = ib.peek()
            && v == x
        {
            cb += c;
            ib.next();
        }
        d = d.max((ca as f64 / n as f64 - cb as f64 / m as f64).abs());
    }
    d
}

/// The survival function of the Kolmogorov distribution,
/// `Q(λ) = 2 Σ_{j≥1} (−1)^{j−1} e^{−2 j² λ²}` = P(K > λ).
///
/// For small λ the alternating series converges slowly, so there the
/// equivalent Jacobi form `1 − √(2π)/λ Σ_{j≥1} e^{−(2j−1)² π² / (8 λ²)}` is
/// summed instead. Both are accurate to ~1e-12 with a handful of terms.
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda.is_nan() {
        return f64::NAN;
    }
    if lambda <= 0.0 {
        return 1.0;
    }
    let p = if lambda < 1.18 {
        let k = -std::f64::consts::PI * std::f64::consts::PI / (8.0 * lambda * lambda);
        let sum: f64 = (1..=8).map(|j| ((2 * j - 1) as f64).powi(2)).map(|t| (k * t).exp()).sum();
        1.0 - (std::f64::consts::TAU).sqrt() / lambda * sum
    } else {
        let k = -2.0 * lambda * lambda;
        (1..=12).map(|j| (if j % 2 == 1 { 2.0 } else { -2.0 }) * (k * (j * j) as f64).exp()).sum()
    };
    p.clamp(0.0, 1.0)
}

/// The asymptotic p-value of the two-sample KS test: the probability of a
/// statistic at least `d` when both samples (of sizes `n1`, `n2`) come from
/// one continuous distribution.
///
/// Uses the Kolmogorov distribution at `λ = (√nₑ + 0.12 + 0.11/√nₑ)·d` with
/// the effective size `nₑ = n₁n₂/(n₁+n₂)` (Stephens' small-sample correction,
/// as in Numerical Recipes' `kstwo`). With millions of samples any real
/// difference is "significant", so read it beside the statistic itself.
/// 1 when either sample is empty (nothing to test).
pub fn ks_p_value(d: f64, n1: usize, n2: usize) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let ne = (n1 as f64 * n2 as f64) / (n1 as f64 + n2 as f64);
    let sq = ne.sqrt();
    kolmogorov_sf((sq + 0.12 + 0.11 / sq) * d)
}

/// The Wasserstein-1 (earth mover's) distance between two samples:
/// `∫ |F_a(x) − F_b(x)| dx`, in the samples' unit. 0 when either is empty.
///
/// For a sample and the same sample shifted by `c`, it is exactly `|c|`.
pub fn wasserstein1(a: &[i64], b: &[i64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut area = 0.0;
    let mut x = a[0].min(b[0]);
    loop {
        // Step both CDFs past `x`, then integrate the gap up to the next value.
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        let next = match (a.get(i), b.get(j)) {
            (None, None) => break,
            (Some(&u), None) | (None, Some(&u)) => u,
            (Some(&u), Some(&v)) => u.min(v),
        };
        area += (i as f64 / n - j as f64 / m).abs() * (next - x) as f64;
        x = next;
    }
    area
}

/// The nearest-rank quantile of a sorted sample: the smallest value with at
/// least a fraction `q` of the sample at or below it. `None` when empty.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    Some(sorted[rank - 1])
}

/// `(candidate − original) / original`; `None` when the original is 0 (a
/// relative error of a zero latency means nothing).
pub fn relative_error(original: f64, candidate: f64) -> Option<f64> {
    (original != 0.0).then(|| (candidate - original) / original)
}

/// The mean absolute error of per-edge call probabilities over the union of
/// edges: pairs are `(original, candidate)`, an edge missing on one side
/// counted as 0 there. 0 when there are no edges at all.
pub fn mean_absolute_error(pairs: impl IntoIterator<Item = (f64, f64)>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for (a, b) in pairs {
        sum += (a - b).abs();
        n += 1;
    }
    if n == 0 { 0.0 } else { sum / n as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palette_trace::rng::Rng;

    fn close(a: f64, b: f64, eps: f64) -> bool {
        (a - b).abs() <= eps
    }

    #[test]
    fn ks_of_known_samples() {
        // F_a and F_b by hand: at x=1: 1/3 vs 0; x=2: 2/3 vs 1/4; x=3: 1 vs 1/2;
        // x=4: 1 vs 3/4; x=5: 1 vs 1. Largest gap: 1/2 at x=3.
        assert!(close(ks_statistic(&[1, 2, 3], &[2, 3, 4, 5]), 0.5, 1e-12));
        // Ties across samples: at x=2 both step past their 2s: 2/4 vs 1/2.
        assert!(close(ks_statistic(&[1, 2, 2, 3], &[2, 4]), 0.5, 1e-12));
        assert!(close(ks_statistic(&[1, 2, 2, 3], &[2, 2, 2, 3]), 0.25, 1e-12));
        assert_eq!(ks_statistic(&[1, 2, 3], &[1, 2, 3]), 0.0);
        assert_eq!(ks_statistic(&[5, 5, 7], &[5, 5, 7]), 0.0);
        assert_eq!(ks_statistic(&[1, 2, 3], &[4, 5]), 1.0);
        assert_eq!(ks_statistic(&[4, 5], &[1, 2, 3]), 1.0);
        assert_eq!(ks_statistic::<i64>(&[], &[]), 0.0);
        assert_eq!(ks_statistic(&[], &[1]), 1.0);
    }

    #[test]
    fn ks_of_histograms_matches_samples() {
        let (a, b) = ([1u64, 1, 2, 3, 3, 3, 7], [1u64, 2, 2, 2, 4]);
        let hist = |xs: &[u64]| {
            let mut h = Histogram::default();
            xs.iter().for_each(|&x| h.add(x));
            h
        };
        assert!(close(ks_histograms(&hist(&a), &hist(&b)), ks_statistic(&a, &b), 1e-12));
        assert_eq!(ks_histograms(&hist(&a), &hist(&a)), 0.0);
        assert_eq!(ks_histograms(&hist(&[1, 2]), &hist(&[3])), 1.0);
        assert_eq!(ks_histograms(&Histogram::default(), &Histogram::default()), 0.0);
    }

    #[test]
    fn kolmogorov_distribution_values() {
        // Reference values of P(K > λ) (scipy.stats.kstwobign.sf).
        assert!(close(kolmogorov_sf(0.5), 0.963_945_243_664_875_1, 1e-9));
        assert!(close(kolmogorov_sf(1.0), 0.269_999_671_677_354_56, 1e-9));
        assert!(close(kolmogorov_sf(1.36), 0.049_485_876_755_377_88, 1e-9));
        assert!(close(kolmogorov_sf(2.0), 0.000_670_925_255_779_695, 1e-12));
        // Both series agree where they meet.
        let (below, above) = (kolmogorov_sf(1.18 - 1e-12), kolmogorov_sf(1.18));
        assert!(close(below, above, 1e-9), "{below} {above}");
        assert_eq!(kolmogorov_sf(0.0), 1.0);
        assert_eq!(kolmogorov_sf(50.0), 0.0);
        let mut last = 1.0;
        for i in 1..400 {
            let p = kolmogorov_sf(i as f64 / 100.0);
            assert!((0.0..=1.0).contains(&p) && p <= last + 1e-12, "not monotone at {i}: {p} > {last}");
            last = p;
        }
    }

    #[test]
    fn p_value_separates_different_samples() {
        let mut rng = Rng::new(11);
        let mut sorted = |f: &mut dyn FnMut(&mut Rng) -> f64| {
            let mut v: Vec<i64> = (0..1000).map(|_| (f(&mut rng) * 1e6) as i64).collect();
            v.sort_unstable();
            v
        };
        let a = sorted(&mut |r| r.lognormal(2.0, 0.3));
        let same = sorted(&mut |r| r.lognormal(2.0, 0.3));
        let slower = sorted(&mut |r| r.lognormal(2.4, 0.3));
        let d_same = ks_statistic(&a, &same);
        let d_slow = ks_statistic(&a, &slower);
        let (p_same, p_slow) = (ks_p_value(d_same, 1000, 1000), ks_p_value(d_slow, 1000, 1000));
        assert!((0.0..=1.0).contains(&p_same) && (0.0..=1.0).contains(&p_slow));
        assert!(p_slow < 0.05, "D={d_slow} p={p_slow}");
        assert!(p_same > 0.05, "D={d_same} p={p_same}");
        // By hand: nₑ = 500, λ = (√500 + 0.12 + 0.11/√500)·0.1 = 2.248 56, Q(λ) = 8.1176e-5.
        assert!(close(ks_p_value(0.1, 1000, 1000), 8.117_557_315_738_262e-5, 1e-12));
        assert_eq!(ks_p_value(0.0, 10, 10), 1.0);
        assert_eq!(ks_p_value(1.0, 0, 10), 1.0);
        assert!(ks_p_value(1.0, 1, 1) <= 1.0);
    }

    #[test]
    fn wasserstein_by_hand() {
        let a = [10, 20, 30, 40];
        let shifted: Vec<i64> = a.iter().map(|x| x + 5).collect();
        assert!(close(wasserstein1(&a, &shifted), 5.0, 1e-12));
        // Normalised by the original's mean (25): 20%.
        assert!(close(wasserstein1(&a, &shifted) / 25.0, 0.2, 1e-12));
        assert_eq!(wasserstein1(&a, &a), 0.0);
        // Point masses at 0 and at 3: the whole mass moves 3.
        assert!(close(wasserstein1(&[0, 0], &[3]), 3.0, 1e-12));
        // {0, 10} vs {5}: half the mass moves 5 each way.
        assert!(close(wasserstein1(&[0, 10], &[5]), 5.0, 1e-12));
        // Different sizes: {1,2,3} vs {1,3}: ∫|F_a−F_b| = |1/3−1/2|·1 + |2/3−1/2|·1 = 1/3.
        assert!(close(wasserstein1(&[1, 2, 3], &[1, 3]), 1.0 / 3.0, 1e-12));
        assert!(close(wasserstein1(&[1, 3], &[1, 2, 3]), 1.0 / 3.0, 1e-12));
        assert_eq!(wasserstein1(&[], &[1]), 0.0);
    }

    #[test]
    fn quantiles_and_errors() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.9), Some(90));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 0.0), Some(1));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile::<i64>(&[], 0.5), None);
        assert_eq!(quantile(&[7], 0.99), Some(7));
        assert!(close(relative_error(100.0, 105.0).unwrap(), 0.05, 1e-12));
        assert!(close(relative_error(100.0, 98.0).unwrap(), -0.02, 1e-12));
        assert_eq!(relative_error(0.0, 1.0), None);
        assert!(close(mean_absolute_error([(1.0, 0.5), (0.0, 0.5), (2.0, 2.0)]), 1.0 / 3.0, 1e-12));
        assert_eq!(mean_absolute_error([]), 0.0);
    }
}
