//! Steering directions from cached activations of one layer `x` `[n, d_model]` with hue labels.
//!
//! - [`centroid`]: $v = \bar x_{tgt} - \bar x_{src}$, each mean over the samples nearest the hue (circular
//!   distance, all ties), as the notebook's `mean_vector_at_angle`.
//! - [`manifold_rotation`]: fit SMDS Circular (2 components) at the layer, $z = W (x - \bar x)$; rotate the
//!   source centroid's coordinates $z_s$ on the fitted circle by $\alpha \Delta\theta$, where $\Delta\theta$ takes
//!   it to the target centroid's angle going the way hue goes, and carry the move back to the activations with
//!   one of three [`Lift`]s. The two linear ones are $\Delta x(\alpha) = L (R(\alpha\Delta\theta) z_s - z_s)$ with
//!   $L$ `[d_model, 2]`: the activation pattern $A = \mathrm{Cov}(x) W^\top \mathrm{Cov}(z)^{-1} = X_c^\top Z
//!   (Z^\top Z)^{-1}$ (the least-squares regression of the centred activations on their fitted coordinates) or
//!   the pseudo-inverse $W^+ = W^\top (W W^\top)^{-1}$ (the minimum-norm change); both satisfy $W L = I$, so
//!   either moves the fitted coordinates exactly onto the rotated point. The third, [`Lift::LocalMean`] (the
//!   default), follows the data's own manifold instead of a plane: with each sample's fitted angle $\phi_i =
//!   \operatorname{atan2}(z_{i1}, z_{i0})$, the point at angle $\psi$ is the kernel-weighted mean of the
//!   activations $\hat x(\psi) = \sum_i k(\psi - \phi_i) x_i / \sum_i k(\psi - \phi_i)$ with a von Mises kernel
//!   $k(u) = e^{\kappa \cos u}$, and $\Delta x(\alpha) = \hat x(\phi_s + \alpha \Delta\theta) - \hat x(\phi_s)$
//!   ($\phi_s$ the source centroid's fitted angle): at alpha 1 it lands on the target's local mean, in between
//!   it walks through the local means of the hues between (a curved path, not the chord). The bandwidth
//!   $\sigma = 1/\sqrt\kappa$ is [`KERNEL_BANDWIDTH_GAPS`] median gaps between neighbouring fitted angles and is
//!   recorded in the recipe. The saved vector is $\Delta x(1)$.
//! - [`random_control`]: a seeded Gaussian direction with the norm of a reference direction.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::vector::positions_spec;
use super::{DirectionKind, Error, Lift, Normalisation, Recipe, SteeringVector};
use crate::colour::signed_hue_delta_deg;
use crate::manifold::{Shape, SmdsParams};
use crate::model::Positions;
use crate::store::ActivationStore;

/// Where a direction lives and how it will be used: the recipe fields that do not depend on the maths.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectionContext {
    pub layer_index: usize,
    pub hook: String,
    pub layer_convention: String,
    pub positions: Positions,
    pub normalisation: Normalisation,
    pub model_id: String,
    pub model_revision: Option<String>,
    pub model_files_sha256: std::collections::BTreeMap<String, String>,
    pub pooling: String,
    pub stimuli_name: String,
    pub stimuli_sha256: String,
    /// The transformers module of the point, from the store (version 2 stores of models that have one).
    pub module: Option<String>,
}

impl DirectionContext {
    /// The context of layer `layer_index` of `store` (its hook name, convention, model and pooling).
    pub fn from_store(
        store: &ActivationStore,
        layer_index: usize,
        positions: Positions,
        normalisation: Normalisation,
    ) -> crate::steer::Result<Self> {
        let m = store.manifest();
        let entry = m.layer(layer_index)?;
        Ok(DirectionContext {
            layer_index,
            hook: entry.hook.clone(),
            layer_convention: m.layer_convention.clone(),
            positions,
            normalisation,
            model_id: m.provenance.model_id.clone(),
            model_revision: m.provenance.model_revision.clone(),
            model_files_sha256: m.provenance.model_files_sha256.clone(),
            pooling: m.provenance.pooling.clone(),
            stimuli_name: m.provenance.stimuli_name.clone(),
            stimuli_sha256: m.provenance.stimuli_sha256.clone(),
            module: entry.module.clone(),
        })
    }

    fn recipe(&self, kind: DirectionKind, source: f64, target: f64, n_src: usize, n_tgt: usize) -> Recipe {
        Recipe {
            kind,
            layer_index: self.layer_index,
            hook: self.hook.clone(),
            layer_convention: self.layer_convention.clone(),
            positions: positions_spec(&self.positions),
            normalisation: self.normalisation,
            source_hue_deg: source,
            target_hue_deg: target,
            model_id: self.model_id.clone(),
            model_revision: self.model_revision.clone(),
            model_files_sha256: self.model_files_sha256.clone(),
            pooling: self.pooling.clone(),
            stimuli_name: self.stimuli_name.clone(),
            stimuli_sha256: self.stimuli_sha256.clone(),
            module: self.module.clone(),
            n_source: n_src,
            n_target: n_tgt,
            norm: 0.0,
            seed: None,
            delta_theta_rad: None,
            smds_alpha: None,
            lift: None,
            kernel_bandwidth_rad: None,
        }
    }
}

/// A direction ready to steer with: the saved vector, and for a manifold rotation the arc it follows.
#[derive(Debug, Clone)]
pub struct Direction {
    pub vector: SteeringVector,
    arc: Option<Arc>,
}

#[derive(Debug, Clone)]
struct Arc {
    path: ArcPath,
    /// The angle moved on the fitted circle at alpha = 1.
    delta_theta: f64,
    /// The normalisation factor applied to the saved vector.
    scale: f64,
}

#[derive(Debug, Clone)]
enum ArcPath {
    /// A linear lift $L$ `[d_model, 2]` ($A$ or $W^+$) of the rotated source coordinates `z_source`.
    Linear { lift: Array2<f64>, z_source: [f64; 2] },
    /// The kernel-weighted local mean of the activations along the fitted angles.
    LocalMean(LocalMean),
}

/// $\hat x(\psi)$: the layer's activations `x` `[n, d_model]` (f64, the one copy a local-mean arc keeps), their
/// fitted angles, the von Mises concentration, and the start of the path $\hat x(\phi_s)$.
#[derive(Debug, Clone)]
struct LocalMean {
    x: Array2<f64>,
    phi: Vec<f64>,
    kappa: f64,
    phi_source: f64,
    base: Array1<f64>,
}

impl LocalMean {
    fn new(x: Array2<f64>, phi: Vec<f64>, kappa: f64, phi_source: f64) -> Self {
        let mut lm = LocalMean { x, phi, kappa, phi_source, base: Array1::zeros(0) };
        lm.base = lm.at(phi_source);
        lm
    }

    /// $\hat x(\psi)$. The weights are divided by the largest one before they are summed, so a narrow kernel
    /// never underflows to nothing: far from every sample the nearest one's activations are returned.
    fn at(&self, psi: f64) -> Array1<f64> {
        let cos: Vec<f64> = self.phi.iter().map(|p| (psi - p).cos()).collect();
        let top = cos.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w = Array1::from_iter(cos.iter().map(|c| (self.kappa * (c - top)).exp()));
        self.x.t().dot(&w) / w.sum()
    }
}

impl Direction {
    /// The change to add at `alpha` `[d_model]`: `alpha * v` for straight directions, the lifted arc step for a
    /// manifold rotation (equal to `v` at alpha = 1, zero at alpha = 0).
    pub fn delta(&self, alpha: f64) -> Vec<f32> {
        match &self.arc {
            None => self.vector.vector.iter().map(|v| (alpha * *v as f64) as f32).collect(),
            Some(arc) => arc.delta(alpha),
        }
    }

    /// Whether [`Direction::delta`] is linear in alpha (then an `Add { vector, alpha }` op reproduces it).
    pub fn is_straight(&self) -> bool {
        self.arc.is_none()
    }
}

impl Arc {
    fn delta(&self, alpha: f64) -> Vec<f32> {
        match &self.path {
            ArcPath::Linear { lift, z_source: [a, b] } => {
                let (s, c) = (alpha * self.delta_theta).sin_cos();
                let dz = [c * a - s * b - a, s * a + c * b - b];
                lift.rows().into_iter().map(|r| (self.scale * (r[0] * dz[0] + r[1] * dz[1])) as f32).collect()
            }
            ArcPath::LocalMean(lm) => {
                if alpha == 0.0 {
                    return vec![0.0; lm.base.len()];
                }
                let at = lm.at(lm.phi_source + alpha * self.delta_theta);
                at.iter().zip(&lm.base).map(|(p, q)| (self.scale * (p - q)) as f32).collect()
            }
        }
    }
}

/// The kernel bandwidth of [`Lift::LocalMean`] in median gaps between neighbouring fitted angles. Two gaps: for
/// evenly spread samples the kernel's effective sample count $(\sum k)^2 / \sum k^2 = 2\sqrt\pi\,\sigma/g$ is
/// about 7, enough to average out one image's texture, while $\sigma$ stays well under the ~30° between
/// neighbouring colour words on the notebook's sets (12° on simple-60, 2° on wild-360), so the path passes
/// through each intermediate hue's own mean and shrinks a circle of radius $r$ only by $e^{-\sigma^2/2}$.
pub const KERNEL_BANDWIDTH_GAPS: f64 = 2.0;

/// The median gap (radians) between neighbouring distinct fitted angles around the circle, `None` when fewer
/// than two distinct angles exist.
fn median_angle_gap(phi: &[f64]) -> Option<f64> {
    use std::f64::consts::TAU;
    let mut u: Vec<f64> = phi.iter().map(|p| p.rem_euclid(TAU)).filter(|p| p.is_finite()).collect();
    u.sort_by(f64::total_cmp);
    u.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
    if u.len() < 2 {
        return None;
    }
    let mut gaps: Vec<f64> = u.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.push(u[0] + TAU - u[u.len() - 1]);
    gaps.sort_by(f64::total_cmp);
    Some(gaps[gaps.len() / 2]).filter(|g| *g > 0.0)
}

/// Rows whose hue is nearest `hue_deg` (circular distance, every tie), as the notebook's `mean_vector_at_angle`.
/// A hue farther than a quarter of the median spacing of the set's hues from every sample is not in the set: an
/// error (the notebook silently takes the nearest, so a typo steered between two hues).
pub fn rows_at_hue(hues: &[f64], hue_deg: f64) -> Result<Vec<usize>, Error> {
    if hues.is_empty() {
        return Err(Error::Msg("the store holds no samples".into()));
    }
    if !hue_deg.is_finite() {
        return Err(Error::Msg(format!("hue {hue_deg} is not a finite number of degrees")));
    }
    let dist: Vec<f64> = hues.iter().map(|h| signed_hue_delta_deg(*h, hue_deg).abs()).collect();
    let min = dist.iter().cloned().fold(f64::INFINITY, f64::min);
    let tolerance = (median_spacing_deg(hues) / 4.0).max(1e-9);
    if min > tolerance {
        let nearest = dist.iter().position(|d| *d == min).map_or(f64::NAN, |i| hues[i]);
        return Err(Error::HueNotInSet { hue_deg, nearest_deg: nearest, tolerance_deg: tolerance });
    }
    Ok((0..hues.len()).filter(|&i| dist[i] == min).collect())
}

/// Median gap between neighbouring distinct hues around the circle (360 for a single hue).
fn median_spacing_deg(hues: &[f64]) -> f64 {
    let mut u: Vec<f64> = hues.iter().map(|h| h.rem_euclid(360.0)).collect();
    u.sort_by(f64::total_cmp);
    u.dedup();
    if u.len() < 2 {
        return 360.0;
    }
    let mut gaps: Vec<f64> = u.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.push(u[0] + 360.0 - u[u.len() - 1]);
    gaps.sort_by(f64::total_cmp);
    gaps[gaps.len() / 2]
}

fn mean_rows(x: ArrayView2<f32>, rows: &[usize]) -> Array1<f64> {
    let mut m = Array1::<f64>::zeros(x.ncols());
    for &i in rows {
        m.zip_mut_with(&x.row(i), |a, b| *a += *b as f64);
    }
    m / rows.len() as f64
}

fn check_labels(x: ArrayView2<f32>, hues: &[f64]) -> Result<(), Error> {
    if hues.len() != x.nrows() {
        return Err(Error::Width { what: "hue labels".into(), expected: x.nrows(), got: hues.len() });
    }
    Ok(())
}

fn finish(v: Array1<f64>, ctx: &DirectionContext, mut recipe: Recipe) -> Result<(Vec<f32>, Recipe, f64), Error> {
    let norm = v.dot(&v).sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return Err(Error::Layer {
            index: ctx.layer_index,
            msg: format!(
                "the {} direction from {}° to {}° is zero; the two hues look the same at this layer",
                recipe.kind, recipe.source_hue_deg, recipe.target_hue_deg
            ),
        });
    }
    let scale = match ctx.normalisation {
        Normalisation::None => 1.0,
        Normalisation::Unit => 1.0 / norm,
    };
    recipe.norm = norm * scale;
    Ok((v.iter().map(|a| (a * scale) as f32).collect(), recipe, scale))
}

/// Centroid difference from `source_deg` to `target_deg` at one layer `x` `[n, d_model]`.
pub fn centroid(
    x: ArrayView2<f32>,
    hues: &[f64],
    source_deg: f64,
    target_deg: f64,
    ctx: &DirectionContext,
) -> crate::steer::Result<Direction> {
    check_labels(x, hues)?;
    let (src, tgt) = (rows_at_hue(hues, source_deg)?, rows_at_hue(hues, target_deg)?);
    let v = mean_rows(x, &tgt) - mean_rows(x, &src);
    let recipe = ctx.recipe(DirectionKind::Centroid, source_deg, target_deg, src.len(), tgt.len());
    let (vector, recipe, _) = finish(v, ctx, recipe)?;
    Ok(Direction { vector: SteeringVector { vector, recipe }, arc: None })
}

/// Rotation of the source centroid along the SMDS Circular fit of the layer, lifted back with `lift` (see the
/// module doc). `smds_alpha` is the ridge penalty of the fit (the notebook's own fits use 1e-4).
pub fn manifold_rotation(
    x: ArrayView2<f32>,
    hues: &[f64],
    source_deg: f64,
    target_deg: f64,
    ctx: &DirectionContext,
    smds_alpha: f64,
    lift: Lift,
) -> crate::steer::Result<Direction> {
    check_labels(x, hues)?;
    let (src, tgt) = (rows_at_hue(hues, source_deg)?, rows_at_hue(hues, target_deg)?);
    let turns: Vec<f64> = hues.iter().map(|h| h.rem_euclid(360.0) / 360.0).collect();
    let smds = SmdsParams::new(Shape::Circular).n_components(2).alpha(smds_alpha).check()?.fit(x, &turns)?;
    let z = smds.transform(x)?;
    let centroid_z = |rows: &[usize]| -> [f64; 2] {
        let m = z.select(Axis(0), rows).mean_axis(Axis(0)).expect("rows non-empty");
        [m[0], m[1]]
    };
    let (zs, zt) = (centroid_z(&src), centroid_z(&tgt));
    let delta_theta = arc_angle(&z, hues, zs, zt, signed_hue_delta_deg(source_deg, target_deg));
    let mut kernel_bandwidth = None;
    let rank_error = |what: &str| Error::Layer {
        index: ctx.layer_index,
        msg: format!(
            "{what} has rank below 2, so a rotation on the fitted circle cannot be lifted back; use --direction \
             centroid at this layer"
        ),
    };
    let path = match lift {
        // W^+ = W^T (W W^T)^{-1}: W is [2, d], so the Gram is 2 x 2.
        Lift::MinNorm => {
            let w = smds.w();
            let lift = w.t().dot(&inverse_2x2(&w.dot(&w.t())).ok_or_else(|| rank_error("the fitted SMDS map"))?);
            ArcPath::Linear { lift, z_source: zs }
        }
        // A = X_c^T Z (Z^T Z)^{-1}: z = (x - mean) W^T is centred on these samples, so this is
        // Cov(x) W^T Cov(z)^{-1} with the 1/n factors cancelled.
        Lift::Pattern => {
            let mut xc = x.mapv(f64::from);
            xc -= smds.x_mean();
            let g = inverse_2x2(&z.t().dot(&z)).ok_or_else(|| rank_error("the fitted coordinates"))?;
            ArcPath::Linear { lift: xc.t().dot(&z).dot(&g), z_source: zs }
        }
        Lift::LocalMean => {
            let phi: Vec<f64> = z.rows().into_iter().map(|r| r[1].atan2(r[0])).collect();
            let gap = median_angle_gap(&phi).ok_or_else(|| Error::Layer {
                index: ctx.layer_index,
                msg: "the samples' fitted angles on the circle all coincide, so the local-mean lift has no spacing \
                      to set its kernel bandwidth from; use --lift pattern or --direction centroid at this layer"
                    .into(),
            })?;
            let bandwidth = KERNEL_BANDWIDTH_GAPS * gap;
            kernel_bandwidth = Some(bandwidth);
            ArcPath::LocalMean(LocalMean::new(x.mapv(f64::from), phi, bandwidth.powi(-2), zs[1].atan2(zs[0])))
        }
    };
    let raw = Arc { path, delta_theta, scale: 1.0 };
    let v = Array1::from(raw.delta(1.0).into_iter().map(f64::from).collect::<Vec<_>>());
    let mut recipe = ctx.recipe(DirectionKind::Manifold, source_deg, target_deg, src.len(), tgt.len());
    recipe.delta_theta_rad = Some(delta_theta);
    recipe.smds_alpha = Some(smds_alpha);
    recipe.lift = Some(lift);
    recipe.kernel_bandwidth_rad = kernel_bandwidth;
    let (vector, recipe, scale) = finish(v, ctx, recipe)?;
    Ok(Direction { vector: SteeringVector { vector, recipe }, arc: Some(Arc { scale, ..raw }) })
}

/// The inverse of a symmetric positive semi-definite 2 x 2 matrix, `None` when it is (numerically) singular.
fn inverse_2x2(g: &Array2<f64>) -> Option<Array2<f64>> {
    let det = g[[0, 0]] * g[[1, 1]] - g[[0, 1]] * g[[1, 0]];
    let ok = det.is_finite() && det.abs() > 1e-12 * (g[[0, 0]] * g[[1, 1]]).abs().max(f64::MIN_POSITIVE);
    ok.then(|| ndarray::arr2(&[[g[[1, 1]] / det, -g[[0, 1]] / det], [-g[[1, 0]] / det, g[[0, 0]] / det]]))
}

/// The angle from `zs` to `zt` on the fitted circle, going the way hue goes from source to target: the circle's
/// orientation (does the fitted angle grow with hue?) is read from the samples sorted by hue.
fn arc_angle(z: &Array2<f64>, hues: &[f64], zs: [f64; 2], zt: [f64; 2], hue_step_deg: f64) -> f64 {
    use std::f64::consts::{PI, TAU};
    let mut order: Vec<usize> = (0..hues.len()).collect();
    order.sort_by(|&a, &b| hues[a].rem_euclid(360.0).total_cmp(&hues[b].rem_euclid(360.0)));
    let angle = |i: usize| z[[i, 1]].atan2(z[[i, 0]]);
    let wrap = |d: f64| (d + PI).rem_euclid(TAU) - PI;
    let winding: f64 = order.windows(2).map(|w| wrap(angle(w[1]) - angle(w[0]))).sum();
    let sense = winding.signum() * hue_step_deg.signum();
    let d = (zt[1].atan2(zt[0]) - zs[1].atan2(zs[0])).rem_euclid(TAU);
    if d == 0.0 || sense >= 0.0 {
        d
    } else {
        d - TAU
    }
}

/// A seeded Gaussian direction with the norm (and recipe context) of `reference`.
pub fn random_control(reference: &Direction, seed: u64) -> Direction {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = reference.vector.d_model();
    // Box-Muller: rand 0.9 has no normal distribution without rand_distr.
    let g: Vec<f64> = (0..d)
        .map(|_| {
            let (u1, u2): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect();
    let g_norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    let norm = reference.vector.recipe.norm;
    let vector = g.iter().map(|v| (v / g_norm * norm) as f32).collect();
    let mut recipe = reference.vector.recipe.clone();
    recipe.kind = DirectionKind::Random;
    recipe.seed = Some(seed);
    recipe.delta_theta_rad = None;
    recipe.smds_alpha = None;
    recipe.lift = None;
    recipe.kernel_bandwidth_rad = None;
    Direction { vector: SteeringVector { vector, recipe }, arc: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> DirectionContext {
        DirectionContext {
            layer_index: 3,
            hook: "blocks.2.hook_resid_post".into(),
            layer_convention: crate::model::LAYER_CONVENTION.into(),
            positions: Positions::ImageTokens,
            normalisation: Normalisation::None,
            model_id: "test".into(),
            model_revision: None,
            model_files_sha256: Default::default(),
            pooling: "image-mean".into(),
            stimuli_name: "test".into(),
            stimuli_sha256: "0".into(),
            module: None,
        }
    }

    /// 36 hues on a circle of radius 3 in dims (1, 2) of a 5-d space, plus a constant offset.
    fn circle() -> (Array2<f32>, Vec<f64>) {
        let hues: Vec<f64> = (0..36).map(|i| i as f64 * 10.0).collect();
        let x = Array2::from_shape_fn((36, 5), |(i, j)| {
            let t = hues[i].to_radians();
            match j {
                1 => (3.0 * t.cos()) as f32,
                2 => (3.0 * t.sin()) as f32,
                _ => 0.5,
            }
        });
        (x, hues)
    }

    #[test]
    fn centroid_is_the_difference_of_hue_means() {
        let (x, hues) = circle();
        let d = centroid(x.view(), &hues, 240.0, 0.0, &ctx()).unwrap();
        let want = [0.0, 3.0 - 3.0 * 240f64.to_radians().cos(), -3.0 * 240f64.to_radians().sin(), 0.0, 0.0];
        for (g, w) in d.vector.vector.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}");
        }
        assert_eq!(d.delta(0.5), d.vector.vector.iter().map(|v| v * 0.5).collect::<Vec<_>>());
        assert_eq!((d.vector.recipe.n_source, d.vector.recipe.n_target), (1, 1));
    }

    /// The lifts with a matrix $L$, $W L = I$ (the local-mean lift has its own tests).
    const LINEAR: [Lift; 2] = [Lift::Pattern, Lift::MinNorm];

    #[test]
    fn manifold_rotation_follows_the_circle_and_ends_at_the_target() {
        let (x, hues) = circle();
        for lift in LINEAR {
            let d = manifold_rotation(x.view(), &hues, 240.0, 0.0, &ctx(), 1e-6, lift).unwrap();
            assert_eq!(d.vector.recipe.lift, Some(lift));
            // Blue -> red goes up in hue (240 -> 360): +120 degrees of arc.
            assert!((d.vector.recipe.delta_theta_rad.unwrap().abs() - 120f64.to_radians()).abs() < 1e-3);
            let src = x.row(24).mapv(f64::from);
            for alpha in [0.25, 0.5, 1.0] {
                let moved = &src + &Array1::from(d.delta(alpha).into_iter().map(f64::from).collect::<Vec<_>>());
                let hue = moved[2].atan2(moved[1]).to_degrees().rem_euclid(360.0);
                let radius = (moved[1].powi(2) + moved[2].powi(2)).sqrt();
                let want = (240.0 + 120.0 * alpha).rem_euclid(360.0);
                assert!(signed_hue_delta_deg(hue, want).abs() < 0.1, "{lift} alpha {alpha}: hue {hue}, want {want}");
                assert!((radius - 3.0).abs() < 1e-3, "{lift}: an arc, not a chord: radius {radius}");
                assert!((moved[0] - 0.5).abs() < 1e-4 && (moved[3] - 0.5).abs() < 1e-4, "off-circle dims untouched");
            }
            assert!(d.delta(0.0).iter().all(|v| *v == 0.0));
        }
    }

    /// 72 hues 5 degrees apart: a circle of radius 3 in dims (0, 1), seeded uniform noise of amplitude 0.3 in
    /// dims 2..8, one of which (dim 2) also carries 0.5 cos(hue): a layer where a decoder's filter and the
    /// activation pattern differ.
    fn noisy_circle() -> (Array2<f32>, Vec<f64>) {
        let hues: Vec<f64> = (0..72).map(|i| i as f64 * 5.0).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let x = Array2::from_shape_fn((72, 8), |(i, j)| {
            let t = hues[i].to_radians();
            let noise = 0.3 * (2.0 * rng.random::<f64>() - 1.0);
            (match j {
                0 => 3.0 * t.cos(),
                1 => 3.0 * t.sin(),
                2 => 0.5 * t.cos() + noise,
                _ => noise,
            }) as f32
        });
        (x, hues)
    }

    #[test]
    fn the_pattern_lift_is_cov_x_w_t_cov_z_inverse_and_both_lifts_land_on_the_rotated_point() {
        let (x, hues) = noisy_circle();
        let (n, smds_alpha) = (x.nrows() as f64, 1e-4);
        // An explicit computation from the d x d covariance, independent of the regression form in the code.
        let turns: Vec<f64> = hues.iter().map(|h| h / 360.0).collect();
        let smds = SmdsParams::new(Shape::Circular).n_components(2).alpha(smds_alpha).check().unwrap();
        let smds = smds.fit(x.view(), &turns).unwrap();
        let w = smds.w();
        let xc = x.mapv(f64::from) - smds.x_mean();
        let cov_x = xc.t().dot(&xc) / n;
        let cov_z = w.dot(&cov_x).dot(&w.t());
        let a = cov_x.dot(&w.t()).dot(&inverse_2x2(&cov_z).unwrap());
        let z = smds.transform(x.view()).unwrap();
        let (src, tgt) = (rows_at_hue(&hues, 240.0).unwrap(), rows_at_hue(&hues, 0.0).unwrap());
        let zs = [z[[src[0], 0]], z[[src[0], 1]]];
        for lift in LINEAR {
            let d = manifold_rotation(x.view(), &hues, 240.0, 0.0, &ctx(), smds_alpha, lift).unwrap();
            let dt = d.vector.recipe.delta_theta_rad.unwrap();
            let zt = z.row(tgt[0]);
            let want_dt = (zt[1].atan2(zt[0]) - zs[1].atan2(zs[0])).rem_euclid(std::f64::consts::TAU);
            assert!((dt.rem_euclid(std::f64::consts::TAU) - want_dt).abs() < 1e-9, "{lift}: {dt} vs {want_dt}");
            for alpha in [0.5, 1.0] {
                let (s, c) = (alpha * dt).sin_cos();
                let rotated = [c * zs[0] - s * zs[1], s * zs[0] + c * zs[1]];
                let delta = Array1::from(d.delta(alpha).into_iter().map(f64::from).collect::<Vec<_>>());
                if lift == Lift::Pattern {
                    let want = a.dot(&ndarray::arr1(&[rotated[0] - zs[0], rotated[1] - zs[1]]));
                    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
                    let err = (&delta - &want).iter().fold(0f64, |m, v| m.max(v.abs())) / scale;
                    // f32 output of an f64 computation: relative 1e-6.
                    assert!(err < 1e-6, "alpha {alpha}: pattern lift vs Cov(x) W^T Cov(z)^-1: {err:.2e}");
                }
                // W L = I for both lifts: the source's fitted coordinates move exactly onto the rotated point.
                let moved = (x.row(src[0]).mapv(f64::from) + &delta).insert_axis(Axis(0));
                let zm = smds.transform(moved.view()).unwrap();
                let tol = 1e-5 * zs[0].hypot(zs[1]);
                for (k, want) in rotated.iter().enumerate() {
                    assert!((zm[[0, k]] - want).abs() < tol, "{lift} alpha {alpha} z[{k}]: {zm} vs {rotated:?}");
                }
            }
        }
    }

    #[test]
    fn the_pattern_lift_moves_the_planted_circle_where_the_min_norm_lift_moves_the_filter() {
        let (x, hues) = noisy_circle();
        let planted = [3.0 * (1.0 - 240f64.to_radians().cos()), -3.0 * 240f64.to_radians().sin()];
        let pattern = manifold_rotation(x.view(), &hues, 240.0, 0.0, &ctx(), 1e-4, Lift::Pattern).unwrap();
        let v = &pattern.vector.vector;
        // The data move 4.5 along dim 0 and 2.6 along dim 1 from blue to red; the pattern lift follows them
        // (dim 2 carries 0.5 cos: +0.75) and leaves the pure-noise dims nearly still.
        assert!((v[0] as f64 - planted[0]).abs() < 0.2 && (v[1] as f64 - planted[1]).abs() < 0.2, "{v:?}");
        assert!((v[2] as f64 - 0.75).abs() < 0.2, "{v:?}");
        assert!(v[3..].iter().all(|a| a.abs() < 0.15), "{v:?}");
        // The minimum-norm change is shorter: it moves the fitted coordinates the same way along W's rows only.
        let min_norm = manifold_rotation(x.view(), &hues, 240.0, 0.0, &ctx(), 1e-4, Lift::MinNorm).unwrap();
        assert!(min_norm.vector.recipe.norm < pattern.vector.recipe.norm);
    }

    /// $\hat x(\psi)$ written out: plain von Mises weights, no max-normalisation (kappa is small enough here).
    fn local_mean(x: &Array2<f32>, phi: &[f64], kappa: f64, psi: f64) -> Array1<f64> {
        let w: Vec<f64> = phi.iter().map(|p| (kappa * (psi - p).cos()).exp()).collect();
        let mut m = Array1::<f64>::zeros(x.ncols());
        for (row, wi) in x.rows().into_iter().zip(&w) {
            m.zip_mut_with(&row, |a, b| *a += wi * *b as f64);
        }
        m / w.iter().sum::<f64>()
    }

    #[test]
    fn the_local_mean_lift_walks_the_kernel_means_from_the_source_to_the_target() {
        use std::f64::consts::TAU;
        let (x, hues) = noisy_circle();
        let smds_alpha = 1e-4;
        let turns: Vec<f64> = hues.iter().map(|h| h / 360.0).collect();
        let smds = SmdsParams::new(Shape::Circular).n_components(2).alpha(smds_alpha).check().unwrap();
        let z = smds.fit(x.view(), &turns).unwrap().transform(x.view()).unwrap();
        let phi: Vec<f64> = z.rows().into_iter().map(|r| r[1].atan2(r[0])).collect();
        // The bandwidth: two median gaps of the sorted fitted angles (72 hues 5 degrees apart: about 10 degrees).
        let mut sorted: Vec<f64> = phi.iter().map(|p| p.rem_euclid(TAU)).collect();
        sorted.sort_by(f64::total_cmp);
        let mut gaps: Vec<f64> = sorted.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.push(sorted[0] + TAU - sorted[71]);
        gaps.sort_by(f64::total_cmp);
        let sigma = KERNEL_BANDWIDTH_GAPS * gaps[36];
        assert!((sigma.to_degrees() - 10.0).abs() < 2.0, "bandwidth {}°", sigma.to_degrees());
        let kappa = sigma.powi(-2);

        let d = manifold_rotation(x.view(), &hues, 240.0, 0.0, &ctx(), smds_alpha, Lift::LocalMean).unwrap();
        let r = &d.vector.recipe;
        assert_eq!(r.lift, Some(Lift::LocalMean));
        assert!((r.kernel_bandwidth_rad.unwrap() - sigma).abs() < 1e-12, "recorded: {:?}", r.kernel_bandwidth_rad);
        assert!(!d.is_straight());
        let (phi_s, phi_t) = (phi[48], phi[0]); // 240 and 0 degrees: one sample each
        let dt = r.delta_theta_rad.unwrap();
        // The fit may mirror the circle: 120 degrees of fitted arc, whichever way the fitted angle goes.
        assert!((dt.abs() - 120f64.to_radians()).abs() < 0.05, "blue -> red is 120 degrees of fitted arc: {dt}");
        let (start, end) = (local_mean(&x, &phi, kappa, phi_s), local_mean(&x, &phi, kappa, phi_t));
        let as_f64 = |v: Vec<f32>| Array1::from(v.into_iter().map(f64::from).collect::<Vec<_>>());
        // Alpha 1: the step from the source's local mean to the target's (the saved vector).
        let err = (&as_f64(d.delta(1.0)) - &(&end - &start)).iter().fold(0f64, |m, v| m.max(v.abs()));
        assert!(err < 1e-5, "alpha 1 lands on the target's local mean: {err:.2e}");
        assert_eq!(d.delta(1.0), d.vector.vector);
        assert!(d.delta(0.0).iter().all(|v| *v == 0.0), "alpha 0 is no change");
        // In between it follows the circle through the intermediate hues' means, not the chord: the chord's
        // midpoint has radius 3 cos 60° = 1.5, the kernel means keep 3 e^{-sigma^2 / 2} (about 2.95).
        let shrunk = 3.0 * (-sigma * sigma / 2.0).exp();
        for alpha in [0.25, 0.5, 0.75, 1.25] {
            let p = &start + &as_f64(d.delta(alpha));
            let want = local_mean(&x, &phi, kappa, phi_s + alpha * dt);
            let err = (&p - &want).iter().fold(0f64, |m, v| m.max(v.abs()));
            assert!(err < 1e-5, "alpha {alpha}: {err:.2e}");
            let hue = p[1].atan2(p[0]).to_degrees().rem_euclid(360.0);
            let want_hue = (240.0 + 120.0 * alpha).rem_euclid(360.0);
            assert!(signed_hue_delta_deg(hue, want_hue).abs() < 1.0, "alpha {alpha}: hue {hue} vs {want_hue}");
            let radius = p[0].hypot(p[1]);
            eprintln!("alpha {alpha}: hue {hue:.2}° (want {want_hue}°), radius {radius:.3} (want {shrunk:.3})");
            assert!((radius - shrunk).abs() < 0.02, "alpha {alpha}: radius {radius} vs {shrunk}: an arc");
        }
        // The other lifts record no bandwidth, and a recipe written before the field existed still reads.
        let pattern = manifold_rotation(x.view(), &hues, 240.0, 0.0, &ctx(), smds_alpha, Lift::Pattern).unwrap();
        assert_eq!(pattern.vector.recipe.kernel_bandwidth_rad, None);
        let mut json = serde_json::to_value(r).unwrap();
        assert!(json.as_object_mut().unwrap().remove("kernel_bandwidth_rad").is_some());
        let old: Recipe = serde_json::from_value(json).unwrap();
        assert_eq!(old.kernel_bandwidth_rad, None);
    }

    #[test]
    fn the_local_mean_bandwidth_needs_spread_fitted_angles() {
        use std::f64::consts::{FRAC_PI_2, PI};
        assert_eq!(median_angle_gap(&[0.0, FRAC_PI_2, PI, -FRAC_PI_2]), Some(FRAC_PI_2));
        let g = median_angle_gap(&[-0.1, 0.1, 0.2]).unwrap();
        assert!((g - 0.2).abs() < 1e-12, "the gaps (0.1, 0.2 across zero, the rest) go round the circle: {g}");
        assert_eq!(median_angle_gap(&[0.3, 0.3, 0.3 + std::f64::consts::TAU]), None, "one distinct angle");
        assert_eq!(median_angle_gap(&[]), None);
    }

    #[test]
    fn random_control_has_the_reference_norm_and_is_seeded() {
        let (x, hues) = circle();
        let c = centroid(x.view(), &hues, 0.0, 120.0, &ctx()).unwrap();
        let (a, b, other) = (random_control(&c, 7), random_control(&c, 7), random_control(&c, 8));
        assert_eq!(a.vector.vector, b.vector.vector);
        assert_ne!(a.vector.vector, other.vector.vector);
        let norm = a.vector.vector.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        assert!((norm - c.vector.recipe.norm).abs() < 1e-5 * norm);
        assert_eq!(a.vector.recipe.kind, DirectionKind::Random);
    }

    #[test]
    fn unit_normalisation_scales_the_arc_too() {
        let (x, hues) = circle();
        let mut c = ctx();
        c.normalisation = Normalisation::Unit;
        let n = |v: &[f32]| v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
        for lift in Lift::ALL {
            let d = manifold_rotation(x.view(), &hues, 0.0, 120.0, &c, 1e-6, lift).unwrap();
            assert!((n(&d.vector.vector) - 1.0).abs() < 1e-5);
            assert!((n(&d.delta(1.0)) - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn hues_not_in_the_set_and_label_counts_are_errors() {
        let (x, hues) = circle();
        assert_eq!(rows_at_hue(&hues, 359.0).unwrap(), vec![0]);
        assert!(matches!(rows_at_hue(&hues, 7.0), Err(Error::HueNotInSet { .. })));
        assert_eq!(rows_at_hue(&hues, 11.0).unwrap(), vec![1]);
        let twice = [0.0, 0.0, 120.0, 240.0];
        assert_eq!(rows_at_hue(&twice, 360.0).unwrap(), vec![0, 1], "ties are all kept");
        let err = centroid(x.view(), &hues[..30], 0.0, 120.0, &ctx()).unwrap_err();
        assert!(err.to_string().contains("width"), "{err}");
        let err = centroid(x.view(), &hues, 0.0, 0.0, &ctx()).unwrap_err();
        assert!(err.to_string().contains("is zero"), "{err}");
    }
}
