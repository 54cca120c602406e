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

use candle_core::{DType, Tensor};

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

/// How a captured `[pos, d_model]` sequence is reduced per sample before it leaves the model. The default
/// (`--pool`'s, for image sets) is the image-token mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// Mean over the image tokens (f32 accumulation).
    #[default]
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
    /// Qwen2.5-VL with `image-mean` pooling also stops each prompt after its last image token.
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
    ///
    /// Everything runs on `xs`'s device: the change is built in f32 there (a gather of the selected rows, the
    /// op's per-row change, a scatter-add at those rows), added in f32 and cast back to `xs`'s dtype, the
    /// arithmetic the host version did, in its order. Only the row indices and the op's parameters (a steering
    /// vector, a patch basis) travel from the host; no activation leaves the device. On the CPU `Add` is
    /// bit-identical to the host version; `Patch` projects with a matmul, whose summation order differs from a
    /// sequential dot product in the last bits (~1e-7 relative).
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
        let device = xs.device();
        let x32 = xs.to_dtype(DType::F32)?;
        // Every op's change is computed against the incoming activations and summed, as the ops were defined
        // on the host; summing into a separate delta keeps several ops at one row in that rounding order.
        let mut delta: Option<Tensor> = None;
        for iv in self.active_at(point) {
            let samples: Vec<usize> = match iv.sample {
                Some(b) if b < n_samples => vec![b],
                Some(b) => candle_core::bail!("intervention for batch row {b}, but the batch has {n_samples} rows"),
                None => (0..n_samples).collect(),
            };
            let mut rows = Vec::new();
            for b in samples {
                for r in rows_of(b, &iv.positions)? {
                    if r >= n_rows {
                        candle_core::bail!("intervention row {r} is past the {n_rows} rows at `{point}`");
                    }
                    rows.push(r as u32);
                }
            }
            if rows.is_empty() {
                continue;
            }
            let n = rows.len();
            let ids = Tensor::from_vec(rows, n, device)?;
            let change = iv.op.rows_delta(&x32, &ids, d_model)?;
            let acc = match delta.take() {
                Some(acc) => acc,
                None => Tensor::zeros((n_rows, d_model), DType::F32, device)?,
            };
            delta = Some(acc.index_add(&ids, &change, 0)?);
        }
        match delta {
            Some(delta) => (x32 + delta)?.to_dtype(xs.dtype()),
            None => Ok(xs.clone()),
        }
    }
}

impl InterventionOp {
    /// This op's change `[n, d_model]` f32 for the rows `ids` of `x32` (`[n_rows, d_model]` f32), on `x32`'s
    /// device. Rows may repeat (the caller scatter-adds them).
    fn rows_delta(&self, x32: &Tensor, ids: &Tensor, d: usize) -> candle_core::Result<Tensor> {
        let device = x32.device();
        let n = ids.dims1()?;
        match self {
            InterventionOp::Add { vector, alpha } => {
                if vector.len() != d {
                    candle_core::bail!("steering vector has width {}, the activation here {d}", vector.len());
                }
                // `alpha * v` rounded in f32 on the host, as the host version added it.
                let step: Vec<f32> = vector.iter().map(|v| alpha * v).collect();
                Tensor::from_vec(step, (1, d), device)?.broadcast_as((n, d))?.contiguous()
            }
            InterventionOp::Patch { basis, target } => {
                if basis.len() != target.len() {
                    candle_core::bail!("patch basis has {} rows but {} target coordinates", basis.len(), target.len());
                }
                if let Some(row) = basis.iter().find(|row| row.len() != d) {
                    candle_core::bail!("patch basis row has width {}, the activation here {d}", row.len());
                }
                let k = basis.len();
                if k == 0 {
                    return Tensor::zeros((n, d), DType::F32, device);
                }
                let b = Tensor::from_vec(basis.concat(), (k, d), device)?;
                let t = Tensor::from_vec(target.clone(), (1, k), device)?;
                // x - B^T B x + B^T t = x + (t - B x) B, per selected row.
                let coords = x32.index_select(ids, 0)?.matmul(&b.t()?)?;
                t.broadcast_sub(&coords)?.matmul(&b)
            }
        }
    }
}

#[cfg(test)]
mod tests;
