//! A steering vector and its recipe, saved as safetensors: one F32 tensor `direction` `[d_model]`, and in
//! `__metadata__` every recipe field as its own key (readable by any safetensors tool) plus the whole recipe as
//! JSON under `huescan.recipe` (what [`SteeringVector::load`] reads).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::Error;
use crate::store::{serialize_f32, F32Tensor, MappedFile};

/// The `format` metadata value of a steering-vector file.
pub const FORMAT: &str = "huescan-steering-vector";
/// Name of the tensor inside the file.
pub const TENSOR: &str = "direction";

/// How a direction was made (`--direction` spells it as the kebab-case name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DirectionKind {
    /// Mean of the target-hue samples minus mean of the source-hue samples.
    Centroid,
    /// Rotation of the source centroid along the fitted SMDS circle, lifted back to the activations ([`Lift`]).
    #[value(
        help = "Rotation of the source centroid along the fitted SMDS circle, lifted back to the activations (--lift)"
    )]
    Manifold,
    /// Seeded Gaussian direction with the norm of the centroid direction: the control.
    Random,
}

impl DirectionKind {
    pub const ALL: [DirectionKind; 3] = [DirectionKind::Centroid, DirectionKind::Manifold, DirectionKind::Random];
    pub fn as_str(self) -> &'static str {
        match self {
            DirectionKind::Centroid => "centroid",
            DirectionKind::Manifold => "manifold",
            DirectionKind::Random => "random",
        }
    }
}

impl fmt::Display for DirectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DirectionKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        DirectionKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::Msg(format!("unknown direction `{s}`: expected centroid, manifold or random")))
    }
}

/// How a move of the fitted circle coordinates $z = W (x - \bar x)$ is carried back to the activations
/// (manifold rotations). The two linear lifts move the fitted coordinates exactly by the rotation ($W L = I$);
/// they differ in what else in $x$ moves. The local-mean lift follows the samples themselves around the circle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Lift {
    /// The activation pattern $A = \mathrm{Cov}(x) W^\top \mathrm{Cov}(z)^{-1}$, the least-squares regression
    /// of the centred activations on $z$: the change of $x$ that the data go with when $z$ moves (Haufe et al.
    /// 2014, patterns vs filters): a decoder's rows ($W$) are filters that pick high-gain, noise-cancelling
    /// directions, so a change along them is one the model need not read. The default until 2026-12-03.
    #[value(help = "The activation pattern: the change of the activations that the data go with along the circle")]
    Pattern,
    /// The minimum-norm change $W^+ = W^\top (W W^\top)^{-1}$, along the rows of $W$ only.
    #[value(help = "The minimum-norm change (the pseudo-inverse of the SMDS map), along its filter rows only")]
    MinNorm,
    /// The kernel-weighted local mean of the activations along the samples' fitted angles (von Mises kernel,
    /// bandwidth in [`Recipe::kernel_bandwidth_rad`]): the step from the source's local mean to the local mean
    /// at the rotated angle, through the intermediate hues' means (see [`crate::steer::direction`]). The
    /// default: the only lift whose rotation turns the trained test VLM's answer in its decoder (README).
    #[default]
    #[value(help = "The default. From the source's kernel-weighted mean of the activations to the mean at the \
                    rotated fitted angle, through the intermediate hues' means")]
    LocalMean,
}

impl Lift {
    pub const ALL: [Lift; 3] = [Lift::Pattern, Lift::MinNorm, Lift::LocalMean];
    pub fn as_str(self) -> &'static str {
        match self {
            Lift::Pattern => "pattern",
            Lift::MinNorm => "min-norm",
            Lift::LocalMean => "local-mean",
        }
    }
}

impl fmt::Display for Lift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Lift {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Lift::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::Msg(format!("unknown lift `{s}`: expected pattern, min-norm or local-mean")))
    }
}

/// How the vector was scaled after it was built. The default (`--normalise`'s) is raw, so alpha 1 moves the
/// source centroid onto the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Normalisation {
    /// Raw residual-stream units: alpha = 1 moves the source centroid onto the target (centroid, manifold).
    #[default]
    None,
    /// Unit L2 norm: alpha is in residual-stream units.
    Unit,
}

impl FromStr for Normalisation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "none" => Ok(Normalisation::None),
            "unit" => Ok(Normalisation::Unit),
            _ => Err(Error::Msg(format!("unknown normalisation `{s}`: expected none or unit"))),
        }
    }
}

/// Everything needed to rebuild or reuse a steering vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub kind: DirectionKind,
    /// Layer index in the model's hook-point list (HF `hidden_states` index for decoders).
    pub layer_index: usize,
    /// Hook name of that layer, e.g. `blocks.4.hook_resid_post`.
    pub hook: String,
    /// How layer indices are read (the store's `layer_convention`).
    pub layer_convention: String,
    /// Token positions the vector is added at: `image`, `all`, `last` or `i,j,…`.
    pub positions: String,
    pub normalisation: Normalisation,
    pub source_hue_deg: f64,
    pub target_hue_deg: f64,
    pub model_id: String,
    pub model_revision: Option<String>,
    /// The store's checkpoint fingerprints (weights, tokenizer, preprocessor config); empty for stores that
    /// predate them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_files_sha256: BTreeMap<String, String>,
    /// How the store pooled each sample (`image-mean`, `last`); the direction lives in that space.
    pub pooling: String,
    /// The stimulus set the store was extracted from, and the SHA-256 recorded for it.
    pub stimuli_name: String,
    pub stimuli_sha256: String,
    /// Samples averaged for the source and the target centroid.
    pub n_source: usize,
    pub n_target: usize,
    /// L2 norm of the saved vector.
    pub norm: f64,
    /// Random control: the seed.
    pub seed: Option<u64>,
    /// Manifold rotation: the angle (radians) moved on the fitted circle at alpha = 1, and the SMDS ridge alpha.
    pub delta_theta_rad: Option<f64>,
    pub smds_alpha: Option<f64>,
    /// Manifold rotation: how the rotation was lifted back to the activations. Absent in files written before
    /// the choice existed, which all used [`Lift::MinNorm`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lift: Option<Lift>,
    /// Manifold rotation with [`Lift::LocalMean`]: the kernel bandwidth $\sigma$ in radians of fitted angle (the
    /// von Mises concentration is $\kappa = 1/\sigma^2$). Absent for the other lifts and in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_bandwidth_rad: Option<f64>,
    /// The same point in transformers (module path and which input/output), when the store recorded one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

impl Recipe {
    /// The file name of the vector without extension, one per (layer, pair, kind) of a sweep:
    /// `L{layer index:03}_{source}-{target}_{kind}`, e.g. `L002_240-0_manifold`.
    pub fn file_stem(&self) -> String {
        format!("L{:03}_{}-{}_{}", self.layer_index, self.source_hue_deg, self.target_hue_deg, self.kind)
    }
}

/// A direction in a model's residual stream (or any hook point) with its recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct SteeringVector {
    /// `[d_model]`.
    pub vector: Vec<f32>,
    pub recipe: Recipe,
}

impl SteeringVector {
    pub fn d_model(&self) -> usize {
        self.vector.len()
    }

    /// The metadata written next to the tensor: each field as a string, plus the JSON recipe.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        let r = &self.recipe;
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("format", FORMAT.into());
        put("huescan.recipe", serde_json::to_string(r).expect("plain data"));
        put("kind", r.kind.to_string());
        put("layer_index", r.layer_index.to_string());
        put("hook", r.hook.clone());
        put("layer_convention", r.layer_convention.clone());
        put("positions", r.positions.clone());
        put("normalisation", serde_json::to_value(r.normalisation).expect("enum").as_str().unwrap_or("").into());
        put("source_hue_deg", r.source_hue_deg.to_string());
        put("target_hue_deg", r.target_hue_deg.to_string());
        put("model_id", r.model_id.clone());
        put("model_revision", r.model_revision.clone().unwrap_or_default());
        if let Some(w) = r.model_files_sha256.get("weights") {
            put("model_weights_sha256", w.clone());
        }
        put("pooling", r.pooling.clone());
        put("stimuli_name", r.stimuli_name.clone());
        put("stimuli_sha256", r.stimuli_sha256.clone());
        put("d_model", self.vector.len().to_string());
        if let Some(lift) = r.lift {
            put("lift", lift.to_string());
        }
        if let Some(b) = r.kernel_bandwidth_rad {
            put("kernel_bandwidth_rad", b.to_string());
        }
        if let Some(module) = &r.module {
            put("module", module.clone());
        }
        if let Ok(point) = r.hook.parse::<crate::model::HookPoint>() {
            put("component", point.component().as_str().into());
        }
        m
    }

    /// Writes the vector (atomically) to `path`.
    pub fn save(&self, path: &Path) -> crate::steer::Result<()> {
        let shape = [self.vector.len()];
        let bytes = serialize_f32(&[F32Tensor { name: TENSOR, shape: &shape, data: &self.vector }], &self.metadata());
        Ok(crate::fsx::write_atomic(path, &bytes)?)
    }

    /// Reads a file written by [`SteeringVector::save`].
    pub fn load(path: &Path) -> crate::steer::Result<Self> {
        let bad = |msg: String| Error::VectorFile { path: path.to_path_buf(), msg };
        let file = MappedFile::open(path)?;
        let meta = file.metadata()?;
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!("metadata `format` is not `{FORMAT}`; this is not a huescan steering vector")));
        }
        let json = meta.get("huescan.recipe").ok_or_else(|| bad("has no `huescan.recipe` metadata".into()))?;
        let recipe: Recipe = serde_json::from_str(json).map_err(|e| bad(format!("unreadable recipe ({e})")))?;
        let (shape, vector) = file.read_f32(TENSOR)?;
        if shape.len() != 1 {
            return Err(bad(format!("tensor `{TENSOR}` has shape {shape:?}, expected [d_model]")));
        }
        Ok(SteeringVector { vector, recipe })
    }
}

/// `image`, `all`, `last` or `i,j`: the spelling `Positions::from_str` reads back.
pub fn positions_spec(p: &crate::model::Positions) -> String {
    use crate::model::Positions;
    match p {
        Positions::ImageTokens => "image".into(),
        Positions::All => "all".into(),
        Positions::Last => "last".into(),
        Positions::Indices(ix) => ix.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","),
    }
}
