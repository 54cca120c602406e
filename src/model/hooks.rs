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
//! Steering "at block `l`" adds to `blocks.{l}.hook_resid_post`, the same place as `hidden_states[l + 1]`,
//! so the change is visible from index `l + 1` on and nowhere before.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device, Tensor};

use super::Error;

/// Written into every manifest and steering vector: how layer indices are to be read.
pub const LAYER_CONVENTION: &str =
    "hf_hidden_states: index 0 = blocks.0.hook_resid_pre (embeddings), index l+1 = blocks.l.hook_resid_post, index L = ln_final.hook_out";

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
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookPoint::ResidPre(l) => write!(f, "blocks.{l}.hook_resid_pre"),
            HookPoint::ResidPost(l) => write!(f, "blocks.{l}.hook_resid_post"),
            HookPoint::LnFinalOut => f.write_str("ln_final.hook_out"),
            HookPoint::Named(n) => f.write_str(n),
        }
    }
}

impl FromStr for HookPoint {
    type Err = Error;

    /// Accepts full names (`blocks.3.hook_resid_post`, `ln_final.hook_out`) and TransformerLens shorthand
    /// (`resid_post3`, `resid_pre0`); any other dotted lower-case name becomes [`HookPoint::Named`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || Error::HookName { name: s.to_string() };
        if s == "ln_final.hook_out" {
            return Ok(HookPoint::LnFinalOut);
        }
        if let Some(rest) = s.strip_prefix("blocks.") {
            let (num, hook) = rest.split_once('.').ok_or_else(bad)?;
            let l: usize = num.parse().map_err(|_| bad())?;
            return match hook {
                "hook_resid_pre" => Ok(HookPoint::ResidPre(l)),
                "hook_resid_post" => Ok(HookPoint::ResidPost(l)),
                _ => Err(bad()),
            };
        }
        for (prefix, make) in [
            ("resid_pre", HookPoint::ResidPre as fn(usize) -> HookPoint),
            ("resid_post", HookPoint::ResidPost as fn(usize) -> HookPoint),
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
                HookPoint::ResidPost(l) => l + 1,
                HookPoint::LnFinalOut | HookPoint::Named(_) => return None,
            };
            needed = needed.max(blocks);
        }
        (needed < n_blocks).then_some(needed)
    }

    pub fn wants(&self, point: &HookPoint) -> bool {
        self.capture.contains(point)
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
        let here: Vec<&Intervention> = self
            .interventions
            .iter()
            .filter(|iv| &iv.point == point && !matches!(iv.op, InterventionOp::Add { alpha, .. } if alpha == 0.0))
            .collect();
        if here.is_empty() {
            return Ok(xs.clone());
        }
        let (b_sz, seq_len, d_model) = xs.dims3()?;
        let dtype = xs.dtype();
        let mut delta = vec![0f32; b_sz * seq_len * d_model];
        let x32: Vec<f32> = xs.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        for iv in here {
            let rows: Vec<usize> = match iv.sample {
                Some(b) if b < b_sz => vec![b],
                Some(b) => candle_core::bail!("intervention for batch row {b}, but the batch has {b_sz} rows"),
                None => (0..b_sz).collect(),
            };
            for b in rows {
                for p in selected(b, &iv.positions) {
                    if p >= seq_len {
                        candle_core::bail!("intervention position {p} is past the sequence length {seq_len}");
                    }
                    let off = (b * seq_len + p) * d_model;
                    let x = &x32[off..off + d_model];
                    let out = &mut delta[off..off + d_model];
                    iv.op.delta(x, out)?;
                }
            }
        }
        let delta = Tensor::from_vec(delta, (b_sz, seq_len, d_model), &Device::Cpu)?.to_device(xs.device())?;
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
                    candle_core::bail!("steering vector has width {}, the model's residual stream {d}", vector.len());
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
                        candle_core::bail!("patch basis row has width {}, the model's residual stream {d}", row.len());
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
