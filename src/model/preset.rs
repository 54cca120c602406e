//! Model presets (`models/*.toml`): a short name for a checkpoint and the settings it is usually run with,
//! so `--model qwen2.5-vl-3b` works. The presets are compiled in, so the binary needs no repo checkout.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::Error;

/// Which runner a preset (or checkpoint) needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// `Qwen2_5_VLForConditionalGeneration`.
    Qwen2_5Vl,
    /// The seed-003 colour autoencoder.
    Autoencoder,
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

const BUNDLED: &[(&str, &str)] = &[
    ("qwen2.5-vl-3b", include_str!("../../models/qwen2.5-vl-3b.toml")),
    ("qwen2.5-vl-7b", include_str!("../../models/qwen2.5-vl-7b.toml")),
    ("qwen-tiny-random", include_str!("../../models/qwen-tiny-random.toml")),
    ("qwen-colour", include_str!("../../models/qwen-colour.toml")),
    ("colour-autoencoder", include_str!("../../models/colour-autoencoder.toml")),
];

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
    match (preset.kind, &preset.repo, &preset.path) {
        (ModelKind::Qwen2_5Vl, None, None) => return bad("a qwen2_5_vl preset needs `repo` or `path`"),
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
    }
}
