//! Reading a finished store one layer at a time.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, Ix2, IxDyn};

use super::format::MappedFile;
use super::manifest::Manifest;
use super::writer::first_non_finite;
use super::{Error, ACTS};
use crate::fsx;

/// A finished activation store.
#[derive(Debug, Clone)]
pub struct ActivationStore {
    dir: PathBuf,
    manifest: Manifest,
}

impl ActivationStore {
    /// Opens the store in `dir`, validating its manifest and that every layer file exists.
    pub fn open(dir: &Path) -> crate::store::Result<Self> {
        let path = dir.join("manifest.json");
        if !path.exists() {
            return Err(Error::Unfinished { path: dir.to_path_buf() });
        }
        let manifest: Manifest = fsx::read_json(&path)?;
        manifest.validate()?;
        for l in &manifest.layers {
            let f = dir.join(&l.file);
            match std::fs::metadata(&f) {
                Ok(m) if m.is_file() => {}
                Ok(m) => {
                    let what = if m.is_dir() { "a directory" } else { "not a regular file (a FIFO, socket or device)" };
                    let msg = format!("listed in manifest.json as layer {}, but it is {what}", l.index);
                    return Err(Error::Corrupt { path: f, msg });
                }
                Err(_) => return Err(Error::Corrupt { path: f, msg: "listed in manifest.json but missing".into() }),
            }
        }
        Ok(ActivationStore { dir: dir.to_path_buf(), manifest })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Stored layer indices, in order.
    pub fn layer_indices(&self) -> Vec<usize> {
        self.manifest.layers.iter().map(|l| l.index).collect()
    }

    /// Hue labels in degrees, one per sample.
    pub fn hue_deg(&self) -> Vec<f64> {
        self.manifest.samples.iter().map(|s| s.hue_deg).collect()
    }

    pub fn sample_ids(&self) -> Vec<String> {
        self.manifest.samples.iter().map(|s| s.id.clone()).collect()
    }

    /// Reads layer `index` (any rank), verifying the file's checksum, its shape against the manifest and that
    /// every value is finite. Only this layer's file is mapped.
    pub fn layer(&self, index: usize) -> crate::store::Result<ArrayD<f32>> {
        let entry = self.manifest.layer(index)?;
        let path = self.dir.join(&entry.file);
        let file = MappedFile::open(&path)?;
        let got = fsx::sha256_hex(file.bytes());
        if got != entry.sha256 {
            return Err(Error::Checksum { path, expected: entry.sha256.clone(), got });
        }
        let (shape, data) = file.read_f32(ACTS)?;
        if shape != entry.shape {
            return Err(Error::Mismatch {
                what: format!("shape of `{}`", path.display()),
                expected: format!("{:?} (manifest)", entry.shape),
                got: format!("{shape:?}"),
            });
        }
        let array = ArrayD::from_shape_vec(IxDyn(&shape), data).expect("shape checked");
        if let Some((s, value)) = first_non_finite(&array) {
            return Err(Error::NonFinite {
                layer: index,
                hook: entry.hook.clone(),
                sample: self.manifest.samples[s].id.clone(),
                value,
                hint: super::non_finite_hint(self.manifest.provenance.settings.get("dtype").map(String::as_str)),
            });
        }
        Ok(array)
    }

    /// Reads a pooled layer as `[n_samples, d_model]`.
    pub fn layer_2d(&self, index: usize) -> crate::store::Result<Array2<f32>> {
        let a = self.layer(index)?;
        let shape = a.shape().to_vec();
        a.into_dimensionality::<Ix2>().map_err(|_| Error::Mismatch {
            what: format!("layer {index}"),
            expected: "a pooled [n_samples, d_model] layer (extract with --pool image-mean or last)".into(),
            got: format!("shape {shape:?}"),
        })
    }

    /// Verifies every layer (checksums, shapes, finiteness). Returns the first problem.
    pub fn verify(&self) -> crate::store::Result<()> {
        for index in self.layer_indices() {
            self.layer(index)?;
        }
        Ok(())
    }
}
