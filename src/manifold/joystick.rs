//! The notebook's decoder-only "neural joystick" (sections 9-10), kept as a baseline for in-model steering: a
//! linear regression from activations to the stimulus RGB, then $x = x_{src} + \alpha (x_{tgt} - x_{src})$ is
//! decoded (not run through the model) and its hue compared with the target. It shows what a linear readout
//! does with interpolated vectors; it is not evidence that the model uses the direction.

use crate::colour::{self, hsv_to_rgb, signed_hue_delta_deg, Hsv};
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use super::gram::{ridge_solve, to_faer, LayerGram};
use super::{Error, Result};

/// A steering pair: source hue, target hue, label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteeringPair {
    pub source_deg: f64,
    pub target_deg: f64,
    pub label: String,
}

/// Joystick settings; defaults are the notebook's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoystickOptions {
    /// Default: Blue→Red (240→0), Red→Green (0→120), Green→Blue (120→240).
    pub pairs: Vec<SteeringPair>,
    /// Default: -0.25, 0, 0.25, 0.5, 0.75, 1, 1.25.
    pub alphas: Vec<f64>,
    /// The single Blue→Red panel's alpha (0.85).
    pub main_alpha: f64,
}

impl Default for JoystickOptions {
    fn default() -> Self {
        let pair = |&(s, t, l): &(f64, f64, &str)| SteeringPair { source_deg: s, target_deg: t, label: l.to_string() };
        JoystickOptions {
            pairs: crate::settings::PAIRS.iter().map(pair).collect(),
            alphas: crate::settings::ALPHAS.to_vec(),
            main_alpha: 0.85,
        }
    }
}

/// One decoded steering step (a row of the notebook's `expanded_df`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoystickRow {
    pub pair: String,
    pub source_deg: f64,
    pub target_deg: f64,
    pub alpha: f64,
    pub decoded_hue: f64,
    pub target_error_deg: f64,
}

/// The joystick's result: decoder fit quality, the Blue→Red panel, and the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Joystick {
    pub decoder_mse: f64,
    pub decoder_r2: f64,
    pub decoded_blue_hue: f64,
    pub decoded_steered_hue: f64,
    pub decoded_red_hue: f64,
    pub main_alpha: f64,
    pub rows: Vec<JoystickRow>,
}

/// The notebook's `rgb_to_hue_deg`: clip to `[0, 1]`, Python `colorsys.rgb_to_hsv` hue, in degrees `[0, 360)`
/// (0 for greys, as colorsys).
pub fn rgb_to_hue_deg(rgb: [f64; 3]) -> f64 {
    colour::rgb_to_hsv(rgb.map(|c| c.clamp(0.0, 1.0))).hue_deg
}

/// Rows nearest in circular hue to `target` (all ties), as `mean_vector_at_angle` selects them.
fn rows_at_angle(hue_deg: &[f64], target: f64) -> Vec<usize> {
    let delta: Vec<f64> = hue_deg.iter().map(|h| signed_hue_delta_deg(target, *h).abs()).collect();
    let min = delta.iter().cloned().fold(f64::INFINITY, f64::min);
    (0..hue_deg.len()).filter(|&i| delta[i] == min).collect()
}

/// Runs the joystick on activations `x` `[n, d_model]` with their hues.
pub fn joystick<T: Copy + Into<f64>>(x: ArrayView2<T>, hue_deg: &[f64], opts: &JoystickOptions) -> Result<Joystick> {
    if hue_deg.len() != x.nrows() {
        return Err(Error::LabelCount { labels: hue_deg.len(), samples: x.nrows() });
    }
    let gram = LayerGram::new(x, "joystick activations")?;
    joystick_from_gram(&gram, hue_deg, opts)
}

/// The joystick from a layer's Gram matrix. sklearn `LinearRegression` is the minimum-norm least-squares fit
/// with intercept; its prediction at any row is $K_c K_c^+ (R - \bar r) + \bar r$ (rank cut on the eigenvalues of
/// $K_c$, see `gram::ridge_solve`), and a decoder that is affine decodes $x_s + \alpha (x_t - x_s)$ as
/// $\hat r_s + \alpha (\hat r_t - \hat r_s)$, so no activation vector is needed.
pub(crate) fn joystick_from_gram(gram: &LayerGram, hue_deg: &[f64], opts: &JoystickOptions) -> Result<Joystick> {
    let n = gram.n();
    if n < 2 {
        return Err(Error::TooFewSamples { got: n, min: 2 });
    }
    // The notebook calls `colorsys.hsv_to_rgb(h / 360, 1, 1)`; the degrees-in form gives the same bits.
    let rgb: Vec<[f64; 3]> =
        hue_deg.iter().map(|h| hsv_to_rgb(Hsv { hue_deg: h.rem_euclid(360.0), s: 1.0, v: 1.0 })).collect();
    let mean: [f64; 3] = std::array::from_fn(|c| rgb.iter().map(|v| v[c]).sum::<f64>() / n as f64);
    let rc = Array2::from_shape_fn((n, 3), |(i, c)| rgb[i][c] - mean[c]);
    let all: Vec<usize> = (0..n).collect();
    let kc = gram.centred(&all, &all);
    let a = ridge_solve(&kc, &to_faer(rc.view()), 0.0)?;
    let fitted = &kc * &a;
    let pred: Vec<[f64; 3]> = (0..n).map(|i| std::array::from_fn(|c| fitted[(i, c)] + mean[c])).collect();

    let clip = |v: [f64; 3]| v.map(|c| c.clamp(0.0, 1.0));
    let recon: Vec<[f64; 3]> = pred.iter().map(|p| clip(*p)).collect();
    let mse =
        (0..n).flat_map(|i| (0..3).map(move |c| (i, c))).map(|(i, c)| (rgb[i][c] - recon[i][c]).powi(2)).sum::<f64>()
            / (3 * n) as f64;
    let r2 = (0..3)
        .map(|c| {
            let ss_res: f64 = (0..n).map(|i| (rgb[i][c] - recon[i][c]).powi(2)).sum();
            let ss_tot: f64 = (0..n).map(|i| (rgb[i][c] - mean[c]).powi(2)).sum();
            if ss_tot == 0.0 {
                if ss_res == 0.0 {
                    1.0
                } else {
                    0.0
                }
            } else {
                1.0 - ss_res / ss_tot
            }
        })
        .sum::<f64>()
        / 3.0;
    let decode_at = |target: f64| -> [f64; 3] {
        let idx = rows_at_angle(hue_deg, target);
        std::array::from_fn(|c| idx.iter().map(|&i| pred[i][c]).sum::<f64>() / idx.len() as f64)
    };
    let steer = |src: [f64; 3], tgt: [f64; 3], alpha: f64| -> [f64; 3] {
        std::array::from_fn(|c| src[c] + alpha * (tgt[c] - src[c]))
    };
    let (blue, red) = (decode_at(240.0), decode_at(0.0));
    let mut rows = Vec::new();
    for pair in &opts.pairs {
        let (src, tgt) = (decode_at(pair.source_deg), decode_at(pair.target_deg));
        for &alpha in &opts.alphas {
            let hue = rgb_to_hue_deg(clip(steer(src, tgt, alpha)));
            rows.push(JoystickRow {
                pair: pair.label.clone(),
                source_deg: pair.source_deg,
                target_deg: pair.target_deg,
                alpha,
                decoded_hue: hue,
                target_error_deg: signed_hue_delta_deg(pair.target_deg, hue),
            });
        }
    }
    Ok(Joystick {
        decoder_mse: mse,
        decoder_r2: r2,
        decoded_blue_hue: rgb_to_hue_deg(clip(blue)),
        decoded_steered_hue: rgb_to_hue_deg(clip(steer(blue, red, opts.main_alpha))),
        decoded_red_hue: rgb_to_hue_deg(clip(red)),
        main_alpha: opts.main_alpha,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colorsys_round_trip_and_known_values() {
        let full = |hue_deg: f64| hsv_to_rgb(Hsv { hue_deg, s: 1.0, v: 1.0 });
        assert_eq!(full(240.0), [0.0, 0.0, 1.0]);
        for deg in [0.0, 17.0, 120.0, 200.5, 359.0] {
            assert!((rgb_to_hue_deg(full(deg)) - deg).abs() < 1e-9, "{deg}");
        }
        // The notebook's `circular_hue_error(350, 10)` is -20: the prediction lies 20 degrees clockwise.
        assert_eq!(signed_hue_delta_deg(10.0, 350.0), -20.0);
    }

    #[test]
    fn interpolating_decoder_reproduces_the_notebook_blue_to_red_panel() {
        // Activations that are an invertible function of RGB plus extra dims: the decoder interpolates exactly,
        // so blue→red at 0.85 decodes to the notebook's 349.41 degrees.
        let hue: Vec<f64> = (0..60).map(|i| i as f64 * 6.0).collect();
        let x = Array2::from_shape_fn((60, 8), |(i, j)| {
            let rgb = hsv_to_rgb(Hsv { hue_deg: hue[i], s: 1.0, v: 1.0 });
            if j < 3 {
                rgb[j]
            } else {
                ((i * 13 + j * 7) % 11) as f64 * 0.01
            }
        });
        let js = joystick(x.view(), &hue, &JoystickOptions::default()).unwrap();
        assert!(js.decoder_r2 > 0.999999);
        assert!((js.decoded_blue_hue - 240.0).abs() < 1e-6);
        assert!((js.decoded_steered_hue - 349.411765).abs() < 1e-5, "{}", js.decoded_steered_hue);
        assert_eq!(js.rows.len(), 21);
    }
}
