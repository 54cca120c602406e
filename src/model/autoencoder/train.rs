//! Training data and training loop of the seed-003 colour autoencoder.
//!
//! Data as the seed notebook (`ColorCube.from_hsv(h=all_hues[~isbetween_cyclic(all_hues, teal, blue)],
//! s=[1], v=[0.9, 1])`): every hue on a 1° grid except a held-out slice, at full saturation and two values,
//! converted HSV → RGB exactly as `skimage.color.hsv2rgb`, ordered hue-major (then saturation, then value)
//! like the seed's `rgb_grid.reshape(-1, 3)`. Optimisation as the seed: Adam (lr 1e-3, betas 0.9/0.999,
//! eps 1e-8, no weight decay), MSE against the input, full batch, 500 epochs.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Config, LAYERS};
use crate::colour::{hsv_to_rgb, Hsv};
use crate::model::Error;

/// Teal in degrees, from the seed's `ex_color` library (z0u/ex-preppy, `src/ex_color/data/color.py`,
/// `class hues: teal = 150 / 360`). Its `cyan` is 180°.
pub const TEAL_HUE_DEG: f64 = 150.0;
/// Blue in degrees, same source (`blue = 240 / 360`).
pub const BLUE_HUE_DEG: f64 = 240.0;

/// A cyclic slice of hues `[from_deg, to_deg]`, both ends included, going up from `from_deg` (so
/// `{from: 330, to: 30}` is the 61° around red). Same semantics as the seed's `isbetween_cyclic`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HueRange {
    pub from_deg: f64,
    pub to_deg: f64,
}

impl HueRange {
    /// The seed's held-out slice, teal (150°) to blue (240°): 91 hues on the 1° grid.
    pub const TEAL_BLUE: HueRange = HueRange { from_deg: TEAL_HUE_DEG, to_deg: BLUE_HUE_DEG };

    /// Whether `hue_deg` lies in the slice (cyclic, ends included with the seed's tolerance of 1e-8 turns).
    pub fn contains(&self, hue_deg: f64) -> bool {
        let tol = 1e-8 * 360.0;
        let (a, lo, hi) = (hue_deg.rem_euclid(360.0), self.from_deg.rem_euclid(360.0), self.to_deg.rem_euclid(360.0));
        if lo <= hi {
            a >= lo - tol && a <= hi + tol
        } else {
            !(a > hi && a < lo)
        }
    }
}

/// Everything that determines a trained autoencoder: architecture, data, optimiser and seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct TrainConfig {
    pub model: Config,
    /// Seeds the weight initialisation (ChaCha8); training itself is deterministic full-batch.
    pub seed: u64,
    pub epochs: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Hue grid spacing; the grid starts at 0° (the seed's `arange_cyclic(step_size=1/360)`).
    pub hue_step_deg: f64,
    /// Hue slices left out of training, so the bottleneck has to leave (or not) a gap there; empty = none.
    pub held_out: Vec<HueRange>,
    pub saturations: Vec<f64>,
    pub values: Vec<f64>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            model: Config::default(),
            seed: 0,
            epochs: 500,
            lr: 1e-3,
            hue_step_deg: 1.0,
            held_out: vec![HueRange::TEAL_BLUE],
            saturations: vec![1.0],
            values: vec![0.9, 1.0],
        }
    }
}

fn bad(field: &'static str, msg: impl Into<String>) -> Error {
    Error::TrainOption { field, msg: msg.into() }
}

impl TrainConfig {
    /// Checks every option and that some training colours remain.
    pub fn check(&self) -> Result<(), Error> {
        self.model.check()?;
        if self.epochs == 0 {
            return Err(bad("epochs", "expected at least 1 epoch"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(bad("lr", format!("expected a positive learning rate, got {}", self.lr)));
        }
        if !(self.hue_step_deg.is_finite() && self.hue_step_deg > 0.0 && self.hue_step_deg <= 360.0) {
            return Err(bad("hue-step-deg", format!("expected a step in (0, 360] degrees, got {}", self.hue_step_deg)));
        }
        for r in &self.held_out {
            if !(r.from_deg.is_finite() && r.to_deg.is_finite()) {
                return Err(bad("held-out", "expected finite hue bounds in degrees"));
            }
        }
        for (field, xs) in [("saturations", &self.saturations), ("values", &self.values)] {
            if xs.is_empty() || xs.iter().any(|x| !(0.0..=1.0).contains(x)) {
                return Err(bad(field, format!("expected a non-empty list of numbers in [0, 1], got {xs:?}")));
            }
        }
        if self.hues_deg().is_empty() {
            return Err(bad("held-out", "the held-out slices remove every training hue; make them narrower"));
        }
        Ok(())
    }

    /// The training hues in degrees, ascending.
    pub fn hues_deg(&self) -> Vec<f64> {
        let n = (360.0 / self.hue_step_deg).ceil() as usize;
        (0..n)
            .map(|k| k as f64 * self.hue_step_deg)
            .filter(|&h| h < 360.0 && !self.held_out.iter().any(|r| r.contains(h)))
            .collect()
    }

    /// The training colours, hue-major then saturation then value, as the seed's `rgb_grid.reshape(-1, 3)`.
    pub fn training_set(&self) -> TrainingSet {
        let mut set = TrainingSet::default();
        for h in self.hues_deg() {
            for &s in &self.saturations {
                for &v in &self.values {
                    let rgb = hsv_to_rgb(Hsv { hue_deg: h, s, v });
                    set.rgb.push(rgb.map(|c| c as f32));
                    set.hue_deg.push(h);
                    set.value.push(v);
                }
            }
        }
        set
    }
}

/// Training colours with the HSV coordinates they were made from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainingSet {
    pub rgb: Vec<[f32; 3]>,
    pub hue_deg: Vec<f64>,
    pub value: Vec<f64>,
}

impl TrainingSet {
    /// Returns `[n, 3]` f32.
    pub fn tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        let flat: Vec<f32> = self.rgb.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (self.rgb.len(), 3), device)
    }
}

/// Loss curve of one training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Full-batch MSE at each epoch, before that epoch's update (what the seed's progress bar shows).
    pub losses: Vec<f32>,
    /// Full-batch MSE of the trained weights.
    pub final_loss: f32,
}

/// Fresh weights as PyTorch's `nn.Linear` default: weight and bias both `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`
/// (kaiming_uniform with `a = sqrt(5)` reduces to that). Drawn from ChaCha8 seeded by `seed`, layer by layer
/// in [`LAYERS`] order, weight (row-major `[out, in]`) before bias, so the result depends on nothing else.
pub(super) fn init_varmap(cfg: &Config, seed: u64, device: &Device) -> candle_core::Result<VarMap> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().expect("a fresh VarMap is not shared");
        for (name, (d_in, d_out)) in LAYERS.iter().zip(cfg.layer_dims()) {
            let bound = 1.0 / (d_in as f32).sqrt();
            let w: Vec<f32> = (0..d_out * d_in).map(|_| rng.random_range(-bound..bound)).collect();
            let b: Vec<f32> = (0..d_out).map(|_| rng.random_range(-bound..bound)).collect();
            let w = Var::from_tensor(&Tensor::from_vec(w, (d_out, d_in), device)?)?;
            let b = Var::from_tensor(&Tensor::from_vec(b, d_out, device)?)?;
            data.insert(format!("{name}.weight"), w);
            data.insert(format!("{name}.bias"), b);
        }
    }
    Ok(varmap)
}

/// Trains `net` (whose weights live in `varmap`) on `data` (`[n, 3]`) for `cfg.epochs` full-batch Adam steps.
/// `on_epoch(epoch, loss)` is called after every step.
pub(super) fn fit(
    net: &super::ColorMlp,
    varmap: &VarMap,
    data: &Tensor,
    cfg: &TrainConfig,
    on_epoch: &mut dyn FnMut(usize, f32),
) -> candle_core::Result<TrainReport> {
    // Adam = AdamW without decay; candle's update is PyTorch's (eps added to sqrt of the corrected v).
    let params = ParamsAdamW { lr: cfg.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
    // Sorted, so the optimiser's bookkeeping order does not depend on HashMap iteration.
    let mut vars: Vec<(String, Var)> = varmap.data().lock().expect("VarMap lock").clone().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = AdamW::new(vars.into_iter().map(|(_, v)| v).collect(), params)?;
    let mut losses = Vec::with_capacity(cfg.epochs);
    for epoch in 0..cfg.epochs {
        let out = net.forward_plain(data)?;
        let loss = candle_nn::loss::mse(&out, data)?;
        opt.backward_step(&loss)?;
        let loss = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        losses.push(loss);
        on_epoch(epoch, loss);
    }
    let final_loss = candle_nn::loss::mse(&net.forward_plain(data)?, data)?.to_scalar::<f32>()?;
    Ok(TrainReport { losses, final_loss })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_data_has_538_colours_like_the_notebook() {
        let set = TrainConfig::default().training_set();
        // The seed prints `Bottleneck shape: (538, 2)`: 269 hues outside [150°, 240°] × 2 values.
        assert_eq!(set.rgb.len(), 538);
        assert_eq!(set.rgb[0], [0.9, 0.0, 0.0]);
        assert_eq!(set.rgb[1], [1.0, 0.0, 0.0]);
        // `tensor([0.9000, 0.0150, 0.0000])` in the seed: hue 1°, value 0.9.
        assert!((set.rgb[2][1] - 0.015).abs() < 1e-6 && set.rgb[2][0] == 0.9);
        assert!(!set.hue_deg.iter().any(|&h| (150.0..=240.0).contains(&h)));
        assert!(set.hue_deg.contains(&149.0) && set.hue_deg.contains(&241.0));
    }

    #[test]
    fn reads_a_kebab_case_toml_table_with_defaults() {
        let cfg: TrainConfig = toml::from_str(
            "seed = 3\nepochs = 200\nheld-out = [{ from-deg = 330, to-deg = 30 }]\n[model]\nnormalize-bottleneck = false\n",
        )
        .unwrap();
        assert_eq!((cfg.seed, cfg.epochs, cfg.lr), (3, 200, 1e-3));
        assert_eq!(cfg.held_out, vec![HueRange { from_deg: 330.0, to_deg: 30.0 }]);
        assert!(!cfg.model.normalize_bottleneck && cfg.model.d_hidden == 16);
        assert_eq!(toml::from_str::<TrainConfig>("held-out = []").unwrap().hues_deg().len(), 360);
        assert_eq!(toml::from_str::<TrainConfig>("").unwrap(), TrainConfig::default());
        let err = toml::from_str::<TrainConfig>("epoch = 3").unwrap_err().to_string();
        assert!(err.contains("unknown field `epoch`"), "{err}");
    }

    #[test]
    fn hue_range_wraps_around_red() {
        let r = HueRange { from_deg: 330.0, to_deg: 30.0 };
        assert!(r.contains(0.0) && r.contains(330.0) && r.contains(30.0) && r.contains(-10.0));
        assert!(!r.contains(31.0) && !r.contains(329.0));
        assert!(HueRange::TEAL_BLUE.contains(150.0) && !HueRange::TEAL_BLUE.contains(149.0));
    }

    #[test]
    fn bad_options_are_rejected_with_the_field_name() {
        let mut cfg = TrainConfig { epochs: 0, ..TrainConfig::default() };
        assert!(cfg.check().unwrap_err().to_string().contains("`epochs`"));
        cfg = TrainConfig { values: vec![1.5], ..TrainConfig::default() };
        assert!(cfg.check().unwrap_err().to_string().contains("`values`"));
        cfg = TrainConfig { held_out: vec![HueRange { from_deg: 0.0, to_deg: 359.5 }], ..TrainConfig::default() };
        assert!(cfg.check().unwrap_err().to_string().contains("remove every training hue"));
        cfg = TrainConfig { lr: -1.0, ..TrainConfig::default() };
        assert!(cfg.check().unwrap_err().to_string().contains("`lr`"));
    }

    #[test]
    fn init_is_pytorch_uniform_and_seeded() {
        let dev = Device::Cpu;
        let cfg = Config::default();
        let a = init_varmap(&cfg, 7, &dev).unwrap();
        let b = init_varmap(&cfg, 7, &dev).unwrap();
        let c = init_varmap(&cfg, 8, &dev).unwrap();
        let get = |m: &VarMap, k: &str| {
            m.data().lock().unwrap()[k].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        assert_eq!(get(&a, "decoder.2.weight"), get(&b, "decoder.2.weight"));
        assert_ne!(get(&a, "decoder.2.weight"), get(&c, "decoder.2.weight"));
        // encoder.0 has fan_in 3: bound 1/sqrt(3) ≈ 0.577; decoder.2 fan_in 16: bound 0.25.
        assert!(get(&a, "encoder.0.weight").iter().all(|w| w.abs() < 0.5774));
        let w = get(&a, "decoder.2.weight");
        assert!(w.iter().all(|w| w.abs() < 0.25) && w.iter().any(|w| w.abs() > 0.15));
    }
}
