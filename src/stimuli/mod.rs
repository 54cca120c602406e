//! Stimulus sets: TOML specs (`stimuli/*.toml`), rendering them to `hue_XXX[_vN].png` files plus
//! `stimuli.json`; the colour maths is [`crate::colour`].
//!
//! Kinds: flat HSV squares (the seed notebook's "full_simple"), flat OKLCH squares at fixed lightness and
//! chroma (hue separated from brightness), procedural textures (the notebook's "wild_textured") and the
//! user's photographs hue-rotated to each label. A leaf module: it knows nothing of models.
//!
//! ```no_run
//! use huescan::stimuli::{render, RenderOptions, StimulusSpec};
//! let spec = StimulusSpec::resolve("simple-60")?; // a bundled name or a path to a .toml
//! let manifest = render(&spec, "out/simple-60".as_ref(), &RenderOptions::default())?;
//! assert_eq!(manifest.stimuli.len(), 60);
//! # Ok::<(), huescan::Error>(())
//! ```

use std::path::{Path, PathBuf};

pub mod manifest;
pub mod render;
pub mod spec;
pub mod text;
mod texture;

pub use manifest::{StimulusManifest, StimulusRecord, MANIFEST_FILE};
pub use render::{render, RenderOptions, Stimulus};
pub use spec::{check_set_name, Family, HoldOut, HueGrid, Kind, StimulusSpec, TexturedParams};
pub use text::{TextPrompt, TextPromptSet};

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of stimulus specs, rendering and stimulus manifests.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TOML does not parse or does not match the spec schema (unknown keys, wrong types, missing keys).
    #[error("cannot parse stimulus spec `{path}`: {message}")]
    SpecParse { path: PathBuf, message: String },
    /// A value parses but is not allowed.
    #[error("invalid stimulus spec `{path}`: `{field}`: {message}")]
    SpecInvalid { path: PathBuf, field: &'static str, message: String },
    /// A flat OKLCH colour that sRGB cannot show.
    #[error(
        "invalid stimulus spec `{path}`: oklch(l = {lightness}, c = {chroma}) at hue {hue_deg} degrees is outside \
         the srgb gamut; lower `flat-oklch.chroma` (at l = 0.75 every hue fits up to c = 0.125)"
    )]
    OutOfGamut { path: PathBuf, lightness: f64, chroma: f64, hue_deg: f64 },
    /// Neither a spec file nor a bundled spec name.
    #[error("no stimulus spec `{name}`: not a file, and not a bundled set (bundled: {known})")]
    UnknownSpec { name: String, known: String },
    #[error("{}", match path {
        Some(p) => format!("photo directory `{}` does not exist; pass an existing folder of .png/.jpg files with --photos", p.display()),
        None => "a photo set needs a folder of photos: set `[photo] dir` in the spec or pass --photos DIR".to_string(),
    })]
    PhotoDirMissing { path: Option<PathBuf> },
    #[error("photo directory `{dir}` holds no .png, .jpg or .jpeg files")]
    NoPhotos { dir: PathBuf },
    #[error("cannot decode photo `{path}`: {message}")]
    PhotoUnreadable { path: PathBuf, message: String },
    #[error(
        "photo `{path}` has no chromatic pixels (hsv s >= {} and v >= {}), so it has no hue to rotate; \
         remove it from the photo folder",
        crate::colour::CHROMATIC.min_s,
        crate::colour::CHROMATIC.min_v
    )]
    PhotoAchromatic { path: PathBuf },
    #[error(
        "photo `{path}` has no dominant hue: its chromatic hues spread round the circle (mean resultant length \
         {r:.3} < {min}), so a hue label would mean nothing; use photos with one main colour"
    )]
    PhotoNoDominantHue { path: PathBuf, r: f64, min: f64 },
    /// A rendered image without chromatic pixels (a bug or a degenerate spec).
    #[error("rendered stimulus `{id}` has no chromatic pixels, so its hue cannot be measured")]
    Achromatic { id: String },
    #[error(
        "output folder `{dir}` already holds `{file}`, which this stimulus set does not write; render into an \
         empty folder so two sets never mix"
    )]
    OutDirInUse { dir: PathBuf, file: String },
    #[error("invalid stimulus manifest `{path}`: {message}")]
    ManifestInvalid { path: PathBuf, message: String },
    #[error("stimulus file `{path}` has sha256 {got}, but stimuli.json records {expected}; re-render the set")]
    ChecksumMismatch { path: PathBuf, expected: String, got: String },
    #[error(transparent)]
    Fs(#[from] crate::fsx::Error),
}

/// A spec shipped with huescan (the files in `stimuli/`, embedded in the binary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundledSpec {
    pub name: &'static str,
    /// Path relative to the repository root, e.g. `stimuli/simple-60.toml`.
    pub path: &'static str,
    pub toml: &'static str,
}

impl BundledSpec {
    /// The spec's `description`.
    pub fn description(&self) -> String {
        self.spec().map(|s| s.description).unwrap_or_default()
    }

    pub fn spec(&self) -> Result<StimulusSpec, Error> {
        StimulusSpec::from_toml_str(self.toml, Path::new(self.path))
    }
}

macro_rules! bundled_spec {
    ($name:literal) => {
        BundledSpec {
            name: $name,
            path: concat!("stimuli/", $name, ".toml"),
            toml: include_str!(concat!("../../stimuli/", $name, ".toml")),
        }
    };
}

/// The bundled stimulus sets, in a fixed order.
pub fn bundled() -> Vec<BundledSpec> {
    vec![
        bundled_spec!("simple-60"),
        bundled_spec!("wild-360"),
        bundled_spec!("gap-teal-blue"),
        bundled_spec!("oklch-72"),
        bundled_spec!("photo-36"),
    ]
}

impl StimulusSpec {
    /// Reads and validates a spec file.
    pub fn from_path(path: &Path) -> Result<StimulusSpec> {
        let text = crate::fsx::read_to_string(path)?;
        StimulusSpec::from_toml_str(&text, path)
    }

    /// A spec file path if `name_or_path` is a file, otherwise a bundled set by name (`simple-60`), so
    /// `huescan stimuli render simple-60` works from any directory.
    pub fn resolve(name_or_path: &str) -> Result<StimulusSpec> {
        let path = Path::new(name_or_path);
        if path.is_file() {
            return StimulusSpec::from_path(path);
        }
        let stem = name_or_path.strip_prefix("stimuli/").unwrap_or(name_or_path);
        let stem = stem.strip_suffix(".toml").unwrap_or(stem);
        let all = bundled();
        match all.iter().find(|b| b.name == stem) {
            Some(b) => Ok(b.spec()?),
            None => Err(Error::UnknownSpec {
                name: name_or_path.to_string(),
                known: all.iter().map(|b| b.name).collect::<Vec<_>>().join(", "),
            }),
        }
    }
}
