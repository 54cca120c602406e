//! Hook points and interventions: the one vocabulary huescan uses to name places in a model and to change
//! what flows through them.
//!
//! Names follow TransformerLens at the store/API edge. For a decoder with `L` blocks, HF's
//! `output_hidden_states` tuple maps to hook points like this (the layer-numbering trap: an off-by-one is
//! silent because neighbouring layers are highly correlated):
//!
//! | HF `hidden_states[i]` | hook point | meaning |
//! |---|---|---|
//! | `0` | `blocks.0.hook_resid_pre` | token embeddings with image features merged in |
//! | `l + 1`, `l < L - 1` | `blocks.{l}.hook_resid_post` | raw residual stream after block `l` |
//! | `L` | `ln_final.hook_out` | final RMSNorm output *including its weight* (not TL's `hook_normalized`) |
//!
//! The raw output of the last block, `blocks.{L-1}.hook_resid_post`, is not an HF hidden state; models may
//! expose it as an extra capture point. A store records, for every stored layer, both its index `i` in this
//! HF list and its hook name, and the manifest says which convention was used ([`LAYER_CONVENTION`]).
//!
//! Points beyond that list ([`crate::model::Model::extra_hook_points`]: the vision tower, attention and MLP
//! outputs, the mid stream, the raw last block) take the indices after it, `L + 1, L + 2, …`, in the order the
//! model lists them; every stored point carries its name, so a reader never has to know the numbering. Select
//! points by name or glob with [`select_points`].
//!
//! Steering "at block `l`" adds to `blocks.{l}.hook_resid_post`, the same place as `hidden_states[l + 1]`,
//! so the change is visible from index `l + 1` on and nowhere before.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device, Tensor};

use super::Error;

/// Written into every manifest and steering vector: how layer indices are to be read.
pub const LAYER_CONVENTION: &str =
    "hf_hidden_states: index 0 = blocks.0.hook_resid_pre (embeddings), index l+1 = blocks.l.hook_resid_post, index L = ln_final.hook_out; indices past L = further points (vision tower, attn/mlp outputs, raw last block) named by each entry's hook";

/// A named place in a model where activations can be captured or changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookPoint {
    /// `blocks.{l}.hook_resid_pre`: input of decoder block `l`.
    ResidPre(usize),
    /// `blocks.{l}.hook_resid_post`: output of decoder block `l`.
    ResidPost(usize),
    /// `ln_final.hook_out`: final norm output, weight applied.
    LnFinalOut,
    /// A point of a model that is not a residual transformer (e.g. the colour autoencoder's `bottleneck`).
    /// The name is a dotted path, lower-case.
    Named(String),
    /// `blocks.{l}.hook_attn_out`: the attention output of decoder block `l` (after `o_proj`, before the
    /// residual add).
    AttnOut(usize),
    /// `blocks.{l}.hook_resid_mid`: residual stream between attention and MLP of block `l`.
    ResidMid(usize),
    /// `blocks.{l}.hook_mlp_out`: the MLP output of decoder block `l` (before the residual add).
    MlpOut(usize),
    /// `visual.hook_patch_embed`: the vision tower's patch embedding, one row per image patch.
    VisualPatchEmbed,
    /// `visual.blocks.{i}.hook_resid_post`: output of vision block `i`, one row per image patch.
    VisualResidPost(usize),
    /// `visual.merger.hook_out`: the merger's output, the image features before they enter the prompt (one row
    /// per merged token).
    VisualMergerOut,
}

/// Which part of a model a hook point is in; recorded per stored point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    /// The vision tower, merger included: positions are image patches (merged tokens for the merger).
    Vision,
    /// The language model: positions are prompt tokens.
    Language,
    /// A model without that split (the colour autoencoder).
    Other,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Vision => "vision",
            Component::Language => "language",
            Component::Other => "other",
        }
    }
}

impl HookPoint {
    /// The hook point of HF `hidden_states[index]` for a decoder of `n_blocks` blocks.
    pub fn from_hidden_state_index(index: usize, n_blocks: usize) -> Option<Self> {
        match index {
            0 => Some(HookPoint::ResidPre(0)),
            i if i < n_blocks => Some(HookPoint::ResidPost(i - 1)),
            i if i == n_blocks => Some(HookPoint::LnFinalOut),
            _ => None,
        }
    }

    /// The HF `hidden_states` index of this hook point for a decoder of `n_blocks` blocks, if it is one.
    pub fn hidden_state_index(&self, n_blocks: usize) -> Option<usize> {
        match *self {
            HookPoint::ResidPre(l) if l < n_blocks => Some(l),
            HookPoint::ResidPost(l) if l + 1 < n_blocks => Some(l + 1),
            HookPoint::LnFinalOut => Some(n_blocks),
            _ => None,
        }
    }

    pub fn component(&self) -> Component {
        match self {
            HookPoint::VisualPatchEmbed | HookPoint::VisualResidPost(_) | HookPoint::VisualMergerOut => {
                Component::Vision
            }
            HookPoint::Named(_) => Component::Other,
            _ => Component::Language,
        }
    }

    /// A key that sorts points in the order a forward pass computes them: patch embedding, vision blocks,
    /// merger, then per decoder block its input, attention output, mid stream, MLP output and output, then the
    /// final norm. Figures put stored points on one axis in this order.
    pub fn forward_order(&self) -> (u8, usize, u8) {
        match *self {
            HookPoint::VisualPatchEmbed => (0, 0, 0),
            HookPoint::VisualResidPost(i) => (0, i + 1, 0),
            HookPoint::VisualMergerOut => (1, 0, 0),
            HookPoint::ResidPre(l) => (2, l, 0),
            HookPoint::AttnOut(l) => (2, l, 1),
            HookPoint::ResidMid(l) => (2, l, 2),
            HookPoint::MlpOut(l) => (2, l, 3),
            HookPoint::ResidPost(l) => (2, l, 4),
            HookPoint::LnFinalOut => (3, 0, 0),
            HookPoint::Named(_) => (4, 0, 0),
        }
    }

    /// Whether the point is computed again for every generated token (decoder points are; the vision tower runs
    /// once, in the prefill).
    pub fn runs_while_decoding(&self) -> bool {
        self.component() == Component::Language
    }
}

/// Points of `all` whose names match any of the comma-separated `patterns`, in the order of `all`. A pattern is
/// a full name or a glob where `*` matches any run of characters, dots included (`visual.blocks.*`,
/// `blocks.*.hook_resid_post`). A pattern matching nothing is an error naming what exists.
pub fn select_points(patterns: &str, all: &[HookPoint]) -> Result<Vec<HookPoint>, Error> {
    let names: Vec<String> = all.iter().map(ToString::to_string).collect();
    let mut keep = vec![false; all.len()];
    for pattern in patterns.split(',').map(str::trim) {
        if pattern.is_empty() {
            return Err(Error::HookPattern { pattern: patterns.to_string(), available: super::summarize_points(all) });
        }
        let mut any = false;
        for (k, name) in names.iter().enumerate() {
            if glob_match(pattern, name) {
                keep[k] = true;
                any = true;
            }
        }
        if !any {
            return Err(Error::HookPattern { pattern: pattern.to_string(), available: super::summarize_points(all) });
        }
    }
    Ok(all.iter().zip(keep).filter(|(_, k)| *k).map(|(p, _)| p.clone()).collect())
}

/// `*` matches any (possibly empty) run of characters; everything else matches itself.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookPoint::ResidPre(l) => write!(f, "blocks.{l}.hook_resid_pre"),
            HookPoint::ResidPost(l) => write!(f, "blocks.{l}.hook_resid_post"),
            HookPoint::LnFinalOut => f.write_str("ln_final.hook_out"),
            HookPoint::Named(n) => f.write_str(n),
            HookPoint::AttnOut(l) => write!(f, "blocks.{l}.hook_attn_out"),
            HookPoint::ResidMid(l) => write!(f, "blocks.{l}.hook_resid_mid"),
            HookPoint::MlpOut(l) => write!(f, "blocks.{l}.hook_mlp_out"),
            HookPoint::VisualPatchEmbed => f.write_str("visual.hook_patch_embed"),
            HookPoint::VisualResidPost(i) => write!(f, "visual.blocks.{i}.hook_resid_post"),
            HookPoint::VisualMergerOut => f.write_str("visual.merger.hook_out"),
        }
    }
}

impl FromStr for HookPoint {
    type Err = Error;

    /// Accepts full names (`blocks.3.hook_resid_post`, `visual.blocks.0.hook_resid_post`, `ln_final.hook_out`)
    /// and TransformerLens shorthand (`resid_post3`, `resid_pre0`, `attn_out1`); any other dotted lower-case name
    /// becomes [`HookPoint::Named`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || Error::HookName { name: s.to_string() };
        match s {
            "ln_final.hook_out" => return Ok(HookPoint::LnFinalOut),
            "visual.hook_patch_embed" => return Ok(HookPoint::VisualPatchEmbed),
            "visual.merger.hook_out" => return Ok(HookPoint::VisualMergerOut),
            _ => {}
        }
        if let Some(rest) = s.strip_prefix("visual.blocks.") {
            let (num, hook) = rest.split_once('.').ok_or_else(bad)?;
            let i: usize = num.parse().map_err(|_| bad())?;
            return if hook == "hook_resid_post" { Ok(HookPoint::VisualResidPost(i)) } else { Err(bad()) };
        }
        if s.starts_with("visual.") {
            return Err(bad());
        }
        if let Some(rest) = s.strip_prefix("blocks.") {
            let (num, hook) = rest.split_once('.').ok_or_else(bad)?;
            let l: usize = num.parse().map_err(|_| bad())?;
            return match hook {
                "hook_resid_pre" => Ok(HookPoint::ResidPre(l)),
                "hook_resid_post" => Ok(HookPoint::ResidPost(l)),
                "hook_attn_out" => Ok(HookPoint::AttnOut(l)),
                "hook_resid_mid" => Ok(HookPoint::ResidMid(l)),
                "hook_mlp_out" => Ok(HookPoint::MlpOut(l)),
                _ => Err(bad()),
            };
        }
        for (prefix, make) in [
            ("resid_pre", HookPoint::ResidPre as fn(usize) -> HookPoint),
            ("resid_post", HookPoint::ResidPost as fn(usize) -> HookPoint),
            ("resid_mid", HookPoint::ResidMid as fn(usize) -> HookPoint),
            ("attn_out", HookPoint::AttnOut as fn(usize) -> HookPoint),
            ("mlp_out", HookPoint::MlpOut as fn(usize) -> HookPoint),
        ] {
            if let Some(num) = s.strip_prefix(prefix) {
                if let Ok(l) = num.parse() {
                    return Ok(make(l));
                }
            }
        }
        let valid =
            !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_');
        if valid {
            Ok(HookPoint::Named(s.to_string()))
        } else {
            Err(bad())
        }
    }
}

/// Which token positions of a sequence an intervention touches (or a pooling reads).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Positions {
    /// The image-placeholder tokens (the merged vision features).
    ImageTokens,
    /// Every non-padding token of the prompt.
    All,
    /// The last prompt token (the one that predicts the first answer token).
    Last,
    /// Explicit 0-based positions in the unpadded prompt.
    Indices(Vec<usize>),
}

impl FromStr for Positions {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "image" | "image-tokens" => Ok(Positions::ImageTokens),
            "all" => Ok(Positions::All),
            "last" => Ok(Positions::Last),
            _ => s
                .split(',')
                .map(|p| p.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .map(Positions::Indices)
                .map_err(|_| Error::Positions { spec: s.to_string() }),
        }
    }
}

/// What an intervention does to the selected activations `x` (one row per selected position, `[d_model]`).
/// All arithmetic is in f32, whatever the model's dtype; the result is cast back.
#[derive(Debug, Clone, PartialEq)]
pub enum InterventionOp {
    /// `x + alpha * vector`.
    Add { vector: Vec<f32>, alpha: f32 },
    /// Replace the component of `x` in the span of `basis` (orthonormal rows, `[k][d_model]`) by `target`
    /// (`[k]` coordinates in that basis): `x - B^T B x + B^T target`.
    Patch { basis: Vec<Vec<f32>>, target: Vec<f32> },
}

/// One change at one hook point, for one sample of the batch (or all of them).
#[derive(Debug, Clone, PartialEq)]
pub struct Intervention {
    pub point: HookPoint,
    pub positions: Positions,
    /// `None` = every sample in the batch; `Some(b)` = only batch row `b` (so one batch can hold a sweep of
    /// different alphas).
    pub sample: Option<usize>,
    pub op: InterventionOp,
}

/// How a captured `[pos, d_model]` sequence is reduced per sample before it leaves the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// Mean over the image tokens (f32 accumulation).
    ImageMean,
    /// The last prompt token.
    Last,
    /// Every token, unpooled (`[pos, d_model]` per sample).
    Tokens,
}

impl FromStr for Pooling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "image-mean" => Ok(Pooling::ImageMean),
            "last" => Ok(Pooling::Last),
            "tokens" => Ok(Pooling::Tokens),
            _ => Err(Error::Pooling { spec: s.to_string() }),
        }
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pooling::ImageMean => "image-mean",
            Pooling::Last => "last",
            Pooling::Tokens => "tokens",
        })
    }
}

/// What to capture in one forward pass, and what to change on the way.
#[derive(Debug, Clone, Default)]
pub struct HookSet {
    /// Points to capture. Captures see the activations *after* any intervention at the same point.
    pub capture: Vec<HookPoint>,
    pub interventions: Vec<Intervention>,
    /// Stop the forward pass once every captured and intervened point is computed: later decoder blocks, the
    /// final norm and the LM head are skipped and `Captures.logits` is `None`. Extraction sets it, so
    /// `--layers 0-12` of a 36-block model runs 12 of its blocks. Models that cannot stop early ignore it.
    pub stop_early: bool,
}

impl HookSet {
    pub fn capture(points: impl IntoIterator<Item = HookPoint>) -> Self {
        HookSet { capture: points.into_iter().collect(), ..HookSet::default() }
    }

    /// With [`HookSet::stop_early`]: the number of decoder blocks (of `n_blocks`) that must run before every
    /// captured or intervened point exists. `None` means the whole model (not stopping early, a hook on the
    /// final norm, or a point that is not a residual-stream point).
    pub fn blocks_needed(&self, n_blocks: usize) -> Option<usize> {
        if !self.stop_early {
            return None;
        }
        let points = self.capture.iter().chain(self.interventions.iter().map(|iv| &iv.point));
        let mut needed = 0;
        for point in points {
            let blocks = match *point {
                HookPoint::ResidPre(l) => l,
                HookPoint::ResidPost(l) | HookPoint::AttnOut(l) | HookPoint::ResidMid(l) | HookPoint::MlpOut(l) => {
                    l + 1
                }
                HookPoint::VisualPatchEmbed | HookPoint::VisualResidPost(_) | HookPoint::VisualMergerOut => 0,
                HookPoint::LnFinalOut | HookPoint::Named(_) => return None,
            };
            needed = needed.max(blocks);
        }
        (needed < n_blocks).then_some(needed)
    }

    pub fn wants(&self, point: &HookPoint) -> bool {
        self.capture.contains(point)
    }

    /// Whether any intervention that changes something is registered at `point`.
    pub fn intervenes_at(&self, point: &HookPoint) -> bool {
        self.active_at(point).next().is_some()
    }

    fn active_at<'a>(&'a self, point: &'a HookPoint) -> impl Iterator<Item = &'a Intervention> + 'a {
        self.interventions
            .iter()
            .filter(move |iv| &iv.point == point && !matches!(iv.op, InterventionOp::Add { alpha, .. } if alpha == 0.0))
    }

    /// Applies every intervention registered at `point` to `xs` (`[batch, pos, d_model]`, any float dtype).
    /// `selected(b, positions)` gives, for batch row `b`, the sequence positions a [`Positions`] selects.
    /// Returns `xs` itself (bit-identical) when nothing is registered at `point` or every op is a no-op
    /// (`alpha == 0`).
    pub fn apply(
        &self,
        point: &HookPoint,
        xs: &Tensor,
        selected: &dyn Fn(usize, &Positions) -> Vec<usize>,
    ) -> candle_core::Result<Tensor> {
        if !self.intervenes_at(point) {
            return Ok(xs.clone());
        }
        let (b_sz, seq_len, d_model) = xs.dims3()?;
        let rows = |b: usize, p: &Positions| -> candle_core::Result<Vec<usize>> {
            selected(b, p)
                .into_iter()
                .map(|p| {
                    if p >= seq_len {
                        candle_core::bail!("intervention position {p} is past the sequence length {seq_len}");
                    }
                    Ok(b * seq_len + p)
                })
                .collect()
        };
        self.apply_rows(point, &xs.reshape((b_sz * seq_len, d_model))?, b_sz, &rows)?.reshape((b_sz, seq_len, d_model))
    }

    /// [`HookSet::apply`] for activations laid out as rows `[n_rows, d_model]` shared by `n_samples` samples
    /// (the vision tower's patches of a batch): `rows_of(b, positions)` gives the rows of sample `b` selected.
    pub fn apply_rows(
        &self,
        point: &HookPoint,
        xs: &Tensor,
        n_samples: usize,
        rows_of: &dyn Fn(usize, &Positions) -> candle_core::Result<Vec<usize>>,
    ) -> candle_core::Result<Tensor> {
        if !self.intervenes_at(point) {
            return Ok(xs.clone());
        }
        let (n_rows, d_model) = xs.dims2()?;
        let dtype = xs.dtype();
        let mut delta = vec![0f32; n_rows * d_model];
        let x32: Vec<f32> = xs.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        for iv in self.active_at(point) {
            let samples: Vec<usize> = match iv.sample {
                Some(b) if b < n_samples => vec![b],
                Some(b) => candle_core::bail!("intervention for batch row {b}, but the batch has {n_samples} rows"),
                None => (0..n_samples).collect(),
            };
            for b in samples {
                for r in rows_of(b, &iv.positions)? {
                    if r >= n_rows {
                        candle_core::bail!("intervention row {r} is past the {n_rows} rows at `{point}`");
                    }
                    let off = r * d_model;
                    iv.op.delta(&x32[off..off + d_model], &mut delta[off..off + d_model])?;
                }
            }
        }
        let delta = Tensor::from_vec(delta, (n_rows, d_model), &Device::Cpu)?.to_device(xs.device())?;
        (xs.to_dtype(DType::F32)? + delta)?.to_dtype(dtype)
    }
}

impl InterventionOp {
    /// Adds this op's change for one activation row `x` into `out`.
    fn delta(&self, x: &[f32], out: &mut [f32]) -> candle_core::Result<()> {
        let d = x.len();
        match self {
            InterventionOp::Add { vector, alpha } => {
                if vector.len() != d {
                    candle_core::bail!("steering vector has width {}, the activation here {d}", vector.len());
                }
                for (o, v) in out.iter_mut().zip(vector) {
                    *o += alpha * v;
                }
            }
            InterventionOp::Patch { basis, target } => {
                if basis.len() != target.len() {
                    candle_core::bail!("patch basis has {} rows but {} target coordinates", basis.len(), target.len());
                }
                for (row, t) in basis.iter().zip(target) {
                    if row.len() != d {
                        candle_core::bail!("patch basis row has width {}, the activation here {d}", row.len());
                    }
                    let coord: f32 = row.iter().zip(x).map(|(r, xi)| r * xi).sum();
                    for (o, r) in out.iter_mut().zip(row) {
                        *o += (t - coord) * r;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_needed_counts_to_the_deepest_point_and_only_when_asked() {
        let mut hooks = HookSet::capture([HookPoint::ResidPre(0), HookPoint::ResidPost(4)]);
        assert_eq!(hooks.blocks_needed(36), None, "stop_early is off by default");
        hooks.stop_early = true;
        assert_eq!(hooks.blocks_needed(36), Some(5));
        assert_eq!(hooks.blocks_needed(5), None, "all five blocks is the whole model");
        hooks.interventions.push(Intervention {
            point: HookPoint::ResidPost(9),
            positions: Positions::All,
            sample: None,
            op: InterventionOp::Add { vector: vec![0.0], alpha: 1.0 },
        });
        assert_eq!(hooks.blocks_needed(36), Some(10));
        hooks.capture.push(HookPoint::LnFinalOut);
        assert_eq!(hooks.blocks_needed(36), None);
        let hooks = HookSet { stop_early: true, ..HookSet::capture([HookPoint::ResidPre(0)]) };
        assert_eq!(hooks.blocks_needed(36), Some(0), "the embeddings alone need no block");
    }

    #[test]
    fn hidden_state_indices_round_trip_through_hook_names() {
        let n_blocks = 36;
        for i in 0..=n_blocks {
            let hp = HookPoint::from_hidden_state_index(i, n_blocks).unwrap();
            assert_eq!(hp.hidden_state_index(n_blocks), Some(i), "{hp}");
            assert_eq!(hp.to_string().parse::<HookPoint>().unwrap(), hp);
        }
        assert_eq!(HookPoint::from_hidden_state_index(5, 36).unwrap().to_string(), "blocks.4.hook_resid_post");
        assert_eq!(HookPoint::from_hidden_state_index(36, 36).unwrap(), HookPoint::LnFinalOut);
        assert_eq!(HookPoint::ResidPost(35).hidden_state_index(36), None, "raw last block output is not an HF entry");
        assert_eq!("resid_post7".parse::<HookPoint>().unwrap(), HookPoint::ResidPost(7));
        assert!("Blocks.x".parse::<HookPoint>().is_err());
    }

    #[test]
    fn every_new_name_round_trips_and_orders_by_the_forward_pass() {
        let points = [
            HookPoint::VisualPatchEmbed,
            HookPoint::VisualResidPost(0),
            HookPoint::VisualResidPost(31),
            HookPoint::VisualMergerOut,
            HookPoint::ResidPre(0),
            HookPoint::AttnOut(0),
            HookPoint::ResidMid(0),
            HookPoint::MlpOut(0),
            HookPoint::ResidPost(0),
            HookPoint::AttnOut(1),
            HookPoint::ResidPost(35),
            HookPoint::LnFinalOut,
        ];
        for p in &points {
            assert_eq!(p.to_string().parse::<HookPoint>().unwrap(), *p, "{p}");
        }
        let mut shuffled = points.to_vec();
        shuffled.reverse();
        shuffled.sort_by_key(HookPoint::forward_order);
        assert_eq!(shuffled, points);
        assert_eq!("attn_out3".parse::<HookPoint>().unwrap(), HookPoint::AttnOut(3));
        assert_eq!(HookPoint::VisualMergerOut.component(), Component::Vision);
        assert_eq!(HookPoint::MlpOut(2).component(), Component::Language);
        assert!("visual.blocks.2.hook_attn_out".parse::<HookPoint>().is_err(), "not a vision point huescan has");
        assert!("visual.bottleneck".parse::<HookPoint>().is_err());
        assert!("blocks.1.hook_mlp_in".parse::<HookPoint>().is_err());
    }

    #[test]
    fn globs_select_by_name_in_model_order_and_a_miss_is_an_error() {
        let all = [
            HookPoint::ResidPre(0),
            HookPoint::ResidPost(0),
            HookPoint::LnFinalOut,
            HookPoint::VisualPatchEmbed,
            HookPoint::VisualResidPost(0),
            HookPoint::VisualResidPost(1),
            HookPoint::VisualMergerOut,
            HookPoint::AttnOut(0),
            HookPoint::MlpOut(1),
            HookPoint::ResidPost(1),
        ];
        let names = |pat: &str| select_points(pat, &all).unwrap().iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert_eq!(names("visual.blocks.*"), ["visual.blocks.0.hook_resid_post", "visual.blocks.1.hook_resid_post"]);
        assert_eq!(names("blocks.*.hook_resid_post"), ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]);
        assert_eq!(
            names("ln_final.hook_out, blocks.0.*"),
            ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "ln_final.hook_out", "blocks.0.hook_attn_out"]
        );
        assert_eq!(select_points("*", &all).unwrap().len(), all.len());
        assert_eq!(names("visual.*.hook_*").len(), 3, "`.hook_` after a dot: not the patch embedding");
        assert_eq!(
            names("visual.*"),
            [
                "visual.hook_patch_embed",
                "visual.blocks.0.hook_resid_post",
                "visual.blocks.1.hook_resid_post",
                "visual.merger.hook_out"
            ]
        );
        let err = select_points("visual.blocks.*,blocks.*.hook_z", &all).unwrap_err().to_string();
        assert!(err.contains("`blocks.*.hook_z` matches no hook point"), "{err}");
        assert!(select_points("blocks.0.hook_resid_post,", &all).is_err(), "an empty pattern is a typo");
        assert!(glob_match("blocks.1*", "blocks.10.hook_mlp_out") && !glob_match("blocks.1", "blocks.10"));
        assert!(glob_match("a*b*c", "a.x.b.y.c") && !glob_match("a*b*c", "a.x.c.b"));
    }

    #[test]
    fn apply_rows_touches_only_the_selected_rows_of_the_sample() {
        let xs = Tensor::new(&[[1f32, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]], &Device::Cpu).unwrap();
        let point = HookPoint::VisualResidPost(0);
        let mut hooks = HookSet::default();
        hooks.interventions.push(Intervention {
            point: point.clone(),
            positions: Positions::Indices(vec![1]),
            sample: Some(1),
            op: InterventionOp::Add { vector: vec![10.0, 20.0], alpha: 1.0 },
        });
        // Sample 0 owns rows 0..2, sample 1 rows 2..4.
        let rows = |b: usize, p: &Positions| match p {
            Positions::Indices(ix) => Ok(ix.iter().map(|i| 2 * b + i).collect()),
            _ => Ok((2 * b..2 * b + 2).collect()),
        };
        let out = hooks.apply_rows(&point, &xs, 2, &rows).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(out, vec![vec![1.0, 2.0], vec![3.0, 4.0], vec![5.0, 6.0], vec![17.0, 28.0]]);
        assert!(hooks.apply_rows(&point, &xs, 1, &rows).is_err(), "sample 1 of a batch of one");
    }

    #[test]
    fn alpha_zero_is_bit_identical_and_add_adds() {
        let xs = Tensor::new(&[[[1.5f32, -2.0], [0.25, 4.0]]], &Device::Cpu).unwrap();
        let point = HookPoint::ResidPost(0);
        let mut hooks = HookSet::default();
        hooks.interventions.push(Intervention {
            point: point.clone(),
            positions: Positions::Last,
            sample: None,
            op: InterventionOp::Add { vector: vec![1.0, 1.0], alpha: 0.0 },
        });
        let last = |_b: usize, _p: &Positions| vec![1usize];
        let same = hooks.apply(&point, &xs, &last).unwrap();
        assert_eq!(same.to_vec3::<f32>().unwrap(), xs.to_vec3::<f32>().unwrap());
        hooks.interventions[0].op = InterventionOp::Add { vector: vec![1.0, 1.0], alpha: 2.0 };
        let moved = hooks.apply(&point, &xs, &last).unwrap().to_vec3::<f32>().unwrap();
        assert_eq!(moved, vec![vec![vec![1.5, -2.0], vec![2.25, 6.0]]]);
    }

    #[test]
    fn patch_replaces_the_subspace_component() {
        let xs = Tensor::new(&[[[3.0f32, 4.0]]], &Device::Cpu).unwrap();
        let point = HookPoint::Named("bottleneck".into());
        let hooks = HookSet {
            capture: vec![],
            interventions: vec![Intervention {
                point: point.clone(),
                positions: Positions::All,
                sample: Some(0),
                op: InterventionOp::Patch { basis: vec![vec![1.0, 0.0]], target: vec![-1.0] },
            }],
            stop_early: false,
        };
        let out = hooks.apply(&point, &xs, &|_, _| vec![0]).unwrap().to_vec3::<f32>().unwrap();
        assert_eq!(out, vec![vec![vec![-1.0, 4.0]]]);
    }
}
