//! `stimuli.json`: what a rendered stimulus folder holds, with the hash of every PNG so later stages (and
//! other people) can check they are looking at the same images.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Error;
use crate::fsx;

/// The value of `format` in every `stimuli.json` this version writes and accepts.
pub const MANIFEST_FORMAT: &str = "huescan-stimuli/1";
/// The manifest's file name inside a stimulus folder.
pub const MANIFEST_FILE: &str = "stimuli.json";

/// The contents of `stimuli.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StimulusManifest {
    pub format: String,
    pub spec_name: String,
    /// SHA-256 of the spec's TOML text.
    pub spec_sha256: String,
    /// `flat-hsv`, `flat-oklch`, `textured` or `photo`.
    pub kind: String,
    pub width: u32,
    pub height: u32,
    /// The chromatic-pixel rule behind the measured hues: HSV `s >= min_s` and `v >= min_v`.
    pub chromatic_min_s: f64,
    pub chromatic_min_v: f64,
    /// Ordered by hue, then variant.
    pub stimuli: Vec<StimulusRecord>,
}

/// One rendered image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StimulusRecord {
    /// The file stem, e.g. `hue_012` or `hue_012_v3`; unique within the set.
    pub id: String,
    /// File name inside the stimulus folder.
    pub file: String,
    /// The label: the target hue in degrees (HSV hue for HSV and textured/photo sets, OKLCH hue for OKLCH sets).
    pub hue_deg: f64,
    /// Measured from the written pixels: circular mean HSV hue of the chromatic pixels.
    pub hsv_hue_deg: f64,
    /// Measured from the written pixels: chroma-weighted circular mean OKLCH hue of the chromatic pixels.
    pub oklch_hue_deg: f64,
    /// Measured: mean OKLab lightness and mean OKLCH chroma over all pixels (covariates a hue probe must not
    /// be confused by).
    pub oklch_l: f64,
    pub oklch_c: f64,
    /// Fraction of pixels that are chromatic.
    pub chromatic_fraction: f64,
    pub variant: u32,
    /// The image's own seed, derived from (spec seed, hue, variant); rendering from it alone reproduces it.
    pub seed: u64,
    /// The same seed as a decimal string: seeds go up to 2^64, and JSON readers that parse numbers as doubles
    /// (JavaScript, jq, pandas by default) round those above 2^53. Absent in sets rendered before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub seed_string: String,
    /// Lower-case hex SHA-256 of the PNG file.
    pub sha256: String,
    /// Photo sets only: the source photo's file name and SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sha256: Option<String>,
}

impl StimulusRecord {
    /// The image's path inside the stimulus folder `dir`.
    pub fn path(&self, dir: &Path) -> std::path::PathBuf {
        dir.join(&self.file)
    }
}

impl StimulusManifest {
    /// Writes `dir/stimuli.json` atomically.
    pub fn write(&self, dir: &Path) -> crate::stimuli::Result<()> {
        Ok(fsx::write_json(&dir.join(MANIFEST_FILE), self)?)
    }

    /// Reads `dir/stimuli.json`, checks its structure (format, unique ids and files, plain file names, hues in
    /// `[0, 360)`), and checks that every listed PNG exists with the recorded SHA-256.
    pub fn load(dir: &Path) -> crate::stimuli::Result<StimulusManifest> {
        let path = dir.join(MANIFEST_FILE);
        let m: StimulusManifest = fsx::read_json(&path)?;
        m.check_structure(&path)?;
        for rec in &m.stimuli {
            let file = dir.join(&rec.file);
            if !file.is_file() {
                return Err(invalid(
                    &path,
                    format!("stimulus `{}` lists `{}`, which does not exist", rec.id, rec.file),
                ));
            }
            let got = fsx::sha256_file(&file)?;
            if got != rec.sha256 {
                return Err(Error::ChecksumMismatch { path: file, expected: rec.sha256.clone(), got });
            }
        }
        Ok(m)
    }

    fn check_structure(&self, path: &Path) -> Result<(), Error> {
        if self.format != MANIFEST_FORMAT {
            return Err(invalid(
                path,
                format!(
                    "format is {:?}, expected {MANIFEST_FORMAT:?}; re-render the set with this huescan",
                    self.format
                ),
            ));
        }
        if self.stimuli.is_empty() {
            return Err(invalid(path, "the manifest lists no stimuli".into()));
        }
        super::check_set_name(&self.spec_name).map_err(|msg| invalid(path, format!("spec_name: {msg}")))?;
        if let Some(r) = self.stimuli.iter().find(|r| !r.seed_string.is_empty() && r.seed_string != r.seed.to_string())
        {
            return Err(invalid(
                path,
                format!("stimulus `{}` has seed {} but seed_string `{}`", r.id, r.seed, r.seed_string),
            ));
        }
        let mut ids = HashSet::new();
        let mut files = HashSet::new();
        for rec in &self.stimuli {
            if !ids.insert(rec.id.as_str()) {
                return Err(invalid(path, format!("stimulus id `{}` appears twice", rec.id)));
            }
            if !files.insert(rec.file.as_str()) {
                return Err(invalid(path, format!("file `{}` appears twice", rec.file)));
            }
            let plain = !rec.file.is_empty()
                && !rec.file.starts_with('.')
                && !rec.file.contains(['/', '\\'])
                && rec.file.ends_with(".png");
            if !plain {
                return Err(invalid(path, format!("file `{}` is not a plain `.png` name inside the folder", rec.file)));
            }
            for (name, deg) in
                [("hue_deg", rec.hue_deg), ("hsv_hue_deg", rec.hsv_hue_deg), ("oklch_hue_deg", rec.oklch_hue_deg)]
            {
                if !(deg.is_finite() && (0.0..360.0).contains(&deg)) {
                    return Err(invalid(path, format!("stimulus `{}` has {name} = {deg}, expected [0, 360)", rec.id)));
                }
            }
            if rec.sha256.len() != 64 || !rec.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(path, format!("stimulus `{}` has a malformed sha256", rec.id)));
            }
        }
        Ok(())
    }

    /// The labels in manifest order, in degrees.
    pub fn hues_deg(&self) -> Vec<f64> {
        self.stimuli.iter().map(|s| s.hue_deg).collect()
    }
}

fn invalid(path: &Path, message: String) -> Error {
    Error::ManifestInvalid { path: path.to_path_buf(), message }
}

/// The file stem of a stimulus: `hue_XXX` with zero-padded integer degrees when every hue of the set is whole;
/// otherwise `hue_XXXpF` with the same number of decimals `F` (1 to 3, the fewest that write every hue of the
/// set exactly) for all, e.g. `hue_012p5`. The `p` keeps the stem free of dots and the seed notebook's
/// `hue_(\d+)` pattern still reads the whole degrees. `_vN` is appended when `with_variant`.
pub fn stimulus_id(hue_mdeg: i64, decimals: usize, variant: Option<u32>) -> String {
    let whole = hue_mdeg / 1000;
    let mut id = format!("hue_{whole:03}");
    if decimals > 0 {
        let frac = hue_mdeg % 1000;
        let digits = format!("{frac:03}");
        id.push('p');
        id.push_str(&digits[..decimals]);
    }
    if let Some(v) = variant {
        id.push_str(&format!("_v{v}"));
    }
    id
}

/// The fewest decimals (0 to 3) that write every hue of `hues_mdeg` exactly.
pub fn decimals_needed(hues_mdeg: &[i64]) -> usize {
    (0..=3).find(|&d| hues_mdeg.iter().all(|h| h % 10i64.pow(3 - d as u32) == 0)).unwrap_or(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_zero_padded_and_fractional_sets_share_decimals() {
        assert_eq!(stimulus_id(6_000, 0, None), "hue_006");
        assert_eq!(stimulus_id(354_000, 0, Some(2)), "hue_354_v2");
        assert_eq!(decimals_needed(&[0, 500, 1000]), 1);
        assert_eq!(stimulus_id(12_500, 1, None), "hue_012p5");
        assert_eq!(stimulus_id(12_000, 1, None), "hue_012p0");
        assert_eq!(decimals_needed(&[0, 250]), 2);
        assert_eq!(decimals_needed(&[1, 6000]), 3);
        assert_eq!(stimulus_id(1, 3, Some(0)), "hue_000p001_v0");
        assert_eq!(decimals_needed(&[0, 6000]), 0);
    }
}
