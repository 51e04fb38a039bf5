//! Medians and spreads of repeated measurements.

use serde_json::{json, Value};

/// Several runs of one measurement.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
    pub values: Vec<f64>,
}

impl Summary {
    pub fn of(values: &[f64]) -> Summary {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Summary { median: f64::NAN, min: f64::NAN, max: f64::NAN, n: 0, values: Vec::new() };
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Summary { median, min: v[0], max: v[n - 1], n, values: values.to_vec() }
    }

    /// (max − min) / median, in percent: the spread printed beside a median.
    pub fn spread_pct(&self) -> f64 {
        if self.median == 0.0 || self.n < 2 {
            0.0
        } else {
            (self.max - self.min) / self.median.abs() * 100.0
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "median": finite(self.median),
            "min": finite(self.min),
            "max": finite(self.max),
            "n": self.n,
            "spread_pct": finite(self.spread_pct()),
            "values": self.values.iter().map(|v| finite(*v)).collect::<Vec<_>>(),
        })
    }

    /// "69.7k ±3%" with `fmt` for the number.
    pub fn show(&self, fmt: impl Fn(f64) -> String) -> String {
        if self.n == 0 {
            return "-".into();
        }
        if self.n < 2 {
            return fmt(self.median);
        }
        format!("{} ±{:.0}%", fmt(self.median), self.spread_pct() / 2.0)
    }
}

/// JSON has no NaN: a missing figure is null.
pub fn finite(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

pub fn kops(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

pub fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.3} ms")
    } else {
        format!("{v:.1} ms")
    }
}

pub fn ratio(v: f64) -> String {
    format!("{v:.2}")
}

pub fn mib(v: f64) -> String {
    format!("{:.1} MiB", v / (1 << 20) as f64)
}

/// The median-interpolated p50 of the difference of two cumulative
/// histograms (upper bound, cumulative count), in the bounds' unit.
pub fn histogram_p50(before: &[(f64, f64)], after: &[(f64, f64)]) -> f64 {
    let delta: Vec<(f64, f64)> =
        after.iter().map(|(le, c)| (*le, c - before.iter().find(|(l, _)| l == le).map_or(0.0, |(_, b)| *b))).collect();
    let total = delta.last().map_or(0.0, |(_, c)| *c);
    if total <= 0.0 {
        return f64::NAN;
    }
    let half = total / 2.0;
    let (mut lo, mut below) = (0.0, 0.0);
    for (le, c) in delta {
        if c >= half {
            if !le.is_finite() {
                return lo;
            }
            let inside = c - below;
            let frac = if inside > 0.0 { (half - below) / inside } else { 0.0 };
            return lo + (le - lo) * frac;
        }
        (lo, below) = (le, c);
    }
    f64::NAN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(Summary::of(&[3.0, 1.0, 2.0]).median, 2.0);
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(Summary::of(&[]).n, 0);
    }

    #[test]
    fn p50_interpolates_inside_the_bucket() {
        let before = [(1.0, 0.0), (2.0, 0.0), (f64::INFINITY, 0.0)];
        let after = [(1.0, 0.0), (2.0, 10.0), (f64::INFINITY, 10.0)];
        assert!((histogram_p50(&before, &after) - 1.5).abs() < 1e-9);
    }
}
