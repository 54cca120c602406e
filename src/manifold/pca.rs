//! An unsupervised view to set beside every supervised projection: principal components of one layer.
//! SMDS is fitted to the hue labels, so with fewer samples than dimensions it draws a ring for almost any
//! activations; PCA never sees the labels, so a ring there is the model's, not the template's.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par, Side};
use ndarray::{Array2, ArrayView2};

use super::gram::centred_f64;
use super::{Error, Result};

/// The first `k` principal-component scores of `x` `[n, d]`, and each component's share of the total
/// variance. Computed from the $n \times n$ Gram matrix ($n \ll d$ for stores), whose eigenvectors scaled by
/// $\sqrt{\lambda}$ are the scores. Each column's sign is fixed so that its largest-magnitude entry is positive,
/// which makes the output deterministic. Components past the rank (eigenvalues at rounding level) are zero.
pub fn principal_components<T: Copy + Into<f64>>(x: ArrayView2<T>, k: usize) -> Result<(Array2<f64>, Vec<f64>)> {
    let xc = centred_f64(x, "PCA input")?;
    let n = xc.nrows();
    let mut g = Mat::<f64>::zeros(n, n);
    matmul(g.as_mut(), Accum::Replace, xc.as_ref(), xc.transpose(), 1.0, Par::Seq);
    let evd = g.self_adjoint_eigen(Side::Lower).map_err(|e| Error::Linalg(format!("PCA eigendecomposition: {e:?}")))?;
    let (u, lam) = (evd.U(), evd.S().column_vector());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| lam[b].total_cmp(&lam[a]));
    let total: f64 = (0..n).map(|i| lam[i].max(0.0)).sum();
    // Eigenvalues at rounding level are the rank's end, not directions (the cut `gram::ridge_solve` uses).
    let cut = n.max(2) as f64 * f64::EPSILON * order.first().map_or(0.0, |&o| lam[o]);
    let mut scores = Array2::zeros((n, k));
    let mut share = vec![0.0; k];
    for (c, &o) in order.iter().take(k).enumerate() {
        let l = lam[o].max(0.0);
        if l <= cut || total <= 0.0 {
            continue;
        }
        share[c] = l / total;
        let peak = (0..n).max_by(|&a, &b| u[(a, o)].abs().total_cmp(&u[(b, o)].abs())).unwrap_or(0);
        let sign = if u[(peak, o)] < 0.0 { -1.0 } else { 1.0 };
        for i in 0..n {
            scores[[i, c]] = sign * u[(i, o)] * l.sqrt();
        }
    }
    Ok((scores, share))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plane_in_high_dimensions_comes_back_as_its_two_axes() {
        // Points on an ellipse (radii 3 and 1) embedded in 6-D with a fixed rotation: PCA recovers the radii
        // as the scores' spread and puts no variance in a third component.
        let n = 24;
        let x = Array2::from_shape_fn((n, 6), |(i, j)| {
            let t = i as f64 / n as f64 * std::f64::consts::TAU;
            let (a, b) = (3.0 * t.cos(), t.sin());
            [a * 0.6 + b * 0.0, a * 0.8, b * 0.5, b * -0.5, b * 0.5, b * 0.5][j] + 7.0
        });
        let (s, share) = principal_components(x.view(), 3).unwrap();
        let var = |c: usize| s.column(c).iter().map(|v| v * v).sum::<f64>() / n as f64;
        assert!((var(0) - 4.5).abs() < 1e-9 && (var(1) - 0.5).abs() < 1e-9, "{} {}", var(0), var(1));
        assert!(var(2) < 1e-20 && share[2] == 0.0);
        assert!((share[0] - 0.9).abs() < 1e-12);
        let (again, _) = principal_components(x.view(), 3).unwrap();
        assert_eq!(s, again);
    }
}
