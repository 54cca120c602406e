//! The SMDS estimator: `SmdsParams` (unchecked builder) → `SmdsValidParams` (`check()`) → fitted `Smds`
//! (`fit` / `transform` / `score`), mirroring the package's `SupervisedMDS` with a complete distance matrix.
//!
//! Not implemented, on purpose: `orthonormal=True` (Procrustes; used by neither the notebook nor
//! `discover_manifolds`) and the iterative solver for incomplete distances (only ChainShape produces them, see
//! `shapes`).

use faer::Mat;
use ndarray::{Array1, Array2, ArrayView2, Axis};

use super::gram::{centre_columns, centred_f64, ideal_embedding, ridge_solve, to_faer, to_ndarray};
use super::metrics::{pairwise, score_all, score_distances, Metric, Scores};
use super::shapes::{LabelMode, Shape};
use super::{Error, Result};

/// Where the ideal embedding comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage1 {
    /// Classical MDS of a shape's ideal distances (`ComputedSMDSParametrization`).
    Shape(Shape),
    /// User coordinates `[n, k]`, one row per training sample (`UserProvidedSMDSParametrization(y=...)`); the
    /// ideal distances are their Euclidean distances and scoring ignores the labels, as in the package.
    Template(Array2<f64>),
}

/// Unchecked SMDS parameters. Defaults: Circular, 2 components, `alpha = 1.0` (the package's default), periodic
/// labels.
#[derive(Debug, Clone, PartialEq)]
pub struct SmdsParams(SmdsValidParams);

/// Checked SMDS parameters; only these can fit.
#[derive(Debug, Clone, PartialEq)]
pub struct SmdsValidParams {
    stage1: Stage1,
    n_components: usize,
    alpha: f64,
    mode: LabelMode,
}

impl SmdsParams {
    pub fn new(shape: Shape) -> Self {
        SmdsParams(SmdsValidParams {
            stage1: Stage1::Shape(shape),
            n_components: 2,
            alpha: 1.0,
            mode: LabelMode::Periodic,
        })
    }

    /// A user template `[n, k]`; `n_components` becomes `k`.
    pub fn template(coords: Array2<f64>) -> Self {
        let k = coords.ncols();
        SmdsParams(SmdsValidParams {
            stage1: Stage1::Template(coords),
            n_components: k,
            alpha: 1.0,
            mode: LabelMode::Periodic,
        })
    }

    pub fn n_components(mut self, k: usize) -> Self {
        self.0.n_components = k;
        self
    }

    /// Ridge penalty; absolute, not relative to the scale of the activations. `0` = minimum-norm least squares.
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.0.alpha = alpha;
        self
    }

    pub fn mode(mut self, mode: LabelMode) -> Self {
        self.0.mode = mode;
        self
    }

    pub fn check(&self) -> Result<SmdsValidParams> {
        let p = &self.0;
        if !(p.alpha.is_finite() && p.alpha >= 0.0) {
            return Err(Error::InvalidParam {
                name: "alpha",
                value: p.alpha.to_string(),
                expected: "a finite number >= 0",
            });
        }
        if p.n_components == 0 {
            return Err(Error::InvalidParam { name: "n_components", value: "0".into(), expected: "at least 1" });
        }
        if let Stage1::Template(t) = &p.stage1 {
            if t.ncols() != p.n_components {
                return Err(Error::InvalidParam {
                    name: "n_components",
                    value: p.n_components.to_string(),
                    expected: "the template's column count",
                });
            }
            if t.iter().any(|v| !v.is_finite()) {
                return Err(Error::InvalidParam {
                    name: "template",
                    value: "non-finite".into(),
                    expected: "finite coordinates",
                });
            }
        }
        Ok(p.clone())
    }
}

impl SmdsValidParams {
    pub fn stage1(&self) -> &Stage1 {
        &self.stage1
    }
    pub fn n_components(&self) -> usize {
        self.n_components
    }
    pub fn alpha(&self) -> f64 {
        self.alpha
    }
    pub fn mode(&self) -> LabelMode {
        self.mode
    }

    /// The ideal embedding `[n, min(n, k)]` of `labels` (uncentred, as the package stores `Y_`).
    pub(crate) fn ideal(&self, labels: &[f64]) -> Result<Array2<f64>> {
        match &self.stage1 {
            Stage1::Shape(shape) => ideal_embedding(*shape, labels, self.mode, self.n_components),
            Stage1::Template(t) => Ok(t.clone()),
        }
    }

    /// Ideal distances for scoring `labels` (a template ignores them, as in the package).
    pub(crate) fn ideal_distances(&self, labels: &[f64]) -> Result<Array2<f64>> {
        match &self.stage1 {
            Stage1::Shape(shape) => shape.distances(labels, self.mode),
            Stage1::Template(t) => {
                if t.nrows() != labels.len() {
                    return Err(Error::TemplateRows { rows: t.nrows(), n: labels.len() });
                }
                Ok(pairwise(t.view()))
            }
        }
    }

    /// Fits $W$ `[k, d]` on activations `x` `[n, d]` and `labels` `[n]` (for a template, labels only count rows):
    /// $W^\top = X_c^\top (X_c X_c^\top + \alpha I_n)^{-1} Y_c$.
    pub fn fit<T: Copy + Into<f64>>(&self, x: ArrayView2<T>, labels: &[f64]) -> Result<Smds> {
        let n = x.nrows();
        if labels.len() != n {
            return Err(Error::LabelCount { labels: labels.len(), samples: n });
        }
        if n < 2 {
            return Err(Error::TooFewSamples { got: n, min: 2 });
        }
        if self.n_components > n {
            return Err(Error::TooManyComponents { k: self.n_components, n });
        }
        if let Stage1::Template(t) = &self.stage1 {
            if t.nrows() != n {
                return Err(Error::TemplateRows { rows: t.nrows(), n });
            }
        }
        super::shapes::check_labels(labels)?;
        let x_mean: Array1<f64> = x.map(|v| Into::<f64>::into(*v)).mean_axis(Axis(0)).expect("n >= 2");
        let xc = centred_f64(x, "activations")?;
        let y = self.ideal(labels)?;
        let yc = to_faer(centre_columns(&y).view());
        let k = &xc * xc.transpose();
        let a = ridge_solve(&k, &yc, self.alpha)?;
        let w_t: Mat<f64> = xc.transpose() * &a;
        Ok(Smds { params: self.clone(), w: to_ndarray(&w_t).reversed_axes(), x_mean, y })
    }
}

/// A fitted SMDS map.
#[derive(Debug, Clone)]
pub struct Smds {
    params: SmdsValidParams,
    w: Array2<f64>,
    x_mean: Array1<f64>,
    y: Array2<f64>,
}

impl Smds {
    pub fn params(&self) -> &SmdsValidParams {
        &self.params
    }
    /// The linear map `[k, d_model]`.
    pub fn w(&self) -> &Array2<f64> {
        &self.w
    }
    /// Mean of the training activations `[d_model]`.
    pub fn x_mean(&self) -> &Array1<f64> {
        &self.x_mean
    }
    /// The ideal embedding of the training labels `[n, k]`.
    pub fn ideal_embedding(&self) -> &Array2<f64> {
        &self.y
    }

    /// Projects `x` `[m, d_model]`: returns $(X - \bar x) W^\top$ `[m, k]`.
    pub fn transform<T: Copy + Into<f64>>(&self, x: ArrayView2<T>) -> Result<Array2<f64>> {
        if x.ncols() != self.w.ncols() {
            return Err(Error::FeatureCount {
                what: "transform input".into(),
                got: x.ncols(),
                expected: self.w.ncols(),
            });
        }
        let mut xc = x.map(|v| Into::<f64>::into(*v));
        if let Some((row, col, value)) = xc.indexed_iter().find(|(_, v)| !v.is_finite()).map(|((r, c), v)| (r, c, *v)) {
            return Err(Error::NonFiniteActivation { what: "transform input".into(), row, col, value });
        }
        xc -= &self.x_mean;
        Ok(xc.dot(&self.w.t()))
    }

    /// One score of the embedding of `x` against `labels` (ideal distances recomputed from these labels, with a
    /// fresh min-max in compat mode, as the package's `score`).
    pub fn score<T: Copy + Into<f64>>(&self, x: ArrayView2<T>, labels: &[f64], metric: Metric) -> Result<f64> {
        let (d_ideal, d_pred) = self.distance_pair(x, labels)?;
        Ok(score_distances(metric, d_ideal.view(), d_pred.view()))
    }

    /// All five scores.
    pub fn scores<T: Copy + Into<f64>>(&self, x: ArrayView2<T>, labels: &[f64]) -> Result<Scores> {
        let (d_ideal, d_pred) = self.distance_pair(x, labels)?;
        Ok(score_all(d_ideal.view(), d_pred.view()))
    }

    fn distance_pair<T: Copy + Into<f64>>(
        &self,
        x: ArrayView2<T>,
        labels: &[f64],
    ) -> Result<(Array2<f64>, Array2<f64>)> {
        if labels.len() != x.nrows() {
            return Err(Error::LabelCount { labels: labels.len(), samples: x.nrows() });
        }
        if x.nrows() < 2 {
            return Err(Error::TooFewSamples { got: x.nrows(), min: 2 });
        }
        let z = self.transform(x)?;
        Ok((self.params.ideal_distances(labels)?, pairwise(z.view())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planted_circle(n: usize, d: usize) -> (Array2<f64>, Vec<f64>) {
        let t: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
        let x = Array2::from_shape_fn((n, d), |(i, j)| {
            let th = 2.0 * std::f64::consts::PI * t[i];
            let noise = (((i * 7919 + j * 104729) % 1000) as f64 / 1000.0 - 0.5) * 0.1;
            match j {
                0 => 3.0 * th.cos() + noise,
                1 => 3.0 * th.sin() + noise,
                _ => noise,
            }
        });
        (x, t)
    }

    #[test]
    fn fitted_transform_recovers_a_planted_circle() {
        let (x, t) = planted_circle(40, 10);
        let smds = SmdsParams::new(Shape::Circular).alpha(1e-4).check().unwrap().fit(x.view(), &t).unwrap();
        assert!(smds.score(x.view(), &t, Metric::ScaleNormalizedStress).unwrap() > 0.99);
        let line = SmdsParams::new(Shape::Euclidean).alpha(1e-4).check().unwrap().fit(x.view(), &t).unwrap();
        assert!(line.score(x.view(), &t, Metric::ScaleNormalizedStress).unwrap() < 0.9);
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let (x, t) = planted_circle(10, 4);
        let p = SmdsParams::new(Shape::Circular).check().unwrap();
        assert!(matches!(p.fit(x.view(), &t[..9]), Err(Error::LabelCount { .. })));
        let mut bad = x.clone();
        bad[[3, 2]] = f64::NAN;
        assert!(matches!(p.fit(bad.view(), &t), Err(Error::NonFiniteActivation { row: 3, col: 2, .. })));
        let mut tn = t.clone();
        tn[1] = f64::INFINITY;
        assert!(matches!(p.fit(x.view(), &tn), Err(Error::NonFiniteLabel { index: 1, .. })));
        assert!(SmdsParams::new(Shape::Circular).alpha(-1.0).check().is_err());
        let k11 = SmdsParams::new(Shape::Circular).n_components(11).check().unwrap();
        assert!(matches!(k11.fit(x.view(), &t), Err(Error::TooManyComponents { k: 11, n: 10 })));
    }

    #[test]
    fn alpha_zero_is_the_least_squares_limit_of_ridge() {
        let (x, t) = planted_circle(40, 6);
        // n > d and full column rank: the minimum-norm solution is the primal least squares
        // W = Yc^T Xc (Xc^T Xc)^-1, computed here independently of the dual path.
        let smds = SmdsParams::new(Shape::Circular).alpha(0.0).check().unwrap().fit(x.view(), &t).unwrap();
        let xc = &x - &x.mean_axis(Axis(0)).unwrap();
        let yc = centre_columns(smds.ideal_embedding());
        let xtx = to_faer(xc.t().dot(&xc).view());
        let inv = ridge_solve(&xtx, &Mat::identity(6, 6), 0.0).unwrap();
        let primal = yc.t().dot(&xc).dot(&to_ndarray(&inv));
        let err = (smds.w() - &primal).mapv(f64::abs).fold(0.0f64, |a, b| a.max(*b));
        assert!(err < 1e-8, "{err}");
    }

    #[test]
    fn constant_activations_score_minus_infinity_like_the_package() {
        let x = Array2::<f64>::ones((10, 4));
        let t: Vec<f64> = (0..10).map(|i| i as f64 / 10.0).collect();
        let smds = SmdsParams::new(Shape::Circular).check().unwrap().fit(x.view(), &t).unwrap();
        assert_eq!(smds.score(x.view(), &t, Metric::ScaleNormalizedStress).unwrap(), f64::NEG_INFINITY);
    }
}
