//! The package's five embedding scores (`SupervisedMDS.score(metric=...)`), computed from an ideal distance matrix
//! and the predicted one. All but KL use the strict upper triangle where the ideal distance is defined (`>= 0`).

use std::fmt;
use std::str::FromStr;

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use super::Error;

/// One of the package's `StressMetrics`, in the package's column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// $1 - S$, $S = \sqrt{\sum (t - a p)^2 / \sum t^2}$, $a = \sum tp / \sum p^2$; `-inf` if either sum is 0.
    /// The primary metric: the notebook's score and the discovery ranking.
    ScaleNormalizedStress,
    /// $1 - \sum(\hat d - p)^2 / \sum p^2$ with $\hat d$ the increasing isotonic fit of p on t (sklearn rules,
    /// NaN for near-tied maximal t, see `isotonic_fit`).
    NonMetricStress,
    /// Spearman rank correlation of t and p with average ranks; NaN when either is constant.
    ShepardGoodnessScore,
    /// $1 - \sqrt{\sum (p - t)^2 / \sum t^2}$ (depends on the scale of the embedding).
    NormalizedStress,
    /// $\exp(-KL(P \| Q))$ of Gaussian affinities ($\sigma = 1$) of the full matrices.
    NormalizedKlDivergence,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::ScaleNormalizedStress,
        Metric::NonMetricStress,
        Metric::ShepardGoodnessScore,
        Metric::NormalizedStress,
        Metric::NormalizedKlDivergence,
    ];

    /// The package's metric value (`mean_<name>` columns of `discover_manifolds`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::ScaleNormalizedStress => "scale_normalized_stress",
            Metric::NonMetricStress => "non_metric_stress",
            Metric::ShepardGoodnessScore => "shepard_goodness_score",
            Metric::NormalizedStress => "normalized_stress",
            Metric::NormalizedKlDivergence => "normalized_kl_divergence",
        }
    }

    pub fn index(self) -> usize {
        Metric::ALL.iter().position(|m| *m == self).expect("listed")
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Metric::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| Error::InvalidParam {
            name: "metric",
            value: s.into(),
            expected: "one of scale_normalized_stress, non_metric_stress, shepard_goodness_score, normalized_stress, normalized_kl_divergence",
        })
    }
}

/// All five scores of one embedding, indexed like [`Metric::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores(pub [f64; 5]);

impl Scores {
    pub fn get(&self, m: Metric) -> f64 {
        self.0[m.index()]
    }
    pub fn primary(&self) -> f64 {
        self.get(Metric::ScaleNormalizedStress)
    }
}

/// Pairwise Euclidean distances `[m, m]` between the rows of `z`.
pub(crate) fn pairwise(z: ArrayView2<f64>) -> Array2<f64> {
    let m = z.nrows();
    let mut d = Array2::zeros((m, m));
    for i in 0..m {
        for j in (i + 1)..m {
            let s: f64 = z.row(i).iter().zip(z.row(j)).map(|(a, b)| (a - b) * (a - b)).sum();
            d[[i, j]] = s.sqrt();
            d[[j, i]] = d[[i, j]];
        }
    }
    d
}

/// Scores `metric` of predicted distances `d_pred` against ideal ones `d_ideal` (both `[m, m]`).
pub fn score_distances(metric: Metric, d_ideal: ArrayView2<f64>, d_pred: ArrayView2<f64>) -> f64 {
    if metric == Metric::NormalizedKlDivergence {
        return (-kl_divergence(d_ideal, d_pred)).exp();
    }
    let (t, p) = upper_triangle(d_ideal, d_pred);
    match metric {
        Metric::ScaleNormalizedStress => 1.0 - scale_normalized_stress(&t, &p),
        Metric::NonMetricStress => 1.0 - non_metric_stress(&t, &p),
        Metric::ShepardGoodnessScore => spearman(&t, &p),
        Metric::NormalizedStress => 1.0 - normalized_stress(&t, &p),
        Metric::NormalizedKlDivergence => unreachable!(),
    }
}

/// All five scores at once (shares the triangle extraction).
pub(crate) fn score_all(d_ideal: ArrayView2<f64>, d_pred: ArrayView2<f64>) -> Scores {
    let (t, p) = upper_triangle(d_ideal, d_pred);
    Scores([
        1.0 - scale_normalized_stress(&t, &p),
        1.0 - non_metric_stress(&t, &p),
        spearman(&t, &p),
        1.0 - normalized_stress(&t, &p),
        (-kl_divergence(d_ideal, d_pred)).exp(),
    ])
}

/// Only the primary score (the hot path of permutation tests and bootstraps).
pub(crate) fn score_primary(d_ideal: ArrayView2<f64>, d_pred: ArrayView2<f64>) -> f64 {
    let (t, p) = upper_triangle(d_ideal, d_pred);
    1.0 - scale_normalized_stress(&t, &p)
}

/// Row-major strict upper triangle where `d_ideal >= 0` (numpy boolean-mask order).
fn upper_triangle(d_ideal: ArrayView2<f64>, d_pred: ArrayView2<f64>) -> (Vec<f64>, Vec<f64>) {
    let m = d_ideal.nrows();
    let mut t = Vec::with_capacity(m * m.saturating_sub(1) / 2);
    let mut p = Vec::with_capacity(t.capacity());
    for i in 0..m {
        for j in (i + 1)..m {
            if d_ideal[[i, j]] >= 0.0 {
                t.push(d_ideal[[i, j]]);
                p.push(d_pred[[i, j]]);
            }
        }
    }
    (t, p)
}

fn scale_normalized_stress(t: &[f64], p: &[f64]) -> f64 {
    let pp: f64 = p.iter().map(|v| v * v).sum();
    if pp == 0.0 {
        return f64::INFINITY;
    }
    let a = t.iter().zip(p).map(|(x, y)| x * y).sum::<f64>() / pp;
    let tt: f64 = t.iter().map(|v| v * v).sum();
    if tt == 0.0 {
        return f64::INFINITY;
    }
    let res: f64 = t.iter().zip(p).map(|(x, y)| (x - a * y).powi(2)).sum();
    (res / tt).sqrt()
}

fn normalized_stress(t: &[f64], p: &[f64]) -> f64 {
    let tt: f64 = t.iter().map(|v| v * v).sum();
    if tt == 0.0 {
        return f64::INFINITY;
    }
    let num: f64 = t.iter().zip(p).map(|(x, y)| (y - x).powi(2)).sum();
    (num / tt).sqrt()
}

fn non_metric_stress(t: &[f64], p: &[f64]) -> f64 {
    let d_hat = isotonic_fit(t, p);
    let num: f64 = d_hat.iter().zip(p).map(|(h, y)| (h - y).powi(2)).sum();
    let den: f64 = p.iter().map(|v| v * v).sum();
    if den == 0.0 {
        return f64::INFINITY;
    }
    num / den
}

/// sklearn `IsotonicRegression(increasing=True).fit_transform(x, y)`, rule for rule: sort by (x, y); merge
/// consecutive x closer than `finfo(float64).resolution` (1e-15) to the group's first x, averaging y; PAVA on
/// the group means weighted by counts; then linear interpolation at every original x with NaN outside
/// `[first group x, last group x]`. That last rule is why a near-tie of the largest x can come out NaN.
pub(crate) fn isotonic_fit(x: &[f64], y: &[f64]) -> Vec<f64> {
    const RESOLUTION: f64 = 1e-15;
    let n = x.len();
    if n == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]).then(y[a].total_cmp(&y[b])));
    let (mut gx, mut gy, mut gw) = (Vec::new(), Vec::new(), Vec::new());
    let mut cur_x = x[order[0]];
    let (mut sum_y, mut weight) = (0.0, 0.0);
    for &i in &order {
        if x[i] - cur_x >= RESOLUTION {
            gx.push(cur_x);
            gy.push(sum_y / weight);
            gw.push(weight);
            cur_x = x[i];
            sum_y = y[i];
            weight = 1.0;
        } else {
            sum_y += y[i];
            weight += 1.0;
        }
    }
    gx.push(cur_x);
    gy.push(sum_y / weight);
    gw.push(weight);
    let fitted = pava(&gy, &gw);
    if fitted.len() == 1 {
        return vec![fitted[0]; n];
    }
    let (lo, hi) = (gx[0], gx[gx.len() - 1]);
    x.iter()
        .map(|&v| {
            if !(lo..=hi).contains(&v) {
                return f64::NAN;
            }
            // scipy interp1d: searchsorted(left), clipped to [1, len-1].
            let idx = gx.partition_point(|g| *g < v).clamp(1, gx.len() - 1);
            let (x0, x1, y0, y1) = (gx[idx - 1], gx[idx], fitted[idx - 1], fitted[idx]);
            let slope = (y1 - y0) / (x1 - x0);
            slope * (v - x0) + y0
        })
        .collect()
}

/// Weighted pool-adjacent-violators for an increasing fit.
fn pava(y: &[f64], w: &[f64]) -> Vec<f64> {
    let mut blocks: Vec<(f64, f64, usize)> = Vec::with_capacity(y.len()); // (mean, weight, count)
    for (&v, &wt) in y.iter().zip(w) {
        blocks.push((v, wt, 1));
        while blocks.len() > 1 {
            let (m1, w1, c1) = blocks[blocks.len() - 1];
            let (m0, w0, c0) = blocks[blocks.len() - 2];
            if m0 <= m1 {
                break;
            }
            blocks.pop();
            let wsum = w0 + w1;
            *blocks.last_mut().expect("two blocks") = ((m0 * w0 + m1 * w1) / wsum, wsum, c0 + c1);
        }
    }
    blocks.into_iter().flat_map(|(m, _, c)| std::iter::repeat_n(m, c)).collect()
}

/// Average ranks (1-based), scipy `rankdata(method="average")`.
fn average_ranks(v: &[f64]) -> Vec<f64> {
    let n = v.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = avg;
        }
        i = j + 1;
    }
    ranks
}

/// scipy `spearmanr(t, p)[0]`: Pearson correlation of average ranks, NaN when either input is constant.
fn spearman(t: &[f64], p: &[f64]) -> f64 {
    if t.len() < 2 || t.iter().any(|v| v.is_nan()) || p.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let (rt, rp) = (average_ranks(t), average_ranks(p));
    let n = rt.len() as f64;
    let (mt, mp) = (rt.iter().sum::<f64>() / n, rp.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rt.iter().zip(&rp) {
        sxy += (a - mt) * (b - mp);
        sxx += (a - mt).powi(2);
        syy += (b - mp).powi(2);
    }
    if sxx == 0.0 || syy == 0.0 {
        return f64::NAN;
    }
    (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0)
}

/// Row-normalised Gaussian affinities, symmetrised and floored (the package's `_distances_to_probabilities`).
fn affinities(d: ArrayView2<f64>) -> Array2<f64> {
    let n = d.nrows();
    let mut p = Array2::zeros((n, n));
    for i in 0..n {
        let mut sum = 0.0;
        for j in 0..n {
            let v = d[[i, j]];
            let sq = if i == j || v < 0.0 { f64::INFINITY } else { v * v };
            p[[i, j]] = (-sq / 2.0).exp();
            sum += p[[i, j]];
        }
        let sum = f64::max(sum, 1e-12);
        p.row_mut(i).mapv_inplace(|v| v / sum);
    }
    let pt = p.t().to_owned();
    let scale = 2.0 * n as f64;
    ((&p + &pt) / scale).mapv(|v| v.max(1e-12))
}

fn kl_divergence(d_ideal: ArrayView2<f64>, d_pred: ArrayView2<f64>) -> f64 {
    let p = affinities(d_ideal);
    let q = affinities(d_pred);
    p.iter().zip(q.iter()).map(|(a, b)| a * (a / b).ln()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_matches_hand_worked_pava() {
        // y violates order at the 2nd/3rd points: pooled to their mean.
        let fit = isotonic_fit(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]);
        assert_eq!(fit, vec![1.0, 2.5, 2.5, 4.0]);
    }

    #[test]
    fn isotonic_gives_nan_just_above_the_last_group_like_sklearn() {
        let top = 1.0;
        let fit = isotonic_fit(&[0.0, top, top + 2e-16], &[0.0, 1.0, 1.0]);
        assert!(fit[1].is_finite());
        assert!(fit[2].is_nan(), "sklearn interp1d is out of bounds above the merged group's first x");
    }

    #[test]
    fn spearman_uses_average_ranks_and_is_nan_for_constants() {
        assert!((spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]) - 0.9486832980505138).abs() < 1e-12);
        assert!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
    }

    #[test]
    fn perfect_embedding_scores_one() {
        let d = ndarray::array![[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]];
        let s = score_all(d.view(), (&d * 3.0).view());
        assert!((s.get(Metric::ScaleNormalizedStress) - 1.0).abs() < 1e-12);
        assert!((s.get(Metric::ShepardGoodnessScore) - 1.0).abs() < 1e-12);
        assert!((s.get(Metric::NonMetricStress) - 1.0).abs() < 1e-12);
        assert!(s.get(Metric::NormalizedStress) < 1.0, "normalized stress is scale dependent");
    }

    #[test]
    fn zero_prediction_scores_minus_infinity() {
        let d = ndarray::array![[0.0, 1.0], [1.0, 0.0]];
        assert_eq!(score_primary(d.view(), Array2::zeros((2, 2)).view()), f64::NEG_INFINITY);
    }
}
