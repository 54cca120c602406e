//! Alpha × pair × layer sweeps inside the model.
//!
//! For every steering layer, pair and direction kind, one batch holds every alpha: batch row
//! `a * n_src + s` is source image `s` steered with `alphas[a]`, by a per-sample intervention
//! (`Intervention.sample = Some(row)`); alpha = 0 rows get no intervention at all, so they are the clean model.
//! The batch is cut into `batch_size` chunks when it is larger. Every row is read out (probes from the steering
//! layer on, the RGB output, colour-word probabilities, generated text) and averaged over the source images
//! (circular mean for hues). The notebook's decoder-only joystick runs on the same store layer with the same
//! pairs and alphas, and its decoded hue sits in the same row.

use std::collections::BTreeMap;

use image::RgbImage;
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use super::readout::{mean_hue, output_hues, HueProbe, PROBE_RIDGE};
use super::{
    centroid, manifold_rotation, random_control, rows_at_hue, ColourWords, Direction, DirectionContext, DirectionKind,
    Error, Lift, Normalisation, SteeringVector,
};
use crate::colour::signed_hue_delta_deg;
use crate::manifold::{joystick, Joystick, JoystickOptions, SteeringPair};
use crate::model::{HookPoint, HookSet, Input, Intervention, InterventionOp, Model, Pooling, Positions, TextInput};
use crate::store::ActivationStore;

/// A source → target hue pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairSpec {
    pub source_deg: f64,
    pub target_deg: f64,
    pub label: String,
}

impl PairSpec {
    pub fn new(source_deg: f64, target_deg: f64) -> Self {
        let name = |h: f64| {
            super::DEFAULT_COLOUR_WORDS
                .iter()
                .find(|(_, w)| signed_hue_delta_deg(*w, h).abs() < 1e-9)
                .map(|(n, _)| {
                    let mut c = n.chars();
                    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
                })
                .unwrap_or_else(|| format!("{h}"))
        };
        PairSpec { source_deg, target_deg, label: format!("{}→{}", name(source_deg), name(target_deg)) }
    }

    /// Blue→Red (240→0), Red→Green (0→120), Green→Blue (120→240): the notebook's pairs
    /// ([`crate::settings::PAIRS`]).
    pub fn defaults() -> Vec<PairSpec> {
        crate::settings::PAIRS.iter().map(|&(s, t, _)| PairSpec::new(s, t)).collect()
    }

    /// The notebook's pairs with each hue snapped to the nearest one the set holds (`hues`), so sets with a
    /// held-out slice (gap-teal-blue has no 240°) still get all three sweeps. Ties go to the first such hue.
    pub fn defaults_snapped_to(hues: &[f64]) -> Vec<PairSpec> {
        let snap = |h: f64| {
            let d = |x: f64| signed_hue_delta_deg(h, x).abs();
            hues.iter().copied().min_by(|a, b| d(*a).total_cmp(&d(*b))).unwrap_or(h)
        };
        crate::settings::PAIRS.iter().map(|&(s, t, _)| PairSpec::new(snap(s), snap(t))).collect()
    }
}

/// `FROM:TO` in degrees.
pub fn parse_pair(spec: &str) -> Result<PairSpec, Error> {
    let bad = || Error::Pair { spec: spec.to_string() };
    let (a, b) = spec.split_once(':').ok_or_else(bad)?;
    let (a, b): (f64, f64) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    if !(a.is_finite() && b.is_finite()) {
        return Err(bad());
    }
    Ok(PairSpec::new(a, b))
}

/// Most alphas one spec may expand to (a typo like `0:1:0.0001` should not start a huge run).
pub const MAX_ALPHAS: usize = 1000;

/// `start:stop:step` (stop included when the steps land on it, within 1e-9 of a step) or `a,b,c`.
pub fn parse_alphas(spec: &str) -> Result<Vec<f64>, Error> {
    let bad = |msg: &str| Error::Alphas { spec: spec.to_string(), msg: msg.to_string() };
    let num = |s: &str| -> Result<f64, Error> {
        let v: f64 = s.trim().parse().map_err(|_| bad(&format!("`{}` is not a number", s.trim())))?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(bad("values must be finite"))
        }
    };
    let alphas = if spec.contains(':') {
        let parts: Vec<&str> = spec.split(':').collect();
        let [a, b, step] = parts[..] else {
            return Err(bad("a range has exactly three parts"));
        };
        let (a, b, step) = (num(a)?, num(b)?, num(step)?);
        if step <= 0.0 {
            return Err(bad("the step must be positive"));
        }
        if b < a {
            return Err(bad("stop is below start"));
        }
        let n = ((b - a) / step + 1e-9).floor() as usize + 1;
        if n > MAX_ALPHAS {
            return Err(bad(&format!("{n} alphas; at most {MAX_ALPHAS}")));
        }
        // Multiply, never accumulate, so 0.75 is 0.75 and not 0.7500000000000001.
        (0..n).map(|i| a + i as f64 * step).map(|v| (v * 1e12).round() / 1e12).collect()
    } else {
        spec.split(',').map(num).collect::<Result<Vec<_>, _>>()?
    };
    if alphas.is_empty() {
        return Err(bad("no alphas"));
    }
    Ok(alphas)
}

/// Everything a sweep needs besides the model, the store and the images.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Steering layer indices (store indices = the model's hook-point indices).
    pub layers: Vec<usize>,
    pub pairs: Vec<PairSpec>,
    pub alphas: Vec<f64>,
    pub kinds: Vec<DirectionKind>,
    pub positions: Positions,
    pub normalisation: Normalisation,
    /// Seed of the random controls (each layer and pair gets its own stream from it).
    pub seed: u64,
    /// SMDS ridge penalty of the manifold fit.
    pub smds_alpha: f64,
    /// How the manifold rotation is lifted back to the activations.
    pub lift: Lift,
    /// Relative ridge of the hue probes.
    pub probe_ridge: f64,
    /// Images per forward pass.
    pub batch_size: usize,
    /// A steered hue within this many degrees of the target counts as reached in the summary.
    pub tolerance_deg: f64,
    /// Answer tokens to generate per row (0 = no text).
    pub max_new_tokens: usize,
    /// An RGB output point whose hue is read out (the colour autoencoder's `output`).
    pub output_rgb: Option<HookPoint>,
    pub colour_words: Option<ColourWords>,
    /// Text-only prompts by store row: when not empty, row `r` is steered as `text_prompts[r]` asked without
    /// an image (a text control) instead of `SweepInput::image(r)`.
    pub text_prompts: Vec<TextInput>,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            layers: vec![],
            pairs: PairSpec::defaults(),
            alphas: crate::settings::ALPHAS.to_vec(),
            kinds: DirectionKind::ALL.to_vec(),
            positions: Positions::ImageTokens,
            normalisation: Normalisation::default(),
            seed: crate::settings::SEED,
            smds_alpha: crate::settings::SMDS_ALPHA,
            lift: Lift::default(),
            probe_ridge: PROBE_RIDGE,
            batch_size: 16,
            tolerance_deg: crate::settings::TOLERANCE_DEG,
            max_new_tokens: 0,
            output_rgb: None,
            colour_words: None,
            text_prompts: vec![],
        }
    }
}

/// The model, the clean activations, and the stimulus images (by store row).
pub struct SweepInput<'a> {
    pub model: &'a dyn Model,
    pub store: &'a ActivationStore,
    pub image: &'a dyn Fn(usize) -> crate::steer::Result<RgbImage>,
}

/// One (layer, pair, direction, alpha) of a sweep, averaged over the source images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    pub layer: usize,
    pub hook: String,
    pub pair: String,
    pub source_deg: f64,
    pub target_deg: f64,
    pub direction: DirectionKind,
    pub alpha: f64,
    pub n_images: usize,
    /// Probe-decoded hue at each layer from the steering layer on (layer index → degrees).
    pub probe_hue_deg: BTreeMap<usize, Option<f64>>,
    /// Hue of the model's RGB output (colour autoencoder).
    pub output_hue_deg: Option<f64>,
    /// The output hue if there is one, else the probe hue at the last layer: what the summary scores.
    pub final_hue_deg: Option<f64>,
    /// `final - target`, in `[-180, 180)`.
    pub target_error_deg: Option<f64>,
    /// Mean next-token probability of each colour word.
    pub word_probs: Option<BTreeMap<String, f64>>,
    pub top_word: Option<String>,
    /// Generated answers, one per source image.
    pub texts: Option<Vec<String>>,
    /// The notebook's decoder-only joystick on the same store layer.
    pub joystick_hue_deg: Option<f64>,
    pub joystick_error_deg: Option<f64>,
    /// `final - joystick`, in `[-180, 180)`: where in-model steering and the decoder-only joystick disagree.
    pub model_minus_joystick_deg: Option<f64>,
}

/// Success of one (layer, pair, direction) over its alphas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub layer: usize,
    pub hook: String,
    pub pair: String,
    pub direction: DirectionKind,
    pub tolerance_deg: f64,
    /// Smallest alpha whose final hue is within `tolerance_deg` of the target.
    pub alpha_reached: Option<f64>,
    /// Smallest alpha whose most probable colour word is the target's.
    pub alpha_word_flip: Option<f64>,
    pub target_word: Option<String>,
    /// The same for the decoder-only joystick.
    pub joystick_alpha_reached: Option<f64>,
    /// Final hue at alpha = 1 minus the target.
    pub error_at_alpha_1: Option<f64>,
    /// Whether the final hue moves the way from source to target at every alpha step.
    pub monotone: bool,
    /// Largest |final - joystick| over the alphas.
    pub max_disagreement_deg: Option<f64>,
}

/// Probe quality on the clean activations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeInfo {
    pub layer: usize,
    pub hook: String,
    pub train_error_deg: f64,
}

/// A finished sweep.
#[derive(Debug, Clone)]
pub struct SweepResult {
    pub rows: Vec<SweepRow>,
    pub summary: Vec<SummaryRow>,
    pub probes: Vec<ProbeInfo>,
    pub vectors: Vec<SteeringVector>,
    pub options: SweepRecord,
}

/// The options of a sweep as `sweep.json` and `summary.json` record them (and the report reads them back).
/// Fields are in alphabetical order, the order the files have always had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRecord {
    pub alphas: Vec<f64>,
    pub directions: Vec<DirectionKind>,
    pub layer_convention: String,
    pub layers: Vec<usize>,
    /// The manifold rotation's lift; sweeps written before the choice existed used the minimum-norm one.
    #[serde(default = "legacy_lift")]
    pub lift: Lift,
    pub max_new_tokens: usize,
    pub model_id: String,
    pub normalisation: Normalisation,
    pub pairs: Vec<PairSpec>,
    pub pooling: String,
    /// Token positions steered: `image`, `all`, `last` or `i,j,…`.
    pub positions: String,
    pub probe_ridge: f64,
    pub seed: u64,
    pub smds_alpha: f64,
    pub tolerance_deg: f64,
}

fn legacy_lift() -> Lift {
    Lift::MinNorm
}

/// Runs the sweep. `progress(done, total)` is called after every (layer, pair, direction).
pub fn run_sweep(
    input: &SweepInput<'_>,
    opts: &SweepOptions,
    progress: &dyn Fn(usize, usize),
) -> crate::steer::Result<SweepResult> {
    check_options(opts)?;
    let store = input.store;
    let model = input.model;
    let hues = store.hue_deg();
    let points = model.all_hook_points();
    let pooling: Pooling = store.manifest().provenance.pooling.parse()?;
    if pooling == Pooling::Tokens {
        return Err(Error::Msg(
            "the store holds unpooled tokens; steer against a pooled store (extract with --pool image-mean or last)"
                .into(),
        ));
    }
    let stored = store.layer_indices();
    let mut probes: BTreeMap<usize, HueProbe> = BTreeMap::new();
    let (mut rows, mut summary, mut vectors) = (Vec::new(), Vec::new(), Vec::new());
    let total = opts.layers.len() * opts.pairs.len() * opts.kinds.len();
    let mut done = 0;
    progress(done, total);
    for &layer in &opts.layers {
        let point = steering_point(model, store, &points, layer)?;
        let x = store.layer_2d(layer)?;
        let read_layers = read_out_layers(&points, &stored, layer);
        for &i in &read_layers {
            if let std::collections::btree_map::Entry::Vacant(e) = probes.entry(i) {
                let xi = store.layer_2d(i)?;
                e.insert(HueProbe::fit(i, points[i].clone(), xi.view(), &hues, opts.probe_ridge)?);
            }
        }
        let ctx = DirectionContext::from_store(store, layer, opts.positions.clone(), opts.normalisation)?;
        let js = layer_joystick(x.view(), &hues, layer, opts);
        let mut hooks = HookSet::capture(read_layers.iter().map(|&i| points[i].clone()));
        if let Some(p) = &opts.output_rgb {
            if !hooks.wants(p) {
                hooks.capture.push(p.clone());
            }
        }
        for (pi, pair) in opts.pairs.iter().enumerate() {
            let src_rows = rows_at_hue(&hues, pair.source_deg)?;
            let images = source_inputs(input, opts, &src_rows)?;
            let reference = centroid(x.view(), &hues, pair.source_deg, pair.target_deg, &ctx)?;
            for &kind in &opts.kinds {
                let dir = match kind {
                    DirectionKind::Centroid => reference.clone(),
                    DirectionKind::Manifold => {
                        let (from, to) = (pair.source_deg, pair.target_deg);
                        manifold_rotation(x.view(), &hues, from, to, &ctx, opts.smds_alpha, opts.lift)?
                    }
                    DirectionKind::Random => random_control(&reference, stream_seed(opts.seed, layer, pi)),
                };
                let steered = steer_batch(model, &images, &point, &dir, &hooks, pooling, &probes, &read_layers, opts)?;
                let kind_rows: Vec<SweepRow> = opts
                    .alphas
                    .iter()
                    .enumerate()
                    .map(|(ai, &alpha)| {
                        let per_image = &steered[ai * images.len()..(ai + 1) * images.len()];
                        let js_row =
                            js.as_ref().and_then(|j| j.rows.iter().find(|r| r.pair == pair.label && r.alpha == alpha));
                        aggregate(per_image, &read_layers, layer, &point, pair, kind, alpha, js_row, opts)
                    })
                    .collect();
                summary.push(summarise(&kind_rows, opts));
                rows.extend(kind_rows);
                vectors.push(dir.vector);
                done += 1;
                progress(done, total);
            }
        }
    }
    let probes = probes
        .values()
        .map(|p| ProbeInfo { layer: p.layer_index, hook: p.point.to_string(), train_error_deg: p.train_error_deg })
        .collect();
    let options = sweep_record(store, opts);
    rows.iter().try_for_each(check_row_finite)?;
    Ok(SweepResult { rows, summary, probes, vectors, options })
}

/// The options a sweep ran with, as its tables record them.
fn sweep_record(store: &ActivationStore, opts: &SweepOptions) -> SweepRecord {
    SweepRecord {
        alphas: opts.alphas.clone(),
        directions: opts.kinds.clone(),
        layer_convention: store.manifest().layer_convention.clone(),
        layers: opts.layers.clone(),
        lift: opts.lift,
        max_new_tokens: opts.max_new_tokens,
        model_id: store.manifest().provenance.model_id.clone(),
        normalisation: opts.normalisation,
        pairs: opts.pairs.clone(),
        pooling: store.manifest().provenance.pooling.clone(),
        positions: super::vector::positions_spec(&opts.positions),
        probe_ridge: opts.probe_ridge,
        seed: opts.seed,
        smds_alpha: opts.smds_alpha,
        tolerance_deg: opts.tolerance_deg,
    }
}

/// The stored points read out when steering at `layer`: it and every stored point after it in the forward pass
/// (for a vision block that includes the whole decoder), the deepest last; points of one rank (named points) go
/// by index.
fn read_out_layers(points: &[HookPoint], stored: &[usize], layer: usize) -> Vec<usize> {
    let depth = |i: usize| (points[i].forward_order(), i);
    let mut read: Vec<usize> =
        stored.iter().copied().filter(|&i| i < points.len() && depth(i) >= depth(layer)).collect();
    read.sort_by_key(|&i| depth(i));
    read
}

/// The decoder-only joystick at `layer`, for comparison; `None` (with a warning) where it cannot be fitted, since
/// it is a comparison, not the measurement: such a layer still gets steered.
fn layer_joystick(x: ArrayView2<f32>, hues: &[f64], layer: usize, opts: &SweepOptions) -> Option<Joystick> {
    let js_opts = JoystickOptions {
        pairs: opts
            .pairs
            .iter()
            .map(|p| SteeringPair { source_deg: p.source_deg, target_deg: p.target_deg, label: p.label.clone() })
            .collect(),
        alphas: opts.alphas.clone(),
        ..JoystickOptions::default()
    };
    joystick(x, hues, &js_opts).inspect_err(|e| tracing::warn!(layer, "decoder-only joystick skipped: {e}")).ok()
}

/// The model inputs of the source rows: their text prompts for a text set, else their images.
fn source_inputs(input: &SweepInput<'_>, opts: &SweepOptions, rows: &[usize]) -> crate::steer::Result<Vec<Input>> {
    rows.iter()
        .map(|&r| match opts.text_prompts.get(r) {
            Some(t) => Ok(Input::Text(t.clone())),
            None if opts.text_prompts.is_empty() => Ok(Input::Image((input.image)(r)?)),
            None => Err(Error::Msg(format!("no text prompt for store row {r}"))),
        })
        .collect()
}

/// A steered run that overflowed (`--alphas 1e300`) reads back NaN hues; such a row is an error naming the
/// layer, pair, direction and alpha, never a table that looks like a result.
fn check_row_finite(r: &SweepRow) -> Result<(), Error> {
    let mut values: Vec<(&str, f64)> = r.probe_hue_deg.values().flatten().map(|v| ("probe hue", *v)).collect();
    let optional = [
        ("output hue", r.output_hue_deg),
        ("final hue", r.final_hue_deg),
        ("target error", r.target_error_deg),
        ("joystick hue", r.joystick_hue_deg),
        ("joystick error", r.joystick_error_deg),
    ];
    values.extend(optional.iter().filter_map(|(w, v)| v.map(|v| (*w, v))));
    values.extend(r.word_probs.iter().flatten().map(|(_, p)| ("word probability", *p)));
    match values.iter().find(|(_, v)| !v.is_finite()) {
        None => Ok(()),
        Some((what, v)) => Err(Error::Msg(format!(
            "steering at layer {} ({}, {} direction, alpha {:?}) gave a non-finite {what} ({v}); the steered \
             activations overflowed: use smaller --alphas",
            r.layer, r.pair, r.direction, r.alpha
        ))),
    }
}

fn check_options(opts: &SweepOptions) -> Result<(), Error> {
    if opts.layers.is_empty() {
        return Err(Error::Msg("no steering layers were given".into()));
    }
    if opts.pairs.is_empty() || opts.alphas.is_empty() || opts.kinds.is_empty() {
        return Err(Error::Msg("a sweep needs at least one pair, one alpha and one direction".into()));
    }
    if opts.batch_size == 0 {
        return Err(Error::Msg("--batch-size must be at least 1".into()));
    }
    if !(opts.tolerance_deg > 0.0 && opts.tolerance_deg <= 180.0) {
        return Err(Error::Msg(format!("tolerance {}° must be in (0, 180]", opts.tolerance_deg)));
    }
    Ok(())
}

/// The model's hook point at store layer `layer`, checked against the store (same name, same width).
fn steering_point(
    model: &dyn Model,
    store: &ActivationStore,
    points: &[HookPoint],
    layer: usize,
) -> crate::steer::Result<HookPoint> {
    let entry = store.manifest().layer(layer)?;
    let point = points.get(layer).ok_or_else(|| Error::Layer {
        index: layer,
        msg: format!(
            "`{}` has layers 0..={} ({})",
            model.id(),
            points.len().saturating_sub(1),
            crate::model::summarize_points(points)
        ),
    })?;
    if entry.hook != point.to_string() {
        return Err(Error::Layer {
            index: layer,
            msg: format!(
                "the store calls it `{}` but the model calls it `{point}`; the store was made by another model or \
                 layer convention",
                entry.hook
            ),
        });
    }
    let stored = *entry.shape.last().expect("validated rank >= 2");
    match model.width(point) {
        Some(w) if w == stored => Ok(point.clone()),
        Some(w) => Err(Error::Width { what: format!("the model at `{point}`"), expected: stored, got: w }),
        None => Err(Error::Layer { index: layer, msg: format!("the model reports no width at `{point}`") }),
    }
}

fn stream_seed(seed: u64, layer: usize, pair: usize) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((layer as u64) << 32 | pair as u64)
}

/// What one steered row was read out as.
struct RowReadout {
    probe: BTreeMap<usize, f64>,
    output_hue: Option<f64>,
    word_probs: Option<Vec<f64>>,
    text: Option<String>,
}

/// Runs `images` once per alpha (row `a * n + s`), in chunks of `batch_size`, and reads every row out.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename these
fn steer_batch(
    model: &dyn Model,
    images: &[Input],
    point: &HookPoint,
    dir: &Direction,
    capture: &HookSet,
    pooling: Pooling,
    probes: &BTreeMap<usize, HueProbe>,
    read_layers: &[usize],
    opts: &SweepOptions,
) -> crate::steer::Result<Vec<RowReadout>> {
    let n = images.len();
    let jobs: Vec<(usize, f64)> = opts.alphas.iter().flat_map(|&a| (0..n).map(move |s| (s, a))).collect();
    let mut out = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(opts.batch_size) {
        let batch: Vec<Input> = chunk.iter().map(|(s, _)| images[*s].clone()).collect();
        let mut hooks = capture.clone();
        for (b, &(_, alpha)) in chunk.iter().enumerate() {
            if alpha == 0.0 {
                continue;
            }
            let op = if dir.is_straight() {
                InterventionOp::Add { vector: dir.vector.vector.clone(), alpha: alpha as f32 }
            } else {
                InterventionOp::Add { vector: dir.delta(alpha), alpha: 1.0 }
            };
            hooks.interventions.push(Intervention {
                point: point.clone(),
                positions: opts.positions.clone(),
                sample: Some(b),
                op,
            });
        }
        let captures = model.forward_inputs(&batch, &hooks, pooling)?;
        let mut probe: Vec<BTreeMap<usize, f64>> = vec![BTreeMap::new(); batch.len()];
        for &i in read_layers {
            let p = &probes[&i];
            let t = captures.layers.get(&p.point).ok_or_else(|| {
                Error::Msg(format!("the model did not capture `{}` although it was asked to", p.point))
            })?;
            let rows = t.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
            let x = ndarray::Array2::from_shape_vec((rows.len(), p.d_model()), rows.into_iter().flatten().collect())
                .map_err(|_| Error::Width { what: format!("capture `{}`", p.point), expected: p.d_model(), got: 0 })?;
            for (b, hue) in p.decode(x.view())?.into_iter().enumerate() {
                probe[b].insert(i, hue);
            }
        }
        let output = match &opts.output_rgb {
            Some(p) => output_hues(&captures, p)?,
            None => vec![None; batch.len()],
        };
        let words = match (&opts.colour_words, &captures.logits) {
            (Some(w), Some(logits)) => Some(w.probabilities(logits)?),
            _ => None,
        };
        let texts =
            if opts.max_new_tokens > 0 { generate_rows(model, &batch, &hooks, opts.max_new_tokens)? } else { None };
        for (b, probe) in probe.into_iter().enumerate() {
            out.push(RowReadout {
                probe,
                output_hue: output[b],
                word_probs: words.as_ref().map(|w| w[b].clone()),
                text: texts.as_ref().and_then(|t| t.get(b).cloned()),
            });
        }
    }
    Ok(out)
}

/// Greedy answers, one image at a time (decoders generate one sequence at a time with a KV cache anyway), each
/// with only its own row's interventions, re-addressed to the whole one-image batch.
fn generate_rows(
    model: &dyn Model,
    batch: &[Input],
    hooks: &HookSet,
    max_new_tokens: usize,
) -> crate::steer::Result<Option<Vec<String>>> {
    let mut out = Vec::with_capacity(batch.len());
    for (b, image) in batch.iter().enumerate() {
        let own = HookSet {
            capture: vec![],
            interventions: hooks
                .interventions
                .iter()
                .filter(|iv| iv.sample.is_none_or(|s| s == b))
                .map(|iv| Intervention { sample: None, ..iv.clone() })
                .collect(),
            stop_early: false,
        };
        match model.generate_inputs(std::slice::from_ref(image), &own, max_new_tokens)? {
            Some(mut texts) if texts.len() == 1 => out.push(texts.remove(0)),
            Some(texts) => {
                return Err(Error::Msg(format!("the model generated {} answers for one image", texts.len())))
            }
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// One sweep row from the readouts of every source image at one alpha.
#[allow(clippy::too_many_arguments)]
fn aggregate(
    per_image: &[RowReadout],
    read_layers: &[usize],
    layer: usize,
    point: &HookPoint,
    pair: &PairSpec,
    kind: DirectionKind,
    alpha: f64,
    js: Option<&crate::manifold::JoystickRow>,
    opts: &SweepOptions,
) -> SweepRow {
    let probe_hue_deg: BTreeMap<usize, Option<f64>> =
        read_layers.iter().map(|&i| (i, mean_hue(per_image.iter().map(|r| r.probe.get(&i).copied())))).collect();
    let output_hue_deg =
        if opts.output_rgb.is_some() { mean_hue(per_image.iter().map(|r| r.output_hue)) } else { None };
    let final_hue_deg =
        if opts.output_rgb.is_some() { output_hue_deg } else { read_layers.last().and_then(|i| probe_hue_deg[i]) };
    let word_probs = opts.colour_words.as_ref().filter(|_| per_image.iter().all(|r| r.word_probs.is_some())).map(|w| {
        w.words
            .iter()
            .enumerate()
            .map(|(k, word)| {
                let mean = per_image.iter().map(|r| r.word_probs.as_ref().expect("checked")[k]).sum::<f64>()
                    / per_image.len() as f64;
                (word.clone(), mean)
            })
            .collect::<BTreeMap<_, _>>()
    });
    let top_word = word_probs.as_ref().and_then(|p| p.iter().max_by(|a, b| a.1.total_cmp(b.1)).map(|(w, _)| w.clone()));
    let texts = per_image.iter().map(|r| r.text.clone()).collect::<Option<Vec<_>>>();
    let joystick_hue_deg = js.map(|r| r.decoded_hue);
    SweepRow {
        layer,
        hook: point.to_string(),
        pair: pair.label.clone(),
        source_deg: pair.source_deg,
        target_deg: pair.target_deg,
        direction: kind,
        alpha,
        n_images: per_image.len(),
        probe_hue_deg,
        output_hue_deg,
        final_hue_deg,
        target_error_deg: final_hue_deg.map(|h| signed_hue_delta_deg(pair.target_deg, h)),
        word_probs,
        top_word,
        texts,
        joystick_hue_deg,
        joystick_error_deg: js.map(|r| r.target_error_deg),
        model_minus_joystick_deg: final_hue_deg.zip(joystick_hue_deg).map(|(m, j)| signed_hue_delta_deg(j, m)),
    }
}

/// The success summary of one (layer, pair, direction): rows in alpha order.
fn summarise(rows: &[SweepRow], opts: &SweepOptions) -> SummaryRow {
    let first = &rows[0];
    let mut sorted: Vec<&SweepRow> = rows.iter().collect();
    sorted.sort_by(|a, b| a.alpha.total_cmp(&b.alpha));
    let tol = opts.tolerance_deg;
    let reached = |err: &dyn Fn(&SweepRow) -> Option<f64>| {
        sorted.iter().find(|r| err(r).is_some_and(|e| e.abs() <= tol)).map(|r| r.alpha)
    };
    let target_word =
        opts.colour_words.as_ref().and_then(|w| w.word_for_hue(first.target_deg).map(|i| w.words[i].clone()));
    let alpha_word_flip =
        target_word.as_ref().and_then(|t| sorted.iter().find(|r| r.top_word.as_ref() == Some(t)).map(|r| r.alpha));
    let travel = signed_hue_delta_deg(first.source_deg, first.target_deg).signum();
    let finals: Vec<Option<f64>> = sorted.iter().map(|r| r.final_hue_deg).collect();
    let monotone = finals.iter().all(Option::is_some)
        && finals.windows(2).all(|w| travel * signed_hue_delta_deg(w[0].expect("some"), w[1].expect("some")) > 0.0);
    SummaryRow {
        layer: first.layer,
        hook: first.hook.clone(),
        pair: first.pair.clone(),
        direction: first.direction,
        tolerance_deg: tol,
        alpha_reached: reached(&|r| r.target_error_deg),
        alpha_word_flip,
        target_word,
        joystick_alpha_reached: reached(&|r| r.joystick_error_deg),
        error_at_alpha_1: sorted.iter().find(|r| r.alpha == 1.0).and_then(|r| r.target_error_deg),
        monotone,
        max_disagreement_deg: rows
            .iter()
            .filter_map(|r| r.model_minus_joystick_deg.map(f64::abs))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v)))),
    }
}
