//! Linear algebra shared by the estimator and the analysis: classical MDS of a shape's ideal distances, and the
//! dual-form ridge map evaluated through Gram matrices.
//!
//! Why Gram matrices: for any training subset $S$ and scored subset $T$ of one layer, the SMDS projection of $T$
//! is $Z_T = C_{TS} (K_S + \alpha I)^{-1} Y_{c}$ with $K_S = X_{c,S} X_{c,S}^\top$ (centred by the mean of $S$)
//! and $C_{TS} = (X_T - \bar x_S) X_{c,S}^\top$. Both follow from one $n \times n$ Gram $G = \tilde X \tilde X^\top$
//! of the layer ($\tilde X$ centred by the layer mean, which keeps the subtraction below cancellation-free):
//! $C_{tj} = G_{tj} - r_t - c_j + \bar c$ with $c$ the row means of $G_{SS}$, $r_t$ the mean of $G_{tS}$ and
//! $\bar c$ the mean of $c$. So one $n \times n \times d$ product per layer serves every fold, shape and
//! permutation, and the layer's activations can be dropped right after.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par, Side};
use ndarray::{Array2, ArrayView2};

use super::shapes::{LabelMode, Shape};
use super::{Error, Result};

/// The ideal embedding `[n, min(n, k)]` of `labels` under `shape`: classical MDS of the shape's distances,
/// $Y = V_k \sqrt{\max(\lambda_k, 0)}$, eigenvalues taken in decreasing order (the package's `_classical_mds`).
/// Shapes that are Euclidean point sets take the exact shortcut (centred PCA of their coordinates); the others
/// use a full symmetric eigendecomposition. Columns are defined up to sign, and up to rotation inside a
/// repeated eigenvalue; every score is invariant to both unless the cut at k splits a repeated eigenvalue.
pub(crate) fn ideal_embedding(shape: Shape, labels: &[f64], mode: LabelMode, k: usize) -> Result<Array2<f64>> {
    let t = shape.processed_labels(labels, mode)?;
    let n = t.len();
    let k = k.min(n);
    match shape.coordinates(&t) {
        Some(p) => Ok(pca_embedding(p.view(), k)),
        None => cmds(shape.distances(labels, mode)?.view(), k),
    }
}

/// Classical MDS of a distance matrix `d` `[n, n]`: returns `[n, k]`.
pub(crate) fn cmds(d: ArrayView2<f64>, k: usize) -> Result<Array2<f64>> {
    let n = d.nrows();
    let d2 = Mat::<f64>::from_fn(n, n, |i, j| d[[i, j]] * d[[i, j]]);
    let row_mean: Vec<f64> = (0..n).map(|i| (0..n).map(|j| d2[(i, j)]).sum::<f64>() / n as f64).collect();
    let col_mean: Vec<f64> = (0..n).map(|j| (0..n).map(|i| d2[(i, j)]).sum::<f64>() / n as f64).collect();
    let all = row_mean.iter().sum::<f64>() / n as f64;
    let b = Mat::<f64>::from_fn(n, n, |i, j| -0.5 * (d2[(i, j)] - row_mean[i] - col_mean[j] + all));
    let evd =
        b.self_adjoint_eigen(Side::Lower).map_err(|e| Error::Linalg(format!("cmds eigendecomposition: {e:?}")))?;
    let (u, s) = (evd.U(), evd.S().column_vector());
    // faer sorts eigenvalues increasing; the package reverses numpy's argsort.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| s[a].total_cmp(&s[b]));
    order.reverse();
    Ok(Array2::from_shape_fn((n, k), |(i, c)| u[(i, order[c])] * s[order[c]].max(0.0).sqrt()))
}

/// cMDS of a Euclidean point set `p` `[n, q]` without the $n \times n$ eigenproblem: $B = P_c P_c^\top$, whose
/// nonzero eigenpairs come from the $q \times q$ matrix $P_c^\top P_c = V \Lambda V^\top$, giving $Y = P_c V$.
/// Columns past the rank are zero (the package returns $\sqrt{\max(\epsilon, 0)}$-sized noise there, which
/// moves scores by well under 1e-7).
pub(crate) fn pca_embedding(p: ArrayView2<f64>, k: usize) -> Array2<f64> {
    let (n, q) = p.dim();
    let mean = p.mean_axis(ndarray::Axis(0)).expect("n > 0");
    let pc = &p - &mean;
    let s = pc.t().dot(&pc);
    let s = Mat::<f64>::from_fn(q, q, |i, j| s[[i, j]]);
    let evd = s.self_adjoint_eigen(Side::Lower).expect("q x q symmetric eigendecomposition");
    let (u, lam) = (evd.U(), evd.S().column_vector());
    let mut order: Vec<usize> = (0..q).collect();
    order.sort_by(|&a, &b| lam[b].total_cmp(&lam[a]));
    let mut y = Array2::zeros((n, k));
    for (c, &o) in order.iter().take(k).enumerate() {
        if lam[o] <= 0.0 {
            continue;
        }
        for i in 0..n {
            y[[i, c]] = (0..q).map(|r| pc[[i, r]] * u[(r, o)]).sum();
        }
    }
    y
}

/// Solves $(K + \alpha I) X = R$ for symmetric PSD `k` `[m, m]` and `rhs` `[m, r]`. `alpha > 0` uses a Cholesky
/// factor (falling back to an eigendecomposition if rounding makes $K + \alpha I$ indefinite); `alpha == 0` uses
/// the pseudo-inverse $K^+$, dropping eigenvalues at or below $\max(m, 2) \epsilon \lambda_{\max}$ (the package's
/// `pinv(X_c^\top)` computes the same minimum-norm map from singular values; this threshold is on their squares,
/// so nearly singular layers can differ from it). The dual form is always used: it is exact and cheap for
/// `n < d` (huescan's case). With `n > d` and `0 < alpha` below the rounding noise of `K` (about
/// $\epsilon \lambda_{\max}$) the primal $d \times d$ solve would be better conditioned; it is not implemented.
pub(crate) fn ridge_solve(k: &Mat<f64>, rhs: &Mat<f64>, alpha: f64) -> Result<Mat<f64>> {
    let m = k.nrows();
    if alpha > 0.0 {
        let reg = Mat::<f64>::from_fn(m, m, |i, j| k[(i, j)] + if i == j { alpha } else { 0.0 });
        if let Ok(llt) = reg.llt(Side::Lower) {
            use faer::linalg::solvers::Solve;
            return Ok(llt.solve(rhs));
        }
    }
    let evd =
        k.self_adjoint_eigen(Side::Lower).map_err(|e| Error::Linalg(format!("ridge eigendecomposition: {e:?}")))?;
    let (u, s) = (evd.U(), evd.S().column_vector());
    let lmax = (0..m).map(|i| s[i]).fold(0.0, f64::max);
    let cut = m.max(2) as f64 * f64::EPSILON * lmax;
    let inv: Vec<f64> = (0..m)
        .map(|i| {
            let l = s[i].max(0.0) + alpha;
            if alpha > 0.0 || s[i] > cut {
                1.0 / l
            } else {
                0.0
            }
        })
        .collect();
    let mut utr = u.transpose() * rhs;
    for i in 0..m {
        for j in 0..utr.ncols() {
            utr[(i, j)] *= inv[i];
        }
    }
    Ok(u * utr)
}

pub(crate) fn to_faer(a: ArrayView2<f64>) -> Mat<f64> {
    Mat::from_fn(a.nrows(), a.ncols(), |i, j| a[[i, j]])
}

pub(crate) fn to_ndarray(a: &Mat<f64>) -> Array2<f64> {
    Array2::from_shape_fn((a.nrows(), a.ncols()), |(i, j)| a[(i, j)])
}

/// Widens, checks and centres one layer `[n, d]`, returning the centred matrix. `what` names the layer in errors.
pub(crate) fn centred_f64<T: Copy + Into<f64>>(x: ArrayView2<T>, what: &str) -> Result<Mat<f64>> {
    let (n, d) = x.dim();
    let mut mean = vec![0.0f64; d];
    for (r, row) in x.rows().into_iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            let v: f64 = (*v).into();
            if !v.is_finite() {
                return Err(Error::NonFiniteActivation { what: what.to_string(), row: r, col: c, value: v });
            }
            mean[c] += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    Ok(Mat::from_fn(n, d, |i, j| Into::<f64>::into(x[[i, j]]) - mean[j]))
}

/// The Gram matrix of one layer, enough to fit and score SMDS on any subset of its rows (see the module doc).
pub(crate) struct LayerGram {
    g: Mat<f64>,
}

impl LayerGram {
    /// From activations `[n, d]` (any float type); rejects NaN/Inf naming `what`.
    pub(crate) fn new<T: Copy + Into<f64>>(x: ArrayView2<T>, what: &str) -> Result<Self> {
        let xc = centred_f64(x, what)?;
        let n = xc.nrows();
        let mut g = Mat::<f64>::zeros(n, n);
        matmul(g.as_mut(), Accum::Replace, xc.as_ref(), xc.transpose(), 1.0, Par::rayon(0));
        Ok(LayerGram { g })
    }

    pub(crate) fn n(&self) -> usize {
        self.g.nrows()
    }

    /// Total variance $\operatorname{tr}(G)$; zero for a layer whose rows are all equal.
    pub(crate) fn trace(&self) -> f64 {
        (0..self.n()).map(|i| self.g[(i, i)]).sum()
    }

    /// Centred Gram of `train` (`test == train`) or centred cross-Gram `[|test|, |train|]`, both centred by the
    /// mean of `train`.
    pub(crate) fn centred(&self, test: &[usize], train: &[usize]) -> Mat<f64> {
        let m = train.len() as f64;
        let c: Vec<f64> = train.iter().map(|&i| train.iter().map(|&j| self.g[(i, j)]).sum::<f64>() / m).collect();
        let cbar = c.iter().sum::<f64>() / m;
        let r: Vec<f64> = test.iter().map(|&t| train.iter().map(|&j| self.g[(t, j)]).sum::<f64>() / m).collect();
        Mat::from_fn(test.len(), train.len(), |a, b| self.g[(test[a], train[b])] - r[a] - c[b] + cbar)
    }

    /// The map `[|test|, |train|]` taking centred ideal coordinates of `train` to the SMDS projection of `test`:
    /// $M = C_{TS} (K_S + \alpha I)^{-1}$, so $Z_T = M Y_c$.
    pub(crate) fn operator(&self, train: &[usize], test: &[usize], alpha: f64) -> Result<Mat<f64>> {
        let k = self.centred(train, train);
        let c = self.centred(test, train);
        let mt = ridge_solve(&k, &c.transpose().to_owned(), alpha)?;
        Ok(mt.transpose().to_owned())
    }
}

/// `y - mean(y)` per column.
pub(crate) fn centre_columns(y: &Array2<f64>) -> Array2<f64> {
    match y.mean_axis(ndarray::Axis(0)) {
        Some(mean) => y - &mean,
        None => y.clone(),
    }
}

/// $Z = M Y_c$ for an operator `m` `[t, s]` and ideal coordinates `y` `[s, k]` (centred here).
pub(crate) fn project(m: &Mat<f64>, y: &Array2<f64>) -> Array2<f64> {
    let yc = centre_columns(y);
    let (t, s) = (m.nrows(), m.ncols());
    let k = yc.ncols();
    let mut z = Array2::zeros((t, k));
    for i in 0..t {
        for j in 0..s {
            let mij = m[(i, j)];
            for c in 0..k {
                z[[i, c]] += mij * yc[[j, c]];
            }
        }
    }
    z
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pca_shortcut_matches_full_cmds_distances() {
        let t: Vec<f64> = (0..23).map(|i| (i as f64 * 0.61).fract()).collect();
        for shape in [Shape::Circular, Shape::Semicircular, Shape::Spiral, Shape::Euclidean] {
            let fast = ideal_embedding(shape, &t, LabelMode::Periodic, 2).unwrap();
            let slow = cmds(shape.distances(&t, LabelMode::Periodic).unwrap().view(), 2).unwrap();
            let (df, ds) = (super::super::metrics::pairwise(fast.view()), super::super::metrics::pairwise(slow.view()));
            let err = (&df - &ds).mapv(f64::abs).fold(0.0f64, |a, b| a.max(*b));
            assert!(err < 1e-7, "{shape}: {err}");
        }
    }

    #[test]
    fn gram_operator_equals_explicit_centring() {
        let n = 12;
        let d = 30;
        let x = Array2::from_shape_fn((n, d), |(i, j)| ((i * 31 + j * 17) % 13) as f64 + 100.0 * (j % 3) as f64);
        let gram = LayerGram::new(x.view(), "test").unwrap();
        let train: Vec<usize> = vec![0, 2, 3, 5, 7, 8, 9, 11];
        let test: Vec<usize> = vec![1, 4, 6, 10];
        let m = gram.operator(&train, &test, 0.5).unwrap();
        // explicit primal ridge
        let xs = x.select(ndarray::Axis(0), &train);
        let mu = xs.mean_axis(ndarray::Axis(0)).unwrap();
        let xc = &xs - &mu;
        let xt = &x.select(ndarray::Axis(0), &test) - &mu;
        let mut a = xc.t().dot(&xc);
        for i in 0..d {
            a[[i, i]] += 0.5;
        }
        let a_inv = ridge_solve(&to_faer(a.view()), &Mat::identity(d, d), 0.0).unwrap();
        let primal = xt.dot(&to_ndarray(&a_inv)).dot(&xc.t());
        let err = (&to_ndarray(&m) - &primal).mapv(f64::abs).fold(0.0f64, |a, b| a.max(*b));
        assert!(err < 1e-9, "{err}");
    }
}
