//! Model presets (`models/*.toml`): a short name for a checkpoint and the settings it is usually run with,
//! so `--model qwen2.5-vl-3b` works. The presets are compiled in, so the binary needs no repo checkout.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::Error;

/// Which runner a preset needs: `kind = "autoencoder"`, or the `model_type` of a model family in the
/// registry (`qwen2_5_vl`, ...), which the checkpoint's config.json must then match.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum ModelKind {
    /// The seed-003 colour autoencoder.
    Autoencoder,
    /// A checkpoint of the family with this `model_type`.
    Checkpoint(String),
}

impl From<String> for ModelKind {
    fn from(s: String) -> Self {
        if s == "autoencoder" {
            ModelKind::Autoencoder
        } else {
            ModelKind::Checkpoint(s)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub name: String,
    pub description: String,
    pub kind: ModelKind,
    /// Hub repo id (`org/name`).
    pub repo: Option<String>,
    /// Local checkpoint directory, relative to the working directory or to the huescan source tree.
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub revision: Option<String>,
    /// `f32`, `bf16` or `f16`.
    #[serde(default)]
    pub dtype: Option<String>,
    #[serde(default)]
    pub max_pixels: Option<usize>,
    #[serde(default)]
    pub prompt: Option<String>,
    /// Training seed (autoencoder).
    #[serde(default)]
    pub seed: Option<u64>,
    /// For checkpoints without a tokenizer (the random-weight fixture): the prompt as token ids before and
    /// after the image-pad run (vision start/end included).
    #[serde(default)]
    pub prompt_prefix_ids: Option<Vec<u32>>,
    #[serde(default)]
    pub prompt_suffix_ids: Option<Vec<u32>>,
    /// What the published checkpoint holds, for `scan --dry-run` before anything is downloaded: decoder
    /// blocks, residual width and weights size in GB at the preset's dtype.
    #[serde(default)]
    pub expect_blocks: Option<u64>,
    #[serde(default)]
    pub expect_d_model: Option<u64>,
    #[serde(default)]
    pub expect_weights_gb: Option<f64>,
}

/// `(name, text)` of every `models/*.toml`, sorted by name (written by build.rs).
const BUNDLED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/presets.rs"));

/// Every bundled preset.
pub fn bundled() -> Vec<Preset> {
    BUNDLED.iter().map(|(name, text)| parse(name, text).expect("bundled presets are tested")).collect()
}

/// The bundled preset called `name`.
pub fn find(name: &str) -> Option<Preset> {
    bundled().into_iter().find(|p| p.name == name)
}

/// Parses and checks a preset file's text.
pub fn parse(origin: &str, text: &str) -> Result<Preset, Error> {
    let preset: Preset = toml::from_str(text)
        .map_err(|e| Error::Config { path: PathBuf::from(origin), msg: format!("invalid preset: {e}") })?;
    let bad = |msg: &str| Err(Error::Config { path: PathBuf::from(origin), msg: msg.to_string() });
    if let ModelKind::Checkpoint(kind) = &preset.kind {
        if crate::model::registry::by_model_type(kind).is_none() {
            let known: Vec<&str> = crate::model::FAMILIES.iter().map(|f| f.model_type()).collect();
            return bad(&format!(
                "kind `{kind}` is not `autoencoder` or a model family huescan runs ({})",
                known.join(", ")
            ));
        }
    }
    match (&preset.kind, &preset.repo, &preset.path) {
        (ModelKind::Checkpoint(kind), None, None) => return bad(&format!("a {kind} preset needs `repo` or `path`")),
        (_, Some(_), Some(_)) => return bad("give `repo` or `path`, not both"),
        _ => {}
    }
    if let Some(d) = &preset.dtype {
        if !matches!(d.as_str(), "f32" | "bf16" | "f16") {
            return bad("`dtype` must be f32, bf16 or f16");
        }
    }
    Ok(preset)
}

impl Preset {
    /// The local directory of a `path` preset: as given if it exists from the working directory, else
    /// relative to the source tree huescan was built from (so tests and a clone's `cargo run` find fixtures).
    pub fn local_dir(&self) -> Option<PathBuf> {
        let p = self.path.as_ref()?;
        if p.is_absolute() || p.exists() {
            return Some(p.clone());
        }
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundled_preset_parses_and_is_named_like_its_file() {
        for (file, text) in BUNDLED {
            let p = parse(file, text).unwrap();
            assert_eq!(&p.name, file);
        }
        assert_eq!(find("qwen2.5-vl-3b").unwrap().repo.as_deref(), Some("Qwen/Qwen2.5-VL-3B-Instruct"));
        assert!(find("nope").is_none());
    }

    #[test]
    fn bad_presets_are_explained() {
        let err = parse("x.toml", "name='x'\ndescription=''\nkind='qwen2_5_vl'").unwrap_err().to_string();
        assert!(err.contains("needs `repo` or `path`"), "{err}");
        let err =
            parse("x.toml", "name='x'\ndescription=''\nkind='autoencoder'\ncolour='red'").unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
        let err = parse("x.toml", "name='x'\ndescription=''\nkind='qwen2_5_vl'\nrepo='a/b'\ndtype='f64'")
            .unwrap_err()
            .to_string();
        assert!(err.contains("dtype"), "{err}");
        let err = parse("x.toml", "name='x'\ndescription=''\nkind='llama'\nrepo='a/b'").unwrap_err().to_string();
        assert!(err.contains("`llama`") && err.contains("qwen2_5_vl"), "{err}");
    }
}
