//! The fitted SMDS projection as a matrix, so activations the fit never saw can be projected: `analyze`
//! computes coordinates in the dual ($n \times n$) form, $Z = G (G + \alpha I)^{-1} Y_c$, which needs the
//! training rows; the same map in the primal form is $z = (x - \mu) W^\top$ with
//! $W^\top = X_c^\top (G + \alpha I)^{-1} Y_c$ (`[d, k]`), which does not.

use faer::Mat;
use ndarray::{Array1, Array2, ArrayView2};

use super::gram::{centre_columns, centred_f64, ridge_solve, to_faer, LayerGram};
use super::shapes::{circle_template_3d, Shape};
use super::Result;

/// `z = (x - mean) weightᵀ`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionMap {
    /// `[k, d]`.
    pub weight: Array2<f64>,
    /// `[d]`: the mean of the rows the map was fitted on.
    pub mean: Array1<f64>,
}

impl ProjectionMap {
    /// Fits the map of `analyze`'s projection: the `(cos θ, sin θ, 0)` template of `shape` for `hue_deg`,
    /// ridge `alpha` (the analysis's `alpha_fit`), on every row of `x` `[n, d]`.
    pub fn fit<T: Copy + Into<f64>>(x: ArrayView2<T>, hue_deg: &[f64], shape: Shape, alpha: f64) -> Result<Self> {
        let (n, d) = x.dim();
        let xc = centred_f64(x, "projection layer")?;
        let gram = LayerGram::new(x, "projection layer")?;
        let all: Vec<usize> = (0..n).collect();
        let g = gram.centred(&all, &all);
        let yc = centre_columns(&circle_template_3d(hue_deg, shape));
        let b = ridge_solve(&g, &to_faer(yc.view()), alpha)?;
        let wt: Mat<f64> = xc.transpose() * &b;
        let weight = Array2::from_shape_fn((wt.ncols(), d), |(c, j)| wt[(j, c)]);
        let mean = Array1::from_shape_fn(d, |j| (0..n).map(|i| Into::<f64>::into(x[[i, j]])).sum::<f64>() / n as f64);
        Ok(ProjectionMap { weight, mean })
    }

    /// Projects rows `[m, d]` to `[m, k]`.
    pub fn project<T: Copy + Into<f64>>(&self, x: ArrayView2<T>) -> Array2<f64> {
        let xc = x.mapv(Into::<f64>::into) - &self.mean;
        xc.dot(&self.weight.t())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifold::gram::project;

    #[test]
    fn the_primal_map_reproduces_the_dual_fit_and_projects_unseen_rows_like_the_cross_gram() {
        // A noisy hue circle in 12-D; fit on 20 rows, then project 5 rows the fit never saw.
        let n = 25;
        let hue: Vec<f64> = (0..n).map(|i| i as f64 * 360.0 / n as f64).collect();
        let x = Array2::from_shape_fn((n, 12), |(i, j)| {
            let t = hue[i].to_radians();
            (t.cos() * (j as f64 + 1.0)).sin() + 0.3 * (t.sin() * (j as f64 - 4.0)) + 0.01 * ((i * 7 + j) % 5) as f64
        });
        let fit: Vec<usize> = (0..20).collect();
        let new: Vec<usize> = (20..n).collect();
        let x_fit = x.select(ndarray::Axis(0), &fit);
        let hue_fit: Vec<f64> = fit.iter().map(|&i| hue[i]).collect();
        let alpha = 1e-4;
        let map = ProjectionMap::fit(x_fit.view(), &hue_fit, Shape::Circular, alpha).unwrap();
        // On the fitted rows: the same coordinates as analyze's dual form.
        let gram = LayerGram::new(x_fit.view(), "t").unwrap();
        let dual = project(&gram.operator(&fit, &fit, alpha).unwrap(), &circle_template_3d(&hue_fit, Shape::Circular));
        let primal = map.project(x_fit.view());
        let err = (&dual - &primal).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(err < 1e-8, "fitted rows: max |dual - primal| = {err}");
        // On unseen rows: the cross-Gram operator of the full Gram (test rows centred by the fit's mean).
        let gram_all = LayerGram::new(x.view(), "t").unwrap();
        let cross =
            project(&gram_all.operator(&fit, &new, alpha).unwrap(), &circle_template_3d(&hue_fit, Shape::Circular));
        let mapped = map.project(x.select(ndarray::Axis(0), &new).view());
        let err = (&cross - &mapped).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(err < 1e-8, "unseen rows: max |cross-Gram - map| = {err}");
        assert_eq!(map.weight.dim(), (3, 12));
    }
}
