//! Shape hypotheses: the ideal distance matrix a shape assigns to a set of labels, and, where the shape is a
//! Euclidean point set, its explicit coordinates (classical MDS of such a set is its centred PCA, so the ideal
//! embedding needs no $n \times n$ eigendecomposition).
//!
//! Package shapes left out, with reasons: Chain (its distances are incomplete, `-1`, which switches the package
//! to an L-BFGS fit with finite-difference gradients over `k * d` parameters; with continuous hue labels almost
//! every pair is undefined and the package's own score is NaN), and the 2-D-label shapes (Cylindrical, Spherical,
//! Geodesic, Torus, KleinBottle, GraphGeodesic, Hierarchical) and Polytope (unseeded in the package), which take
//! no single periodic or ordinal label.

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{Error, Result};

/// How labels are turned into shape coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LabelMode {
    /// huescan's default: labels are fractions of a turn in `[0, 1)` (hue_deg mod 360 / 360), used as they are,
    /// so hue 0 and hue 354 stay 6 degrees apart and a partial arc stays partial. Discovery folds are shuffled
    /// with a seed.
    #[default]
    Periodic,
    /// The Python package number for number: global min-max normalisation of the labels for Circular,
    /// Semicircular, Euclidean and Spiral (again on every scored subset), raw labels for the others, and
    /// unshuffled contiguous k-fold.
    Compat,
}

impl LabelMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LabelMode::Periodic => "periodic",
            LabelMode::Compat => "compat",
        }
    }
}

impl fmt::Display for LabelMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LabelMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "periodic" | "huescan" => Ok(LabelMode::Periodic),
            "compat" => Ok(LabelMode::Compat),
            _ => Err(Error::InvalidParam { name: "mode", value: s.into(), expected: "periodic or compat" }),
        }
    }
}

/// A 1-D-label shape hypothesis of the package, with its default parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Shape {
    /// Chord of the unit circle: $D = 2 \sin(\pi \min(\Delta, 1 - \Delta))$.
    Circular,
    /// Chord of the unit semicircle, $\theta = \pi t$: $D = 2 \sin(\tfrac{\pi}{2} \Delta)$.
    Semicircular,
    /// A line: $D = \Delta$.
    Euclidean,
    /// Ring (arc) distance $\min(\delta, L - \delta)$, $\delta = \Delta \bmod L$. Compat: $L = \max(y) + 1$ on raw
    /// labels (the package default); periodic: $L = 1$ turn.
    DiscreteCircular,
    /// Archimedean spiral, $\theta = 2\pi \cdot 2 t$, $r = 0.5 + \theta$ (package defaults).
    Spiral,
    /// $D = |\ln(1 + y_i) - \ln(1 + y_j)|$ on raw labels (never normalised).
    LogLinear,
    /// $D = 1[y_i \ne y_j]$. With all-distinct labels its cMDS eigenspace is degenerate, so its embedding (and
    /// scores) depend on the eigensolver; compare it only loosely with the package.
    Cluster,
}

const SPIRAL_INITIAL_RADIUS: f64 = 0.5;
const SPIRAL_GROWTH_RATE: f64 = 1.0;
const SPIRAL_NUM_TURNS: f64 = 2.0;

impl Shape {
    /// The notebook's three candidates.
    pub const NOTEBOOK: [Shape; 3] = [Shape::Circular, Shape::Semicircular, Shape::Euclidean];
    /// Every shape implemented here.
    pub const ALL: [Shape; 7] = [
        Shape::Circular,
        Shape::Semicircular,
        Shape::Euclidean,
        Shape::DiscreteCircular,
        Shape::Spiral,
        Shape::LogLinear,
        Shape::Cluster,
    ];

    /// The package's class name, as the notebook's tables print it.
    pub fn class_name(self) -> &'static str {
        match self {
            Shape::Circular => "CircularShape",
            Shape::Semicircular => "SemicircularShape",
            Shape::Euclidean => "EuclideanShape",
            Shape::DiscreteCircular => "DiscreteCircularShape",
            Shape::Spiral => "SpiralShape",
            Shape::LogLinear => "LogLinearShape",
            Shape::Cluster => "ClusterShape",
        }
    }

    /// The package's string name (`SupervisedMDS(manifold=...)`).
    pub fn short_name(self) -> &'static str {
        match self {
            Shape::Circular => "circular",
            Shape::Semicircular => "semicircular",
            Shape::Euclidean => "euclidean",
            Shape::DiscreteCircular => "discrete_circular",
            Shape::Spiral => "spiral",
            Shape::LogLinear => "log_linear",
            Shape::Cluster => "cluster",
        }
    }

    /// Whether the package min-max normalises labels for this shape (compat mode only).
    fn normalizes_labels(self) -> bool {
        matches!(self, Shape::Circular | Shape::Semicircular | Shape::Euclidean | Shape::Spiral)
    }

    /// Labels as the shape's distance formula sees them.
    pub(crate) fn processed_labels(self, labels: &[f64], mode: LabelMode) -> Result<Vec<f64>> {
        check_labels(labels)?;
        if self == Shape::LogLinear {
            if let Some((index, &value)) = labels.iter().enumerate().find(|(_, v)| **v < 0.0) {
                return Err(Error::NegativeLabel { shape: self.class_name(), index, value });
            }
        }
        Ok(if mode == LabelMode::Compat && self.normalizes_labels() { min_max(labels) } else { labels.to_vec() })
    }

    /// Explicit coordinates `[n, q]` whose Euclidean distances are this shape's ideal distances, or `None` for
    /// shapes that are not Euclidean point sets (DiscreteCircular's arc metric, Cluster).
    pub(crate) fn coordinates(self, t: &[f64]) -> Option<Array2<f64>> {
        let n = t.len();
        match self {
            Shape::Circular => Some(Array2::from_shape_fn((n, 2), |(i, c)| angle_xy(2.0 * PI * t[i], c))),
            Shape::Semicircular => Some(Array2::from_shape_fn((n, 2), |(i, c)| angle_xy(PI * t[i], c))),
            Shape::Euclidean => Some(Array2::from_shape_fn((n, 1), |(i, _)| t[i])),
            Shape::LogLinear => Some(Array2::from_shape_fn((n, 1), |(i, _)| (t[i] + 1.0).ln())),
            Shape::Spiral => Some(Array2::from_shape_fn((n, 2), |(i, c)| {
                let theta = t[i] * 2.0 * PI * SPIRAL_NUM_TURNS;
                let r = SPIRAL_INITIAL_RADIUS + SPIRAL_GROWTH_RATE * theta;
                r * angle_xy(theta, c)
            })),
            Shape::DiscreteCircular | Shape::Cluster => None,
        }
    }

    /// The ideal distance matrix `[n, n]` for `labels`, with a zero diagonal (package formulas, see the variants).
    pub fn distances(self, labels: &[f64], mode: LabelMode) -> Result<Array2<f64>> {
        let t = self.processed_labels(labels, mode)?;
        let n = t.len();
        let mut d = Array2::<f64>::zeros((n, n));
        let period = match mode {
            LabelMode::Compat => t.iter().cloned().fold(f64::NEG_INFINITY, f64::max) + 1.0,
            LabelMode::Periodic => 1.0,
        };
        let log_t: Vec<f64> = t.iter().map(|v| (v + 1.0).ln()).collect();
        let spiral = self.coordinates(&t).filter(|_| self == Shape::Spiral);
        for i in 0..n {
            for j in 0..n {
                if i == j {
                    continue;
                }
                let delta = (t[i] - t[j]).abs();
                d[[i, j]] = match self {
                    Shape::Circular => 2.0 * (PI * delta.min(1.0 - delta)).sin(),
                    Shape::Semicircular => 2.0 * ((PI / 2.0) * delta).sin(),
                    Shape::Euclidean => delta,
                    Shape::LogLinear => (log_t[i] - log_t[j]).abs(),
                    Shape::DiscreteCircular => {
                        let direct = delta.rem_euclid(period);
                        direct.min(period - direct)
                    }
                    Shape::Spiral => {
                        let p = spiral.as_ref().expect("spiral has coordinates");
                        ((p[[i, 0]] - p[[j, 0]]).powi(2) + (p[[i, 1]] - p[[j, 1]]).powi(2)).sqrt()
                    }
                    Shape::Cluster => f64::from(u8::from(t[i] != t[j])),
                };
            }
        }
        Ok(d)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.class_name())
    }
}

impl FromStr for Shape {
    type Err = Error;
    /// Accepts the package's string names (`circular`) and class names (`CircularShape`), any case.
    fn from_str(s: &str) -> Result<Self> {
        let key = s.trim().to_ascii_lowercase().replace(['-', '_'], "");
        Shape::ALL
            .into_iter()
            .find(|sh| key == sh.short_name().replace('_', "") || key == sh.class_name().to_ascii_lowercase())
            .ok_or_else(|| Error::UnknownShape(s.to_string()))
    }
}

fn angle_xy(theta: f64, c: usize) -> f64 {
    if c == 0 {
        theta.cos()
    } else {
        theta.sin()
    }
}

/// Checks labels are non-empty and finite. Constant labels are allowed here (the package scores them `-inf`);
/// the analysis rejects them up front.
pub(crate) fn check_labels(labels: &[f64]) -> Result<()> {
    if labels.is_empty() {
        return Err(Error::TooFewSamples { got: 0, min: 2 });
    }
    if let Some((index, &value)) = labels.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFiniteLabel { index, value });
    }
    Ok(())
}

/// The package's `_do_normalize_labels`: $(y - \min) / (\max - \min)$, all zeros when the labels are constant.
pub(crate) fn min_max(y: &[f64]) -> Vec<f64> {
    let lo = y.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = y.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if hi == lo {
        return vec![0.0; y.len()];
    }
    y.iter().map(|v| (v - lo) / (hi - lo)).collect()
}

/// Fractions of a turn in `[0, 1)` from hue degrees: `(deg mod 360) / 360` (the notebook's `hue_norm`).
pub fn hue_turns(hue_deg: &[f64]) -> Vec<f64> {
    hue_deg.iter().map(|d| d.rem_euclid(360.0) / 360.0).collect()
}

/// The notebook's 3-D template `[n, 3]`: $(\cos\theta, \sin\theta, 0)$ with $\theta = \pi h$ for a Semicircular
/// winner and $2\pi h$ otherwise, $h = (\text{deg} \bmod 360) / 360$.
pub fn circle_template_3d(hue_deg: &[f64], shape: Shape) -> Array2<f64> {
    let scale = if shape == Shape::Semicircular { PI } else { 2.0 * PI };
    let h = hue_turns(hue_deg);
    Array2::from_shape_fn((h.len(), 3), |(i, c)| match c {
        0 => (scale * h[i]).cos(),
        1 => (scale * h[i]).sin(),
        _ => 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_reproduce_the_package_distance_formulas() {
        let t: Vec<f64> = (0..17).map(|i| (i as f64 * 0.37).fract()).collect();
        for shape in Shape::ALL {
            let Some(p) = shape.coordinates(&t) else { continue };
            let d = shape.distances(&t, LabelMode::Periodic).unwrap();
            for i in 0..t.len() {
                for j in 0..t.len() {
                    let e: f64 = (0..p.ncols()).map(|c| (p[[i, c]] - p[[j, c]]).powi(2)).sum::<f64>().sqrt();
                    assert!((e - d[[i, j]]).abs() < 1e-12, "{shape} {i} {j}: {e} vs {}", d[[i, j]]);
                }
            }
        }
    }

    #[test]
    fn compat_min_max_puts_first_and_last_hue_on_one_point() {
        let hue: Vec<f64> = (0..60).map(|i| i as f64 * 6.0).collect();
        let t = hue_turns(&hue);
        let compat = Shape::Circular.distances(&t, LabelMode::Compat).unwrap();
        let periodic = Shape::Circular.distances(&t, LabelMode::Periodic).unwrap();
        assert!(compat[[0, 59]].abs() < 1e-12);
        assert!((periodic[[0, 59]] - 2.0 * (PI / 60.0).sin()).abs() < 1e-12);
    }

    #[test]
    fn shape_names_parse_both_spellings() {
        assert_eq!("CircularShape".parse::<Shape>().unwrap(), Shape::Circular);
        assert_eq!("discrete_circular".parse::<Shape>().unwrap(), Shape::DiscreteCircular);
        assert!("torus".parse::<Shape>().is_err());
    }

    #[test]
    fn log_linear_rejects_negative_labels() {
        assert!(matches!(
            Shape::LogLinear.distances(&[0.0, -1.0], LabelMode::Compat),
            Err(Error::NegativeLabel { .. })
        ));
    }
}
