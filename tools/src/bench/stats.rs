//! Arithmetic of the report: percentiles of one run, median and spread over runs.

/// The `p` quantile of sorted values (nearest rank; 0 when empty).
pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One figure over the bench's runs: median, smallest and largest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Spread {
    /// The median (mean of the two middle values for an even count) and the range.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = match n {
            0 => 0.0,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Self { median, min: v.first().copied().unwrap_or(0.0), max: v.last().copied().unwrap_or(0.0), runs: n }
    }

    /// `median (min–max)`, each formatted by `f`; the median alone for one run or when every
    /// run gave the same (formatted) figure.
    pub fn show(&self, f: impl Fn(f64) -> String) -> String {
        let (median, min, max) = (f(self.median), f(self.min), f(self.max));
        if self.runs <= 1 || min == max {
            median
        } else {
            format!("{median} ({min}–{max})")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread_of_odd_and_even_counts() {
        let s = Spread::of([3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        let s = Spread::of([4.0, 1.0, 3.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        let s = Spread::of([f64::NAN, 5.0]);
        assert_eq!((s.median, s.runs), (5.0, 1));
        assert_eq!(Spread::of([]).median, 0.0);
    }

    #[test]
    fn spread_shows_the_range_only_over_several_runs() {
        let f = |v: f64| format!("{v:.1}");
        assert_eq!(Spread::of([1.24]).show(f), "1.2");
        assert_eq!(Spread::of([1.0, 3.0, 2.0]).show(f), "2.0 (1.0–3.0)");
        assert_eq!(Spread::of([5.0, 5.01, 4.99]).show(f), "5.0");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
