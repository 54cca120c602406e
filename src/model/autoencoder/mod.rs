//! The colour autoencoder of seed 003 (`ColorMLP`), huescan's known-answer model: RGB → 16 → 2 → 16 → RGB,
//! whose 2-D bottleneck becomes a colour wheel with a gap where the teal-blue slice was held out.
//!
//! ```text
//! input [3] ─ encoder.0 Linear(3,16) ─ ReLU ─▶ encoder.hidden [16] ─ encoder.2 Linear(16,2)
//!   ─ (optional z / (|z| + eps)) ─▶ bottleneck [2] ─ decoder.0 Linear(2,16) ─ ReLU ─▶ decoder.hidden [16]
//!   ─ decoder.2 Linear(16,3) ─ Sigmoid ─▶ output [3]
//! ```
//!
//! Weight names are the seed's PyTorch `state_dict` keys (`encoder.0.weight`, ..., `decoder.2.bias`). Each
//! sample is a one-position sequence for the hooks (`[batch, 1, d]`), so every [`Positions`] selects
//! position 0 and an intervention at `bottleneck` changes everything the decoder computes after it.
//!
//! Input of an image ([`image_input_rgb`]): the mean sRGB colour (bytes / 255, the same space as the
//! training data) of its *chromatic* pixels, those with HSV saturation ≥ [`CHROMA_MIN_SATURATION`] and value
//! ≥ [`CHROMA_MIN_VALUE`]; for a flat image that is its colour. For textured stimuli this ignores grey
//! backgrounds and dark texture, and averages the hue-bearing pixels; if no pixel is chromatic (a grey
//! image), the mean of all pixels is used. The model runs on the CPU in f32: it is tiny.
//!
//! Training is deterministic from [`TrainConfig::seed`] (weights bit-identical run to run, whatever the
//! thread count) and matches a float64 reference of the seed's maths (`scripts/autoencoder_reference.py`).
//!
//! ```
//! use huescan::model::autoencoder::{self as ae, Autoencoder, TrainConfig};
//! use huescan::model::{HookSet, Intervention, InterventionOp, Positions};
//!
//! let cfg = TrainConfig { epochs: 50, ..TrainConfig::default() }; // the default is 500, as the seed
//! let model = Autoencoder::train_or_load(None, &cfg, None)?;
//! // Push red along the bottleneck and read the hue of what the decoder makes of it.
//! let steer = HookSet {
//!     capture: vec![],
//!     interventions: vec![Intervention {
//!         point: ae::point(ae::BOTTLENECK),
//!         positions: Positions::All,
//!         sample: None,
//!         op: InterventionOp::Add { vector: vec![0.0, 0.5], alpha: 1.0 },
//!     }],
//!     stop_early: false,
//! };
//! let hues = model.decode_hues(&[[1.0, 0.0, 0.0]], &steer)?;
//! assert_eq!(hues.len(), 1);
//! # Ok::<(), huescan::Error>(())
//! ```

mod io;
mod train;

#[cfg(test)]
mod tests;

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder, VarMap};
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::{Captures, Error, HookPoint, HookSet, Model, Pooling, Positions};
use crate::colour;
pub use train::{HueRange, TrainConfig, TrainReport, TrainingSet, BLUE_HUE_DEG, TEAL_HUE_DEG};

/// The linear layers, in forward order, named as the seed's `state_dict`.
pub const LAYERS: [&str; 4] = ["encoder.0", "encoder.2", "decoder.0", "decoder.2"];

/// Hook point names, in forward order (their position is the layer index in an activation store).
pub const POINTS: [&str; 5] = [INPUT, ENCODER_HIDDEN, BOTTLENECK, DECODER_HIDDEN, OUTPUT];
pub const INPUT: &str = "input";
/// After the encoder's ReLU.
pub const ENCODER_HIDDEN: &str = "encoder.hidden";
/// After the optional unit normalisation: what the decoder reads.
pub const BOTTLENECK: &str = "bottleneck";
/// After the decoder's ReLU.
pub const DECODER_HIDDEN: &str = "decoder.hidden";
/// After the sigmoid: the reconstructed RGB.
pub const OUTPUT: &str = "output";

/// Pixels with HSV saturation at least this count as chromatic for [`image_input_rgb`]: the one chromatic
/// threshold, [`colour::CHROMATIC`], so "chromatic" means the same thing for the label and for the model input
/// (in f32, the arithmetic the input has always used; 0.25 and 0.15 round to the same f32 as their literals).
pub const CHROMA_MIN_SATURATION: f32 = colour::CHROMATIC.min_s as f32;
/// Pixels with HSV value at least this count as chromatic (darker ones carry no reliable hue).
pub const CHROMA_MIN_VALUE: f32 = colour::CHROMATIC.min_v as f32;

/// The hook point called `name` (one of [`POINTS`]).
pub fn point(name: &str) -> HookPoint {
    HookPoint::Named(name.to_string())
}

/// Architecture. The input and output are RGB, so only the hidden and bottleneck widths vary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct Config {
    pub d_hidden: usize,
    pub d_bottleneck: usize,
    /// Divide the bottleneck by its norm (the seed trains with this on).
    pub normalize_bottleneck: bool,
    /// Added to the norm before dividing, as the seed (`norm + 1e-8`).
    pub norm_eps: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config { d_hidden: 16, d_bottleneck: 2, normalize_bottleneck: true, norm_eps: 1e-8 }
    }
}

impl Config {
    pub const D_RGB: usize = 3;

    pub fn check(&self) -> Result<(), Error> {
        let bad = |field, msg: String| Error::TrainOption { field, msg };
        if self.d_hidden == 0 {
            return Err(bad("d-hidden", "expected a hidden width of at least 1".into()));
        }
        if self.d_bottleneck == 0 {
            return Err(bad("d-bottleneck", "expected a bottleneck width of at least 1".into()));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return Err(bad("norm-eps", format!("expected a small non-negative number, got {}", self.norm_eps)));
        }
        Ok(())
    }

    /// `(in, out)` of each layer of [`LAYERS`].
    pub fn layer_dims(&self) -> [(usize, usize); 4] {
        let (h, b) = (self.d_hidden, self.d_bottleneck);
        [(Self::D_RGB, h), (h, b), (b, h), (h, Self::D_RGB)]
    }

    /// Widths of the [`POINTS`], in order.
    pub fn point_widths(&self) -> [usize; 5] {
        [Self::D_RGB, self.d_hidden, self.d_bottleneck, self.d_hidden, Self::D_RGB]
    }
}

/// The network of the seed's `ColorMLP`.
struct ColorMlp {
    encoder_0: Linear,
    encoder_2: Linear,
    decoder_0: Linear,
    decoder_2: Linear,
    normalize: Option<f64>,
}

impl ColorMlp {
    fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<Self> {
        let [l0, l1, l2, l3] = cfg.layer_dims();
        Ok(ColorMlp {
            encoder_0: candle_nn::linear(l0.0, l0.1, vb.pp("encoder").pp("0"))?,
            encoder_2: candle_nn::linear(l1.0, l1.1, vb.pp("encoder").pp("2"))?,
            decoder_0: candle_nn::linear(l2.0, l2.1, vb.pp("decoder").pp("0"))?,
            decoder_2: candle_nn::linear(l3.0, l3.1, vb.pp("decoder").pp("2"))?,
            normalize: cfg.normalize_bottleneck.then_some(cfg.norm_eps),
        })
    }

    /// `xs`: `[batch, 3]`. Returns the reconstruction `[batch, 3]`, with no hooks (the training path).
    fn forward_plain(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.forward(xs, &HookSet::default(), &mut |_, _| Ok(()))
    }

    /// `xs`: `[batch, 3]`. At each of the [`POINTS`], applies the interventions registered there, then hands
    /// the result (`[batch, d]`) to `seen`. Returns the reconstruction `[batch, 3]`.
    fn forward(
        &self,
        xs: &Tensor,
        hooks: &HookSet,
        seen: &mut dyn FnMut(&str, &Tensor) -> candle_core::Result<()>,
    ) -> candle_core::Result<Tensor> {
        let mut at = |name: &str, xs: Tensor| -> candle_core::Result<Tensor> {
            let p = point(name);
            let xs = if hooks.interventions.iter().any(|iv| iv.point == p) {
                hooks.apply(&p, &xs.unsqueeze(1)?, &one_position)?.squeeze(1)?
            } else {
                xs
            };
            seen(name, &xs)?;
            Ok(xs)
        };
        let xs = at(INPUT, xs.clone())?;
        let xs = at(ENCODER_HIDDEN, self.encoder_0.forward(&xs)?.relu()?)?;
        let mut z = self.encoder_2.forward(&xs)?;
        if let Some(eps) = self.normalize {
            let norm = z.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
            z = z.broadcast_div(&(norm + eps)?)?;
        }
        let z = at(BOTTLENECK, z)?;
        let xs = at(DECODER_HIDDEN, self.decoder_0.forward(&z)?.relu()?)?;
        at(OUTPUT, candle_nn::ops::sigmoid(&self.decoder_2.forward(&xs)?)?)
    }
}

/// Every sample is a one-token sequence: image/all/last mean position 0; explicit indices are kept, so an
/// index past 0 fails in [`HookSet::apply`] with a clear message.
fn one_position(_b: usize, positions: &Positions) -> Vec<usize> {
    match positions {
        Positions::Indices(ix) => ix.clone(),
        Positions::ImageTokens | Positions::All | Positions::Last => vec![0],
    }
}

/// A trained (or loaded) colour autoencoder.
pub struct Autoencoder {
    id: String,
    train_cfg: TrainConfig,
    final_loss: f32,
    varmap: VarMap,
    net: ColorMlp,
}

impl std::fmt::Debug for Autoencoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Autoencoder")
            .field("id", &self.id)
            .field("train_cfg", &self.train_cfg)
            .field("final_loss", &self.final_loss)
            .finish_non_exhaustive()
    }
}

impl Autoencoder {
    /// Trains a fresh model on the CPU. Deterministic: the same `cfg` gives bit-identical weights.
    /// `progress`, if given, gets its length set to the epoch count and ticks once per epoch.
    pub fn train(
        cfg: &TrainConfig,
        progress: Option<&indicatif::ProgressBar>,
    ) -> crate::model::Result<(Self, TrainReport)> {
        cfg.check()?;
        let varmap = train::init_varmap(&cfg.model, cfg.seed, &Device::Cpu)?;
        Self::train_from(cfg, varmap, progress)
    }

    /// Trains starting from the weights in `varmap` (every tensor of [`LAYERS`], f32, CPU).
    fn train_from(
        cfg: &TrainConfig,
        varmap: VarMap,
        progress: Option<&indicatif::ProgressBar>,
    ) -> crate::model::Result<(Self, TrainReport)> {
        let id = format!("colour-autoencoder(seed={}, epochs={})", cfg.seed, cfg.epochs);
        let mut model = Self::from_varmap(id, cfg.clone(), f32::NAN, varmap)?;
        let data = cfg.training_set().tensor(&Device::Cpu)?;
        if let Some(pb) = progress {
            pb.set_length(cfg.epochs as u64);
        }
        let _span = tracing::info_span!("autoencoder.train", seed = cfg.seed, epochs = cfg.epochs).entered();
        let report = train::fit(&model.net, &model.varmap, &data, cfg, &mut |_, loss| {
            if let Some(pb) = progress {
                pb.set_message(format!("loss {loss:.4}"));
                pb.inc(1);
            }
        })?;
        tracing::debug!(final_loss = report.final_loss, "autoencoder trained");
        model.final_loss = report.final_loss;
        Ok((model, report))
    }

    /// Wraps weights already in `varmap` (every tensor of [`LAYERS`], f32, CPU).
    fn from_varmap(id: String, train_cfg: TrainConfig, final_loss: f32, varmap: VarMap) -> candle_core::Result<Self> {
        let net = ColorMlp::new(&train_cfg.model, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
        Ok(Autoencoder { id, train_cfg, final_loss, varmap, net })
    }

    /// Loads `path` if it exists, else trains with `cfg` and, when `path` is given, saves there. A file at
    /// `path` that was trained with a different `cfg` is an error (it is never overwritten silently).
    pub fn train_or_load(
        path: Option<&Path>,
        cfg: &TrainConfig,
        progress: Option<&indicatif::ProgressBar>,
    ) -> crate::model::Result<Self> {
        cfg.check()?;
        if let Some(path) = path.filter(|p| p.exists()) {
            let model = Self::load(path)?;
            if model.train_cfg != *cfg {
                return Err(Error::Checkpoint {
                    path: path.to_path_buf(),
                    msg: format!(
                        "it was trained with {}, but {} was asked for; pass the same options, another path, or \
                         delete the file to retrain",
                        serde_json::to_string(&model.train_cfg).unwrap_or_default(),
                        serde_json::to_string(cfg).unwrap_or_default()
                    ),
                });
            }
            return Ok(model);
        }
        let (model, _) = Self::train(cfg, progress)?;
        if let Some(path) = path {
            model.save(path)?;
        }
        Ok(model)
    }

    pub fn config(&self) -> &Config {
        &self.train_cfg.model
    }

    /// How the weights were made (architecture, data, seed, epochs).
    pub fn train_config(&self) -> &TrainConfig {
        &self.train_cfg
    }

    /// Full-batch MSE of these weights on their training set, as recorded at training time.
    pub fn final_loss(&self) -> f32 {
        self.final_loss
    }

    /// `rgb`: `[batch, 3]` in [0, 1]. Runs the network with `hooks` and returns the captures: `[batch, d]`
    /// per captured point, `[batch, 1, d]` for [`Pooling::Tokens`].
    pub fn forward_rgb(&self, rgb: &Tensor, hooks: &HookSet, pooling: Pooling) -> crate::model::Result<Captures> {
        if rgb.rank() != 2 || rgb.dim(D::Minus1)? != Config::D_RGB {
            let n = rgb.dims().first().copied().unwrap_or(0);
            return Err(Error::TensorShape { name: INPUT.into(), expected: vec![n, 3], got: rgb.dims().to_vec() });
        }
        for iv in &hooks.interventions {
            if !POINTS.iter().any(|&p| point(p) == iv.point) {
                return Err(self.no_such_hook(&iv.point));
            }
        }
        for p in &hooks.capture {
            if self.width(p).is_none() {
                return Err(self.no_such_hook(p));
            }
        }
        let mut captures = Captures::default();
        self.net.forward(&rgb.to_device(&Device::Cpu)?.to_dtype(DType::F32)?, hooks, &mut |name, xs| {
            let p = point(name);
            if hooks.wants(&p) {
                let xs = if pooling == Pooling::Tokens { xs.unsqueeze(1)? } else { xs.clone() };
                captures.layers.insert(p, xs);
            }
            Ok(())
        })?;
        Ok(captures)
    }

    /// Convenience: runs `rgb` colours through the model with `hooks` and returns the hue (degrees) of each
    /// reconstructed colour, `None` where the output is grey.
    pub fn decode_hues(&self, rgb: &[[f32; 3]], hooks: &HookSet) -> crate::model::Result<Vec<Option<f64>>> {
        let xs = rgb_tensor(rgb)?;
        let hooks =
            HookSet { capture: vec![point(OUTPUT)], interventions: hooks.interventions.clone(), stop_early: false };
        let captures = self.forward_rgb(&xs, &hooks, Pooling::Last)?;
        output_hues_deg(&captures)
    }

    fn no_such_hook(&self, p: &HookPoint) -> Error {
        Error::NoSuchHook { point: p.to_string(), available: POINTS.join(", ") }
    }
}

impl Model for Autoencoder {
    fn id(&self) -> &str {
        &self.id
    }

    fn hook_points(&self) -> Vec<HookPoint> {
        POINTS.iter().map(|p| point(p)).collect()
    }

    fn layer_convention(&self) -> String {
        format!("named_points: index = position in [{}]", POINTS.join(", "))
    }

    fn colour_output(&self) -> Option<HookPoint> {
        Some(point(OUTPUT))
    }

    fn width(&self, p: &HookPoint) -> Option<usize> {
        let i = POINTS.iter().position(|&name| point(name) == *p)?;
        Some(self.config().point_widths()[i])
    }

    fn forward(&self, images: &[RgbImage], hooks: &HookSet, pooling: Pooling) -> crate::model::Result<Captures> {
        if images.is_empty() {
            return Err(Error::Image { what: "batch".into(), msg: "expected at least one image".into() });
        }
        let rgb = images.iter().enumerate().map(|(i, im)| image_input_rgb(im, i)).collect::<Result<Vec<_>, _>>()?;
        self.forward_rgb(&rgb_tensor(&rgb)?, hooks, pooling)
    }
}

/// Returns `[n, 3]` f32 on the CPU.
pub fn rgb_tensor(rgb: &[[f32; 3]]) -> candle_core::Result<Tensor> {
    Tensor::from_vec(rgb.iter().flatten().copied().collect::<Vec<_>>(), (rgb.len(), 3), &Device::Cpu)
}

/// The hue (degrees) of every row of the `output` capture, `None` for a grey row.
pub fn output_hues_deg(captures: &Captures) -> crate::model::Result<Vec<Option<f64>>> {
    let out = captures
        .layers
        .get(&point(OUTPUT))
        .ok_or_else(|| Error::Msg("the `output` point was not captured; add it to the hook set".into()))?;
    let rows = out.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    Ok(rows.iter().map(|r| rgb_to_hue_deg([r[0], r[1], r[2]])).collect())
}

/// What the autoencoder takes from an image (see the module doc): mean RGB of its chromatic pixels.
/// `index` only names the image in errors.
pub fn image_input_rgb(image: &RgbImage, index: usize) -> Result<[f32; 3], Error> {
    if image.width() == 0 || image.height() == 0 {
        return Err(Error::Image { what: format!("{index}"), msg: "is empty; expected at least one pixel".into() });
    }
    let (mut all, mut chroma) = ([0f64; 3], [0f64; 3]);
    let mut n_chroma = 0usize;
    for px in image.pixels() {
        let c = px.0.map(|b| b as f32 / 255.0);
        let (max, min) = (c[0].max(c[1]).max(c[2]), c[0].min(c[1]).min(c[2]));
        let is_chromatic = max >= CHROMA_MIN_VALUE && (max - min) >= CHROMA_MIN_SATURATION * max;
        for k in 0..3 {
            all[k] += c[k] as f64;
            if is_chromatic {
                chroma[k] += c[k] as f64;
            }
        }
        n_chroma += is_chromatic as usize;
    }
    let (sum, n) = if n_chroma > 0 { (chroma, n_chroma) } else { (all, image.pixels().len()) };
    Ok(sum.map(|s| (s / n as f64) as f32))
}

/// The HSV hue of an RGB colour in degrees `[0, 360)`, `None` when it is grey (max == min).
pub fn rgb_to_hue_deg(rgb: [f32; 3]) -> Option<f64> {
    let hsv = colour::rgb_to_hsv(rgb.map(f64::from));
    (hsv.s > 0.0).then_some(hsv.hue_deg)
}
