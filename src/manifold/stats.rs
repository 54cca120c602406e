//! Geometry and significance: the notebook's seam closure, periodicity and coverage, plus what it lacks —
//! permutation p-values and percentile bootstrap intervals.

use ndarray::ArrayView2;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn unique_sorted(angles: &[f64]) -> Vec<f64> {
    let mut u = angles.to_vec();
    u.sort_by(f64::total_cmp);
    u.dedup();
    u
}

/// The notebook's `seam_closure_ratio`: distance between the centroids of the lowest-hue and highest-hue points
/// of `coords` `[m, k]` (each within half a median hue step), divided by the median nonzero distance between
/// hue-consecutive points. Small = the ends of the hue range meet, as on a circle.
pub fn seam_closure_ratio(coords: ArrayView2<f64>, hue_deg: &[f64]) -> f64 {
    let unique = unique_sorted(hue_deg);
    let step = if unique.len() > 1 {
        let mut diffs: Vec<f64> = unique.windows(2).map(|w| w[1] - w[0]).collect();
        median(&mut diffs)
    } else {
        1.0
    };
    let (low, high) = (unique[0], unique[unique.len() - 1]);
    let centre = |value: f64| {
        let idx: Vec<usize> = (0..hue_deg.len()).filter(|&i| (hue_deg[i] - value).abs() <= step / 2.0 + 1e-9).collect();
        let mut c = vec![0.0; coords.ncols()];
        for &i in &idx {
            for (j, cj) in c.iter_mut().enumerate() {
                *cj += coords[[i, j]];
            }
        }
        c.iter_mut().for_each(|v| *v /= idx.len() as f64);
        c
    };
    let (lc, hc) = (centre(low), centre(high));
    let seam = lc.iter().zip(&hc).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
    let mut order: Vec<usize> = (0..hue_deg.len()).collect();
    order.sort_by(|&a, &b| hue_deg[a].total_cmp(&hue_deg[b]));
    let mut steps: Vec<f64> = order
        .windows(2)
        .map(|w| (0..coords.ncols()).map(|j| (coords[[w[1], j]] - coords[[w[0], j]]).powi(2)).sum::<f64>().sqrt())
        .filter(|s| *s > 0.0)
        .collect();
    let local = if steps.is_empty() { 1.0 } else { median(&mut steps) };
    seam / (local + 1e-12)
}

/// The notebook's `hue_coverage_ratio`: (max - min + median step) / 360 over distinct hues; 0 for one hue.
pub fn coverage_ratio(hue_deg: &[f64]) -> f64 {
    let unique = unique_sorted(hue_deg);
    if unique.len() <= 1 {
        return 0.0;
    }
    let mut diffs: Vec<f64> = unique.windows(2).map(|w| w[1] - w[0]).collect();
    let step = median(&mut diffs);
    (unique[unique.len() - 1] - unique[0] + step) / 360.0
}

/// The notebook's `periodicity_score`: $e^{-\text{closure}}$.
pub fn periodicity_score(closure_ratio: f64) -> f64 {
    (-closure_ratio).exp()
}

/// One-sided permutation p-value, $(1 + \#\{null \ge obs\}) / (1 + P)$; NaN with no permutations or a NaN
/// observation. NaN null values count as not exceeding.
pub(crate) fn permutation_p_value(observed: f64, null: &[f64]) -> f64 {
    if null.is_empty() || observed.is_nan() {
        return f64::NAN;
    }
    let exceed = null.iter().filter(|v| **v >= observed).count();
    (1 + exceed) as f64 / (1 + null.len()) as f64
}

/// Percentile bootstrap interval at `level` (e.g. 0.95) of `stat` over `b` resamples (with replacement) of
/// `0..n`, seeded. Non-finite resample statistics are dropped; NaNs when none is finite or `b == 0`.
pub fn bootstrap_interval(n: usize, b: usize, level: f64, seed: u64, stat: impl Fn(&[usize]) -> f64) -> (f64, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut values: Vec<f64> = (0..b)
        .map(|_| {
            let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            stat(&idx)
        })
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let pos = p * (values.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
    };
    let tail = (1.0 - level) / 2.0;
    (q(tail), q(1.0 - tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn closed_circle_has_small_seam_and_line_has_large() {
        let hue: Vec<f64> = (0..36).map(|i| i as f64 * 10.0).collect();
        let circle = Array2::from_shape_fn((36, 2), |(i, c)| {
            let th = hue[i].to_radians();
            if c == 0 {
                th.cos()
            } else {
                th.sin()
            }
        });
        let line = Array2::from_shape_fn((36, 2), |(i, c)| if c == 0 { hue[i] } else { 0.0 });
        assert!((seam_closure_ratio(circle.view(), &hue) - 1.0).abs() < 1e-9);
        assert!((seam_closure_ratio(line.view(), &hue) - 35.0).abs() < 1e-9);
    }

    #[test]
    fn coverage_of_full_and_half_circle() {
        let full: Vec<f64> = (0..60).map(|i| i as f64 * 6.0).collect();
        assert!((coverage_ratio(&full) - 1.0).abs() < 1e-12);
        assert!((coverage_ratio(&full[..30]) - 0.5).abs() < 1e-12);
        assert_eq!(coverage_ratio(&[5.0, 5.0]), 0.0);
    }

    #[test]
    fn p_value_counts_ties_as_exceeding() {
        assert_eq!(permutation_p_value(0.5, &[0.1, 0.5, 0.9]), 0.75);
        assert!(permutation_p_value(0.5, &[]).is_nan());
    }

    #[test]
    fn bootstrap_of_a_constant_is_degenerate_and_mean_interval_covers_mean() {
        let v: Vec<f64> = (0..50).map(|i| i as f64).collect();
        let (lo, hi) = bootstrap_interval(50, 500, 0.95, 7, |idx| idx.iter().map(|&i| v[i]).sum::<f64>() / 50.0);
        assert!(lo < 24.5 && hi > 24.5 && hi - lo < 20.0);
        assert_eq!(bootstrap_interval(5, 10, 0.9, 1, |_| 3.0), (3.0, 3.0));
    }
}
