//! What a steered forward pass is read out as.
//!
//! - [`HueProbe`]: a ridge probe fitted on *clean* activations of one layer, to $(\cos h, \sin h)$ of the hue;
//!   the decoded hue is $\operatorname{atan2}(\hat s, \hat c)$. Fitted in the dual form
//!   $W = X_c^\top (X_c X_c^\top + \lambda I)^{-1} Y_c$, $\lambda = \rho \operatorname{tr}(X_c X_c^\top) / n$, so it
//!   costs an $n \times n$ solve whatever `d_model` is.
//! - [`ColourWords`]: next-token probabilities of colour words from `Captures.logits` (`[batch, d_vocab]`),
//!   given their token ids (the Qwen runner provides them from its tokenizer, see `Model::token_ids`).
//! - [`output_hues`]: the hue of an RGB output capture (the colour autoencoder's `output`).
//! - Generated text comes from `Model::generate`.

use candle_core::{DType, Tensor};
use faer::{Mat, Side};
use ndarray::{Array1, Array2, ArrayView2, Axis};

use super::Error;
use crate::colour::{circular_mean_hue_deg, signed_hue_delta_deg};
use crate::model::{Captures, HookPoint};

/// Default relative ridge of the probes: small enough to fit, large enough that `n < d` is well-posed.
pub const PROBE_RIDGE: f64 = 1e-2;

/// A linear hue probe for one layer.
#[derive(Debug, Clone)]
pub struct HueProbe {
    pub layer_index: usize,
    pub point: HookPoint,
    x_mean: Array1<f64>,
    /// `[d_model, 2]`: columns predict cos and sin.
    w: Array2<f64>,
    y_mean: [f64; 2],
    /// Mean absolute circular error (degrees) on the clean training activations.
    pub train_error_deg: f64,
}

impl HueProbe {
    /// Fits the probe on `x` `[n, d_model]` with hue labels; `ridge` is the relative penalty $\rho$.
    pub fn fit(
        layer_index: usize,
        point: HookPoint,
        x: ArrayView2<f32>,
        hues: &[f64],
        ridge: f64,
    ) -> crate::steer::Result<Self> {
        let n = x.nrows();
        if hues.len() != n {
            return Err(Error::Width { what: "hue labels".into(), expected: n, got: hues.len() });
        }
        if n < 3 {
            return Err(Error::Layer { index: layer_index, msg: format!("{n} samples; a hue probe needs at least 3") });
        }
        let xf = x.mapv(f64::from);
        let x_mean = xf.mean_axis(Axis(0)).expect("n > 0");
        let xc = &xf - &x_mean;
        let y = Array2::from_shape_fn((n, 2), |(i, c)| {
            let r = hues[i].to_radians();
            if c == 0 {
                r.cos()
            } else {
                r.sin()
            }
        });
        let y_mean = [y.column(0).mean().unwrap_or(0.0), y.column(1).mean().unwrap_or(0.0)];
        let k = xc.dot(&xc.t());
        let trace: f64 = k.diag().sum();
        if !(trace.is_finite() && trace > 0.0) {
            return Err(Error::Layer { index: layer_index, msg: "activations are constant; nothing to probe".into() });
        }
        let lambda = ridge * trace / n as f64;
        let reg = Mat::<f64>::from_fn(n, n, |i, j| k[[i, j]] + if i == j { lambda } else { 0.0 });
        let rhs = Mat::<f64>::from_fn(n, 2, |i, c| y[[i, c]] - y_mean[c]);
        let llt = reg
            .llt(Side::Lower)
            .map_err(|e| Error::Layer { index: layer_index, msg: format!("probe fit failed ({e:?})") })?;
        let a = {
            use faer::linalg::solvers::Solve;
            llt.solve(&rhs)
        };
        let a = Array2::from_shape_fn((n, 2), |(i, c)| a[(i, c)]);
        let w = xc.t().dot(&a);
        let mut probe = HueProbe { layer_index, point, x_mean, w, y_mean, train_error_deg: 0.0 };
        let decoded = probe.decode(x)?;
        probe.train_error_deg =
            decoded.iter().zip(hues).map(|(d, h)| signed_hue_delta_deg(*h, *d).abs()).sum::<f64>() / n as f64;
        Ok(probe)
    }

    pub fn d_model(&self) -> usize {
        self.w.nrows()
    }

    /// Decoded hues (degrees, `[0, 360)`) of `x` `[m, d_model]`.
    pub fn decode(&self, x: ArrayView2<f32>) -> Result<Vec<f64>, Error> {
        if x.ncols() != self.d_model() {
            return Err(Error::Width {
                what: format!("activations at `{}`", self.point),
                expected: self.d_model(),
                got: x.ncols(),
            });
        }
        let xc = x.mapv(f64::from) - &self.x_mean;
        let y = xc.dot(&self.w);
        Ok(y.rows()
            .into_iter()
            .map(|r| (r[1] + self.y_mean[1]).atan2(r[0] + self.y_mean[0]).to_degrees().rem_euclid(360.0))
            .collect())
    }
}

/// Colour words with a hue each, the vocabulary huescan scores by default.
pub const DEFAULT_COLOUR_WORDS: [(&str, f64); 9] = [
    ("red", 0.0),
    ("orange", 30.0),
    ("yellow", 60.0),
    ("green", 120.0),
    ("cyan", 180.0),
    ("blue", 240.0),
    ("purple", 275.0),
    ("magenta", 300.0),
    ("pink", 330.0),
];

/// Colour words and their token ids. A word may have several ids (` red`, `Red`, …); its probability is the sum.
#[derive(Debug, Clone, PartialEq)]
pub struct ColourWords {
    pub words: Vec<String>,
    pub token_ids: Vec<Vec<u32>>,
}

impl ColourWords {
    pub fn new(words: Vec<String>, token_ids: Vec<Vec<u32>>) -> Result<Self, Error> {
        if words.len() != token_ids.len() {
            return Err(Error::Msg(format!(
                "{} colour words but {} token-id lists; give one list per word",
                words.len(),
                token_ids.len()
            )));
        }
        if let Some(w) = words.iter().zip(&token_ids).find(|(_, ids)| ids.is_empty()).map(|(w, _)| w) {
            return Err(Error::Msg(format!("colour word `{w}` has no token ids")));
        }
        Ok(ColourWords { words, token_ids })
    }

    /// The hue of word `i` from [`DEFAULT_COLOUR_WORDS`], if it is one of them.
    pub fn hue_deg(&self, i: usize) -> Option<f64> {
        let w = self.words.get(i)?.trim().to_lowercase();
        DEFAULT_COLOUR_WORDS.iter().find(|(name, _)| *name == w).map(|(_, h)| *h)
    }

    /// The word whose hue is nearest `hue_deg` (the answer that steering towards that hue should produce).
    pub fn word_for_hue(&self, hue_deg: f64) -> Option<usize> {
        (0..self.words.len())
            .filter_map(|i| self.hue_deg(i).map(|h| (i, signed_hue_delta_deg(h, hue_deg).abs())))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
    }

    /// Next-token probability of every word, `[batch][word]`, from `logits` `[batch, d_vocab]` (softmax over
    /// the whole vocabulary, in f64).
    pub fn probabilities(&self, logits: &Tensor) -> crate::steer::Result<Vec<Vec<f64>>> {
        let rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let vocab = row.len();
            if let Some(&bad) = self.token_ids.iter().flatten().find(|&&id| id as usize >= vocab) {
                return Err(Error::Msg(format!("colour-word token id {bad} is past the vocabulary ({vocab} logits)")));
            }
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let log_z = max + row.iter().map(|l| (*l as f64 - max).exp()).sum::<f64>().ln();
            out.push(
                self.token_ids
                    .iter()
                    .map(|ids| ids.iter().map(|&id| (row[id as usize] as f64 - log_z).exp()).sum())
                    .collect(),
            );
        }
        Ok(out)
    }
}

/// The hue (degrees) of each row of an RGB capture `[batch, 3]` at `point`; `None` for a grey row.
pub fn output_hues(captures: &Captures, point: &HookPoint) -> crate::steer::Result<Vec<Option<f64>>> {
    let t =
        captures.layers.get(point).ok_or_else(|| Error::Msg(format!("the RGB output `{point}` was not captured")))?;
    let rows = t.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    rows.iter()
        .map(|r| match r.as_slice() {
            [r, g, b] => Ok(crate::model::autoencoder::rgb_to_hue_deg([*r, *g, *b])),
            _ => Err(Error::Width { what: format!("RGB output `{point}`"), expected: 3, got: r.len() }),
        })
        .collect()
}

/// Circular mean of the `Some` hues.
pub(crate) fn mean_hue(hues: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    circular_mean_hue_deg(hues.into_iter().flatten())
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn probe_decodes_a_linear_hue_code() {
        let hues: Vec<f64> = (0..24).map(|i| i as f64 * 15.0).collect();
        let x = Array2::from_shape_fn((24, 6), |(i, j)| {
            let t = hues[i].to_radians();
            match j {
                0 => (2.0 * t.cos() + 1.0) as f32,
                3 => (-1.5 * t.sin()) as f32,
                _ => ((i * 7 + j * 3) % 5) as f32 * 0.01,
            }
        });
        let p = HueProbe::fit(2, HookPoint::ResidPost(1), x.view(), &hues, 1e-6).unwrap();
        assert!(p.train_error_deg < 1.0, "{}", p.train_error_deg);
        assert!(p.decode(x.slice(ndarray::s![.., ..5])).is_err(), "width mismatch is an error");
    }

    #[test]
    fn colour_word_probabilities_are_a_softmax() {
        let words = ColourWords::new(vec!["red".into(), "blue".into()], vec![vec![0, 2], vec![1]]).unwrap();
        let logits = Tensor::new(&[[1.0f32, 2.0, 0.5, -1.0]], &Device::Cpu).unwrap();
        let p = words.probabilities(&logits).unwrap();
        let e: Vec<f64> = [1.0f64, 2.0, 0.5, -1.0].iter().map(|v| v.exp()).collect();
        let z: f64 = e.iter().sum();
        assert!((p[0][0] - (e[0] + e[2]) / z).abs() < 1e-9);
        assert!((p[0][1] - e[1] / z).abs() < 1e-9);
        assert_eq!(words.word_for_hue(10.0), Some(0));
        assert_eq!(words.word_for_hue(200.0), Some(1));
        let bad = ColourWords::new(vec!["red".into()], vec![vec![9]]).unwrap();
        assert!(bad.probabilities(&logits).is_err());
        assert!(ColourWords::new(vec!["red".into()], vec![]).is_err());
    }
}
