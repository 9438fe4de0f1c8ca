//! A mergeable quantile sketch (DDSketch-style): log-spaced buckets with 1%
//! relative accuracy. Merging adds counts, so it is exact and order-free —
//! which is what makes sharded fitting give the same model as one pass.

use serde::{Deserialize, Serialize};

/// Relative accuracy of every quantile.
pub const ALPHA: f64 = 0.01;

fn gamma() -> f64 {
    (1.0 + ALPHA) / (1.0 - ALPHA)
}

/// Values at or below this (nanoseconds) count as zero.
const MIN_VALUE: f64 = 1.0;

/// Counts of values in log-spaced buckets: bucket `i` holds values in
/// (γ^(i-1), γ^i]. Values are non-negative (durations in nanoseconds).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    /// Values recorded.
    pub n: u64,
    /// Values at or below 1 ns.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub zeros: u64,
    /// Exact extremes, so sampling never leaves the observed range.
    pub min: f64,
    pub max: f64,
    /// (bucket index, count), sorted by index. Narrow types: models hold
    /// millions of small sketches before coarsening.
    pub bins: Vec<(i16, u32)>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Sketch {
    pub fn new() -> Sketch {
        Sketch::default()
    }

    /// The bucket a value falls in (0 for values at or below 1 ns): a log
    /// scale, for statistics that must add exactly.
    pub fn bucket(value: f64) -> i16 {
        if value <= MIN_VALUE || !value.is_finite() { 0 } else { Sketch::index(value) }
    }

    fn index(value: f64) -> i16 {
        // Index 1,400 is ~10⁶ s: every duration fits.
        (value.ln() / gamma().ln()).ceil().clamp(i16::MIN as f64, i16::MAX as f64) as i16
    }

    /// The representative value of bucket `i` (the point of least relative
    /// error); a table for the indices durations use, since sampling calls
    /// this for every simulated value.
    fn value_of(i: i16) -> f64 {
        const LO: i32 = -64;
        const HI: i32 = 2048;
        static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
        let exact = |i: i32| 2.0 * gamma().powi(i) / (gamma() + 1.0);
        let i = i as i32;
        if (LO..HI).contains(&i) {
            TABLE.get_or_init(|| (LO..HI).map(exact).collect())[(i - LO) as usize]
        } else {
            exact(i)
        }
    }

    pub fn add(&mut self, value: f64) {
        self.add_n(value, 1);
    }

    pub fn add_n(&mut self, value: f64, count: u64) {
        if count == 0 || !value.is_finite() {
            return;
        }
        let value = value.max(0.0);
        if self.n == 0 {
            self.min = value;
            self.max = value;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
        }
        self.n += count;
        if value <= MIN_VALUE {
            self.zeros += count;
            return;
        }
        let i = Sketch::index(value);
        let count32 = count.min(u32::MAX as u64) as u32;
        match self.bins.binary_search_by_key(&i, |b| b.0) {
            Ok(k) => self.bins[k].1 = self.bins[k].1.saturating_add(count32),
            Err(k) => {
                if self.bins.capacity() == 0 {
                    self.bins.reserve_exact(1);
                }
                self.bins.insert(k, (i, count32))
            }
        }
    }

    /// Adds another sketch's counts: exact.
    pub fn merge(&mut self, other: &Sketch) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = other.clone();
            return;
        }
        self.n += other.n;
        self.zeros += other.zeros;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        let mut merged = Vec::with_capacity(self.bins.len() + other.bins.len());
        let (mut a, mut b) = (self.bins.iter().peekable(), other.bins.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) if x.0 == y.0 => {
                    merged.push((x.0, x.1.saturating_add(y.1)));
                    a.next();
                    b.next();
                }
                (Some(&&x), Some(&&y)) if x.0 < y.0 => {
                    merged.push(x);
                    a.next();
                }
                (Some(_), Some(&&y)) => {
                    merged.push(y);
                    b.next();
                }
                (Some(&&x), None) => {
                    merged.push(x);
                    a.next();
                }
                (None, Some(&&y)) => {
                    merged.push(y);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.bins = merged;
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The value at rank `r` (0-based, `r < n`).
    fn at_rank(&self, r: u64) -> f64 {
        if r < self.zeros {
            return self.min.min(MIN_VALUE);
        }
        let mut seen = self.zeros;
        for &(i, c) in &self.bins {
            seen += c as u64;
            if r < seen {
                return Sketch::value_of(i).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// The `q` quantile (0 ≤ q ≤ 1); 0 for an empty sketch.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        // The extremes are known exactly.
        if q <= 0.0 {
            return self.min;
        }
        if q >= 1.0 {
            return self.max;
        }
        let r = ((q * (self.n - 1) as f64).round() as u64).min(self.n - 1);
        self.at_rank(r)
    }

    /// A value drawn from the sketch's distribution, given a uniform `u` in [0, 1).
    pub fn sample(&self, u: f64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let r = ((u * self.n as f64) as u64).min(self.n - 1);
        self.at_rank(r)
    }

    /// Every value mapped through `f` (monotone non-decreasing, so bucket
    /// order and the exact extremes carry over); counts are kept.
    pub fn map_values(&self, f: impl Fn(f64) -> f64) -> Sketch {
        let mut out = Sketch::new();
        if self.n == 0 {
            return out;
        }
        if self.zeros > 0 {
            out.add_n(f(self.min.min(MIN_VALUE)), self.zeros);
        }
        for &(i, c) in &self.bins {
            out.add_n(f(Sketch::value_of(i).clamp(self.min, self.max)), c as u64);
        }
        out.min = f(self.min).max(0.0);
        out.max = f(self.max).max(out.min);
        out
    }

    /// Every value plus `delta` nanoseconds (values stay ≥ 0).
    pub fn shifted(&self, delta: f64) -> Sketch {
        self.map_values(|v| (v + delta).max(0.0))
    }

    /// Every value times `factor` (≥ 0).
    pub fn scaled(&self, factor: f64) -> Sketch {
        self.map_values(|v| v * factor)
    }

    /// The distribution of `f(x₀, x₁, …)` for independent draws `xⱼ` of
    /// `parts`, on a deterministic low-discrepancy grid of quantiles (a
    /// Kronecker sequence), so the result is the same for the same input.
    /// Empty parts draw 0. The result has about as many values as the
    /// first part, so it weighs like the sketch it replaces when merged.
    pub fn combine(parts: &[&Sketch], f: impl Fn(&[f64]) -> f64) -> Sketch {
        const POINTS: u64 = 1024;
        // Fractional parts of square roots of primes: irrational steps
        // whose sequences fill the unit cube evenly.
        const PRIMES: [f64; 8] = [2.0, 3.0, 5.0, 7.0, 11.0, 13.0, 17.0, 19.0];
        let weight = parts.first().map_or(1, |p| (p.n / POINTS).max(1));
        let mut out = Sketch::new();
        let mut values = vec![0.0; parts.len()];
        for i in 0..POINTS {
            for (j, part) in parts.iter().enumerate() {
                let u = if j == 0 {
                    (i as f64 + 0.5) / POINTS as f64
                } else {
                    let step = PRIMES[(j - 1) % PRIMES.len()].sqrt().fract() + (j / (PRIMES.len() + 1)) as f64 * 0.1;
                    ((i as f64 + 0.5) * step).fract()
                };
                values[j] = part.sample(u);
            }
            out.add_n(f(&values), weight);
        }
        out
    }

    /// The same distribution carried by about `n` values (bucket counts
    /// scaled), so merging sketches weighs them as the caller decides
    /// rather than by how many values each happened to hold.
    pub fn with_weight(&self, n: u64) -> Sketch {
        if self.n == 0 || n == 0 {
            return self.clone();
        }
        let k = n as f64 / self.n as f64;
        let mut out = self.clone();
        out.zeros = (self.zeros as f64 * k).round() as u64;
        for b in &mut out.bins {
            b.1 = ((b.1 as f64 * k).round() as u64).clamp(1, u32::MAX as u64) as u32;
        }
        out.n = out.zeros + out.bins.iter().map(|b| b.1 as u64).sum::<u64>();
        out
    }

    /// The distribution of `self + other` for independent draws.
    pub fn sum_independent(&self, other: &Sketch) -> Sketch {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        Sketch::combine(&[self, other], |v| v[0] + v[1])
    }

    pub fn mean(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let sum: f64 = self.bins.iter().map(|&(i, c)| Sketch::value_of(i).clamp(self.min, self.max) * c as f64).sum();
        sum / self.n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut s = Sketch::new();
        for v in 1..=10_000 {
            s.add(v as f64 * 1000.0);
        }
        for q in [0.01, 0.5, 0.9, 0.99] {
            let truth = (q * 9999.0_f64).round() * 1000.0 + 1000.0;
            let got = s.quantile(q);
            assert!((got - truth).abs() / truth < 0.011, "q{q}: {got} vs {truth}");
        }
        assert_eq!(s.quantile(0.0), 1000.0);
        assert_eq!(s.quantile(1.0), 10_000_000.0);
    }

    #[test]
    fn merge_is_exact_and_order_free() {
        let (mut a, mut b, mut all) = (Sketch::new(), Sketch::new(), Sketch::new());
        for v in 0..500 {
            let x = (v * 7919 % 1000) as f64 * 137.0;
            if v % 3 == 0 {
                a.add(x)
            } else {
                b.add(x)
            }
            all.add(x);
        }
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, all);
        assert_eq!(ba, all);
    }

    #[test]
    fn shift_scale_and_sum() {
        let mut s = Sketch::new();
        for v in 1..=1000 {
            s.add(v as f64 * 1e3);
        }
        let shifted = s.shifted(5e5);
        assert!((shifted.quantile(0.5) - (s.quantile(0.5) + 5e5)).abs() / 1e6 < 0.02);
        assert_eq!(shifted.n, s.n);
        assert_eq!(shifted.min, 1e3 + 5e5);
        let half = s.scaled(0.5);
        assert!((half.mean() - s.mean() / 2.0).abs() / s.mean() < 0.02);
        let sum = s.sum_independent(&s);
        // Mean adds; the spread of a sum of independent uniforms narrows.
        assert!((sum.mean() - 2.0 * s.mean()).abs() / s.mean() < 0.03, "{}", sum.mean());
        assert!(sum.quantile(0.05) > 2.0 * s.quantile(0.05));
        assert_eq!(Sketch::combine(&[&s, &s], |v| v[0] + v[1]), sum);
    }

    #[test]
    fn zeros_and_sampling_stay_in_range() {
        let mut s = Sketch::new();
        s.add(0.0);
        s.add(5e6);
        assert_eq!(s.zeros, 1);
        for u in [0.0, 0.49, 0.5, 0.99] {
            let v = s.sample(u);
            assert!((0.0..=5e6).contains(&v));
        }
    }
}
